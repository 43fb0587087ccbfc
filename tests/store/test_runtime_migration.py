"""The runtime table of an earlier version gains the new columns in place, rows kept.

On each database of ``conftest.BACKENDS``: a table exactly as the previous
version created it (twelve columns), rows in it, then a store of this version
opens the database.  Also: two nodes opening it at once, and a node of the
previous version writing to the migrated table (an upgrade in progress).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import gatherResults

from tests.store.conftest import MySQLBackend, PostgresBackend, SQLiteBackend
from tests.store.contract import open_store, record, runtime
from uacregistrant.registrant.runtime import RuntimeState
from uacregistrant.store.interface import RUNTIME_TABLE, StoreError
from uacregistrant.store.rows import Columns
from uacregistrant.store.schema import RUNTIME, RUNTIME_COLUMNS

OLD_COLUMNS = ("aor", "binding_uri", "registrar", "call_id", "from_tag", "cseq", "state",
               "expires", "expires_at", "last_code", "last_reason", "updated_at")
_OLD_LIST = ", ".join(OLD_COLUMNS)

# What the previous version created (its dialect's CREATE TABLE, verbatim) and
# its upsert, with the database's parameter mark.
OLD_SCHEMA: dict[type, tuple[str, str]] = {
    SQLiteBackend: (
        """CREATE TABLE IF NOT EXISTS "uac_registrant_runtime" (
    "aor" TEXT NOT NULL,
    "binding_uri" TEXT NOT NULL,
    "registrar" TEXT NOT NULL,
    "call_id" TEXT NOT NULL,
    "from_tag" TEXT NOT NULL,
    "cseq" INTEGER NOT NULL,
    "state" INTEGER NOT NULL,
    "expires" INTEGER NOT NULL,
    "expires_at" REAL NOT NULL,
    "last_code" INTEGER,
    "last_reason" TEXT,
    "updated_at" REAL NOT NULL,
    PRIMARY KEY ("aor", "binding_uri", "registrar")
)""",
        f"INSERT INTO uac_registrant_runtime ({_OLD_LIST}) VALUES ({', '.join('?' * 12)})"
        " ON CONFLICT (aor, binding_uri, registrar) DO UPDATE SET "
        + ", ".join(f"{c} = excluded.{c}" for c in OLD_COLUMNS[3:]),
    ),
    PostgresBackend: (
        """CREATE TABLE IF NOT EXISTS "uac_registrant_runtime" (
    "aor" TEXT NOT NULL,
    "binding_uri" TEXT NOT NULL,
    "registrar" TEXT NOT NULL,
    "call_id" TEXT NOT NULL,
    "from_tag" TEXT NOT NULL,
    "cseq" BIGINT NOT NULL,
    "state" INTEGER NOT NULL,
    "expires" BIGINT NOT NULL,
    "expires_at" DOUBLE PRECISION NOT NULL,
    "last_code" INTEGER,
    "last_reason" TEXT,
    "updated_at" DOUBLE PRECISION NOT NULL,
    PRIMARY KEY ("aor", "binding_uri", "registrar")
)""",
        f"INSERT INTO uac_registrant_runtime ({_OLD_LIST}) VALUES ({', '.join(['%s'] * 12)})"
        " ON CONFLICT (aor, binding_uri, registrar) DO UPDATE SET "
        + ", ".join(f"{c} = excluded.{c}" for c in OLD_COLUMNS[3:]),
    ),
    MySQLBackend: (
        """CREATE TABLE IF NOT EXISTS `uac_registrant_runtime` (
    `aor` VARCHAR(255) NOT NULL,
    `binding_uri` VARCHAR(255) NOT NULL,
    `registrar` VARCHAR(255) NOT NULL,
    `call_id` TEXT NOT NULL,
    `from_tag` TEXT NOT NULL,
    `cseq` BIGINT NOT NULL,
    `state` INT NOT NULL,
    `expires` BIGINT NOT NULL,
    `expires_at` DOUBLE NOT NULL,
    `last_code` INT,
    `last_reason` TEXT,
    `updated_at` DOUBLE NOT NULL,
    PRIMARY KEY (`aor`, `binding_uri`, `registrar`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin""",
        f"INSERT INTO uac_registrant_runtime ({_OLD_LIST}) VALUES ({', '.join(['%s'] * 12)})"
        " ON DUPLICATE KEY UPDATE " + ", ".join(f"{c} = VALUES({c})" for c in OLD_COLUMNS[3:]),
    ),
}


def old_params(state: RuntimeState) -> tuple[object, ...]:
    """What a node of the previous version writes for ``state``."""
    return (state.key.aor, state.key.binding_uri, state.key.registrar, state.call_id,
            state.from_tag, state.cseq, state.state, state.expires, state.expires_at,
            state.last_code, state.last_reason, state.updated_at)


def as_old(state: RuntimeState) -> RuntimeState:
    """``state`` as a store of this version reads a row an old node wrote: new fields at their defaults."""
    defaults = {f.name: f.default for f in dataclasses.fields(RuntimeState)
                if f.name not in OLD_COLUMNS and f.name != "key"}
    return dataclasses.replace(state, **defaults)


def make_old_table(backend: Any, states: list[RuntimeState]) -> str:
    create, upsert = OLD_SCHEMA[type(backend)]
    backend.execute(create)
    for state in states:
        backend.execute(upsert, old_params(state))
    assert backend.column_names(RUNTIME_TABLE) == list(OLD_COLUMNS)
    return upsert


def test_new_columns_can_be_added_to_a_table_with_rows() -> None:
    # ADD COLUMN to a table with rows needs NULL allowed or a default.
    assert RUNTIME_COLUMNS[:12] == OLD_COLUMNS
    for column in RUNTIME.columns[12:]:
        assert not column.not_null or column.default is not None, column.name


@pytest_twisted.ensureDeferred
async def test_old_table_migrated_in_place_rows_kept(backend: Any) -> None:
    old = [runtime(record(n).key, cseq=n) for n in range(1, 4)]
    upsert = make_old_table(backend, old)
    store = await open_store(backend)
    try:
        assert backend.column_names(RUNTIME_TABLE) == list(RUNTIME_COLUMNS)
        assert await store.load_runtime() == {s.key: as_old(s) for s in old}
        # Every field goes through the migrated table.
        newer = runtime(record(2).key, cseq=9)
        await store.save_runtime([newer])
        assert (await store.load_runtime())[newer.key] == newer
    finally:
        await store.close()
    # Opening again changes nothing (the migration is idempotent).
    store = await open_store(backend)
    try:
        assert backend.column_names(RUNTIME_TABLE) == list(RUNTIME_COLUMNS)
        assert (await store.load_runtime())[newer.key] == newer
        # A node of the previous version during the upgrade: its upsert sets
        # only its twelve columns, so what a newer node wrote stays ...
        backend.execute(upsert, old_params(dataclasses.replace(newer, cseq=20, state=1)))
        # ... and a row it inserts has the defaults.
        fresh = runtime(record(7).key, cseq=1)
        backend.execute(upsert, old_params(fresh))
        saved = await store.load_runtime()
        assert saved[newer.key] == dataclasses.replace(newer, cseq=20, state=1)
        assert saved[fresh.key] == as_old(fresh)
        assert saved[old[0].key] == as_old(old[0])
    finally:
        await store.close()


@pytest_twisted.ensureDeferred
async def test_two_nodes_migrate_one_table_at_once(backend: Any) -> None:
    old = [runtime(record(n).key, cseq=n) for n in range(1, 3)]
    make_old_table(backend, old)
    first, second = backend.make_store(Columns()), backend.make_store(Columns())
    try:
        await gatherResults([first.open(), second.open()], consumeErrors=True)
        assert backend.column_names(RUNTIME_TABLE) == list(RUNTIME_COLUMNS)
        for store in (first, second):
            assert await store.load_runtime() == {s.key: as_old(s) for s in old}
    finally:
        await first.close()
        await second.close()


@pytest_twisted.ensureDeferred
async def test_table_missing_an_original_column_refused(backend: Any) -> None:
    create, _ = OLD_SCHEMA[type(backend)]
    quote = "`" if isinstance(backend, MySQLBackend) else '"'
    backend.execute(create.replace(f"    {quote}from_tag{quote} TEXT NOT NULL,\n", ""))
    with pytest.raises(StoreError, match="has no column from_tag, which cannot be added"):
        await open_store(backend)
