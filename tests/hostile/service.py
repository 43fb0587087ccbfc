"""The real service for the hostile-input suite: ``twistd -n uac-registrant``
with a bearer token, a SQLite table and scripted registrars."""

from __future__ import annotations

import json
import sqlite3
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.e2e.service import COLUMNS, ServiceProcess, make_table, wait_until
from tests.peers import free_port

TOKEN = "hostile-suite-token"
IN_FLIGHT = {"REGISTERING_STATE", "AUTHENTICATING_STATE", "UNREGISTERING_STATE",
             "AUTHENTICATING_UNREGISTER_STATE"}


class Hostile:
    """A running service plus what a test needs to poke it."""

    def __init__(self, workdir: Path, rows: list[dict[str, Any]], *extra: str) -> None:
        self.workdir = workdir
        self.db = workdir / "reg.sqlite"
        make_table(self.db, rows)
        self.sip_port = free_port("udp")
        self.proc = ServiceProcess(
            workdir,
            [
                "--db-url", f"sqlite:///{self.db}",
                "--listen", f"udp:127.0.0.1:{self.sip_port}",
                "--listen", f"tcp:127.0.0.1:{self.sip_port}",
                "--timer-interval", "2",
                "--failure-retry-interval", "300",
                "--mi-token", TOKEN,
                *extra,
            ],
            mi_port=free_port("tcp"),
        )
        # The helper's own MI calls carry no token; this suite's do.
        self.proc.mi = self.mi  # type: ignore[method-assign]

    def start(self) -> Hostile:
        self.proc.start()
        return self

    @property
    def pid(self) -> int:
        assert self.proc.process is not None
        return self.proc.process.pid

    def http(self, path: str, body: bytes | None = None, *, token: bool = True) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {TOKEN}"
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.proc.mi_port}{path}", data=body, headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                return reply.status, reply.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def mi(self, method: str, params: object = None) -> dict:
        body = {"jsonrpc": "2.0", "id": "1", "method": method, "params": params or {}}
        status, reply = self.http("/mi", json.dumps(body).encode())
        assert status == 200, reply
        return json.loads(reply)

    def records(self) -> dict[str, dict]:
        return self.proc.records()

    def state(self, aor: str) -> str | None:
        record = self.records().get(aor)
        return None if record is None else record["state"]

    def wait_state(self, aor: str, wanted: str, timeout: float = 15) -> None:
        wait_until(lambda: self.state(aor) == wanted, timeout, f"{aor} in {wanted}")

    def insert(self, row: dict[str, Any], raw_sql: dict[str, str] | None = None) -> None:
        """Insert a row as another writer would; ``raw_sql`` gives SQL expressions."""
        raw_sql = raw_sql or {}
        names = [c for c in COLUMNS if c in row or c in raw_sql]
        values = ", ".join(raw_sql.get(c, "?") for c in names)
        with sqlite3.connect(self.db) as db:
            db.execute(
                f"INSERT INTO registrant ({', '.join(names)}) VALUES ({values})",
                [row[c] for c in names if c not in raw_sql],
            )

    def runtime_aors(self) -> set[str]:
        with sqlite3.connect(self.db) as db:
            return {r[0] for r in db.execute("SELECT aor FROM uac_registrant_runtime")}

    def log(self) -> str:
        return self.proc.log_text()

    def stop(self) -> None:
        self.proc.stop()
