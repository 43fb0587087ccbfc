"""Real peers for end-to-end tests: a Kamailio registrar, a private PostgreSQL cluster
and a private MariaDB server.

Each peer runs as a child process owned by the test run and is stopped by its PID.
"""

from __future__ import annotations

import os
import socket
from typing import Literal, NoReturn

import pytest

__all__ = ["free_port", "in_ci", "unavailable"]

_PROTOCOLS = {"udp": socket.SOCK_DGRAM, "tcp": socket.SOCK_STREAM}


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


def unavailable(reason: str) -> NoReturn:
    """A missing peer fails the run in CI (so it cannot pass by skipping) and skips elsewhere."""
    if in_ci():
        pytest.fail(reason + " (CI=true: real peers are required)", pytrace=False)
    pytest.skip(reason)


def free_port(kind: Literal["udp", "tcp"] = "udp") -> int:
    """A port on 127.0.0.1 that is free for both UDP and TCP right now.

    ``kind`` is the protocol the kernel picks the candidate for; the other one is
    then checked too, since SIP peers listen on both with the same number.
    """
    other = "tcp" if kind == "udp" else "udp"
    for _ in range(100):
        with socket.socket(socket.AF_INET, _PROTOCOLS[kind]) as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            with socket.socket(socket.AF_INET, _PROTOCOLS[other]) as second:
                try:
                    second.bind(("127.0.0.1", port))
                except OSError:
                    continue
        return port
    raise RuntimeError("no port free for both UDP and TCP on 127.0.0.1")
