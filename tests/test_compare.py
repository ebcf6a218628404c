"""`switchboard compare` over all of GSM8K through a running gateway, on real recorded model answers (replay).

The numeric grader in RouteLLM's `digits` mode must reproduce the recorded
correctness item by item (gpt-4-1106-preview 1130/1319, Mixtral 842/1319);
`auto` at 30% strong calls must land between the two in accuracy and cost. Its
router is trained by the project's own command on MMLU only, so GSM8K is data it
has never seen (the shipped default was trained on these very prompts). A random
router at the same share is reported beside it. The HTML report must render in headless Chromium.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support import DATA, GatewayProc

GSM8K = DATA / "gsm8k"
GPT4, MIXTRAL = "gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compare")
    calibration = tmp / "calibration.jsonl"  # the workload's own prompts, to calibrate auto's 30% (not kept)
    with open(GSM8K / "test.jsonl", encoding="utf-8") as src, open(calibration, "w", encoding="utf-8") as out:
        for line in src:
            out.write(json.dumps({"prompt": json.loads(line)["question"]}) + "\n")
    csv_path = str(GSM8K / "responses.csv")
    router_file = tmp / "mmlu-router.npz"
    trained = subprocess.run([sys.executable, "-m", "switchboard", "router", "train", "--data", str(DATA),
                              "--benchmark", "mmlu", "--out", str(router_file)], capture_output=True, text=True, timeout=600)
    assert trained.returncode == 0, trained.stderr[-2000:]
    config = {
        "models": {
            "gpt-4": {"deployments": [{"provider": "replay", "model": GPT4, "recordings": csv_path}]},
            "mixtral": {"deployments": [{"provider": "replay", "model": MIXTRAL, "recordings": csv_path}]},
        },
        "routers": {"auto": {"strong": "gpt-4", "weak": "mixtral", "strong_share": 0.3, "router": str(router_file),
                             "calibration_prompts": str(calibration)},
                    "auto-random": {"strong": "gpt-4", "weak": "mixtral", "router": "random", "strong_share": 0.3,
                                    "calibration_prompts": str(calibration)}},
    }
    gw = GatewayProc(tmp, config)
    yield gw, tmp
    gw.stop()


def compare(gw: GatewayProc, out: Path, *extra: str) -> tuple[dict, subprocess.CompletedProcess]:
    proc = subprocess.run(
        [sys.executable, "-m", "switchboard", "compare", "--models", "gpt-4,mixtral,auto,auto-random",
         "--data", str(GSM8K / "test.jsonl"), "--url", gw.url, "--out", str(out), "--concurrency", "16", "--json",
         *extra], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc


@pytest.fixture(scope="module")
def full_run(gateway):
    gw, tmp = gateway
    out = tmp / "out"
    summary, proc = compare(gw, out, "--grader", "numeric:match=digits")
    return summary, proc, out


def test_numeric_grader_reproduces_recorded_correctness(full_run):
    summary, proc, out = full_run
    s = {row["model"]: row for row in summary["summaries"]}
    assert summary["n_items"] == 1319 and summary["requests_made"] == 4 * 1319
    assert s["gpt-4"]["correct"] == 1130 and s["gpt-4"]["accuracy"] == pytest.approx(0.857, abs=0.001)
    assert s["mixtral"]["correct"] == 842 and s["mixtral"]["accuracy"] == pytest.approx(0.638, abs=0.001)
    assert all(row["errors"] == 0 for row in s.values())
    # item by item, the grade equals the recorded correctness column
    with open(GSM8K / "responses.csv", newline="", encoding="utf-8") as f:
        recorded = {r["prompt"]: r for r in csv.DictReader(f)}
    items = json.loads((out / "results.json").read_text())["items"]
    for model, column in (("gpt-4", GPT4), ("mixtral", MIXTRAL)):
        agree = sum(1 for it in items if it["results"][model]["correct"] == (recorded[it["prompt"]][column] == "True"))
        assert agree == 1319, (model, agree)
    # the terminal table and the recommendation
    assert "accuracy" in proc.stdout and "95% CI" in proc.stdout and "$ / 1k req" in proc.stdout
    assert "compare [" in proc.stderr and "5276/5276" in proc.stderr  # the progress bar


def test_auto_lands_between_at_a_cost_between(full_run):
    summary, _, _ = full_run
    s = {row["model"]: row for row in summary["summaries"]}
    auto, rand, strong, weak = s["auto"], s["auto-random"], s["gpt-4"], s["mixtral"]
    for router in (auto, rand):
        assert weak["cost_per_1k"] < router["cost_per_1k"] < strong["cost_per_1k"]
        assert router["served_by"]["gpt-4"] == pytest.approx(0.30, abs=0.05)  # calibrated to 30% strong calls
    # Both land strictly between the two models; the learned router has never seen these prompts.
    assert weak["accuracy"] < rand["accuracy"] < strong["accuracy"]
    assert weak["accuracy"] < auto["accuracy"] < strong["accuracy"]
    print(f"GSM8K at 30% strong: auto (MMLU-trained) {auto['accuracy']:.1%} at ${auto['cost_per_1k']:.3f}/1k, "
          f"random {rand['accuracy']:.1%} at ${rand['cost_per_1k']:.3f}/1k, gpt-4 {strong['accuracy']:.1%} at "
          f"${strong['cost_per_1k']:.3f}/1k, mixtral {weak['accuracy']:.1%} at ${weak['cost_per_1k']:.3f}/1k")
    assert weak["ttft_p50_ms"] is not None and weak["latency_p95_ms"] >= weak["latency_p50_ms"]
    rec = summary["recommendation"]
    if auto["accuracy"] > strong["accuracy"]:  # the most accurate is also cheaper than gpt-4: keep it
        assert rec.startswith("Stay on auto (") and "auto-random (routes 3" in rec, rec
    elif auto["accuracy"] >= 0.95 * strong["accuracy"]:
        assert rec.startswith("auto (routes 3") and "Recommended: auto." in rec, rec
    else:
        assert rec.startswith("Stay on gpt-4") and "auto (routes 3" in rec, rec
    front = summary["pareto"]
    assert front[0] == "mixtral" and "auto" in front
    assert ("gpt-4" in front) == (strong["accuracy"] > auto["accuracy"])


def test_rerun_is_answered_from_the_cache(full_run, gateway):
    gw, tmp = gateway
    _, _, out = full_run
    logged_before = len(gw.requests_logged())
    summary, _ = compare(gw, out, "--grader", "numeric", "--keep", "0.75")  # same answers, graded by value
    assert summary["requests_made"] == 0 and summary["requests_cached"] == 4 * 1319
    assert len(gw.requests_logged()) == logged_before, "a re-run must not pay for anything twice"
    s = {row["model"]: row for row in summary["summaries"]}
    # by value, "$18.00" counts as 18: the recorded labels under-count gpt-4
    assert s["gpt-4"]["correct"] > 1130 and s["mixtral"]["correct"] >= 835
    rec = summary["recommendation"]  # the cheapest model keeping 75% of the best accuracy
    best = max(r["accuracy"] for r in s.values())
    keepers = [name for name, r in s.items() if r["accuracy"] >= 0.75 * best]
    cheapest = min(keepers, key=lambda name: s[name]["cost_per_1k"])
    assert cheapest in ("auto", "auto-random")  # mixtral keeps under 75% of gpt-4's accuracy by value
    assert rec.startswith(f"{cheapest} (routes 3") and f"Recommended: {cheapest}." in rec, rec


def _chromium() -> str:
    path = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
    if path is None:
        pytest.fail("headless Chromium is required for the report test: apt-get install -y chromium "
                    "(.ci/run installs it)")
    return path


def test_html_report_renders_in_headless_chromium(full_run, tmp_path):
    from PIL import Image
    from playwright.sync_api import sync_playwright

    _, _, out = full_run
    report = out / "report.html"
    html = report.read_text()
    assert "<script" not in html and "http://" not in html.replace("http://127.0.0.1", "")  # self-contained
    errors: list[str] = []
    shot = tmp_path / "report.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1000})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(report.as_uri())
            page.wait_for_load_state("load")
            assert page.locator("#chart-quality-cost circle.point").count() == 4
            assert page.locator("#chart-quality-cost polyline.frontier").count() == 1
            assert page.locator("#chart-ttft rect.box").count() == 4
            assert page.locator("#chart-latency rect.box").count() == 4
            assert page.locator("#disagreements tbody tr").count() > 0
            for chart in ("#chart-quality-cost", "#chart-ttft", "#chart-latency"):
                box = page.locator(chart).bounding_box()
                assert box and box["width"] > 500 and box["height"] > 150, (chart, box)
            assert "keeps" in page.locator("#recommendation").inner_text()
            page.locator("#chart-quality-cost").screenshot(path=str(shot))
        finally:
            browser.close()
    assert errors == []
    image = Image.open(shot).convert("RGB")
    colors = image.getcolors(maxcolors=1 << 20) or []
    assert len(colors) > 20, "the chart drew more than a blank box"
    palette = {(0x25, 0x63, 0xEB), (0xDC, 0x26, 0x26), (0x16, 0xA3, 0x4A), (0x93, 0x33, 0xEA)}  # the models' points
    assert palette <= {c for _, c in colors}
