"""The service's stop on a Clock: the unREGISTERs get shutdown_timeout, saving and
closing one more second, whatever the registrar and the database do."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher

from tests.registrant.fakes import FakeSender, record, reply
from uacregistrant.config import Config
from uacregistrant.registrant.states import State
from uacregistrant.service import RegistrantService
from uacregistrant.store.memory import MemoryStore


class StuckStore(MemoryStore):
    """A database that stops answering once ``hang`` is set: runtime writes never finish."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.hang = False
        self.stuck: list[Deferred] = []

    def save_runtime(self, states) -> Deferred:
        if not self.hang:
            return super().save_runtime(states)
        d: Deferred = Deferred()
        self.stuck.append(d)
        return d


def test_a_silent_registrar_and_a_stuck_database_still_end_in_time():
    clock = Clock()
    sender = FakeSender()
    store = StuckStore([record()])
    service = RegistrantService(
        Config(timer_interval=2, shutdown_timeout=3), clock, store=store, sender=sender, serve_mi=False
    )
    lines: list[str] = []
    observer = lambda event: lines.append(formatEvent(event))
    globalLogPublisher.addObserver(observer)
    try:
        service.startService()
        clock.pump([0.5] * 8)
        sent = sender.pop()
        reply(sent, 200, "OK", f"Contact: {sent.header('Contact')}")
        [registrant] = service.engine
        assert registrant.state is State.REGISTERED_STATE

        store.hang = True
        stopped = service.stopService()
        assert sender.pop().header("Contact").endswith(";expires=0")  # never answered
        clock.advance(2.9)
        assert not stopped.called
        clock.advance(0.1)  # shutdown_timeout: given up; the runtime write hangs
        assert store.stuck and not stopped.called
        clock.advance(0.9)
        assert not stopped.called
        clock.advance(0.1)  # one second more: the write is given up too
        assert stopped.called
    finally:
        globalLogPublisher.removeObserver(observer)
    assert "shutdown: 0 records unregistered, 1 gave up (0 bindings left in place)" in lines
    assert "shutdown: gave up saving runtime state at the shutdown deadline" in lines
    assert not [line for line in lines if "Unhandled" in line or "Traceback" in line]
