"""The service as an operator runs it (twistd, SQLite) against a real Kamailio registrar."""

from __future__ import annotations

import time

import pytest

from tests.peers import free_port

from .service import ServiceProcess, make_table_at, wait_until

TI = 2  # timer_interval: with 2 buckets, one visit a second


@pytest.fixture
def registrar(kamailio):
    return kamailio(
        users={"alice": "alice-pw", "carol": "carol-pw", "dave": "dave-pw"},
        min_expires=10,
        max_expires=3600,
    )


class Runner:
    def __init__(self, workdir, db_url):
        self.workdir = workdir
        self.db_url = db_url
        self.sip_port = free_port("udp")
        self.proc: ServiceProcess | None = None

    def binding(self, user: str) -> str:
        return f"sip:{user}@127.0.0.1:{self.sip_port}"

    def start(self, rows, *args) -> ServiceProcess:
        make_table_at(self.db_url, rows)
        self.proc = ServiceProcess(
            self.workdir,
            [
                "--db-url", self.db_url,
                "--listen", f"udp:127.0.0.1:{self.sip_port}",
                "--timer-interval", str(TI),
                "--failure-retry-interval", "120",
                *args,
            ],
            mi_port=free_port("tcp"),
        )
        return self.proc.start()


@pytest.fixture
def runner(tmp_path, db_url):
    """The same end-to-end run on an OpenSIPS table in SQLite, PostgreSQL and MariaDB."""
    runner = Runner(tmp_path, db_url)
    yield runner
    if runner.proc is not None:
        runner.proc.stop()


def row(peer, runner, user, password, **extra):
    values = dict(
        registrar=peer.uri,
        aor=f"sip:{user}@example.test",
        username=user,
        password=password,
        binding_URI=runner.binding(user),
        expiry=60,
    )
    values.update(extra)
    return values


def states(svc) -> dict[str, str]:
    return {aor.split("@")[0][4:]: r["state"] for aor, r in svc.records().items()}


def test_records_register_stay_registered_and_are_removed_on_sigterm(registrar, runner):
    rows = [
        row(registrar, runner, "alice", "alice-pw", expiry=10),
        row(registrar, runner, "carol", "not-carols"),
        row(registrar, runner, "dave", "dave-pw", expiry=5),  # below min_expires: 423
        row(registrar, runner, "erin", "x", registrar="sip:erin@127.0.0.1"),  # id 4: user part
        row(registrar, runner, "frank", "x", cluster_shtag="no-slash"),  # id 5: bad shtag
        row(registrar, runner, "gina", "x", binding_URI="not a uri"),  # id 6: bad binding
        row(registrar, runner, "hal", "x", state=1),  # disabled: never registered
    ]
    svc = runner.start(rows)
    wanted = {
        "alice": "REGISTERED_STATE",
        "carol": "WRONG_CREDENTIALS_STATE",
        "dave": "REGISTERED_STATE",
        "hal": "NOT_REGISTERED_STATE",
    }
    wait_until(lambda: states(svc) == wanted, 15, f"states {wanted}")

    log = svc.log_text()
    for row_id in (4, 5, 6):
        assert f"skipped row {row_id}:" in log
    assert "alice-pw" not in log and "not-carols" not in log

    [alice] = registrar.bindings("sip:alice@example.test")
    assert alice.contact == runner.binding("alice")
    [dave] = registrar.bindings("sip:dave@example.test")
    assert dave.expires <= 10
    assert svc.records()["sip:dave@example.test"]["expires"] == 10
    assert registrar.bindings("sip:carol@example.test") == []
    assert registrar.bindings("sip:hal@example.test") == []

    # Refresh cycles of a 10 s binding (refreshed 2·TI before it runs out): watched
    # until it was refreshed twice, it never lapses, and keeps its Call-ID.
    carol_failures = svc.records()["sip:carol@example.test"]["failures"]
    deadline = time.monotonic() + 25
    cseqs = {alice.cseq}
    while len(cseqs) < 3:
        assert time.monotonic() < deadline, f"fewer refreshes than expected: CSeqs {sorted(cseqs)}"
        bindings = registrar.bindings("sip:alice@example.test")
        assert len(bindings) == 1, f"alice's binding lapsed or doubled: {bindings}"
        assert bindings[0].call_id == alice.call_id
        cseqs.add(bindings[0].cseq)
        time.sleep(0.5)
    # A wrong password is not hammered: no retry before failure_retry_interval.
    assert svc.records()["sip:carol@example.test"]["failures"] == carol_failures

    # twistd re-raises SIGTERM after its clean shutdown, as Twisted services do.
    assert svc.terminate() in (0, -15)
    assert "Server Shut Down." in svc.log_text()
    assert registrar.bindings("sip:alice@example.test") == []
    assert registrar.bindings("sip:dave@example.test") == []
