"""A record's detail, its availability and the flapping filter on the real service.

``twistd -n uac-registrant`` registers six records at a scripted UDP registrar
(``registrar.DiagnosticRegistrar``): alice is challenged and told a longer
expiry (401, 423, 200), bob gets 503 with Retry-After, carol no answer at all
(Timer F), dave's registrar is a closed TCP port (a transport error), fran is
made to flap by the tests, hal is disabled.  One service, one registrar and
one browser serve every test here; each test sets up what it looks at.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.e2e.service import ServiceProcess, make_table, wait_until
from tests.peers import free_port

from .chromium import chromium_driver, fetched, record_fetches, save_screenshot
from .registrar import OK, RETRY_AFTER, SILENT, UNAVAILABLE, DiagnosticRegistrar
from .test_status_detail import detail
from .test_status_page import aors, click, dialog_open, rows, until

USERS = ("alice", "bob", "carol", "dave", "fran", "hal")
EXPIRY = 60
ALICE_MIN_EXPIRES = 120
TRACE_SECONDS = 600


def username(user: str) -> str:
    return f"authuser-{user}-3141"


def password(user: str) -> str:
    return f"pw-{user}-Never-Shown-7781"


def aor(user: str) -> str:
    return f"sip:{user}@example.test"


@pytest.fixture(scope="module")
def registrar():
    registrar = DiagnosticRegistrar().start()
    registrar.set_mode("bob", UNAVAILABLE)
    registrar.set_mode("carol", SILENT)
    registrar.min_expires["alice"] = ALICE_MIN_EXPIRES
    yield registrar
    registrar.stop()


@pytest.fixture(scope="module")
def service(registrar, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("diagnostics")
    sip_port = free_port("udp")
    closed = free_port("tcp")  # nothing listens there: dave's REGISTER cannot be sent

    def row(user: str, **extra) -> dict:
        values = dict(registrar=registrar.uri, aor=aor(user), username=username(user), password=password(user),
                      binding_URI=f"sip:{user}@127.0.0.1:{sip_port}", expiry=EXPIRY)
        return {**values, **extra}

    db = workdir / "registrant.sqlite"
    make_table(db, [
        row("alice"), row("bob"), row("carol"),
        row("dave", registrar=f"sip:127.0.0.1:{closed};transport=tcp"),
        row("fran"), row("hal", state=1),
    ])
    process = ServiceProcess(
        workdir,
        ["--db-url", f"sqlite:///{db}", "--listen", f"udp:127.0.0.1:{sip_port}",
         "--listen", f"tcp:127.0.0.1:{sip_port}", "--timer-interval", "2",
         "--failure-retry-interval", "300"],
        mi_port=free_port("tcp"),
    )
    try:
        process.start()
        process.triples = {r["AOR"]: triple(r) for r in process.records().values()}
        wait_until(lambda: states(process, "alice", "bob", "dave", "fran", "hal") == [
            "REGISTERED_STATE", "REGISTRAR_ERROR_STATE", "INTERNAL_ERROR_STATE", "REGISTERED_STATE",
            "NOT_REGISTERED_STATE"], 15, "the first answers")
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with chromium_driver(tmp_path_factory.mktemp("chromium")) as driver:
        record_fetches(driver)
        yield driver


def triple(record: dict) -> dict:
    return {"aor": record["AOR"], "contact": record["binding"], "registrar": record["registrar"]}


def states(service: ServiceProcess, *users: str) -> list[str]:
    records = service.records()
    return [records[aor(user)]["state"] for user in users]


def mi(service: ServiceProcess, method: str, user: str, **params) -> object:
    answer = service.mi(method, {**service.triples[aor(user)], **params})
    assert "error" not in answer, answer
    return answer["result"]


def force(service: ServiceProcess, user: str, state: str) -> None:
    mi(service, "reg_force_register", user)
    wait_until(lambda: states(service, user) == [state], 10, f"{user} in {state}")


def open_page(browser, service: ServiceProcess) -> None:
    browser.get(f"http://127.0.0.1:{service.mi_port}/")
    until(browser, lambda d: len(rows(d)) == len(USERS), "every row")


def open_detail(browser, user: str) -> None:
    if dialog_open(browser, "detail"):
        click(browser, "#detail-close")
        until(browser, lambda d: not dialog_open(d, "detail"), "the detail to close")
    click(browser, f'tr[data-aor="{aor(user)}"] .open-detail')
    until(browser, lambda d: detail(d)["title"] == aor(user) and detail(d)["fields"], f"{user}'s detail")


def summaries(browser) -> list[str]:
    return [exchange["summary"] for exchange in detail(browser)["exchanges"]]


def dialog_of(sip_text: str) -> tuple[str | None, str | None]:
    """The Call-ID and CSeq of a message shown as SIP text."""
    headers = dict(line.split(": ", 1) for line in sip_text.splitlines()[1:] if ": " in line)
    return headers.get("Call-ID"), headers.get("CSeq")


def trace_alice_once_more(service: ServiceProcess, registrar: DiagnosticRegistrar) -> None:
    """A fresh challenge and a longer Min-Expires: the next registration is 401, 423, 200."""
    registrar.new_nonce("alice")
    registrar.min_expires["alice"] = registrar.min_expires["alice"] * 2
    force(service, "alice", "REGISTERED_STATE")


def test_trace_button_then_the_exchanges_in_order(service, registrar, browser, tmp_path):
    open_page(browser, service)
    open_detail(browser, "alice")
    assert detail(browser)["traceState"] == "not traced"

    click(browser, "#trace-on")
    until(browser, lambda d: d.find_element("id", "detail-trace-state").text.startswith("tracing until"),
          "tracing on")
    answer = mi(service, "reg_trace", "alice")
    assert answer["trace"] == "on"
    assert TRACE_SECONDS - 30 < answer["trace_until"] - time.time() <= TRACE_SECONDS
    assert service.records()[aor("alice")]["trace"] == "on"

    first = len(registrar.registers("alice"))
    trace_alice_once_more(service, registrar)
    until(browser, lambda d: summaries(d)[-1:] == ["200 OK"], "the traced registration")
    shown = detail(browser)
    # What the registrar received and answered, in that order: challenged, told a longer expiry, granted.
    exchanged = registrar.registers("alice")[first:]
    assert [dialog_of(e["request"]) for e in shown["exchanges"]] == [
        (r.header("Call-ID"), r.header("CSeq")) for r, _ in exchanged]
    assert [int(summary.split()[0]) for summary in summaries(browser)] == [status for _, status in exchanged]
    assert summaries(browser)[:2] == ["401 Unauthorized", "423 Interval Too Brief"]
    for exchange in shown["exchanges"]:
        assert exchange["request"].startswith(f"REGISTER {registrar.uri} SIP/2.0\n")
        assert exchange["where"] == f"UDP to {registrar.uri.removeprefix('sip:')}"
    challenge, brief, *_, granted = shown["exchanges"]
    assert challenge["reply"].startswith("SIP/2.0 401 Unauthorized")
    assert 'WWW-Authenticate: Digest realm="example.test"' in challenge["reply"]
    assert 'response="…"' in brief["request"]
    assert f"Min-Expires: {ALICE_MIN_EXPIRES * 2}" in brief["reply"]
    assert f"expires={ALICE_MIN_EXPIRES * 2}" in granted["request"]
    # The page shows what MI reg_trace answers.
    assert [e["request"] for e in mi(service, "reg_trace", "alice")["exchanges"]] == [
        e["request"].replace("\n", "\r\n") for e in shown["exchanges"]]
    assert shown["availability"]["Availability"].endswith("%")
    # Tall enough for the whole registration in one picture (docs/status-detail.png is one).
    browser.set_window_size(1400, 1500)
    browser.execute_script("document.getElementById('detail').scrollTop = 0")
    save_screenshot(browser, tmp_path, "status-detail.png")
    browser.set_window_size(1400, 1000)

    click(browser, "#trace-off")
    until(browser, lambda d: detail(d)["traceState"] == "not traced", "tracing off")
    assert mi(service, "reg_trace", "alice")["trace"] == "off"
    click(browser, "#detail-close")


def test_failed_records_show_their_last_failed_exchange(service, registrar, browser):
    # Timer F: 32 s after carol's first REGISTER.
    wait_until(lambda: states(service, "carol") == ["REGISTER_TIMEOUT_STATE"], 45, "carol's timeout")
    open_page(browser, service)

    open_detail(browser, "bob")
    until(browser, lambda d: summaries(d) == ["503 Service Unavailable"], "bob's 503")
    bob = detail(browser)
    assert f"Retry-After: {RETRY_AFTER}" in bob["exchanges"][0]["reply"]
    assert bob["availability"]["Availability"] == "0.00 %"
    assert bob["availability"]["Cause"] == "503 Service Unavailable"
    assert bob["state"] == "REGISTRAR_ERROR_STATE"

    open_detail(browser, "carol")
    until(browser, lambda d: len(summaries(d)) == 1, "carol's exchange")
    carol = detail(browser)
    assert carol["exchanges"][0]["summary"].startswith("timeout")
    assert carol["exchanges"][0]["reply"] is None
    assert carol["exchanges"][0]["noReply"].startswith("No reply: timeout")
    assert carol["availability"]["Cause"] == "timeout"

    open_detail(browser, "dave")
    until(browser, lambda d: len(summaries(d)) == 1, "dave's exchange")
    dave = detail(browser)
    assert dave["exchanges"][0]["summary"].startswith("transport error")
    assert dave["exchanges"][0]["where"].startswith("TCP to 127.0.0.1:")
    assert dave["exchanges"][0]["noReply"].startswith("No reply: transport error")
    assert dave["availability"]["Cause"].startswith("transport error")
    click(browser, "#detail-close")


def availabilities(browser) -> list[float | None]:
    cells = browser.execute_script(
        "return [...document.querySelectorAll('#records tbody td.availability')].map((td) => td.textContent)")
    return [None if text == "–" else float(text.removesuffix(" %")) for text in cells]


def test_availability_column_sorts(service, browser):
    open_page(browser, service)
    click(browser, 'th[data-sort="availability"]')
    until(browser, lambda d: aors(d)[-1] == aor("hal") and aors(d)[0] == aor("bob"), "ascending")
    shown = availabilities(browser)
    assert shown[-1] is None  # hal, disabled from the start, has no figure
    assert shown[:-1] == sorted(shown[:-1])
    assert set(aors(browser)[:3]) == {aor("bob"), aor("carol"), aor("dave")}  # never registered
    assert shown[:3] == [0.0, 0.0, 0.0] and shown[-2] > 50

    click(browser, 'th[data-sort="availability"]')
    until(browser, lambda d: aors(d)[0] in (aor("alice"), aor("fran")), "descending")
    shown = availabilities(browser)
    assert shown[-1] is None and aors(browser)[-1] == aor("hal")  # last either way
    assert shown[:-1] == sorted(shown[:-1], reverse=True)


def test_flapping_filter(service, registrar, browser):
    for mode, state in ((UNAVAILABLE, "REGISTRAR_ERROR_STATE"), (OK, "REGISTERED_STATE"),
                        (UNAVAILABLE, "REGISTRAR_ERROR_STATE"), (OK, "REGISTERED_STATE")):
        registrar.set_mode("fran", mode)
        force(service, "fran", state)
    assert service.records()[aor("fran")]["flaps"] == 2

    open_page(browser, service)
    click(browser, "#flapping")
    until(browser, lambda d: aors(d) == [aor("fran")], "only fran")
    assert browser.find_element("css selector", f'tr[data-aor="{aor("fran")}"] td.flaps').text == "2"
    assert browser.find_element("id", "page-info").text == "1–1 of 1"
    click(browser, "#flapping")
    until(browser, lambda d: len(rows(d)) == len(USERS), "every row again")


def test_no_secret_in_the_page_nor_in_what_it_fetched(service, registrar, browser):
    if len(mi(service, "reg_trace", "alice")["exchanges"]) < 3:
        mi(service, "reg_trace", "alice", trace="on", seconds=60)
        trace_alice_once_more(service, registrar)
    open_page(browser, service)
    pages = []
    for user in USERS:
        open_detail(browser, user)
        until(browser, lambda d: detail(d)["exchanges"] or d.execute_script(
            "return !document.getElementById('detail-no-exchanges').hidden"), f"{user}'s exchanges")
        pages.append(browser.execute_script("return document.documentElement.outerHTML"))
        pages.append(browser.find_element("tag name", "body").text)
    answers = fetched(browser)
    bodies = [answer["body"] for answer in answers]
    # Not vacuous: the records, each record's entry and its exchanges, digests masked.
    assert any("status/records.json" in answer["url"] for answer in answers)
    traces = [json.loads(body)["result"] for body in bodies if '"exchanges"' in body]
    assert {t["AOR"] for t in traces} == {aor(user) for user in USERS}
    alice = next(t for t in traces if t["AOR"] == aor("alice"))
    assert any('response="…"' in e["request"] for e in alice["exchanges"])
    digest = registrar.secrets()
    assert len(digest) >= 6  # nonces handed out, responses and cnonces received
    for secret in (*map(password, USERS), *map(username, USERS), *digest):
        for text in (*pages, *bodies):
            assert secret not in text
        assert secret not in service.log_text()
