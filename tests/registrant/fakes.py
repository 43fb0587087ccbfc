"""Engines on the package's fake transaction layer (uacregistrant.testing): requests pile up, tests answer."""

from __future__ import annotations

import random

from twisted.internet.task import Clock

from uacregistrant.registrant.engine import Engine
from uacregistrant.registrant.keepalive import Keepalives
from uacregistrant.registrant.persist import RuntimeWriter
from uacregistrant.registrant.policy import Timing
from uacregistrant.registrant.record import RecordConfig
from uacregistrant.testing import FakeRequestSender, SentRequest
from uacregistrant.transport.dns import SIPResolver


# The package's own fake (uacregistrant.testing), under the names these tests use.
FakeSender = FakeRequestSender
Sent = SentRequest


def reply(sent: Sent, status: int, reason: str = "", *headers: str) -> None:
    """Answer a request with a response carrying ``headers`` (raw header lines)."""
    sent.respond(status, reason or None, *headers)


def timeout(sent: Sent) -> None:
    sent.time_out()


def record(**kw) -> RecordConfig:
    values = dict(
        registrar="sip:127.0.0.1:5090",
        aor="sip:alice@example.test",
        binding_uri="sip:alice@127.0.0.1:5070",
        expiry=600,
        username="alice",
        password="s3cret-pass",
    )
    values.update(kw)
    return RecordConfig(**values)


def make_engine(
    clock: Clock | None = None,
    *,
    timer_interval: float = 10,
    hash_size: int = 1,
    sender: FakeSender | None = None,
    flows: bool = False,
    **kw,
) -> tuple[Engine, FakeSender, Clock]:
    """An engine on a fake sender; with ``flows`` the sender's keep-alives and
    flow losses are wired as the service wires the transaction layer's."""
    clock = clock or Clock()
    sender = sender if sender is not None else FakeSender()
    if flows:
        kw["keepalives"] = Keepalives(
            clock, sender.send_keepalive, interval=kw.pop("keepalive_interval", 0), rng=random.Random(3)
        )
    timing = Timing(
        timer_interval=timer_interval,
        failure_retry_interval=kw.pop("failure_retry_interval", 60),
        retry_backoff_cap=kw.pop("retry_backoff_cap", 0),
        max_auth_failures=kw.pop("max_auth_failures", 3),
        reregister_expiry_percentage=kw.pop("reregister_expiry_percentage", 100),
    )
    engine = Engine(
        clock=clock,
        sender=sender,
        # Records here name registrars by IP: the resolver never asks DNS.
        resolver=kw.pop("resolver", None) or SIPResolver(resolver=None, clock=clock),
        timing=timing,
        hash_size=hash_size,
        user_agent="uac-registrant test",
        rng=random.Random(7),
        **kw,
    )
    if flows:
        sender.flow_observers.append(engine.flow_lost)
    return engine, sender, clock


def writing_engine(store, clock: Clock | None = None, *, delay: float = 1.0, active=None, ahead=True, **kw):
    """An engine whose runtime state goes to ``store`` as the service wires it:
    new dialogs written ahead (unless not ``ahead``), transitions written behind."""
    clock = clock or Clock()
    active = active or (lambda registrant: True)
    writer = RuntimeWriter(store, clock, delay=delay, active=active)
    if ahead:
        kw["write_ahead"] = writer.write_ahead
    engine, sender, clock = make_engine(clock, active=active, **kw)
    engine.subscribe(writer)
    return engine, sender, clock, writer


CHALLENGE = 'WWW-Authenticate: Digest realm="example.test", nonce="abc123", qop="auth"'
STALE = 'WWW-Authenticate: Digest realm="example.test", nonce="n2", qop="auth", stale=true'
