"""Restarts and database outages against a real Kamailio, on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations


import psycopg2
import pytest

from tests.peers import free_port

from .service import ServiceProcess, saved_runtime, wait_until

AOR = "sip:alice@example.test"
REGISTERED = 3  # REGISTERED_STATE in the runtime table


@pytest.fixture
def registrar(kamailio):
    return kamailio(users={"alice": "alice-pw"}, min_expires=10)


class Node:
    """One service process at a time on fixed ports, so that a restart is the same node."""

    def __init__(self, workdir, db_url, *extra):
        self.sip_port = free_port("udp")
        self.mi_port = free_port("tcp")
        self.args = [
            "--db-url", db_url,
            "--listen", f"udp:127.0.0.1:{self.sip_port}",
            "--timer-interval", "2",
            "--unregister-on-shutdown", "0",
            *extra,
        ]
        self.workdir = workdir
        self.proc: ServiceProcess | None = None

    def start(self) -> ServiceProcess:
        self.proc = ServiceProcess(self.workdir, self.args, self.mi_port).start()
        return self.proc

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    @property
    def binding(self) -> str:
        return f"sip:alice@127.0.0.1:{self.sip_port}"


@pytest.fixture
def node_factory(tmp_path):
    nodes = []

    def make(db_url, *extra):
        node = Node(tmp_path, db_url, *extra)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.stop()


def upsert_alice(svc, registrar, node, expiry=10):
    reply = svc.mi(
        "reg_upsert",
        {
            "aor": AOR,
            "contact": node.binding,
            "registrar": registrar.uri,
            "username": "alice",
            "password": "alice-pw",
            "expiry": str(expiry),
        },
    )
    assert reply.get("result") == "OK", reply


def state(svc) -> str | None:
    record = svc.records().get(AOR)
    return record and record["state"]


def test_a_restart_refreshes_the_same_binding(registrar, node_factory, db_url):
    node = node_factory(db_url)
    svc = node.start()
    upsert_alice(svc, registrar, node)
    wait_until(lambda: state(svc) == "REGISTERED_STATE", 15, "alice registered")
    [before] = registrar.bindings(AOR)
    # The runtime writer batches: wait until the registered state is on disk.
    wait_until(lambda: saved_runtime(db_url).get(AOR) == (before.call_id, before.cseq, REGISTERED), 10,
               "the registered state saved")
    svc.terminate()
    assert len(registrar.bindings(AOR)) == 1  # unregister_on_shutdown 0 kept it

    svc = node.start()
    # Resumed from the saved state: registered at once, no new REGISTER needed.
    assert state(svc) == "REGISTERED_STATE"
    assert "1 bindings resumed" in svc.log_text()
    first_cseq = registrar.bindings(AOR)[0].cseq
    wait_until(lambda: registrar.bindings(AOR)[0].cseq > first_cseq, 15, "a refresh after the restart")
    bindings = registrar.bindings(AOR)
    assert len(bindings) == 1, bindings
    assert bindings[0].call_id == before.call_id


class Server:
    """The database server a test takes away: its URL, stop/start, and the row's state."""

    def __init__(self, peer, url, state_of):
        self.peer = peer
        self.url = url
        self.state_of = state_of

    def stop(self):
        self.peer.stop()

    def start(self):
        self.peer.start()


@pytest.fixture(params=["postgres", "mysql"])
def server(request):
    if request.param == "mysql":
        mariadb, url = request.getfixturevalue("mariadb"), request.getfixturevalue("mysql_url")
        dbname = url.rsplit("/", 1)[1]
        return Server(mariadb, url, lambda aor: mariadb.execute(
            "SELECT state FROM registrant WHERE aor = %s", (aor,), dbname))
    postgres, dsn = request.getfixturevalue("postgres"), request.getfixturevalue("pg_dsn")

    def state_of(aor):
        with psycopg2.connect(dsn) as db, db.cursor() as cursor:
            cursor.execute("SELECT state FROM registrant WHERE aor = %s", (aor,))
            return cursor.fetchall()

    return Server(postgres, dsn, state_of)


def test_a_database_outage_loses_nothing(registrar, node_factory, server):
    node = node_factory(server.url)
    svc = node.start()
    upsert_alice(svc, registrar, node)
    wait_until(lambda: state(svc) == "REGISTERED_STATE", 15, "alice registered")
    triple = {"aor": AOR, "contact": node.binding, "registrar": registrar.uri}

    server.stop()
    try:
        # Registrations go on from memory across refreshes.
        cseq = registrar.bindings(AOR)[0].cseq
        wait_until(lambda: registrar.bindings(AOR)[0].cseq > cseq, 15, "a refresh with the database down")
        # The database is the truth for state: disable fails and changes nothing.
        reply = svc.mi("reg_disable", triple)
        assert "error" in reply, reply
        assert svc.records()[AOR]["enabled"] == "yes"
        assert len(registrar.bindings(AOR)) == 1
        # A reload fails too and keeps the records.
        assert "error" in svc.mi("reg_reload")
        assert state(svc) == "REGISTERED_STATE"
    finally:
        server.start()

    # Back without a restart: the same commands work again.
    wait_until(lambda: svc.mi("reg_disable", triple).get("result") == "OK", 30, "reg_disable after the outage")
    wait_until(lambda: registrar.bindings(AOR) == [], 10, "the binding removed")
    assert [tuple(row) for row in server.state_of(AOR)] == [(1,)]
    assert svc.mi("reg_reload").get("result") == "OK"
    assert "alice-pw" not in svc.log_text()
