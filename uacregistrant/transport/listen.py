"""Socket specifications in OpenSIPS syntax, server addresses, and where a request goes.

Pure code that imports nothing of ours: the configuration parses with it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

TRANSPORTS = ("udp", "tcp", "tls")
_DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}


def _family(host: str) -> int:
    # An IP literal has a colon exactly when it is IPv6 (validated where made).
    return 6 if ":" in host else 4


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True, slots=True)
class SocketSpec:
    """A listening socket: ``udp:127.0.0.1:5060``, ``tls:[::1]:5061``."""

    transport: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.transport}:{_host_port(self.host, self.port)}"

    @property
    def family(self) -> int:
        """4 or 6."""
        return _family(self.host)

    @property
    def sent_by(self) -> str:
        """The Via sent-by for requests leaving through this socket."""
        return _host_port(self.host, self.port)


def parse_socket(text: str) -> SocketSpec:
    """Parse ``proto:IP[:PORT]``; IPv6 addresses go in brackets.

    Raises ValueError naming what is wrong.
    """
    transport, sep, rest = text.strip().partition(":")
    transport = transport.lower()
    if not sep or transport not in TRANSPORTS:
        raise ValueError(f"socket {text!r}: expected udp:IP:PORT, tcp:IP:PORT or tls:IP:PORT")
    if rest.startswith("["):
        host, bracket, tail = rest[1:].partition("]")
        if not bracket or (tail and not tail.startswith(":")):
            raise ValueError(f"socket {text!r}: unterminated or malformed [IPv6] address")
        has_port, port_text = bool(tail), tail[1:]
    elif rest.count(":") > 1:
        raise ValueError(f"socket {text!r}: write IPv6 addresses in brackets, e.g. udp:[::1]:5060")
    else:
        host, colon, port_text = rest.partition(":")
        has_port = bool(colon)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"socket {text!r}: {host!r} is not an IP address") from None
    if address.version == 4 and rest.startswith("["):
        raise ValueError(f"socket {text!r}: brackets are for IPv6 addresses only")
    if not has_port:
        port = _DEFAULT_PORTS[transport]
    elif port_text.isascii() and port_text.isdigit() and int(port_text) <= 65535:
        port = int(port_text)
    else:
        raise ValueError(f"socket {text!r}: port {port_text!r} is not a number from 0 to 65535")
    return SocketSpec(transport, str(address), port)


def format_address(address: tuple[str, int]) -> str:
    """(ip, port) → ``IP:PORT`` (IPv6 as ``[IP]:PORT``), as ``parse_address`` reads it."""
    return _host_port(*address)


def parse_address(text: str) -> tuple[str, int]:
    """``IP:PORT`` (IPv6 as ``[IP]:PORT``) → (ip, port); ValueError if malformed."""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise ValueError(f"{text!r}: expected [IPv6]:PORT")
        port_text = rest[1:]
    else:
        host, colon, port_text = text.rpartition(":")
        if not colon or ":" in host:
            raise ValueError(f"{text!r}: expected IP:PORT (IPv6 as [IP]:PORT)")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{text!r}: {host!r} is not an IP address") from None
    if not (port_text.isascii() and port_text.isdigit()) or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"{text!r}: the port must be 1-65535")
    return str(address), int(port_text)


@dataclass(frozen=True, slots=True)
class Destination:
    """The next hop of a request, already resolved to an IP literal."""

    transport: str
    host: str
    port: int
    # The name the TLS certificate must match, also sent as SNI.
    server_name: str | None = None

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise ValueError(f"destination transport {self.transport!r} is not one of {TRANSPORTS}")
        ipaddress.ip_address(self.host)

    def __str__(self) -> str:
        return f"{self.transport}:{_host_port(self.host, self.port)}"

    @property
    def family(self) -> int:
        return _family(self.host)

    @property
    def reliable(self) -> bool:
        return self.transport != "udp"
