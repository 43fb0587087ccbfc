"""A raw HTTP/1.1 client on 127.0.0.1: bytes out, bytes in, and when it closed."""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol


class RawClient(protocol.Protocol):
    def __init__(self) -> None:
        self.received = b""
        self.closed: defer.Deferred[bytes] = defer.Deferred()
        self._waiting: list[tuple[bytes, int, defer.Deferred[bytes]]] = []

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        still = []
        for marker, count, d in self._waiting:
            if self.received.count(marker) >= count:
                d.callback(self.received)
            else:
                still.append((marker, count, d))
        self._waiting = still

    def connectionLost(self, reason: object) -> None:
        for _, _, d in self._waiting:
            d.callback(self.received)
        self._waiting = []
        self.closed.callback(self.received)

    def wait_for(self, marker: bytes, count: int = 1) -> defer.Deferred[bytes]:
        """Fires with everything received once ``marker`` is in it ``count``
        times, or when the connection closes."""
        if self.received.count(marker) >= count or self.closed.called:
            return defer.succeed(self.received)
        d: defer.Deferred[bytes] = defer.Deferred()
        self._waiting.append((marker, count, d))
        return d

    def send(self, data: bytes) -> None:
        self.transport.write(data)


async def until(check: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Let the reactor run until ``check()`` holds; fail naming ``what``."""
    from twisted.internet import task

    for _ in range(int(timeout / 0.01)):
        if check():
            return
        await task.deferLater(reactor, 0.01, lambda: None)
    raise AssertionError(f"timed out waiting for {what}")


async def connect(port: int) -> RawClient:
    return await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), RawClient())


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def body_of(response: bytes) -> bytes:
    """The body of the first response in ``response``, chunked or not."""
    head, _, rest = response.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" not in head.lower():
        return rest
    body = b""
    while True:
        size, _, rest = rest.partition(b"\r\n")
        length = int(size, 16)
        if length == 0:
            return body
        body, rest = body + rest[:length], rest[length + 2 :]
