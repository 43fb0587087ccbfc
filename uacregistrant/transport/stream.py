"""SIP over TCP and TLS: framed stream connections, one reused per peer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol as TypingProtocol

from service_identity import VerificationError
from twisted.internet import defer, endpoints
from twisted.internet.interfaces import IDelayedCall, IHandshakeListener, IListeningPort
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from uacregistrant.sip.errors import ParseError
from uacregistrant.sip.framing import StreamFramer
from uacregistrant.transport.cap import ConnectionCap, Refused
from uacregistrant.transport.errors import TransportError
from uacregistrant.transport.listen import Destination, SocketSpec
from uacregistrant.transport.tls import TLSSettings

# A connection is known by the peer address plus, for TLS, the name it was verified against.
ConnectionKey = tuple[str, int, str | None]


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """``tcp_idle_timeout`` and ``tcp_max_connections``, for accepted connections.

    Connections we open ourselves are as many as the next hops we use, and
    stay open for the flows they carry; the ones a peer opens to us are
    bounded in number and in idleness.
    """

    # Seconds an accepted connection may go without delivering a whole
    # message: idle ones and ones trickling a message a byte at a time alike.
    idle_timeout: float = 120.0
    max_connections: int = 256


class StreamReceiver(TypingProtocol):
    def stream_message_received(self, connection: SIPStreamProtocol, data: bytes) -> None: ...

    def stream_malformed(self, connection: SIPStreamProtocol, error: ParseError) -> None: ...

    def stream_connection_lost(self, connection: SIPStreamProtocol, reason: Failure) -> None: ...


@implementer(IHandshakeListener)
class SIPStreamProtocol(Protocol):
    """One TCP or TLS connection; usable once connected (and, for TLS, once the handshake is done)."""

    def __init__(self, owner: StreamSocket, key: ConnectionKey | None, tls: bool) -> None:
        self._owner = owner
        self.key = key
        # Ours when we connected out (the key is known up front); else accepted.
        self.outgoing = key is not None
        self._tls = tls
        self._framer = StreamFramer()
        self._usable = False
        self._waiters: list[defer.Deferred[SIPStreamProtocol]] = []
        self._idle: IDelayedCall | None = None

    def when_usable(self) -> defer.Deferred[SIPStreamProtocol]:
        if self._usable:
            return defer.succeed(self)
        waiter: defer.Deferred[SIPStreamProtocol] = defer.Deferred()
        self._waiters.append(waiter)
        return waiter

    def connectionMade(self) -> None:
        if self.key is None:
            peer = self.transport.getPeer()
            self.key = (peer.host, peer.port, None)
        self._owner.adopt(self)
        if not self.outgoing:
            self._owner.cap.opened(self)
            self._restart_idle()
        if not self._tls:
            self._became_usable()

    def busy(self) -> bool:
        return False

    def evict(self) -> None:
        self.transport.abortConnection()

    def _restart_idle(self) -> None:
        if self._idle is not None and self._idle.active():
            self._idle.reset(self._owner.limits.idle_timeout)
        else:
            self._idle = self._owner.call_later(self._owner.limits.idle_timeout, self._idled)

    def _idled(self) -> None:
        self._idle = None
        self.transport.abortConnection()

    def handshakeCompleted(self) -> None:
        self._became_usable()

    def _became_usable(self) -> None:
        self._usable = True
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(self)

    def never_usable(self, reason: Failure) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.errback(reason)

    def dataReceived(self, data: bytes) -> None:
        try:
            messages = self._framer.feed(data)
        except ParseError as error:
            # Framing is lost for good: nothing after this can be trusted.
            self._owner.receiver.stream_malformed(self, error)
            self.transport.loseConnection()
            return
        if messages and self._idle is not None:
            self._restart_idle()
        for message in messages:
            self._owner.receiver.stream_message_received(self, message)

    def connectionLost(self, reason: Failure) -> None:
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        self._idle = None
        if not self.outgoing:
            self._owner.cap.closed(self)
        self._owner.forget(self)
        if not self._usable:
            self.never_usable(reason)
        self._usable = False
        self._owner.receiver.stream_connection_lost(self, reason)

    @property
    def peer(self) -> tuple[str, int]:
        address = self.transport.getPeer()
        return (address.host, address.port)

    def send(self, data: bytes) -> None:
        self.transport.write(data)

    @property
    def is_tls(self) -> bool:
        return self._tls

    def close(self) -> None:
        self.transport.abortConnection()


class StreamSocket:
    """A tcp: or tls: socket: it listens, and connects out to peers on demand."""

    log = Logger()

    def __init__(
        self,
        spec: SocketSpec,
        reactor: object,
        tls: TLSSettings,
        receiver: StreamReceiver,
        limits: StreamLimits = StreamLimits(),
    ) -> None:
        self.spec = spec
        self.receiver = receiver
        self.limits = limits
        self.cap = ConnectionCap(limits.max_connections)
        self._reactor = reactor
        self._tls = tls
        self._port: IListeningPort | None = None
        self._connections: dict[ConnectionKey, SIPStreamProtocol] = {}
        self._all: set[SIPStreamProtocol] = set()
        self._connecting: set[defer.Deferred[object]] = set()

    @property
    def is_tls(self) -> bool:
        return self.spec.transport == "tls"

    def listen(self) -> SocketSpec:
        """Start listening; returns the spec with the port actually bound.

        A tls: socket without tls_cert_file is a client only: it connects out
        but accepts nothing, since it has no certificate to present.
        """
        if self.is_tls and not self._tls.has_certificate:
            self.log.info(
                "{socket} has no tls_cert_file: it connects out but accepts no connections", socket=str(self.spec)
            )
            return self.spec
        factory = _CappedFactory(self)
        if self.is_tls:
            self._port = self._reactor.listenSSL(
                self.spec.port, factory, self._tls.server_options(), interface=self.spec.host
            )
        else:
            self._port = self._reactor.listenTCP(self.spec.port, factory, interface=self.spec.host)
        self.spec = SocketSpec(self.spec.transport, self.spec.host, self._port.getHost().port)
        return self.spec

    def call_later(self, delay: float, call: object) -> IDelayedCall:
        return self._reactor.callLater(delay, call)

    def adopt(self, connection: SIPStreamProtocol) -> None:
        self._all.add(connection)
        assert connection.key is not None
        self._connections.setdefault(connection.key, connection)

    def forget(self, connection: SIPStreamProtocol) -> None:
        self._all.discard(connection)
        if connection.key is not None and self._connections.get(connection.key) is connection:
            del self._connections[connection.key]

    def connection_for(self, destination: Destination) -> defer.Deferred[SIPStreamProtocol]:
        """The live connection to ``destination``, opened now if there is none."""
        key = self._key(destination)
        existing = self._connections.get(key)
        if existing is not None:
            # Usable, or still connecting: share the same attempt.
            return existing.when_usable().addErrback(self._as_transport_error, destination)
        return self._connect(destination, key)

    def _key(self, destination: Destination) -> ConnectionKey:
        return (destination.host, destination.port, destination.server_name if self.is_tls else None)

    def _connect(self, destination: Destination, key: ConnectionKey) -> defer.Deferred[SIPStreamProtocol]:
        endpoint_type = endpoints.TCP6ClientEndpoint if destination.family == 6 else endpoints.TCP4ClientEndpoint
        endpoint = endpoint_type(self._reactor, destination.host, destination.port, bindAddress=(self.spec.host, 0))
        if self.is_tls:
            name = destination.server_name or destination.host
            endpoint = endpoints.wrapClientTLS(self._tls.client_options(name), endpoint)
        connection = SIPStreamProtocol(self, key, self.is_tls)
        # Registered before the connect completes so that concurrent sends share it.
        self._connections[key] = connection
        usable = connection.when_usable()
        connecting = endpoint.connect(Factory.forProtocol(lambda: connection))
        self._connecting.add(connecting)

        def connect_failed(reason: Failure) -> None:
            self.forget(connection)
            connection.never_usable(reason)

        connecting.addErrback(connect_failed)
        connecting.addBoth(lambda _: self._connecting.discard(connecting))
        return usable.addErrback(self._as_transport_error, destination)

    def _as_transport_error(self, reason: Failure, destination: Destination) -> Failure:
        if reason.check(TransportError):
            return reason
        what = "TLS connection" if self.is_tls else "connection"
        return Failure(TransportError(f"{what} to {destination} failed: {describe_failure(reason)}"))

    def close(self) -> defer.Deferred[None]:
        """Stop listening, give up connecting and drop every connection."""
        for connecting in list(self._connecting):
            connecting.cancel()
        for connection in list(self._all):
            connection.close()
        self._connections.clear()
        if self._port is None:
            return defer.succeed(None)
        port, self._port = self._port, None
        return defer.maybeDeferred(port.stopListening)


class _CappedFactory(Factory):
    """Accepts a connection while the socket's cap allows (see ``ConnectionCap``)."""

    noisy = False

    def __init__(self, owner: StreamSocket) -> None:
        self._owner = owner

    def buildProtocol(self, addr: object) -> Protocol:
        if not self._owner.cap.admit():
            return Refused()
        return SIPStreamProtocol(self._owner, None, self._owner.is_tls)


def describe_failure(reason: Failure) -> str:
    """A one-line reason, readable for OpenSSL errors too."""
    value = reason.value
    if isinstance(value, VerificationError):
        return "certificate does not match " + ", ".join(_expected_name(error) for error in value.errors)
    details = getattr(value, "args", ())
    if details and isinstance(details[0], list):
        # OpenSSL errors carry [(library, function, reason), ...].
        return "; ".join(str(item[-1]) for item in details[0] if isinstance(item, tuple)) or repr(value)
    return reason.getErrorMessage() or type(value).__name__


def _expected_name(error: object) -> str:
    identity = getattr(error, "mismatched_id", None)
    name = getattr(identity, "hostname", None) or getattr(identity, "ip", None) or error
    return name.decode("ascii", "replace") if isinstance(name, bytes) else str(name)
