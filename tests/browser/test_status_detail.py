"""The record detail, the availability column and the flapping filter, in headless Chromium.

The page's side against the trace lane's contract: the in-process site's
records carry availability figures a test sets, and its ``reg_trace`` is a
stand-in answering the contract's JSON, hostile bytes included, so every
outcome the page must render (reply, timeout, transport error) is shown on
cue.  The same views against the real service are in ``test_status_diagnostics``.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import threads

from uacregistrant.mi.commands import TRIPLE
from uacregistrant.mi.jsonrpc import Command, MIError

from .lab import figures, set_figures, start_lab, stop_lab
from .test_status_page import aors, click, dialog_open, reg_list, rows, until

ALICE = "sip:alice@example.test"
HOSTILE = "<img src=x onerror=\"document.title='pwned'\">"

FIGURES = {
    ALICE: figures(0.995, 3, (2.0, 5.0, "503 Service Unavailable")),
    "sip:bob@example.test": figures(0.2, 1, (1.0, 4.0, "403 Forbidden")),
    "sip:carol@example.test": figures(0.0, 2, (1.0, None, "timeout")),
    "sip:dave@example.test": figures(None),
    "sip:erin@example.test": figures(1.0),
}
for _i in range(60):
    FIGURES[f"sip:user{_i:03d}@example.test"] = figures(0.5 + _i / 200)

REQUEST = "\r\n".join([
    "REGISTER sip:127.0.0.1:5090 SIP/2.0",
    "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-{n}",
    "Call-ID: c4ll-1d",
    "CSeq: {n} REGISTER",
    "Contact: <sip:alice@127.0.0.1:5070>;expires=600",
    "Expires: 600",
])


def reply(status: str, *headers: str) -> str:
    return "\r\n".join([f"SIP/2.0 {status}", "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK", *headers])


EXCHANGES = [
    ("reply", reply("401 Unauthorized", 'WWW-Authenticate: Digest realm="example.test", nonce="…", algorithm=MD5, qop="auth"'), None),
    ("reply", reply("423 Interval Too Brief", "Min-Expires: 1800"), None),
    ("timeout", None, "no reply in 32 s"),
    ("transport error", None, "connection refused"),
    ("reply", reply(f"503 {HOSTILE}", "Retry-After: 30"), None),
]


class StandInTrace:
    """``reg_trace`` as the contract has it, for the lab's records."""

    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.until: float | None = None

    def command(self) -> Command:
        return Command("reg_trace", self.handle, (TRIPLE + ("trace?", "seconds?"),))

    def handle(self, params: dict) -> dict:
        self.calls.append(dict(params))
        if params["aor"] not in FIGURES:
            raise MIError(404, "No such registrant")
        if params.get("trace") == "on":
            self.until = 1_900_000_000.0 + int(params.get("seconds", 600))
        elif params.get("trace") == "off":
            self.until = None
        exchanges = []
        if params["aor"] == ALICE:
            for n, (outcome, answer, reason) in enumerate(EXCHANGES, start=1):
                request = REQUEST.replace("{n}", str(n))
                if n == 2:
                    request += '\r\nAuthorization: Digest username="…", response="…", nonce="…", cnonce="…"'
                exchanges.append({
                    "at": 1_700_000_000.0 + n, "transport": "UDP", "destination": "127.0.0.1:5090",
                    "request": request, "reply": answer, "outcome": outcome, "reason": reason,
                })
        return {
            "AOR": params["aor"], "binding": params["contact"], "registrar": params["registrar"],
            "trace": "on" if self.until else "off", "trace_until": self.until, "exchanges": exchanges,
        }


@pytest.fixture
def trace():
    return StandInTrace()


@pytest.fixture
def lab(trace):
    lab = start_lab(bulk=60, commands=[trace.command()])
    set_figures(lab.engine, FIGURES)
    yield lab
    pytest_twisted.blockon(stop_lab(lab))


DETAIL_JS = """
const d = document.getElementById('detail');
// Pairs, not an object: the driver hands objects back with their keys sorted.
const pairs = (id) => [...document.querySelectorAll('#' + id + ' dt')].map(
  (dt) => [dt.textContent, dt.nextElementSibling.textContent]);
return {
  open: d.open,
  title: document.getElementById('detail-title').textContent,
  state: document.getElementById('detail-state').textContent,
  fields: pairs('detail-fields'),
  availability: pairs('detail-availability'),
  meter: document.getElementById('detail-meter').value,
  traceState: document.getElementById('detail-trace-state').textContent,
  stopDisabled: document.getElementById('trace-off').disabled,
  error: document.getElementById('detail-error').textContent,
  exchanges: [...document.querySelectorAll('#detail-exchanges li')].map((li) => ({
    summary: li.querySelector('.summary').textContent,
    where: li.querySelector('.where').textContent,
    request: li.querySelector('pre.request').textContent,
    reply: li.querySelector('pre.reply') ? li.querySelector('pre.reply').textContent : null,
    noReply: li.querySelector('.no-reply') ? li.querySelector('.no-reply').textContent : null,
  })),
  images: d.querySelectorAll('img, script').length,
  focused: document.activeElement ? document.activeElement.id || document.activeElement.className : null,
};
"""


