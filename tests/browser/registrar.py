"""A UDP registrar for the status page's end-to-end tests: each user has a mode a test sets.

``OK``: digest authentication first (401 with a fresh nonce, unless the
request carries the current one), then 423 while the asked expiry is under
the user's ``min_expires``, then 200 echoing the Contact.  ``UNAVAILABLE``:
503 with Retry-After.  ``SILENT``: no answer at all, so the service's Timer F
fires.  Every nonce it hands out and every digest ``response``/``cnonce`` it
receives is kept, so a test can look for them where they must not be.
"""

from __future__ import annotations

import re
import secrets

from tests.e2e.udp_peers import ScriptedRegistrar, expires_of
from uacregistrant.sip.message import Request, Response, response_for

OK, UNAVAILABLE, SILENT = "ok", "unavailable", "silent"
REALM = "example.test"
RETRY_AFTER = 300

_PARAM = re.compile(r'([\w-]+)\s*=\s*(?:"([^"]*)"|([^\s,]+))')


def digest_params(value: str) -> dict[str, str]:
    """The parameters of a ``Digest ...`` Authorization value."""
    return {name.lower(): quoted if quoted is not None else bare for name, quoted, bare in _PARAM.findall(value)}


class DiagnosticRegistrar(ScriptedRegistrar):
    def __init__(self) -> None:
        super().__init__()
        self.modes: dict[str, str] = {}
        self.min_expires: dict[str, int] = {}
        self._nonce: dict[str, str] = {}
        self.nonces: list[str] = []
        self.digest_values: list[str] = []
        # Every REGISTER with the status it was answered (None: not answered).
        self.exchanged: list[tuple[Request, int | None]] = []

    def set_mode(self, user: str, mode: str) -> None:
        with self._lock:
            self.modes[user] = mode

    def new_nonce(self, user: str) -> None:
        """The next request of ``user`` is challenged again."""
        with self._lock:
            self._nonce.pop(user, None)

    def secrets(self) -> list[str]:
        """Every nonce handed out and every digest response and cnonce received."""
        with self._lock:
            return [*self.nonces, *self.digest_values]

    def registers(self, user: str) -> list[tuple[Request, int | None]]:
        with self._lock:
            return [(r, status) for r, status in self.exchanged if _user(r) == user]

    def _response(self, request: Request) -> Response | None:
        answer = self._answer(request)
        self.exchanged.append((request, None if answer is None else answer[0]))
        if answer is None:
            return None
        status, reason, headers = answer
        return response_for(request, status, reason, headers, to_tag="diag")

    def _answer(self, request: Request) -> tuple[int, str, list[tuple[str, str]]] | None:
        user = _user(request)
        mode = self.modes.get(user, OK)
        if mode == SILENT:
            return None
        if mode == UNAVAILABLE:
            return 503, "Service Unavailable", [("Retry-After", str(RETRY_AFTER))]
        authorization = digest_params(request.header("Authorization") or "")
        for name in ("response", "cnonce"):
            if authorization.get(name):
                self.digest_values.append(authorization[name])
        if not authorization.get("nonce") or authorization["nonce"] != self._nonce.get(user):
            nonce = self._nonce[user] = f"n0nce{secrets.token_hex(12)}"
            self.nonces.append(nonce)
            challenge = f'Digest realm="{REALM}", nonce="{nonce}", algorithm=MD5, qop="auth"'
            return 401, "Unauthorized", [("WWW-Authenticate", challenge)]
        expiry = expires_of(request)
        minimum = self.min_expires.get(user, 0)
        if expiry and expiry < minimum:
            return 423, "Interval Too Brief", [("Min-Expires", str(minimum))]
        return 200, "OK", [("Contact", value) for value in request.header_values("Contact")]


def _user(request: Request) -> str:
    to = request.header("To") or ""
    return to.split("sip:", 1)[-1].split("@", 1)[0]
