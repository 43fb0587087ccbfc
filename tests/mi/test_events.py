"""The event poster: real HTTP delivery, retries on a Clock, bounded queue."""

from __future__ import annotations

import json
from typing import Any

import pytest_twisted
from twisted.internet import defer, reactor, task
from twisted.internet.error import ConnectionRefusedError
from twisted.web.resource import Resource
from twisted.web.server import Site

from uacregistrant.mi.events import EventPoster, treq_post

EVENT = {
    "aor": "sip:alice@example.com",
    "contact": "sip:alice@127.0.0.1:5070",
    "registrar": "sip:127.0.0.1",
    "old_state": "REGISTERING_STATE",
    "new_state": "REGISTERED_STATE",
    "code": 200,
    "reason": "OK",
    "time": 1700000000.5,
}


class Receiver(Resource):
    isLeaf = True

    def __init__(self, statuses: list[int]) -> None:
        super().__init__()
        self.statuses = statuses
        self.received: list[tuple[bytes | None, dict[str, Any]]] = []

    def render_POST(self, request: Any) -> bytes:
        self.received.append((request.getHeader(b"Content-Type"), json.loads(request.content.read())))
        request.setResponseCode(self.statuses.pop(0) if self.statuses else 200)
        return b""


class Recorder:
    """Wraps an http_post so the test can wait on each attempt."""

    def __init__(self, post: Any) -> None:
        self.post = post
        self.attempts: list[defer.Deferred[int]] = []
        self.errors: list[type] = []

    def __call__(self, url: str, body: bytes) -> defer.Deferred[int]:
        d = self.post(url, body)
        d.addErrback(self._seen)
        self.attempts.append(d)
        return d

    def _seen(self, failure: Any) -> Any:
        self.errors.append(failure.type)
        return failure

    async def settled(self, index: int) -> None:
        while len(self.attempts) <= index:
            await task.deferLater(reactor, 0, lambda: None)
        try:
            await self.attempts[index]
        except Exception:
            pass
        # Let the poster's own callbacks, added after ours, run first.
        await task.deferLater(reactor, 0, lambda: None)


@pytest_twisted.async_yield_fixture
async def receiver():
    statuses: list[int] = []
    resource = Receiver(statuses)
    port = reactor.listenTCP(0, Site(resource), interface="127.0.0.1")
    try:
        yield f"http://127.0.0.1:{port.getHost().port}/events", resource
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_events_reach_the_receiver_in_order(receiver):
    url, resource = receiver
    clock = task.Clock()
    post = Recorder(treq_post)
    poster = EventPoster(url, clock=clock, http_post=post)
    second = dict(EVENT, old_state="REGISTERED_STATE", new_state="UNREGISTERING_STATE")
    poster.emit(EVENT)
    poster.emit(second)
    assert len(post.attempts) == 1
    await post.settled(0)
    await post.settled(1)
    assert resource.received == [(b"application/json", EVENT), (b"application/json", second)]
    assert (poster.sent, poster.failed, poster.dropped, poster.queued) == (2, 0, 0, 0)
    assert clock.getDelayedCalls() == []
    await poster.stop()


@pytest_twisted.ensureDeferred
async def test_non_2xx_is_retried_with_backoff(receiver):
    url, resource = receiver
    resource.statuses.extend([500, 503])
    clock = task.Clock()
    post = Recorder(treq_post)
    poster = EventPoster(url, clock=clock, http_post=post, retry_delay=1.0)
    poster.emit(EVENT)
    await post.settled(0)
    [retry] = clock.getDelayedCalls()
    assert retry.getTime() == 1.0
    clock.advance(1.0)
    await post.settled(1)
    [retry] = clock.getDelayedCalls()
    assert retry.getTime() == 1.0 + 2.0
    clock.advance(2.0)
    await post.settled(2)
    assert len(resource.received) == 3
    assert (poster.sent, poster.failed, poster.queued) == (1, 0, 0)
    assert clock.getDelayedCalls() == []


