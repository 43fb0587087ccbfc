"""Giving the C allocator's free pages back to the operating system.

A registration burst (or a load) makes and drops hundreds of megabytes of
short-lived objects; glibc's allocator keeps the pages they were in, so the
service's resident memory stays at the burst's level.  ``malloc_trim``
returns them.  Where the C library has no such call (musl, other systems)
nothing is done.
"""

from __future__ import annotations

import ctypes
from typing import Callable


def _find_malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _find_malloc_trim()


def release_free_memory() -> bool:
    """Return the allocator's free pages to the system; False where it cannot."""
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True
