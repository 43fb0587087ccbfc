"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .udp_peers import ANSWER, ScriptedRegistrar


@pytest.fixture
def scripted_registrar() -> Iterator[ScriptedRegistrar]:
    """A UDP registrar answering every REGISTER until a test changes its ``mode``."""
    registrar = ScriptedRegistrar(ANSWER).start()
    yield registrar
    registrar.stop()


@pytest.fixture(params=["sqlite", "postgres", "mysql"])
def db_url(request, tmp_path) -> str:
    """The database of a test run on each kind: an SQLite file, PostgreSQL, MariaDB."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registrant.sqlite'}"
    return request.getfixturevalue("mysql_url" if request.param == "mysql" else "pg_dsn")
