"""The record path alone, in process: REGISTER -> 401 -> REGISTER with Authorization -> 200
for N records over a fake transaction layer and a task.Clock; CPU seconds per 1,000."""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(sys.argv[sys.argv.index("--root") + 1]) if "--root" in sys.argv else Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from twisted.internet.defer import Deferred  # noqa: E402
from twisted.internet.task import Clock  # noqa: E402
from zope.interface import implementer  # noqa: E402

from uacregistrant.registrant.engine import Engine  # noqa: E402
from uacregistrant.registrant.policy import Timing  # noqa: E402
from uacregistrant.registrant.record import RecordConfig  # noqa: E402
from uacregistrant.sip.message import Response  # noqa: E402
from uacregistrant.transport.dns import SIPResolver  # noqa: E402
from uacregistrant.transport.interfaces import IRequestSender  # noqa: E402

CHALLENGE = ("WWW-Authenticate", 'Digest realm="bench.test", nonce="abc123", qop="auth", algorithm=MD5')


@implementer(IRequestSender)
class Sender:
    def __init__(self) -> None:
        self.sent: list[tuple[object, Deferred]] = []

    def send_request(self, request, destination, local=None):
        d: Deferred = Deferred()
        self.sent.append((request, d))
        return d


def run(n: int) -> float:
    clock = Clock()
    sender = Sender()
    engine = Engine(
        clock=clock,
        sender=sender,
        resolver=SIPResolver(resolver=None, clock=clock),
        timing=Timing(timer_interval=10),
        hash_size=0,
        rng=random.Random(1),
    )
    records = [
        RecordConfig(
            registrar="sip:127.0.0.1:5090",
            aor=f"sip:user{i:06d}@127.0.0.1",
            binding_uri=f"sip:user{i:06d}@127.0.0.1:5070",
            expiry=3600,
            username=f"user{i:06d}",
            password="secret",
        )
        for i in range(n)
    ]
    engine.apply(records)
    engine.start()
    started = time.process_time()
    registered = 0
    while registered < n:
        clock.advance(0.5)
        while sender.sent:
            sent, sender.sent = sender.sent, []
            for request, d in sent:
                if request.header("Authorization") is None:
                    d.callback(Response(401, "Unauthorized", [CHALLENGE]))
                else:
                    d.callback(Response(200, "OK", [("Contact", request.header("Contact"))]))
                    registered += 1
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--root", default=str(ROOT), help="the source tree to measure")
    args = parser.parse_args()
    best = min(run(args.n) for _ in range(args.runs))
    from uacregistrant import compiled

    print(f"{args.n} records, {compiled.variant()} hot modules:"
          f" {best * 1000 / args.n:.3f} CPU s per 1,000 authenticated registrations (best of {args.runs})")


if __name__ == "__main__":
    main()
