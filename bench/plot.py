"""The benchmarks' figures as PNGs next to the JSON results they are drawn from:

* `turns.png` from `turns.json`: turn latency (p50) vs history length per store, with
  LangGraph in-process and behind the floor app over HTTP (log-log axes);
* `frameworks.png` from `frameworks*.json`: req/s and peak RSS vs concurrent streams per
  target, one column per profile.

    .venv/bin/python bench/plot.py                                 # bench/results/*.json
    .venv/bin/python bench/plot.py bench/results/provisional/*.json

matplotlib comes with the `bench` extra; figures are drawn without a display (Agg).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.common import RESULTS_DIR


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _subtitle(results: Mapping[str, Any]) -> str:
    m = results.get("machine") or {}
    return (
        f"{m.get('date_utc', '?')}, commit {(m.get('git_commit') or '?')[:7]}, "
        f"{m.get('cpu_count', '?')} CPUs, load {m.get('loadavg_start')}"
    )


def turns_series(results: Mapping[str, Any]) -> dict[str, list[tuple[int, float]]]:
    """label -> [(history, p50 ms)] for every store and LangGraph variant measured."""
    out: dict[str, list[tuple[int, float]]] = {}
    for store, res in (results.get("parley") or {}).items():
        if res.get("status") == "ok":
            out[f"Parley {store} (HTTP)"] = sorted(
                (int(k), v["p50_ms"]) for k, v in res["sizes"].items()
            )
    lg = results.get("langgraph") or {}
    if lg.get("status") == "ok":
        out["LangGraph in-process"] = sorted((int(k), v["p50_ms"]) for k, v in lg["sizes"].items())
        http = (lg.get("http") or {}).get("sizes")
        if http:
            out["LangGraph behind FastAPI (HTTP)"] = sorted(
                (int(k), v["p50_ms"]) for k, v in http.items()
            )
    return out


def plot_turns(results: Mapping[str, Any], path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    for label, points in turns_series(results).items():
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, marker="o", linestyle="--" if "LangGraph" in label else "-", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("history (messages)")
    ax.set_ylabel("turn latency p50 (ms)")
    ax.set_title(f"Turn latency vs history\n{_subtitle(results)}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def frameworks_series(profile: Mapping[str, Any], key: str) -> dict[str, list[tuple[int, float]]]:
    """target -> [(concurrency, value of `key`)] for one profile's results."""
    out = {}
    for name, res in (profile.get("targets") or {}).items():
        if res.get("status") == "ok":
            out[name] = sorted((int(t), r[key]) for t, r in res["tiers"].items())
    return out


def plot_frameworks(results: Mapping[str, Any], path: Path) -> Path:
    plt = _pyplot()
    profiles = results.get("profiles") or {}
    fig, axes = plt.subplots(2, max(1, len(profiles)), figsize=(7 * max(1, len(profiles)), 8))
    axes = axes.reshape(2, -1) if hasattr(axes, "reshape") else [[axes[0]], [axes[1]]]
    for col, (pname, pr) in enumerate(profiles.items()):
        for row, (key, label) in enumerate(
            (("req_per_s", "req/s"), ("peak_rss_mb", "peak RSS (MB)"))
        ):
            ax = axes[row][col]
            for name, points in frameworks_series(pr, key).items():
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, marker="o", label=name)
            tiers = sorted({x for pts in frameworks_series(pr, key).values() for x, _ in pts})
            ax.set_xscale("log")
            ax.set_xticks(tiers, [f"{t:,}" for t in tiers])
            ax.minorticks_off()
            if key == "peak_rss_mb":
                ax.axhline(512, color="grey", linestyle=":", label="512 MB (issue 15 target)")
            ax.set_xlabel("concurrent streams")
            ax.set_ylabel(label)
            ax.set_title(f"profile {pname}: {label} vs concurrency", fontsize=10)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
    fig.suptitle(f"Framework benchmark (PromptKit's method)\n{_subtitle(results)}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_file(json_path: Path) -> Path | None:
    """The figure of one results file (by its `benchmark`), next to it; None if it has none."""
    results = json.loads(json_path.read_text())
    kind = results.get("benchmark")
    if kind == "turns":
        return plot_turns(results, json_path.with_suffix(".png"))
    if kind == "frameworks":
        return plot_frameworks(results, json_path.with_suffix(".png"))
    return None


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("files", nargs="*", type=Path, help="results JSON (default bench/results/)")
    a = ap.parse_args(argv)
    files = a.files or sorted(RESULTS_DIR.glob("*.json"))
    for f in files:
        out = plot_file(f)
        if out is not None:
            print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
