"""The MariaDB peer itself: its own server, data across restarts, sessions killed, stopped by PID."""

from __future__ import annotations

import os
import signal

import pymysql
import pytest

from tests.peers.mariadb import PASSWORD, USER, MariaDB

pytest_plugins = ["tests.peers.fixtures"]


def connect(server: MariaDB, dbname: str, **where) -> pymysql.connections.Connection:
    where = where or {"host": "127.0.0.1", "port": server.port}
    return pymysql.connect(user=USER, password=PASSWORD, database=dbname, autocommit=True, **where)


def test_data_survives_a_restart_and_sessions_can_be_killed(mariadb: MariaDB, mysql_url: str) -> None:
    dbname = mysql_url.rsplit("/", 1)[1]
    assert mysql_url == f"mysql://{USER}:{PASSWORD}@127.0.0.1:{mariadb.port}/{dbname}"
    first = connect(mariadb, dbname)
    with first.cursor() as cursor:
        cursor.execute("CREATE TABLE kept (n INT)")
        cursor.execute("INSERT INTO kept VALUES (7)")
    old_pid = mariadb.pid
    mariadb.restart()
    assert mariadb.pid != old_pid
    with pytest.raises(pymysql.err.OperationalError):
        with first.cursor() as cursor:
            cursor.execute("SELECT 1")
    first.close()

    # Through the unix socket this time.
    second = connect(mariadb, dbname, unix_socket=str(mariadb.socket))
    try:
        with second.cursor() as cursor:
            cursor.execute("SELECT n FROM kept")
            assert cursor.fetchall() == ((7,),)
        assert mariadb.kill_connections(dbname) == 1
        with pytest.raises(pymysql.err.OperationalError):
            with second.cursor() as cursor:
                cursor.execute("SELECT 1")
    finally:
        second.close()
    assert mariadb.kill_connections(dbname) == 0


@pytest.mark.timeout(90)
def test_a_server_of_its_own_stops_by_pid_even_when_hung() -> None:
    server = MariaDB()
    try:
        server.start()
        pid = server.pid
        assert pid is not None
        assert server.execute("SELECT @@port") == [(server.port,)]
        # A server that answers no signal but SIGKILL is still stopped, once
        # stop_timeout is over (its length does not matter: a short one here).
        server.stop_timeout = 1.0
        os.kill(pid, signal.SIGSTOP)
        server.stop()
        assert not server.running()
    finally:
        server.destroy()
    assert not os.path.exists(f"/proc/{pid}")
    assert not server.base.exists()
