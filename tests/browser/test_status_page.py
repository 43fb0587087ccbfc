"""The status page in headless Chromium, against an in-process site on a fake SIP layer.

Selenium blocks, so every browser step runs in a thread (``deferToThread``)
while the reactor serves the page; SIP replies are given from the reactor side.
"""

from __future__ import annotations

import json
import re
import urllib.request

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, threads

from uacregistrant.registrant.observer import Transitions
from uacregistrant.registrant.states import State

from .chromium import chromium_driver, save_screenshot
from .lab import PASSWORD, Lab, start_lab, stop_lab, username

WAIT = 10

ROWS_JS = """
return [...document.querySelectorAll('#records tbody tr')].map((tr) => ({
  aor: tr.querySelector('.aor').textContent,
  state: tr.querySelector('.state').firstChild.textContent,
  disabled: tr.classList.contains('disabled'),
  reply: tr.querySelector('.reply').textContent,
  countdown: tr.querySelector('.countdown').textContent,
  shtag: tr.querySelector('.shtag').textContent,
  actions: [...tr.querySelectorAll('.actions button')].map((b) => b.textContent),
  notes: [...tr.querySelectorAll('.actions .note')].map((n) => n.textContent),
}));
"""

COUNTS_JS = """
return Object.fromEntries([...document.querySelectorAll('#counts li')].map(
  (li) => [li.dataset.state, Number(li.querySelector('.n').textContent)]));
"""


@pytest.fixture
def lab():
    lab = start_lab(bulk=60)
    yield lab
    pytest_twisted.blockon(stop_lab(lab))


def until(driver, check, what: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT).until(lambda d: check(d), message=f"waiting for {what}")


def rows(driver) -> list[dict]:
    return driver.execute_script(ROWS_JS)


def aors(driver) -> list[str]:
    return [row["aor"] for row in rows(driver)]


def row_of(driver, aor: str) -> dict | None:
    return next((row for row in rows(driver) if row["aor"] == aor), None)


def click(driver, selector: str) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    # The table is rendered anew on every refresh: an element found just before
    # a refresh is gone by the time it is clicked.  Find it again, a few times.
    for attempt in range(5):
        try:
            driver.find_element(By.CSS_SELECTOR, selector).click()
            return
        except StaleElementReferenceException:
            if attempt == 4:
                raise


def dialog_open(driver, dialog_id: str) -> bool:
    return driver.execute_script(f"return document.getElementById('{dialog_id}').open")


def reg_list(url: str, token: str | None = None) -> list[dict]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "reg_list"}).encode()
    request = urllib.request.Request(url + "mi", data=body, headers=headers)
    with urllib.request.urlopen(request, timeout=WAIT) as reply:
        return json.loads(reply.read())["result"]["Records"]


def open_page(driver, lab: Lab, rows_expected: int = 50) -> None:
    driver.get(lab.url)
    until(driver, lambda d: len(rows(d)) == rows_expected, f"{rows_expected} rows")


def entered(lab: Lab, aor: str, state: State) -> defer.Deferred:
    """Fires, a reactor turn later, when the record of ``aor`` enters ``state``.

    Not from inside the observer: the machine sends its request after telling it.
    """
    d: defer.Deferred = defer.Deferred()
    fired: list = []

    def watch(registrant, old, new):
        if registrant.config.aor == aor and new is state and not fired:
            fired.append(registrant)
            reactor.callLater(0, d.callback, registrant)

    lab.engine.subscribe(Transitions(watch))
    return d.addTimeout(WAIT, reactor)


