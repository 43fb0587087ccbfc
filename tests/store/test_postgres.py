"""What only the PostgreSQL store does: folded names, outages, big loads, make_store."""

from __future__ import annotations

import gc
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest
import pytest_twisted
from twisted.internet import defer, protocol, reactor, task
from twisted.logger import ILogObserver, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface import provider

from tests.peers.postgres import Postgres
from tests.store.conftest import PostgresBackend
from tests.store.contract import record, validate
from uacregistrant.registrant.record import RecordKey
from uacregistrant.store import make_store
from uacregistrant.store.interface import StoreError, StoreUnavailable
from uacregistrant.store.postgres import PostgresStore, _Detector
from uacregistrant.store.rows import Columns
from uacregistrant.store.url import parse_db_url

# Generous: a call that "fails fast" answers in milliseconds; a hang meets this.
FAST = 5.0


@pytest.fixture
def backend(postgres: Postgres, pg_dsn: str) -> PostgresBackend:
    return PostgresBackend(postgres, pg_dsn)


@pytest.fixture
def other_db(postgres: Postgres) -> Iterator[PostgresBackend]:
    name = "test_" + uuid.uuid4().hex[:12]
    dsn = postgres.create_database(name)
    try:
        yield PostgresBackend(postgres, dsn)
    finally:
        if not postgres.running():
            postgres.start()
        postgres.drop_database(name)


@pytest.fixture
def logged_failures() -> Iterator[list[Any]]:
    """Every failure logged while the test runs (Unhandled Error, unhandled Deferreds...)."""
    failures: list[Any] = []

    @provider(ILogObserver)
    def observe(event: dict[str, Any]) -> None:
        # Twisted's own legacy log.err events carry "failure", not "log_failure".
        failure = event.get("log_failure", event.get("failure"))
        if failure is not None:
            failures.append(failure)

    globalLogPublisher.addObserver(observe)
    try:
        yield failures
    finally:
        globalLogPublisher.removeObserver(observe)


def only_connection_noise(failures: list[Any]) -> bool:
    """Twisted reports the server closing an idle connection; nothing else may be logged."""
    gc.collect()  # an unhandled error in a Deferred is logged when it is collected
    return all(f.check(psycopg2.OperationalError) for f in failures)


async def timed(d: defer.Deferred[Any], seconds: float = FAST) -> Any:
    return await d.addTimeout(seconds, reactor)


def new_delayed_calls(before: set[Any]) -> list[Any]:
    return [c for c in reactor.getDelayedCalls() if c not in before and c.active()]


async def open_store(dsn: str, columns: Columns = Columns()) -> PostgresStore:
    store = PostgresStore(dsn, columns, reactor=reactor)
    await timed(store.open())
    return store


def recovery(store: PostgresStore) -> defer.Deferred[None]:
    recovered: defer.Deferred[None] = defer.Deferred()
    store.add_recovery_handler(lambda: None if recovered.called else recovered.callback(None))
    return recovered


@pytest_twisted.ensureDeferred
async def test_created_table_has_opensips_shape(backend: PostgresBackend,
                                                other_db: PostgresBackend) -> None:
    store = await open_store(backend.dsn)
    await store.close()
    other_db.create_opensips_table(version=3)
    ours = backend.schema_snapshot("registrant")
    assert ours == other_db.schema_snapshot("registrant")
    assert "binding_uri" in backend.column_names("registrant")
    assert ("registrant_registrant_idx", "UNIQUE (aor, binding_uri, registrar)") in ours
    assert (2147483647, True) in ours
    assert backend.version_rows() == other_db.version_rows() == [("registrant", 3)]


@pytest_twisted.ensureDeferred
async def test_opensips_created_table_works_unchanged(backend: PostgresBackend) -> None:
    backend.create_opensips_table(version=3)
    # OpenSIPS's own SQL, unquoted: binding_URI is the column binding_uri.
    backend.execute(
        "INSERT INTO registrant (registrar, aor, binding_URI, expiry, password)"
        " VALUES ('sip:registrar.example.com', 'sip:a@example.com', 'sip:a@127.0.0.1', 600,"
        " 'pw')")
    snapshot = backend.schema_snapshot("registrant")
    # Any spelling of the configured name means the same column, as unquoted SQL does.
    for columns in (Columns(), Columns(binding_uri="BINDING_URI", registrar="Registrar")):
        store = await open_store(backend.dsn, columns)
        try:
            [row] = await store.load_rows()
            assert row["binding_uri"] == "sip:a@127.0.0.1"
            assert validate(row).password == "pw"
            await store.set_state(validate(row).key, False)
            await store.upsert(record(2))
            assert (await store.load_row(record(2).key))["binding_uri"] == record(2).binding_uri
            await store.delete(record(2).key)
        finally:
            await store.close()
    assert backend.query("SELECT state FROM registrant") == [(1,)]
    assert backend.schema_snapshot("registrant") == snapshot
    assert backend.version_rows() == [("registrant", 3)]


