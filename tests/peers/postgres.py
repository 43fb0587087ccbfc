"""A private PostgreSQL cluster for tests.

PostgreSQL refuses to run as root, so under root ``initdb`` and ``postgres`` run
as the ``postgres`` user, in a temporary directory of their own (pytest's
temporary directories are private to root). Trust authentication, 127.0.0.1
only, fsync off: the data is thrown away after the run.
"""

from __future__ import annotations

import os
import pathlib
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
from typing import Any

import psycopg2
from psycopg2 import sql

from tests.peers import free_port
from tests.peers.process import DatabaseServer

__all__ = ["Postgres", "PostgresError", "bin_dir", "unavailable_reason"]

SERVICE_USER = "postgres"


class PostgresError(RuntimeError):
    """The cluster could not be created, started or stopped."""


def bin_dir() -> pathlib.Path | None:
    """The newest ``/usr/lib/postgresql/<ver>/bin``, else wherever ``initdb`` is on PATH."""
    versions = sorted(
        pathlib.Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda path: [int(part) for part in re.findall(r"\d+", path.parent.name)],
    )
    for directory in reversed(versions):
        if (directory / "initdb").exists() and (directory / "postgres").exists():
            return directory
    initdb = shutil.which("initdb")
    return pathlib.Path(initdb).resolve().parent if initdb else None


def _as_root() -> bool:
    return os.geteuid() == 0


def unavailable_reason() -> str | None:
    """Why a cluster cannot be made here, or None."""
    if bin_dir() is None:
        return "PostgreSQL server binaries (initdb, postgres) not found (apt-get install postgresql)"
    if _as_root():
        try:
            pwd.getpwnam(SERVICE_USER)
        except KeyError:
            return "running as root but there is no '{}' user to run PostgreSQL as".format(SERVICE_USER)
    return None


class Postgres(DatabaseServer):
    name = "postgres"
    error = PostgresError
    # Fast shutdown: disconnect the clients, checkpoint.
    stop_signal = signal.SIGINT

    def __init__(self, *, port: int | None = None) -> None:
        self.port = port if port is not None else free_port("tcp")
        self.base = pathlib.Path(tempfile.mkdtemp(prefix="uac-registrant-pg-"))
        self.data_dir = self.base / "data"
        self.log_path = self.base / "postgres.log"
        self._initialised = False
        if _as_root():
            shutil.chown(self.base, SERVICE_USER, SERVICE_USER)

    def dsn(self, dbname: str = "postgres") -> str:
        return "postgres://postgres@127.0.0.1:{}/{}".format(self.port, dbname)

    def start(self) -> None:
        if self._process is not None:
            raise PostgresError("already started")
        directory = bin_dir()
        if directory is None:
            raise PostgresError("PostgreSQL binaries not found")
        if not self._initialised:
            self._run([str(directory / "initdb"), "-D", str(self.data_dir), "-U", "postgres", "-A", "trust",
                       "-E", "UTF8", "--locale=C", "--no-sync"])
            self._initialised = True
        command = [
            str(directory / "postgres"), "-D", str(self.data_dir),
            "-c", "listen_addresses=127.0.0.1", "-c", "port={}".format(self.port),
            "-c", "unix_socket_directories={}".format(self.base),
            "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
            "-c", "max_connections=200",
        ]
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                command, cwd=self.base, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True, **self._user())
        self._started(lambda: self._wait_accepting(
            lambda: self.connect(connect_timeout=1).close(), (psycopg2.OperationalError,)))

    def connect(self, dbname: str = "postgres", *, connect_timeout: int = 5) -> Any:
        """A psycopg2 connection in autocommit mode."""
        connection = psycopg2.connect(self.dsn(dbname), connect_timeout=connect_timeout)
        connection.autocommit = True
        return connection

    def create_database(self, name: str) -> str:
        self._execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.dsn(name)

    def drop_database(self, name: str) -> None:
        # FORCE (PostgreSQL 13+): a test that leaked a connection must not block the drop.
        self._execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def kill_backends(self, dbname: str) -> int:
        """Terminate every backend connected to ``dbname``; returns how many."""
        connection = self.connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = %s AND pid <> pg_backend_pid()", (dbname,))
                return int(cursor.fetchone()[0])
        finally:
            connection.close()

    def _execute(self, statement: sql.Composable) -> None:
        connection = self.connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute(statement)
        finally:
            connection.close()

    def _user(self) -> dict[str, Any]:
        if not _as_root():
            return {}
        return {"user": SERVICE_USER, "group": SERVICE_USER, "extra_groups": []}

    def _run(self, command: list[str]) -> None:
        result = subprocess.run(command, cwd=self.base, capture_output=True, text=True, timeout=120, **self._user())
        if result.returncode != 0:
            raise PostgresError("{} failed ({}):\n{}{}".format(command[0], result.returncode, result.stdout, result.stderr))
