"""The service as an operator runs it (twistd, SQLite) against SIPp playing the registrar.

Each test checks the outcome twice: through MI ``reg_list`` and through what
SIPp saw on the wire (its ``-trace_msg`` message log).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable

import pytest

from tests.peers import free_port
from tests.sipp_helpers import SIPP_DIR, SippProcess, start_sipp

from .service import ServiceProcess, make_table, wait_until

TI = 2  # timer_interval: with 2 buckets, one visit a second
AOR = "sip:alice@example.test"
INSTANCE = '"<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>"'

_SEPARATOR = "-" * 47 + " "


@dataclass(frozen=True, slots=True)
class WireMessage:
    """One message from SIPp's message log."""

    at: float
    received: bool
    start_line: str
    headers: tuple[tuple[str, str], ...]

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    @property
    def is_register(self) -> bool:
        return self.received and self.start_line.startswith("REGISTER ")

    @property
    def branch(self) -> str:
        via = self.header("Via") or ""
        return next(p[len("branch="):] for p in via.split(";") if p.startswith("branch="))

    @property
    def call_id(self) -> str | None:
        return self.header("Call-ID")

    @property
    def cseq(self) -> int:
        return int((self.header("CSeq") or "").split()[0])


def parse_message_log(text: str) -> list[WireMessage]:
    """SIPp's ``-trace_msg`` log: blocks opened by a dashed line with a local timestamp."""
    messages = []
    for block in text.split(_SEPARATOR)[1:]:
        if not block.endswith("\n\n"):
            continue  # SIPp is still writing it
        lines = block.split("\n")
        at = datetime.strptime(lines[0].strip(), "%Y-%m-%d %H:%M:%S.%f").timestamp()
        received = "message received" in lines[1]
        sip = [line.rstrip("\r") for line in lines[3:]]
        body_start = sip.index("") if "" in sip else len(sip)
        headers = tuple(
            (name.strip(), value.strip())
            for name, _, value in (line.partition(":") for line in sip[1:body_start])
        )
        messages.append(WireMessage(at, received, sip[0], headers))
    return messages


class Registrar:
    """SIPp running one of our registrar scenarios, with its message log."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.sipp: SippProcess | None = None

    def start(self, scenario: str) -> "Registrar":
        self.workdir.mkdir()
        self.sipp = start_sipp(
            SIPP_DIR / scenario, free_port(), "u1", ("-trace_msg",), workdir=self.workdir
        )
        return self

    @property
    def uri(self) -> str:
        return f"sip:127.0.0.1:{self.sipp.port}"

    def messages(self) -> list[WireMessage]:
        logs = list(self.workdir.glob("*_messages.log"))
        return parse_message_log(logs[0].read_text(errors="replace")) if logs else []

    def registers(self) -> list[WireMessage]:
        return [m for m in self.messages() if m.is_register]

    def wait_for_registers(self, count: int, timeout: float) -> list[WireMessage]:
        wait_until(lambda: len(self.registers()) >= count, timeout, f"{count} REGISTERs at SIPp")
        return self.registers()

    def errors(self) -> str:
        return self.sipp.errors() if self.sipp else ""


class Runner:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.sip_port = free_port()
        self.proc: ServiceProcess | None = None

    @property
    def binding(self) -> str:
        return f"sip:alice@127.0.0.1:{self.sip_port}"

    def start(self, registrar: Registrar, failure_retry_interval: int, **row) -> ServiceProcess:
        db = self.workdir / "registrant.sqlite"
        values = dict(registrar=registrar.uri, aor=AOR, binding_URI=self.binding, expiry=60)
        values.update(row)
        make_table(db, [values])
        self.proc = ServiceProcess(
            self.workdir,
            [
                "--db-url", f"sqlite:///{db}",
                "--listen", f"udp:127.0.0.1:{self.sip_port}",
                "--timer-interval", str(TI),
                "--failure-retry-interval", str(failure_retry_interval),
            ],
            mi_port=free_port(),
        )
        return self.proc.start()


@pytest.fixture
def registrar(tmp_path):
    registrar = Registrar(tmp_path / "sipp")
    yield registrar
    if registrar.sipp is not None:
        registrar.sipp.stop()


@pytest.fixture
def runner(tmp_path):
    runner = Runner(tmp_path)
    yield runner
    if runner.proc is not None:
        runner.proc.stop()


def alice(svc: ServiceProcess) -> dict | None:
    # None until the service has loaded the table, which may come after MI is up.
    return svc.records().get(AOR)


def in_state(svc: ServiceProcess, state: str) -> dict | None:
    record = alice(svc)
    return record if record is not None and record["state"] == state else None


def holds_for(seconds: float, check: Callable[[], object], what: str) -> None:
    """Watch an outside process for ``seconds``: ``check()`` must stay truthy throughout."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert check(), what
        time.sleep(0.2)


