"""Where the registrant records live: the interface and its implementations."""

from __future__ import annotations

from typing import Any

from uacregistrant.store.interface import IRegistrantStore
from uacregistrant.store.rows import Columns
from uacregistrant.store.url import DbUrl


def make_store(db: DbUrl, columns: Columns, reactor: Any) -> IRegistrantStore:
    """The store a ``db_url`` names."""
    # Imported here: each pulls in its database driver.
    if db.kind == "sqlite":
        from uacregistrant.store.sqlite import SQLiteStore

        return SQLiteStore(db.path, columns, reactor=reactor)
    if db.kind == "mysql":
        from uacregistrant.store.mysql import MySQLStore

        return MySQLStore(db.mysql, columns, reactor=reactor)
    from uacregistrant.store.postgres import PostgresStore

    return PostgresStore(db.dsn, columns, reactor=reactor)
