"""The RFC 3261 §17.1.2 non-INVITE client transaction, sans I/O.

The machine takes events with an explicit ``now`` and answers with a list of
effects; the caller owns the clock and arms one timer at :attr:`deadline`.
The transitions are the table :data:`_TRANSITIONS`, one row per
(state, event) pair the RFC defines; any other pair is ignored.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Callable


class State(enum.Enum):
    """The four states of RFC 3261 Figure 6."""

    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    TERMINATED = "Terminated"


@dataclass(frozen=True, slots=True)
class Timers:
    """RFC 3261 §17.1.1.1 / Table 4 timer values, in seconds."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0

    @property
    def timer_f(self) -> float:
        return 64 * self.t1


@dataclass(frozen=True, slots=True)
class Retransmit:
    """Send the request again (Timer E fired)."""


@dataclass(frozen=True, slots=True)
class DeliverResponse:
    """Hand the response just received to the transaction user."""

    status: int


@dataclass(frozen=True, slots=True)
class TimedOut:
    """Timer F fired before a final response: report a timeout (§17.1.2.2)."""


@dataclass(frozen=True, slots=True)
class TransportFailed:
    """The transport reported an error: report it and give up (§17.1.4)."""


@dataclass(frozen=True, slots=True)
class Terminated:
    """The transaction is over; its key can be forgotten."""


Effect = Retransmit | DeliverResponse | TimedOut | TransportFailed | Terminated


class _Event(enum.Enum):
    TIMER_E = "timer_e"
    TIMER_F = "timer_f"
    TIMER_K = "timer_k"
    PROVISIONAL = "1xx"
    FINAL = "200-699"
    TRANSPORT_ERROR = "transport_error"


def transaction_key(branch: str, method: str) -> tuple[str, str]:
    """The §17.1.3 matching key: top Via branch plus CSeq method.

    Branches compare case-sensitively; methods are case-sensitive tokens too.
    """
    return (branch, method)


class ClientTransaction:
    """One non-INVITE client transaction; the request was sent at ``now``."""

    def __init__(
        self,
        branch: str,
        method: str,
        reliable: bool,
        now: float,
        timers: Timers = Timers(),
    ) -> None:
        self.branch = branch
        self.method = method
        self.reliable = reliable
        self.timers = timers
        self.state = State.TRYING
        # §17.1.2.2: Timer E only on unreliable transports, Timer F always.
        self._interval_e = timers.t1
        self._timer_e: float | None = None if reliable else now + timers.t1
        self._timer_f: float | None = now + timers.timer_f
        self._timer_k: float | None = None

    @property
    def key(self) -> tuple[str, str]:
        return transaction_key(self.branch, self.method)

    @property
    def deadline(self) -> float | None:
        """The earliest pending timer, or None when nothing is armed."""
        earliest = self._timer_f
        for due in (self._timer_e, self._timer_k):
            if due is not None and (earliest is None or due < earliest):
                earliest = due
        return earliest

    def on_timer(self, now: float) -> list[Effect]:
        """Fire every timer due at ``now`` (Timer F wins over a simultaneous E)."""
        effects: list[Effect] = []
        for event, due in (
            (_Event.TIMER_F, self._timer_f),
            (_Event.TIMER_K, self._timer_k),
            (_Event.TIMER_E, self._timer_e),
        ):
            if due is not None and due <= now and self.state is not State.TERMINATED:
                effects += self._fire(event, now, 0)
        return effects

    def on_response(self, status: int, now: float) -> list[Effect]:
        event = _Event.PROVISIONAL if 100 <= status < 200 else _Event.FINAL
        return self._fire(event, now, status)

    def on_transport_error(self, now: float) -> list[Effect]:
        return self._fire(_Event.TRANSPORT_ERROR, now, 0)

    def _fire(self, event: _Event, now: float, status: int) -> list[Effect]:
        action = _TRANSITIONS.get((self.state, event))
        if action is None:
            return []
        return action(self, now, status)

    # Transition actions, named after what the RFC says happens.

    def _retransmit_trying(self, now: float, status: int) -> list[Effect]:
        # Trying: E doubles each time, capped at T2.
        self._interval_e = min(2 * self._interval_e, self.timers.t2)
        self._timer_e = now + self._interval_e
        return [Retransmit()]

    def _retransmit_proceeding(self, now: float, status: int) -> list[Effect]:
        # Proceeding: E fires every T2.
        self._timer_e = now + self.timers.t2
        return [Retransmit()]

    def _provisional(self, now: float, status: int) -> list[Effect]:
        # The pending Timer E is kept; its next firing re-arms it at T2.
        self.state = State.PROCEEDING
        return [DeliverResponse(status)]

    def _final(self, now: float, status: int) -> list[Effect]:
        self._timer_e = None
        self._timer_f = None
        if self.reliable:
            # Timer K is zero on reliable transports: Completed is left at once.
            self.state = State.TERMINATED
            return [DeliverResponse(status), Terminated()]
        self.state = State.COMPLETED
        self._timer_k = now + self.timers.t4
        return [DeliverResponse(status)]

    def _timeout(self, now: float, status: int) -> list[Effect]:
        self._terminate()
        return [TimedOut(), Terminated()]

    def _transport_failed(self, now: float, status: int) -> list[Effect]:
        self._terminate()
        return [TransportFailed(), Terminated()]

    def _absorb(self, now: float, status: int) -> list[Effect]:
        # Completed: retransmitted responses are swallowed.
        return []

    def _timer_k_fired(self, now: float, status: int) -> list[Effect]:
        self._terminate()
        return [Terminated()]

    def _terminate(self) -> None:
        self.state = State.TERMINATED
        self._timer_e = self._timer_f = self._timer_k = None


_Action = Callable[[ClientTransaction, float, int], list[Effect]]

_TRANSITIONS: dict[tuple[State, _Event], _Action] = {
    (State.TRYING, _Event.TIMER_E): ClientTransaction._retransmit_trying,
    (State.TRYING, _Event.TIMER_F): ClientTransaction._timeout,
    (State.TRYING, _Event.PROVISIONAL): ClientTransaction._provisional,
    (State.TRYING, _Event.FINAL): ClientTransaction._final,
    (State.TRYING, _Event.TRANSPORT_ERROR): ClientTransaction._transport_failed,
    (State.PROCEEDING, _Event.TIMER_E): ClientTransaction._retransmit_proceeding,
    (State.PROCEEDING, _Event.TIMER_F): ClientTransaction._timeout,
    (State.PROCEEDING, _Event.PROVISIONAL): ClientTransaction._provisional,
    (State.PROCEEDING, _Event.FINAL): ClientTransaction._final,
    (State.PROCEEDING, _Event.TRANSPORT_ERROR): ClientTransaction._transport_failed,
    (State.COMPLETED, _Event.PROVISIONAL): ClientTransaction._absorb,
    (State.COMPLETED, _Event.FINAL): ClientTransaction._absorb,
    (State.COMPLETED, _Event.TIMER_K): ClientTransaction._timer_k_fired,
}
