"""A store that keeps its rows in memory: for embedding with a plain list, and for tests."""

from __future__ import annotations

from typing import Iterable

from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from ..registrant.record import RecordConfig, RecordKey
from .interface import IRegistrantStore, NoSuchRow, RuntimeState, StoreUnavailable, validate_rows
from .rows import Columns, row_from_record


@implementer(IRegistrantStore)
class MemoryStore:
    """Rows as dicts of logical column names, ``id`` counted from 1."""

    # ``available`` can be set back to True: like a server, an outage passes.
    retry_unavailable = True

    def __init__(self, records: Iterable[RecordConfig] = (), columns: Columns = Columns()) -> None:
        self.columns = columns
        self.rows: dict[RecordKey, dict[str, object]] = {}
        self.runtime: dict[RecordKey, RuntimeState] = {}
        self.available = True
        self._next_id = 1
        for record in records:
            self._put(record)

    def _put(self, record: RecordConfig) -> None:
        row = row_from_record(record)
        old = self.rows.get(record.key)
        if old is None:
            row["id"] = self._next_id
            self._next_id += 1
        else:
            row["id"] = old["id"]
        self.rows[record.key] = row

    def _check(self) -> Deferred | None:
        return None if self.available else fail(StoreUnavailable("database unavailable"))

    def open(self) -> Deferred:
        return self._check() or succeed(None)

    def load_rows(self) -> Deferred:
        return self._check() or succeed([dict(row) for row in self.rows.values()])

    def load(self, validate) -> Deferred:
        return self._check() or succeed(validate_rows([dict(r) for r in self.rows.values()], validate))

    def load_row(self, key: RecordKey) -> Deferred:
        row = self.rows.get(key)
        return self._check() or succeed(dict(row) if row is not None else None)

    def set_state(self, key: RecordKey, enabled: bool) -> Deferred:
        if (d := self._check()) is not None:
            return d
        if key not in self.rows:
            return fail(NoSuchRow("no such row"))
        self.rows[key]["state"] = 0 if enabled else 1
        return succeed(None)

    def upsert(self, record: RecordConfig) -> Deferred:
        if (d := self._check()) is not None:
            return d
        self._put(record)
        return succeed(None)

    def delete(self, key: RecordKey) -> Deferred:
        if (d := self._check()) is not None:
            return d
        if self.rows.pop(key, None) is None:
            return fail(NoSuchRow("no such row"))
        return succeed(None)

    def save_runtime(self, states) -> Deferred:
        if (d := self._check()) is not None:
            return d
        for state in states:
            self.runtime[state.key] = state
        return succeed(None)

    def load_runtime(self) -> Deferred:
        return self._check() or succeed(dict(self.runtime))

    def delete_runtime(self, key: RecordKey) -> Deferred:
        self.runtime.pop(key, None)
        return self._check() or succeed(None)

    def close(self) -> Deferred:
        return succeed(None)

