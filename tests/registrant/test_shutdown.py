"""The engine's shutdown: unREGISTERs bounded by the timeout, counted, never an error."""

from __future__ import annotations

from twisted.logger import LogLevel, globalLogPublisher

from uacregistrant.registrant.engine import ShutdownSummary
from uacregistrant.registrant.states import State

from .fakes import make_engine, record, reply

TI = 10


def bound(engine, sender, clock, count: int):
    configs = [record(aor=f"sip:u{n}@example.test", binding_uri=f"sip:u{n}@127.0.0.1:5070") for n in range(count)]
    engine.apply(configs)
    engine.start()
    clock.pump([1] * TI)
    while sender.sent:
        sent = sender.pop()
        reply(sent, 200, "OK", f"Contact: {sent.header('Contact')}")
    assert all(r.state is State.REGISTERED_STATE for r in engine)
    return configs


def summary_of(done) -> ShutdownSummary:
    seen = []
    done.addBoth(seen.append)
    assert len(seen) == 1 and isinstance(seen[0], ShutdownSummary), seen
    return seen[0]


def test_a_silent_registrar_is_given_up_on_at_the_timeout_quietly():
    engine, sender, clock = make_engine(timer_interval=TI)
    bound(engine, sender, clock, 5)
    errors = []
    observer = lambda event: errors.append(event) if event["log_level"] >= LogLevel.error else None
    globalLogPublisher.addObserver(observer)
    try:
        done = engine.shutdown(unregister=True, timeout=5)
        unregisters = list(sender.sent)
        assert len(unregisters) == 5
        assert all(s.header("Contact").endswith(";expires=0") for s in unregisters)
        clock.advance(4.9)
        assert not done.called
        clock.advance(0.1)
        assert summary_of(done) == ShutdownSummary(unregistered=0, gave_up=5)
        # Every transaction was abandoned, and the abandonment is nobody's error.
        assert all(s.deferred.called for s in unregisters)
    finally:
        globalLogPublisher.removeObserver(observer)
    assert errors == []
    assert clock.getDelayedCalls() == []


def test_half_answered_counts_each_record_once_and_ends_early_when_all_settled():
    engine, sender, clock = make_engine(timer_interval=TI)
    bound(engine, sender, clock, 4)
    done = engine.shutdown(unregister=True, timeout=5)
    first, second, third, fourth = sender.sent
    reply(first, 200, "OK")
    reply(second, 500, "Server Error")
    clock.advance(1)
    reply(third, 200, "OK")
    assert not done.called
    reply(fourth, 503, "Busy")
    # Settled before the timeout: no waiting for it.
    assert summary_of(done) == ShutdownSummary(unregistered=2, gave_up=2)
    assert clock.getDelayedCalls() == []


def test_records_neither_bound_nor_in_flight_send_nothing():
    engine, sender, clock = make_engine(timer_interval=TI)
    engine.apply([record()])
    done = engine.shutdown(unregister=True, timeout=5)
    assert sender.sent == []
    assert summary_of(done) == ShutdownSummary(unregistered=0, gave_up=0)
    assert clock.getDelayedCalls() == []


def test_without_unregister_bindings_are_left_and_counted():
    engine, sender, clock = make_engine(timer_interval=TI)
    bound(engine, sender, clock, 3)
    done = engine.shutdown(unregister=False, timeout=5)
    assert sender.sent == []
    assert summary_of(done) == ShutdownSummary(unregistered=0, gave_up=0, left=3)
    assert clock.getDelayedCalls() == []
