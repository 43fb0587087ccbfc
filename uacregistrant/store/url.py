"""``db_url``: which store, and where; the only place such a URL is parsed.

Pure code, importing nothing of ours, so that both the configuration and the
stores can use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit


@dataclass(frozen=True, slots=True, repr=False)
class MySQLParams:
    """What a MySQL client needs from ``mysql://user:password@host[:port]/db[?unix_socket=path]``."""

    user: str
    password: str
    database: str
    host: str = "localhost"
    port: int = 3306
    unix_socket: str | None = None

    def __repr__(self) -> str:
        return f"MySQLParams({self.shown})"

    @property
    def shown(self) -> str:
        """Where the server is, for messages: never the password."""
        where = self.unix_socket or f"{self.host}:{self.port}"
        return f"{self.user}@{where}/{self.database}"


def mysql_params(url: str) -> MySQLParams:
    """Split a ``mysql://`` URL; ValueError (without the password) if it is not one."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "mysql":
        raise ValueError("is not a mysql:// URL")
    try:
        port = parts.port or 3306
    except ValueError:
        raise ValueError("has a bad port") from None
    database = unquote(parts.path.lstrip("/"))
    if not database or "/" in database:
        raise ValueError("names no database (mysql://user:password@host[:port]/database)")
    query = parse_qs(parts.query)
    unknown = set(query) - {"unix_socket"}
    if unknown:
        raise ValueError(f"has an unknown option {sorted(unknown)[0]!r} (only unix_socket)")
    return MySQLParams(
        user=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        database=database,
        host=parts.hostname or "localhost",
        port=port,
        unix_socket=query.get("unix_socket", [None])[-1],
    )


@dataclass(frozen=True, slots=True, repr=False)
class DbUrl:
    """Where the records live: an SQLite file, a PostgreSQL DSN or a MySQL URL."""

    kind: Literal["sqlite", "postgres", "mysql"]
    path: str | None = None
    # The URL as given (libpq accepts it unchanged); it may hold a password.
    dsn: str | None = None
    # A MySQL URL's parts, for the MySQL client.
    mysql: MySQLParams | None = None

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
            return DbUrl("mysql", dsn=url, mysql=mysql_params(url))
        except ValueError as e:
            raise ValueError(f"{shown} {e}") from None
    raise ValueError(
        f"{shown} is not sqlite:///relative/path, sqlite:////absolute/path, "
        "postgres://user:password@host:port/dbname "
        "or mysql://user:password@host[:port]/dbname"
    )
