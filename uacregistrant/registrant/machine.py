"""One state machine per record: what to send, and what a reply means.

The machine never decides *when* to start a registration: the scheduler calls
``visit`` for records that are ``due`` and rate limiting happens there.  The
machine sends follow-ups of a registration at once: the authenticated retry
after 401/407, the retry with Min-Expires after 423, the unREGISTER of a
record disabled while its REGISTER was in flight.
"""

from __future__ import annotations

import math
import random
import sys
from dataclasses import dataclass, field
from typing import Callable

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..sip import digest
from ..sip.errors import ParseError, SIPError
from ..sip.message import Contact, Response
from ..sip.randomness import BufferedRandom
from ..sip.uri import parse_uri, uri_equal
from ..transport.errors import TransactionTimeout
from .policy import Timing, refresh_at, retry_delay, scheduled_expiry
from .record import RecordConfig
from .request import register_request
from .states import FAILED, IN_FLIGHT, State

log = Logger()

# Request kinds, for rebuilding the same request with credentials.
REGISTER, UNREGISTER, REMOVE_ALL = "register", "unregister", "remove-all"

# Requests a record may send in one registration cycle after the first one:
# challenge answers (a stale nonce is answered once more), one retry after a
# 423, the "Contact: *" clean-up of an RFC 5626 binding and its REGISTER.
MAX_FOLLOW_UPS = 8
# A 423 asking for more than a day is not a registrar we can work with.
MAX_MIN_EXPIRES = 86400


def _lenient(read: Callable[[], int | None]) -> int | None:
    """An optional header value; a malformed one counts as absent."""
    try:
        return read()
    except ParseError:
        return None


@dataclass
class Context:
    """What every machine shares: the clock, the way out, randomness, settings."""

    clock: IReactorTime
    send: Callable[["Registrant", object], Deferred]
    timing: Timing
    user_agent: str = ""
    # Jitter only; tokens on the wire come from random_bytes.
    random: random.Random = field(default_factory=random.Random)
    random_bytes: Callable[[int], bytes] = field(default_factory=BufferedRandom)
    on_transition: Callable[["Registrant", State, State], None] | None = None
    on_sent: Callable[["Registrant", str], None] | None = None
    on_reply: Callable[["Registrant", int], None] | None = None

    def token(self, nbytes: int) -> str:
        return self.random_bytes(nbytes).hex()


