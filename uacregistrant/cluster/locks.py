"""The database side of the sharing tags.

:class:`ILockBackend` is what the manager needs from a database; any server
with session-scoped locks can implement it (``PostgresLocks`` here, on
advisory locks, the ``uac_registrant_shtags`` table, the
``uac_registrant_nodes`` heartbeat table and a NOTIFY channel, all on one
dedicated txpostgres connection).

The connection is never reconnected behind the manager's back: a session that
fails is closed (which frees its locks on the server) and the manager opens a
new one on its next tick, so "connected" always means "the locks we took are
still ours".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from txpostgres import txpostgres
from zope.interface import Attribute, Interface, implementer

log = Logger()

# First half of every tag's advisory lock key, so that our locks never collide
# with another application's on the same database ("UACR").
LOCK_NAMESPACE = 0x55414352
CHANNEL = "uac_registrant_shtags"
NODES = "uac_registrant_nodes"
# pg_stat_activity.application_name of the lock sessions (for operators).
APPLICATION_PREFIX = "uac-registrant-cluster:"

SHTAGS_TABLE = f"""CREATE TABLE IF NOT EXISTS {CHANNEL} (
    tag TEXT NOT NULL,
    cluster_id INTEGER NOT NULL,
    node_id TEXT,
    since TIMESTAMP WITH TIME ZONE,
    wanted_by TEXT,
    wanted_until TIMESTAMP WITH TIME ZONE,
    PRIMARY KEY (tag, cluster_id)
)"""
NODES_TABLE = f"""CREATE TABLE IF NOT EXISTS {NODES} (
    node_id TEXT PRIMARY KEY,
    beat TIMESTAMP WITH TIME ZONE NOT NULL
)"""
# The same key the store takes: two nodes starting together create tables one after the other.
_SCHEMA_LOCK = "SELECT pg_advisory_xact_lock(hashtext('uac_registrant schema'))"

# Who holds each tag's lock now (the server's truth, not the table's).
_OWNERS = f"""SELECT t.tag, substr(a.application_name, {len(APPLICATION_PREFIX) + 1})
FROM unnest(%s::text[]) AS t(tag)
LEFT JOIN pg_locks l ON l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND l.classid = {LOCK_NAMESPACE}::oid AND l.objid = hashtext(t.tag)::oid
LEFT JOIN pg_stat_activity a ON a.pid = l.pid"""
_WANTED = f"""SELECT tag || '/' || cluster_id, wanted_by FROM {CHANNEL}
WHERE wanted_by IS NOT NULL AND wanted_until > now()"""
_SINCE = f"""SELECT tag || '/' || cluster_id, node_id, extract(epoch FROM since) FROM {CHANNEL}
WHERE node_id IS NOT NULL"""
# Ages on the server's clock: the nodes' clocks never need to agree.
_AGES = f"SELECT node_id, extract(epoch FROM now() - beat) FROM {NODES}"
_BEAT = (
    f"INSERT INTO {NODES} (node_id, beat) VALUES (%s, now())"
    " ON CONFLICT (node_id) DO UPDATE SET beat = EXCLUDED.beat"
)


@dataclass(frozen=True, slots=True)
class Survey:
    """One look at the cluster, taken on the database."""

    # tag text -> node_id whose session holds the tag's lock now, or None
    owners: dict[str, str | None]
    # tag text -> node_id last noted as its owner (by ``own``, cleared by ``disown``)
    noted: dict[str, str]
    # node_id -> seconds since its last heartbeat, on the server's clock
    ages: dict[str, float]
    # tag text -> node_id that asked for it (requests not expired)
    wanted: dict[str, str]


@dataclass(frozen=True, slots=True)
class Owner:
    """A tag's holder as shtag_list shows it."""

    node_id: str | None
    since: float | None


