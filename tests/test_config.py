"""Configuration: defaults, the TOML file, the command line, and every refusal."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.python import usage

from uacregistrant import __version__
from uacregistrant.config import Config, ConfigError, DbUrl, load_config
from uacregistrant.store.rows import Columns
from uacregistrant.store.url import parse_db_url
from uacregistrant.tap import Options
from uacregistrant.transport.listen import SocketSpec

PG_URL = "postgres://reg:s3cr3tpw@127.0.0.1:5432/registrant"


def write_toml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "registrant.toml"
    path.write_text(text)
    return str(path)


def test_defaults_are_opensips_defaults() -> None:
    config = load_config({})
    assert config == Config()
    assert (config.hash_size, config.buckets) == (1, 2)
    assert config.timer_interval == 100
    assert config.enable_clustering is False
    assert config.table_name == "registrant"
    assert config.failure_retry_interval == 0
    assert config.reregister_expiry_percentage == 100
    assert config.default_expires == 3600
    assert config.columns == Columns()


def test_our_defaults() -> None:
    config = Config()
    assert config.listen == (SocketSpec("udp", "127.0.0.1", 5060),)
    assert str(config.mi_listen) == "tcp:8888:interface=127.0.0.1"
    assert config.mi_token is None
    assert config.user_agent == f"uac-registrant {__version__}"
    assert config.max_register_rate == 0
    assert config.unregister_on_shutdown is True
    assert config.shutdown_timeout == 5
    assert config.dns_servers == ()
    assert config.tls_verify is True
    assert config.max_auth_failures == 3
    assert config.shtag_takeover_s == 5
    assert config.retry_backoff_cap == 3600
    assert config.db_url == DbUrl("sqlite", path="uac-registrant.sqlite")


def test_columns_from_the_parameters() -> None:
    names = (
        "registrar", "proxy", "aor", "third_party_registrant", "username", "password",
        "binding_URI", "binding_params", "expiry", "forced_socket", "cluster_shtag", "state",
    )
    config = load_config({"table_name": "reg", **{f"{n}_column": f"c_{n}" for n in names}})
    assert config.columns == Columns("reg", *(f"c_{n}" for n in names))


def test_cli_strings_are_converted() -> None:
    config = load_config(
        {
            "hash-size": "3",
            "timer_interval": "16",
            "max_register_rate": "2.5",
            "binding-URI-column": "contact",
            "dns_servers": ["127.0.0.1:5353", "[::1]:53"],
        }
    )
    assert (config.hash_size, config.buckets, config.timer_interval) == (3, 8, 16)
    assert config.max_register_rate == 2.5
    assert config.columns.binding_uri == "contact"
    assert config.dns_servers == (("127.0.0.1", 5353), ("::1", 53))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", True), ("0", False), ("true", True), ("False", False),
        ("yes", True), ("no", False), ("on", True), ("OFF", False),
    ],
)
def test_booleans_from_the_command_line(text: str, expected: bool) -> None:
    config = load_config({"unregister_on_shutdown": text, "tls_verify": text})
    assert config.unregister_on_shutdown is expected
    assert config.tls_verify is expected


def test_booleans_as_integers_in_toml(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "unregister_on_shutdown = 0\ntls_verify = false\n")
    config = load_config({}, path)
    assert config.unregister_on_shutdown is False
    assert config.tls_verify is False


def test_toml_file_values(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        'hash_size = 2\ndb_url = "sqlite:////var/lib/reg.sqlite"\n'
        'listen = "tcp:127.0.0.1:5070"\nshutdown_timeout = 2\n',
    )
    config = load_config({}, path)
    assert config.hash_size == 2
    assert config.db_url == DbUrl("sqlite", path="/var/lib/reg.sqlite")
    assert config.listen == (SocketSpec("tcp", "127.0.0.1", 5070),)
    assert config.shutdown_timeout == 2.0


def test_command_line_wins_over_the_file(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        'hash_size = 2\ntimer_interval = 40\nlisten = ["udp:127.0.0.1:5070", "tcp:127.0.0.1:5070"]\n',
    )
    config = load_config({"hash_size": "4", "listen": ["udp:[::1]:5080"], "proxy_column": None}, path)
    assert config.hash_size == 4
    assert config.timer_interval == 40
    assert config.listen == (SocketSpec("udp", "::1", 5080),)
    assert config.proxy_column == "proxy"


def test_empty_optional_value_resets_it(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'event_url = "http://127.0.0.1:9000/events"\n')
    assert load_config({}, path).event_url == "http://127.0.0.1:9000/events"
    assert load_config({"event_url": ""}, path).event_url is None


def test_listen_in_opensips_socket_syntax() -> None:
    listen = ["udp:127.0.0.1:5060", "tcp:[::1]:5070", "tls:127.0.0.1", "UDP:0.0.0.0:5080"]
    assert load_config({"listen": listen}).listen == (
        SocketSpec("udp", "127.0.0.1", 5060),
        SocketSpec("tcp", "::1", 5070),
        SocketSpec("tls", "127.0.0.1", 5061),
        SocketSpec("udp", "0.0.0.0", 5080),
    )


def test_small_timer_interval_is_allowed_down_to_the_buckets() -> None:
    assert load_config({"timer_interval": "2"}).timer_interval == 2


def test_timer_interval_message() -> None:
    with pytest.raises(ConfigError) as e:
        load_config({"hash_size": "2", "timer_interval": "3"})
    assert str(e.value) == "bad parameter timer_interval: must be at least the number of buckets (4)"
    assert (e.value.parameter, e.value.reason) == (
        "timer_interval",
        "must be at least the number of buckets (4)",
    )


BAD = [
    ({"hash_size": "0"}, "hash_size"),
    ({"hash_size": "21"}, "hash_size"),
    ({"hash_size": "two"}, "hash_size"),
    ({"timer_interval": "0"}, "timer_interval"),
    ({"timer_interval": "1"}, "timer_interval"),
    ({"timer_interval": "1.5"}, "timer_interval"),
    ({"reregister_expiry_percentage": "0"}, "reregister_expiry_percentage"),
    ({"reregister_expiry_percentage": "101"}, "reregister_expiry_percentage"),
    ({"default_expires": "14"}, "default_expires"),
    ({"failure_retry_interval": "-1"}, "failure_retry_interval"),
    ({"max_register_rate": "-0.5"}, "max_register_rate"),
    ({"max_register_rate": "nan"}, "max_register_rate"),
    ({"max_register_rate": "fast"}, "max_register_rate"),
    ({"shutdown_timeout": "-1"}, "shutdown_timeout"),
    ({"keepalive_interval": "-1"}, "keepalive_interval"),
    ({"max_auth_failures": "0"}, "max_auth_failures"),
    ({"retry_backoff_cap": "-1"}, "retry_backoff_cap"),
    ({"shtag_takeover_s": "0"}, "shtag_takeover_s"),
    ({"enable_clustering": "2"}, "enable_clustering"),
    ({"unregister_on_shutdown": "maybe"}, "unregister_on_shutdown"),
    ({"db_url": "mysql://u@h:notaport/db"}, "db_url"),
    ({"db_url": "mysql://u@h/"}, "db_url"),
    ({"db_url": "mariadb://u@h/db"}, "db_url"),
    ({"db_url": "sqlite://relative.sqlite"}, "db_url"),
    ({"db_url": "sqlite:///"}, "db_url"),
    ({"db_url": "postgres://h:notaport/db"}, "db_url"),
    ({"enable_clustering": "1", "node_id": "a"}, "enable_clustering"),
    ({"enable_clustering": "1", "db_url": PG_URL}, "node_id"),
    ({"node_id": "two words"}, "node_id"),
    ({"table_name": "registrant; drop"}, "table_name"),
    ({"aor_column": "a or"}, "aor_column"),
    ({"proxy_column": "registrar"}, "proxy_column"),
    ({"listen": ["udp:127.0.0.1:x"]}, "listen"),
    ({"listen": ["sctp:127.0.0.1:5060"]}, "listen"),
    ({"listen": ["udp:localhost:5060"]}, "listen"),
    ({"listen": ["udp:127.0.0.1:0"]}, "listen"),
    ({"listen": ["udp:127.0.0.1:65536"]}, "listen"),
    ({"listen": ["udp:::1:5060"]}, "listen"),
    ({"listen": ["udp:[::1]5060"]}, "listen"),
    ({"listen": []}, "listen"),
    ({"dns_servers": ["127.0.0.1"]}, "dns_servers"),
    ({"dns_servers": ["ns.example.com:53"]}, "dns_servers"),
    ({"mi_listen": "carrier-pigeon:8888"}, "mi_listen"),
    ({"mi_listen": "tcp:port"}, "mi_listen"),
    ({"tls_ca_file": "/nonexistent/ca.pem"}, "tls_ca_file"),
    ({"event_url": "ftp://127.0.0.1/events"}, "event_url"),
    ({"event_url": "http:///events"}, "event_url"),
    ({"user_agent": "two\nlines"}, "user_agent"),
    ({"no_such_thing": "1"}, "no_such_thing"),
    ({"log_level": "loud"}, "log_level"),
    ({"log_level": "INFO"}, "log_level"),
]


@pytest.mark.parametrize(("cli", "parameter"), BAD)
def test_each_bad_value_names_its_parameter_in_one_line(
    cli: dict[str, object], parameter: str
) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(cli)
    assert e.value.parameter == parameter
    text = str(e.value)
    assert text.startswith(f"bad parameter {parameter}: ")
    assert e.value.reason
    assert "\n" not in text


def test_clustering_on_sqlite_message() -> None:
    with pytest.raises(ConfigError) as e:
        load_config({"enable_clustering": "1", "node_id": "a"})
    assert str(e.value) == "bad parameter enable_clustering: clustering needs a PostgreSQL or MySQL db_url"


def test_clustering_on_postgres() -> None:
    config = load_config({"enable_clustering": "1", "db_url": PG_URL, "node_id": "node-a"})
    assert config.enable_clustering is True
    assert config.node_id == "node-a"


def test_tls_files_must_exist(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("pem")
    config = load_config({"tls_cert_file": str(cert), "tls_key_file": str(cert)})
    assert config.tls_cert_file == config.tls_key_file == str(cert)
    with pytest.raises(ConfigError) as e:
        load_config({"tls_key_file": str(cert)})
    assert e.value.parameter == "tls_key_file"
    with pytest.raises(ConfigError) as e:
        load_config({"tls_cert_file": str(tmp_path)})
    assert e.value.parameter == "tls_cert_file"


def test_unknown_toml_key(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "hash_size = 2\nhash-size = 3\n")
    with pytest.raises(ConfigError) as e:
        load_config({}, path)
    assert str(e.value) == "bad parameter hash-size: no such parameter"


def test_wrong_toml_types(tmp_path: Path) -> None:
    for text, parameter in [
        ("hash_size = true", "hash_size"),
        ("hash_size = 1.0", "hash_size"),
        ("listen = 5060", "listen"),
        ("listen = [5060]", "listen"),
        ("table_name = 3", "table_name"),
        ("enable_clustering = 2", "enable_clustering"),
        ("[listen]\nudp = 1", "listen"),
    ]:
        with pytest.raises(ConfigError) as e:
            load_config({}, write_toml(tmp_path, text))
        assert e.value.parameter == parameter, text


def test_unreadable_or_malformed_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_config({}, str(tmp_path / "missing.toml"))
    assert e.value.parameter == "config"
    with pytest.raises(ConfigError) as e:
        load_config({}, write_toml(tmp_path, "hash_size = = 2\n"))
    assert e.value.parameter == "config"
    assert "\n" not in str(e.value)


SECRET_TOKEN = "tok3n-XYZ secret"
PG_SECRET_URLS = [
    "postgres://reg:s3cr3tpw@127.0.0.1:notaport/registrant",
    "mysql://reg:s3cr3tpw@127.0.0.1:notaport/registrant",
    "mysql://reg:s3cr3tpw@127.0.0.1/",
]


def test_no_secret_in_any_error_text(tmp_path: Path) -> None:
    texts = []
    for cli in [
        {"mi_token": SECRET_TOKEN},
        {"mi_token": "tok3n-XYZ\x00"},
        *({"db_url": url} for url in PG_SECRET_URLS),
        {"event_url": "ftp://reg:s3cr3tpw@127.0.0.1/events"},
        {"event_url": "http://reg:s3cr3tpw@127.0.0.1:port/events"},
        {"enable_clustering": "1", "db_url": PG_URL},
    ]:
        with pytest.raises(ConfigError) as e:
            load_config(cli)
        texts.append(str(e.value))
    with pytest.raises(ConfigError) as e:
        load_config({}, write_toml(tmp_path, "mi_token = 12345678\n"))
    texts.append(str(e.value))
    for text in texts:
        assert "tok3n" not in text
        assert "s3cr3tpw" not in text
        assert "12345678" not in text
    assert "reg:***@" in texts[2]


def test_no_secret_in_repr() -> None:
    config = load_config({"mi_token": "tok3n-XYZ", "db_url": PG_URL})
    assert config.mi_token == "tok3n-XYZ"
    assert config.db_url == DbUrl("postgres", dsn=PG_URL)
    assert config.db_url.text == PG_URL
    assert str(config.db_url) == "postgres://reg:***@127.0.0.1:5432/registrant"
    for text in (repr(config), str(config), repr(parse_db_url(PG_URL))):
        assert "tok3n" not in text
        assert "s3cr3tpw" not in text
    assert "reg:***@127.0.0.1" in repr(config)


def test_options_end_to_end() -> None:
    options = Options()
    options.parseOptions(
        [
            "--hash-size", "2",
            "--timer-interval", "8",
            "--db-url", PG_URL,
            "--binding-URI-column", "contact",
            "--max-register-rate", "50",
            "--enable-clustering", "1",
            "--node-id", "node-a",
            "--unregister-on-shutdown", "0",
            "--listen", "udp:127.0.0.1:5060",
            "--listen", "tls:[::1]:5061",
            "--dns-servers", "127.0.0.1:5353",
        ]
    )
    config = options.config
    assert (config.hash_size, config.timer_interval) == (2, 8)
    assert config.columns.binding_uri == "contact"
    assert config.max_register_rate == 50.0
    assert config.enable_clustering is True
    assert config.unregister_on_shutdown is False
    assert config.listen == (SocketSpec("udp", "127.0.0.1", 5060), SocketSpec("tls", "::1", 5061))
    assert config.dns_servers == (("127.0.0.1", 5353),)


def test_options_without_arguments_give_the_defaults() -> None:
    options = Options()
    options.parseOptions([])
    assert options.config == Config()


def test_options_keep_file_values_not_given_on_the_command_line(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        'hash_size = 3\ntimer_interval = 24\nlisten = ["tcp:127.0.0.1:5070"]\n'
        'dns_servers = ["127.0.0.1:53"]\nunregister_on_shutdown = 0\n',
    )
    options = Options()
    options.parseOptions(["--config", path, "--timer-interval", "32"])
    config = options.config
    assert config.hash_size == 3
    assert config.timer_interval == 32
    assert config.listen == (SocketSpec("tcp", "127.0.0.1", 5070),)
    assert config.dns_servers == (("127.0.0.1", 53),)
    assert config.unregister_on_shutdown is False


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--hash-size", "2", "--timer-interval", "3"],
         "bad parameter timer_interval: must be at least the number of buckets (4)"),
        (["--enable-clustering", "1"],
         "bad parameter enable_clustering: clustering needs a PostgreSQL or MySQL db_url"),
        (["--listen", "udp:127.0.0.1:x"], "bad parameter listen: "),
    ],
)
def test_options_usage_error(argv: list[str], message: str) -> None:
    with pytest.raises(usage.UsageError) as e:
        Options().parseOptions(argv)
    assert str(e.value).startswith(message)


def test_options_usage_error_hides_the_token() -> None:
    with pytest.raises(usage.UsageError) as e:
        Options().parseOptions(["--mi-token", SECRET_TOKEN])
    assert str(e.value).startswith("bad parameter mi_token: ")
    assert "tok3n" not in str(e.value)


def test_options_unknown_option() -> None:
    with pytest.raises(usage.UsageError):
        Options().parseOptions(["--hash_size", "2"])


def test_every_parameter_has_an_option() -> None:
    options = Options()
    for name in Config.__dataclass_fields__:
        assert name.replace("_", "-") in options.synonyms, name
