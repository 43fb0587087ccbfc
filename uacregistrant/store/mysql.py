"""The registrant store on MySQL or MariaDB, through PyMySQL in adbapi's worker thread.

PyMySQL is pure Python (nothing to compile) and blocking, so it runs in a
pool of one thread and one connection: writes reach the server in the order
they were asked for.  Every operation starts with a ping that reconnects a
connection the server has dropped (a restart, ``wait_timeout``, ``KILL``),
so an idle kill costs one round trip and never a failed call; while the
server is away each call fails fast with StoreUnavailable.
"""

from __future__ import annotations

import socket
from typing import Any, ClassVar

import pymysql
import pymysql.cursors
from pymysql.constants import CLIENT
from twisted.enterprise import adbapi
from twisted.python.failure import Failure
from zope.interface import implementer

from uacregistrant.store.dbapi import DbapiStore
from uacregistrant.store.dialect import Dialect, open_schema, run_steps
from uacregistrant.store.interface import IRegistrantStore, StoreError, StoreUnavailable
from uacregistrant.store.rows import Columns
from uacregistrant.store.url import MySQLParams

# Client-side errors (2000-2999: cannot connect, server gone away, lost
# connection) and the server's own "shutting down", "connection killed",
# "too many connections", and a login the server refuses: the database
# cannot be used now, as opposed to our SQL being wrong.
_AWAY_CODES = frozenset({1040, 1044, 1045, 1049, 1053, 1077, 1152, 1158, 1159, 1160, 1161, 1927, 4031})


class MySQLDialect(Dialect):
    """scripts/mysql/*-create.sql; our own table compares keys byte for byte."""

    mark = "%s"
    quote_char = "`"
    types: ClassVar[dict[str, str]] = {
        "serial": "INT(10) UNSIGNED AUTO_INCREMENT PRIMARY KEY",
        "string": "CHAR({n})",
        "int": "INT",
        "uint": "INT UNSIGNED",
        "uint(1)": "INT(1) UNSIGNED",
        "bigint": "BIGINT",
        "double": "DOUBLE",
        "text": "TEXT",
        # Three of these make the primary key: 3 x 255 x 4 bytes fits InnoDB's 3072.
        "key": "VARCHAR(255)",
    }
    table_options = " ENGINE=InnoDB"
    own_table_options = " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
    prefix_index_names = False
    table_exists_sql = (
        "SELECT 1 FROM information_schema.tables"
        " WHERE table_schema = DATABASE() AND table_name = %s"
    )
    columns_sql = (
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = DATABASE() AND table_name = %s"
    )

    def on_conflict(self, key: tuple[str, ...], updates: list[str]) -> str:
        sets = ", ".join(f"{self.quote(c)} = VALUES({self.quote(c)})" for c in updates)
        return f" ON DUPLICATE KEY UPDATE {sets}"


MYSQL = MySQLDialect()

# DDL commits on its own in MySQL: a named lock, not a transaction, keeps two
# nodes starting together from creating the tables twice.
SCHEMA_LOCK = "uac_registrant schema"


def interrupt(connection: Any) -> None:
    """Make a call blocked on ``connection`` return now (from any thread).

    PyMySQL has no cancel: shutting the socket down ends the read or write
    the other thread is blocked in, which then fails as a lost connection.
    """
    sock = getattr(connection, "_sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _Connection(adbapi.Connection):
    """adbapi's connection, made good again before every operation."""

    def cursor(self) -> Any:
        # Transaction() asks for the cursor first thing: ping there, and a
        # connection the server dropped is replaced before any statement runs.
        try:
            self._connection.ping(reconnect=False)
        except pymysql.err.Error:
            if self._pool.closing:
                raise
            self._connection.connect()
        # Unbuffered: a large table streams through fetchmany a chunk at a
        # time instead of arriving whole before the first row is validated.
        return self._connection.cursor(pymysql.cursors.SSCursor)

    def rollback(self) -> None:
        try:
            self._connection.rollback()
        except pymysql.err.Error:
            # The connection died with the transaction, which the server then
            # rolled back; the first error goes on, the next ping reconnects.
            if self._connection.open:
                self._connection.close()


class _Pool(adbapi.ConnectionPool):
    connectionFactory = _Connection
    # Set before the connections are interrupted: a call cut short must not reconnect.
    closing = False


@implementer(IRegistrantStore)
class MySQLStore(DbapiStore):
    """``MySQLStore(params, columns, *, reactor, ...)`` on one PyMySQL connection.

    Timeouts bound every wait on the server: connecting, and each read or
    write on the socket (a server that stopped answering, a dead host).
    """

    # A server that is down may come back: start-up waits for it.
    retry_unavailable = True

    def __init__(
        self,
        params: MySQLParams,
        columns: Columns,
        *,
        reactor: Any,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        write_timeout: float = 60.0,
    ) -> None:
        super().__init__(MYSQL, columns)
        self.params = params
        self._reactor = reactor
        self._timeouts = (connect_timeout, read_timeout, write_timeout)

    def _new_pool(self) -> adbapi.ConnectionPool:
        p = self.params
        connect_timeout, read_timeout, write_timeout = self._timeouts
        where: dict[str, Any] = (
            {"unix_socket": p.unix_socket} if p.unix_socket else {"host": p.host, "port": p.port}
        )
        return _Pool(
            "pymysql",
            user=p.user,
            password=p.password,
            database=p.database,
            charset="utf8mb4",
            # rowcount counts the rows an UPDATE matched, not only those it changed.
            client_flag=CLIENT.FOUND_ROWS,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            write_timeout=write_timeout,
            cp_min=1,
            cp_max=1,
            cp_noisy=False,
            **where,
            cp_reactor=self._reactor,
        )

    def _close_pool(self) -> None:
        # Closing joins the worker thread: free it from a server that went silent first.
        if self._pool is not None:
            self._pool.closing = True
            for connection in list(self._pool.connections.values()):
                interrupt(connection)
        super()._close_pool()

    def _open_schema(self, txn: Any) -> None:
        txn.execute("SELECT GET_LOCK(%s, 30)", (SCHEMA_LOCK,))
        txn.fetchall()
        try:
            run_steps(txn, open_schema(self._sql))
        finally:
            txn.execute("SELECT RELEASE_LOCK(%s)", (SCHEMA_LOCK,))
            txn.fetchall()

    def _translate(self, failure: Failure) -> Failure:
        if failure.check(StoreError):
            return failure
        if failure.check(pymysql.err.Error):
            code, text = _code_and_text(failure.value)
            if failure.check(pymysql.err.InterfaceError) or 2000 <= code < 3000 or code in _AWAY_CODES:
                raise StoreUnavailable(f"MySQL at {self.params.shown} unavailable: {text}")
            raise StoreError(f"MySQL error: {text}")
        return failure


def _code_and_text(error: BaseException) -> tuple[int, str]:
    args = error.args
    if len(args) >= 2 and isinstance(args[0], int):
        return args[0], f"{args[1]} ({args[0]})"
    return 0, str(error) or type(error).__name__

