"""The HTTP server on ``mi_listen``: ``/mi``, ``/metrics`` and any extra pages.

The server's edge is decided on a request's headers, before its body is read:
a body without the bearer token is answered 401 and a declared length over
the limit 413, at once, and the connection is closed; a chunked body is
counted as it arrives and cut at the limit.  Bodies are kept in memory,
never spooled to a file.  Connections that stay idle, or take too long to
send one request, are closed; each listener holds a capped number of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from io import BytesIO
from types import MappingProxyType
from typing import Any

from twisted.internet.interfaces import IDelayedCall
from twisted.web.http import HTTPChannel
from twisted.web.http import Request as HTTPRequest
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from uacregistrant.mi.jsonrpc import MIError, MIResource, bearer_ok, error_body, invalid_request
from uacregistrant.mi.metrics import MetricsResource
from uacregistrant.transport.cap import ConnectionCap, Refused


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """``mi_max_body``, ``mi_idle_timeout`` and ``mi_max_connections``."""

    max_body: int = 1 << 20
    # Seconds a connection may stay idle, and may take to send one request.
    idle_timeout: float = 30.0
    max_connections: int = 64


def build_root(
    mi: MIResource,
    metrics: MetricsResource,
    extra: Mapping[bytes, Resource] = MappingProxyType({}),
) -> Resource:
    """``/mi`` (and ``/mi/...``, as OpenSIPS accepts), ``/metrics``, then ``extra``."""
    root = Resource()
    root.putChild(b"mi", mi)
    root.putChild(b"metrics", metrics)
    for path, resource in extra.items():
        root.putChild(path, resource)
    return root


def _access_line(timestamp: str, request: HTTPRequest) -> str:
    # Path only: no query string, headers or body, which could carry a token
    # or credentials.
    client = request.getClientAddress()
    host = getattr(client, "host", "-")
    method = _printable(request.method)
    path = _printable(request.path)
    return f'{host} - - {timestamp} "{method} {path}" {request.code} {request.sentLength}'


def _printable(raw: bytes) -> str:
    # Control characters (an ANSI escape, a NUL) are written as \xHH, so
    # a request line cannot forge or garble the log line around it.
    text = raw.decode("ascii", "backslashreplace").replace('"', "%22")
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


class _Discard:
    """The transfer decoder of a refused request: the rest of its body is dropped."""

    def dataReceived(self, data: bytes) -> None:
        pass

    def noMoreData(self) -> None:
        pass


class _EdgeRequest(Request):
    """A request whose body lives in memory and is counted as it arrives."""

    channel: _EdgeChannel

    def gotLength(self, length: int | None) -> None:
        # Twisted spools bodies of 100 kB or more (and every chunked body) to
        # a temporary file; ours are bounded, so memory is the right place.
        self.content = BytesIO()
        self._received = 0

    def handleContentChunk(self, data: bytes) -> None:
        if self.channel.refused:
            return
        self._received += len(data)
        if self._received > self.channel.site.limits.max_body:
            self.channel.refuse_too_large()
            return
        self.content.write(data)


class _EdgeChannel(HTTPChannel):
    """An HTTP/1.1 connection that enforces ``HttpLimits`` and the token."""

    site: EdgeSite
    refused = False
    _deadline: IDelayedCall | None = None
    # Set while our answer waits for a client that does not read it.
    _stalled: IDelayedCall | None = None

    def connectionMade(self) -> None:
        super().connectionMade()
        self.site.cap.opened(self)

    def busy(self) -> bool:
        # A request is being answered: let it finish.  A connection that is
        # idle, still sending its request or not reading our answer is fair game.
        return self._handlingRequest and self._stalled is None

    def evict(self) -> None:
        self.transport.abortConnection()

    def dataReceived(self, data: bytes) -> None:
        # The idle timeout restarts on every byte; this deadline does not, so
        # a request sent a byte at a time still has to arrive in time.
        if self._deadline is None and not self._handlingRequest and not self.refused:
            self._deadline = self.callLater(self.site.limits.idle_timeout, self._too_slow)
        super().dataReceived(data)

    def _too_slow(self) -> None:
        self._deadline = self._stalled = None
        self.transport.abortConnection()

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            deadline, self._deadline = self._deadline, None
            if deadline.active():
                deadline.cancel()

    def pauseProducing(self) -> None:
        # The transport's buffer is full: the client is not reading.  Twisted
        # suspends the idle timeout while a request is answered, so without
        # this a client could hold a connection (and a paused reg_list) for ever.
        super().pauseProducing()
        if self._stalled is None:
            self._stalled = self.callLater(self.site.limits.idle_timeout, self._too_slow)

    def resumeProducing(self) -> None:
        super().resumeProducing()
        self._cancel_stall()

    def _cancel_stall(self) -> None:
        if self._stalled is not None:
            stalled, self._stalled = self._stalled, None
            if stalled.active():
                stalled.cancel()

    def allHeadersReceived(self) -> None:
        request = self.requests[-1]
        if self.length != 0:
            # A body is coming (declared length, or chunked: None).
            if not bearer_ok(request.requestHeaders.getRawHeaders(b"Authorization", [None])[0],
                             self.site.token):
                self._refuse(401, b"Unauthorized", MIError(401, "Unauthorized"),
                             b'WWW-Authenticate: Bearer realm="mi"\r\n')
                return
            if self.length is not None and self.length > self.site.limits.max_body:
                self.refuse_too_large()
                return
        super().allHeadersReceived()

    def refuse_too_large(self) -> None:
        error = invalid_request(f"body larger than {self.site.limits.max_body} bytes")
        self._refuse(413, b"Content Too Large", error)

    def _refuse(self, code: int, phrase: bytes, error: MIError, extra: bytes = b"") -> None:
        """Answer now, drop whatever body follows, close after the answer."""
        self.refused = True
        self._cancel_deadline()
        body = error_body(error)
        self.transport.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n%s\r\n%s" % (code, phrase, len(body), extra, body)
        )
        self._transferDecoder = _Discard()
        self.transport.loseConnection()

    def allContentReceived(self) -> None:
        if self.refused:
            return
        self._cancel_deadline()
        super().allContentReceived()

    def connectionLost(self, reason: Any) -> None:
        self._cancel_deadline()
        self._cancel_stall()
        self.site.cap.closed(self)
        super().connectionLost(reason)


class EdgeSite(Site):
    """A ``Site`` of ``_EdgeChannel`` connections under one ``ConnectionCap``."""

    protocol = _EdgeChannel
    requestFactory = _EdgeRequest

    def __init__(
        self, root: Resource, *, limits: HttpLimits, token: str | None, reactor: Any = None
    ) -> None:
        super().__init__(
            root, logFormatter=_access_line, timeout=limits.idle_timeout, reactor=reactor
        )
        self.limits = limits
        self.token = token.encode("utf-8") if token is not None else None
        self.cap = ConnectionCap(limits.max_connections)

    def buildProtocol(self, addr: Any) -> _EdgeChannel | Refused:
        if not self.cap.admit():
            return Refused()
        return super().buildProtocol(addr)


def make_site(
    root: Resource,
    *,
    limits: HttpLimits = HttpLimits(),
    token: str | None = None,
    reactor: Any = None,
) -> EdgeSite:
    """The MI site; ``token`` guards every request that carries a body."""
    site = EdgeSite(root, limits=limits, token=token, reactor=reactor)
    site.noisy = False
    return site
