"""A PostgreSQL database created with ENCODING 'SQL_ASCII' (old deployments
have them) stores whatever bytes a client sends: one row whose text is not
UTF-8 skips that row only, and UTF-8 text beside it reads as it should."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import reactor

from tests.peers.postgres import Postgres
from tests.store.conftest import PostgresBackend
from uacregistrant.registrant.record import RecordConfig
from uacregistrant.store.postgres import PostgresStore
from uacregistrant.store.rows import Columns, record_from_row

pytestmark = pytest.mark.timeout(60)

SECRET = "sql-ascii-secret"


def validate(row: object) -> RecordConfig:
    return record_from_row(row, timer_interval=10, default_expires=3600)  # type: ignore[arg-type]


@pytest_twisted.ensureDeferred
async def test_sql_ascii_database_skips_a_row_that_is_not_utf8(postgres: Postgres) -> None:
    connection = postgres.connect()
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("DROP DATABASE IF EXISTS legacy_ascii")
        cursor.execute("CREATE DATABASE legacy_ascii ENCODING 'SQL_ASCII' TEMPLATE template0"
                       " LC_COLLATE 'C' LC_CTYPE 'C'")
    connection.close()
    backend = PostgresBackend(postgres, postgres.dsn("legacy_ascii"))
    backend.create_opensips_table(version=3)
    # Bytes through bytea: the side door's own client would refuse non-ASCII text.
    backend.execute(
        "INSERT INTO registrant (registrar, aor, binding_uri, expiry, username) VALUES"
        " ('sip:127.0.0.1:5080', 'sip:jose@127.0.0.1', 'sip:jose@127.0.0.1:5999', 600,"
        " convert_from(%s::bytea, 'SQL_ASCII'))",
        ("jos\u00e9".encode(),),
    )
    backend.execute(
        "INSERT INTO registrant (registrar, aor, binding_uri, expiry, password) VALUES"
        " ('sip:127.0.0.1:5080', 'sip:bad@127.0.0.1', 'sip:bad@127.0.0.1:5999', 600,"
        " convert_from(%s::bytea, 'SQL_ASCII'))",
        (b"\xff" + SECRET.encode(),),
    )
    store = PostgresStore(backend.dsn, Columns(), reactor=reactor)
    await store.open()
    try:
        result = await store.load(validate)
        assert [r.username for r in result.records] == ["jos\u00e9"]
        assert [reason for _, reason in result.skipped] == ["password is not valid UTF-8"]
        assert SECRET not in repr(result.skipped)
        # Text written back reads back the same: UTF-8 in, UTF-8 out.
        await store.upsert(validate({"registrar": "sip:127.0.0.1:5080", "aor": "sip:new@127.0.0.1",
                                     "binding_uri": "sip:new@127.0.0.1:5999", "expiry": 600,
                                     "password": "gr\u00fcn"}))
        passwords = {r.aor: r.password for r in (await store.load(validate)).records}
        assert passwords["sip:new@127.0.0.1"] == "gr\u00fcn"
    finally:
        await store.close()
