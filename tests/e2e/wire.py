"""Loopback stand-ins that run in threads beside a service process: a DNS server,
a registrar that shows what reached it (keep-alives and SNI included), and a
TCP proxy whose connections a test can cut.

End-to-end tests block in ``wait_until`` while the service works, so the
reactor is not running then: these serve from plain sockets in threads, and
``stop()`` joins every thread they started.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.names import dns

from uacregistrant.sip.framing import StreamFramer
from uacregistrant.sip.message import Request, parse_message, response_for

DEFAULT_TTL = 300
_POLL = 0.05


def _bound(kind: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, kind)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(_POLL)
    return sock


class _Threads:
    """Threads that run until ``stop()``; each loop checks ``running``."""

    def __init__(self) -> None:
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def running(self) -> bool:
        return not self._stopping.is_set()

    def spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def stop(self) -> None:
        self._stopping.set()
        for thread in list(self._threads):
            thread.join(5)


class DNSServer(_Threads):
    """Authoritative answers over UDP from records a test sets; other names are NXDOMAIN."""

    def __init__(self) -> None:
        super().__init__()
        self._socket = _bound(socket.SOCK_DGRAM)
        self._lock = threading.Lock()
        self._records: dict[str, list[Any]] = {}
        self.queries: list[tuple[str, str]] = []

    @property
    def address(self) -> str:
        """As ``--dns-servers`` takes it."""
        host, port = self._socket.getsockname()
        return f"{host}:{port}"

    def start(self) -> "DNSServer":
        self.spawn(self._serve)
        return self

    def set_records(self, records: Mapping[str, Sequence[Any]]) -> None:
        """Replace the zone: names → ``dns.Record_*`` (their ``ttl``, else DEFAULT_TTL)."""
        with self._lock:
            self._records = {name.lower().rstrip("."): list(values) for name, values in records.items()}

    def queried(self, name: str, kind: str) -> int:
        with self._lock:
            return self.queries.count((name, kind))

    def _serve(self) -> None:
        while self.running:
            try:
                data, source = self._socket.recvfrom(4096)
            except TimeoutError:
                continue
            self._socket.sendto(self._answer(data), source)
        self._socket.close()

    def _answer(self, data: bytes) -> bytes:
        query = dns.Message()
        query.fromStr(data)
        reply = dns.Message(id=query.id, answer=1, opCode=query.opCode, recDes=query.recDes, auth=1)
        reply.queries = query.queries
        with self._lock:
            for question in query.queries:
                name = question.name.name.decode("ascii").lower().rstrip(".")
                self.queries.append((name, dns.QUERY_TYPES.get(question.type, str(question.type))))
                records = self._records.get(name)
                if records is None:
                    reply.rCode = dns.ENAME
                    continue
                reply.answers += [
                    dns.RRHeader(name, record.TYPE, dns.IN, DEFAULT_TTL if record.ttl is None else record.ttl, record)
                    for record in records
                    if record.TYPE == question.type
                ]
        return reply.toStr()


@dataclass(frozen=True, slots=True)
class Arrival:
    """What reached the registrar: a request, or a CRLF keep-alive (``request`` None)."""

    at: float
    peer: tuple[str, int]
    request: Request | None


class WireRegistrar(_Threads):
    """Answers every REGISTER 200 with its own Contact (so the asked expiry is granted)
    plus ``extra_headers``, over ``udp``, ``tcp`` or ``tls`` (``cert``/``key`` files);
    records every arrival and, for TLS, the SNI server names."""

    def __init__(
        self,
        transport: str,
        *,
        extra_headers: Sequence[tuple[str, str]] = (),
        cert: Path | None = None,
        key: Path | None = None,
    ) -> None:
        super().__init__()
        self.transport = transport
        self.extra_headers = list(extra_headers)
        self._lock = threading.Lock()
        self._arrivals: list[Arrival] = []
        self.server_names: list[str | None] = []
        self.connections = 0
        self._context: ssl.SSLContext | None = None
        if transport == "tls":
            self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._context.load_cert_chain(cert, key)
            self._context.sni_callback = self._sni
        self._socket = _bound(socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM)
        if transport != "udp":
            self._socket.listen(8)

    @property
    def port(self) -> int:
        return self._socket.getsockname()[1]

    def start(self) -> "WireRegistrar":
        self.spawn(self._serve_datagrams if self.transport == "udp" else self._accept)
        return self

    def arrivals(self) -> list[Arrival]:
        with self._lock:
            return list(self._arrivals)

    def registers(self) -> list[Arrival]:
        return [a for a in self.arrivals() if a.request is not None and a.request.method == "REGISTER"]

    def keepalives(self) -> list[Arrival]:
        return [a for a in self.arrivals() if a.request is None]

    def _sni(self, connection: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext) -> None:
        with self._lock:
            self.server_names.append(server_name)

    def _arrived(self, peer: tuple[str, int], request: Request | None) -> None:
        with self._lock:
            self._arrivals.append(Arrival(time.monotonic(), peer, request))

    def _reply(self, request: Request) -> bytes:
        headers = [("Contact", value) for value in request.header_values("Contact")] + self.extra_headers
        return response_for(request, 200, "OK", headers, to_tag="wire").to_bytes()

    def _serve_datagrams(self) -> None:
        while self.running:
            try:
                data, peer = self._socket.recvfrom(65535)
            except TimeoutError:
                continue
            if not data.strip(b"\r\n"):
                self._arrived(peer, None)
                continue
            request = parse_message(data)
            assert isinstance(request, Request)
            self._arrived(peer, request)
            self._socket.sendto(self._reply(request), peer)
        self._socket.close()

    def _accept(self) -> None:
        while self.running:
            try:
                connection, peer = self._socket.accept()
            except TimeoutError:
                continue
            with self._lock:
                self.connections += 1
            self.spawn(self._serve_stream, connection, peer)
        self._socket.close()

    def _serve_stream(self, connection: socket.socket, peer: tuple[str, int]) -> None:
        connection.settimeout(5)
        if self._context is not None:
            try:
                connection = self._context.wrap_socket(connection, server_side=True)
            except (ssl.SSLError, OSError):
                connection.close()
                return
        connection.settimeout(_POLL)
        framer = StreamFramer()
        with connection:
            while self.running:
                try:
                    data = connection.recv(65535)
                except (TimeoutError, ssl.SSLWantReadError):
                    continue
                except OSError:
                    return
                if not data:
                    return
                seen = framer.keepalives
                messages = framer.feed(data)
                for _ in range(framer.keepalives - seen):
                    self._arrived(peer, None)
                for raw in messages:
                    request = parse_message(raw, stream=True)
                    assert isinstance(request, Request)
                    self._arrived(peer, request)
                    connection.sendall(self._reply(request))


class TCPProxy(_Threads):
    """Forwards each TCP connection accepted on 127.0.0.1 to ``upstream``; ``cut()``
    closes every open pair, as a NAT box or a restarted peer would."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        super().__init__()
        self.upstream = upstream
        self._socket = _bound(socket.SOCK_STREAM)
        self._socket.listen(8)
        self._lock = threading.Lock()
        self._open: list[tuple[socket.socket, socket.socket]] = []
        self.accepted = 0

    @property
    def port(self) -> int:
        return self._socket.getsockname()[1]

    def start(self) -> "TCPProxy":
        self.spawn(self._accept)
        return self

    def cut(self) -> None:
        with self._lock:
            pairs, self._open = self._open, []
        for pair in pairs:
            for sock in pair:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        super().stop()
        self.cut()

    def _accept(self) -> None:
        while self.running:
            try:
                downstream, _ = self._socket.accept()
            except TimeoutError:
                continue
            upstream = socket.create_connection(self.upstream, timeout=5)
            with self._lock:
                self.accepted += 1
                self._open.append((downstream, upstream))
            self.spawn(self._pump, downstream, upstream)
            self.spawn(self._pump, upstream, downstream)
        self._socket.close()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        source.settimeout(_POLL)
        while self.running:
            try:
                data = source.recv(65535)
            except TimeoutError:
                continue
            except OSError:
                data = b""
            if not data:
                break
            try:
                sink.sendall(data)
            except OSError:
                break
        # Either side closing closes both, so the other end sees the flow go.
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        source.close()
