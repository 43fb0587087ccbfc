"""The sans-I/O package imports nothing from Twisted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import uacregistrant.sip

SIP_PACKAGE = Path(uacregistrant.sip.__file__).parent


def test_sip_modules_import_no_twisted() -> None:
    modules = sorted(f"uacregistrant.sip.{path.stem}" for path in SIP_PACKAGE.glob("*.py") if path.stem != "__init__")
    assert "uacregistrant.sip.message" in modules and "uacregistrant.sip.framing" in modules
    script = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m == 'twisted' or m.startswith('twisted.'))))\n"
    )
    # "python -c" puts its working directory first on sys.path: the tree under test wins.
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=SIP_PACKAGE.parents[1],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(result.stdout) == []
