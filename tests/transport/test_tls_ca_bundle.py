"""tls_ca_file as a PEM bundle: every certificate in it is trusted.

Matched: OpenSIPS modules/tls_mgm, ``load_ca()`` — "The list is to be stored
in a single file, containing all the acceptable root certificates", loaded
with ``if (!SSL_CTX_load_verify_locations(ctx, filename, 0))`` and
``LM_ERR("unable to load ca '%s'\\n", filename); return -1;`` (a file OpenSSL
finds no certificate in fails start-up).  The same here, naming the option.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, ssl
from twisted.internet.protocol import Factory

from tests.peers import free_port
from tests.transport.certs import CertificateAuthority
from tests.transport.test_loopback import TLSRegistrar, options
from uacregistrant.config import ConfigError, load_config
from uacregistrant.transport.errors import TransportError
from uacregistrant.transport.layer import TransactionLayer
from uacregistrant.transport.listen import Destination, parse_socket
from uacregistrant.transport.tls import TLSSettings, load_ca_bundle


@pytest.fixture
def two_authorities(tmp_path: Path):
    first = CertificateAuthority(tmp_path, "First CA")
    second = CertificateAuthority(tmp_path, "Second CA")
    return first, second, second.issue("sip.example.test")


@pytest.fixture
def registrar_of_the_second(two_authorities):
    """A TLS registrar whose certificate the second CA issued."""
    _, _, server = two_authorities
    seen: dict = {"connections": 0, "vias": []}
    options_ = ssl.PrivateCertificate.loadPEM(server.cert_file.read_bytes() + server.key_file.read_bytes()).options()
    port = reactor.listenSSL(0, Factory.forProtocol(lambda: TLSRegistrar(seen)), options_, interface="127.0.0.1")
    yield port.getHost().port
    pytest_twisted.blockon(defer.maybeDeferred(port.stopListening))


@pytest.fixture
def client_with():
    made: list[TransactionLayer] = []

    def make(ca_file: Path) -> TransactionLayer:
        layer = TransactionLayer(reactor, reactor, tls=TLSSettings(ca=load_ca_bundle(str(ca_file))))
        # No certificate of our own: the socket only names our Via port.
        layer.listen(parse_socket(f"tls:127.0.0.1:{free_port('tcp')}"))
        made.append(layer)
        return layer

    yield make
    for layer in made:
        pytest_twisted.blockon(layer.stop())


def bundle(path: Path, *authorities: CertificateAuthority) -> Path:
    path.write_bytes(b"# a comment line, as distribution bundles have\n" + b"".join(
        a.files.cert_file.read_bytes() for a in authorities
    ))
    return path


def test_every_certificate_of_the_bundle_is_loaded(tmp_path, two_authorities):
    first, second, _ = two_authorities
    loaded = load_ca_bundle(str(bundle(tmp_path / "ca.pem", first, second)))
    assert [c.getSubject().commonName for c in loaded.certificates] == [b"First CA", b"Second CA"]


@pytest_twisted.inlineCallbacks
def test_a_registrar_signed_by_the_second_ca_of_the_bundle_is_trusted(
    tmp_path, two_authorities, registrar_of_the_second, client_with
):
    first, second, _ = two_authorities
    destination = Destination("tls", "127.0.0.1", registrar_of_the_second, server_name="sip.example.test")
    only_first = client_with(bundle(tmp_path / "first.pem", first))
    with pytest.raises(TransportError, match="certificate verify failed"):
        yield only_first.send_request(options(1), destination)
    both = client_with(bundle(tmp_path / "both.pem", first, second))
    response = yield both.send_request(options(2), destination)
    assert response.status == 200


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "holds no PEM certificate"),
        (b"just some text\n", "holds no PEM certificate"),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "certificate 1 of .* does not parse"),
    ],
)
def test_a_ca_file_without_a_certificate_is_a_start_up_error_naming_the_option(tmp_path, content, reason):
    path = tmp_path / "ca.pem"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=f"^bad parameter tls_ca_file: .*{reason}") as error:
        load_config({"tls_ca_file": str(path)})
    assert error.value.parameter == "tls_ca_file"
