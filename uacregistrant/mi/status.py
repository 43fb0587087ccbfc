"""The operator status page on ``mi_listen``: a live view of every registrant.

``GET /`` is the page; its script, style sheet and ``status/records.json`` live
under ``/status/``.  Mount one ``StatusResource`` under both names::

    build_root(mi, metrics, extra={b"": status, b"status": status})

``records.json`` filters, sorts and pages on the server, so a browser polling
every two seconds only ever receives one page, whatever the number of records.
Each record is its reg_list entry (``Listing.view``: no username or password
can reach it) plus epoch seconds of our own next attempt, so the page can
count down in the browser's own time zone.

The availability figures (``availability``, ``flaps``, ``last_outage``) are
reg_list's own keys; sorting by them and the ``flapping`` filter read them
from the engine's ``Availability`` (one small tuple per record, not a whole
entry).  A record is *flapping* when it fell out of REGISTERED at
least ``FLAPPING_MIN_FLAPS`` times since it was loaded and the last of those
outages is still going on or ended less than ``FLAPPING_WINDOW`` seconds ago:
a trunk that dropped twice last month and has held since is not flapping,
and the filter does not fill up forever as the counts only grow.
"""

from __future__ import annotations

import json
import math
import heapq
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from twisted.web.pages import notFound
from twisted.web.resource import Resource
from twisted.web.server import Request

from ..registrant.availability import Figures
from ..registrant.engine import Engine
from ..registrant.machine import Registrant
from ..registrant.states import FAILED, State
from .jsonrpc import bearer_ok
from .listing import Listing

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000

# The activity chart: REGISTERs sent and failures per STEP seconds, the last WINDOW seconds.
ACTIVITY_STEP = 10
ACTIVITY_WINDOW = 600

# The "flapping" filter: fell out of REGISTERED this many times, the last time within the window.
FLAPPING_MIN_FLAPS = 2
FLAPPING_WINDOW = 24 * 3600

# Records without a value sort last, whatever the direction: descending, the marker is swapped.
_NO_VALUE = (1, 0)
_NO_VALUE_DESCENDING = (-1, 0)

_STATIC = {
    b"app.js": ("app.js", b"text/javascript; charset=utf-8"),
    b"style.css": ("style.css", b"text/css; charset=utf-8"),
}

