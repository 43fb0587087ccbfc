"""The store operations on a DB-API driver, run in adbapi's worker threads.

Shared by the stores whose driver blocks (SQLite's sqlite3, MySQL's
PyMySQL); a subclass says how to make the pool and what a driver error means.
Each operation is one interaction, so one transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from uacregistrant.registrant.record import RecordConfig, RecordKey
from uacregistrant.store.dialect import Dialect, Statements, open_schema, run_steps
from uacregistrant.store.interface import (
    LoadResult,
    NoSuchRow,
    RuntimeState,
    StoreUnavailable,
    Validate,
    validate_rows,
)
from uacregistrant.store.rows import LOGICAL_COLUMNS, Columns, row_from_record
from uacregistrant.store.schema import key_params, runtime_from_row, runtime_params

T = TypeVar("T")

# Rows fetched and validated at a time: 100,000 row dicts never exist at once.
LOAD_CHUNK = 2000


class DbapiStore:
    """The IRegistrantStore operations; subclasses add ``_new_pool`` and ``_translate``."""

    log = Logger()

    def __init__(self, dialect: Dialect, columns: Columns) -> None:
        self.columns = columns
        self._sql = Statements(dialect, columns)
        self._pool: adbapi.ConnectionPool | None = None

    def _new_pool(self) -> adbapi.ConnectionPool:
        raise NotImplementedError

    def _translate(self, failure: Failure) -> Failure:
        """A driver failure as a StoreError (or StoreUnavailable)."""
        raise NotImplementedError

    def _run(self, interaction: Callable[..., T], *args: Any) -> Deferred[T]:
        if self._pool is None:
            return fail(StoreUnavailable("the store is not open"))
        d = self._pool.runInteraction(interaction, *args)
        d.addErrback(self._translate)
        return d

    def open(self) -> Deferred[None]:
        if self._pool is None:
            self._pool = self._new_pool()
        d = self._run(self._open_schema)
        d.addErrback(self._close_on_failure)
        return d

    def _open_schema(self, txn: Any) -> None:
        run_steps(txn, open_schema(self._sql))

    def _close_on_failure(self, failure: Failure) -> Failure:
        self._close_pool()
        return failure

    def close(self) -> Deferred[None]:
        self._close_pool()
        return succeed(None)

    def _close_pool(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.close()

    # -- the registrant table ----------------------------------------------

    def load_rows(self) -> Deferred[list[dict[str, object]]]:
        return self._run(self._load_rows)

    def _load_rows(self, txn: Any) -> list[dict[str, object]]:
        txn.execute(self._sql.select_all)
        return [dict(zip(LOGICAL_COLUMNS, row)) for row in txn.fetchall()]

    def load(self, validate: Validate) -> Deferred[LoadResult]:
        # Validated in the database thread: the reactor thread keeps running.
        return self._run(self._load, validate)

    def _load(self, txn: Any, validate: Validate) -> LoadResult:
        txn.execute(self._sql.select_all)
        result = LoadResult()
        while rows := txn.fetchmany(LOAD_CHUNK):
            chunk = validate_rows([dict(zip(LOGICAL_COLUMNS, row)) for row in rows], validate)
            result.extend(chunk)
        return result

    def load_row(self, key: RecordKey) -> Deferred[dict[str, object] | None]:
        return self._run(self._load_row, key)

    def _load_row(self, txn: Any, key: RecordKey) -> dict[str, object] | None:
        txn.execute(self._sql.select_key, key_params(key))
        row = txn.fetchone()
        return None if row is None else dict(zip(LOGICAL_COLUMNS, row))

    def set_state(self, key: RecordKey, enabled: bool) -> Deferred[None]:
        return self._run(self._set_state, key, enabled)

    def _set_state(self, txn: Any, key: RecordKey, enabled: bool) -> None:
        txn.execute(self._sql.set_state, (0 if enabled else 1, *key_params(key)))
        if txn.rowcount == 0:
            raise NoSuchRow("No such registrant")

    def upsert(self, record: RecordConfig) -> Deferred[None]:
        return self._run(self._upsert, record)

    def _upsert(self, txn: Any, record: RecordConfig) -> None:
        # UPDATE then INSERT in one transaction: no reliance on the unique
        # index an existing table has (an operator's table may lack it).
        row = row_from_record(record)
        txn.execute(self._sql.update_row(row), (*row.values(), *key_params(record.key)))
        if txn.rowcount == 0:
            txn.execute(self._sql.insert_row(row), tuple(row.values()))

    def delete(self, key: RecordKey) -> Deferred[None]:
        return self._run(self._delete, key)

    def _delete(self, txn: Any, key: RecordKey) -> None:
        txn.execute(self._sql.delete, key_params(key))
        if txn.rowcount == 0:
            raise NoSuchRow("No such registrant")

    # -- our runtime table --------------------------------------------------

    def save_runtime(self, states: Sequence[RuntimeState]) -> Deferred[None]:
        return self._run(self._save_runtime, list(states))

    def _save_runtime(self, txn: Any, states: list[RuntimeState]) -> None:
        if states:
            txn.executemany(self._sql.save_runtime(1), [runtime_params(s) for s in states])

    def load_runtime(self) -> Deferred[dict[RecordKey, RuntimeState]]:
        return self._run(self._load_runtime)

    def _load_runtime(self, txn: Any) -> dict[RecordKey, RuntimeState]:
        txn.execute(self._sql.select_runtime)
        states = {}
        for row in txn.fetchall():
            state = runtime_from_row(row)
            states[state.key] = state
        return states

    def delete_runtime(self, key: RecordKey) -> Deferred[None]:
        return self._run(self._delete_runtime, key)

    def _delete_runtime(self, txn: Any, key: RecordKey) -> None:
        txn.execute(self._sql.delete_runtime, key_params(key))
