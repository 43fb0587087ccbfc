"""A memory reactor with UDP, so the layer's datagrams and timers are fully observable."""

from __future__ import annotations

from dataclasses import dataclass, field

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IReactorUDP
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.testing import MemoryReactorClock
from zope.interface import implementer


@dataclass
class FakeSocketHandle:
    options: dict[tuple[int, int], int] = field(default_factory=dict)

    def setsockopt(self, level: int, option: int, value: int) -> None:
        self.options[(level, option)] = value


@dataclass
class FakeUDPPort:
    """Records every datagram written, with the clock time it left."""

    reactor: UDPMemoryReactor
    protocol: DatagramProtocol
    host: str
    port: int
    sent: list[tuple[float, bytes, tuple[str, int]]] = field(default_factory=list)
    handle: FakeSocketHandle = field(default_factory=FakeSocketHandle)
    listening: bool = True

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((self.reactor.seconds(), data, addr))

    def __post_init__(self) -> None:
        # The protocol writes straight to the socket handle.
        self.handle.sendto = self.write

    def getHost(self) -> IPv4Address | IPv6Address:
        if ":" in self.host:
            return IPv6Address("UDP", self.host, self.port)
        return IPv4Address("UDP", self.host, self.port)

    def getHandle(self) -> FakeSocketHandle:
        return self.handle

    def stopListening(self) -> None:
        self.listening = False
        self.protocol.doStop()


@implementer(IReactorUDP)
class UDPMemoryReactor(MemoryReactorClock):
    def __init__(self) -> None:
        super().__init__()
        self.udp_ports: list[FakeUDPPort] = []

    def listenUDP(self, port: int, protocol: DatagramProtocol, interface: str = "", maxPacketSize: int = 8192) -> FakeUDPPort:
        fake = FakeUDPPort(self, protocol, interface, port or 40000 + len(self.udp_ports))
        self.udp_ports.append(fake)
        protocol.makeConnection(fake)
        return fake

    def listenMulticast(self, *args: object, **kwargs: object) -> None:
        raise NotImplementedError
