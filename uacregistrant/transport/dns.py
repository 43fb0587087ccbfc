"""Locating SIP servers (RFC 3263 §4): NAPTR, then SRV, then A/AAAA, with twisted.names.

A SIP or SIPS URI becomes an ordered tuple of ``Destination``s to try in turn;
failing over to the next one on a timeout, a transport error or a 503 is the
caller's job (``Targets.after`` names the next one).  Results are cached for
the smallest TTL seen, so a registrar that moves in DNS is followed.
"""

from __future__ import annotations

import math
import random
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred, fail, gatherResults, succeed
from twisted.internet.defer import TimeoutError as DeferredTimeoutError
from twisted.internet.interfaces import IReactorTime, IResolver
from twisted.logger import Logger
from twisted.names import client, dns, hosts, resolve
from twisted.names.error import DNSNameError, DomainError
from twisted.names.error import TimeoutError as NamesTimeoutError
from twisted.python.failure import Failure

from ..sip.errors import ParseError, SIPError
from ..sip.uri import parse_uri
from .listen import Destination

__all__ = ["DNSError", "SIPResolver", "Targets", "make_resolver", "order_srv"]

log = Logger()

DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}
# RFC 3263 §4.1 / RFC 3263 §10: NAPTR service fields and the transport each selects.
NAPTR_SERVICES = {"SIP+D2U": "udp", "SIP+D2T": "tcp", "SIPS+D2T": "tls"}
# RFC 3263 §4.2: TLS is looked up as _sips._tcp even for a sip: URI.
SRV_PREFIXES = {"udp": "_sip._udp", "tcp": "_sip._tcp", "tls": "_sips._tcp"}
# Bounds on how long an answer is reused: a zero TTL must not mean a lookup per
# REGISTER, and a huge one must not pin a registrar that moved.
MIN_CACHE_SECONDS = 5
MAX_CACHE_SECONDS = 3600
# Per-query retransmission delays; the sum is how long one query may take.
DEFAULT_TIMEOUT = (1, 3)


class DNSError(SIPError):
    """A SIP URI's host could not be resolved to any destination."""


@dataclass(frozen=True, slots=True)
class Targets:
    """Where to send requests for one URI, in the order to try them."""

    destinations: tuple[Destination, ...]
    # clock.seconds() after which the answer is stale and looked up again.
    expires_at: float

    def after(self, destination: Destination) -> Destination | None:
        """The destination to try once ``destination`` failed; None when all were tried.

        A destination not among these (it came from an older answer) is
        followed by the first one.
        """
        try:
            index = self.destinations.index(destination)
        except ValueError:
            return self.destinations[0] if self.destinations else None
        return self.destinations[index + 1] if index + 1 < len(self.destinations) else None


@dataclass(frozen=True, slots=True)
class _Question:
    """What decides a resolution; URIs equal in these share a cache entry."""

    scheme: str
    host: str
    port: int | None
    # The transport= parameter, as the URI spells it; None when absent.
    transport: str | None
    is_ip: bool


@dataclass(slots=True)
class _Lookup:
    """What one resolution saw along the way: TTLs, and failures that were not NXDOMAIN."""

    ttls: list[int] = field(default_factory=list)
    # Reasons of failed queries other than "no such name" (timeouts, SERVFAIL).
    transient: list[str] = field(default_factory=list)
    # Whether some query said the name does not exist.
    nxdomain: bool = False


def order_srv(records: Sequence[dns.Record_SRV], rng: random.Random) -> list[dns.Record_SRV]:
    """Order SRV records as RFC 2782 says: priority ascending, weighted random within one."""
    ordered: list[dns.Record_SRV] = []
    for priority in sorted({record.priority for record in records}):
        # RFC 2782: zero-weight records first, so they get a small chance of being chosen.
        remaining = sorted((r for r in records if r.priority == priority), key=lambda r: r.weight != 0)
        while remaining:
            pick = rng.randint(0, sum(record.weight for record in remaining))
            running = 0
            for index, record in enumerate(remaining):
                running += record.weight
                if running >= pick:
                    break
            ordered.append(remaining.pop(index))
    return ordered


