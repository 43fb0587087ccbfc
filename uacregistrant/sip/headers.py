"""Header-field grammar shared by the message accessors (RFC 3261 §7.3, §25.1)."""

from __future__ import annotations

import re

from uacregistrant.sip.errors import ParseError

__all__ = [
    "canonical_name",
    "is_token",
    "split_values",
    "parse_params",
    "simple_params",
    "parse_name_addr",
    "parse_delta_seconds",
    "COMMA_FREE",
]

_TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*:")

# RFC 3261 §7.3.3 compact forms, plus the later ones a UA may meet.
_COMPACT = {
    "i": "call-id",
    "m": "contact",
    "v": "via",
    "f": "from",
    "t": "to",
    "l": "content-length",
    "k": "supported",
    "s": "subject",
    "c": "content-type",
    "e": "content-encoding",
    "o": "event",
    "u": "allow-events",
    "r": "refer-to",
    "b": "referred-by",
    "x": "session-expires",
}

# Header fields whose single value may itself contain commas, so never split.
COMMA_FREE = frozenset(
    {
        "www-authenticate",
        "proxy-authenticate",
        "authorization",
        "proxy-authorization",
        "authentication-info",
        "date",
        "retry-after",
        "call-id",
        "subject",
        "user-agent",
        "server",
        "organization",
        "cseq",
        "content-length",
        "max-forwards",
        "timestamp",
    }
)

# Received names map to their canonical lower-case long form. The cache is bounded
# so that a stream of invented header names cannot grow it without limit.
_CANONICAL: dict[str, str] = {}
_CANONICAL_MAX = 4096

_POW_2_32 = 2**32


def is_token(text: str) -> bool:
    return _TOKEN.fullmatch(text) is not None


def canonical_name(name: str) -> str:
    """The lower-case long form of a header name; ParseError if it is not a token."""
    canonical = _CANONICAL.get(name)
    if canonical is None:
        if _TOKEN.fullmatch(name) is None:
            raise ParseError("header name is not a token")
        lowered = name.lower()
        canonical = _COMPACT.get(lowered, lowered)
        if len(_CANONICAL) < _CANONICAL_MAX:
            _CANONICAL[name] = canonical
    return canonical


# One comma-list item: quoted strings and <URI>s may hold commas (RFC 3261 §7.3.1).
# Possessive quantifiers keep a failed match linear in the length of the value.
_QUOTED = r'"(?:[^"\\]++|\\.)*+"'
_LIST_ITEM = re.compile(rf'(?:[^,"<]++|{_QUOTED}|<(?:[^>"]++|{_QUOTED})*+>)*+', re.S)


def split_values(value: str) -> list[str]:
    """Split a header value on the commas outside quotes and angle brackets."""
    if "," not in value:
        return [value.strip()]
    if '"' not in value:
        # Usually each item holds at most one <URI>, closed: no comma can be inside one.
        simple = []
        for item in value.split(","):
            lt = item.find("<")
            if lt >= 0 and (item.find(">", lt) < 0 or item.count("<") > 1):
                break
            simple.append(item.strip())
        else:
            return simple
    items = []
    match = _LIST_ITEM.match
    end = len(value)
    pos = 0
    while True:
        stop = match(value, pos).end()  # type: ignore[union-attr]  # the pattern matches "" too
        items.append(value[pos:stop].strip())
        if stop == end:
            return items
        if value[stop] != ",":
            raise ParseError("unbalanced quotes or angle brackets")
        pos = stop + 1


# generic-param after a leading ";" with LWS allowed around ";" and "=" (§25.1).
_PARAM = re.compile(
    r"""[ \t]*;[ \t]*([^\s;=,"<>]+)(?:[ \t]*=[ \t]*("(?:[^"\\]|\\.)*"|[^\s;,"<>]+))?[ \t]*""",
    re.S,
)
# The usual shape (no LWS, no quoted-pair) in one regex pass, the general case after.
# Possessive: no part of it can give back a character that the next part would
# take, so the matcher never backtracks (a third of its time on a Contact).
_SIMPLE_PARAM_TEXT = r"""[A-Za-z0-9\-.!%*_+`'~]++(?:=(?:"[^"\\]*+"|[^\s;,"<>=]++))?"""
_SIMPLE_PARAMS = re.compile(rf"(?:;{_SIMPLE_PARAM_TEXT})*+")
_QUOTED_PAIR = re.compile(r"\\(.)", re.S)


