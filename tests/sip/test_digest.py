"""Digest client: RFC 2617, RFC 7616 and RFC 8760 vectors, parsing and choice."""
from __future__ import annotations

import dataclasses
import hashlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uacregistrant.sip.digest import (
    Challenge,
    UnsupportedAlgorithm,
    authorization,
    authorization_header_name,
    choose_challenge,
    new_cnonce,
    parse_challenge,
)
from uacregistrant.sip.errors import ParseError, SIPError

ALGORITHMS = {
    "MD5": ("md5", False),
    "MD5-sess": ("md5", True),
    "SHA-256": ("sha256", False),
    "SHA-256-sess": ("sha256", True),
    "SHA-512-256": ("sha512_256", False),
    "SHA-512-256-sess": ("sha512_256", True),
}

RFC7616_REALM = "http-auth@example.org"
RFC7616_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC7616_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"


def rfc7616_challenge(algorithm: str) -> str:
    """The RFC 7616 §3.9.1 challenge, folded over lines as in the RFC."""
    return (
        "Digest\r\n"
        '    realm="http-auth@example.org",\r\n'
        '    qop="auth, auth-int",\r\n'
        "    algorithm={},\r\n"
        '    nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",\r\n'
        '    opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
    ).format(algorithm)


def fields(value: str) -> dict[str, str]:
    """Split an Authorization value into its params, keeping quotes as sent."""
    assert value.startswith("Digest ")
    found = re.findall(r'([a-z]+)=("(?:[^"\\]|\\.)*"|[^",\s]+)', value[len("Digest "):])
    names = [name for name, _ in found]
    assert len(names) == len(set(names))
    return dict(found)


def challenge(
    algorithm: str = "MD5",
    qop: tuple[str, ...] = ("auth",),
    opaque: str | None = None,
    realm: str = "example.com",
    nonce: str = "abc123",
) -> Challenge:
    return Challenge(
        realm=realm,
        nonce=nonce,
        algorithm=algorithm,
        qop=qop,
        opaque=opaque,
        stale=False,
        domain=None,
    )


