"""The record machine: one table of (state, event) -> (next state, effects), and a record's data.

Pure: no clock, no I/O, no Deferreds.  The states are OpenSIPS's ten, as
reg_list shows them.  Events are what happened to a record, already
classified (``replies.classify`` turns a reply into one, the engine names
the rest); effects are what the engine must do, in order.  Every effect that
puts a request on the wire comes last in its row, so observers hear of a
transition before its request can be answered.

The table is total: every (state, event) pair has a row, and the pairs that
cannot happen (a visit while a request is in flight, a reply while none is)
change nothing.  docs/design.rst renders it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Callable

from .record import RecordConfig, RecordKey
from .states import FAILED, IN_FLIGHT, State

class Event(enum.Enum):
    # Members are singletons: identity hashing, in C, for the table's lookups.
    __hash__ = object.__hash__

    # The scheduler's visit of a due record, by what it is due for.
    VISIT_REGISTER = "visit: refresh or register in the same dialog"
    VISIT_NEW_DIALOG = "visit: register in a new dialog"
    VISIT_READY = "visit: the new dialog is committed, its REGISTER goes (same cycle)"
    VISIT_UNREGISTER = "visit: disabled and bound"
    VISIT_IDLE = "visit: disabled, nothing bound"
    # Final replies and transaction outcomes (RFC 3261 §10.2, §17.1.2).
    OK = "2xx keeping our binding (or to an unREGISTER of an enabled record)"
    OK_CLEANUP = "2xx listing other bindings of an RFC 5626 binding"
    OK_DISABLED = "2xx while the record is disabled"
    OK_LOST = "2xx not keeping our binding"
    CHALLENGE = "401/407 we can answer"
    CHALLENGE_REFUSED = "401/407 again: our credentials were refused"
    NO_CREDENTIALS = "401/407 to a record without credentials"
    CHALLENGE_UNUSABLE = "401/407 with no challenge we support"
    TOO_BRIEF = "423 with a usable Min-Expires"
    TOO_BRIEF_REFUSED = "423 we do not follow"
    TIMEOUT = "408 or Timer F"
    FORBIDDEN = "403"
    REJECTED = "any other final reply"
    MALFORMED = "a reply we cannot read"
    TRANSPORT_ERROR = "the request could not be sent"
    TOO_MANY_FOLLOW_UPS = "a follow-up over the per-cycle bound"
    # The runtime row of a new dialog (write-ahead).
    DIALOG_DURABLE = "the new dialog is committed to the runtime table"
    DIALOG_WRITE_FAILED = "the new dialog could not be committed"
    # Operators and the service.
    ENABLE = "reg_enable of a disabled record"
    DISABLE = "reg_disable"
    FORCE = "reg_force_register, or reg_enable of an enabled record"
    RELOAD = "reg_reload with new column values"
    SHUTDOWN = "remove the binding now (shutdown, delete)"
    SHUTDOWN_UNBOUND = "shutdown of a record with nothing bound or in flight"
    PASSIVATE = "another node registers the record now"
    RESUME = "go on with a saved binding"
    RESUME_DIALOG = "go on with a saved dialog whose binding is unknown"
    STOP = "forget what is in flight"
    FAULT = "the engine failed while handling the record"


class Effect(enum.Enum):
    # Members are singletons: identity hashing, in C, for the table's lookups.
    __hash__ = object.__hash__

    NEW_CYCLE = "reset the per-cycle bounds (follow-ups, 423)"
    NEW_DIALOG = "new Call-ID and From tag, CSeq from 1"
    MARK_NEW_DIALOG = "the next REGISTER starts a new dialog"
    RAISE_EXPIRES = "ask for the Min-Expires of the 423 from now on"
    ACCEPT = "bound: keep what the 2xx granted, reset failures, schedule the refresh"
    BIND = "the registrar holds a binding of ours"
    UNBIND = "the registrar holds no binding of ours"
    ADOPT = "take the saved dialog and binding, schedule the refresh"
    ADOPT_DIALOG = "take the saved dialog; the next REGISTER goes on in it"
    FAIL = "count a failure, schedule the retry by the failure policy"
    FAIL_CREDENTIALS = "as FAIL, with the longer wait of a credentials failure"
    SET_ENABLED = "enabled flag on"
    SET_DISABLED = "enabled flag off"
    SCHEDULE_NOW = "due at once (and lift a credentials stop)"
    VISIT_NOW = "its dialog is ready: due at once, sent by the scheduler within the window and the rate"
    RECONFIGURE = "take the new column values"
    CANCEL = "cancel the request in flight"
    RELEASE = "fire whoever waits for the record to settle"
    # On the wire; always last in a row.
    SEND_REGISTER = "send REGISTER"
    SEND_UNREGISTER = "send REGISTER with expires=0"
    SEND_REMOVE_ALL = "send REGISTER with Contact: * (RFC 3261 §10.2.2)"
    ANSWER_CHALLENGE = "send the request again with (Proxy-)Authorization"
    # Not on the wire, and last in its row too: the REGISTER waits for it.
    PERSIST_DIALOG = "commit the new dialog to the runtime table, then DIALOG_DURABLE"


SENDS = frozenset({Effect.SEND_REGISTER, Effect.SEND_UNREGISTER, Effect.SEND_REMOVE_ALL, Effect.ANSWER_CHALLENGE})
# Effects after which the record has something in flight: a request, or its dialog's write.
STARTS = SENDS | {Effect.PERSIST_DIALOG}
# Effects carried out once the record is in its next state and observers know:
# whatever they set off (a reply, a visit, a waiter's callback) sees the new state.
AFTER = STARTS | {Effect.SCHEDULE_NOW, Effect.VISIT_NOW, Effect.RELEASE}


@dataclass(frozen=True, slots=True)
class Transition:
    next: State
    effects: tuple[Effect, ...] = ()
    # The effects split once, in order: before the state changes, and after.
    before: tuple[Effect, ...] = field(init=False, repr=False, compare=False)
    after: tuple[Effect, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "before", tuple(e for e in self.effects if e not in AFTER))
        object.__setattr__(self, "after", tuple(e for e in self.effects if e in AFTER))


class UndefinedTransition(LookupError):
    pass


E = Effect
S = State
_REST = (S.NOT_REGISTERED_STATE, S.REGISTERED_STATE, *sorted(FAILED))
_REGISTERING = (S.REGISTERING_STATE, S.AUTHENTICATING_STATE)
_UNREGISTERING = (S.UNREGISTERING_STATE, S.AUTHENTICATING_UNREGISTER_STATE)

_VISITS = (Event.VISIT_REGISTER, Event.VISIT_NEW_DIALOG, Event.VISIT_READY, Event.VISIT_UNREGISTER, Event.VISIT_IDLE)
_REPLIES = (
    Event.OK,
    Event.OK_CLEANUP,
    Event.OK_DISABLED,
    Event.OK_LOST,
    Event.CHALLENGE,
    Event.CHALLENGE_REFUSED,
    Event.NO_CREDENTIALS,
    Event.CHALLENGE_UNUSABLE,
    Event.TOO_BRIEF,
    Event.TOO_BRIEF_REFUSED,
    Event.TIMEOUT,
    Event.FORBIDDEN,
    Event.REJECTED,
    Event.MALFORMED,
    Event.TRANSPORT_ERROR,
    Event.TOO_MANY_FOLLOW_UPS,
    Event.DIALOG_DURABLE,
    Event.DIALOG_WRITE_FAILED,
)

# How a request in flight ends when it fails, whatever it was.
_FAILURES = {
    Event.OK_LOST: Transition(S.REGISTRAR_ERROR_STATE, (E.FAIL, E.RELEASE)),
    Event.CHALLENGE_REFUSED: Transition(S.WRONG_CREDENTIALS_STATE, (E.FAIL_CREDENTIALS, E.RELEASE)),
    Event.NO_CREDENTIALS: Transition(S.WRONG_CREDENTIALS_STATE, (E.FAIL_CREDENTIALS, E.RELEASE)),
    Event.CHALLENGE_UNUSABLE: Transition(S.INTERNAL_ERROR_STATE, (E.FAIL, E.RELEASE)),
    Event.TOO_BRIEF_REFUSED: Transition(S.REGISTRAR_ERROR_STATE, (E.FAIL, E.RELEASE)),
    Event.TIMEOUT: Transition(S.REGISTER_TIMEOUT_STATE, (E.FAIL, E.RELEASE)),
    Event.FORBIDDEN: Transition(S.REGISTRAR_ERROR_STATE, (E.FAIL_CREDENTIALS, E.RELEASE)),
    Event.REJECTED: Transition(S.REGISTRAR_ERROR_STATE, (E.FAIL, E.RELEASE)),
    Event.MALFORMED: Transition(S.INTERNAL_ERROR_STATE, (E.FAIL, E.RELEASE)),
    Event.TRANSPORT_ERROR: Transition(S.INTERNAL_ERROR_STATE, (E.FAIL, E.RELEASE)),
    Event.TOO_MANY_FOLLOW_UPS: Transition(S.REGISTRAR_ERROR_STATE, (E.FAIL, E.RELEASE)),
    Event.DIALOG_WRITE_FAILED: Transition(S.INTERNAL_ERROR_STATE, (E.FAIL,)),
}


def _build() -> dict[tuple[State, Event], Transition]:
    table: dict[tuple[State, Event], Transition] = {}

    def row(states: tuple[State, ...], event: Event, transition: Transition | None) -> None:
        for state in states:
            # None: the state stays and nothing is done.
            table[(state, event)] = transition or Transition(state)

    # A visit starts a registration cycle from a state at rest.
    row(_REST, Event.VISIT_REGISTER, Transition(S.REGISTERING_STATE, (E.NEW_CYCLE, E.SEND_REGISTER)))
    # A new dialog goes on the wire only once its runtime row is committed.
    # The record waits at rest (no in-flight slot: nothing is on the wire),
    # then goes through the scheduler like any due record.
    row(_REST, Event.VISIT_NEW_DIALOG, Transition(S.NOT_REGISTERED_STATE, (E.NEW_CYCLE, E.NEW_DIALOG, E.PERSIST_DIALOG)))
    for state in _REST:
        table[(state, Event.VISIT_NEW_DIALOG)] = Transition(state, (E.NEW_CYCLE, E.NEW_DIALOG, E.PERSIST_DIALOG))
        table[(state, Event.DIALOG_DURABLE)] = Transition(state, (E.VISIT_NOW,))
    row(_REST, Event.DIALOG_WRITE_FAILED, _FAILURES[Event.DIALOG_WRITE_FAILED])
    row(_REST, Event.VISIT_READY, Transition(S.REGISTERING_STATE, (E.SEND_REGISTER,)))
    row(_REST, Event.VISIT_UNREGISTER, Transition(S.UNREGISTERING_STATE, (E.NEW_CYCLE, E.SEND_UNREGISTER)))
    row(_REST, Event.VISIT_IDLE, Transition(S.NOT_REGISTERED_STATE))
    for event in _VISITS:
        row((*_REGISTERING, *_UNREGISTERING), event, None)

    # Replies to a REGISTER (RFC 3261 §10.2).
    row(_REGISTERING, Event.OK, Transition(S.REGISTERED_STATE, (E.ACCEPT, E.RELEASE)))
    row(_REGISTERING, Event.OK_CLEANUP, Transition(S.UNREGISTERING_STATE, (E.BIND, E.SEND_REMOVE_ALL)))
    row(_REGISTERING, Event.OK_DISABLED, Transition(S.UNREGISTERING_STATE, (E.BIND, E.SEND_UNREGISTER)))
    row(_REGISTERING, Event.CHALLENGE, Transition(S.AUTHENTICATING_STATE, (E.ANSWER_CHALLENGE,)))
    row(_REGISTERING, Event.TOO_BRIEF, Transition(S.REGISTERING_STATE, (E.RAISE_EXPIRES, E.SEND_REGISTER)))

    # Replies to an unREGISTER or a Contact: * removal: no binding of ours is
    # left; an enabled record registers again at once in a new dialog.
    done = Transition(S.NOT_REGISTERED_STATE, (E.UNBIND, E.NEW_DIALOG, E.RELEASE, E.PERSIST_DIALOG))
    for event in (Event.OK, Event.OK_CLEANUP, Event.OK_LOST):
        row(_UNREGISTERING, event, done)
    row(_UNREGISTERING, Event.OK_DISABLED, Transition(S.NOT_REGISTERED_STATE, (E.UNBIND, E.RELEASE)))
    row(_UNREGISTERING, Event.CHALLENGE, Transition(S.AUTHENTICATING_UNREGISTER_STATE, (E.ANSWER_CHALLENGE,)))
    # Min-Expires means nothing to a request removing a binding.
    row(_UNREGISTERING, Event.TOO_BRIEF, _FAILURES[Event.REJECTED])

    for event, transition in _FAILURES.items():
        if event is Event.OK_LOST:
            row(_REGISTERING, event, transition)
        elif event is Event.DIALOG_WRITE_FAILED:
            pass  # written at rest, below
        else:
            row((*_REGISTERING, *_UNREGISTERING), event, transition)
    # A reply for a request no longer in flight changes nothing.
    for event in _REPLIES:
        if event not in (Event.DIALOG_DURABLE, Event.DIALOG_WRITE_FAILED):
            row(_REST, event, None)
    for event in (Event.DIALOG_DURABLE, Event.DIALOG_WRITE_FAILED):
        row((*_REGISTERING, *_UNREGISTERING), event, None)

    # Operators and the service; the state stays unless the row says otherwise.
    for state in S:
        if state in IN_FLIGHT:
            # The request in flight finishes its cycle in its own dialog.
            table[(state, Event.ENABLE)] = Transition(state, (E.SET_ENABLED, E.SCHEDULE_NOW))
        else:
            table[(state, Event.ENABLE)] = Transition(state, (E.SET_ENABLED, E.MARK_NEW_DIALOG, E.SCHEDULE_NOW))
        table[(state, Event.DISABLE)] = Transition(state, (E.SET_DISABLED, E.SCHEDULE_NOW))
        table[(state, Event.FORCE)] = Transition(state, (E.SCHEDULE_NOW,))
        table[(state, Event.RELOAD)] = Transition(state, (E.RECONFIGURE,))
        table[(state, Event.STOP)] = Transition(state, (E.CANCEL, E.RELEASE))
        table[(state, Event.PASSIVATE)] = Transition(S.NOT_REGISTERED_STATE, (E.CANCEL, E.RELEASE, E.UNBIND))
        table[(state, Event.RESUME)] = Transition(S.REGISTERED_STATE, (E.CANCEL, E.ADOPT, E.RELEASE))
        table[(state, Event.FAULT)] = Transition(S.INTERNAL_ERROR_STATE, (E.CANCEL, E.FAIL, E.RELEASE))
        # Only a record at rest takes a saved dialog (start-up, tag taken over).
        table[(state, Event.RESUME_DIALOG)] = Transition(state, () if state in IN_FLIGHT else (E.ADOPT_DIALOG,))

    # Remove the binding now; an unREGISTER already in flight goes on.  A
    # record at rest with nothing bound only stops.
    unregister = Transition(S.UNREGISTERING_STATE, (E.SET_DISABLED, E.CANCEL, E.NEW_CYCLE, E.SEND_UNREGISTER))
    for event in (Event.SHUTDOWN, Event.SHUTDOWN_UNBOUND):
        row(_REGISTERING, event, unregister)
        for state in _UNREGISTERING:
            table[(state, event)] = Transition(state, (E.SET_DISABLED,))
    row(_REST, Event.SHUTDOWN, unregister)
    for state in _REST:
        table[(state, Event.SHUTDOWN_UNBOUND)] = Transition(state, (E.SET_DISABLED, E.CANCEL, E.RELEASE))
    return table


TABLE: dict[tuple[State, Event], Transition] = _build()


def step(state: State, event: Event) -> Transition:
    try:
        return TABLE[(state, event)]
    except KeyError:
        raise UndefinedTransition(f"{event!r} in {state!r}") from None


# A new dialog: a Call-ID of 16 random bytes and a From tag of 5, in lower-case hex.
CALL_ID_BYTES = 16
TAG_BYTES = 5
_TAG_BITS = 8 * TAG_BYTES
_TAG_MASK = (1 << _TAG_BITS) - 1
# 168 bits in three words of 56: each fits the compiled build's unboxed int (62 bits).
_WORD_BITS = 56
_WORD_MASK = (1 << _WORD_BITS) - 1
_NO_DIALOG = ("", "")
# What most records hold in ``rare``: shared, so nothing of their own.
_NOTHING_RARE: tuple = (_NO_DIALOG, None, None)
_NOTHING_RARE_DIALOG: tuple = (None, None, None)
_LOWER_HEX = frozenset("0123456789abcdef")


def _ours(text: str, length: int) -> bool:
    """Whether ``text`` is lower-case hex of ``length`` digits, as our tokens are."""
    return len(text) == length and _LOWER_HEX.issuperset(text)


# Request kinds, for rebuilding the same request with credentials.
REGISTER, UNREGISTER, REMOVE_ALL = "register", "unregister", "remove-all"


class Registrant:
    """The runtime data of one record; the table says how it changes, the engine changes it."""

    __slots__ = (
        "config",
        "state",
        "settled",
        "enabled",
        # The dialog's Call-ID and From tag (see ``call_id``): three words, or text.
        "dialog_high",
        "dialog_middle",
        "dialog_low",
        "cseq",
        "wanted_expires",
        "expires",
        "last_register_sent",
        "registration_timeout",
        "last_code",
        "last_reason",
        "failures",
        "auth_failures",
        "bound",
        "destination",
        "targets",
        "granted_at",
        # What few records ever have, in one slot (``_NOTHING_RARE`` for most):
        # a dialog kept as text, what the last 200 said besides the expiry
        # (Service-Route, P-Associated-URI, Flow-Timer), the last outage.
        "rare",
        # The request in flight: its kind, and what this cycle has done so far.
        "kind",
        "challenged",
        "stale_answered",
        "removed_all",
        "got_423",
        "sends",
        "new_dialog",
        "ready",
        # The engine's handles: the request in flight, and a count of events
        # (to notice one fired from an observer).
        "pending",
        "events",
        # Availability (registrant.availability): seconds enabled and bound up
        # to ``counted_to``; the last outage (start, end, cause, flaps) is rare.
        "enabled_s",
        "bound_s",
        "counted_to",
        # In the scheduler's queue of due records.
        "queued",
    )

    def __init__(self, config: RecordConfig) -> None:
        # The compiled build lays the fields out in the order first assigned
        # here: the flags come last, together, so that no byte flag is padded
        # to a word between two words.
        self.config = config
        self.state = State.NOT_REGISTERED_STATE
        # The last state with nothing in flight: tells a routine refresh from a change.
        self.settled = State.NOT_REGISTERED_STATE
        # No dialog until the first visit makes one (and writes it ahead).
        self.dialog_high = self.dialog_middle = self.dialog_low = 0
        # One pointer (a tuple of known length would be laid out in place, three).
        self.rare: tuple = _NOTHING_RARE
        self.cseq = 0
        self.wanted_expires = config.expiry
        self.expires = config.expiry
        self.last_register_sent = 0.0
        self.registration_timeout = 0.0
        self.last_code: int | None = None
        self.last_reason: str | None = None
        self.failures = 0
        self.auth_failures = 0
        self.destination: object | None = None
        self.targets: object | None = None
        self.granted_at = 0.0
        self.kind = REGISTER
        self.sends = 0
        self.pending: object | None = None
        self.events = 0
        self.enabled_s = 0.0
        self.bound_s = 0.0
        self.counted_to = 0.0
        self.enabled = config.enabled
        self.bound = False
        self.challenged = False
        self.stale_answered = False
        self.removed_all = False
        self.got_423 = False
        # The dialog above is not on disk yet: the first REGISTER writes one ahead.
        self.new_dialog = True
        # Its new dialog is committed and its REGISTER not sent yet.
        self.ready = False
        self.queued = False

    @property
    def key(self) -> RecordKey:
        # The config's own key: a changed config of the same record has an equal one.
        return self.config.key

    @property
    def dialog_text(self) -> tuple[str, str] | None:
        return self.rare[0]

    @property
    def granted_extras(self) -> tuple | None:
        return self.rare[1]

    @property
    def outage(self) -> tuple | None:
        return self.rare[2]

    @outage.setter
    def outage(self, outage: tuple | None) -> None:
        rare = self.rare
        self._set_rare(rare[0], rare[1], outage)

    def _set_rare(self, dialog_text: tuple[str, str] | None, granted_extras: tuple | None, outage: tuple | None) -> None:
        if dialog_text is _NO_DIALOG and granted_extras is None and outage is None:
            self.rare = _NOTHING_RARE
        elif dialog_text is None and granted_extras is None and outage is None:
            self.rare = _NOTHING_RARE_DIALOG
        else:
            self.rare = (dialog_text, granted_extras, outage)

    @property
    def service_route(self) -> str | None:
        extras = self.granted_extras
        return None if extras is None else extras[0]

    @property
    def associated_uris(self) -> str | None:
        extras = self.granted_extras
        return None if extras is None else extras[1]

    @property
    def flow_timer(self) -> int | None:
        extras = self.granted_extras
        return None if extras is None else extras[2]

    def granted(self, service_route: str | None, associated_uris: str | None, flow_timer: int | None) -> None:
        """What the last 200 said besides the expiry."""
        rare = self.rare
        if service_route is None and associated_uris is None and flow_timer is None:
            if rare[1] is not None:
                self._set_rare(rare[0], None, rare[2])
        else:
            self._set_rare(rare[0], (service_route, associated_uris, flow_timer), rare[2])

    def due(self, now: float) -> bool:
        """Whether a visit at ``now`` would send something."""
        if self.pending is not None:
            return False  # its new dialog is being written
        state = self.state
        if state in IN_FLIGHT:
            return False
        if state is State.NOT_REGISTERED_STATE:
            return self.enabled
        if state is State.REGISTERED_STATE:
            return not self.enabled or now >= self.registration_timeout
        return now >= self.registration_timeout

    def visit_event(self) -> Event:
        """What a visit of this record (due, at rest) is for."""
        if not self.enabled:
            if self.bound or self.state is State.REGISTERED_STATE:
                return Event.VISIT_UNREGISTER
            return Event.VISIT_IDLE
        # Set by every failure, and for a dialog never written.
        if self.new_dialog:
            return Event.VISIT_NEW_DIALOG
        if self.ready:
            return Event.VISIT_READY
        return Event.VISIT_REGISTER

    def writes_first(self) -> bool:
        """Whether a visit now would only write a new dialog ahead (nothing on the wire yet)."""
        return self.enabled and self.new_dialog and self.state not in IN_FLIGHT

    def shutdown_event(self) -> Event:
        return Event.SHUTDOWN if self.bound or self.state in IN_FLIGHT else Event.SHUTDOWN_UNBOUND

    def leaked(self) -> bool:
        """In a sending state with nothing in flight: a slot that would never be freed."""
        return self.state in IN_FLIGHT and self.pending is None

    def renew_dialog(self, random_bytes: Callable[[int], bytes]) -> None:
        # The same bytes, in the same order, as the hex texts were made of.
        call_id = int.from_bytes(random_bytes(CALL_ID_BYTES), "big")
        self._pack((call_id << _TAG_BITS) | int.from_bytes(random_bytes(TAG_BYTES), "big"))
        self.cseq = 0
        self.new_dialog = False

    # A record keeps its Call-ID and From tag for as long as it is loaded,
    # 100,000 records and more: as two hex strings they took 160 bytes of
    # heap each, allocated during the registration burst.  Ours are random
    # bytes in lower-case hex, so they are kept as their 168 bits in three
    # words (unboxed by the compiled build: no object at all), and rendered
    # when a request or a runtime row needs them.  A dialog taken from the
    # runtime table in any other form is kept as its text.

    @property
    def call_id(self) -> str:
        text = self.rare[0]
        if text is not None:
            return text[0]
        return f"{self._unpack() >> _TAG_BITS:0{2 * CALL_ID_BYTES}x}"

    @property
    def from_tag(self) -> str:
        text = self.rare[0]
        if text is not None:
            return text[1]
        return f"{self.dialog_low & _TAG_MASK:0{2 * TAG_BYTES}x}"

    def set_dialog(self, call_id: str, from_tag: str) -> None:
        """Take a saved dialog, exactly as its texts are."""
        if _ours(call_id, 2 * CALL_ID_BYTES) and _ours(from_tag, 2 * TAG_BYTES):
            self._pack((int(call_id, 16) << _TAG_BITS) | int(from_tag, 16))
        else:
            rare = self.rare
            self._set_rare((call_id, from_tag), rare[1], rare[2])

    def _pack(self, bits: int) -> None:
        self.dialog_high = bits >> (2 * _WORD_BITS)
        self.dialog_middle = (bits >> _WORD_BITS) & _WORD_MASK
        self.dialog_low = bits & _WORD_MASK
        rare = self.rare
        if rare[0] is not None:
            self._set_rare(None, rare[1], rare[2])

    def _unpack(self) -> int:
        return (self.dialog_high << (2 * _WORD_BITS)) | (self.dialog_middle << _WORD_BITS) | self.dialog_low


def render_table() -> str:
    """The table as an RST list-table, one line per event and group of states
    with the same row; pairs that change nothing are left out."""
    lines = [
        ".. list-table:: The record machine (pairs not listed change nothing)",
        "   :header-rows: 1",
        "   :widths: 22 30 18 30",
        "",
        "   * - event",
        "     - in state",
        "     - next state",
        "     - effects, in order",
    ]
    for event in Event:
        groups: dict[tuple[str, tuple[Effect, ...]], list[State]] = {}
        for state in State:
            transition = TABLE[(state, event)]
            if transition.next is state and not transition.effects:
                continue
            target = "(stays)" if transition.next is state else _short(transition.next)
            groups.setdefault((target, transition.effects), []).append(state)
        for (target, effects), states in groups.items():
            lines += [
                f"   * - {event.name}",
                f"     - {', '.join(_short(s) for s in states)}",
                f"     - {target}",
                f"     - {', '.join(e.name for e in effects) or '(none)'}",
            ]
    return "\n".join(lines) + "\n"


def _short(state: State) -> str:
    return state.name.removesuffix("_STATE")
