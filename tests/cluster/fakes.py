"""A lock server in memory, with one backend per node, for manager tests on a Clock."""

from __future__ import annotations

from dataclasses import dataclass, field

from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from uacregistrant.cluster.locks import ILockBackend, Owner, Survey


@dataclass
class LockServer:
    """What PostgreSQL does for us: session locks, requests with a deadline, NOTIFY."""

    clock: object
    locks: dict[str, str] = field(default_factory=dict)  # tag -> node_id
    wanted: dict[str, tuple[str, float]] = field(default_factory=dict)  # tag -> (node, until)
    since: dict[str, tuple[str, float]] = field(default_factory=dict)
    sessions: dict[str, "FakeLocks"] = field(default_factory=dict)
    beats: dict[str, float] = field(default_factory=dict)  # node -> last heartbeat
    up: bool = True
    cut: set[str] = field(default_factory=set)  # nodes that cannot reach the server

    def stop(self) -> None:
        """The server goes down: every session ends and every lock is freed."""
        self.up = False
        for node_id in list(self.sessions):
            self.drop(node_id)

    def cut_off(self, node_id: str) -> None:
        """A partition: the node cannot reach the server, and the server drops its session."""
        self.cut.add(node_id)
        self.drop(node_id)

    def drop(self, node_id: str) -> None:
        """The server loses a node's session: its locks are free at once."""
        self.sessions.pop(node_id, None)
        for tag in [t for t, n in self.locks.items() if n == node_id]:
            del self.locks[tag]

    def notify(self, payload: str) -> None:
        for backend in list(self.sessions.values()):
            backend.on_notify(payload)


@implementer(ILockBackend)
class FakeLocks:
    def __init__(self, server: LockServer, node_id: str) -> None:
        self.server = server
        self.node_id = node_id
        self.on_notify = lambda payload: None
        # A hung network: heartbeats never answer.
        self.hung = False
        # A half-dead session: heartbeats answer, surveys never do.
        self.hung_survey = False
        self.connects = 0

    @property
    def connected(self) -> bool:
        return self.server.sessions.get(self.node_id) is self

    def _check(self) -> Deferred | None:
        if not self.connected or not self.server.up or self.node_id in self.server.cut:
            return fail(ConnectionError("session lost"))
        return None

    def connect(self, timeout: float) -> Deferred:
        self.connects += 1
        if not self.server.up or self.node_id in self.server.cut:
            return fail(ConnectionError("connection refused"))
        self.server.sessions[self.node_id] = self
        return succeed(None)

    def reset(self) -> None:
        if self.connected:
            self.server.drop(self.node_id)

    def heartbeat(self) -> Deferred:
        if self.hung:
            return Deferred()
        failed = self._check()
        if failed:
            return failed
        self.server.beats[self.node_id] = self.server.clock.seconds()
        return succeed(None)

    def try_lock(self, tag: str) -> Deferred:
        failed = self._check()
        if failed:
            return failed
        holder = self.server.locks.setdefault(tag, self.node_id)
        return succeed(holder == self.node_id)

    def unlock(self, tag: str) -> Deferred:
        failed = self._check()
        if failed:
            return failed
        if self.server.locks.get(tag) == self.node_id:
            del self.server.locks[tag]
        return succeed(None)

    def survey(self, tags: list[str]) -> Deferred:
        if self.hung_survey:
            return Deferred()
        failed = self._check()
        if failed:
            return failed
        now = self.server.clock.seconds()
        return succeed(
            Survey(
                owners={tag: self.server.locks.get(tag) for tag in tags},
                noted={t: n for t, (n, _) in self.server.since.items()},
                ages={n: now - beat for n, beat in self.server.beats.items()},
                wanted={t: n for t, (n, until) in self.server.wanted.items() if until > now},
            )
        )

    def own(self, tag: str) -> Deferred:
        failed = self._check()
        if failed:
            return failed
        self.server.since[tag] = (self.node_id, self.server.clock.seconds())
        if self.server.wanted.get(tag, ("",))[0] == self.node_id:
            del self.server.wanted[tag]
        return succeed(None)

    def disown(self, tag: str) -> Deferred:
        failed = self._check()
        if failed:
            return failed
        if self.server.since.get(tag, ("",))[0] == self.node_id:
            del self.server.since[tag]
        return succeed(None)

    def request(self, tag: str, valid_for: float) -> Deferred:
        failed = self._check()
        if failed:
            return failed
        self.server.wanted[tag] = (self.node_id, self.server.clock.seconds() + valid_for)
        self.server.notify(tag)
        return succeed(None)

    def owners(self, tags: list[str]) -> Deferred:
        result = {}
        for tag in tags:
            node = self.server.locks.get(tag)
            noted = self.server.since.get(tag)
            result[tag] = Owner(node, noted[1] if noted and noted[0] == node else None)
        return self._check() or succeed(result)

    def notify(self, tag: str) -> Deferred:
        self.server.notify(tag)
        return self._check() or succeed(None)
