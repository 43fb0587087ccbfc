"""The layer over real sockets on loopback: UDP, TCP, TLS, IPv4 and IPv6."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, ssl
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import capturedLogs, formatEvent

from tests.transport.certs import CertificateAuthority
from uacregistrant.sip.framing import StreamFramer
from uacregistrant.sip.message import Request, parse_message, response_for
from uacregistrant.transport.errors import TransportError
from uacregistrant.transport.layer import TransactionLayer
from uacregistrant.transport.listen import Destination, parse_socket
from uacregistrant.transport.tls import TLSSettings, load_ca_bundle


def options(cseq: int = 1) -> Request:
    return Request(
        "OPTIONS",
        "sip:peer.test",
        [
            ("Max-Forwards", "70"),
            ("From", "<sip:probe@client.test>;tag=c1"),
            ("To", "<sip:peer.test>"),
            ("Call-ID", f"loop-{cseq}"),
            ("CSeq", f"{cseq} OPTIONS"),
        ],
    )


def ipv6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.fixture
def layers():
    made: list[TransactionLayer] = []

    def make(**kwargs) -> TransactionLayer:
        layer = TransactionLayer(reactor, reactor, **kwargs)
        made.append(layer)
        return layer

    yield make
    for layer in made:
        pytest_twisted.blockon(layer.stop())


@pytest.mark.parametrize(
    ("client_socket", "server_socket"),
    [
        ("udp:127.0.0.1:0", "udp:127.0.0.1:0"),
        ("tcp:127.0.0.1:0", "tcp:127.0.0.1:0"),
        pytest.param(
            "udp:[::1]:0", "udp:[::1]:0", marks=pytest.mark.skipif(not ipv6_available(), reason="no IPv6 loopback")
        ),
        pytest.param(
            "tcp:[::1]:0", "tcp:[::1]:0", marks=pytest.mark.skipif(not ipv6_available(), reason="no IPv6 loopback")
        ),
    ],
)
@pytest_twisted.inlineCallbacks
def test_options_between_two_layers(layers, client_socket: str, server_socket: str):
    client, server = layers(), layers(user_agent="peer/2")
    client.listen(parse_socket(client_socket))
    bound = server.listen(parse_socket(server_socket))
    destination = Destination(bound.transport, bound.host, bound.port)
    first = yield client.send_request(options(1), destination)
    second = yield client.send_request(options(2), destination)
    assert (first.status, second.status) == (200, 200)
    assert first.header("Server") == "peer/2"
    assert second.cseq.number == 2
    assert server.stats.incoming_requests == 2
    assert client.stats.retransmissions == 0


@pytest_twisted.inlineCallbacks
def test_tcp_connection_refused_is_a_transport_error(layers):
    client = layers()
    client.listen(parse_socket("tcp:127.0.0.1:0"))
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    with pytest.raises(TransportError, match="connection to tcp:127.0.0.1"):
        yield client.send_request(options(), Destination("tcp", "127.0.0.1", port))
    assert client.stats.transport_errors == 1


class TLSRegistrar(Protocol):
    """Answers every request 200, after a CRLF keep-alive, and remembers what it saw."""

    def __init__(self, seen: dict) -> None:
        self.seen = seen
        self.framer = StreamFramer()

    def connectionMade(self) -> None:
        self.seen["connections"] += 1

    def dataReceived(self, data: bytes) -> None:
        for raw in self.framer.feed(data):
            request = parse_message(raw, stream=True)
            self.seen["vias"].append(request.via)
            self.transport.write(b"\r\n\r\n" + response_for(request, 200, "OK", to_tag="tls").to_bytes())


@pytest.fixture
def pki(tmp_path: Path):
    authority = CertificateAuthority(tmp_path)
    server = authority.issue("sip.example.test")
    stranger = CertificateAuthority(tmp_path, "Other CA")
    return authority, server, stranger


@pytest.fixture
def tls_registrar(pki):
    _, server, _ = pki
    seen: dict = {"connections": 0, "vias": [], "sni": []}
    options_ = ssl.PrivateCertificate.loadPEM(server.cert_file.read_bytes() + server.key_file.read_bytes()).options()
    context = options_.getContext()
    context.set_tlsext_servername_callback(lambda connection: seen["sni"].append(connection.get_servername()))
    port = reactor.listenSSL(0, Factory.forProtocol(lambda: TLSRegistrar(seen)), options_, interface="127.0.0.1")
    yield port.getHost().port, seen
    pytest_twisted.blockon(defer.maybeDeferred(port.stopListening))


def tls_client(layers, ca_file: Path, server) -> TransactionLayer:
    settings = TLSSettings(ca=load_ca_bundle(str(ca_file)), cert_file=str(server.cert_file), key_file=str(server.key_file))
    client = layers(tls=settings)
    client.listen(parse_socket("tls:127.0.0.1:0"))
    return client


@pytest_twisted.inlineCallbacks
def test_tls_verifies_the_certificate_sends_sni_and_reuses_the_connection(layers, pki, tls_registrar):
    authority, server, _ = pki
    port, seen = tls_registrar
    client = tls_client(layers, authority.files.cert_file, server)
    destination = Destination("tls", "127.0.0.1", port, server_name="sip.example.test")
    first = yield client.send_request(options(1), destination)
    second = yield client.send_request(options(2), destination)
    assert (first.status, second.status) == (200, 200)
    assert seen["sni"] == [b"sip.example.test"]
    assert seen["connections"] == 1
    assert [via.transport for via in seen["vias"]] == ["TLS", "TLS"]


@pytest.mark.parametrize(
    ("server_name", "trusted", "reason"),
    [
        ("sip.example.test", False, "certificate verify failed"),
        ("wrong.example.test", True, "certificate does not match wrong.example.test"),
    ],
)
@pytest_twisted.inlineCallbacks
def test_tls_with_an_untrusted_or_mismatched_certificate_is_a_transport_error(
    layers, pki, tls_registrar, server_name, trusted, reason
):
    authority, server, stranger = pki
    port, seen = tls_registrar
    client = tls_client(layers, (authority if trusted else stranger).files.cert_file, server)
    with pytest.raises(TransportError, match=f"TLS connection to tls:127.0.0.1:{port} failed: {reason}"):
        yield client.send_request(options(), Destination("tls", "127.0.0.1", port, server_name=server_name))
    assert seen["vias"] == []
    assert client.stats.transport_errors == 1


@pytest_twisted.inlineCallbacks
def test_tls_without_verification_accepts_any_certificate(layers, pki, tls_registrar):
    _, server, stranger = pki
    port, seen = tls_registrar
    settings = TLSSettings(
        ca=load_ca_bundle(str(stranger.files.cert_file)), cert_file=str(server.cert_file), key_file=str(server.key_file), verify=False
    )
    client = layers(tls=settings)
    client.listen(parse_socket("tls:127.0.0.1:0"))
    response = yield client.send_request(options(), Destination("tls", "127.0.0.1", port, server_name="sip.example.test"))
    assert response.status == 200
    assert seen["sni"] == [b"sip.example.test"]


@pytest_twisted.inlineCallbacks
def test_a_tls_socket_without_a_certificate_connects_out_but_accepts_nothing(layers, pki, tls_registrar):
    authority, _, _ = pki
    port, seen = tls_registrar
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        own_port = unused.getsockname()[1]
    client = layers(tls=TLSSettings(ca=load_ca_bundle(str(authority.files.cert_file))))
    with capturedLogs() as events:
        bound = client.listen(parse_socket(f"tls:127.0.0.1:{own_port}"))
    assert bound == parse_socket(f"tls:127.0.0.1:{own_port}")
    assert [formatEvent(event) for event in events] == [
        f"tls:127.0.0.1:{own_port} has no tls_cert_file: it connects out but accepts no connections"
    ]
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(("127.0.0.1", own_port))
    response = yield client.send_request(options(), Destination("tls", "127.0.0.1", port, server_name="sip.example.test"))
    assert response.status == 200
    assert seen["sni"] == [b"sip.example.test"]
    assert [(via.transport, via.host, via.port) for via in seen["vias"]] == [("TLS", "127.0.0.1", own_port)]
