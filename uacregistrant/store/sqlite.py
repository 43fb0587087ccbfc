"""The registrant store on SQLite, through adbapi's worker thread."""

from __future__ import annotations

import sqlite3
from typing import ClassVar

from twisted.enterprise import adbapi
from twisted.python.failure import Failure
from zope.interface import implementer

from uacregistrant.store.dbapi import DbapiStore
from uacregistrant.store.dialect import Dialect
from uacregistrant.store.interface import IRegistrantStore, StoreError, StoreUnavailable
from uacregistrant.store.rows import Columns

# A connection opened in a missing directory, a locked or corrupt file: the
# database is there but unusable, as opposed to a mistake in our SQL.
_UNAVAILABLE = ("unable to open", "database is locked", "disk i/o", "readonly", "not a database")


class SQLiteDialect(Dialect):
    """scripts/sqlite/*-create.sql."""

    name = "SQLite"
    types: ClassVar[dict[str, str]] = {
        "serial": "INTEGER PRIMARY KEY AUTOINCREMENT",
        "string": "CHAR({n})",
        "int": "INTEGER",
        "uint": "INTEGER",
        "bigint": "INTEGER",
        "double": "REAL",
        "text": "TEXT",
        "key": "TEXT",
    }
    table_exists_sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND lower(name) = lower(?)"
    columns_sql = "SELECT name FROM pragma_table_info(?)"


SQLITE = SQLiteDialect()


def _text_or_bytes(raw: bytes) -> str | bytes:
    """SQLite text as str, or as the raw bytes when it is not valid UTF-8.

    The default text factory raises in the middle of a fetch, with the
    column's text in the message: the whole load fails, the message can show a
    password, and the unfinished statement keeps the connection on an old
    snapshot.  Bytes reach the row validator instead, which skips that row.
    """
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def _on_open(connection: sqlite3.Connection) -> None:
    connection.text_factory = _text_or_bytes
    # WAL lets opensips-cli or an operator's sqlite3 read while we write.
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA busy_timeout=5000")


@implementer(IRegistrantStore)
class SQLiteStore(DbapiStore):
    """``SQLiteStore(path, columns)``: one connection, one worker thread (cp_max=1)."""

    def __init__(self, path: str, columns: Columns) -> None:
        super().__init__(SQLITE, columns)
        self.path = path

    def _new_pool(self) -> adbapi.ConnectionPool:
        return adbapi.ConnectionPool(
            "sqlite3",
            self.path,
            check_same_thread=False,
            cp_min=1,
            cp_max=1,
            cp_openfun=_on_open,
        )

    def _translate(self, failure: Failure) -> Failure:
        if failure.check(StoreError):
            return failure
        if failure.check(sqlite3.DatabaseError):
            text = str(failure.value)
            if any(marker in text.lower() for marker in _UNAVAILABLE):
                raise StoreUnavailable(f"SQLite database unavailable: {text}")
            raise StoreError(f"SQLite error: {text}")
        return failure
