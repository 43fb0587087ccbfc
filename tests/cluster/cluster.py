"""Clustered nodes (twistd) on one database, in front of a real Kamailio registrar.

The registrar's bindings are the truth: never two for an AOR, the same Call-ID
across takeovers, refreshed before they run out.  :class:`Database` is the
database the nodes share (PostgreSQL or MariaDB) with the tests' side doors;
:class:`Cluster` starts the nodes and reads what they hold.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import psycopg2

from tests.e2e.service import COLUMNS, ServiceProcess, make_mysql_table, wait_until
from tests.peers import free_port
from uacregistrant.store.interface import RUNTIME_TABLE
from uacregistrant.store.postgres import PG_VERSION_TABLE, pg_registrant_table
from uacregistrant.store.rows import Columns

from .proxy import Proxy

TAKEOVER = 3  # shtag_takeover_s: the manager looks every TAKEOVER / 3
GRACE = TAKEOVER  # the manager's grace after its own reconnection
TI = 2  # timer_interval: one bucket visit a second
USERS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw"}
ALICE = "sip:alice@example.test"


def _make_pg_table(dsn: str, rows: list[dict]) -> None:
    with psycopg2.connect(dsn) as db, db.cursor() as cursor:
        cursor.execute(PG_VERSION_TABLE)
        cursor.execute("INSERT INTO version (table_name, table_version) VALUES ('registrant', 3)")
        cursor.execute(pg_registrant_table(Columns()))
        for row in rows:
            names = [c.lower() for c in COLUMNS if c in row]
            cursor.execute(
                f"INSERT INTO registrant ({', '.join(names)}) VALUES ({', '.join(['%s'] * len(names))})",
                [row[c] for c in COLUMNS if c in row],
            )
    db.close()


class Database:
    """The database of a cluster: ``kind`` "postgres" or "mysql", its server (a peer) and URL."""

    def __init__(self, kind: str, server, url: str) -> None:
        self.kind = kind
        self.server = server
        self.url = url
        self.name = url.rsplit("/", 1)[1]

    def make_table(self, rows: list[dict]) -> None:
        if self.kind == "mysql":
            make_mysql_table(self.url, rows)
        else:
            _make_pg_table(self.url, rows)

    def _one(self, query: str, params: tuple):
        """The first row ``query`` finds, or None."""
        if self.kind == "mysql":
            found = self.server.execute(query, params, self.name)
            return found[0] if found else None
        with psycopg2.connect(self.url) as db, db.cursor() as cursor:
            cursor.execute(query, params)
            row = cursor.fetchone()
        db.close()
        return row

    def shared(self, column: str, aor: str = ALICE):
        """What the active node shared for ``aor`` in its registered state (3)."""
        row = self._one(f"SELECT {column} FROM {RUNTIME_TABLE} WHERE aor = %s AND state = 3", (aor,))
        return None if row is None else row[0]

    def _epoch(self, column: str) -> str:
        # Epoch seconds on the server's clock: MySQL keeps them so, PostgreSQL as timestamps.
        return column if self.kind == "mysql" else f"extract(epoch FROM {column})"

    def last_beat(self, node_id: str) -> float:
        """When ``node_id`` wrote its heartbeat last (the server's clock)."""
        [beat] = self._one(f"SELECT {self._epoch('beat')} FROM uac_registrant_nodes WHERE node_id = %s",
                           (node_id,))
        return float(beat)

    def noted_owner(self, tag: str) -> tuple[str | None, float | None]:
        """The node noted as ``tag``'s owner, and since when (the server's clock)."""
        name, cluster_id = tag.split("/")
        row = self._one(f"SELECT node_id, {self._epoch('since')} FROM uac_registrant_shtags"
                        " WHERE tag = %s AND cluster_id = %s", (name, int(cluster_id)))
        return (None, None) if row is None else (row[0], None if row[1] is None else float(row[1]))

    def kill_sessions(self) -> int:
        """End every session on this database, as an idle kill or a restart would; how many."""
        if self.kind == "mysql":
            return self.server.kill_connections(self.name)
        return self.server.kill_backends(self.name)


class Cluster:
    """The nodes of one cluster, each tag's record bound at one registrar.

    ``tags`` maps a user of USERS to its record's sharing tag; ``options`` are
    more service options for every node.
    """

    def __init__(self, tmp_path: Path, registrar, database: Database, tags: dict[str, str], *,
                 expiry: int, options: tuple[str, ...] = ()) -> None:
        self.tmp_path = tmp_path
        self.registrar = registrar
        self.database = database
        self.tags = tags
        self.expiry = expiry
        self.options = options
        self.nodes: dict[str, ServiceProcess] = {}
        self.proxies: dict[str, Proxy] = {}
        database.make_table([self.row(user, tag) for user, tag in tags.items()])

    def row(self, user: str, tag: str) -> dict:
        return dict(
            registrar=self.registrar.uri,
            aor=f"sip:{user}@example.test",
            username=user,
            password=USERS[user],
            # The same binding whichever node registers it.
            binding_URI=f"sip:{user}@127.0.0.1:5999",
            expiry=self.expiry,
            cluster_shtag=tag,
        )

    def start(self, node_id: str, proxied: bool = False) -> ServiceProcess:
        """Node ``node_id``; ``proxied``: through a proxy the test can cut (``proxies[node_id]``)."""
        url = self.database.url
        if proxied:
            proxy = self.proxies[node_id] = Proxy(self.database.server.port).start()
            url = proxy.dsn(url)
        workdir = self.tmp_path / node_id
        workdir.mkdir()
        node = self.nodes[node_id] = ServiceProcess(
            workdir,
            [
                "--db-url", url,
                "--listen", f"udp:127.0.0.1:{free_port('udp')}",
                "--timer-interval", str(TI),
                "--failure-retry-interval", "5",
                "--enable-clustering", "1",
                "--node-id", node_id,
                "--shtag-takeover-s", str(TAKEOVER),
                *self.options,
            ],
            mi_port=free_port("tcp"),
        )
        return node.start()

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop()
        for proxy in self.proxies.values():
            proxy.stop()

    def holds(self) -> dict[str, dict[str, str]]:
        """node -> {tag: "database" | "static"} for the tags active on it."""
        return {name: holding(node) for name, node in self.nodes.items()}

    def owners(self) -> dict[str, str]:
        """tag -> the node where it is active through the database."""
        return {
            tag: name for name, held in self.holds().items() for tag, how in held.items() if how == "database"
        }

    def bindings(self) -> dict[str, str]:
        """user -> Call-ID of its one binding; fails on two bindings for one AOR."""
        found = {}
        for user in self.tags:
            binding = one_binding(self.registrar, f"sip:{user}@example.test")
            if binding is not None:
                found[user] = binding.call_id
        return found

    def cseqs(self) -> dict[str, int]:
        return {user: self.registrar.bindings(f"sip:{user}@example.test")[0].cseq for user in self.tags}

    def watch(self, seconds: float, call_ids: dict[str, str], check=lambda: None) -> None:
        """For ``seconds``: one binding per AOR, always, with the same Call-ID."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert self.bindings() == call_ids
            check()
            time.sleep(0.5)

    def settled(self) -> dict[str, str]:
        """Each tag active on one node, spread one per node, every AOR bound; the Call-IDs."""

        def spread():
            owners = self.owners()
            return (
                set(owners) == set(self.tags.values())
                and len(set(owners.values())) == len(self.nodes)
                and len(self.bindings()) == len(self.tags)
            )

        wait_until(spread, 30, "the tags spread and every AOR bound")
        call_ids = self.bindings()
        # A takeover goes on from the shared state: wait until it is written.
        wait_until(
            lambda: all(self.database.shared("call_id", f"sip:{u}@example.test") == c for u, c in call_ids.items()),
            10,
            "the dialogs shared",
        )
        return call_ids


def held(node: ServiceProcess) -> set[str]:
    """The tags active on ``node`` (through the database or static)."""
    tags = node.mi("shtag_list")["result"]["Tags"]
    return {f"{t['tag']}/{t['cluster_id']}" for t in tags if t["active_here"]}


def holding(node: ServiceProcess) -> dict[str, str]:
    """tag -> how ``node`` holds it: "database" or "static"."""
    tags = node.mi("shtag_list")["result"]["Tags"]
    return {f"{t['tag']}/{t['cluster_id']}": t["held"] for t in tags if t["held"] is not None}


def sent_total(node: ServiceProcess) -> float:
    return sum(
        float(value)
        for value in re.findall(r"^uac_registrant_register_sent_total\{[^}]*\} (\S+)$", node.metrics_text(), re.M)
    )


def away_seconds(node: ServiceProcess) -> float:
    for line in node.metrics_text().splitlines():
        if line.startswith("uac_registrant_cluster_database_away_seconds "):
            return float(line.split()[1])
    raise AssertionError("no database-away metric")


def one_binding(registrar, aor: str = ALICE):
    """The one binding of ``aor`` at the registrar, or None; fails on two."""
    bindings = registrar.bindings(aor)
    assert len(bindings) <= 1, f"duplicate bindings for {aor}: {bindings}"
    return bindings[0] if bindings else None


def refreshed_after(registrar, cseq: int, call_id: str, timeout: float):
    """Wait for a refresh (a higher CSeq) in the same dialog; the binding never lapses meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        binding = one_binding(registrar)
        assert binding is not None, "the binding lapsed"
        assert binding.call_id == call_id
        if binding.cseq > cseq:
            return binding
        assert time.monotonic() < deadline, "no refresh in time"
        time.sleep(0.2)
