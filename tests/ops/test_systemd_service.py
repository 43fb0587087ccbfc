"""The real service under a stand-in for systemd: its own NOTIFY_SOCKET (AF_UNIX
datagrams), WATCHDOG_USEC, SIGHUP and SIGTERM; and /health from outside."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.service import COLUMNS, ServiceProcess, make_table, wait_until
from tests.peers import free_port

# 1 s: the service pings every 0.5 s.
WATCHDOG_USEC = 1_000_000
INTERVAL = WATCHDOG_USEC / 2 / 1_000_000
PINGS = 9  # 8 gaps


class NotifyListener:
    """Our end of NOTIFY_SOCKET: every datagram with the time it came."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(str(path))
        self.messages: list[tuple[float, list[str]]] = []

    def receive_until(self, done, timeout: float, what: str) -> None:
        """Read datagrams until ``done(messages)`` holds."""
        deadline = time.monotonic() + timeout
        while not done(self.messages):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {what}: {self.messages[-10:]}")
            self._socket.settimeout(left)
            try:
                data = self._socket.recv(4096)
            except TimeoutError:
                continue
            self.messages.append((time.monotonic(), data.decode().split("\n")))

    def index(self, line: str, start: int = 0) -> int | None:
        for n, (_, lines) in enumerate(self.messages[start:], start):
            if line in lines:
                return n
        return None

    def close(self) -> None:
        self._socket.close()


def _health(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _add_row(path: Path, row: dict) -> None:
    with sqlite3.connect(path) as db:
        values = [row.get(c, 0 if c == "state" else None) for c in COLUMNS]
        db.execute(f"INSERT INTO registrant ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                   values)


@pytest.mark.timeout(120)
def test_notify_ready_status_watchdog_reload_and_stopping(tmp_path, scripted_registrar, monkeypatch):
    sip_port = free_port("udp")
    database = tmp_path / "registrant.sqlite"
    make_table(database, [
        dict(registrar=scripted_registrar.uri, aor="sip:alice@example.test",
             binding_URI=f"sip:alice@127.0.0.1:{sip_port}", expiry=600),
        dict(registrar=scripted_registrar.uri, aor="sip:bob@example.test",
             binding_URI=f"sip:bob@127.0.0.1:{sip_port}", expiry=600, state=1),
    ])
    listener = NotifyListener(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", str(listener.path))
    monkeypatch.setenv("WATCHDOG_USEC", str(WATCHDOG_USEC))
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    svc = ServiceProcess(tmp_path, [
        "--db-url", f"sqlite:///{database}", "--listen", f"udp:127.0.0.1:{sip_port}",
        "--timer-interval", "2",
    ], mi_port=free_port("tcp"))
    try:
        svc.start(wait_loaded=False)
        listener.receive_until(lambda m: listener.index("READY=1") is not None, 20, "READY=1")
        ready = listener.index("READY=1")
        # READY comes with the loaded table's counts, never before the load.
        status = [line for line in listener.messages[ready][1] if line.startswith("STATUS=")]
        assert status and status[0].startswith("STATUS=2 records: "), listener.messages[ready]
        assert all("records" not in " ".join(lines) for _, lines in listener.messages[:ready])
        assert svc.table_loaded()
        assert _health(svc.mi_port) [0] == 200

        # STATUS follows the records: alice registers, bob stays disabled.
        wanted = "STATUS=2 records: 1 NOT_REGISTERED_STATE, 1 REGISTERED_STATE"
        listener.receive_until(lambda m: listener.index(wanted) is not None, 20, wanted)
        code, health = _health(svc.mi_port)
        assert code == 200 and health["status"] == "ready"
        assert {k: v for k, v in health["records"].items() if v} == {
            "NOT_REGISTERED_STATE": 1, "REGISTERED_STATE": 1,
        }

        # The watchdog, from the reactor at half of WATCHDOG_USEC.
        start = len(listener.messages)
        listener.receive_until(
            lambda m: sum(lines == ["WATCHDOG=1"] for _, lines in m[start:]) >= PINGS, 3 * PINGS * INTERVAL,
            f"{PINGS} watchdog pings",
        )
        pings = [at for at, lines in listener.messages[start:] if lines == ["WATCHDOG=1"]]
        gaps = sorted(b - a for a, b in zip(pings, pings[1:]))
        # The typical gap is the interval (never the whole of WATCHDOG_USEC): the
        # median of the gaps, which a ping or two held up by a busy machine (a
        # late gap, and a short one after it) do not move.
        assert abs(gaps[len(gaps) // 2] - INTERVAL) < INTERVAL / 5, gaps

        # SIGHUP: RELOADING=1, the table read again, READY=1.
        _add_row(database, dict(registrar=scripted_registrar.uri, aor="sip:carol@example.test",
                                binding_URI=f"sip:carol@127.0.0.1:{sip_port}", expiry=600, state=1))
        start = len(listener.messages)
        svc.process.send_signal(signal.SIGHUP)
        listener.receive_until(lambda m: listener.index("READY=1", start) is not None, 20, "READY after reload")
        reloading = listener.index("RELOADING=1", start)
        assert reloading is not None and reloading < listener.index("READY=1", start)
        assert any(line.startswith("MONOTONIC_USEC=") for line in listener.messages[reloading][1])
        assert "sip:carol@example.test" in svc.records()
        assert svc.process.poll() is None

        # SIGTERM: STOPPING=1 first, then a clean exit.
        start = len(listener.messages)
        svc.process.send_signal(signal.SIGTERM)
        listener.receive_until(lambda m: listener.index("STOPPING=1", start) is not None, 20, "STOPPING=1")
        assert svc.process.wait(30) in (0, -15)
    finally:
        svc.stop()
        listener.close()
    assert "Traceback" not in svc.log_text()


@pytest.mark.timeout(120)
def test_health_turns_503_when_the_database_file_goes(tmp_path, monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    database = tmp_path / "registrant.sqlite"
    make_table(database, [])
    svc = ServiceProcess(tmp_path, [
        "--db-url", f"sqlite:///{database}", "--listen", f"udp:127.0.0.1:{free_port('udp')}",
    ], mi_port=free_port("tcp"))
    try:
        svc.start()
        assert _health(svc.mi_port)[0] == 200
        database.unlink()
        # The probe asks every 5 s.
        wait_until(lambda: _health(svc.mi_port)[0] == 503, 20, "/health answering 503")
        code, health = _health(svc.mi_port)
        assert health["database_reachable"] is False and health["table_loaded"] is True
        assert "database_up 0.0" in svc.metrics_text()
    finally:
        svc.stop()
