"""Hostile registrar replies against the real service, over UDP and TCP.

Each behaviour belongs to one record (the To user picks it), so one service
meets them all at once, beside an honest record that must keep registering.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.service import wait_until
from tests.hostile.registrar import ScriptedRegistrar, granted
from tests.hostile.service import IN_FLIGHT, Hostile
from uacregistrant.sip.message import Request, response_for

pytestmark = pytest.mark.timeout(120)

SECRET = "digest-pw-never-shown"
SUPERSCRIPT_3600 = "\u00b3\u2076\u2070\u2070"  # str.isdigit() says yes, int() says no


def asked_expiry(request: Request) -> int:
    match = re.search(r";expires=(\d+)", request.header("Contact") or "")
    assert match is not None
    return int(match.group(1))


def unicode_digits(request: Request) -> list[bytes]:
    # Our Contact kept as asked; every number the registrant reads besides it
    # in digits that str.isdigit() accepts and int() refuses.
    return [granted(request, ("Expires", SUPERSCRIPT_3600), ("Flow-Timer", SUPERSCRIPT_3600))]


def unicode_digits_in_contact(request: Request) -> list[bytes]:
    contact = re.sub(r";expires=\d+", f";expires={SUPERSCRIPT_3600}", request.header("Contact") or "")
    return [response_for(request, 200, "OK", [("Contact", contact), ("Expires", SUPERSCRIPT_3600)],
                         to_tag="reg").to_bytes()]


def min_expires_one_above(request: Request) -> list[bytes]:
    asked = asked_expiry(request)
    return [response_for(request, 423, "Interval Too Brief", [("Min-Expires", str(asked + 1))],
                         to_tag="reg").to_bytes()]


def expires_zero(request: Request) -> list[bytes]:
    contact = re.sub(r";expires=\d+", ";expires=0", request.header("Contact") or "")
    return [response_for(request, 200, "OK", [("Contact", contact), ("Expires", "0")],
                         to_tag="reg").to_bytes()]


def huge_expiry(request: Request) -> list[bytes]:
    huge = "9223372036854775807"
    contact = re.sub(r";expires=\d+", f";expires={huge}", request.header("Contact") or "")
    return [response_for(request, 200, "OK", [("Contact", contact), ("Expires", huge)],
                         to_tag="reg").to_bytes()]


def no_contact(request: Request) -> list[bytes]:
    return [response_for(request, 200, "OK", [], to_tag="reg").to_bytes()]


def digest(request: Request) -> list[bytes]:
    if request.header("Authorization") is None:
        challenge = 'Digest realm="hostile", nonce="n0nce", algorithm=MD5, qop="auth"'
        return [response_for(request, 401, "Unauthorized", [("WWW-Authenticate", challenge)],
                             to_tag="reg").to_bytes()]
    return [granted(request)]


BEHAVIOURS = {
    "unicode": unicode_digits,
    "unicodecontact": unicode_digits_in_contact,
    "tight": min_expires_one_above,
    "zero": expires_zero,
    "nocontact": no_contact,
    "hugeexpiry": huge_expiry,
    "digest": digest,
}


@pytest.fixture(scope="module", params=["udp", "tcp"])
def registrar(request: pytest.FixtureRequest) -> Iterator[ScriptedRegistrar]:
    registrar = ScriptedRegistrar(request.param, BEHAVIOURS).start()
    try:
        yield registrar
    finally:
        registrar.stop()


def row(user: str, registrar: ScriptedRegistrar, **changes: object) -> dict[str, object]:
    values: dict[str, object] = {
        "registrar": registrar.uri, "aor": f"sip:{user}@127.0.0.1",
        "binding_URI": f"sip:{user}@127.0.0.1:5999", "expiry": 600,
        "username": user, "password": SECRET,
    }
    values.update(changes)
    return values


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, registrar: ScriptedRegistrar) -> Iterator[Hostile]:
    workdir: Path = tmp_path_factory.mktemp(f"replies-{registrar.transport}")
    users = ["honest", *BEHAVIOURS]
    rows = [row(user, registrar) for user in users]
    rows.append(row("digestctrl", registrar, username="dig\x01est"))
    hostile = Hostile(workdir, rows)
    try:
        yield hostile.start()
    finally:
        hostile.stop()


def answered(registrar: ScriptedRegistrar, user: str) -> None:
    wait_until(lambda: registrar.arrivals(user), 15, f"a REGISTER of {user}")


def settled(service: Hostile, aor: str, timeout: float = 10) -> str:
    wait_until(lambda: service.state(aor) not in IN_FLIGHT, timeout, f"{aor} settled")
    state = service.state(aor)
    assert state is not None
    return state


def test_honest_record_registers_beside_the_hostile_ones(service: Hostile) -> None:
    service.wait_state("sip:honest@127.0.0.1", "REGISTERED_STATE")


def test_challenge_is_answered_for_a_sound_username(service: Hostile) -> None:
    service.wait_state("sip:digest@127.0.0.1", "REGISTERED_STATE")


def test_control_character_username_never_reaches_a_challenge(
    service: Hostile, registrar: ScriptedRegistrar
) -> None:
    service.wait_state("sip:honest@127.0.0.1", "REGISTERED_STATE")
    assert "sip:digestctrl@127.0.0.1" not in service.records()
    assert registrar.arrivals("digestctrl") == []
    reply = service.mi("reg_upsert", {"aor": "sip:digestctrl@127.0.0.1",
                                       "contact": "sip:digestctrl@127.0.0.1:5999",
                                       "registrar": registrar.uri, "username": "dig\x01est",
                                       "password": SECRET})
    assert reply["error"]["code"] == -32602


@pytest.mark.parametrize("user", ["unicode", "unicodecontact"])
def test_unicode_digits_in_a_200_settle_the_record(
    service: Hostile, registrar: ScriptedRegistrar, user: str
) -> None:
    answered(registrar, user)
    settled(service, f"sip:{user}@127.0.0.1")
    # The honest record is still served: a forced REGISTER goes out and is answered.
    sent = len(registrar.arrivals("honest"))
    assert service.mi("reg_force_register", {"aor": "sip:honest@127.0.0.1",
                                             "contact": "sip:honest@127.0.0.1:5999",
                                             "registrar": registrar.uri})["result"] == "OK"
    wait_until(lambda: len(registrar.arrivals("honest")) > sent, 10, "the forced REGISTER")
    service.wait_state("sip:honest@127.0.0.1", "REGISTERED_STATE")


def test_423_one_above_is_not_a_loop(service: Hostile, registrar: ScriptedRegistrar) -> None:
    answered(registrar, "tight")
    assert settled(service, "sip:tight@127.0.0.1") == "REGISTRAR_ERROR_STATE"
    first = registrar.arrivals("tight")[0].at
    wait_until(lambda: __import__("time").monotonic() > first + 3, 5, "three seconds of 423s")
    in_three_seconds = [a for a in registrar.arrivals("tight") if a.at < first + 3]
    assert len(in_three_seconds) <= 3


@pytest.mark.parametrize("user", ["zero", "nocontact"])
def test_200_that_drops_our_binding_is_not_registered(
    service: Hostile, registrar: ScriptedRegistrar, user: str
) -> None:
    answered(registrar, user)
    assert settled(service, f"sip:{user}@127.0.0.1") != "REGISTERED_STATE"


def test_huge_granted_expiry_leaves_reg_list_and_the_status_page_working(
    service: Hostile, registrar: ScriptedRegistrar
) -> None:
    answered(registrar, "hugeexpiry")
    settled(service, "sip:hugeexpiry@127.0.0.1")
    record = service.records()["sip:hugeexpiry@127.0.0.1"]
    assert record["expires"] <= 2**32
    status, reply = service.http("/status/records.json")
    assert status == 200
    assert b"hugeexpiry" in reply


def test_no_secret_and_no_traceback_in_the_log(service: Hostile) -> None:
    service.wait_state("sip:honest@127.0.0.1", "REGISTERED_STATE")
    log = service.log()
    assert SECRET not in log
    assert "Traceback" not in log
    assert "Unhandled" not in log
