"""Clustered nodes (twistd, MariaDB) in front of a real Kamailio registrar.

The PostgreSQL run of test_failover, on MySQL's named locks: one binding per
record, and the same Call-ID after the active node is killed.
"""

from __future__ import annotations

import time

import pytest

from tests.cluster.test_failover import EXPIRY, TAKEOVER, TI, USERS, Nodes, held, one_binding, refreshed_after, row, sent_total
from tests.e2e.service import make_mysql_table, wait_until
from uacregistrant.store.interface import RUNTIME_TABLE


@pytest.fixture
def registrar(kamailio):
    return kamailio(users=USERS, min_expires=10, max_expires=3600)


@pytest.fixture
def nodes(tmp_path, mysql_url):
    made = Nodes(tmp_path, mysql_url)
    yield made
    made.stop()


def shared_cseq(mariadb, mysql_url, aor: str = "sip:alice@example.test"):
    found = mariadb.execute(
        f"SELECT cseq FROM {RUNTIME_TABLE} WHERE aor = %s AND state = 3", (aor,), mysql_url.rsplit("/", 1)[1])
    return found[0][0] if found else None


def registered_on_a(registrar, nodes, mysql_url):
    """alice's record tagged vip/1, registered by node a; node b started after."""
    make_mysql_table(mysql_url, [row(registrar, "alice", "vip/1")])
    a = nodes.start("a")
    wait_until(lambda: held(a) == {"vip/1"}, 10, "node a holding vip/1")
    first = wait_until(lambda: one_binding(registrar), 10, "alice's binding")
    return a, nodes.start("b"), first


def test_the_other_node_takes_over_a_killed_one_with_the_same_call_id(registrar, nodes, mariadb, mysql_url):
    a, b, first = registered_on_a(registrar, nodes, mysql_url)
    refreshed = refreshed_after(registrar, first.cseq, first.call_id, EXPIRY)
    assert held(b) == set() and sent_total(b) == 0
    listed = {t["tag"]: t for t in b.mi("shtag_list")["result"]["Tags"]}
    assert listed["vip"]["owner"] == "a" and listed["vip"]["active_here"] is False

    wait_until(lambda: shared_cseq(mariadb, mysql_url) == refreshed.cseq, 5, "the refresh shared")
    a.process.kill()  # SIGKILL: the server ends its session and frees its named locks
    a.process.wait(10)
    killed = time.monotonic()
    wait_until(lambda: held(b) == {"vip/1"}, TAKEOVER + TI, "node b taking vip/1 over", step=0.1)
    assert time.monotonic() - killed <= TAKEOVER + TAKEOVER / 3 + 0.5
    after = refreshed_after(registrar, refreshed.cseq, first.call_id, EXPIRY)
    assert sent_total(b) >= 1
    assert after.contact == first.contact


def test_set_active_moves_the_tag_without_notifications(registrar, nodes, mysql_url):
    a, b, first = registered_on_a(registrar, nodes, mysql_url)
    wait_until(lambda: held(b) == set() and b.table_loaded(), 10, "node b up as standby")
    assert b.mi("shtag_set_active", ["vip/1"])["result"] == "OK"
    # Seen on a's next tick, taken on b's: two periods of TAKEOVER / 3.
    wait_until(lambda: held(b) == {"vip/1"} and held(a) == set(), TAKEOVER, "vip/1 moving to b", step=0.1)
    assert one_binding(registrar).call_id == first.call_id
    refreshed_after(registrar, one_binding(registrar).cseq, first.call_id, EXPIRY)


def test_killed_database_sessions_leave_exactly_one_holder(registrar, nodes, mariadb, mysql_url):
    a, b, first = registered_on_a(registrar, nodes, mysql_url)
    wait_until(lambda: b.table_loaded(), 10, "node b loaded")
    wait_until(lambda: shared_cseq(mariadb, mysql_url) is not None, 5, "alice's state shared")
    assert mariadb.kill_connections(mysql_url.rsplit("/", 1)[1]) >= 4  # store and lock sessions

    def settled():
        holders = [n for n in (a, b) if held(n) == {"vip/1"}]
        return len(holders) == 1 and one_binding(registrar) is not None

    wait_until(settled, 4 * TAKEOVER, "one node holding vip/1 again")
    binding = one_binding(registrar)
    assert binding.call_id == first.call_id
    refreshed_after(registrar, binding.cseq, first.call_id, EXPIRY)
    assert sum(len(held(n)) for n in (a, b)) == 1
