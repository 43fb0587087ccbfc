"""Cutting a TCP/TLS byte stream into SIP messages (RFC 3261 §18.3, RFC 5626 §3.5.1)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uacregistrant.sip.errors import ParseError
from uacregistrant.sip.framing import StreamFramer
from uacregistrant.sip.message import build_request, parse_message

OPTIONS = build_request("OPTIONS", "sip:h", [("Via", "SIP/2.0/TCP h;branch=z9hG4bK1"), ("CSeq", "1 OPTIONS")])
WITH_BODY = build_request("MESSAGE", "sip:h", [("Via", "SIP/2.0/TCP h;branch=z9hG4bK2")], b"hello\r\n\r\nworld")
COMPACT = b"SIP/2.0 200 OK\r\nv: SIP/2.0/TCP h;branch=z9hG4bK3\r\nL : 2\r\n\r\nok"


def test_whole_messages_in_one_read() -> None:
    framer = StreamFramer()
    assert framer.feed(OPTIONS + WITH_BODY + COMPACT) == [OPTIONS, WITH_BODY, COMPACT]
    assert framer.keepalives == 0
    assert parse_message(framer.feed(OPTIONS)[0], stream=True).cseq.number == 1


def test_byte_by_byte() -> None:
    framer = StreamFramer()
    data = WITH_BODY + OPTIONS
    received = [message for index in range(len(data)) for message in framer.feed(data[index : index + 1])]
    assert received == [WITH_BODY, OPTIONS]


def test_keepalives_between_messages() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r\n") == []  # a ping
    assert framer.keepalives == 1
    assert framer.feed(b"\r\n" + OPTIONS + b"\r\n\r\n" + COMPACT) == [OPTIONS, COMPACT]
    assert framer.keepalives == 3  # a pong, then a ping
    assert framer.feed(b"\r\n") == [] and framer.feed(b"\r\n") == []  # a ping split in two reads
    assert framer.keepalives == 5


@pytest.mark.parametrize(
    "data",
    [
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP h\r\n\r\n",
        b"SIP/2.0 200 OK\r\nContent-Length: 1\r\nl: 2\r\n\r\nab",
        b"SIP/2.0 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"SIP/2.0 200 OK\r\nContent-Length: x\r\n\r\n",
        b"SIP/2.0 200 OK\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n",
        b"SIP/2.0 200 OK\r\nContent-Length: 2000000\r\n\r\n",
    ],
)
def test_broken_framing(data: bytes) -> None:
    with pytest.raises(ParseError):
        StreamFramer().feed(data)


def test_header_section_size_is_bounded() -> None:
    framer = StreamFramer(max_header_size=100)
    assert framer.feed(b"SIP/2.0 200 OK\r\nX: " + b"a" * 70) == []
    with pytest.raises(ParseError, match="too large"):
        framer.feed(b"a" * 20)
    with pytest.raises(ParseError, match="too large"):
        StreamFramer(max_header_size=100).feed(b"SIP/2.0 200 OK\r\nX: " + b"a" * 100 + b"\r\n\r\n")


def test_body_size_is_bounded() -> None:
    assert StreamFramer(max_body_size=5).feed(b"SIP/2.0 200 OK\r\nl: 5\r\n\r\nabcde") != []
    with pytest.raises(ParseError, match="body too large"):
        StreamFramer(max_body_size=5).feed(b"SIP/2.0 200 OK\r\nl: 6\r\n\r\n")


_messages = st.lists(st.sampled_from([OPTIONS, WITH_BODY, COMPACT]), max_size=5)
_keepalives = st.lists(st.sampled_from([b"", b"\r\n", b"\r\n\r\n"]), min_size=6, max_size=6)


@settings(max_examples=200, deadline=None)
@given(_messages, _keepalives, st.lists(st.integers(1, 64), min_size=1, max_size=40))
def test_any_chunking(messages: list[bytes], keepalives: list[bytes], sizes: list[int]) -> None:
    stream = b"".join(keepalive + message for keepalive, message in zip(keepalives, messages + [b""]))
    framer = StreamFramer()
    received = []
    pos = 0
    index = 0
    while pos < len(stream):
        size = sizes[index % len(sizes)]
        received += framer.feed(stream[pos : pos + size])
        pos += size
        index += 1
    assert received == messages
    assert framer.keepalives >= sum(1 for keepalive in keepalives[: len(messages) + 1] if keepalive)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=5))
def test_garbage_raises_parse_error_only(chunks: list[bytes]) -> None:
    framer = StreamFramer(max_header_size=200)
    try:
        for chunk in chunks:
            framer.feed(chunk)
    except ParseError:
        pass