def reference_response(
    algorithm: str,
    qop: str | None,
    *,
    username: str,
    password: str,
    realm: str,
    nonce: str,
    method: str,
    uri: str,
    cnonce: str,
    nc: str,
    body: bytes = b"",
) -> str:
    """RFC 7616 §3.4.1-3.4.3 written out directly on hashlib."""
    hash_name, session = ALGORITHMS[algorithm]

    def h(data: str | bytes) -> str:
        raw = data.encode() if isinstance(data, str) else data
        return hashlib.new(hash_name, raw).hexdigest()

    ha1 = h(f"{username}:{realm}:{password}")
    if session:
        ha1 = h(f"{ha1}:{nonce}:{cnonce}")
    ha2 = h(f"{method}:{uri}:{h(body)}") if qop == "auth-int" else h(f"{method}:{uri}")
    if qop is None:
        return h(f"{ha1}:{nonce}:{ha2}")
    return h(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


# --- published vectors ------------------------------------------------------


def test_rfc2617_worked_example() -> None:
    """RFC 2617 §3.5: Mufasa's request for /dir/index.html, exactly."""
    parsed = parse_challenge(
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", '
        'opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    value = authorization(
        parsed,
        username="Mufasa",
        password="Circle Of Life",
        method="GET",
        uri="/dir/index.html",
        cnonce="0a4f113b",
    )
    assert value == (
        'Digest username="Mufasa", realm="testrealm@host.com", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", '
        'response="6629fae49393a05397450978507c4ef1", algorithm=MD5, '
        'cnonce="0a4f113b", nc=00000001, qop=auth, '
        'opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )


@pytest.mark.parametrize(
    ("algorithm", "response"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_vectors(algorithm: str, response: str) -> None:
    """RFC 7616 §3.9.1: the MD5 and SHA-256 answers to the same challenge."""
    parsed = parse_challenge(rfc7616_challenge(algorithm))
    assert parsed == Challenge(
        realm=RFC7616_REALM,
        nonce=RFC7616_NONCE,
        algorithm=algorithm,
        qop=("auth", "auth-int"),
        opaque=RFC7616_OPAQUE,
        stale=False,
        domain=None,
    )
    value = authorization(
        parsed,
        username="Mufasa",
        password="Circle of Life",
        method="GET",
        uri="/dir/index.html",
        cnonce=RFC7616_CNONCE,
    )
    assert fields(value) == {
        "username": '"Mufasa"',
        "realm": f'"{RFC7616_REALM}"',
        "nonce": f'"{RFC7616_NONCE}"',
        "uri": '"/dir/index.html"',
        "response": f'"{response}"',
        "algorithm": algorithm,
        "cnonce": f'"{RFC7616_CNONCE}"',
        "nc": "00000001",
        "qop": "auth",
        "opaque": f'"{RFC7616_OPAQUE}"',
    }


def test_rfc7616_both_challenges_prefers_sha256() -> None:
    """Given the RFC's two challenges, in either order, SHA-256 is answered."""
    md5, sha256 = rfc7616_challenge("MD5"), rfc7616_challenge("SHA-256")
    assert choose_challenge([md5, sha256]).algorithm == "SHA-256"
    assert choose_challenge([sha256, md5]).algorithm == "SHA-256"
    assert choose_challenge([md5 + ", " + sha256]).algorithm == "SHA-256"


def test_sha512_256_by_hand() -> None:
    """RFC 8760 SHA-512-256 and its -sess variant, computed step by step here."""
    user, realm, password = "alice", "atlanta.example.com", "s3cr3t"
    nonce, cnonce, uri = "b6a1e2f0", "0123456789abcdef", "sip:atlanta.example.com"

    def h(text: str) -> str:
        return hashlib.new("sha512_256", text.encode()).hexdigest()

    ha1 = h("alice:atlanta.example.com:s3cr3t")
    ha2 = h("REGISTER:sip:atlanta.example.com")
    plain = h(f"{ha1}:{nonce}:00000002:{cnonce}:auth:{ha2}")
    sess_ha1 = h(f"{ha1}:{nonce}:{cnonce}")
    sess = h(f"{sess_ha1}:{nonce}:00000002:{cnonce}:auth:{ha2}")
    assert len(plain) == 64 and plain != sess

    for algorithm, expected in (("SHA-512-256", plain), ("SHA-512-256-sess", sess)):
        parsed = parse_challenge(
            f'Digest realm="{realm}", nonce="{nonce}", algorithm={algorithm}, qop="auth"'
        )
        value = authorization(
            parsed,
            username=user,
            password=password,
            method="REGISTER",
            uri=uri,
            cnonce=cnonce,
            nc=2,
        )
        assert fields(value)["response"] == f'"{expected}"'
        assert fields(value)["algorithm"] == algorithm


# --- computation ------------------------------------------------------------


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
@pytest.mark.parametrize(
    ("offered", "used"),
    [((), None), (("auth",), "auth"), (("auth-int",), "auth-int"),
     (("auth-int", "auth"), "auth"), (("auth", "auth-int", "x-future"), "auth")],
)
def test_every_algorithm_and_qop(
    algorithm: str, offered: tuple[str, ...], used: str | None
) -> None:
    """Each algorithm with each qop matches the RFC formulas; auth wins over auth-int."""
    body = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n"
    value = authorization(
        challenge(algorithm, offered),
        username="bob",
        password="pa:ss",
        method="REGISTER",
        uri="sip:example.com",
        body=body,
        cnonce="c0ffee",
        nc=3,
    )
    expected = reference_response(
        algorithm,
        used,
        username="bob",
        password="pa:ss",
        realm="example.com",
        nonce="abc123",
        method="REGISTER",
        uri="sip:example.com",
        cnonce="c0ffee",
        nc="00000003",
        body=body,
    )
    got = fields(value)
    assert got["response"] == f'"{expected}"'
    assert got["algorithm"] == algorithm
    if used is None:
        assert "qop" not in got and "nc" not in got
    else:
        assert (got["qop"], got["nc"], got["cnonce"]) == (used, "00000003", '"c0ffee"')


def test_rfc2069_form() -> None:
    """Without qop: response = H(HA1:nonce:HA2) and no cnonce, nc or qop are sent."""
    value = authorization(
        parse_challenge('Digest realm="r", nonce="n"'),
        username="u",
        password="p",
        method="REGISTER",
        uri="sip:r",
        cnonce="unused",
    )
    ha1 = hashlib.md5(b"u:r:p").hexdigest()
    ha2 = hashlib.md5(b"REGISTER:sip:r").hexdigest()
    response = hashlib.md5(f"{ha1}:n:{ha2}".encode()).hexdigest()
    assert value == (
        f'Digest username="u", realm="r", nonce="n", uri="sip:r", '
        f'response="{response}", algorithm=MD5'
    )


def test_sess_without_qop_sends_cnonce() -> None:
    """A -sess HA1 needs the cnonce, so it is sent even in the RFC 2069 form."""
    got = fields(
        authorization(
            challenge("MD5-sess", ()),
            username="u",
            password="p",
            method="REGISTER",
            uri="sip:r",
            cnonce="abcd",
        )
    )
    assert got["cnonce"] == '"abcd"'
    assert "nc" not in got and "qop" not in got


def test_auth_int_covers_body() -> None:
    """With auth-int, a different body gives a different response; with auth it does not."""

    def response(qop: str, body: bytes) -> str:
        return fields(
            authorization(
                challenge("SHA-256", (qop,)),
                username="u",
                password="p",
                method="REGISTER",
                uri="sip:r",
                body=body,
                cnonce="c",
            )
        )["response"]

    assert response("auth-int", b"") != response("auth-int", b"x")
    assert response("auth", b"") == response("auth", b"x")


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
@pytest.mark.parametrize("upper", [False, True])
def test_precomputed_ha1(algorithm: str, upper: bool) -> None:
    """`0x` + H(user:realm:pass) answers exactly as the clear password does."""
    hash_name, _ = ALGORITHMS[algorithm]
    ha1 = hashlib.new(hash_name, b"carol:example.com:hunter2").hexdigest()
    if upper:
        ha1 = ha1.upper()
    args = dict(method="REGISTER", uri="sip:example.com", cnonce="c", username="carol")
    clear = authorization(challenge(algorithm), password="hunter2", **args)
    hashed = authorization(challenge(algorithm), password="0x" + ha1, **args)
    assert hashed == clear


@pytest.mark.parametrize(
    "password",
    [
        "0x" + "a" * 64,  # SHA-256 length, too long for MD5
        "0x" + "a" * 31,
        "0x" + "g" * 32,
        "0X" + "a" * 32,
        "0x",
    ],
)
def test_not_a_precomputed_md5_ha1(password: str) -> None:
    """Anything but `0x` + 32 hex digits is an MD5 clear-text password."""
    args = dict(method="REGISTER", uri="sip:r", cnonce="c", username="u")
    got = fields(authorization(challenge("MD5", ("auth",), realm="r"), password=password, **args))
    expected = reference_response(
        "MD5", "auth", username="u", password=password, realm="r", nonce="abc123",
        method="REGISTER", uri="sip:r", cnonce="c", nc="00000001",
    )
    assert got["response"] == f'"{expected}"'


def test_md5_length_ha1_is_clear_text_for_sha256() -> None:
    """A 32-digit `0x` value is a password, not an HA1, under SHA-256."""
    password = "0x" + hashlib.md5(b"u:r:p").hexdigest()
    args = dict(method="REGISTER", uri="sip:r", cnonce="c", username="u")
    got = fields(authorization(challenge("SHA-256", realm="r"), password=password, **args))
    expected = reference_response(
        "SHA-256", "auth", username="u", password=password, realm="r", nonce="abc123",
        method="REGISTER", uri="sip:r", cnonce="c", nc="00000001",
    )
    assert got["response"] == f'"{expected}"'


@pytest.mark.parametrize(
    ("nc", "text"),
    [(1, "00000001"), (2, "00000002"), (10, "0000000a"), (255, "000000ff"),
     (0x12345678, "12345678"), (0xFFFFFFFF, "ffffffff")],
)
def test_nc_formatting(nc: int, text: str) -> None:
    """nc is eight lower-case hex digits and enters the hash as sent."""
    got = fields(
        authorization(
            challenge(), username="u", password="p", method="REGISTER",
            uri="sip:r", cnonce="c", nc=nc,
        )
    )
    expected = reference_response(
        "MD5", "auth", username="u", password="p", realm="example.com", nonce="abc123",
        method="REGISTER", uri="sip:r", cnonce="c", nc=text,
    )
    assert got["nc"] == text
    assert got["response"] == f'"{expected}"'


@pytest.mark.parametrize("nc", [0, -1, 0x100000000])
def test_nc_out_of_range(nc: int) -> None:
    with pytest.raises(ValueError):
        authorization(
            challenge(), username="u", password="p", method="REGISTER",
            uri="sip:r", cnonce="c", nc=nc,
        )


def test_opaque_echoed_verbatim() -> None:
    """The opaque comes back as it was, re-quoted; none is invented when absent."""
    parsed = parse_challenge(r'Digest realm="r", nonce="n", opaque="a\"b\\c"')
    assert parsed.opaque == 'a"b\\c'
    args = dict(username="u", password="p", method="REGISTER", uri="sip:r", cnonce="c")
    assert fields(authorization(parsed, **args))["opaque"] == r'"a\"b\\c"'
    assert "opaque" not in fields(authorization(challenge(), **args))


def test_username_quoted_but_hashed_raw() -> None:
    """A quote in the username is escaped on the wire; the hash uses the name itself."""
    got = fields(
        authorization(
            challenge(realm="r"), username='a"b', password="p", method="REGISTER",
            uri="sip:r", cnonce="c",
        )
    )
    expected = reference_response(
        "MD5", "auth", username='a"b', password="p", realm="r", nonce="abc123",
        method="REGISTER", uri="sip:r", cnonce="c", nc="00000001",
    )
    assert got["username"] == r'"a\"b"'
    assert got["response"] == f'"{expected}"'


def test_utf8_credentials() -> None:
    """Non-ASCII user names and passwords are hashed as UTF-8 (RFC 7616 §4)."""
    got = fields(
        authorization(
            challenge(realm="r"), username="jürgen", password="pässwörd",
            method="REGISTER", uri="sip:r", cnonce="c",
        )
    )
    expected = reference_response(
        "MD5", "auth", username="jürgen", password="pässwörd", realm="r",
        nonce="abc123", method="REGISTER", uri="sip:r", cnonce="c", nc="00000001",
    )
    assert got["response"] == f'"{expected}"'


@pytest.mark.parametrize("field", ["username", "uri", "cnonce"])
@pytest.mark.parametrize("bad", ["\r\n", "\n", "\x00", "\x7f"])
def test_control_characters_refused(field: str, bad: str) -> None:
    """A control character could split the header: refused, and not echoed."""
    args = dict(username="u", password="p", method="REGISTER", uri="sip:r", cnonce="c")
    args[field] = "x" + bad + "Via: evil"
    with pytest.raises(ValueError) as raised:
        authorization(challenge(), **args)
    assert "evil" not in str(raised.value)


def test_unknown_algorithm_in_hand_made_challenge() -> None:
    with pytest.raises(UnsupportedAlgorithm):
        authorization(
            challenge("SHA-1"), username="u", password="p", method="REGISTER",
            uri="sip:r", cnonce="c",
        )


def test_unsupported_qop_in_hand_made_challenge() -> None:
    with pytest.raises(ParseError):
        authorization(
            challenge(qop=("x-future",)), username="u", password="p",
            method="REGISTER", uri="sip:r", cnonce="c",
        )


# --- secrets ----------------------------------------------------------------


def exception_texts(error: BaseException) -> str:
    """Everything an exception shows: message, repr, args and its chain."""
    texts = []
    seen: BaseException | None = error
    while seen is not None:
        texts += [str(seen), repr(seen), repr(seen.args)]
        seen = seen.__cause__ or seen.__context__
    return "\n".join(texts)


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        (dict(password="hunter2-\ud800"), ValueError),  # not encodable
        (dict(username="\ud800"), ValueError),
        (dict(uri="sip:\n"), ValueError),
        (dict(nc=0), ValueError),
        (dict(algorithm="SHA-1"), UnsupportedAlgorithm),
        (dict(qop=("x",)), ParseError),
    ],
)
def test_errors_never_show_the_password(overrides: dict, error: type) -> None:
    """No failure of authorization() carries the password or the HA1 in any form."""
    parsed = challenge(
        overrides.pop("algorithm", "MD5"), overrides.pop("qop", ("auth",)), realm="r"
    )
    args: dict = dict(
        username="u", password="hunter2", method="REGISTER", uri="sip:r", cnonce="c"
    )
    args.update(overrides)
    with pytest.raises(error) as raised:
        authorization(parsed, **args)
    shown = exception_texts(raised.value)
    assert "hunter2" not in shown
    assert hashlib.md5(b"u:r:hunter2").hexdigest() not in shown


def test_challenge_repr_holds_no_credentials() -> None:
    """Challenges are safe to log: they hold nothing of ours."""
    assert {field.name for field in dataclasses.fields(Challenge)} == {
        "realm", "nonce", "algorithm", "qop", "opaque", "stale", "domain"
    }


# --- parsing ----------------------------------------------------------------


def test_parse_is_case_and_whitespace_tolerant() -> None:
    """Scheme and names are case-insensitive; LWS, empty list items and escapes are fine."""
    parsed = parse_challenge(
        ' dIgEsT  REALM = "a \\"q\\" b" ,, NoNcE=tok-123,\r\n\t'
        'Algorithm="sha-256-SESS" , QOP="AUTH-INT , auth", Stale=TRUE,'
        ' domain="sip:a sip:b", charset=UTF-8, userhash=false ,'
    )
    assert parsed == Challenge(
        realm='a "q" b',
        nonce="tok-123",
        algorithm="SHA-256-sess",
        qop=("auth-int", "auth"),
        opaque=None,
        stale=True,
        domain="sip:a sip:b",
    )


def test_parse_folded_quoted_string() -> None:
    """A line fold inside a quoted-string reads as one space (RFC 3261 §7.3.1)."""
    parsed = parse_challenge('Digest realm="a\r\n  b", nonce="n"')
    assert parsed.realm == "a b"


@pytest.mark.parametrize(
    ("text", "stale"),
    [("stale=true", True), ('stale="true"', True), ("stale=TRUE", True),
     ("stale=false", False), ("stale=FALSE", False), ("stale=yes", False), ("", False)],
)
def test_stale(text: str, stale: bool) -> None:
    value = 'Digest realm="r", nonce="n"' + (", " + text if text else "")
    assert parse_challenge(value).stale is stale


@pytest.mark.parametrize(
    ("text", "algorithm"),
    [("", "MD5"), ("algorithm=md5", "MD5"), ("algorithm=MD5-SESS", "MD5-sess"),
     ("algorithm=sha-256", "SHA-256"), ('algorithm="SHA-512-256"', "SHA-512-256"),
     ("algorithm=sha-512-256-sess", "SHA-512-256-sess")],
)
def test_algorithm_spelling(text: str, algorithm: str) -> None:
    """Absent means MD5; any case is read and the RFC spelling is kept."""
    value = 'Digest realm="r", nonce="n"' + (", " + text if text else "")
    assert parse_challenge(value).algorithm == algorithm


def test_empty_realm_allowed() -> None:
    assert parse_challenge('Digest realm="", nonce="n"').realm == ""


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        ",",
        "Digest",
        'Basic realm="r"',
        "Basic dXNlcjpwYXNz",
        'Digest nonce="n"',
        'Digest realm="r"',
        'Digest realm="r", nonce=""',
        'Digest realm="r", nonce="n", realm="s"',
        'Digest realm="r", nonce="n", qop="x-future"',
        'Digest realm="r" nonce="n"',
        'Digest realm="r", nonce="n',
        'Digestrealm="r", nonce="n"',
        'Digest realm="r", nonce="n"; x=y',
        'Digest realm="r", nonce=n n',
        'Digest realm="r\x00", nonce="n"',
        'Digest realm="r\\\r\n", nonce="n"',
        'Digest realm="r\nx", nonce="n"',
        'Digest realm="r", nonce="n", Digest realm="s", nonce="m"',
        '"Digest" realm="r", nonce="n"',
        "Digest =",
        "Digest/abc==",
    ],
)
def test_parse_errors(value: str) -> None:
    with pytest.raises(ParseError):
        parse_challenge(value)


