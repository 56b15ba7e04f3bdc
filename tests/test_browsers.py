"""A real browser, headless Chromium, against a running gcd-stack: the /docs page computes and
shows the API's errors, and pages on other origins call REST and gRPC-Web through CORS with the
examples of docs/browsers.md, or are refused by the browser where their origin is not allowed."""

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from gcd_stack.envoy_config import CORS_ORIGINS_VARIABLE, LOOPBACK
from gcd_stack.ports import Ports

from browser import WAIT_SECONDS, chromium, console_errors, page_origin
from deployment import container, render
from processes import REPO, running_stack

GUIDE = REPO / "docs" / "browsers.md"
UINT64_MAX = 2**64 - 1
OPERATION = ".opblock-get"


def guide_examples() -> str:
    """The JavaScript of docs/browsers.md, as a reader would paste it into a page."""
    return "\n".join(re.findall(r"```js\n(.*?)```", GUIDE.read_text(), re.S))


def run_in_page(driver: webdriver.Chrome, call: str) -> dict[str, Any]:
    """{"value": ...} or {"error": "..."} of an async call made by the page with the guide's code."""
    script = guide_examples() + (
        "\nconst done = arguments[arguments.length - 1];\n"
        f"{call}.then((value) => done({{value}}), (error) => done({{error: String(error)}}));"
    )
    outcome: dict[str, Any] = driver.execute_async_script(script)
    return outcome


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    with chromium() as driver:
        yield driver


@pytest.fixture(scope="module")
def origins() -> Iterator[tuple[str, str]]:
    """Two pages of other origins than Envoy's: the first will be allowed, the second not."""
    with page_origin() as allowed, page_origin() as refused:
        yield allowed, refused


@pytest.fixture(scope="module")
def narrowed(tmp_path_factory: pytest.TempPathFactory, origins: tuple[str, str]) -> Iterator[Ports]:
    """A gcd-stack whose Envoy allows the first of origins only."""
    env = {CORS_ORIGINS_VARIABLE: origins[0]}
    with running_stack(tmp_path_factory.mktemp("narrowed"), env) as (ports, _):
        yield ports


def try_it_out(driver: webdriver.Chrome, a: str, b: str, previous_status: str | None) -> tuple[str, Any]:
    """Types a and b into /docs's form, presses Execute, and reads the status and the JSON shown."""
    for name, value in (("a", a), ("b", b)):
        box = driver.find_element(By.CSS_SELECTOR, f'{OPERATION} tr[data-param-name="{name}"] input')
        box.clear()
        box.send_keys(value)
    driver.find_element(By.CSS_SELECTOR, f"{OPERATION} .execute").click()
    status_cell = f"{OPERATION} .live-responses-table tbody .response-col_status"
    WebDriverWait(driver, WAIT_SECONDS).until(
        lambda page: (
            [cell.text for cell in page.find_elements(By.CSS_SELECTOR, status_cell)][:1] not in ([], [previous_status])
        )
    )
    status = driver.find_element(By.CSS_SELECTOR, status_cell).text
    body = driver.find_element(By.CSS_SELECTOR, f"{OPERATION} .live-responses-table .response-col_description pre")
    return status, json.loads(body.text)


def test_docs_page_computes_a_gcd_and_shows_the_json_error(browser: webdriver.Chrome, stack_ports: Ports) -> None:
    console_errors(browser)
    browser.get(f"http://{LOOPBACK}:{stack_ports.envoy}/docs")
    wait = WebDriverWait(browser, WAIT_SECONDS)
    wait.until(expected_conditions.element_to_be_clickable((By.CSS_SELECTOR, f"{OPERATION} .opblock-summary"))).click()
    wait.until(expected_conditions.element_to_be_clickable((By.CSS_SELECTOR, f"{OPERATION} .try-out__btn"))).click()

    assert try_it_out(browser, "12", "18", None) == ("200", {"result": "6"})
    status, error = try_it_out(browser, "abc", "18", "200")
    assert status == "400"
    assert error == {"code": 3, "message": 'a: invalid value "abc" for type TYPE_UINT64'}
    # Nothing refused by the page's content-security-policy, nothing failed to load but the call
    # that was meant to.
    assert [entry for entry in console_errors(browser) if "/gcd/abc/18 " not in entry["message"]] == []


@pytest.mark.parametrize(
    ("call", "answer"),
    [
        ("gcdOverRest(base, 12, 18)", {"value": "6"}),
        ("gcdOverGrpcWeb(base, 12, 18)", {"value": "6"}),
        (f"gcdOverGrpcWeb(base, '{UINT64_MAX}', '{UINT64_MAX - 1}')", {"value": "1"}),
        (f"gcdOverGrpcWeb(base, '{UINT64_MAX}', 0)", {"value": str(UINT64_MAX)}),
        ("gcdOverGrpcWeb(base, 0, 0)", {"value": "0"}),
        ("gcdOverRest(base, 'abc', 18)", {"error": 'Error: 400 a: invalid value "abc" for type TYPE_UINT64'}),
    ],
)
def test_a_page_on_an_allowed_origin_calls_rest_and_grpc_web(
    browser: webdriver.Chrome, origins: tuple[str, str], narrowed: Ports, call: str, answer: dict[str, str]
) -> None:
    browser.get(origins[0])
    assert run_in_page(browser, f"((base) => {call})('http://{LOOPBACK}:{narrowed.envoy}')") == answer


@pytest.mark.parametrize("call", ["gcdOverRest(base, 12, 18)", "gcdOverGrpcWeb(base, 12, 18)"])
def test_a_page_on_another_origin_is_refused_by_the_browser(
    browser: webdriver.Chrome, origins: tuple[str, str], narrowed: Ports, call: str
) -> None:
    browser.get(origins[1])
    console_errors(browser)
    outcome = run_in_page(browser, f"((base) => {call})('http://{LOOPBACK}:{narrowed.envoy}')")
    assert outcome == {"error": "TypeError: Failed to fetch"}
    assert any("blocked by CORS policy" in entry["message"] for entry in console_errors(browser))


def test_the_guides_overlay_patch_sets_the_variable_on_envoy(tmp_path: Path) -> None:
    (patch,) = re.findall(r"```yaml\n(# kustomization.yaml of an overlay.*?)```", GUIDE.read_text(), re.S)
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    # kustomize takes a relative path to the overlay it builds on, as the guide's copy would have.
    base = os.path.relpath(REPO / "kustomize" / "pi", overlay)
    (overlay / "kustomization.yaml").write_text(f"resources: [{base}]\n{patch}")
    envoy = container(render(str(overlay)), "envoy")
    assert [variable["name"] for variable in envoy["env"]] == [CORS_ORIGINS_VARIABLE]
    # The patch adds to the sidecar; it does not replace it.
    assert envoy["args"] == container(render("pi"), "envoy")["args"]
