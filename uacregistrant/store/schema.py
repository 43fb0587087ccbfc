"""Every table the stores read or create, once, whatever the database.

A table is data here (columns with portable type names, its keys); a
``Dialect`` turns it into the CREATE TABLE text of one database.  The
``registrant`` and ``version`` tables follow OpenSIPS's install scripts
(``scripts/<db>/registrant-create.sql`` and ``standard-create.sql``,
registrant version 3) so that a table we create is the one OpenSIPS would.

Portable type names: ``serial`` (the auto-numbered ``id`` key), ``string(N)``,
``int``, ``uint`` and ``uint(N)`` (unsigned where the database has it, ``N``
being MySQL's display width), ``bigint``, ``double``, ``text`` and ``key``
(text that can be part of a primary key).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from uacregistrant.registrant.record import RecordKey
from uacregistrant.store.interface import RUNTIME_TABLE, RuntimeState
from uacregistrant.store.rows import Columns


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str
    not_null: bool = False
    # An SQL literal, or None for no DEFAULT clause.
    default: str | None = None


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    # (constraint name without the table prefix, column names)
    unique: tuple[str, tuple[str, ...]] | None = None
    # Ours (not OpenSIPS's): created if missing, compared byte for byte.
    ours: bool = False


VERSION = Table(
    "version",
    (
        Column("table_name", "string(32)", not_null=True),
        Column("table_version", "uint", not_null=True, default="0"),
    ),
    unique=("t_name_idx", ("table_name",)),
)


def registrant_table(columns: Columns) -> Table:
    """The ``registrant`` table, version 3, with the configured names."""
    c = columns
    return Table(
        c.table,
        (
            Column("id", "serial", not_null=True),
            Column(c.registrar, "string(255)", not_null=True, default="''"),
            Column(c.proxy, "string(255)", default="NULL"),
            Column(c.aor, "string(255)", not_null=True, default="''"),
            Column(c.third_party_registrant, "string(255)", default="NULL"),
            Column(c.username, "string(64)", default="NULL"),
            Column(c.password, "string(64)", default="NULL"),
            Column(c.binding_uri, "string(255)", not_null=True, default="''"),
            Column(c.binding_params, "string(64)", default="NULL"),
            Column(c.expiry, "uint(1)", default="NULL"),
            Column(c.forced_socket, "string(64)", default="NULL"),
            Column(c.cluster_shtag, "string(64)", default="NULL"),
            Column(c.state, "int", not_null=True, default="0"),
        ),
        unique=("registrant_idx", (c.aor, c.binding_uri, c.registrar)),
    )


RUNTIME_KEY: tuple[str, ...] = ("aor", "binding_uri", "registrar")

RUNTIME = Table(
    RUNTIME_TABLE,
    (
        Column("aor", "key", not_null=True),
        Column("binding_uri", "key", not_null=True),
        Column("registrar", "key", not_null=True),
        Column("call_id", "text", not_null=True),
        Column("from_tag", "text", not_null=True),
        Column("cseq", "bigint", not_null=True),
        Column("state", "int", not_null=True),
        Column("expires", "bigint", not_null=True),
        Column("expires_at", "double", not_null=True),
        Column("last_code", "int"),
        Column("last_reason", "text"),
        Column("updated_at", "double", not_null=True),
        # Added after the first release: an existing table gains them in place
        # (``open_schema``), so each is nullable or has a default.  New columns
        # go at the end, where ADD COLUMN puts them.
        Column("min_expires", "int"),
        Column("enabled_s", "double", not_null=True, default="0"),
        Column("bound_s", "double", not_null=True, default="0"),
        Column("flaps", "int", not_null=True, default="0"),
        Column("outage_start", "double"),
        Column("outage_end", "double"),
        Column("outage_cause", "text"),
    ),
    primary_key=RUNTIME_KEY,
    ours=True,
)

RUNTIME_COLUMNS: tuple[str, ...] = tuple(c.name for c in RUNTIME.columns)


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
        state.min_expires,
        state.enabled_s,
        state.bound_s,
        state.flaps,
        state.outage_start,
        state.outage_end,
        state.outage_cause,
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
        min_expires=row[12],
        enabled_s=float(row[13]),
        bound_s=float(row[14]),
        flaps=row[15],
        outage_start=row[16],
        outage_end=row[17],
        outage_cause=row[18],
    )


# The sharing tags of a cluster on MySQL: who owns a tag since when, who asked
# for it until when, each node's last heartbeat and the session that speaks for
# it.  Times are epoch seconds of the database server's clock.
CLUSTER_SHTAGS = Table(
    "uac_registrant_shtags",
    (
        Column("tag", "key", not_null=True),
        Column("cluster_id", "int", not_null=True),
        Column("node_id", "key"),
        Column("since", "double"),
        Column("wanted_by", "key"),
        Column("wanted_until", "double"),
    ),
    primary_key=("tag", "cluster_id"),
    ours=True,
)

CLUSTER_NODES = Table(
    "uac_registrant_nodes",
    (Column("node_id", "key", not_null=True), Column("beat", "double", not_null=True)),
    primary_key=("node_id",),
    ours=True,
)

CLUSTER_SESSIONS = Table(
    "uac_registrant_sessions",
    (Column("conn", "bigint", not_null=True), Column("node_id", "key", not_null=True)),
    primary_key=("conn",),
    ours=True,
)
