"""``twistd -n uac-registrant --version`` and ``--print-config``, run for real."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import twisted

from tests.ops.twistd import ROOT, twistd
from uacregistrant import __version__

SECRET_PW = "s3cr3t-pw"
SECRET_TOKEN = "t0ken-XYZ"


def test_version_is_ours(tmp_path: Path) -> None:
    done = twistd(["--version"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"uac-registrant {__version__} (Twisted {twisted.__version__},")


def test_print_config_masks_and_round_trips_through_config(tmp_path: Path) -> None:
    first = twistd(
        [
            "--print-config",
            "--db-url", f"postgres://reg:{SECRET_PW}@127.0.0.1:5432/registrant",
            "--mi-token", SECRET_TOKEN,
            "--listen", "udp:127.0.0.1:5070",
            "--listen", "tcp:[::1]:5071",
            "--hash-size", "2",
            "--log-level", "warn",
        ],
        tmp_path,
    )
    assert first.returncode == 0, first.stderr
    assert SECRET_PW not in first.stdout + first.stderr
    assert SECRET_TOKEN not in first.stdout + first.stderr
    assert 'db_url = "postgres://reg:***@127.0.0.1:5432/registrant"' in first.stdout
    assert 'listen = ["udp:127.0.0.1:5070", "tcp:[::1]:5071"]' in first.stdout
    # Nothing was started: no database file, no log of a service.
    assert list(tmp_path.iterdir()) == []
    path = tmp_path / "printed.toml"
    path.write_text(first.stdout)
    second = twistd(["--config", str(path), "--print-config"], tmp_path)
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout


def test_print_config_refuses_a_bad_value_in_one_line(tmp_path: Path) -> None:
    done = twistd(["--print-config", "--log-level", "loud"], tmp_path)
    assert done.returncode != 0
    assert "bad parameter log_level: 'loud' is not one of debug, info, warn, error, critical" in (
        done.stdout + done.stderr
    )


def test_the_package_metadata_reads_our_version() -> None:
    done = subprocess.run([sys.executable, "setup.py", "--version"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.stdout.strip().splitlines()[-1] == __version__
