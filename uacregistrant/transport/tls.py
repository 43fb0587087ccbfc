"""TLS context choices for outgoing and listening SIP-over-TLS sockets."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from OpenSSL import SSL, crypto
from twisted.internet import ssl
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from zope.interface import implementer


_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL
)


@dataclass(frozen=True, slots=True)
class CABundle:
    """``tls_ca_file``, read and parsed once: its path and every certificate in it."""

    path: str
    certificates: tuple[ssl.Certificate, ...] = field(compare=False, repr=False)

    def __str__(self) -> str:
        return self.path

    def trust_root(self) -> object:
        """An ``IOpenSSLTrustRoot`` trusting every certificate of the bundle (no file read)."""
        return ssl.trustRootFromCertificates(list(self.certificates))


def load_ca_bundle(path: str) -> CABundle:
    """Every certificate of a PEM file, in file order.

    A CA file is usually a bundle (the intermediate and root of each trusted
    chain, or a distribution's whole store); all of it is trusted.  A file
    with no certificate, or a block that does not parse, is a ``ValueError``.
    """
    try:
        text = Path(path).read_bytes()
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror}") from None
    blocks = _PEM_CERTIFICATE.findall(text)
    if not blocks:
        raise ValueError(f"{path} holds no PEM certificate")
    certificates = []
    for number, block in enumerate(blocks, 1):
        try:
            certificates.append(ssl.Certificate.loadPEM(block))
        except crypto.Error:
            raise ValueError(f"certificate {number} of {path} does not parse") from None
    return CABundle(path, tuple(certificates))


@dataclass(frozen=True, slots=True)
class TLSSettings:
    """The ``tls_ca_file`` (loaded), ``tls_cert_file``, ``tls_key_file`` and ``tls_verify`` parameters."""

    # None: the platform's trust store.
    ca: CABundle | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True

    @property
    def has_certificate(self) -> bool:
        """Whether there is a certificate of ours to present, as a listening socket must."""
        return self.cert_file is not None

    def _own_certificate(self) -> ssl.PrivateCertificate | None:
        if self.cert_file is None:
            return None
        cert = Path(self.cert_file).read_bytes()
        key = Path(self.key_file).read_bytes() if self.key_file else cert
        return ssl.PrivateCertificate.loadPEM(cert + b"\n" + key)

    def client_options(self, server_name: str) -> IOpenSSLClientConnectionCreator:
        """Options that send SNI ``server_name`` and, when verifying, check the certificate against it."""
        own = self._own_certificate()
        if not self.verify:
            return _UnverifiedClientOptions(server_name, own)
        trust = self.ca.trust_root() if self.ca is not None else ssl.platformTrust()
        return ssl.optionsForClientTLS(server_name, trustRoot=trust, clientCertificate=own)

    def server_options(self) -> ssl.CertificateOptions:
        """Options for a listening TLS socket; it needs a certificate and key."""
        own = self._own_certificate()
        if own is None:
            raise ValueError("a tls: listening socket needs tls_cert_file (and tls_key_file)")
        return own.options()


@implementer(IOpenSSLClientConnectionCreator)
class _UnverifiedClientOptions:
    """tls_verify off: still send SNI, accept any certificate."""

    def __init__(self, server_name: str, own: ssl.PrivateCertificate | None) -> None:
        self._server_name = server_name.encode("idna")
        options = own.options() if own is not None else ssl.CertificateOptions()
        self._context = options.getContext()

    def clientConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        connection = SSL.Connection(self._context, None)
        connection.set_tlsext_host_name(self._server_name)
        return connection
