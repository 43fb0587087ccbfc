"""Clustered nodes (twistd, PostgreSQL) in front of a real Kamailio registrar.

Each node is a real service process; the registrar's bindings are the truth:
one binding per record, the same Call-ID across a takeover, refreshed before
it runs out.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import psycopg2
import pytest

from tests.e2e.service import COLUMNS, ServiceProcess, wait_until
from tests.peers import free_port
from uacregistrant.store.interface import RUNTIME_TABLE
from uacregistrant.store.postgres import PG_VERSION_TABLE, pg_registrant_table
from uacregistrant.store.rows import Columns

TAKEOVER = 3
TI = 2  # timer_interval: one bucket visit a second
EXPIRY = 15  # refreshed 11 s after each 200
USERS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw"}


@pytest.fixture
def registrar(kamailio):
    return kamailio(users=USERS, min_expires=10, max_expires=3600)


def make_table(dsn: str, rows: list[dict]) -> None:
    with psycopg2.connect(dsn) as db, db.cursor() as cursor:
        cursor.execute(PG_VERSION_TABLE)
        cursor.execute("INSERT INTO version (table_name, table_version) VALUES ('registrant', 3)")
        cursor.execute(pg_registrant_table(Columns()))
        for row in rows:
            names = [c.lower() for c in COLUMNS if c in row]
            cursor.execute(
                f"INSERT INTO registrant ({', '.join(names)}) VALUES ({', '.join(['%s'] * len(names))})",
                [row[c] for c in COLUMNS if c in row],
            )
    db.close()


def row(registrar, user: str, tag: str) -> dict:
    return dict(
        registrar=registrar.uri,
        aor=f"sip:{user}@example.test",
        username=user,
        password=USERS[user],
        # The same binding whichever node registers it.
        binding_URI=f"sip:{user}@127.0.0.1:5999",
        expiry=EXPIRY,
        cluster_shtag=tag,
    )


class Nodes:
    def __init__(self, tmp_path: Path, dsn: str) -> None:
        self.tmp_path = tmp_path
        self.dsn = dsn
        self.started: list[ServiceProcess] = []

    def start(self, node_id: str) -> ServiceProcess:
        workdir = self.tmp_path / node_id
        workdir.mkdir()
        node = ServiceProcess(
            workdir,
            [
                "--db-url", self.dsn,
                "--listen", f"udp:127.0.0.1:{free_port('udp')}",
                "--timer-interval", str(TI),
                "--failure-retry-interval", "5",
                "--enable-clustering", "1",
                "--node-id", node_id,
                "--shtag-takeover-s", str(TAKEOVER),
            ],
            mi_port=free_port("tcp"),
        )
        self.started.append(node)
        return node.start()

    def stop(self) -> None:
        for node in self.started:
            node.stop()


@pytest.fixture
def nodes(tmp_path, pg_dsn):
    made = Nodes(tmp_path, pg_dsn)
    yield made
    made.stop()


def held(node: ServiceProcess) -> set[str]:
    tags = node.mi("shtag_list")["result"]["Tags"]
    return {f"{t['tag']}/{t['cluster_id']}" for t in tags if t["active_here"]}


def sent_total(node: ServiceProcess) -> float:
    return sum(
        float(value)
        for value in re.findall(r"^uac_registrant_register_sent_total\{[^}]*\} (\S+)$", node.metrics_text(), re.M)
    )


def one_binding(registrar, aor: str = "sip:alice@example.test"):
    bindings = registrar.bindings(aor)
    assert len(bindings) <= 1, f"duplicate bindings: {bindings}"
    return bindings[0] if bindings else None


def refreshed_after(registrar, cseq: int, call_id: str, timeout: float):
    """Wait for a refresh (a higher CSeq) in the same dialog; the binding never lapses meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        binding = one_binding(registrar)
        assert binding is not None, "the binding lapsed"
        assert binding.call_id == call_id
        if binding.cseq > cseq:
            return binding
        assert time.monotonic() < deadline, "no refresh in time"
        time.sleep(0.2)


def shared(dsn: str, column: str, aor: str = "sip:alice@example.test"):
    """What the active node shared for ``aor`` in its registered state (3)."""
    with psycopg2.connect(dsn) as db, db.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {RUNTIME_TABLE} WHERE aor = %s AND state = 3", (aor,))
        found = cursor.fetchone()
    db.close()
    return None if found is None else found[0]


def shared_call_id(dsn: str) -> str | None:
    return shared(dsn, "call_id")


def shared_cseq(dsn: str) -> int | None:
    return shared(dsn, "cseq")


