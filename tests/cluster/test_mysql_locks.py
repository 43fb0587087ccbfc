"""The lock backend on a real MariaDB server: named locks, owners, requests, heartbeats."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import reactor
from zope.interface.verify import verifyObject

from tests.cluster import test_locks as scenarios
from tests.cluster.test_locks import eventually
from uacregistrant.cluster.locks import ILockBackend
from uacregistrant.cluster.mysql_locks import MySQLLocks, lock_name
from uacregistrant.store.url import mysql_params


@pytest.fixture
def nodes(mysql_url):
    """Two nodes' backends, and what each was notified of (as test_locks has them)."""
    made = {name: MySQLLocks(mysql_params(mysql_url), name, reactor, takeover_s=3) for name in ("a", "b")}
    notes: dict[str, list[str]] = {"a": [], "b": []}
    yield made, notes
    for backend in made.values():
        backend.reset()


# The PostgreSQL backend's scenarios, run as they are: the same contract.


@pytest_twisted.ensureDeferred
async def test_one_node_holds_a_tag_and_the_server_tells_who(nodes):
    assert verifyObject(ILockBackend, nodes[0]["a"])
    await scenarios.test_one_node_holds_a_tag_and_the_server_tells_who(nodes)


@pytest_twisted.ensureDeferred
async def test_reset_frees_the_locks_on_the_server(nodes):
    await scenarios.test_reset_frees_the_locks_on_the_server(nodes)


@pytest_twisted.ensureDeferred
async def test_an_expired_request_counts_no_more(nodes):
    await scenarios.test_an_expired_request_counts_no_more(nodes)


@pytest_twisted.ensureDeferred
async def test_heartbeats_age_on_the_server_clock_and_outlive_the_session(nodes):
    await scenarios.test_heartbeats_age_on_the_server_clock_and_outlive_the_session(nodes)


# What MySQL does its own way.


def test_lock_names_fit_mysql() -> None:
    assert len(lock_name("x" * 64 + "/2147483647")) <= 64
    assert lock_name("vip/1") != lock_name("vip/2")


@pytest_twisted.ensureDeferred
async def test_a_killed_session_frees_its_locks(nodes, mariadb, mysql_url):
    (made, _) = nodes
    a, b = made["a"], made["b"]
    await a.connect(5)
    await b.connect(5)
    assert await a.try_lock("vip/1") is True
    [(conn, )] = mariadb.execute(
        "SELECT conn FROM uac_registrant_sessions WHERE node_id = 'a'", dbname=mysql_url.rsplit("/", 1)[1])
    mariadb.execute(f"KILL {int(conn)}")
    assert await eventually(lambda: b.try_lock("vip/1"))
    # a finds out on its next call, and a new session works.
    with pytest.raises(Exception):
        await a.heartbeat()
    await a.connect(5)
    assert (await a.survey(["vip/1"])).owners == {"vip/1": "b"}


@pytest.mark.timeout(30)
@pytest_twisted.ensureDeferred
async def test_a_silent_node_loses_its_locks_after_takeover_s(nodes):
    """A node cut off from the server looks idle to it: the server ends the session."""
    (made, _) = nodes
    a, b = made["a"], made["b"]
    await a.connect(5)
    await b.connect(5)
    assert await a.try_lock("vip/1") is True
    # a says nothing for longer than takeover_s (3 s): its wait_timeout runs out.
    assert await eventually(lambda: b.try_lock("vip/1"), timeout=10)


@pytest_twisted.ensureDeferred
async def test_a_request_is_seen_by_all_and_done_by_own(nodes):
    (made, _) = nodes
    a, b = made["a"], made["b"]
    await a.connect(5)
    await b.connect(5)
    await b.request("vip/1", 10)
    assert (await a.survey(["vip/1"])).wanted == {"vip/1": "b"}
    await a.notify("vip/1")
    await b.own("vip/1")
    assert (await a.survey(["vip/1"])).wanted == {}


@pytest_twisted.ensureDeferred
async def test_connect_to_nowhere_fails_within_the_timeout():
    from tests.peers import free_port

    backend = MySQLLocks(mysql_params(f"mysql://u:pw@127.0.0.1:{free_port('tcp')}/x"), "a", reactor)
    with pytest.raises(Exception):
        await backend.connect(2)
    assert not backend.connected
