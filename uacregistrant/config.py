"""Service configuration: the OpenSIPS ``uac_registrant`` parameters plus our own.

Values come from a TOML file (``--config FILE``) and from the command line; the
command line wins.  Every value is converted and validated here, so the rest of the
service only ever sees a :class:`Config` that makes sense.  A bad value raises
:class:`ConfigError`, whose text is one line naming the parameter and the reason.
"""

from __future__ import annotations

import os
import re
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any
from urllib.parse import urlsplit

from twisted.internet import endpoints
from twisted.internet.interfaces import IStreamServerEndpoint

from uacregistrant import __version__
from uacregistrant.store.rows import Columns
from uacregistrant.store.url import DbUrl, parse_db_url, redact_url
from uacregistrant.transport.listen import SocketSpec, format_address, parse_address, parse_socket
from uacregistrant.transport.tls import CABundle, load_ca_bundle

__all__ = ["CABundle", "Config", "ConfigError", "DbUrl", "EndpointSpec", "load_config", "parse_endpoint", "validate"]


class ConfigError(Exception):
    """A parameter has a value the service cannot run with."""

    def __init__(self, parameter: str, reason: str) -> None:
        # The service prints str(self) as its last line: keep it to one.
        reason = " ".join(reason.split())
        super().__init__(parameter, reason)
        self.parameter = parameter
        self.reason = reason

    def __str__(self) -> str:
        return f"bad parameter {self.parameter}: {self.reason}"


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    """A Twisted server endpoint description (``mi_listen``), parsed once.

    ``endpoint(reactor)`` builds the endpoint from the parsed parts, with the
    reactor it is given: the text is not read again.  Two specs are equal
    when their texts are.
    """

    text: str
    # The endpoint type's factory (or a plugin's parseStreamServer) and its arguments.
    _factory: typing.Callable[..., IStreamServerEndpoint] = field(compare=False, repr=False)
    _args: tuple[Any, ...] = field(compare=False, repr=False)
    _kwargs: Mapping[str, Any] = field(compare=False, repr=False)

    def endpoint(self, reactor: Any) -> IStreamServerEndpoint:
        return self._factory(reactor, *self._args, **self._kwargs)

    def __str__(self) -> str:
        return self.text


def parse_endpoint(text: str) -> EndpointSpec:
    """Parse a server endpoint description as ``serverFromString`` does, without a reactor.

    Twisted offers its parser only through ``serverFromString``, which also
    builds the endpoint and so wants the reactor; this is its first half
    (``_parseServer``, public behaviour since Twisted 10.2), the second being
    ``EndpointSpec.endpoint``.  A ValueError says why the text is no endpoint.
    """
    try:
        kind, args, kwargs = endpoints._parseServer(text, None)
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError(f"{text!r} is not a Twisted endpoint: {e}") from None
    if isinstance(kind, str):
        # serverFromString drops the (unused) factory argument of strports' parsers.
        factory = endpoints._endpointServerFactories[kind]
        args = args[:1] + args[2:]
    else:
        factory = kind.parseStreamServer
    return EndpointSpec(text, factory, tuple(args), dict(kwargs))


def _param(default: Any, doc: str, *, shown: bool = True) -> Any:
    return field(default=default, repr=shown, metadata={"doc": doc})


