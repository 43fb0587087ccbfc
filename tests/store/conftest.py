"""The databases the store contract runs on; one entry of BACKENDS each."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest
from twisted.internet import reactor

from tests.peers import free_port
from tests.peers.mariadb import MariaDB
from tests.peers.postgres import Postgres
from uacregistrant.store.interface import IRegistrantStore
from uacregistrant.store.mysql import MySQLStore
from uacregistrant.store.url import mysql_params
from uacregistrant.store.postgres import PostgresStore, folded
from uacregistrant.store.rows import Columns
from uacregistrant.store.sqlite import SQLiteStore


def version_2(version_3: str) -> str:
    """OpenSIPS's script of table version 2: that of version 3 without the state column."""
    without = re.sub(r"\n    state [^\n]*,", "", version_3)
    assert without != version_3
    return without


class OpenSIPSTables:
    """What the backends share: OpenSIPS's tables made as its install scripts make them."""

    OPENSIPS_VERSION_TABLE: str
    OPENSIPS_REGISTRANT_V3: str
    OPENSIPS_REGISTRANT_V2: str
    # The side door's parameter marker.
    MARK = "?"

    def execute(self, sql: str, params: Sequence[object] = ()) -> None:
        raise NotImplementedError

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        raise NotImplementedError

    def create_opensips_table(self, version: int) -> None:
        """What OpenSIPS's install scripts leave behind, table version 2 or 3."""
        self.execute(self.OPENSIPS_VERSION_TABLE)
        self.execute(f"INSERT INTO version (table_name, table_version) VALUES ('registrant', {self.MARK})",
                     (str(version),))
        self.execute(self.OPENSIPS_REGISTRANT_V3 if version == 3 else self.OPENSIPS_REGISTRANT_V2)

    def version_rows(self) -> list[tuple[object, ...]]:
        return self.query("SELECT table_name, table_version FROM version ORDER BY table_name")


class SQLiteBackend(OpenSIPSTables):
    """A fresh SQLite file per test, with a plain sqlite3 side door for set-up and checks.

    The contract suite uses only the methods below, never SQL of its own, so
    another database joins it with a class of the same shape in BACKENDS.
    """

    # scripts/sqlite/standard-create.sql and registrant-create.sql as OpenSIPS ships them.
    OPENSIPS_VERSION_TABLE = """CREATE TABLE version (
    table_name CHAR(32) NOT NULL,
    table_version INTEGER DEFAULT 0 NOT NULL,
    CONSTRAINT version_t_name_idx  UNIQUE (table_name)
)"""
    OPENSIPS_REGISTRANT_V3 = """CREATE TABLE registrant (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    registrar CHAR(255) DEFAULT '' NOT NULL,
    proxy CHAR(255) DEFAULT NULL,
    aor CHAR(255) DEFAULT '' NOT NULL,
    third_party_registrant CHAR(255) DEFAULT NULL,
    username CHAR(64) DEFAULT NULL,
    password CHAR(64) DEFAULT NULL,
    binding_URI CHAR(255) DEFAULT '' NOT NULL,
    binding_params CHAR(64) DEFAULT NULL,
    expiry INTEGER DEFAULT NULL,
    forced_socket CHAR(64) DEFAULT NULL,
    cluster_shtag CHAR(64) DEFAULT NULL,
    state INTEGER DEFAULT 0 NOT NULL,
    CONSTRAINT registrant_registrant_idx  UNIQUE (aor, binding_URI, registrar)
)"""
    OPENSIPS_REGISTRANT_V2 = version_2(OPENSIPS_REGISTRANT_V3)

    def __init__(self, tmp_path: Path) -> None:
        self.path = str(tmp_path / "registrant.sqlite")
        self.missing_path = str(tmp_path / "no-such-dir" / "registrant.sqlite")

    def make_store(self, columns: Columns) -> IRegistrantStore:
        return SQLiteStore(self.path, columns, reactor=reactor)

    def unreachable_store(self, columns: Columns) -> IRegistrantStore:
        return SQLiteStore(self.missing_path, columns, reactor=reactor)

    def execute(self, sql: str, params: Sequence[object] = ()) -> None:
        connection = sqlite3.connect(self.path)
        try:
            with connection:
                connection.execute(sql, params)
        finally:
            connection.close()

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        connection = sqlite3.connect(self.path)
        try:
            return connection.execute(sql, params).fetchall()
        finally:
            connection.close()

    def insert_row(self, columns: Columns, values: dict[str, object]) -> int:
        """Insert logical-name values by hand, bypassing every check; return the id."""
        names = ", ".join(f'"{columns.physical(k)}"' for k in values)
        marks = ", ".join("?" for _ in values)
        connection = sqlite3.connect(self.path)
        try:
            with connection:
                cursor = connection.execute(
                    f'INSERT INTO "{columns.table}" ({names}) VALUES ({marks})',
                    tuple(values.values()),
                )
            return cursor.lastrowid
        finally:
            connection.close()

    def table_exists(self, table: str) -> bool:
        return bool(self.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                               (table,)))

    def schema_snapshot(self, table: str) -> list[tuple[object, ...]]:
        """Everything that defines a table: its DDL, indexes and columns."""
        return self.query(
            "SELECT type, name, sql FROM sqlite_master WHERE tbl_name = ? ORDER BY name",
            (table,),
        ) + self.query(f'PRAGMA table_info("{table}")')

    def column_names(self, table: str) -> list[str]:
        return [str(row[1]) for row in self.query(f'PRAGMA table_info("{table}")')]


