"""Two clustered nodes (twistd) in front of a real Kamailio registrar, on PostgreSQL
and on MariaDB: the active node alone registers; the tag moves on request, after
the database sessions are cut, and when the active node is killed; each time the
other node goes on in the same dialog (same Call-ID, higher CSeq) and the
registrar never holds two bindings nor none.

The scenarios share one pair of nodes, in this order: they are what happens to
one record through its cluster's life, and a pair takes longer to start than
most of them take to run.
"""

from __future__ import annotations

import pytest

from tests.e2e.service import wait_until

from .cluster import ALICE, TAKEOVER, TI, Cluster, held, one_binding, refreshed_after, sent_total

EXPIRY = 15
# Refreshed at EXPIRY·50 % − 2·TI = 3.5 s after each 200: the binding still has
# 11.5 s to run when a refresh is due, which leaves a takeover all the time it
# needs, and a refresh cycle is short to wait for.
REREGISTER_PERCENTAGE = 50


@pytest.fixture
def pair(tmp_path, registrar, database):
    """alice's record tagged vip/1, registered by node a; node b started after it, as standby."""
    cluster = Cluster(tmp_path, registrar, database, {"alice": "vip/1"}, expiry=EXPIRY,
                      options=("--reregister-expiry-percentage", str(REREGISTER_PERCENTAGE)))
    try:
        a = cluster.start("a")
        wait_until(lambda: held(a) == {"vip/1"}, 10, "node a holding vip/1")
        first = wait_until(lambda: one_binding(registrar), 10, "alice's binding")
        b = cluster.start("b")
        wait_until(lambda: held(b) == set() and b.table_loaded(), 10, "node b up as standby")
        yield cluster, a, b, first
    finally:
        cluster.stop()


@pytest.mark.timeout(240)
def test_the_tag_moves_on_request_after_cut_sessions_and_from_a_killed_node(pair, registrar, database):
    cluster, a, b, first = pair

    # 1. Only the active node registers: a refresh cycle with both up, b sends nothing.
    assert "uac_registrant_shtags_held 1.0" in a.metrics_text()
    refreshed = refreshed_after(registrar, first.cseq, first.call_id, EXPIRY)
    assert held(b) == set() and sent_total(b) == 0
    assert "uac_registrant_shtags_held 0.0" in b.metrics_text()
    listed = {t["tag"]: t for t in b.mi("shtag_list")["result"]["Tags"]}
    assert listed["vip"]["owner"] == "a" and listed["vip"]["active_here"] is False

    # 2. shtag_set_active on b moves the tag with the same binding.  (MySQL has
    # no notifications: a sees the request on its next tick, b takes the tag on
    # its own: two periods of TAKEOVER / 3.)
    assert b.mi("shtag_set_active", ["vip/1"])["result"] == "OK"
    wait_until(lambda: held(b) == {"vip/1"} and held(a) == set(), TAKEOVER, "vip/1 moving to b", step=0.1)
    assert one_binding(registrar).call_id == first.call_id
    refreshed = refreshed_after(registrar, refreshed.cseq, first.call_id, EXPIRY)
    assert sent_total(b) >= 1
    listed = {t["tag"]: t for t in a.mi("shtag_list")["result"]["Tags"]}
    assert listed["vip"]["owner"] == "b" and listed["vip"]["active_here"] is False
    error = b.mi("shtag_set_active", {"tag": "nope/1"})["error"]
    assert error["code"] == 404

    # 3. Every database session cut (both nodes' store and lock sessions): exactly
    # one holder again, which goes on from what was shared.
    wait_until(lambda: database.shared("call_id") == first.call_id, 5, "alice's state shared")
    assert database.kill_sessions() >= 4

    def settled():
        holders = [n for n in (a, b) if held(n) == {"vip/1"}]
        return len(holders) == 1 and one_binding(registrar) is not None

    wait_until(settled, 4 * TAKEOVER, "one node holding vip/1 again")
    binding = one_binding(registrar)
    assert binding.call_id == first.call_id
    refreshed = refreshed_after(registrar, binding.cseq, first.call_id, EXPIRY)
    assert sum(len(held(n)) for n in (a, b)) == 1

    # 4. The active node killed: the other takes over and goes on in the same dialog.
    [active] = [n for n in (a, b) if held(n) == {"vip/1"}]
    [other] = [n for n in (a, b) if n is not active]
    # Kill once the latest refresh is shared (the writer batches for 1 s): a state
    # from before it is one refresh behind (the taker's CSeq makes up for that,
    # see resumable()), not what this scenario is about.
    refreshed = wait_until(
        lambda: (found := one_binding(registrar)) and database.shared("cseq") == found.cseq and found,
        5, "the latest refresh shared")
    sent_before = sent_total(other)
    active.process.kill()  # SIGKILL: no clean-up of any kind (MySQL ends its session, frees its locks)
    active.process.wait(10)
    wait_until(lambda: held(other) == {"vip/1"}, TAKEOVER + TI, "the other node taking vip/1 over", step=0.1)
    # Dead once its heartbeat is TAKEOVER old, seen at the other's next look (every
    # TAKEOVER / 3): timed on the database server's clock, from the killed node's
    # last heartbeat to the taker's note of ownership, so that how fast this test
    # notices does not count.  The margin is the look's own queries (survey, lock, note).
    names = {a: "a", b: "b"}
    owner, since = database.noted_owner("vip/1")
    assert owner == names[other]
    taken = since - database.last_beat(names[active])
    assert TAKEOVER <= taken <= TAKEOVER + TAKEOVER / 3 + 0.5, taken
    after = refreshed_after(registrar, refreshed.cseq, first.call_id, EXPIRY)
    assert sent_total(other) > sent_before
    assert after.contact == first.contact
