"""The log of the real service: one key=value line per state change, JSON lines
for collectors (twistd --logger, twist --log-format=json), and --log-level."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from tests.e2e.service import ServiceProcess, make_table, wait_until
from tests.peers import free_port

TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile="]
STATE_LINE = re.compile(
    r"state aor=sip:alice@example\.test binding=sip:alice@127\.0\.0\.1:\d+ registrar=sip:127\.0\.0\.1:\d+"
    r" old=NOT_REGISTERED_STATE new=REGISTERED_STATE code=200 reason='OK'$"
)


def _run(tmp_path: Path, registrar, runner: list[str] | None = None, *extra: str) -> ServiceProcess:
    sip_port = free_port("udp")
    database = tmp_path / "registrant.sqlite"
    make_table(database, [
        dict(registrar=registrar.uri, aor="sip:alice@example.test",
             binding_URI=f"sip:alice@127.0.0.1:{sip_port}", expiry=600),
        # Refused at load time: a warning names it.
        dict(registrar="not a uri", aor="sip:bad@example.test", binding_URI="sip:bad@127.0.0.1", expiry=600),
    ])
    svc = ServiceProcess(tmp_path, [
        "--db-url", f"sqlite:///{database}", "--listen", f"udp:127.0.0.1:{sip_port}",
        "--timer-interval", "2", *extra,
    ], mi_port=free_port("tcp"), runner=runner)
    svc.start()
    wait_until(lambda: svc.records()["sip:alice@example.test"]["state"] == "REGISTERED_STATE", 20,
               "alice registered")
    return svc


def _stop(svc: ServiceProcess) -> str:
    svc.terminate(timeout=30)
    return svc.log_text()


def _json_events(text: str) -> list[dict]:
    events = []
    for line in text.splitlines():
        line = line.strip("\x1e").strip()
        if line:
            events.append(json.loads(line))
    return events


@pytest.mark.timeout(90)
def test_a_state_change_is_one_key_value_line(tmp_path, scripted_registrar):
    text = _stop(_run(tmp_path, scripted_registrar))
    lines = [line for line in text.splitlines() if " state aor=sip:alice@" in line]
    assert any(STATE_LINE.search(line) for line in lines), lines
    assert "skipped row" in text and "loaded 1 registrant records" in text


@pytest.mark.timeout(90)
def test_json_lines_through_twistd_logger(tmp_path, scripted_registrar):
    runner = [*TWISTD, "--logger", "uacregistrant.logs.json_observer"]
    events = _json_events(_stop(_run(tmp_path, scripted_registrar, runner)))
    changes = [e for e in events if e.get("log_format", "").startswith("state aor=")]
    assert changes, events[-5:]
    change = changes[0]
    assert {k: change[k] for k in ("aor", "old", "new", "code", "reason")} == {
        "aor": "sip:alice@example.test", "old": "NOT_REGISTERED_STATE", "new": "REGISTERED_STATE",
        "code": 200, "reason": "OK",
    }
    assert change["registrar"] == scripted_registrar.uri
    assert change["log_level"]["name"] == "info"
    assert any(e.get("log_format", "").startswith("loaded {count}") and e["count"] == 1 for e in events)


@pytest.mark.timeout(90)
def test_json_lines_through_twist(tmp_path, scripted_registrar):
    runner = [sys.executable, "-m", "twisted", "--log-format=json"]
    events = _json_events(_stop(_run(tmp_path, scripted_registrar, runner)))
    changes = [e for e in events if e.get("log_format", "").startswith("state aor=")]
    assert changes and changes[0]["new"] == "REGISTERED_STATE"


@pytest.mark.timeout(90)
def test_log_level_warn_keeps_warnings_only(tmp_path, scripted_registrar):
    runner = [*TWISTD, "--logger", "uacregistrant.logs.json_observer"]
    events = _json_events(_stop(_run(tmp_path, scripted_registrar, runner, "--log-level", "warn")))
    assert events
    assert {e["log_level"]["name"] for e in events} <= {"warn", "error", "critical"}
    assert any(e.get("log_format", "").startswith("skipped row") for e in events)


@pytest.mark.timeout(90)
def test_log_level_with_the_default_text_observer(tmp_path, scripted_registrar):
    text = _stop(_run(tmp_path, scripted_registrar, None, "--log-level", "warn"))
    assert "skipped row" in text
    assert "state aor=" not in text and "loaded 1 registrant records" not in text
