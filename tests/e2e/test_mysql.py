"""The real opensips-cli against the real service on a MariaDB table, Kamailio as the registrar."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.peers import free_port
from tests.peers.mariadb import PASSWORD

from .service import ServiceProcess, make_mysql_table, mysql_query, wait_until
from .test_mi import USERS, Lab, cli_json, named, opensips_cli


class MySQLLab(Lab):
    """The MI lab on OpenSIPS's MySQL table instead of an SQLite file."""

    def __init__(self, workdir: Path, registrar, url: str) -> None:
        super().__init__(workdir, registrar)
        self.url = url

    def args(self, *extra: str) -> list[str]:
        args = super().args(*extra)
        args[args.index("--db-url") + 1] = self.url
        return args

    def start(self, rows, *extra: str) -> ServiceProcess:
        make_mysql_table(self.url, rows)
        self.proc = ServiceProcess(self.workdir, self.args(*extra), mi_port=free_port("tcp"))
        return self.proc.start()

    def db_rows(self) -> dict[str, dict]:
        rows = mysql_query(self.url, "SELECT aor, state FROM registrant")
        return {aor: {"aor": aor, "state": state} for aor, state in rows}

    def sql(self, statement: str, *params: object) -> None:
        mysql_query(self.url, statement.replace("?", "%s"), params)


@pytest.fixture
def registrar(kamailio):
    return kamailio(users=dict(USERS.values()), realm="example.test", min_expires=10, max_expires=3600)


@pytest.fixture
def lab(tmp_path, registrar, mysql_url):
    lab = MySQLLab(tmp_path, registrar, mysql_url)
    try:
        yield lab
    finally:
        if lab.proc is not None:
            lab.proc.stop()


@pytest.mark.timeout(150)
def test_opensips_cli_drives_a_mysql_backed_service(lab, mariadb):
    opensips_cli()
    lab.start([
        lab.row("alice"),
        lab.row("bob", state=1),
        # The schema allows it, our rules do not: a registrar with a user part (id 3).
        lab.row("erin", registrar="sip:erin@127.0.0.1"),
    ])
    lab.wait_states({"alice": "REGISTERED_STATE", "bob": "NOT_REGISTERED_STATE"})
    assert "skipped row 3:" in lab.proc.log_text()

    listed = cli_json(lab.cli("reg_list"))
    assert {r["AOR"] for r in listed["Records"]} == {lab.aor("alice"), lab.aor("bob")}

    alice, bob = lab.triple("alice"), lab.triple("bob")
    assert cli_json(lab.cli("reg_disable", *named(alice))) == "OK"
    assert lab.db_rows()[alice["aor"]]["state"] == 1
    wait_until(lambda: lab.bindings("alice") == [], 10, "alice's binding to be removed")
    assert cli_json(lab.cli("reg_enable", *named(bob))) == "OK"
    assert lab.db_rows()[bob["aor"]]["state"] == 0
    wait_until(lambda: lab.bindings("bob"), 10, "bob's binding")

    # A row added behind the service's back arrives with reg_reload.
    lab.sql("INSERT INTO registrant (registrar, aor, username, password, binding_URI, expiry)"
            " VALUES (?, ?, ?, ?, ?, 60)", *(lab.row("carol")[k] for k in
                                             ("registrar", "aor", "username", "password", "binding_URI")))
    [bob_before] = lab.bindings("bob")
    assert cli_json(lab.cli("reg_reload")) == "OK"
    wait_until(lambda: lab.bindings("carol"), 10, "carol's binding")
    # A diff: the unchanged record goes on in the same dialog.
    [bob_after] = lab.bindings("bob")
    assert bob_after.call_id == bob_before.call_id

    # The database away: a clear error, nothing changed; back: the same command works.
    mariadb.stop()
    try:
        failed = lab.cli("reg_disable", *named(bob))
        assert failed.returncode != 0
        assert "unavailable" in failed.stderr.lower(), failed.stderr
        assert lab.proc.records()[bob["aor"]]["enabled"] == "yes"
        assert lab.bindings("bob")
    finally:
        mariadb.start()
    wait_until(lambda: lab.cli("reg_disable", *named(bob)).returncode == 0, 20, "reg_disable once back")
    assert lab.db_rows()[bob["aor"]]["state"] == 1
    log = lab.proc.log_text()
    assert all(secret not in log for _, secret in USERS.values())
    assert PASSWORD not in log  # the database's, from db_url
