"""Quality-vs-strong-share plot of a route-eval report (matplotlib, imported lazily)."""

from __future__ import annotations

import os

from .evaluate import Report


def plot_report(report: Report, path: str | os.PathLike) -> str:
    """Write a PNG with every router's quality curve, the weak/strong levels, and the
    random (dashed) and oracle lines that bound what a router can do; returns the file written
    (`path`, with ``.png`` added when it has no extension)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gap = report.strong_quality - report.weak_quality
    fig, ax = plt.subplots(figsize=(8, 5))
    for r in report.results:
        quality = report.weak_quality + r.metrics.pgr * gap
        style = {"random": dict(linestyle="--", color="grey"), "oracle": dict(linestyle=":", color="black")}
        ax.plot(100 * r.metrics.shares, quality, label=f"{r.name} (APGR {r.metrics.apgr:.3f})",
                **style.get(r.name, {}))
    ax.axhline(report.strong_quality, color="red", linewidth=0.8, label="strong model only")
    ax.axhline(report.weak_quality, color="blue", linewidth=0.8, label="weak model only")
    ax.set_xlabel("strong model calls (%)")
    ax.set_ylabel("quality")
    ax.set_title(f"Routing quality vs cost ({report.benchmark}, {report.n_prompts} prompts)")
    ax.set_xlim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    out = os.fspath(path) if os.path.splitext(os.fspath(path))[1] else os.fspath(path) + ".png"
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
