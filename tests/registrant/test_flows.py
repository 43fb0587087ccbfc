"""Flows: keep-alives on registered records' flows, and re-registration when a TCP/TLS flow closes."""

from __future__ import annotations

from twisted.internet.defer import succeed

from uacregistrant.registrant.states import State

from .fakes import FakeSender, make_engine, record, reply

TI = 10
OUTBOUND = ';reg-id=1;+sip.instance="<urn:uuid:00000000-0000-0000-0000-000000000001>"'


class FlowSender(FakeSender):
    def __init__(self):
        super().__init__()
        self.keepalives = []
        self.flow_observers = []

    def send_keepalive(self, destination, local=None):
        self.keepalives.append(destination)
        return succeed(None)


def engine_with_flows(**kw):
    return make_engine(sender=FlowSender(), flows=True, **kw)


def bind(engine, sender, clock, config, *headers):
    engine.apply([config])
    engine.start()
    clock.pump([1] * TI)
    reply(sender.pop(), 200, "OK", f"Contact: <{config.binding_uri}>;expires=3600", *headers)
    assert engine.get(config.key).state is State.REGISTERED_STATE


def test_outbound_tcp_flow_gets_crlf_keepalives_paced_by_flow_timer():
    engine, sender, clock = engine_with_flows()
    config = record(registrar="sip:127.0.0.1:5090;transport=tcp", binding_params=OUTBOUND)
    bind(engine, sender, clock, config, "Flow-Timer: 30")
    assert engine.keepalives.flows == 1
    clock.advance(29.9)
    assert sender.keepalives == []
    clock.advance(0.1)
    assert len(sender.keepalives) == 1 and sender.keepalives[0].transport == "tcp"
    clock.advance(30)
    assert len(sender.keepalives) == 2


def test_outbound_request_says_supported_outbound_and_the_200_extras_are_kept():
    engine, sender, clock = engine_with_flows()
    config = record(binding_params=OUTBOUND)
    engine.apply([config])
    engine.start()
    clock.pump([1] * TI)
    sent = sender.pop()
    assert sent.header("Supported") == "outbound, path"
    reply(
        sent, 200, "OK", f"Contact: <{config.binding_uri}>{OUTBOUND};expires=3600",
        "Service-Route: <sip:edge.example.test;lr>", "P-Associated-URI: <sip:alice@example.test>",
    )
    registrant = engine.get(config.key)
    assert registrant.service_route == "<sip:edge.example.test;lr>"
    assert registrant.associated_uris == "<sip:alice@example.test>"


def test_plain_udp_records_get_keepalives_only_with_keepalive_interval():
    engine, sender, clock = engine_with_flows()
    bind(engine, sender, clock, record())
    assert engine.keepalives.flows == 0
    clock.advance(300)
    assert sender.keepalives == []

    engine, sender, clock = engine_with_flows(keepalive_interval=20)
    bind(engine, sender, clock, record())
    clock.advance(20)
    assert len(sender.keepalives) == 1 and sender.keepalives[0].transport == "udp"


def test_keepalives_stop_when_the_record_leaves_registered():
    engine, sender, clock = engine_with_flows(keepalive_interval=20)
    config = record()
    bind(engine, sender, clock, config)
    engine.disable(config.key)
    reply(sender.pop(), 200, "OK")
    clock.advance(100)
    assert sender.keepalives == []
    engine.shutdown(unregister=False, timeout=1)
    assert clock.getDelayedCalls() == []


def test_a_closed_tcp_flow_registers_again_at_once_on_the_same_dialog():
    engine, sender, clock = engine_with_flows()
    config = record(registrar="sip:127.0.0.1:5090;transport=tcp")
    bind(engine, sender, clock, config)
    registrant = engine.get(config.key)
    for observer in sender.flow_observers:
        observer(registrant.destination)
    again = sender.pop()
    assert again.request.call_id == registrant.call_id
    assert again.destination == registrant.destination
