"""The registrant engine: every record, the scheduler, the way out, and who watches.

It applies table contents as a diff (start-up and reg_reload), turns
operator actions and scheduler visits into events of the record machine
(carried out by ``executor.Executor``), and tells its observers.  It knows
nothing about HTTP or SQL.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Iterable

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..sip.randomness import BufferedRandom
from ..transport.interfaces import IRequestSender
from ..transport.listen import Destination
from .availability import Availability
from .executor import Executor, WriteAheadDone
from .keepalive import Keepalives
from .machine import Event, Registrant
from .observer import METHODS, EngineObserver, overridden
from .policy import Timing
from .record import RecordConfig, RecordKey
from .routing import Router
from .scheduler import Scheduler
from .states import IN_FLIGHT, State
from .trace import Trace

log = Logger()


@dataclass(frozen=True, slots=True)
class ShutdownSummary:
    """How the unREGISTERs of a shutdown went."""

    unregistered: int
    gave_up: int
    # Bindings deliberately kept (unregister_on_shutdown off).
    left: int = 0


class _Leaving:
    """The unREGISTERs of a shutdown, bounded by one timer.

    Each record counts once: unregistered when its unREGISTER got a 200, given
    up when it failed or the timer stopped it first.
    """

    def __init__(
        self,
        clock: IReactorTime,
        leaving: list[Registrant],
        timeout: float,
        left: int,
        unregister: Callable[[Registrant], Deferred],
        stop: Callable[[Registrant], None],
    ) -> None:
        self.done: Deferred[ShutdownSummary] = Deferred()
        self._waiting = set(leaving)
        self._unregistered = 0
        self._gave_up = 0
        self._left = left
        self._timer = clock.callLater(timeout, self._give_up) if leaving else None
        self._stop = stop
        for registrant in leaving:
            unregister(registrant).addCallback(self._settled, registrant)
        if not self._waiting and not self.done.called:
            self._finish()

    def _settled(self, _: object, registrant: Registrant) -> None:
        if registrant not in self._waiting:
            return
        self._waiting.discard(registrant)
        if registrant.state is State.NOT_REGISTERED_STATE and not registrant.bound:
            self._unregistered += 1
        else:
            self._gave_up += 1
        if not self._waiting and not self.done.called:
            self._finish()

    def _give_up(self) -> None:
        self._timer = None
        # stop() releases each record's waiter, which lands in _settled.
        for registrant in list(self._waiting):
            self._stop(registrant)
        if not self.done.called:
            self._finish()

    def _finish(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        summary = ShutdownSummary(self._unregistered, self._gave_up, self._left)
        log.info(
            "shutdown: {unregistered} records unregistered, {gave_up} gave up"
            " ({left} bindings left in place)",
            unregistered=summary.unregistered,
            gave_up=summary.gave_up,
            left=summary.left,
        )
        self.done.callback(summary)


class Engine:
    def __init__(
        self,
        *,
        clock: IReactorTime,
        sender: IRequestSender,
        resolver,
        timing: Timing,
        hash_size: int = 1,
        max_register_rate: float = 0,
        user_agent: str = "",
        rng: random.Random | None = None,
        keepalives: Keepalives | None = None,
        active: Callable[[Registrant], bool] | None = None,
        write_ahead: Callable[[Registrant, WriteAheadDone], None] | None = None,
    ) -> None:
        """``resolver``: anything with resolve(uri_text) -> Deferred[Targets] (transport.dns.SIPResolver).
        ``active``: whether this node registers a record now (clustering); all by default.
        ``write_ahead(registrant, done)``: commits a record's new dialog and calls
        ``done(registrant, None)`` once it is durable, ``done(registrant, failure)``
        if it cannot be (``persist.RuntimeWriter.write_ahead``); without it nothing waits."""
        self.clock = clock
        self.timing = timing
        self._observers: dict[str, list[Callable]] = {name: [] for name in METHODS}
        self.router = Router(clock, sender, resolver, self._on_destination, self._on_exchange)
        # A seeded rng (tests) makes the tokens repeatable too.
        random_bytes = rng.randbytes if rng is not None else BufferedRandom()
        rng = rng or random.Random()
        self.executor = Executor(
            clock=clock,
            timing=timing,
            send=self.router.send,
            write_ahead=write_ahead or _durable_at_once,
            random_bytes=random_bytes,
            rng=rng,
            user_agent=user_agent,
            on_transition=self._on_transition,
            on_sent=self._on_sent,
            on_replied=self._on_replied,
            visit_now=self._visit_now,
            on_enabled=self._on_enabled,
        )
        self.active = active or (lambda registrant: True)
        self.scheduler = Scheduler(
            clock,
            hash_size=hash_size,
            timer_interval=timing.timer_interval,
            max_register_rate=max_register_rate,
            active=self.active,
            visit=self._visit,
            reclaim=self._reclaim,
            on_rate_limited=self._on_rate_limited,
        )
        # Kept up to date on every transition, so a metrics scrape costs nothing per record.
        self._counts = {state: 0 for state in State}
        self.keepalives = keepalives
        self.subscribe(_TransitionLog())
        # Per-record diagnostics: availability figures, exchange history (reg_trace).
        self.availability = Availability(clock, self.active)
        self.trace = Trace(clock)
        self.subscribe(self.availability)
        self.subscribe(self.trace)
        if keepalives is not None:
            self.subscribe(keepalives)

    def subscribe(self, observer: EngineObserver) -> None:
        """Tell ``observer`` what happens from now on (only what its class overrides)."""
        for name in METHODS:
            if overridden(observer, name):
                self._observers[name].append(getattr(observer, name))

    # -- records ------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.scheduler)

    def __iter__(self):
        return iter(self.scheduler)

    def get(self, key: RecordKey) -> Registrant | None:
        return self.scheduler.get(key)

    def apply(self, records: Iterable[RecordConfig]) -> Deferred:
        """Make the loaded records equal ``records`` (reg_reload).

        Unchanged records keep their runtime state; changed ones take the new
        values from their next request; new ones register at their bucket's
        next visit; records gone are unregistered if bound, then dropped.
        Fires when the dropped ones are done.
        """
        wanted = {record.key: record for record in records}
        for key, config in wanted.items():
            self.upsert(config)
        gone = [r.key for r in self.scheduler if r.key not in wanted]
        return DeferredList([self.remove(key) for key in gone])

    def upsert(self, config: RecordConfig) -> Registrant:
        registrant = self.scheduler.get(config.key)
        if registrant is None:
            registrant = Registrant(config)
            self.availability.loaded(registrant)
            self.scheduler.add(registrant)
            self._counts[registrant.state] += 1
        elif registrant.config != config:
            fire = self.executor.fire
            fire(registrant, Event.RELOAD, config=config)
            if config.enabled != registrant.enabled:
                fire(registrant, Event.ENABLE if config.enabled else Event.DISABLE)
            elif registrant.due(self.clock.seconds()):
                self.scheduler.visit_now(registrant)
        return registrant

    def remove(self, key: RecordKey) -> Deferred:
        """Unregister the record if bound, then drop it."""
        registrant = self.scheduler.get(key)
        if registrant is None:
            return succeed(None)

        def drop(_: object) -> None:
            if self.scheduler.get(key) is registrant:
                self.scheduler.remove(key)
                self._counts[registrant.state] -= 1
            self.stop(registrant)

        return self.unregister(registrant).addCallback(drop)

    # -- operator actions ------------------------------------------------------------

    def enable(self, key: RecordKey) -> None:
        registrant = self._require(key)
        self.executor.fire(registrant, Event.FORCE if registrant.enabled else Event.ENABLE)

    def disable(self, key: RecordKey) -> None:
        self.executor.fire(self._require(key), Event.DISABLE)

    def force_register(self, key: RecordKey) -> None:
        self.executor.fire(self._require(key), Event.FORCE)

    def _require(self, key: RecordKey) -> Registrant:
        registrant = self.scheduler.get(key)
        if registrant is None:
            raise KeyError(key)
        return registrant

    # -- one record ----------------------------------------------------------------------

    def unregister(self, registrant: Registrant) -> Deferred:
        """Remove the record's binding now (shutdown, delete); fires when it settles, whatever the outcome."""
        done = self.executor.wait_settled(registrant)
        self.executor.fire(registrant, registrant.shutdown_event())
        return done

    def stop(self, registrant: Registrant) -> None:
        """Forget anything in flight for the record; nothing of it is left on the clock."""
        self.executor.fire(registrant, Event.STOP)

    def passivate(self, registrant: Registrant) -> None:
        """Another node registers this record now: stop at once, send nothing, keep the dialog."""
        self.executor.fire(registrant, Event.PASSIVATE)

    def resume(self, registrant: Registrant, call_id: str, from_tag: str, cseq: int, expires: int, granted_at: float) -> None:
        """Go on with a binding made earlier (by this process before a restart, or
        by another node): same dialog, next CSeq, refreshed when due."""
        self.executor.fire(
            registrant, Event.RESUME, call_id=call_id, from_tag=from_tag, cseq=cseq, expires=expires, granted_at=granted_at
        )

    def resume_dialog(self, registrant: Registrant, call_id: str, from_tag: str, cseq: int) -> None:
        """Go on with a saved dialog whose REGISTER may have reached the registrar:
        the next REGISTER uses it, with a higher CSeq, instead of a new one."""
        self.executor.fire(registrant, Event.RESUME_DIALOG, call_id=call_id, from_tag=from_tag, cseq=cseq)

    def flow_lost(self, flow: Destination) -> None:
        """A TCP/TLS connection closed: its registered records register again at once
        over a new one (RFC 5626 §4.4)."""
        for registrant in self.scheduler:
            if registrant.destination == flow and registrant.state is State.REGISTERED_STATE:
                self.executor.fire(registrant, Event.FORCE)

    def _visit(self, registrant: Registrant) -> None:
        self.executor.fire(registrant, registrant.visit_event())

    def _reclaim(self, registrant: Registrant) -> None:
        self.executor.fault(registrant, Failure(RuntimeError("in a sending state with nothing in flight")))

    def _visit_now(self, registrant: Registrant) -> None:
        self.scheduler.visit_now(registrant)

    # -- life cycle ----------------------------------------------------------------

    def start(self) -> None:
        self.scheduler.start()

    def shutdown(self, unregister: bool, timeout: float) -> Deferred[ShutdownSummary]:
        """Stop scheduling; with ``unregister``, unREGISTER every bound record (and every
        record with a request in flight), giving up on what is left after ``timeout``.

        Fires with a ShutdownSummary, always within ``timeout``, and never with an
        error: records that give up are stopped quietly, their transactions abandoned.
        """
        self.scheduler.stop()
        if self.keepalives is not None:
            self.keepalives.stop()
        registrants = list(self.scheduler)
        leaving = [r for r in registrants if unregister and (r.bound or r.state in IN_FLIGHT)]
        staying = [r for r in registrants if not (r.bound or r.state in IN_FLIGHT)] if unregister else registrants
        for registrant in staying:
            self.stop(registrant)
        left = 0 if unregister else sum(1 for r in registrants if r.bound)
        return _Leaving(self.clock, leaving, timeout, left, self.unregister, self.stop).done

    # -- observers ------------------------------------------------------------------

    def _on_transition(self, registrant: Registrant, old: State, new: State) -> None:
        self._counts[old] -= 1
        self._counts[new] += 1
        self.scheduler.note_transition(old, new)
        for observer in self._observers["transition"]:
            try:
                observer(registrant, old, new)
            except Exception:
                _observer_failed(observer, registrant.config.aor)

    def _on_sent(self, registrant: Registrant, kind: str) -> None:
        for observer in self._observers["sent"]:
            try:
                observer(registrant, kind)
            except Exception:
                _observer_failed(observer, registrant.config.aor)

    def _on_replied(self, registrant: Registrant, code: int) -> None:
        for observer in self._observers["replied"]:
            try:
                observer(registrant, code)
            except Exception:
                _observer_failed(observer, registrant.config.aor)

    def _on_destination(self, destination: Destination) -> None:
        for observer in self._observers["destination"]:
            try:
                observer(destination)
            except Exception:
                _observer_failed(observer, None)

    def _on_enabled(self, registrant: Registrant, enabled: bool) -> None:
        for observer in self._observers["enabled"]:
            try:
                observer(registrant, enabled)
            except Exception:
                _observer_failed(observer, registrant.config.aor)

    def _on_exchange(self, registrant: Registrant, request: object, destination: Destination, sent: Deferred) -> None:
        # Nothing per request unless someone listens.
        if self._observers["exchanged"]:
            sent.addBoth(self._exchanged, registrant, request, destination, self.clock.seconds())

    def _exchanged(self, result: object, registrant: Registrant, request: object, destination: Destination, at: float) -> object:
        for observer in self._observers["exchanged"]:
            try:
                observer(registrant, request, destination, at, result)
            except Exception:
                _observer_failed(observer, registrant.config.aor)
        return result

    def _on_rate_limited(self) -> None:
        for observer in self._observers["rate_limited"]:
            try:
                observer()
            except Exception:
                _observer_failed(observer, None)

    def state_counts(self) -> dict[str, int]:
        return {state.name: count for state, count in self._counts.items()}


def _durable_at_once(registrant: Registrant, done: WriteAheadDone) -> None:
    done(registrant, None)


def _observer_failed(observer: object, aor: str | None) -> None:
    # An observer's fault is its own: the record and the other observers go on.
    log.failure("observer {observer!r} failed (record {aor})", observer=observer, aor=aor)


class _TransitionLog(EngineObserver):
    def transition(self, registrant: Registrant, old: State, new: State) -> None:
        # One line when a record settles in another state; requests in flight
        # and routine refreshes would drown the log (and cost on the hot path).
        if new in IN_FLIGHT or new is registrant.settled:
            return
        # Fixed key=value fields, for grep and log shippers; the reason phrase
        # came from the network, hence quoted (!r keeps it on one line).
        log.info(
            "state aor={aor} binding={binding} registrar={registrar} old={old} new={new}"
            " code={code} reason={reason!r}",
            aor=registrant.config.aor,
            binding=registrant.config.binding_uri,
            registrar=registrant.config.registrar,
            old=registrant.settled.name,
            new=new.name,
            code=registrant.last_code,
            reason=registrant.last_reason,
        )
