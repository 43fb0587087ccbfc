"""TLS context choices for outgoing and listening SIP-over-TLS sockets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from OpenSSL import SSL
from twisted.internet import ssl
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from zope.interface import implementer


@dataclass(frozen=True, slots=True)
class TLSSettings:
    """The ``tls_ca_file``, ``tls_cert_file``, ``tls_key_file`` and ``tls_verify`` parameters."""

    ca_file: str | None = None
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
        trust = (
            ssl.Certificate.loadPEM(Path(self.ca_file).read_bytes())
            if self.ca_file
            else ssl.platformTrust()
        )
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
