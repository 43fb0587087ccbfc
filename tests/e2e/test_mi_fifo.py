"""MI over the FIFO end to end: the real service (twistd, SQLite, Kamailio as the registrar)
steered by the real ``opensips-cli -o communication_type=fifo``, every command."""

from __future__ import annotations

import os
import stat
import subprocess

from tests.e2e.service import wait_until
import pytest

from tests.e2e.test_mi import USERS, Lab, cli_json, named, opensips_cli, registrar  # noqa: F401


class FifoLab(Lab):
    """The lab of test_mi, its service also serving MI on a FIFO, and opensips-cli using it."""

    @property
    def fifo(self):
        return self.workdir / "opensips_fifo"

    def start(self, rows, *extra: str, token=None):
        return super().start(rows, "--mi-fifo", str(self.fifo), "--mi-fifo-reply-dir", str(self.workdir), *extra)

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [opensips_cli(), "-o", "communication_type=fifo", "-o", f"fifo_file={self.fifo}",
             "-o", f"fifo_reply_dir={self.workdir}", "-x", "mi", *args],
            capture_output=True, text=True, timeout=60, cwd=self.workdir, stdin=subprocess.DEVNULL,
        )


@pytest.fixture
def lab(tmp_path, registrar):  # noqa: F811
    lab = FifoLab(tmp_path, registrar)
    try:
        yield lab
    finally:
        if lab.proc is not None:
            lab.proc.stop()


def test_opensips_cli_over_the_fifo_runs_every_command(lab):
    """Matched: OpenSIPS modules/mi_fifo — fifo_fnc.c ``mi_fifo_server`` reads
    ``':[filename]:'`` then the JSON-RPC request, runs it like every MI transport
    (``handle_mi_request``) and writes the reply into ``reply_dir`` + filename;
    mi_fifo.c ``mi_mod_init`` deletes a FIFO left at the path (``/* FIFO exist,
    delete it (safer) */``) and ``mi_destroy`` removes it at shutdown."""
    opensips_cli()
    os.mkfifo(lab.fifo)  # left over by an earlier run
    lab.start([lab.row("alice"), lab.row("bob")])
    assert stat.S_IMODE(os.stat(lab.fifo).st_mode) == 0o660
    lab.wait_states({"alice": "REGISTERED_STATE", "bob": "REGISTERED_STATE"})
    alice, bob, carol = lab.triple("alice"), lab.triple("bob"), lab.triple("carol")

    assert "reg_list" in cli_json(lab.cli("which"))
    records = {r["AOR"]: r for r in cli_json(lab.cli("reg_list"))["Records"]}
    assert {a: r["state"] for a, r in records.items()} == {
        alice["aor"]: "REGISTERED_STATE", bob["aor"]: "REGISTERED_STATE"}
    assert cli_json(lab.cli("uac_registrant:list", *alice.values()))["Registrant"]["AOR"] == alice["aor"]

    [bound] = lab.bindings("alice")
    assert cli_json(lab.cli("reg_disable", *named(alice))) == "OK"
    wait_until(lambda: lab.bindings("alice") == [], 10, "alice's binding to be removed")
    assert cli_json(lab.cli("reg_enable", *named(alice))) == "OK"
    [again] = wait_until(lambda: lab.bindings("alice"), 10, "alice's binding to come back")
    assert again.call_id != bound.call_id

    assert cli_json(lab.cli("reg_force_register", *alice.values())) == "OK"
    wait_until(lambda: lab.bindings("alice")[0].cseq > again.cseq, 10, "a forced refresh of alice")

    lab.sql("UPDATE registrant SET expiry = 40 WHERE aor = ?", bob["aor"])
    assert cli_json(lab.cli("reg_reload", *bob.values())) == "OK"
    assert cli_json(lab.cli("reg_reload")) == "OK"

    username, password = USERS["carol"]
    assert cli_json(lab.cli("reg_upsert", *named(carol), f"username={username}", f"password={password}",
                            "expiry=30")) == "OK"
    wait_until(lambda: lab.bindings("carol"), 10, "carol to be bound")
    assert cli_json(lab.cli("reg_delete", *named(carol))) == "OK"
    wait_until(lambda: lab.bindings("carol") == [], 10, "carol's binding to be removed")

    missing = lab.cli("reg_list", "sip:nobody@example.test", alice["contact"], alice["registrar"])
    assert missing.returncode == 255 and "404: No such registrant" in missing.stderr
    log = lab.proc.log_text()
    assert f"removing the stale FIFO {lab.fifo}" in log
    assert password not in log and username not in log

    lab.proc.terminate()
    assert not lab.fifo.exists()
