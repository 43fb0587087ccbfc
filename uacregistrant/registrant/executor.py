"""The engine's hands: feeds events to the record machine and carries out its effects.

This is the one place where a fault while handling a record turns into that
record's INTERNAL_ERROR_STATE (the bulkhead): whatever raises while building
a request, reading a reply, answering a challenge or telling an observer,
the record settles, frees its in-flight slot, retries by the failure policy
and is logged once with its AOR.  Nothing reaches the reactor.
"""

from __future__ import annotations

import math
import random
import sys
from typing import Callable

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..sip import digest
from ..sip.errors import SIPError
from ..sip.message import Response
from ..transport.errors import TransactionTimeout
from .machine import REGISTER, REMOVE_ALL, TABLE, UNREGISTER, Effect, Event, Registrant
from .policy import Timing, refresh_at, retry_delay, scheduled_expiry
from .replies import Outcome, classify, lenient
from .request import register_request
from .states import IN_FLIGHT, State

log = Logger()

E = Effect

# How the writer answers a write-ahead: (registrant, None) once its dialog is
# committed, (registrant, failure) when it cannot be.
WriteAheadDone = Callable[[Registrant, "Failure | None"], None]


class _WritingAhead:
    """``Registrant.pending`` while the record's new dialog is being committed.

    One object for every record (not a Deferred each): the writer answers
    through ``Executor.written_ahead``, which ignores a record that stopped
    waiting meanwhile.
    """

    __slots__ = ()

    def cancel(self) -> None:
        pass


WRITING_AHEAD = _WritingAhead()


