"""SIP URIs: parsing, serialising and RFC 3261 §19.1.4 comparison."""

from __future__ import annotations

import pytest

from uacregistrant.sip.errors import ParseError
from uacregistrant.sip.uri import URI, parse_uri, uri_equal


def test_full_uri() -> None:
    uri = parse_uri("SIPS:alice:secret@Example.COM:5061;transport=TCP;lr?Subject=hi&Priority=urgent")
    assert uri == URI(
        "sips",
        "alice",
        "secret",
        "Example.COM",
        5061,
        (("transport", "TCP"), ("lr", None)),
        (("Subject", "hi"), ("Priority", "urgent")),
    )
    assert uri.param("TRANSPORT") == "TCP"
    assert uri.param("lr") == ""
    assert uri.param("maddr") is None
    assert uri.has_param("lr") and not uri.has_param("ttl")
    assert uri.transport == "tcp"
    assert str(uri) == "sips:alice:secret@Example.COM:5061;transport=TCP;lr?Subject=hi&Priority=urgent"


@pytest.mark.parametrize(
    ("text", "transport"),
    [("sip:a@b", "udp"), ("sips:a@b", "tls"), ("sip:a@b;transport=TCP", "tcp"), ("sips:b;transport=ws", "ws")],
)
def test_transport(text: str, transport: str) -> None:
    assert parse_uri(text).transport == transport


def test_hosts() -> None:
    ipv6 = parse_uri("sip:[2001:db8::1]:5070")
    assert (ipv6.host, ipv6.bare_host, ipv6.port, ipv6.host_is_ip) == ("[2001:db8::1]", "2001:db8::1", 5070, True)
    ipv4 = parse_uri("sip:bob@192.0.2.4")
    assert (ipv4.bare_host, ipv4.host_is_ip, ipv4.port, ipv4.user) == ("192.0.2.4", True, None, "bob")
    name = parse_uri("sip:registrar.example.com.")
    assert (name.host_is_ip, name.user) == (False, None)
    assert parse_uri("sip:%61lice@example.com").user == "%61lice"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sip:",
        "tel:+15551234",
        "http://example.com",
        "sip:user@",
        "sip:user@host:0",
        "sip:user@host:65536",
        "sip:user@host:",
        "sip:user@host:5x",
        "sip:[2001:db8::1",
        "sip:[not-v6]",
        "sip:[fe80::1%25eth0]",
        "sip:us er@host",
        "sip:user@ho st",
        "sip:user@-host",
        "sip:user@host;a b",
        "sip:user@host?nohvalue",
        "sip:user@host;=v",
        "sip:a@b@c",
    ],
)
def test_rejected(text: str) -> None:
    with pytest.raises(ParseError):
        parse_uri(text)


# RFC 3261 §19.1.4: each pair is equivalent.
EQUAL = [
    ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
    ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"),
    ("sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com", "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"),
    ("sip:alice@atlanta.com?subject=project%20x&priority=urgent", "sip:alice@atlanta.com?priority=urgent&subject=project%20x"),
]

# RFC 3261 §19.1.4: each pair differs.
NOT_EQUAL = [
    ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),  # user differs in case
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),  # explicit port vs default
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),  # transport present in one
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),  # header in one
    ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),  # no DNS in comparison
]


@pytest.mark.parametrize(("a", "b"), EQUAL)
def test_rfc3261_equal(a: str, b: str) -> None:
    assert uri_equal(parse_uri(a), parse_uri(b))
    assert uri_equal(parse_uri(b), parse_uri(a))


@pytest.mark.parametrize(("a", "b"), NOT_EQUAL)
def test_rfc3261_not_equal(a: str, b: str) -> None:
    assert not uri_equal(parse_uri(a), parse_uri(b))
    assert not uri_equal(parse_uri(b), parse_uri(a))


def test_rfc3261_not_transitive() -> None:
    # "sip:carol@chicago.com;security=on" equals both of these, which differ from each other.
    a = parse_uri("sip:carol@chicago.com;security=on")
    b = parse_uri("sip:carol@chicago.com;security=off")
    assert not uri_equal(a, b)


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        ("sip:u@h;maddr=239.255.255.1", "sip:u@h", False),
        ("sip:u@h;ttl=15", "sip:u@h", False),
        ("sip:u@h;user=phone", "sip:u@h", False),
        ("sip:u@h;method=INVITE", "sip:u@h", False),
        ("sip:u@h;lr", "sip:u@h", True),
        ("sip:u@h", "sips:u@h", False),
        ("sip:u:pw@h", "sip:u@h", False),
        ("sip:u:p%77@h", "sip:u:pw@h", True),
        ("sip:[2001:db8::1]", "sip:[2001:DB8:0::1]", True),
        ("sip:u@h?a=b", "sip:u@h?a=c", False),
    ],
)
def test_parameters_and_hosts(a: str, b: str, equal: bool) -> None:
    assert uri_equal(parse_uri(a), parse_uri(b)) is equal