@pytest.mark.parametrize("algorithm", ["SHA-1", "AKAv1-MD5", "SHA-512", "token"])
def test_unknown_algorithm(algorithm: str) -> None:
    with pytest.raises(UnsupportedAlgorithm) as raised:
        parse_challenge(f'Digest realm="r", nonce="n", algorithm={algorithm}')
    assert isinstance(raised.value, ParseError)


# --- choosing among challenges ----------------------------------------------


def digest(algorithm: str | None, nonce: str = "n") -> str:
    extra = f", algorithm={algorithm}" if algorithm else ""
    return f'Digest realm="r", nonce="{nonce}", qop="auth"{extra}'


@pytest.mark.parametrize(
    ("values", "algorithm"),
    [
        ([digest("MD5"), digest("SHA-256"), digest("SHA-512-256")], "SHA-512-256"),
        ([digest("SHA-512-256-sess"), digest("SHA-256")], "SHA-512-256-sess"),
        ([digest(None), digest("SHA-256-sess")], "SHA-256-sess"),
        ([digest("SHA-1"), digest("MD5")], "MD5"),
        (['Basic realm="r"', digest("AKAv1-MD5"), digest(None)], "MD5"),
        (["garbage ===", digest("SHA-256"), 'Digest realm="r"'], "SHA-256"),
        (['Basic realm="x", ' + digest("SHA-256") + ", Negotiate abc=="], "SHA-256"),
        ([digest("MD5") + ", Bearer", digest("SHA-256") + ", Basic realm=x y"], "MD5"),
        (["Basic/dXNlcg==, " + digest("SHA-256"), digest("MD5")], "MD5"),
    ],
)
def test_choose_strongest(values: list[str], algorithm: str) -> None:
    """SHA-512-256 > SHA-256 > MD5; others skipped; a broken value is skipped whole."""
    chosen = choose_challenge(values)
    assert chosen is not None and chosen.algorithm == algorithm


