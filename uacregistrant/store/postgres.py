"""The registrant store on PostgreSQL, through one txpostgres connection.

Identifiers: OpenSIPS's db_postgres writes table and column names unquoted,
so PostgreSQL folds them to lower case (an OpenSIPS-created table has the
column ``binding_uri``).  We fold the configured names the same way and then
quote them, which finds the same columns and still lets a name be an SQL
keyword.

Outages: txpostgres' DeadConnectionDetector makes calls fail fast while the
connection is dead and reconnects in the background; ours adds a connect
timeout to every attempt and can be stopped for good by ``close()``.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import psycopg2
from twisted.internet import error
from twisted.internet.defer import Deferred, ensureDeferred, fail, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from txpostgres import reconnection, txpostgres
from zope.interface import implementer

from uacregistrant.config import redact_url
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
    key_params,
    quote_identifier,
    runtime_from_row,
    runtime_params,
)

T = TypeVar("T")

# Rows per FETCH: the reactor runs between two fetches, so a 100,000-row table
# loads without freezing the SIP timers.
FETCH_SIZE = 2000
# Runtime states per INSERT statement (12 parameters each).
INSERT_BATCH = 500

# scripts/postgres/standard-create.sql
PG_VERSION_TABLE = """CREATE TABLE version (
    table_name VARCHAR(32) NOT NULL,
    table_version INTEGER DEFAULT 0 NOT NULL,
    CONSTRAINT version_t_name_idx UNIQUE (table_name)
)"""

PG_RUNTIME_TABLE = f"""CREATE TABLE IF NOT EXISTS {RUNTIME_TABLE} (
    aor TEXT NOT NULL,
    binding_uri TEXT NOT NULL,
    registrar TEXT NOT NULL,
    call_id TEXT NOT NULL,
    from_tag TEXT NOT NULL,
    cseq BIGINT NOT NULL,
    state INTEGER NOT NULL,
    expires BIGINT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    last_code INTEGER,
    last_reason TEXT,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (aor, binding_uri, registrar)
)"""

# Two nodes starting together must not both create the tables.
_SCHEMA_LOCK = "SELECT pg_advisory_xact_lock(hashtext('uac_registrant schema'))"

# Failures that mean the database cannot be reached now, as opposed to a
# mistake in our SQL or a constraint the data broke.
_UNAVAILABLE = (
    reconnection.ConnectionDead,
    psycopg2.OperationalError,
    psycopg2.InterfaceError,
    error.ConnectionDone,
    error.ConnectionLost,
)

_FOLD = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def folded(name: str) -> str:
    """The name PostgreSQL gives an unquoted identifier (it lowers ASCII letters only)."""
    return name.translate(_FOLD)


def pg_identifier(name: str) -> str:
    """A configured name as OpenSIPS's unquoted SQL means it, quoted."""
    return quote_identifier(folded(name))


def pg_registrant_table(columns: Columns) -> str:
    """scripts/postgres/registrant-create.sql (version 3) with the configured names."""
    q = pg_identifier
    c = columns
    return f"""CREATE TABLE {q(c.table)} (
    id SERIAL PRIMARY KEY NOT NULL,
    {q(c.registrar)} VARCHAR(255) DEFAULT '' NOT NULL,
    {q(c.proxy)} VARCHAR(255) DEFAULT NULL,
    {q(c.aor)} VARCHAR(255) DEFAULT '' NOT NULL,
    {q(c.third_party_registrant)} VARCHAR(255) DEFAULT NULL,
    {q(c.username)} VARCHAR(64) DEFAULT NULL,
    {q(c.password)} VARCHAR(64) DEFAULT NULL,
    {q(c.binding_uri)} VARCHAR(255) DEFAULT '' NOT NULL,
    {q(c.binding_params)} VARCHAR(64) DEFAULT NULL,
    {q(c.expiry)} INTEGER DEFAULT NULL,
    {q(c.forced_socket)} VARCHAR(64) DEFAULT NULL,
    {q(c.cluster_shtag)} VARCHAR(64) DEFAULT NULL,
    {q(c.state)} INTEGER DEFAULT 0 NOT NULL,
    CONSTRAINT {q(c.table + "_registrant_idx")} UNIQUE ({q(c.aor)}, {q(c.binding_uri)}, {q(c.registrar)})
)"""


