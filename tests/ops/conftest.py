"""Fixtures of the operations tests."""

from __future__ import annotations

import pytest

from tests.e2e.udp_peers import ANSWER, ScriptedRegistrar


@pytest.fixture
def registrar():
    """A UDP registrar that answers every REGISTER with 200."""
    fake = ScriptedRegistrar(ANSWER).start()
    yield fake
    fake.stop()
