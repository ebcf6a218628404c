"""The dashboard in headless Chromium, end to end, against a real gateway and mock upstream.

An operator signs in with the master key, creates a key in the Keys page,
an application uses that key through the official openai SDK, and the
requests appear in the overview and the request log; the operator tops the
key up, changes its limits, opens a request's detail, the models page shows
an open breaker, the reports page shows a real `switchboard compare` report,
and revoking the key in the page makes the SDK's next call fail with 401.
Every page is screenshotted into docs/img/ (the pictures in
docs/dashboard.md), and any console error fails the test.

Chromium is Debian's package driven by Playwright with its executable path
set; no browser is downloaded. A missing chromium fails the test (it is
installed by .ci/run), it does not skip it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from support import ROOT, GatewayProc, MockProc, http, wait_for

MASTER = "sk-dash-master-0123456789"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
IMG = ROOT / "docs" / "img"
VIEWPORT = {"width": 1280, "height": 800}


def chromium_path() -> str:
    path = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if not path:
        pytest.fail("headless Chromium is required for the dashboard tests: apt-get install -y chromium "
                    "(Debian's package; .ci/run installs it)")
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dashboard")
    mock = MockProc(tmp, {
        "small-up": {"reply": "Paris is the capital of France."},
        "big-up": {"reply": "The capital of France is Paris, on the Seine."},
        "broken-up": {"faults": [{"kind": "status", "status": 500, "rate": 1.0}]},
    })
    base = mock.url + "/v1"

    def dep(upstream: str, **extra):
        return {"provider": "openai", "model": upstream, "base_url": base, **extra}

    reports = tmp / "reports"
    config = {
        "auth": {"master_key": "${SB_MASTER}"},
        "dashboard": {"reports_dir": str(reports)},
        "models": {
            "small": {"deployments": [dep("small-up", id="small-a")],
                      "pricing": {"input_per_mtok": 0.5, "output_per_mtok": 1.5}},
            "big": {"deployments": [dep("big-up", id="big-a"), dep("big-up", id="big-b")],
                    "pricing": {"input_per_mtok": 10.0, "output_per_mtok": 30.0}},
            "flaky": {"strategy": "ordered", "deployments": [dep("broken-up", id="flaky-bad"), dep("small-up", id="flaky-good")],
                      "pricing": {"input_per_mtok": 0.5, "output_per_mtok": 1.5}},
        },
        "routers": {"auto": {"strong": "big", "weak": "small", "strong_share": 0.5}},
    }
    gw = GatewayProc(tmp, config, env={"SB_MASTER": MASTER})
    yield gw, mock, reports
    gw.stop()
    mock.stop()


def write_compare_report(gw: GatewayProc, out: Path) -> None:
    """A real `switchboard compare` run, small, through the gateway: what the reports page lists."""
    data = out.parent / "capitals.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    items = [("What is the capital of France?", "Paris"), ("Capital of France, one word?", "Paris"),
             ("Name the French capital.", "Paris")]
    data.write_text("".join(json.dumps({"prompt": p, "expected": e}) + "\n" for p, e in items))
    proc = subprocess.run([sys.executable, "-m", "switchboard", "compare", "--models", "small,big", "--data", str(data),
                           "--grader", "regex:pattern=Paris", "--url", gw.url, "--api-key", MASTER, "--out", str(out),
                           "--quiet", "--retries", "0"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "report.html").exists() and (out / "results.json").exists()


# ---------------------------------------------------------------- non-admin keys


def test_non_admin_key_reaches_no_admin_endpoint(stack):
    gw, _, _ = stack
    status, _, body = http("POST", gw.url + "/admin/keys", {"name": "not-an-admin"},
                           headers={"authorization": f"Bearer {MASTER}"})
    assert status == 201, body
    user_key = json.loads(body)["key"]
    endpoints = ["/admin/dashboard/info", "/admin/dashboard/overview?range=1h", "/admin/dashboard/deployments",
                 "/admin/dashboard/requests", "/admin/dashboard/request?id=x", "/admin/dashboard/keys-usage",
                 "/admin/dashboard/reports", "/admin/dashboard/report?path=x/report.html", "/admin/dashboard/nope",
                 "/admin/keys", "/admin/usage"]
    for path in endpoints:
        for headers, expected in (({}, 401), ({"authorization": "Bearer sk-wrong-key-123456"}, 401),
                                  ({"authorization": f"Bearer {user_key}"}, 403)):
            status, _, body = http("GET", gw.url + path, headers=headers)
            assert status == expected, (path, headers, status, body)
            error = json.loads(body)["error"]
            assert error["message"] and error["type"] in ("authentication_error", "permission_error"), (path, error)
    # Writes too: a non-admin key cannot create, top up or revoke keys.
    status, _, _ = http("POST", gw.url + "/admin/keys", {"name": "x"}, headers={"authorization": f"Bearer {user_key}"})
    assert status == 403
    # The page itself is public but holds no data: everything on it comes from the endpoints above.
    status, headers, page = http("GET", gw.url + "/ui")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b"Sign in" in page and b"Paris" not in page
    assert "default-src 'self'" in headers["content-security-policy"]


def test_static_assets_are_bundled_with_types_and_cache_headers(stack):
    gw, _, _ = stack
    _, _, page = http("GET", gw.url + "/ui")
    import re

    links = re.findall(rb'(?:src|href)="(/ui/[^"]+)"', page)
    assert {l.split(b"?")[0] for l in links} >= {b"/ui/app.js", b"/ui/charts.js", b"/ui/style.css", b"/ui/favicon.svg"}
    assert not re.search(rb'(?:src|href)="(?:https?:)?//', page), "no asset may come from another host"
    for link in links:
        status, headers, body = http("GET", gw.url + link.decode())
        assert status == 200 and body
        assert "immutable" in headers["cache-control"], link  # versioned URL: cached for good
        suffix = link.split(b"?")[0].rsplit(b".", 1)[1]
        assert headers["content-type"].startswith({b"js": "text/javascript", b"css": "text/css",
                                                   b"svg": "image/svg+xml"}[suffix])
    status, headers, _ = http("GET", gw.url + "/ui/app.js")
    assert status == 200 and headers["cache-control"] == "no-cache"
    status, _, body = http("GET", gw.url + "/ui/../config.yaml")
    assert status == 404 and json.loads(body)["error"]["type"] == "invalid_request_error"


# ---------------------------------------------------------------- the browser walk-through


def test_operator_walkthrough_in_chromium(stack):
    # No wait_for_function here: the page's CSP forbids eval, and the test keeps the CSP on.
    from playwright.sync_api import expect, sync_playwright

    gw, _, reports = stack
    write_compare_report(gw, reports / "capitals-small-vs-big")
    IMG.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))

            def show(name: str) -> None:
                page.click(f".sidebar a[data-page='{name}']")
                page.wait_for_selector(f"#page[data-page='{name}'][data-ready='1']")

            def shot(name: str) -> None:
                page.screenshot(path=str(IMG / f"dashboard-{name}.png"))

            # Sign in with the master key.
            page.goto(gw.url + "/ui")
            page.wait_for_selector("#signin-form")
            shot("signin")
            page.fill("#admin-key", MASTER)
            page.click("#signin-button")
            page.wait_for_selector("#page[data-page='overview'][data-ready='1']")

            # Create a key; the secret is shown once.
            show("keys")
            page.click("#create-key")
            page.fill("#key-name", "docs-demo")
            page.fill("#key-credit", "2")
            page.fill("#key-rpm", "600")
            page.click("#dialog-submit")
            secret = page.text_content("#new-key-secret", timeout=5000).strip()
            assert secret.startswith("sk-sb-")
            key_id = secret[len("sk-sb-"):].split("-", 1)[0]
            page.click("#secret-done")
            page.wait_for_selector(f"#keys-table tr[data-key-id='{key_id}']")

            # An application uses the key through the SDK.
            client = openai.OpenAI(api_key=secret, base_url=gw.url + "/v1", max_retries=0, timeout=10)
            prompts = ["hi", "What is 2+2?", "Prove that there are infinitely many primes, rigorously, step by step.",
                       "Write a detailed analysis of the economic causes of the French Revolution with sources.",
                       "Translate 'cat' to French.", "Design a distributed consensus protocol and prove its safety."]
            for i in range(3):
                client.chat.completions.create(model="small", messages=[{"role": "user", "content": f"question {i}"}])
            for i in range(2):
                client.chat.completions.create(model="big", messages=[{"role": "user", "content": f"essay {i}"}])
            routed = [client.chat.completions.with_raw_response.create(model="auto", messages=[{"role": "user", "content": q}])
                      for q in prompts]
            for i in range(6):  # the first deployment always fails: retried on the second, then its breaker opens
                client.chat.completions.create(model="flaky", messages=[{"role": "user", "content": f"flaky {i}"}])
            stream = client.chat.completions.create(model="small", stream=True,
                                                    messages=[{"role": "user", "content": "stream please"}])
            assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            with pytest.raises(openai.NotFoundError):
                client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
            sent, errors = 3 + 2 + len(prompts) + 6 + 1 + 1, 1

            # They appear in the overview...
            show("overview")
            top_key = page.locator("#top-keys tbody tr", has_text="docs-demo")
            assert top_key.count() == 1
            cells = top_key.locator("td").all_text_contents()
            assert cells[1] == str(sent) and cells[2] == str(errors), cells
            total = int(page.text_content("#stat-requests .value").replace(",", ""))
            assert total >= sent
            assert page.locator("#chart-requests svg rect").count() >= 1
            assert page.locator("#router-table tbody tr", has_text="auto").count() == 1
            split = page.locator("#router-table tbody tr", has_text="auto").locator("td").all_text_contents()
            strong_n = int(split[2].split()[0])
            weak_n = int(split[3])
            assert strong_n + weak_n == len(prompts), split
            shot("overview")

            # ... and in the request log, filtered by the key.
            show("requests")
            page.fill("#filter-key", key_id)
            page.click("#apply-filters")
            expect(page.locator("#requests-table tbody tr")).to_have_count(sent)
            assert page.locator("#requests-table tbody .badge.bad").all_text_contents() == ["404"]
            shot("requests")

            # One routed request in detail: attempts, routing decision, tokens, cost; never a key, no prompt stored.
            request_id = routed[0].headers["x-request-id"]
            page.click(f"#requests-table tr[data-request-id='{request_id}']")
            page.wait_for_selector("#routing-decision")
            decision = page.text_content("#routing-decision")
            assert "auto" in decision and "Reason" in decision, decision
            assert page.locator("#attempts tbody tr").count() >= 1
            assert "Not stored" in page.text_content("#bodies")
            content = page.content()
            assert secret not in content and MASTER not in content
            shot("request-detail")

            # A failed-over request lists both attempts.
            show("requests")
            page.fill("#filter-model", "flaky")
            page.click("#apply-filters")
            expect(page.locator("#requests-table tbody tr")).to_have_count(6)
            page.locator("#requests-table tbody tr").last.click()
            page.wait_for_selector("#attempts tbody tr")
            attempts = page.locator("#attempts tbody tr")
            assert attempts.count() == 2
            assert "flaky-bad" in attempts.nth(0).text_content() and "flaky-good" in attempts.nth(1).text_content()

            # The models page shows the broken deployment's breaker open, live.
            show("models")
            page.wait_for_selector("tr[data-deployment='flaky-bad'] .badge.open")
            assert page.locator("tr[data-deployment='flaky-good'] .badge.closed").count() == 1
            bad = page.text_content("tr[data-deployment='flaky-bad']")
            assert "cooldown" in bad
            shot("models")

            # Top up the key and change its limits.
            show("keys")
            balance_before = _balance(gw, key_id)
            page.click(f"tr[data-key-id='{key_id}'] [data-action='topup']")
            page.fill("#topup-amount", "3")
            page.click("#dialog-submit")
            assert wait_for(lambda: abs(_balance(gw, key_id) - (balance_before + 3)) < 1e-9)
            page.click(f"tr[data-key-id='{key_id}'] [data-action='limits']")
            page.fill("#limit-rpm", "900")
            page.fill("#limit-day", "1")
            page.click("#dialog-submit")
            page.wait_for_selector(f"tr[data-key-id='{key_id}'] >> text=900 rpm")
            row_text = page.text_content(f"tr[data-key-id='{key_id}']")
            assert "$1.00/day" in row_text and "$" in row_text
            shot("keys")

            # The reports page shows the compare report, sandboxed.
            show("reports")
            page.wait_for_selector("#reports-table tbody tr")
            assert page.locator("#reports-table tbody tr", has_text="capitals-small-vs-big").count() == 1
            frame = page.frame_locator("#report-frame")
            frame.locator("body").wait_for()
            assert "small" in frame.locator("body").text_content()
            shot("reports")

            # Revoke the key: the SDK's next call is refused.
            show("keys")
            page.click(f"tr[data-key-id='{key_id}'] [data-action='revoke']")
            page.click("#dialog-submit")
            page.wait_for_selector(f"tr[data-key-id='{key_id}']", state="detached")

            def refused() -> bool:
                try:
                    client.chat.completions.create(model="small", messages=[{"role": "user", "content": "again"}])
                    return False
                except openai.AuthenticationError as exc:
                    return exc.status_code == 401

            assert wait_for(refused, timeout=3.0)
            page.check("#show-revoked")
            page.wait_for_selector(f"tr[data-key-id='{key_id}'] .badge.revoked")
        finally:
            browser.close()
    assert not problems, "\n".join(problems)


def test_non_admin_key_is_refused_at_sign_in(stack):
    """Signing in with an application key shows the 403 message and no data."""
    from playwright.sync_api import sync_playwright

    gw, _, _ = stack
    status, _, body = http("POST", gw.url + "/admin/keys", {"name": "app"}, headers={"authorization": f"Bearer {MASTER}"})
    user_key = json.loads(body)["key"]
    messages: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.on("console", lambda m: messages.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: messages.append(f"page error: {e}"))
            page.goto(gw.url + "/ui")
            page.fill("#admin-key", user_key)
            page.click("#signin-button")
            page.wait_for_selector("#signin-error:not([hidden])")
            assert "master key" in page.text_content("#signin-error")
            assert page.is_hidden("#shell")
        finally:
            browser.close()
    # The only console line is the browser's own note of the refused request.
    assert all("403" in m for m in messages), messages


def _balance(gw: GatewayProc, key_id: str) -> float:
    status, _, body = http("GET", f"{gw.url}/admin/keys/{key_id}", headers={"authorization": f"Bearer {MASTER}"})
    assert status == 200, body
    return json.loads(body)["credit"]["balance_usd"]


def test_dashboard_endpoints_answer_bad_parameters_in_openai_shape(stack):
    gw, _, _ = stack
    auth = {"authorization": f"Bearer {MASTER}"}
    for path, param in (("/admin/dashboard/overview?range=2h", "range"), ("/admin/dashboard/overview?since=abc", "since"),
                        ("/admin/dashboard/requests?status=teapot", "status"), ("/admin/dashboard/requests?limit=0", "limit"),
                        ("/admin/dashboard/request", "id")):
        status, _, body = http("GET", gw.url + path, headers=auth)
        assert status == 400, (path, body)
        assert json.loads(body)["error"]["param"] == param
    status, _, body = http("GET", gw.url + "/admin/dashboard/request?id=req_missing", headers=auth)
    assert status == 404 and json.loads(body)["error"]["code"] == "request_not_found"
    for path in ("../gateway.yaml", "/etc/passwd", "capitals-small-vs-big/../../gateway.yaml"):
        status, _, body = http("GET", gw.url + "/admin/dashboard/report?path=" + path, headers=auth)
        assert status == 404, (path, body)
