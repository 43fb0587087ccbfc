"""A row of the SQLite table that is not valid UTF-8 skips that row only.

The store is driven as the service drives it: load through the validator,
reload one row, upsert, save runtime state, all on the same connection.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor

from uacregistrant.registrant.record import RecordConfig, RecordKey
from uacregistrant.store.interface import RuntimeState
from uacregistrant.store.rows import Columns, RowError, record_from_row
from uacregistrant.store.sqlite import SQLiteStore

PASSWORD_BYTES = b"\xffhunter2-secret"


def validate(row: object) -> RecordConfig:
    return record_from_row(row, timer_interval=10, default_expires=3600)  # type: ignore[arg-type]


def insert(path: str, aor: str, password_sql: str = "'pw'") -> None:
    # CAST(x'..' AS TEXT) stores bytes that are not UTF-8 in a TEXT column,
    # as a C program or a careless import can.
    connection = sqlite3.connect(path)
    with connection:
        connection.execute(
            "INSERT INTO registrant (registrar, aor, binding_URI, expiry, password)"
            f" VALUES ('sip:127.0.0.1:5080', ?, ?, 3600, {password_sql})",
            (aor, aor + ";x=1"),
        )
    connection.close()


@pytest_twisted.ensureDeferred
async def test_invalid_utf8_row_is_skipped_and_the_connection_keeps_working(tmp_path: Path) -> None:
    path = str(tmp_path / "reg.sqlite")
    store = SQLiteStore(path, Columns(), reactor=reactor)
    await store.open()
    try:
        insert(path, "sip:good1@127.0.0.1")
        insert(path, "sip:bad@127.0.0.1", f"CAST(x'{PASSWORD_BYTES.hex()}' AS TEXT)")
        insert(path, "sip:good2@127.0.0.1")

        result = await store.load(validate)
        assert sorted(r.aor for r in result.records) == ["sip:good1@127.0.0.1", "sip:good2@127.0.0.1"]
        assert [(reason) for _, reason in result.skipped] == ["password is not valid UTF-8"]
        assert "hunter2" not in repr(result.skipped)

        # The single-row reload of that row fails validation with the field, not its text.
        row = await store.load_row(RecordKey("sip:bad@127.0.0.1", "sip:bad@127.0.0.1;x=1", "sip:127.0.0.1:5080"))
        assert row is not None
        with pytest.raises(RowError) as caught:
            validate(row)
        assert caught.value.reason == "password is not valid UTF-8"

        # No stale snapshot: a row added by another writer after the bad read is seen.
        insert(path, "sip:later@127.0.0.1")
        result = await store.load(validate)
        assert "sip:later@127.0.0.1" in {r.aor for r in result.records}

        # Writes go through (no "database is locked"), runtime state included.
        upserted = validate({"registrar": "sip:127.0.0.1:5080", "aor": "sip:new@127.0.0.1",
                             "binding_uri": "sip:new@127.0.0.1", "expiry": 600})
        await store.upsert(upserted)
        state = RuntimeState(upserted.key, "call-id", "tag", 5, 3, 600, 1.0e9, 1.0e9)
        await store.save_runtime([state])
        assert (await store.load_runtime())[upserted.key] == state
        assert "sip:new@127.0.0.1" in {r.aor for r in (await store.load(validate)).records}
    finally:
        await store.close()
