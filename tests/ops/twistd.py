"""Run ``twistd -n uac-registrant`` from this tree as a command, to its end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parents[2]
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def twistd(args: Sequence[str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    """``twistd -n --pidfile= uac-registrant ARGS``; stdout and stderr as text."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [*TWISTD, "-n", "--pidfile=", "uac-registrant", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )
