"""A Min-Expires learned from a 423 is runtime state: written, and applied on resume."""

from __future__ import annotations

import dataclasses

from uacregistrant.registrant.persist import resume, snapshot
from uacregistrant.registrant.states import State
from uacregistrant.store.memory import MemoryStore

from .fakes import make_engine, record, reply, timeout, writing_engine

TI = 10
OK = "Contact: <sip:alice@127.0.0.1:5070>;expires=1200"


def learned_423(store, expiry=600):
    """A record bound after its registrar answered 423 Min-Expires: 1200; state written."""
    engine, sender, clock, writer = writing_engine(store)
    engine.apply([record(expiry=expiry)])
    engine.start()
    clock.pump([1] * TI)
    first = sender.pop()
    assert first.header("Contact").endswith(f";expires={expiry}")
    reply(first, 423, "Interval Too Brief", "Min-Expires: 1200")
    second = sender.pop()
    assert second.header("Contact").endswith(";expires=1200")
    reply(second, 200, "OK", OK)
    clock.advance(1)
    return engine, sender, clock, writer


def restarted(saved, at: float, **config):
    engine, sender, clock = make_engine()
    clock.advance(at)
    engine.apply([record(**config)])
    resume(engine, saved, clock.seconds())
    engine.start()
    return engine, sender, clock


def first_register(sender, clock):
    while not sender.sent:
        clock.advance(1)
    return sender.pop()


def test_the_min_expires_of_a_423_is_written():
    store = MemoryStore([record()])
    engine, sender, clock, writer = learned_423(store)
    assert store.runtime[record().key].state == State.REGISTERED_STATE
    assert store.runtime[record().key].min_expires == 1200
    writer.stop()


def test_no_423_writes_none():
    store = MemoryStore([record()])
    engine, sender, clock, writer = writing_engine(store)
    engine.apply([record()])
    engine.start()
    clock.pump([1] * TI)
    reply(sender.pop(), 200, "OK", "Contact: <sip:alice@127.0.0.1:5070>;expires=600")
    clock.advance(1)
    assert store.runtime[record().key].min_expires is None
    assert snapshot(engine.get(record().key), clock.seconds()).min_expires is None
    writer.stop()


def test_a_resumed_binding_refreshes_with_the_min_expires():
    store = MemoryStore([record()])
    engine, sender, clock, writer = learned_423(store)
    engine2, sender2, clock2 = restarted(dict(store.runtime), clock.seconds())
    assert engine2.get(record().key).state is State.REGISTERED_STATE
    refresh = first_register(sender2, clock2)
    assert refresh.header("Contact").endswith(";expires=1200")
    # Resumed and refreshed: the next write carries the Min-Expires again.
    assert snapshot(engine2.get(record().key), clock2.seconds()).min_expires == 1200


def test_a_record_that_is_not_bound_asks_for_the_min_expires_at_once():
    store = MemoryStore([record()])
    engine, sender, clock, writer = learned_423(store)
    # The binding fails later (a timeout on a refresh) and is saved so.
    engine.force_register(record().key)
    while not sender.sent:
        clock.advance(1)
    timeout(sender.pop())
    clock.advance(1)
    saved = store.runtime[record().key]
    assert saved.state != State.REGISTERED_STATE and saved.min_expires == 1200
    engine2, sender2, clock2 = restarted(dict(store.runtime), clock.seconds())
    assert first_register(sender2, clock2).header("Contact").endswith(";expires=1200")


def test_a_larger_configured_expiry_wins_over_the_saved_min_expires():
    store = MemoryStore([record()])
    engine, sender, clock, writer = learned_423(store)
    saved = {k: dataclasses.replace(s, state=int(State.NOT_REGISTERED_STATE)) for k, s in store.runtime.items()}
    engine2, sender2, clock2 = restarted(saved, clock.seconds(), expiry=3600)
    assert first_register(sender2, clock2).header("Contact").endswith(";expires=3600")
    assert snapshot(engine2.get(record().key), clock2.seconds()).min_expires is None


def test_a_record_of_another_node_is_left_alone():
    store = MemoryStore([record()])
    engine, sender, clock, writer = learned_423(store)
    engine2, sender2, clock2 = make_engine()
    engine2.apply([record()])
    resume(engine2, dict(store.runtime), clock.seconds(), select=lambda registrant: False)
    assert engine2.get(record().key).wanted_expires == 600
