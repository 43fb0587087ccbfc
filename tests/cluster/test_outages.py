"""Clustered nodes through database outages and a partition, against a real
Kamailio registrar: the registrar's bindings are the truth.

Each scenario watches every binding the whole time: never two for an AOR,
never none (expiry 60: an outage of 100 s would lapse any binding nobody
refreshes), and the same Call-ID from start to end.
"""

from __future__ import annotations

import time

import pytest

from tests.e2e.service import ServiceProcess, wait_until
from tests.peers import free_port, unavailable
from tests.peers import postgres as postgres_peer

from .proxy import Proxy
from .test_failover import USERS, make_table, shared

TAKEOVER = 3
GRACE = TAKEOVER  # the manager's grace after its own reconnection
EXPIRY = 60
LIMIT = 20  # shtag_static_limit_s of the partition scenario
TAGS = {"alice": "vip/1", "bob": "gold/1", "carol": "silver/1"}


@pytest.fixture
def registrar(kamailio):
    return kamailio(users=USERS, min_expires=10, max_expires=3600)


@pytest.fixture
def own_postgres():
    """A PostgreSQL of this test alone: it is stopped and started on purpose."""
    reason = postgres_peer.unavailable_reason()
    if reason is not None:
        unavailable(reason)
    server = postgres_peer.Postgres()
    try:
        server.start()
        yield server
    finally:
        server.destroy()


