"""DDL text: OpenSIPS's tables (``scripts/sqlite/*-create.sql``) and our runtime table."""

from __future__ import annotations

from collections.abc import Sequence

from uacregistrant.registrant.record import RecordKey
from uacregistrant.store.interface import RUNTIME_TABLE, RuntimeState
from uacregistrant.store.rows import Columns


def quote_identifier(name: str) -> str:
    """SQL-standard quoting, so configurable names cannot break (or inject) a statement."""
    return '"' + name.replace('"', '""') + '"'


# scripts/sqlite/standard-create.sql
SQLITE_VERSION_TABLE = """CREATE TABLE version (
    table_name CHAR(32) NOT NULL,
    table_version INTEGER DEFAULT 0 NOT NULL,
    CONSTRAINT version_t_name_idx  UNIQUE (table_name)
)"""


def sqlite_registrant_table(columns: Columns) -> str:
    """scripts/sqlite/registrant-create.sql (version 3) with the configured names."""
    q = quote_identifier
    c = columns
    return f"""CREATE TABLE {q(c.table)} (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    {q(c.registrar)} CHAR(255) DEFAULT '' NOT NULL,
    {q(c.proxy)} CHAR(255) DEFAULT NULL,
    {q(c.aor)} CHAR(255) DEFAULT '' NOT NULL,
    {q(c.third_party_registrant)} CHAR(255) DEFAULT NULL,
    {q(c.username)} CHAR(64) DEFAULT NULL,
    {q(c.password)} CHAR(64) DEFAULT NULL,
    {q(c.binding_uri)} CHAR(255) DEFAULT '' NOT NULL,
    {q(c.binding_params)} CHAR(64) DEFAULT NULL,
    {q(c.expiry)} INTEGER DEFAULT NULL,
    {q(c.forced_socket)} CHAR(64) DEFAULT NULL,
    {q(c.cluster_shtag)} CHAR(64) DEFAULT NULL,
    {q(c.state)} INTEGER DEFAULT 0 NOT NULL,
    CONSTRAINT {q(c.table + "_registrant_idx")} UNIQUE ({q(c.aor)}, {q(c.binding_uri)}, {q(c.registrar)})
)"""


SQLITE_RUNTIME_TABLE = f"""CREATE TABLE IF NOT EXISTS {RUNTIME_TABLE} (
    aor TEXT NOT NULL,
    binding_uri TEXT NOT NULL,
    registrar TEXT NOT NULL,
    call_id TEXT NOT NULL,
    from_tag TEXT NOT NULL,
    cseq INTEGER NOT NULL,
    state INTEGER NOT NULL,
    expires INTEGER NOT NULL,
    expires_at REAL NOT NULL,
    last_code INTEGER,
    last_reason TEXT,
    updated_at REAL NOT NULL,
    PRIMARY KEY (aor, binding_uri, registrar)
)"""

RUNTIME_COLUMNS: tuple[str, ...] = (
    "aor",
    "binding_uri",
    "registrar",
    "call_id",
    "from_tag",
    "cseq",
    "state",
    "expires",
    "expires_at",
    "last_code",
    "last_reason",
    "updated_at",
)


def key_params(key: RecordKey) -> tuple[str, str, str]:
    """The (aor, binding_URI, registrar) triple as query parameters."""
    return (key.aor, key.binding_uri, key.registrar)


def runtime_params(state: RuntimeState) -> tuple[object, ...]:
    """A RuntimeState as query parameters, in RUNTIME_COLUMNS order."""
    key = state.key
    return (
        key.aor,
        key.binding_uri,
        key.registrar,
        state.call_id,
        state.from_tag,
        state.cseq,
        state.state,
        state.expires,
        state.expires_at,
        state.last_code,
        state.last_reason,
        state.updated_at,
    )


def runtime_from_row(row: Sequence[object]) -> RuntimeState:
    """A row of RUNTIME_COLUMNS as a RuntimeState."""
    key = RecordKey(aor=row[0], binding_uri=row[1], registrar=row[2])
    return RuntimeState(
        key=key,
        call_id=row[3],
        from_tag=row[4],
        cseq=row[5],
        state=row[6],
        expires=row[7],
        expires_at=row[8],
        last_code=row[9],
        last_reason=row[10],
        updated_at=row[11],
    )
