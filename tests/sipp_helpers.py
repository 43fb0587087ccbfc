"""Run SIPp as a child process for end-to-end tests over loopback."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pytest

SIPP_DIR = Path(__file__).parent / "sipp"
_READY_TIMEOUT = 5.0


def require_binary(name: str) -> str:
    """The path of ``name``; a missing binary fails under CI=true and skips elsewhere."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def _bindable(host: str, port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return False
            raise
    return True


@dataclass
class SippProcess:
    """A running SIPp; ``stop()`` ends it by its PID and returns its exit code."""

    process: subprocess.Popen[bytes]
    port: int
    workdir: Path
    owns_workdir: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait(self, timeout: float = 10.0) -> int:
        return self.process.wait(timeout)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return self.process.returncode

    def errors(self) -> str:
        """What SIPp wrote to its error trace, for assertion messages."""
        return "\n".join(path.read_text(errors="replace") for path in self.workdir.glob("*_errors.log"))


def start_sipp(
    scenario_path: str | Path,
    port: int,
    transport: str = "u1",
    extra_args: Sequence[str] = (),
    *,
    host: str = "127.0.0.1",
    workdir: Path | None = None,
) -> SippProcess:
    """Start SIPp as a UAS on ``host:port`` and return once its socket is bound.

    SIPp writes its traces into ``workdir`` (by default a temporary directory
    removed by ``stop()``).
    """
    sipp = require_binary("sipp")
    scenario = Path(scenario_path).resolve()
    cwd = workdir or Path(tempfile.mkdtemp(prefix="sipp-"))
    command = [
        sipp, "-sf", str(scenario), "-i", host, "-p", str(port), "-t", transport,
        "-nostdin", "-trace_err", "-nd", *extra_args,
    ]
    process = subprocess.Popen(
        command, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    handle = SippProcess(process, port, cwd, owns_workdir=workdir is None)
    try:
        _wait_until_bound(handle, host, socket.SOCK_DGRAM if transport.startswith("u") else socket.SOCK_STREAM)
    except BaseException:
        handle.stop()
        raise
    return handle


def _wait_until_bound(handle: SippProcess, host: str, kind: int) -> None:
    # SIPp has no readiness signal: poll until its port is taken (or it died).
    deadline = time.monotonic() + _READY_TIMEOUT
    while _bindable(host, handle.port, kind):
        if handle.process.poll() is not None:
            stderr = handle.process.stderr.read().decode(errors="replace") if handle.process.stderr else ""
            raise RuntimeError(f"sipp exited with {handle.process.returncode} before listening: {stderr}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"sipp did not bind port {handle.port} within {_READY_TIMEOUT} s")
        time.sleep(0.01)
