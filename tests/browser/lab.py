"""An in-process status site over a fake transaction layer, for the page and JSON tests.

The engine runs on a ``Clock`` and its REGISTERs go to a ``FakeSender``; the
HTTP site listens on 127.0.0.1 on the real reactor, and records every body it
sends so that a test can check what left the server.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.web import server

from tests.registrant.fakes import FakeSender, Sent, make_engine, record, reply, timeout
from uacregistrant.mi.commands import RegistrantCommands
from uacregistrant.mi.jsonrpc import Command, MIResource
from uacregistrant.mi.listing import Listing
from uacregistrant.mi.metrics import Metrics, MetricsResource
from uacregistrant.mi.site import build_root, make_site
from uacregistrant.mi.status import StatusResource
from uacregistrant.registrant.availability import Figures, restore
from uacregistrant.registrant.engine import Engine
from uacregistrant.registrant.record import RecordConfig
from uacregistrant.store.memory import MemoryStore
from uacregistrant.store.rows import record_from_row

TIMER_INTERVAL = 10
PASSWORD = "pw-Never-Shown-7781"


def username(user: str) -> str:
    return f"authuser-{user}-3141"


def lab_record(user: str, **extra) -> RecordConfig:
    values = dict(
        aor=f"sip:{user}@example.test",
        binding_uri=f"sip:{user}@127.0.0.1:5070",
        username=username(user),
        password=PASSWORD,
    )
    values.update(extra)
    return record(**values)


# user -> what the registrar answers to its first REGISTER.
OUTCOMES = {"alice": 200, "bob": 403, "carol": "timeout", "erin": 200}


def lab_records(bulk: int) -> list[RecordConfig]:
    records = [
        lab_record("alice"),
        lab_record("bob", registrar="sip:127.0.0.2:5090", cluster_shtag="vip/1"),
        lab_record("carol", cluster_shtag="vip/1"),
        lab_record("dave", enabled=False),
        lab_record("erin", cluster_shtag="edge/2"),
    ]
    records += [lab_record(f"user{i:03d}") for i in range(bulk)]
    return records


def figures(availability: float | None, flaps: int = 0, outage: tuple | None = None) -> Figures:
    """Figures for an hour enabled (none at all when ``availability`` is None);
    ``outage`` is ``(start, end, cause)``."""
    start, end, cause = outage if outage is not None else (None, None, None)
    enabled = 3600.0 if availability is not None else 0.0
    return Figures(enabled, round(enabled * (availability or 0)), flaps, start, end, cause)


def set_figures(engine: Engine, by_aor: dict[str, Figures]) -> None:
    """Give records the availability figures a test chose, as a restart would."""
    for registrant in engine:
        if registrant.config.aor in by_aor:
            restore(registrant, by_aor[registrant.config.aor], engine.clock.seconds())


@dataclass
class Lab:
    engine: Engine
    sender: FakeSender
    clock: Clock
    store: MemoryStore
    port: object = None
    bodies: list[bytes] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port.getHost().port}/"

    def answer(self, sent: Sent) -> None:
        user = sent.header("To").split(":")[1].split("@")[0]
        outcome = OUTCOMES.get(user, 200)
        if outcome == "timeout":
            timeout(sent)
        else:
            # A 200 lists our binding (RFC 3261 §10.3 step 8).
            contact = f"Contact: {sent.header('Contact')}"
            reply(sent, outcome, "OK" if outcome == 200 else "Forbidden", contact, "Expires: 600")

    def answer_all(self) -> None:
        while self.sender.sent:
            self.answer(self.sender.pop())

    def settle(self) -> None:
        """Let the scheduler visit every bucket once and answer what it sent."""
        for _ in range(TIMER_INTERVAL):
            self.clock.advance(1)
            self.answer_all()


def start_lab(
    *,
    bulk: int = 0,
    token: str | None = None,
    commands: Iterable[Command] = (),
) -> Lab:
    """``commands`` are added to the MI table (a stand-in replaces the real one)."""
    engine, sender, clock = make_engine(timer_interval=TIMER_INTERVAL, hash_size=2)
    records = lab_records(bulk)
    store = MemoryStore(records)
    for config in records:
        engine.upsert(config)
    lab = Lab(engine, sender, clock, store)

    def validate(row) -> RecordConfig:
        return record_from_row(row, timer_interval=TIMER_INTERVAL, default_expires=3600)

    shared = Listing(engine)
    table = RegistrantCommands(engine, store, validate, listing=shared).table()
    for command in commands:
        table.replace(command)
    status = StatusResource(engine, token=token, listing=shared)
    site = make_site(
        build_root(
            MIResource(table, token=token),
            MetricsResource(Metrics()),
            extra={b"": status, b"status": status},
        )
    )
    bodies = lab.bodies

    class RecordingRequest(server.Request):
        def write(self, data: bytes) -> None:
            bodies.append(data)
            super().write(data)

    site.requestFactory = RecordingRequest
    lab.port = reactor.listenTCP(0, site, interface="127.0.0.1")
    engine.start()
    lab.settle()
    return lab


def stop_lab(lab: Lab):
    lab.engine.scheduler.stop()
    return lab.port.stopListening()
