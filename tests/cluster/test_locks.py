"""The lock backends on real servers: locks, owners, requests, live nodes, on PostgreSQL
and on MariaDB (the same contract); NOTIFY on PostgreSQL.  What MySQL does its own
way is in test_mysql_locks."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from zope.interface.verify import verifyObject

from uacregistrant.cluster.locks import ILockBackend


async def eventually(check, timeout: float = 5.0):
    """Poll ``check()`` (a coroutine function) until truthy: the server frees a
    closed session's locks a moment after the client closed it."""
    deadline = reactor.seconds() + timeout
    while not (result := await check()):
        assert reactor.seconds() < deadline, "condition not met in time"
        await deferLater(reactor, 0.05, lambda: None)
    return result


@pytest.fixture(params=["postgres", "mysql"])
def nodes(request):
    """Nodes a and b on each backend (see conftest), and what each was notified of."""
    return request.getfixturevalue("mysql_nodes" if request.param == "mysql" else "pg_nodes")


async def connected(nodes):
    """Nodes a and b, connected."""
    (made, _) = nodes
    a, b = made["a"], made["b"]
    await a.connect(5)
    await b.connect(5)
    return a, b


@pytest_twisted.ensureDeferred
async def test_one_node_holds_a_tag_and_the_server_tells_who(nodes):
    assert verifyObject(ILockBackend, nodes[0]["a"])
    a, b = await connected(nodes)
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
    await a.unlock("vip/1")
    assert await b.try_lock("vip/1") is True


@pytest_twisted.ensureDeferred
async def test_reset_frees_the_locks_on_the_server(nodes):
    a, b = await connected(nodes)
    assert await a.try_lock("vip/1") is True
    a.reset()
    assert not a.connected
    with pytest.raises(ConnectionError):
        a.heartbeat()
    await eventually(lambda: b.try_lock("vip/1"))


@pytest_twisted.ensureDeferred
async def test_a_request_is_seen_by_all_and_notified(pg_nodes):
    (_, notes) = pg_nodes
    a, b = await connected(pg_nodes)
    arrived: Deferred = Deferred()
    a.on_notify = lambda payload: (notes["a"].append(payload), arrived.called or arrived.callback(None))
    await b.request("vip/1", 10)
    await arrived
    assert notes["a"] == ["vip/1"]
    assert (await a.survey(["vip/1"])).wanted == {"vip/1": "b"}
    # Taking the tag settles the request.
    await b.try_lock("vip/1")
    await b.own("vip/1")
    assert (await a.survey(["vip/1"])).wanted == {}
    await b.disown("vip/1")
    assert (await a.owners(["vip/1"]))["vip/1"].since is None  # locked, but no longer noted


@pytest_twisted.ensureDeferred
async def test_an_expired_request_counts_no_more(nodes):
    (made, _) = nodes
    await made["b"].connect(5)
    await made["b"].request("vip/1", 0)
    assert (await made["b"].survey(["vip/1"])).wanted == {}


@pytest_twisted.ensureDeferred
async def test_heartbeats_age_on_the_server_clock_and_outlive_the_session(nodes):
    a, b = await connected(nodes)
    assert (await b.survey([])).ages == {}  # the table exists from the first connect on
    await a.heartbeat()
    await deferLater(reactor, 0.3, lambda: None)
    await b.heartbeat()
    ages = (await b.survey([])).ages
    assert set(ages) == {"a", "b"}
    assert 0 <= ages["b"] < 0.2 and 0.3 <= ages["a"] < 2
    a.reset()  # a dead node's row stays, getting older: that is how the others tell
    await deferLater(reactor, 0.2, lambda: None)
    assert (await b.survey([])).ages["a"] >= 0.5
