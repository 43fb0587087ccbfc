"""RFC 4475 torture messages at the level of this codec.

The codec checks framing (start line, SIP version, status code, header line shape,
Content-Length) when it parses, and a header value only when an accessor reads it.
So a message whose damage lies in the start line or the framing is a ParseError
from ``parse_message``; a message whose damage lies in one header value parses,
and the accessor for that header raises ParseError; semantic oddities (method
mismatch, missing headers, unknown schemes, broadcast "received") parse, since
deciding about them belongs to the layers above.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from uacregistrant.sip.errors import ParseError
from uacregistrant.sip.message import Request, Response, parse_message
from uacregistrant.sip.uri import parse_uri

TORTURE = Path(__file__).parent / "torture"

_ONE_LINE = re.compile(r"<allOneLine>\n?(.*?)</allOneLine>", re.S)
_HEX = re.compile(r"<hex>([0-9A-Fa-f]*)</hex>")


def torture_message(name: str) -> bytes:
    """The octets of a torture file: LF becomes CRLF, <hex> and <allOneLine> expanded."""
    text = (TORTURE / f"{name}.dat").read_text("utf-8")
    text = _ONE_LINE.sub(lambda match: match.group(1).replace("\n", ""), text)
    data = bytearray()
    pos = 0
    for match in _HEX.finditer(text):
        data += text[pos : match.start()].replace("\n", "\r\n").encode("utf-8")
        data += bytes.fromhex(match.group(1))
        pos = match.end()
    data += text[pos:].replace("\n", "\r\n").encode("utf-8")
    return bytes(data)


def torture_names() -> list[str]:
    return sorted(path.stem for path in TORTURE.glob("*.dat"))


# Rejected by parse_message, with the reason.
REJECTED = {
    "badvers": "unsupported SIP version",  # SIP/7.0
    "bigcode": "bad status code",  # 4294967301
    "clerr": "body shorter than Content-Length",  # 9999 announced
    "ncl": "malformed Content-Length",  # -999
    "mcl01": "conflicting Content-Length values",  # 13 and 5
    "escruri": "headers in the Request-URI",  # ?Route=... not allowed there
    "ltgtruri": "malformed Request-URI",  # <sip:...> in the request line
    "lwsruri": "malformed request line",  # "sip:user@example.com; lr"
    "lwsstart": "malformed request line",  # two SP between elements
    "trws": "malformed request line",  # SP after SIP/2.0
}

# Parsed; reading the named accessor raises ParseError (the damaged header).
BAD_ACCESSOR = {
    "badinv01": ["via", "contacts"],  # ";;,;,," and ";;;;" are empty parameters
    "quotbal": ["to_tag"],  # unterminated quoted display name
    "badaspec": ["to_tag"],  # spaces inside <>
    "baddn": ["from_tag", "to_tag"],  # "Bell, Alexander" unquoted with a comma
    "regbadct": ["contacts"],  # addr-spec with "?" needs <>
    "scalar02": ["cseq", "expires"],  # CSeq >= 2**31, delta-seconds >= 2**32
    "scalarlg": ["cseq", "retry_after"],
    "insuf": ["call_id", "from_tag", "to_tag"],  # required headers missing
}


def test_every_file_is_classified() -> None:
    parsed_fine = set(torture_names()) - REJECTED.keys()
    assert parsed_fine >= BAD_ACCESSOR.keys()
    assert set(REJECTED) <= set(torture_names())


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_rejected(name: str) -> None:
    with pytest.raises(ParseError, match=re.escape(REJECTED[name])):
        parse_message(torture_message(name))


@pytest.mark.parametrize("name", sorted(set(torture_names()) - REJECTED.keys()))
def test_parses_and_reads(name: str) -> None:
    message = parse_message(torture_message(name))
    assert message.headers
    for accessor in BAD_ACCESSOR.get(name, []):
        with pytest.raises(ParseError):
            getattr(message, accessor)
    safe = {"via", "cseq", "call_id", "from_tag", "to_tag", "contacts", "expires", "retry_after"}
    for accessor in sorted(safe - set(BAD_ACCESSOR.get(name, []))):
        if message.header(accessor.replace("_tag", "").replace("_", "-")) is not None or accessor == "contacts":
            getattr(message, accessor)


def test_wsinv_folding_and_lws() -> None:
    message = parse_message(torture_message("wsinv"))
    assert isinstance(message, Request)
    assert message.method == "INVITE"
    assert message.uri == "sip:vivekg@chair-dnrc.example.com;unknownparam"
    assert message.to_tag == "1918181833n"
    assert message.from_tag == "98asjd8"
    assert message.cseq.number == 9 and message.cseq.method == "INVITE"
    assert message.header("max-forwards") == "0068"
    assert message.header("NewFangledHeader") == "newfangled value continued newfangled value"
    assert message.header("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert message.header("Subject") == ""
    vias = message.vias
    assert [(via.transport, via.host, via.branch) for via in vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    (contact,) = message.contacts
    assert contact.display_name == 'Quoted string ""'
    assert contact.uri == "sip:jdrosen@example.com"
    assert contact.params == (("newparam", "newvalue"), ("secondparam", None), ("q", "0.33"))
    assert len(message.body) == 150


def test_intmeth_unusual_tokens() -> None:
    message = parse_message(torture_message("intmeth"))
    assert isinstance(message, Request)
    assert message.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert message.cseq.method == message.method
    assert message.via.branch == "z9hG4bK-.!%66*_+`'~"
    assert message.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert message.from_tag == "_token~1'+`*%!-."
    assert message.header("extensionHeader-!.%*+_`'~") == "\ufeff大停電"
    uri = parse_uri(message.uri)
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert uri.host == "example.com"


def test_esc01_escapes_in_uris() -> None:
    message = parse_message(torture_message("esc01"))
    assert isinstance(message, Request)
    uri = parse_uri(message.uri)
    assert uri.user == "sips%3Auser%40example.com"
    assert uri.host == "example.net"
    (contact,) = message.contacts
    contact_uri = parse_uri(contact.uri)
    assert contact_uri.params == (("%6C%72", None), ("n%61me", "v%61lue%25%34%31"))
    assert message.header("c") == "application/sdp"


def test_escnull_and_esc02() -> None:
    message = parse_message(torture_message("escnull"))
    assert [parse_uri(contact.uri).user for contact in message.contacts] == ["%00", "%00%00"]
    esc02 = parse_message(torture_message("esc02"))
    assert isinstance(esc02, Request)
    assert esc02.method == "RE%47IST%45R"  # a different method from REGISTER
    # "C%6Fntact" is an unknown header, not a Contact.
    assert [contact.uri for contact in esc02.contacts] == ["sip:alias1@host1.example.com", "sip:alias3@host3.example.com"]
    assert esc02.header("C%6Fntact") == "<sip:alias2@host2.example.com>"
    assert esc02.via.branch == "z9hG4bK209%fzsnel234"
    assert esc02.to_tag is None  # '"%Z%45"' is a quoted display name, nothing to unescape
    assert esc02.from_tag == "f232jadfj23"


def test_lwsdisp_semiuri_transports() -> None:
    assert parse_message(torture_message("lwsdisp")).from_tag == "323"
    semiuri = parse_message(torture_message("semiuri"))
    assert isinstance(semiuri, Request)
    uri = parse_uri(semiuri.uri)
    # The ";" belongs to the user part: the URI has no parameters.
    assert (uri.user, uri.host, uri.params) == ("user;par=u%40example.net", "example.com", ())
    assert semiuri.header_values("Accept")[-1] == "message/sipfrag"
    transports = parse_message(torture_message("transports"))
    assert [via.transport for via in transports.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    assert transports.call_id == "transports.kijh4akdnaqjkwendsasfdj"


def test_dblreq_datagram_keeps_the_first_message() -> None:
    message = parse_message(torture_message("dblreq"))
    assert isinstance(message, Request)
    assert message.method == "REGISTER"
    assert message.body == b""
    assert message.call_id == "dblreq.0ha0isndaksdj99sdfafnl3lk233412"


def test_responses_with_odd_reasons() -> None:
    unreason = parse_message(torture_message("unreason"))
    assert isinstance(unreason, Response)
    assert unreason.status == 200
    assert unreason.reason.startswith("= 2**3 * 5**2 но")
    assert len(unreason.body) == 154
    noreason = parse_message(torture_message("noreason"))
    assert isinstance(noreason, Response)
    assert (noreason.status, noreason.reason) == (100, "")


def test_semantic_oddities_parse() -> None:
    mismatch = parse_message(torture_message("mismatch01"))
    assert isinstance(mismatch, Request)
    assert (mismatch.method, mismatch.cseq.method) == ("OPTIONS", "INVITE")
    unkscm = parse_message(torture_message("unkscm"))
    assert isinstance(unkscm, Request)
    assert unkscm.uri == "nobodyKnowsThisScheme:totallyopaquecontent"
    unksm2 = parse_message(torture_message("unksm2"))
    assert unksm2.to_tag is None
    assert [contact.uri for contact in unksm2.contacts] == ["name:John_Smith"]
    bcast = parse_message(torture_message("bcast"))
    assert bcast.via.received == "255.255.255.255"
    assert parse_message(torture_message("zeromf")).header("Max-Forwards") == "0"
    assert parse_message(torture_message("bext01")).header_values("Proxy-Require") == [
        "noProxiesSupportThis",
        "nothingSupportedHere",
    ]
    assert parse_message(torture_message("baddate")).header("Date") == "Fri, 01 Jan 2010 16:00:00 EST"
    multi = parse_message(torture_message("multi01"))
    assert multi.cseq.number == 5  # the first of two; deciding about duplicates is not the codec's job
    assert multi.header_values("To") == ["sip:user@example.com", "sip:other@example.net"]


def test_overlarge_contact_expires() -> None:
    (contact,) = parse_message(torture_message("scalar02")).contacts
    with pytest.raises(ParseError):
        contact.expires


def test_contact_params_belong_to_the_header_without_brackets() -> None:
    # RFC 4475 §3.3.12: cparam01 has a header parameter, cparam02 a URI parameter.
    (header_param,) = parse_message(torture_message("cparam01")).contacts
    assert header_param.uri == "sip:+19725552222@gw1.example.net"
    assert header_param.params == (("unknownparam", None),)
    (uri_param,) = parse_message(torture_message("cparam02")).contacts
    assert uri_param.uri == "sip:+19725552222@gw1.example.net;unknownparam"
    assert uri_param.params == ()
