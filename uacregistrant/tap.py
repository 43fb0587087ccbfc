"""``twistd uac-registrant``: options and makeService; the only place that uses the global reactor."""

from __future__ import annotations

import os
import platform
import signal
import sys
from dataclasses import fields

import twisted
from twisted.application.service import MultiService
from twisted.python import usage

from . import __version__
from .config import REPEATABLE, Config, ConfigError, default_text, load_config
from .configfile import render
from .heap import pace_collector
from .logs import use_level
from .service import RegistrantService
from .systemd import Notifier

__all__ = ["Options", "makeService"]


def _option_name(name: str) -> str:
    return name.replace("_", "-")


class Options(usage.Options):
    """twistd options: one ``--long-option VALUE`` per parameter, plus ``--config``."""

    optFlags = [["print-config", None, "print the configuration in effect as TOML (secrets masked) and exit"]]
    optParameters = [["config", "c", None, "TOML file of parameters (the command line wins)"]] + [
        [
            _option_name(f.name),
            None,
            None,
            f"{f.metadata['doc']} (default: {default_text(f.default)})",
        ]
        for f in fields(Config)
        if f.name not in REPEATABLE
    ]
    # twistd's own options when run as its subcommand.
    parent: usage.Options | None = None

    def __init__(self) -> None:
        super().__init__()
        # Only what the user typed is passed on, so that file values survive.
        self._listen: list[str] = []
        self._dns_servers: list[str] = []

    def opt_listen(self, value: str) -> None:
        """SIP socket proto:IP:PORT, e.g. udp:[::1]:5060 (repeatable; default:
        udp:127.0.0.1:5060)"""
        self._listen.append(value)

    def opt_dns_servers(self, value: str) -> None:
        """DNS server IP:PORT (repeatable; default: the system's)"""
        self._dns_servers.append(value)

    def opt_version(self) -> None:
        """print the version of uac-registrant and exit"""
        print(
            f"uac-registrant {__version__} (Twisted {twisted.__version__},"
            f" Python {platform.python_version()})"
        )
        sys.exit(0)

    def postOptions(self) -> None:
        cli: dict[str, object] = {
            f.name: self[_option_name(f.name)] for f in fields(Config) if f.name not in REPEATABLE
        }
        cli["listen"] = self._listen or None
        cli["dns_servers"] = self._dns_servers or None
        try:
            self.config = load_config(cli, self["config"])
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None
        if self["print-config"]:
            sys.stdout.write(render(self.config))
            sys.exit(0)
        if self.parent is not None and "logger" in self.parent:
            use_level(self.parent, self.config.log_level)


def makeService(options: Options) -> MultiService:
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

    # The process is ours (an embedder sets its own pace).
    pace_collector()
    root = MultiService()
    registrant = RegistrantService(options.config, reactor, on_fatal=fatal)
    registrant.setServiceParent(root)
    # Added last, stopped first: STOPPING=1 goes out before the unREGISTERs.
    notifier = Notifier.from_environment(os.environ, reactor, registrant)
    notifier.setServiceParent(root)

    def on_sighup(signum: int, frame: object) -> None:
        reactor.callFromThread(notifier.reload)

    reactor.callWhenRunning(signal.signal, signal.SIGHUP, on_sighup)
    return root
