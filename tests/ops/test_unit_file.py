"""contrib/systemd/uac-registrant.service: what it promises, checked by systemd itself."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.ops.twistd import ROOT, TWISTD

UNIT = ROOT / "contrib" / "systemd" / "uac-registrant.service"


def _settings() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_the_unit_is_notify_type_and_hardened() -> None:
    s = _settings()
    assert s["Type"] == ["notify"]
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert int(s["WatchdogSec"][0]) > 0
    assert s["DynamicUser"] == ["yes"]
    assert s["ProtectSystem"] == ["strict"]
    assert s["StateDirectory"] == ["uac-registrant"]
    assert s["WorkingDirectory"] == ["%S/uac-registrant"]
    assert s["NoNewPrivileges"] == ["yes"]
    assert s["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]
    assert s["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]
    command = s["ExecStart"][0].split()
    assert command[1:4] == ["--nodaemon", "--pidfile=", "uac-registrant"]


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    twistd = shutil.which("twistd")
    assert twistd is not None, "twistd is not on PATH"
    # The unit names /usr/local/bin/twistd; verify checks that the binary exists.
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/twistd", twistd))
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    # verify warns about unknown keys and bad values without failing: a clean
    # unit prints nothing at all.
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_verify_does_see_a_mistake(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("ProtectSystem=strict", "ProtectSystem=strikt"))
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert "strikt" in done.stderr


def test_the_units_command_line_parses(tmp_path: Path) -> None:
    config = tmp_path / "registrant.toml"
    config.write_text('listen = ["udp:127.0.0.1:5070"]\n')
    args = _settings()["ExecStart"][0].split()[1:]
    args[args.index("/etc/uac-registrant/registrant.toml")] = str(config)
    done = subprocess.run([*TWISTD, *args, "--print-config"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode == 0, done.stderr
    assert 'listen = ["udp:127.0.0.1:5070"]' in done.stdout
