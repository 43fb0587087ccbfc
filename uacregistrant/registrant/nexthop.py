"""Where a record's requests go: the proxy if set, else the registrar (SPEC §2.2).

The proxy is the next hop only: the Request-URI stays the registrar and no
Route header is added.  Host names resolve to an address (A records for
now); the name stays the TLS server name.
"""

from __future__ import annotations

from typing import Callable

from twisted.internet.defer import Deferred, succeed

from ..sip.uri import parse_uri
from ..transport.listen import Destination
from .record import RecordConfig

DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}


def next_hop(
    config: RecordConfig, resolve_host: Callable[[str], Deferred]
) -> Deferred:
    """A Deferred firing with the ``Destination`` of the record's requests."""
    uri = parse_uri(config.proxy or config.registrar)
    transport = uri.transport
    if transport not in DEFAULT_PORTS:
        raise ValueError(f"unsupported transport {transport!r}")
    port = uri.port or DEFAULT_PORTS[transport]
    if uri.host_is_ip:
        return succeed(Destination(transport, uri.bare_host, port))
    name = uri.bare_host
    return resolve_host(name).addCallback(
        lambda address: Destination(transport, address, port, server_name=name)
    )
