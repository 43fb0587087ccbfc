"""RFC 3263 resolution against a loopback authoritative DNS server; the cache runs on a Clock."""

from __future__ import annotations

import random
from collections import Counter

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task
from twisted.names import client, dns

from tests.transport.dnsserver import LoopbackDNSServer, start_dns_server
from uacregistrant.sip.errors import SIPError
from uacregistrant.transport.dns import (
    MAX_CACHE_SECONDS,
    MIN_CACHE_SECONDS,
    DNSError,
    SIPResolver,
    Targets,
    make_resolver,
    order_srv,
)
from uacregistrant.transport.listen import Destination


def naptr(order: int, preference: int, service: str, replacement: str, ttl: int | None = None):
    return dns.Record_NAPTR(order, preference, b"s", service.encode(), b"", replacement.encode(), ttl=ttl)


def srv(priority: int, weight: int, port: int, target: str | bytes, ttl: int | None = None):
    return dns.Record_SRV(priority, weight, port, target, ttl=ttl)


@pytest.fixture
def dns_server():
    running = start_dns_server()
    yield running
    pytest_twisted.blockon(running.stop())


@pytest.fixture
def clock() -> task.Clock:
    return task.Clock()


@pytest.fixture
def make(dns_server: LoopbackDNSServer, clock: task.Clock):
    def make(**kwargs) -> SIPResolver:
        upstream = client.Resolver(servers=[dns_server.address], reactor=reactor)
        return SIPResolver(upstream, clock, rng=kwargs.pop("rng", random.Random(7)), **kwargs)

    return make


def types_asked(server: LoopbackDNSServer) -> set[str]:
    return {kind for _name, kind in server.queries}


@pytest_twisted.inlineCallbacks
def test_naptr_then_srv_then_addresses(dns_server, make):
    dns_server.set_records(
        {
            "example.test": [
                naptr(20, 10, "SIP+D2U", "_sip._udp.example.test"),
                naptr(10, 20, "SIP+D2T", "_sip._tcp.example.test"),
                # Same order, better preference: comes before the TCP record.
                naptr(10, 10, "SIPS+D2T", "_sips._tcp.example.test"),
                naptr(5, 10, "E2U+sip", "!^.*$!sip:x@example.test!"),
            ],
            "_sips._tcp.example.test": [srv(0, 0, 5061, "tls.example.test")],
            "_sip._tcp.example.test": [srv(0, 0, 5070, "tcp.example.test")],
            "_sip._udp.example.test": [srv(0, 0, 5080, "udp.example.test")],
            "tls.example.test": [dns.Record_A("192.0.2.3")],
            "tcp.example.test": [dns.Record_A("192.0.2.1")],
            "udp.example.test": [dns.Record_A("192.0.2.2")],
        }
    )
    targets = yield make().resolve("sip:example.test")
    assert targets.destinations == (
        Destination("tls", "192.0.2.3", 5061, "example.test"),
        Destination("tcp", "192.0.2.1", 5070, "example.test"),
        Destination("udp", "192.0.2.2", 5080, "example.test"),
    )
    # NAPTR found: no guessing at _sip._udp-style names beyond those it named.
    assert ("example.test", "NAPTR") in dns_server.queries


@pytest_twisted.inlineCallbacks
def test_naptr_transport_we_do_not_support_is_skipped(dns_server, make):
    dns_server.set_records(
        {
            "example.test": [
                naptr(10, 10, "SIPS+D2T", "_sips._tcp.example.test"),
                naptr(20, 10, "SIP+D2U", "_sip._udp.example.test"),
            ],
            "_sips._tcp.example.test": [srv(0, 0, 5061, "tls.example.test")],
            "_sip._udp.example.test": [srv(0, 0, 5080, "udp.example.test")],
            "tls.example.test": [dns.Record_A("192.0.2.3")],
            "udp.example.test": [dns.Record_A("192.0.2.2")],
        }
    )
    targets = yield make(supported=("udp", "tcp")).resolve("sip:example.test")
    assert targets.destinations == (Destination("udp", "192.0.2.2", 5080, "example.test"),)


@pytest_twisted.inlineCallbacks
def test_srv_only_in_the_order_of_supported_transports(dns_server, make):
    dns_server.set_records(
        {
            "example.test": [],
            "_sip._udp.example.test": [srv(0, 0, 5080, "a.example.test")],
            "_sip._tcp.example.test": [srv(0, 0, 5090, "a.example.test")],
            "a.example.test": [dns.Record_A("192.0.2.10")],
        }
    )
    udp_first = yield make().resolve("sip:example.test")
    tcp_first = yield make(supported=("tcp", "udp")).resolve("sip:example.test")
    assert udp_first.destinations == (
        Destination("udp", "192.0.2.10", 5080, "example.test"),
        Destination("tcp", "192.0.2.10", 5090, "example.test"),
    )
    assert tcp_first.destinations == udp_first.destinations[::-1]
    assert ("_sips._tcp.example.test", "SRV") in dns_server.queries


