"""HTTP Digest, client side, for SIP: RFC 2617, RFC 7616 and RFC 8760.

Pure functions: a challenge header value in, an Authorization header value
out. Randomness (the cnonce) is an argument so that results are reproducible.
"""
from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from uacregistrant.sip.errors import ParseError

__all__ = [
    "Challenge",
    "UnsupportedAlgorithm",
    "authorization",
    "authorization_header_name",
    "choose_challenge",
    "new_cnonce",
    "parse_challenge",
]


class UnsupportedAlgorithm(ParseError):
    """A Digest challenge names an algorithm we cannot compute."""


@dataclass(frozen=True, slots=True)
class Challenge:
    """One Digest challenge from a WWW-Authenticate or Proxy-Authenticate header."""

    realm: str
    nonce: str
    algorithm: str  # RFC spelling: "MD5", "SHA-256-sess", ...
    qop: tuple[str, ...]  # lower-case options offered; empty for RFC 2069
    opaque: str | None
    stale: bool
    domain: str | None


@dataclass(frozen=True, slots=True)
class _Algorithm:
    name: str
    hash_name: str
    strength: int
    session: bool

    def hex(self, data: bytes) -> str:
        return hashlib.new(self.hash_name, data).hexdigest()

    @property
    def hex_length(self) -> int:
        return hashlib.new(self.hash_name).digest_size * 2


# RFC 8760 §2: SHA-512-256 is the strongest, MD5 the weakest; a -sess variant
# ranks with its base.
_ALGORITHMS: dict[str, _Algorithm] = {
    algorithm.name.upper(): algorithm
    for algorithm in (
        _Algorithm("MD5", "md5", 1, False),
        _Algorithm("MD5-sess", "md5", 1, True),
        _Algorithm("SHA-256", "sha256", 2, False),
        _Algorithm("SHA-256-sess", "sha256", 2, True),
        _Algorithm("SHA-512-256", "sha512_256", 3, False),
        _Algorithm("SHA-512-256-sess", "sha512_256", 3, True),
    )
}

_SUPPORTED_QOP = ("auth", "auth-int")

# RFC 7230 §3.2.6 / RFC 7235 §2.1. Whitespace also covers folded header lines.
_OWS = re.compile(r"[ \t\r\n]*")
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_TOKEN_RE = re.compile(_TOKEN)
# RFC 3261 §25.1: qdtext may hold folded LWS; other control characters are
# refused so that nothing parsed here can split a header we send back.
_TEXT = r"[^\x00-\x08\x0a-\x1f\x7f]"
_AUTH_PARAM = re.compile(
    rf'({_TOKEN})[ \t\r\n]*=[ \t\r\n]*'
    rf'(?:"((?:(?!["\\]){_TEXT}|\\{_TEXT}|\r?\n[ \t])*)"|({_TOKEN}))'
)
_FOLD = re.compile(r"[ \t]*\r?\n[ \t]+")
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_QUOTED_PAIR = re.compile(r"\\(.)")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_HEX = re.compile(r"[0-9A-Fa-f]+")


def parse_challenge(value: str) -> Challenge:
    """Parse a whole header value holding exactly one Digest challenge.

    Raises L{UnsupportedAlgorithm} for an algorithm we do not know and
    L{ParseError} for anything else we cannot use.
    """
    challenges = list(_scan_challenges(value))
    if len(challenges) != 1:
        raise ParseError("expected one challenge, found {}".format(len(challenges)))
    scheme, params = challenges[0]
    return _digest_challenge(scheme, params)


def choose_challenge(values: list[str]) -> Challenge | None:
    """The strongest supported Digest challenge among header values, if any.

    A header value may hold several challenges (RFC 7235 §4.1); values that do
    not parse, other schemes and unknown algorithms are skipped. On a tie the
    first offered wins.
    """
    best: Challenge | None = None
    best_strength = 0
    for value in values:
        try:
            challenges = list(_scan_challenges(value))
        except ParseError:
            continue
        for scheme, params in challenges:
            try:
                challenge = _digest_challenge(scheme, params)
            except ParseError:
                continue
            strength = _ALGORITHMS[challenge.algorithm.upper()].strength
            if strength > best_strength:
                best, best_strength = challenge, strength
    return best


def authorization(
    challenge: Challenge,
    *,
    username: str,
    password: str,
    method: str,
    uri: str,
    body: bytes = b"",
    cnonce: str,
    nc: int = 1,
) -> str:
    """The Authorization (or Proxy-Authorization) header value answering C{challenge}.

    A C{password} of C{0x} followed by exactly the algorithm's hex digest
    length is taken as a precomputed H(username:realm:password).
    """
    algorithm = _algorithm(challenge.algorithm)
    qop = _select_qop(challenge.qop)
    if not 1 <= nc <= 0xFFFFFFFF:
        raise ValueError("nc must fit in 8 hex digits")
    nc_value = "{:08x}".format(nc)

    # RFC 7616 §3.4.2: A1 = H(user:realm:pass), then for -sess H(A1:nonce:cnonce).
    ha1 = _precomputed_ha1(password, algorithm)
    if ha1 is None:
        ha1 = algorithm.hex(_utf8(username, challenge.realm, password))
    if algorithm.session:
        ha1 = algorithm.hex(_utf8(ha1, challenge.nonce, cnonce))

    # RFC 7616 §3.4.3: auth-int also covers the body.
    if qop == "auth-int":
        ha2 = algorithm.hex(_utf8(method, uri, algorithm.hex(body)))
    else:
        ha2 = algorithm.hex(_utf8(method, uri))

    if qop is None:
        # RFC 2069 compatibility form.
        response = algorithm.hex(_utf8(ha1, challenge.nonce, ha2))
    else:
        response = algorithm.hex(
            _utf8(ha1, challenge.nonce, nc_value, cnonce, qop, ha2)
        )

    parts = [
        "username=" + _quote("username", username),
        "realm=" + _quote("realm", challenge.realm),
        "nonce=" + _quote("nonce", challenge.nonce),
        "uri=" + _quote("uri", uri),
        "response=" + _quote("response", response),
        "algorithm=" + algorithm.name,
    ]
    if qop is not None:
        parts += ["cnonce=" + _quote("cnonce", cnonce), "nc=" + nc_value, "qop=" + qop]
    elif algorithm.session:
        # The server needs the cnonce to compute the session HA1.
        parts.append("cnonce=" + _quote("cnonce", cnonce))
    if challenge.opaque is not None:
        parts.append("opaque=" + _quote("opaque", challenge.opaque))
    return "Digest " + ", ".join(parts)


