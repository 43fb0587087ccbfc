"""Run the real service (``twistd -n uac-registrant``) as a child process, and talk MI to it."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Callable, Sequence

from tests.store.conftest import MySQLBackend, PostgresBackend, SQLiteBackend

ROOT = Path(__file__).resolve().parents[2]

_VERSION_ROW = "INSERT INTO version (table_name, table_version) VALUES ('registrant', 3)"
# The OpenSIPS 3.x scripts, as an existing deployment has the tables.
OPENSIPS_SQLITE = ";\n".join(
    (SQLiteBackend.OPENSIPS_VERSION_TABLE, _VERSION_ROW, SQLiteBackend.OPENSIPS_REGISTRANT_V3)
) + ";"
# Unquoted names: PostgreSQL folds binding_URI to binding_uri.
OPENSIPS_POSTGRES = ";\n".join(
    (PostgresBackend.OPENSIPS_VERSION_TABLE, _VERSION_ROW, PostgresBackend.OPENSIPS_REGISTRANT_V3)
) + ";"

COLUMNS = ("registrar", "proxy", "aor", "third_party_registrant", "username", "password",
           "binding_URI", "binding_params", "expiry", "forced_socket", "cluster_shtag", "state")


def _insert(cursor, rows: Sequence[dict], marker: str) -> None:
    """``rows`` into the registrant table; ``marker`` is the driver's parameter marker."""
    for row in rows:
        cursor.execute(
            f"INSERT INTO registrant ({', '.join(COLUMNS)}) VALUES ({', '.join([marker] * len(COLUMNS))})",
            [row.get(c, 0 if c == "state" else None) for c in COLUMNS],
        )


def make_table(path: Path, rows: Sequence[dict]) -> None:
    with sqlite3.connect(path) as db:
        db.executescript(OPENSIPS_SQLITE)
        _insert(db, rows, "?")


def make_pg_table(dsn: str, rows: Sequence[dict]) -> None:
    import psycopg2

    with psycopg2.connect(dsn) as db, db.cursor() as cursor:
        cursor.execute(OPENSIPS_POSTGRES)
        _insert(cursor, rows, "%s")


def _mysql_connect(url: str):
    import pymysql

    from uacregistrant.store.url import mysql_params

    p = mysql_params(url)
    return pymysql.connect(host=p.host, port=p.port, user=p.user, password=p.password,
                           database=p.database, autocommit=True)


def mysql_query(url: str, sql: str, params: Sequence[object] = ()) -> list[tuple]:
    db = _mysql_connect(url)
    try:
        with db.cursor() as cursor:
            cursor.execute(sql, tuple(params) or None)
            return list(cursor.fetchall())
    finally:
        db.close()


def make_mysql_table(url: str, rows: Sequence[dict]) -> None:
    """OpenSIPS's MySQL scripts, then ``rows``, in the database of a ``mysql://`` URL."""
    db = _mysql_connect(url)
    try:
        with db.cursor() as cursor:
            cursor.execute(MySQLBackend.OPENSIPS_VERSION_TABLE)
            cursor.execute(_VERSION_ROW)
            cursor.execute(MySQLBackend.OPENSIPS_REGISTRANT_V3)
            _insert(cursor, rows, "%s")
    finally:
        db.close()


def make_table_at(db_url: str, rows: Sequence[dict]) -> None:
    """OpenSIPS's table with ``rows`` in the database of ``db_url`` (sqlite://, postgres:// or mysql://)."""
    from uacregistrant.store.url import parse_db_url

    url = parse_db_url(db_url)
    if url.kind == "mysql":
        make_mysql_table(db_url, rows)
    elif url.kind == "postgres":
        make_pg_table(db_url, rows)
    else:
        make_table(Path(url.path), rows)


def saved_runtime(db_url: str) -> dict[str, tuple[str, int, int]]:
    """The runtime table as it is in the database of ``db_url``: aor -> (Call-ID, CSeq, state)."""
    from uacregistrant.store.interface import RUNTIME_TABLE
    from uacregistrant.store.url import parse_db_url

    query = f"SELECT aor, call_id, cseq, state FROM {RUNTIME_TABLE}"
    url = parse_db_url(db_url)
    if url.kind == "mysql":
        rows = mysql_query(db_url, query)
    elif url.kind == "postgres":
        import psycopg2

        with psycopg2.connect(db_url) as db, db.cursor() as cursor:
            cursor.execute(query)
            rows = cursor.fetchall()
        db.close()
    else:
        with sqlite3.connect(url.path) as db:
            rows = db.execute(query).fetchall()
        db.close()
    return {aor: (call_id, cseq, state) for aor, call_id, cseq, state in rows}


def wait_until(check: Callable[[], object], timeout: float, what: str, step: float = 0.2,
               detail: Callable[[], str] | None = None) -> object:
    """Poll an outside process until ``check()`` is truthy; fail naming ``what``
    (and adding ``detail()``, e.g. the tail of a log)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}" + (f":\n{detail()}" if detail else ""))
        time.sleep(step)


class ServiceProcess:
    """``twistd -n uac-registrant ARGS`` from this tree; stop() ends it by its PID.

    ``runner`` replaces ``twistd -n --pidfile=`` (its own options included),
    e.g. to choose the log observer.
    """

    def __init__(
        self, workdir: Path, args: Sequence[str], mi_port: int, runner: Sequence[str] | None = None
    ) -> None:
        self.workdir = workdir
        self.args = list(args)
        self.mi_port = mi_port
        self.runner = list(runner) if runner is not None else [
            sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=",
        ]
        self.log_path = workdir / "service.log"
        self.process: subprocess.Popen | None = None

    def start(self, wait_loaded: bool = True) -> "ServiceProcess":
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        command = [
            *self.runner, "uac-registrant",
            "--mi-listen", f"tcp:{self.mi_port}:interface=127.0.0.1",
            *self.args,
        ]
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            command, cwd=self.workdir, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        wait_until(self._mi_up, 20, "the MI port of the service")
        if wait_loaded:
            wait_until(self.table_loaded, 20, "the registrant table loaded")
        return self

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.mi_port}/metrics", timeout=10) as reply:
            return reply.read().decode()

    def table_loaded(self) -> bool:
        return "\nuac_registrant_table_loaded 1.0" in self.metrics_text()

    def _mi_up(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"service exited early:\n{self.log_text()}")
        try:
            self.mi("which")
        except OSError:
            return False
        return True

    def mi(self, method: str, params: object = None) -> dict:
        body = {"jsonrpc": "2.0", "id": "1", "method": method, "params": params or {}}
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.mi_port}/mi", data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as reply:
            return json.loads(reply.read())

    def records(self) -> dict[str, dict]:
        return {r["AOR"]: r for r in self.mi("reg_list")["result"]["Records"]}

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout: float = 15) -> int:
        """SIGTERM, as an operator would; returns the exit status."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self.stop()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        if getattr(self, "_log", None) is not None:
            self._log.close()
