"""Keep-alives on the flows of registered records (RFC 5626 §4.4.1, RFC 3581 NAT bindings).

A flow is a (destination, local socket) pair that one or more registered
records use.  TCP/TLS flows of RFC 5626 bindings get a CRLF keep-alive every
Flow-Timer seconds (or a random 95–120 s when the registrar sent none); with
``keepalive_interval`` every flow gets one that often, UDP ones included, so
that NAT bindings stay open between refreshes.  A TCP/TLS flow that closes
makes its records register again at once (the engine's flow observer).
"""

from __future__ import annotations

import random
from typing import Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from ..transport.listen import Destination
from .machine import Registrant
from .observer import EngineObserver
from .routing import local_socket as parse_local_socket
from .record import RecordKey
from .states import State

log = Logger()

SendKeepalive = Callable[[Destination, object], Deferred]


class Keepalives(EngineObserver):
    def __init__(
        self,
        clock: IReactorTime,
        send_keepalive: SendKeepalive,
        local_socket: Callable[[str | None], object] = parse_local_socket,
        *,
        interval: float = 0,
        rng: random.Random | None = None,
    ) -> None:
        self.clock = clock
        self.send_keepalive = send_keepalive
        self.local_socket = local_socket
        self.interval = interval
        self.rng = rng or random.SystemRandom()
        self.sent = 0
        self._members: dict[tuple, set[RecordKey]] = {}
        self._calls: dict[tuple, IDelayedCall] = {}
        self._flow_of: dict[RecordKey, tuple] = {}

    def transition(self, registrant: Registrant, old: State, new: State) -> None:
        key = registrant.key
        if new is State.REGISTERED_STATE:
            period = self._period(registrant)
            if period:
                self._join(key, (registrant.destination, registrant.config.forced_socket), period)
                return
        self._leave(key)

    def _period(self, registrant: Registrant) -> float | None:
        destination = registrant.destination
        if destination is None:
            return None
        if destination.reliable and registrant.config.unique_binding:
            if registrant.flow_timer:
                return float(registrant.flow_timer)
            return self.interval or self.rng.uniform(95, 120)
        return self.interval or None

    def _join(self, key: RecordKey, flow: tuple, period: float) -> None:
        if self._flow_of.get(key) != flow:
            self._leave(key)
        self._flow_of[key] = flow
        self._members.setdefault(flow, set()).add(key)
        if flow not in self._calls:
            self._calls[flow] = self.clock.callLater(period, self._beat, flow, period)

    def _leave(self, key: RecordKey) -> None:
        flow = self._flow_of.pop(key, None)
        if flow is None:
            return
        members = self._members.get(flow)
        if members is not None:
            members.discard(key)
            if not members:
                del self._members[flow]
                call = self._calls.pop(flow, None)
                if call is not None and call.active():
                    call.cancel()

    def _beat(self, flow: tuple, period: float) -> None:
        destination, forced_socket = flow
        self.sent += 1
        self.send_keepalive(destination, self.local_socket(forced_socket)).addErrback(
            lambda failure: log.info(
                "keep-alive to {destination} failed: {why}",
                destination=str(destination),
                why=failure.getErrorMessage(),
            )
        )
        self._calls[flow] = self.clock.callLater(period, self._beat, flow, period)

    @property
    def flows(self) -> int:
        return len(self._members)

    def stop(self) -> None:
        for call in self._calls.values():
            if call.active():
                call.cancel()
        self._calls.clear()
        self._members.clear()
        self._flow_of.clear()