# Everything the page needs is served from here; no inline script, no other origin.
_SECURITY_HEADERS = {
    b"Content-Security-Policy": (
        b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    b"X-Content-Type-Options": b"nosniff",
    b"Referrer-Policy": b"no-referrer",
    b"Cache-Control": b"no-cache",
}


def _present(value: Any) -> tuple[int, Any]:
    return _NO_VALUE if value is None else (0, value)


def _shtag(registrant: Registrant) -> str | None:
    shtag = registrant.config.shtag
    return None if shtag is None else f"{shtag[0]}/{shtag[1]}"


SORT_KEYS: dict[str, Callable[[Registrant], Any]] = {
    "aor": lambda r: (r.config.aor, r.config.binding_uri, r.config.registrar),
    "registrar": lambda r: (r.config.registrar, r.config.aor),
    "binding": lambda r: (r.config.binding_uri, r.config.aor),
    "state": lambda r: (int(r.state), r.config.aor),
    "last_code": lambda r: (_present(r.last_code), r.config.aor),
    "expires": lambda r: (r.expires, r.config.aor),
    "next_attempt": lambda r: (r.registration_timeout, r.config.aor),
    "failures": lambda r: (r.failures, r.config.aor),
    "shtag": lambda r: (_present(_shtag(r)), r.config.aor),
}

# The sorts whose key starts with _present(): descending, their missing values are swapped.
_OPTIONAL_SORTS = frozenset({"last_code", "shtag", "availability"})


def _missing_last(key: Callable[[Registrant], Any]) -> Callable[[Registrant], Any]:
    def descending(registrant: Registrant) -> Any:
        value = key(registrant)
        return (_NO_VALUE_DESCENDING, *value[1:]) if value[0] is _NO_VALUE else value

    return descending


# Sorted by the record's availability figures: ``(registrant, figures) -> key``.
FIGURE_SORT_KEYS: dict[str, Callable[[Registrant, Figures], Any]] = {
    # Lowest first: the worst trunks head the ascending order; no figure yet sorts last.
    "availability": lambda r, figures: (_present(figures.ratio), r.config.aor),
    "flaps": lambda r, figures: (figures.flaps, r.config.aor),
}


def flapping(figures: Figures, now: float) -> bool:
    """Whether a record with these figures is flapping (see the module's text)."""
    if figures.flaps < FLAPPING_MIN_FLAPS or figures.outage_start is None:
        return False
    return figures.outage_end is None or figures.outage_end >= now - FLAPPING_WINDOW


class QueryError(ValueError):
    """A records.json query parameter out of range; the reply is a 400."""


@dataclass(frozen=True, slots=True)
class Query:
    """One page of records: ``q`` matches AOR, registrar, binding or reason, case-blind."""

    offset: int = 0
    limit: int = DEFAULT_LIMIT
    q: str = ""
    state: State | None = None
    sort: str = "aor"
    descending: bool = False
    flapping: bool = False

    @classmethod
    def from_args(cls, args: dict[bytes, list[bytes]]) -> Query:
        def text(name: str) -> str:
            values = args.get(name.encode("ascii"))
            return values[0].decode("utf-8", "replace").strip() if values else ""

        def integer(name: str, default: int, low: int, high: int) -> int:
            raw = text(name)
            if not raw:
                return default
            if not raw.isdigit() or not low <= int(raw) <= high:
                raise QueryError(f"{name} must be an integer from {low} to {high}")
            return int(raw)

        state_name = text("state")
        if state_name and state_name not in State.__members__:
            raise QueryError(f"unknown state {state_name!r}")
        sort = text("sort") or "aor"
        if sort not in SORT_KEYS and sort not in FIGURE_SORT_KEYS:
            raise QueryError(f"cannot sort by {sort!r}")
        flapping = text("flapping")
        if flapping not in ("", "0", "1"):
            raise QueryError("flapping must be 0 or 1")
        return cls(
            offset=integer("offset", 0, 0, 1 << 31),
            limit=integer("limit", DEFAULT_LIMIT, 1, MAX_LIMIT),
            q=text("q").casefold(),
            state=State[state_name] if state_name else None,
            sort=sort,
            descending=text("desc") in ("1", "true"),
            flapping=flapping == "1",
        )

    @property
    def filters(self) -> bool:
        return bool(self.q) or self.state is not None or self.flapping

    def matches(self, registrant: Registrant) -> bool:
        """The text and state filters (``flapping`` reads the figures: see ``select``)."""
        if self.state is not None and registrant.state is not self.state:
            return False
        if not self.q:
            return True
        config = registrant.config
        return any(
            self.q in field.casefold()
            for field in (config.aor, config.registrar, config.binding_uri, registrant.last_reason or "")
        )


class Activity:
    """REGISTERs sent and failures per ``ACTIVITY_STEP`` seconds, kept for ``ACTIVITY_WINDOW``."""

    def __init__(self, seconds: Callable[[], float]) -> None:
        self._seconds = seconds
        self._slots: deque[list[int]] = deque(maxlen=ACTIVITY_WINDOW // ACTIVITY_STEP)

    def _slot(self) -> list[int]:
        start = int(self._seconds() // ACTIVITY_STEP) * ACTIVITY_STEP
        if not self._slots or self._slots[-1][0] != start:
            self._slots.append([start, 0, 0])
        return self._slots[-1]

    def sent(self, registrant: Registrant, kind: str) -> None:
        self._slot()[1] += 1

    def transition(self, registrant: Registrant, old: State, new: State) -> None:
        if new in FAILED:
            self._slot()[2] += 1

    def series(self) -> list[dict[str, int]]:
        """Every slot of the window, oldest first, empty ones included."""
        now = int(self._seconds() // ACTIVITY_STEP) * ACTIVITY_STEP
        counts = {start: (sent, failures) for start, sent, failures in self._slots}
        starts = range(now - ACTIVITY_WINDOW + ACTIVITY_STEP, now + 1, ACTIVITY_STEP)
        return [
            {"t": start, "sent": counts.get(start, (0, 0))[0], "failures": counts.get(start, (0, 0))[1]}
            for start in starts
        ]


def _epoch(when: float) -> float | None:
    # 0 is "never sent" / "due now" as the machine keeps it; inf is "waits for an operator".
    return None if when == 0 or math.isinf(when) else when


def status_view(listing: Listing, registrant: Registrant) -> dict[str, object]:
    """The reg_list entry plus machine-readable times (epoch seconds, null when there is none)."""
    view = listing.view(registrant)
    view["last_register_sent_epoch"] = _epoch(registrant.last_register_sent)
    view["next_attempt_epoch"] = _epoch(registrant.registration_timeout)
    view["waits_for_operator"] = math.isinf(registrant.registration_timeout)
    return view


def select(engine: Iterable[Registrant], query: Query, listing: Listing) -> dict[str, object]:
    """One pass over the records: counts per state and sharing tag, then the page."""
    # Counted by the raw values and named afterwards: 100,000 enum .name look-ups cost more.
    by_state: Counter[State] = Counter()
    by_shtag: Counter[str] = Counter()
    one_with: dict[str, Registrant] = {}
    records = list(engine)
    for registrant in records:
        by_state[registrant.state] += 1
        raw = registrant.config.cluster_shtag
        if raw:
            by_shtag[raw] += 1
            one_with.setdefault(raw, registrant)
    shtags: Counter[str] = Counter()
    for raw, count in by_shtag.items():
        shtags[_shtag(one_with[raw])] += count
    matched = [r for r in records if query.matches(r)] if query.filters else records
    end = query.offset + query.limit
    # The figures are read once per record, and only for the records the text and state let through.
    availability = listing.engine.availability
    figures_of: Callable[[Registrant], Figures] = availability.figures
    if query.flapping:
        now = availability.clock.seconds()
        kept = {id(r): figures for r in matched if flapping(figures := figures_of(r), now)}
        matched = [r for r in matched if id(r) in kept]
        figures_of = lambda r: kept[id(r)]  # noqa: E731
    key: Callable[[Registrant], Any]
    if query.sort in FIGURE_SORT_KEYS:
        figure_key = FIGURE_SORT_KEYS[query.sort]
        key = lambda r: figure_key(r, figures_of(r))  # noqa: E731
    else:
        key = SORT_KEYS[query.sort]
    if query.descending and query.sort in _OPTIONAL_SORTS:
        key = _missing_last(key)
    if end * 8 < len(matched):
        # The first pages, the usual view: a heap beats sorting every record.
        pick = heapq.nlargest if query.descending else heapq.nsmallest
        ordered = pick(end, matched, key=key)
    else:
        ordered = sorted(matched, key=key, reverse=query.descending)
    return {
        "total": sum(by_state.values()),
        "matched": len(matched),
        "offset": query.offset,
        "limit": query.limit,
        "counts": {state.name: by_state[state] for state in State},
        "shtags": dict(shtags),
        "records": [status_view(listing, r) for r in ordered[query.offset : end]],
    }


def _set_headers(request: Request, content_type: bytes) -> None:
    request.setHeader(b"Content-Type", content_type)
    for name, value in _SECURITY_HEADERS.items():
        request.setHeader(name, value)


class _Static(Resource):
    isLeaf = True

    def __init__(self, body: bytes, content_type: bytes) -> None:
        super().__init__()
        self._body = body
        self._content_type = content_type

    def render_GET(self, request: Request) -> bytes:
        _set_headers(request, self._content_type)
        return self._body


class _Records(Resource):
    """``GET records.json?offset=&limit=&q=&state=&flapping=&sort=&desc=``."""

    isLeaf = True

    def __init__(self, engine: Engine, listing: Listing, activity: Activity, token: bytes | None) -> None:
        super().__init__()
        self._engine = engine
        self._listing = listing
        self._activity = activity
        self._token = token

    def render_GET(self, request: Request) -> bytes:
        _set_headers(request, b"application/json")
        if not self._authorized(request):
            request.setResponseCode(401)
            request.setHeader(b"WWW-Authenticate", b'Bearer realm="mi"')
            return _dumps({"error": "Unauthorized"})
        try:
            query = Query.from_args(request.args)
        except QueryError as e:
            request.setResponseCode(400)
            return _dumps({"error": str(e)})
        body = select(self._engine, query, self._listing)
        body["now"] = self._engine.clock.seconds()
        body["activity"] = {"step": ACTIVITY_STEP, "series": self._activity.series()}
        return _dumps(body)

    def _authorized(self, request: Request) -> bool:
        return bearer_ok(request.getHeader(b"Authorization"), self._token)


def _dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def _read_static(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


class StatusResource(Resource):
    """The page at its own path; ``app.js``, ``style.css`` and ``records.json`` as children.

    It watches ``engine`` (requests sent and state changes) for the
    activity chart.  With ``token`` set, ``records.json`` wants
    ``Authorization: Bearer <token>`` like ``/mi``; the page itself and its
    static files carry no data and are served to anyone, so the page can ask
    for the token.  ``listing`` is reg_list's (one is made if not given).
    """

    def __init__(self, engine: Engine, *, token: str | None = None, listing: Listing | None = None) -> None:
        super().__init__()
        self._index = _read_static("index.html")
        activity = Activity(engine.clock.seconds)
        engine.subscribe(activity)
        for path, (name, content_type) in _STATIC.items():
            self.putChild(path, _Static(_read_static(name), content_type))
        self.putChild(
            b"records.json",
            _Records(
                engine,
                listing if listing is not None else Listing(engine),
                activity,
                token.encode("utf-8") if token is not None else None,
            ),
        )

    def getChild(self, path: bytes, request: Request) -> Resource:
        return notFound()

    def render_GET(self, request: Request) -> bytes:
        _set_headers(request, b"text/html; charset=utf-8")
        return self._index
