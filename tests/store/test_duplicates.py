"""A table without the UNIQUE index (an old schema) may hold one record twice:
every store loads the first row (lowest id) and skips each later one naming it."""

from __future__ import annotations

import re
from typing import Any

import pytest_twisted

from tests.store.contract import open_store, validate
from uacregistrant.store.interface import validate_rows
from uacregistrant.store.rows import Columns

SAME = {"registrar": "sip:registrar.example.com", "aor": "sip:a@example.com", "binding_uri": "sip:a@127.0.0.1"}


def create_table_without_unique_index(backend: Any) -> None:
    backend.create_opensips_table(3)
    # Rebuilt as an older schema had it: the same columns, no UNIQUE constraint.
    backend.execute("DROP TABLE registrant")
    backend.execute(re.sub(r",\s*CONSTRAINT (registrant_)?registrant_idx\s+UNIQUE \([^)]*\)", "",
                           backend.OPENSIPS_REGISTRANT_V3))


@pytest_twisted.ensureDeferred
async def test_duplicate_rows_load_the_first_and_name_it(backend: Any) -> None:
    create_table_without_unique_index(backend)
    # Inserted out of id order: "first" is the lowest id, not the first written.
    later = backend.insert_row(Columns(), {"id": 40, **SAME, "expiry": 600})
    first = backend.insert_row(Columns(), {"id": 10, **SAME, "expiry": 900})
    other = backend.insert_row(Columns(), {"id": 20, **SAME, "aor": "sip:b@example.com", "expiry": 600})
    last = backend.insert_row(Columns(), {"id": 30, **SAME, "expiry": 1200})
    store = await open_store(backend)
    try:
        result = await store.load(validate)
        single = await store.load_row(validate({**SAME, "expiry": 600}).key)
    finally:
        await store.close()
    assert [(r.id, r.expiry) for r in result.records] == [(first, 900), (other, 600)]
    reason = f"duplicate of row {first} (same aor, binding_URI and registrar)"
    assert result.skipped == [(last, reason), (later, reason)]
    # reg_reload of that one record reads the same row.
    assert single is not None and single["id"] == first


def test_a_duplicate_in_a_later_chunk_is_still_found() -> None:
    row = {**SAME, "expiry": 600}
    result = validate_rows([{**row, "id": 1}], validate)
    result.extend(validate_rows([{**row, "id": 2}, {**row, "id": 3, "aor": "sip:c@example.com"}], validate))
    assert [r.id for r in result.records] == [1, 3]
    assert result.skipped == [(2, "duplicate of row 1 (same aor, binding_URI and registrar)")]
