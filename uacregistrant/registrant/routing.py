"""Where a record's request goes: its next hop by RFC 3263, failing over to the next target."""

from __future__ import annotations

from functools import lru_cache
from typing import Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from ..sip.message import Request, Response
from ..transport.dns import Targets
from ..transport.errors import TransactionTimeout, TransportError
from ..transport.interfaces import IRequestSender
from ..transport.listen import Destination, SocketSpec, parse_socket
from .machine import Registrant


@lru_cache(maxsize=4096)
def local_socket(text: str | None) -> SocketSpec | None:
    """The socket a ``forced_socket`` column names (validated at load), parsed once."""
    return parse_socket(text) if text else None


class Router:
    def __init__(
        self,
        clock: IReactorTime,
        sender: IRequestSender,
        resolver,
        on_destination: Callable[[Destination], None],
        on_exchange: Callable[[Registrant, Request, Destination, Deferred], None] | None = None,
    ) -> None:
        self.clock = clock
        self.sender = sender
        # Anything with resolve(uri_text) -> Deferred[Targets], e.g. transport.dns.SIPResolver.
        self.resolver = resolver
        self.on_destination = on_destination
        # Told of each attempt with its pending result, before anyone else waits on it.
        self.on_exchange = on_exchange

    def send(self, registrant: Registrant, request: Request) -> Deferred:
        """Send to the record's next hop, failing over on a timeout, a transport error or a 503."""
        targets = registrant.targets
        if targets is not None and self.clock.seconds() < targets.expires_at:
            return self._attempt(registrant, request, targets, self._first(registrant, targets))
        config = registrant.config

        def resolved(targets: Targets) -> Deferred:
            registrant.targets = targets
            return self._attempt(registrant, request, targets, self._first(registrant, targets))

        return self.resolver.resolve(config.proxy or config.registrar).addCallback(resolved)

    @staticmethod
    def _first(registrant: Registrant, targets: Targets) -> Destination:
        # Stay where the last request went while it works; after a failure
        # start again from the most preferred target.
        if registrant.failures == 0 and registrant.destination in targets.destinations:
            return registrant.destination
        return targets.destinations[0]

    def _attempt(
        self, registrant: Registrant, request: Request, targets: Targets, destination: Destination
    ) -> Deferred:
        registrant.destination = destination
        self.on_destination(destination)
        sent = self.sender.send_request(request, destination, local_socket(registrant.config.forced_socket))
        if self.on_exchange is not None:
            self.on_exchange(registrant, request, destination, sent)
        following = targets.after(destination) if len(targets.destinations) > 1 else None
        if following is None:
            return sent

        def answered(response: Response):
            if response.status == 503:
                return self._attempt(registrant, request, targets, following)
            return response

        def failed(failure):
            failure.trap(TransactionTimeout, TransportError)
            return self._attempt(registrant, request, targets, following)

        return sent.addCallbacks(answered, failed)
