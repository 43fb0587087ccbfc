"""A record's recent SIP exchanges, for the operator (MI ``reg_trace``).

Nothing is kept for a record that is not traced: the history lives in a side
table keyed by record, filled only while ``reg_trace`` has switched it on (up
to a time limit), at most ``MAX_EXCHANGES`` exchanges each.  One exception:
a record that fails keeps the exchange that made it fail (one, rendered and
bounded) until it is registered again, so the reason is there when someone
looks.

An exchange is one request to one next hop and how it ended: the final reply,
a timeout or a transport error.  It is kept as text: the request's start line
and the headers that matter, the reply's status line and the same headers.
Every value is cut at ``MAX_VALUE`` characters.  Secrets never show: the
password is never on the wire, and the digest ``username``, ``nonce``,
``cnonce``, ``response`` and ``opaque`` of an (Proxy-)Authorization are
shown as ``…``; of a challenge only realm, algorithm, qop and stale are shown.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

from twisted.internet.defer import CancelledError
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from ..sip.digest import _scan_challenges
from ..sip.errors import ParseError, SIPError
from ..sip.message import Message, Request, Response
from ..sip.uri import redact_uri
from ..transport.errors import TransactionTimeout
from .machine import Registrant
from .observer import EngineObserver
from .record import RecordKey
from .states import FAILED, State

MAX_EXCHANGES = 8
# Header values, URIs and reasons are cut at this many characters.
MAX_VALUE = 200
# Contact values of one message shown at most (a registrar may list many bindings).
MAX_CONTACTS = 4
# Records with a history (traced now, or traced earlier and not yet evicted).
MAX_TRACED = 64
DEFAULT_SECONDS = 600
MAX_SECONDS = 86400

MASK = "…"
CRLF = "\r\n"
# Digest parameters whose values never show.
SECRET_PARAMS = frozenset({"username", "nonce", "cnonce", "response", "opaque"})
# Of a challenge, only these show.
CHALLENGE_PARAMS = ("realm", "algorithm", "qop", "stale")
# Quoted as RFC 3261 §25.1 quotes them (qop is a token in credentials, quoted in a challenge).
QUOTED_CREDENTIALS = frozenset({"realm", "uri", "username", "nonce", "cnonce", "response", "opaque"})
QUOTED_CHALLENGE = frozenset({"realm", "qop"})

REQUEST_HEADERS = ("CSeq", "Call-ID", "Contact", "Expires")
AUTHORIZATIONS = ("Authorization", "Proxy-Authorization")
REPLY_HEADERS = (
    "CSeq",
    "Call-ID",
    "Contact",
    "Expires",
    "WWW-Authenticate",
    "Proxy-Authenticate",
    "Retry-After",
    "Min-Expires",
    "Service-Route",
    "Path",
)

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

REPLY, TIMEOUT, TRANSPORT_ERROR = "reply", "timeout", "transport error"


class TooManyTraced(Exception):
    """Every place for a traced record is taken by a trace still running."""


@dataclass(frozen=True, slots=True)
class Exchange:
    at: float
    transport: str
    destination: str
    request: str
    reply: str | None
    outcome: str
    reason: str | None

    def as_json(self) -> dict[str, object]:
        return {
            "at": self.at,
            "transport": self.transport,
            "destination": self.destination,
            "request": self.request,
            "reply": self.reply,
            "outcome": self.outcome,
            "reason": self.reason,
        }


def cut(text: str, limit: int = MAX_VALUE) -> str:
    """``text`` on one line, at most ``limit`` characters (then ``…``)."""
    text = _CONTROL.sub("?", text)
    return text if len(text) <= limit else text[: limit - 1] + MASK


def _param_text(name: str, value: str, quoted: frozenset[str]) -> str:
    if name in quoted:
        return f'{name}="{value}"'
    return f"{name}={value}"


def mask_authorization(value: str) -> str:
    """An (Proxy-)Authorization value with its secrets shown as ``…``."""
    try:
        items = list(_scan_challenges(value))
    except ParseError:
        return MASK
    shown = []
    for scheme, params in items:
        parts = [_param_text(name, MASK if name in SECRET_PARAMS else value, QUOTED_CREDENTIALS) for name, value in params.items()]
        shown.append(f"{scheme} {', '.join(parts)}" if parts else f"{scheme} {MASK}")
    return cut(", ".join(shown))


def show_challenge(value: str) -> str:
    """A WWW-/Proxy-Authenticate value: its scheme, realm, algorithm, qop and stale only."""
    try:
        items = list(_scan_challenges(value))
    except ParseError:
        return "(unreadable challenge)"
    shown = []
    for scheme, params in items:
        parts = [_param_text(name, params[name], QUOTED_CHALLENGE) for name in CHALLENGE_PARAMS if name in params]
        shown.append(f"{scheme} {', '.join(parts)}" if parts else scheme)
    return cut(", ".join(shown))


def _lines(message: Message, names: tuple[str, ...]) -> list[str]:
    lines = []
    for name in names:
        if name == "Contact":
            try:
                values = message.header_values("Contact")
            except ParseError:
                values = [message.header("Contact") or ""]
            for value in values[:MAX_CONTACTS]:
                lines.append(f"Contact: {cut(redact_uri(value))}")
            if len(values) > MAX_CONTACTS:
                lines.append(f"Contact: ({len(values) - MAX_CONTACTS} more)")
            continue
        if name in ("WWW-Authenticate", "Proxy-Authenticate"):
            for value in message.header_values(name)[:MAX_CONTACTS]:
                lines.append(f"{name}: {show_challenge(value)}")
            continue
        value = message.header(name)
        if value is not None:
            lines.append(f"{name}: {cut(value)}")
    return lines


def render_request(request: Request, via: str | None) -> str:
    lines = [cut(f"{request.method} {redact_uri(request.uri)} SIP/2.0")]
    if via is not None:
        lines.append(f"Via: {cut(via)}")
    lines += _lines(request, REQUEST_HEADERS)
    for name in AUTHORIZATIONS:
        value = request.header(name)
        if value is not None:
            lines.append(f"{name}: {mask_authorization(value)}")
    return CRLF.join(lines)


def render_reply(response: Response) -> str:
    lines = [cut(f"SIP/2.0 {response.status} {response.reason}")]
    via = _top_via(response)
    if via is not None:
        lines.append(f"Via: {cut(via)}")
    lines += _lines(response, REPLY_HEADERS)
    return CRLF.join(lines)


def _top_via(message: Message) -> str | None:
    try:
        values = message.header_values("Via")
    except ParseError:
        return message.header("Via")
    return values[0] if values else None


def _destination(destination: object) -> tuple[str, str]:
    transport = str(getattr(destination, "transport", "")).upper()
    host, port = getattr(destination, "host", "?"), getattr(destination, "port", 0)
    return transport, f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def render(request: Request, destination: object, at: float, result: object) -> Exchange:
    """One exchange as the operator reads it; ``result`` is a Response or an exception."""
    transport, where = _destination(destination)
    if isinstance(result, Response):
        return Exchange(at, transport, where, render_request(request, _top_via(result)), render_reply(result), REPLY, None)
    via = getattr(result, "via", None)
    outcome = TIMEOUT if isinstance(result, TransactionTimeout) else TRANSPORT_ERROR
    if isinstance(result, SIPError):
        reason = cut(str(result)) or type(result).__name__
    else:
        reason = type(result).__name__
    return Exchange(at, transport, where, render_request(request, via), None, outcome, reason)


class _History:
    __slots__ = ("until", "exchanges")

    def __init__(self, until: float) -> None:
        self.until = until
        self.exchanges: deque[Exchange] = deque(maxlen=MAX_EXCHANGES)


@dataclass(frozen=True, slots=True)
class Reading:
    tracing: bool
    until: float | None
    exchanges: list[Exchange]


class Trace(EngineObserver):
    """The side table of traced records, and the last failed exchange of failing ones."""

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self._traced: dict[RecordKey, _History] = {}
        self._failed: dict[RecordKey, Exchange] = {}
        # The exchange that ended last, until the engine has acted on it:
        # (record, its event count then, Exchange or what to render one from).
        self._last: tuple | None = None

    # -- switching -----------------------------------------------------------------

    def on(self, key: RecordKey, seconds: float) -> float:
        """Trace the record for ``seconds`` from now (again: a new limit); returns the limit."""
        now = self.clock.seconds()
        history = self._traced.get(key)
        if history is None:
            if len(self._traced) >= MAX_TRACED:
                self._evict(now)
            history = self._traced[key] = _History(now + seconds)
        history.until = now + seconds
        return history.until

    def _evict(self, now: float) -> None:
        ended = [(history.until, key) for key, history in self._traced.items() if history.until <= now]
        if not ended:
            raise TooManyTraced(f"{MAX_TRACED} records are traced already")
        del self._traced[min(ended, key=lambda item: item[0])[1]]

    def off(self, key: RecordKey) -> None:
        """Stop tracing the record; what was recorded stays readable."""
        history = self._traced.get(key)
        if history is not None:
            history.until = min(history.until, self.clock.seconds())

    def tracing(self, key: RecordKey) -> bool:
        history = self._traced.get(key)
        return history is not None and history.until > self.clock.seconds()

    def read(self, key: RecordKey) -> Reading:
        """Whether the record is traced, until when, and its exchanges, oldest first."""
        history = self._traced.get(key)
        exchanges: list[Exchange] = list(history.exchanges) if history is not None else []
        failed = self._failed.get(key)
        if failed is not None and not any(exchange is failed for exchange in exchanges):
            exchanges.append(failed)
            exchanges.sort(key=lambda exchange: exchange.at)
        tracing = history is not None and history.until > self.clock.seconds()
        return Reading(tracing, history.until if tracing else None, exchanges[-MAX_EXCHANGES:])

    def forget(self, key: RecordKey) -> None:
        self._traced.pop(key, None)
        self._failed.pop(key, None)

    def forget_gone(self, loaded) -> None:
        """Drop what is kept for records no longer loaded (``loaded.get(key)`` is None)."""
        for kept in (self._traced, self._failed):
            for key in [k for k in kept if loaded.get(k) is None]:
                del kept[key]

    @property
    def traced_count(self) -> int:
        now = self.clock.seconds()
        return sum(1 for history in self._traced.values() if history.until > now)

    @property
    def failed_count(self) -> int:
        return len(self._failed)

    # -- what the engine tells ------------------------------------------------------

    def exchanged(self, registrant: Registrant, request: object, destination: object, at: float, result: object) -> None:
        # On every exchange of every record: as little as can be.
        if self._traced:
            history = self._traced.get(registrant.key)
            if history is not None and history.until > at:
                if isinstance(result, Failure):
                    if result.check(CancelledError):
                        return
                    result = result.value
                exchange = render(request, destination, at, result)
                history.exchanges.append(exchange)
                self._last = (registrant, registrant.events, exchange)
                return
        # Rendered only if the record fails on it: nothing per exchange otherwise.
        self._last = (registrant, registrant.events, (request, destination, at, result))

    def transition(self, registrant: Registrant, old: State, new: State) -> None:
        if new in FAILED:
            last = self._last
            # The event this failure comes from is the one the exchange's end fired.
            if last is not None and last[0] is registrant and registrant.events == last[1] + 1:
                self._last = None
                exchange = last[2]
                if not isinstance(exchange, Exchange):
                    request, destination, at, result = exchange
                    if isinstance(result, Failure):
                        if result.check(CancelledError):
                            return
                        result = result.value
                    exchange = render(request, destination, at, result)
                self._failed[registrant.key] = exchange
        elif new is State.REGISTERED_STATE and self._failed:
            self._failed.pop(registrant.key, None)
