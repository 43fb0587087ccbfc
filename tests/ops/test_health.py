"""``GET /health``: the probe on a clock, and the resource over real HTTP on the service."""

from __future__ import annotations

import json

import pytest_twisted
import treq
from twisted.internet import defer, reactor, task

from uacregistrant.config import Config, parse_endpoint
from uacregistrant.registrant.record import RecordConfig
from uacregistrant.service import RegistrantService
from uacregistrant.store.memory import MemoryStore
from uacregistrant.store.probe import DatabaseProbe
from uacregistrant.transport.layer import TransactionLayer


# Disabled: it is loaded and counted, and never sends anything.
IDLE = RecordConfig(
    registrar="sip:registrar.example.test", aor="sip:alice@example.test",
    binding_uri="sip:alice@127.0.0.1:5999", expiry=600, username="alice", password="pw-alice",
    enabled=False,
)


def _counted(records: dict[str, int]) -> dict[str, int]:
    return {name: count for name, count in records.items() if count}


class SilentStore(MemoryStore):
    """A database that takes every lookup and never answers."""

    def load_row(self, key):
        return defer.Deferred()


def test_probe_follows_the_database_on_its_interval() -> None:
    clock = task.Clock()
    store = MemoryStore()
    probe = DatabaseProbe(clock, store, interval=5, timeout=5)
    assert probe.reachable is False
    probe.start()
    assert probe.reachable is True
    store.available = False
    clock.advance(4.9)
    assert probe.reachable is True  # not asked again yet
    clock.advance(0.1)
    assert probe.reachable is False
    store.available = True
    clock.advance(5)
    assert probe.reachable is True
    probe.stop()
    assert clock.getDelayedCalls() == []


def test_a_database_that_does_not_answer_is_unreachable() -> None:
    clock = task.Clock()
    probe = DatabaseProbe(clock, SilentStore(), interval=5, timeout=2)
    probe.start(reachable=True)
    clock.advance(1.9)
    assert probe.reachable is True
    clock.advance(0.1)
    assert probe.reachable is False
    probe.stop()
    assert clock.getDelayedCalls() == []


async def _get(service: RegistrantService, method: str = "GET") -> tuple[int, dict, bytes]:
    url = f"http://127.0.0.1:{service.mi_address.port}/health"
    response = await treq.request(method, url, persistent=False)
    body = await treq.content(response)
    return response.code, dict(response.headers.getAllRawHeaders()), body


def _service(store: MemoryStore) -> tuple[RegistrantService, TransactionLayer]:
    sip = TransactionLayer(reactor, reactor)
    config = Config(timer_interval=2, mi_listen=parse_endpoint("tcp:0:interface=127.0.0.1"), mi_token="t0ken")
    return RegistrantService(config, reactor, store=store, sender=sip), sip


async def _until_mi(service: RegistrantService) -> None:
    for _ in range(100):
        if service.mi_address is not None:
            return
        await task.deferLater(reactor, 0.02, lambda: None)
    raise AssertionError("MI did not start")


@pytest_twisted.ensureDeferred
async def test_ready_then_database_down_over_http() -> None:
    store = MemoryStore([IDLE])
    service, sip = _service(store)
    service.startService()
    try:
        await service.ready
        code, headers, body = await _get(service)
        assert code == 200
        assert headers[b"Content-Type"] == [b"application/json"]
        # No token was needed, and only counts come back: no record data.
        health = json.loads(body)
        assert _counted(health.pop("records")) == {"NOT_REGISTERED_STATE": 1}
        assert health == {"status": "ready", "table_loaded": True, "database_reachable": True}
        assert b"alice" not in body
        store.available = False
        service.probe.probe()
        code, _, body = await _get(service)
        assert code == 503
        assert json.loads(body)["database_reachable"] is False
        assert json.loads(body)["table_loaded"] is True
        code, _, body = await _get(service, "HEAD")
        assert (code, body) == (503, b"")
    finally:
        await service.stopService()
        await sip.stop()


@pytest_twisted.ensureDeferred
async def test_not_loaded_while_the_database_is_waited_for() -> None:
    store = MemoryStore([IDLE])
    store.available = False
    service, sip = _service(store)
    service.startService()
    try:
        await _until_mi(service)
        code, _, body = await _get(service)
        assert code == 503
        health = json.loads(body)
        assert _counted(health.pop("records")) == {}
        assert health == {"status": "not ready", "table_loaded": False, "database_reachable": False}
        assert not service.ready.called
    finally:
        await service.stopService()
        await sip.stop()


@pytest_twisted.ensureDeferred
async def test_health_refuses_other_methods() -> None:
    service, sip = _service(MemoryStore())
    service.startService()
    try:
        await service.ready
        url = f"http://127.0.0.1:{service.mi_address.port}/health"
        response = await treq.post(url, b"", persistent=False, headers={b"Authorization": [b"Bearer t0ken"]})
        await treq.content(response)
        assert response.code == 405
    finally:
        await service.stopService()
        await sip.stop()
