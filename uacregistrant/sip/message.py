"""SIP messages (RFC 3261 §7): parsing, lazy header accessors and serialising.

Parsing checks the framing only (start line, header line shape, Content-Length);
header values are parsed when an accessor asks for them, since a registrant reads
a handful of headers of each reply and nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final, final

from uacregistrant.sip.errors import ParseError
from uacregistrant.sip.headers import (
    _CANONICAL,
    COMMA_FREE,
    canonical_name,
    is_token,
    parse_delta_seconds,
    parse_name_addr,
    parse_params,
    simple_params,
    split_values,
)
from uacregistrant.sip.uri import parse_uri, valid_host

__all__ = [
    "Message",
    "Request",
    "Response",
    "Via",
    "CSeq",
    "Contact",
    "parse_message",
    "parse_name_addr",
    "build_request",
    "response_for",
]

_CSEQ_LIMIT = 2**31  # RFC 3261 §8.1.1.5
_VIA = re.compile(
    r"[ \t]*[Ss][Ii][Pp][ \t]*/[ \t]*2\.0[ \t]*/[ \t]*([A-Za-z0-9\-.!%*_+`'~]+)[ \t]+"
    r"(\[[0-9A-Fa-f:.]+\]|(?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.?)(?:[ \t]*:[ \t]*([0-9]{1,5}))?(.*)",
    # No re.I: with it [A-Za-z] would also match a few non-ASCII letters (K, ſ, ı).
    re.S,
)
# The usual Via shape (no LWS, no IPv6, no quoted parameter values) in one pass.
# Possessive throughout, so that it never backtracks: a label is alphanumeric runs
# joined by hyphen runs (the same language as the grammar's "alphanum, then
# alphanums and hyphens ending in an alphanum"), labels joined by dots.
_LABEL = r"[A-Za-z0-9]++(?:-++[A-Za-z0-9]++)*+"
_SIMPLE_VIA = re.compile(
    r"SIP/2\.0/([A-Za-z0-9\-.!%*_+`'~]++) "
    rf"({_LABEL}(?:\.{_LABEL})*+\.?)"
    r"(?::([0-9]{1,5}))?((?:;[A-Za-z0-9\-.!%*_+`'~]++(?:=[^\s;,\"<>=]++)?)*+)"
)
_CSEQ = re.compile(r"[ \t]*([0-9]{1,10})[ \t]+([A-Za-z0-9\-.!%*_+`'~]+)[ \t]*")
_RETRY_AFTER = re.compile(r"[ \t]*([0-9]+)[ \t]*(?:$|[(;])")
_WSP = (" ", "\t")
_METHODS = frozenset({"REGISTER", "OPTIONS", "INVITE", "ACK", "BYE", "CANCEL", "NOTIFY", "SUBSCRIBE", "MESSAGE", "INFO"})
_FOLD = re.compile(r"\r\n[ \t]+")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*:[^\s]+")


def _param(params: tuple[tuple[str, str | None], ...], name: str) -> str | None:
    for key, value in params:
        if key == name:
            return "" if value is None else value
    return None


Params = tuple[tuple[str, str | None], ...]


# Via, CSeq and Contact are built for every reply read: plain final classes with
# their own __init__, which the compiled build turns into C (a frozen dataclass is
# built through object.__setattr__ per field, 0.4 µs each).  Final attributes
# keep them immutable for the type checker; equal when their fields are.
@final
class Via:
    """One Via header value (RFC 3261 §20.42); ``transport`` is upper-case."""

    __slots__ = ("transport", "host", "port", "params")

    def __init__(self, transport: str, host: str, port: int | None, params: Params = ()) -> None:
        self.transport: Final = transport
        self.host: Final = host
        self.port: Final = port
        self.params: Final = params

    def _fields(self) -> tuple[str, str, int | None, Params]:
        return self.transport, self.host, self.port, self.params

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Via) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return f"Via(transport={self.transport!r}, host={self.host!r}, port={self.port!r}, params={self.params!r})"

    def __str__(self) -> str:
        sent_by = self.host if self.port is None else f"{self.host}:{self.port}"
        params = "".join(f";{name}" if value is None else f";{name}={value}" for name, value in self.params)
        return f"SIP/2.0/{self.transport} {sent_by}{params}"

    def param(self, name: str) -> str | None:
        """A parameter's value, "" for a flag, None when absent (case-insensitive)."""
        return _param(self.params, name.lower())

    def has_param(self, name: str) -> bool:
        return self.param(name) is not None

    @property
    def branch(self) -> str | None:
        return _param(self.params, "branch")

    @property
    def received(self) -> str | None:
        return _param(self.params, "received")

    @property
    def rport(self) -> int | None:
        """The rport value a server filled in (RFC 3581); None when absent or empty."""
        value = _param(self.params, "rport")
        if not value:
            return None
        port = parse_delta_seconds(value) if len(value) <= 5 else 0
        if not 1 <= port <= 65535:
            raise ParseError("bad rport")
        return port


