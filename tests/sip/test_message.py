"""SIP message parsing, accessors, serialising and responses (RFC 3261 §7, §8.2.6, §20)."""

from __future__ import annotations

import pytest

from uacregistrant.sip.errors import ParseError
from uacregistrant.sip.message import (
    Contact,
    CSeq,
    Request,
    Response,
    Via,
    build_request,
    parse_message,
    parse_name_addr,
    response_for,
)

OK = (
    b"SIP/2.0 200 OK\r\n"
    b"v: SIP/2.0/UDP 192.0.2.10:5060;received=198.51.100.1;rport=6060;branch=z9hG4bK1\r\n"
    b"Via: SIP/2.0/TCP [2001:db8::9];branch=z9hG4bK2, SIP/2.0/UDP proxy.example.com\r\n"
    b'f: "Alice, A." <sip:alice@example.com>;tag=from1\r\n'
    b"t: <sip:alice@example.com>;tag=to1\r\n"
    b"i: abc@192.0.2.10\r\n"
    b"CSeq: 42 REGISTER\r\n"
    b'm: <sip:alice@192.0.2.10;transport=udp>;expires=3600;q=0.5, "Bob, B" <sip:bob@h>;expires="60"\r\n'
    b"Contact: sip:carol@h;expires=10\r\n"
    b"Expires: 3600\r\n"
    b'WWW-Authenticate: Digest realm="a", nonce="1,2"\r\n'
    b'WWW-Authenticate: Digest realm="b", nonce="3", algorithm=SHA-256\r\n'
    b'Proxy-Authenticate: Digest realm="p", nonce="4"\r\n'
    b"Min-Expires: 60\r\n"
    b"Retry-After: 18000 (in five hours);duration=3600\r\n"
    b"l: 4\r\n"
    b"\r\n"
    b"body"
)


def test_response_accessors() -> None:
    reply = parse_message(OK)
    assert isinstance(reply, Response)
    assert (reply.status, reply.reason, reply.body) == (200, "OK", b"body")
    assert reply.via == Via("UDP", "192.0.2.10", 5060, (("received", "198.51.100.1"), ("rport", "6060"), ("branch", "z9hG4bK1")))
    assert (reply.via.branch, reply.via.received, reply.via.rport) == ("z9hG4bK1", "198.51.100.1", 6060)
    assert [(via.transport, via.host, via.port, via.branch) for via in reply.vias] == [
        ("UDP", "192.0.2.10", 5060, "z9hG4bK1"),
        ("TCP", "[2001:db8::9]", None, "z9hG4bK2"),
        ("UDP", "proxy.example.com", None, None),
    ]
    assert reply.cseq == CSeq(42, "REGISTER")
    assert reply.call_id == "abc@192.0.2.10"
    assert (reply.from_tag, reply.to_tag) == ("from1", "to1")
    assert reply.contacts == [
        Contact("sip:alice@192.0.2.10;transport=udp", None, (("expires", "3600"), ("q", "0.5"))),
        Contact("sip:bob@h", "Bob, B", (("expires", "60"),)),
        Contact("sip:carol@h", None, (("expires", "10"),)),
    ]
    assert [contact.expires for contact in reply.contacts] == [3600, 60, 10]
    assert (reply.expires, reply.min_expires, reply.retry_after) == (3600, 60, 18000)
    assert reply.www_authenticate == ['Digest realm="a", nonce="1,2"', 'Digest realm="b", nonce="3", algorithm=SHA-256']
    assert reply.proxy_authenticate == ['Digest realm="p", nonce="4"']


def test_header_names_are_case_insensitive_and_compact() -> None:
    reply = parse_message(OK)
    assert reply.header("CALL-ID") == reply.header("i") == "abc@192.0.2.10"
    assert reply.header("from") == '"Alice, A." <sip:alice@example.com>;tag=from1'
    assert reply.header("content-length") == "4"
    assert reply.header("X-Missing") is None
    assert reply.header_values("x-missing") == []
    assert reply.header_values("Via")[1] == "SIP/2.0/TCP [2001:db8::9];branch=z9hG4bK2"
    assert reply.headers[0] == ("v", "SIP/2.0/UDP 192.0.2.10:5060;received=198.51.100.1;rport=6060;branch=z9hG4bK1")


def test_absent_optional_headers() -> None:
    reply = parse_message(b"SIP/2.0 100 Trying\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nContent-Length: 0\r\n\r\n")
    assert (reply.expires, reply.min_expires, reply.retry_after, reply.contacts) == (None, None, None, [])
    assert reply.www_authenticate == [] and reply.proxy_authenticate == []
    for accessor in ("cseq", "call_id", "from_tag", "to_tag"):
        with pytest.raises(ParseError):
            getattr(reply, accessor)