@pytest_twisted.inlineCallbacks
def test_page_shows_what_reg_list_shows(lab, browser, tmp_path):
    def look() -> None:
        open_page(browser, lab)
        records = reg_list(lab.url)
        by_state: dict[str, int] = {}
        for record in records:
            by_state[record["state"]] = by_state.get(record["state"], 0) + 1
        until(browser, lambda d: d.find_element("id", "total").text == str(len(records)), "the total")
        counts = browser.execute_script(COUNTS_JS)
        assert {state: n for state, n in counts.items() if n} == by_state
        listed = {record["AOR"]: record for record in records}
        for row in rows(browser):
            assert row["state"] == listed[row["aor"]]["state"]
        shown = {row["aor"]: row for row in rows(browser)}
        assert shown["sip:bob@example.test"]["reply"] == "403 Forbidden"
        assert shown["sip:bob@example.test"]["shtag"] == "vip/1"
        assert shown["sip:dave@example.test"]["disabled"]
        assert shown["sip:dave@example.test"]["actions"][0] == "Enable"
        assert shown["sip:alice@example.test"]["actions"][0] == "Disable"
        tags = browser.execute_script(
            "return [...document.querySelectorAll('#shtags li')].map((li) => li.textContent)")
        assert sorted(tags) == ["edge/2 1", "vip/1 2"]
        assert browser.find_element("id", "page-info").text == "1–50 of 65"
        save_screenshot(browser, tmp_path, "status-page.png")
        assert (tmp_path / "status-page.png").stat().st_size > 0
        source = browser.page_source
        assert PASSWORD not in source and username("alice") not in source

    yield threads.deferToThread(look)
    served = b"".join(lab.bodies)
    assert b"records.json" in served or b'"records"' in served
    assert PASSWORD.encode() not in served
    assert username("bob").encode() not in served


def seconds_left(text: str) -> int:
    match = re.fullmatch(r"(?:(\d+)m )?(\d+)s", text)
    assert match, text
    return int(match.group(1) or 0) * 60 + int(match.group(2))


@pytest_twisted.inlineCallbacks
def test_refresh_countdown_follows_the_server_clock(lab, browser):
    alice = "sip:alice@example.test"
    registrant = next(r for r in lab.engine if r.config.aor == alice)
    first: list[int] = []

    def look() -> None:
        open_page(browser, lab)
        first.append(seconds_left(row_of(browser, alice)["countdown"]))

    yield threads.deferToThread(look)
    assert abs(first[0] - (registrant.registration_timeout - lab.clock.seconds())) <= 3
    lab.clock.advance(120)

    def moved() -> None:
        until(browser, lambda d: abs(seconds_left(row_of(d, alice)["countdown"]) - (first[0] - 120)) <= 3,
              "the countdown to follow the server clock")

    yield threads.deferToThread(moved)


@pytest_twisted.inlineCallbacks
def test_text_filter_state_filter_sort_and_pages(lab, browser):
    from selenium.webdriver.support.ui import Select

    def look() -> None:
        open_page(browser, lab)
        browser.find_element("id", "q").send_keys("CAROL")
        until(browser, lambda d: aors(d) == ["sip:carol@example.test"], "the text filter")
        browser.find_element("id", "q").clear()
        browser.execute_script("document.getElementById('q').dispatchEvent(new Event('input'))")
        until(browser, lambda d: len(rows(d)) == 50, "the filter to clear")

        Select(browser.find_element("id", "state-filter")).select_by_value("REGISTRAR_ERROR_STATE")
        until(browser, lambda d: aors(d) == ["sip:bob@example.test"], "the state filter")
        click(browser, '#counts li[data-state="REGISTER_TIMEOUT_STATE"]')
        until(browser, lambda d: aors(d) == ["sip:carol@example.test"], "the state count as a filter")
        click(browser, '#counts li[data-state="REGISTER_TIMEOUT_STATE"]')
        until(browser, lambda d: len(rows(d)) == 50, "the state filter to clear")

        click(browser, 'th[data-sort="aor"]')  # sorted by AOR already: now descending
        until(browser, lambda d: aors(d)[0] == "sip:user059@example.test", "descending order")
        click(browser, 'th[data-sort="state"]')
        until(browser, lambda d: rows(d)[0]["state"] == "NOT_REGISTERED_STATE", "sort by state")
        click(browser, 'th[data-sort="aor"]')
        until(browser, lambda d: aors(d)[0] == "sip:alice@example.test", "ascending order")
        first_page = aors(browser)
        click(browser, "#next")
        until(browser, lambda d: len(rows(d)) == 15, "the second page")
        assert browser.find_element("id", "page-info").text == "51–65 of 65"
        assert not set(aors(browser)) & set(first_page)
        assert browser.find_element("id", "next").get_attribute("disabled") is not None

    yield threads.deferToThread(look)


