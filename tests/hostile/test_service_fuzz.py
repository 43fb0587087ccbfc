"""Seeded garbage from a registrar against the real service: every record
settles, nothing is left in flight, and an honest record keeps registering.

Each reply is built from raw bytes (any status, header values with
non-ASCII digits, non-UTF-8 bytes, overlong numbers, broken parameters), so
the service meets replies its own serialiser could never produce.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.service import wait_until
from tests.hostile.registrar import ScriptedRegistrar
from tests.hostile.service import IN_FLIGHT, Hostile
from uacregistrant.sip.message import Request

pytestmark = pytest.mark.timeout(150)

RECORDS = 40
# Timer F (64 × T1) plus the scheduler's sweep: the longest a REGISTER may stay open.
SETTLE = 32 + 2 + 6

STATUSES = [200, 200, 200, 401, 407, 423, 408, 403, 503, 302, 100, 183, 600, 999]
NUMBERS = [b"0", b"1", b"3600", b"4294967296", b"9" * 40, b"-1", "\u0663\u0660".encode(), "\u00b2".encode(),
           b"\xff\xfe", b"", b"1e9", b"0x10"]
TEXT = [b"", b"garbage", b'"unterminated', b";;;", b"\xc3\x28", b"<sip:", b"\x00", b"a" * 3000]


def garbage(rng: random.Random, request: Request) -> bytes:
    status = rng.choice(STATUSES)
    lines = [b"SIP/2.0 %d Whatever" % status]
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        value = (request.header(name) or "").encode()
        if name == "To":
            value += b";tag=fz"
        lines.append(name.encode() + b": " + value)
    contact = (request.header("Contact") or "").encode()
    for _ in range(rng.randrange(0, 5)):
        kind = rng.randrange(6)
        if kind == 0:
            lines.append(b"Contact: " + contact.split(b";expires=")[0] + b";expires=" + rng.choice(NUMBERS))
        elif kind == 1:
            lines.append(rng.choice([b"Expires", b"Min-Expires", b"Retry-After", b"Flow-Timer"]) + b": "
                         + rng.choice(NUMBERS))
        elif kind == 2:
            lines.append(rng.choice([b"WWW-Authenticate", b"Proxy-Authenticate"]) + b": Digest "
                         + rng.choice([b'realm="r", nonce="n"', b"realm=", b'nonce="' + rng.choice(TEXT)]))
        elif kind == 3:
            lines.append(b"Contact: " + rng.choice(TEXT))
        elif kind == 4:
            lines.append(b"Contact: *")
        else:
            lines.append(rng.choice([b"Service-Route", b"P-Associated-URI", b"X-Junk"]) + b": "
                         + rng.choice(TEXT))
    if rng.random() < 0.3:
        lines.append(b"Contact: " + contact)
    return b"\r\n".join(lines) + b"\r\nContent-Length: 0\r\n\r\n"


@pytest.fixture(scope="module")
def registrar() -> Iterator[ScriptedRegistrar]:
    rng = random.Random(20261130)
    behaviours = {f"fuzz{i}": (lambda request: [garbage(rng, request)]) for i in range(RECORDS)}
    registrar = ScriptedRegistrar("udp", behaviours).start()
    try:
        yield registrar
    finally:
        registrar.stop()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, registrar: ScriptedRegistrar) -> Iterator[Hostile]:
    workdir: Path = tmp_path_factory.mktemp("fuzz")
    rows = [{"registrar": registrar.uri, "aor": f"sip:{user}@127.0.0.1", "binding_URI": f"sip:{user}@127.0.0.1:5999",
             "username": user, "password": "pw", "expiry": 600}
            for user in ["honest", *(f"fuzz{i}" for i in range(RECORDS))]]
    hostile = Hostile(workdir, rows)
    try:
        yield hostile.start()
    finally:
        hostile.stop()


def test_every_record_settles_and_the_honest_one_registers(service: Hostile, registrar: ScriptedRegistrar) -> None:
    wait_until(lambda: all(registrar.arrivals(f"fuzz{i}") for i in range(RECORDS)), 15,
               "a REGISTER of every fuzzed record")
    wait_until(lambda: not any(r["state"] in IN_FLIGHT for r in service.records().values()), SETTLE,
               "every record settled")
    metrics = service.proc.metrics_text()
    in_flight = [line for line in metrics.splitlines()
                 if line.startswith("uac_registrant_records{") and any(s in line for s in IN_FLIGHT)]
    assert all(line.endswith(" 0.0") for line in in_flight), in_flight
    service.wait_state("sip:honest@127.0.0.1", "REGISTERED_STATE")
    log = service.log()
    assert "Traceback" not in log
    assert "Unhandled" not in log
