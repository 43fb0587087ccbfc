"""Per-record diagnostics against a scripted registrar: reg_trace, availability, /metrics, no secret.

The service runs in process on the host's SIP transport (the embedding API),
with Timer F at 3.2 s instead of 32 s (T1 = 50 ms) so a timeout is cheap; the
MI is served over HTTP as in production, and read over HTTP, and once through
the real opensips-cli.  The registrar (UDP, in threads) answers the trunk by a
script the test switches: 401, 423 with Min-Expires, 401, 200; then 503 with
Retry-After; then silence (timeouts); then 401, 200 again.
"""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path

import pytest
import pytest_twisted
import treq
from twisted.internet import defer, reactor, task
from twisted.internet.utils import getProcessOutputAndValue

from tests.e2e.service import make_table
from tests.hostile.registrar import ScriptedRegistrar
from tests.mi.test_opensips_cli import opensips_cli
from tests.peers import free_port
from uacregistrant.config import Config, DbUrl, parse_endpoint
from uacregistrant.service import RegistrantService
from uacregistrant.sip.message import Request, response_for
from uacregistrant.sip.transaction import Timers
from uacregistrant.transport.layer import TransactionLayer
from uacregistrant.transport.listen import SocketSpec

pytestmark = pytest.mark.timeout(120)

USERNAME = "acct-e2e-4711"
PASSWORD = "pw-e2e-secret-7"
NONCE = "n0nce-e2e-5f3a9c"
AOR = "sip:trunk@e2e.test"
CHALLENGE = f'Digest realm="e2e.test", nonce="{NONCE}", qop="auth", algorithm=MD5'


class Trunk:
    """The registrar's script for the trunk: ``mode`` is switched by the test."""

    def __init__(self) -> None:
        self.mode = "script"
        self.lock = threading.Lock()
        self.asked_423 = False

    def __call__(self, request: Request) -> list[bytes]:
        with self.lock:
            mode = self.mode
            if mode == "silent":
                return []
            if mode == "503":
                return [response_for(request, 503, "Service Unavailable", [("Retry-After", "1")], to_tag="r").to_bytes()]
            if request.header("Authorization") is None:
                return [response_for(request, 401, "Unauthorized", [("WWW-Authenticate", CHALLENGE)], to_tag="r").to_bytes()]
            contact = request.header("Contact") or ""
            if not self.asked_423:
                self.asked_423 = True
                return [response_for(request, 423, "Interval Too Brief", [("Min-Expires", "1800")], to_tag="r").to_bytes()]
            granted = re.sub(r";expires=\d+", ";expires=1800", contact)
            return [response_for(request, 200, "OK", [("Contact", granted), ("Expires", "1800")], to_tag="r").to_bytes()]


class Lab:
    def __init__(self, workdir: Path) -> None:
        self.trunk = Trunk()
        self.registrar = ScriptedRegistrar("udp", {"trunk": self.trunk}).start()
        self.db = workdir / "reg.sqlite"
        self.sip_port = free_port("udp")
        make_table(self.db, [{
            "registrar": self.registrar.uri,
            "aor": AOR,
            "binding_URI": f"sip:trunk@127.0.0.1:{self.sip_port}",
            "username": USERNAME,
            "password": PASSWORD,
            "expiry": 600,
            "state": 1,  # disabled: traced before its first REGISTER
        }])
        self.service: RegistrantService | None = None
        self.sip: TransactionLayer | None = None
        self.outputs: list[bytes] = []

    def triple(self, **extra) -> dict[str, object]:
        return {"aor": AOR, "contact": f"sip:trunk@127.0.0.1:{self.sip_port}", "registrar": self.registrar.uri, **extra}

    async def start(self) -> None:
        self.sip = TransactionLayer(reactor, reactor, timers=Timers(t1=0.05, t2=0.4, t4=0.5))
        self.sip.listen(SocketSpec("udp", "127.0.0.1", self.sip_port))
        config = Config(
            db_url=DbUrl("sqlite", path=str(self.db)),
            timer_interval=2,
            failure_retry_interval=1,
            retry_backoff_cap=1,
            mi_listen=parse_endpoint("tcp:0:interface=127.0.0.1"),
            shutdown_timeout=2.0,
        )
        self.service = RegistrantService(config, reactor, sender=self.sip)
        self.service.startService()
        await self.service.ready

    async def stop(self) -> None:
        if self.service is not None:
            await self.service.stopService()
            self.service = None
        if self.sip is not None:
            await self.sip.stop()
            self.sip = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.service.mi_address.port}"

    async def get(self, path: str) -> bytes:
        response = await treq.get(self.url + path, persistent=False)
        body = await treq.content(response)
        self.outputs.append(body)
        return body

    async def mi(self, method: str, params: object = None) -> object:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}}).encode()
        response = await treq.post(self.url + "/mi", body, headers={"Content-Type": ["application/json"]},
                                   persistent=False)
        raw = await treq.content(response)
        self.outputs.append(raw)
        answer = json.loads(raw)
        assert "error" not in answer, answer
        return answer["result"]

    async def record(self) -> dict:
        [record] = (await self.mi("reg_list"))["Records"]
        return record

    async def exchanges(self) -> list[dict]:
        return (await self.mi("reg_trace", self.triple()))["exchanges"]

    async def until(self, check, what: str, timeout: float = 20.0):
        for _ in range(int(timeout / 0.05)):
            result = await check()
            if result:
                return result
            await task.deferLater(reactor, 0.05, lambda: None)
        raise AssertionError(f"timed out waiting for {what}")

    def shutdown(self) -> None:
        self.registrar.stop()


