"""A bad row or a hostile registrar stops its own record only, and only for a while.

Each case settles the record (never left in a sending state), frees its
in-flight slot, and leaves the other records and the operator's commands working.
"""

from __future__ import annotations

import pytest
from twisted.logger import globalLogPublisher

from uacregistrant.registrant.observer import Transitions
from uacregistrant.registrant.states import IN_FLIGHT, State

from .fakes import CHALLENGE, make_engine, record, reply, timeout

TI = 10
BINDING = "sip:alice@127.0.0.1:5070"


@pytest.fixture
def logged():
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def started(*configs, **kw):
    engine, sender, clock = make_engine(**kw)
    engine.apply(list(configs) or [record()])
    engine.start()
    clock.pump([1] * TI)
    return engine, sender, clock


def test_a_username_that_cannot_be_sent_settles_its_record_and_frees_its_slot(logged):
    bad = record(aor="sip:bad@example.test", username="bad\x01user")
    good = record(aor="sip:good@example.test")
    engine, sender, clock = started(bad, good)
    by_aor = {s.request.header("To"): s for s in sender.sent}
    sender.sent.clear()
    reply(by_aor[f"<{bad.aor}>"], 401, "Unauthorized", CHALLENGE)
    registrant = engine.get(bad.key)
    assert registrant.state is State.INTERNAL_ERROR_STATE
    assert registrant.last_reason == "internal error (ValueError)"
    assert registrant.registration_timeout > clock.seconds()
    assert sender.sent == []
    # The good record goes on, and the window is empty once it is done.
    reply(by_aor[f"<{good.aor}>"], 200, "OK", f"Contact: <{good.binding_uri}>;expires=600")
    assert engine.get(good.key).state is State.REGISTERED_STATE
    assert engine.scheduler.in_flight == 0
    faults = [e for e in logged if e.get("log_failure") is not None and e.get("aor") == bad.aor]
    assert len(faults) == 1
    assert all("bad\x01user" not in repr(e) and "s3cret" not in repr(e) for e in logged)
    # reg_force_register still sends it at once.
    engine.force_register(bad.key)
    assert [s.request.header("To") for s in sender.sent] == [f"<{bad.aor}>"]
    assert registrant.state is State.REGISTERING_STATE


def test_a_thousand_bad_rows_never_fill_the_window():
    bad = [record(aor=f"sip:bad{i}@example.test", username=f"b\x00{i}") for i in range(1100)]
    good = record(aor="sip:good@example.test")
    engine, sender, clock = make_engine(hash_size=1)
    engine.apply([*bad, good])
    engine.start()
    answered_good = False
    for _ in range(40):
        clock.advance(1)
        while sender.sent:
            sent = sender.pop()
            if sent.request.header("To") == f"<{good.aor}>":
                reply(sent, 200, "OK", f"Contact: <{good.binding_uri}>;expires=600")
                answered_good = True
            else:
                reply(sent, 401, "Unauthorized", CHALLENGE)
    assert answered_good
    assert engine.get(good.key).state is State.REGISTERED_STATE
    assert engine.scheduler.in_flight == 0
    assert not any(r.state in IN_FLIGHT for r in engine)


@pytest.mark.parametrize("header", ["Expires: \u0663\u0660\u0660", "Expires: \u00b2"])
def test_unicode_digits_in_expires_settle_the_record(header):
    engine, sender, clock = started()
    reply(sender.pop(), 200, "OK", f"Contact: <{BINDING}>", header)
    registrant = engine.get(record().key)
    assert registrant.state is State.INTERNAL_ERROR_STATE
    assert registrant.last_reason.startswith("malformed reply")
    assert engine.scheduler.in_flight == 0


@pytest.mark.parametrize("value", ["\u0663\u0660\u0660", "\u00b2", "\uff16\uff10"])
def test_unicode_digits_in_contact_expires_settle_the_record(value):
    engine, sender, clock = started()
    reply(sender.pop(), 200, "OK", f"Contact: <{BINDING}>;expires={value}")
    assert engine.get(record().key).state is State.INTERNAL_ERROR_STATE
    assert engine.scheduler.in_flight == 0


@pytest.mark.parametrize("value", ["\u00b2", "\u0663", "x"])
def test_a_bad_flow_timer_or_retry_after_counts_as_absent(value):
    engine, sender, clock = started()
    reply(sender.pop(), 200, "OK", f"Contact: <{BINDING}>;expires=600", f"Flow-Timer: {value}")
    registrant = engine.get(record().key)
    assert registrant.state is State.REGISTERED_STATE and registrant.flow_timer is None
    engine.force_register(registrant.key)
    reply(sender.pop(), 503, "Busy", f"Retry-After: {value}")
    assert registrant.state is State.REGISTRAR_ERROR_STATE


def test_423_creeping_by_one_gets_one_retry_then_registrar_error():
    engine, sender, clock = started(record(expiry=600))
    registrant = engine.get(record().key)
    sent = 0
    for _ in range(20):
        if not sender.sent:
            break
        request = sender.pop()
        sent += 1
        asked = int(request.header("Contact").rsplit("expires=", 1)[1])
        reply(request, 423, "Interval Too Brief", f"Min-Expires: {asked + 1}")
    assert sent == 2
    assert registrant.state is State.REGISTRAR_ERROR_STATE
    assert engine.scheduler.in_flight == 0


@pytest.mark.parametrize("minimum", [600, 599, 86401, 4294967295])
def test_423_not_above_what_we_asked_or_above_a_day_is_registrar_error(minimum):
    engine, sender, clock = started(record(expiry=600))
    reply(sender.pop(), 423, "Interval Too Brief", f"Min-Expires: {minimum}")
    assert engine.get(record().key).state is State.REGISTRAR_ERROR_STATE
    assert sender.sent == []