def test_choose_tie_keeps_first() -> None:
    """Equal strength (a -sess variant ranks with its base): the first offered wins."""
    chosen = choose_challenge([digest("MD5", "first"), digest("MD5-sess", "second")])
    assert chosen is not None and chosen.nonce == "first"
    chosen = choose_challenge([digest("SHA-256-sess", "first"), digest("SHA-256", "second")])
    assert chosen is not None and chosen.nonce == "first"


@pytest.mark.parametrize(
    "values",
    [[], ['Basic realm="r"'], [digest("SHA-1"), "Negotiate"], ["", ",", "\x00"],
     ['Digest realm="r", nonce="n", qop="x-future"']],
)
def test_choose_nothing_usable(values: list[str]) -> None:
    assert choose_challenge(values) is None


# --- small helpers ----------------------------------------------------------


def test_new_cnonce_uses_injected_randomness() -> None:
    asked: list[int] = []

    def rand_bytes(n: int) -> bytes:
        asked.append(n)
        return bytes(range(n))

    assert new_cnonce(rand_bytes) == "000102030405060708090a0b0c0d0e0f"
    assert asked == [16]


def test_new_cnonce_default_is_random_hex() -> None:
    first, second = new_cnonce(), new_cnonce()
    assert re.fullmatch("[0-9a-f]{32}", first)
    assert first != second


