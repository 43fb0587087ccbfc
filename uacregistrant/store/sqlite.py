"""The registrant store on SQLite, through adbapi's worker thread."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from uacregistrant.registrant.record import RecordConfig, RecordKey
from uacregistrant.store.interface import (
    RUNTIME_TABLE,
    TABLE_VERSION,
    IRegistrantStore,
    LoadResult,
    NoSuchRow,
    RuntimeState,
    StoreError,
    StoreUnavailable,
    Validate,
    validate_rows,
)
from uacregistrant.store.rows import LOGICAL_COLUMNS, Columns, row_from_record
from uacregistrant.store.schema import (
    RUNTIME_COLUMNS,
    SQLITE_RUNTIME_TABLE,
    SQLITE_VERSION_TABLE,
    key_params,
    quote_identifier,
    runtime_from_row,
    runtime_params,
    sqlite_registrant_table,
)

T = TypeVar("T")

# A connection opened in a missing directory, a locked or corrupt file: the
# database is there but unusable, as opposed to a mistake in our SQL.
_UNAVAILABLE = ("unable to open", "database is locked", "disk i/o", "readonly", "not a database")


def _on_open(connection: sqlite3.Connection) -> None:
    # WAL lets opensips-cli or an operator's sqlite3 read while we write.
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA busy_timeout=5000")


def _translate(failure: Failure) -> Failure:
    if failure.check(StoreError):
        return failure
    if failure.check(sqlite3.DatabaseError):
        text = str(failure.value)
        if any(marker in text.lower() for marker in _UNAVAILABLE):
            raise StoreUnavailable(f"SQLite database unavailable: {text}")
        raise StoreError(f"SQLite error: {text}")
    return failure


def _table_exists(txn: Any, name: str) -> bool:
    txn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND lower(name) = lower(?)",
        (name,),
    )
    return txn.fetchone() is not None


LOAD_CHUNK = 2000


@implementer(IRegistrantStore)
class SQLiteStore:
    """``SQLiteStore(path, columns)``: one connection, one worker thread (cp_max=1)."""

    log = Logger()

    def __init__(self, path: str, columns: Columns) -> None:
        self.path = path
        self.columns = columns
        self._pool: adbapi.ConnectionPool | None = None
        q = quote_identifier
        names = [q(columns.physical(c)) for c in LOGICAL_COLUMNS]
        self._table = q(columns.table)
        self._select = f"SELECT {', '.join(names)} FROM {self._table}"
        self._where_key = (
            f"{q(columns.aor)} = ? AND {q(columns.binding_uri)} = ? AND {q(columns.registrar)} = ?"
        )

    def _run(self, interaction: Callable[..., T], *args: Any) -> Deferred[T]:
        if self._pool is None:
            return fail(StoreUnavailable("the store is not open"))
        d = self._pool.runInteraction(interaction, *args)
        d.addErrback(_translate)
        return d

    def open(self) -> Deferred[None]:
        if self._pool is None:
            self._pool = adbapi.ConnectionPool(
                "sqlite3",
                self.path,
                check_same_thread=False,
                cp_min=1,
                cp_max=1,
                cp_openfun=_on_open,
            )
        d = self._run(self._create_schema)
        d.addErrback(self._close_on_failure)
        return d

    def _close_on_failure(self, failure: Failure) -> Failure:
        self._close_pool()
        return failure

    def _create_schema(self, txn: Any) -> None:
        table = self.columns.table
        if not _table_exists(txn, "version"):
            txn.execute(SQLITE_VERSION_TABLE)
        txn.execute("SELECT table_version FROM version WHERE table_name = ?", (table,))
        found = txn.fetchone()
        version = None if found is None else found[0]
        if _table_exists(txn, table):
            if version != TABLE_VERSION:
                raise StoreError(
                    f"table {table} has version {version}, expected {TABLE_VERSION}"
                    " (upgrade it with opensips-cli or OpenSIPS's migration scripts)"
                )
            self._check_columns(txn)
        else:
            if version is None:
                # The insert first: it opens the transaction the CREATE then joins.
                txn.execute(
                    "INSERT INTO version (table_name, table_version) VALUES (?, ?)",
                    (table, TABLE_VERSION),
                )
            elif version != TABLE_VERSION:
                raise StoreError(
                    f"version row of table {table} says {version}, expected {TABLE_VERSION}"
                )
            txn.execute(sqlite_registrant_table(self.columns))
            self.log.info(
                "created table {table} (version {version})", table=table, version=TABLE_VERSION
            )
        txn.execute(SQLITE_RUNTIME_TABLE)

    def _check_columns(self, txn: Any) -> None:
        txn.execute(f"PRAGMA table_info({self._table})")
        present = {row[1].lower() for row in txn.fetchall()}
        for logical in LOGICAL_COLUMNS:
            name = self.columns.physical(logical)
            if name.lower() not in present:
                raise StoreError(
                    f"table {self.columns.table} has no column {name} (the {logical} column)"
                )

    def load_rows(self) -> Deferred[list[dict[str, object]]]:
        return self._run(self._load_rows)

    def _load_rows(self, txn: Any) -> list[dict[str, object]]:
        txn.execute(self._select)
        return [dict(zip(LOGICAL_COLUMNS, row)) for row in txn.fetchall()]

    def load(self, validate: Validate) -> Deferred[LoadResult]:
        # Validated in the database thread, a chunk at a time: 100,000 row
        # dicts never exist at once, and the reactor thread keeps running.
        return self._run(self._load, validate)

    def _load(self, txn: Any, validate: Validate) -> LoadResult:
        txn.execute(self._select)
        result = LoadResult()
        while rows := txn.fetchmany(LOAD_CHUNK):
            chunk = validate_rows([dict(zip(LOGICAL_COLUMNS, row)) for row in rows], validate)
            result.records.extend(chunk.records)
            result.skipped.extend(chunk.skipped)
        return result

    def load_row(self, key: RecordKey) -> Deferred[dict[str, object] | None]:
        return self._run(self._load_row, key)

    def _load_row(self, txn: Any, key: RecordKey) -> dict[str, object] | None:
        txn.execute(f"{self._select} WHERE {self._where_key}", key_params(key))
        row = txn.fetchone()
        return None if row is None else dict(zip(LOGICAL_COLUMNS, row))

    def set_state(self, key: RecordKey, enabled: bool) -> Deferred[None]:
        return self._run(self._set_state, key, enabled)

    def _set_state(self, txn: Any, key: RecordKey, enabled: bool) -> None:
        txn.execute(
            f"UPDATE {self._table} SET {quote_identifier(self.columns.state)} = ?"
            f" WHERE {self._where_key}",
            (0 if enabled else 1, *key_params(key)),
        )
        if txn.rowcount == 0:
            raise NoSuchRow("No such registrant")

    def upsert(self, record: RecordConfig) -> Deferred[None]:
        return self._run(self._upsert, record)

    def _upsert(self, txn: Any, record: RecordConfig) -> None:
        # UPDATE then INSERT in one transaction on the only connection: no
        # reliance on an ON CONFLICT target matching whatever index exists.
        row = row_from_record(record)
        names = [quote_identifier(self.columns.physical(c)) for c in row]
        assignments = ", ".join(f"{n} = ?" for n in names)
        txn.execute(
            f"UPDATE {self._table} SET {assignments} WHERE {self._where_key}",
            (*row.values(), *key_params(record.key)),
        )
        if txn.rowcount == 0:
            txn.execute(
                f"INSERT INTO {self._table} ({', '.join(names)})"
                f" VALUES ({', '.join('?' for _ in names)})",
                tuple(row.values()),
            )

    def delete(self, key: RecordKey) -> Deferred[None]:
        return self._run(self._delete, key)

    def _delete(self, txn: Any, key: RecordKey) -> None:
        txn.execute(f"DELETE FROM {self._table} WHERE {self._where_key}", key_params(key))
        if txn.rowcount == 0:
            raise NoSuchRow("No such registrant")

    def save_runtime(self, states: Sequence[RuntimeState]) -> Deferred[None]:
        return self._run(self._save_runtime, list(states))

    def _save_runtime(self, txn: Any, states: list[RuntimeState]) -> None:
        updates = ", ".join(f"{c} = excluded.{c}" for c in RUNTIME_COLUMNS[3:])
        txn.executemany(
            f"INSERT INTO {RUNTIME_TABLE} ({', '.join(RUNTIME_COLUMNS)})"
            f" VALUES ({', '.join('?' for _ in RUNTIME_COLUMNS)})"
            f" ON CONFLICT (aor, binding_uri, registrar) DO UPDATE SET {updates}",
            [runtime_params(s) for s in states],
        )

    def load_runtime(self) -> Deferred[dict[RecordKey, RuntimeState]]:
        return self._run(self._load_runtime)

    def _load_runtime(self, txn: Any) -> dict[RecordKey, RuntimeState]:
        txn.execute(f"SELECT {', '.join(RUNTIME_COLUMNS)} FROM {RUNTIME_TABLE}")
        states = {}
        for row in txn.fetchall():
            state = runtime_from_row(row)
            states[state.key] = state
        return states

    def delete_runtime(self, key: RecordKey) -> Deferred[None]:
        return self._run(self._delete_runtime, key)

    def _delete_runtime(self, txn: Any, key: RecordKey) -> None:
        txn.execute(
            f"DELETE FROM {RUNTIME_TABLE} WHERE aor = ? AND binding_uri = ? AND registrar = ?",
            key_params(key),
        )

    def close(self) -> Deferred[None]:
        self._close_pool()
        return succeed(None)

    def _close_pool(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.close()

