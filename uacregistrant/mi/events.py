"""State-change events POSTed as JSON to an operator's URL (``event_url``).

Delivery is best effort and must never slow the registrant down: ``emit``
only queues, one POST is in flight at a time, failures are retried with
exponential backoff, and when the queue is full new events are dropped and
counted.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from typing import Any

import treq
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

log = Logger()

HTTPPost = Callable[[str, bytes], "Deferred[int]"]

POST_TIMEOUT = 10.0


def treq_post(url: str, body: bytes) -> Deferred[int]:
    """POST ``body`` as JSON; fires with the HTTP status code."""
    posted = treq.post(
        url,
        data=body,
        headers={b"Content-Type": [b"application/json"]},
        timeout=POST_TIMEOUT,
        persistent=False,
    )

    def drained(response: Any) -> Deferred[int]:
        # Read the body so the connection is released, then report the status.
        return treq.content(response).addCallback(lambda _: response.code)

    return posted.addCallback(drained)


class EventPoster:
    """Queues events and POSTs them one by one to ``url``.

    ``http_post(url, body)`` fires with the HTTP status; anything but 2xx,
    or an errback, is a failed attempt.  An event gets ``1 + retries``
    attempts, ``retry_delay`` doubling between them, then it is counted in
    ``failed`` and dropped.  ``sent``, ``failed`` and ``dropped`` (queue full,
    unencodable, or emitted after ``stop``) are plain counters.
    """

    def __init__(
        self,
        url: str,
        *,
        clock: IReactorTime,
        http_post: HTTPPost | None = None,
        max_queue: int = 10000,
        retries: int = 3,
        retry_delay: float = 1.0,
    ) -> None:
        self._url = url
        self._clock = clock
        self._http_post = http_post if http_post is not None else treq_post
        self._max_queue = max_queue
        self._retries = retries
        self._retry_delay = retry_delay
        self._queue: deque[bytes] = deque()
        self._in_flight: Deferred[Any] | None = None
        self._retry_call: IDelayedCall | None = None
        self._stopped = False
        self._pumping = False
        self._attempts = 0
        self.sent = 0
        self.failed = 0
        self.dropped = 0

    @property
    def queued(self) -> int:
        """Events waiting, including the one being delivered."""
        return len(self._queue)

    def emit(self, event: dict[str, object]) -> None:
        if self._stopped or len(self._queue) >= self._max_queue:
            self.dropped += 1
            return
        try:
            body = json.dumps(event, separators=(",", ":")).encode("utf-8")
        except (TypeError, ValueError):
            log.error("Dropped an event that is not JSON-serialisable")
            self.dropped += 1
            return
        self._queue.append(body)
        self._pump()

    def stop(self) -> Deferred[None]:
        """Stop delivering: cancel the retry timer and the POST in flight."""
        self._stopped = True
        if self._retry_call is not None:
            self._retry_call.cancel()
            self._retry_call = None
        if self._in_flight is not None:
            self._in_flight.cancel()
        self.dropped += len(self._queue)
        self._queue.clear()
        return defer.succeed(None)

    def _pump(self) -> None:
        # A loop, not recursion: an http_post that answers synchronously
        # would otherwise recurse once per queued event.
        if self._pumping:
            return
        self._pumping = True
        try:
            while (
                self._queue
                and self._in_flight is None
                and self._retry_call is None
                and not self._stopped
            ):
                self._attempt()
        finally:
            self._pumping = False

    def _attempt(self) -> None:
        self._attempts += 1
        in_flight = defer.maybeDeferred(self._http_post, self._url, self._queue[0])
        self._in_flight = in_flight
        in_flight.addCallbacks(self._answered, self._unreachable)

    def _answered(self, status: int) -> None:
        self._in_flight = None
        if self._stopped:
            return
        if 200 <= status < 300:
            self.sent += 1
            self._done_with_head()
        else:
            log.warn("Event receiver answered {status}", status=status)
            self._retry()

    def _unreachable(self, failure: Failure) -> None:
        self._in_flight = None
        if self._stopped:
            return
        # Only the exception type: its text may contain the URL and its credentials.
        log.warn("Event delivery failed: {error}", error=failure.type.__name__)
        self._retry()

    def _retry(self) -> None:
        if self._attempts > self._retries:
            self.failed += 1
            self._done_with_head()
            return
        delay = self._retry_delay * 2 ** (self._attempts - 1)
        self._retry_call = self._clock.callLater(delay, self._retry_now)

    def _retry_now(self) -> None:
        self._retry_call = None
        self._pump()

    def _done_with_head(self) -> None:
        self._queue.popleft()
        self._attempts = 0
        self._pump()
