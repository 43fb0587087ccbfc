"""A cap on the connections one listener holds open.

Each listener has its own cap, so a flood on one (SIP over TCP, say) cannot
take the descriptors another (the MI server) needs, and the process as a
whole stays below its descriptor limit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from twisted.internet.protocol import Protocol as TwistedProtocol


class Capped(Protocol):
    """A connection the cap can close to make room."""

    def busy(self) -> bool:
        """True while the connection is serving a request we want to finish."""
        ...

    def evict(self) -> None:
        """Close the connection now."""
        ...


class ConnectionCap:
    """At most ``limit`` open connections.

    A connection arriving at the cap makes room by closing the oldest one
    that is not busy: idle and half-sent connections (the cheap ones for an
    attacker to hold) go first, and a new client is still answered.  Only
    when every connection is busy is the newcomer refused.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        # Insertion order is age order: the first idle one is the oldest.
        self._open: dict[Capped, None] = {}
        self.evicted = 0
        self.refused = 0

    def __len__(self) -> int:
        return len(self._open)

    def admit(self) -> bool:
        """Whether a new connection may be accepted (evicting one if needed)."""
        if len(self._open) < self.limit:
            return True
        for connection in self._open:
            if not connection.busy():
                del self._open[connection]
                self.evicted += 1
                connection.evict()
                return True
        self.refused += 1
        return False

    def opened(self, connection: Capped) -> None:
        self._open[connection] = None

    def closed(self, connection: Capped) -> None:
        self._open.pop(connection, None)


class Refused(TwistedProtocol):
    """What a listener builds for a connection over the cap: it closes at once.

    (Returning no protocol does the same on a bare TCP port, but a TLS port
    wraps whatever the factory returns, and cannot wrap nothing.)
    """

    def connectionMade(self) -> None:
        self.transport.abortConnection()


# Descriptors the process needs besides the capped connections: listening
# sockets, UDP sockets, the database, log files, outgoing connections.
DESCRIPTOR_MARGIN = 256


def ensure_descriptors(
    capped: int,
    *,
    getrlimit: Callable[[int], tuple[int, int]] | None = None,
    setrlimit: Callable[[int, tuple[int, int]], None] | None = None,
) -> tuple[int, int]:
    """Raise the soft descriptor limit towards what the caps need.

    ``capped`` is the sum of every listener's cap.  Returns (needed, soft
    limit now): the caller warns when the limit stays below the need, since
    past it an accept fails with EMFILE whatever the caps say.
    """
    import resource

    getrlimit = getrlimit or resource.getrlimit
    setrlimit = setrlimit or resource.setrlimit
    needed = capped + DESCRIPTOR_MARGIN
    soft, hard = getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass
    return needed, soft
