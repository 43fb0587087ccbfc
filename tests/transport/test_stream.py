"""TCP behaviour on loopback: broken framing, lost connections, reconnecting."""

from __future__ import annotations

import os

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Factory, Protocol

from uacregistrant.sip.framing import StreamFramer
from uacregistrant.sip.message import Request, parse_message, response_for
from uacregistrant.sip.transaction import Timers
from uacregistrant.transport.errors import TransactionTimeout, TransportError
from uacregistrant.transport.layer import TransactionLayer
from uacregistrant.transport.listen import Destination, parse_socket


def options(cseq: int = 1) -> Request:
    return Request(
        "OPTIONS",
        "sip:peer.test",
        [
            ("From", "<sip:probe@client.test>;tag=c1"),
            ("To", "<sip:peer.test>"),
            ("Call-ID", "stream-1"),
            ("CSeq", f"{cseq} OPTIONS"),
        ],
    )


class Peer(Protocol):
    """A scripted TCP peer: answers 200, or hangs up on the first request when told to."""

    def __init__(self, script: dict) -> None:
        self.script = script
        self.framer = StreamFramer()

    def connectionMade(self) -> None:
        self.script["connections"] += 1

    def dataReceived(self, data: bytes) -> None:
        for raw in self.framer.feed(data):
            request = parse_message(raw, stream=True)
            self.script["requests"] += 1
            if self.script["silent"]:
                continue
            if self.script["hang_up"]:
                self.transport.loseConnection()
                return
            self.transport.write(response_for(request, 200, "OK", to_tag="p").to_bytes())
            if self.script["close_after_answer"]:
                self.transport.loseConnection()


@pytest.fixture
def peer():
    script = {"connections": 0, "requests": 0, "silent": False, "hang_up": False, "close_after_answer": False}
    port = reactor.listenTCP(0, Factory.forProtocol(lambda: Peer(script)), interface="127.0.0.1")
    yield Destination("tcp", "127.0.0.1", port.getHost().port), script
    pytest_twisted.blockon(defer.maybeDeferred(port.stopListening))


@pytest.fixture
def layer():
    layer = TransactionLayer(reactor, reactor)
    layer.listen(parse_socket("tcp:127.0.0.1:0"))
    yield layer
    pytest_twisted.blockon(layer.stop())


@pytest_twisted.inlineCallbacks
def test_connection_lost_before_the_answer_is_a_transport_error(layer, peer):
    destination, script = peer
    script["hang_up"] = True
    with pytest.raises(TransportError, match="connection to tcp:127.0.0.1:.* lost"):
        yield layer.send_request(options(), destination)


@pytest_twisted.inlineCallbacks
def test_tcp_never_retransmits_and_times_out_on_timer_f(peer):
    destination, script = peer
    script["silent"] = True
    layer = TransactionLayer(reactor, reactor, timers=Timers(t1=0.02, t2=0.16, t4=0.2))
    layer.listen(parse_socket("tcp:127.0.0.1:0"))
    try:
        with pytest.raises(TransactionTimeout):
            yield layer.send_request(options(), destination)
    finally:
        yield layer.stop()
    assert script["requests"] == 1
    assert layer.stats.retransmissions == 0
    assert layer.stats.timeouts == 1


@pytest_twisted.inlineCallbacks
def test_a_closed_connection_is_reopened_on_demand(layer, peer):
    destination, script = peer
    script["close_after_answer"] = True
    closed: defer.Deferred[None] = defer.Deferred()
    noticed = layer.stream_connection_lost

    def lost(connection, reason) -> None:
        noticed(connection, reason)
        closed.callback(None)

    layer.stream_connection_lost = lost
    first = yield layer.send_request(options(1), destination)
    yield closed
    second = yield layer.send_request(options(2), destination)
    assert (first.status, second.status) == (200, 200)
    assert script["connections"] == 2


class Client(Protocol):
    def __init__(self) -> None:
        self.framer = StreamFramer()
        self.answered: defer.Deferred[bytes] = defer.Deferred()
        self.lost: defer.Deferred[None] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        for message in self.framer.feed(data):
            self.answered.callback(message)

    def connectionLost(self, reason: object) -> None:
        self.lost.callback(None)


@pytest_twisted.inlineCallbacks
def test_incoming_connection_gets_answers_and_survives_keepalives_then_garbage_drops_it(layer):
    [spec] = layer.sockets
    client = yield connectProtocol(TCP4ClientEndpoint(reactor, spec.host, spec.port), Client())
    request = Request(
        "OPTIONS",
        f"sip:{spec.sent_by}",
        [
            ("Via", "SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKin"),
            ("From", "<sip:peer@127.0.0.1>;tag=x"),
            ("To", f"<sip:{spec.sent_by}>"),
            ("Call-ID", "in-1"),
            ("CSeq", "1 OPTIONS"),
        ],
    )
    # A CRLF keep-alive, then the request split across writes.
    data = b"\r\n\r\n" + request.to_bytes()
    client.transport.write(data[:30])
    client.transport.write(data[30:])
    answer = parse_message((yield client.answered), stream=True)
    client.transport.write(b"\r\n\r\n" + os.urandom(64) + b"\r\n\r\n")
    yield client.lost
    assert answer.status == 200
    assert answer.via.branch == "z9hG4bKin"
    assert layer.stats.incoming_requests == 1
    assert layer.stats.malformed_dropped == 1