def test_423_once_a_cycle_is_honoured_and_kept():
    engine, sender, clock = started(record(expiry=600))
    reply(sender.pop(), 423, "Interval Too Brief", "Min-Expires: 3600")
    retry = sender.pop()
    assert retry.header("Contact").endswith(";expires=3600")
    reply(retry, 200, "OK", f"Contact: <{BINDING}>;expires=3600")
    registrant = engine.get(record().key)
    assert registrant.state is State.REGISTERED_STATE and registrant.wanted_expires == 3600


def test_follow_ups_are_bounded_per_cycle():
    # A registrar answering every request with a fresh stale challenge then 423 then...
    engine, sender, clock = started(record(expiry=600))
    registrant = engine.get(record().key)
    sent = 0
    while sender.sent and sent < 100:
        request = sender.pop()
        sent += 1
        reply(request, 401, "Unauthorized", CHALLENGE.replace('"abc123"', f'"n{sent}"') + ", stale=true")
    assert sent <= 9
    assert registrant.state not in IN_FLIGHT
    assert engine.scheduler.in_flight == 0


@pytest.mark.parametrize(
    "headers",
    [
        (f"Contact: <{BINDING}>;expires=0", "Expires: 0"),
        (f"Contact: <{BINDING}>", "Expires: 0"),
        (f"Contact: <{BINDING}>;expires=0",),
        (),
        ("Contact: <sip:someone-else@127.0.0.1:5070>;expires=600",),
    ],
)
def test_a_200_that_does_not_keep_our_binding_is_not_registered(headers):
    engine, sender, clock = started()
    reply(sender.pop(), 200, "OK", *headers)
    registrant = engine.get(record().key)
    assert registrant.state is State.REGISTRAR_ERROR_STATE
    assert registrant.registration_timeout > clock.seconds()
    assert engine.scheduler.in_flight == 0


@pytest.mark.parametrize("granted", [1, 5, 30])
def test_a_tiny_granted_expiry_is_scheduled_as_the_floor(granted):
    engine, sender, clock = started()
    reply(sender.pop(), 200, "OK", f"Contact: <{BINDING}>;expires={granted}")
    registrant = engine.get(record().key)
    assert registrant.state is State.REGISTERED_STATE and registrant.expires == granted
    granted_at = clock.seconds()
    while not sender.sent:
        clock.advance(1)
    # Floor 60 s (timer_interval 10 is below it): refreshed from T + 60 - 2*TI on.
    assert clock.seconds() >= granted_at + 60 - 2 * TI


def test_a_fault_in_an_observer_stops_neither_the_record_nor_the_others(logged):
    engine, sender, clock = make_engine()
    seen = []

    def broken(registrant, old, new):
        raise RuntimeError("observer bug")

    engine.subscribe(Transitions(broken))
    engine.subscribe(Transitions(lambda registrant, old, new: seen.append(new)))
    engine.apply([record()])
    engine.start()
    clock.pump([1] * TI)
    reply(sender.pop(), 200, "OK", f"Contact: <{BINDING}>;expires=600")
    assert engine.get(record().key).state is State.REGISTERED_STATE
    assert seen[-1] is State.REGISTERED_STATE
    assert engine.scheduler.in_flight == 0


def test_the_watchdog_reclaims_a_slot_with_nothing_in_flight():
    engine, sender, clock = started()
    registrant = engine.get(record().key)
    assert registrant.state is State.REGISTERING_STATE and engine.scheduler.in_flight == 1
    # A bug elsewhere drops the pending request without settling the record.
    sender.pop()
    registrant.pending = None
    clock.pump([1] * TI)
    assert engine.scheduler.reclaimed == 1
    assert registrant.state is State.INTERNAL_ERROR_STATE
    assert engine.scheduler.in_flight == 0


def test_a_sender_that_raises_settles_the_record():
    engine, sender, clock = make_engine()

    def broken(request, destination, local=None):
        raise OSError("no route")

    sender.send_request = broken
    engine.apply([record()])
    engine.start()
    clock.pump([1] * TI)
    registrant = engine.get(record().key)
    assert registrant.state is State.INTERNAL_ERROR_STATE
    assert engine.scheduler.in_flight == 0


def test_timeouts_still_settle_as_register_timeout():
    engine, sender, clock = started()
    timeout(sender.pop())
    assert engine.get(record().key).state is State.REGISTER_TIMEOUT_STATE
    assert engine.scheduler.in_flight == 0


def test_an_expiry_we_asked_for_is_not_raised_to_the_floor():
    engine, sender, clock = started(record(expiry=20))
    reply(sender.pop(), 200, "OK", f"Contact: <{BINDING}>;expires=20")
    granted_at = clock.seconds()
    while not sender.sent:
        clock.advance(1)
    assert clock.seconds() < granted_at + 20


def test_an_observer_acting_on_the_record_it_hears_of_wins_over_the_rest_of_the_row():
    engine, sender, clock = make_engine()
    unregistered = []

    def shut_down_when_registered(registrant, old, new):
        if new is State.REGISTERED_STATE:
            engine.unregister(registrant).addCallback(unregistered.append)

    engine.subscribe(Transitions(shut_down_when_registered))
    engine.apply([record()])
    engine.start()
    clock.pump([1] * TI)
    reply(sender.pop(), 200, "OK", f"Contact: <{BINDING}>;expires=600")
    registrant = engine.get(record().key)
    # The 200's own RELEASE did not fire the unREGISTER's waiter.
    assert registrant.state is State.UNREGISTERING_STATE and unregistered == []
    reply(sender.pop(), 200, "OK")
    assert registrant.state is State.NOT_REGISTERED_STATE and unregistered == [None]
