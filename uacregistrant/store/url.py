"""``db_url``: which store, and where; the only place such a URL is parsed.

Pure code, importing nothing of ours, so that both the configuration and the
stores can use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit, urlunsplit


@dataclass(frozen=True, slots=True, repr=False)
class DbUrl:
    """Where the records live: an SQLite file, a PostgreSQL DSN or a MySQL URL."""

    kind: Literal["sqlite", "postgres", "mysql"]
    path: str | None = None
    # The URL as given (libpq accepts it unchanged); it may hold a password.
    dsn: str | None = None

    @property
    def text(self) -> str:
        """The URL this was parsed from (secrets included)."""
        return f"sqlite:///{self.path}" if self.kind == "sqlite" else str(self.dsn)

    @property
    def shown(self) -> str:
        """The URL with its password masked: safe for logs and errors."""
        return redact_url(self.text)

    def __repr__(self) -> str:
        dsn = None if self.dsn is None else redact_url(self.dsn)
        return f"DbUrl(kind={self.kind!r}, path={self.path!r}, dsn={dsn!r})"

    def __str__(self) -> str:
        return self.shown


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (``user:***@host``)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hostport}"))


def parse_db_url(url: str) -> DbUrl:
    """Split a ``db_url`` into the store kind and its location.

    Raises ValueError with a reason that never shows the password.
    """
    shown = redact_url(url)
    if url.startswith("sqlite:///"):
        # sqlite:///rel → "rel"; sqlite:////abs → "/abs" (three slashes, then the path).
        path = url.removeprefix("sqlite:///")
        if not path or path.endswith("/"):
            raise ValueError(f"{shown} names no SQLite file")
        return DbUrl("sqlite", path=path)
    scheme = url.partition("://")[0].lower()
    if scheme in ("postgres", "postgresql") and "://" in url:
        try:
            urlsplit(url).port
        except ValueError:
            raise ValueError(f"{shown} has a bad port") from None
        return DbUrl("postgres", dsn=url)
    if scheme == "mysql" and "://" in url:
        try:
            urlsplit(url).port
        except ValueError:
            raise ValueError(f"{shown} has a bad port") from None
        if not urlsplit(url).path.strip("/"):
            raise ValueError(f"{shown} names no database")
        return DbUrl("mysql", dsn=url)
    raise ValueError(
        f"{shown} is not sqlite:///relative/path, sqlite:////absolute/path, "
        "postgres://user:password@host:port/dbname "
        "or mysql://user:password@host[:port]/dbname"
    )
