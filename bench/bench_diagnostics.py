"""Memory of the per-record diagnostics, in process (tracemalloc), over a fake transaction layer.

N records register (REGISTER -> 401 -> REGISTER with Authorization -> 200) and
are refreshed once; then the bytes the availability figures and the exchange
history hold are read from tracemalloc, by the file that allocated them, and
divided by N.  Then every record fails once (503: each keeps its failed
exchange), and a few records are traced for 8 exchanges::

    python bench/bench_diagnostics.py --n 100000
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from twisted.internet.defer import Deferred  # noqa: E402
from twisted.internet.task import Clock  # noqa: E402
from zope.interface import implementer  # noqa: E402

from uacregistrant.registrant.engine import Engine  # noqa: E402
from uacregistrant.registrant.machine import Registrant  # noqa: E402
from uacregistrant.registrant.policy import Timing  # noqa: E402
from uacregistrant.registrant.record import RecordConfig  # noqa: E402
from uacregistrant.sip.message import Response  # noqa: E402
from uacregistrant.transport.dns import SIPResolver  # noqa: E402
from uacregistrant.transport.interfaces import IRequestSender  # noqa: E402

CHALLENGE = ("WWW-Authenticate", 'Digest realm="bench.test", nonce="abc123", qop="auth", algorithm=MD5')
SLOTS = ("enabled_s", "bound_s", "counted_to", "outage")


@implementer(IRequestSender)
class Sender:
    def __init__(self) -> None:
        self.sent: list[tuple[object, Deferred]] = []

    def send_request(self, request, destination, local=None):
        d: Deferred = Deferred()
        self.sent.append((request, d))
        return d


class Clockwork(Clock):
    """A clock whose every reading is a float object of its own, as time.time()'s are."""

    def seconds(self) -> float:
        return self.rightNow + 0.0


def answer(sender: Sender, status_for) -> int:
    answered = 0
    while sender.sent:
        batch, sender.sent = sender.sent, []
        for request, d in batch:
            status, reason, headers = status_for(request)
            base = [
                ("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKbench"),
                ("CSeq", request.header("CSeq")),
                ("Call-ID", request.header("Call-ID")),
            ]
            d.callback(Response(status, reason, base + headers))
            answered += 1
    return answered


def registrar(request):
    if request.header("Authorization") is None:
        return 401, "Unauthorized", [CHALLENGE]
    contact = request.header("Contact").split(";expires=")[0]
    return 200, "OK", [("Contact", f"{contact};expires=3600")]


def unavailable(request):
    return 503, "Service Unavailable", [("Retry-After", "300")]


def by_file(snapshot: tracemalloc.Snapshot, name: str) -> int:
    return sum(stat.size for stat in snapshot.statistics("filename") if stat.traceback[0].filename.endswith(name))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    n = parser.parse_args().n
    clock = Clockwork()
    clock.advance(1_800_000_000)
    sender = Sender()
    engine = Engine(
        clock=clock,
        sender=sender,
        resolver=SIPResolver(resolver=None, clock=clock),
        timing=Timing(timer_interval=10, reregister_expiry_percentage=90),
        hash_size=0,
        rng=random.Random(1),
    )
    records = [
        RecordConfig(
            registrar="sip:127.0.0.1:5090",
            aor=f"sip:trunk{i:06d}@example.test",
            binding_uri=f"sip:trunk{i:06d}@127.0.0.1:5070",
            expiry=3600,
            username=f"acct{i:06d}",
            password="secret",
        )
        for i in range(n)
    ]
    tracemalloc.start()
    engine.apply(records)
    engine.start()

    def run(seconds: int, status_for) -> None:
        for _ in range(seconds):
            clock.advance(1)
            answer(sender, status_for)

    run(60, registrar)
    registered = sum(1 for r in engine if r.state.name == "REGISTERED_STATE")
    run(3600, registrar)  # every record refreshed at least once
    gc.collect()
    steady = tracemalloc.take_snapshot()
    figures = by_file(steady, "registrant/availability.py")
    history = by_file(steady, "registrant/trace.py")
    total = sum(stat.size for stat in steady.statistics("filename"))
    slots = len(SLOTS) * 8
    print(f"N={n}: {registered} registered, then refreshed for an hour")
    slots_of = getattr(Registrant, "__slots__", None)
    # Distinct float objects held (a compiled build keeps them unboxed: none).
    floats = len({id(getattr(r, name)) for r in engine for name in ("enabled_s", "bound_s", "counted_to")}) if slots_of else 0
    print(f"  untraced record, availability figures: {slots} B of slots + {floats * 24 / n:.0f} B of floats"
          f" ({figures / n:.0f} B of them allocated in availability.py)")
    print(f"  untraced record, exchange history:     {history / n:.1f} B")
    print(f"  everything tracemalloc sees:            {total / n / 1024:.2f} KiB per record")
    shape = f"{len(slots_of)} slots" if slots_of else "compiled: floats unboxed in the object"
    print(f"  Registrant object:                      {sys.getsizeof(next(iter(engine)))} B ({shape})")

    for registrant in engine:
        engine.force_register(registrant.key)
    run(20, unavailable)
    failing = sum(1 for r in engine if r.state.name == "REGISTRAR_ERROR_STATE")
    gc.collect()
    failed = tracemalloc.take_snapshot()
    history = by_file(failed, "registrant/trace.py")
    figures = by_file(failed, "registrant/availability.py")
    print(f"after a 503 to every refresh: {failing} failing, {engine.trace.failed_count} failed exchanges kept")
    print(f"  failing record, its failed exchange:   {history / n:.0f} B")
    floats = len({id(getattr(r, name)) for r in engine for name in ("enabled_s", "bound_s", "counted_to")}) if slots_of else 0
    print(f"  failing record, availability figures:  {slots} B of slots + {floats * 24 / n:.0f} B of floats"
          f" + {figures / n:.0f} B allocated in availability.py (floats, outage tuple)")

    traced = [r.key for r in list(engine)[:64]]
    for key in traced:
        engine.trace.on(key, 86400)
    before = by_file(tracemalloc.take_snapshot(), "registrant/trace.py")
    for _ in range(4):
        for key in traced:
            engine.force_register(key)
        run(5, registrar)
    gc.collect()
    after = by_file(tracemalloc.take_snapshot(), "registrant/trace.py")
    full = sum(len(engine.trace.read(key).exchanges) for key in traced) / len(traced)
    print(f"traced records, {full:.0f} exchanges each: {(after - before) / len(traced) / 1024:.1f} KiB per traced record")
    tracemalloc.stop()


if __name__ == "__main__":
    main()
