"""Write-ahead of dialogs: a Call-ID is committed to the runtime table before a request carries it."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from uacregistrant.registrant.persist import CSEQ_MARGIN, RuntimeWriter, resume
from uacregistrant.registrant.states import State
from uacregistrant.store.interface import StoreUnavailable
from uacregistrant.store.memory import MemoryStore

from .fakes import make_engine, record, reply

TI = 10
BINDING = "sip:alice@127.0.0.1:5070"


class HeldStore(MemoryStore):
    """A store whose commits the test lets through one at a time."""

    def __init__(self, *records) -> None:
        super().__init__(records)
        self.held: list[tuple[list, Deferred]] = []

    def save_runtime(self, states):
        states = list(states)
        done: Deferred = Deferred()
        self.held.append((states, done))
        return done

    def commit(self) -> int:
        states, done = self.held.pop(0)
        for state in states:
            self.runtime[state.key] = state
        done.callback(None)
        return len(states)

    def refuse(self) -> None:
        _, done = self.held.pop(0)
        done.errback(StoreUnavailable("database unavailable"))


    def commit_all(self) -> int:
        """Let every held commit through, as they come; how many transactions."""
        transactions = 0
        while self.held:
            self.commit()
            transactions += 1
        return transactions


def writing_engine(store, **kw):
    clock = Clock()
    writer = RuntimeWriter(store, clock, delay=1.0)
    engine, sender, clock = make_engine(clock, write_ahead=writer.write_ahead, **kw)
    engine.subscribe(writer)
    return engine, sender, clock, writer


def started(*configs, visit: bool = True, **kw):
    """An engine writing to a HeldStore of ``configs`` (one record by default), started,
    and with ``visit`` a whole timer interval on: every bucket visited once."""
    configs = configs or (record(),)
    store = HeldStore(*configs)
    engine, sender, clock, _ = writing_engine(store, **kw)
    engine.apply(list(configs))
    engine.start()
    if visit:
        clock.pump([1] * TI)
    return store, engine, sender, clock


def registered(store, sender, expires: int = 600) -> None:
    """The first REGISTER's dialog committed, and the REGISTER answered 200."""
    store.commit()
    reply(sender.pop(), 200, "OK", f"Contact: <{BINDING}>;expires={expires}")


def test_the_first_register_waits_for_its_dialog_to_be_committed():
    store, engine, sender, clock = started()
    registrant = engine.get(record().key)
    # Visited, nothing on the wire (and no in-flight slot taken) until the row is committed.
    assert sender.sent == [] and registrant.state is State.NOT_REGISTERED_STATE
    assert engine.scheduler.in_flight == 0
    assert not registrant.due(clock.seconds())
    assert store.commit() == 1
    saved = store.runtime[record().key]
    sent = sender.pop()
    assert (sent.request.call_id, sent.request.from_tag) == (saved.call_id, saved.from_tag)
    reply(sent, 200, "OK", f"Contact: <{BINDING}>;expires=600")
    assert registrant.state is State.REGISTERED_STATE


def test_a_failed_write_sends_nothing_and_the_record_retries_later():
    store, engine, sender, clock = started()
    registrant = engine.get(record().key)
    store.refuse()
    assert sender.sent == []
    assert registrant.state is State.INTERNAL_ERROR_STATE
    assert registrant.last_reason == "runtime state not saved"
    assert engine.scheduler.in_flight == 0
    retry_at = registrant.registration_timeout
    assert retry_at > clock.seconds()
    while registrant.pending is None:
        clock.advance(1)
        store.commit_all()
        assert clock.seconds() < retry_at + TI and sender.sent == []
    # The retry writes ahead again, in a new dialog.
    assert clock.seconds() >= retry_at
    clock.advance(1)
    store.commit()
    assert sender.pop().request.call_id == store.runtime[record().key].call_id


def test_refreshes_do_not_wait_for_the_database():
    store, engine, sender, clock = started()
    registered(store, sender, expires=60)
    registrant = engine.get(record().key)
    while not sender.sent:
        clock.advance(1)
        assert clock.seconds() < 100
    refresh = sender.pop()
    # Sent at the visit, the REGISTERED row (write-behind) still uncommitted.
    assert refresh.request.call_id == registrant.call_id
    assert store.held


def test_a_burst_of_new_dialogs_is_a_handful_of_transactions():
    configs = [record(aor=f"sip:u{i}@example.test") for i in range(25_000)]
    store, engine, sender, clock = started(*configs, visit=False, hash_size=1)
    transactions = 0
    for _ in range(3 * TI):
        clock.advance(1)
        transactions += store.commit_all()
        while sender.sent:
            reply(sender.pop(), 200, "OK", f"Contact: <{BINDING}>;expires=600")
    assert len(store.runtime) == 25_000
    assert all(r.state is State.REGISTERED_STATE for r in engine)
    # Each transaction holds what AHEAD_DELAY (or a write-behind delay) gathered.
    assert transactions <= 40


def test_unregister_then_register_again_writes_the_new_dialog_first():
    store, engine, sender, clock = started()
    registered(store, sender)
    store.commit_all()
    engine.disable(record().key)
    unregister = sender.pop()
    engine.enable(record().key)
    reply(unregister, 200, "OK")
    # Enabled again: a new dialog, written before it is used.
    assert sender.sent == []
    clock.advance(1)
    store.commit_all()
    again = sender.pop()
    assert again.request.call_id != unregister.request.call_id
    assert again.request.call_id == store.runtime[record().key].call_id


def test_a_restart_after_the_first_register_went_out_goes_on_with_its_dialog():
    store, engine, sender, clock = started()
    store.commit()
    first = sender.pop()  # on the wire; the process dies before any reply
    saved = dict(store.runtime)
    assert saved[record().key].state in (State.NOT_REGISTERED_STATE, State.REGISTERING_STATE)

    engine2, sender2, clock2 = make_engine()
    clock2.advance(clock.seconds() + 5)
    engine2.apply([record()])
    assert resume(engine2, saved, clock2.seconds()) == 0  # no binding known to be held
    engine2.start()
    clock2.pump([1] * TI)
    again = sender2.pop()
    assert (again.request.call_id, again.request.from_tag) == (first.request.call_id, first.request.from_tag)
    assert again.cseq == saved[record().key].cseq + CSEQ_MARGIN + 1


def test_without_a_writer_nothing_waits():
    engine, sender, clock = make_engine()
    engine.apply([record()])
    engine.start()
    clock.pump([1] * TI)
    assert len(sender.sent) == 1


def test_a_standby_does_not_write_ahead():
    store = MemoryStore([record()])
    clock = Clock()
    writer = RuntimeWriter(store, clock, active=lambda registrant: False)
    answers = []
    writer.write_ahead(object(), lambda registrant, failure: answers.append(failure))
    assert answers == [None] and store.runtime == {}


def test_a_new_dialog_takes_one_rate_token_not_two():
    configs = [record(aor=f"sip:r{i}@example.test") for i in range(200)]
    store, engine, sender, clock = started(*configs, visit=False, max_register_rate=100, hash_size=0)
    clock.advance(TI)  # the one bucket's first visit
    sent = 0
    while sent < 200:
        clock.advance(0.05)  # the token bucket saves up 50 ms worth at most
        store.commit_all()
        sent += len(sender.sent)
        sender.sent.clear()
        assert clock.seconds() < TI + 10
    # 100 REGISTERs a second, plus one wait for the commit: not 2 s of tokens for the writes.
    assert clock.seconds() <= TI + 2.5
