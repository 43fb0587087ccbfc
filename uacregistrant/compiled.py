"""The optional compiled hot path: which modules ``pip install .`` compiles, and the switch back.

The modules named here are ordinary typed Python.  When mypyc and a C
compiler are there at install time, setup.py compiles them into extension
modules installed beside their source, and Python imports the extension.
Without a compiler (or with ``UACREGISTRANT_PURE=1`` at install time) the
same source is installed alone.

``UACREGISTRANT_PURE=1`` at run time imports the source even where the
extensions are installed (``uacregistrant/__init__.py`` asks for it before
anything else is imported).  ``variant()`` says what was actually imported.

Standard library only: setup.py reads this file before anything is installed.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Mapping, Sequence
from types import ModuleType

PURE_ENV = "UACREGISTRANT_PURE"

# Pure code on the per-REGISTER path: the SIP codec, digest, the client
# transaction, the record machine and what it reads.  Nothing here imports
# Twisted, and mypy must accept every module (mypyc compiles what it checks).
MODULES = (
    "uacregistrant.sip.errors",
    "uacregistrant.sip.framing",
    "uacregistrant.sip.headers",
    "uacregistrant.sip.uri",
    "uacregistrant.sip.message",
    "uacregistrant.sip.digest",
    "uacregistrant.sip.randomness",
    "uacregistrant.sip.transaction",
    "uacregistrant.registrant.states",
    "uacregistrant.registrant.record",
    "uacregistrant.registrant.policy",
    "uacregistrant.registrant.machine",
    "uacregistrant.registrant.request",
    "uacregistrant.registrant.replies",
)


def forced_pure(environ: Mapping[str, str] = os.environ) -> bool:
    return environ.get(PURE_ENV, "") not in ("", "0")


class _SourceFinder(importlib.abc.MetaPathFinder):
    """Finds the modules above as source, ahead of their compiled extension."""

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name not in MODULES:
            return None
        leaf = name.rpartition(".")[2] + ".py"
        for entry in path or ():
            source = os.path.join(entry, leaf)
            if os.path.isfile(source):
                return importlib.util.spec_from_file_location(name, source)
        return None


def use_source() -> None:
    """Import the modules above from their source from now on (before any of them is imported)."""
    if not any(isinstance(finder, _SourceFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _SourceFinder())


def is_compiled(module: ModuleType) -> bool:
    return any((module.__file__ or "").endswith(suffix) for suffix in importlib.machinery.EXTENSION_SUFFIXES)


def variant() -> str:
    """"compiled" when every module above runs as an extension, "pure" when none does, else "mixed"."""
    compiled = [is_compiled(importlib.import_module(name)) for name in MODULES]
    if all(compiled):
        return "compiled"
    return "mixed" if any(compiled) else "pure"
