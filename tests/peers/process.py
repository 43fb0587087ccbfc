"""What the peers share: one child process in a session of its own, stopped by its PID.

A peer class sets ``_process`` when it starts its server, ``log_path`` to the
server's log, and may override ``stop_signal`` (how the server is asked to stop)
and ``stop_timeout`` (how long it gets before SIGKILL).
"""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import subprocess
import time
from collections.abc import Callable

__all__ = ["DatabaseServer", "PeerProcess", "tail"]


class PeerProcess:
    log_path: pathlib.Path
    # The server's name in errors, and the error class a peer raises.
    name = "server"
    error: type[Exception] = RuntimeError
    stop_signal = signal.SIGTERM
    stop_timeout = 15.0
    start_timeout = 30.0
    _process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        """``stop_signal`` to the main process, SIGKILL to its whole group after
        ``stop_timeout``; idempotent."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(self.stop_signal)
        try:
            process.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            # Its own session (start_new_session): the group holds only its children.
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            self._wait_group_gone(process.pid)

    def _started(self, wait_ready: Callable[[], None]) -> None:
        """``wait_ready()`` for a just started process; stopped again if that fails."""
        try:
            wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_accepting(self, connect: Callable[[], None], errors: tuple[type[BaseException], ...]) -> None:
        """Poll ``connect()`` until it no longer raises one of ``errors``, or give up with the log tail."""
        deadline = time.monotonic() + self.start_timeout
        while True:
            if not self.running():
                raise self.error(f"{self.name} exited during start-up:\n" + tail(self.log_text()))
            try:
                connect()
                return
            except errors as error:
                if time.monotonic() > deadline:
                    raise self.error(
                        f"{self.name} did not accept connections within {self.start_timeout}s: {error}\n"
                        + tail(self.log_text())) from error
            # Start-up takes from a few hundred ms to a second or two; poll rather than spin.
            time.sleep(0.05)

    def _wait_group_gone(self, pgid: int) -> None:
        """SIGKILL is delivered asynchronously: wait until the orphaned children are gone too."""
        deadline = time.monotonic() + self.stop_timeout
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.01)


class DatabaseServer(PeerProcess):
    """A database server with its files in ``base``, which the tests stop and start on purpose."""

    base: pathlib.Path

    def start(self) -> None:
        raise NotImplementedError

    def restart(self) -> None:
        self.stop()
        self.start()

    def destroy(self) -> None:
        """Stop and delete the server's files."""
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])
