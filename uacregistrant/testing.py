"""Test doubles for applications that embed the registrant.

``FakeRequestSender`` provides ``IRequestSender`` without a network: it keeps
every request the engine sends, and the test answers each one when it likes,
with a response, a transaction timeout or a transport error (as treq ships
``StubTreq``).  With a ``twisted.internet.task.Clock`` as the service's
reactor, a test drives a whole registration cycle without a socket or a
real delay::

    from twisted.internet.task import Clock
    from uacregistrant.testing import FakeRequestSender

    clock, sip = Clock(), FakeRequestSender()
    service = RegistrantService(Config(timer_interval=10), clock,
                                store=MemoryStore([record]), sender=sip, serve_mi=False)
    service.startService()
    clock.advance(10)                          # the first REGISTER is due
    register = sip.pop()
    register.respond(401, headers=['WWW-Authenticate: Digest realm="x", nonce="n1"'])
    sip.pop().accept()                         # 200 OK, the Contact with its expiry

Answers go through the same parser as the wire's, so the engine sees what a
real registrar's reply would give it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from twisted.internet.defer import Deferred
from zope.interface import implementer

from .sip.message import Request, Response, parse_message
from .transport.errors import TransactionTimeout, TransportError
from .transport.interfaces import IRequestSender

__all__ = ["FakeRequestSender", "SentRequest"]

_REASONS = {
    100: "Trying",
    200: "OK",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    500: "Server Internal Error",
    503: "Service Unavailable",
}

Header = str | tuple[str, str]


@dataclass
class SentRequest:
    """One request the engine sent, and the Deferred it waits on."""

    request: Request
    # The Destination (transport, host, port) and the local SocketSpec (or None).
    destination: object
    local: object
    deferred: Deferred

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def call_id(self) -> str:
        return self.request.call_id

    @property
    def cseq(self) -> int:
        return self.request.cseq.number

    def header(self, name: str) -> str | None:
        """The first value of header ``name``, or None."""
        return self.request.header(name)

    @property
    def answered(self) -> bool:
        return self.deferred.called

    def respond(self, status: int, reason: str | None = None, *lines: Header,
                headers: Iterable[Header] = ()) -> Response:
        """Answer with a final response; headers as ``"Name: value"`` lines or (name, value) pairs.

        The response carries the request's Via, From, Call-ID and CSeq, and its
        To with a tag, as a registrar's does.
        """
        request = self.request
        text = [
            f"SIP/2.0 {status} {reason or _REASONS.get(status, 'Reason')}",
            f"Via: {request.header('Via') or 'SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKfake'}",
            f"From: {request.header('From')}",
            f"To: {request.header('To')};tag=fake",
            f"Call-ID: {request.header('Call-ID')}",
            f"CSeq: {request.header('CSeq')}",
        ]
        for header in (*lines, *headers):
            text.append(header if isinstance(header, str) else f"{header[0]}: {header[1]}")
        text += ["Content-Length: 0", "", ""]
        response = parse_message("\r\n".join(text).encode("utf-8"))
        assert isinstance(response, Response)
        self.deferred.callback(response)
        return response

    def accept(self, expires: int | None = None, *lines: Header) -> Response:
        """200 OK binding the request's Contact for ``expires`` (default: what it asked for)."""
        contact = self.header("Contact") or ""
        if expires is not None:
            uri, sep, params = contact.partition(">")
            kept = ";".join(p for p in params.split(";") if p and not p.strip().startswith("expires="))
            contact = f"{uri}{sep}{';' + kept if kept else ''};expires={expires}"
        return self.respond(200, "OK", f"Contact: {contact}", *lines)

    def time_out(self) -> None:
        """No final response: the transaction's Timer F fired (RFC 3261 §17.1.2.2)."""
        self.deferred.errback(TransactionTimeout("Timer F fired"))

    def fail(self, reason: str = "connection refused") -> None:
        """The request could not be sent (no route, connect or TLS failure)."""
        self.deferred.errback(TransportError(reason))


@implementer(IRequestSender)
class FakeRequestSender:
    """An ``IRequestSender`` whose requests wait in ``sent`` until the test answers them.

    ``responder``, when given, sees each request as it is sent and may answer
    it at once (``lambda sent: sent.accept()`` registers everything).
    """

    def __init__(self, responder: Callable[[SentRequest], object] | None = None) -> None:
        self.sent: list[SentRequest] = []
        self.responder = responder

    def send_request(self, request: Request, destination: object, local: object = None) -> Deferred:
        d: Deferred = Deferred()
        sent = SentRequest(request, destination, local, d)
        self.sent.append(sent)
        if self.responder is not None:
            self.responder(sent)
        return d

    def pop(self) -> SentRequest:
        """The oldest request not yet taken (whether answered or not)."""
        assert self.sent, "nothing was sent"
        return self.sent.pop(0)

    def pending(self) -> list[SentRequest]:
        """The requests not answered yet (a cancelled one counts as answered)."""
        return [sent for sent in self.sent if not sent.answered]
