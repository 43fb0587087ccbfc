"""Every header value the registrant reads parses strictly: ASCII digits only, one error type.

``str.isdigit()`` and ``int()`` accept more than RFC 3261's DIGIT (ASCII 0-9):
superscripts pass the first and fail the second, other scripts' digits pass
both.  A reply must never raise anything but ParseError from an accessor.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uacregistrant.sip.errors import ParseError
from uacregistrant.sip.message import Response, parse_message

# Arabic-Indic, superscript, fullwidth, Devanagari, mixed with ASCII.
UNICODE_DIGITS = ["\u0663\u0666\u0660\u0660", "\u00b2", "\uff13\uff16\uff10\uff10", "\u0967\u0968", "6\u0660"]


def response(*headers: tuple[str, str]) -> Response:
    return Response(200, "OK", list(headers))


def contact_expires(value: str) -> int | None:
    return response(("Contact", f"<sip:a@h>;expires={value}")).contacts[0].expires


def rport(value: str) -> int | None:
    return response(("Via", f"SIP/2.0/UDP h;rport={value}")).via.rport


def via_port(value: str) -> int | None:
    return response(("Via", f"SIP/2.0/UDP h:{value};branch=z9hG4bK1")).via.port


def cseq(value: str) -> int:
    return response(("CSeq", f"{value} REGISTER")).cseq.number


ACCESSORS = {
    "Expires": lambda v: response(("Expires", v)).expires,
    "Min-Expires": lambda v: response(("Min-Expires", v)).min_expires,
    "Retry-After": lambda v: response(("Retry-After", v)).retry_after,
    "Flow-Timer": lambda v: response(("Flow-Timer", v)).flow_timer,
    "Contact expires": contact_expires,
    "Via rport": rport,
    "Via port": via_port,
    "CSeq": cseq,
}


@pytest.mark.parametrize("name", sorted(ACCESSORS))
@pytest.mark.parametrize("value", UNICODE_DIGITS)
def test_non_ascii_digits_are_a_parse_error(name: str, value: str) -> None:
    with pytest.raises(ParseError):
        ACCESSORS[name](value)


@pytest.mark.parametrize("name", sorted(ACCESSORS))
def test_ascii_digits_parse(name: str) -> None:
    assert ACCESSORS[name]("3600") == 3600


@pytest.mark.parametrize("name", ["Expires", "Min-Expires", "Retry-After", "Flow-Timer", "Contact expires"])
@pytest.mark.parametrize("value", ["", "-1", "+5", "1e3", "0x10", "4294967296", "9" * 5000, "1 2"])
def test_bad_delta_seconds_are_a_parse_error(name: str, value: str) -> None:
    with pytest.raises(ParseError):
        ACCESSORS[name](value)


def test_flow_timer_absent_is_none() -> None:
    assert response().flow_timer is None


@pytest.mark.parametrize("value", ["\u212a", "\u017f", "\u0131"])
def test_via_host_is_ascii_only(value: str) -> None:
    with pytest.raises(ParseError):
        response(("Via", f"SIP/2.0/UDP  {value}host")).via


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(sorted(ACCESSORS)), value=st.text(max_size=30))
def test_any_value_gives_a_number_in_range_or_a_parse_error(name: str, value: str) -> None:
    try:
        result = ACCESSORS[name](value)
    except ParseError:
        return
    assert result is None or (isinstance(result, int) and 0 <= result < 2**32)


def test_digest_challenge_with_control_characters_is_skipped() -> None:
    from uacregistrant.sip import digest

    bad = 'Digest realm="a\x01b", nonce="n"'
    assert digest.choose_challenge([bad]) is None
    reply = parse_message(b"SIP/2.0 401 Unauthorized\r\nWWW-Authenticate: Digest realm=\"r\", nonce=\"\xd9\xa3\"\r\n\r\n")
    challenge = digest.choose_challenge(reply.www_authenticate)
    assert challenge is not None and challenge.nonce == "\u0663"
