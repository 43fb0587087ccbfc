"""Trunks as operators meet them: registrars found through DNS (RFC 3263) with
failover, TLS with a private CA and SNI, TCP flows that break, and keep-alives.

Everything is the real service (``twistd -n uac-registrant``) on loopback
against Kamailio, SIPp or the stand-ins of ``wire.py``, with names served by a
DNS server of the test's own (``--dns-servers``).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from twisted.names import dns

from tests.peers import free_port
from tests.sipp_helpers import SIPP_DIR, SippProcess, start_sipp
from tests.transport.certs import CertificateAuthority

from .service import ServiceProcess, make_table, wait_until
from .wire import DNSServer, TCPProxy, WireRegistrar

TI = 2  # timer_interval: with 2 buckets, one visit a second
ALICE = "sip:alice@example.test"
BOB = "sip:bob@example.test"
INSTANCE = '"<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>"'


class Trunk:
    """The service under test, its table, and the DNS server it asks."""

    def __init__(self, workdir: Path, dns_server: DNSServer) -> None:
        self.workdir = workdir
        self.dns = dns_server
        self.sip_port = free_port("udp")
        self.proc: ServiceProcess | None = None

    def binding(self, user: str) -> str:
        return f"sip:{user}@127.0.0.1:{self.sip_port}"

    def row(self, user: str, registrar: str, **extra: object) -> dict:
        values = dict(registrar=registrar, aor=f"sip:{user}@example.test", binding_URI=self.binding(user), expiry=60)
        values.update(extra)
        return values

    def start(self, rows: list[dict], *args: str) -> ServiceProcess:
        db = self.workdir / "registrant.sqlite"
        make_table(db, rows)
        self.proc = ServiceProcess(
            self.workdir,
            [
                "--db-url", f"sqlite:///{db}",
                "--listen", f"udp:127.0.0.1:{self.sip_port}",
                "--timer-interval", str(TI),
                "--failure-retry-interval", "120",
                "--dns-servers", self.dns.address,
                *args,
            ],
            mi_port=free_port("tcp"),
        )
        return self.proc.start()

    def record(self, aor: str) -> dict:
        assert self.proc is not None
        return self.proc.records()[aor]

    def wait_state(self, aor: str, state: str, timeout: float) -> dict:
        wait_until(lambda: self.record(aor)["state"] == state, timeout, f"{aor} in {state}")
        return self.record(aor)


@pytest.fixture
def dns_server():
    server = DNSServer().start()
    yield server
    server.stop()


@pytest.fixture
def trunk(tmp_path, dns_server):
    trunk = Trunk(tmp_path, dns_server)
    yield trunk
    if trunk.proc is not None:
        trunk.proc.stop()


@pytest.fixture
def sipp(tmp_path):
    """Start SIPp registrar scenarios; every one is stopped by its PID at teardown."""
    started: list[SippProcess] = []

    def start(scenario: str, port: int) -> SippProcess:
        workdir = tmp_path / f"sipp-{len(started)}"
        workdir.mkdir()
        process = start_sipp(SIPP_DIR / scenario, port, "u1", ("-trace_msg",), workdir=workdir)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def wire():
    """Start WireRegistrar / TCPProxy stand-ins; their threads are joined at teardown."""
    started: list[WireRegistrar | TCPProxy] = []

    def start(stand_in):
        started.append(stand_in.start())
        return stand_in

    yield start
    for stand_in in started:
        stand_in.stop()


def sipp_registers(process: SippProcess) -> int:
    """REGISTERs SIPp received, from its message log."""
    logs = list(process.workdir.glob("*_messages.log"))
    text = logs[0].read_text(errors="replace") if logs else ""
    return text.count("\nREGISTER sip:")


def srv(priority: int, port: int, target: str, ttl: int | None = None) -> dns.Record_SRV:
    return dns.Record_SRV(priority, 0, port, target, ttl=ttl)


def loopback(ttl: int | None = None) -> list[dns.Record_A]:
    return [dns.Record_A("127.0.0.1", ttl=ttl)]


# 1. RFC 3263 priority and failover


def test_srv_priority_then_failover_on_503(trunk, dns_server, kamailio, sipp):
    first_port = free_port("udp")
    first = sipp("register_200.xml", first_port)
    second = kamailio(challenge=False)
    dns_server.set_records({
        "_sip._udp.trunk.test": [srv(20, second.port, "b.trunk.test"), srv(10, first_port, "a.trunk.test")],
        "a.trunk.test": loopback(),
        "b.trunk.test": loopback(),
    })
    svc = trunk.start([trunk.row("alice", "sip:trunk.test")])

    record = trunk.wait_state(ALICE, "REGISTERED_STATE", 10)
    assert (record["dst_IP"], record["ip"]) == ("IPv4", "127.0.0.1")
    assert sipp_registers(first) == 1
    assert second.bindings(ALICE) == []

    # The priority-10 registrar goes out of service: it answers 503 from now on.
    first.stop()
    out_of_service = sipp("registrar_503_retry_after.xml", first_port)
    svc.mi("reg_force_register", {"aor": ALICE, "contact": trunk.binding("alice"), "registrar": "sip:trunk.test"})

    [binding] = wait_until(lambda: second.bindings(ALICE), 10, "the binding on the priority-20 registrar")
    assert binding.contact == trunk.binding("alice")
    assert sipp_registers(out_of_service) == 1
    record = trunk.wait_state(ALICE, "REGISTERED_STATE", 5)
    assert (record["last_code"], record["failures"]) == (200, 0)
    # The chosen targets show in the metrics too.
    metrics = svc.metrics_text()
    assert f'uac_registrant_destination_requests_total{{destination="udp:127.0.0.1:{first_port}"}}' in metrics
    assert f'uac_registrant_destination_requests_total{{destination="udp:127.0.0.1:{second.port}"}}' in metrics


def test_srv_failover_when_the_first_registrar_is_silent(trunk, dns_server, kamailio):
    first, second = kamailio(challenge=False), kamailio(challenge=False)
    dns_server.set_records({
        "_sip._udp.trunk.test": [srv(10, first.port, "a.trunk.test"), srv(20, second.port, "b.trunk.test")],
        "a.trunk.test": loopback(),
        "b.trunk.test": loopback(),
    })
    svc = trunk.start([trunk.row("alice", "sip:trunk.test")])
    wait_until(lambda: first.bindings(ALICE), 10, "the binding on the priority-10 registrar")
    assert second.bindings(ALICE) == []

    first.stop()
    started = time.monotonic()
    svc.mi("reg_force_register", {"aor": ALICE, "contact": trunk.binding("alice"), "registrar": "sip:trunk.test"})
    wait_until(lambda: second.bindings(ALICE), 40, "the binding on the priority-20 registrar")
    took = time.monotonic() - started
    # Timer F (64·T1 = 32 s) on the silent one, then at once the next target.
    assert 30 <= took <= 38, f"failover took {took:.1f} s"
    assert trunk.record(ALICE)["state"] == "REGISTERED_STATE"


# 2. Following the registrar when DNS moves it


def test_a_refresh_after_the_ttl_follows_the_new_dns_answer(trunk, dns_server, kamailio):
    old, new = kamailio(challenge=False, min_expires=10), kamailio(challenge=False, min_expires=10)
    dns_server.set_records({
        "_sip._udp.trunk.test": [srv(10, old.port, "old.trunk.test", ttl=5)],
        "old.trunk.test": loopback(ttl=5),
    })
    # Expiry 10: refreshed 6 s after each 200, past the 5 s TTL.
    trunk.start([trunk.row("alice", "sip:trunk.test", expiry=10)])
    [before] = wait_until(lambda: old.bindings(ALICE), 10, "the binding on the old registrar")
    srv_queries = dns_server.queried("_sip._udp.trunk.test", "SRV")

    dns_server.set_records({
        "_sip._udp.trunk.test": [srv(10, new.port, "new.trunk.test", ttl=5)],
        "new.trunk.test": loopback(ttl=5),
    })
    [after] = wait_until(lambda: new.bindings(ALICE), 12, "the binding on the new registrar")
    # A refresh of the same registration, not a new one.
    assert (after.call_id, after.contact) == (before.call_id, trunk.binding("alice"))
    assert after.cseq > before.cseq
    assert dns_server.queried("_sip._udp.trunk.test", "SRV") > srv_queries
    assert trunk.record(ALICE)["state"] == "REGISTERED_STATE"


# 3. TLS


@pytest.fixture
def pki(tmp_path):
    directory = tmp_path / "pki"
    directory.mkdir()
    authority = CertificateAuthority(directory)
    return authority, CertificateAuthority(directory, "Other CA")


def tls_registrar(kamailio, authority: CertificateAuthority):
    issued = authority.issue("kamailio.test")
    return kamailio(challenge=False, tls_port=free_port("tcp"), tls_cert=issued.cert_file, tls_key=issued.key_file)


def test_tls_to_kamailio_by_name_with_a_private_ca_and_sni(trunk, dns_server, kamailio, wire, pki):
    authority, _ = pki
    registrar = tls_registrar(kamailio, authority)
    sni = authority.issue("sni.test")
    sni_registrar = wire(WireRegistrar("tls", cert=sni.cert_file, key=sni.key_file))
    dns_server.set_records({"kamailio.test": loopback(), "sni.test": loopback()})
    own_tls = free_port("tcp")
    # A client-only TLS socket: no certificate of our own.
    svc = trunk.start(
        [
            trunk.row("alice", f"sip:kamailio.test:{registrar.tls_port};transport=tls"),
            trunk.row("bob", f"sip:sni.test:{sni_registrar.port};transport=tls"),
        ],
        "--listen", f"tls:127.0.0.1:{own_tls}",
        "--tls-ca-file", str(authority.files.cert_file),
    )

    trunk.wait_state(ALICE, "REGISTERED_STATE", 10)
    [binding] = registrar.bindings(ALICE)
    assert binding.socket == f"tls:127.0.0.1:{registrar.tls_port}"
    assert binding.contact == trunk.binding("alice")

    trunk.wait_state(BOB, "REGISTERED_STATE", 10)
    assert sni_registrar.server_names == ["sni.test"]
    [register] = sni_registrar.registers()
    assert register.request.via.transport == "TLS"
    assert f"tls:127.0.0.1:{own_tls} has no tls_cert_file" in svc.log_text()


def test_tls_with_the_wrong_ca_fails_and_never_falls_back(trunk, dns_server, kamailio, pki):
    authority, stranger = pki
    registrar = tls_registrar(kamailio, authority)
    dns_server.set_records({"kamailio.test": loopback()})
    trunk.start(
        [trunk.row("alice", f"sip:kamailio.test:{registrar.tls_port};transport=tls")],
        "--listen", f"tls:127.0.0.1:{free_port('tcp')}",
        "--listen", f"tcp:127.0.0.1:{trunk.sip_port}",
        "--tls-ca-file", str(stranger.files.cert_file),
    )

    wait_until(lambda: trunk.record(ALICE)["failures"] >= 1, 10, "the first attempt to fail")
    record = trunk.record(ALICE)
    assert record["state"] == "INTERNAL_ERROR_STATE"
    assert "certificate verify failed" in record["last_reason"]
    assert f"TLS connection to tls:127.0.0.1:{registrar.tls_port}" in record["last_reason"]
    # Nothing reached the registrar by any transport.
    assert registrar.bindings(ALICE) == []
    assert registrar.accepted_registrations + registrar.rejected_registrations == 0


# 4. TCP flows


def test_a_lost_tcp_flow_registers_again_at_once(trunk, kamailio, wire):
    registrar = kamailio(challenge=False)
    proxy = wire(TCPProxy(("127.0.0.1", registrar.port)))
    trunk.start(
        [trunk.row("alice", f"sip:127.0.0.1:{proxy.port};transport=tcp")],
        "--listen", f"tcp:127.0.0.1:{trunk.sip_port}",
    )
    [before] = wait_until(lambda: registrar.bindings(ALICE), 10, "the binding over TCP")
    trunk.wait_state(ALICE, "REGISTERED_STATE", 5)
    assert proxy.accepted == 1

    proxy.cut()
    cut_at = time.monotonic()
    [after] = wait_until(
        lambda: [b for b in registrar.bindings(ALICE) if b.cseq > before.cseq], 5, "a REGISTER over a new flow"
    )
    took = time.monotonic() - cut_at
    # Expiry 60: the next refresh was 50 s away.
    assert took < 2, f"re-registered {took:.1f} s after the flow closed"
    assert after.call_id == before.call_id
    assert proxy.accepted == 2
    assert trunk.record(ALICE)["state"] == "REGISTERED_STATE"


# 5. Keep-alives on the wire


def intervals(arrivals) -> list[float]:
    return [later.at - earlier.at for earlier, later in zip(arrivals, arrivals[1:])]


def test_keepalives_on_udp_and_on_an_outbound_tcp_flow(trunk, wire):
    udp = wire(WireRegistrar("udp"))
    tcp = wire(WireRegistrar("tcp", extra_headers=[("Require", "outbound"), ("Flow-Timer", "3")]))
    trunk.start(
        [
            trunk.row("alice", f"sip:127.0.0.1:{udp.port}"),
            trunk.row(
                "bob", f"sip:127.0.0.1:{tcp.port};transport=tcp", binding_params=f";reg-id=1;+sip.instance={INSTANCE}"
            ),
        ],
        "--listen", f"tcp:127.0.0.1:{trunk.sip_port}",
        "--keepalive-interval", "2",
    )
    trunk.wait_state(ALICE, "REGISTERED_STATE", 10)
    trunk.wait_state(BOB, "REGISTERED_STATE", 10)

    wait_until(lambda: len(udp.keepalives()) >= 3 and len(tcp.keepalives()) >= 2, 10, "keep-alives on both flows")
    udp_beats, tcp_beats = udp.keepalives(), tcp.keepalives()
    # UDP: every keepalive_interval, from the socket the REGISTER left through.
    assert {beat.peer for beat in udp_beats} == {("127.0.0.1", trunk.sip_port)}
    assert all(1.5 <= gap <= 2.5 for gap in intervals(udp_beats)), intervals(udp_beats)
    # TCP with RFC 5626: every Flow-Timer seconds, on the registration's own connection.
    [register] = tcp.registers()
    assert {beat.peer for beat in tcp_beats} == {register.peer}
    assert all(2.5 <= gap <= 3.5 for gap in intervals(tcp_beats)), intervals(tcp_beats)
    assert tcp.connections == 1
    assert len(udp.registers()) == 1
