"""Fixtures of the operations tests: the end-to-end tests' answering registrar."""

from __future__ import annotations

from tests.e2e.conftest import scripted_registrar

__all__ = ["scripted_registrar"]
