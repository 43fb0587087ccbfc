"""What differs between SQL databases, and the statements built on top of it.

A ``Dialect`` knows its parameter mark, how it quotes and folds names, its
column types, how it writes "insert or update" and how it looks a table up.
``Statements`` turns a dialect and the configured names into the SQL of every
store operation, once per store, and ``open_schema`` is the one procedure
that checks or creates the tables, written as steps any driver can run
(a DB-API cursor in a thread, or txpostgres' asynchronous one).
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterable, Mapping
from typing import Any, ClassVar

from twisted.logger import Logger

from uacregistrant.store.interface import TABLE_VERSION, StoreError
from uacregistrant.store.rows import LOGICAL_COLUMNS, Columns
from uacregistrant.store.schema import (
    RUNTIME,
    RUNTIME_COLUMNS,
    RUNTIME_KEY,
    VERSION,
    Column,
    Table,
    registrant_table,
)

# One step of a procedure: (sql, params) out, the fetched rows back in.
Query = tuple[str, tuple[Any, ...]]
Steps = Generator[Query, list[tuple[Any, ...]], None]

log = Logger()

_SIZED = re.compile(r"(\w+)\((\d+)\)")


class Dialect:
    """The SQL of one database; subclasses set the class attributes."""

    mark: ClassVar[str] = "?"
    quote_char: ClassVar[str] = '"'
    # Portable type name -> SQL type; sized names as "string" with "{n}" in the SQL.
    types: ClassVar[Mapping[str, str]]
    # After the closing parenthesis of OpenSIPS's tables, and of ours.
    table_options: ClassVar[str] = ""
    own_table_options: ClassVar[str] = ""
    # Index names are per schema (prefix the table) or per table.
    prefix_index_names: ClassVar[bool] = True
    # One parameter, the relation_param of a name; a row back when the table exists.
    table_exists_sql: ClassVar[str]
    # One parameter, the relation_param of a table; its column names back.
    columns_sql: ClassVar[str]

    def fold(self, name: str) -> str:
        """The name the database stores for an identifier OpenSIPS writes unquoted."""
        return name

    def quote(self, name: str) -> str:
        """Quoted, so configured names cannot break (or inject) a statement."""
        q = self.quote_char
        return q + name.replace(q, q + q) + q

    def identifier(self, name: str) -> str:
        return self.quote(self.fold(name))

    def relation_param(self, name: str) -> str:
        return name

    def column_present(self, name: str, present: set[str]) -> bool:
        return name.lower() in {p.lower() for p in present}

    def marks(self, count: int) -> str:
        return ", ".join(self.mark for _ in range(count))

    def column_type(self, portable: str) -> str:
        sized = _SIZED.fullmatch(portable)
        if sized and portable not in self.types:
            return self.types[sized.group(1)].format(n=sized.group(2))
        return self.types[portable]

    def create_table(self, table: Table, *, if_not_exists: bool = False) -> str:
        lines = [self._column(column) for column in table.columns]
        if table.primary_key:
            lines.append(f"PRIMARY KEY ({self._names(table.primary_key)})")
        if table.unique is not None:
            name, columns = table.unique
            if self.prefix_index_names:
                name = f"{table.name}_{name}"
            lines.append(f"CONSTRAINT {self.identifier(name)} UNIQUE ({self._names(columns)})")
        body = ",\n    ".join(lines)
        exists = "IF NOT EXISTS " if if_not_exists else ""
        options = self.own_table_options if table.ours else self.table_options
        return f"CREATE TABLE {exists}{self.identifier(table.name)} (\n    {body}\n){options}"

    def add_column(self, table: Table, column: Column) -> str:
        """ALTER TABLE that adds ``column`` (nullable or with a default) to an existing ``table``."""
        return f"ALTER TABLE {self.identifier(table.name)} ADD COLUMN {self._column(column)}"

    def _column(self, column: Column) -> str:
        text = f"{self.identifier(column.name)} {self.column_type(column.type)}"
        if column.default is not None:
            text += f" DEFAULT {column.default}"
        if column.not_null:
            text += " NOT NULL"
        return text

    def _names(self, names: Iterable[str]) -> str:
        return ", ".join(self.identifier(n) for n in names)

    def upsert(self, table: str, columns: tuple[str, ...], key: tuple[str, ...], rows: int) -> str:
        """INSERT of ``rows`` rows that updates the non-key columns of a row already there."""
        row = f"({self.marks(len(columns))})"
        return (
            f"INSERT INTO {self.identifier(table)} ({self._names(columns)})"
            f" VALUES {', '.join(row for _ in range(rows))}"
            + self.on_conflict(key, [c for c in columns if c not in key])
        )

    def on_conflict(self, key: tuple[str, ...], updates: list[str]) -> str:
        sets = ", ".join(f"{self.identifier(c)} = excluded.{self.identifier(c)}" for c in updates)
        return f" ON CONFLICT ({self._names(key)}) DO UPDATE SET {sets}"

    def after_create(self, statements: Statements) -> Steps:
        """More steps after the registrant table is created."""
        return
        yield

    def schema_lock(self) -> Query | None:
        """Taken before the tables are looked at, so that two nodes create them once."""
        return None


class Statements:
    """The SQL of every store operation for one dialect and one set of names."""

    def __init__(self, dialect: Dialect, columns: Columns) -> None:
        d = self.dialect = dialect
        self.columns = columns
        q = d.identifier
        m = d.mark
        self.table = q(columns.table)
        names = ", ".join(q(columns.physical(c)) for c in LOGICAL_COLUMNS)
        self.select = f"SELECT {names} FROM {self.table}"
        self.select_all = f"{self.select} ORDER BY {q('id')}"
        self.where_key = (
            f"{q(columns.aor)} = {m} AND {q(columns.binding_uri)} = {m}"
            f" AND {q(columns.registrar)} = {m}"
        )
        # The lowest id, as a full load keeps, should an old table repeat a key.
        self.select_key = f"{self.select} WHERE {self.where_key} ORDER BY {q('id')}"
        self.set_state = f"UPDATE {self.table} SET {q(columns.state)} = {m} WHERE {self.where_key}"
        self.delete = f"DELETE FROM {self.table} WHERE {self.where_key}"
        self.version = f"SELECT table_version FROM version WHERE table_name = {m}"
        self.insert_version = f"INSERT INTO version (table_name, table_version) VALUES ({m}, {m})"
        self.create_version = d.create_table(VERSION)
        self.create_registrant = d.create_table(registrant_table(columns))
        self.create_runtime = d.create_table(RUNTIME, if_not_exists=True)
        runtime = ", ".join(q(c) for c in RUNTIME_COLUMNS)
        self.select_runtime = f"SELECT {runtime} FROM {q(RUNTIME.name)}"
        self.delete_runtime = (
            f"DELETE FROM {q(RUNTIME.name)} WHERE "
            + " AND ".join(f"{q(c)} = {m}" for c in RUNTIME_KEY)
        )

    def update_row(self, logical: Iterable[str]) -> str:
        sets = ", ".join(f"{self.dialect.identifier(self.columns.physical(c))} = {self.dialect.mark}"
                         for c in logical)
        return f"UPDATE {self.table} SET {sets} WHERE {self.where_key}"

    def insert_row(self, logical: Iterable[str]) -> str:
        names = [self.dialect.identifier(self.columns.physical(c)) for c in logical]
        return (f"INSERT INTO {self.table} ({', '.join(names)})"
                f" VALUES ({self.dialect.marks(len(names))})")

    def save_runtime(self, rows: int) -> str:
        return self.dialect.upsert(RUNTIME.name, RUNTIME_COLUMNS, RUNTIME_KEY, rows)


def open_schema(sql: Statements) -> Steps:
    """Check the tables, create the missing ones; refuse a table version other than 3.

    An existing ``registrant`` table is never altered.
    """
    d = sql.dialect
    table = sql.columns.table
    lock = d.schema_lock()
    if lock is not None:
        yield lock
    if not (yield (d.table_exists_sql, (d.relation_param("version"),))):
        yield sql.create_version, ()
    found = yield sql.version, (table,)
    version = found[0][0] if found else None
    if (yield (d.table_exists_sql, (d.relation_param(table),))):
        if version != TABLE_VERSION:
            raise StoreError(
                f"table {table} has version {version}, expected {TABLE_VERSION}"
                " (upgrade it with opensips-cli or OpenSIPS's migration scripts)"
            )
        present = {str(row[0]) for row in (yield d.columns_sql, (d.relation_param(table),))}
        for logical in LOGICAL_COLUMNS:
            name = sql.columns.physical(logical)
            if not d.column_present(name, present):
                raise StoreError(f"table {table} has no column {name} (the {logical} column)")
    else:
        if version is None:
            # The insert first: on SQLite it opens the transaction the CREATE then joins.
            yield sql.insert_version, (table, TABLE_VERSION)
        elif version != TABLE_VERSION:
            raise StoreError(
                f"version row of table {table} says {version}, expected {TABLE_VERSION}"
            )
        yield sql.create_registrant, ()
        yield from d.after_create(sql)
        log.info("created table {table} (version {version})", table=table, version=TABLE_VERSION)
    yield sql.create_runtime, ()
    yield from migrate_runtime(d)


def migrate_runtime(d: Dialect) -> Steps:
    """Add the runtime columns a table made by an earlier version lacks.

    Runs under the dialect's schema lock (or MySQL's named lock), so two nodes
    opening one database together add each column once: the second one looks
    after the first is done and finds nothing missing.  Rows already there get
    the column's default (NULL, or 0 for the counters).

    A node of the previous version sharing the table during an upgrade keeps
    working: it names its twelve columns in its SELECT and its upsert, so it
    never reads the new ones; a row it inserts gets their defaults, and a row
    it updates keeps the values a newer node wrote there (its upsert sets only
    the columns it knows).
    """
    present = {str(row[0]) for row in (yield d.columns_sql, (d.relation_param(RUNTIME.name),))}
    for column in RUNTIME.columns:
        if not d.column_present(column.name, present):
            if column.not_null and column.default is None:
                raise StoreError(
                    f"table {RUNTIME.name} has no column {column.name},"
                    " which cannot be added to an existing table"
                )
            yield d.add_column(RUNTIME, column), ()
            log.info("added column {column} to table {table}", column=column.name, table=RUNTIME.name)


def run_steps(cursor: Any, steps: Steps) -> None:
    """Drive ``steps`` on a DB-API cursor (in the database thread)."""
    rows: list[tuple[Any, ...]] | None = None
    while True:
        try:
            query = steps.send(rows)  # type: ignore[arg-type]
        except StopIteration:
            return
        sql, params = query
        if params:
            cursor.execute(sql, params)
        else:
            cursor.execute(sql)
        rows = list(cursor.fetchall()) if cursor.description else []
