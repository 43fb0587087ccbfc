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
from typing import Any, ClassVar, TypeVar
from urllib.parse import unquote, urlsplit

import psycopg2
from twisted.internet import error
from twisted.internet.defer import Deferred, ensureDeferred, fail, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from txpostgres import reconnection, txpostgres
from zope.interface import implementer

from uacregistrant.registrant.record import RecordConfig, RecordKey
from uacregistrant.store.interface import (
    IRegistrantStore,
    LoadResult,
    NoSuchRow,
    RuntimeState,
    StoreError,
    StoreUnavailable,
    Validate,
    validate_rows,
)
from uacregistrant.store.dialect import Dialect, Statements, Steps, open_schema
from uacregistrant.store.rows import LOGICAL_COLUMNS, Columns, row_from_record
from uacregistrant.store.schema import (
    VERSION,
    key_params,
    registrant_table,
    runtime_from_row,
    runtime_params,
)
from uacregistrant.store.sql_ascii import install as install_sql_ascii_codec
from uacregistrant.store.url import redact_url

# Text of SQL_ASCII databases as UTF-8, bad bytes left to the row validator.
install_sql_ascii_codec()

T = TypeVar("T")

# Rows per FETCH: the reactor runs between two fetches, so a 100,000-row table
# loads without freezing the SIP timers.
FETCH_SIZE = 2000
# Runtime states per INSERT statement (12 parameters each).
INSERT_BATCH = 500

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


class PostgresDialect(Dialect):
    """scripts/postgres/*-create.sql; names folded as OpenSIPS's unquoted SQL means them."""

    mark = "%s"
    types: ClassVar[dict[str, str]] = {
        "serial": "SERIAL PRIMARY KEY",
        "string": "VARCHAR({n})",
        "int": "INTEGER",
        "uint": "INTEGER",
        "bigint": "BIGINT",
        "double": "DOUBLE PRECISION",
        "text": "TEXT",
        "key": "TEXT",
    }
    table_exists_sql = "SELECT 1 WHERE to_regclass(%s) IS NOT NULL"
    columns_sql = (
        "SELECT attname FROM pg_attribute"
        " WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped"
    )

    def fold(self, name: str) -> str:
        return folded(name)

    def relation_param(self, name: str) -> str:
        return self.identifier(name)

    def column_present(self, name: str, present: set[str]) -> bool:
        return folded(name) in present

    def schema_lock(self) -> tuple[str, tuple[()]]:
        return "SELECT pg_advisory_xact_lock(hashtext('uac_registrant schema'))", ()

    def after_create(self, statements: Statements) -> Steps:
        # OpenSIPS's script makes the id sequence wrap at the INTEGER maximum;
        # the sequence name comes back quoted as needed.
        [(sequence,)] = yield "SELECT pg_get_serial_sequence(%s, 'id')", (statements.table,)
        yield f"ALTER SEQUENCE {sequence} MAXVALUE 2147483647 CYCLE", ()


POSTGRES = PostgresDialect()
PG_VERSION_TABLE = POSTGRES.create_table(VERSION)