def test_make_store_postgres() -> None:
    for url in ("postgres://alice:pa55@127.0.0.1:5432/opensips",
                "postgresql://alice:pa55@127.0.0.1:5432/opensips"):
        store = make_store(parse_db_url(url), Columns(table="t"), reactor)
        assert isinstance(store, PostgresStore)
        assert store.dsn == url
        assert store.columns == Columns(table="t")


@pytest_twisted.ensureDeferred
async def test_no_password_in_connection_errors(postgres: Postgres) -> None:
    # The password doubles as the database's name: libpq's "database ... does
    # not exist" would show it, had the store not hidden it.
    dsn = f"postgres://postgres:nosuchdb%21@127.0.0.1:{postgres.port}/nosuchdb!"
    with pytest.raises(StoreUnavailable) as caught:
        await open_store(dsn)
    text = str(caught.value)
    assert 'database "***" does not exist' in text
    assert f"postgres://postgres:***@127.0.0.1:{postgres.port}/" in text

    backend_less = f"postgres://nobody:pa55word@127.0.0.1:{postgres.port}/postgres"
    with pytest.raises(StoreUnavailable) as caught:
        await open_store(backend_less)
    assert "pa55word" not in str(caught.value)
    assert 'role "nobody" does not exist' in str(caught.value)


@pytest_twisted.ensureDeferred
async def test_unreachable_server_error_has_no_password() -> None:
    listening = reactor.listenTCP(0, protocol.ServerFactory(), interface="127.0.0.1")
    port = listening.getHost().port
    await listening.stopListening()
    with pytest.raises(StoreUnavailable) as caught:
        await open_store(f"postgres://alice:s3cr3t@127.0.0.1:{port}/opensips")
    assert "s3cr3t" not in str(caught.value)
    assert "cannot connect to PostgreSQL at postgres://alice:***@127.0.0.1" in str(caught.value)


@pytest_twisted.ensureDeferred
async def test_silent_server_times_out() -> None:
    # Accepts the TCP connection and never says a word.
    listening = reactor.listenTCP(0, protocol.Factory.forProtocol(protocol.Protocol),
                                  interface="127.0.0.1")
    try:
        before = set(reactor.getDelayedCalls())
        store = PostgresStore(
            f"postgres://alice:s3cr3t@127.0.0.1:{listening.getHost().port}/x", Columns(),
            reactor=reactor, connect_timeout=0.2)
        with pytest.raises(StoreUnavailable, match="no answer within 0.2 s") as caught:
            await timed(store.open())
        assert "s3cr3t" not in str(caught.value)
        assert new_delayed_calls(before) == []
    finally:
        await listening.stopListening()


@pytest_twisted.ensureDeferred
async def test_server_stop_fails_fast_then_recovers(postgres: Postgres, pg_dsn: str,
                                                    logged_failures: list[Any]) -> None:
    store = await open_store(pg_dsn)
    try:
        await store.upsert(record(1))
        recovered = recovery(store)
        postgres.stop()
        try:
            for _ in range(3):
                started = reactor.seconds()
                with pytest.raises(StoreUnavailable):
                    await timed(store.load_rows())
                with pytest.raises(StoreUnavailable):
                    await timed(store.set_state(record(1).key, False))
                assert reactor.seconds() - started < 1.0
            assert not recovered.called
        finally:
            postgres.start()
        await timed(recovered, 30)
        await store.set_state(record(1).key, False)
        [row] = await store.load_rows()
        assert row["state"] == 1
    finally:
        await store.close()
    assert only_connection_noise(logged_failures)


@pytest_twisted.ensureDeferred
async def test_terminated_backend_fails_fast_then_recovers(
    backend: PostgresBackend, logged_failures: list[Any]
) -> None:
    store = await open_store(backend.dsn)
    try:
        await store.upsert(record(1))
        recovered = recovery(store)
        # pg_terminate_backend with a timeout waits until the backend is gone.
        killed = backend.query(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000))"
            " FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (backend.dbname,))
        assert killed == [(1,)]
        with pytest.raises(StoreUnavailable):
            await timed(store.load_rows())
        await timed(recovered, 30)
        assert len(await store.load_rows()) == 1
    finally:
        await store.close()
    assert only_connection_noise(logged_failures)


