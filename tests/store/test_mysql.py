"""What only the MySQL store does: OpenSIPS's MySQL table, the URL, outages, idle kills."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from tests.peers import free_port
from tests.peers.mariadb import PASSWORD, MariaDB
from tests.store.conftest import MySQLBackend
from tests.store.contract import record, runtime, validate
from uacregistrant.store import make_store
from uacregistrant.store.interface import NoSuchRow, StoreError, StoreUnavailable
from uacregistrant.store.mysql import MySQLStore
from uacregistrant.store.url import mysql_params
from uacregistrant.store.rows import Columns
from uacregistrant.store.url import parse_db_url

# Generous: a call that "fails fast" answers in milliseconds; a hang meets this.
FAST = 5.0


@pytest.fixture
def backend(mariadb: MariaDB, mysql_url: str) -> MySQLBackend:
    return MySQLBackend(mariadb, mysql_url)


async def timed(d: defer.Deferred[Any], seconds: float = FAST) -> Any:
    return await d.addTimeout(seconds, reactor)


async def open_store(url: str, columns: Columns = Columns()) -> MySQLStore:
    store = MySQLStore(mysql_params(url), columns, reactor=reactor)
    await timed(store.open())
    return store


@pytest_twisted.ensureDeferred
async def test_created_table_has_opensips_shape(mariadb: MariaDB, backend: MySQLBackend) -> None:
    store = await open_store(backend.url)
    await store.close()
    name = "theirs_" + backend.dbname
    theirs = MySQLBackend(mariadb, mariadb.create_database(name))
    try:
        theirs.create_opensips_table(version=3)
        assert backend.schema_snapshot("registrant") == theirs.schema_snapshot("registrant")
        assert ("registrant_idx", 0, 2, "binding_URI") in backend.schema_snapshot("registrant")
        assert backend.version_rows() == theirs.version_rows() == [("registrant", 3)]
    finally:
        mariadb.drop_database(name)


@pytest_twisted.ensureDeferred
async def test_opensips_created_table_works_unchanged(backend: MySQLBackend) -> None:
    backend.create_opensips_table(version=3)
    backend.execute(
        "INSERT INTO registrant (registrar, aor, binding_URI, expiry, password)"
        " VALUES ('sip:registrar.example.com', 'sip:a@example.com', 'sip:a@127.0.0.1', 600, 'pw')")
    snapshot = backend.schema_snapshot("registrant")
    # MySQL column names are case-insensitive: any spelling finds the column.
    for columns in (Columns(), Columns(binding_uri="BINDING_URI", registrar="Registrar")):
        store = await open_store(backend.url, columns)
        try:
            [row] = await store.load_rows()
            assert row["binding_uri"] == "sip:a@127.0.0.1"
            await store.set_state(validate(row).key, False)
            await store.upsert(record(2))
            assert (await store.load_row(record(2).key))["binding_uri"] == record(2).binding_uri
            await store.delete(record(2).key)
        finally:
            await store.close()
    assert backend.query("SELECT state FROM registrant") == [(1,)]
    assert backend.schema_snapshot("registrant") == snapshot


@pytest_twisted.ensureDeferred
async def test_set_state_to_the_same_value_finds_the_row(backend: MySQLBackend) -> None:
    store = await open_store(backend.url)
    try:
        await store.upsert(record(1))
        await store.set_state(record(1).key, False)
        await store.set_state(record(1).key, False)  # matched, though nothing changed
        await store.set_state(record(1).key, True)
        with pytest.raises(NoSuchRow):
            await store.set_state(record(9).key, False)
    finally:
        await store.close()


@pytest_twisted.ensureDeferred
async def test_runtime_keys_compare_exactly(backend: MySQLBackend) -> None:
    """Keys differing only in case (or trailing space) are two bindings, as on the other stores."""
    store = await open_store(backend.url)
    try:
        lower, upper = record(1).key, record(1, aor="sip:USER1@example.com").key
        await store.save_runtime([runtime(lower, cseq=1), runtime(upper, cseq=7)])
        saved = await store.load_runtime()
        assert saved[lower].cseq == 1 and saved[upper].cseq == 7
    finally:
        await store.close()


@pytest_twisted.ensureDeferred
async def test_unix_socket_url(mariadb: MariaDB, backend: MySQLBackend) -> None:
    store = await open_store(mariadb.socket_url(backend.dbname))
    try:
        await store.upsert(record(1))
        assert store.params.unix_socket == str(mariadb.socket)
    finally:
        await store.close()
    assert backend.query("SELECT aor FROM registrant") == [("sip:user1@example.com",)]


def test_url_forms() -> None:
    p = mysql_params("mysql://opensips:p%40ss@db.example.com:3307/opensips")
    assert (p.user, p.password, p.host, p.port, p.database) == (
        "opensips", "p@ss", "db.example.com", 3307, "opensips")
    p = mysql_params("mysql://u:pw@localhost/opensips?unix_socket=/run/mysqld/mysqld.sock")
    assert (p.unix_socket, p.port) == ("/run/mysqld/mysqld.sock", 3306)
    assert "pw" not in repr(p) and "pw" not in p.shown
    for bad in ("mysql://u:pw@h/", "mysql://u:pw@h:x/db", "mysql://u:pw@h/db?ssl=1", "pg://u@h/db"):
        with pytest.raises(ValueError) as e:
            mysql_params(bad)
        assert "pw" not in str(e.value)


def test_make_store_mysql() -> None:
    store = make_store(parse_db_url("mysql://alice:pa55@127.0.0.1:3307/opensips"), Columns(table="t"), reactor)
    assert isinstance(store, MySQLStore)
    assert store.params.port == 3307 and store.columns == Columns(table="t")


@pytest_twisted.ensureDeferred
async def test_wrong_password_is_unavailable_without_the_password(
        mariadb: MariaDB, backend: MySQLBackend) -> None:
    url = backend.url.replace(PASSWORD, "wrong-Secret-9")
    store = MySQLStore(mysql_params(url), Columns(), reactor=reactor)
    with pytest.raises(StoreUnavailable) as e:
        await timed(store.open())
    assert "wrong-Secret-9" not in str(e.value) and "Access denied" in str(e.value)


@pytest_twisted.ensureDeferred
async def test_unreachable_server_fails_fast() -> None:
    store = MySQLStore(mysql_params(f"mysql://u:s3cret@127.0.0.1:{free_port('tcp')}/x"), Columns(),
                       reactor=reactor)
    with pytest.raises(StoreUnavailable) as e:
        await timed(store.open())
    assert "s3cret" not in str(e.value)
    with pytest.raises(StoreUnavailable):
        await store.load_rows()


@pytest_twisted.ensureDeferred
async def test_idle_kill_costs_no_call(mariadb: MariaDB, backend: MySQLBackend) -> None:
    store = await open_store(backend.url)
    try:
        await store.upsert(record(1))
        assert mariadb.kill_connections(backend.dbname) == 1
        # The very next call succeeds: the ping notices and reconnects first.
        await timed(store.set_state(record(1).key, False))
        assert backend.query("SELECT state FROM registrant") == [(1,)]
    finally:
        await store.close()


@pytest_twisted.ensureDeferred
async def test_wait_timeout_costs_no_call(mariadb: MariaDB, backend: MySQLBackend) -> None:
    mariadb.execute("SET GLOBAL wait_timeout = 1")
    try:
        store = await open_store(backend.url)  # its session has wait_timeout = 1
    finally:
        mariadb.execute("SET GLOBAL wait_timeout = DEFAULT")
    try:
        # The server's own idle timer, not ours: wait it out on the real server.
        await task.deferLater(reactor, 2.5, lambda: None)
        assert mariadb.kill_connections(backend.dbname) == 0  # the server dropped it already
        await timed(store.upsert(record(1)))
        assert len(await store.load_rows()) == 1
    finally:
        await store.close()


@pytest.mark.timeout(120)
@pytest_twisted.ensureDeferred
async def test_server_restart_fails_fast_then_recovers(mariadb: MariaDB, mysql_url: str) -> None:
    store = await open_store(mysql_url)
    try:
        await store.upsert(record(1))
        await store.save_runtime([runtime(record(1).key, cseq=5)])
        mariadb.stop()
        try:
            with pytest.raises(StoreUnavailable) as e:
                await timed(store.set_state(record(1).key, False))
            assert PASSWORD not in str(e.value)
            with pytest.raises(StoreUnavailable):
                await timed(store.save_runtime([runtime(record(1).key, cseq=6)]))
        finally:
            mariadb.start()
        # Back: the first call goes through, and nothing written before is lost.
        await timed(store.save_runtime([runtime(record(1).key, cseq=7)]))
        assert (await store.load_runtime())[record(1).key].cseq == 7
        assert len(await store.load_rows()) == 1
    finally:
        await store.close()


@pytest_twisted.ensureDeferred
async def test_sql_error_is_store_error_and_connection_stays(backend: MySQLBackend) -> None:
    store = await open_store(backend.url)
    try:
        backend.execute("ALTER TABLE registrant MODIFY username CHAR(2)")
        with pytest.raises(StoreError) as e:
            await store.upsert(record(1, username="longer-than-two"))
        assert not isinstance(e.value, StoreUnavailable)
        assert "longer-than-two" not in str(e.value)
        await store.upsert(record(2, username="ok"))
        assert len(await store.load_rows()) == 1
    finally:
        await store.close()


@pytest_twisted.ensureDeferred
async def test_two_nodes_opening_together_create_once(backend: MySQLBackend) -> None:
    stores = [MySQLStore(mysql_params(backend.url), Columns(), reactor=reactor) for _ in range(3)]
    try:
        await timed(defer.gatherResults([s.open() for s in stores], consumeErrors=True))
        assert backend.version_rows() == [("registrant", 3)]
    finally:
        for s in stores:
            await s.close()


@pytest_twisted.ensureDeferred
async def test_many_rows_load(backend: MySQLBackend) -> None:
    store = await open_store(backend.url)
    try:
        connection = backend.server.connect(backend.dbname)
        try:
            with connection.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO registrant (registrar, aor, binding_URI, expiry)"
                    " VALUES (%s, %s, %s, %s)",
                    [("sip:127.0.0.1:5080", f"sip:user{i:05d}@127.0.0.1",
                      f"sip:user{i:05d}@127.0.0.1:5062", 3600) for i in range(20000)])
        finally:
            connection.close()
        result = await store.load(validate)
        assert len(result.records) == 20000 and not result.skipped
        assert result.records[-1].aor == "sip:user19999@127.0.0.1"
    finally:
        await store.close()


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_close_does_not_wait_for_a_silent_server(mariadb: MariaDB, backend: MySQLBackend) -> None:
    """A server that stops answering (SIGSTOP) holds a call for read_timeout; close() is at once."""
    store = await open_store(backend.url)
    os.kill(mariadb.pid, signal.SIGSTOP)
    try:
        pending = store.load_rows()
        await task.deferLater(reactor, 0.3, lambda: None)  # the call is on the wire by now
        assert not pending.called
        started = time.monotonic()
        await store.close()
        assert time.monotonic() - started < 2
        with pytest.raises(StoreUnavailable):
            await timed(pending)
    finally:
        os.kill(mariadb.pid, signal.SIGCONT)
