"""Hostile rows, MI calls and HTTP requests against the real service.

One service runs for the module with a table mixing sound rows and rows an
attacker (or an accident) could write; every case checks that the bad value
is refused with a clear reason, that nothing secret comes out, and that the
rest goes on: sound records register, the database keeps working, MI answers.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.service import wait_until
from tests.hostile.registrar import ScriptedRegistrar
from tests.hostile.service import TOKEN, Hostile

pytestmark = pytest.mark.timeout(120)

SECRET = "Pa55w0rd-never-shown"
USER_SECRET = "login-never-shown"
URI_SECRET = "uri-pw-never-shown"
BAD_UTF8 = b"\xff" + SECRET.encode()


@pytest.fixture(scope="module")
def registrar() -> Iterator[ScriptedRegistrar]:
    registrar = ScriptedRegistrar("udp", {}).start()
    try:
        yield registrar
    finally:
        registrar.stop()


def row(user: str, registrar: ScriptedRegistrar, **changes: object) -> dict[str, object]:
    values: dict[str, object] = {
        "registrar": registrar.uri,
        "aor": f"sip:{user}@127.0.0.1",
        "binding_URI": f"sip:{user}@127.0.0.1:5999",
        "username": USER_SECRET,
        "password": SECRET,
        "expiry": 600,
    }
    values.update(changes)
    return values


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, registrar: ScriptedRegistrar) -> Iterator[Hostile]:
    workdir: Path = tmp_path_factory.mktemp("hostile")
    rows = [
        row("good", registrar),
        row("ctrl", registrar, username="al\x01ice"),
        row("crlf", registrar, username="alice\r\nX-Evil: 1"),
        row("params", registrar, binding_params=';x="a\r\nb"'),
        row("headers", registrar, aor="sip:headers@127.0.0.1?X-Evil=1"),
        row("contacthdr", registrar, binding_URI="sip:contacthdr@127.0.0.1:5999?X-Evil=1"),
        row("huge", registrar, expiry=9223372036854775807),
        row("uripw", registrar, aor=f"sip:uripw:{URI_SECRET}@127.0.0.1"),
    ]
    hostile = Hostile(workdir, rows)
    # A password that is not UTF-8, stored as TEXT the way a C program could.
    hostile.insert(row("utf8", registrar), {"password": f"CAST(x'{BAD_UTF8.hex()}' AS TEXT)"})
    try:
        yield hostile.start()
    finally:
        hostile.stop()


def secrets_in(text: str) -> list[str]:
    return [s for s in (SECRET, USER_SECRET, URI_SECRET, TOKEN) if s in text]


def test_start_up_survives_the_bad_rows_and_registers_the_good_one(service: Hostile) -> None:
    service.wait_state("sip:good@127.0.0.1", "REGISTERED_STATE")
    assert set(service.records()) == {"sip:good@127.0.0.1"}
    log = service.log()
    for reason in (
        "username has a control or non-printable character",
        "binding_params has a control or non-printable character",
        "aor must not have ?headers",
        "binding_uri must not have ?headers",
        "expiry is above 2147483647",
        "aor must not have a password in its user part",
        "password is not valid UTF-8",
    ):
        assert reason in log
    assert secrets_in(log) == []


def test_nothing_of_a_refused_row_reaches_the_wire(service: Hostile, registrar: ScriptedRegistrar) -> None:
    service.wait_state("sip:good@127.0.0.1", "REGISTERED_STATE")
    wire = registrar.raw()
    assert b"X-Evil" not in wire
    assert URI_SECRET.encode() not in wire
    assert {a.user for a in registrar.arrivals()} == {"good"}


UPSERTS = [
    ({"username": "al\x01ice"}, "username has a control or non-printable character"),
    ({"username": "alice\r\nX-Evil: 1"}, "username has a control or non-printable character"),
    ({"password": SECRET + "\x00"}, "password has a control or non-printable character"),
    ({"binding_params": ';x="a\r\nb"'}, "binding_params has a control or non-printable character"),
    ({"binding_params": ";x=1;X-Evil=<sip:e>"}, "binding_params are not ;name[=value] parameters"),
    ({"aor": "sip:up@127.0.0.1?X-Evil=1"}, "aor must not have ?headers"),
    ({"contact": "sip:up@127.0.0.1:5999?Route=%3Csip:e%3E"}, "binding_uri must not have ?headers"),
    ({"aor": f"sip:up:{URI_SECRET}@127.0.0.1"}, "aor must not have a password in its user part"),
    ({"expiry": 9223372036854775807}, "expiry is above 2147483647"),
    ({"expiry": "9223372036854775807"}, "expiry is above 2147483647"),
    ({"expiry": "\u0663\u0666\u0660\u0660"}, "expiry must be an integer"),
    ({"expiry": "36_00"}, "expiry must be an integer"),
    ({"expiry": "9" * 5000}, "expiry must be an integer"),
    ({"state": "\u00b9"}, "state must be an integer"),
]


@pytest.mark.parametrize(("change", "reason"), UPSERTS)
def test_reg_upsert_refuses_with_the_field_never_the_value(
    service: Hostile, registrar: ScriptedRegistrar, change: dict[str, object], reason: str
) -> None:
    params: dict[str, object] = {
        "aor": "sip:up@127.0.0.1", "contact": "sip:up@127.0.0.1:5999", "registrar": registrar.uri,
        "username": USER_SECRET, "password": SECRET, "expiry": 600,
    }
    params.update(change)
    reply = service.mi("reg_upsert", params)
    assert reply["error"]["code"] == -32602
    assert reply["error"]["data"] == reason
    assert secrets_in(json.dumps(reply)) == []
    assert "sip:up@127.0.0.1" not in service.records()


def test_invalid_utf8_at_reload_skips_the_row_and_the_database_keeps_working(
    service: Hostile, registrar: ScriptedRegistrar
) -> None:
    service.insert(row("utf8b", registrar), {"username": f"CAST(x'{BAD_UTF8.hex()}' AS TEXT)"})
    service.insert(row("later", registrar))
    assert service.mi("reg_reload")["result"] == "OK"
    assert "sip:later@127.0.0.1" in service.records()
    assert "sip:utf8b@127.0.0.1" not in service.records()
    assert "username is not valid UTF-8" in service.log()

    # The row itself, reloaded by its triple: a clear error, no secret.
    reply = service.mi("reg_reload", {"aor": "sip:utf8@127.0.0.1", "contact": "sip:utf8@127.0.0.1:5999",
                                       "registrar": registrar.uri})
    assert reply["error"]["data"] == "password is not valid UTF-8"
    assert secrets_in(json.dumps(reply)) == []

    # Writes still go through, and the runtime state of new records is saved.
    reply = service.mi("reg_upsert", {"aor": "sip:fresh@127.0.0.1", "contact": "sip:fresh@127.0.0.1:5999",
                                       "registrar": registrar.uri, "expiry": 600})
    assert reply["result"] == "OK"
    service.wait_state("sip:fresh@127.0.0.1", "REGISTERED_STATE")
    wait_until(lambda: {"sip:fresh@127.0.0.1", "sip:later@127.0.0.1"} <= service.runtime_aors(), 10,
               "runtime rows of the records added after the bad row")


def raw_http(service: Hostile, data: bytes, *, read_after: float = 5.0) -> bytes:
    """Send ``data`` and return what comes back before the server closes."""
    with socket.create_connection(("127.0.0.1", service.proc.mi_port), timeout=read_after) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def test_chunked_body_without_token_is_refused_at_once(service: Hostile) -> None:
    started = time.monotonic()
    reply = raw_http(service, b"POST /mi HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"100000\r\n" + b"[" * 65536)
    assert reply.startswith(b"HTTP/1.1 401 ")
    assert time.monotonic() - started < 3


def test_huge_content_length_without_token_is_refused_at_once(service: Hostile) -> None:
    reply = raw_http(service, b"POST /mi HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 401 ")


def test_huge_content_length_with_token_is_413_before_the_body(service: Hostile) -> None:
    reply = raw_http(service, b"POST /mi HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
                     + b"\r\nContent-Length: 1000000000\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 413 ")


def deleted_files(pid: int) -> list[str]:
    """Files the process holds open that are already unlinked: temporary files."""
    targets = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            targets.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue
    return [t for t in targets if t.endswith("(deleted)")]


def test_a_large_body_is_never_spooled_to_disk(service: Hostile) -> None:
    body = b'{"jsonrpc":"2.0","method":"which","id":1,"params":{"pad":"' + b"x" * 900_000 + b'"}}'
    with socket.create_connection(("127.0.0.1", service.proc.mi_port), timeout=10) as sock:
        sock.sendall(b"POST /mi HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer "
                     + TOKEN.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body[:500_000])
        # Half the body is in: a spooling server holds a temporary file now.
        time.sleep(0.5)
        assert deleted_files(service.pid) == []
        sock.sendall(body[500_000:])
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received.startswith(b"HTTP/1.1 200 ")


def test_deep_nesting_is_a_json_rpc_parse_error(service: Hostile) -> None:
    status, reply = service.http("/mi", b"[" * 400_000)
    assert status == 200
    assert json.loads(reply) == {"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"},
                                 "id": None}


@pytest.mark.parametrize("request_id", [b"1e999", b"NaN", b"-Infinity"])
def test_non_finite_id_is_a_parse_error_with_null_id(service: Hostile, request_id: bytes) -> None:
    status, reply = service.http("/mi", b'{"jsonrpc":"2.0","method":"which","id":' + request_id + b"}")
    assert status == 200
    decoded = json.loads(reply)
    assert decoded["error"]["code"] == -32700
    assert decoded["id"] is None


def test_reg_list_and_status_json_still_answer(service: Hostile) -> None:
    assert "sip:good@127.0.0.1" in service.records()
    status, reply = service.http("/status/records.json")
    assert status == 200
    assert secrets_in(reply.decode()) == []


def test_no_secret_anywhere_in_the_log(service: Hostile) -> None:
    # Last: after every case above has run.
    assert secrets_in(service.log()) == []
    assert "Traceback" not in service.log()
