"""The outage and partition scenarios of test_outages, run as they are on MariaDB:
a server restart, a 100 s outage, one node cut off, against a real Kamailio registrar."""

from __future__ import annotations

import pytest

from tests.e2e.service import make_mysql_table, mysql_query
from tests.peers import mariadb as mariadb_peer
from tests.peers import unavailable
from uacregistrant.store.interface import RUNTIME_TABLE

from . import test_outages as scenarios
from .test_outages import Cluster, registrar  # noqa: F401 (the registrar fixture)


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
def mysql_cluster_factory(tmp_path, registrar):  # noqa: F811 (the registrar fixture)
    made: list[MySQLCluster] = []

    def make(url: str, limit: float) -> MySQLCluster:
        made.append(MySQLCluster(tmp_path, registrar, url, limit))
        return made[-1]

    yield make
    for cluster in made:
        cluster.stop()


@pytest.mark.timeout(300)
def test_two_nodes_keep_their_tags_through_a_fast_restart_and_a_long_outage(mysql_cluster_factory, own_mariadb):
    scenarios.test_two_nodes_keep_their_tags_through_a_fast_restart_and_a_long_outage(
        mysql_cluster_factory, own_mariadb)


@pytest.mark.timeout(240)
def test_three_nodes_take_the_tags_of_a_cut_off_node_which_steps_down_or_stops(mysql_cluster_factory, mysql_url):
    scenarios.test_three_nodes_take_the_tags_of_a_cut_off_node_which_steps_down_or_stops(
        mysql_cluster_factory, mysql_url)
