"""RFC 3263 targets in the engine: failover within one attempt, and re-resolution after the TTL."""

from __future__ import annotations

from twisted.internet.defer import succeed
from twisted.internet.task import Clock

from uacregistrant.registrant.states import State
from uacregistrant.transport.dns import Targets
from uacregistrant.transport.errors import TransportError
from uacregistrant.transport.listen import Destination

from .fakes import make_engine, record, reply, timeout

A = Destination("udp", "127.0.0.1", 5060, server_name="registrar.example.test")
B = Destination("udp", "127.0.0.2", 5060, server_name="registrar.example.test")
TI = 10


class FakeResolver:
    def __init__(self, clock, ttl=300):
        self.clock = clock
        self.ttl = ttl
        self.destinations = (A, B)
        self.asked = []

    def resolve(self, uri_text):
        self.asked.append(uri_text)
        return succeed(Targets(self.destinations, self.clock.seconds() + self.ttl))


def start():
    clock = Clock()
    engine, sender, clock = make_engine(clock, resolver=FakeResolver(clock))
    engine.apply([record(registrar="sip:registrar.example.test")])
    engine.start()
    clock.pump([1] * TI)
    return engine, sender, clock


def test_timeout_fails_over_to_the_next_target_with_the_same_request():
    engine, sender, clock = start()
    first = sender.pop()
    assert first.destination == A
    timeout(first)
    second = sender.pop()
    assert second.destination == B
    assert second.request is first.request
    reply(second, 200, "OK", "Contact: <sip:alice@127.0.0.1:5070>;expires=600")
    registrant = engine.get(record(registrar="sip:registrar.example.test").key)
    assert registrant.state is State.REGISTERED_STATE
    assert registrant.destination == B


def test_503_and_transport_errors_fail_over_too():
    engine, sender, clock = start()
    reply(sender.pop(), 503, "Service Unavailable")
    assert sender.pop().destination == B

    engine, sender, clock = start()
    sender.pop().deferred.errback(TransportError("connection refused"))
    assert sender.pop().destination == B


def test_when_every_target_fails_the_record_fails_and_retries_from_the_top():
    engine, sender, clock = start()
    timeout(sender.pop())
    timeout(sender.pop())
    assert sender.sent == []
    registrant = engine.get(record(registrar="sip:registrar.example.test").key)
    assert registrant.state is State.REGISTER_TIMEOUT_STATE
    clock.pump([1] * 100)
    assert sender.pop().destination == A


def test_other_failures_do_not_fail_over():
    engine, sender, clock = start()
    reply(sender.pop(), 403, "Forbidden")
    assert sender.sent == []


def test_the_target_that_answered_is_kept_and_re_resolved_after_the_ttl():
    engine, sender, clock = start()
    resolver = engine.router.resolver
    timeout(sender.pop())
    reply(sender.pop(), 200, "OK", "Contact: <sip:alice@127.0.0.1:5070>;expires=600")
    assert len(resolver.asked) == 1
    registrant = engine.get(record(registrar="sip:registrar.example.test").key)
    # The registrar moved: after the TTL the next refresh follows it.
    moved = Destination("udp", "127.0.0.3", 5060, server_name="registrar.example.test")
    resolver.destinations = (moved,)
    while not sender.sent:
        clock.advance(5)
    assert len(resolver.asked) == 2
    assert sender.pop().destination == moved
    assert registrant.state is State.REGISTERING_STATE
