"""Runtime state that survives a restart or moves to another node (Call-ID, CSeq, expiry).

Transitions only mark a record dirty; a timer writes the dirty ones in one
batch, off the hot path.  A failed write keeps them dirty for the next try and
never holds up a registration.
"""

from __future__ import annotations

import itertools
from typing import Callable

from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from ..store.interface import IRegistrantStore, RuntimeState
from .engine import Engine
from .machine import Registrant
from .observer import EngineObserver
from .record import RecordKey
from .states import State

log = Logger()

BATCH = 1000


def snapshot(registrant: Registrant, now: float) -> RuntimeState:
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
    )


class RuntimeWriter(EngineObserver):
    def __init__(
        self, engine: Engine, store: IRegistrantStore, clock: IReactorTime, delay: float = 1.0
    ) -> None:
        self.engine = engine
        # Only what this node registers is written: a standby's view is stale.
        self.active = engine.active
        self.store = store
        self.clock = clock
        self.delay = delay
        self.failures = 0
        self._dirty: dict[RecordKey, Registrant] = {}
        self._call: IDelayedCall | None = None
        self._writing: Deferred | None = None
        engine.subscribe(self)

    def transition(self, registrant: Registrant, old: State, new: State) -> None:
        if not self.active(registrant):
            return
        self._dirty[registrant.key] = registrant
        if self._call is None and self._writing is None:
            self._call = self.clock.callLater(self.delay, self.flush)

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
        if not batch:
            return self.flush() if self._dirty else succeed(None)
        now = self.clock.seconds()
        states = [snapshot(registrant, now) for registrant in batch.values()]
        writing = self._writing = self.store.save_runtime(states)
        writing.addCallbacks(self._written, self._failed, errbackArgs=(batch,))
        return writing

    def _written(self, _: object) -> None:
        self._writing = None
        self.failures = 0
        if self._dirty:
            # A backlog goes on at once; fresh changes wait for the next batch.
            later = 0 if len(self._dirty) >= BATCH else self.delay
            self._call = self.clock.callLater(later, self.flush)

    def _failed(self, failure, batch: dict[RecordKey, Registrant]) -> None:
        self._writing = None
        self.failures += 1
        # Newer changes win over the batch that failed.
        self._dirty = {**batch, **self._dirty}
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
    refreshed when due, so the registrar keeps one binding per record.
    """
    resumed = 0
    for registrant in engine:
        state = saved.get(registrant.key)
        if (
            state is None
            or not select(registrant)
            or state.state != State.REGISTERED_STATE
            or state.expires_at <= now
            or not registrant.enabled
        ):
            continue
        engine.resume(
            registrant,
            state.call_id,
            state.from_tag,
            state.cseq + CSEQ_MARGIN,
            state.expires,
            state.expires_at - state.expires,
        )
        resumed += 1
    return resumed
