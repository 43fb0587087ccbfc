"""kill -9 of the real service at chosen moments on the wire, then a restart, against a
real Kamailio on PostgreSQL, SQLite and MariaDB.

A relay between the service (which takes it as its proxy) and Kamailio watches
the wire and sends SIGKILL at the moment: just after the first REGISTER went
out, just after the 200, during a refresh, in the middle of 1,000 first
registrations.  After the restart every record whose REGISTER had reached the
registrar goes on with the same Call-ID and a higher CSeq, and Kamailio
(``ul.dump``) never holds two bindings for one AOR.  A Min-Expires learned
from Kamailio's 423 survives the kill: no fresh 423 after the restart.
"""

from __future__ import annotations

import signal
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import psycopg2
import pytest

from tests.peers import free_port
from tests.peers.kamailio import Binding, Kamailio

from .service import ServiceProcess, make_mysql_table, make_pg_table, make_table, mysql_query, wait_until
from .udp_peers import Seen, UDPRelay

TI = 2  # timer_interval: first REGISTERs spread over 2 s, refreshes 2·TI early
REGISTERED = 3


@pytest.fixture(params=["postgres", "sqlite", "mysql"])
def db(request, tmp_path) -> str:
    if request.param == "postgres":
        return request.getfixturevalue("pg_dsn")
    if request.param == "mysql":
        return request.getfixturevalue("mysql_url")
    return f"sqlite:///{tmp_path / 'registrant.sqlite'}"


@pytest.fixture
def registrar(kamailio) -> Kamailio:
    return kamailio(challenge=False, min_expires=10)


@pytest.fixture
def relay(registrar):
    relay = UDPRelay(("127.0.0.1", registrar.port)).start()
    yield relay
    relay.on_seen = None
    relay.stop()


class Node:
    """The same node (SIP port, table) through kills and restarts; one log per run."""

    def __init__(self, tmp_path: Path, db: str, registrar: Kamailio, relay: UDPRelay, users: list[str],
                 expiry: int) -> None:
        self.tmp_path = tmp_path
        self.db = db
        self.sip_port = free_port("udp")
        self.users = users
        rows = [
            dict(registrar=registrar.uri, proxy=relay.uri, aor=f"sip:{user}@example.test",
                 binding_URI=f"sip:{user}@127.0.0.1:{self.sip_port}", expiry=expiry)
            for user in users
        ]
        if db.startswith("sqlite:"):
            make_table(Path(db.removeprefix("sqlite:///")), rows)
        elif db.startswith("mysql:"):
            make_mysql_table(db, rows)
        else:
            make_pg_table(db, rows)
        self.runs: list[ServiceProcess] = []

    def start(self) -> ServiceProcess:
        workdir = self.tmp_path / f"run{len(self.runs)}"
        workdir.mkdir()
        svc = ServiceProcess(
            workdir,
            ["--db-url", self.db, "--listen", f"udp:127.0.0.1:{self.sip_port}", "--timer-interval", str(TI),
             "--unregister-on-shutdown", "0"],
            mi_port=free_port("tcp"),
        )
        self.runs.append(svc)
        return svc.start()

    def stop(self) -> None:
        for svc in self.runs:
            svc.stop()

    def saved(self) -> dict[str, tuple[str, int, int]]:
        """The runtime table as it is on disk: aor → (Call-ID, CSeq, state)."""
        rows = self.query("SELECT aor, call_id, cseq, state FROM uac_registrant_runtime")
        return {aor: (call_id, cseq, state) for aor, call_id, cseq, state in rows}

    def query(self, query: str) -> list[tuple]:
        if self.db.startswith("sqlite:"):
            with sqlite3.connect(self.db.removeprefix("sqlite:///")) as connection:
                rows = connection.execute(query).fetchall()
            connection.close()
        elif self.db.startswith("mysql:"):
            rows = mysql_query(self.db, query)
        else:
            with psycopg2.connect(self.db) as connection, connection.cursor() as cursor:
                cursor.execute(query)
                rows = cursor.fetchall()
            connection.close()
        return list(rows)


@pytest.fixture
def node_for(tmp_path, db, registrar, relay):
    nodes: list[Node] = []

    def make(users: list[str], expiry: int) -> Node:
        node = Node(tmp_path, db, registrar, relay, users, expiry)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.stop()


def kill_when(relay: UDPRelay, svc: ServiceProcess, moment: Callable[[Seen], bool]) -> threading.Event:
    """SIGKILL from the relay's thread, right after it forwarded the message of ``moment``."""
    killed = threading.Event()

    def check(seen: Seen) -> None:
        if not killed.is_set() and moment(seen):
            svc.process.send_signal(signal.SIGKILL)
            killed.set()

    relay.on_seen = check
    return killed


def await_kill(relay: UDPRelay, svc: ServiceProcess, killed: threading.Event, timeout: float) -> None:
    assert killed.wait(timeout), "the moment never came:\n" + svc.log_text()[-3000:]
    relay.on_seen = None
    svc.process.wait(10)
    assert svc.process.returncode == -signal.SIGKILL


