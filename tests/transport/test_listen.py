"""OpenSIPS socket syntax and destinations."""

from __future__ import annotations

import pytest

from uacregistrant.transport.listen import Destination, SocketSpec, parse_address, parse_socket


@pytest.mark.parametrize(
    ("text", "spec", "canonical"),
    [
        ("udp:127.0.0.1:5060", SocketSpec("udp", "127.0.0.1", 5060), "udp:127.0.0.1:5060"),
        ("tcp:10.0.0.1:5070", SocketSpec("tcp", "10.0.0.1", 5070), "tcp:10.0.0.1:5070"),
        ("tls:192.0.2.1:5061", SocketSpec("tls", "192.0.2.1", 5061), "tls:192.0.2.1:5061"),
        ("udp:[::1]:5060", SocketSpec("udp", "::1", 5060), "udp:[::1]:5060"),
        ("TCP:[2001:DB8::0001]:5080", SocketSpec("tcp", "2001:db8::1", 5080), "tcp:[2001:db8::1]:5080"),
        ("udp:127.0.0.1", SocketSpec("udp", "127.0.0.1", 5060), "udp:127.0.0.1:5060"),
        ("tls:[::1]", SocketSpec("tls", "::1", 5061), "tls:[::1]:5061"),
        ("udp:127.0.0.1:0", SocketSpec("udp", "127.0.0.1", 0), "udp:127.0.0.1:0"),
    ],
)
def test_parse_socket(text: str, spec: SocketSpec, canonical: str) -> None:
    assert parse_socket(text) == spec
    assert str(spec) == canonical
    assert parse_socket(str(spec)) == spec


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("127.0.0.1:5060", "expected udp:IP:PORT"),
        ("sctp:127.0.0.1:5060", "expected udp:IP:PORT"),
        ("udp:example.com:5060", "'example.com' is not an IP address"),
        ("udp:::1:5060", "in brackets"),
        ("udp:[::1:5060", "malformed \\[IPv6\\]"),
        ("udp:[::1]5060", "malformed \\[IPv6\\]"),
        ("udp:[127.0.0.1]:5060", "brackets are for IPv6"),
        ("udp:127.0.0.1:65536", "port '65536'"),
        ("udp:127.0.0.1:-1", "port '-1'"),
        ("udp:127.0.0.1:", "port ''"),
    ],
)
def test_parse_socket_refuses_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_socket(text)


def test_sent_by_and_family() -> None:
    assert parse_socket("udp:[::1]:5060").sent_by == "[::1]:5060"
    assert parse_socket("udp:[::1]:5060").family == 6
    assert parse_socket("tcp:127.0.0.1:5070").sent_by == "127.0.0.1:5070"
    assert parse_socket("tcp:127.0.0.1:5070").family == 4


def test_parse_address() -> None:
    assert parse_address("127.0.0.1:53") == ("127.0.0.1", 53)
    assert parse_address("[::1]:5353") == ("::1", 5353)
    assert parse_address("[2001:DB8::1]:53") == ("2001:db8::1", 53)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("::1:53", "expected IP:PORT"),
        ("127.0.0.1", "expected IP:PORT"),
        ("dns.example.test:53", "is not an IP address"),
        ("[::1]53", "expected \\[IPv6\\]:PORT"),
        ("127.0.0.1:0", "1-65535"),
        ("127.0.0.1:65536", "1-65535"),
        ("127.0.0.1:\u0665\u0663", "1-65535"),
    ],
)
def test_parse_address_refuses_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_address(text)


def test_destination() -> None:
    destination = Destination("tls", "::1", 5061, server_name="sip.example.test")
    assert str(destination) == "tls:[::1]:5061"
    assert destination.reliable and destination.family == 6
    assert not Destination("udp", "127.0.0.1", 5060).reliable
    with pytest.raises(ValueError):
        Destination("sctp", "127.0.0.1", 5060)
    with pytest.raises(ValueError):
        Destination("udp", "registrar.example.test", 5060)