class _Detector(reconnection.DeadConnectionDetector):
    """txpostgres' detector, reconnecting through ``connect`` (which has a timeout).

    The base class keeps its retry loop to itself; this one remembers the
    next attempt so that ``stop()`` leaves no delayed call behind.
    """

    log = Logger()

    def __init__(self, connect: Callable[[], Deferred[Any]], reactor: Any, shown: str) -> None:
        super().__init__(reactor=reactor)
        self._connect = connect
        self._shown = shown
        self._delays: Iterator[float] = iter(())
        self._next_attempt: Any = None
        self._stopped = False

    def startReconnecting(self, f: Failure) -> None:
        if self._stopped:
            return
        self.log.warn(
            "lost the connection to PostgreSQL at {url} ({kind}); reconnecting",
            url=self._shown,
            kind=f.type.__name__,
        )
        self._delays = self.reconnectionIterator()
        self._schedule()

    def _schedule(self) -> None:
        # The first delay is 0: still through the reactor, never from inside
        # the errback that noticed the death.
        self._next_attempt = self.reactor.callLater(next(self._delays), self._attempt)

    def _attempt(self) -> None:
        self._next_attempt = None
        d = maybeDeferred(self.reconnect)
        d.addCallbacks(self._reconnected, self._retry_later)

    def reconnect(self) -> Deferred[Any]:
        _close_connection(self.reconnectable)
        return self._connect()

    def _reconnected(self, _: object) -> Deferred[Any] | None:
        if self._stopped:
            return None
        self.log.info("reconnected to PostgreSQL at {url}", url=self._shown)
        return self.connectionRecovered()

    def _retry_later(self, _: Failure) -> None:
        if not self._stopped:
            self._schedule()

    def stop(self) -> None:
        self._stopped = True
        if self._next_attempt is not None and self._next_attempt.active():
            self._next_attempt.cancel()
        self._next_attempt = None


def _close_connection(connection: txpostgres.Connection) -> None:
    # txpostgres' close() needs a psycopg2 connection to exist.
    if connection.pollable() is not None:
        connection.close()


