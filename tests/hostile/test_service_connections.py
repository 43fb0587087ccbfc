"""A flood of idle connections on the SIP TCP socket and on MI: the caps hold
the service's descriptors down, the idle timeout clears them, MI answers and
records go on registering throughout."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.service import wait_until
from tests.hostile.registrar import ScriptedRegistrar
from tests.hostile.service import Hostile

pytestmark = pytest.mark.timeout(120)

SIP_CAP, MI_CAP, IDLE = 40, 16, 3
SIP_FLOOD, MI_FLOOD = 1000, 300


@pytest.fixture
def registrar() -> Iterator[ScriptedRegistrar]:
    registrar = ScriptedRegistrar("tcp", {}).start()
    try:
        yield registrar
    finally:
        registrar.stop()


@pytest.fixture
def service(tmp_path: Path, registrar: ScriptedRegistrar) -> Iterator[Hostile]:
    rows = [{"registrar": registrar.uri, "aor": "sip:steady@127.0.0.1",
             "binding_URI": "sip:steady@127.0.0.1:5999", "expiry": 600}]
    hostile = Hostile(
        tmp_path, rows,
        "--tcp-max-connections", str(SIP_CAP), "--tcp-idle-timeout", str(IDLE),
        "--mi-max-connections", str(MI_CAP), "--mi-idle-timeout", str(IDLE),
    )
    try:
        yield hostile.start()
    finally:
        hostile.stop()


def descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def flood(port: int, count: int) -> list[socket.socket]:
    opened = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(2)
        try:
            sock.connect(("127.0.0.1", port))
        except OSError:
            sock.close()
            continue
        opened.append(sock)
    return opened


def closed_by_peer(sock: socket.socket) -> bool:
    sock.settimeout(0)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_idle_flood_is_capped_and_timed_out_while_mi_answers(
    service: Hostile, registrar: ScriptedRegistrar
) -> None:
    service.wait_state("sip:steady@127.0.0.1", "REGISTERED_STATE")
    before = descriptors(service.pid)
    sockets: list[socket.socket] = []
    try:
        sockets += flood(service.sip_port, SIP_FLOOD)
        sockets += flood(service.proc.mi_port, MI_FLOOD)
        assert len(sockets) > SIP_CAP + MI_CAP
        # MI still answers through the flood, and the descriptors stay capped.
        assert service.mi("which")["result"]
        assert descriptors(service.pid) <= before + SIP_CAP + MI_CAP + 8
        # Records keep refreshing: a forced REGISTER goes out and is answered.
        sent = len(registrar.arrivals("steady"))
        assert service.mi("reg_force_register", {"aor": "sip:steady@127.0.0.1",
                                                 "contact": "sip:steady@127.0.0.1:5999",
                                                 "registrar": registrar.uri})["result"] == "OK"
        wait_until(lambda: len(registrar.arrivals("steady")) > sent, 10, "the forced REGISTER")
        service.wait_state("sip:steady@127.0.0.1", "REGISTERED_STATE")
        # After the idle timeout every flooding connection has been closed.
        wait_until(lambda: all(closed_by_peer(s) for s in sockets), IDLE + 10,
                   "the idle connections closed by the service")
        assert descriptors(service.pid) <= before + 4
    finally:
        for sock in sockets:
            sock.close()
    log = service.log()
    assert "Too many open files" not in log
    assert "Traceback" not in log