class PostgresBackend(OpenSIPSTables):
    """A fresh database per test on the session's private cluster, with a psycopg2 side door.

    OpenSIPS writes its SQL unquoted, so PostgreSQL folds every name to lower
    case; this side door folds the names it is given the same way.
    """

    # scripts/postgres/standard-create.sql and registrant-create.sql as OpenSIPS ships them.
    OPENSIPS_VERSION_TABLE = """CREATE TABLE version (
    table_name VARCHAR(32) NOT NULL,
    table_version INTEGER DEFAULT 0 NOT NULL,
    CONSTRAINT version_t_name_idx UNIQUE (table_name)
)"""
    OPENSIPS_REGISTRANT_V3 = """CREATE TABLE registrant (
    id SERIAL PRIMARY KEY NOT NULL,
    registrar VARCHAR(255) DEFAULT '' NOT NULL,
    proxy VARCHAR(255) DEFAULT NULL,
    aor VARCHAR(255) DEFAULT '' NOT NULL,
    third_party_registrant VARCHAR(255) DEFAULT NULL,
    username VARCHAR(64) DEFAULT NULL,
    password VARCHAR(64) DEFAULT NULL,
    binding_URI VARCHAR(255) DEFAULT '' NOT NULL,
    binding_params VARCHAR(64) DEFAULT NULL,
    expiry INTEGER DEFAULT NULL,
    forced_socket VARCHAR(64) DEFAULT NULL,
    cluster_shtag VARCHAR(64) DEFAULT NULL,
    state INTEGER DEFAULT 0 NOT NULL,
    CONSTRAINT registrant_registrant_idx UNIQUE (aor, binding_URI, registrar)
)"""
    OPENSIPS_REGISTRANT_V2 = version_2(OPENSIPS_REGISTRANT_V3)
    OPENSIPS_SEQUENCE = "ALTER SEQUENCE registrant_id_seq MAXVALUE 2147483647 CYCLE"
    MARK = "%s"

    def __init__(self, cluster: Postgres, dsn: str) -> None:
        self.cluster = cluster
        self.dsn = dsn
        self.dbname = dsn.rsplit("/", 1)[1]

    def make_store(self, columns: Columns) -> IRegistrantStore:
        return PostgresStore(self.dsn, columns, reactor=reactor)

    def unreachable_store(self, columns: Columns) -> IRegistrantStore:
        return PostgresStore(f"postgres://postgres@127.0.0.1:{free_port('tcp')}/x", columns, reactor=reactor)

    def execute(self, sql: str, params: Sequence[object] = ()) -> None:
        connection = self.cluster.connect(self.dbname)
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, tuple(params) or None)
        finally:
            connection.close()

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        connection = self.cluster.connect(self.dbname)
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, tuple(params) or None)
                return cursor.fetchall()
        finally:
            connection.close()

    def create_opensips_table(self, version: int) -> None:
        super().create_opensips_table(version)
        self.execute(self.OPENSIPS_SEQUENCE)

    def insert_row(self, columns: Columns, values: dict[str, object]) -> int:
        """Insert logical-name values by hand, bypassing every check; return the id."""
        names = ", ".join(f'"{folded(columns.physical(k))}"' for k in values)
        marks = ", ".join("%s" for _ in values)
        [(row_id,)] = self.query(
            f'INSERT INTO "{folded(columns.table)}" ({names}) VALUES ({marks}) RETURNING id',
            tuple(values.values()),
        )
        return int(row_id)

    def table_exists(self, table: str) -> bool:
        return self.query("SELECT to_regclass(%s)", (f'"{folded(table)}"',))[0][0] is not None

    def schema_snapshot(self, table: str) -> list[tuple[object, ...]]:
        """Everything that defines a table: its columns, constraints, indexes and sequence."""
        relation = f'"{folded(table)}"'
        return (
            self.query(
                "SELECT attname, format_type(atttypid, atttypmod), attnotnull,"
                " pg_get_expr(adbin, adrelid) FROM pg_attribute"
                " LEFT JOIN pg_attrdef ON adrelid = attrelid AND adnum = attnum"
                " WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped"
                " ORDER BY attnum", (relation,))
            + self.query(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
                " WHERE conrelid = to_regclass(%s) ORDER BY conname", (relation,))
            + self.query(
                "SELECT indexname, indexdef FROM pg_indexes"
                " WHERE tablename = %s AND schemaname = current_schema() ORDER BY indexname",
                (folded(table),))
            + self.query(
                "SELECT max_value, cycle FROM pg_sequences"
                " WHERE format('%%I.%%I', schemaname, sequencename)::regclass"
                " = pg_get_serial_sequence(%s, 'id')::regclass", (relation,))
        )

    def column_names(self, table: str) -> list[str]:
        return [str(row[0]) for row in self.query(
            "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s)"
            " AND attnum > 0 AND NOT attisdropped ORDER BY attnum", (f'"{folded(table)}"',))]


