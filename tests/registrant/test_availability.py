"""Availability per record: seconds enabled and bound, flaps, the last outage, on a fake clock."""

from __future__ import annotations

from typing import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uacregistrant.registrant.availability import Figures, cause_of, figures, restore
from uacregistrant.registrant.observer import Transitions
from uacregistrant.registrant.states import State
from uacregistrant.transport.errors import TransportError

from .fakes import make_engine, record, reply, timeout

TI = 10
OK = "Contact: <sip:alice@127.0.0.1:5070>;expires=600"


def run(engine, sender, clock, until: float, answer: Callable[[object, float], None]) -> None:
    """Tick the clock a second at a time up to ``until``, answering each request at once."""
    while clock.seconds() < until:
        clock.advance(1)
        while sender.sent:
            answer(sender.pop(), clock.seconds())


def ok(sent, now):
    reply(sent, 200, "OK", OK)


def scripted(phases: list[tuple[float, Callable]]) -> Callable:
    """Answer by the phase the clock is in: [(start time, answer), ...]."""

    def answer(sent, now):
        for start, act in reversed(phases):
            if now >= start:
                act(sent, now)
                return

    return answer


def unavailable(sent, now):
    reply(sent, 503, "Service Unavailable", "Retry-After: 30")


def silent(sent, now):
    timeout(sent)


def unreachable(sent, now):
    sent.deferred.errback(TransportError("connection refused"))


def started(**kw):
    engine, sender, clock = make_engine(timer_interval=TI, **kw)
    config = record()
    engine.apply([config])
    engine.start()
    settled: list[tuple[float, State]] = []

    def note(registrant, old, new):
        if new is not registrant.settled and new not in (State.REGISTERING_STATE, State.AUTHENTICATING_STATE):
            settled.append((clock.seconds(), new))

    engine.subscribe(Transitions(note))
    return engine, sender, clock, engine.get(config.key), settled


def test_a_record_always_bound_is_counted_from_its_first_200():
    engine, sender, clock, registrant, settled = started()
    run(engine, sender, clock, 3000, ok)
    first = settled[0]
    assert first[1] is State.REGISTERED_STATE
    now = engine.availability.figures(registrant)
    assert now.enabled_s == pytest.approx(3000)
    assert now.bound_s == pytest.approx(3000 - first[0])
    assert now.flaps == 0 and now.outage_start is None
    # Routine refreshes happened, and none of them counted as a flap.
    assert len(settled) == 1
    assert now.ratio == round((3000 - first[0]) / 3000, 4)


def test_a_503_outage_is_one_flap_with_its_start_end_and_cause():
    engine, sender, clock, registrant, settled = started()
    run(engine, sender, clock, 4000, scripted([(0, ok), (1000, unavailable), (2000, ok)]))
    registered, failed, back = settled[0][0], settled[1], settled[2]
    assert failed[1] is State.REGISTRAR_ERROR_STATE and 1000 <= failed[0] < 2000
    assert back[1] is State.REGISTERED_STATE and back[0] >= 2000
    assert len(settled) == 3  # the retries during the outage fail again: no new transition counted
    now = engine.availability.figures(registrant)
    assert now.flaps == 1
    assert (now.outage_start, now.outage_end, now.outage_cause) == (failed[0], back[0], "503 Service Unavailable")
    assert now.enabled_s == pytest.approx(4000)
    assert now.bound_s == pytest.approx((failed[0] - registered) + (4000 - back[0]))
    assert engine.availability.flaps == 1


def test_an_outage_going_on_has_no_end_and_a_timeout_cause():
    engine, sender, clock, registrant, settled = started()
    run(engine, sender, clock, 2000, scripted([(0, ok), (1000, silent)]))
    now = engine.availability.figures(registrant)
    assert registrant.settled is State.REGISTER_TIMEOUT_STATE
    assert now.outage_end is None and now.outage_cause == "timeout"
    assert now.outage_start == settled[1][0]
    # Bound time stopped at the failure; enabled time goes on.
    assert now.bound_s == pytest.approx(settled[1][0] - settled[0][0])
    assert now.enabled_s == pytest.approx(2000)


def test_a_transport_error_is_the_cause_with_its_reason():
    engine, sender, clock, registrant, settled = started()
    run(engine, sender, clock, 100, unreachable)
    now = engine.availability.figures(registrant)
    # Never registered: an outage from the first failure, and no flap.
    assert now.flaps == 0
    assert now.outage_cause == "transport error: connection refused"
    assert now.bound_s == 0 and now.ratio == 0.0


def test_flaps_count_each_fall_from_registered_not_each_failed_retry():
    engine, sender, clock, registrant, settled = started()
    phases = [(0, ok), (1000, unavailable), (1500, ok), (3000, silent), (3500, ok), (5000, unavailable), (5500, ok)]
    run(engine, sender, clock, 6500, scripted(phases))
    now = engine.availability.figures(registrant)
    assert now.flaps == 3
    assert now.outage_cause == "503 Service Unavailable"
    assert 5000 <= now.outage_start < now.outage_end
    assert engine.availability.flaps == 3


def test_disabled_time_does_not_count_and_disabling_ends_an_outage():
    engine, sender, clock, registrant, settled = started()
    run(engine, sender, clock, 1000, scripted([(0, ok), (500, silent)]))
    assert registrant.settled is State.REGISTER_TIMEOUT_STATE
    engine.disable(registrant.key)
    disabled_at = clock.seconds()
    run(engine, sender, clock, 2000, silent)
    mid = engine.availability.figures(registrant)
    assert mid.enabled_s == pytest.approx(disabled_at)
    assert mid.outage_end == disabled_at
    engine.enable(registrant.key)
    enabled_at = clock.seconds()
    run(engine, sender, clock, 3000, ok)
    now = engine.availability.figures(registrant)
    assert now.enabled_s == pytest.approx(disabled_at + 3000 - enabled_at)
    # The outage ended by disabling stays the last one; the comeback is no flap.
    assert now.flaps == 1 and now.outage_end == disabled_at