def make_resolver(dns_servers: Sequence[tuple[str, int]], reactor: Any) -> IResolver:
    """An ``IResolver``: /etc/hosts, then ``dns_servers`` ((ip, port)) or resolv.conf's servers.

    With ``dns_servers`` given only those servers are asked; resolv.conf's are
    not mixed in.  No cache here: ``SIPResolver`` keeps its own, bound by the TTLs.
    """
    if dns_servers:
        upstream = client.Resolver(servers=list(dns_servers), reactor=reactor)
    else:
        upstream = client.Resolver(resolv=b"/etc/resolv.conf", reactor=reactor)
    return resolve.ResolverChain([hosts.Resolver(b"/etc/hosts"), upstream])


class SIPResolver:
    """Resolves SIP/SIPS URIs to ordered destinations, RFC 3263 §4, with a TTL-bound cache."""

    def __init__(
        self,
        resolver: IResolver,
        clock: IReactorTime,
        *,
        rng: random.Random | None = None,
        supported: Sequence[str] = ("udp", "tcp", "tls"),
        timeout: Sequence[float] = DEFAULT_TIMEOUT,
    ) -> None:
        unknown = set(supported) - set(DEFAULT_PORTS)
        if unknown or not supported:
            raise ValueError(f"supported transports must be among {tuple(DEFAULT_PORTS)}, got {tuple(supported)}")
        self._resolver = resolver
        self._clock = clock
        self._rng = rng or random.SystemRandom()
        # Also the preference order when only SRV records tell what the server offers.
        self._supported = tuple(supported)
        self._timeout = tuple(timeout)
        self._cache: dict[_Question, Targets] = {}
        self._waiting: dict[_Question, list[Deferred[Targets]]] = {}

    def resolve(self, uri_text: str) -> Deferred[Targets]:
        """The destinations for ``uri_text``, from the cache while its answer is fresh.

        Fails with ``DNSError`` when the host has no usable records or the
        servers do not answer.  If a refresh fails for a reason other than
        the name being gone (timeout, SERVFAIL), the stale answer is kept a
        little longer (as RFC 8767 allows), so a DNS outage alone never
        takes a registration down.
        """
        try:
            question = self._question(uri_text)
        except DNSError as reason:
            return fail(reason)
        cached = self._cache.get(question)
        if cached is not None and self._clock.seconds() < cached.expires_at:
            return succeed(cached)
        waiter: Deferred[Targets] = Deferred()
        if question in self._waiting:
            # A lookup for the same question is under way: share its answer.
            self._waiting[question].append(waiter)
            return waiter
        self._waiting[question] = [waiter]
        Deferred.fromCoroutine(self._lookup(question)).addBoth(self._answered, question)
        return waiter

    def _question(self, uri_text: str) -> _Question:
        try:
            uri = parse_uri(uri_text)
        except ParseError as reason:
            # The URI text itself stays out of the message: it may carry a user part.
            raise DNSError(f"cannot resolve a malformed URI: {reason}") from None
        transport = uri.param("transport")
        return _Question(
            uri.scheme,
            uri.bare_host.lower().rstrip("."),
            uri.port,
            transport.lower() if transport else None,
            uri.host_is_ip,
        )

    def _answered(self, result: Targets | Failure, question: _Question) -> None:
        waiters = self._waiting.pop(question)
        if isinstance(result, Targets):
            self._cache[question] = result
            for waiter in waiters:
                waiter.callback(result)
            return
        reason = result.value
        stale = self._cache.get(question)
        if isinstance(reason, _Transient) and stale is not None:
            log.warn(
                "DNS refresh of {host} failed ({reason}); keeping the previous answer",
                host=question.host,
                reason=str(reason),
            )
            # Ask again soon rather than hammer a failing server on every request.
            kept = Targets(stale.destinations, self._clock.seconds() + MIN_CACHE_SECONDS)
            self._cache[question] = kept
            for waiter in waiters:
                waiter.callback(kept)
            return
        self._cache.pop(question, None)
        if not isinstance(reason, DNSError):
            log.failure("DNS resolution of {host} crashed", result, host=question.host)
            reason = DNSError(f"DNS resolution of {question.host} failed: {reason!r}")
        for waiter in waiters:
            waiter.errback(reason)

    async def _lookup(self, question: _Question) -> Targets:
        explicit = self._explicit_transport(question)
        if question.is_ip:
            transport = explicit or self._default_transport(question)
            destination = Destination(
                transport, question.host, question.port or DEFAULT_PORTS[transport]
            )
            # A literal address never goes stale.
            return Targets((destination,), math.inf)
        lookup = _Lookup()
        if question.port is not None:
            # RFC 3263 §4.2: an explicit port means A/AAAA only.
            transport = explicit or self._default_transport(question)
            candidates = [(transport, question.host, question.port)]
        elif explicit is not None:
            candidates = await self._srv(lookup, question, [explicit])
            candidates = candidates or [(explicit, question.host, DEFAULT_PORTS[explicit])]
        else:
            candidates = await self._naptr(lookup, question)
            if not candidates:
                transports = [t for t in self._supported if question.scheme == "sip" or t == "tls"]
                candidates = await self._srv(lookup, question, transports)
            if not candidates:
                transport = self._default_transport(question)
                candidates = [(transport, question.host, DEFAULT_PORTS[transport])]
        destinations = await self._addresses(lookup, question, candidates)
        if not destinations:
            raise self._failure(lookup, question)
        ttl = min(lookup.ttls, default=MIN_CACHE_SECONDS)
        ttl = max(MIN_CACHE_SECONDS, min(MAX_CACHE_SECONDS, ttl))
        log.debug(
            "resolved {host} to {destinations} for {ttl}s",
            host=question.host,
            destinations=", ".join(map(str, destinations)),
            ttl=ttl,
        )
        return Targets(tuple(destinations), self._clock.seconds() + ttl)

    def _explicit_transport(self, question: _Question) -> str | None:
        """The transport the URI's ``transport=`` parameter asks for, as one of ours."""
        if question.transport is None:
            return None
        transport = question.transport
        if question.scheme == "sips":
            # RFC 3261 §26.2.2: sips: with transport=tcp means TLS over TCP.
            if transport not in ("tcp", "tls"):
                raise DNSError(f"{question.host}: sips: URIs need TLS, not transport={transport}")
            transport = "tls"
        if transport not in self._supported:
            raise DNSError(f"{question.host}: transport={transport} is not supported")
        return transport

    def _default_transport(self, question: _Question) -> str:
        # RFC 3263 §4.1: UDP for sip:, TLS over TCP for sips:.
        transport = "tls" if question.scheme == "sips" else "udp"
        if transport not in self._supported:
            raise DNSError(f"{question.host}: default transport {transport} is not supported")
        return transport

    async def _naptr(self, lookup: _Lookup, question: _Question) -> list[tuple[str, str, int]]:
        """Candidates from the NAPTR records' SRV replacements, in NAPTR order (RFC 3263 §4.1)."""
        records = await self._query(lookup, question.host, dns.NAPTR)
        usable: list[tuple[int, int, str, str]] = []
        for record in records:
            service = record.service.string.decode("ascii", "replace").upper()
            transport = NAPTR_SERVICES.get(service)
            # Only terminal "s" records lead straight to SRV names (RFC 3263 §4.1).
            if transport is None or record.flags.string.lower() != b"s":
                continue
            if transport not in self._supported:
                continue
            # RFC 3263 §4.1: a SIPS URI must use a SIPS service.
            if question.scheme == "sips" and transport != "tls":
                continue
            usable.append((record.order, record.preference, transport, record.replacement.name.decode("ascii")))
        usable.sort(key=lambda item: item[:2])
        candidates: list[tuple[str, str, int]] = []
        for _order, _preference, transport, name in usable:
            records = await self._query(lookup, name, dns.SRV)
            candidates += _srv_candidates(transport, order_srv(records, self._rng))
        return candidates

    async def _srv(
        self, lookup: _Lookup, question: _Question, transports: Sequence[str]
    ) -> list[tuple[str, str, int]]:
        """Candidates from ``_sip._udp``-style SRV records, in ``transports`` order."""
        answers = await gatherResults(
            [
                Deferred.fromCoroutine(self._query(lookup, f"{SRV_PREFIXES[t]}.{question.host}", dns.SRV))
                for t in transports
            ]
        )
        candidates: list[tuple[str, str, int]] = []
        for transport, records in zip(transports, answers):
            candidates += _srv_candidates(transport, order_srv(records, self._rng))
        return candidates

    async def _addresses(
        self, lookup: _Lookup, question: _Question, candidates: Sequence[tuple[str, str, int]]
    ) -> list[Destination]:
        """Each candidate's A then AAAA addresses, as destinations, without repeats."""
        names = list(dict.fromkeys(name for _transport, name, _port in candidates))
        answers = await gatherResults(
            [
                Deferred.fromCoroutine(self._query(lookup, name, record_type))
                for name in names
                for record_type in (dns.A, dns.AAAA)
            ]
        )
        addresses: dict[str, list[str]] = {}
        for index, name in enumerate(names):
            ipv4, ipv6 = answers[2 * index], answers[2 * index + 1]
            addresses[name] = [r.dottedQuad() for r in ipv4] + [
                socket.inet_ntop(socket.AF_INET6, r.address) for r in ipv6
            ]
        destinations: dict[Destination, None] = {}
        for transport, name, port in candidates:
            for address in addresses[name]:
                # RFC 5922 §4: the certificate must match the URI's domain, not the SRV target.
                destinations[Destination(transport, address, port, server_name=question.host)] = None
        return list(destinations)

    async def _query(self, lookup: _Lookup, name: str, record_type: int) -> list[Any]:
        """The payloads of ``record_type`` answers for ``name``; failures become an empty list."""
        method = {
            dns.NAPTR: self._resolver.lookupNamingAuthorityPointer,
            dns.SRV: self._resolver.lookupService,
            dns.A: self._resolver.lookupAddress,
            dns.AAAA: self._resolver.lookupIPV6Address,
        }[record_type]
        try:
            answers, _authority, _additional = await method(name, timeout=self._timeout)
        except DNSNameError:
            lookup.nxdomain = True
            return []
        except (DomainError, NamesTimeoutError, DeferredTimeoutError) as reason:
            lookup.transient.append(f"{dns.QUERY_TYPES.get(record_type, record_type)} {name}: {_describe(reason)}")
            return []
        # A CNAME chain comes back in the answers too; its TTLs count as well.
        lookup.ttls += [rr.ttl for rr in answers]
        return [rr.payload for rr in answers if rr.type == record_type]

    def _failure(self, lookup: _Lookup, question: _Question) -> DNSError:
        if lookup.transient:
            return _Transient(f"DNS lookup of {question.host} failed: {'; '.join(lookup.transient)}")
        if lookup.nxdomain:
            return DNSError(f"DNS lookup of {question.host} failed: no such domain (NXDOMAIN)")
        return DNSError(f"DNS lookup of {question.host} failed: no NAPTR, SRV, A or AAAA records to use")


class _Transient(DNSError):
    """A lookup that failed for want of an answer (timeout, SERVFAIL), not because the name is gone."""


def _srv_candidates(transport: str, records: Sequence[dns.Record_SRV]) -> list[tuple[str, str, int]]:
    candidates = []
    for record in records:
        target = record.target.name.decode("ascii").rstrip(".")
        # RFC 2782: a target of "." says the service is decidedly not available here.
        if target:
            candidates.append((transport, target.lower(), record.port))
    return candidates


def _describe(reason: Exception) -> str:
    if isinstance(reason, (NamesTimeoutError, DeferredTimeoutError)):
        return "timed out"
    return type(reason).__name__
