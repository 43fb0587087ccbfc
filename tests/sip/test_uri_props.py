"""URI round trips and garbage input, with hypothesis."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from uacregistrant.sip.errors import ParseError
from uacregistrant.sip.uri import URI, parse_uri, uri_equal

_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_label = st.text(_ALNUM, min_size=1, max_size=8)
_hostname = st.lists(_label, min_size=1, max_size=4).map(".".join)
_ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda parts: ".".join(map(str, parts)))
_ipv6 = st.ip_addresses(v=6).map(lambda address: f"[{address}]")
_escaped = st.integers(0, 255).map(lambda octet: f"%{octet:02X}")
_user = st.lists(st.one_of(st.text(_ALNUM + "-_.!~*'()&=+$,;?/", min_size=1, max_size=4), _escaped), min_size=1, max_size=5).map("".join)
_password = st.lists(st.one_of(st.text(_ALNUM + "-_.!~*'()&=+$,", min_size=1, max_size=4), _escaped), max_size=3).map("".join)
_pname = st.text(_ALNUM + "-_.!~*'()[]/:&+$", min_size=1, max_size=8)
_params = st.lists(st.tuples(_pname, st.none() | _pname), max_size=4).map(tuple)
_hname = st.text(_ALNUM + "-_.!~*'()[]/?:+$", min_size=1, max_size=8)
_headers = st.lists(st.tuples(_hname, st.text(_ALNUM + "-_.!~*'()[]/?:+$", max_size=8)), max_size=3).map(tuple)


@st.composite
def uris(draw: st.DrawFn) -> URI:
    user = draw(st.none() | _user)
    return URI(
        scheme=draw(st.sampled_from(["sip", "sips"])),
        user=user,
        password=None if user is None else draw(st.none() | _password),
        host=draw(st.one_of(_hostname, _ipv4, _ipv6)),
        port=draw(st.none() | st.integers(1, 65535)),
        params=draw(_params),
        headers=draw(_headers),
    )


@settings(max_examples=200, deadline=None)
@given(uris())
def test_round_trip(uri: URI) -> None:
    parsed = parse_uri(str(uri))
    assert parsed == uri
    assert uri_equal(parsed, uri)
    assert str(parsed) == str(uri)


@settings(max_examples=150, deadline=None)
@given(uris(), uris())
def test_equality_is_symmetric(a: URI, b: URI) -> None:
    assert uri_equal(a, b) == uri_equal(b, a)


@settings(max_examples=600, deadline=None)
@given(st.text(max_size=60))
def test_any_text_parses_or_raises_parse_error(text: str) -> None:
    try:
        parse_uri(text)
    except ParseError:
        pass


@settings(max_examples=600, deadline=None)
@given(st.text("sip:@[]%;=?&.-0123456789abcfABCF \t<>\"", max_size=40))
def test_uri_shaped_text_parses_or_raises_parse_error(text: str) -> None:
    try:
        uri = parse_uri(text)
    except ParseError:
        return
    assert parse_uri(str(uri)) == uri
