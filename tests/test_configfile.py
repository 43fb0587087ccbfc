"""The configuration as TOML: the committed example, and --print-config's text."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from uacregistrant.config import Config, load_config
from uacregistrant.configfile import example, render, toml_string

ROOT = Path(__file__).resolve().parents[1]
SECRET_PW = "s3cr3t-pw"
SECRET_TOKEN = "t0ken-XYZ"


def test_the_committed_example_is_the_generated_one() -> None:
    committed = (ROOT / "registrant.toml.example").read_text(encoding="utf-8")
    assert committed == example(), "run: python -m uacregistrant.configfile > registrant.toml.example"


def test_the_example_has_every_parameter_with_its_help_and_loads_as_the_defaults(tmp_path: Path) -> None:
    text = example()
    for f in dataclasses.fields(Config):
        assert f"\n# {f.metadata['doc']}\n#{f.name} = " in text, f.name
    # Uncommented, every line is a valid setting and together they are the defaults.
    uncommented = "\n".join(line[1:] if line.startswith("#") and " = " in line else line
                            for line in text.splitlines())
    path = tmp_path / "all.toml"
    path.write_text(uncommented)
    assert load_config({}, str(path)) == Config()


def _configured() -> Config:
    return load_config({
        "db_url": f"postgres://reg:{SECRET_PW}@127.0.0.1:5432/registrant",
        "mi_token": SECRET_TOKEN,
        "event_url": f"http://hook:{SECRET_PW}@127.0.0.1:9000/events",
        "listen": ["udp:127.0.0.1:5070", "tls:[::1]:5071"],
        "dns_servers": ["127.0.0.1:5353", "[::1]:53"],
        "hash_size": "3",
        "timer_interval": "16",
        "max_register_rate": "12.5",
        "unregister_on_shutdown": "0",
        "user_agent": 'agent "quoted" \\ back',
        "log_level": "warn",
    })


def test_print_config_masks_secrets() -> None:
    text = render(_configured())
    assert SECRET_PW not in text and SECRET_TOKEN not in text
    assert 'db_url = "postgres://reg:***@127.0.0.1:5432/registrant"' in text
    assert 'mi_token = "***"' in text
    assert 'event_url = "http://hook:***@127.0.0.1:9000/events"' in text


def test_print_config_round_trips_through_the_config_file(tmp_path: Path) -> None:
    config = _configured()
    text = render(config)
    path = tmp_path / "printed.toml"
    path.write_text(text)
    again = load_config({}, str(path))
    # Everything comes back but the secrets, which come back masked.
    assert again == dataclasses.replace(
        config,
        db_url=load_config({"db_url": "postgres://reg:***@127.0.0.1:5432/registrant"}).db_url,
        mi_token="***",
        event_url="http://hook:***@127.0.0.1:9000/events",
    )
    assert render(again) == text


def test_print_config_without_secrets_round_trips_exactly(tmp_path: Path) -> None:
    config = load_config({"listen": ["tcp:127.0.0.1:5080"], "tls_verify": "0", "node_id": "n1"})
    path = tmp_path / "printed.toml"
    path.write_text(render(config))
    assert load_config({}, str(path)) == config


@given(st.text(max_size=30))
def test_toml_strings_read_back_as_written(text: str) -> None:
    if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        # Lone surrogates cannot be written as UTF-8 at all.
        return
    assert tomllib.loads(f"v = {toml_string(text)}")["v"] == text


@pytest.mark.parametrize("text", ['"', "\\", "a\nb", "\x7f", "\x00", "é", "\U0001f600", "x = 1\ny"])
def test_toml_string_hostile_values(text: str) -> None:
    assert tomllib.loads(f"v = {toml_string(text)}")["v"] == text
