"""The one way to watch the engine: subclass ``EngineObserver``, override what you need.

``Engine.subscribe`` calls only the methods a subclass overrides, so an
observer of transitions costs nothing per request sent.  Each call is
isolated: an observer that raises is logged, and the record and the other
observers go on.
"""

from __future__ import annotations

from typing import Callable

from .machine import Registrant
from .states import State


class EngineObserver:
    def transition(self, registrant: Registrant, old: State, new: State) -> None:
        """The record changed state (any change, in flight included)."""

    def sent(self, registrant: Registrant, kind: str) -> None:
        """A request left for the record: register, unregister, remove-all or auth."""

    def replied(self, registrant: Registrant, code: int) -> None:
        """A final reply reached the record."""

    def destination(self, destination: object) -> None:
        """A request went to this next hop (each failover target counts)."""

    def rate_limited(self) -> None:
        """The global REGISTER rate made the scheduler wait for a token."""

    def enabled(self, registrant: Registrant, enabled: bool) -> None:
        """The record's enabled flag is about to become ``enabled`` (reg_enable,
        reg_disable, a reload, a shutdown); it still has the old value."""

    def exchanged(self, registrant: Registrant, request: object, destination: object, at: float, result: object) -> None:
        """A request sent at ``at`` to ``destination`` (each failover target is one
        exchange) ended: ``result`` is the final Response, or a Failure (a
        TransactionTimeout, a TransportError, a CancelledError).  ``request`` is
        the record's Request, without the Via the transaction layer adds."""


METHODS = ("transition", "sent", "replied", "destination", "rate_limited", "enabled", "exchanged")


def overridden(observer: object, name: str) -> bool:
    """Whether ``observer`` has its own ``name`` (a duck-typed observer counts too)."""
    method = getattr(type(observer), name, None)
    return method is not None and method is not getattr(EngineObserver, name)


class Transitions(EngineObserver):
    """An observer of state changes only, from a plain callable."""

    def __init__(self, callback: Callable[[Registrant, State, State], None]) -> None:
        self.callback = callback

    def transition(self, registrant: Registrant, old: State, new: State) -> None:
        self.callback(registrant, old, new)

    def __repr__(self) -> str:
        return f"Transitions({self.callback!r})"
