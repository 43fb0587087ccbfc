"""What only the SQLite store does: the file, its mode, its schema text, make_store."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest_twisted
from twisted.internet import reactor

from tests.store.conftest import SQLiteBackend
from uacregistrant.store import make_store
from uacregistrant.store.rows import Columns
from uacregistrant.store.sqlite import SQLiteStore
from uacregistrant.store.url import parse_db_url


def _shape(path: str) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """Columns (name, type, not null, default, pk) and unique index columns of registrant."""
    connection = sqlite3.connect(path)
    try:
        columns = [row[1:] for row in connection.execute("PRAGMA table_info(registrant)")]
        indexes = []
        for _, name, unique, *_ in connection.execute("PRAGMA index_list(registrant)"):
            info = connection.execute(f'PRAGMA index_info("{name}")').fetchall()
            indexes.append((unique, tuple(row[2] for row in info)))
        return columns, indexes
    finally:
        connection.close()


@pytest_twisted.ensureDeferred
async def test_created_table_has_opensips_shape(tmp_path: Path) -> None:
    ours = SQLiteStore(str(tmp_path / "ours.sqlite"), Columns(), reactor=reactor)
    await ours.open()
    await ours.close()
    theirs = SQLiteBackend(tmp_path)
    theirs.create_opensips_table(version=3)
    assert _shape(str(tmp_path / "ours.sqlite")) == _shape(theirs.path)
    assert _shape(theirs.path)[1] == [(1, ("aor", "binding_URI", "registrar"))]


@pytest_twisted.ensureDeferred
async def test_wal_mode(tmp_path: Path) -> None:
    path = str(tmp_path / "wal.sqlite")
    store = SQLiteStore(path, Columns(), reactor=reactor)
    await store.open()
    try:
        connection = sqlite3.connect(path)
        try:
            assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        finally:
            connection.close()
    finally:
        await store.close()


@pytest_twisted.ensureDeferred
async def test_many_rows_load(tmp_path: Path) -> None:
    backend = SQLiteBackend(tmp_path)
    store = backend.make_store(Columns())
    await store.open()
    try:
        connection = sqlite3.connect(backend.path)
        with connection:
            connection.executemany(
                "INSERT INTO registrant (registrar, aor, binding_URI, expiry) VALUES (?, ?, ?, ?)",
                (("sip:127.0.0.1:5080", f"sip:user{i:05d}@127.0.0.1",
                  f"sip:user{i:05d}@127.0.0.1:5062", 3600) for i in range(20000)),
            )
        connection.close()
        rows = await store.load_rows()
        assert len(rows) == 20000
        assert rows[-1]["aor"] == "sip:user19999@127.0.0.1"
    finally:
        await store.close()


def test_make_store_sqlite(tmp_path: Path) -> None:
    store = make_store(parse_db_url(f"sqlite:///{tmp_path}/reg.sqlite"), Columns(table="t"), reactor)
    assert isinstance(store, SQLiteStore)
    assert store.path == f"{tmp_path}/reg.sqlite"
    assert store.columns == Columns(table="t")
