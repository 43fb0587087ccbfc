"""Random bytes for branches, tags, Call-IDs and cnonces, from the OS, drawn in bulk."""

from __future__ import annotations

import os
from typing import Callable


class BufferedRandom:
    """``os.urandom`` a few kilobytes at a time: one system call per hundreds of requests.

    Callable like ``os.urandom(n)``; the bytes are the kernel's, only fetched
    ahead.  Not thread-safe: use it from the reactor thread.
    """

    def __init__(self, source: Callable[[int], bytes] = os.urandom, chunk: int = 4096) -> None:
        self._source = source
        self._chunk = chunk
        self._buffer = b""
        self._offset = 0

    def __call__(self, n: int) -> bytes:
        end = self._offset + n
        if end > len(self._buffer):
            self._buffer = self._source(max(self._chunk, n))
            self._offset, end = 0, n
        data = self._buffer[self._offset : end]
        self._offset = end
        return data
