"""The optional compiled hot path: which build a run imports, and the switch back to the source.

CI runs the suite twice, on the pure-Python source and on the compiled
build, and says which it expects through ``UACREGISTRANT_EXPECT``
(``pure`` or ``compiled``): a run that imports the other build fails here
instead of passing on the wrong code.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from uacregistrant import compiled

ROOT = Path(__file__).resolve().parents[1]


def test_the_expected_build_is_imported():
    found = compiled.variant()
    expected = os.environ.get("UACREGISTRANT_EXPECT")
    if expected is not None:
        assert found == expected
    elif compiled.forced_pure():
        assert found == "pure"
    else:
        # Never half of each: an extension left behind beside newer source is a stale build.
        assert found in ("pure", "compiled")


def test_every_compiled_module_exists_as_source():
    for name in compiled.MODULES:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None
        assert Path(spec.origin).with_name(name.rpartition(".")[2] + ".py").is_file()


def _variant_in_child(pure: str | None) -> str:
    env = {key: value for key, value in os.environ.items() if key != compiled.PURE_ENV}
    if pure is not None:
        env[compiled.PURE_ENV] = pure
    code = "from uacregistrant import compiled; print(compiled.variant())"
    # The same sys.path as this run, so the child imports the same tree.
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_the_switch_imports_the_source_even_beside_the_extensions():
    assert _variant_in_child("1") == "pure"


def test_without_the_switch_the_build_there_is_imported():
    # "0" and unset leave it alone: compiled where the extensions are installed.
    expected = "compiled" if all(_extension_beside(name) for name in compiled.MODULES) else "pure"
    assert _variant_in_child(None) == _variant_in_child("0") == expected


def _extension_beside(name: str) -> bool:
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.origin is not None
    folder, leaf = Path(spec.origin).parent, name.rpartition(".")[2]
    return any((folder / (leaf + suffix)).is_file() for suffix in importlib.machinery.EXTENSION_SUFFIXES)
