"""Headless Chromium through Selenium and the Debian chromedriver; nothing is downloaded.

``chromium_driver(tmp_path)`` yields a WebDriver; a missing browser, driver or
``selenium`` package skips the test, or fails it when ``CI=true``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.peers import unavailable

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMEDRIVER = "/usr/bin/chromedriver"

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
)


def _binaries() -> tuple[str, str]:
    browser = next((path for path in CHROMIUM if os.access(path, os.X_OK)), None)
    if browser is None:
        unavailable("chromium is not installed (Debian package chromium)")
    if not os.access(CHROMEDRIVER, os.X_OK):
        unavailable("chromedriver is not installed (Debian package chromium-driver)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        unavailable("the selenium package is not installed (pip install selenium)")
    return browser, CHROMEDRIVER


@contextlib.contextmanager
def chromium_driver(workdir: Path) -> Iterator[object]:
    browser, driver_path = _binaries()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in FLAGS:
        options.add_argument(flag)
    profile = workdir / "chromium-profile"
    profile.mkdir(exist_ok=True)
    options.add_argument(f"--user-data-dir={profile}")
    # An explicit driver path keeps Selenium Manager from looking for one online.
    service = Service(executable_path=driver_path, log_output=str(workdir / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        driver.quit()
        # quit() ends chromedriver; make sure of it by its PID, never by name.
        process: subprocess.Popen | None = getattr(service, "process", None)
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(10)


# Installed before any script of a page runs (CDP, so the page's CSP does not apply):
# keeps the URL and body of every fetch() answer in window.__fetched.
_RECORD_FETCHES = """
window.__fetched = [];
const original = window.fetch;
window.fetch = async function (...args) {
  const response = await original.apply(this, args);
  const url = response.url;
  response.clone().text().then((body) => window.__fetched.push({ url, body }));
  return response;
};
"""


def record_fetches(driver) -> None:
    """From the next page load on, every fetch() answer is kept; ``fetched(driver)`` reads them."""
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": _RECORD_FETCHES})


def fetched(driver) -> list[dict]:
    """``[{"url": ..., "body": ...}]``: what the page fetched since it was loaded."""
    return driver.execute_script("return window.__fetched || []")


def save_screenshot(driver, workdir: Path, name: str) -> list[Path]:
    """Write ``name`` into ``workdir`` and, when ``ARTIFACTS_DIR`` is set, there too."""
    written = [workdir / name]
    driver.save_screenshot(str(written[0]))
    artifacts = os.environ.get("ARTIFACTS_DIR")
    if artifacts:
        target = Path(artifacts) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(written[0], target)
        written.append(target)
    return written
