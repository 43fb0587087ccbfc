"""SIGTERM to the real service (twistd): bounded by shutdown_timeout whatever
the registrar does, with one summary line and no tracebacks in the log."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest

from tests.peers import free_port

from .service import ServiceProcess, make_table_at, wait_until
from .udp_peers import HALF, SILENT, expires_of

SHUTDOWN_TIMEOUT = 3
# What the service may take beyond shutdown_timeout (a second), plus what a
# loaded test machine adds to deliver the signal and reap the process.
SLACK = 1 + 1.5
SUMMARY = re.compile(r"shutdown: (\d+) records unregistered, (\d+) gave up")
TRACEBACK_MARKS = ("Traceback", "Unhandled error in Deferred", "CancelledError", "AlreadyCalledError")


def start_service(tmp_path, registrar_uri: str, count: int, pg_dsn: str | None = None) -> ServiceProcess:
    sip_port = free_port("udp")
    rows = [
        dict(registrar=registrar_uri, aor=f"sip:u{n}@example.test",
             binding_URI=f"sip:u{n}@127.0.0.1:{sip_port}", expiry=600)
        for n in range(count)
    ]
    db_url = pg_dsn or f"sqlite:///{tmp_path / 'registrant.sqlite'}"
    make_table_at(db_url, rows)
    return ServiceProcess(
        tmp_path,
        [
            "--db-url", db_url,
            "--listen", f"udp:127.0.0.1:{sip_port}",
            "--timer-interval", "2",
            "--shutdown-timeout", str(SHUTDOWN_TIMEOUT),
        ],
        mi_port=free_port("tcp"),
    ).start()


def shut_down(svc: ServiceProcess, count: int, meanwhile: Callable[[], object] = lambda: None) -> tuple[int, int]:
    """Once ``count`` records are registered: ``meanwhile()``, then SIGTERM within the
    time bound; returns the summary's (unregistered, gave up)."""
    try:
        wait_until(lambda: registered(svc) == count, 30, f"{count} records registered")
        meanwhile()
        started = time.monotonic()
        status = svc.terminate(timeout=30)
        elapsed = time.monotonic() - started
    finally:
        svc.stop()
    # twistd ends itself with the signal that stopped it, once shut down.
    assert status in (0, -15), svc.log_text()[-3000:]
    assert elapsed < SHUTDOWN_TIMEOUT + SLACK, elapsed
    return summary(svc)


def registered(svc: ServiceProcess) -> int:
    return sum(1 for r in svc.records().values() if r["state"] == "REGISTERED_STATE")


def summary(svc: ServiceProcess) -> tuple[int, int]:
    """The log from SIGTERM on: no traceback, one summary line; returns its counts."""
    text = svc.log_text().partition("Received SIGTERM")[2]
    assert text, svc.log_text()[-3000:]
    for mark in TRACEBACK_MARKS:
        assert mark not in text, text[-3000:]
    summaries = SUMMARY.findall(text)
    assert len(summaries) == 1, text[-3000:]
    unregistered, gave_up = summaries[0]
    return int(unregistered), int(gave_up)


def is_unregister(request) -> bool:
    return expires_of(request) == 0


@pytest.mark.timeout(120)
def test_registrar_down_200_records(tmp_path, scripted_registrar):
    svc = start_service(tmp_path, scripted_registrar.uri, 200)
    assert shut_down(svc, 200, lambda: setattr(scripted_registrar, "mode", SILENT)) == (0, 200)
    # Every binding got its unREGISTER (retransmitted, never answered).
    assert len({r.header("Call-ID") for r in scripted_registrar.received if is_unregister(r)}) == 200


@pytest.mark.timeout(120)
def test_registrar_half_answering(tmp_path, scripted_registrar):
    svc = start_service(tmp_path, scripted_registrar.uri, 100)
    # Once registered, only every other dialog is answered: half the unREGISTERs.
    assert shut_down(svc, 100, lambda: setattr(scripted_registrar, "mode", HALF)) == (50, 50)
    assert scripted_registrar.count(is_unregister, answered=True) == 50


@pytest.mark.timeout(120)
def test_registrar_up_kamailio(tmp_path, kamailio):
    registrar = kamailio(challenge=False, min_expires=10)
    svc = start_service(tmp_path, registrar.uri, 100)

    def all_bound() -> None:
        assert len(registrar.all_bindings()) == 100

    assert shut_down(svc, 100, all_bound) == (100, 0)
    assert registrar.all_bindings() == {}


@pytest.mark.timeout(120)
def test_database_down_the_runtime_state_is_given_up_in_time(tmp_path, scripted_registrar, postgres, pg_dsn):
    svc = start_service(tmp_path, scripted_registrar.uri, 20, pg_dsn)
    try:
        assert shut_down(svc, 20, postgres.stop) == (20, 0)
    finally:
        postgres.start()