@pytest.mark.parametrize(
    ("status", "name"), [(401, "Authorization"), (407, "Proxy-Authorization")]
)
def test_authorization_header_name(status: int, name: str) -> None:
    assert authorization_header_name(status) == name


@pytest.mark.parametrize("status", [200, 400, 403, 408, 423, 0])
def test_authorization_header_name_other_status(status: int) -> None:
    with pytest.raises(ValueError):
        authorization_header_name(status)


# --- properties -------------------------------------------------------------

FRAGMENTS = st.sampled_from(
    ["Digest", "digest", "Basic", " ", "\t", "\r\n ", "\n", ",", "=", '"', "\\",
     "realm", "nonce", "qop", "auth", "auth-int", "algorithm", "SHA-256", "MD5",
     "stale", "true", "opaque", "x", "é", "\x00", "==", "/"]
)
NOISE = st.one_of(st.text(), st.lists(FRAGMENTS, max_size=30).map("".join))


@settings(max_examples=400, deadline=None)
@given(NOISE)
def test_random_text_only_raises_parse_error(value: str) -> None:
    try:
        parsed = parse_challenge(value)
    except ParseError:
        return
    assert isinstance(parsed, Challenge)


@settings(max_examples=200, deadline=None)
@given(st.lists(NOISE, max_size=4))
def test_choose_never_raises(values: list[str]) -> None:
    chosen = choose_challenge(values)
    assert chosen is None or isinstance(chosen, Challenge)