def parse_via(value: str) -> Via:
    match = _SIMPLE_VIA.fullmatch(value)
    if match is not None:
        transport, host, port_text, rest = match.groups()
        port = None if port_text is None else int(port_text)
        params = simple_params(rest) if rest else ()
        if params is not None and (port is None or 1 <= port <= 65535):
            return Via(transport.upper(), host, port, params)
    match = _VIA.fullmatch(value)
    if match is None:
        raise ParseError("malformed Via")
    transport, host, port_text, rest = match.groups()
    if host[0] == "[" and not valid_host(host):
        raise ParseError("bad Via host")
    port = None
    if port_text is not None:
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise ParseError("Via port out of range")
    params = parse_params(rest.rstrip(" \t")) if rest else ()
    return Via(transport.upper(), host, port, params)


@final
class CSeq:
    __slots__ = ("number", "method")

    def __init__(self, number: int, method: str) -> None:
        self.number: Final = number
        self.method: Final = method

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CSeq) and self.number == other.number and self.method == other.method

    def __hash__(self) -> int:
        return hash((self.number, self.method))

    def __repr__(self) -> str:
        return f"CSeq(number={self.number!r}, method={self.method!r})"

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


@final
class Contact:
    """One Contact value; ``params`` are the header parameters (RFC 3261 §20.10)."""

    __slots__ = ("uri", "display_name", "params")

    def __init__(self, uri: str, display_name: str | None = None, params: Params = ()) -> None:
        self.uri: Final = uri
        self.display_name: Final = display_name
        self.params: Final = params

    def _fields(self) -> tuple[str, str | None, Params]:
        return self.uri, self.display_name, self.params

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Contact) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return f"Contact(uri={self.uri!r}, display_name={self.display_name!r}, params={self.params!r})"

    def param(self, name: str) -> str | None:
        return _param(self.params, name.lower())

    @property
    def expires(self) -> int | None:
        value = _param(self.params, "expires")
        return None if value is None else parse_delta_seconds(value)

    @property
    def is_star(self) -> bool:
        return self.uri == "*"


def parse_contact(value: str) -> Contact:
    if value == "*":
        return Contact("*")
    display, uri, params = parse_name_addr(value)
    return Contact(uri, display, params)


