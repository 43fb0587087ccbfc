"""The sharing tags' lock backend on MySQL or MariaDB: session-scoped named locks.

A tag's lock is ``GET_LOCK`` on a name derived from the tag; the server frees
every named lock of a session when the session ends, so a dead node (or a
dead connection) frees its tags.  ``IS_USED_LOCK`` tells which session holds
a lock; the ``uac_registrant_sessions`` table tells which node that session
belongs to.  Heartbeats, owners and requests live in tables as on
PostgreSQL, with times as epoch seconds of the server's clock.

The session is one PyMySQL connection used by one thread of its own, never
reconnected behind the manager's back.  Its ``wait_timeout`` is
``shtag_takeover_s``: the manager beats three times as often, so only a node
that is gone (or cut off) goes idle that long, and the server then ends its
session and frees its locks, as PostgreSQL's keepalives do there.  MySQL has
no LISTEN/NOTIFY: a tag released or asked for is seen on the next tick of
the other nodes (``shtag_takeover_s / 3``).
"""

from __future__ import annotations

import hashlib
import math
import queue
import threading
from collections.abc import Callable
from typing import Any

import pymysql
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.python.failure import Failure
from zope.interface import implementer

from ..store.mysql import MYSQL, SCHEMA_LOCK, interrupt
from ..store.url import MySQLParams
from ..store.schema import CLUSTER_NODES, CLUSTER_SESSIONS, CLUSTER_SHTAGS
from .locks import ILockBackend, Owner, Survey, split_tag

_NOW = "UNIX_TIMESTAMP(NOW(6))"
_SHTAGS = CLUSTER_SHTAGS.name
_NODES = CLUSTER_NODES.name
_SESSIONS = CLUSTER_SESSIONS.name


def lock_name(tag: str) -> str:
    """The named lock of a tag: fixed length (names are limited to 64 characters)."""
    return "uac_registrant:" + hashlib.sha1(tag.encode()).hexdigest()


class _Session:
    """One connection and the one thread that talks on it, in call order."""

    def __init__(self, reactor: Any, params: MySQLParams, timeout: float, idle_s: int) -> None:
        self._reactor = reactor
        self._params = params
        self._timeout = timeout
        self._idle_s = idle_s
        self._calls: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...], Deferred] | None] = (
            queue.SimpleQueue()
        )
        self._connection: pymysql.connections.Connection | None = None
        threading.Thread(target=self._work, name="uac-registrant-cluster", daemon=True).start()

    def call(self, function: Callable[..., Any], *args: Any) -> Deferred:
        """Deferred[function(cursor, *args)], run on the session's thread."""
        d: Deferred = Deferred()
        self._calls.put((function, args, d))
        return d

    def close(self) -> None:
        """End the session now, even in the middle of a call."""
        # Wakes the thread out of a read that may never return.
        interrupt(self._connection)
        self._calls.put(None)

    def _work(self) -> None:
        while (item := self._calls.get()) is not None:
            function, args, d = item
            try:
                if self._connection is None:
                    self._connection = self._connect()
                with self._connection.cursor() as cursor:
                    result = function(cursor, *args)
            except BaseException:
                self._reactor.callFromThread(d.errback, Failure())
            else:
                self._reactor.callFromThread(d.callback, result)
        if self._connection is not None:
            try:
                self._connection.close()
            except Exception:  # already broken: the server has ended the session
                pass
        # Calls queued after close() are failed, never left waiting.
        while True:
            try:
                late = self._calls.get_nowait()
            except queue.Empty:
                return
            if late is not None:
                self._reactor.callFromThread(late[2].errback, Failure(ConnectionError("no cluster session")))

    def _connect(self) -> pymysql.connections.Connection:
        p = self._params
        where: dict[str, Any] = (
            {"unix_socket": p.unix_socket} if p.unix_socket else {"host": p.host, "port": p.port}
        )
        return pymysql.connect(
            user=p.user,
            password=p.password,
            database=p.database,
            charset="utf8mb4",
            autocommit=True,
            connect_timeout=self._timeout,
            read_timeout=self._timeout,
            write_timeout=self._timeout,
            init_command=f"SET SESSION wait_timeout = {self._idle_s}",
            **where,
        )


