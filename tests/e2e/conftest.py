"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .udp_peers import ANSWER, ScriptedRegistrar


@pytest.fixture
def scripted_registrar() -> Iterator[ScriptedRegistrar]:
    """A UDP registrar answering every REGISTER until a test changes its ``mode``."""
    registrar = ScriptedRegistrar(ANSWER).start()
    yield registrar
    registrar.stop()
