"""The transaction layer over a memory reactor: every datagram and timer is observable."""

from __future__ import annotations

import itertools
import os
import random
import socket
from collections.abc import Callable

import pytest
from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from tests.transport.fakes import FakeUDPPort, UDPMemoryReactor
from uacregistrant.sip.message import Request, Response, parse_message, response_for
from uacregistrant.sip.transaction import Timers
from uacregistrant.transport.errors import TransactionTimeout, TransportError
from uacregistrant.transport.interfaces import IRequestSender
from uacregistrant.transport.layer import TransactionLayer
from uacregistrant.transport.listen import Destination, parse_socket
from uacregistrant.transport.udp import BUFFER_BYTES

REGISTRAR = Destination("udp", "192.0.2.10", 5060)


def counting_random() -> Callable[[int], bytes]:
    counter = itertools.count(1)
    return lambda size: next(counter).to_bytes(size, "big")


def register(cseq: int = 1) -> Request:
    return Request(
        "REGISTER",
        "sip:registrar.test",
        [
            ("Max-Forwards", "70"),
            ("From", "<sip:alice@registrar.test>;tag=abc"),
            ("To", "<sip:alice@registrar.test>"),
            ("Call-ID", "call-1@test"),
            ("CSeq", f"{cseq} REGISTER"),
            ("Contact", "<sip:alice@192.0.2.1:5060>;expires=600"),
        ],
    )


class Harness:
    def __init__(self, timers: Timers = Timers()) -> None:
        self.reactor = UDPMemoryReactor()
        self.layer = TransactionLayer(self.reactor, self.reactor, random=counting_random(), timers=timers, user_agent="ua-test/1")
        self.spec = self.layer.listen(parse_socket("udp:192.0.2.1:5060"))
        self.port: FakeUDPPort = self.reactor.udp_ports[0]

    def run_until_idle(self, limit: float = 1000.0) -> None:
        """Advance the clock from one delayed call to the next until none is left."""
        while self.reactor.getDelayedCalls() and self.reactor.seconds() < limit:
            due = min(call.getTime() for call in self.reactor.getDelayedCalls())
            self.reactor.advance(max(0.0, due - self.reactor.seconds()))

    def sent_times(self) -> list[float]:
        return [at for at, _, _ in self.port.sent]

    def last_request(self) -> Request:
        message = parse_message(self.port.sent[-1][1])
        assert isinstance(message, Request)
        return message

    def answer(self, status: int, request: Request | None = None, reason: str = "Whatever") -> None:
        response = response_for(request or self.last_request(), status, reason, to_tag="srv")
        self.port.protocol.datagramReceived(response.to_bytes(), (REGISTRAR.host, REGISTRAR.port))

    def incoming(self, data: bytes, source: tuple[str, int] = ("192.0.2.77", 5099)) -> None:
        self.port.protocol.datagramReceived(data, source)


def results(d: Deferred) -> list[object]:
    seen: list[object] = []
    d.addBoth(seen.append)
    return seen


def test_layer_provides_the_request_sender_interface() -> None:
    assert verifyObject(IRequestSender, Harness().layer)


def test_udp_socket_buffers_are_enlarged() -> None:
    options = Harness().port.handle.options
    assert options[(socket.SOL_SOCKET, socket.SO_RCVBUF)] == BUFFER_BYTES
    assert options[(socket.SOL_SOCKET, socket.SO_SNDBUF)] == BUFFER_BYTES


