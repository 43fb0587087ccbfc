"""What the service needs from a database, whichever database it is."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from zope.interface import Attribute, Interface

from uacregistrant.registrant.record import RecordConfig, RecordKey
from uacregistrant.registrant.runtime import IRuntimeStore, RuntimeState
from uacregistrant.store.rows import RowError

RUNTIME_TABLE = "uac_registrant_runtime"
TABLE_VERSION = 3


class StoreError(Exception):
    """Root of the store's errors; messages never carry credentials."""


class NoSuchRow(StoreError):
    """No row has the (aor, binding_URI, registrar) triple."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or is closed."""


@dataclass(frozen=True, slots=True)
class LoadResult:
    """The rows that became records and, for the others, (id, reason).

    A table without the UNIQUE index (an old schema) can hold several rows
    with one (aor, binding_URI, registrar): the first (lowest id) becomes the
    record, each later one is skipped naming the first.
    """

    records: list[RecordConfig] = field(default_factory=list)
    skipped: list[tuple[object, str]] = field(default_factory=list)
    _first: dict[RecordKey, object] = field(default_factory=dict, repr=False, compare=False)

    def add(self, record: RecordConfig) -> None:
        first = self._first.get(record.key, self)
        if first is self:
            self._first[record.key] = record.id
            self.records.append(record)
        else:
            self.skipped.append(
                (record.id, f"duplicate of row {first} (same aor, binding_URI and registrar)")
            )

    def extend(self, other: "LoadResult") -> None:
        """Add a later chunk of rows."""
        for record in other.records:
            self.add(record)
        self.skipped.extend(other.skipped)


Validate = Callable[[Mapping[str, object]], RecordConfig]


class IRegistrantStore(IRuntimeStore):
    """The ``registrant`` table (OpenSIPS schema v3) plus our runtime table.

    Every method returns a Deferred.  Rows are dicts keyed by the logical
    column names of ``uacregistrant.store.rows.LOGICAL_COLUMNS``.
    """

    columns = Attribute("The Columns this store reads and writes.")
    retry_unavailable = Attribute(
        "True when StoreUnavailable from open() or load() may pass by itself (a database"
        " server restarting), so start-up waits and tries again; False when it will not"
        " (a file that cannot be opened), so start-up stops."
    )

    def open():
        """Connect; create the missing tables; refuse a table version other than 3.

        An existing ``registrant`` table is never altered.  Fails with
        ``StoreError`` (``StoreUnavailable`` when the database is unreachable).
        """

    def load_rows():
        """Deferred[list[dict]]: every row of the table, unvalidated."""

    def load(validate):
        """Deferred[LoadResult]: every row through ``validate``, which raises RowError."""

    def load_row(key):
        """Deferred[dict | None]: the row of a RecordKey."""

    def set_state(key, enabled):
        """Deferred[None]: write the ``state`` column; NoSuchRow when no row matched."""

    def upsert(record):
        """Deferred[None]: insert the RecordConfig, or update the row with its key."""

    def delete(key):
        """Deferred[None]: delete the row; NoSuchRow when absent."""

    def load_runtime():
        """Deferred[dict[RecordKey, RuntimeState]]."""

    def delete_runtime(key):
        """Deferred[None]: forget a key's runtime state (absent is fine)."""

    def close():
        """Deferred[None]: release the connections; later calls fail StoreUnavailable."""


def validate_rows(rows: Sequence[Mapping[str, object]], validate: Validate) -> LoadResult:
    """Split rows into records and skipped (id, reason); shared by the stores."""
    result = LoadResult()
    for row in rows:
        try:
            record = validate(row)
        except RowError as e:
            result.skipped.append((row.get("id"), e.reason))
        else:
            result.add(record)
    return result