@pytest_twisted.ensureDeferred
async def test_receiver_down_retries_then_drops_without_raising(receiver):
    url, resource = receiver
    # A port that was free a moment ago: connections are refused.
    port = reactor.listenTCP(0, Site(resource), interface="127.0.0.1")
    down_url = f"http://127.0.0.1:{port.getHost().port}/events"
    await port.stopListening()

    clock = task.Clock()
    post = Recorder(treq_post)
    poster = EventPoster(down_url, clock=clock, http_post=post, retries=2, retry_delay=0.5)
    poster.emit(EVENT)
    poster.emit(dict(EVENT, new_state="REGISTER_TIMEOUT_STATE"))
    await post.settled(0)
    assert post.errors == [ConnectionRefusedError]
    for delay, index in ((0.5, 1), (1.0, 2)):
        clock.advance(delay)
        await post.settled(index)
    # The first event had 1 + 2 attempts; the second one starts at once.
    assert (poster.sent, poster.failed, poster.queued) == (0, 1, 1)
    assert len(post.attempts) == 4
    await post.settled(3)
    clock.advance(0.5)
    await post.settled(4)
    clock.advance(1.0)
    await post.settled(5)
    assert (poster.sent, poster.failed, poster.queued) == (0, 2, 0)
    assert clock.getDelayedCalls() == []
    assert post.errors == [ConnectionRefusedError] * 6
    assert resource.received == []


def test_full_queue_drops_and_counts():
    clock = task.Clock()
    in_flight: list[defer.Deferred[int]] = []

    def post(url: str, body: bytes) -> defer.Deferred[int]:
        d: defer.Deferred[int] = defer.Deferred()
        in_flight.append(d)
        return d

    poster = EventPoster("http://127.0.0.1:1/", clock=clock, http_post=post, max_queue=3)
    for _ in range(10):
        poster.emit(EVENT)
    assert (poster.queued, poster.dropped, len(in_flight)) == (3, 7, 1)
    in_flight[0].callback(204)
    assert (poster.sent, poster.queued, len(in_flight)) == (1, 2, 2)
    poster.emit(EVENT)
    assert (poster.queued, poster.dropped) == (3, 7)


def test_synchronous_post_drains_a_long_queue_without_recursion():
    clock = task.Clock()
    gate: list[defer.Deferred[int]] = []
    bodies: list[bytes] = []

    def post(url: str, body: bytes) -> defer.Deferred[int]:
        bodies.append(body)
        if not gate:
            gate.append(defer.Deferred())
            return gate[0]
        return defer.succeed(200)

    poster = EventPoster("http://127.0.0.1:1/", clock=clock, http_post=post, max_queue=5000)
    for n in range(5000):
        poster.emit(dict(EVENT, code=n))
    gate[0].callback(200)
    assert (poster.sent, poster.queued) == (5000, 0)
    assert [json.loads(b)["code"] for b in bodies] == list(range(5000))


def test_failing_post_that_raises_is_a_failed_attempt():
    clock = task.Clock()

    def post(url: str, body: bytes) -> defer.Deferred[int]:
        raise OSError("no route")

    poster = EventPoster("http://127.0.0.1:1/", clock=clock, http_post=post, retries=1, retry_delay=2.0)
    poster.emit(EVENT)
    assert [c.getTime() for c in clock.getDelayedCalls()] == [2.0]
    clock.advance(2.0)
    assert (poster.failed, poster.queued) == (1, 0)
    assert clock.getDelayedCalls() == []


def test_unserialisable_event_is_dropped():
    poster = EventPoster("http://127.0.0.1:1/", clock=task.Clock(), http_post=lambda u, b: defer.succeed(200))
    poster.emit({"time": object()})
    assert (poster.dropped, poster.sent) == (1, 0)


def test_stop_cancels_the_retry_timer_and_the_post_in_flight():
    clock = task.Clock()
    cancelled: list[defer.Deferred[int]] = []
    posts: list[defer.Deferred[int]] = []

    def post(url: str, body: bytes) -> defer.Deferred[int]:
        d: defer.Deferred[int] = defer.Deferred(cancelled.append)
        posts.append(d)
        return d

    poster = EventPoster("http://127.0.0.1:1/", clock=clock, http_post=post)
    poster.emit(EVENT)
    poster.emit(EVENT)
    posts[0].callback(500)
    assert len(clock.getDelayedCalls()) == 1
    stopped = poster.stop()
    assert stopped.called
    assert clock.getDelayedCalls() == []
    assert (poster.queued, poster.dropped) == (0, 2)
    poster.emit(EVENT)
    assert poster.dropped == 3

    poster = EventPoster("http://127.0.0.1:1/", clock=clock, http_post=post)
    poster.emit(EVENT)
    poster.stop()
    assert cancelled == [posts[1]]
    assert clock.getDelayedCalls() == []
