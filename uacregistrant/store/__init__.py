"""Where the registrant records live: the interface and its implementations."""

from __future__ import annotations

from uacregistrant.store.interface import IRegistrantStore
from uacregistrant.store.rows import Columns


def make_store(db_url: str, columns: Columns) -> IRegistrantStore:
    """The store for a ``db_url``; errors never repeat the URL (it may hold a password)."""
    # Imported here: config may import store.rows, and rows must stay Twisted-free.
    from uacregistrant.config import parse_db_url
    from uacregistrant.store.mysql import MySQLStore
    from uacregistrant.store.postgres import PostgresStore
    from uacregistrant.store.sqlite import SQLiteStore

    db = parse_db_url(db_url)
    if db.kind == "sqlite":
        return SQLiteStore(db.path, columns)
    if db.kind == "mysql":
        return MySQLStore(db.dsn, columns)
    return PostgresStore(db.dsn, columns)
