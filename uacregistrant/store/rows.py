"""Rows of the ``registrant`` table: column names, validation and conversion.

Pure code: a row arrives as a mapping keyed by logical column names (whatever
the ``*_column`` parameters call them in the database) and leaves as a
``RecordConfig``, or a ``RowError`` saying briefly why the row is skipped.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from uacregistrant.registrant.record import RecordConfig
from uacregistrant.sip.errors import ParseError
from uacregistrant.sip.uri import URI, parse_uri

# The logical names, in the order of OpenSIPS's table; ``id`` is not configurable.
LOGICAL_COLUMNS: tuple[str, ...] = (
    "id",
    "registrar",
    "proxy",
    "aor",
    "third_party_registrant",
    "username",
    "password",
    "binding_uri",
    "binding_params",
    "expiry",
    "forced_socket",
    "cluster_shtag",
    "state",
)

_CLUSTER_ID = re.compile(r"[0-9]+")
# What the surrogateescape error handler makes of a byte that is not UTF-8.
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")

# Every text field is bounded; the longest standard column is 255 characters,
# so 1 KiB leaves room for wider local schemas without letting one row hold
# megabytes in memory or on the wire.
MAX_FIELD_BYTES = 1024
# An expiry travels in Expires and Contact ``expires`` (RFC 3261 §20.19: a
# 32-bit delta-seconds) and is multiplied by reregister_expiry_percentage
# (at most 100): capped here, every later product stays far from any limit.
MAX_EXPIRY = 2**31 - 1

# RFC 3261 §25.1: generic-param = token [ EQUAL gen-value ],
# gen-value = token / host / quoted-string.  No whitespace: binding_params are
# copied into our Contact header as they are.
_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
_IPV6_REFERENCE = r"\[[0-9A-Fa-f:.]+\]"
_QUOTED_STRING = r'"(?:[^"\\\x00-\x1f\x7f]|\\[^\x00-\x1f\x7f])*"'
_GENERIC_PARAMS = re.compile(
    rf"(?:;{_TOKEN}(?:={_TOKEN}|={_IPV6_REFERENCE}|={_QUOTED_STRING})?)+"
)


@dataclass(frozen=True, slots=True)
class Columns:
    """Physical table and column names; defaults are OpenSIPS's."""

    table: str = "registrant"
    registrar: str = "registrar"
    proxy: str = "proxy"
    aor: str = "aor"
    third_party_registrant: str = "third_party_registrant"
    username: str = "username"
    password: str = "password"
    binding_uri: str = "binding_URI"
    binding_params: str = "binding_params"
    expiry: str = "expiry"
    forced_socket: str = "forced_socket"
    cluster_shtag: str = "cluster_shtag"
    state: str = "state"

    def physical(self, logical: str) -> str:
        """The database name of a logical column (``id`` is always ``id``)."""
        if logical == "id":
            return "id"
        if logical not in LOGICAL_COLUMNS:
            raise KeyError(logical)
        return getattr(self, logical)