@implementer(ILockBackend)
class MySQLLocks:
    def __init__(self, params: MySQLParams, node_id: str, reactor: Any, *, takeover_s: float = 30.0) -> None:
        self.params = params
        self.node_id = node_id
        self.reactor = reactor
        self.on_notify: Callable[[str], None] = lambda tag: None
        self._idle_s = max(2, math.ceil(takeover_s))
        self._session: _Session | None = None
        self._ready = False

    @property
    def connected(self) -> bool:
        return self._ready and self._session is not None

    @inlineCallbacks
    def connect(self, timeout: float) -> Deferred:
        self.reset()
        session = self._session = _Session(self.reactor, self.params, timeout, self._idle_s)
        timer = self.reactor.callLater(timeout, self._abandon, session)
        try:
            yield session.call(_open, self.node_id)
        except BaseException:
            if self._session is session:
                self.reset()
            raise
        finally:
            if timer.active():
                timer.cancel()
        if self._session is not session:
            raise ConnectionError("the cluster session was dropped while opening")
        self._ready = True

    def _abandon(self, session: _Session) -> None:
        if self._session is session:
            self.reset()

    def reset(self) -> None:
        session, self._session = self._session, None
        self._ready = False
        if session is not None:
            session.close()

    def _call(self, function: Callable[..., Any], *args: Any) -> Deferred:
        if not self.connected:
            raise ConnectionError("no cluster session")
        return self._session.call(function, *args)

    def heartbeat(self) -> Deferred:
        return self._call(
            _execute,
            f"INSERT INTO {_NODES} (node_id, beat) VALUES (%s, {_NOW})"
            " ON DUPLICATE KEY UPDATE beat = VALUES(beat)",
            (self.node_id,),
        )

    def try_lock(self, tag: str) -> Deferred:
        return self._call(_one, "SELECT GET_LOCK(%s, 0)", (lock_name(tag),)).addCallback(
            lambda locked: locked == 1
        )

    def unlock(self, tag: str) -> Deferred:
        return self._call(_execute, "SELECT RELEASE_LOCK(%s)", (lock_name(tag),))

    def survey(self, tags: list[str]) -> Deferred:
        return self._call(_survey, list(tags))

    def own(self, tag: str) -> Deferred:
        name, cluster_id = split_tag(tag)
        # Assignments run left to right: wanted_by is compared before node_id changes.
        return self._call(
            _execute,
            f"INSERT INTO {_SHTAGS} (tag, cluster_id, node_id, since) VALUES (%s, %s, %s, {_NOW})"
            " ON DUPLICATE KEY UPDATE"
            " wanted_by = IF(wanted_by = VALUES(node_id), NULL, wanted_by),"
            " node_id = VALUES(node_id), since = VALUES(since)",
            (name, cluster_id, self.node_id),
        )

    def disown(self, tag: str) -> Deferred:
        name, cluster_id = split_tag(tag)
        return self._call(
            _execute,
            f"UPDATE {_SHTAGS} SET node_id = NULL, since = NULL"
            " WHERE tag = %s AND cluster_id = %s AND node_id = %s",
            (name, cluster_id, self.node_id),
        )

    def request(self, tag: str, valid_for: float) -> Deferred:
        name, cluster_id = split_tag(tag)
        return self._call(
            _execute,
            f"INSERT INTO {_SHTAGS} (tag, cluster_id, wanted_by, wanted_until)"
            f" VALUES (%s, %s, %s, {_NOW} + %s)"
            " ON DUPLICATE KEY UPDATE wanted_by = VALUES(wanted_by),"
            " wanted_until = VALUES(wanted_until)",
            (name, cluster_id, self.node_id, float(valid_for)),
        )

    @inlineCallbacks
    def owners(self, tags: list[str]) -> Deferred:
        survey, since = yield self._call(_owners, list(tags))
        result = {}
        for tag, node in survey.items():
            noted = since.get(tag)
            when = noted[1] if noted is not None and node is not None and noted[0] == node else None
            result[tag] = Owner(node, when)
        return result

    def notify(self, tag: str) -> Deferred:
        # No notifications on MySQL: the other nodes see the change on their next tick.
        if not self.connected:
            raise ConnectionError("no cluster session")
        return succeed(None)