def test_star_contact_and_flag_params() -> None:
    request = parse_message(b"REGISTER sip:r SIP/2.0\r\nContact: *\r\nm: <sip:a@h>;flag;+sip.instance=\"<urn:x>\"\r\n\r\n")
    star, flagged = request.contacts
    assert star.is_star and star.expires is None
    assert not flagged.is_star
    assert flagged.param("FLAG") == "" and flagged.param("+sip.instance") == "<urn:x>"
    assert flagged.param("expires") is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("<sip:a@h>", (None, "sip:a@h", ())),
        ("sip:a@h;tag=1", (None, "sip:a@h", (("tag", "1"),))),
        ('"A \\"q\\" B" <sip:a@h> ; tag = 2', ('A "q" B', "sip:a@h", (("tag", "2"),))),
        ("Some  Body <sips:b@h;lr>;Tag=X", ("Some Body", "sips:b@h;lr", (("tag", "X"),))),
        ('"" <tel:+1555>', ("", "tel:+1555", ())),
    ],
)
def test_parse_name_addr(value: str, expected: tuple[object, ...]) -> None:
    assert parse_name_addr(value) == expected


@pytest.mark.parametrize(
    "value",
    ['"open <sip:a@h>', "<sip:a@h", "a, b <sip:a@h>", "sip:a@h?x=y", "no-scheme", "<sip:a @h>", "<sip:a@h>;;", "< sip:a@h>"],
)
def test_parse_name_addr_rejects(value: str) -> None:
    with pytest.raises(ParseError):
        parse_name_addr(value)


@pytest.mark.parametrize(
    ("header", "accessor"),
    [
        ("Via: SIP/3.0/UDP h", "via"),
        ("Via: SIP/2.0/UDP h:0", "via"),
        ("Via: SIP/2.0/UDP h:70000", "via"),
        ("Via: SIP/2.0/UDP [::1", "via"),
        ("Via: SIP/2.0/UDP h;rport=x", "via"),
        ("CSeq: 2147483648 REGISTER", "cseq"),
        ("CSeq: REGISTER", "cseq"),
        ("CSeq: 1", "cseq"),
        ("Call-ID: a b", "call_id"),
        ("Call-ID:", "call_id"),
        ("Expires: -1", "expires"),
        ("Expires: 4294967296", "expires"),
        ("Min-Expires: soon", "min_expires"),
        ("Retry-After: later", "retry_after"),
        ('Contact: "x <sip:a@h>', "contacts"),
        ("Contact: <sip:a@h>, <sip:b@h", "contacts"),
    ],
)
def test_malformed_values_raise_on_access(header: str, accessor: str) -> None:
    message = parse_message(f"SIP/2.0 200 OK\r\n{header}\r\n\r\n".encode())
    with pytest.raises(ParseError):
        value = getattr(message, accessor)
        if accessor == "via":
            value.rport  # type: ignore[union-attr]


def test_request_line_and_folding() -> None:
    request = parse_message(b"REGISTER sips:[::1]:5061 SIP/2.0\r\nSubject: one\r\n  two\r\n\tthree\r\nX:\r\n\r\n")
    assert isinstance(request, Request)
    assert (request.method, request.uri) == ("REGISTER", "sips:[::1]:5061")
    assert request.headers == [("Subject", "one two three"), ("X", "")]


def test_datagram_content_length() -> None:
    start = b"SIP/2.0 200 OK\r\n"
    assert parse_message(start + b"\r\nrest of the datagram").body == b"rest of the datagram"
    assert parse_message(start + b"Content-Length: 3\r\n\r\nabcdef").body == b"abc"
    assert parse_message(start + b"Content-Length: 3\r\nl: 3\r\n\r\nabc").body == b"abc"
    with pytest.raises(ParseError, match="shorter"):
        parse_message(start + b"Content-Length: 7\r\n\r\nabc")


