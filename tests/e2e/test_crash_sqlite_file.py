"""The real service (twistd) on SQLite when the file changes under it: duplicate rows
from an old schema, the file deleted, then a replacement put in its place."""

from __future__ import annotations

import re
import shutil
import sqlite3

import pytest

from tests.peers import free_port

from .service import COLUMNS, OPENSIPS_SQLITE, ServiceProcess, wait_until

# The OpenSIPS script without the UNIQUE (aor, binding_URI, registrar) index.
WITHOUT_UNIQUE = re.sub(r",\s*CONSTRAINT registrant_registrant_idx\s+UNIQUE \([^)]*\)", "", OPENSIPS_SQLITE)


def write_table(path, rows) -> list[int]:
    with sqlite3.connect(path) as db:
        db.executescript(WITHOUT_UNIQUE)
        ids = []
        for row in rows:
            values = [row.get(c, 0 if c == "state" else None) for c in COLUMNS]
            cursor = db.execute(
                f"INSERT INTO registrant ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})", values)
            ids.append(cursor.lastrowid)
    db.close()
    return ids


def aors_in(path) -> list[str]:
    with sqlite3.connect(path) as db:
        found = [row[0] for row in db.execute("SELECT aor FROM registrant ORDER BY id")]
    db.close()
    return found


@pytest.mark.timeout(120)
def test_duplicates_then_a_deleted_then_a_replaced_file(tmp_path, scripted_registrar):
    sip_port = free_port("udp")
    path = tmp_path / "registrant.sqlite"

    def row(user, expiry=600):
        return dict(registrar=scripted_registrar.uri, aor=f"sip:{user}@example.test",
                    binding_URI=f"sip:{user}@127.0.0.1:{sip_port}", expiry=expiry)

    first, again, _ = write_table(path, [row("alice", 600), row("alice", 900), row("bob")])
    svc = ServiceProcess(
        tmp_path,
        ["--db-url", f"sqlite:///{path}", "--listen", f"udp:127.0.0.1:{sip_port}", "--timer-interval", "2"],
        mi_port=free_port("tcp"),
    ).start()
    try:
        records = svc.records()
        assert sorted(records) == ["sip:alice@example.test", "sip:bob@example.test"]
        assert records["sip:alice@example.test"]["expires"] == 600
        assert f"skipped row {again}: duplicate of row {first}" in svc.log_text()
        wait_until(lambda: all(r["state"] == "REGISTERED_STATE" for r in svc.records().values()),
                   20, "both records registered")

        # Deleted under the running service: writes fail, nothing says OK.
        backup = tmp_path / "backup.sqlite"
        with sqlite3.connect(path) as db, sqlite3.connect(backup) as copy:
            db.backup(copy)
        for suffix in ("", "-wal", "-shm"):
            (tmp_path / f"registrant.sqlite{suffix}").unlink(missing_ok=True)
        carol = {"aor": "sip:carol@example.test", "contact": f"sip:carol@127.0.0.1:{sip_port}",
                 "registrar": scripted_registrar.uri, "expiry": "600"}
        reply = svc.mi("reg_upsert", carol)
        assert "error" in reply, reply
        bob = {"aor": "sip:bob@example.test", "contact": f"sip:bob@127.0.0.1:{sip_port}",
               "registrar": scripted_registrar.uri}
        reply = svc.mi("reg_disable", bob)
        assert "error" in reply, reply
        assert svc.records()["sip:bob@example.test"]["enabled"] == "yes"
        assert not path.exists()
        # Registrations go on from memory meanwhile.
        assert svc.records()["sip:bob@example.test"]["state"] == "REGISTERED_STATE"

        # The backup put back: reopened, and the next write lands in it.
        shutil.copy(backup, path)
        reply = svc.mi("reg_upsert", carol)
        assert reply.get("result") == "OK", reply
        assert aors_in(path)[-1] == "sip:carol@example.test"
        assert svc.mi("reg_reload").get("result") == "OK"
        assert "sip:carol@example.test" in svc.records()
        text = svc.log_text()
        assert "the file is gone (deleted?)" in text
        assert "the file was replaced while running; reopened it" in text
    finally:
        svc.stop()
