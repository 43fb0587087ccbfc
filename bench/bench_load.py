"""Loading the ``registrant`` table: open + load of N rows on each database.

For each database the script starts a private server (as the tests do:
``tests/peers``), creates OpenSIPS's table with N valid rows, then times a
fresh store's ``open()`` followed by ``load(validate)``, which is what the
service does at start-up and on ``reg_reload``.  Best of five runs, so that
other load on the machine counts less.  Run from the repository::

    python bench/bench_load.py --rows 10000 --db sqlite postgres mysql

Every server started is stopped by its PID at the end, on failure too.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from twisted.internet import task  # noqa: E402
from twisted.internet.defer import ensureDeferred  # noqa: E402

from uacregistrant.store import make_store  # noqa: E402
from uacregistrant.store.rows import Columns, record_from_row  # noqa: E402
from uacregistrant.store.url import parse_db_url  # noqa: E402

COLUMNS = ("registrar", "aor", "username", "password", "binding_URI", "expiry")
validate = partial(record_from_row, timer_interval=60, default_expires=3600)


def rows(n: int) -> list[tuple[object, ...]]:
    return [
        ("sip:127.0.0.1:5080", f"sip:user{i:06d}@example.test", f"user{i:06d}", "secret",
         f"sip:user{i:06d}@127.0.0.1:5062", 3600)
        for i in range(n)
    ]


def insert(sql_mark: str) -> str:
    return (f"INSERT INTO registrant ({', '.join(COLUMNS)})"
            f" VALUES ({', '.join(sql_mark for _ in COLUMNS)})")


@contextmanager
def sqlite_table(n: int) -> Iterator[str]:
    from tests.store.conftest import SQLiteBackend

    with tempfile.TemporaryDirectory(prefix="uac-registrant-bench-") as directory:
        backend = SQLiteBackend(Path(directory))
        backend.create_opensips_table(3)
        with sqlite3.connect(backend.path) as connection:
            connection.executemany(insert("?"), rows(n))
        connection.close()
        yield f"sqlite:///{backend.path}"


@contextmanager
def postgres_table(n: int) -> Iterator[str]:
    from psycopg2.extras import execute_values

    from tests.peers.postgres import Postgres
    from tests.store.conftest import PostgresBackend

    cluster = Postgres()
    try:
        cluster.start()
        backend = PostgresBackend(cluster, cluster.create_database("bench"))
        backend.create_opensips_table(3)
        connection = cluster.connect("bench")
        with connection.cursor() as cursor:
            execute_values(cursor, insert("%s").rsplit(" VALUES", 1)[0] + " VALUES %s", rows(n))
        connection.close()
        yield backend.dsn
    finally:
        cluster.destroy()


@contextmanager
def mysql_table(n: int) -> Iterator[str]:
    from tests.peers.mariadb import MariaDB
    from tests.store.conftest import MySQLBackend

    server = MariaDB()
    try:
        server.start()
        backend = MySQLBackend(server, server.create_database("bench"))
        backend.create_opensips_table(3)
        connection = server.connect("bench")
        with connection.cursor() as cursor:
            cursor.executemany(insert("%s"), rows(n))
        connection.close()
        yield backend.url
    finally:
        server.destroy()


TABLES = {"sqlite": sqlite_table, "postgres": postgres_table, "mysql": mysql_table}


async def best_of(reactor: Any, db_url: str, n: int, runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        store = make_store(parse_db_url(db_url), Columns(), reactor)
        started = time.perf_counter()
        await store.open()
        result = await store.load(validate)
        elapsed = time.perf_counter() - started
        await store.close()
        if len(result.records) != n or result.skipped:
            raise SystemExit(f"loaded {len(result.records)} of {n}, skipped {result.skipped[:3]}")
        best = min(best, elapsed)
    return best


async def run(reactor: Any, args: argparse.Namespace) -> None:
    for db in args.db:
        with TABLES[db](args.rows) as db_url:
            seconds = await best_of(reactor, db_url, args.rows, args.runs)
        print(f"{db:<9} {args.rows:>7,} rows: open + load {seconds:.3f} s"
              f" ({args.rows / seconds:,.0f} rows/s, best of {args.runs})", flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--db", nargs="+", choices=sorted(TABLES), default=sorted(TABLES))
    args = parser.parse_args(argv)
    task.react(lambda reactor: ensureDeferred(run(reactor, args)))


if __name__ == "__main__":
    main()
