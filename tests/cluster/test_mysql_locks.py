"""What the MySQL lock backend does its own way, on a real MariaDB server: named
locks, sessions the server ends, requests without notifications.  The contract
both backends share is in test_locks."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import reactor

from tests.cluster.test_locks import connected, eventually
from uacregistrant.cluster.mysql_locks import MySQLLocks, lock_name
from uacregistrant.store.url import mysql_params


@pytest.fixture
def nodes(mysql_nodes):
    return mysql_nodes


def test_lock_names_fit_mysql() -> None:
    assert len(lock_name("x" * 64 + "/2147483647")) <= 64
    assert lock_name("vip/1") != lock_name("vip/2")


@pytest_twisted.ensureDeferred
async def test_a_killed_session_frees_its_locks(nodes, mariadb, mysql_url):
    a, b = await connected(nodes)
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
    a, b = await connected(nodes)
    assert await a.try_lock("vip/1") is True
    # a says nothing for longer than takeover_s (3 s): its wait_timeout runs out.
    assert await eventually(lambda: b.try_lock("vip/1"), timeout=10)


@pytest_twisted.ensureDeferred
async def test_a_request_is_seen_by_all_and_done_by_own(nodes):
    a, b = await connected(nodes)
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
