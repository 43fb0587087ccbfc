"""SIP and SIPS URIs (RFC 3261 §19.1): parsing, serialising and comparison."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import unquote

from uacregistrant.sip.errors import ParseError

__all__ = ["URI", "parse_uri", "redact_uri", "uri_equal", "unescape"]

# RFC 3261 §25.1: user = 1*( unreserved / escaped / user-unreserved ),
# password = *( unreserved / escaped / "&" / "=" / "+" / "$" / "," ).
_ESCAPED = r"%[0-9A-Fa-f]{2}"
_UNRESERVED = r"A-Za-z0-9\-_.!~*'()"
_USER = re.compile(rf"(?:[{_UNRESERVED}&=+$,;?/]|{_ESCAPED})+")
_PASSWORD = re.compile(rf"(?:[{_UNRESERVED}&=+$,]|{_ESCAPED})*")
# paramchar = param-unreserved / unreserved / escaped
_PARAMCHARS = re.compile(rf"(?:[{_UNRESERVED}\[\]/:&+$]|{_ESCAPED})+")
# hname / hvalue = 1*/ *( hnv-unreserved / unreserved / escaped )
_HNAME = re.compile(rf"(?:[{_UNRESERVED}\[\]/?:+$]|{_ESCAPED})+")
_HVALUE = re.compile(rf"(?:[{_UNRESERVED}\[\]/?:+$]|{_ESCAPED})*")
_HOSTNAME = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.)*"
    r"[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.?"
)
_IPV4 = re.compile(r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}")
_PORT = re.compile(r"[0-9]{1,5}")

# Parameters that make two URIs differ when only one of them carries it (§19.1.4).
_SIGNIFICANT_PARAMS = frozenset({"user", "ttl", "method", "maddr", "transport"})


@dataclass(frozen=True, slots=True)
class URI:
    """A parsed sip: or sips: URI; text fields are kept as written (still escaped)."""

    scheme: str
    user: str | None
    password: str | None
    host: str
    port: int | None
    params: tuple[tuple[str, str | None], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        parts = [self.scheme, ":"]
        if self.user is not None:
            parts.append(self.user)
            if self.password is not None:
                parts += [":", self.password]
            parts.append("@")
        parts.append(self.host)
        if self.port is not None:
            parts += [":", str(self.port)]
        for name, value in self.params:
            parts += [";", name] if value is None else [";", name, "=", value]
        if self.headers:
            parts += ["?", "&".join(f"{name}={value}" for name, value in self.headers)]
        return "".join(parts)

    def param(self, name: str) -> str | None:
        """The first value of a URI parameter, "" for a flag, None when absent."""
        name = name.lower()
        for key, value in self.params:
            if key.lower() == name:
                return "" if value is None else value
        return None

    def has_param(self, name: str) -> bool:
        return self.param(name) is not None

    @property
    def transport(self) -> str:
        """The transport the URI asks for (RFC 3263 §4.1 before any DNS step)."""
        transport = self.param("transport")
        if transport:
            return transport.lower()
        return "tls" if self.scheme == "sips" else "udp"

    @property
    def host_is_ip(self) -> bool:
        return self.host.startswith("[") or _IPV4.fullmatch(self.host) is not None

    @property
    def bare_host(self) -> str:
        """The host without the brackets of an IPv6 reference."""
        return self.host[1:-1] if self.host.startswith("[") else self.host


def unescape(text: str) -> str:
    """Decode %HH escapes (RFC 3261 §19.1.2); undecodable octets become U+FFFD."""
    return unquote(text, errors="replace") if "%" in text else text


def valid_host(host: str) -> bool:
    """True for a hostname, an IPv4 address or a bracketed IPv6 reference."""
    if host.startswith("["):
        if not host.endswith("]"):
            return False
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return False
        return "%" not in host
    return _HOSTNAME.fullmatch(host) is not None


def parse_uri(text: str) -> URI:
    """Parse a sip: or sips: URI (RFC 3261 §25.1 SIP-URI / SIPS-URI)."""
    scheme, colon, rest = text.partition(":")
    scheme = scheme.lower()
    if not colon or scheme not in ("sip", "sips"):
        raise ParseError("not a sip or sips URI")
    user = password = None
    # '@' is in none of the characters allowed after the userinfo.
    at = rest.find("@")
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        user, colon, pw = userinfo.partition(":")
        if _USER.fullmatch(user) is None:
            raise ParseError("bad URI user part")
        if colon:
            if _PASSWORD.fullmatch(pw) is None:
                raise ParseError("bad URI password")
            password = pw
    hostport, question, header_text = rest.partition("?")
    hostport, *param_texts = hostport.split(";")
    if hostport.startswith("["):
        close = hostport.find("]")
        if close < 0:
            raise ParseError("unterminated IPv6 reference")
        host, port_text = hostport[: close + 1], hostport[close + 1 :]
    else:
        host, colon, port_text = hostport.partition(":")
        port_text = colon + port_text
    if not valid_host(host):
        raise ParseError("bad URI host")
    port = None
    if port_text:
        if port_text[0] != ":" or _PORT.fullmatch(port_text[1:]) is None:
            raise ParseError("bad URI port")
        port = int(port_text[1:])
        if not 1 <= port <= 65535:
            raise ParseError("URI port out of range")
    params = []
    for param_text in param_texts:
        name, equals, value = param_text.partition("=")
        if _PARAMCHARS.fullmatch(name) is None or (equals and _PARAMCHARS.fullmatch(value) is None):
            raise ParseError("bad URI parameter")
        params.append((name, value if equals else None))
    headers = []
    if question:
        for header_text_item in header_text.split("&"):
            name, equals, value = header_text_item.partition("=")
            if not equals or _HNAME.fullmatch(name) is None or _HVALUE.fullmatch(value) is None:
                raise ParseError("bad URI header")
            headers.append((name, value))
    return URI(scheme, user, password, host, port, tuple(params), tuple(headers))


def redact_uri(text: str) -> str:
    """``text`` with any password of its user part shown as ``***``.

    For display only (lists, pages, logs): ``sip:bob:secret@host`` becomes
    ``sip:bob:***@host``; anything else, parsable or not, is returned as is.
    The userinfo ends at the first ``@``, as ``parse_uri`` reads it.
    """
    # Two finds on the common path: reg_list shows three URIs per record.
    at = text.find("@")
    if at < 0:
        return text
    scheme_end = text.find(":")
    password_start = text.find(":", scheme_end + 1, at)
    if scheme_end < 0 or password_start < 0:
        return text
    return f"{text[:password_start]}:***{text[at:]}"


def _host_key(host: str) -> str:
    if host.startswith("["):
        try:
            return str(ipaddress.IPv6Address(host[1:-1]))
        except ValueError:
            return host.lower()
    return host.lower().rstrip(".")


def uri_equal(a: URI, b: URI) -> bool:
    """URI equivalence per RFC 3261 §19.1.4 (not transitive, by design of the RFC)."""
    if a.scheme != b.scheme or a.port != b.port:
        return False
    if (a.user is None) != (b.user is None) or (a.password is None) != (b.password is None):
        return False
    if a.user is not None and unescape(a.user) != unescape(b.user or ""):
        return False
    if a.password is not None and unescape(a.password) != unescape(b.password or ""):
        return False
    if _host_key(a.host) != _host_key(b.host):
        return False
    a_params = _param_map(a)
    b_params = _param_map(b)
    for name in a_params.keys() | b_params.keys():
        if name in a_params and name in b_params:
            if a_params[name] != b_params[name]:
                return False
        elif name in _SIGNIFICANT_PARAMS:
            return False
    return _header_set(a) == _header_set(b)


def _param_map(uri: URI) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for name, value in uri.params:
        params.setdefault(unescape(name).lower(), None if value is None else unescape(value).lower())
    return params


def _header_set(uri: URI) -> frozenset[tuple[str, str]]:
    return frozenset((unescape(name).lower(), unescape(value)) for name, value in uri.headers)