def test_stream_content_length() -> None:
    start = b"SIP/2.0 200 OK\r\n"
    assert parse_message(start + b"l: 3\r\n\r\nabc", stream=True).body == b"abc"
    with pytest.raises(ParseError, match="missing Content-Length"):
        parse_message(start + b"\r\n", stream=True)
    with pytest.raises(ParseError, match="after the body"):
        parse_message(start + b"l: 1\r\n\r\nabc", stream=True)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"SIP/2.0 200 OK\r\n",
        b"SIP/2.0 200 OK\r\nVia: x\r\n",
        b"SIP/2.0 99 Low\r\n\r\n",
        b"SIP/2.0 700 High\r\n\r\n",
        b"SIP/2.0 2000 OK\r\n\r\n",
        b"SIP/2.0 2OO OK\r\n\r\n",
        b"SIP/2.1 200 OK\r\n\r\n",
        b"SIP/2.0\r\n\r\n",
        b"REGISTER sip:r SIP/1.0\r\n\r\n",
        b"REGISTER sip:r\r\n\r\n",
        b"REG(STER sip:r SIP/2.0\r\n\r\n",
        b"REGISTER sip:r;x SIP/2.0 extra\r\n\r\n",
        b"REGISTER noscheme SIP/2.0\r\n\r\n",
        b"REGISTER sip:@ SIP/2.0\r\n\r\n",
        b"SIP/2.0 200 OK\r\nNo colon here\r\n\r\n",
        b"SIP/2.0 200 OK\r\nBad name: x\r\n\r\n",
        b"SIP/2.0 200 OK\r\n: x\r\n\r\n",
        b"SIP/2.0 200 OK\r\nVia: a\rb\r\n\r\n",
        b"SIP/2.0 200 OK\r\nVia: a\nb\r\n\r\n",
        b"SIP/2.0 200 OK\r\nX: \xff\r\n\r\n",
        b"SIP/2.0 200 OK\r\nContent-Length: 1e3\r\n\r\n",
        b"SIP/2.0 200 OK\r\nContent-Length: \xd9\xa3\r\n\r\n",
        b"SIP/2.0 200 OK\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n",
        b"SIP/2.0 200 OK\r\nContent-Length: 1\r\nl: 2\r\n\r\nab",
    ],
)
def test_rejected_messages(data: bytes) -> None:
    with pytest.raises(ParseError):
        parse_message(data)


HEADERS = [
    ("Via", "SIP/2.0/UDP 192.0.2.1:5060;rport;branch=z9hG4bKabc"),
    ("Max-Forwards", "70"),
    ("From", "<sip:alice@example.com>;tag=1"),
    ("To", "<sip:alice@example.com>"),
    ("Call-ID", "cid@192.0.2.1"),
    ("CSeq", "7 REGISTER"),
]


def test_build_request() -> None:
    data = build_request("REGISTER", "sip:example.com", HEADERS + [("Content-Length", "99")], b"xyz")
    assert data.startswith(b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;rport;branch=z9hG4bKabc\r\n")
    assert data.endswith(b"\r\nContent-Length: 3\r\n\r\nxyz")
    assert data.count(b"Content-Length") == 1
    request = parse_message(data, stream=True)
    assert isinstance(request, Request)
    assert request.headers == HEADERS + [("Content-Length", "3")]
    assert request.via.rport is None and request.via.has_param("rport")


def test_to_bytes_rewrites_content_length() -> None:
    response = Response(200, "OK", [("l", "0"), ("X", "y")], b"hello")
    assert response.to_bytes() == b"SIP/2.0 200 OK\r\nContent-Length: 5\r\nX: y\r\n\r\nhello"
    request = Request("OPTIONS", "sip:h", [("X", "y")])
    assert request.to_bytes() == b"OPTIONS sip:h SIP/2.0\r\nX: y\r\nContent-Length: 0\r\n\r\n"
    assert parse_message(response.to_bytes()) == response.__class__(200, "OK", [("Content-Length", "5"), ("X", "y")], b"hello")


def test_response_for_copies_and_tags() -> None:
    request = parse_message(build_request("OPTIONS", "sip:ua@192.0.2.1", HEADERS[:1] + [("v", "SIP/2.0/UDP p;branch=z9hG4bKp")] + HEADERS[1:] + [("Accept", "application/sdp")]))
    assert isinstance(request, Request)
    response = response_for(request, 200, "OK", [("Allow", "OPTIONS")], to_tag="totag")
    assert response.status == 200 and response.reason == "OK"
    assert response.headers == [
        ("Via", "SIP/2.0/UDP 192.0.2.1:5060;rport;branch=z9hG4bKabc"),
        ("Via", "SIP/2.0/UDP p;branch=z9hG4bKp"),
        ("From", "<sip:alice@example.com>;tag=1"),
        ("To", "<sip:alice@example.com>;tag=totag"),
        ("Call-ID", "cid@192.0.2.1"),
        ("CSeq", "7 REGISTER"),
        ("Allow", "OPTIONS"),
    ]
    assert parse_message(response.to_bytes()).to_tag == "totag"
    # A To that already has a tag keeps it; a 100 may go without one.
    tagged = Request("OPTIONS", "sip:h", [(name, value + ";tag=old" if name == "To" else value) for name, value in HEADERS])
    assert response_for(tagged, 200, "OK", to_tag="new").to_tag == "old"
    assert response_for(request, 100, "Trying").to_tag is None


def test_response_for_needs_the_dialog_headers() -> None:
    with pytest.raises(ParseError):
        response_for(Request("OPTIONS", "sip:h", HEADERS[:2]), 200, "OK", to_tag="t")


def test_via_str() -> None:
    via = Via("TLS", "[::1]", 5061, (("branch", "z9hG4bK1"), ("rport", None)))
    assert str(via) == "SIP/2.0/TLS [::1]:5061;branch=z9hG4bK1;rport"
    assert str(Via("UDP", "h", None)) == "SIP/2.0/UDP h"
    assert str(CSeq(3, "REGISTER")) == "3 REGISTER"