def one_binding_each(registrar: Kamailio) -> dict[str, Binding]:
    """Kamailio's bindings, by user; fails on an AOR with more than one."""
    found = registrar.all_bindings()
    doubles = {aor: contacts for aor, contacts in found.items() if len(contacts) != 1}
    assert not doubles, doubles
    return {aor: contacts[0] for aor, contacts in found.items()}


def same_dialogs_go_on(registrar: Kamailio, before: dict[str, Binding], timeout: float) -> None:
    """Wait until every binding of ``before`` was refreshed (higher CSeq) by the restarted
    service; its Call-ID must never change, and no AOR may ever have two bindings."""

    def refreshed() -> bool:
        now = one_binding_each(registrar)
        for user, binding in before.items():
            current = now.get(user)
            if current is None:
                return False
            assert current.call_id == binding.call_id, (user, binding, current)
        return all(now[user].cseq > binding.cseq for user, binding in before.items())

    wait_until(refreshed, timeout, "every binding refreshed in the same dialog", step=0.5)


def is_register(seen: Seen) -> bool:
    return seen.upstream and getattr(seen.message, "method", None) == "REGISTER"


@pytest.mark.timeout(120)
def test_kill_just_after_the_first_register_went_out(node_for, registrar, relay):
    node = node_for(["alice"], expiry=20)
    # The registrar gets the REGISTER and binds; the service never hears back.
    relay.hold_replies = True
    svc = node.start()
    await_kill(relay, svc, kill_when(relay, svc, is_register), 20)
    wait_until(lambda: registrar.bindings("sip:alice@example.test"), 10, "the binding at the registrar")
    before = one_binding_each(registrar)
    relay.hold_replies = False
    node.start()
    same_dialogs_go_on(registrar, before, 30)


@pytest.mark.timeout(120)
def test_kill_just_after_the_200(node_for, registrar, relay):
    node = node_for(["alice", "bob"], expiry=20)
    svc = node.start()

    def first_200(seen: Seen) -> bool:
        return not seen.upstream and getattr(seen.message, "status", None) == 200

    await_kill(relay, svc, kill_when(relay, svc, first_200), 20)
    before = one_binding_each(registrar)
    assert before
    node.start()
    same_dialogs_go_on(registrar, before, 30)


@pytest.mark.timeout(120)
def test_kill_during_a_refresh(node_for, registrar, relay):
    node = node_for(["alice"], expiry=10)
    svc = node.start()
    # Registered, and the binding on disk: the refresh is the next thing on the wire.
    wait_until(lambda: node.saved().get("sip:alice@example.test", ("", 0, 0))[2] == REGISTERED, 20,
               "the registered state saved")
    first = one_binding_each(registrar)["alice"]

    def refresh(seen: Seen) -> bool:
        return is_register(seen) and seen.message.cseq.number > first.cseq

    await_kill(relay, svc, kill_when(relay, svc, refresh), 20)
    before = one_binding_each(registrar)
    assert before["alice"].call_id == first.call_id
    node.start()
    same_dialogs_go_on(registrar, before, 30)


@pytest.mark.timeout(170)
def test_kill_in_the_middle_of_1000_first_registrations(node_for, registrar, relay):
    users = [f"m{n}" for n in range(1000)]
    node = node_for(users, expiry=30)
    svc = node.start()
    dialogs: set[str] = set()

    def half_way(seen: Seen) -> bool:
        if is_register(seen):
            dialogs.add(seen.message.header("Call-ID"))
        return len(dialogs) >= 500

    await_kill(relay, svc, kill_when(relay, svc, half_way), 60)
    # Requests the service sent just before it died may still be on their way.
    forwarded = {r.header("Call-ID") for r in relay.requests()}
    wait_until(lambda: len(registrar.all_bindings()) == len(forwarded), 10, "every forwarded REGISTER bound")
    before = one_binding_each(registrar)
    assert 300 <= len(before) < 1000, len(before)
    node.start()
    same_dialogs_go_on(registrar, before, 90)
    # And the rest registered too, one binding each.
    wait_until(lambda: len(one_binding_each(registrar)) == 1000, 60, "all 1,000 bound")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("db", ["postgres", "sqlite"], indirect=True)
def test_a_min_expires_learned_from_a_423_survives_a_kill(node_for, registrar, relay):
    # Kamailio's min_expires is 10: the record asks for 5, gets one 423, binds for 10.
    node = node_for(["alice"], expiry=5)
    svc = node.start()

    def learned() -> bool:
        rows = node.query("SELECT min_expires, state FROM uac_registrant_runtime")
        return rows == [(10, REGISTERED)]

    wait_until(learned, 20, "the Min-Expires saved with the binding")
    assert [m.status for m in relay.messages(False) if getattr(m, "status", None) == 423] == [423]
    svc.process.send_signal(signal.SIGKILL)
    svc.process.wait(10)
    before = one_binding_each(registrar)
    mark = len(relay.seen)
    node.start()
    same_dialogs_go_on(registrar, before, 30)
    after = relay.seen[mark:]
    assert not [s for s in after if getattr(s.message, "status", None) == 423]
    registers = [s.message for s in after if is_register(s)]
    assert registers and all(r.header("Contact").endswith(";expires=10") for r in registers), registers