@pytest_twisted.inlineCallbacks
def test_disable_asks_first_then_the_row_follows_the_record(lab, browser):
    alice = "sip:alice@example.test"
    selector = f'tr[data-aor="{alice}"] .action-disable'

    def cancel_once_then_confirm() -> None:
        open_page(browser, lab)
        click(browser, selector)
        until(browser, lambda d: dialog_open(d, "confirm-dialog"), "the confirm dialog")
        assert alice in browser.find_element("id", "confirm-text").text
        click(browser, "#confirm-cancel")
        until(browser, lambda d: not dialog_open(d, "confirm-dialog"), "the dialog to close")
        assert row_of(browser, alice)["actions"][0] == "Disable"
        click(browser, selector)
        until(browser, lambda d: dialog_open(d, "confirm-dialog"), "the confirm dialog again")
        click(browser, "#confirm-ok")

    unregistering = entered(lab, alice, State.UNREGISTERING_STATE)
    yield threads.deferToThread(cancel_once_then_confirm)
    registrant = yield unregistering
    assert not registrant.enabled
    [sent] = lab.sender.sent
    assert "expires=0" in sent.header("Contact")
    lab.answer_all()
    assert registrant.state is State.NOT_REGISTERED_STATE

    def follow_and_enable() -> None:
        until(browser, lambda d: row_of(d, alice)["state"] == "NOT_REGISTERED_STATE", "the new state")
        row = row_of(browser, alice)
        assert row["disabled"] and row["actions"][0] == "Enable"
        until(browser, lambda d: row_of(d, alice)["notes"] == ["OK"] or not row_of(d, alice)["notes"],
              "the result note")
        click(browser, f'tr[data-aor="{alice}"] .action-enable')

    registering = entered(lab, alice, State.REGISTERING_STATE)
    yield threads.deferToThread(follow_and_enable)
    registrant = yield registering
    assert registrant.enabled
    lab.answer_all()

    def registered_again() -> None:
        until(browser, lambda d: row_of(d, alice)["state"] == "REGISTERED_STATE", "registered again")
        assert not row_of(browser, alice)["disabled"]

    yield threads.deferToThread(registered_again)


@pytest_twisted.inlineCallbacks
def test_force_register_and_reload_call_mi(lab, browser):
    bob = "sip:bob@example.test"
    registering = entered(lab, bob, State.REGISTERING_STATE)

    def force() -> None:
        open_page(browser, lab)
        click(browser, f'tr[data-aor="{bob}"] .action-force')

    yield threads.deferToThread(force)
    yield registering
    lab.answer_all()

    def reload() -> None:
        until(browser, lambda d: row_of(d, bob)["notes"] == ["OK"], "force register's result")
        click(browser, f'tr[data-aor="{bob}"] .action-reload')
        until(browser, lambda d: row_of(d, bob)["notes"] == ["OK"], "reload's result")

    yield threads.deferToThread(reload)


@pytest_twisted.inlineCallbacks
def test_page_asks_for_the_token_and_keeps_it_for_the_session(tmp_path):
    lab = start_lab(token="tok-5d1c")
    try:
        with chromium_driver(tmp_path) as driver:

            def look() -> None:
                driver.get(lab.url)
                until(driver, lambda d: dialog_open(d, "token-dialog"), "the token dialog")
                assert rows(driver) == []
                driver.find_element("id", "token-input").send_keys("tok-5d1c")
                click(driver, "#token-ok")
                until(driver, lambda d: len(rows(d)) == 5, "the rows")
                assert driver.execute_script(
                    "return sessionStorage.getItem('uac-registrant.mi_token')") == "tok-5d1c"
                driver.refresh()
                until(driver, lambda d: len(rows(d)) == 5, "the rows after a reload")
                assert not dialog_open(driver, "token-dialog")
                assert "tok-5d1c" not in driver.page_source

            yield threads.deferToThread(look)
    finally:
        yield stop_lab(lab)