def test_503_retry_after_outlasts_the_failure_retry_interval(registrar, runner):
    registrar.start("registrar_503_retry_after.xml")
    # failure_retry_interval 2 alone would retry 1 to 2 s after the 503.
    svc = runner.start(registrar, failure_retry_interval=2)

    record = wait_until(lambda: in_state(svc, "REGISTRAR_ERROR_STATE"), 10, "the 503")
    assert (record["last_code"], record["last_reason"]) == (503, "Service Unavailable")
    assert record["failures"] == 1

    first, retry = registrar.wait_for_registers(2, 15)[:2]
    rejected = next(m for m in registrar.messages() if not m.received and m.start_line.startswith("SIP/2.0 503"))
    waited = retry.at - rejected.at
    # Never before Retry-After; then the next visit of the record's bucket.
    assert 8 <= waited < 8 + TI + 1, f"retried {waited:.2f} s after the 503"
    # A retry after a failure starts a new dialog.
    assert retry.call_id != first.call_id
    assert (first.cseq, retry.cseq) == (1, 1)
    assert first.branch != retry.branch


def test_silent_registrar_times_out_on_timer_f(registrar, runner):
    registrar.start("registrar_silent.xml")
    svc = runner.start(registrar, failure_retry_interval=60)

    first = registrar.wait_for_registers(1, 5)[0]
    record = wait_until(lambda: in_state(svc, "REGISTER_TIMEOUT_STATE"), 40, "Timer F")
    timed_out_at = time.time()
    # Timer F = 64 T1 = 32 s with the default T1 of 500 ms.
    waited = timed_out_at - first.at
    assert 31.5 <= waited < 34, f"timed out {waited:.2f} s after the first copy"
    assert record["last_code"] == 408
    assert record["failures"] == 1

    copies = registrar.registers()
    # Timer E: copies at 0, 0.5, 1.5, 3.5, then every T2 = 4 s up to 31.5 s.
    assert len(copies) == 11
    assert {(m.branch, m.call_id, m.cseq) for m in copies} == {(first.branch, first.call_id, 1)}
    assert copies[-1].at - first.at == pytest.approx(31.5, abs=0.5)


def test_unique_binding_removes_the_stale_contacts_once(registrar, runner):
    registrar.start("registrar_two_contacts.xml")
    params = f";reg-id=1;+sip.instance={INSTANCE}"
    svc = runner.start(registrar, failure_retry_interval=60, binding_params=params)

    first, removal, fresh = registrar.wait_for_registers(3, 10)[:3]
    assert first.header("Contact") == f"<{runner.binding}>{params};expires=60"
    # RFC 3261 §10.2.2: "Contact: *" with "Expires: 0", in the same dialog.
    assert removal.header("Contact") == "*"
    assert removal.header("Expires") == "0"
    assert (removal.call_id, removal.cseq) == (first.call_id, 2)
    # Then a fresh registration in a new dialog.
    assert fresh.call_id != first.call_id
    assert fresh.cseq == 1
    assert fresh.header("Contact") == f"<{runner.binding}>{params};expires=60"

    wait_until(lambda: in_state(svc, "REGISTERED_STATE"), 5, "REGISTERED")
    # The second 200 lists two Contacts again: no second clean-up, no loop.
    holds_for(4, lambda: len(registrar.registers()) == 3 and in_state(svc, "REGISTERED_STATE"),
              "a second clean-up or a lost registration")
    assert alice(svc)["expires"] == 60


def test_403_is_a_registrar_error_without_an_immediate_retry(registrar, runner):
    registrar.start("registrar_403.xml")
    # A retry comes 10 to 20 s after the failure.
    svc = runner.start(registrar, failure_retry_interval=20)

    record = wait_until(lambda: in_state(svc, "REGISTRAR_ERROR_STATE"), 10, "the 403")
    assert (record["last_code"], record["last_reason"]) == (403, "Forbidden")
    assert record["failures"] == 1
    holds_for(4, lambda: len(registrar.registers()) == 1 and in_state(svc, "REGISTRAR_ERROR_STATE"),
              "a retry right after the 403")
    assert registrar.registers()[0].header("Authorization") is None


def test_retransmissions_until_the_registrar_answers(registrar, runner):
    registrar.start("registrar_third_copy.xml")
    svc = runner.start(registrar, failure_retry_interval=60)

    record = wait_until(lambda: in_state(svc, "REGISTERED_STATE"), 10, "REGISTERED")
    assert (record["last_code"], record["expires"]) == (200, 60)

    copies = registrar.registers()
    assert len(copies) == 3, registrar.errors()
    assert len({(m.branch, m.call_id, m.cseq) for m in copies}) == 1
    # Timer E from T1 = 500 ms: 0, 0.5, 1.5 s.
    assert [m.at - copies[0].at for m in copies] == pytest.approx([0, 0.5, 1.5], abs=0.2)
    [answer] = [m for m in registrar.messages() if not m.received]
    assert answer.at > copies[-1].at