SAFE_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")))


def quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@settings(max_examples=200, deadline=None)
@given(
    realm=SAFE_TEXT,
    nonce=SAFE_TEXT.filter(bool),
    algorithm=st.sampled_from(sorted(ALGORITHMS)),
    qop=st.lists(st.sampled_from(["auth", "auth-int"]), unique=True).map(tuple),
    opaque=st.none() | SAFE_TEXT,
    stale=st.booleans(),
    domain=st.none() | SAFE_TEXT,
    order=st.randoms(use_true_random=False),
)
def test_parse_round_trip(
    realm: str, nonce: str, algorithm: str, qop: tuple[str, ...],
    opaque: str | None, stale: bool, domain: str | None, order,
) -> None:
    """Whatever a server may legally quote comes back as it was, in any order."""
    params = [f"realm={quote(realm)}", f"nonce={quote(nonce)}",
              f"algorithm={algorithm.upper()}", f"stale={str(stale).lower()}"]
    if qop:
        params.append("qop=" + quote(",".join(qop)))
    if opaque is not None:
        params.append("opaque=" + quote(opaque))
    if domain is not None:
        params.append("domain=" + quote(domain))
    order.shuffle(params)
    parsed = parse_challenge("Digest " + ", ".join(params))
    assert parsed == Challenge(realm, nonce, algorithm, qop, opaque, stale, domain)


# Surrogates and control characters are what make authorization() fail.
HOSTILE_TEXT = st.text(st.characters(categories=["Cs", "Cc", "Ll", "Zs"]), max_size=8)


@settings(max_examples=200, deadline=None)
@given(
    suffix=HOSTILE_TEXT,
    username=HOSTILE_TEXT,
    uri=HOSTILE_TEXT,
    algorithm=st.sampled_from(sorted(ALGORITHMS) + ["SHA-1"]),
    nc=st.integers(-1, 2**32),
)
def test_any_failure_hides_the_password(
    suffix: str, username: str, uri: str, algorithm: str, nc: int
) -> None:
    """Whatever goes wrong, the password never appears in what the error shows."""
    try:
        authorization(
            challenge(algorithm), username=username, password="SECRET-" + suffix,
            method="REGISTER", uri=uri, cnonce="c", nc=nc,
        )
    except (SIPError, ValueError) as error:
        assert "SECRET" not in exception_texts(error)