def registered_on_a(registrar, nodes, pg_dsn):
    make_table(pg_dsn, [row(registrar, "alice", "vip/1")])
    a = nodes.start("a")
    wait_until(lambda: held(a) == {"vip/1"}, 10, "node a holding vip/1")
    first = wait_until(lambda: one_binding(registrar), 10, "alice's binding")
    b = nodes.start("b")
    return a, b, first


def test_only_the_active_node_registers_and_the_other_takes_over_a_killed_one(registrar, nodes, pg_dsn):
    a, b, first = registered_on_a(registrar, nodes, pg_dsn)
    assert 'uac_registrant_shtags_held 1.0' in a.metrics_text()
    # A refresh cycle with both up: a alone refreshes, b sends nothing.
    refreshed = refreshed_after(registrar, first.cseq, first.call_id, EXPIRY)
    assert held(b) == set() and sent_total(b) == 0
    assert 'uac_registrant_shtags_held 0.0' in b.metrics_text()

    # With an expiry of 15 s, a state from before the refresh would expire before
    # the takeover: kill once the refresh is shared (the writer batches for 1 s).
    wait_until(lambda: shared_cseq(pg_dsn) == refreshed.cseq, 5, "the refresh shared")
    a.process.kill()  # SIGKILL: no clean-up of any kind
    a.process.wait(10)
    killed = time.monotonic()
    wait_until(lambda: held(b) == {"vip/1"}, TAKEOVER + TI, "node b taking vip/1 over", step=0.1)
    # Dead once its heartbeat is TAKEOVER old; seen at b's next look (every TAKEOVER / 3).
    assert time.monotonic() - killed <= TAKEOVER + TAKEOVER / 3 + 0.5
    # b goes on with a's dialog and refreshes before the binding runs out.
    after = refreshed_after(registrar, refreshed.cseq, first.call_id, EXPIRY)
    assert sent_total(b) >= 1
    assert after.contact == first.contact


def test_set_active_moves_the_tag_with_the_same_binding(registrar, nodes, pg_dsn):
    a, b, first = registered_on_a(registrar, nodes, pg_dsn)
    wait_until(lambda: held(b) == set() and b.table_loaded(), 10, "node b up as standby")
    assert b.mi("shtag_set_active", ["vip/1"])["result"] == "OK"
    wait_until(lambda: held(b) == {"vip/1"} and held(a) == set(), TAKEOVER, "vip/1 moving to b", step=0.1)
    assert one_binding(registrar).call_id == first.call_id
    refreshed_after(registrar, one_binding(registrar).cseq, first.call_id, EXPIRY)
    assert sent_total(b) >= 1
    listed = {t["tag"]: t for t in a.mi("shtag_list")["result"]["Tags"]}
    assert listed["vip"]["owner"] == "b" and listed["vip"]["active_here"] is False
    error = b.mi("shtag_set_active", {"tag": "nope/1"})["error"]
    assert error["code"] == 404


def test_a_cut_database_connection_leaves_exactly_one_holder(registrar, nodes, pg_dsn, postgres):
    a, b, first = registered_on_a(registrar, nodes, pg_dsn)
    wait_until(lambda: b.table_loaded(), 10, "node b loaded")
    # Whichever node wins after the cut goes on from what a shared.
    wait_until(lambda: shared_call_id(pg_dsn) == first.call_id, 5, "alice's state shared")
    assert postgres.kill_backends(pg_dsn.rsplit("/", 1)[1]) >= 4  # both nodes' store and lock sessions

    def settled():
        holders = [n for n in (a, b) if held(n) == {"vip/1"}]
        return len(holders) == 1 and one_binding(registrar) is not None

    wait_until(settled, 4 * TAKEOVER, "one node holding vip/1 again")
    binding = one_binding(registrar)
    assert binding.call_id == first.call_id
    refreshed_after(registrar, binding.cseq, first.call_id, EXPIRY)
    assert sum(len(held(n)) for n in (a, b)) == 1


def test_three_nodes_share_three_tags(registrar, nodes, pg_dsn):
    tags = {"alice": "vip/1", "bob": "gold/1", "carol": "silver/1"}
    make_table(pg_dsn, [row(registrar, user, tag) for user, tag in tags.items()])
    started = [nodes.start(name) for name in ("a", "b", "c")]

    def shared():
        holdings = [held(n) for n in started]
        return all(len(h) == 1 for h in holdings) and set().union(*holdings) == set(tags.values())

    wait_until(shared, 6 * TAKEOVER, "each node holding one tag")
    for user in tags:
        wait_until(lambda: one_binding(registrar, f"sip:{user}@example.test"), 10, f"{user}'s binding")