def unquote_string(text: str) -> str:
    """The content of a quoted-string without its quotes and quoted-pair escapes."""
    inner = text[1:-1]
    return _QUOTED_PAIR.sub(r"\1", inner) if "\\" in inner else inner


def simple_params(text: str) -> tuple[tuple[str, str | None], ...] | None:
    """Split parameters that matched ``_SIMPLE_PARAMS``; None when a quoted value holds a ";"."""
    # Plain loops: in Python 3.11 a comprehension costs a function call.
    simple = []
    for item in text[1:].split(";"):
        name, equals, value = item.partition("=")
        if value[:1] == '"':
            if len(value) < 2 or value[-1] != '"':
                return None
            value = value[1:-1]
        simple.append((name.lower(), value if equals else None))
    return tuple(simple)


def parse_params(text: str) -> tuple[tuple[str, str | None], ...]:
    """Parse ``;name=value;flag`` (names lower-cased, quotes removed from values)."""
    if _SIMPLE_PARAMS.fullmatch(text) is not None:
        simple = simple_params(text)
        if simple is not None:
            return simple
    params = []
    pos = 0
    end = len(text)
    while pos < end:
        match = _PARAM.match(text, pos)
        if match is None:
            raise ParseError("bad header parameter")
        name, value = match.groups()
        if _TOKEN.fullmatch(name) is None:
            raise ParseError("header parameter name is not a token")
        if value is not None and value[0] == '"':
            value = unquote_string(value)
        params.append((name.lower(), value))
        pos = match.end()
    return tuple(params)


# The common shapes take one regex; anything else goes the long way.
_FAST_NAME_ADDR = re.compile(
    r'(?:"([^"\\]*)"[ \t]*|([A-Za-z0-9\-.!%*_+`\'~ \t]*?)[ \t]*)?<([A-Za-z][A-Za-z0-9+\-.]*+:[^<>\s"]*+)>'
    rf"((?:;{_SIMPLE_PARAM_TEXT})*+)"
)


def parse_name_addr(value: str) -> tuple[str | None, str, tuple[tuple[str, str | None], ...]]:
    """Split a From/To/Contact value into display name, URI text and header params.

    For an addr-spec without angle brackets, everything after the first ";" is a
    header parameter (RFC 3261 §20.10), and the URI may not hold "," "?" or spaces.
    """
    text = value.strip()
    match = _FAST_NAME_ADDR.fullmatch(text)
    if match is not None:
        quoted, bare, uri, rest = match.groups()
        params = simple_params(rest) if rest else ()
        if params is not None:
            if quoted is not None:
                return quoted, uri, params
            return (" ".join(bare.split()) or None) if bare else None, uri, params
    display: str | None
    if text.startswith('"'):
        close = _closing_quote(text)
        display = unquote_string(text[: close + 1])
        uri, rest = _angle_uri(text[close + 1 :].lstrip(" \t"))
    elif "<" in text:
        lt = text.index("<")
        words = text[:lt].split()
        if not all(_TOKEN.fullmatch(word) for word in words):
            raise ParseError("display name is neither a token list nor quoted")
        display = " ".join(words) or None
        uri, rest = _angle_uri(text[lt:])
    else:
        display = None
        semi = text.find(";")
        uri, rest = (text, "") if semi < 0 else (text[:semi].rstrip(" \t"), text[semi:])
        if any(char in uri for char in ' \t,?"<>'):
            raise ParseError("addr-spec needs angle brackets")
    if _SCHEME.match(uri) is None:
        raise ParseError("URI without a scheme")
    return display, uri, parse_params(rest) if rest else ()


def _closing_quote(text: str) -> int:
    index = 1
    end = len(text)
    while index < end:
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char == '"':
            return index
        index += 1
    raise ParseError("unterminated quoted string")


def _angle_uri(text: str) -> tuple[str, str]:
    if not text.startswith("<"):
        raise ParseError("expected <URI>")
    close = text.find(">")
    if close < 0:
        raise ParseError("unterminated <URI>")
    uri = text[1:close]
    if not uri or any(char in uri for char in ' \t<"'):
        raise ParseError("bad characters inside <URI>")
    return uri, text[close + 1 :]


def parse_delta_seconds(text: str) -> int:
    """A delta-seconds value (RFC 3261 §25.1), at most 2**32 - 1."""
    text = text.strip()
    if not (text.isascii() and text.isdigit()):
        raise ParseError("not a delta-seconds value")
    if len(text) > 10 or int(text) >= _POW_2_32:
        raise ParseError("delta-seconds too large")
    return int(text)