class Message:
    """Accessors shared by requests and responses; names are matched case-insensitively.

    A parsed message keeps its header lines as received and the canonical name of
    each (checked while parsing); a value is cut out of its line and stripped when
    it is read, and ``headers`` is built on first use.  A message built by hand
    has its ``headers`` list.  Headers are not changed after construction.
    """

    __slots__ = ("_headers", "_lines", "names", "body")

    def __init__(
        self,
        headers: list[tuple[str, str]] | None,
        body: bytes,
        lines: list[str] | None = None,
        names: list[str] | None = None,
    ) -> None:
        self._headers: list[tuple[str, str]] | None = headers if headers is not None or lines is not None else []
        # The start line, then one header line each (line folding undone).
        self._lines: Final = lines
        self.names: list[str] | None = names
        self.body = body

    @property
    def headers(self) -> list[tuple[str, str]]:
        headers = self._headers
        if headers is None:
            headers = []
            lines = self._lines
            assert lines is not None  # a message without a list of headers is a parsed one
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers.append((name.rstrip(" \t"), value.strip(" \t")))
            self._headers = headers
        return headers

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Message)
            and type(other) is type(self)
            and self._start_line() == other._start_line()
            and self.headers == other.headers
            and self.body == other.body
        )

    __hash__ = None  # type: ignore[assignment]  # equal by value and mutable, as a dataclass

    def _names(self) -> list[str]:
        """The canonical name of each header line, in order."""
        names = self.names
        if names is None:
            names = self.names = [canonical_name(key) for key, _ in self.headers]
        return names

    def _value(self, index: int) -> str:
        """The value of the header line at ``index``."""
        headers = self._headers
        if headers is not None:
            return headers[index][1]
        lines = self._lines
        assert lines is not None
        return lines[index + 1].partition(":")[2].strip(" \t")

    def header(self, name: str) -> str | None:
        """The whole value of the first header line with this name."""
        wanted = _CANONICAL.get(name) or canonical_name(name)
        names = self._names()
        # list.index runs in C and compares the interned names by identity first.
        if wanted not in names:
            return None
        return self._value(names.index(wanted))

    def header_values(self, name: str) -> list[str]:
        """Every value of every header line with this name, comma lists split."""
        wanted = _CANONICAL.get(name) or canonical_name(name)
        names = self._names()
        if wanted not in names:
            return []
        values = []
        index = 0
        for key in names:
            if key == wanted:
                values.append(self._value(index))
            index += 1
        if wanted in COMMA_FREE:
            return values
        if len(values) == 1:
            return split_values(values[0])
        return [item for value in values for item in split_values(value)]

    def _required(self, name: str) -> str:
        value = self.header(name)
        if value is None:
            raise ParseError(f"missing {name}")
        return value

    @property
    def via(self) -> Via:
        return parse_via(split_values(self._required("Via"))[0])

    @property
    def vias(self) -> list[Via]:
        return [parse_via(value) for value in self.header_values("Via")]

    @property
    def cseq(self) -> CSeq:
        value = self._required("CSeq")
        number_text, _, method = value.partition(" ")
        if method in _METHODS and number_text.isdigit() and number_text.isascii() and len(number_text) <= 10:
            # The usual "42 REGISTER" without the pattern: what the pattern would take, read the same.
            number = int(number_text)
            if number < _CSEQ_LIMIT:
                return CSeq(number, method)
        match = _CSEQ.fullmatch(value)
        if match is None:
            raise ParseError("malformed CSeq")
        number = int(match.group(1))
        if number >= _CSEQ_LIMIT:
            raise ParseError("CSeq number too large")
        return CSeq(number, match.group(2))

    @property
    def call_id(self) -> str:
        value = self._required("Call-ID")
        if not value or any(char in value for char in " \t"):
            raise ParseError("malformed Call-ID")
        return value

    @property
    def from_tag(self) -> str | None:
        return _param(parse_name_addr(self._required("From"))[2], "tag")

    @property
    def to_tag(self) -> str | None:
        return _param(parse_name_addr(self._required("To"))[2], "tag")

    @property
    def contacts(self) -> list[Contact]:
        contacts = []
        for value in self.header_values("Contact"):
            contacts.append(parse_contact(value))
        return contacts

    @property
    def expires(self) -> int | None:
        value = self.header("Expires")
        return None if value is None else parse_delta_seconds(value)

    @property
    def min_expires(self) -> int | None:
        value = self.header("Min-Expires")
        return None if value is None else parse_delta_seconds(value)

    @property
    def retry_after(self) -> int | None:
        """Retry-After delta-seconds; the comment and parameters are ignored."""
        value = self.header("Retry-After")
        if value is None:
            return None
        match = _RETRY_AFTER.match(value)
        if match is None:
            raise ParseError("malformed Retry-After")
        return parse_delta_seconds(match.group(1))

    @property
    def flow_timer(self) -> int | None:
        """Flow-Timer seconds (RFC 5626 §4.4.1)."""
        value = self.header("Flow-Timer")
        return None if value is None else parse_delta_seconds(value)

    @property
    def www_authenticate(self) -> list[str]:
        return self.header_values("WWW-Authenticate")

    @property
    def proxy_authenticate(self) -> list[str]:
        return self.header_values("Proxy-Authenticate")

    def _start_line(self) -> str:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """Serialise, with a Content-Length that matches the body."""
        return _serialise(self._start_line(), self.headers, self.body)