WATCH_POLICY = """
window.__violations = [];
document.addEventListener("securitypolicyviolation",
  (event) => window.__violations.push(event.violatedDirective + " " + event.blockedURI));
"""


def detail(driver) -> dict:
    shown = driver.execute_script(DETAIL_JS)
    shown["field_order"] = [name for name, _ in shown["fields"]]
    shown["fields"] = dict(shown["fields"])
    shown["availability"] = dict(shown["availability"])
    return shown


def open_page(driver, lab) -> None:
    driver.get(lab.url)
    until(driver, lambda d: len(rows(d)) == 50, "50 rows")


def cells(driver, name: str) -> list[str]:
    return driver.execute_script(
        f"return [...document.querySelectorAll('#records tbody td.{name}')].map((td) => td.textContent)")


@pytest_twisted.inlineCallbacks
def test_detail_shows_fields_availability_and_exchanges(lab, browser):
    listed: list[dict] = []
    entries: list[dict] = []
    violations: list[str] = []

    def look() -> None:
        browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": WATCH_POLICY})
        open_page(browser, lab)
        click(browser, f'tr[data-aor="{ALICE}"] td.state')
        until(browser, lambda d: dialog_open(d, "detail"), "the detail to open")
        until(browser, lambda d: len(detail(d)["exchanges"]) == 5, "the exchanges")
        listed.append(detail(browser))
        entries.extend(reg_list(lab.url))
        violations.extend(browser.execute_script("return window.__violations"))

    yield threads.deferToThread(look)
    shown = listed[0]
    alice = next(entry for entry in entries if entry["AOR"] == ALICE)
    assert shown["title"] == ALICE and shown["state"] == "REGISTERED_STATE"
    # Every reg_list key, in order; the figures in their own part.
    figure_keys = {"enabled_s", "bound_s", "availability", "flaps", "last_outage", "trace"}
    assert shown["field_order"] == [k for k in alice if k not in figure_keys]
    assert shown["fields"]["expires"] == "600" and shown["fields"]["last_code"] == "200"
    assert shown["availability"]["Availability"] == "99.50 %"
    assert shown["availability"]["Enabled for"] == "1h 00m"
    assert shown["availability"]["Registered for"] == "59m 42s"
    assert shown["availability"]["Flaps"] == "3"
    assert shown["availability"]["Last outage"].endswith("(3s)")
    assert shown["availability"]["Cause"] == "503 Service Unavailable"
    assert shown["meter"] == pytest.approx(0.995)
    assert shown["traceState"] == "not traced" and shown["stopDisabled"]
    assert shown["error"] == ""

    # Oldest first, request then reply, as SIP text; no reply said as such.
    summaries = [e["summary"] for e in shown["exchanges"]]
    assert summaries == ["401 Unauthorized", "423 Interval Too Brief", "timeout: no reply in 32 s",
                         "transport error: connection refused", f"503 {HOSTILE}"]
    first = shown["exchanges"][0]
    assert first["where"] == "UDP to 127.0.0.1:5090"
    assert first["request"].splitlines()[0] == "REGISTER sip:127.0.0.1:5090 SIP/2.0"
    assert "CSeq: 1 REGISTER" in first["request"] and "\r" not in first["request"]
    assert first["reply"].splitlines()[0] == "SIP/2.0 401 Unauthorized"
    assert 'nonce="…"' in first["reply"]
    assert 'response="…"' in shown["exchanges"][1]["request"]
    assert "Min-Expires: 1800" in shown["exchanges"][1]["reply"]
    assert shown["exchanges"][2]["reply"] is None
    assert shown["exchanges"][2]["noReply"] == "No reply: timeout (no reply in 32 s)"
    assert shown["exchanges"][3]["noReply"] == "No reply: transport error: connection refused"
    # A registrar's bytes are text, never markup.
    assert HOSTILE in shown["exchanges"][4]["reply"]
    assert shown["images"] == 0
    assert browser.title != "pwned"
    # Nothing the page did needed more than its policy allows.
    assert violations == []


