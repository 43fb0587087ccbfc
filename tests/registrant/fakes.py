"""A fake transaction layer for machine and engine tests: requests pile up, tests answer."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from zope.interface import implementer

from uacregistrant.registrant.engine import Engine
from uacregistrant.registrant.keepalive import Keepalives
from uacregistrant.registrant.persist import RuntimeWriter
from uacregistrant.registrant.policy import Timing
from uacregistrant.registrant.record import RecordConfig
from uacregistrant.sip.message import Request, Response, parse_message
from uacregistrant.transport.dns import SIPResolver
from uacregistrant.transport.errors import TransactionTimeout
from uacregistrant.transport.interfaces import IRequestSender


@dataclass
class Sent:
    request: Request
    destination: object
    local: object
    deferred: Deferred

    def header(self, name: str) -> str | None:
        return self.request.header(name)

    @property
    def cseq(self) -> int:
        return self.request.cseq.number


@implementer(IRequestSender)
@dataclass
class FakeSender:
    sent: list[Sent] = field(default_factory=list)

    def send_request(self, request, destination, local=None):
        d: Deferred = Deferred()
        self.sent.append(Sent(request, destination, local, d))
        return d

    def pop(self) -> Sent:
        assert self.sent, "nothing was sent"
        return self.sent.pop(0)


def reply(sent: Sent, status: int, reason: str = "", *headers: str) -> None:
    """Answer a request with a response carrying ``headers`` (raw header lines)."""
    req = sent.request
    lines = [
        f"SIP/2.0 {status} {reason or 'Reason'}",
        "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKtest",
        f"From: {req.header('From')}",
        f"To: {req.header('To')};tag=srv",
        f"Call-ID: {req.header('Call-ID')}",
        f"CSeq: {req.header('CSeq')}",
        *headers,
        "Content-Length: 0",
        "",
        "",
    ]
    response = parse_message("\r\n".join(lines).encode())
    assert isinstance(response, Response)
    sent.deferred.callback(response)


def timeout(sent: Sent) -> None:
    sent.deferred.errback(TransactionTimeout("Timer F fired"))


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