class RowError(Exception):
    """A row that cannot become a record.

    The reason names columns and numbers only: never a credential, and never
    a URI text, which may carry a password in its userinfo.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _text(row: Mapping[str, object], name: str) -> str | None:
    """An optional text column: NULL and the empty string both mean absent.

    A driver may hand over bytes (a BLOB, or text that is not valid UTF-8):
    they are decoded strictly here, so one bad field skips its row instead of
    failing the whole read.
    """
    value = row.get(name)
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise RowError(f"{name} is not valid UTF-8") from None
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise RowError(f"{name} is not text")
    if len(value) > MAX_FIELD_BYTES // 4 and len(value.encode("utf-8", "replace")) > MAX_FIELD_BYTES:
        raise RowError(f"{name} is longer than {MAX_FIELD_BYTES} bytes")
    # Control characters (CR, LF, NUL, ...), lone surrogates and other
    # invisible code points: each could split a header or a log line.
    if not value.isprintable():
        if _ESCAPED_BYTE.search(value):
            # A byte that was not UTF-8, kept by a lenient decoder.
            raise RowError(f"{name} is not valid UTF-8")
        raise RowError(f"{name} has a control or non-printable character")
    return value


def _required(row: Mapping[str, object], name: str) -> str:
    value = _text(row, name)
    if value is None:
        raise RowError(f"{name} is empty")
    return value


@functools.lru_cache(maxsize=4096)
def _check_server_uri(name: str, text: str) -> str:
    """A registrar or proxy URI, checked once per distinct text (thousands of rows
    share a few) and interned, so those rows share one string."""
    _check_uri(name, text, user_allowed=False)
    return sys.intern(text)


def _check_uri(name: str, text: str, *, user_allowed: bool = True) -> URI:
    try:
        uri = parse_uri(text)
    except ParseError:
        raise RowError(f"{name} is not a valid SIP URI") from None
    if not user_allowed and uri.user is not None:
        raise RowError(f"{name} must not have a user part")
    if uri.password is not None:
        raise RowError(f"{name} must not have a password in its user part")
    # URI headers would become header fields of our requests (RFC 3261 §19.1.5).
    if uri.headers:
        raise RowError(f"{name} must not have ?headers")
    return uri


def _check_binding_params(params: str) -> None:
    if not params.startswith(";"):
        raise RowError("binding_params must start with ';'")
    # They follow <binding_URI> in our Contact header, so they are header params.
    if _GENERIC_PARAMS.fullmatch(params) is None:
        raise RowError("binding_params are not ;name[=value] parameters")


def _socket_key(text: str) -> str:
    proto, sep, rest = text.partition(":")
    return proto.lower() + sep + rest


def _forced_socket(text: str, sockets: Collection[str]) -> str:
    wanted = _socket_key(text)
    for socket in sockets:
        if _socket_key(socket) == wanted:
            return socket
    raise RowError("forced_socket is not a listening socket")


def _check_cluster_shtag(text: str) -> None:
    name, sep, cluster_id = text.rpartition("/")
    if not sep or not name.strip():
        raise RowError("cluster_shtag is not name/cluster_id")
    if not _CLUSTER_ID.fullmatch(cluster_id.strip()):
        raise RowError("cluster_shtag cluster_id is not an integer")


_SHARED_EXPIRIES: dict[int, int] = {}


@functools.lru_cache(maxsize=1024)
def _shared(text: str) -> str:
    """The first of equal texts still remembered: rows that repeat a value
    (one password for a trunk's many lines, one realm user) share one string.

    Not ``sys.intern``: credentials stay out of the interpreter's own table,
    and a value no row uses any more is forgotten after 1,024 others.
    """
    return text


def _optional_shared(text: str | None) -> str | None:
    return None if text is None else _shared(text)


def _expiry(value: object, *, timer_interval: int, default_expires: int) -> int:
    if value is None:
        return default_expires
    # bool is an int subclass; a True expiry is a driver accident, not a number.
    if not isinstance(value, int) or isinstance(value, bool):
        raise RowError("expiry is not an integer")
    if value > MAX_EXPIRY:
        raise RowError(f"expiry is above {MAX_EXPIRY}")
    if value <= timer_interval:
        raise RowError(f"expiry {value} not above timer_interval {timer_interval}")
    # Tables hold a handful of distinct expiries: share one int object each.
    return _SHARED_EXPIRIES.setdefault(value, value) if len(_SHARED_EXPIRIES) < 1024 else value


def record_from_row(
    row: Mapping[str, object],
    *,
    timer_interval: int,
    default_expires: int,
    sockets: Collection[str] = (),
) -> RecordConfig:
    """Validate one row (logical names) as OpenSIPS's loader does (docs/design.rst, "Records").

    ``forced_socket`` comes back as the matching entry of ``sockets``, so the
    transport can look it up as is.
    """
    registrar = _required(row, "registrar")
    aor = _required(row, "aor")
    binding_uri = _required(row, "binding_uri")
    registrar = _check_server_uri("registrar", registrar)
    proxy = _text(row, "proxy")
    if proxy is not None:
        proxy = _check_server_uri("proxy", proxy)
    _check_uri("aor", aor)
    third_party = _text(row, "third_party_registrant")
    if third_party is not None:
        _check_uri("third_party_registrant", third_party)
    _check_uri("binding_uri", binding_uri)
    binding_params = _text(row, "binding_params")
    if binding_params is not None:
        _check_binding_params(binding_params)
        binding_params = sys.intern(binding_params)
    expiry = _expiry(
        row.get("expiry"), timer_interval=timer_interval, default_expires=default_expires
    )
    forced_socket = _text(row, "forced_socket")
    if forced_socket is not None:
        forced_socket = _forced_socket(forced_socket, sockets)
    cluster_shtag = _text(row, "cluster_shtag")
    if cluster_shtag is not None:
        _check_cluster_shtag(cluster_shtag)
        cluster_shtag = sys.intern(cluster_shtag)
    row_id = row.get("id")
    return RecordConfig(
        registrar=registrar,
        aor=aor,
        binding_uri=binding_uri,
        expiry=expiry,
        id=row_id if isinstance(row_id, int) else None,
        proxy=proxy,
        third_party_registrant=third_party,
        username=_optional_shared(_text(row, "username")),
        password=_optional_shared(_text(row, "password")),
        binding_params=binding_params,
        forced_socket=forced_socket,
        cluster_shtag=cluster_shtag,
        # OpenSIPS: 0 is enabled, anything else disabled; NULL is the column default.
        enabled=row.get("state") in (None, 0),
    )


def row_from_record(record: RecordConfig) -> dict[str, object]:
    """The logical-name row to write for a record; ``id`` is the database's."""
    return {
        "registrar": record.registrar,
        "proxy": record.proxy,
        "aor": record.aor,
        "third_party_registrant": record.third_party_registrant,
        "username": record.username,
        "password": record.password,
        "binding_uri": record.binding_uri,
        "binding_params": record.binding_params,
        "expiry": record.expiry,
        "forced_socket": record.forced_socket,
        "cluster_shtag": record.cluster_shtag,
        "state": 0 if record.enabled else 1,
    }