class Executor:
    def __init__(
        self,
        *,
        clock: IReactorTime,
        timing: Timing,
        send: Callable[[Registrant, object], Deferred],
        write_ahead: Callable[[Registrant, WriteAheadDone], None],
        random_bytes: Callable[[int], bytes],
        rng: random.Random,
        user_agent: str,
        on_transition: Callable[[Registrant, State, State], None],
        on_sent: Callable[[Registrant, str], None],
        on_replied: Callable[[Registrant, int], None],
        visit_now: Callable[[Registrant], None],
        on_enabled: Callable[[Registrant, bool], None] = lambda registrant, enabled: None,
    ) -> None:
        self.clock = clock
        self.timing = timing
        self.send = send
        self.write_ahead = write_ahead
        self.random_bytes = random_bytes
        # Jitter only; tokens on the wire come from ``random_bytes``.
        self.random = rng
        self.user_agent = user_agent
        self.on_transition = on_transition
        self.on_sent = on_sent
        # Who waits for a record to settle (shutdown, delete): a few records
        # at a time, so kept here rather than in a slot of every record.
        self._waiters: dict[Registrant, list[Deferred]] = {}
        self.on_replied = on_replied
        self.visit_now = visit_now
        self.on_enabled = on_enabled
        self._do: dict[Effect, Callable[[Registrant, Outcome | None, dict], None]] = {
            E.NEW_CYCLE: self._new_cycle,
            E.NEW_DIALOG: self._new_dialog,
            E.MARK_NEW_DIALOG: self._mark_new_dialog,
            E.RAISE_EXPIRES: self._raise_expires,
            E.ACCEPT: self._accept_effect,
            E.BIND: self._bind,
            E.UNBIND: self._unbind,
            E.ADOPT: self._adopt_effect,
            E.ADOPT_DIALOG: self._adopt_dialog,
            E.FAIL: self._fail_plain,
            E.FAIL_CREDENTIALS: self._fail_credentials,
            E.SET_ENABLED: self._set_enabled,
            E.SET_DISABLED: self._set_disabled,
            E.SCHEDULE_NOW: self._schedule_now,
            E.VISIT_NOW: self._visit_now_ready,
            E.RECONFIGURE: self._reconfigure,
            E.CANCEL: self._cancel,
            E.RELEASE: self._release_effect,
            E.SEND_REGISTER: self._send_register,
            E.SEND_UNREGISTER: self._send_unregister,
            E.SEND_REMOVE_ALL: self._send_remove_all,
            E.ANSWER_CHALLENGE: self._answer_effect,
            E.PERSIST_DIALOG: self._persist_dialog,
        }

    # -- events in ----------------------------------------------------------------

    def fire(self, registrant: Registrant, event: Event, outcome: Outcome | None = None, **data) -> None:
        """Feed one event to the record and carry out the row's effects; never raises."""
        try:
            self._fire(registrant, event, outcome, data)
        except Exception:
            self.fault(registrant, Failure())

    def _fire(self, registrant: Registrant, event: Event, outcome: Outcome | None, data: dict) -> None:
        transition = TABLE[(registrant.state, event)]
        registrant.events += 1
        mark = registrant.events
        do = self._do
        for effect in transition.before:
            do[effect](registrant, outcome, data)
        self._transition(registrant, transition.next)
        if registrant.events != mark:
            return  # an observer acted on the record: the rest of this row is stale
        for effect in transition.after:
            do[effect](registrant, outcome, data)

    def fault(self, registrant: Registrant, failure: Failure) -> None:
        """The bulkhead: settle this record in INTERNAL_ERROR_STATE, and nothing else."""
        log.failure(
            "{aor}: fault while handling the record; it is now INTERNAL_ERROR_STATE",
            failure,
            aor=registrant.config.aor,
        )
        registrant.last_code = None
        registrant.last_reason = f"internal error ({failure.type.__name__})"
        try:
            self._fire(registrant, Event.FAULT, None, {})
        except Exception:
            # Even the failure policy failed: wait a full expiry, and settle regardless.
            registrant.pending = None
            registrant.registration_timeout = self.clock.seconds() + registrant.wanted_expires
            registrant.new_dialog = True
            self._transition(registrant, State.INTERNAL_ERROR_STATE)
            self._release(registrant)

    def _replied(self, response: Response, registrant: Registrant, pending: Deferred) -> None:
        if registrant.pending is not pending:
            return  # superseded
        registrant.pending = None
        try:
            # Interned: thousands of records keep the same few reason phrases.
            registrant.last_code, registrant.last_reason = response.status, sys.intern(response.reason)
            self.on_replied(registrant, response.status)
            outcome = classify(registrant, response)
        except Exception:
            self.fault(registrant, Failure())
            return
        if outcome.reason is not None:
            registrant.last_reason = outcome.reason
        self.fire(registrant, outcome.event, outcome, response=response)

    def _failed(self, failure: Failure, registrant: Registrant, pending: Deferred) -> None:
        if registrant.pending is not pending:
            return None  # cancelled or superseded
        registrant.pending = None
        if failure.check(CancelledError):
            return None
        if failure.check(TransactionTimeout):
            registrant.last_code, registrant.last_reason = 408, "transaction timeout"
            self.fire(registrant, Event.TIMEOUT)
            return None
        # The transport's own words, which never carry credentials.
        registrant.last_code = None
        if failure.check(SIPError):
            registrant.last_reason = str(failure.value)
        else:
            registrant.last_reason = failure.type.__name__
            log.failure("unexpected failure sending for {aor}", failure, aor=registrant.config.aor)
        self.fire(registrant, Event.TRANSPORT_ERROR)
        return None

    def written_ahead(self, registrant: Registrant, failure: Failure | None) -> None:
        """The writer's answer to ``write_ahead``: the record's current dialog is committed, or cannot be."""
        if registrant.pending is not WRITING_AHEAD:
            return  # cancelled or superseded
        registrant.pending = None
        if failure is None:
            self.fire(registrant, Event.DIALOG_DURABLE)
        elif not failure.check(CancelledError):
            # The writer has logged why; a dialog we could lose never goes on the wire.
            registrant.last_code, registrant.last_reason = None, "runtime state not saved"
            self.fire(registrant, Event.DIALOG_WRITE_FAILED)

    # -- effects out --------------------------------------------------------------

    # One method per effect, all (registrant, outcome, data); ``_do`` maps them.

    def _send_register(self, registrant: Registrant, outcome: Outcome | None, data: dict) -> None:
        registrant.last_register_sent = self.clock.seconds()
        self._send_new(registrant, REGISTER)

    def _send_unregister(self, registrant: Registrant, outcome: Outcome | None, data: dict) -> None:
        self._send_new(registrant, UNREGISTER)

    def _send_remove_all(self, registrant: Registrant, outcome: Outcome | None, data: dict) -> None:
        registrant.removed_all = True
        self._send_new(registrant, REMOVE_ALL)

    def _send_new(self, registrant: Registrant, kind: str) -> None:
        registrant.kind = kind
        registrant.challenged = registrant.stale_answered = registrant.ready = False
        self._transmit(registrant, None)

    def _persist_dialog(self, registrant: Registrant, outcome: Outcome | None, data: dict) -> None:
        registrant.pending = WRITING_AHEAD
        self.write_ahead(registrant, self.written_ahead)

    def _fail_plain(self, registrant: Registrant, outcome: Outcome | None, data: dict) -> None:
        self._fail(registrant, outcome, credentials=False)

    def _fail_credentials(self, registrant: Registrant, outcome: Outcome | None, data: dict) -> None:
        self._fail(registrant, outcome, credentials=True)

    def _cancel(self, registrant: Registrant, outcome: Outcome | None, data: dict) -> None:
        pending, registrant.pending = registrant.pending, None
        if pending is not None:
            pending.cancel()

    def _new_cycle(self, registrant: Registrant, outcome: Outcome | None, data: dict) -> None:
        registrant.sends = 0
        registrant.got_423 = registrant.removed_all = False

    def _new_dialog(self, registrant: Registrant, outcome: Outcome | None, data: dict) -> None:
        registrant.renew_dialog(self.random_bytes)
        registrant.ready = False

    def _mark_new_dialog(self, registrant: Registrant, outcome: Outcome | None, data: dict) -> None:
        registrant.new_dialog = True

    def _raise_expires(self, registrant: Registrant, outcome: Outcome | None, data: dict) -> None:
        registrant.got_423 = True
        registrant.wanted_expires = outcome.expires

    def _bind(self, registrant: Registrant, outcome: Outcome | None, data: dict) -> None:
        registrant.bound = True

    def _unbind(self, registrant: Registrant, outcome: Outcome | None, data: dict) -> None:
        registrant.bound = False

    def _adopt_dialog(self, registrant: Registrant, outcome: Outcome | None, data: dict) -> None:
        registrant.set_dialog(data["call_id"], data["from_tag"])
        registrant.cseq = data["cseq"]
        registrant.new_dialog = False

    def _set_enabled(self, registrant: Registrant, outcome: Outcome | None, data: dict) -> None:
        if not registrant.enabled:
            self.on_enabled(registrant, True)
        registrant.enabled = True

    def _set_disabled(self, registrant: Registrant, outcome: Outcome | None, data: dict) -> None:
        if registrant.enabled:
            self.on_enabled(registrant, False)
        registrant.enabled = False
        registrant.registration_timeout = 0.0

    def _schedule_now(self, registrant: Registrant, outcome: Outcome | None, data: dict) -> None:
        registrant.auth_failures = 0
        registrant.registration_timeout = 0.0
        self.visit_now(registrant)

    def _visit_now_ready(self, registrant: Registrant, outcome: Outcome | None, data: dict) -> None:
        registrant.ready = True
        registrant.registration_timeout = 0.0
        self.visit_now(registrant)

    def _reconfigure(self, registrant: Registrant, outcome: Outcome | None, data: dict) -> None:
        config = data["config"]
        if config.expiry != registrant.config.expiry:
            registrant.wanted_expires = config.expiry
        registrant.config = config
        registrant.targets = None

    def _release_effect(self, registrant: Registrant, outcome: Outcome | None, data: dict) -> None:
        self._release(registrant)

    def _answer_effect(self, registrant: Registrant, outcome: Outcome | None, data: dict) -> None:
        self._answer(registrant, outcome, data["response"])

    def _accept_effect(self, registrant: Registrant, outcome: Outcome | None, data: dict) -> None:
        self._accept(registrant, outcome, data["response"])

    def _adopt_effect(self, registrant: Registrant, outcome: Outcome | None, data: dict) -> None:
        self._adopt(registrant, **data)

    def _transmit(self, registrant: Registrant, authorization: tuple[str, str] | None) -> None:
        registrant.sends += 1
        registrant.cseq += 1
        kind = registrant.kind
        request = register_request(
            registrant.config,
            call_id=registrant.call_id,
            from_tag=registrant.from_tag,
            cseq=registrant.cseq,
            expires=registrant.wanted_expires if kind == "register" else 0,
            user_agent=self.user_agent,
            authorization=authorization,
            remove_all=kind == REMOVE_ALL,
        )
        self.on_sent(registrant, "auth" if authorization else kind)
        pending = self.send(registrant, request)
        registrant.pending = pending
        pending.addCallbacks(
            self._replied, self._failed, callbackArgs=(registrant, pending), errbackArgs=(registrant, pending)
        )

    def _answer(self, registrant: Registrant, outcome: Outcome, response: Response) -> None:
        if registrant.challenged:
            registrant.stale_answered = True
        registrant.challenged = True
        config = registrant.config
        value = digest.authorization(
            outcome.challenge,
            username=config.username,
            password=config.password,
            method="REGISTER",
            uri=config.registrar,
            cnonce=digest.new_cnonce(self.random_bytes),
        )
        self._transmit(registrant, (digest.authorization_header_name(response.status), value))

    def _accept(self, registrant: Registrant, outcome: Outcome, response: Response) -> None:
        registrant.bound = True
        granted = outcome.expires
        if granted and granted != registrant.expires:  # the same value keeps the shared int
            registrant.expires = granted
        registrant.granted(
            ", ".join(response.header_values("Service-Route")) or None,
            ", ".join(response.header_values("P-Associated-URI")) or None,
            lenient(lambda: response.flow_timer),
        )
        now = self.clock.seconds()
        registrant.failures = registrant.auth_failures = 0
        registrant.granted_at = now
        timing = self.timing
        registrant.registration_timeout = refresh_at(
            now, scheduled_expiry(registrant.expires, registrant.wanted_expires, timing), timing
        )

    def _adopt(self, registrant: Registrant, *, call_id: str, from_tag: str, cseq: int, expires: int, granted_at: float) -> None:
        registrant.set_dialog(call_id, from_tag)
        registrant.cseq = cseq
        registrant.expires = expires
        registrant.granted_at = granted_at
        registrant.bound = True
        registrant.new_dialog = False
        registrant.registration_timeout = refresh_at(granted_at, expires, self.timing)

    def _fail(self, registrant: Registrant, outcome: Outcome | None, *, credentials: bool) -> None:
        registrant.failures += 1
        timing = self.timing
        if credentials:
            registrant.auth_failures += 1
        if timing.max_auth_failures and registrant.auth_failures >= timing.max_auth_failures:
            # Stop until an operator acts: a registrar's brute-force lock must not be kept alive.
            registrant.registration_timeout = math.inf
        else:
            delay = retry_delay(
                registrant.wanted_expires,
                registrant.failures,
                timing,
                self.random.random(),
                outcome.retry_after if outcome is not None else None,
                credentials=credentials,
            )
            registrant.registration_timeout = self.clock.seconds() + delay
        registrant.new_dialog = True

    def wait_settled(self, registrant: Registrant) -> Deferred:
        """Fires once the record settles (its next RELEASE)."""
        done: Deferred = Deferred()
        self._waiters.setdefault(registrant, []).append(done)
        return done

    def _release(self, registrant: Registrant) -> None:
        if self._waiters:
            for waiter in self._waiters.pop(registrant, ()):
                waiter.callback(None)

    def _transition(self, registrant: Registrant, new: State) -> None:
        old = registrant.state
        registrant.state = new
        if old is not new:
            self.on_transition(registrant, old, new)
        if new not in IN_FLIGHT:
            registrant.settled = new

