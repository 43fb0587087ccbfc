"""Accepted SIP TCP connections: an idle timeout, a deadline for a whole
message, and a cap per socket.  Real sockets on 127.0.0.1, timers on an
injected clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor, task

from tests.hostile.http_client import RawClient, connect, until
from tests.transport.certs import CertificateAuthority
from uacregistrant.transport.listen import parse_socket
from uacregistrant.transport.stream import StreamLimits, StreamSocket
from uacregistrant.transport.tls import TLSSettings

pytestmark = pytest.mark.timeout(30)

LIMITS = StreamLimits(idle_timeout=60.0, max_connections=3)
OPTIONS = (
    b"OPTIONS sip:us@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bK1\r\n"
    b"From: <sip:p@127.0.0.1>;tag=1\r\nTo: <sip:us@127.0.0.1>\r\nCall-ID: c\r\n"
    b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
)


class Receiver:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    def stream_message_received(self, connection: object, data: bytes) -> None:
        self.messages.append(data)

    def stream_malformed(self, connection: object, error: object) -> None:
        pass

    def stream_connection_lost(self, connection: object, reason: object) -> None:
        pass


class ClockedReactor:
    """The real reactor's sockets with a test clock's timers."""

    def __init__(self, clock: task.Clock) -> None:
        self.listenTCP = reactor.listenTCP
        self.listenSSL = reactor.listenSSL
        self.callLater = clock.callLater


class Listener:
    def __init__(self, spec: str = "tcp:127.0.0.1:0", tls: TLSSettings = TLSSettings()) -> None:
        self.clock = task.Clock()
        self.receiver = Receiver()
        self.socket = StreamSocket(parse_socket(spec), ClockedReactor(self.clock), tls, self.receiver, LIMITS)
        self.port = self.socket.listen().port


@pytest_twisted.async_yield_fixture
async def listener() -> AsyncIterator[Listener]:
    made = Listener()
    try:
        yield made
    finally:
        await made.socket.close()


@pytest_twisted.ensureDeferred
async def test_idle_accepted_connection_is_closed(listener: Listener) -> None:
    client = await connect(listener.port)
    await until(lambda: len(listener.socket.cap) == 1, "the connection accepted")
    listener.clock.advance(LIMITS.idle_timeout - 1)
    assert not client.closed.called
    listener.clock.advance(2)
    await client.closed


@pytest_twisted.ensureDeferred
async def test_each_whole_message_restarts_the_idle_timer(listener: Listener) -> None:
    client = await connect(listener.port)
    await until(lambda: len(listener.socket.cap) == 1, "the connection accepted")
    for count in range(1, 4):
        listener.clock.advance(LIMITS.idle_timeout - 1)
        client.send(OPTIONS)
        await until(lambda: len(listener.receiver.messages) == count, "the message")
    assert not client.closed.called
    assert len(listener.receiver.messages) == 3


@pytest_twisted.ensureDeferred
async def test_message_trickled_a_byte_at_a_time_is_cut(listener: Listener) -> None:
    client = await connect(listener.port)
    await until(lambda: len(listener.socket.cap) == 1, "the connection accepted")
    for byte in OPTIONS[:80]:
        client.send(bytes([byte]))
        await task.deferLater(reactor, 0.005, lambda: None)
        listener.clock.advance(LIMITS.idle_timeout / 40)
        if client.closed.called:
            break
    assert client.closed.called
    assert listener.receiver.messages == []


@pytest_twisted.ensureDeferred
async def test_cap_closes_the_oldest_accepted_connection(listener: Listener) -> None:
    clients: list[RawClient] = []
    for count in range(1, LIMITS.max_connections + 1):
        clients.append(await connect(listener.port))
        await until(lambda: len(listener.socket.cap) == count, "the connection accepted")
    newest = await connect(listener.port)
    await clients[0].closed
    newest.send(OPTIONS)
    await until(lambda: listener.receiver.messages == [OPTIONS], "the newest connection's message")
    assert not any(c.closed.called for c in clients[1:])
    assert len(listener.socket.cap) == LIMITS.max_connections
    assert listener.socket.cap.evicted == 1


@pytest_twisted.ensureDeferred
async def test_tls_connections_are_capped_and_timed_out_alike(tmp_path: Path) -> None:
    authority = CertificateAuthority(tmp_path)
    server = authority.issue("registrant.test")
    listener = Listener("tls:127.0.0.1:0", TLSSettings(cert_file=str(server.cert_file),
                                                       key_file=str(server.key_file)))
    try:
        # Plain TCP clients that never start the handshake: the cheapest flood.
        clients = []
        for _ in range(LIMITS.max_connections + 2):
            clients.append(await connect(listener.port))
            await until(lambda: listener.socket.cap.evicted + len(listener.socket.cap) == len(clients),
                        "the connection accepted")
        await clients[0].closed
        await clients[1].closed
        assert len(listener.socket.cap) == LIMITS.max_connections
        listener.clock.advance(LIMITS.idle_timeout + 1)
        for client in clients[2:]:
            await client.closed
        await until(lambda: len(listener.socket.cap) == 0, "every connection closed")
    finally:
        await listener.socket.close()


@pytest.mark.parametrize(
    ("limits", "capped", "raised_to", "now"),
    [
        ((1024, 4096), 1000, 1256, 1256),  # raised to the need
        ((1024, 1100), 1000, 1100, 1100),  # raised as far as the hard limit allows
        ((65536, 65536), 1000, None, 65536),  # enough already: untouched
    ],
)
def test_soft_descriptor_limit_is_raised_towards_the_caps(
    limits: tuple[int, int], capped: int, raised_to: int | None, now: int
) -> None:
    import resource

    from uacregistrant.transport.cap import ensure_descriptors

    calls: list[tuple[int, tuple[int, int]]] = []
    needed, soft = ensure_descriptors(
        capped, getrlimit=lambda which: limits, setrlimit=lambda which, value: calls.append((which, value))
    )
    assert needed == capped + 256
    assert soft == now
    assert calls == ([] if raised_to is None else [(resource.RLIMIT_NOFILE, (raised_to, limits[1]))])


def test_a_refused_raise_leaves_the_limit_as_it_was() -> None:
    from uacregistrant.transport.cap import ensure_descriptors

    def refuse(which: int, value: tuple[int, int]) -> None:
        raise ValueError("not allowed")

    assert ensure_descriptors(2000, getrlimit=lambda which: (1024, 4096), setrlimit=refuse) == (2256, 1024)
