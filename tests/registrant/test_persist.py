"""Runtime state: written in batches off the hot path, retried, and resumed after a restart."""

from __future__ import annotations

from uacregistrant.registrant.persist import CSEQ_MARGIN, RuntimeWriter, resume
from uacregistrant.registrant.states import State
from uacregistrant.store.memory import MemoryStore

from .fakes import make_engine, record, reply, writing_engine

TI = 10


def bound_engine(store):
    engine, sender, clock, writer = writing_engine(store)
    engine.apply([record()])
    engine.start()
    clock.pump([1] * TI)
    reply(sender.pop(), 200, "OK", "Contact: <sip:alice@127.0.0.1:5070>;expires=600")
    return engine, sender, clock, writer


def test_transitions_are_written_in_one_batch_after_the_delay():
    store = MemoryStore([record()])
    engine, sender, clock, writer = bound_engine(store)
    clock.advance(1)
    saved = store.runtime[record().key]
    registrant = engine.get(record().key)
    assert saved.state == State.REGISTERED_STATE
    assert (saved.call_id, saved.from_tag, saved.cseq) == (
        registrant.call_id,
        registrant.from_tag,
        registrant.cseq,
    )
    assert saved.expires == 600
    assert saved.expires_at == registrant.granted_at + 600
    assert clock.getDelayedCalls() != []  # the scheduler's loop only
    writer.stop()


def test_a_failed_write_is_kept_and_retried():
    store = MemoryStore([record()])
    engine, sender, clock, writer = bound_engine(store)
    # The dialog was written ahead; the database goes away before the 200 is saved.
    store.available = False
    clock.advance(1)
    failures = writer.failures
    assert failures >= 1 and store.runtime[record().key].state == State.REGISTERING_STATE
    clock.advance(10)
    assert writer.failures > failures and store.runtime[record().key].state == State.REGISTERING_STATE
    store.available = True
    clock.advance(60)
    assert store.runtime[record().key].state == State.REGISTERED_STATE
    assert writer.failures == 0


def test_resume_goes_on_with_the_same_dialog_and_refreshes_when_due():
    store = MemoryStore([record()])
    engine, sender, clock, writer = bound_engine(store)
    clock.advance(1)
    before = engine.get(record().key)
    saved = dict(store.runtime)

    # A new process: fresh engine, same table, the saved runtime state.
    engine2, sender2, clock2 = make_engine()
    clock2.advance(clock.seconds())
    engine2.apply([record()])
    assert resume(engine2, saved, clock2.seconds()) == 1
    after = engine2.get(record().key)
    assert after.state is State.REGISTERED_STATE and after.bound
    assert (after.call_id, after.from_tag) == (before.call_id, before.from_tag)
    engine2.start()
    while not sender2.sent:
        clock2.advance(1)
    refresh = sender2.pop()
    assert refresh.request.call_id == before.call_id
    assert refresh.cseq == before.cseq + CSEQ_MARGIN + 1
    assert clock2.seconds() >= before.granted_at + 600 - 2 * TI


def test_expired_or_unregistered_state_is_not_resumed():
    store = MemoryStore([record()])
    engine, sender, clock, writer = bound_engine(store)
    clock.advance(1)
    saved = dict(store.runtime)
    engine2, _, clock2 = make_engine()
    clock2.advance(clock.seconds() + 601)
    engine2.apply([record()])
    assert resume(engine2, saved, clock2.seconds()) == 0
    assert engine2.get(record().key).state is State.NOT_REGISTERED_STATE


def test_a_standby_writes_nothing():
    store = MemoryStore([record()])
    engine, sender, clock, writer = writing_engine(store, active=lambda registrant: False)
    engine.apply([record()])
    engine.force_register(record().key)
    clock.advance(5)
    assert sender.sent == [] and store.runtime == {}


def test_a_backlog_is_written_in_batches_and_stop_writes_it_all():
    from uacregistrant.registrant import persist

    store = MemoryStore()
    # Write-behind alone: new dialogs written ahead would add their own rows.
    engine, sender, clock, writer = writing_engine(store, ahead=False)
    engine.scheduler.max_in_flight = 10**6
    sizes = []
    save = store.save_runtime
    store.save_runtime = lambda states: (sizes.append(len(states)), save(states))[1]
    configs = [record(aor=f"sip:b{i}@example.test") for i in range(persist.BATCH * 2 + 5)]
    engine.apply(configs)
    for config in configs:
        engine.force_register(config.key)
    clock.advance(1)
    clock.advance(0)  # a full backlog goes on at once, batch after batch
    assert sizes == [persist.BATCH, persist.BATCH]
    clock.advance(1)  # a small rest waits for the next batch
    assert sizes == [persist.BATCH, persist.BATCH, 5]
    assert len(store.runtime) == len(configs)
    for s in list(sender.sent):
        reply(s, 200, "OK", "Contact: <sip:alice@127.0.0.1:5070>;expires=600")
    engine.shutdown(unregister=False, timeout=1)
    writer.stop()
    assert all(state.state == State.REGISTERED_STATE for state in store.runtime.values())
    assert clock.getDelayedCalls() == []


def test_a_write_cancelled_at_the_shutdown_deadline_is_not_retried():
    from twisted.internet.defer import Deferred
    from twisted.logger import globalLogPublisher

    store = MemoryStore([record()])
    engine, sender, clock, writer = bound_engine(store)
    hanging = []
    store.save_runtime = lambda states: hanging.append(Deferred()) or hanging[-1]
    lines = []
    globalLogPublisher.addObserver(lines.append)
    try:
        stopping = writer.stop()
        assert hanging and not stopping.called
        hanging[-1].cancel()  # the shutdown deadline
        assert stopping.called
    finally:
        globalLogPublisher.removeObserver(lines.append)
    engine.shutdown(unregister=False, timeout=1)
    assert not any("retrying" in (line.get("log_format") or "") for line in lines)
    assert clock.getDelayedCalls() == []
