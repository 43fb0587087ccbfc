"""uacregistrant.testing: the fake IRequestSender embedders test with, and the README's example."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from uacregistrant.config import Config
from uacregistrant.registrant.record import RecordConfig
from uacregistrant.registrant.states import State
from uacregistrant.service import RegistrantService
from uacregistrant.store.memory import MemoryStore
from uacregistrant.testing import FakeRequestSender
from uacregistrant.transport.errors import TransactionTimeout, TransportError
from uacregistrant.transport.interfaces import IRequestSender

README = Path(__file__).resolve().parent.parent / "README.rst"

RECORD = RecordConfig(registrar="sip:192.0.2.1", aor="sip:alice@example.net",
                      binding_uri="sip:alice@192.0.2.10:5060", username="alice",
                      password="secret", expiry=600)


def embedded(sip: FakeRequestSender, *records: RecordConfig) -> tuple[RegistrantService, Clock, list]:
    clock = Clock()
    service = RegistrantService(Config(timer_interval=10), clock,
                                store=MemoryStore(records or [RECORD]), sender=sip, serve_mi=False)
    states: list[State] = []
    service.subscribe(lambda registrant, old, new: states.append(new))
    service.startService()
    clock.pump([1] * 10)
    return service, clock, states


def _embedding_blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("\nEmbedding\n=========\n", 1)[1].split("\nTests\n=====\n", 1)[0]
    blocks = re.findall(r"::\n\n((?:    .*\n|\n)+)", section)
    return [re.sub(r"^    ", "", block, flags=re.M) for block in blocks]


def test_provides_the_interface():
    assert verifyObject(IRequestSender, FakeRequestSender())


def test_the_readme_example_runs():
    [_, example] = _embedding_blocks()
    namespace = {"Config": Config, "RegistrantService": RegistrantService,
                 "MemoryStore": MemoryStore, "records": [RECORD]}
    exec(compile(example, str(README), "exec"), namespace)
    namespace["test_registers_with_credentials"]()


def test_requests_wait_until_answered():
    sip = FakeRequestSender()
    service, clock, states = embedded(sip)
    [register] = sip.pending()
    assert (register.method, register.cseq, str(register.destination)) == ("REGISTER", 1, "udp:192.0.2.1:5060")
    assert register.header("Contact") == "<sip:alice@192.0.2.10:5060>;expires=600"
    assert states == [State.REGISTERING_STATE]
    response = register.accept(300)
    assert response.header("Contact") == "<sip:alice@192.0.2.10:5060>;expires=300"
    assert register.answered and sip.pending() == []
    assert states[-1] is State.REGISTERED_STATE
    assert service.engine.get(RECORD.key).expires == 300


@pytest.mark.parametrize(
    "answer, state, reason",
    [
        (lambda sent: sent.time_out(), State.REGISTER_TIMEOUT_STATE, "transaction timeout"),
        (lambda sent: sent.fail("connection refused"), State.INTERNAL_ERROR_STATE, "connection refused"),
        (lambda sent: sent.respond(503), State.REGISTRAR_ERROR_STATE, "Service Unavailable"),
    ],
)
def test_failures(answer, state, reason):
    sip = FakeRequestSender()
    service, clock, states = embedded(sip)
    answer(sip.pop())
    registrant = service.engine.get(RECORD.key)
    assert (registrant.state, registrant.last_reason) == (state, reason)


def test_errors_are_the_transaction_layers():
    sip = FakeRequestSender()
    failures: list = []
    for _ in range(2):
        sip.send_request(object(), "udp:192.0.2.1:5060").addErrback(failures.append)
    sip.pop().time_out()
    sip.pop().fail()
    assert failures[0].check(TransactionTimeout) and failures[1].check(TransportError)


def test_a_responder_answers_as_requests_are_sent():
    sip = FakeRequestSender(responder=lambda sent: sent.accept())
    records = [RecordConfig(registrar="sip:192.0.2.1", aor=f"sip:u{n}@example.net",
                            binding_uri=f"sip:u{n}@192.0.2.10:5060", expiry=600) for n in range(20)]
    service, clock, states = embedded(sip, *records)
    clock.pump([1] * 10)  # first REGISTERs spread over timer_interval
    assert service.engine.state_counts()["REGISTERED_STATE"] == 20
    assert [s.method for s in sip.sent] == ["REGISTER"] * 20