@pytest_twisted.inlineCallbacks
def test_no_naptr_no_srv_falls_back_to_addresses_on_the_default_port(dns_server, make):
    dns_server.set_records({"example.test": [dns.Record_A("192.0.2.20")]})
    targets = yield make().resolve("sip:example.test")
    sips = yield make().resolve("sips:example.test")
    assert targets.destinations == (Destination("udp", "192.0.2.20", 5060, "example.test"),)
    assert sips.destinations == (Destination("tls", "192.0.2.20", 5061, "example.test"),)


@pytest_twisted.inlineCallbacks
def test_srv_priorities_come_first_and_weights_share_the_rest(dns_server, make, clock):
    dns_server.set_records(
        {
            "example.test": [],
            "_sip._udp.example.test": [
                srv(20, 0, 5060, "backup.example.test"),
                srv(10, 1, 5060, "light.example.test"),
                srv(10, 3, 5060, "heavy.example.test"),
                srv(30, 0, 5060, b""),
            ],
            "backup.example.test": [dns.Record_A("192.0.2.99")],
            "light.example.test": [dns.Record_A("192.0.2.1")],
            "heavy.example.test": [dns.Record_A("192.0.2.3")],
        }
    )
    resolver = make(rng=random.Random(2024), supported=("udp",))
    firsts: Counter[str] = Counter()
    for _ in range(40):
        targets = yield resolver.resolve("sip:example.test")
        hosts = [destination.host for destination in targets.destinations]
        assert sorted(hosts[:2]) == ["192.0.2.1", "192.0.2.3"]
        assert hosts[2:] == ["192.0.2.99"]
        firsts[hosts[0]] += 1
        clock.advance(targets.expires_at - clock.seconds())
    assert firsts["192.0.2.3"] > firsts["192.0.2.1"] > 0


def test_order_srv_follows_rfc_2782_weights():
    records = [srv(1, 0, 1, "zero"), srv(1, 10, 1, "ten"), srv(1, 30, 1, "thirty"), srv(0, 1, 1, "top")]
    rng = random.Random(3263)
    firsts: Counter[str] = Counter()
    for _ in range(8000):
        ordered = order_srv(records, rng)
        assert ordered[0].target.name == b"top"
        assert sorted(r.target.name for r in ordered) == sorted(r.target.name for r in records)
        firsts[ordered[1].target.name.decode()] += 1
    # Chosen with probability weight / (sum + 1 for the zero-weight entry's single slot).
    assert firsts["thirty"] / 8000 == pytest.approx(30 / 41, abs=0.02)
    assert firsts["ten"] / 8000 == pytest.approx(10 / 41, abs=0.02)
    assert 0 < firsts["zero"] < 8000 * 0.05


def test_order_srv_without_weights_keeps_the_given_order():
    records = [srv(0, 0, 1, "a"), srv(0, 0, 1, "b"), srv(0, 0, 1, "c")]
    assert order_srv(records, random.Random(1)) == records


@pytest_twisted.inlineCallbacks
def test_explicit_port_skips_naptr_and_srv(dns_server, make):
    dns_server.set_records(
        {
            "example.test": [naptr(10, 10, "SIP+D2T", "_sip._tcp.example.test"), dns.Record_A("192.0.2.5")],
            "_sip._tcp.example.test": [srv(0, 0, 5070, "elsewhere.example.test")],
        }
    )
    targets = yield make().resolve("sip:example.test:5099")
    assert targets.destinations == (Destination("udp", "192.0.2.5", 5099, "example.test"),)
    assert types_asked(dns_server) == {"A", "AAAA"}


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("sip:192.0.2.7", Destination("udp", "192.0.2.7", 5060)),
        ("sip:192.0.2.7:5070;transport=TCP", Destination("tcp", "192.0.2.7", 5070)),
        ("sips:192.0.2.7", Destination("tls", "192.0.2.7", 5061)),
        ("sip:[2001:db8::1]", Destination("udp", "2001:db8::1", 5060)),
        ("sips:[::1]:5071;transport=tcp", Destination("tls", "::1", 5071)),
    ],
)
@pytest_twisted.inlineCallbacks
def test_numeric_addresses_need_no_dns(dns_server, make, uri, expected):
    targets = yield make().resolve(uri)
    assert targets.destinations == (expected,)
    assert dns_server.queries == []


