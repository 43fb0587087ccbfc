"""Availability figures go to the runtime state and come back on resume (a restart, a tag taken over)."""

from __future__ import annotations

import pytest

from uacregistrant.registrant.persist import resume, snapshot
from uacregistrant.registrant.states import State
from uacregistrant.store.memory import MemoryStore

from .fakes import make_engine, record, reply, writing_engine

TI = 10
OK = "Contact: <sip:alice@127.0.0.1:5070>;expires=600"


def run(sender, clock, until: float, answer) -> None:
    while clock.seconds() < until:
        clock.advance(1)
        while sender.sent:
            answer(sender.pop(), clock.seconds())


def script(sent, now):
    if 1000 <= now < 1500:
        reply(sent, 503, "Service Unavailable", "Retry-After: 30")
    else:
        reply(sent, 200, "OK", OK)


def test_a_snapshot_carries_the_figures_at_its_time():
    engine, sender, clock = make_engine(timer_interval=TI)
    config = record()
    engine.apply([config])
    engine.start()
    run(sender, clock, 2000, script)
    registrant = engine.get(config.key)
    figures = engine.availability.figures(registrant)
    state = snapshot(registrant, clock.seconds())
    assert (state.enabled_s, state.bound_s, state.flaps) == (figures.enabled_s, figures.bound_s, 1)
    assert (state.outage_start, state.outage_end, state.outage_cause) == (
        figures.outage_start, figures.outage_end, "503 Service Unavailable")
    assert state.enabled_s == pytest.approx(2000)


def test_a_restart_goes_on_from_the_saved_figures():
    store = MemoryStore()
    config = record()
    engine, sender, clock, writer = writing_engine(store, timer_interval=TI)
    engine.apply([config])
    engine.start()
    run(sender, clock, 2000, script)
    writer.flush()
    saved = store.runtime[config.key]
    assert saved.flaps == 1 and saved.outage_cause == "503 Service Unavailable"
    # Written with the last change (write behind): enabled from the load (0) to the write.
    assert saved.outage_end is not None and saved.enabled_s == pytest.approx(saved.updated_at)

    # The new process: loaded later, resumed from the row.
    engine2, sender2, clock2 = make_engine(timer_interval=TI)
    clock2.advance(2050)  # the binding granted at 1546 for 600 s still holds
    engine2.apply([config])
    assert resume(engine2, dict(store.runtime), clock2.seconds()) == 1
    registrant = engine2.get(config.key)
    assert registrant.state is State.REGISTERED_STATE
    now = engine2.availability.figures(registrant)
    assert (now.enabled_s, now.bound_s, now.flaps) == (saved.enabled_s, saved.bound_s, 1)
    assert (now.outage_start, now.outage_end, now.outage_cause) == (
        saved.outage_start, saved.outage_end, saved.outage_cause)
    # Counting goes on from the restart, bound (resumed binding), not across the down time.
    clock2.advance(50)
    now = engine2.availability.figures(registrant)
    assert now.enabled_s == pytest.approx(saved.enabled_s + 50)
    assert now.bound_s == pytest.approx(saved.bound_s + 50)


def test_a_record_failing_at_the_restart_keeps_its_outage_going_until_it_registers():
    store = MemoryStore()
    config = record()
    engine, sender, clock, writer = writing_engine(store, timer_interval=TI)
    engine.apply([config])
    engine.start()
    run(sender, clock, 1200, script)
    writer.flush()
    saved = store.runtime[config.key]
    assert saved.state == State.REGISTRAR_ERROR_STATE and saved.outage_end is None

    engine2, sender2, clock2 = make_engine(timer_interval=TI)
    clock2.advance(1300)
    engine2.apply([config])
    assert resume(engine2, dict(store.runtime), clock2.seconds()) == 0
    engine2.start()
    registrant = engine2.get(config.key)
    assert engine2.availability.figures(registrant).outage_end is None
    run(sender2, clock2, 1400, lambda sent, now: reply(sent, 200, "OK", OK))
    now = engine2.availability.figures(registrant)
    assert registrant.state is State.REGISTERED_STATE
    assert now.outage_start == saved.outage_start and 1300 < now.outage_end < 1400
    assert now.flaps == 1


def test_an_old_row_without_figures_starts_from_nothing():
    store = MemoryStore()
    config = record()
    engine, sender, clock, writer = writing_engine(store, timer_interval=TI)
    engine.apply([config])
    engine.start()
    run(sender, clock, 100, script)
    writer.flush()
    old = store.runtime[config.key]
    # As a row written before the columns existed reads back: the defaults.
    bare = type(old)(**{name: getattr(old, name) for name in (
        "key", "call_id", "from_tag", "cseq", "state", "expires", "expires_at", "updated_at", "last_code", "last_reason")})
    engine2, sender2, clock2 = make_engine(timer_interval=TI)
    clock2.advance(200)
    engine2.apply([config])
    resume(engine2, {config.key: bare}, clock2.seconds())
    figures = engine2.availability.figures(engine2.get(config.key))
    assert (figures.enabled_s, figures.bound_s, figures.flaps, figures.outage_start) == (0.0, 0.0, 0, None)
