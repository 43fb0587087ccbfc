"""Clustered nodes through database outages and a partition, against a real
Kamailio registrar, on PostgreSQL and on MariaDB: the registrar's bindings are
the truth.

Each scenario watches every binding the whole time: never two for an AOR,
never none, and the same Call-ID from start to end.
"""

from __future__ import annotations

import time

import pytest

from tests.e2e.service import wait_until

from .cluster import GRACE, TAKEOVER, Cluster, away_seconds, held, holding

TAGS = {"alice": "vip/1", "bob": "gold/1", "carol": "silver/1"}


@pytest.fixture
def cluster_factory(tmp_path, registrar):
    made: list[Cluster] = []

    def make(database, *, expiry: int, limit: float) -> Cluster:
        made.append(Cluster(tmp_path, registrar, database, TAGS, expiry=expiry,
                            options=("--shtag-static-limit-s", str(limit))))
        return made[-1]

    yield make
    for cluster in made:
        cluster.stop()


# The long outage outlasts the bindings' expiry by a margin: a binding nobody
# refreshed would lapse within it.  Neither length matters to the nodes (a node
# without its database keeps its tags for ever with shtag_static_limit_s 0, and
# refreshes on its own timer), so both are short.
OUTAGE_EXPIRY = 10
OUTAGE = OUTAGE_EXPIRY + 5
# How much of the outage a node may miss on its away-seconds clock: it notices
# the loss on its next look at the latest (every TAKEOVER / 3), MySQL's sessions
# once a query fails.
AWAY_MARGIN = 5


@pytest.mark.timeout(240)
def test_two_nodes_keep_their_tags_through_a_fast_restart_and_a_long_outage(cluster_factory, own_database):
    cluster = cluster_factory(own_database, expiry=OUTAGE_EXPIRY, limit=0)
    server = own_database.server
    cluster.start("a")
    cluster.start("b")
    call_ids = cluster.settled()
    owners = cluster.owners()

    # A fast restart: every session ends; the same owners lock their tags again.
    server.restart()
    cluster.watch(2 * TAKEOVER + GRACE, call_ids)
    wait_until(lambda: cluster.owners() == owners, 10, "the same owners back on the database")

    # A long outage: everybody is static, nothing changes hands, nothing lapses.
    before = cluster.cseqs()
    server.stop()
    stopped = time.monotonic()

    def static_on_the_same_nodes():
        if time.monotonic() - stopped > TAKEOVER:
            holds = cluster.holds()
            assert {tag: name for name, tags in holds.items() for tag in tags} == owners
            assert all(how == "static" for tags in holds.values() for how in tags.values())

    cluster.watch(OUTAGE, call_ids, static_on_the_same_nodes)
    # Refreshed meanwhile (a binding of OUTAGE_EXPIRY lives through OUTAGE no other way).
    assert all(cseq > before[user] for user, cseq in cluster.cseqs().items())
    assert all(away_seconds(node) >= OUTAGE - AWAY_MARGIN for node in cluster.nodes.values())
    for node in cluster.nodes.values():
        assert "fail-static mode" in node.log_text()
    server.start()
    wait_until(lambda: cluster.owners() == owners, 15, "the same owners back on the database")
    # What was kept back during the outage is written now (a takeover would go on from it).
    wait_until(
        lambda: all(own_database.shared("cseq", f"sip:{u}@example.test") == c for u, c in cluster.cseqs().items()),
        15,  # the store reconnects within 10 s, then writes at once
        "the refreshes of the outage shared",
    )
    cluster.watch(2 * TAKEOVER + GRACE, call_ids)
    assert cluster.owners() == owners
    for node in cluster.nodes.values():
        assert away_seconds(node) == 0
        assert "leaving fail-static mode" in node.log_text()


# Bindings that need no refresh during the partition scenario: what it forces it
# forces through MI.
PARTITION_EXPIRY = 60
# shtag_static_limit_s of the partition: the others take the cut-off node's tag
# within TAKEOVER + TAKEOVER / 3, well before.
LIMIT = 4 * TAKEOVER
# A node back on the database steps down from a tag taken meanwhile at its next
# look (every TAKEOVER / 3), once its reconnection is done (bounded by
# TAKEOVER + TAKEOVER / 3); the rest is room for a loaded machine.
STEP_DOWN = TAKEOVER / 3 + TAKEOVER + TAKEOVER / 3 + 10


@pytest.mark.timeout(240)
def test_three_nodes_share_three_tags_and_take_those_of_a_cut_off_node_which_steps_down_or_stops(
        cluster_factory, database):
    cluster = cluster_factory(database, expiry=PARTITION_EXPIRY, limit=LIMIT)
    for name in ("a", "b", "c"):
        cluster.start(name, proxied=True)
    # Three nodes share three tags: one each.
    call_ids = cluster.settled()
    assert sorted(len(held(node)) for node in cluster.nodes.values()) == [1, 1, 1]
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
    wait_until(lambda: holding(cluster.nodes["c"]) == {}, STEP_DOWN, "c stepping down",
               detail=lambda: cluster.nodes["c"].log_text()[-3000:])
    assert "stepped down" in cluster.nodes["c"].log_text()
    cluster.watch(3, call_ids)
    # Fair shares bring one tag back to c.
    call_ids = cluster.settled()
    [lonely] = [tag for tag, name in cluster.owners().items() if name == "c"]

    # c cut off for longer than its limit: it stops its tag, the others have it.
    cluster.proxies["c"].cut()
    cut = time.monotonic()
    cluster.watch(LIMIT - 2, call_ids)
    assert cluster.owners().get(lonely) in ("a", "b")
    wait_until(lambda: holding(cluster.nodes["c"]) == {}, 10, "c stopping its tag",
               detail=lambda: cluster.nodes["c"].log_text()[-3000:])
    assert time.monotonic() - cut >= LIMIT - TAKEOVER / 3
    assert f"away from the database for more than {LIMIT} s" in cluster.nodes["c"].log_text()
    cluster.proxies["c"].heal()
    cluster.watch(5, call_ids)
    cluster.settled()
    assert cluster.bindings() == call_ids
