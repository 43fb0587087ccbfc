"""What a final reply means for a record: the machine's event, and the values it carries.

Pure.  Every header is read strictly (``sip.headers``); a value that does not
parse is absent where the header is optional (Retry-After, Min-Expires) and
makes the reply MALFORMED where it decides the outcome (Contact, Expires).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Callable

from ..sip import digest
from ..sip.errors import ParseError
from ..sip.message import Contact, Response
from ..sip.uri import parse_uri, uri_equal
from .machine import REGISTER, SENDS, Event, Registrant, step

# Requests a record may send in one registration cycle after the first one:
# challenge answers (a stale nonce is answered once more), one retry after a
# 423, the "Contact: *" clean-up of an RFC 5626 binding and its REGISTER.
MAX_FOLLOW_UPS = 8
# A 423 asking for more than a day is not a registrar we can work with.
MAX_MIN_EXPIRES = 86400


@dataclass(frozen=True, slots=True)
class Outcome:
    event: Event
    # Replaces the reply's reason phrase in last_reason when set.
    reason: str | None = None
    # OK: the expiry granted (None: keep the last one); TOO_BRIEF: the Min-Expires.
    expires: int | None = None
    retry_after: int | None = None
    challenge: digest.Challenge | None = None


def lenient(read: Callable[[], int | None]) -> int | None:
    """An optional header value; a malformed one counts as absent."""
    try:
        return read()
    except ParseError:
        return None


def classify(registrant: Registrant, response: Response) -> Outcome:
    """The event a final reply to the record's request in flight is."""
    try:
        outcome = _classify(registrant, response)
    except ParseError as e:
        return Outcome(Event.MALFORMED, reason=sys.intern(f"malformed reply: {e}"))
    if registrant.sends > MAX_FOLLOW_UPS and any(
        effect in SENDS for effect in step(registrant.state, outcome.event).effects
    ):
        return Outcome(Event.TOO_MANY_FOLLOW_UPS, reason="too many follow-up requests in one registration")
    return outcome


def _classify(registrant: Registrant, response: Response) -> Outcome:
    code = response.status
    if code == 200:
        return _ok(registrant, response)
    if code in (401, 407):
        return _challenged(registrant, response)
    retry_after = lenient(lambda: response.retry_after)
    if code == 423 and registrant.kind == REGISTER:
        # One 423 a cycle, asking for more than we did and for no more than a
        # day: anything else would let a registrar keep us sending.
        minimum = lenient(lambda: response.min_expires)
        if registrant.got_423 or minimum is None or not registrant.wanted_expires < minimum <= MAX_MIN_EXPIRES:
            return Outcome(Event.TOO_BRIEF_REFUSED, retry_after=retry_after)
        return Outcome(Event.TOO_BRIEF, expires=minimum)
    if code == 408:
        return Outcome(Event.TIMEOUT, retry_after=retry_after)
    if code == 403:
        return Outcome(Event.FORBIDDEN, retry_after=retry_after)
    return Outcome(Event.REJECTED, retry_after=retry_after)


def _ok(registrant: Registrant, response: Response) -> Outcome:
    if registrant.kind != REGISTER:
        return Outcome(Event.OK if registrant.enabled else Event.OK_DISABLED)
    contacts = response.contacts
    config = registrant.config
    if config.unique_binding and not registrant.removed_all and sum(1 for c in contacts if not c.is_star) > 1:
        return Outcome(Event.OK_CLEANUP)
    if not registrant.enabled:
        return Outcome(Event.OK_DISABLED)
    ours = our_binding(config.binding_uri, contacts)
    if ours is None:
        return Outcome(Event.OK_LOST, reason="200 without our binding")
    granted = ours.expires
    if granted is None:
        granted = response.expires
    if granted == 0:
        return Outcome(Event.OK_LOST, reason="200 removed our binding (expires=0)")
    return Outcome(Event.OK, expires=granted)


def our_binding(binding: str, contacts: list[Contact]) -> Contact | None:
    """Our Contact among a 200's, compared as URIs (RFC 3261 §19.1.4)."""
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


def _challenged(registrant: Registrant, response: Response) -> Outcome:
    config = registrant.config
    if not config.username or not config.password:
        return Outcome(Event.NO_CREDENTIALS, reason="challenged, and the record has no credentials")
    values = response.www_authenticate if response.status == 401 else response.proxy_authenticate
    challenge = digest.choose_challenge(values)
    if challenge is None:
        return Outcome(Event.CHALLENGE_UNUSABLE, reason="no supported digest challenge")
    # A second challenge refuses our credentials, unless it is the first stale one.
    if registrant.challenged and not (challenge.stale and not registrant.stale_answered):
        return Outcome(Event.CHALLENGE_REFUSED, retry_after=lenient(lambda: response.retry_after))
    return Outcome(Event.CHALLENGE, challenge=challenge)