def new_cnonce(rand_bytes: Callable[[int], bytes] = os.urandom) -> str:
    """A fresh client nonce: 16 random bytes in hex."""
    return rand_bytes(16).hex()


def authorization_header_name(status: int) -> str:
    """The header that answers a challenge carried by a reply with C{status}."""
    if status == 401:
        return "Authorization"
    if status == 407:
        return "Proxy-Authorization"
    raise ValueError("status {} carries no challenge".format(status))


def _scan_challenges(value: str) -> Iterator[tuple[str, dict[str, str]]]:
    """Split a header value into (scheme, auth-params) pairs (RFC 7235 §2.1).

    A token68 credential is accepted and yields no params.
    """
    end = len(value)
    pos = _skip_separators(value, 0)
    if pos == end:
        raise ParseError("empty challenge")
    while pos < end:
        match = _TOKEN_RE.match(value, pos)
        if match is None:
            raise ParseError("expected an auth-scheme at offset {}".format(pos))
        scheme = match.group()
        after_scheme = match.end()
        pos = _OWS.match(value, after_scheme).end()  # type: ignore[union-attr]  # _OWS matches the empty string too
        params: dict[str, str] = {}
        if pos < end and value[pos] != ",":
            if pos == after_scheme:
                raise ParseError("expected whitespace after the auth-scheme")
            match = _AUTH_PARAM.match(value, pos)
            if match is None:
                token68 = _TOKEN68.match(value, pos)
                if token68 is None:
                    raise ParseError("expected auth-params at offset {}".format(pos))
                pos = _next_item(value, token68.end())
            while match is not None:
                name = match.group(1).lower()
                if name in params:
                    raise ParseError("repeated auth-param {}".format(name))
                quoted, token = match.group(2), match.group(3)
                params[name] = token if quoted is None else _unquote(quoted)
                pos = _next_item(value, match.end())
                match = _AUTH_PARAM.match(value, pos)
        else:
            pos = _next_item(value, pos)
        yield scheme, params


def _skip_separators(value: str, pos: int) -> int:
    # RFC 7230 §7: a list may hold empty elements.
    while True:
        pos = _OWS.match(value, pos).end()  # type: ignore[union-attr]
        if pos == len(value) or value[pos] != ",":
            return pos
        pos += 1


def _next_item(value: str, pos: int) -> int:
    pos = _OWS.match(value, pos).end()  # type: ignore[union-attr]
    if pos < len(value) and value[pos] != ",":
        raise ParseError("expected a comma at offset {}".format(pos))
    return _skip_separators(value, pos)


def _digest_challenge(scheme: str, params: dict[str, str]) -> Challenge:
    if scheme.lower() != "digest":
        raise ParseError("not a Digest challenge")
    realm = params.get("realm")
    if realm is None:
        raise ParseError("Digest challenge without realm")
    nonce = params.get("nonce")
    if not nonce:
        raise ParseError("Digest challenge without nonce")
    algorithm = _algorithm(params.get("algorithm", "MD5"))
    qop = tuple(
        option.strip().lower()
        for option in params.get("qop", "").split(",")
        if option.strip()
    )
    _select_qop(qop)
    return Challenge(
        realm=realm,
        nonce=nonce,
        algorithm=algorithm.name,
        qop=qop,
        opaque=params.get("opaque"),
        stale=params.get("stale", "").lower() == "true",
        domain=params.get("domain"),
    )


def _algorithm(name: str) -> _Algorithm:
    try:
        return _ALGORITHMS[name.upper()]
    except KeyError:
        raise UnsupportedAlgorithm("unsupported algorithm {!r}".format(name[:40])) from None


def _select_qop(offered: tuple[str, ...]) -> str | None:
    # auth-int would need the body on every retry for no gain in REGISTER.
    for qop in _SUPPORTED_QOP:
        if qop in offered:
            return qop
    if offered:
        raise ParseError("no supported qop offered")
    return None


def _precomputed_ha1(password: str, algorithm: _Algorithm) -> str | None:
    digits = password[2:]
    if (
        password.startswith("0x")
        and len(digits) == algorithm.hex_length
        and _HEX.fullmatch(digits)
    ):
        return digits.lower()
    return None


def _unquote(quoted: str) -> str:
    return _QUOTED_PAIR.sub(r"\1", _FOLD.sub(" ", quoted))


def _utf8(*fields: str) -> bytes:
    joined = ":".join(fields)
    try:
        # surrogateescape: header text decoded that way hashes as its original bytes.
        return joined.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        pass
    # Raised outside the handler so no chained exception carries the secret.
    raise ValueError("digest input is not encodable as UTF-8")


def _quote(name: str, text: str) -> str:
    # A control character here could split the header: refuse, without echoing it.
    if _CONTROL.search(text):
        raise ValueError("{} contains a control character".format(name))
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
