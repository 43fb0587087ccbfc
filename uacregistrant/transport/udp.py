"""SIP over UDP: one DatagramProtocol per listening socket."""

from __future__ import annotations

import socket
from typing import Protocol

from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from uacregistrant.transport.listen import SocketSpec

# Large buffers absorb bursts of REGISTER replies (best effort: the kernel may cap them).
BUFFER_BYTES = 8 * 1024 * 1024


class DatagramReceiver(Protocol):
    def datagram_received(self, sender: SIPDatagramProtocol, data: bytes, source: tuple[str, int]) -> None: ...


class SIPDatagramProtocol(DatagramProtocol):
    log = Logger()

    def __init__(self, spec: SocketSpec, receiver: DatagramReceiver) -> None:
        self.spec = spec
        self._receiver = receiver

    def startProtocol(self) -> None:
        handle = self._socket = self.transport.getHandle()
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            try:
                handle.setsockopt(socket.SOL_SOCKET, option, BUFFER_BYTES)
            except OSError as error:
                self.log.info("cannot enlarge socket buffer on {socket}: {error}", socket=str(self.spec), error=error)

    def datagramReceived(self, data: bytes, addr: tuple) -> None:
        self._receiver.datagram_received(self, data, (addr[0], addr[1]))

    def send(self, data: bytes, host: str, port: int) -> None:
        """Write one datagram; raises OSError when the kernel refuses it.

        Straight to the socket: destinations are IP literals checked when the
        Destination was made, and Twisted's write() checks every address again
        (three times, the hottest line of a REGISTER burst).
        """
        try:
            self._socket.sendto(data, (host, port))
        except InterruptedError:
            self._socket.sendto(data, (host, port))
