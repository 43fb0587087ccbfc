"""Kamailio as a registrar for end-to-end tests.

Runs ``kamailio -DD -E`` from a rendered copy of ``kamailio.cfg.in`` with a
private run directory, answers REGISTER for one realm (optionally with MD5
digest against a SQLite ``subscriber`` table), keeps bindings in memory and
exposes them through JSON-RPC over HTTP (``jsonrpcs`` + ``xhttp``). ``kamcmd``
is not used: it refuses replies over 128 KB.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import socket
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tests.peers import free_port
from tests.peers.process import PeerProcess, tail

__all__ = ["Binding", "Kamailio", "KamailioError", "unavailable_reason"]

TEMPLATE = pathlib.Path(__file__).with_name("kamailio.cfg.in")
REQUIRED_MODULES = (
    "kex", "corex", "sl", "pv", "maxfwd", "textops", "siputils", "usrloc",
    "registrar", "xhttp", "jsonrpcs", "db_sqlite", "auth", "auth_db",
)
# The registrar prints this for empty usrloc fields.
_NOT_SET = "[not set]"
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


class KamailioError(RuntimeError):
    """Kamailio did not start, died, or its RPC failed."""


@dataclass(frozen=True, slots=True)
class Binding:
    """One usrloc contact of an AOR, as the registrar stored it."""

    contact: str
    call_id: str
    cseq: int
    expires: int  # seconds left
    received: str | None
    user_agent: str | None
    path: str | None
    instance: str | None  # +sip.instance
    reg_id: int
    q: float
    socket: str | None


def kamailio_binary() -> str | None:
    return shutil.which("kamailio") or next(
        (path for path in ("/usr/sbin/kamailio", "/usr/local/sbin/kamailio") if os.access(path, os.X_OK)),
        None,
    )


def module_dir(binary: str) -> pathlib.Path | None:
    """The module directory Kamailio was built with (``kamailio -I``)."""
    try:
        info = subprocess.run([binary, "-I"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"Default paths to modules:\s*(\S+)", info)
    if match is None:
        return None
    directory = pathlib.Path(match.group(1).split(":")[0])
    return directory if directory.is_dir() else None


def unavailable_reason(modules: Iterable[str] = REQUIRED_MODULES) -> str | None:
    """Why Kamailio cannot run here (binary or modules missing), or None."""
    binary = kamailio_binary()
    if binary is None:
        return "kamailio binary not found (apt-get install kamailio)"
    directory = module_dir(binary)
    if directory is None:
        return "kamailio module directory not found"
    missing = [name for name in modules if not (directory / (name + ".so")).exists()]
    if missing:
        return "kamailio modules missing in {}: {} (apt-get install kamailio-sqlite-modules kamailio-tls-modules)".format(
            directory, ", ".join(missing))
    return None


class Kamailio(PeerProcess):
    """One registrar on 127.0.0.1: UDP and TCP on ``port``, TLS on ``tls_port`` if given.

    With ``challenge`` every REGISTER needs an MD5 digest (qop=auth) for one of
    ``users`` (username -> password); a wrong password gets a fresh 401, never 403.
    Expiries below ``min_expires`` get 423 with Min-Expires; above ``max_expires``
    they are lowered to it.  Stopped with SIGTERM to the main process (it stops its
    children), SIGKILL to the whole group after ``stop_timeout``.
    """

    name = "kamailio"
    error = KamailioError
    start_timeout = 15.0
    stop_timeout = 10.0

    def __init__(
        self,
        workdir: pathlib.Path,
        *,
        port: int,
        users: dict[str, str],
        realm: str = "example.test",
        min_expires: int = 60,
        max_expires: int = 3600,
        challenge: bool = True,
        tls_port: int | None = None,
        tls_cert: pathlib.Path | None = None,
        tls_key: pathlib.Path | None = None,
    ) -> None:
        if tls_port is not None and (tls_cert is None or tls_key is None):
            raise ValueError("tls_port needs tls_cert and tls_key")
        self.workdir = pathlib.Path(workdir)
        self.port = port
        self.users = dict(users)
        self.realm = realm
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.challenge = challenge
        self.tls_port = tls_port
        self.tls_cert = tls_cert
        self.tls_key = tls_key
        self.rpc_port: int | None = None
        self.log_path = self.workdir / "kamailio.log"
        self.config_path = self.workdir / "kamailio.cfg"

    @property
    def uri(self) -> str:
        """The registrar's SIP URI (UDP/TCP)."""
        return "sip:127.0.0.1:{}".format(self.port)

    def start(self) -> None:
        if self._process is not None:
            raise KamailioError("already started")
        binary = kamailio_binary()
        if binary is None:
            raise KamailioError("kamailio binary not found")
        self.workdir.mkdir(parents=True, exist_ok=True)
        run_dir = self.workdir / "run"
        run_dir.mkdir(exist_ok=True)
        self.rpc_port = free_port("tcp")
        self._write_config()
        command = [binary, "-DD", "-E", "-f", str(self.config_path), "-Y", str(run_dir), "-m", "64", "-M", "16"]
        if self.challenge:
            command += ["-A", "WITH_AUTH"]
        if self.tls_port is not None:
            command += ["-A", "WITH_TLS"]
        with open(self.log_path, "ab") as log:
            # Own session: a Ctrl-C on the test run must not reach it before stop() does.
            self._process = subprocess.Popen(
                command, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        self._started(self._wait_ready)

    def rpc(self, method: str, *params: Any) -> Any:
        """Call a Kamailio RPC command; returns the JSON-RPC ``result``."""
        if self.rpc_port is None:
            raise KamailioError("not started")
        body = json.dumps({"jsonrpc": "2.0", "method": method, "params": list(params), "id": 1}).encode()
        request = urllib.request.Request(
            "http://127.0.0.1:{}/RPC".format(self.rpc_port), data=body,
            headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                reply = json.loads(response.read())
        except urllib.error.HTTPError as error:
            # jsonrpcs sends its error objects with an HTTP error status.
            reply = json.loads(error.read() or b"{}") or {"error": str(error)}
        if "error" in reply:
            raise KamailioError("RPC {} failed: {}".format(method, reply["error"]))
        return reply.get("result")

    def bindings(self, aor: str) -> list[Binding]:
        """The current contacts of ``aor`` (e.g. ``sip:alice@example.test``)."""
        return self.all_bindings().get(_aor_key(aor), [])

    def all_bindings(self) -> dict[str, list[Binding]]:
        """Every AOR with its contacts, keyed as usrloc stores them (``user`` without domain)."""
        result: dict[str, list[Binding]] = {}
        for domain in self.rpc("ul.dump").get("Domains", []):
            for record in domain["Domain"].get("AoRs", []):
                info = record["Info"]
                result[info["AoR"]] = [_binding(entry["Contact"]) for entry in info.get("Contacts", [])]
        return result

    def statistic(self, name: str) -> int:
        """A counter such as ``registrar:accepted_regs``, ``registrar:rejected_regs``, ``usrloc:registered_users``."""
        group = name.partition(":")[0] + ":"
        for line in self.rpc("stats.get_statistics", group):
            key, _, value = line.partition(" = ")
            if key == name:
                return int(value)
        raise KamailioError("no statistic " + name)

    @property
    def accepted_registrations(self) -> int:
        return self.statistic("registrar:accepted_regs")

    @property
    def rejected_registrations(self) -> int:
        return self.statistic("registrar:rejected_regs")

    def _write_config(self) -> None:
        subscriber_db = self.workdir / "subscriber.sqlite"
        if self.challenge:
            _write_subscribers(subscriber_db, self.users)
        tls_config = self.workdir / "tls.cfg"
        if self.tls_port is not None:
            tls_config.write_text(
                "[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\nrequire_certificate = no\n"
                "certificate = {}\nprivate_key = {}\n".format(self.tls_cert, self.tls_key))
        values = {
            "log_prefix": "kamailio:{}".format(self.port),
            "realm": self.realm,
            "port": self.port,
            "rpc_port": self.rpc_port,
            "tls_port": self.tls_port or 0,
            "tls_config": tls_config,
            "min_expires": self.min_expires,
            "max_expires": self.max_expires,
            "subscriber_db": subscriber_db,
        }
        self.config_path.write_text(_PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), TEMPLATE.read_text()))

    def _wait_ready(self) -> None:
        """Poll until Kamailio answers an OPTIONS over UDP and its RPC, or give up with the log tail."""
        deadline = time.monotonic() + self.start_timeout
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            probe.settimeout(0.2)
            while True:
                if not self.running():
                    raise KamailioError("kamailio exited during start-up:\n" + tail(self.log_text()))
                if time.monotonic() > deadline:
                    raise KamailioError("kamailio did not answer within {}s:\n{}".format(
                        self.start_timeout, tail(self.log_text())))
                probe.sendto(_options(probe.getsockname()[1], self.port), ("127.0.0.1", self.port))
                try:
                    reply = probe.recv(65535)
                except (TimeoutError, ConnectionRefusedError):
                    continue
                if not reply.startswith(b"SIP/2.0 200"):
                    continue
                try:
                    self.rpc("core.version")
                except OSError:
                    continue
                return


