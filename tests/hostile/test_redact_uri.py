"""A password in a URI's user part never shows where URIs are displayed."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uacregistrant.sip.errors import ParseError
from uacregistrant.sip.uri import parse_uri, redact_uri


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("sip:bob:secret@example.com", "sip:bob:***@example.com"),
        ("sips:bob:s%40cret@example.com:5061;transport=tls", "sips:bob:***@example.com:5061;transport=tls"),
        ("sip:bob:@example.com", "sip:bob:***@example.com"),
        ("sip:bob@example.com", "sip:bob@example.com"),
        ("sip:example.com:5060", "sip:example.com:5060"),
        ("not a uri", "not a uri"),
        ("", ""),
    ],
)
def test_redact_uri(text: str, shown: str) -> None:
    assert redact_uri(text) == shown


_password = st.text(alphabet="abcXYZ019-_.!~*'()&=+$,%", min_size=1, max_size=12)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["sip", "sips"]),
    st.from_regex(r"[a-z0-9.\-]{1,10}", fullmatch=True),
    _password,
    st.sampled_from(["example.com", "127.0.0.1:5060", "[::1]", "h.test;transport=tcp"]),
)
def test_only_the_password_changes(scheme: str, user: str, password: str, hostpart: str) -> None:
    text = f"{scheme}:{user}:{password}@{hostpart}"
    try:
        uri = parse_uri(text)
    except ParseError:
        return
    shown = redact_uri(text)
    if password != "***":
        assert f":{password}@" not in shown
    assert parse_uri(shown) == dataclasses.replace(uri, password="***")


def test_reg_list_view_masks_a_kept_password() -> None:
    from tests.registrant.fakes import make_engine
    from uacregistrant.mi.listing import Listing
    from uacregistrant.registrant.record import RecordConfig

    config = RecordConfig(registrar="sip:r.test", aor="sip:bob:secret@example.com",
                          binding_uri="sip:bob:secret@127.0.0.1", expiry=600,
                          third_party_registrant="sip:tp:secret@example.com",
                          proxy="sip:p.test")
    engine, _, _ = make_engine()
    view = Listing(engine).view(engine.upsert(config))
    assert "secret" not in repr(view)
    assert view["AOR"] == "sip:bob:***@example.com"
