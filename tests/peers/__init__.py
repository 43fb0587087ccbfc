"""Real peers for end-to-end tests: a Kamailio registrar, a private PostgreSQL cluster
and a private MariaDB server.

Each peer runs as a child process owned by the test run and is stopped by its PID.
"""

from __future__ import annotations

import fcntl
import os
import pathlib
import random
import socket
import tempfile
import time
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


# free_port() hands out ports below the kernel's ephemeral range
# (ip_local_port_range, 32768-60999 by default), so that no socket bound to port 0
# and no outgoing connection takes one between free_port() and the bind that
# follows, and records each for a while in a directory shared by every test run
# of this user on the machine (pytest-xdist workers, other checkouts), under a
# lock: two runs never get the same port before its user has bound it.
_LOWEST_PORT = 10000
_RESERVED_S = 600.0  # a test binds what it asked for within seconds
_RESERVATIONS = pathlib.Path(tempfile.gettempdir()) / f"uac-registrant-test-ports-{os.getuid()}"
_random = random.Random()


def _ephemeral_low() -> int:
    try:
        return int(pathlib.Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    for kind in _PROTOCOLS.values():
        with socket.socket(socket.AF_INET, kind) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_port(kind: Literal["udp", "tcp"] = "udp") -> int:
    """A port on 127.0.0.1 free for both UDP and TCP now (SIP peers listen on both
    with the same number), handed out to no other test for a while.

    ``kind`` says what the caller binds; both protocols are checked whatever it is.
    """
    high = min(_ephemeral_low(), 32768)
    _RESERVATIONS.mkdir(exist_ok=True)
    with open(_RESERVATIONS / "lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        now = time.time()
        for _ in range(1000):
            port = _random.randrange(_LOWEST_PORT, high)
            mark = _RESERVATIONS / str(port)
            try:
                if now - mark.stat().st_mtime < _RESERVED_S:
                    continue
            except FileNotFoundError:
                pass
            if _bindable(port):
                mark.touch()
                os.utime(mark, (now, now))
                return port
    raise RuntimeError(f"no port free for both UDP and TCP on 127.0.0.1 in {_LOWEST_PORT}-{high - 1}")