class ILockBackend(Interface):
    """Where sharing tags are locked, owned and asked for, and nodes beat.

    The contract the manager relies on:

    - A lock belongs to the backend's session; when the session ends (closed,
      killed, or its connection lost as the server sees it), the server frees
      every lock the session held.  ``try_lock`` never waits.
    - Every call but ``connect`` and ``reset`` fails at once (ConnectionError)
      without a session, and fails if the session breaks meanwhile.
    - Tables of its own are created on first use, inside ``connect``.
    - Times in a ``Survey`` are measured on the database server's clock.
    - Tags are the ``name/cluster_id`` text.
    """

    connected = Attribute("bool: a session is up, and the locks taken on it are held")
    on_notify = Attribute("called with the payload (a tag) of every notification to the cluster")

    def connect(timeout):
        """Deferred[None]: open a new session (notifications included); fails if not up within ``timeout``."""

    def reset():
        """Drop the session at once; the server frees every lock it held."""

    def heartbeat():
        """Deferred[None]: note on the database that this node is alive now (a round trip)."""

    def try_lock(tag):
        """Deferred[bool]: take ``tag``'s lock if free."""

    def unlock(tag):
        """Deferred[None]."""

    def survey(tags):
        """Deferred[Survey] for the given tags."""

    def own(tag):
        """Deferred[None]: note this node as the owner since now; a request of ours is done."""

    def disown(tag):
        """Deferred[None]: this node no longer owns ``tag`` (if it was noted as the owner)."""

    def request(tag, valid_for):
        """Deferred[None]: ask the owner to hand ``tag`` to this node; valid ``valid_for`` seconds;
        wakes the other nodes."""

    def owners(tags):
        """Deferred[dict[str, Owner]] for shtag_list: the lock holder and since when it is noted."""

    def notify(tag):
        """Deferred[None]: wake the other nodes (``tag`` was released)."""


def split_tag(tag: str) -> tuple[str, int]:
    name, _, cluster_id = tag.rpartition("/")
    return name, int(cluster_id)


