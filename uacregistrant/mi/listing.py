"""reg_list entries: OpenSIPS's keys with OpenSIPS's values, then our own keys.

Our scheduling differs from OpenSIPS's (refresh earlier, back off after
failures, stop after repeated wrong credentials), so a few OpenSIPS values
are not our record's own and are worked out here, from the record and from
what the engine's observers report:

``registration_t_out``
    OpenSIPS's deadline: ``T + E·P/100 − TI`` after a 200 at T, ``F + (FRI or
    E·P/100) − TI`` after a failure at F, 0 (the epoch) after wrong
    credentials, an unREGISTER, before the first REGISTER and after an
    operator's force or enable.  Our own next attempt is ``next_attempt``.
``expires``
    The granted expiry, or the table's value before the first 200 and after
    a reload that changed it, until a 200 grants one again.
``dst_IP`` / ``ip``
    Where the last reply came from; gone after a timeout or a transport error
    of our own (no reply at all), as OpenSIPS clears it on a local reply.

Only records in one of those passing conditions are remembered, so the
memory kept here follows the failures and reloads, not the table size.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable

from ..registrant.engine import Engine
from ..registrant.machine import Registrant
from ..registrant.observer import EngineObserver
from ..registrant.record import RecordConfig, RecordKey
from ..registrant.states import FAILED, IN_FLIGHT, State
from ..sip.uri import redact_uri

EPOCH = 0.0


def ctime(when: float) -> str:
    """OpenSIPS's time text: ctime() without its newline (0 is the epoch)."""
    return time.ctime(when)


class Listing(EngineObserver):
    """Builds reg_list entries for the records of one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.timing = engine.timing
        # Failed records: when, and in which state (until a 200 or NOT_REGISTERED).
        self._failed: dict[RecordKey, tuple[State, float]] = {}
        # Requests out with no reply yet, and records whose last request got none.
        self._awaiting: set[RecordKey] = set()
        self._no_reply: set[RecordKey] = set()
        # Reloaded with another expiry, and not granted one since.
        self._table_expiry: set[RecordKey] = set()
        engine.subscribe(self)

    # -- what the engine reports ------------------------------------------------------

    def sent(self, registrant: Registrant, kind: str) -> None:
        self._awaiting.add(registrant.key)

    def replied(self, registrant: Registrant, code: int) -> None:
        self._awaiting.discard(registrant.key)
        self._no_reply.discard(registrant.key)

    def transition(self, registrant: Registrant, old: State, new: State) -> None:
        key = registrant.key
        if new in FAILED:
            self._failed[key] = (new, self.engine.clock.seconds())
            if key in self._awaiting:
                self._no_reply.add(key)
        elif new is State.REGISTERED_STATE or new is State.NOT_REGISTERED_STATE:
            self._failed.pop(key, None)
            self._table_expiry.discard(key)
        if new not in IN_FLIGHT:
            self._awaiting.discard(key)

    # -- what the MI commands report --------------------------------------------------

    def reloading(self, configs: Iterable[RecordConfig]) -> None:
        """Call before the engine takes ``configs``: note the expiries that change."""
        for config in configs:
            registrant = self.engine.get(config.key)
            if registrant is not None and registrant.config.expiry != config.expiry:
                self._table_expiry.add(config.key)

    def forget_gone(self) -> None:
        """Drop what is kept for records no longer loaded (after a reload or a delete)."""
        for kept in (self._failed, self._awaiting, self._no_reply, self._table_expiry):
            for key in [k for k in kept if self.engine.get(k) is None]:
                if isinstance(kept, dict):
                    del kept[key]
                else:
                    kept.discard(key)

    # -- the entry ---------------------------------------------------------------------

    def registration_t_out(self, registrant: Registrant) -> float:
        """OpenSIPS's ``registration_timeout`` for the record, as epoch seconds."""
        state = registrant.state
        if state is State.NOT_REGISTERED_STATE:
            return EPOCH
        if state in IN_FLIGHT and registrant.registration_timeout == 0:
            return EPOCH  # first REGISTER, or forced / enabled by an operator
        timing = self.timing
        failed = self._failed.get(registrant.key)
        if failed is not None:
            failed_state, at = failed
            if failed_state is State.WRONG_CREDENTIALS_STATE:
                return EPOCH
            wait = timing.failure_retry_interval or registrant.expires * timing.reregister_expiry_percentage / 100
            return at + wait - timing.timer_interval
        if registrant.granted_at:
            share = registrant.expires * timing.reregister_expiry_percentage / 100
            return registrant.granted_at + share - timing.timer_interval
        return EPOCH

    def view(self, registrant: Registrant) -> dict[str, object]:
        """One reg_list entry: OpenSIPS's keys and order, then ours.  Never the credentials."""
        config = registrant.config
        key = registrant.key
        view: dict[str, object] = {
            "AOR": redact_uri(config.aor),
            "expires": config.expiry if key in self._table_expiry else registrant.expires,
            "state": registrant.state.name,
            "enabled": "yes" if registrant.enabled else "no",
            "last_register_sent": ctime(registrant.last_register_sent),
            "registration_t_out": ctime(max(EPOCH, self.registration_t_out(registrant))),
            "registrar": redact_uri(config.registrar),
            "binding": redact_uri(config.binding_uri),
        }
        if config.binding_params:
            view["binding_params"] = config.binding_params
        if config.third_party_registrant:
            view["third_party_registrant"] = redact_uri(config.third_party_registrant)
        if config.forced_socket:
            view["socket"] = config.forced_socket
        if config.proxy:
            view["proxy"] = redact_uri(config.proxy)
        destination = registrant.destination
        if destination is not None and registrant.last_code is not None and key not in self._no_reply:
            view["dst_IP"] = "IPv6" if ":" in destination.host else "IPv4"
            view["ip"] = destination.host
        shtag = config.shtag
        if shtag is not None:
            view["shtag"], view["cluster_id"] = shtag
        if registrant.service_route:
            view["service_route"] = registrant.service_route
        if registrant.associated_uris:
            view["associated_uris"] = registrant.associated_uris
        view["last_code"] = registrant.last_code
        view["last_reason"] = registrant.last_reason
        view["failures"] = registrant.failures
        # Ours: when this service acts next; "never" waits for an operator.
        timeout = registrant.registration_timeout
        view["next_attempt"] = "never" if math.isinf(timeout) else ctime(timeout)
        # Ours: availability since the record was loaded (carried across restarts).
        figures = self.engine.availability.figures(registrant)
        view["enabled_s"] = int(figures.enabled_s)
        view["bound_s"] = int(figures.bound_s)
        view["availability"] = figures.ratio
        view["flaps"] = figures.flaps
        if figures.outage_start is not None:
            view["last_outage"] = {
                "start": figures.outage_start,
                "end": figures.outage_end,
                "cause": figures.outage_cause,
            }
        view["trace"] = "on" if self.engine.trace.tracing(key) else "off"
        return view
