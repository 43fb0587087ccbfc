"""How available each record is: seconds enabled, seconds bound, flaps and the last outage.

Counted on changes, never per tick: a record's figures are sums up to
``counted_to``, brought up to date when its settled state or its enabled flag
changes (``Availability`` observes both), and read with the running span added
(``figures``).  Four slots of the record hold it all: ``enabled_s``,
``bound_s``, ``counted_to`` and ``outage``, a tuple ``(start, end, cause,
flaps)`` made at the first outage (None before).

- enabled: the record is enabled and this node registers it (``active``);
- bound: enabled and settled in REGISTERED (a routine refresh stays bound);
- a flap: an enabled record falls from REGISTERED into a failed state;
- an outage: starts when an enabled record settles in a failed state (and no
  outage is going on), ends when it settles in REGISTERED again or is
  disabled; its cause is the reply's status line that started it,
  ``"timeout"`` or ``"transport error: <reason>"``.

Pure except for the clock it is given.  The figures survive a restart through
the runtime state (``persist.snapshot`` / ``persist.resume``, with ``export``
and ``restore`` here).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import NamedTuple

from twisted.internet.interfaces import IReactorTime

from .machine import Registrant
from .observer import EngineObserver
from .states import FAILED, IN_FLIGHT, State

REGISTERED = State.REGISTERED_STATE
# The longest outage cause kept (a reason phrase comes from the network).
MAX_CAUSE = 160
# What the executor says of a Timer F (last_code 408 with this reason).
_TIMER_F = "transaction timeout"
# Failures of our own, not of the transport, with no status code.
_OWN = ("internal error", "runtime state not saved")


class Figures(NamedTuple):
    enabled_s: float
    bound_s: float
    flaps: int
    outage_start: float | None
    outage_end: float | None
    outage_cause: str | None

    @property
    def ratio(self) -> float | None:
        """bound_s / enabled_s, 4 decimals; None before any enabled second."""
        if self.enabled_s <= 0:
            return None
        return round(min(1.0, self.bound_s / self.enabled_s), 4)


def cause_of(registrant: Registrant) -> str:
    """Why the record failed, from what the executor left in last_code/last_reason."""
    code, reason = registrant.last_code, registrant.last_reason
    if code == 408 and reason == _TIMER_F:
        return "timeout"
    if code is not None:
        text = f"{code} {reason}" if reason else str(code)
    elif not reason:
        text = "unknown"
    elif reason.startswith(_OWN):
        text = reason
    else:
        text = f"transport error: {reason}"
    # Thousands of records failing alike share one string.
    return sys.intern(text[:MAX_CAUSE])


def figures(registrant: Registrant, now: float, counting: bool = True) -> Figures:
    """The record's figures at ``now``; ``counting``: whether the span since
    ``counted_to`` counts (the record is registered by this node)."""
    enabled_s, bound_s = registrant.enabled_s, registrant.bound_s
    span = now - registrant.counted_to
    if counting and span > 0 and registrant.enabled:
        enabled_s += span
        if registrant.settled is REGISTERED:
            bound_s += span
    outage = registrant.outage
    if outage is None:
        return Figures(enabled_s, bound_s, 0, None, None, None)
    start, end, cause, flaps = outage
    return Figures(enabled_s, bound_s, flaps, start, end, cause)


def restore(registrant: Registrant, saved: Figures, now: float) -> None:
    """Take figures saved earlier (a restart, a tag taken over); counting goes on from ``now``."""
    registrant.enabled_s = max(0.0, float(saved.enabled_s))
    registrant.bound_s = min(registrant.enabled_s, max(0.0, float(saved.bound_s)))
    registrant.counted_to = now
    flaps = max(0, int(saved.flaps or 0))
    if saved.outage_start is None and not flaps:
        registrant.outage = None
    else:
        cause = None if saved.outage_cause is None else sys.intern(saved.outage_cause[:MAX_CAUSE])
        registrant.outage = (saved.outage_start, saved.outage_end, cause, flaps)


class Availability(EngineObserver):
    """Keeps every record's figures; the engine subscribes one."""

    def __init__(self, clock: IReactorTime, active: Callable[[Registrant], bool] = lambda registrant: True) -> None:
        self.clock = clock
        self.active = active
        # Every flap since the process started, for the metrics.
        self.flaps = 0

    def loaded(self, registrant: Registrant) -> None:
        """A record just loaded: it counts from now."""
        registrant.counted_to = self.clock.seconds()

    def figures(self, registrant: Registrant) -> Figures:
        return figures(registrant, self.clock.seconds(), self.active(registrant))

    def _count(self, registrant: Registrant, now: float) -> None:
        # Must run before ``enabled`` or ``settled`` change: the span is theirs.
        span = now - registrant.counted_to
        if span > 0 and registrant.enabled and self.active(registrant):
            registrant.enabled_s += span
            if registrant.settled is REGISTERED:
                registrant.bound_s += span
        registrant.counted_to = now

    def transition(self, registrant: Registrant, old: State, new: State) -> None:
        if new in IN_FLIGHT:
            return
        settled = registrant.settled  # the engine updates it after telling us
        if new is settled:
            return  # a routine refresh, or a failure again
        now = self.clock.seconds()
        self._count(registrant, now)
        if not registrant.enabled:
            return
        outage = registrant.outage
        if new is REGISTERED:
            if outage is not None and outage[0] is not None and outage[1] is None:
                registrant.outage = (outage[0], now, outage[2], outage[3])
        elif new in FAILED:
            flaps = 0 if outage is None else outage[3]
            if settled is REGISTERED:
                flaps += 1
                self.flaps += 1
            if outage is None or outage[0] is None or outage[1] is not None:
                registrant.outage = (now, None, cause_of(registrant), flaps)
            elif flaps != outage[3]:
                registrant.outage = (*outage[:3], flaps)

    def enabled(self, registrant: Registrant, enabled: bool) -> None:
        now = self.clock.seconds()
        self._count(registrant, now)
        outage = registrant.outage
        if not enabled and outage is not None and outage[0] is not None and outage[1] is None:
            registrant.outage = (outage[0], now, outage[2], outage[3])

    def distribution(self, registrants: Iterable[Registrant], bounds: tuple[float, ...]) -> Distribution:
        """Records by availability, at ``now``: a histogram made at scrape time."""
        now = self.clock.seconds()
        active = self.active
        counts = [0] * len(bounds)
        total = 0.0
        count = in_outage = 0
        for registrant in registrants:
            outage = registrant.outage
            if outage is not None and outage[0] is not None and outage[1] is None:
                in_outage += 1
            ratio = figures(registrant, now, active(registrant)).ratio
            if ratio is None:
                continue
            count += 1
            total += ratio
            for i, bound in enumerate(bounds):
                if ratio <= bound:
                    counts[i] += 1
        return Distribution(counts, total, count, in_outage)


class Distribution(NamedTuple):
    # Cumulative: records with availability <= each bound (never enabled ones left out).
    counts: list[int]
    total: float
    count: int
    # Records whose last outage goes on.
    in_outage: int
