"""The runtime state a record shares through the database, and what the registrant needs to write it.

The registrant owns this interface; the stores implement it.  A row is what
another node (or this one after a restart) needs to go on with the same
binding: the dialog (Call-ID, From tag, CSeq) and the binding's expiry, the
Min-Expires the registrar asked for, and the record's availability figures.
"""

from __future__ import annotations

from dataclasses import dataclass

from zope.interface import Interface

from .record import RecordKey


@dataclass(frozen=True, slots=True)
class RuntimeState:
    """What a node must share so another can go on refreshing the same binding."""

    key: RecordKey
    call_id: str
    from_tag: str
    cseq: int
    state: int
    # The expiry the registrar granted, and when that binding runs out (epoch).
    expires: int
    expires_at: float
    updated_at: float
    last_code: int | None = None
    last_reason: str | None = None
    # The registrar's Min-Expires from its last 423 (RFC 3261 §10.2.8), None when none:
    # a resumed record asks for at least this expiry at once.
    min_expires: int | None = None
    # Availability: seconds enabled and seconds REGISTERED since the record was
    # loaded (carried across restarts), times it fell out of REGISTERED, and the
    # last outage (epoch seconds; end None while it lasts; its cause as text).
    enabled_s: float = 0.0
    bound_s: float = 0.0
    flaps: int = 0
    outage_start: float | None = None
    outage_end: float | None = None
    outage_cause: str | None = None


class IRuntimeStore(Interface):
    """Where runtime rows go."""

    def save_runtime(states):
        """Deferred[None]: insert or replace a batch of RuntimeState in one
        transaction; fires once the transaction is committed."""
