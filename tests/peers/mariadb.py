"""A private MariaDB server for tests.

``mariadb-install-db`` makes a data directory in a temporary directory of its
own; ``mariadbd`` then serves it on 127.0.0.1 and a unix socket there, and is
stopped by its PID.  Under root it runs as root (``--user=root``), which it
otherwise refuses.  The tests connect as ``uac`` with a password, through TCP
or the socket; set-up and checks go through the socket as root.  Durability
is traded for speed: the data is thrown away after the run.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import tempfile
from typing import Any

import pymysql

from tests.peers import free_port
from tests.peers.process import DatabaseServer

__all__ = ["MariaDB", "MariaDBError", "unavailable_reason"]

USER = "uac"
PASSWORD = "s3cr3t-Pw"
_BINARIES = ("mariadbd", "mariadb-install-db")


class MariaDBError(RuntimeError):
    """The server could not be created, started or stopped."""


def _binary(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")


def unavailable_reason() -> str | None:
    """Why a server cannot be made here, or None."""
    missing = [name for name in _BINARIES if _binary(name) is None]
    if missing:
        return f"MariaDB server binaries ({', '.join(missing)}) not found (apt-get install mariadb-server)"
    return None


class MariaDB(DatabaseServer):
    """Stopped with SIGTERM (a clean shutdown), SIGKILL after ``stop_timeout``."""

    name = "mariadbd"
    error = MariaDBError

    def __init__(self, *, port: int | None = None) -> None:
        self.port = port if port is not None else free_port("tcp")
        self.base = pathlib.Path(tempfile.mkdtemp(prefix="uac-registrant-mariadb-"))
        self.data_dir = self.base / "data"
        self.socket = self.base / "mysqld.sock"
        self.log_path = self.base / "mariadb.log"
        self._initialised = False

    def url(self, dbname: str) -> str:
        return f"mysql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{dbname}"

    def socket_url(self, dbname: str) -> str:
        return f"mysql://{USER}:{PASSWORD}@localhost/{dbname}?unix_socket={self.socket}"

    def start(self) -> None:
        if self._process is not None:
            raise MariaDBError("already started")
        if not self._initialised:
            self._install()
        command = [
            _binary("mariadbd") or "mariadbd", "--no-defaults",
            f"--datadir={self.data_dir}", f"--socket={self.socket}",
            f"--port={self.port}", "--bind-address=127.0.0.1",
            f"--pid-file={self.base / 'mariadbd.pid'}", f"--log-error={self.log_path}",
            "--skip-name-resolve", "--skip-log-bin", "--max-connections=200",
            "--character-set-server=utf8mb4", "--collation-server=utf8mb4_general_ci",
            "--innodb-buffer-pool-size=32M", "--innodb-log-file-size=16M",
            "--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0",
            *self._user(),
        ]
        self._process = subprocess.Popen(
            command, cwd=self.base, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        self._started(self._ready)

    def connect(self, dbname: str | None = None, *, connect_timeout: int = 5) -> Any:
        """A PyMySQL connection as root through the socket, in autocommit mode."""
        return pymysql.connect(unix_socket=str(self.socket), user="root", database=dbname,
                               connect_timeout=connect_timeout, autocommit=True,
                               charset="utf8mb4")

    def execute(self, sql: str, params: Any = None, dbname: str | None = None) -> list[tuple[Any, ...]]:
        connection = self.connect(dbname)
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                return list(cursor.fetchall())
        finally:
            connection.close()

    def create_database(self, name: str) -> str:
        self.execute(f"CREATE DATABASE `{name}`")
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self.execute(f"DROP DATABASE IF EXISTS `{name}`")

    def kill_connections(self, dbname: str) -> int:
        """End every session of ``uac`` on ``dbname`` (as an idle kill would); how many."""
        ids = self.execute(
            "SELECT id FROM information_schema.processlist WHERE user = %s AND db = %s",
            (USER, dbname))
        for (session,) in ids:
            try:
                self.execute(f"KILL {int(session)}")
            except pymysql.err.OperationalError:  # gone meanwhile
                pass
        return len(ids)

    def _install(self) -> None:
        command = [_binary("mariadb-install-db") or "mariadb-install-db", "--no-defaults",
                   f"--datadir={self.data_dir}", "--auth-root-authentication-method=normal",
                   "--skip-test-db", "--skip-name-resolve", *self._user()]
        result = subprocess.run(command, cwd=self.base, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise MariaDBError(
                f"mariadb-install-db failed ({result.returncode}):\n{result.stdout}{result.stderr}")

    def _create_user(self) -> None:
        for host in ("127.0.0.1", "localhost"):
            self.execute(f"CREATE USER '{USER}'@'{host}' IDENTIFIED BY '{PASSWORD}'")
            self.execute(f"GRANT ALL ON *.* TO '{USER}'@'{host}'")

    def _user(self) -> list[str]:
        return ["--user=root"] if os.geteuid() == 0 else []

    def _ready(self) -> None:
        self._wait_accepting(lambda: self.connect(connect_timeout=1).close(), (pymysql.err.Error,))
        if not self._initialised:
            self._create_user()
            self._initialised = True
