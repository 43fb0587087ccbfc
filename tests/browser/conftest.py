"""Fixtures shared by the status page's browser tests."""

from __future__ import annotations

import pytest

from .chromium import chromium_driver


@pytest.fixture
def browser(tmp_path):
    """A headless Chromium of its own for the test (see ``chromium.py``)."""
    with chromium_driver(tmp_path) as driver:
        yield driver
