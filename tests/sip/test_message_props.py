"""Message round trips and hostile input, with hypothesis.

Whatever the bytes, parsing and every accessor either work or raise ParseError.
"""

from __future__ import annotations

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.sip.test_message_torture import torture_message, torture_names
from uacregistrant.sip.errors import ParseError
from uacregistrant.sip.framing import StreamFramer
from uacregistrant.sip.message import Message, Request, Response, build_request, parse_message

_TOKEN = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
_tokens = st.text(_TOKEN, min_size=1, max_size=12)
# Header values: no CR/LF, no leading or trailing LWS (the parser trims it).
_values = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=30).map(
    lambda text: text.strip(" \t")
)
_names = _tokens.filter(lambda name: name.lower() not in ("content-length", "l"))
_headers = st.lists(st.tuples(_names, _values), max_size=8)
_bodies = st.binary(max_size=40)

ACCESSORS = (
    "via",
    "vias",
    "cseq",
    "call_id",
    "from_tag",
    "to_tag",
    "contacts",
    "expires",
    "min_expires",
    "retry_after",
    "www_authenticate",
    "proxy_authenticate",
)


def read_everything(message: Message) -> None:
    """Touch every accessor, as a caller might; only ParseError may come out."""
    for accessor in ACCESSORS:
        try:
            value = getattr(message, accessor)
        except ParseError:
            continue
        if accessor == "via":
            for name in ("branch", "received", "rport"):
                try:
                    getattr(value, name)
                except ParseError:
                    pass
        elif accessor == "contacts":
            for contact in value:
                try:
                    contact.expires
                except ParseError:
                    pass
    message.to_bytes()


@settings(max_examples=200, deadline=None)
@given(_tokens, st.sampled_from(["sip:a@example.com", "sips:[::1]:5061;transport=tcp", "tel:+1555"]), _headers, _bodies)
def test_request_round_trip(method: str, uri: str, headers: list[tuple[str, str]], body: bytes) -> None:
    data = build_request(method, uri, headers, body)
    for stream in (False, True):
        request = parse_message(data, stream=stream)
        assert isinstance(request, Request)
        assert (request.method, request.uri, request.body) == (method, uri, body)
        assert request.headers == headers + [("Content-Length", str(len(body)))]
        assert request.to_bytes() == data


@settings(max_examples=200, deadline=None)
@given(st.integers(100, 699), _values, _headers, _bodies)
def test_response_round_trip(status: int, reason: str, headers: list[tuple[str, str]], body: bytes) -> None:
    data = Response(status, reason, headers, body).to_bytes()
    response = parse_message(data)
    assert isinstance(response, Response)
    assert (response.status, response.reason, response.body) == (status, reason, body)
    assert response.headers == headers + [("Content-Length", str(len(body)))]


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**31 - 1), _tokens, st.integers(0, 2**32 - 1), st.text("abcdef0123456789", min_size=1, max_size=20))
def test_accessor_round_trip(number: int, method: str, expires: int, tag: str) -> None:
    data = build_request(
        method,
        "sip:r",
        [
            ("Via", f"SIP/2.0/TCP h.example:5060;branch=z9hG4bK{tag};rport"),
            ("CSeq", f"{number} {method}"),
            ("From", f"<sip:a@h>;tag={tag}"),
            ("To", "sip:a@h"),
            ("Contact", f'"{tag}" <sip:a@h;transport=tcp>;expires={expires}'),
            ("Expires", str(expires)),
        ],
    )
    request = parse_message(data)
    assert request.via.branch == f"z9hG4bK{tag}"
    assert (request.cseq.number, request.cseq.method) == (number, method)
    assert (request.from_tag, request.to_tag) == (tag, None)
    (contact,) = request.contacts
    assert (contact.display_name, contact.uri, contact.expires) == (tag, "sip:a@h;transport=tcp", expires)
    assert request.expires == expires


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=300))
@example(b"SIP/2.0 200 OK\r\nl: " + b"9" * 5000 + b"\r\n\r\n")
def test_random_bytes(data: bytes) -> None:
    for stream in (False, True):
        try:
            message = parse_message(data, stream=stream)
        except ParseError:
            continue
        read_everything(message)


SEEDS = [torture_message(name) for name in torture_names()]
_SPICE = [b"\r\n", b" ", b"\t", b":", b";", b",", b'"', b"<", b">", b"\\", b"%", b"\x00", b"\xff", b"=", b"[", b"]", b"0", b"9" * 12]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        position = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        if action == "insert":
            data[position:position] = draw(st.sampled_from(_SPICE))
        elif action == "delete":
            del data[position : position + draw(st.integers(1, 8))]
        else:
            data[position : position + 1] = draw(st.sampled_from(_SPICE))
    return bytes(data)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_torture_messages(data: bytes) -> None:
    for stream in (False, True):
        try:
            message = parse_message(data, stream=stream)
        except ParseError:
            continue
        read_everything(message)
    framer = StreamFramer()
    try:
        for message_bytes in framer.feed(data):
            read_everything(parse_message(message_bytes, stream=True))
    except ParseError:
        pass


_FIELDS = ["Via", "v", "CSeq", "Call-ID", "From", "To", "Contact", "m", "Expires", "Min-Expires", "Retry-After"]
_value_text = st.lists(
    st.sampled_from(list('sip:SIP/2.0UDP a@h[::1]<>";,=\\ \t%0129xé') + ["tag", "branch", "expires", "rport", "SIP/2.0/UDP "]),
    max_size=30,
).map("".join)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_FIELDS), _value_text), max_size=4))
def test_header_values_raise_parse_error_only(fields: list[tuple[str, str]]) -> None:
    data = "".join(f"{name}: {value}\r\n" for name, value in fields).encode()
    try:
        message = parse_message(b"SIP/2.0 200 OK\r\n" + data + b"\r\n")
    except ParseError:
        return
    read_everything(message)