@final
class Request(Message):
    __slots__ = ("method", "uri")

    def __init__(
        self,
        method: str,
        uri: str,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        *,
        lines: list[str] | None = None,
        names: list[str] | None = None,
    ) -> None:
        super().__init__(headers, body, lines, names)
        self.method = method
        self.uri = uri

    def __repr__(self) -> str:
        return f"Request(method={self.method!r}, uri={self.uri!r}, headers={self.headers!r}, body={self.body!r})"

    def _start_line(self) -> str:
        return f"{self.method} {self.uri} SIP/2.0"


@final
class Response(Message):
    __slots__ = ("status", "reason")

    def __init__(
        self,
        status: int,
        reason: str,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        *,
        lines: list[str] | None = None,
        names: list[str] | None = None,
    ) -> None:
        super().__init__(headers, body, lines, names)
        self.status = status
        self.reason = reason

    def __repr__(self) -> str:
        return f"Response(status={self.status!r}, reason={self.reason!r}, headers={self.headers!r}, body={self.body!r})"

    def _start_line(self) -> str:
        return f"SIP/2.0 {self.status} {self.reason}"


def _serialise(start_line: str, headers: Sequence[tuple[str, str]], body: bytes) -> bytes:
    lines = [start_line]
    length_line = f"Content-Length: {len(body)}"
    for name, value in headers:
        if canonical_name(name) == "content-length":
            if length_line:
                lines.append(length_line)
                length_line = ""
        else:
            lines.append(f"{name}: {value}")
    if length_line:
        lines.append(length_line)
    lines.append("\r\n")
    return "\r\n".join(lines).encode("utf-8") + body


def build_request(method: str, uri: str, headers: Sequence[tuple[str, str]], body: bytes = b"") -> bytes:
    """Serialise a request; Content-Length is added from the body."""
    return _serialise(f"{method} {uri} SIP/2.0", headers, body)


def response_for(
    request: Request,
    status: int,
    reason: str,
    headers: Sequence[tuple[str, str]] = (),
    to_tag: str | None = None,
) -> Response:
    """A response to ``request`` per RFC 3261 §8.2.6.

    Via, From, To, Call-ID and CSeq are copied; ``to_tag`` is added to the To header
    when the request's To has no tag (it may be omitted for a 100 Trying).
    """
    copied: list[tuple[str, str]] = [("Via", value) for key, value in request.headers if canonical_name(key) == "via"]
    to = request._required("To")
    if to_tag is not None and request.to_tag is None:
        to = f"{to};tag={to_tag}"
    copied += [
        ("From", request._required("From")),
        ("To", to),
        ("Call-ID", request._required("Call-ID")),
        ("CSeq", request._required("CSeq")),
    ]
    copied += headers
    return Response(status, reason, copied)


