"""A real browser for the tests: Debian's headless Chromium, driven through chromium-driver, and
pages served from an origin of their own."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from gcd_testing.http_server import serving

# The Debian packages that provide the two programs below.
DEBIAN_PACKAGES = ("chromium", "chromium-driver")
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
# Long enough for Chromium on a loaded 2-core machine; a page that works answers in well under 1 s.
WAIT_SECONDS = 20


@contextmanager
def chromium() -> Iterator[webdriver.Chrome]:
    """Headless Chromium, its console kept for the test to read; skips where it is not installed."""
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip(f"needs a browser: apt-get install {' '.join(DEBIAN_PACKAGES)} (.ci/run does)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(WAIT_SECONDS)
    try:
        yield driver
    finally:
        driver.quit()


def console_errors(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    """What the page has logged as errors since the last call: failed loads, CSP refusals, CORS."""
    # selenium leaves get_log without annotations.
    entries: list[dict[str, Any]] = driver.get_log("browser")  # type: ignore[no-untyped-call]
    return [entry for entry in entries if entry["level"] == "SEVERE"]


@contextmanager
def page_origin() -> Iterator[str]:
    """An origin of its own (http://127.0.0.1:<free port>) serving a blank page."""
    with serving(lambda: "<!doctype html><title>another origin</title>", "text/html") as address:
        yield f"http://{address}"
