"""The lock backend on a real MariaDB server: named locks, owners, requests, heartbeats."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater
from zope.interface.verify import verifyObject

from tests.cluster.test_locks import eventually
from uacregistrant.cluster.locks import ILockBackend
from uacregistrant.cluster.mysql_locks import MySQLLocks, lock_name
from uacregistrant.store.url import mysql_params


@pytest.fixture
def nodes(mysql_url):
    made = {name: MySQLLocks(mysql_params(mysql_url), name, reactor, takeover_s=3) for name in ("a", "b")}
    yield made["a"], made["b"]
    for backend in made.values():
        backend.reset()


def test_lock_names_fit_mysql() -> None:
    assert len(lock_name("x" * 64 + "/2147483647")) <= 64
    assert lock_name("vip/1") != lock_name("vip/2")


@pytest_twisted.ensureDeferred
async def test_one_node_holds_a_tag_and_the_server_tells_who(nodes):
    a, b = nodes
    assert verifyObject(ILockBackend, a)
    await a.connect(5)
    await b.connect(5)
    assert await a.try_lock("vip/1") is True
    assert await b.try_lock("vip/1") is False
    assert await b.try_lock("other/2") is True
    survey = await b.survey(["vip/1", "other/2", "free/3"])
    assert survey.owners == {"vip/1": "a", "other/2": "b", "free/3": None}
    assert survey.wanted == {} and survey.noted == {}
    await a.own("vip/1")
    assert (await b.survey(["vip/1"])).noted == {"vip/1": "a"}
    owners = await b.owners(["vip/1", "free/3"])
    assert owners["vip/1"].node_id == "a" and owners["vip/1"].since is not None
    assert owners["free/3"].node_id is None
    await a.disown("vip/1")
    assert (await b.survey(["vip/1"])).noted == {}
    await a.unlock("vip/1")
    assert await b.try_lock("vip/1") is True


@pytest_twisted.ensureDeferred
async def test_reset_frees_the_locks_on_the_server(nodes):
    a, b = nodes
    await a.connect(5)
    await b.connect(5)
    assert await a.try_lock("vip/1") is True
    a.reset()
    assert not a.connected
    with pytest.raises(ConnectionError):
        a.heartbeat()
    await eventually(lambda: b.try_lock("vip/1"))


@pytest_twisted.ensureDeferred
async def test_a_killed_session_frees_its_locks(nodes, mariadb, mysql_url):
    a, b = nodes
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
    a, b = nodes
    await a.connect(5)
    await b.connect(5)
    assert await a.try_lock("vip/1") is True
    # a says nothing for longer than takeover_s (3 s): its wait_timeout runs out.
    assert await eventually(lambda: b.try_lock("vip/1"), timeout=10)


@pytest_twisted.ensureDeferred
async def test_a_request_is_seen_by_all_and_done_by_own(nodes):
    a, b = nodes
    await a.connect(5)
    await b.connect(5)
    await b.request("vip/1", 10)
    assert (await a.survey(["vip/1"])).wanted == {"vip/1": "b"}
    await a.notify("vip/1")
    await b.own("vip/1")
    assert (await a.survey(["vip/1"])).wanted == {}
    await b.request("vip/2", 0)
    assert (await a.survey(["vip/2"])).wanted == {}


@pytest_twisted.ensureDeferred
async def test_heartbeats_age_on_the_server_clock_and_outlive_the_session(nodes):
    a, b = nodes
    await a.connect(5)
    await b.connect(5)
    assert (await b.survey([])).ages == {}
    await a.heartbeat()
    await deferLater(reactor, 0.3, lambda: None)
    await b.heartbeat()
    ages = (await b.survey([])).ages
    assert set(ages) == {"a", "b"}
    assert 0 <= ages["b"] < 0.2 and 0.3 <= ages["a"] < 2
    a.reset()
    await deferLater(reactor, 0.2, lambda: None)
    assert (await b.survey([])).ages["a"] >= 0.5


@pytest_twisted.ensureDeferred
async def test_connect_to_nowhere_fails_within_the_timeout():
    from tests.peers import free_port

    backend = MySQLLocks(mysql_params(f"mysql://u:pw@127.0.0.1:{free_port('tcp')}/x"), "a", reactor)
    with pytest.raises(Exception):
        await backend.connect(2)
    assert not backend.connected