@pytest_twisted.inlineCallbacks
def test_transport_param_looks_up_that_srv_only(dns_server, make):
    dns_server.set_records(
        {
            "example.test": [naptr(10, 10, "SIP+D2U", "_sip._udp.example.test"), dns.Record_A("192.0.2.30")],
            "_sip._tcp.example.test": [srv(0, 0, 5070, "tcp.example.test")],
            "tcp.example.test": [dns.Record_A("192.0.2.31")],
            "other.test": [dns.Record_A("192.0.2.32")],
        }
    )
    targets = yield make().resolve("sip:example.test;transport=tcp")
    assert targets.destinations == (Destination("tcp", "192.0.2.31", 5070, "example.test"),)
    assert "NAPTR" not in types_asked(dns_server)
    without_srv = yield make().resolve("sip:other.test;transport=tcp")
    assert without_srv.destinations == (Destination("tcp", "192.0.2.32", 5060, "other.test"),)


@pytest_twisted.inlineCallbacks
def test_sips_uses_only_sips_services(dns_server, make):
    dns_server.set_records(
        {
            "example.test": [
                naptr(10, 10, "SIP+D2U", "_sip._udp.example.test"),
                naptr(20, 10, "SIPS+D2T", "_sips._tcp.example.test"),
            ],
            "_sip._udp.example.test": [srv(0, 0, 5060, "udp.example.test")],
            "_sips._tcp.example.test": [srv(0, 0, 5061, "tls.example.test")],
            "udp.example.test": [dns.Record_A("192.0.2.40")],
            "tls.example.test": [dns.Record_A("192.0.2.41")],
            "nonaptr.test": [],
            "_sips._tcp.nonaptr.test": [srv(0, 0, 5062, "tls.example.test")],
            "_sip._udp.nonaptr.test": [srv(0, 0, 5060, "udp.example.test")],
        }
    )
    targets = yield make().resolve("sips:example.test")
    assert targets.destinations == (Destination("tls", "192.0.2.41", 5061, "example.test"),)
    dns_server.queries.clear()
    srv_only = yield make().resolve("sips:nonaptr.test")
    assert srv_only.destinations == (Destination("tls", "192.0.2.41", 5062, "nonaptr.test"),)
    assert [q for q in dns_server.queries if q[1] == "SRV"] == [("_sips._tcp.nonaptr.test", "SRV")]


@pytest_twisted.inlineCallbacks
def test_sips_with_udp_is_refused(make):
    with pytest.raises(DNSError, match="TLS"):
        yield make().resolve("sips:example.test;transport=udp")


@pytest_twisted.inlineCallbacks
def test_ipv4_addresses_first_then_ipv6(dns_server, make):
    dns_server.set_records(
        {
            "both.test": [
                dns.Record_AAAA("2001:db8::2"),
                dns.Record_A("192.0.2.50"),
                dns.Record_A("192.0.2.51"),
            ],
            "six.test": [dns.Record_AAAA("2001:db8::6")],
        }
    )
    both = yield make().resolve("sip:both.test:5060")
    six = yield make().resolve("sip:six.test:5060")
    assert [d.host for d in both.destinations] == ["192.0.2.50", "192.0.2.51", "2001:db8::2"]
    assert six.destinations == (Destination("udp", "2001:db8::6", 5060, "six.test"),)


@pytest_twisted.inlineCallbacks
def test_nxdomain_is_a_dns_error_naming_the_host(make):
    with pytest.raises(DNSError, match="nowhere.test.*NXDOMAIN") as raised:
        yield make().resolve("sip:alice@nowhere.test")
    assert isinstance(raised.value, SIPError)


@pytest_twisted.inlineCallbacks
def test_a_name_without_addresses_is_a_dns_error(dns_server, make):
    dns_server.set_records({"empty.test": [], "_sip._udp.empty.test": [srv(0, 0, 5060, "gone.test")]})
    with pytest.raises(DNSError, match="empty.test"):
        yield make().resolve("sip:empty.test")


@pytest_twisted.inlineCallbacks
def test_silent_server_times_out_with_a_dns_error(dns_server, make):
    dns_server.drop_queries = True
    with pytest.raises(DNSError, match="example.test.*timed out"):
        yield make(timeout=(0.1,)).resolve("sip:example.test:5060")