def pg_registrant_table(columns: Columns) -> str:
    """scripts/postgres/registrant-create.sql (version 3) with the configured names."""
    return POSTGRES.create_table(registrant_table(columns))


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
    """``PostgresStore(dsn, columns, *, reactor)`` on one txpostgres connection.

    ``dsn`` is a libpq URL (``postgres://user:password@host:port/dbname``).
    A failed ``open()`` may be retried on the same store; after ``close()``
    every call fails with StoreUnavailable until the next ``open()``.
    """

    log = Logger()
    # A server that is down may come back: start-up waits for it.
    retry_unavailable = True

    def __init__(
        self,
        dsn: str,
        columns: Columns,
        *,
        reactor: Any,
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
        self._sql = Statements(POSTGRES, columns)

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
        await _run_steps(cursor, open_schema(self._sql))

    # -- the registrant table ----------------------------------------------

    def load_rows(self) -> Deferred[list[dict[str, object]]]:
        return self._run(self._load_rows)

    async def _load_rows(self, cursor: Any) -> list[dict[str, object]]:
        rows: list[dict[str, object]] = []
        async for chunk in _fetch_chunks(cursor, self._sql.select_all):
            rows.extend(dict(zip(LOGICAL_COLUMNS, row)) for row in chunk)
        return rows

    def load(self, validate: Validate) -> Deferred[LoadResult]:
        return self._run(self._load, validate)

    async def _load(self, cursor: Any, validate: Validate) -> LoadResult:
        # Validating chunk by chunk keeps the reactor turning between fetches.
        result = LoadResult()
        async for chunk in _fetch_chunks(cursor, self._sql.select_all):
            part = validate_rows([dict(zip(LOGICAL_COLUMNS, row)) for row in chunk], validate)
            result.extend(part)
        return result

    def load_row(self, key: RecordKey) -> Deferred[dict[str, object] | None]:
        return self._run(self._load_row, key)

    async def _load_row(self, cursor: Any, key: RecordKey) -> dict[str, object] | None:
        await cursor.execute(self._sql.select_key, key_params(key))
        row = cursor.fetchone()
        return None if row is None else dict(zip(LOGICAL_COLUMNS, row))

    def set_state(self, key: RecordKey, enabled: bool) -> Deferred[None]:
        return self._run(self._set_state, key, enabled)

    async def _set_state(self, cursor: Any, key: RecordKey, enabled: bool) -> None:
        await cursor.execute(self._sql.set_state, (0 if enabled else 1, *key_params(key)))
        if cursor.rowcount == 0:
            raise NoSuchRow("No such registrant")

    def upsert(self, record: RecordConfig) -> Deferred[None]:
        return self._run(self._upsert, record)

    async def _upsert(self, cursor: Any, record: RecordConfig) -> None:
        # UPDATE then INSERT in one transaction: no reliance on an ON CONFLICT
        # target matching whatever unique index an existing table has.
        row = row_from_record(record)
        await cursor.execute(self._sql.update_row(row), (*row.values(), *key_params(record.key)))
        if cursor.rowcount == 0:
            await cursor.execute(self._sql.insert_row(row), tuple(row.values()))

    def delete(self, key: RecordKey) -> Deferred[None]:
        return self._run(self._delete, key)

    async def _delete(self, cursor: Any, key: RecordKey) -> None:
        await cursor.execute(self._sql.delete, key_params(key))
        if cursor.rowcount == 0:
            raise NoSuchRow("No such registrant")

    # -- our runtime table --------------------------------------------------

    def save_runtime(self, states: Sequence[RuntimeState]) -> Deferred[None]:
        # One INSERT may not touch a key twice; the last state of a key wins.
        latest = list({s.key: s for s in states}.values())
        return self._run(self._save_runtime, latest)

    async def _save_runtime(self, cursor: Any, states: list[RuntimeState]) -> None:
        # psycopg2 has no executemany on asynchronous connections: multi-row VALUES.
        for start in range(0, len(states), INSERT_BATCH):
            batch = states[start:start + INSERT_BATCH]
            await cursor.execute(
                self._sql.save_runtime(len(batch)),
                [value for state in batch for value in runtime_params(state)],
            )

    def load_runtime(self) -> Deferred[dict[RecordKey, RuntimeState]]:
        return self._run(self._load_runtime)

    async def _load_runtime(self, cursor: Any) -> dict[RecordKey, RuntimeState]:
        states = {}
        async for chunk in _fetch_chunks(cursor, self._sql.select_runtime):
            for row in chunk:
                state = runtime_from_row(row)
                states[state.key] = state
        return states

    def delete_runtime(self, key: RecordKey) -> Deferred[None]:
        return self._run(self._delete_runtime, key)

    async def _delete_runtime(self, cursor: Any, key: RecordKey) -> None:
        await cursor.execute(self._sql.delete_runtime, key_params(key))


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


async def _run_steps(cursor: Any, steps: Steps) -> None:
    """Drive ``steps`` on txpostgres' asynchronous cursor."""
    rows: list[tuple[Any, ...]] | None = None
    while True:
        try:
            sql, params = steps.send(rows)  # type: ignore[arg-type]
        except StopIteration:
            return
        await cursor.execute(sql, params or None)
        rows = cursor.fetchall() if cursor.description else []


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

