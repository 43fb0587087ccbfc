"""The sd_notify messages on a clock, against a stand-in for the service."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from twisted.internet import defer, task

from uacregistrant.mi.health import Health
from uacregistrant.registrant.states import State
from uacregistrant.systemd import NotifySocket, Notifier, _watchdog_interval, status_text


class FakeRegistrant:
    def __init__(self) -> None:
        self.ready: defer.Deferred = defer.Deferred()
        self.counts = {"NOT_REGISTERED_STATE": 2, "REGISTERED_STATE": 0}
        self.subscribers = []
        self.reloads: list[defer.Deferred] = []

    def subscribe(self, subscriber) -> None:
        self.subscribers.append(subscriber)

    def health(self) -> Health:
        return Health(True, True, dict(self.counts))

    def change(self, name_from: str, name_to: str) -> None:
        self.counts[name_from] -= 1
        self.counts[name_to] = self.counts.get(name_to, 0) + 1
        for subscriber in self.subscribers:
            subscriber(object(), State[name_from], State[name_to])

    def reload(self) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self.reloads.append(d)
        return d


@pytest.fixture
def harness():
    clock = task.Clock()
    sent: list[tuple[float, tuple[str, ...]]] = []
    registrant = FakeRegistrant()
    notifier = Notifier(clock, registrant, lambda *lines: sent.append((clock.seconds(), lines)), 4.0)
    return clock, sent, registrant, notifier


def test_status_text_names_states_in_opensips_order() -> None:
    assert status_text({"REGISTERED_STATE": 2, "NOT_REGISTERED_STATE": 1, "REGISTERING_STATE": 0}) == (
        "3 records: 1 NOT_REGISTERED_STATE, 2 REGISTERED_STATE"
    )
    assert status_text({}) == "0 records"


def test_ready_status_watchdog_and_stopping(harness) -> None:
    clock, sent, registrant, notifier = harness
    notifier.startService()
    assert [lines for _, lines in sent] == [("STATUS=loading the registrant table",), ("WATCHDOG=1",)]
    sent.clear()
    registrant.ready.callback(None)
    assert sent == [(0.0, ("READY=1", "STATUS=2 records: 2 NOT_REGISTERED_STATE"))]
    sent.clear()
    clock.pump([1.0] * 9)
    assert [(at, lines) for at, lines in sent] == [(4.0, ("WATCHDOG=1",)), (8.0, ("WATCHDOG=1",))]
    sent.clear()
    notifier.stopService()
    assert sent == [(9.0, ("STOPPING=1", "STATUS=stopping"))]
    assert clock.getDelayedCalls() == []


def test_status_at_most_once_a_second_and_only_on_change(harness) -> None:
    clock, sent, registrant, notifier = harness
    notifier.startService()
    registrant.ready.callback(None)
    sent.clear()
    clock.advance(0.5)
    registrant.change("NOT_REGISTERED_STATE", "REGISTERED_STATE")
    registrant.change("NOT_REGISTERED_STATE", "REGISTERED_STATE")
    assert sent == []
    clock.advance(0.5)
    assert sent == [(1.0, ("STATUS=2 records: 2 REGISTERED_STATE",))]
    sent.clear()
    # A change and its undoing within the second: nothing new to say.
    clock.advance(0.2)
    registrant.change("REGISTERED_STATE", "REGISTER_TIMEOUT_STATE")
    registrant.change("REGISTER_TIMEOUT_STATE", "REGISTERED_STATE")
    clock.advance(1.0)
    assert [lines for _, lines in sent if lines != ("WATCHDOG=1",)] == []
    notifier.stopService()


def test_reload_is_framed_and_not_doubled(harness) -> None:
    clock, sent, registrant, notifier = harness
    notifier.startService()
    notifier.reload()
    assert registrant.reloads == []  # not ready yet: nothing to reload
    registrant.ready.callback(None)
    sent.clear()
    notifier.reload()
    notifier.reload()
    assert len(registrant.reloads) == 1
    assert sent[0][1][0] == "RELOADING=1" and sent[0][1][1].startswith("MONOTONIC_USEC=")
    registrant.reloads[0].callback("OK")
    assert sent[1][1][0] == "READY=1"
    # A failed reload still ends the reloading state.
    notifier.reload()
    registrant.reloads[1].errback(RuntimeError("database error"))
    assert sent[-1][1][0] == "READY=1"
    notifier.stopService()


def test_watchdog_interval_from_the_environment() -> None:
    assert _watchdog_interval({"WATCHDOG_USEC": "3000000"}) == 1.5
    assert _watchdog_interval({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())}) == 1.5
    assert _watchdog_interval({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"}) is None
    assert _watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert _watchdog_interval({"WATCHDOG_USEC": "soon"}) is None
    assert _watchdog_interval({}) is None


def test_without_notify_socket_nothing_is_sent_and_reload_still_runs() -> None:
    clock = task.Clock()
    registrant = FakeRegistrant()
    notifier = Notifier.from_environment({}, clock, registrant)
    notifier.startService()
    registrant.ready.callback(None)
    notifier.reload()
    assert len(registrant.reloads) == 1
    registrant.reloads[0].callback("OK")
    notifier.stopService()


def test_notify_socket_path_and_abstract_name(tmp_path: Path) -> None:
    for address, bind_to in ((str(tmp_path / "n.sock"), str(tmp_path / "n.sock")), ("@uacr-test-%d" % os.getpid(), "\0uacr-test-%d" % os.getpid())):
        receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        receiver.bind(bind_to)
        receiver.settimeout(5)
        sender = NotifySocket(address)
        try:
            sender.send("READY=1", "STATUS=x")
            assert receiver.recv(4096) == b"READY=1\nSTATUS=x"
        finally:
            sender.close()
            receiver.close()


def test_a_vanished_socket_is_no_error(tmp_path: Path) -> None:
    sender = NotifySocket(str(tmp_path / "gone.sock"))
    sender.send("READY=1")
    sender.send("READY=1")
    sender.close()