# -- on the session's thread ----------------------------------------------------


def _execute(cursor: Any, sql: str, params: tuple[Any, ...]) -> None:
    cursor.execute(sql, params)


def _one(cursor: Any, sql: str, params: tuple[Any, ...]) -> Any:
    cursor.execute(sql, params)
    return cursor.fetchone()[0]


def _open(cursor: Any, node_id: str) -> None:
    cursor.execute("SELECT GET_LOCK(%s, 30)", (SCHEMA_LOCK,))
    try:
        for table in (CLUSTER_SHTAGS, CLUSTER_NODES, CLUSTER_SESSIONS):
            cursor.execute(MYSQL.create_table(table, if_not_exists=True))
    finally:
        cursor.execute("SELECT RELEASE_LOCK(%s)", (SCHEMA_LOCK,))
    # This session speaks for this node from now on; the server numbers
    # sessions afresh after a restart, so a number may come back: replace it.
    cursor.execute(f"DELETE FROM {_SESSIONS} WHERE node_id = %s", (node_id,))
    cursor.execute(
        f"REPLACE INTO {_SESSIONS} (conn, node_id) VALUES (CONNECTION_ID(), %s)", (node_id,)
    )


def _holders(cursor: Any, tags: list[str]) -> dict[str, str | None]:
    """Which node's session holds each tag's lock now (the server's truth)."""
    if not tags:
        return {}
    used = ", ".join("IS_USED_LOCK(%s)" for _ in tags)
    cursor.execute(f"SELECT {used}", tuple(lock_name(t) for t in tags))
    sessions = cursor.fetchone()
    cursor.execute(f"SELECT conn, node_id FROM {_SESSIONS}")
    nodes = dict(cursor.fetchall())
    return {tag: None if s is None else nodes.get(s, f"session {s}") for tag, s in zip(tags, sessions)}


def _survey(cursor: Any, tags: list[str]) -> Survey:
    owners = _holders(cursor, tags)
    cursor.execute(f"SELECT tag, cluster_id, node_id FROM {_SHTAGS} WHERE node_id IS NOT NULL")
    noted = {f"{tag}/{cluster_id}": node for tag, cluster_id, node in cursor.fetchall()}
    cursor.execute(f"SELECT node_id, {_NOW} - beat FROM {_NODES}")
    ages = {node: float(age) for node, age in cursor.fetchall()}
    cursor.execute(
        f"SELECT tag, cluster_id, wanted_by FROM {_SHTAGS}"
        f" WHERE wanted_by IS NOT NULL AND wanted_until > {_NOW}"
    )
    wanted = {f"{tag}/{cluster_id}": node for tag, cluster_id, node in cursor.fetchall()}
    return Survey(owners=owners, noted=noted, ages=ages, wanted=wanted)


def _owners(cursor: Any, tags: list[str]) -> tuple[dict[str, str | None], dict[str, tuple[str, float]]]:
    holders = _holders(cursor, tags)
    cursor.execute(f"SELECT tag, cluster_id, node_id, since FROM {_SHTAGS} WHERE node_id IS NOT NULL")
    since = {f"{tag}/{cluster_id}": (node, float(when)) for tag, cluster_id, node, when in cursor.fetchall()}
    return holders, since
