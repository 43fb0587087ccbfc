"""The status page of the real service (``twistd -n uac-registrant``) against a real Kamailio."""

from __future__ import annotations

import urllib.request

import pytest

from tests.e2e.service import ServiceProcess, make_table, wait_until
from tests.peers import free_port

from .chromium import chromium_driver, save_screenshot
from .test_status_page import COUNTS_JS, aors, click, dialog_open, row_of, rows, until

PASSWORDS = {"alice": "alice-Pw-6612", "bob": "bob-Pw-5120", "hal": "hal-Pw-0404"}
WRONG = "not-Bobs-Pw-9931"


@pytest.fixture
def registrar(kamailio):
    return kamailio(users=PASSWORDS, min_expires=10, max_expires=3600)


@pytest.fixture
def service(registrar, tmp_path):
    sip_port = free_port("udp")

    def row(user: str, password: str, **extra) -> dict:
        return dict(
            registrar=registrar.uri,
            aor=f"sip:{user}@example.test",
            username=user,
            password=password,
            binding_URI=f"sip:{user}@127.0.0.1:{sip_port}",
            expiry=60,
            **extra,
        )

    db = tmp_path / "registrant.sqlite"
    make_table(db, [
        row("alice", PASSWORDS["alice"]),
        row("bob", WRONG),
        row("hal", PASSWORDS["hal"], state=1),
    ])
    process = ServiceProcess(
        tmp_path,
        ["--db-url", f"sqlite:///{db}", "--listen", f"udp:127.0.0.1:{sip_port}",
         "--timer-interval", "2", "--failure-retry-interval", "30"],
        mi_port=free_port("tcp"),
    )
    try:
        yield process.start()
    finally:
        process.stop()


def secrets() -> list[str]:
    return [*PASSWORDS.values(), WRONG]


def test_status_page_of_the_running_service(registrar, service, tmp_path):
    alice = "sip:alice@example.test"
    wanted = {alice: "REGISTERED_STATE", "sip:bob@example.test": "WRONG_CREDENTIALS_STATE",
              "sip:hal@example.test": "NOT_REGISTERED_STATE"}
    wait_until(lambda: {a: r["state"] for a, r in service.records().items()} == wanted, 15,
               f"states {wanted}")
    assert len(registrar.bindings(alice)) == 1
    url = f"http://127.0.0.1:{service.mi_port}/"

    with chromium_driver(tmp_path) as browser:
        browser.get(url)
        until(browser, lambda d: len(rows(d)) == 3, "three rows")
        assert {row["aor"]: row["state"] for row in rows(browser)} == wanted
        counts = browser.execute_script(COUNTS_JS)
        assert {state: n for state, n in counts.items() if n} == {
            "REGISTERED_STATE": 1, "WRONG_CREDENTIALS_STATE": 1, "NOT_REGISTERED_STATE": 1}
        assert browser.find_element("id", "total").text == "3"

        browser.find_element("id", "q").send_keys("bob")
        until(browser, lambda d: aors(d) == ["sip:bob@example.test"], "the text filter")
        browser.find_element("id", "q").clear()
        browser.execute_script("document.getElementById('q').dispatchEvent(new Event('input'))")
        until(browser, lambda d: len(rows(d)) == 3, "the filter to clear")
        click(browser, '#counts li[data-state="REGISTERED_STATE"]')
        until(browser, lambda d: aors(d) == [alice], "the state filter")
        click(browser, '#counts li[data-state="REGISTERED_STATE"]')
        until(browser, lambda d: len(rows(d)) == 3, "the state filter to clear")

        click(browser, f'tr[data-aor="{alice}"] .action-disable')
        until(browser, lambda d: dialog_open(d, "confirm-dialog"), "the confirm dialog")
        click(browser, "#confirm-ok")
        wait_until(lambda: registrar.bindings(alice) == [], 10, "alice's binding to go")
        until(browser, lambda d: row_of(d, alice)["state"] == "NOT_REGISTERED_STATE", "the row's new state")
        assert row_of(browser, alice)["disabled"]
        assert service.records()[alice]["enabled"] == "no"
        save_screenshot(browser, tmp_path, "status-page-service.png")

        page = browser.page_source
        fetched = browser.execute_script(
            "return performance.getEntriesByType('resource').map((e) => e.name)")
    assert any("status/records.json" in name for name in fetched)
    # Fetched again as the page did; POST /mi answered "OK" to the page's one call.
    for name in (n for n in fetched if not n.endswith("/mi")):
        with urllib.request.urlopen(name, timeout=10) as reply:
            page += reply.read().decode("utf-8")
    for secret in secrets():
        assert secret not in page
        assert secret not in service.log_text()