@pytest_twisted.inlineCallbacks
def test_trace_buttons_call_reg_trace_with_the_triple(lab, trace, browser):
    def go() -> None:
        open_page(browser, lab)
        click(browser, f'tr[data-aor="{ALICE}"] .open-detail')
        until(browser, lambda d: len(detail(d)["exchanges"]) == 5, "the exchanges")
        click(browser, "#trace-on")
        until(browser, lambda d: detail(d)["traceState"].startswith("tracing until"), "tracing on")
        assert not detail(browser)["stopDisabled"]
        click(browser, "#trace-off")
        until(browser, lambda d: detail(d)["traceState"] == "not traced", "tracing off")

    yield threads.deferToThread(go)
    switched = [call for call in trace.calls if "trace" in call]
    triple = {"aor": ALICE, "contact": "sip:alice@127.0.0.1:5070", "registrar": "sip:127.0.0.1:5090"}
    assert switched == [{**triple, "trace": "on", "seconds": 600}, {**triple, "trace": "off"}]
    # Read again after each switch: the history is refreshed.
    reads = [i for i, call in enumerate(trace.calls) if "trace" not in call]
    assert any(i > trace.calls.index(switched[1]) for i in reads)


def press(browser, key: str) -> None:
    """Send ``key`` to the focused element, found again if a redraw replaced it."""
    from selenium.common.exceptions import StaleElementReferenceException

    for attempt in range(5):
        try:
            browser.switch_to.active_element.send_keys(key)
            return
        except StaleElementReferenceException:
            if attempt == 4:
                raise


@pytest_twisted.inlineCallbacks
def test_detail_opens_from_the_keyboard_and_closes_with_escape(lab, browser):
    from selenium.webdriver.common.keys import Keys

    def go() -> None:
        open_page(browser, lab)
        # Found and focused in one script: a redraw cannot come in between.
        browser.execute_script("document.querySelector(arguments[0]).focus()",
                               f'tr[data-aor="{ALICE}"] .open-detail')
        # The rows are redrawn every poll: the focus stays on the same row's control.
        until(browser, lambda d: d.execute_script("return document.activeElement.textContent") == ALICE,
              "the focus on alice's row")
        press(browser, Keys.ENTER)
        until(browser, lambda d: dialog_open(d, "detail"), "the detail to open")
        assert detail(browser)["focused"] == "detail-close"
        press(browser, Keys.ESCAPE)
        until(browser, lambda d: not dialog_open(d, "detail"), "Esc to close the detail")
        until(browser, lambda d: d.execute_script("return document.activeElement.textContent") == ALICE,
              "the focus back on the row")
        # The close button and a click on the backdrop close it too.
        press(browser, Keys.ENTER)
        until(browser, lambda d: dialog_open(d, "detail"), "the detail to open again")
        click(browser, "#detail-close")
        until(browser, lambda d: not dialog_open(d, "detail"), "the close button")
        # Closed and another record's opened at once ("close" fires after the opening):
        # bob's detail stays and fills in; bob has no exchange in the stand-in.
        click(browser, f'tr[data-aor="{ALICE}"] .open-detail')
        until(browser, lambda d: dialog_open(d, "detail"), "alice's detail again")
        browser.execute_script(
            "document.getElementById('detail').close();"
            "document.querySelector('tr[data-aor=\"sip:bob@example.test\"] .open-detail').click();")
        until(browser, lambda d: detail(d)["title"] == "sip:bob@example.test", "bob's detail")
        until(browser, lambda d: d.execute_script(
            "return !document.getElementById('detail-no-exchanges').hidden"), "no exchange")
        assert detail(browser)["exchanges"] == []

    yield threads.deferToThread(go)


@pytest_twisted.inlineCallbacks
def test_availability_column_sorts_and_flapping_filters(lab, browser):
    def go() -> None:
        open_page(browser, lab)
        assert dict(zip(aors(browser), cells(browser, "availability")))[ALICE] == "99.50 %"
        click(browser, 'th[data-sort="availability"]')
        until(browser, lambda d: aors(d)[:2] == ["sip:carol@example.test", "sip:bob@example.test"],
              "the worst first")
        assert cells(browser, "availability")[:3] == ["0.00 %", "20.00 %", "50.00 %"]
        click(browser, 'th[data-sort="availability"]')
        until(browser, lambda d: aors(d)[:2] == ["sip:erin@example.test", ALICE], "the best first")
        assert cells(browser, "availability")[:2] == ["100 %", "99.50 %"]
        click(browser, 'th[data-sort="flaps"]')
        click(browser, 'th[data-sort="flaps"]')
        until(browser, lambda d: cells(d, "flaps")[:3] == ["3", "2", "1"], "the most flaps first")
        click(browser, "#flapping")
        until(browser, lambda d: aors(d) == [ALICE, "sip:carol@example.test"], "the flapping filter")
        assert browser.find_element("id", "page-info").text == "1–2 of 2"
        click(browser, "#flapping")
        until(browser, lambda d: len(rows(d)) == 50, "the filter off")

    yield threads.deferToThread(go)
