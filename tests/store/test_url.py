"""db_url parsing, and the retry policy each store declares."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import uacregistrant.store
from uacregistrant.store.interface import IRegistrantStore
from uacregistrant.store.url import DbUrl, MySQLParams, parse_db_url, redact_url

PG_URL = "postgres://reg:s3cr3tpw@127.0.0.1:5432/registrant"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///rel/path.sqlite", DbUrl("sqlite", path="rel/path.sqlite")),
        ("sqlite:////abs/p.sqlite", DbUrl("sqlite", path="/abs/p.sqlite")),
        (PG_URL, DbUrl("postgres", dsn=PG_URL)),
        ("postgresql://127.0.0.1/registrant", DbUrl("postgres", dsn="postgresql://127.0.0.1/registrant")),
        ("mysql://reg:pw@db:3307/opensips", DbUrl("mysql", dsn="mysql://reg:pw@db:3307/opensips",
                                                  mysql=MySQLParams("reg", "pw", "opensips", "db", 3307))),
    ],
)
def test_parse_db_url_and_back(url: str, expected: DbUrl) -> None:
    assert parse_db_url(url) == expected
    assert expected.text == url


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("sqlite:///", "names no SQLite file"),
        ("sqlite:///dir/", "names no SQLite file"),
        ("sqlite://relative.sqlite", "is not sqlite:///"),
        ("postgres://reg:s3cr3tpw@h:notaport/db", "has a bad port"),
        ("ftp://reg:s3cr3tpw@h/db", "is not sqlite:///"),
        ("mysql://reg:s3cr3tpw@h:notaport/db", "has a bad port"),
        ("mysql://reg:s3cr3tpw@h/", "names no database"),
        ("mysql://reg:s3cr3tpw@h/db?ssl=1", "unknown option 'ssl'"),
    ],
)
def test_parse_db_url_refuses_without_the_password(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as e:
        parse_db_url(url)
    assert "s3cr3tpw" not in str(e.value)


def test_shown_forms_mask_the_password() -> None:
    db = parse_db_url(PG_URL)
    for text in (str(db), repr(db), db.shown):
        assert "s3cr3tpw" not in text
        assert "reg:***@127.0.0.1:5432" in text
    assert redact_url("postgres://reg@127.0.0.1/registrant") == "postgres://reg@127.0.0.1/registrant"
    assert redact_url("sqlite:///x.sqlite") == "sqlite:///x.sqlite"


def _store_classes() -> list[type]:
    found = []
    for info in pkgutil.iter_modules(uacregistrant.store.__path__, "uacregistrant.store."):
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if isinstance(value, type) and IRegistrantStore.implementedBy(value) and value.__module__ == info.name:
                found.append(value)
    return found


def test_every_store_says_whether_start_up_waits_for_an_outage() -> None:
    classes = {cls.__name__: cls for cls in _store_classes()}
    assert {"SQLiteStore", "PostgresStore", "MySQLStore", "MemoryStore"} <= set(classes)
    for cls in classes.values():
        assert isinstance(cls.retry_unavailable, bool), cls.__name__
    assert classes["SQLiteStore"].retry_unavailable is False
    assert classes["PostgresStore"].retry_unavailable is True
    assert classes["MySQLStore"].retry_unavailable is True