def parse_message(data: bytes, *, stream: bool = False) -> Request | Response:
    """Parse one SIP message; ParseError for anything malformed, nothing else.

    On a datagram a missing Content-Length means the rest of the datagram and a
    smaller one truncates the body (RFC 3261 §18.3); on a stream it is mandatory
    and ``data`` must be exactly one message.
    """
    end = data.find(b"\r\n\r\n")
    if end < 0:
        raise ParseError("no blank line after the headers")
    try:
        head = data[:end].decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError("header section is not UTF-8") from None
    lines = head.split("\r\n")
    breaks = len(lines) - 1
    if head.count("\n") != breaks or head.count("\r") != breaks:
        raise ParseError("bare CR or LF in the header section")
    parsed = _header_lines(lines)
    if parsed is None:
        # Rare: undo line folding (RFC 3261 §7.3.1), then parse again.
        lines = _FOLD.sub(" ", head).split("\r\n")
        parsed = _header_lines(lines)
        assert parsed is not None  # no line starts with LWS once unfolded
    names, content_length = parsed
    start_line = lines[0]
    body = data[end + 4 :]
    if content_length is None:
        if stream:
            raise ParseError("missing Content-Length on a stream")
    elif content_length > len(body):
        raise ParseError("body shorter than Content-Length")
    elif content_length < len(body):
        if stream:
            raise ParseError("bytes after the body")
        body = body[:content_length]
    if start_line.startswith("SIP/"):
        return _response(start_line, lines, names, body)
    return _request(start_line, lines, names, body)


def _header_lines(lines: list[str]) -> tuple[list[str], int | None] | None:
    """The canonical names of the lines after the start line, and Content-Length; None if folded.

    Every line is checked here (a colon, a token before it); values are cut out
    when read.
    """
    names: list[str] = []
    content_length = None
    # Direct calls, no bound-method aliases: compiled, list.append and dict.get
    # become C calls, which an alias would turn back into Python calls.
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        canonical = _CANONICAL.get(name)
        if canonical is None or not colon:
            if name[:1] in _WSP:
                return None
            if not colon:
                raise ParseError("header line without a colon")
            canonical = canonical_name(name.rstrip(" \t"))
        names.append(canonical)
        if canonical == "content-length":
            length = _content_length(value.strip(" \t"))
            if content_length is not None and length != content_length:
                raise ParseError("conflicting Content-Length values")
            content_length = length
    return names, content_length


def _content_length(value: str) -> int:
    if not value.isdigit() or not value.isascii():
        raise ParseError("malformed Content-Length")
    if len(value) > 10:
        # Also keeps int() below its limit on the number of digits.
        raise ParseError("Content-Length too large")
    return int(value)


def _response(start_line: str, lines: list[str], names: list[str], body: bytes) -> Response:
    parts = start_line.split(" ", 2)
    if len(parts) < 2 or parts[0] != "SIP/2.0":
        raise ParseError("unsupported SIP version")
    code = parts[1]
    if len(code) != 3 or not code.isdigit() or not code.isascii() or not 100 <= int(code) <= 699:
        raise ParseError("bad status code")
    # No CR or LF can be left in the reason: parse_message rejected bare ones.
    return Response(int(code), parts[2] if len(parts) == 3 else "", None, body, lines=lines, names=names)


def _request(start_line: str, lines: list[str], names: list[str], body: bytes) -> Request:
    parts = start_line.split(" ")
    if len(parts) != 3:
        raise ParseError("malformed request line")
    method, uri, version = parts
    if version != "SIP/2.0":
        raise ParseError("unsupported SIP version")
    if not is_token(method):
        raise ParseError("method is not a token")
    if _SCHEME.fullmatch(uri) is None:
        raise ParseError("malformed Request-URI")
    if uri[:4].lower() == "sip:" or uri[:5].lower() == "sips:":
        # Headers are not allowed in a Request-URI (RFC 3261 §19.1.1, table 1).
        if parse_uri(uri).headers:
            raise ParseError("headers in the Request-URI")
    return Request(method, uri, None, body, lines=lines, names=names)