class MySQLBackend(OpenSIPSTables):
    """A fresh database per test on the session's private MariaDB, with a PyMySQL side door."""

    # scripts/mysql/standard-create.sql and registrant-create.sql as OpenSIPS ships them.
    OPENSIPS_VERSION_TABLE = """CREATE TABLE version (
    table_name CHAR(32) NOT NULL,
    table_version INT UNSIGNED DEFAULT 0 NOT NULL,
    CONSTRAINT t_name_idx UNIQUE (table_name)
) ENGINE=MyISAM"""
    OPENSIPS_REGISTRANT_V3 = """CREATE TABLE registrant (
    id INT(10) UNSIGNED AUTO_INCREMENT PRIMARY KEY NOT NULL,
    registrar CHAR(255) DEFAULT '' NOT NULL,
    proxy CHAR(255) DEFAULT NULL,
    aor CHAR(255) DEFAULT '' NOT NULL,
    third_party_registrant CHAR(255) DEFAULT NULL,
    username CHAR(64) DEFAULT NULL,
    password CHAR(64) DEFAULT NULL,
    binding_URI CHAR(255) DEFAULT '' NOT NULL,
    binding_params CHAR(64) DEFAULT NULL,
    expiry INT(1) UNSIGNED DEFAULT NULL,
    forced_socket CHAR(64) DEFAULT NULL,
    cluster_shtag CHAR(64) DEFAULT NULL,
    state INT DEFAULT 0 NOT NULL,
    CONSTRAINT registrant_idx UNIQUE (aor, binding_URI, registrar)
) ENGINE=InnoDB"""
    OPENSIPS_REGISTRANT_V2 = version_2(OPENSIPS_REGISTRANT_V3)

    def __init__(self, server: MariaDB, url: str) -> None:
        self.server = server
        self.url = url
        self.dbname = url.rsplit("/", 1)[1]

    def make_store(self, columns: Columns) -> IRegistrantStore:
        return MySQLStore(mysql_params(self.url), columns, reactor=reactor)

    def unreachable_store(self, columns: Columns) -> IRegistrantStore:
        return MySQLStore(mysql_params(f"mysql://uac:pw@127.0.0.1:{free_port('tcp')}/x"), columns,
                          reactor=reactor)

    def execute(self, sql: str, params: Sequence[object] = ()) -> None:
        self.server.execute(sql.replace("?", "%s"), tuple(params) or None, self.dbname)

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        return self.server.execute(sql.replace("?", "%s"), tuple(params) or None, self.dbname)

    def insert_row(self, columns: Columns, values: dict[str, object]) -> int:
        """Insert logical-name values by hand, bypassing every check; return the id."""
        names = ", ".join(f"`{columns.physical(k)}`" for k in values)
        marks = ", ".join("%s" for _ in values)
        connection = self.server.connect(self.dbname)
        try:
            with connection.cursor() as cursor:
                cursor.execute(f"INSERT INTO `{columns.table}` ({names}) VALUES ({marks})",
                               tuple(values.values()))
                return int(cursor.lastrowid)
        finally:
            connection.close()

    def table_exists(self, table: str) -> bool:
        return bool(self.query(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = DATABASE()"
            " AND table_name = %s", (table,)))

    def schema_snapshot(self, table: str) -> list[tuple[object, ...]]:
        """Everything that defines a table: engine, collation, columns, indexes."""
        return (
            self.query(
                "SELECT engine, table_collation FROM information_schema.tables"
                " WHERE table_schema = DATABASE() AND table_name = %s", (table,))
            + self.query(
                "SELECT column_name, column_type, is_nullable, column_default, extra"
                " FROM information_schema.columns WHERE table_schema = DATABASE()"
                " AND table_name = %s ORDER BY ordinal_position", (table,))
            + self.query(
                "SELECT index_name, non_unique, seq_in_index, column_name"
                " FROM information_schema.statistics WHERE table_schema = DATABASE()"
                " AND table_name = %s ORDER BY index_name, seq_in_index", (table,))
        )

    def column_names(self, table: str) -> list[str]:
        return [str(row[0]) for row in self.query(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = DATABASE()"
            " AND table_name = %s ORDER BY ordinal_position", (table,))]


BACKENDS = {"sqlite": SQLiteBackend, "postgres": PostgresBackend, "mysql": MySQLBackend}
Backend = SQLiteBackend | PostgresBackend | MySQLBackend


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if BACKENDS[request.param] is PostgresBackend:
        return PostgresBackend(request.getfixturevalue("postgres"),
                               request.getfixturevalue("pg_dsn"))
    if BACKENDS[request.param] is MySQLBackend:
        return MySQLBackend(request.getfixturevalue("mariadb"),
                            request.getfixturevalue("mysql_url"))
    return SQLiteBackend(tmp_path)
