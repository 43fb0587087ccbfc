"""``twistd uac-registrant``: options and makeService; the only place that uses the global reactor."""

from __future__ import annotations

import os
import sys

from .config import Options
from .service import RegistrantService

__all__ = ["Options", "makeService"]


def makeService(options: Options) -> RegistrantService:
    from twisted.internet import reactor

    def fatal(why: str) -> None:
        # twistd has no way to set its exit status: leave through os._exit
        # once the reactor has shut down, with the reason already logged.
        def leave() -> None:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(1)

        reactor.addSystemEventTrigger("after", "shutdown", leave)
        if reactor.running:
            reactor.stop()
        else:
            reactor.callWhenRunning(reactor.stop)

    return RegistrantService(options.config, reactor, on_fatal=fatal)
