"""An authoritative DNS server on 127.0.0.1 (UDP and TCP) answering from records a test sets.

    server = start_dns_server()
    server.set_records({"example.test": [dns.Record_A("192.0.2.1", ttl=30)]})
    ... client.Resolver(servers=[server.address], reactor=reactor) ...
    yield server.stop()

A name with records answers them (an empty answer for a type it lacks); any
other name is NXDOMAIN.  With ``drop_queries`` set the server stays silent,
so clients time out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.names import common, dns, server
from twisted.names.error import AuthoritativeDomainError

DEFAULT_TTL = 300


def _key(name: bytes | str) -> str:
    text = name.decode("ascii") if isinstance(name, bytes) else name
    return text.lower().rstrip(".")


class _Zone(common.ResolverBase):
    """An in-memory authority: names → records, each record's ``ttl`` or DEFAULT_TTL."""

    def __init__(self) -> None:
        super().__init__()
        self.records: dict[str, list[Any]] = {}
        self.queries: list[tuple[str, str]] = []
        self.drop_queries = False

    def _lookup(self, name: bytes | str, cls: int, type: int, timeout: Any) -> defer.Deferred:
        key = _key(name)
        self.queries.append((key, dns.QUERY_TYPES.get(type, str(type))))
        if self.drop_queries:
            # Never fires: the server sends nothing and the client times out.
            return defer.Deferred()
        if key not in self.records:
            return defer.fail(AuthoritativeDomainError(key))
        answers = [
            dns.RRHeader(
                key,
                record.TYPE,
                dns.IN,
                DEFAULT_TTL if record.ttl is None else record.ttl,
                record,
                auth=True,
            )
            for record in self.records[key]
            if type in (record.TYPE, dns.ALL_RECORDS)
        ]
        return defer.succeed((answers, [], []))


class LoopbackDNSServer:
    """A running server; ``address`` is the ``(ip, port)`` to give a client resolver."""

    def __init__(self, zone: _Zone, ports: Sequence[Any]) -> None:
        self._zone = zone
        self._ports = ports
        self.host: str = ports[0].getHost().host
        self.port: int = ports[0].getHost().port

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def queries(self) -> list[tuple[str, str]]:
        """Every (name, type) asked so far, in order, e.g. ``("example.test", "NAPTR")``."""
        return self._zone.queries

    @property
    def drop_queries(self) -> bool:
        return self._zone.drop_queries

    @drop_queries.setter
    def drop_queries(self, value: bool) -> None:
        self._zone.drop_queries = value

    def set_records(self, records: Mapping[str, Sequence[Any]]) -> None:
        """Replace the whole zone: names → ``dns.Record_*`` instances."""
        self._zone.records = {_key(name): list(values) for name, values in records.items()}

    def stop(self) -> defer.Deferred:
        return defer.gatherResults([defer.maybeDeferred(port.stopListening) for port in self._ports])


def start_dns_server(
    records: Mapping[str, Sequence[Any]] | None = None, reactor: Any = None, attempts: int = 5
) -> LoopbackDNSServer:
    """Listen on a free 127.0.0.1 port, UDP and TCP on the same number."""
    if reactor is None:
        from twisted.internet import reactor
    zone = _Zone()
    factory = server.DNSServerFactory(authorities=[zone])
    for _ in range(attempts):
        udp = reactor.listenUDP(0, dns.DNSDatagramProtocol(controller=factory), interface="127.0.0.1")
        try:
            tcp = reactor.listenTCP(udp.getHost().port, factory, interface="127.0.0.1")
        except CannotListenError:
            # The TCP twin of this UDP port is taken: try another number.
            udp.stopListening()
            continue
        running = LoopbackDNSServer(zone, [udp, tcp])
        running.set_records(records or {})
        return running
    raise RuntimeError(f"no free 127.0.0.1 port for UDP and TCP after {attempts} attempts")
