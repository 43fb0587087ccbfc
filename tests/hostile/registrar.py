"""A scripted registrar on 127.0.0.1 (UDP or TCP), run in threads beside a
service process: each REGISTER is answered by a behaviour chosen by the user
part of its To URI, so one registrar plays honest and hostile at once."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from uacregistrant.sip.framing import StreamFramer
from uacregistrant.sip.headers import parse_name_addr
from uacregistrant.sip.message import Request, parse_message, response_for
from uacregistrant.sip.uri import parse_uri

_POLL = 0.05

# A behaviour gets the request and returns raw responses to send (maybe none).
Behaviour = Callable[[Request], Sequence[bytes]]


def granted(request: Request, *extra: tuple[str, str]) -> bytes:
    """200 OK keeping the request's Contact: the binding, as asked."""
    headers = [("Contact", value) for value in request.header_values("Contact")]
    return response_for(request, 200, "OK", [*headers, *extra], to_tag="reg").to_bytes()


def honest(request: Request) -> Sequence[bytes]:
    return [granted(request)]


def to_user(request: Request) -> str:
    return parse_uri(parse_name_addr(request.header("To") or "")[1]).user or ""


@dataclass(frozen=True, slots=True)
class Arrival:
    at: float
    user: str
    raw: bytes
    request: Request


class ScriptedRegistrar:
    """``behaviours`` by To user; anyone else gets ``honest``."""

    def __init__(self, transport: str, behaviours: dict[str, Behaviour]) -> None:
        self.transport = transport
        self.behaviours = behaviours
        self._lock = threading.Lock()
        self._arrivals: list[Arrival] = []
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
        self._socket = socket.socket(socket.AF_INET, kind)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.settimeout(_POLL)
        if transport == "tcp":
            self._socket.listen(16)

    @property
    def port(self) -> int:
        return self._socket.getsockname()[1]

    @property
    def uri(self) -> str:
        suffix = ";transport=tcp" if self.transport == "tcp" else ""
        return f"sip:127.0.0.1:{self.port}{suffix}"

    def start(self) -> ScriptedRegistrar:
        self._spawn(self._serve_datagrams if self.transport == "udp" else self._accept)
        return self

    def stop(self) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(5)
        self._socket.close()

    def arrivals(self, user: str | None = None) -> list[Arrival]:
        with self._lock:
            return [a for a in self._arrivals if user is None or a.user == user]

    def raw(self) -> bytes:
        with self._lock:
            return b"".join(a.raw for a in self._arrivals)

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _answer(self, raw: bytes, stream: bool) -> Sequence[bytes]:
        request = parse_message(raw, stream=stream)
        assert isinstance(request, Request)
        user = to_user(request)
        with self._lock:
            self._arrivals.append(Arrival(time.monotonic(), user, raw, request))
        return self.behaviours.get(user, honest)(request)

    def _serve_datagrams(self) -> None:
        while not self._stopping.is_set():
            try:
                data, peer = self._socket.recvfrom(65535)
            except TimeoutError:
                continue
            if data.strip(b"\r\n"):
                for reply in self._answer(data, stream=False):
                    self._socket.sendto(reply, peer)

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            self._spawn(self._serve_stream, connection)

    def _serve_stream(self, connection: socket.socket) -> None:
        connection.settimeout(_POLL)
        framer = StreamFramer()
        with connection:
            while not self._stopping.is_set():
                try:
                    data = connection.recv(65535)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                for raw in framer.feed(data):
                    for reply in self._answer(raw, stream=True):
                        connection.sendall(reply)