@implementer(ILockBackend)
class PostgresLocks:
    def __init__(
        self,
        dsn: str,
        node_id: str,
        reactor: IReactorTime,
    ) -> None:
        self.dsn = dsn
        self.node_id = node_id
        self.reactor = reactor
        self.on_notify: Callable[[str], None] = lambda tag: None
        self._connection: txpostgres.Connection | None = None
        self._ready = False

    @property
    def connected(self) -> bool:
        return self._ready and self._connection is not None

    @inlineCallbacks
    def connect(self, timeout: float) -> Deferred:
        self.reset()
        connection = self._connection = txpostgres.Connection(self.reactor)
        timer = self.reactor.callLater(timeout, self._abandon, connection)
        try:
            yield connection.connect(
                self.dsn,
                application_name=(APPLICATION_PREFIX + self.node_id)[:63],
                # A host that vanishes must lose its locks within seconds
                # (libpq on our side, the server's keepalives on its side).
                keepalives=1,
                keepalives_idle=2,
                keepalives_interval=1,
                keepalives_count=2,
            )
            yield connection.runOperation(
                "SET tcp_keepalives_idle = 2; SET tcp_keepalives_interval = 1;"
                " SET tcp_keepalives_count = 2"
            )
            yield connection.runInteraction(_create_table)
            connection.addNotifyObserver(self._notified)
            yield connection.runOperation(f"LISTEN {CHANNEL}")
        except BaseException:
            if self._connection is connection:
                self.reset()
            raise
        finally:
            if timer.active():
                timer.cancel()
        if self._connection is not connection:
            raise ConnectionError("the cluster session was dropped while opening")
        self._ready = True

    def _abandon(self, connection: txpostgres.Connection) -> None:
        if self._connection is connection:
            self.reset()

    def reset(self) -> None:
        connection, self._connection = self._connection, None
        self._ready = False
        if connection is not None:
            connection.removeNotifyObserver(self._notified)
            # txpostgres' close() needs a psycopg2 connection to exist.
            if connection.pollable() is not None:
                try:
                    connection.close()
                except Exception:  # already broken: nothing left to free
                    pass

    def _notified(self, notify: Any) -> None:
        if notify.channel == CHANNEL:
            self.on_notify(notify.payload)

    def _session(self) -> txpostgres.Connection:
        if not self.connected:
            raise ConnectionError("no cluster session")
        return self._connection

    def heartbeat(self) -> Deferred:
        return self._session().runOperation(_BEAT, (self.node_id,))

    @inlineCallbacks
    def try_lock(self, tag: str) -> Deferred:
        rows = yield self._session().runQuery(
            f"SELECT pg_try_advisory_lock({LOCK_NAMESPACE}, hashtext(%s))", (tag,)
        )
        return bool(rows[0][0])

    def unlock(self, tag: str) -> Deferred:
        return self._session().runQuery(
            f"SELECT pg_advisory_unlock({LOCK_NAMESPACE}, hashtext(%s))", (tag,)
        )

    @inlineCallbacks
    def survey(self, tags: list[str]) -> Deferred:
        session = self._session()
        owners = yield session.runQuery(_OWNERS, (tags,))
        noted = yield session.runQuery(_SINCE)
        ages = yield session.runQuery(_AGES)
        wanted = yield session.runQuery(_WANTED)
        return Survey(
            owners=dict(owners),
            noted={tag: node for tag, node, _ in noted},
            ages={node: float(age) for node, age in ages},
            wanted=dict(wanted),
        )

    def own(self, tag: str) -> Deferred:
        name, cluster_id = split_tag(tag)
        return self._session().runOperation(
            f"INSERT INTO {CHANNEL} AS t (tag, cluster_id, node_id, since) VALUES (%s, %s, %s, now())"
            " ON CONFLICT (tag, cluster_id) DO UPDATE SET node_id = EXCLUDED.node_id,"
            " since = EXCLUDED.since,"
            " wanted_by = CASE WHEN t.wanted_by = EXCLUDED.node_id THEN NULL ELSE t.wanted_by END",
            (name, cluster_id, self.node_id),
        )

    def disown(self, tag: str) -> Deferred:
        name, cluster_id = split_tag(tag)
        return self._session().runOperation(
            f"UPDATE {CHANNEL} SET node_id = NULL, since = NULL"
            " WHERE tag = %s AND cluster_id = %s AND node_id = %s",
            (name, cluster_id, self.node_id),
        )

    def request(self, tag: str, valid_for: float) -> Deferred:
        name, cluster_id = split_tag(tag)
        return self._session().runOperation(
            f"INSERT INTO {CHANNEL} (tag, cluster_id, wanted_by, wanted_until)"
            " VALUES (%s, %s, %s, now() + make_interval(secs => %s))"
            " ON CONFLICT (tag, cluster_id) DO UPDATE SET wanted_by = EXCLUDED.wanted_by,"
            " wanted_until = EXCLUDED.wanted_until;"
            " SELECT pg_notify(%s, %s)",
            (name, cluster_id, self.node_id, valid_for, CHANNEL, tag),
        )

    @inlineCallbacks
    def owners(self, tags: list[str]) -> Deferred:
        session = self._session()
        holders = yield session.runQuery(_OWNERS, (tags,))
        rows = yield session.runQuery(_SINCE)
        since = {tag: (node, when) for tag, node, when in rows}
        result = {}
        for tag, node in holders:
            noted = since.get(tag)
            when = float(noted[1]) if noted is not None and node is not None and noted[0] == node else None
            result[tag] = Owner(node, when)
        return result

    def notify(self, tag: str) -> Deferred:
        return self._session().runOperation("SELECT pg_notify(%s, %s)", (CHANNEL, tag))


def _create_table(cursor: Any) -> Deferred:
    d = cursor.execute(_SCHEMA_LOCK)
    d.addCallback(lambda _: cursor.execute(SHTAGS_TABLE))
    d.addCallback(lambda _: cursor.execute(NODES_TABLE))
    return d
