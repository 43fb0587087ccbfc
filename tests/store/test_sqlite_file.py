"""The SQLite store follows the file at its path: deleted, replaced, or left on an
old snapshot by an error, it never answers success for a write nobody will read."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.logger import Logger, formatEvent

from tests.store.conftest import SQLiteBackend
from tests.store.contract import record, validate
from uacregistrant.store.dbapi import LOAD_CHUNK
from uacregistrant.store.interface import StoreUnavailable
from uacregistrant.store.rows import Columns
from uacregistrant.store.sqlite import SQLiteStore


async def opened(path: Path, events: list[dict[str, Any]]) -> SQLiteStore:
    store = SQLiteStore(str(path), Columns(), reactor=reactor)
    store.log = Logger(observer=events.append)
    await store.open()
    return store


def said(events: list[dict[str, Any]]) -> list[str]:
    return [formatEvent(event) for event in events]


def remove_database(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def table_in(path: Path, aors: list[str]) -> None:
    """A database made elsewhere (a restored backup, say) with rows for ``aors``."""
    backend = SQLiteBackend(path.parent)
    backend.path = str(path)
    backend.create_opensips_table(3)
    for aor in aors:
        backend.insert_row(Columns(), {"registrar": "sip:registrar.example.com", "aor": aor,
                                       "binding_uri": "sip:x@127.0.0.1", "expiry": 3600})


def aors_in(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [row[0] for row in db.execute("SELECT aor FROM registrant ORDER BY id")]


@pytest_twisted.ensureDeferred
async def test_a_deleted_file_fails_every_call_and_is_not_recreated(tmp_path: Path) -> None:
    path = tmp_path / "registrant.sqlite"
    events: list[dict[str, Any]] = []
    store = await opened(path, events)
    try:
        await store.upsert(record(1))
        remove_database(path)
        for _ in range(2):
            with pytest.raises(StoreUnavailable, match="missing"):
                await store.upsert(record(2))
        with pytest.raises(StoreUnavailable):
            await store.load(validate)
        assert not path.exists()
        # Said once, not once per call.
        assert [line for line in said(events) if "gone" in line] == [
            f"SQLite database {path}: the file is gone (deleted?); every call fails until it is back"
        ]
        # Back (restored from a backup): reopened, and written to for real.
        table_in(path, ["sip:restored@example.com"])
        await store.upsert(record(3))
        assert aors_in(path) == ["sip:restored@example.com", "sip:user3@example.com"]
        assert any("replaced while running; reopened it" in line for line in said(events))
    finally:
        await store.close()


@pytest_twisted.ensureDeferred
async def test_a_replaced_file_is_reopened_and_its_missing_tables_made(tmp_path: Path) -> None:
    path = tmp_path / "registrant.sqlite"
    events: list[dict[str, Any]] = []
    store = await opened(path, events)
    try:
        await store.upsert(record(1))
        replacement = tmp_path / "new" / "registrant.sqlite"
        replacement.parent.mkdir()
        table_in(replacement, ["sip:other@example.com"])
        os.replace(replacement, path)
        result = await store.load(validate)
        assert [r.aor for r in result.records] == ["sip:other@example.com"]
        assert said(events) == [f"SQLite database {path}: the file was replaced while running; reopened it"]
        await store.upsert(record(2))
        assert aors_in(path) == ["sip:other@example.com", "sip:user2@example.com"]
        # Our runtime table was made in the replacement too.
        await store.save_runtime([])
        assert await store.load_runtime() == {}
    finally:
        await store.close()


@pytest_twisted.ensureDeferred
async def test_a_write_whose_file_went_away_before_commit_fails(tmp_path: Path) -> None:
    path = tmp_path / "registrant.sqlite"
    store = await opened(path, [])
    replacement = tmp_path / "new" / "registrant.sqlite"
    replacement.parent.mkdir()
    table_in(replacement, [])

    def upsert_while_replaced(txn: Any) -> None:
        store._upsert(txn, record(1))
        os.replace(replacement, path)  # an operator's restore, mid-call

    try:
        with pytest.raises(StoreUnavailable, match="outcome is lost"):
            await store._run(upsert_while_replaced)
        # The next call is on the new file, where the row never was.
        assert (await store.load(validate)).records == []
    finally:
        await store.close()


@pytest_twisted.ensureDeferred
async def test_an_error_mid_fetch_leaves_no_old_snapshot_behind(tmp_path: Path) -> None:
    path = tmp_path / "registrant.sqlite"
    events: list[dict[str, Any]] = []
    store = await opened(path, events)
    try:
        with sqlite3.connect(path) as db:
            db.executemany(
                "INSERT INTO registrant (registrar, aor, binding_URI, expiry) VALUES (?, ?, ?, 3600)",
                [("sip:r.example.com", f"sip:u{n}@example.com", "sip:u@127.0.0.1") for n in range(LOAD_CHUNK + 10)],
            )

        def broken(row: Any) -> Any:
            raise RuntimeError("validator bug")

        # Kept: a failure holding the unfinished statement must not hold the snapshot.
        failure = None
        try:
            await store.load(broken)
        except RuntimeError as e:
            failure = e
        assert failure is not None
        with sqlite3.connect(path) as db:
            db.execute("INSERT INTO registrant (registrar, aor, binding_URI, expiry)"
                       " VALUES ('sip:r.example.com', 'sip:late@example.com', 'sip:u@127.0.0.1', 3600)")
        rows = await store.load_rows()
        assert len(rows) == LOAD_CHUNK + 11
        assert said(events) == [f"SQLite database {path}: reopened after an error (validator bug)"]
    finally:
        await store.close()
