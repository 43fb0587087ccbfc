"""The transaction layer: client transactions over UDP, TCP and TLS sockets.

It turns reactor callbacks into calls on the pure ClientTransaction and its
effects back into writes, one IDelayedCall per transaction and Deferreds.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass
from functools import partial
from typing import Callable

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from uacregistrant.sip.errors import ParseError
from uacregistrant.sip.headers import canonical_name, split_values
from uacregistrant.sip.message import Request, Response, Via, parse_message, parse_via, response_for
from uacregistrant.sip.transaction import (
    ClientTransaction,
    DeliverResponse,
    Effect,
    Retransmit,
    State as TransactionState,
    Terminated,
    TimedOut,
    Timers,
    TransportFailed,
    transaction_key,
)
from uacregistrant.transport.errors import TransactionTimeout, TransportError
from uacregistrant.transport.interfaces import IRequestSender
from uacregistrant.transport.listen import Destination, SocketSpec
from uacregistrant.transport.stream import SIPStreamProtocol, StreamLimits, StreamSocket, describe_failure
from uacregistrant.transport.tls import TLSSettings
from uacregistrant.transport.udp import SIPDatagramProtocol

# Methods we know but do not serve get 405; anything else is 501 (RFC 3261 §8.2.1).
KNOWN_METHODS = frozenset(
    "INVITE ACK BYE CANCEL REGISTER OPTIONS PRACK SUBSCRIBE NOTIFY PUBLISH INFO REFER MESSAGE UPDATE".split()
)
ALLOWED_METHODS = "OPTIONS"
KEEPALIVE = b"\r\n\r\n"


@dataclass(slots=True)
class Counters:
    """What the layer has seen, for metrics."""

    requests_sent: int = 0
    retransmissions: int = 0
    timeouts: int = 0
    transport_errors: int = 0
    responses_received: int = 0
    stray_responses: int = 0
    malformed_dropped: int = 0
    incoming_requests: int = 0


@dataclass(slots=True, eq=False)
class _Pending:
    """One live client transaction and everything it owns."""

    transaction: ClientTransaction
    result: defer.Deferred[Response]
    data: bytes
    destination: Destination
    send: Callable[[bytes], None] | None = None
    connection: SIPStreamProtocol | None = None
    timer: IDelayedCall | None = None
    # The first Timer E while it waits in the layer's FIFO (UDP), else None.
    first_due: float | None = None
    failure_reason: str = ""


@implementer(IRequestSender)
class TransactionLayer:
    """Runs RFC 3261 non-INVITE client transactions and answers stray requests."""

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        reactor: object,
        *,
        random: Callable[[int], bytes] = os.urandom,
        user_agent: str = "uac-registrant",
        timers: Timers = Timers(),
        tls: TLSSettings = TLSSettings(),
        stream_limits: StreamLimits = StreamLimits(),
    ) -> None:
        self._clock = clock
        self._reactor = reactor
        self._random = random
        self._user_agent = user_agent
        self._timers = timers
        self._tls = tls
        self._stream_limits = stream_limits
        self._udp: list[tuple[SocketSpec, SIPDatagramProtocol, object]] = []
        self._streams: list[StreamSocket] = []
        self._pending: dict[tuple[str, str], _Pending] = {}
        self.stats = Counters()
        self._socket_cache: dict[tuple, SocketSpec] = {}
        self._completed: deque[tuple[float, tuple[str, str]]] = deque()
        self._absorbing: dict[tuple[str, str], float] = {}
        self._purge_call: IDelayedCall | None = None
        # Every UDP transaction's first Timer E, T1 after its start, so in
        # order: one FIFO behind one reactor timer instead of a callLater and
        # a cancel per transaction (most are answered well within T1).
        self._first_e: deque[_Pending] = deque()
        self._first_e_waiting = 0
        self._first_e_call: IDelayedCall | None = None
        self._udp_senders: dict[SocketSpec, SIPDatagramProtocol] = {}
        # Called with the Destination of every outgoing TCP/TLS connection that
        # closes: a registration over it has lost its flow (RFC 5626 §4.4).
        self.flow_observers: list[Callable[[Destination], None]] = []

    # Sockets

    def listen(self, spec: SocketSpec) -> SocketSpec:
        """Open a listening socket; returns it with the port actually bound."""
        if spec.transport == "udp":
            protocol = SIPDatagramProtocol(spec, self)
            port = self._reactor.listenUDP(spec.port, protocol, interface=spec.host, maxPacketSize=65535)
            bound = SocketSpec("udp", spec.host, port.getHost().port)
            protocol.spec = bound
            self._udp.append((bound, protocol, port))
            self._udp_senders[bound] = protocol
            self._socket_cache.clear()
            return bound
        stream = StreamSocket(spec, self._reactor, self._tls, self, self._stream_limits)
        bound = stream.listen()
        self._streams.append(stream)
        self._socket_cache.clear()
        return bound

    @property
    def sockets(self) -> list[SocketSpec]:
        return [spec for spec, _, _ in self._udp] + [stream.spec for stream in self._streams]

    def stop(self) -> defer.Deferred[None]:
        """Abandon every transaction, close every socket; no timer is left behind."""
        for pending in list(self._pending.values()):
            self._abandon(pending)
        self._completed.clear()
        self._absorbing.clear()
        self._drop_first_e()
        if self._purge_call is not None:
            self._purge_call.cancel()
            self._purge_call = None
        closing = [defer.maybeDeferred(port.stopListening) for _, _, port in self._udp]
        closing += [stream.close() for stream in self._streams]
        self._udp.clear()
        self._streams.clear()
        self._udp_senders.clear()
        self._socket_cache.clear()
        return defer.gatherResults(closing).addCallback(lambda _: None)

    def _abandon(self, pending: _Pending) -> None:
        # Quietly: whoever still waits sees a CancelledError, and nobody left
        # waiting turns it into an "Unhandled error in Deferred" at exit.
        pending.result.cancel()
        pending.result.addErrback(_consume_cancelled)
        self._forget(pending)

    def _socket_for(self, destination: Destination, local: SocketSpec | None) -> SocketSpec:
        # Per REGISTER: remembered by (transport, family, local).
        key = (destination.transport, destination.family, local)
        spec = self._socket_cache.get(key)
        if spec is None:
            spec = self._socket_cache[key] = self._find_socket(destination, local)
        return spec

    def _find_socket(self, destination: Destination, local: SocketSpec | None) -> SocketSpec:
        for spec in self.sockets:
            suits = spec.transport == destination.transport and spec.family == destination.family
            if suits and (local is None or spec == local):
                return spec
        wanted = str(local) if local is not None else f"{destination.transport} IPv{destination.family}"
        raise TransportError(f"no listening socket {wanted} to reach {destination}")

    # Client transactions

    def send_request(
        self, request: Request, destination: Destination, local: SocketSpec | None = None
    ) -> defer.Deferred[Response]:
        try:
            spec = self._socket_for(destination, local)
        except TransportError as error:
            self.stats.transport_errors += 1
            return defer.fail(error)
        branch = "z9hG4bK" + self._random(10).hex()
        via = f"SIP/2.0/{spec.transport.upper()} {spec.sent_by};branch={branch};rport"
        outgoing = Request(request.method, request.uri, [("Via", via), *request.headers], request.body)
        transaction = ClientTransaction(
            branch, request.method, destination.reliable, self._clock.seconds(), self._timers
        )
        pending = _Pending(
            transaction,
            # Cancelling abandons the transaction: no more retransmissions or timers.
            defer.Deferred(lambda _: self._forget(pending)),
            outgoing.to_bytes(),
            destination,
        )
        self._pending[transaction.key] = pending
        self.stats.requests_sent += 1
        if destination.reliable:
            self._reschedule(pending)
        else:
            self._queue_first_e(pending)
        if spec.transport == "udp":
            protocol = self._udp_senders[spec]
            pending.send = lambda data: protocol.send(data, destination.host, destination.port)
            self._write(pending)
        else:
            stream = next(stream for stream in self._streams if stream.spec == spec)
            # maybeDeferred: unreadable TLS files must fail this request, not the caller.
            defer.maybeDeferred(stream.connection_for, destination).addCallbacks(
                self._connected, self._connect_failed, callbackArgs=(pending,), errbackArgs=(pending,)
            )
        return pending.result

    def _connected(self, connection: SIPStreamProtocol, pending: _Pending) -> None:
        if self._pending.get(pending.transaction.key) is not pending:
            return
        pending.connection = connection
        pending.send = connection.send
        self._write(pending)

    def _connect_failed(self, reason: Failure, pending: _Pending) -> None:
        if self._pending.get(pending.transaction.key) is pending:
            self._transport_failed(pending, reason.getErrorMessage())

    def _write(self, pending: _Pending) -> None:
        assert pending.send is not None
        try:
            pending.send(pending.data)
        except OSError as error:
            self._transport_failed(pending, f"send to {pending.destination} failed: {error}")

    def _transport_failed(self, pending: _Pending, reason: str) -> None:
        pending.failure_reason = reason
        self._apply(pending, pending.transaction.on_transport_error(self._clock.seconds()))

    def _purge(self) -> None:
        """Timer K (§17.1.2.2) for every completed transaction whose time has come."""
        self._purge_call = None
        now = self._clock.seconds()
        completed = self._completed
        while completed and completed[0][0] <= now:
            _, key = completed.popleft()
            self._absorbing.pop(key, None)
        if completed:
            self._purge_call = self._clock.callLater(completed[0][0] - now, self._purge)

    def _queue_first_e(self, pending: _Pending) -> None:
        pending.first_due = deadline = pending.transaction.deadline
        self._first_e.append(pending)
        self._first_e_waiting += 1
        if self._first_e_call is None:
            self._first_e_call = self._clock.callLater(max(0.0, deadline - self._clock.seconds()), self._fire_first_e)

    def _fire_first_e(self) -> None:
        self._first_e_call = None
        now = self._clock.seconds()
        queue = self._first_e
        while queue and (queue[0].first_due is None or queue[0].first_due <= now):
            pending = queue.popleft()
            if pending.first_due is not None:  # else answered or dropped meanwhile
                self._unqueue_first_e(pending)
                self._on_timer(pending)
        if queue and self._first_e_call is None:
            self._first_e_call = self._clock.callLater(max(0.0, queue[0].first_due - now), self._fire_first_e)

    def _unqueue_first_e(self, pending: _Pending) -> None:
        pending.first_due = None
        self._first_e_waiting -= 1
        if self._first_e_waiting == 0:
            # Nothing of the layer stays on the clock once no transaction waits.
            self._drop_first_e()

    def _drop_first_e(self) -> None:
        for pending in self._first_e:
            pending.first_due = None
        self._first_e.clear()
        self._first_e_waiting = 0
        if self._first_e_call is not None:
            self._first_e_call.cancel()
            self._first_e_call = None

    def _on_timer(self, pending: _Pending) -> None:
        pending.timer = None
        self._apply(pending, pending.transaction.on_timer(self._clock.seconds()))

    def _reschedule(self, pending: _Pending) -> None:
        deadline = pending.transaction.deadline
        if pending.first_due is not None:
            if deadline == pending.first_due:
                return  # still waiting in the FIFO for its first Timer E
            self._unqueue_first_e(pending)
        timer = pending.timer
        if (
            deadline is not None
            and pending.transaction.state is TransactionState.COMPLETED
            and not pending.destination.reliable  # Timer K is 0 there
        ):
            # Only Timer K is left, always T4 from now, and all it does is absorb
            # retransmitted finals: keep just the key, in one FIFO behind one
            # timer (a REGISTER burst would otherwise hold thousands of
            # finished transactions and timers for 5 s).
            self._forget(pending)
            key = pending.transaction.key
            self._absorbing[key] = deadline
            self._completed.append((deadline, key))
            if self._purge_call is None:
                self._purge_call = self._clock.callLater(max(0.0, deadline - self._clock.seconds()), self._purge)
            return
        if deadline is None:
            if timer is not None:
                timer.cancel()
                pending.timer = None
            return
        delay = max(0.0, deadline - self._clock.seconds())
        if timer is not None:
            timer.reset(delay)
        else:
            pending.timer = self._clock.callLater(delay, self._on_timer, pending)

    def _apply(self, pending: _Pending, effects: list[Effect], response: Response | None = None) -> None:
        # State first, Deferreds last: a callback may start a new transaction.
        settle: Callable[[], object] | None = None
        for effect in effects:
            match effect:
                case Retransmit():
                    self.stats.retransmissions += 1
                    self._write(pending)
                case DeliverResponse(status=status) if status < 200:
                    self.log.debug(
                        "provisional {status} for {method}", status=status, method=pending.transaction.method
                    )
                case DeliverResponse():
                    settle = partial(pending.result.callback, response)
                    # Completed: what is left only absorbs retransmitted finals
                    # until Timer K; the request bytes need not wait with it.
                    pending.data = b""
                    pending.send = None
                case TimedOut():
                    self.stats.timeouts += 1
                    method, destination = pending.transaction.method, pending.destination
                    timeout = TransactionTimeout(f"{method} to {destination}: no final response (Timer F)")
                    timeout.via = _top_via(pending.data)  # for a record's trace (reg_trace)
                    settle = partial(pending.result.errback, timeout)
                case TransportFailed():
                    self.stats.transport_errors += 1
                    failed = TransportError(pending.failure_reason or f"transport to {pending.destination} failed")
                    failed.via = _top_via(pending.data)
                    settle = partial(pending.result.errback, failed)
                case Terminated():
                    self._forget(pending)
        if self._pending.get(pending.transaction.key) is pending:
            self._reschedule(pending)
        if settle is not None:
            settle()

    def _forget(self, pending: _Pending) -> None:
        if self._pending.get(pending.transaction.key) is pending:
            del self._pending[pending.transaction.key]
        if pending.first_due is not None:
            self._unqueue_first_e(pending)
        if pending.timer is not None:
            pending.timer.cancel()
            pending.timer = None

    # Incoming traffic

    def datagram_received(self, sender: SIPDatagramProtocol, data: bytes, source: tuple[str, int]) -> None:
        self._received(
            data,
            source,
            stream=False,
            reply=lambda request, response: self._reply_datagram(sender, request, response, source),
        )

    def stream_message_received(self, connection: SIPStreamProtocol, data: bytes) -> None:
        self._received(
            data,
            connection.peer,
            stream=True,
            reply=lambda request, response: connection.send(response.to_bytes()),
        )

    def stream_malformed(self, connection: SIPStreamProtocol, error: ParseError) -> None:
        self._dropped(error)

    def stream_connection_lost(self, connection: SIPStreamProtocol, reason: Failure) -> None:
        # §17.1.4: a request whose connection went away before the answer failed.
        for pending in list(self._pending.values()):
            if pending.connection is connection:
                self._transport_failed(
                    pending, f"connection to {pending.destination} lost: {describe_failure(reason)}"
                )
        if connection.outgoing and connection.key is not None:
            host, port, server_name = connection.key
            flow = Destination("tls" if connection.is_tls else "tcp", host, port, server_name)
            for observer in self.flow_observers:
                observer(flow)

    def send_keepalive(self, destination: Destination, local: SocketSpec | None = None) -> defer.Deferred[None]:
        """A CRLF keep-alive on the flow to ``destination`` (RFC 5626 §4.4.1, and
        NAT bindings on UDP); fails with TransportError when it cannot go out."""
        try:
            spec = self._socket_for(destination, local)
        except TransportError as error:
            return defer.fail(error)
        if spec.transport == "udp":
            self._udp_senders[spec].send(KEEPALIVE, destination.host, destination.port)
            return defer.succeed(None)
        stream = next(stream for stream in self._streams if stream.spec == spec)
        return defer.maybeDeferred(stream.connection_for, destination).addCallback(
            lambda connection: connection.send(KEEPALIVE)
        )

    def _received(
        self, data: bytes, source: tuple[str, int], *, stream: bool, reply: Callable[[Request, Response], None]
    ) -> None:
        try:
            message = parse_message(data, stream=stream)
            if isinstance(message, Request):
                self._serve(_with_received(message, source), reply)
            else:
                self._match(message)
        except ParseError as error:
            self._dropped(error)

    def _dropped(self, error: ParseError) -> None:
        self.stats.malformed_dropped += 1
        self.log.debug("dropping a malformed message: {error}", error=str(error))

    def _match(self, response: Response) -> None:
        branch = response.via.branch
        key = transaction_key(branch or "", response.cseq.method)
        self.stats.responses_received += 1
        pending = self._pending.get(key)
        if pending is None:
            if key in self._absorbing:
                return  # a retransmitted final of a completed transaction
            self.stats.stray_responses += 1
            self.log.debug("dropping a response that matches no transaction: {status}", status=response.status)
            return
        self._apply(pending, pending.transaction.on_response(response.status, self._clock.seconds()), response)

    def _serve(self, request: Request, reply: Callable[[Request, Response], None]) -> None:
        if request.method == "ACK":
            self.stats.incoming_requests += 1
            return
        headers = [("Server", self._user_agent)]
        if request.method == "OPTIONS":
            status, reason = 200, "OK"
            headers += [("Allow", ALLOWED_METHODS), ("Accept", "*/*")]
        elif request.method in KNOWN_METHODS:
            status, reason = 405, "Method Not Allowed"
            headers.append(("Allow", ALLOWED_METHODS))
        else:
            status, reason = 501, "Not Implemented"
        # Built before counting, so that a request we cannot answer counts as malformed.
        response = response_for(request, status, reason, headers, to_tag=self._random(6).hex())
        self.stats.incoming_requests += 1
        reply(request, response)

    def _reply_datagram(
        self, sender: SIPDatagramProtocol, request: Request, response: Response, source: tuple[str, int]
    ) -> None:
        # §18.2.2 with RFC 3581: to the source address; to the source port only when rport asked for it.
        via = request.via
        port = via.rport or via.port or 5060
        try:
            sender.send(response.to_bytes(), source[0], port)
        except OSError as error:
            self.log.info(
                "cannot answer {method} from {host}: {error}", method=request.method, host=source[0], error=str(error)
            )


def _top_via(data: bytes) -> str | None:
    """The Via the request went out with (its second line), on the rare failure paths only."""
    lines = data.split(b"\r\n", 2)
    if len(lines) < 2 or not lines[1][:4].lower() == b"via:":
        return None
    return lines[1][4:].strip().decode("utf-8", "replace")


def _consume_cancelled(failure: Failure) -> None:
    failure.trap(defer.CancelledError)


def _with_received(request: Request, source: tuple[str, int]) -> Request:
    """The request with its top Via telling where it really came from (§18.2.1, RFC 3581 §4)."""
    index, (name, value) = next(
        (index, header) for index, header in enumerate(request.headers) if canonical_name(header[0]) == "via"
    )
    values = split_values(value)
    top = parse_via(values[0])
    host, port = source
    params = [(key, str(port) if key == "rport" else param) for key, param in top.params if key != "received"]
    if top.host.strip("[]") != host:
        params.append(("received", host))
    values[0] = str(Via(top.transport, top.host, top.port, tuple(params)))
    headers = list(request.headers)
    headers[index] = (name, ", ".join(values))
    return Request(request.method, request.uri, headers, request.body)