@implementer(IRegistrantStore)
class PostgresStore:
    """``PostgresStore(dsn, columns, *, reactor=None)`` on one txpostgres connection.

    ``dsn`` is a libpq URL (``postgres://user:password@host:port/dbname``).
    A failed ``open()`` may be retried on the same store; after ``close()``
    every call fails with StoreUnavailable until the next ``open()``.
    """

    log = Logger()

    def __init__(
        self,
        dsn: str,
        columns: Columns,
        *,
        reactor: Any = None,
        connect_timeout: float = 10.0,
    ) -> None:
        self.dsn = dsn
        self.columns = columns
        self._reactor = reactor
        # libpq ignores its connect_timeout on asynchronous connections.
        self._connect_timeout = connect_timeout
        self._shown = redact_url(dsn)
        password = urlsplit(dsn).password if "://" in dsn else None
        # libpq reads the URL's password percent-decoded: hide both spellings.
        self._secrets = {password, unquote(password)} if password else set()
        self._connection: txpostgres.Connection | None = None
        self._detector: _Detector | None = None
        self._ready = False
        self._recovery_handlers: list[Callable[[], object]] = []
        q = pg_identifier
        names = [q(columns.physical(c)) for c in LOGICAL_COLUMNS]
        self._table = q(columns.table)
        self._select = f"SELECT {', '.join(names)} FROM {self._table}"
        self._select_all = f"{self._select} ORDER BY id"
        self._where_key = (
            f"{q(columns.aor)} = %s AND {q(columns.binding_uri)} = %s"
            f" AND {q(columns.registrar)} = %s"
        )

    # -- connection ---------------------------------------------------------

    def add_recovery_handler(self, handler: Callable[[], object]) -> None:
        """Call ``handler`` after every reconnect (session state such as locks is gone)."""
        self._recovery_handlers.append(handler)
        if self._detector is not None:
            self._detector.addRecoveryHandler(handler)

    def open(self) -> Deferred[None]:
        if self._connection is not None:
            return fail(StoreError("the store is already open"))
        reactor = self._reactor
        if reactor is None:
            from twisted.internet import reactor
        detector = _Detector(lambda: self._connect(connection, reactor), reactor, self._shown)
        connection = txpostgres.Connection(reactor, detector=detector)
        for handler in self._recovery_handlers:
            detector.addRecoveryHandler(handler)
        self._connection, self._detector = connection, detector
        d = self._connect(connection, reactor)
        d.addErrback(self._connect_failed)
        d.addCallback(lambda _: _in_transaction(connection, self._create_schema))
        d.addCallbacks(self._opened, self._open_failed, errbackArgs=(connection,))
        return d

    def _connect(self, connection: txpostgres.Connection, reactor: Any) -> Deferred[Any]:
        timed_out = []

        def abort() -> None:
            timed_out.append(True)
            _close_connection(connection)

        timeout = reactor.callLater(self._connect_timeout, abort)

        def done(result: object) -> object:
            if timeout.active():
                timeout.cancel()
            if timed_out and isinstance(result, Failure):
                raise psycopg2.OperationalError(
                    f"no answer within {self._connect_timeout:g} s"
                )
            return result

        d = connection.connect(self.dsn)
        d.addBoth(done)
        return d

    def _connect_failed(self, failure: Failure) -> Failure:
        if failure.check(StoreError):
            return failure
        raise StoreUnavailable(
            f"cannot connect to PostgreSQL at {self._shown}: {self._describe(failure)}"
        )

    def _opened(self, _: object) -> None:
        self._ready = True

    def _open_failed(self, failure: Failure, connection: txpostgres.Connection) -> Failure:
        # A close() during open() has cleaned up already, and maybe a new open() began.
        if connection is self._connection:
            self._disconnect()
        return self._translate(failure)

    def close(self) -> Deferred[None]:
        self._disconnect()
        return succeed(None)

    def _disconnect(self) -> None:
        connection, detector = self._connection, self._detector
        self._connection = self._detector = None
        self._ready = False
        if detector is not None:
            detector.stop()
        if connection is not None:
            _close_connection(connection)

    # -- errors -------------------------------------------------------------

    def _describe(self, failure: Failure) -> str:
        """One line about a failure, without the DSN's password."""
        value = failure.value
        diag = getattr(value, "diag", None)
        text = getattr(diag, "message_primary", None) or str(value)
        text = text.strip().splitlines()[0] if text.strip() else type(value).__name__
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _translate(self, failure: Failure) -> Failure:
        if failure.check(StoreError):
            return failure
        if failure.check(*_UNAVAILABLE):
            raise StoreUnavailable(f"PostgreSQL unavailable: {self._describe(failure)}")
        if failure.check(psycopg2.Error):
            raise StoreError(f"PostgreSQL error: {self._describe(failure)}")
        return failure

    def _run(
        self, interaction: Callable[..., Coroutine[Any, Any, T]], *args: Any
    ) -> Deferred[T]:
        if not self._ready or self._connection is None:
            return fail(StoreUnavailable("the store is not open"))
        d = _in_transaction(self._connection, interaction, *args)
        d.addErrback(self._translate)
        return d

    # -- schema -------------------------------------------------------------

    async def _create_schema(self, cursor: Any) -> None:
        table = self.columns.table
        await cursor.execute(_SCHEMA_LOCK)
        if not await _relation_exists(cursor, "version"):
            await cursor.execute(PG_VERSION_TABLE)
        await cursor.execute("SELECT table_version FROM version WHERE table_name = %s", (table,))
        found = cursor.fetchone()
        version = None if found is None else found[0]
        if await _relation_exists(cursor, folded(table)):
            if version != TABLE_VERSION:
                raise StoreError(
                    f"table {table} has version {version}, expected {TABLE_VERSION}"
                    " (upgrade it with opensips-cli or OpenSIPS's migration scripts)"
                )
            await self._check_columns(cursor)
        else:
            if version is None:
                await cursor.execute(
                    "INSERT INTO version (table_name, table_version) VALUES (%s, %s)",
                    (table, TABLE_VERSION),
                )
            elif version != TABLE_VERSION:
                raise StoreError(
                    f"version row of table {table} says {version}, expected {TABLE_VERSION}"
                )
            await cursor.execute(pg_registrant_table(self.columns))
            await cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", (self._table,))
            # The sequence name comes back quoted as needed.
            await cursor.execute(
                f"ALTER SEQUENCE {cursor.fetchone()[0]} MAXVALUE 2147483647 CYCLE"
            )
            self.log.info(
                "created table {table} (version {version})", table=table, version=TABLE_VERSION
            )
        await cursor.execute(PG_RUNTIME_TABLE)

    async def _check_columns(self, cursor: Any) -> None:
        await cursor.execute(
            "SELECT attname FROM pg_attribute"
            " WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped",
            (self._table,),
        )
        present = {row[0] for row in cursor.fetchall()}
        for logical in LOGICAL_COLUMNS:
            name = self.columns.physical(logical)
            if folded(name) not in present:
                raise StoreError(
                    f"table {self.columns.table} has no column {name} (the {logical} column)"
                )

    # -- the registrant table ----------------------------------------------

    def load_rows(self) -> Deferred[list[dict[str, object]]]:
        return self._run(self._load_rows)

    async def _load_rows(self, cursor: Any) -> list[dict[str, object]]:
        rows: list[dict[str, object]] = []
        async for chunk in _fetch_chunks(cursor, self._select_all):
            rows.extend(dict(zip(LOGICAL_COLUMNS, row)) for row in chunk)
        return rows

    def load(self, validate: Validate) -> Deferred[LoadResult]:
        return self._run(self._load, validate)

    async def _load(self, cursor: Any, validate: Validate) -> LoadResult:
        # Validating chunk by chunk keeps the reactor turning between fetches.
        result = LoadResult()
        async for chunk in _fetch_chunks(cursor, self._select_all):
            part = validate_rows([dict(zip(LOGICAL_COLUMNS, row)) for row in chunk], validate)
            result.records.extend(part.records)
            result.skipped.extend(part.skipped)
        return result

    def load_row(self, key: RecordKey) -> Deferred[dict[str, object] | None]:
        return self._run(self._load_row, key)

    async def _load_row(self, cursor: Any, key: RecordKey) -> dict[str, object] | None:
        await cursor.execute(
            f"{self._select} WHERE {self._where_key}",
            key_params(key),
        )
        row = cursor.fetchone()
        return None if row is None else dict(zip(LOGICAL_COLUMNS, row))

    def set_state(self, key: RecordKey, enabled: bool) -> Deferred[None]:
        return self._run(self._set_state, key, enabled)

    async def _set_state(self, cursor: Any, key: RecordKey, enabled: bool) -> None:
        await cursor.execute(
            f"UPDATE {self._table} SET {pg_identifier(self.columns.state)} = %s"
            f" WHERE {self._where_key}",
            (0 if enabled else 1, *key_params(key)),
        )
        if cursor.rowcount == 0:
            raise NoSuchRow("No such registrant")

    def upsert(self, record: RecordConfig) -> Deferred[None]:
        return self._run(self._upsert, record)

    async def _upsert(self, cursor: Any, record: RecordConfig) -> None:
        # UPDATE then INSERT in one transaction: no reliance on an ON CONFLICT
        # target matching whatever unique index an existing table has.
        row = row_from_record(record)
        names = [pg_identifier(self.columns.physical(c)) for c in row]
        assignments = ", ".join(f"{n} = %s" for n in names)
        await cursor.execute(
            f"UPDATE {self._table} SET {assignments} WHERE {self._where_key}",
            (*row.values(), *key_params(record.key)),
        )
        if cursor.rowcount == 0:
            await cursor.execute(
                f"INSERT INTO {self._table} ({', '.join(names)})"
                f" VALUES ({', '.join('%s' for _ in names)})",
                tuple(row.values()),
            )

    def delete(self, key: RecordKey) -> Deferred[None]:
        return self._run(self._delete, key)

    async def _delete(self, cursor: Any, key: RecordKey) -> None:
        await cursor.execute(f"DELETE FROM {self._table} WHERE {self._where_key}",
                             key_params(key))
        if cursor.rowcount == 0:
            raise NoSuchRow("No such registrant")

    # -- our runtime table --------------------------------------------------

    def save_runtime(self, states: Sequence[RuntimeState]) -> Deferred[None]:
        # One INSERT may not touch a key twice; the last state of a key wins.
        latest = list({s.key: s for s in states}.values())
        return self._run(self._save_runtime, latest)

    async def _save_runtime(self, cursor: Any, states: list[RuntimeState]) -> None:
        # psycopg2 has no executemany on asynchronous connections: multi-row VALUES.
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in RUNTIME_COLUMNS[3:])
        row_marks = f"({', '.join('%s' for _ in RUNTIME_COLUMNS)})"
        for start in range(0, len(states), INSERT_BATCH):
            batch = states[start:start + INSERT_BATCH]
            await cursor.execute(
                f"INSERT INTO {RUNTIME_TABLE} ({', '.join(RUNTIME_COLUMNS)})"
                f" VALUES {', '.join(row_marks for _ in batch)}"
                f" ON CONFLICT (aor, binding_uri, registrar) DO UPDATE SET {updates}",
                [value for state in batch for value in runtime_params(state)],
            )

    def load_runtime(self) -> Deferred[dict[RecordKey, RuntimeState]]:
        return self._run(self._load_runtime)

    async def _load_runtime(self, cursor: Any) -> dict[RecordKey, RuntimeState]:
        states = {}
        select = f"SELECT {', '.join(RUNTIME_COLUMNS)} FROM {RUNTIME_TABLE}"
        async for chunk in _fetch_chunks(cursor, select):
            for row in chunk:
                state = runtime_from_row(row)
                states[state.key] = state
        return states

    def delete_runtime(self, key: RecordKey) -> Deferred[None]:
        return self._run(self._delete_runtime, key)

    async def _delete_runtime(self, cursor: Any, key: RecordKey) -> None:
        await cursor.execute(
            f"DELETE FROM {RUNTIME_TABLE} WHERE aor = %s AND binding_uri = %s AND registrar = %s",
            key_params(key),
        )