class Registrant:
    """The runtime side of one record."""

    __slots__ = (
        "config",
        "key",
        "ctx",
        "state",
        "enabled",
        "call_id",
        "from_tag",
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
        "_kind",
        "_challenged",
        "_stale_answered",
        "_removed_all",
        "_sends",
        "_got_423",
        "_pending",
        "_new_dialog",
        "_waiters",
        "destination",
        "targets",
        "granted_at",
        "service_route",
        "associated_uris",
        "flow_timer",
        "settled",
    )

    def __init__(self, config: RecordConfig, ctx: Context) -> None:
        self.config = config
        self.key = config.key  # made once: the scheduler looks it up per visit
        self.ctx = ctx
        self.state = State.NOT_REGISTERED_STATE
        # The last state with nothing in flight: tells a routine refresh from a change.
        self.settled = State.NOT_REGISTERED_STATE
        self.enabled = config.enabled
        self.call_id = ctx.token(16)
        self.from_tag = ctx.token(5)
        self.cseq = 0
        self.wanted_expires = config.expiry
        self.expires = config.expiry
        self.last_register_sent = 0.0
        self.registration_timeout = 0.0
        self.last_code: int | None = None
        self.last_reason: str | None = None
        self.failures = 0
        self.auth_failures = 0
        self.bound = False
        self._kind = REGISTER
        self._challenged = False
        self._stale_answered = False
        self._removed_all = False
        self._sends = 0
        self._got_423 = False
        self._pending: Deferred | None = None
        self._new_dialog = False
        self._waiters: list[Deferred] | None = None
        self.destination: object | None = None
        self.targets: object | None = None
        self.granted_at = 0.0
        # From the last 200 (RFC 3608, RFC 3455, RFC 5626 §4.4.1).
        self.service_route: str | None = None
        self.associated_uris: str | None = None
        self.flow_timer: int | None = None

    # -- what the scheduler asks ------------------------------------------------

    def due(self, now: float) -> bool:
        """Whether a visit at ``now`` would send something."""
        state = self.state
        if state in IN_FLIGHT:
            return False
        if state is State.NOT_REGISTERED_STATE:
            return self.enabled
        if state is State.REGISTERED_STATE:
            return not self.enabled or now >= self.registration_timeout
        return now >= self.registration_timeout

    def visit(self, now: float) -> None:
        """Send what is due now: REGISTER, refresh, retry or unREGISTER."""
        try:
            self._visit(now)
        except Exception:
            self._fault(Failure())

    def leaked(self) -> bool:
        """In a sending state with nothing in flight: a slot that would never be freed."""
        return self.state in IN_FLIGHT and self._pending is None

    def reclaim(self) -> None:
        """Settle a leaked record (see ``leaked``) and free its slot."""
        self._fault(Failure(RuntimeError("in a sending state with nothing in flight")))

    def _visit(self, now: float) -> None:
        state = self.state
        self._sends = 0
        self._got_423 = False
        if state in IN_FLIGHT:
            return
        if not self.enabled:
            if self.bound or state is State.REGISTERED_STATE:
                self._start(UNREGISTER, State.UNREGISTERING_STATE)
            elif state is not State.NOT_REGISTERED_STATE:
                self._transition(State.NOT_REGISTERED_STATE)
            return
        if state in FAILED or self._new_dialog:
            self._renew_dialog()
        if state is State.REGISTERED_STATE:
            # A new refresh cycle: the Contact: * clean-up may run once more.
            self._removed_all = False
        self.last_register_sent = self.ctx.clock.seconds()
        self._start(REGISTER, State.REGISTERING_STATE)

    # -- operator actions ---------------------------------------------------------

    def enable(self) -> None:
        """Flip the flag on; a record that is not in flight becomes due at once."""
        if not self.enabled:
            self.enabled = True
            if self.state not in IN_FLIGHT:
                self._new_dialog = True
        self.force()

    def disable(self) -> None:
        """Flip the flag off; a bound record becomes due for its unREGISTER at once."""
        self.enabled = False
        self.registration_timeout = 0.0

    def force(self) -> None:
        """Make an enabled record due now, and lift a credentials stop."""
        self.auth_failures = 0
        self.registration_timeout = 0.0

    def reconfigure(self, config: RecordConfig) -> None:
        """New column values, used from the next request on (reg_reload)."""
        if config.expiry != self.config.expiry:
            self.wanted_expires = config.expiry
        if config.enabled != self.enabled:
            if config.enabled:
                self.enabled = True
                self._new_dialog = self.state not in IN_FLIGHT
            else:
                self.disable()
        self.config = config
        self.targets = None

    def resume(self, call_id: str, from_tag: str, cseq: int, expires: int, granted_at: float) -> None:
        """Go on with a binding made earlier (by this process before a restart, or
        by another node): same dialog, next CSeq, refreshed when due."""
        self.call_id, self.from_tag, self.cseq = call_id, from_tag, cseq
        self.expires = expires
        self.granted_at = granted_at
        self.bound = True
        self._new_dialog = False
        self.registration_timeout = refresh_at(granted_at, expires, self.ctx.timing)
        self._transition(State.REGISTERED_STATE)

    def unregister(self) -> Deferred:
        """Remove the binding now (shutdown, delete); fires when done, whatever the outcome."""
        self.enabled = False
        done: Deferred = Deferred()
        if not (self.bound or self.state in IN_FLIGHT):
            self.stop()
            done.callback(None)
            return done
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(done)
        if self.state not in (State.UNREGISTERING_STATE, State.AUTHENTICATING_UNREGISTER_STATE):
            self._cancel_pending()
            self._sends = 0
            try:
                self._start(UNREGISTER, State.UNREGISTERING_STATE)
            except Exception:
                self._fault(Failure())
        return done

    def passivate(self) -> None:
        """Another node registers this record now: stop at once, send nothing, keep the dialog."""
        self.stop()
        self.bound = False
        self._transition(State.NOT_REGISTERED_STATE)

    def stop(self) -> None:
        """Forget anything in flight; nothing of this record is left on the clock."""
        self._cancel_pending()
        self._release_waiters()

    # -- sending ---------------------------------------------------------------

    def _renew_dialog(self) -> None:
        self.call_id = self.ctx.token(16)
        self.from_tag = self.ctx.token(5)
        self.cseq = 0
        self._new_dialog = False

    def _start(self, kind: str, state: State) -> None:
        self._kind = kind
        self._challenged = False
        self._stale_answered = False
        self._transition(state)
        self._send(None)

    def _send(self, authorization: tuple[str, str] | None) -> None:
        self._sends += 1
        if self._sends > 1 + MAX_FOLLOW_UPS:
            self.last_reason = "too many follow-up requests in one registration"
            self._fail(State.REGISTRAR_ERROR_STATE, None)
            return
        self.cseq += 1
        expires = 0 if self._kind != REGISTER else self.wanted_expires
        request = register_request(
            self.config,
            call_id=self.call_id,
            from_tag=self.from_tag,
            cseq=self.cseq,
            expires=expires,
            user_agent=self.ctx.user_agent,
            authorization=authorization,
            remove_all=self._kind == REMOVE_ALL,
        )
        if self.ctx.on_sent is not None:
            self.ctx.on_sent(self, "auth" if authorization else self._kind)
        pending = self.ctx.send(self, request)
        self._pending = pending
        pending.addCallbacks(self._on_response, self._on_failure, errbackArgs=(pending,))

    def _cancel_pending(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.cancel()

    # -- replies -----------------------------------------------------------------

    def _on_failure(self, failure: Failure, pending: Deferred) -> None:
        if self._pending is not pending:
            return None  # cancelled or superseded
        self._pending = None
        if failure.check(CancelledError):
            return None
        try:
            self._failed(failure)
        except Exception:
            self._fault(Failure())
        return None

    def _failed(self, failure: Failure) -> None:
        if failure.check(TransactionTimeout):
            self.last_code, self.last_reason = 408, "transaction timeout"
            self._fail(State.REGISTER_TIMEOUT_STATE, None)
        else:
            # The transport's own words, which never carry credentials.
            self.last_code = None
            self.last_reason = str(failure.value) if failure.check(SIPError) else failure.type.__name__
            if not failure.check(SIPError):
                log.failure("unexpected failure sending for {aor}", failure, aor=self.config.aor)
            self._fail(State.INTERNAL_ERROR_STATE, None)

    def _on_response(self, response: Response) -> None:
        self._pending = None
        try:
            # Interned: thousands of records keep the same few reason phrases.
            self.last_code, self.last_reason = response.status, sys.intern(response.reason)
            if self.ctx.on_reply is not None:
                self.ctx.on_reply(self, response.status)
            self._handle(response)
        except ParseError as e:
            self._cancel_pending()
            self.last_reason = f"malformed reply: {e}"
            self._fail(State.INTERNAL_ERROR_STATE, None)
        except Exception:
            self._fault(Failure())

    def _fault(self, failure: Failure) -> None:
        """The bulkhead: a fault while handling this record settles this record only.

        It lands in INTERNAL_ERROR_STATE, frees its slot, retries by the failure
        policy, and is logged once; nothing reaches the reactor.
        """
        log.failure(
            "{aor}: fault while handling the record; it is now INTERNAL_ERROR_STATE",
            failure,
            aor=self.config.aor,
        )
        self._cancel_pending()
        self.last_code = None
        self.last_reason = f"internal error ({failure.type.__name__})"
        try:
            self._fail(State.INTERNAL_ERROR_STATE, None)
        except Exception:
            # Even the failure policy failed: wait a full expiry, and settle regardless.
            self.registration_timeout = self.ctx.clock.seconds() + self.wanted_expires
            self._new_dialog = True
            self.state = self.settled = State.INTERNAL_ERROR_STATE
            self._release_waiters()

    def _handle(self, response: Response) -> None:
        code = response.status
        if code == 200:
            self._on_200(response)
        elif code in (401, 407):
            self._on_challenge(response)
        elif code == 423 and self._kind == REGISTER:
            self._on_423(response)
        elif code == 408:
            self._fail(State.REGISTER_TIMEOUT_STATE, _lenient(lambda: response.retry_after))
        elif code == 403:
            # Forbidden: a credentials problem for the retry policy (never hammer).
            self._fail(State.REGISTRAR_ERROR_STATE, _lenient(lambda: response.retry_after), credentials=True)
        else:
            self._fail(State.REGISTRAR_ERROR_STATE, _lenient(lambda: response.retry_after))

    def _on_200(self, response: Response) -> None:
        if self._kind == REMOVE_ALL:
            self.bound = False
            self._renew_dialog()
            if self.enabled:
                self._start(REGISTER, State.REGISTERING_STATE)
            else:
                self._settle(State.NOT_REGISTERED_STATE)
            return
        if self._kind == UNREGISTER:
            self.bound = False
            if self.enabled:
                self._renew_dialog()
                self._start(REGISTER, State.REGISTERING_STATE)
            else:
                self._settle(State.NOT_REGISTERED_STATE)
            return
        contacts = response.contacts
        self.bound = True
        if (
            self.config.unique_binding
            and not self._removed_all
            and sum(1 for c in contacts if not c.is_star) > 1
        ):
            self._removed_all = True
            self._start(REMOVE_ALL, State.UNREGISTERING_STATE)
            return
        if not self.enabled:
            self._start(UNREGISTER, State.UNREGISTERING_STATE)
            return
        ours = self._our_binding(contacts)
        if ours is None:
            self.last_reason = "200 without our binding"
            self._fail(State.REGISTRAR_ERROR_STATE, None)
            return
        granted = ours.expires
        if granted is None:
            granted = response.expires
        if granted == 0:
            self.last_reason = "200 removed our binding (expires=0)"
            self._fail(State.REGISTRAR_ERROR_STATE, None)
            return
        if granted and granted != self.expires:  # the same value keeps the shared int
            self.expires = granted
        self.service_route = ", ".join(response.header_values("Service-Route")) or None
        self.associated_uris = ", ".join(response.header_values("P-Associated-URI")) or None
        self.flow_timer = _lenient(lambda: response.flow_timer)
        now = self.ctx.clock.seconds()
        self.failures = 0
        self.auth_failures = 0
        self.granted_at = now
        timing = self.ctx.timing
        self.registration_timeout = refresh_at(
            now, scheduled_expiry(self.expires, self.wanted_expires, timing), timing
        )
        self._transition(State.REGISTERED_STATE)

    def _our_binding(self, contacts: list[Contact]) -> Contact | None:
        binding = self.config.binding_uri
        ours = None
        for contact in contacts:
            if contact.is_star:
                continue
            if contact.uri != binding:  # the usual case is an exact echo: no parsing
                try:
                    ours = ours or parse_uri(binding)
                    same = uri_equal(ours, parse_uri(contact.uri))
                except ParseError:
                    continue
                if not same:
                    continue
            return contact
        return None

    def _on_challenge(self, response: Response) -> None:
        config = self.config
        if not config.username or not config.password:
            self.last_reason = "challenged, and the record has no credentials"
            self._fail(State.WRONG_CREDENTIALS_STATE, None, credentials=True)
            return
        values = response.www_authenticate if response.status == 401 else response.proxy_authenticate
        challenge = digest.choose_challenge(values)
        if challenge is None:
            self.last_reason = "no supported digest challenge"
            self._fail(State.INTERNAL_ERROR_STATE, None)
            return
        if self._challenged:
            if not (challenge.stale and not self._stale_answered):
                retry_after = _lenient(lambda: response.retry_after)
                self._fail(State.WRONG_CREDENTIALS_STATE, retry_after, credentials=True)
                return
            self._stale_answered = True
        self._challenged = True
        value = digest.authorization(
            challenge,
            username=config.username,
            password=config.password,
            method="REGISTER",
            uri=config.registrar,
            cnonce=digest.new_cnonce(self.ctx.random_bytes),
        )
        if self._kind == REGISTER:
            self._transition(State.AUTHENTICATING_STATE)
        else:
            self._transition(State.AUTHENTICATING_UNREGISTER_STATE)
        self._send((digest.authorization_header_name(response.status), value))

    def _on_423(self, response: Response) -> None:
        # One 423 a cycle, asking for more than we did and for no more than a day;
        # anything else would let a registrar keep us sending.
        minimum = _lenient(lambda: response.min_expires)
        if self._got_423 or minimum is None or not self.wanted_expires < minimum <= MAX_MIN_EXPIRES:
            self._fail(State.REGISTRAR_ERROR_STATE, _lenient(lambda: response.retry_after))
            return
        self._got_423 = True
        self.wanted_expires = minimum
        self._start(REGISTER, State.REGISTERING_STATE)

    # -- outcomes ----------------------------------------------------------------

    def _fail(self, state: State, retry_after: int | None, credentials: bool = False) -> None:
        self.failures += 1
        timing = self.ctx.timing
        now = self.ctx.clock.seconds()
        if credentials:
            self.auth_failures += 1
        if timing.max_auth_failures and self.auth_failures >= timing.max_auth_failures:
            # Stop until an operator acts: a registrar's brute-force lock must not be kept alive.
            self.registration_timeout = math.inf
        else:
            delay = retry_delay(
                self.wanted_expires,
                self.failures,
                timing,
                self.ctx.random.random(),
                retry_after,
                credentials=credentials,
            )
            self.registration_timeout = now + delay
        self._new_dialog = True
        self._settle(state)

    def _settle(self, state: State) -> None:
        self._transition(state)
        if self.state not in IN_FLIGHT:
            self._release_waiters()

    def _release_waiters(self) -> None:
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            waiter.callback(None)

    def _transition(self, new: State) -> None:
        old = self.state
        self.state = new
        if old is not new and self.ctx.on_transition is not None:
            self.ctx.on_transition(self, old, new)
        if new not in IN_FLIGHT:
            self.settled = new