class Cluster:
    # The database's side doors: a subclass swaps them for another database.
    make_table = staticmethod(make_table)
    shared = staticmethod(shared)

    def __init__(self, tmp_path, registrar, dsn: str, limit: float) -> None:
        self.tmp_path = tmp_path
        self.registrar = registrar
        self.dsn = dsn
        self.limit = limit
        self.nodes: dict[str, ServiceProcess] = {}
        self.proxies: dict[str, Proxy] = {}
        self.make_table(dsn, [self.row(user, tag) for user, tag in TAGS.items()])

    def row(self, user: str, tag: str) -> dict:
        return dict(
            registrar=self.registrar.uri,
            aor=f"sip:{user}@example.test",
            username=user,
            password=USERS[user],
            binding_URI=f"sip:{user}@127.0.0.1:5999",
            expiry=EXPIRY,
            cluster_shtag=tag,
        )

    def start(self, node_id: str, proxied: bool = False) -> ServiceProcess:
        dsn = self.dsn
        if proxied:
            proxy = self.proxies[node_id] = Proxy(int(dsn.rsplit(":", 1)[1].split("/")[0])).start()
            dsn = proxy.dsn(dsn)
        workdir = self.tmp_path / node_id
        workdir.mkdir()
        node = self.nodes[node_id] = ServiceProcess(
            workdir,
            [
                "--db-url", dsn,
                "--listen", f"udp:127.0.0.1:{free_port('udp')}",
                "--timer-interval", "2",
                "--failure-retry-interval", "5",
                "--enable-clustering", "1",
                "--node-id", node_id,
                "--shtag-takeover-s", str(TAKEOVER),
                "--shtag-static-limit-s", str(self.limit),
            ],
            mi_port=free_port("tcp"),
        )
        return node.start()

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop()
        for proxy in self.proxies.values():
            proxy.stop()

    def holds(self) -> dict[str, dict[str, str]]:
        """node -> {tag: "database" | "static"} for the tags active on it."""
        return {name: holding(node) for name, node in self.nodes.items()}

    def owners(self) -> dict[str, str]:
        """tag -> the node where it is active through the database."""
        return {
            tag: name for name, held in self.holds().items() for tag, how in held.items() if how == "database"
        }

    def bindings(self) -> dict[str, str]:
        """user -> Call-ID of its one binding; fails on two bindings for one AOR."""
        found = {}
        for user in TAGS:
            bindings = self.registrar.bindings(f"sip:{user}@example.test")
            assert len(bindings) <= 1, f"two bindings for {user}: {bindings}"
            if bindings:
                found[user] = bindings[0].call_id
        return found

    def cseqs(self) -> dict[str, int]:
        return {user: self.registrar.bindings(f"sip:{user}@example.test")[0].cseq for user in TAGS}

    def watch(self, seconds: float, call_ids: dict[str, str], check=lambda: None) -> None:
        """For ``seconds``: one binding per AOR, always, with the same Call-ID."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert self.bindings() == call_ids
            check()
            time.sleep(0.5)

    def settled(self, nodes: int) -> dict[str, str]:
        """Each tag active on one node, spread one per node, every AOR bound; the Call-IDs."""

        def spread():
            owners = self.owners()
            return (
                set(owners) == set(TAGS.values())
                and len(set(owners.values())) == nodes
                and len(self.bindings()) == len(TAGS)
            )

        wait_until(spread, 30, "the tags spread and every AOR bound")
        call_ids = self.bindings()
        # A takeover goes on from the shared state: wait until it is written.
        wait_until(
            lambda: all(self.shared(self.dsn, "call_id", f"sip:{u}@example.test") == c for u, c in call_ids.items()),
            10,
            "the dialogs shared",
        )
        return call_ids


def holding(node: ServiceProcess) -> dict[str, str]:
    tags = node.mi("shtag_list")["result"]["Tags"]
    return {f"{t['tag']}/{t['cluster_id']}": t["held"] for t in tags if t["held"] is not None}


def away_seconds(node: ServiceProcess) -> float:
    for line in node.metrics_text().splitlines():
        if line.startswith("uac_registrant_cluster_database_away_seconds "):
            return float(line.split()[1])
    raise AssertionError("no database-away metric")


@pytest.fixture
def cluster_factory(tmp_path, registrar):
    made: list[Cluster] = []

    def make(dsn: str, limit: float) -> Cluster:
        made.append(Cluster(tmp_path, registrar, dsn, limit))
        return made[-1]

    yield make
    for cluster in made:
        cluster.stop()


@pytest.mark.timeout(300)
def test_two_nodes_keep_their_tags_through_a_fast_restart_and_a_long_outage(cluster_factory, own_postgres):
    dsn = own_postgres.create_database("registrant")
    cluster = cluster_factory(dsn, limit=0)
    cluster.start("a")
    cluster.start("b")
    call_ids = cluster.settled(2)
    owners = cluster.owners()

    # A fast restart: every session ends; the same owners lock their tags again.
    own_postgres.restart()
    cluster.watch(2 * TAKEOVER + GRACE, call_ids)
    wait_until(lambda: cluster.owners() == owners, 10, "the same owners back on the database")

    # A long outage: everybody is static, nothing changes hands, nothing lapses.
    before = cluster.cseqs()
    own_postgres.stop()
    stopped = time.monotonic()

    def static_on_the_same_nodes():
        if time.monotonic() - stopped > TAKEOVER:
            statics = {tag: name for name, held in cluster.holds().items() for tag, how in held.items()}
            assert statics == owners
            assert all(how == "static" for held in cluster.holds().values() for how in held.values())

    cluster.watch(100, call_ids, static_on_the_same_nodes)
    # Refreshed meanwhile (a binding of 60 s lives through 100 s no other way).
    assert all(cseq > before[user] for user, cseq in cluster.cseqs().items())
    assert all(away_seconds(node) >= 95 for node in cluster.nodes.values())
    for node in cluster.nodes.values():
        assert "fail-static mode" in node.log_text()
    own_postgres.start()
    wait_until(lambda: cluster.owners() == owners, 15, "the same owners back on the database")
    # What was kept back during the outage is written now (a takeover would go on from it).
    wait_until(
        lambda: all(cluster.shared(dsn, "cseq", f"sip:{u}@example.test") == c for u, c in cluster.cseqs().items()),
        15,  # the store reconnects within 10 s, then writes at once
        "the refreshes of the outage shared",
    )
    cluster.watch(2 * TAKEOVER + GRACE, call_ids)
    assert cluster.owners() == owners
    for node in cluster.nodes.values():
        assert away_seconds(node) == 0
        assert "leaving fail-static mode" in node.log_text()


@pytest.mark.timeout(240)
def test_three_nodes_take_the_tags_of_a_cut_off_node_which_steps_down_or_stops(cluster_factory, pg_dsn):
    cluster = cluster_factory(pg_dsn, limit=LIMIT)
    for name in ("a", "b", "c"):
        cluster.start(name, proxied=True)
    call_ids = cluster.settled(3)
    [lonely] = [tag for tag, name in cluster.owners().items() if name == "c"]

    # c is cut off: it goes on as static while the others take its tag.
    cluster.proxies["c"].cut()
    cut = time.monotonic()
    wait_until(lambda: cluster.owners().get(lonely) in ("a", "b"), TAKEOVER + GRACE + 6, f"{lonely} taken over")
    # Not before c's heartbeat had time to grow old.
    assert time.monotonic() - cut >= TAKEOVER - TAKEOVER / 3 - 0.5
    assert holding(cluster.nodes["c"]) == {lonely: "static"}
    cluster.watch(3, call_ids)
    # Both refresh: the taker first, then c, whose CSeq is behind in the same
    # dialog; the registrar refuses c's, and c steps aside (no new dialog).
    [user] = [u for u, tag in TAGS.items() if tag == lonely]
    triple = dict(aor=f"sip:{user}@example.test", contact=f"sip:{user}@127.0.0.1:5999", registrar=cluster.registrar.uri)
    before = cluster.cseqs()[user]
    assert cluster.nodes[cluster.owners()[lonely]].mi("reg_force_register", triple)["result"] == "OK"
    wait_until(lambda: cluster.cseqs()[user] > before, 10, "the taker's refresh")
    assert cluster.nodes["c"].mi("reg_force_register", triple)["result"] == "OK"
    wait_until(lambda: "stepping aside" in cluster.nodes["c"].log_text(), 10, "c refused, stepping aside")
    cluster.watch(3, call_ids)

    # c back: it finds its tag held by another node and steps down, without unREGISTER.
    cluster.proxies["c"].heal()
    wait_until(lambda: holding(cluster.nodes["c"]) == {}, 15, "c stepping down")
    assert "stepped down" in cluster.nodes["c"].log_text()
    cluster.watch(3, call_ids)
    # Fair shares bring one tag back to c.
    call_ids = cluster.settled(3)
    [lonely] = [tag for tag, name in cluster.owners().items() if name == "c"]

    # c cut off for longer than its limit: it stops its tag, the others have it.
    cluster.proxies["c"].cut()
    cut = time.monotonic()
    cluster.watch(LIMIT - 2, call_ids)
    assert cluster.owners().get(lonely) in ("a", "b")
    wait_until(lambda: holding(cluster.nodes["c"]) == {}, 10, "c stopping its tag")
    assert time.monotonic() - cut >= LIMIT - TAKEOVER / 3
    assert f"away from the database for more than {LIMIT} s" in cluster.nodes["c"].log_text()
    cluster.proxies["c"].heal()
    cluster.watch(5, call_ids)
    cluster.settled(3)
    assert cluster.bindings() == call_ids