@pytest_twisted.ensureDeferred
async def test_kill_backends_while_idle_recovers(
    postgres: Postgres, backend: PostgresBackend, logged_failures: list[Any]
) -> None:
    store = await open_store(backend.dsn)
    try:
        recovered = recovery(store)
        assert postgres.kill_backends(backend.dbname) == 1
        # Noticed by the reactor on the idle socket, no call needed.
        await timed(recovered, 30)
        # That is the one Unhandled Error Twisted logs (txpostgres' poll raises in doRead).
        assert [f.type for f in logged_failures] == [psycopg2.OperationalError]
        await store.upsert(record(1))
        assert len(await store.load_rows()) == 1
    finally:
        await store.close()
    assert only_connection_noise(logged_failures)


@pytest_twisted.ensureDeferred
async def test_open_while_down_can_be_retried(postgres: Postgres, pg_dsn: str) -> None:
    store = PostgresStore(pg_dsn, Columns(), reactor=reactor)
    before = set(reactor.getDelayedCalls())
    postgres.stop()
    try:
        with pytest.raises(StoreUnavailable, match="cannot connect to PostgreSQL"):
            await timed(store.open())
        with pytest.raises(StoreUnavailable):
            await store.load_rows()
        # The caller owns the retry: the store schedules nothing of its own.
        assert new_delayed_calls(before) == []
    finally:
        postgres.start()
    await timed(store.open())
    try:
        assert await store.load_rows() == []
    finally:
        await store.close()


@pytest_twisted.ensureDeferred
async def test_close_stops_reconnecting(postgres: Postgres, pg_dsn: str) -> None:
    store = await open_store(pg_dsn)
    before = set(reactor.getDelayedCalls())
    postgres.stop()
    try:
        with pytest.raises(StoreUnavailable):
            await timed(store.load_rows())
        assert new_delayed_calls(before) != []  # the next reconnect attempt
        await store.close()
        assert new_delayed_calls(before) == []
        with pytest.raises(StoreUnavailable):
            await store.load_rows()
    finally:
        postgres.start()


@pytest_twisted.ensureDeferred
async def test_100000_rows_load_without_starving_the_reactor(backend: PostgresBackend) -> None:
    store = await open_store(backend.dsn)
    try:
        backend.execute(
            "INSERT INTO registrant (registrar, aor, binding_uri, expiry)"
            " SELECT 'sip:127.0.0.1:5080', 'sip:user' || g || '@127.0.0.1',"
            " 'sip:user' || g || '@127.0.0.1:5062', 3600 FROM generate_series(1, 100000) AS g")
        ticks: list[float] = []
        ticker = task.LoopingCall(lambda: ticks.append(reactor.seconds()))
        ticker.start(0, now=False)
        started = reactor.seconds()
        try:
            rows = await timed(store.load_rows(), 60)
        finally:
            ticker.stop()
        took = reactor.seconds() - started
        assert len(rows) == 100000
        assert rows[-1]["aor"] == "sip:user100000@127.0.0.1"
        # 50 fetches of 2000 rows: the reactor gets control back between them.
        # Converting all rows in one go holds it for most of the load instead.
        assert len(ticks) >= 20
        assert max(b - a for a, b in zip(ticks, ticks[1:])) < took / 4
    finally:
        await store.close()


@pytest_twisted.ensureDeferred
async def test_load_validates_chunk_by_chunk(backend: PostgresBackend) -> None:
    store = await open_store(backend.dsn)
    try:
        backend.execute(
            "INSERT INTO registrant (registrar, aor, binding_uri, expiry)"
            " SELECT 'sip:127.0.0.1:5080', 'sip:user' || g || '@127.0.0.1',"
            " 'sip:user' || g || '@127.0.0.1:5062', CASE WHEN g % 1000 = 0 THEN 50 ELSE 3600 END"
            " FROM generate_series(1, 5000) AS g")
        ticks: list[None] = []
        ticker = task.LoopingCall(lambda: ticks.append(None))
        ticker.start(0, now=False)
        try:
            result = await timed(store.load(validate), 60)
        finally:
            ticker.stop()
        assert len(result.records) == 4995
        assert [reason for _, reason in result.skipped] == [
            "expiry 50 not above timer_interval 100"] * 5
        assert len(ticks) >= 2
    finally:
        await store.close()


@pytest_twisted.ensureDeferred
async def test_concurrent_calls_serialise(backend: PostgresBackend) -> None:
    store = await open_store(backend.dsn)
    try:
        await defer.gatherResults([store.upsert(record(n)) for n in range(50)],
                                  consumeErrors=True)
        assert len(await store.load_rows()) == 50
    finally:
        await store.close()