def test_a_record_this_node_does_not_register_counts_nothing():
    engine, sender, clock = make_engine(timer_interval=TI, active=lambda registrant: False)
    config = record()
    engine.apply([config])
    engine.start()
    run(engine, sender, clock, 500, ok)
    now = engine.availability.figures(engine.get(config.key))
    assert now.enabled_s == 0 and now.ratio is None


def test_a_routine_refresh_costs_no_allocation_in_the_figures():
    engine, sender, clock, registrant, settled = started()
    run(engine, sender, clock, 700, ok)
    counted = registrant.counted_to
    run(engine, sender, clock, 3000, ok)
    # Several refreshes later the figures were not touched: counted on changes only.
    assert registrant.counted_to == counted
    assert registrant.outage is None


def test_figures_survive_export_and_restore():
    engine, sender, clock, registrant, settled = started()
    run(engine, sender, clock, 3000, scripted([(0, ok), (1000, unavailable), (2000, ok)]))
    saved = engine.availability.figures(registrant)
    other, sender2, clock2 = make_engine(timer_interval=TI)
    clock2.advance(10_000)
    other.apply([registrant.config])
    copy = other.get(registrant.key)
    restore(copy, saved, clock2.seconds())
    assert other.availability.figures(copy) == saved
    clock2.advance(100)
    # Enabled goes on counting from the restore; not bound until registered again.
    assert figures(copy, clock2.seconds()).enabled_s == pytest.approx(saved.enabled_s + 100)
    assert figures(copy, clock2.seconds()).bound_s == pytest.approx(saved.bound_s)


def test_restore_clamps_what_a_hand_edited_row_holds():
    engine, sender, clock, registrant, settled = started()
    restore(registrant, Figures(-5.0, 99.0, -1, None, None, None), 0.0)
    assert registrant.enabled_s == 0.0 and registrant.bound_s == 0.0
    assert registrant.outage is None
    restore(registrant, Figures(10.0, 99.0, 2, None, None, None), 0.0)
    assert registrant.bound_s == 10.0
    assert figures(registrant, 0.0, False).flaps == 2
    assert figures(registrant, 0.0, False).outage_start is None


@pytest.mark.parametrize(
    "code, reason, cause",
    [
        (503, "Service Unavailable", "503 Service Unavailable"),
        (408, "transaction timeout", "timeout"),
        (408, "Request Timeout", "408 Request Timeout"),
        (None, "send to udp:10.0.0.1:5060 failed: [Errno 101]", "transport error: send to udp:10.0.0.1:5060 failed: [Errno 101]"),
        (None, "internal error (ValueError)", "internal error (ValueError)"),
        (None, "runtime state not saved", "runtime state not saved"),
        (200, "200 without our binding", "200 200 without our binding"),
        (None, None, "unknown"),
    ],
)
def test_causes(code, reason, cause):
    engine, sender, clock, registrant, settled = started()
    registrant.last_code, registrant.last_reason = code, reason
    assert cause_of(registrant) == cause


def test_a_cause_from_the_network_is_bounded():
    engine, sender, clock, registrant, settled = started()
    registrant.last_code, registrant.last_reason = 500, "x" * 5000
    assert len(cause_of(registrant)) <= 160


def test_the_distribution_is_cumulative_and_leaves_out_records_never_enabled():
    engine, sender, clock = make_engine(timer_interval=TI)
    configs = [record(aor=f"sip:u{i}@example.test") for i in range(4)]
    engine.apply(configs)
    clock.advance(1000)
    # Figures as saved: 40 %, 95 %, 100 %, and one never enabled.
    for config, (enabled_s, bound_s) in zip(configs, [(100, 40), (100, 95), (100, 100), (0, 0)]):
        registrant = engine.get(config.key)
        restore(registrant, Figures(enabled_s, bound_s, 0, None, None, None), clock.seconds())
        registrant.enabled = enabled_s > 0
    counts, total, count, in_outage = engine.availability.distribution(engine, (0.5, 0.99, 1.0))
    assert in_outage == 0
    assert count == 3
    assert counts == [1, 2, 3]
    assert total == pytest.approx(0.4 + 0.95 + 1.0)


ACTIONS = {"ok": ok, "503": unavailable, "silent": silent, "unreachable": unreachable}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([*ACTIONS, "disable", "enable", "force"]), st.integers(1, 400)),
                min_size=1, max_size=12))
def test_the_figures_hold_whatever_happens(script):
    """bound ≤ enabled ≤ time loaded; flaps only grow; an outage ends after it starts."""
    engine, sender, clock, registrant, settled = started()
    answer = ok
    flaps = 0
    for action, seconds in script:
        if action == "disable":
            engine.disable(registrant.key)
        elif action == "enable":
            engine.enable(registrant.key)
        elif action == "force":
            engine.force_register(registrant.key)
        else:
            answer = ACTIONS[action]
        run(engine, sender, clock, clock.seconds() + seconds, answer)
        now = engine.availability.figures(registrant)
        assert 0 <= now.bound_s <= now.enabled_s + 1e-6 <= clock.seconds() + 1e-6
        assert now.flaps >= flaps
        flaps = now.flaps
        if now.outage_start is not None and now.outage_end is not None:
            assert now.outage_start <= now.outage_end
        ratio = now.ratio
        assert ratio is None or 0.0 <= ratio <= 1.0
    assert engine.availability.flaps == flaps
