"""contrib/prometheus/alerts.yml: valid, unit-tested on sample series by promtool,
and written against metrics the service really exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from prometheus_client import generate_latest
from twisted.internet import reactor

from tests.ops.twistd import ROOT
from tests.peers import unavailable
from uacregistrant.config import Config
from uacregistrant.service import RegistrantService
from uacregistrant.store.memory import MemoryStore
from uacregistrant.transport.layer import TransactionLayer

RULES = ROOT / "contrib" / "prometheus"


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        unavailable("promtool is not installed (Debian package prometheus)")
    return path


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([_promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_promtool_checks_the_rules() -> None:
    done = _run("check", "rules", "alerts.yml", cwd=RULES)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 5 rules found" in done.stdout


def test_promtool_unit_tests_pass() -> None:
    done = _run("test", "rules", "alerts_test.yml", cwd=RULES)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_unit_tests_catch_a_wrong_threshold(tmp_path: Path) -> None:
    rules = (RULES / "alerts.yml").read_text()
    assert "> 0.1\n" in rules
    (tmp_path / "alerts.yml").write_text(rules.replace("> 0.1\n", "> 0.5\n"))
    shutil.copy(RULES / "alerts_test.yml", tmp_path)
    done = _run("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert done.returncode != 0
    assert "UacRegistrantRecordsFailing" in done.stdout + done.stderr


def test_the_rules_use_metrics_the_service_exports() -> None:
    service = RegistrantService(Config(), reactor, store=MemoryStore(), sender=TransactionLayer(reactor, reactor))
    exported = generate_latest(service.metrics.registry).decode()
    used = set(re.findall(r"\buac_registrant_[a-z_]+", (RULES / "alerts.yml").read_text()))
    assert used
    # Only clustered nodes export the sharing-tag gauge.
    clustered = {"uac_registrant_shtags_held"}
    for name in used - clustered:
        assert re.search(rf"^{name}(\{{| )", exported, re.M), name
    cluster_source = (ROOT / "uacregistrant" / "cluster" / "shtags.py").read_text()
    for name in clustered:
        assert f'"{name}"' in cluster_source
    assert 'uac_registrant_build_info{version="' in exported
