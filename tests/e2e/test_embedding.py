"""The registrant embedded in a host application, on the host's SIP transport, against Kamailio."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.application.service import MultiService
from twisted.internet import defer, reactor

from tests.peers import free_port
from uacregistrant.config import Config
from uacregistrant.registrant.record import RecordConfig
from uacregistrant.registrant.states import State
from uacregistrant.service import RegistrantService
from uacregistrant.store.memory import MemoryStore
from uacregistrant.transport.layer import TransactionLayer
from uacregistrant.transport.listen import SocketSpec


@pytest.fixture
def registrar(kamailio):
    return kamailio(users={"alice": "alice-pw"}, min_expires=10)


def reached(service: RegistrantService, state: State, timeout: float = 15) -> defer.Deferred:
    """Fires with the registrant when any record enters ``state``."""
    d: defer.Deferred = defer.Deferred()

    def watch(registrant, old, new):
        if new is state and not d.called:
            d.callback(registrant)

    service.subscribe(watch)
    return d.addTimeout(timeout, reactor)


@pytest_twisted.inlineCallbacks
def test_embedded_registrant_uses_the_hosts_transport(registrar):
    host = MultiService()
    sip = TransactionLayer(reactor, reactor)
    local = sip.listen(SocketSpec("udp", "127.0.0.1", free_port("udp")))
    record = RecordConfig(
        registrar=registrar.uri,
        aor="sip:alice@example.test",
        binding_uri=f"sip:alice@{local.host}:{local.port}",
        username="alice",
        password="alice-pw",
        expiry=30,
    )
    service = RegistrantService(
        Config(timer_interval=2), reactor, store=MemoryStore([record]), sender=sip, serve_mi=False
    )
    assert service.layer is None  # no sockets of its own
    service.setServiceParent(host)
    registered = reached(service, State.REGISTERED_STATE)
    host.startService()
    try:
        registrant = yield registered
        assert registrant.config.aor == "sip:alice@example.test"
        [binding] = registrar.bindings("sip:alice@example.test")
        assert binding.contact == record.binding_uri
        assert binding.call_id == registrant.call_id
        assert sip.stats.requests_sent >= 2  # REGISTER, then with credentials
    finally:
        yield host.stopService()
        yield sip.stop()
    assert registrar.bindings("sip:alice@example.test") == []