def _in_transaction(
    connection: txpostgres.Connection,
    interaction: Callable[..., Coroutine[Any, Any, T]],
    *args: Any,
) -> Deferred[T]:
    """``interaction(cursor, *args)`` between BEGIN and COMMIT, queued on the connection.

    Like txpostgres' runInteraction (its lock, its detector), except that a
    ROLLBACK failing on a connection that died takes the first error's place
    quietly instead of being logged as a second, unhandled one.
    """
    return connection.lock.run(
        connection.detector.callChecking,
        lambda: ensureDeferred(_transaction(connection, interaction, *args)),
    )


async def _transaction(
    connection: txpostgres.Connection,
    interaction: Callable[..., Coroutine[Any, Any, T]],
    *args: Any,
) -> T:
    cursor = connection.cursor()
    await cursor.execute("BEGIN")
    try:
        result = await interaction(cursor, *args)
    except BaseException:
        try:
            await cursor.execute("ROLLBACK")
        except psycopg2.Error:
            # The connection died with the transaction, which the server then
            # rolled back; the first error goes on and makes the detector reconnect.
            pass
        raise
    await cursor.execute("COMMIT")
    return result


async def _relation_exists(cursor: Any, name: str) -> bool:
    await cursor.execute("SELECT to_regclass(%s)", (quote_identifier(name),))
    return cursor.fetchone()[0] is not None


async def _fetch_chunks(cursor: Any, select: str) -> Any:
    """The rows of ``select`` in chunks, through a cursor of the interaction's transaction."""
    await cursor.execute(f"DECLARE uac_rows NO SCROLL CURSOR FOR {select}")
    while True:
        await cursor.execute(f"FETCH {FETCH_SIZE} FROM uac_rows")
        chunk = cursor.fetchall()
        yield chunk
        if len(chunk) < FETCH_SIZE:
            # The commit closes the SQL cursor.
            return

