"""Runtime state that survives a restart or moves to another node (Call-ID, CSeq, expiry).

Two ways in, one batch writer.  Transitions only mark a record dirty (write
behind): a timer writes the dirty ones in one batch, off the hot path, and a
failed write keeps them dirty for the next try.  A record starting a new
dialog asks ``write_ahead``: its row joins the next batch too, and its
REGISTER waits until that batch is committed, so a Call-ID is on disk before
it is on the wire.  Such a batch starts within ``AHEAD_DELAY``; a burst of
new dialogs costs a few transactions a second (up to ``BATCH`` rows each),
never one per record.
"""

from __future__ import annotations

import itertools
from typing import Callable

from twisted.internet.defer import CancelledError, Deferred, inlineCallbacks, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from .availability import Figures, figures, restore
from ..allocator import release_free_memory
from .engine import Engine
from .executor import WriteAheadDone
from .machine import Registrant
from .observer import EngineObserver
from .record import RecordKey
from .replies import MAX_MIN_EXPIRES
from .runtime import IRuntimeStore, RuntimeState
from .states import State

log = Logger()

BATCH = 10_000
# Once this many rows were written since the last time and nothing is left
# dirty, a burst is over: the allocator's free pages go back to the system.
RELEASE_AFTER = 1_000
# A new dialog waits at most this long for its batch to start (write-behind waits ``delay``).
AHEAD_DELAY = 0.2

# A record waiting for a batch, and the Call-ID of its row in that batch.
_Waiter = tuple[Registrant, WriteAheadDone, str]


def min_expires(registrant: Registrant) -> int | None:
    """The Min-Expires a 423 taught the record, None when it asks for its configured expiry.

    A 423 raises the expiry the record asks for (``wanted_expires``) until its
    configured expiry changes; that raise is what a restart must not forget.
    """
    wanted = registrant.wanted_expires
    return wanted if wanted > registrant.config.expiry else None


def snapshot(registrant: Registrant, now: float) -> RuntimeState:
    # Only records this node registers are written: their running span counts.
    counted = figures(registrant, now)
    return RuntimeState(
        key=registrant.key,
        call_id=registrant.call_id,
        from_tag=registrant.from_tag,
        cseq=registrant.cseq,
        state=int(registrant.state),
        expires=registrant.expires,
        expires_at=registrant.granted_at + registrant.expires if registrant.bound else 0.0,
        updated_at=now,
        last_code=registrant.last_code,
        last_reason=registrant.last_reason,
        min_expires=min_expires(registrant),
        enabled_s=counted.enabled_s,
        bound_s=counted.bound_s,
        flaps=counted.flaps,
        outage_start=counted.outage_start,
        outage_end=counted.outage_end,
        outage_cause=counted.outage_cause,
    )