@dataclass(frozen=True, slots=True)
class Config:
    """Every parameter, named as in OpenSIPS, with OpenSIPS's defaults.

    Values are already parsed (``DbUrl``, ``SocketSpec``, (ip, port) tuples,
    ``EndpointSpec``, a loaded ``CABundle``): nothing downstream reads these
    strings, or the CA file, again.
    """

    hash_size: int = _param(1, "exponent of the number of buckets (2^hash_size)")
    # OpenSIPS refuses values below 10 s; we accept down to 1 s (still at least the
    # number of buckets) so that tests and small labs can run fast sweeps.
    timer_interval: int = _param(100, "seconds for a full sweep of all buckets")
    enable_clustering: bool = _param(False, "1: share records by cluster_shtag (PostgreSQL or MySQL)")
    db_url: DbUrl = _param(
        DbUrl("sqlite", path="uac-registrant.sqlite"),
        "sqlite:///rel/path, sqlite:////abs/path, postgres://user:pw@host:port/db or mysql://...",
    )
    table_name: str = _param("registrant", "table holding the registrant records")
    registrar_column: str = _param("registrar", "column of the registrar URI")
    proxy_column: str = _param("proxy", "column of the outbound proxy URI")
    aor_column: str = _param("aor", "column of the address of record")
    third_party_registrant_column: str = _param(
        "third_party_registrant", "column of the third-party registrant URI"
    )
    username_column: str = _param("username", "column of the auth username")
    password_column: str = _param("password", "column of the auth password")
    binding_URI_column: str = _param("binding_URI", "column of the contact binding URI")
    binding_params_column: str = _param("binding_params", "column of the contact parameters")
    expiry_column: str = _param("expiry", "column of the requested expiry")
    forced_socket_column: str = _param("forced_socket", "column of the sending socket")
    cluster_shtag_column: str = _param("cluster_shtag", "column of the sharing tag")
    state_column: str = _param("state", "column of the state (0 enabled, 1 disabled)")
    failure_retry_interval: int = _param(0, "seconds before a retry after a failure (0: the expiry)")
    reregister_expiry_percentage: int = _param(100, "share of the granted expiry used (1-100)")
    default_expires: int = _param(3600, "expiry for rows whose expiry is NULL (at least 15)")
    listen: tuple[SocketSpec, ...] = _param(
        (SocketSpec("udp", "127.0.0.1", 5060),), "SIP socket proto:IP:PORT (udp, tcp, tls; repeatable)"
    )
    mi_listen: EndpointSpec = _param(
        parse_endpoint("tcp:8888:interface=127.0.0.1"), "Twisted endpoint of the MI HTTP server"
    )
    mi_token: str | None = _param(None, "bearer token required by the MI server", shown=False)
    mi_fifo: str | None = _param(None, "path of the MI FIFO (OpenSIPS mi_fifo's fifo_name); off when unset")
    mi_fifo_mode: str = _param("0660", "permissions of the MI FIFO, in octal")
    mi_fifo_reply_dir: str = _param("/tmp/", "directory of the clients' reply FIFOs")
    user_agent: str = _param(f"uac-registrant {__version__}", "User-Agent header value")
    max_register_rate: float = _param(0.0, "REGISTERs per second at most (0: unlimited)")
    unregister_on_shutdown: bool = _param(True, "1: unREGISTER bound records when stopping")
    shutdown_timeout: float = _param(5.0, "seconds to wait for unREGISTERs when stopping")
    dns_servers: tuple[tuple[str, int], ...] = _param(
        (), "DNS server IP:PORT (repeatable; default: system)"
    )
    tls_ca_file: CABundle | None = _param(None, "PEM file of trusted CAs for TLS")
    tls_cert_file: str | None = _param(None, "PEM file of our TLS certificate")
    tls_key_file: str | None = _param(None, "PEM file of our TLS private key")
    tls_verify: bool = _param(True, "1: verify the registrar's TLS certificate")
    keepalive_interval: int = _param(0, "seconds between keep-alives (0: none)")
    max_auth_failures: int = _param(3, "rejected credentials in a row before giving up")
    event_url: str | None = _param(None, "http(s) URL receiving state change events")
    node_id: str | None = _param(None, "this node's name in the cluster")
    shtag_takeover_s: float = _param(5.0, "seconds before a dead node's sharing tag is taken over")
    shtag_static_limit_s: float = _param(
        600.0, "seconds a node cut off from the database keeps its sharing tags (0: for ever)"
    )
    retry_backoff_cap: int = _param(3600, "cap of the retry backoff in seconds (0: no growth)")
    log_level: str = _param("info", "least severe log level shown: debug, info, warn, error, critical")
    # The edge: what one client of the MI server or of a SIP TCP/TLS socket may hold.
    mi_max_body: int = _param(1 << 20, "largest MI request in bytes, over HTTP (larger: 413) and the FIFO")
    mi_idle_timeout: float = _param(30.0, "seconds an MI connection may idle or take per request")
    mi_max_connections: int = _param(64, "open MI connections at most (the oldest idle one makes room)")
    tcp_idle_timeout: float = _param(
        120.0, "seconds an accepted SIP TCP/TLS connection may go without a whole message"
    )
    tcp_max_connections: int = _param(
        256, "accepted SIP connections at most per TCP/TLS socket (the oldest makes room)"
    )

    @property
    def buckets(self) -> int:
        return 2**self.hash_size

    @property
    def columns(self) -> Columns:
        """The table and column names the stores use."""
        return Columns(
            table=self.table_name,
            registrar=self.registrar_column,
            proxy=self.proxy_column,
            aor=self.aor_column,
            third_party_registrant=self.third_party_registrant_column,
            username=self.username_column,
            password=self.password_column,
            binding_uri=self.binding_URI_column,
            binding_params=self.binding_params_column,
            expiry=self.expiry_column,
            forced_socket=self.forced_socket_column,
            cluster_shtag=self.cluster_shtag_column,
            state=self.state_column,
        )


