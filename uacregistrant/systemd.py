"""systemd's notify protocol (sd_notify(3)) for ``Type=notify`` units.

``READY=1`` once the sockets are bound, the table is loaded and MI serves;
``STATUS=`` with the records by state, when they change and at most once a
second; ``WATCHDOG=1`` from the reactor at half of ``WATCHDOG_USEC``, so a
wedged reactor misses its pings and gets restarted; ``RELOADING=1`` and
``READY=1`` around a reload (SIGHUP); ``STOPPING=1`` when the shutdown
begins.  Without ``NOTIFY_SOCKET`` nothing is sent, and SIGHUP still reloads.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from uacregistrant.mi.health import Health
from uacregistrant.registrant.states import State

log = Logger()

# At most one STATUS= a second, however fast the records change.
STATUS_INTERVAL = 1.0

Send = Callable[..., None]


class Watched(Protocol):
    """What the notifier needs of the registrant service."""

    ready: Deferred

    def subscribe(self, subscriber: Callable[[object, State, State], None]) -> None: ...

    def health(self) -> Health: ...

    def reload(self) -> Deferred: ...


class NotifySocket:
    """A datagram socket to ``NOTIFY_SOCKET`` (a path, or ``@name`` in the abstract namespace)."""

    def __init__(self, address: str) -> None:
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._socket.setblocking(False)
        self._failed = False

    def send(self, *assignments: str) -> None:
        """One datagram of ``KEY=value`` lines; a failure is logged once and dropped."""
        try:
            self._socket.sendto("\n".join(assignments).encode("utf-8"), self.address)
        except OSError as e:
            if not self._failed:
                self._failed = True
                log.warn("cannot notify systemd: {why}", why=e.strerror or str(e))

    def close(self) -> None:
        self._socket.close()


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Half of ``WATCHDOG_USEC`` in seconds, when the watchdog is for this process."""
    usec, pid = env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 2e6


def status_text(counts: Mapping[str, int]) -> str:
    """``3 records: 2 REGISTERED_STATE, 1 NOT_REGISTERED_STATE`` (states in OpenSIPS order)."""
    present = sorted((State[name], count) for name, count in counts.items() if count)
    total = sum(count for _, count in present)
    parts = ", ".join(f"{count} {state.name}" for state, count in present)
    return f"{total} records" + (f": {parts}" if parts else "")


class Notifier(Service):
    """Tells systemd how the registrant service is doing; runs its reload on SIGHUP."""

    def __init__(
        self,
        clock: IReactorTime,
        registrant: Watched,
        send: Send | None,
        watchdog_interval: float | None = None,
    ) -> None:
        self.clock = clock
        self.registrant = registrant
        self._send = send or (lambda *assignments: None)
        self._watchdog = LoopingCall(self._send, "WATCHDOG=1") if watchdog_interval else None
        if self._watchdog is not None:
            self._watchdog.clock = clock
        self._watchdog_interval = watchdog_interval
        self._ready = False
        self._reloading = False
        self._status_call: IDelayedCall | None = None
        self._status_sent_at = float("-inf")
        self._status_sent = ""
        self._socket: NotifySocket | None = None

    @classmethod
    def from_environment(cls, env: Mapping[str, str], clock: IReactorTime, registrant: Watched) -> Notifier:
        address = env.get("NOTIFY_SOCKET")
        sock = NotifySocket(address) if address else None
        notifier = cls(clock, registrant, sock.send if sock else None, _watchdog_interval(env))
        notifier._socket = sock
        return notifier

    def startService(self) -> None:
        super().startService()
        self._send("STATUS=loading the registrant table")
        self.registrant.subscribe(self._changed)
        self.registrant.ready.addCallback(self._on_ready)
        if self._watchdog is not None:
            self._watchdog.start(self._watchdog_interval, now=True)

    def stopService(self) -> None:
        super().stopService()
        self._send("STOPPING=1", "STATUS=stopping")
        if self._watchdog is not None and self._watchdog.running:
            self._watchdog.stop()
        if self._status_call is not None and self._status_call.active():
            self._status_call.cancel()
        self._status_call = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
            self._send = lambda *assignments: None

    def _on_ready(self, _: object) -> None:
        self._ready = True
        self._send("READY=1", self._status())

    def _status(self) -> str:
        self._status_sent = status_text(self.registrant.health().records)
        self._status_sent_at = self.clock.seconds()
        return f"STATUS={self._status_sent}"

    def _changed(self, registrant: object, old: State, new: State) -> None:
        if not self._ready or self._status_call is not None or not self.running:
            return
        delay = max(0.0, self._status_sent_at + STATUS_INTERVAL - self.clock.seconds())
        self._status_call = self.clock.callLater(delay, self._send_status)

    def _send_status(self) -> None:
        self._status_call = None
        if status_text(self.registrant.health().records) != self._status_sent:
            self._send(self._status())

    def reload(self) -> None:
        """``reg_reload`` of the whole table, framed by RELOADING=1 and READY=1."""
        if not self._ready or self._reloading or not self.running:
            log.info("SIGHUP ignored: {why}", why="already reloading" if self._reloading else "not ready")
            return
        self._reloading = True
        # MONOTONIC_USEC lets systemd's notify-reload match this message to its signal.
        self._send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")
        log.info("SIGHUP: reloading the registrant table")

        def done(result: object) -> None:
            self._reloading = False
            if isinstance(result, Failure):
                log.error("reload failed: {why}", why=result.getErrorMessage())
            if self.running:
                self._send("READY=1", self._status())

        self.registrant.reload().addBoth(done)