class RuntimeWriter(EngineObserver):
    def __init__(
        self,
        store: IRuntimeStore,
        clock: IReactorTime,
        *,
        active: Callable[[Registrant], bool] = lambda registrant: True,
        delay: float = 1.0,
        release_memory: Callable[[], object] = release_free_memory,
    ) -> None:
        self.store = store
        self.clock = clock
        # Only what this node registers is written: a standby's view is stale.
        self.active = active
        self.delay = delay
        self.release_memory = release_memory
        self._written_since_release = 0
        self.failures = 0
        self._dirty: dict[RecordKey, Registrant] = {}
        # Records waiting for their dialog (Call-ID) to be committed.
        self._ahead: dict[RecordKey, tuple[Registrant, WriteAheadDone]] = {}
        self._call: IDelayedCall | None = None
        self._writing: Deferred | None = None

    def transition(self, registrant: Registrant, old: State, new: State) -> None:
        if self.active(registrant):
            self._mark(registrant)

    def write_ahead(self, registrant: Registrant, done: WriteAheadDone) -> None:
        """Calls ``done(registrant, None)`` once a row with the record's current dialog
        is committed, ``done(registrant, failure)`` if it cannot be."""
        if not self.active(registrant):
            done(registrant, None)
            return
        # A record waits for one dialog at a time: a newer one replaces the older.
        self._ahead[registrant.key] = (registrant, done)
        self._mark(registrant, min(AHEAD_DELAY, self.delay))

    def _mark(self, registrant: Registrant, delay: float | None = None) -> None:
        self._dirty[registrant.key] = registrant
        if self._writing is None:  # else the write in progress schedules the next one
            self._schedule(self.delay if delay is None else delay)

    def _schedule(self, delay: float) -> None:
        """A flush within ``delay`` (one timer, never two)."""
        if self._call is None:
            self._call = self.clock.callLater(delay, self.flush)
        elif self._call.getTime() > self.clock.seconds() + delay:
            self._call.reset(delay)

    def flush(self) -> Deferred:
        """Write what is dirty now; fires when written (or failed, and kept for later)."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        if self._writing is not None:
            return self._writing
        if not self._dirty:
            return succeed(None)
        # At most BATCH rows a write: a registration burst does not build one
        # huge batch (memory) or hold the database thread long.
        batch = {}
        for key in list(itertools.islice(self._dirty, BATCH)):
            registrant = self._dirty.pop(key)
            # A record this node gave up since it changed belongs to another node now.
            if self.active(registrant):
                batch[key] = registrant
        if not self._dirty:
            # A dict keeps the table of its largest size (a burst's 100,000
            # records: megabytes) when emptied key by key; a new one does not.
            self._dirty = {}
        if not batch:
            return self.flush() if self._dirty else succeed(None)
        now = self.clock.seconds()
        states = [snapshot(registrant, now) for registrant in batch.values()]
        waiters = self._waiters_for(states)
        writing = self._writing = self.store.save_runtime(states)
        writing.addCallbacks(self._written, self._failed, callbackArgs=(waiters, len(states)), errbackArgs=(batch, waiters))
        return writing

    def _waiters_for(self, states: list[RuntimeState]) -> list[_Waiter]:
        """The records waiting for this batch: those whose current dialog it holds."""
        answered: list[_Waiter] = []
        ahead = self._ahead
        if not ahead:
            return answered
        for state in states:
            waiting = ahead.get(state.key)
            if waiting is not None and waiting[0].call_id == state.call_id:
                del ahead[state.key]
                answered.append((*waiting, state.call_id))
        if not ahead:
            self._ahead = {}  # as ``_dirty`` above
        return answered

    def _written(self, _: object, waiters: list[_Waiter], rows: int) -> None:
        self._writing = None
        self.failures = 0
        self._written_since_release += rows
        # Their REGISTERs go out now (through the scheduler); that marks them dirty again.
        for registrant, done, call_id in waiters:
            # A record that moved on to another dialog meanwhile waits for a later batch.
            if registrant.call_id == call_id:
                done(registrant, None)
        if self._dirty:
            # A backlog goes on at once; fresh changes wait for the next batch,
            # new dialogs no longer than AHEAD_DELAY.
            if len(self._dirty) >= BATCH:
                self._schedule(0.0)
            else:
                self._schedule(min(AHEAD_DELAY, self.delay) if self._ahead else self.delay)
        elif self._written_since_release >= RELEASE_AFTER:
            self._written_since_release = 0
            self.release_memory()

    def _failed(self, failure, batch: dict[RecordKey, Registrant], waiters: list[_Waiter]) -> None:
        self._writing = None
        self.failures += 1
        # Newer changes win over the batch that failed.
        self._dirty = {**batch, **self._dirty}
        # Their new dialogs stay off the wire; each record retries by its failure policy.
        for registrant, done, call_id in waiters:
            if registrant.call_id == call_id:
                done(registrant, failure)
        self._cancel(None)
        if failure.check(CancelledError):
            return  # given up at the shutdown deadline: nothing is retried
        retry = min(60.0, self.delay * 2**self.failures)
        log.warn(
            "cannot save runtime state of {count} records ({why}); retrying in {retry:.0f} s",
            count=len(batch),
            why=failure.getErrorMessage(),
            retry=retry,
        )
        self._call = self.clock.callLater(retry, self.flush)

    @inlineCallbacks
    def stop(self) -> Deferred:
        """Write everything left (until a write fails); no timer left behind."""
        failures = self.failures
        while self._dirty or self._writing is not None:
            yield self.flush()
            if self.failures > failures:
                break
        self._cancel(None)

    def _cancel(self, _: object) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None


# Requests may have left after the last write reached the database (a node
# killed right after a refresh): the CSeq goes on from beyond them.
CSEQ_MARGIN = 10


def resume(
    engine: Engine,
    saved: dict[RecordKey, RuntimeState],
    now: float,
    select: Callable[[Registrant], bool] = lambda registrant: True,
) -> int:
    """Resume the selected records whose saved binding is still valid; returns how many.

    Each goes on with the same Call-ID and From-tag and a higher CSeq, and is
    refreshed when due, so the registrar keeps one binding per record.  Any
    other saved record keeps its last dialog (its REGISTER may have reached
    the registrar): the next REGISTER goes on in it.  Every selected record
    asks for at least the Min-Expires its registrar last answered with a 423,
    so a restart does not cost a fresh 423.
    """
    resumed = 0
    for registrant in engine:
        state = saved.get(registrant.key)
        if state is None or not select(registrant):
            continue
        # The availability figures go on from the saved ones (this node's own, or
        # the previous owner's for a tag taken over).
        restore(registrant, Figures(state.enabled_s, state.bound_s, state.flaps, state.outage_start,
                                    state.outage_end, state.outage_cause), now)
        if state.min_expires is not None and state.min_expires > registrant.wanted_expires:
            registrant.wanted_expires = min(state.min_expires, MAX_MIN_EXPIRES)
        if not registrant.enabled:
            continue
        if state.state == State.REGISTERED_STATE and state.expires_at > now:
            engine.resume(
                registrant,
                state.call_id,
                state.from_tag,
                state.cseq + CSEQ_MARGIN,
                state.expires,
                state.expires_at - state.expires,
            )
            resumed += 1
        elif registrant.state is State.NOT_REGISTERED_STATE and state.call_id:
            # Written ahead, so possibly on the wire: never a second dialog for it.
            engine.resume_dialog(registrant, state.call_id, state.from_tag, state.cseq + CSEQ_MARGIN)
    return resumed