# Parameters given once per value on the command line (``--listen A --listen B``).
REPEATABLE = frozenset({"listen", "dns_servers"})
# Parameters whose values are secrets, or may hold one (a URL's password).
SECRETS = frozenset({"mi_token", "db_url", "event_url"})
# twisted.logger's level names.
LOG_LEVELS = ("debug", "info", "warn", "error", "critical")

# Conversion of one raw value (a CLI string, or a TOML value) to a field's type.

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_SECRET = frozenset({"mi_token"})
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*\Z")
_TABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?\Z")


def _shown(name: str, value: object) -> str:
    """How a rejected value appears in an error: never a secret."""
    if name in _SECRET:
        return "the value"
    if name in ("db_url", "event_url") and isinstance(value, str):
        return repr(redact_url(value))
    return repr(value)


def _to_bool(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ConfigError(name, f"{_shown(name, value)} is not a boolean (0 or 1)")


def _to_int(name: str, value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise ConfigError(name, f"{_shown(name, value)} is not an integer")


def _to_float(name: str, value: object) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise ConfigError(name, f"{_shown(name, value)} is not a number") from None
    else:
        raise ConfigError(name, f"{_shown(name, value)} is not a number")
    if number != number or number in (float("inf"), float("-inf")):
        raise ConfigError(name, "must be a finite number")
    return number


def _to_str(name: str, value: object) -> str:
    if isinstance(value, str):
        return value
    raise ConfigError(name, f"{_shown(name, value)} is not a string")


def _to_optional_str(name: str, value: object) -> str | None:
    # An empty value on the command line resets an optional parameter.
    text = _to_str(name, value)
    return text or None


def _to_str_tuple(name: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)):
        return tuple(_to_str(name, item) for item in value)
    raise ConfigError(name, f"{_shown(name, value)} is not a string or a list of strings")


def _parsed(parse: typing.Callable[[str], object]) -> typing.Callable[[str, object], object]:
    """A converter of a string through ``parse``, whose ValueError names the reason."""

    def convert(name: str, value: object) -> object:
        try:
            return parse(_to_str(name, value))
        except ValueError as e:
            raise ConfigError(name, str(e)) from None

    return convert


def _each(parse: typing.Callable[[str], object]) -> typing.Callable[[str, object], tuple[object, ...]]:
    one = _parsed(parse)
    return lambda name, value: tuple(one(name, item) for item in _to_str_tuple(name, value))


def _to_ca_bundle(name: str, value: object) -> CABundle | None:
    """The CA file, read and parsed here, once; an empty value means none."""
    path = _to_optional_str(name, value)
    if path is None:
        return None
    if not os.path.isfile(path):
        raise ConfigError(name, f"{path!r} is not a readable file")
    try:
        return load_ca_bundle(path)
    except ValueError as e:
        raise ConfigError(name, str(e)) from None


_CONVERTERS: dict[object, typing.Callable[[str, object], object]] = {
    bool: _to_bool,
    int: _to_int,
    float: _to_float,
    str: _to_str,
    str | None: _to_optional_str,
    DbUrl: _parsed(parse_db_url),
    EndpointSpec: _parsed(parse_endpoint),
    CABundle | None: _to_ca_bundle,
    tuple[SocketSpec, ...]: _each(parse_socket),
    tuple[tuple[str, int], ...]: _each(parse_address),
}
_TYPES = typing.get_type_hints(Config)
_NAMES = frozenset(f.name for f in fields(Config))


def _convert(name: str, value: object) -> object:
    return _CONVERTERS[_TYPES[name]](name, value)


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise ConfigError("config", f"cannot read {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("config", f"{path} is not valid TOML: {e}") from None


def load_config(cli: Mapping[str, object], config_file: str | None = None) -> Config:
    """Build the configuration: defaults, then the TOML file, then the command line.

    ``cli`` maps parameter names (``hash_size`` or ``hash-size``) to values as given
    on the command line (strings, lists of strings for repeatable parameters);
    ``None`` means not given.
    """
    values: dict[str, object] = {}
    if config_file is not None:
        for name, value in _read_toml(config_file).items():
            if name not in _NAMES:
                raise ConfigError(name, "no such parameter")
            values[name] = _convert(name, value)
    for given, value in cli.items():
        name = given.replace("-", "_")
        if name not in _NAMES:
            raise ConfigError(name, "no such parameter")
        if value is not None:
            values[name] = _convert(name, value)
    config = replace(Config(), **values)
    validate(config)
    return config


def validate(config: Config) -> None:
    """Raise :class:`ConfigError` for the first parameter that cannot work."""
    _at_least(config, "hash_size", 1, 20)
    _at_least(config, "timer_interval", 1)
    if config.timer_interval < config.buckets:
        raise ConfigError(
            "timer_interval",
            f"must be at least the number of buckets ({config.buckets})",
        )
    if not 0 < config.reregister_expiry_percentage <= 100:
        raise ConfigError("reregister_expiry_percentage", "must be in 1..100")
    _at_least(config, "default_expires", 15)
    _at_least(config, "failure_retry_interval", 0)
    _at_least(config, "max_register_rate", 0)
    _at_least(config, "shutdown_timeout", 0)
    _at_least(config, "keepalive_interval", 0)
    _at_least(config, "max_auth_failures", 1)
    _at_least(config, "retry_backoff_cap", 0)
    if config.shtag_takeover_s <= 0:
        raise ConfigError("shtag_takeover_s", "must be more than 0")
    _at_least(config, "shtag_static_limit_s", 0)
    _at_least(config, "mi_max_body", 1024)
    _at_least(config, "mi_max_connections", 1)
    _at_least(config, "tcp_max_connections", 1)
    for name in ("mi_idle_timeout", "tcp_idle_timeout"):
        if getattr(config, name) <= 0:
            raise ConfigError(name, "must be more than 0")
    _check_names(config)
    if config.enable_clustering:
        if config.db_url.kind not in ("postgres", "mysql"):
            raise ConfigError("enable_clustering", "clustering needs a PostgreSQL or MySQL db_url")
        if config.node_id is None:
            raise ConfigError("node_id", "clustering needs a node_id")
    if config.node_id is not None and not _printable_word(config.node_id):
        raise ConfigError("node_id", "must be printable text without spaces")
    if not config.listen:
        raise ConfigError("listen", "at least one SIP socket is needed")
    for spec in config.listen:
        # No ephemeral port: the socket must be named again by ``forced_socket``.
        if spec.port == 0:
            raise ConfigError("listen", f"socket {str(spec)!r}: the port must be 1-65535")
    _check_mi(config)
    _check_tls(config)
    if config.event_url is not None:
        _check_event_url(config.event_url)
    if config.log_level not in LOG_LEVELS:
        raise ConfigError("log_level", f"{config.log_level!r} is not one of {', '.join(LOG_LEVELS)}")
    if not config.user_agent.isprintable() or not config.user_agent.strip():
        raise ConfigError("user_agent", "must be non-empty printable text")


def _at_least(config: Config, name: str, low: float, high: float | None = None) -> None:
    value = getattr(config, name)
    if high is None and value < low:
        raise ConfigError(name, f"must be at least {low}, not {value}")
    if high is not None and not low <= value <= high:
        raise ConfigError(name, f"must be in {low}..{high}, not {value}")


def _check_names(config: Config) -> None:
    if not _TABLE.match(config.table_name):
        raise ConfigError("table_name", f"{config.table_name!r} is not an SQL table name")
    seen: dict[str, str] = {}
    for f in fields(config):
        if not f.name.endswith("_column"):
            continue
        column = getattr(config, f.name)
        if not _IDENTIFIER.match(column):
            raise ConfigError(f.name, f"{column!r} is not an SQL column name")
        if column.lower() in seen:
            raise ConfigError(f.name, f"column {column!r} is already used by {seen[column.lower()]}")
        seen[column.lower()] = f.name


def _check_mi(config: Config) -> None:
    # mi_listen was parsed by its converter; the service builds the endpoint from it.
    if config.mi_token is not None and not _printable_word(config.mi_token):
        # The token travels in an HTTP header; never echo it.
        raise ConfigError("mi_token", "must be printable text without spaces")
    if not re.fullmatch(r"0?[0-7]{3}", config.mi_fifo_mode) or int(config.mi_fifo_mode, 8) == 0:
        raise ConfigError("mi_fifo_mode", f"{config.mi_fifo_mode!r} is not octal permissions such as 0660")
    if config.mi_fifo is not None:
        if not config.mi_fifo or "\0" in config.mi_fifo:
            raise ConfigError("mi_fifo", "must be a file path")
        if not os.path.isdir(config.mi_fifo_reply_dir):
            raise ConfigError("mi_fifo_reply_dir", f"{config.mi_fifo_reply_dir!r} is not a directory")


def _check_tls(config: Config) -> None:
    # tls_ca_file was read and checked, once, by its converter.
    for name in ("tls_cert_file", "tls_key_file"):
        path = getattr(config, name)
        if path is not None and not os.path.isfile(path):
            raise ConfigError(name, f"{path!r} is not a readable file")
    if config.tls_key_file is not None and config.tls_cert_file is None:
        raise ConfigError("tls_key_file", "a private key needs tls_cert_file")


def _check_event_url(url: str) -> None:
    try:
        parts = urlsplit(url)
        parts.port
    except ValueError:
        raise ConfigError("event_url", f"{redact_url(url)!r} is not a URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("event_url", f"{redact_url(url)!r} is not an http(s) URL")


def _printable_word(text: str) -> bool:
    return bool(text) and text.isprintable() and not any(c.isspace() for c in text)


def default_text(value: object) -> str:
    """A default as the help shows it: ``1``, ``none``, ``udp:127.0.0.1:5060``."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, tuple):
        return ", ".join(format_value(item) for item in value) or "none"
    return "none" if value is None else format_value(value)


def format_value(value: object) -> str:
    """A parsed value as written in the file or on the command line (secrets included)."""
    if isinstance(value, DbUrl):
        return value.text
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], int):
        return format_address(value)
    return str(value)
