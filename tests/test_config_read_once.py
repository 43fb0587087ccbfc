"""Configuration is read once: ``mi_listen`` parsed once, ``tls_ca_file`` opened once.

The whole way, as the service runs them: the configuration is loaded, the
service built and started, its MI server listens, and its transport opens two
TLS connections to registrars whose certificate the CA file vouches for.
"""

from __future__ import annotations

import builtins
import io
import os
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import defer, endpoints, reactor, ssl, task
from twisted.internet.protocol import Factory

from tests.peers import free_port
from tests.transport.certs import CertificateAuthority
from tests.transport.test_loopback import TLSRegistrar, options
from uacregistrant.config import Config, load_config, parse_endpoint
from uacregistrant.configfile import render
from uacregistrant.service import RegistrantService
from uacregistrant.store.memory import MemoryStore
from uacregistrant.transport.listen import Destination
from uacregistrant.transport.tls import CABundle


@pytest.fixture
def opened(monkeypatch):
    """Every path opened through open() or pathlib, in order."""
    paths: list[str] = []
    real = io.open

    def counting(file, *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)):
            paths.append(os.fsdecode(file))
        return real(file, *args, **kwargs)

    monkeypatch.setattr(io, "open", counting)
    monkeypatch.setattr(builtins, "open", counting)
    return paths


@pytest.fixture
def parsed(monkeypatch):
    """Every endpoint description Twisted's strports parser read."""
    texts: list[str] = []
    real = endpoints._parse

    def counting(description):
        texts.append(description)
        return real(description)

    monkeypatch.setattr(endpoints, "_parse", counting)
    return texts


@pytest.fixture
def tls_registrars(tmp_path):
    """Two TLS registrars with certificates of one CA, and that CA's file."""
    authority = CertificateAuthority(tmp_path, "Only CA")
    server = authority.issue("sip.example.test")
    certificate = ssl.PrivateCertificate.loadPEM(server.cert_file.read_bytes() + server.key_file.read_bytes())
    seen: dict = {"connections": 0, "vias": []}
    ports = [
        reactor.listenSSL(0, Factory.forProtocol(lambda: TLSRegistrar(seen)), certificate.options(),
                          interface="127.0.0.1")
        for _ in range(2)
    ]
    yield [port.getHost().port for port in ports], str(authority.files.cert_file)
    for port in ports:
        pytest_twisted.blockon(defer.maybeDeferred(port.stopListening))


@pytest_twisted.ensureDeferred
async def test_the_ca_file_is_opened_once_and_mi_listen_parsed_once(tls_registrars, opened, parsed):
    ports, ca_file = tls_registrars
    mi_listen = "tcp:0:interface=127.0.0.1"
    config = load_config({
        "timer_interval": "2",
        "listen": [f"tls:127.0.0.1:{free_port('tcp')}"],
        "tls_ca_file": ca_file,
        "mi_listen": mi_listen,
    })
    assert isinstance(config.tls_ca_file, CABundle) and str(config.tls_ca_file) == ca_file
    assert parsed == [mi_listen]
    service = RegistrantService(config, reactor, store=MemoryStore())
    service.startService()
    try:
        for _ in range(100):
            if service.mi_address is not None:
                break
            await task.deferLater(reactor, 0.02, lambda: None)
        assert service.mi_address is not None and service.mi_address.port != 0
        for cseq, port in enumerate(ports, 1):
            destination = Destination("tls", "127.0.0.1", port, server_name="sip.example.test")
            response = await service.layer.send_request(options(cseq), destination)
            assert response.status == 200
    finally:
        await service.stopService()
    assert opened.count(ca_file) == 1, opened
    assert parsed == [mi_listen]


def test_a_parsed_endpoint_builds_with_the_reactor_it_is_given():
    spec = parse_endpoint("tcp:8123:interface=127.0.0.1:backlog=7")
    endpoint = spec.endpoint(reactor)
    assert isinstance(endpoint, endpoints.TCP4ServerEndpoint)
    assert (endpoint._reactor, endpoint._port, endpoint._interface, endpoint._backlog) == (
        reactor, 8123, "127.0.0.1", 7)
    assert spec == parse_endpoint("tcp:8123:interface=127.0.0.1:backlog=7") and str(spec) == spec.text
    assert Config(mi_listen=spec).mi_listen is spec


@pytest.mark.parametrize("text", ["carrier-pigeon:8888", "tcp:port", ""])
def test_a_bad_endpoint_is_a_value_error(text):
    with pytest.raises(ValueError, match="is not a Twisted endpoint"):
        parse_endpoint(text)


def test_an_empty_tls_ca_file_means_the_platform_trust():
    assert load_config({"tls_ca_file": ""}).tls_ca_file is None


def test_the_loaded_ca_file_shows_as_its_path(tmp_path: Path):
    authority = CertificateAuthority(tmp_path, "Only CA")
    config = load_config({"tls_ca_file": str(authority.files.cert_file)})
    assert f'tls_ca_file = "{authority.files.cert_file}"' in render(config)