def status_line(exchange: dict) -> str | None:
    return None if exchange["reply"] is None else exchange["reply"].split("\r\n")[0]


def summary(exchanges: list[dict]) -> list[str]:
    return [status_line(e) or e["outcome"] for e in exchanges]


@pytest.fixture
def lab(tmp_path):
    lab = Lab(tmp_path)
    yield lab
    pytest_twisted.blockon(defer.ensureDeferred(lab.stop()))
    lab.shutdown()


@pytest_twisted.ensureDeferred
async def test_trace_availability_and_no_secret_through_an_outage(lab):
    await lab.start()
    answer = await lab.mi("reg_trace", lab.triple(trace="on", seconds=300))
    assert answer["trace"] == "on" and answer["exchanges"] == []
    assert await lab.mi("reg_enable", lab.triple()) == "OK"

    # 401, 423 (Min-Expires 1800), 401 again for the new request, 200: each exchange in order.
    async def registered():
        return (await lab.record())["state"] == "REGISTERED_STATE"

    await lab.until(registered, "the trunk registered")
    exchanges = await lab.exchanges()
    assert summary(exchanges) == [
        "SIP/2.0 401 Unauthorized", "SIP/2.0 423 Interval Too Brief", "SIP/2.0 401 Unauthorized", "SIP/2.0 200 OK"]
    first, brief, second, ok = exchanges
    assert (first["transport"], first["destination"]) == ("UDP", f"127.0.0.1:{lab.registrar.port}")
    assert [e["outcome"] for e in exchanges] == ["reply"] * 4
    assert "Min-Expires: 1800" in brief["reply"]
    assert "Authorization: Digest" in brief["request"] and "Authorization" not in second["request"]
    assert ";expires=1800" in ok["request"] and ";expires=600" in first["request"]
    assert 'WWW-Authenticate: Digest realm="e2e.test", algorithm=MD5, qop="auth"' == first["reply"].split("\r\n")[-1]
    cseqs = [int(re.search(r"CSeq: (\d+)", e["request"]).group(1)) for e in exchanges]
    assert cseqs == sorted(cseqs)
    assert all(re.search(r"^Via: SIP/2\.0/UDP 127\.0\.0\.1:\d+;branch=z9hG4bK\w+", e["request"], re.M) for e in exchanges)
    assert all(a["at"] <= b["at"] for a, b in zip(exchanges, exchanges[1:]))

    # The outage: a refresh refused with 503 (Retry-After), then no answer at all.
    bound_before = await lab.record()
    lab.trunk.mode = "503"
    assert await lab.mi("reg_force_register", lab.triple()) == "OK"

    async def refused():
        return (await lab.record())["state"] == "REGISTRAR_ERROR_STATE"

    await lab.until(refused, "the 503")
    lab.trunk.mode = "silent"

    async def timed_out():
        return (await lab.exchanges())[-1]["outcome"] == "timeout"

    await lab.until(timed_out, "a timeout in the trace")
    during = await lab.record()
    # Timed out, or (a slow run) already retrying into the silence.
    assert during["state"] in ("REGISTER_TIMEOUT_STATE", "REGISTERING_STATE")
    assert during["flaps"] == 1
    assert during["last_outage"]["end"] is None
    assert during["last_outage"]["cause"] == "503 Service Unavailable"
    timeout = (await lab.exchanges())[-1]
    assert timeout["reply"] is None and "no final response" in timeout["reason"]
    assert re.search(r"^Via: SIP/2\.0/UDP .*;branch=z9hG4bK", timeout["request"], re.M)

    lab.trunk.mode = "script"
    await lab.until(registered, "the trunk registered again")
    exchanges = await lab.exchanges()
    assert len(exchanges) == 8
    tail = summary(exchanges)
    assert tail[-2:] == ["SIP/2.0 401 Unauthorized", "SIP/2.0 200 OK"]
    assert "SIP/2.0 503 Service Unavailable" in tail and "timeout" in tail
    assert tail.index("SIP/2.0 503 Service Unavailable") < tail.index("timeout")
    after = await lab.record()
    outage = after["last_outage"]
    assert after["flaps"] == 1 and outage["cause"] == "503 Service Unavailable"
    assert outage["end"] is not None and outage["end"] - outage["start"] >= 3.0  # a Timer F at least
    assert after["enabled_s"] >= bound_before["enabled_s"] + int(outage["end"] - outage["start"])
    assert after["bound_s"] <= after["enabled_s"] - int(outage["end"] - outage["start"]) + 1
    assert 0 < after["availability"] < 1 and after["trace"] == "on"

    # The whole MI output: no password, username, nonce or digest answer anywhere.
    metrics = (await lab.get("/metrics")).decode()
    assert "uac_registrant_flaps_total 1.0" in metrics
    assert 'uac_registrant_availability_bucket{le="+Inf"} 1.0' in metrics
    assert "uac_registrant_traced_records 1.0" in metrics
    await lab.mi("reg_list", lab.triple())
    await lab.get("/status/records.json")
    secrets = {USERNAME, PASSWORD, NONCE}
    for arrival in lab.registrar.arrivals("trunk"):
        authorization = arrival.request.header("Authorization")
        if authorization is not None:
            for name in ("response", "cnonce"):
                secrets.add(re.search(rf'{name}="([^"]+)"', authorization).group(1))
    assert len(secrets) > 4
    everything = b"\n".join(lab.outputs).decode()
    for secret in secrets:
        assert secret not in everything, secret
    assert "…" in everything

    # Switched off: nothing more recorded, what was recorded still readable.
    answer = await lab.mi("reg_trace", lab.triple(trace="off"))
    assert (answer["trace"], answer["trace_until"], len(answer["exchanges"])) == ("off", None, 8)

    # A restart (the binding removed at shutdown, as by default): the figures carry over
    # through the runtime table; the history, kept in memory only, does not.
    before = await lab.record()
    await lab.stop()
    await lab.start()
    restarted = await lab.record()
    assert restarted["flaps"] == 1 and restarted["last_outage"] == before["last_outage"]
    assert restarted["enabled_s"] >= before["enabled_s"] and restarted["bound_s"] >= before["bound_s"] - 1
    assert (await lab.exchanges()) == []
    await lab.until(registered, "the trunk registered after the restart")


@pytest_twisted.ensureDeferred
async def test_reg_trace_through_opensips_cli(lab):
    cli = opensips_cli()
    await lab.start()
    triple = lab.triple()

    async def run(*args: str) -> dict:
        out, err, rc = await getProcessOutputAndValue(
            cli, ("-o", "communication_type=http", "-o", f"url={lab.url}/mi", "-x", "mi", *args), env=dict(os.environ))
        assert rc == 0, err
        lab.outputs.append(out)
        return json.loads(out)

    answer = await run("reg_trace", triple["aor"], triple["contact"], triple["registrar"], "on", "120")
    assert answer["trace"] == "on" and answer["trace_until"] is not None
    await lab.mi("reg_enable", triple)

    async def two():
        return len(await lab.exchanges()) >= 2

    await lab.until(two, "two exchanges")
    answer = await run("reg_trace", triple["aor"], triple["contact"], triple["registrar"])
    assert summary(answer["exchanges"])[:2] == ["SIP/2.0 401 Unauthorized", "SIP/2.0 423 Interval Too Brief"]
    assert PASSWORD.encode() not in b"".join(lab.outputs) and NONCE.encode() not in b"".join(lab.outputs)
