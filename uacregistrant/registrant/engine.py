"""The registrant engine: every record's machine, the scheduler, and the way out.

It applies table contents as a diff (start-up and reg_reload), carries out
operator actions, and fans every state change out to its observers (log,
metrics, events, runtime persistence).  It knows nothing about HTTP or SQL.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Iterable

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ..sip.message import Request, Response
from ..sip.randomness import BufferedRandom
from ..transport.dns import Targets
from ..transport.errors import TransactionTimeout, TransportError
from ..transport.interfaces import IRequestSender
from ..transport.listen import Destination, SocketSpec, parse_socket
from .keepalive import Keepalives
from .machine import Context, Registrant
from .policy import Timing
from .record import RecordConfig, RecordKey
from .scheduler import Scheduler
from .states import IN_FLIGHT, State

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

    def __init__(self, clock: IReactorTime, leaving: list[Registrant], timeout: float, left: int) -> None:
        self.done: Deferred[ShutdownSummary] = Deferred()
        self._waiting = set(leaving)
        self._unregistered = 0
        self._gave_up = 0
        self._left = left
        self._timer = clock.callLater(timeout, self._give_up) if leaving else None
        for registrant in leaving:
            registrant.unregister().addCallback(self._settled, registrant)
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
            registrant.stop()
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


Observer = Callable[[Registrant, State, State], None]


def _observer_failed(observer: object, registrant: Registrant) -> None:
    # An observer's fault is its own: the record and the other observers go on.
    log.failure("observer {observer!r} failed for {aor}", observer=observer, aor=registrant.config.aor)


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
        keepalive_interval: float = 0,
    ) -> None:
        self.clock = clock
        self.sender = sender
        # Anything with resolve(uri_text) -> Deferred[Targets], e.g. transport.dns.SIPResolver.
        self.resolver = resolver
        self.observers: list[Observer] = [self._log_transition]
        self.sent_observers: list[Callable[[Registrant, str], None]] = []
        self.reply_observers: list[Callable[[Registrant, int], None]] = []
        # Called with each target a request goes to (failover included).
        self.destination_observers: list[Callable[[Destination], None]] = []
        self.ctx = Context(
            clock=clock,
            send=self._send,
            timing=timing,
            user_agent=user_agent,
            # A seeded rng (tests) makes the tokens repeatable too.
            random=rng or random.Random(),
            random_bytes=rng.randbytes if rng is not None else BufferedRandom(),
            on_transition=self._on_transition,
            on_sent=self._on_sent,
            on_reply=self._on_reply,
        )
        self.scheduler = Scheduler(
            clock,
            hash_size=hash_size,
            timer_interval=timing.timer_interval,
            max_register_rate=max_register_rate,
        )
        self._sockets: dict[str, SocketSpec] = {}
        # Kept up to date on every transition, so a metrics scrape costs nothing per record.
        self._counts = {state: 0 for state in State}
        # Optional sender capabilities (the transaction layer has both).
        self.keepalives: Keepalives | None = None
        send_keepalive = getattr(sender, "send_keepalive", None)
        if send_keepalive is not None:
            self.keepalives = Keepalives(
                clock, send_keepalive, self._local_socket, interval=keepalive_interval, rng=self.ctx.random
            )
            self.observers.append(self.keepalives.on_transition)
        flow_observers = getattr(sender, "flow_observers", None)
        if flow_observers is not None:
            flow_observers.append(self._flow_lost)

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
            registrant = Registrant(config, self.ctx)
            self.scheduler.add(registrant)
            self._counts[registrant.state] += 1
        elif registrant.config != config:
            registrant.reconfigure(config)
            if registrant.due(self.clock.seconds()):
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
            registrant.stop()

        return registrant.unregister().addCallback(drop)

    # -- operator actions ------------------------------------------------------------

    def enable(self, key: RecordKey) -> None:
        registrant = self._require(key)
        registrant.enable()
        self.scheduler.visit_now(registrant)

    def disable(self, key: RecordKey) -> None:
        registrant = self._require(key)
        registrant.disable()
        self.scheduler.visit_now(registrant)

    def force_register(self, key: RecordKey) -> None:
        registrant = self._require(key)
        registrant.force()
        self.scheduler.visit_now(registrant)

    def _require(self, key: RecordKey) -> Registrant:
        registrant = self.scheduler.get(key)
        if registrant is None:
            raise KeyError(key)
        return registrant

    # -- life cycle ----------------------------------------------------------------

    def start(self) -> None:
        self.scheduler.start()

    def _flow_lost(self, flow: Destination) -> None:
        """A TCP/TLS connection closed: its registered records register again at once
        over a new one (RFC 5626 §4.4)."""
        for registrant in self.scheduler:
            if registrant.destination == flow and registrant.state is State.REGISTERED_STATE:
                registrant.force()
                self.scheduler.visit_now(registrant)

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
            registrant.stop()
        left = 0 if unregister else sum(1 for r in registrants if r.bound)
        return _Leaving(self.clock, leaving, timeout, left).done

    # -- the way out -----------------------------------------------------------------
    # -- the way out -----------------------------------------------------------------

    def _send(self, registrant: Registrant, request: Request) -> Deferred:
        """Send to the record's next hop (RFC 3263), failing over to the next target
        on a timeout, a transport error or a 503."""
        targets = registrant.targets
        if targets is not None and self.clock.seconds() < targets.expires_at:
            return self._attempt(registrant, request, targets, self._first(registrant, targets))
        config = registrant.config

        def resolved(targets: Targets) -> Deferred:
            registrant.targets = targets
            return self._attempt(registrant, request, targets, self._first(registrant, targets))

        return self.resolver.resolve(config.proxy or config.registrar).addCallback(resolved)

    @staticmethod
    def _first(registrant: Registrant, targets: Targets) -> Destination:
        # Stay where the last request went while it works; after a failure
        # start again from the most preferred target.
        if registrant.failures == 0 and registrant.destination in targets.destinations:
            return registrant.destination
        return targets.destinations[0]

    def _attempt(
        self, registrant: Registrant, request: Request, targets: Targets, destination: Destination
    ) -> Deferred:
        registrant.destination = destination
        for observer in self.destination_observers:
            observer(destination)
        sent = self.sender.send_request(request, destination, self._local_socket(registrant.config.forced_socket))
        following = targets.after(destination) if len(targets.destinations) > 1 else None
        if following is None:
            return sent

        def answered(response: Response):
            if response.status == 503:
                return self._attempt(registrant, request, targets, following)
            return response

        def failed(failure):
            failure.trap(TransactionTimeout, TransportError)
            return self._attempt(registrant, request, targets, following)

        return sent.addCallbacks(answered, failed)

    def _local_socket(self, text: str | None) -> SocketSpec | None:
        if not text:
            return None
        spec = self._sockets.get(text)
        if spec is None:
            spec = self._sockets[text] = parse_socket(text)
        return spec

    # -- observers ------------------------------------------------------------------

    def _on_transition(self, registrant: Registrant, old: State, new: State) -> None:
        self._counts[old] -= 1
        self._counts[new] += 1
        self.scheduler.note_transition(old, new)
        for observer in self.observers:
            try:
                observer(registrant, old, new)
            except Exception:
                _observer_failed(observer, registrant)

    def _on_sent(self, registrant: Registrant, kind: str) -> None:
        for observer in self.sent_observers:
            try:
                observer(registrant, kind)
            except Exception:
                _observer_failed(observer, registrant)

    def _on_reply(self, registrant: Registrant, code: int) -> None:
        for observer in self.reply_observers:
            try:
                observer(registrant, code)
            except Exception:
                _observer_failed(observer, registrant)

    def _log_transition(self, registrant: Registrant, old: State, new: State) -> None:
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

    def state_counts(self) -> dict[str, int]:
        return {state.name: count for state, count in self._counts.items()}