def test_request_gets_our_via_and_goes_to_the_destination() -> None:
    h = Harness()
    h.layer.send_request(register(), REGISTRAR)
    _, data, address = h.port.sent[0]
    assert address == ("192.0.2.10", 5060)
    request = parse_message(data)
    assert request.method == "REGISTER"
    assert request.headers[0] == ("Via", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK" + "00" * 9 + "01;rport")
    assert request.headers[1:] == register().headers + [("Content-Length", "0")]
    assert h.layer.stats.requests_sent == 1


def test_udp_retransmits_at_exact_times_then_times_out_at_32s() -> None:
    h = Harness()
    outcome = results(h.layer.send_request(register(), REGISTRAR))
    h.run_until_idle()
    assert h.sent_times() == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert len({data for _, data, _ in h.port.sent}) == 1
    assert h.reactor.seconds() == 32.0
    [failure] = outcome
    assert isinstance(failure, Failure) and failure.check(TransactionTimeout)
    assert h.reactor.getDelayedCalls() == []
    assert h.layer.stats.retransmissions == 10
    assert h.layer.stats.timeouts == 1


def test_first_timer_e_of_every_transaction_shares_one_delayed_call() -> None:
    h = Harness()
    for cseq in range(5):
        h.layer.send_request(register(cseq), REGISTRAR)
    assert len(h.reactor.getDelayedCalls()) == 1
    h.reactor.advance(0.5)
    # Retransmitted once: from then on each has its own timer.
    assert h.layer.stats.retransmissions == 5
    assert len(h.reactor.getDelayedCalls()) == 5
    h.reactor.advance(1.0)
    assert h.layer.stats.retransmissions == 10


def test_each_first_retransmission_is_t1_after_its_own_start() -> None:
    h = Harness()
    outcomes = []
    for cseq in range(3):
        outcomes.append(results(h.layer.send_request(register(cseq), REGISTRAR)))
        h.reactor.advance(0.1)
    # The middle one is answered before its Timer E; the others go on.
    middle = [data for _, data, _ in h.port.sent][1]
    h.answer(200, parse_message(middle), "OK")
    assert [r.status for r in outcomes[1]] == [200]
    h.reactor.advance(0.2)  # 0.5
    h.reactor.advance(0.2)  # 0.7
    h.reactor.advance(0.2)  # 0.9
    assert h.sent_times() == [0.0, 0.1, 0.2, 0.5, 0.7]
    [first, last] = (outcome for i, outcome in enumerate(outcomes) if i != 1)
    assert first == last == []


def test_nothing_stays_on_the_clock_once_every_transaction_is_answered() -> None:
    h = Harness()
    sent = [h.layer.send_request(register(cseq), REGISTRAR) for cseq in range(3)]
    requests = [parse_message(data) for _, data, _ in h.port.sent]
    for request in requests:
        h.answer(200, request, "OK")
    assert all(results(d)[0].status == 200 for d in sent)
    assert [call.func.__name__ for call in h.reactor.getDelayedCalls()] == ["_purge"]
    h.run_until_idle()
    assert h.sent_times() == [0.0, 0.0, 0.0]


def test_final_response_fires_the_deferred_and_timer_k_cleans_up() -> None:
    h = Harness()
    outcome = results(h.layer.send_request(register(), REGISTRAR))
    h.reactor.advance(0.5)
    h.reactor.advance(0.5)
    request = h.last_request()
    h.answer(200, request, "OK")
    [response] = outcome
    assert isinstance(response, Response) and response.status == 200
    assert response.to_tag == "srv"
    # Completed: the retransmitted 200 is absorbed, not a stray.
    h.answer(200, request, "OK")
    assert outcome == [response]
    assert h.layer.stats.stray_responses == 0
    [timer_k] = h.reactor.getDelayedCalls()
    assert timer_k.getTime() == 6.0
    h.run_until_idle()
    assert h.sent_times() == [0.0, 0.5]
    # After Timer K the transaction is gone: the same response is now a stray.
    h.answer(200, request, "OK")
    assert h.layer.stats.stray_responses == 1
    assert h.layer.stats.responses_received == 3


def test_provisional_is_not_delivered_and_retransmissions_go_on_every_t2() -> None:
    h = Harness()
    outcome = results(h.layer.send_request(register(), REGISTRAR))
    h.reactor.advance(0.2)
    h.answer(100)
    assert outcome == []
    h.reactor.advance(0.3)  # the pending E at 0.5
    h.reactor.advance(4.0)  # then every T2
    h.reactor.advance(4.0)
    assert h.sent_times() == [0.0, 0.5, 4.5, 8.5]
    h.answer(403, reason="Forbidden")
    assert [r.status for r in outcome] == [403]


@pytest.mark.parametrize(
    "mangle",
    [
        lambda data: data.replace(b"branch=z9hG4bK", b"branch=z9hG4bKx"),
        lambda data: data.replace(b"1 REGISTER", b"1 OPTIONS"),
        lambda data: data.replace(b";rport", b"").replace(b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK", b"Via: SIP/2.0/UDP 192.0.2.1:5060;x=z9hG4bK"),
    ],
    ids=["other-branch", "other-method", "no-branch"],
)
def test_responses_matching_no_transaction_are_strays(mangle) -> None:
    h = Harness()
    outcome = results(h.layer.send_request(register(), REGISTRAR))
    good = response_for(h.last_request(), 200, "OK", to_tag="srv").to_bytes()
    h.incoming(mangle(good))
    assert outcome == []
    assert h.layer.stats.stray_responses == 1
    h.incoming(good)
    assert [r.status for r in outcome] == [200]


def test_garbage_is_counted_and_survived() -> None:
    h = Harness()
    outcome = results(h.layer.send_request(register(), REGISTRAR))
    good = response_for(h.last_request(), 200, "OK", to_tag="srv").to_bytes()
    rng = random.Random(3261)
    garbage = [os.urandom(rng.randrange(0, 1500)) for _ in range(3000)]
    # Almost-SIP: the good response cut short anywhere in its head, and with bytes flipped.
    head_end = good.index(b"\r\n\r\n")
    garbage += [good[:cut] for cut in range(head_end)]
    garbage += [b"SIP/2.0 200 OK\r\nVia: \xff\xfe\r\n\r\n", b"SIP/2.0 999 No\r\n\r\n", b"\r\n\r\n", b""]
    for data in garbage:
        h.incoming(data)
    assert h.layer.stats.malformed_dropped == len(garbage)
    assert outcome == []
    h.incoming(good)
    assert [r.status for r in outcome] == [200]


def test_garbage_with_valid_framing_but_broken_headers_is_dropped() -> None:
    h = Harness()
    broken = [
        b"SIP/2.0 200 OK\r\nVia: nonsense\r\nCSeq: 1 REGISTER\r\n\r\n",
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCSeq: x\r\n\r\n",
        b"SIP/2.0 200 OK\r\nCSeq: 1 REGISTER\r\n\r\n",
        b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n",
    ]
    for data in broken:
        h.incoming(data)
    assert h.layer.stats.malformed_dropped == len(broken)
    assert h.port.sent == []


def options_request(method: str = "OPTIONS", rport: bool = True) -> bytes:
    via = "SIP/2.0/UDP 192.0.2.77:5070;branch=z9hG4bKpeer" + (";rport" if rport else "")
    return Request(
        method,
        "sip:192.0.2.1:5060",
        [
            ("Via", via),
            ("From", "<sip:peer@192.0.2.77>;tag=p1"),
            ("To", "<sip:192.0.2.1>"),
            ("Call-ID", "opt-1"),
            ("CSeq", f"7 {method}"),
            ("Max-Forwards", "70"),
        ],
    ).to_bytes()


def test_options_is_answered_200_to_the_source_address_and_port_when_rport() -> None:
    h = Harness()
    h.incoming(options_request(), ("198.51.100.7", 40000))
    [(_, data, address)] = h.port.sent
    assert address == ("198.51.100.7", 40000)
    response = parse_message(data)
    # §18.2.1 and RFC 3581: the Via tells the peer where we saw it.
    assert response.header("Via") == "SIP/2.0/UDP 192.0.2.77:5070;branch=z9hG4bKpeer;rport=40000;received=198.51.100.7"
    assert response.status == 200
    assert response.header("Allow") == "OPTIONS"
    assert response.header("Accept") == "*/*"
    assert response.header("Server") == "ua-test/1"
    assert response.via.branch == "z9hG4bKpeer"
    assert response.cseq.method == "OPTIONS"
    assert response.to_tag
    assert h.layer.stats.incoming_requests == 1


@pytest.mark.parametrize(
    ("source", "via"),
    [
        (("192.0.2.77", 40000), "SIP/2.0/UDP 192.0.2.77:5070;branch=z9hG4bKpeer"),
        (("198.51.100.7", 40000), "SIP/2.0/UDP 192.0.2.77:5070;branch=z9hG4bKpeer;received=198.51.100.7"),
    ],
)
def test_without_rport_the_answer_goes_to_the_via_port(source: tuple[str, int], via: str) -> None:
    h = Harness()
    h.incoming(options_request(rport=False), source)
    _, data, address = h.port.sent[0]
    assert address == (source[0], 5070)
    assert parse_message(data).header("Via") == via


@pytest.mark.parametrize(("method", "status"), [("INVITE", 405), ("REGISTER", 405), ("SUBSCRIBE", 405), ("FROBNICATE", 501)])
def test_other_methods_are_refused(method: str, status: int) -> None:
    h = Harness()
    h.incoming(options_request(method))
    response = parse_message(h.port.sent[0][1])
    assert response.status == status
    assert (response.header("Allow") == "OPTIONS") == (status == 405)


def test_ack_gets_nothing() -> None:
    h = Harness()
    h.incoming(options_request("ACK"))
    assert h.port.sent == []
    assert h.layer.stats.incoming_requests == 1


def test_cancelling_stops_the_transaction() -> None:
    h = Harness()
    d = h.layer.send_request(register(), REGISTRAR)
    outcome = results(d)
    h.reactor.advance(0.5)
    d.cancel()
    assert outcome[0].check(CancelledError)
    assert h.reactor.getDelayedCalls() == []
    h.reactor.advance(100)
    assert h.sent_times() == [0.0, 0.5]


def test_stop_cancels_everything() -> None:
    h = Harness()
    outcomes = [results(h.layer.send_request(register(cseq), REGISTRAR)) for cseq in range(3)]
    h.reactor.advance(1.0)
    stopped = results(h.layer.stop())
    assert stopped == [None]
    assert all(outcome[0].check(CancelledError) for outcome in outcomes)
    assert h.reactor.getDelayedCalls() == []
    assert not h.port.listening


@pytest.mark.parametrize(
    "destination",
    [Destination("udp", "2001:db8::1", 5060), Destination("tcp", "192.0.2.10", 5060), Destination("tls", "192.0.2.10", 5061)],
)
def test_no_suitable_socket_is_a_transport_error(destination: Destination) -> None:
    h = Harness()
    [failure] = results(h.layer.send_request(register(), destination))
    assert failure.check(TransportError)
    assert str(destination) in str(failure.value)
    assert h.reactor.getDelayedCalls() == []


def test_local_socket_picks_the_sender_and_the_via() -> None:
    h = Harness()
    second = h.layer.listen(parse_socket("udp:192.0.2.2:5080"))
    h.layer.send_request(register(), REGISTRAR, local=second)
    assert h.port.sent == []
    _, data, _ = h.reactor.udp_ports[1].sent[0]
    assert parse_message(data).via.host == "192.0.2.2"
    assert parse_message(data).via.port == 5080
    [failure] = results(h.layer.send_request(register(), REGISTRAR, local=parse_socket("udp:192.0.2.3:5060")))
    assert failure.check(TransportError)


def test_ipv6_via_uses_brackets() -> None:
    h = Harness()
    h.layer.listen(parse_socket("udp:[2001:db8::5]:5060"))
    h.layer.send_request(register(), Destination("udp", "2001:db8::1", 5060))
    _, data, address = h.reactor.udp_ports[1].sent[0]
    assert address == ("2001:db8::1", 5060)
    assert parse_message(data).header("Via").startswith("SIP/2.0/UDP [2001:db8::5]:5060;branch=z9hG4bK")


def test_a_refused_send_is_a_transport_error() -> None:
    h = Harness()

    def refuse(data: bytes, addr: tuple[str, int]) -> None:
        raise OSError("Network is unreachable")

    h.port.handle.sendto = refuse
    [failure] = results(h.layer.send_request(register(), REGISTRAR))
    assert failure.check(TransportError)
    assert "Network is unreachable" in str(failure.value)
    assert h.reactor.getDelayedCalls() == []
    assert h.layer.stats.transport_errors == 1


def test_a_callback_may_start_the_next_transaction() -> None:
    h = Harness()
    chained: list[Deferred] = []
    d = h.layer.send_request(register(1), REGISTRAR)
    d.addCallback(lambda _: chained.append(h.layer.send_request(register(2), REGISTRAR)))
    h.answer(401, reason="Unauthorized")
    assert len(chained) == 1
    assert h.last_request().cseq.number == 2
    h.answer(200, reason="OK")
    assert results(chained[0])[0].status == 200
    h.run_until_idle()
    assert h.reactor.getDelayedCalls() == []


def test_only_the_top_via_of_a_comma_list_is_annotated() -> None:
    h = Harness()
    data = options_request().replace(
        b"branch=z9hG4bKpeer;rport", b"branch=z9hG4bKpeer;rport, SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKold"
    )
    h.incoming(data, ("198.51.100.7", 40000))
    response = parse_message(h.port.sent[0][1])
    assert response.header("Via") == (
        "SIP/2.0/UDP 192.0.2.77:5070;branch=z9hG4bKpeer;rport=40000;received=198.51.100.7, "
        "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKold"
    )


def test_stop_abandons_quietly_when_nobody_waits() -> None:
    h = Harness()
    abandoned = h.layer.send_request(register(), REGISTRAR)
    h.layer.stop()
    # The CancelledError is consumed: nothing is left to be reported as
    # "Unhandled error in Deferred" when the Deferred is collected.
    assert results(abandoned) == [None]
    assert h.reactor.getDelayedCalls() == []