@pytest_twisted.ensureDeferred
async def test_two_nodes_opening_together_create_once(backend: PostgresBackend) -> None:
    stores = [PostgresStore(backend.dsn, Columns(), reactor=reactor) for _ in range(4)]
    await defer.gatherResults([s.open() for s in stores], consumeErrors=True)
    try:
        assert backend.version_rows() == [("registrant", 3)]
    finally:
        for store in stores:
            await store.close()


@pytest_twisted.ensureDeferred
async def test_sql_error_is_store_error_and_connection_stays(backend: PostgresBackend) -> None:
    store = await open_store(backend.dsn)
    try:
        backend.execute("DROP TABLE registrant")
        with pytest.raises(StoreError, match="does not exist") as caught:
            await store.load_rows()
        assert not isinstance(caught.value, StoreUnavailable)
        assert await store.load_runtime() == {}
    finally:
        await store.close()


@pytest_twisted.ensureDeferred
async def test_error_text_has_no_row_values(backend: PostgresBackend) -> None:
    store = await open_store(backend.dsn)
    try:
        # A URI may carry a password; the server's DETAIL line would quote it.
        secret = "sip:alice:hunter2@example.com"
        with pytest.raises(StoreError) as caught:
            await store.upsert(record(1, aor=secret, password="x" * 65))
        assert "hunter2" not in str(caught.value)
        assert "too long" in str(caught.value)
    finally:
        await store.close()


@pytest_twisted.ensureDeferred
async def test_close_during_open(pg_dsn: str) -> None:
    store = PostgresStore(pg_dsn, Columns(), reactor=reactor)
    opening = store.open()
    await store.close()
    with pytest.raises(StoreUnavailable):
        await timed(opening)
    with pytest.raises(StoreUnavailable):
        await store.load_rows()
    await timed(store.open())
    try:
        assert await store.load_rows() == []
    finally:
        await store.close()


@pytest_twisted.ensureDeferred
async def test_reopen_after_close(pg_dsn: str) -> None:
    store = await open_store(pg_dsn)
    await store.upsert(record(1))
    await store.close()
    await timed(store.open())
    try:
        with pytest.raises(StoreError, match="already open"):
            await store.open()
        assert await store.load_row(record(1).key) is not None
        assert await store.load_row(RecordKey("sip:x@y", "sip:x@z", "sip:y")) is None
    finally:
        await store.close()


class FakeConnection:
    """What the detector needs of the connection it reconnects."""

    def __init__(self) -> None:
        self.closed = 0

    def pollable(self) -> object:
        return object()

    def close(self) -> None:
        self.closed += 1


def detector_on_clock(attempts: list[defer.Deferred[None]]) -> tuple[Any, task.Clock]:
    clock = task.Clock()

    def connect() -> defer.Deferred[None]:
        attempts.append(defer.Deferred())
        return attempts[-1]

    detector = _Detector(connect, clock, "postgres://db")
    detector.setReconnectable(FakeConnection())
    return detector, clock


def test_detector_backs_off_until_connected() -> None:
    attempts: list[defer.Deferred[None]] = []
    detector, clock = detector_on_clock(attempts)
    recovered: list[None] = []
    detector.addRecoveryHandler(lambda: recovered.append(None))
    detector.checkForDeadConnection(Failure(psycopg2.OperationalError("server closed")))
    assert detector.connectionIsDead and attempts == []
    clock.advance(0)
    attempts[0].errback(psycopg2.OperationalError("refused"))
    [retry] = clock.getDelayedCalls()
    assert 1.0 < retry.getTime() < 3.0
    clock.advance(retry.getTime())
    assert len(attempts) == 2 and recovered == []
    attempts[1].callback(None)
    assert recovered == [None]
    assert not detector.connectionIsDead
    assert clock.getDelayedCalls() == []
    assert detector.reconnectable.closed == 2


def test_detector_stop_leaves_nothing_scheduled() -> None:
    attempts: list[defer.Deferred[None]] = []
    detector, clock = detector_on_clock(attempts)
    detector.checkForDeadConnection(Failure(psycopg2.InterfaceError("connection already closed")))
    clock.advance(0)
    detector.stop()
    # The attempt in flight fails when the store closes the connection.
    attempts[0].errback(psycopg2.OperationalError("closed"))
    assert clock.getDelayedCalls() == []
    assert len(attempts) == 1


def test_detector_ignores_sql_errors() -> None:
    attempts: list[defer.Deferred[None]] = []
    detector, clock = detector_on_clock(attempts)
    detector.checkForDeadConnection(Failure(psycopg2.ProgrammingError("syntax error")))
    assert not detector.connectionIsDead
    assert clock.getDelayedCalls() == []
