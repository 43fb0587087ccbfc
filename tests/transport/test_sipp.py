"""End to end over loopback against SIPp playing the registrar."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import reactor

from tests.peers import free_port
from tests.sipp_helpers import SIPP_DIR, start_sipp
from uacregistrant.sip.message import Request
from uacregistrant.sip.transaction import Timers
from uacregistrant.transport.errors import TransactionTimeout
from uacregistrant.transport.layer import TransactionLayer
from uacregistrant.transport.listen import Destination, parse_socket


def register() -> Request:
    return Request(
        "REGISTER",
        "sip:127.0.0.1",
        [
            ("Max-Forwards", "70"),
            ("From", "<sip:alice@example.test>;tag=reg1"),
            ("To", "<sip:alice@example.test>"),
            ("Call-ID", "sipp-1@example.test"),
            ("CSeq", "1 REGISTER"),
            ("Contact", "<sip:alice@127.0.0.1:5060>"),
            ("Expires", "600"),
        ],
    )


@pytest.fixture
def sipp():
    started = []

    def start(scenario: str, transport: str) -> object:
        handle = start_sipp(SIPP_DIR / scenario, free_port("udp" if transport == "u1" else "tcp"), transport,
                            ("-m", "1"))
        started.append(handle)
        return handle

    yield start
    for handle in started:
        handle.stop()


@pytest.fixture
def layer():
    made = []

    def make(transport: str, timers: Timers = Timers()) -> TransactionLayer:
        layer = TransactionLayer(reactor, reactor, timers=timers)
        layer.listen(parse_socket(f"{transport}:127.0.0.1:0"))
        made.append(layer)
        return layer

    yield make
    for layer in made:
        pytest_twisted.blockon(layer.stop())


@pytest.mark.parametrize(("transport", "sipp_transport"), [("udp", "u1"), ("tcp", "t1")])
@pytest_twisted.inlineCallbacks
def test_register_answered_200(sipp, layer, transport: str, sipp_transport: str):
    peer = sipp("register_200.xml", sipp_transport)
    client = layer(transport)
    response = yield client.send_request(register(), Destination(transport, "127.0.0.1", peer.port))
    assert response.status == 200
    assert response.to_tag.endswith("SIPpTag1")
    assert response.contacts[0].expires == 600
    assert peer.wait() == 0, peer.errors()


@pytest_twisted.inlineCallbacks
def test_retransmissions_reach_a_slow_registrar(sipp, layer):
    peer = sipp("register_late_200.xml", "u1")
    # T1 = 100 ms: copies at 0, 0.1 and 0.3 s go out before SIPp answers at 0.5 s.
    client = layer("udp", Timers(t1=0.1, t2=0.4, t4=0.5))
    response = yield client.send_request(register(), Destination("udp", "127.0.0.1", peer.port))
    assert response.status == 200
    assert client.stats.retransmissions >= 2
    assert client.stats.stray_responses == 0
    assert peer.wait() == 0, peer.errors()


@pytest_twisted.inlineCallbacks
def test_silent_registrar_times_out_on_timer_f(sipp, layer):
    peer = sipp("register_silent.xml", "u1")
    timers = Timers(t1=0.04, t2=0.32, t4=0.4)
    client = layer("udp", timers)
    started = reactor.seconds()
    with pytest.raises(TransactionTimeout):
        yield client.send_request(register(), Destination("udp", "127.0.0.1", peer.port))
    # Timer F = 64 T1 = 2.56 s.
    assert reactor.seconds() - started == pytest.approx(timers.timer_f, abs=0.5)
    assert client.stats.timeouts == 1
    assert client.stats.retransmissions >= 8
