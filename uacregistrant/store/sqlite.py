"""The registrant store on SQLite, through adbapi's worker thread."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred, fail
from twisted.python.failure import Failure
from zope.interface import implementer

from uacregistrant.store.dbapi import DbapiStore
from uacregistrant.store.dialect import Dialect
from uacregistrant.store.interface import IRegistrantStore, StoreError, StoreUnavailable
from uacregistrant.store.rows import Columns

T = TypeVar("T")

# A connection opened in a missing directory, a locked or corrupt file: the
# database is there but unusable, as opposed to a mistake in our SQL.
_UNAVAILABLE = ("unable to open", "database is locked", "disk i/o", "readonly", "not a database")


class SQLiteDialect(Dialect):
    """scripts/sqlite/*-create.sql."""

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

    def schema_lock(self) -> tuple[str, tuple[()]]:
        # The write lock at once: another process opening the same file waits
        # (busy_timeout) and then sees the tables and columns this one made.
        return "BEGIN IMMEDIATE", ()


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


def _identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of the file at ``path``; None when there is none."""
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return None
    return found.st_dev, found.st_ino


@implementer(IRegistrantStore)
class SQLiteStore(DbapiStore):
    """``SQLiteStore(path, columns, reactor=...)``: one connection, one worker thread (cp_max=1).

    The connection follows the file at ``path``: each call first checks that
    the file is the one the connection has open (device and inode), reopens it
    when it was replaced, and fails while it is missing; a call whose file was
    deleted or replaced before it committed fails too, so nothing reports
    success for a write that went to a file nobody will read again.  After an
    unexpected error the connection is replaced, so that no unfinished
    statement keeps it reading an old snapshot.
    """

    # A file that cannot be opened stays so: start-up stops instead of waiting.
    retry_unavailable = False

    def __init__(self, path: str, columns: Columns, *, reactor: Any) -> None:
        super().__init__(SQLITE, columns)
        self.path = path
        self._reactor = reactor
        # Touched only in the database thread (cp_max=1).
        self._file: tuple[int, int] | None = None
        self._missing = False
        self._journal_paths = (f"{path}-wal", f"{path}-shm")
        self._journal: dict[str, tuple[int, int] | None] = {}
        # What the database thread has to say, logged from the reactor thread.
        self._notes: list[tuple[str, str]] = []

    def _run(self, interaction: Callable[..., T], *args: Any) -> Deferred[T]:
        if self._pool is None:
            return fail(StoreUnavailable("the store is not open"))
        d = self._pool.runWithConnection(self._guarded, interaction, *args)
        d.addBoth(self._log_notes)
        d.addErrback(self._translate)
        return d

    def _log_notes(self, result: object) -> object:
        while self._notes:
            level, why = self._notes.pop(0)
            getattr(self.log, level)("SQLite database {path}: {why}", path=self.path, why=why)
        return result

    def _guarded(self, connection: adbapi.Connection, interaction: Callable[..., T], *args: Any) -> T:
        """One interaction in the database thread, on the file now at ``path``."""
        self._follow_file(connection)
        cursor = connection.cursor()
        try:
            result = interaction(cursor, *args)
        except BaseException as error:
            cursor.close()
            try:
                connection.rollback()
            except sqlite3.Error:
                pass  # the connection is replaced below
            # A file replaced meanwhile is left to the next call's check.
            if not isinstance(error, StoreError) and _identity(self.path) == self._file:
                connection.reconnect()
                self._notes.append(("warn", f"reopened after an error ({error})"))
            raise
        cursor.close()
        connection.commit()
        self._journal = {path: _identity(path) for path in self._journal_paths}
        if _identity(self.path) != self._file:
            raise StoreUnavailable(
                f"SQLite database file {self.path} was deleted or replaced during the call;"
                " its outcome is lost"
            )
        return result

    def _follow_file(self, connection: adbapi.Connection) -> None:
        found = _identity(self.path)
        if found is None:
            if not self._missing:
                self._missing = True
                self._notes.append(("error", "the file is gone (deleted?); every call fails until it is back"))
            raise StoreUnavailable(f"SQLite database file {self.path} is missing")
        if self._file is None:
            self._file = found
        elif found != self._file:
            # Our write-ahead log and its index belong to the old file: left
            # there, the new connection would replay them onto the new one.
            for path, ours in self._journal.items():
                if ours is not None and _identity(path) == ours:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
            connection.reconnect()
            self._file = found
            self._notes.append(("warn", "the file was replaced while running; reopened it"))
            # A replacement may lack our tables: the same checks as at start.
            cursor = connection.cursor()
            self._open_schema(cursor)
            cursor.close()
            connection.commit()
        self._missing = False

    def _new_pool(self) -> adbapi.ConnectionPool:
        return adbapi.ConnectionPool(
            "sqlite3",
            self.path,
            check_same_thread=False,
            cp_min=1,
            cp_max=1,
            cp_openfun=_on_open,
            cp_reactor=self._reactor,
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
