"""Fixtures of the cluster tests: the registrar, the database a cluster shares, on
PostgreSQL and on MariaDB (each test that takes ``database`` or ``own_database``
runs on both), and two nodes' lock backends on either."""

from __future__ import annotations

import pytest
from twisted.internet import reactor

from tests.cluster.cluster import USERS, Database
from uacregistrant.cluster.locks import PostgresLocks
from uacregistrant.cluster.mysql_locks import MySQLLocks
from uacregistrant.store.url import mysql_params


@pytest.fixture
def registrar(kamailio):
    return kamailio(users=USERS, min_expires=10, max_expires=3600)


@pytest.fixture(params=["postgres", "mysql"])
def database(request) -> Database:
    """A fresh database on the session's server (PostgreSQL, then MariaDB)."""
    if request.param == "mysql":
        return Database("mysql", request.getfixturevalue("mariadb"), request.getfixturevalue("mysql_url"))
    return Database("postgres", request.getfixturevalue("postgres"), request.getfixturevalue("pg_dsn"))


@pytest.fixture(params=["postgres", "mysql"])
def own_database(request) -> Database:
    """A database on a server of this test alone: it is stopped and started on purpose."""
    server = request.getfixturevalue("own_mariadb" if request.param == "mysql" else "own_postgres")
    return Database(request.param, server, server.create_database("registrant"))


def _two_nodes(make):
    """Nodes a and b on the backend ``make(name)`` makes, and what each was notified of."""
    notes: dict[str, list[str]] = {"a": [], "b": []}
    made = {name: make(name) for name in notes}
    for name, backend in made.items():
        backend.on_notify = notes[name].append
    yield made, notes
    for backend in made.values():
        backend.reset()


@pytest.fixture
def pg_nodes(pg_dsn):
    yield from _two_nodes(lambda name: PostgresLocks(pg_dsn, name, reactor))


@pytest.fixture
def mysql_nodes(mysql_url):
    yield from _two_nodes(lambda name: MySQLLocks(mysql_params(mysql_url), name, reactor, takeover_s=3))