@pytest_twisted.inlineCallbacks
def test_cached_until_the_smallest_ttl_then_a_moved_registrar_is_followed(dns_server, make, clock):
    dns_server.set_records(
        {
            "example.test": [],
            "_sip._udp.example.test": [srv(0, 0, 5060, "reg.example.test", ttl=600)],
            "reg.example.test": [dns.Record_A("192.0.2.60", ttl=30)],
        }
    )
    resolver = make(supported=("udp",))
    clock.advance(100)
    first = yield resolver.resolve("sip:example.test")
    assert first.expires_at == 130
    dns_server.set_records(
        {
            "example.test": [],
            "_sip._udp.example.test": [srv(0, 0, 5060, "reg.example.test", ttl=600)],
            "reg.example.test": [dns.Record_A("192.0.2.61", ttl=30)],
        }
    )
    asked = len(dns_server.queries)
    clock.advance(29)
    cached = yield resolver.resolve("sip:example.test")
    assert cached is first
    assert len(dns_server.queries) == asked
    clock.advance(1)
    moved = yield resolver.resolve("sip:example.test")
    assert moved.destinations == (Destination("udp", "192.0.2.61", 5060, "example.test"),)
    assert moved.expires_at == 160


@pytest.mark.parametrize(("ttl", "kept"), [(0, MIN_CACHE_SECONDS), (10**6, MAX_CACHE_SECONDS)])
@pytest_twisted.inlineCallbacks
def test_ttl_is_bounded(dns_server, make, ttl, kept):
    dns_server.set_records({"example.test": [dns.Record_A("192.0.2.70", ttl=ttl)]})
    targets = yield make().resolve("sip:example.test:5060")
    assert targets.expires_at == kept


@pytest_twisted.inlineCallbacks
def test_numeric_targets_never_expire(make, clock):
    resolver = make()
    first = yield resolver.resolve("sip:192.0.2.8")
    clock.advance(10**9)
    again = yield resolver.resolve("sip:192.0.2.8")
    assert again is first


@pytest_twisted.inlineCallbacks
def test_timeout_on_refresh_keeps_the_stale_answer_briefly(dns_server, make, clock):
    dns_server.set_records({"example.test": [dns.Record_A("192.0.2.80", ttl=60)]})
    resolver = make(timeout=(0.1,))
    first = yield resolver.resolve("sip:example.test:5060")
    clock.advance(60)
    dns_server.drop_queries = True
    stale = yield resolver.resolve("sip:example.test:5060")
    assert stale.destinations == first.destinations
    assert stale.expires_at == 60 + MIN_CACHE_SECONDS


@pytest_twisted.inlineCallbacks
def test_nxdomain_on_refresh_drops_the_answer(dns_server, make, clock):
    dns_server.set_records({"example.test": [dns.Record_A("192.0.2.81", ttl=60)]})
    resolver = make()
    yield resolver.resolve("sip:example.test:5060")
    clock.advance(60)
    dns_server.set_records({})
    with pytest.raises(DNSError, match="NXDOMAIN"):
        yield resolver.resolve("sip:example.test:5060")


@pytest_twisted.inlineCallbacks
def test_concurrent_resolutions_share_one_lookup(dns_server, make):
    dns_server.set_records({"example.test": [dns.Record_A("192.0.2.90")]})
    resolver = make()
    both = yield defer.gatherResults(
        [resolver.resolve("sip:example.test:5060"), resolver.resolve("sip:EXAMPLE.test:5060;lr")]
    )
    assert both[0] is both[1]
    assert sorted(dns_server.queries) == [("example.test", "A"), ("example.test", "AAAA")]


def test_after_names_the_next_destination_to_try():
    a, b, c = (Destination("udp", f"192.0.2.{n}", 5060) for n in (1, 2, 3))
    targets = Targets((a, b, c), expires_at=10.0)
    assert targets.after(a) == b
    assert targets.after(b) == c
    assert targets.after(c) is None
    # From an older answer: start over at the top.
    assert targets.after(Destination("udp", "192.0.2.9", 5060)) == a
    assert Targets((), 0.0).after(a) is None


@pytest_twisted.inlineCallbacks
def test_make_resolver_asks_the_given_servers(dns_server, clock):
    dns_server.set_records({"example.test": [dns.Record_A("192.0.2.100")]})
    resolver = SIPResolver(make_resolver([(dns_server.host, dns_server.port)], reactor), clock)
    targets = yield resolver.resolve("sip:example.test:5060")
    assert targets.destinations == (Destination("udp", "192.0.2.100", 5060, "example.test"),)


def test_unsupported_transports_are_refused_up_front(clock):
    with pytest.raises(ValueError, match="sctp"):
        SIPResolver(client.Resolver(servers=[("127.0.0.1", 53)], reactor=reactor), clock, supported=("sctp",))


@pytest_twisted.inlineCallbacks
def test_malformed_uri_error_does_not_repeat_the_user_part(make):
    with pytest.raises(DNSError) as raised:
        yield make().resolve("sip:secret-user@bad host")
    assert "secret-user" not in str(raised.value)
