"""UDP stand-ins for shutdown and crash tests, in threads beside a service process:
a registrar whose answers a test scripts, and a relay that forwards between the
service and a real registrar while recording what went each way.

Both are built on ``wire._Threads``: ``stop()`` joins every thread they started.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable

from uacregistrant.sip.errors import ParseError
from uacregistrant.sip.message import Request, Response, parse_message, response_for

from .wire import _bound, _Threads

# How a ScriptedRegistrar treats REGISTERs.
ANSWER, SILENT, HALF = "answer", "silent", "half"


def expires_of(request: Request) -> int | None:
    """The ``expires`` our Contact asks for (0 for an unREGISTER)."""
    contact = request.header("Contact") or ""
    for param in contact.split(";")[1:]:
        name, _, value = param.strip().partition("=")
        if name.lower() == "expires" and value.isdigit():
            return int(value)
    return None


class ScriptedRegistrar(_Threads):
    """Answers REGISTER over UDP according to ``mode``: ``ANSWER`` every one (200
    echoing the Contact), ``SILENT`` none, ``HALF`` every other dialog (by Call-ID,
    so retransmissions of an unanswered request stay unanswered)."""

    def __init__(self, mode: str = ANSWER) -> None:
        super().__init__()
        self.mode = mode
        self._socket = _bound(socket.SOCK_DGRAM)
        self._lock = threading.Lock()
        self._half: dict[str, bool] = {}
        self.received: list[Request] = []
        self.answered: list[Request] = []

    @property
    def uri(self) -> str:
        return f"sip:127.0.0.1:{self._socket.getsockname()[1]}"

    def start(self) -> "ScriptedRegistrar":
        self.spawn(self._serve)
        return self

    def count(self, predicate: Callable[[Request], bool], answered: bool = False) -> int:
        with self._lock:
            return sum(1 for request in (self.answered if answered else self.received) if predicate(request))

    def _should_answer(self, request: Request) -> bool:
        if self.mode == ANSWER:
            return True
        if self.mode == SILENT:
            return False
        call_id = request.header("Call-ID") or ""
        if call_id not in self._half:
            self._half[call_id] = len(self._half) % 2 == 0
        return self._half[call_id]

    def _serve(self) -> None:
        while self.running:
            try:
                data, peer = self._socket.recvfrom(65535)
            except TimeoutError:
                continue
            try:
                request = parse_message(data)
            except ParseError:
                continue
            if not isinstance(request, Request):
                continue
            with self._lock:
                self.received.append(request)
                response = self._response(request)
                if response is not None:
                    self.answered.append(request)
            if response is not None:
                self._socket.sendto(response.to_bytes(), peer)
        self._socket.close()

    def _response(self, request: Request) -> Response | None:
        """What to answer ``request`` (None: nothing), under the lock; a subclass may script more."""
        if not self._should_answer(request):
            return None
        headers = [("Contact", value) for value in request.header_values("Contact")]
        return response_for(request, 200, "OK", headers, to_tag="fake")


@dataclass(frozen=True, slots=True)
class Seen:
    """A SIP message the relay forwarded: ``upstream`` from the service to the registrar."""

    at: float
    upstream: bool
    message: Request | Response


class UDPRelay(_Threads):
    """Sits between the service (which takes ``uri`` as its registrar or proxy) and
    ``upstream`` (host, port); forwards both ways and keeps what passed, so a test
    can act at a precise moment on the wire: ``on_seen`` is called in the relay's
    thread with each message just after it was forwarded.  ``hold_replies`` stops
    forwarding answers (the registrar still saw the request)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        super().__init__()
        self.upstream = upstream
        self._front = _bound(socket.SOCK_DGRAM)
        self._back = _bound(socket.SOCK_DGRAM)
        self._lock = threading.Lock()
        self._client: tuple[str, int] | None = None
        self.seen: list[Seen] = []
        self.hold_replies = False
        self.on_seen: Callable[[Seen], None] | None = None

    @property
    def uri(self) -> str:
        return f"sip:127.0.0.1:{self._front.getsockname()[1]}"

    def start(self) -> "UDPRelay":
        self.spawn(self._forward_up)
        self.spawn(self._forward_down)
        return self

    def messages(self, upstream: bool) -> list[Request | Response]:
        with self._lock:
            return [s.message for s in self.seen if s.upstream is upstream]

    def requests(self) -> list[Request]:
        return [m for m in self.messages(True) if isinstance(m, Request) and m.method == "REGISTER"]

    def _note(self, data: bytes, upstream: bool) -> None:
        try:
            message = parse_message(data)
        except ParseError:
            return
        seen = Seen(time.monotonic(), upstream, message)
        with self._lock:
            self.seen.append(seen)
        hook = self.on_seen
        if hook is not None:
            hook(seen)

    def _forward_up(self) -> None:
        while self.running:
            try:
                data, peer = self._front.recvfrom(65535)
            except TimeoutError:
                continue
            self._client = peer
            self._back.sendto(data, self.upstream)
            self._note(data, True)
        self._front.close()

    def _forward_down(self) -> None:
        while self.running:
            try:
                data, _ = self._back.recvfrom(65535)
            except TimeoutError:
                continue
            if self.hold_replies or self._client is None:
                continue
            self._front.sendto(data, self._client)
            self._note(data, False)
        self._back.close()
