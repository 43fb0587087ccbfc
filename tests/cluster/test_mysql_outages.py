"""Clustered nodes on MariaDB through a server restart and a long outage, against a
real Kamailio registrar: the PostgreSQL scenario of test_outages on MySQL's named locks."""

from __future__ import annotations

import time

import pytest

from tests.e2e.service import make_mysql_table, mysql_query, wait_until
from tests.peers import mariadb as mariadb_peer
from tests.peers import unavailable
from uacregistrant.store.interface import RUNTIME_TABLE

from .test_outages import GRACE, TAKEOVER, Cluster, away_seconds, registrar  # noqa: F401 (fixture)

OUTAGE = 75  # longer than the expiry (60 s): a binding nobody refreshes would lapse


@pytest.fixture
def own_mariadb():
    """A MariaDB of this test alone: it is stopped and started on purpose."""
    reason = mariadb_peer.unavailable_reason()
    if reason is not None:
        unavailable(reason)
    server = mariadb_peer.MariaDB()
    try:
        server.start()
        yield server
    finally:
        server.destroy()


def shared(url: str, column: str, aor: str):
    found = mysql_query(url, f"SELECT {column} FROM {RUNTIME_TABLE} WHERE aor = %s AND state = 3", (aor,))
    return found[0][0] if found else None


class MySQLCluster(Cluster):
    make_table = staticmethod(make_mysql_table)
    shared = staticmethod(shared)


@pytest.fixture
def cluster(tmp_path, registrar, own_mariadb):  # noqa: F811 (the registrar fixture)
    made = MySQLCluster(tmp_path, registrar, own_mariadb.create_database("registrant"), limit=0)
    yield made
    made.stop()


@pytest.mark.timeout(300)
def test_two_nodes_keep_their_tags_through_a_restart_and_a_long_outage(cluster, own_mariadb):
    cluster.start("a")
    cluster.start("b")
    call_ids = cluster.settled(2)
    owners = cluster.owners()

    own_mariadb.restart()
    cluster.watch(2 * TAKEOVER + GRACE, call_ids)
    wait_until(lambda: cluster.owners() == owners, 10, "the same owners back on the database")

    before = cluster.cseqs()
    own_mariadb.stop()
    stopped = time.monotonic()

    def static_on_the_same_nodes():
        if time.monotonic() - stopped > TAKEOVER:
            statics = {tag: name for name, held in cluster.holds().items() for tag, how in held.items()}
            assert statics == owners
            assert all(how == "static" for held in cluster.holds().values() for how in held.values())

    cluster.watch(OUTAGE, call_ids, static_on_the_same_nodes)
    assert all(cseq > before[user] for user, cseq in cluster.cseqs().items())
    assert all(away_seconds(node) >= OUTAGE - 5 for node in cluster.nodes.values())
    own_mariadb.start()
    wait_until(lambda: cluster.owners() == owners, 2 * TAKEOVER + GRACE, "the same owners back on the database")
    cluster.watch(2 * TAKEOVER + GRACE, call_ids)
    assert cluster.owners() == owners
    for node in cluster.nodes.values():
        assert away_seconds(node) == 0
        assert "leaving fail-static mode" in node.log_text()
