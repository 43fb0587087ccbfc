"""What an operator sees when start-up cannot go on."""

import subprocess
import sys

from .service import ROOT


def twistd(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
         "-n", "--pidfile=", "uac-registrant", *args],
        cwd=cwd, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60,
    )


def test_bad_option_is_one_clear_line_and_a_non_zero_exit(tmp_path):
    result = twistd("--timer-interval", "1", "--hash-size", "3", cwd=tmp_path)
    assert result.returncode != 0
    assert "bad parameter timer_interval" in result.stdout + result.stderr


def test_unknown_option_fails(tmp_path):
    result = twistd("--no-such-thing", "1", cwd=tmp_path)
    assert result.returncode != 0


def test_a_table_of_another_version_stops_start_up(tmp_path):
    import sqlite3

    with sqlite3.connect(tmp_path / "old.sqlite") as db:
        db.executescript(
            "CREATE TABLE version (table_name CHAR(32), table_version INTEGER);"
            "INSERT INTO version VALUES ('registrant', 2);"
            "CREATE TABLE registrant (id INTEGER PRIMARY KEY, registrar TEXT, aor TEXT);"
        )
    result = twistd(
        "--db-url", f"sqlite:///{tmp_path / 'old.sqlite'}",
        "--listen", "udp:127.0.0.1:0" if False else "udp:127.0.0.1:5999",
        "--mi-listen", "tcp:0:interface=127.0.0.1",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "cannot load the registrant table" in result.stdout
