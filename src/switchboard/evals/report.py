"""The comparison's HTML report: one self-contained file, charts as inline SVG.

No script, no CDN, no fonts to fetch: the file opens anywhere (mail it, attach
it to a ticket) and renders the same offline. Charts: quality vs cost with
95% intervals and the Pareto frontier; TTFT and total latency distributions
(box from p25 to p75, whiskers p5 to p95, a sample of points); then the items
on which the models disagree.
"""

from __future__ import annotations

import math
import random
from html import escape
from pathlib import Path
from typing import Any

from switchboard.evals.analysis import percentile

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563", "#db2777")
MAX_DISAGREEMENTS = 200

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:1100px;color:#111827;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #e5e7eb;padding-bottom:.3rem}
.meta{color:#6b7280}.rec{background:#eff6ff;border-left:4px solid #2563eb;padding:.8rem 1rem;margin:1rem 0;font-size:1.05rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0}th,td{border-bottom:1px solid #e5e7eb;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f9fafb;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#16a34a;font-weight:600}.bad{color:#dc2626;font-weight:600}.err{color:#9333ea;font-weight:600}
.prompt{max-width:420px;white-space:pre-wrap;font-size:12px;color:#374151}.small{font-size:12px;color:#6b7280}
svg{background:#fff;border:1px solid #e5e7eb;border-radius:6px;margin:.5rem 0;display:block}
svg text{font:12px system-ui,sans-serif;fill:#374151}svg .axis line,svg .axis path{stroke:#9ca3af}
svg .axis .grid{stroke:#eceef1}svg .frontier{fill:none;stroke:#111827;stroke-dasharray:6 4;stroke-width:1.5}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:4px}
"""


def _fmt_ms(v: float | None) -> str:
    return "-" if v is None else (f"{v:.0f}" if v >= 10 else f"{v:.2f}")


def _nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=10 * mag)
    start = math.ceil(lo / step) * step
    ticks, t = [], start
    while t <= hi + 1e-12:
        ticks.append(round(t, 12))
        t += step
    return ticks


class _Scale:
    def __init__(self, lo: float, hi: float, a: float, b: float, log: bool = False) -> None:
        self.log = log
        self.lo, self.hi = (math.log10(lo), math.log10(hi)) if log else (lo, hi)
        if self.hi <= self.lo:
            self.hi = self.lo + 1.0
        self.a, self.b = a, b

    def __call__(self, v: float) -> float:
        x = math.log10(max(v, 1e-12)) if self.log else v
        return self.a + (x - self.lo) / (self.hi - self.lo) * (self.b - self.a)


def quality_cost_svg(summaries: list[dict[str, Any]], frontier: list[str], colors: dict[str, str]) -> str:
    w, h, ml, mr, mt, mb = 720, 420, 70, 30, 20, 50
    costs = [s["cost_per_1k"] for s in summaries]
    positive = [c for c in costs if c > 0]
    log = bool(positive) and len(positive) == len(costs) and max(positive) / min(positive) > 20
    if log:
        xlo, xhi = min(positive) / 1.6, max(positive) * 1.6
    else:
        xlo, xhi = 0.0, (max(costs) * 1.15 if costs and max(costs) > 0 else 1.0)
    ylo = max(0.0, min(s["ci_low"] for s in summaries) - 0.05)
    yhi = min(1.0, max(s["ci_high"] for s in summaries) + 0.05)
    x, y = _Scale(xlo, xhi, ml, w - mr, log), _Scale(ylo, yhi, h - mb, mt)
    out = [f'<svg id="chart-quality-cost" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" '
           f'aria-label="accuracy versus cost per 1,000 requests">']
    out.append('<g class="axis">')
    for t in _nice_ticks(ylo, yhi):
        out.append(f'<line class="grid" x1="{ml}" x2="{w - mr}" y1="{y(t):.1f}" y2="{y(t):.1f}"/>'
                   f'<text x="{ml - 8}" y="{y(t) + 4:.1f}" text-anchor="end">{t:.0%}</text>')
    xticks = ([10 ** e for e in range(math.floor(math.log10(xlo)), math.ceil(math.log10(xhi)) + 1)
               if xlo <= 10 ** e <= xhi] if log else _nice_ticks(xlo, xhi))
    for t in xticks:
        out.append(f'<line class="grid" y1="{mt}" y2="{h - mb}" x1="{x(t):.1f}" x2="{x(t):.1f}"/>'
                   f'<text x="{x(t):.1f}" y="{h - mb + 18}" text-anchor="middle">${t:g}</text>')
    out.append(f'<line x1="{ml}" x2="{w - mr}" y1="{h - mb}" y2="{h - mb}"/><line x1="{ml}" x2="{ml}" y1="{mt}" y2="{h - mb}"/>')
    out.append(f'<text x="{(ml + w - mr) / 2}" y="{h - 10}" text-anchor="middle">cost per 1,000 requests (USD{", log scale" if log else ""})</text>')
    out.append(f'<text transform="translate(16 {(mt + h - mb) / 2}) rotate(-90)" text-anchor="middle">accuracy (95% CI)</text>')
    out.append("</g>")
    by_name = {s["model"]: s for s in summaries}
    pts = [by_name[m] for m in frontier if m in by_name]
    if len(pts) > 1:
        path = " ".join(f"{x(s['cost_per_1k']):.1f},{y(s['accuracy']):.1f}" for s in pts)
        out.append(f'<polyline class="frontier" points="{path}"><title>Pareto frontier</title></polyline>')
    for s in summaries:
        cx, cy, color = x(s["cost_per_1k"]), y(s["accuracy"]), colors[s["model"]]
        out.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{y(s["ci_low"]):.1f}" y2="{y(s["ci_high"]):.1f}" '
                   f'stroke="{color}" stroke-width="2"/>')
        out.append(f'<circle class="point" cx="{cx:.1f}" cy="{cy:.1f}" r="7" fill="{color}">'
                   f'<title>{escape(s["model"])}: {s["accuracy"]:.1%} at ${s["cost_per_1k"]:.4f}/1k</title></circle>')
        anchor = "end" if cx > w * 0.75 else "start"
        dx = -11 if anchor == "end" else 11
        out.append(f'<text x="{cx + dx:.1f}" y="{cy - 8:.1f}" text-anchor="{anchor}" font-weight="600">'
                   f'{escape(s["model"])}{" ★" if s["model"] in frontier else ""}</text>')
    out.append("</svg>")
    return "".join(out)


def latency_svg(chart_id: str, title: str, series: dict[str, list[float]], colors: dict[str, str]) -> str:
    names = list(series)
    w, ml, mr, mt, row = 720, 150, 30, 30, 46
    h = mt + row * max(1, len(names)) + 45
    allv = [v for vs in series.values() for v in vs]
    hi = (percentile(allv, 99) or 1.0) * 1.1 if allv else 1.0
    x = _Scale(0.0, max(hi, 1e-3), ml, w - mr)
    rng = random.Random(0)
    out = [f'<svg id="{chart_id}" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="{escape(title)}">',
           f'<text x="{ml}" y="18" font-weight="600">{escape(title)}</text><g class="axis">']
    for t in _nice_ticks(0.0, hi):
        out.append(f'<line class="grid" y1="{mt}" y2="{h - 40}" x1="{x(t):.1f}" x2="{x(t):.1f}"/>'
                   f'<text x="{x(t):.1f}" y="{h - 24}" text-anchor="middle">{t:g}</text>')
    out.append(f'<text x="{(ml + w - mr) / 2}" y="{h - 6}" text-anchor="middle">milliseconds</text></g>')
    for i, name in enumerate(names):
        vs, cy, color = series[name], mt + row * i + row / 2, colors[name]
        out.append(f'<text x="{ml - 10}" y="{cy + 4:.1f}" text-anchor="end">{escape(name)}</text>')
        if not vs:
            out.append(f'<text x="{ml + 6}" y="{cy + 4:.1f}" class="small">no data</text>')
            continue
        p5, p25, p50, p75, p95 = (min(percentile(vs, q) or 0.0, hi) for q in (5, 25, 50, 75, 95))
        for v in rng.sample(vs, min(len(vs), 150)):
            out.append(f'<circle cx="{x(min(v, hi)):.1f}" cy="{cy + rng.uniform(-13, 13):.1f}" r="2" fill="{color}" '
                       f'fill-opacity="0.25"/>')
        out.append(f'<line x1="{x(p5):.1f}" x2="{x(p95):.1f}" y1="{cy:.1f}" y2="{cy:.1f}" stroke="{color}" stroke-width="1.5"/>'
                   f'<rect class="box" x="{x(p25):.1f}" y="{cy - 9:.1f}" width="{max(1.0, x(p75) - x(p25)):.1f}" height="18" '
                   f'fill="{color}" fill-opacity="0.35" stroke="{color}"><title>{escape(name)}: p50 {_fmt_ms(p50)} ms, '
                   f'p95 {_fmt_ms(p95)} ms</title></rect>'
                   f'<line x1="{x(p50):.1f}" x2="{x(p50):.1f}" y1="{cy - 11:.1f}" y2="{cy + 11:.1f}" stroke="#111827" stroke-width="2"/>')
    out.append("</svg>")
    return "".join(out)


def _summary_table(summaries: list[dict[str, Any]], frontier: list[str], colors: dict[str, str]) -> str:
    head = ("model", "accuracy", "95% CI", "TTFT p50 / p95 ms", "total p50 / p95 ms", "tokens in / out",
            "$ per 1k requests", "errors", "served by")
    rows = []
    for s in summaries:
        served = ", ".join(f"{escape(k)} {v:.0%}" for k, v in s["served_by"].items())
        rows.append(
            f'<tr><td><span class="swatch" style="background:{colors[s["model"]]}"></span>{escape(s["model"])}'
            f'{" ★" if s["model"] in frontier else ""}</td><td class="num">{s["accuracy"]:.1%}</td>'
            f'<td class="num">{s["ci_low"]:.1%} – {s["ci_high"]:.1%}</td>'
            f'<td class="num">{_fmt_ms(s["ttft_p50_ms"])} / {_fmt_ms(s["ttft_p95_ms"])}</td>'
            f'<td class="num">{_fmt_ms(s["latency_p50_ms"])} / {_fmt_ms(s["latency_p95_ms"])}</td>'
            f'<td class="num">{s["prompt_tokens_mean"]:.0f} / {s["completion_tokens_mean"]:.0f}</td>'
            f'<td class="num">{s["cost_per_1k"]:.4f}</td><td class="num">{s["errors"]}</td>'
            f'<td class="small">{served}</td></tr>')
    return ('<table id="summary"><thead><tr>' + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def _mark(r: dict[str, Any]) -> str:
    if r.get("error"):
        return f'<span class="err" title="{escape(str(r["error"]))}">error</span>'
    got = escape(str(r.get("extracted") if r.get("extracted") is not None else "—"))[:60]
    return (f'<span class="ok">✓</span> {got}' if r.get("correct") else f'<span class="bad">✗</span> {got}')


def _disagreements(result: dict[str, Any]) -> str:
    models = result["models"]
    differ = [it for it in result["items"]
              if len({bool(it["results"][m]["correct"]) for m in models}) > 1]
    head = "<th>item</th><th>prompt</th><th>expected</th>" + "".join(f"<th>{escape(m)}</th>" for m in models)
    rows = []
    for it in differ[:MAX_DISAGREEMENTS]:
        prompt = it["prompt"] if len(it["prompt"]) <= 240 else it["prompt"][:237] + "..."
        rows.append(f'<tr><td>{escape(str(it["id"]))}</td><td class="prompt">{escape(prompt)}</td>'
                    f'<td>{escape(str(it["expected"]))[:80]}</td>'
                    + "".join(f"<td>{_mark(it['results'][m])}</td>" for m in models) + "</tr>")
    shown = f" (first {MAX_DISAGREEMENTS} shown)" if len(differ) > MAX_DISAGREEMENTS else ""
    return (f'<p>{len(differ)} of {len(result["items"])} items are graded differently across the models{shown}. '
            f'✓/✗ with what the grader read from the answer.</p><table id="disagreements"><thead><tr>{head}'
            f'</tr></thead><tbody>{"".join(rows)}</tbody></table>')


def _cost_note(result: dict[str, Any]) -> str:
    basis = result.get("cost_basis", "charged")
    if basis == "charged":
        return "Cost: what the gateway charged for each request."
    return f"Cost: {basis}."


def render_html(result: dict[str, Any]) -> str:
    models = result["models"]
    colors = {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(models)}
    summaries, frontier = result["summaries"], result["pareto"]
    ttft = {m: [it["results"][m]["ttft_ms"] for it in result["items"]
                if not it["results"][m]["error"] and it["results"][m]["ttft_ms"] is not None] for m in models}
    total = {m: [it["results"][m]["latency_ms"] for it in result["items"]
                 if not it["results"][m]["error"] and it["results"][m]["latency_ms"] is not None] for m in models}
    grader = result.get("grader") or {"name": "per item / dataset default"}
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Switchboard compare: {escape(", ".join(models))}</title><link rel="icon" href="data:,"><style>{CSS}</style></head>
<body><h1>Which model is best for this workload?</h1>
<p class="meta">{result["n_items"]} items from {escape(str(result.get("dataset") or "?"))} · models {escape(", ".join(models))} ·
grader {escape(str(grader))} · gateway {escape(str(result.get("gateway")))} · {escape(str(result.get("created")))}</p>
<div class="rec" id="recommendation">{escape(result["recommendation"])}</div>
{_summary_table(summaries, frontier, colors)}
<p class="small">★ on the Pareto frontier (no other model is both cheaper and more accurate). Accuracy counts errors as wrong;
95% Wilson intervals. {escape(_cost_note(result))}</p>
<h2>Quality vs cost</h2>{quality_cost_svg(summaries, frontier, colors)}
<h2>Latency</h2>{latency_svg("chart-ttft", "Time to first token", ttft, colors)}
{latency_svg("chart-latency", "Total latency", total, colors)}
<h2>Where the models disagree</h2>{_disagreements(result)}
</body></html>
"""


def write_html(result: dict[str, Any], path: Path) -> None:
    path.write_text(render_html(result), encoding="utf-8")