def _options(local_port: int, port: int) -> bytes:
    call_id = uuid.uuid4().hex
    return (
        "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:probe@127.0.0.1>;tag={tag}\r\n"
        "To: <sip:127.0.0.1:{port}>\r\n"
        "Call-ID: {call_id}\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    ).format(port=port, local=local_port, branch=call_id[:16], tag=call_id[16:24], call_id=call_id).encode()


def _write_subscribers(path: pathlib.Path, users: dict[str, str]) -> None:
    path.unlink(missing_ok=True)
    with sqlite3.connect(path) as db:
        # The auth_db schema of Kamailio 5.6 (table version 7), checked at start-up.
        db.executescript(
            "CREATE TABLE version (table_name VARCHAR(32) NOT NULL, table_version INTEGER DEFAULT 0 NOT NULL);"
            "INSERT INTO version VALUES ('subscriber', 7);"
            "CREATE TABLE subscriber (id INTEGER PRIMARY KEY NOT NULL,"
            " username VARCHAR(64) DEFAULT '' NOT NULL, domain VARCHAR(64) DEFAULT '' NOT NULL,"
            " password VARCHAR(64) DEFAULT '' NOT NULL, ha1 VARCHAR(128) DEFAULT '' NOT NULL,"
            " ha1b VARCHAR(128) DEFAULT '' NOT NULL);")
        db.executemany("INSERT INTO subscriber (username, password) VALUES (?, ?)", users.items())
    db.close()


def _aor_key(aor: str) -> str:
    """usrloc (use_domain off) keys an AOR by its user part only."""
    user_host = aor.split(":", 1)[-1].split(";", 1)[0]
    return user_host.split("@", 1)[0] if "@" in user_host else user_host


def _optional(value: Any) -> str | None:
    return None if value in (None, "", _NOT_SET) else str(value)


def _binding(contact: dict[str, Any]) -> Binding:
    return Binding(
        contact=contact["Address"],
        call_id=contact["Call-ID"],
        cseq=int(contact["CSeq"]),
        expires=int(contact["Expires"]),
        received=_optional(contact.get("Received")),
        user_agent=_optional(contact.get("User-Agent")),
        path=_optional(contact.get("Path")),
        instance=_optional(contact.get("Instance")),
        reg_id=int(contact.get("Reg-Id", 0)),
        q=float(contact.get("Q", -1)),
        socket=_optional(contact.get("Socket")),
    )
