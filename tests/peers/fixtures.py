"""pytest fixtures for the real peers; load with ``pytest_plugins = ["tests.peers.fixtures"]``.

- ``kamailio``: a factory, ``kamailio(users={"alice": "pw"}, min_expires=60)`` returns a
  started :class:`~tests.peers.kamailio.Kamailio` on a free port; all are stopped at teardown.
- ``postgres``: one private :class:`~tests.peers.postgres.Postgres` cluster for the session.
- ``pg_dsn``: a fresh, empty database on it for one test (dropped afterwards).
- ``own_postgres``: a PostgreSQL cluster of one test alone (to stop and start on purpose).
- ``mariadb``: one private :class:`~tests.peers.mariadb.MariaDB` server for the session.
- ``mysql_url``: a fresh, empty database on it for one test (dropped afterwards).
- ``own_mariadb``: a MariaDB server of one test alone (to stop and start on purpose).

Missing binaries skip these tests, or fail them when ``CI=true``.
"""

from __future__ import annotations

import pathlib
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.peers import free_port, unavailable
from tests.peers import kamailio as kamailio_peer
from tests.peers import mariadb as mariadb_peer
from tests.peers import postgres as postgres_peer


@pytest.fixture
def kamailio(tmp_path: pathlib.Path) -> Iterator[Callable[..., kamailio_peer.Kamailio]]:
    started: list[kamailio_peer.Kamailio] = []

    def start(*, users: dict[str, str] | None = None, **options: Any) -> kamailio_peer.Kamailio:
        modules = kamailio_peer.REQUIRED_MODULES + (("tls",) if options.get("tls_port") else ())
        reason = kamailio_peer.unavailable_reason(modules)
        if reason is not None:
            unavailable(reason)
        options.setdefault("port", free_port("udp"))
        registrar = kamailio_peer.Kamailio(
            tmp_path / "kamailio-{}".format(len(started)), users=users or {}, **options)
        started.append(registrar)
        registrar.start()
        return registrar

    try:
        yield start
    finally:
        for registrar in started:
            registrar.stop()


def _server(peer: Any, make: Callable[[], Any]) -> Iterator[Any]:
    """A started server of ``peer`` (the postgres or mariadb module), destroyed afterwards."""
    reason = peer.unavailable_reason()
    if reason is not None:
        unavailable(reason)
    server = make()
    try:
        server.start()
        yield server
    finally:
        server.destroy()


def _fresh_database(server: Any) -> Iterator[str]:
    """A fresh, empty database on ``server`` (its URL), dropped afterwards."""
    name = "test_" + uuid.uuid4().hex[:12]
    url = server.create_database(name)
    try:
        yield url
    finally:
        # A test that stopped the shared server must not take the others down with it.
        if not server.running():
            server.start()
        server.drop_database(name)


@pytest.fixture(scope="session")
def postgres() -> Iterator[postgres_peer.Postgres]:
    yield from _server(postgres_peer, postgres_peer.Postgres)


@pytest.fixture
def pg_dsn(postgres: postgres_peer.Postgres) -> Iterator[str]:
    yield from _fresh_database(postgres)


@pytest.fixture
def own_postgres() -> Iterator[postgres_peer.Postgres]:
    """A PostgreSQL of this test alone: it is stopped and started on purpose."""
    yield from _server(postgres_peer, postgres_peer.Postgres)


@pytest.fixture(scope="session")
def mariadb() -> Iterator[mariadb_peer.MariaDB]:
    yield from _server(mariadb_peer, mariadb_peer.MariaDB)


@pytest.fixture
def mysql_url(mariadb: mariadb_peer.MariaDB) -> Iterator[str]:
    yield from _fresh_database(mariadb)


@pytest.fixture
def own_mariadb() -> Iterator[mariadb_peer.MariaDB]:
    """A MariaDB of this test alone: it is stopped and started on purpose."""
    yield from _server(mariadb_peer, mariadb_peer.MariaDB)
