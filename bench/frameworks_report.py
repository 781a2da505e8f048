"""What `bench/frameworks.py`'s results say: Parley against the LangChain app and
PromptKit's published figure, and the tables."""

from __future__ import annotations

from typing import Any

from bench.stats import fmt, format_table, ratio


def compare(profile_result: dict[str, Any], cpu_count: int) -> dict[str, Any]:
    """The acceptance figures of issue 15 from one profile's measurements."""
    targets = {k: v for k, v in profile_result["targets"].items() if v.get("tiers")}
    out: dict[str, Any] = {}
    lc = targets.get("langchain", {}).get("tiers", {})
    for name, res in targets.items():
        for tier, r in res["tiers"].items():
            row = out.setdefault(tier, {})
            row[f"{name}_req_per_s_per_machine_core"] = round(r["req_per_s"] / cpu_count, 1)
            if name.startswith("parley-") and tier in lc:
                row[f"{name}_over_langchain"] = ratio(r["req_per_s"], lc[tier]["req_per_s"])
    return out


def render(results: dict[str, Any]) -> str:
    parts = []
    for pname, pr in results["profiles"].items():
        rows = []
        for name, res in pr["targets"].items():
            if not res.get("tiers"):
                rows.append([name, res.get("status", "?"), *["-"] * 12])
                continue
            for tier, r in res["tiers"].items():
                rows.append(
                    [
                        name,
                        fmt(int(tier)),
                        f"{r['ok']:,}/{r['requests']:,}",
                        fmt(r["errors"]),
                        fmt(r["req_per_s"], 1),
                        fmt(r["ttfb_p50_ms"], 1),
                        fmt(r["ttfb_p99_ms"], 1),
                        fmt(r["duration_p50_ms"], 0),
                        fmt(r["peak_rss_mb"], 0),
                        fmt(r["server_cpu_pct"], 0),
                        fmt(r.get("server_runqueue_wait_pct"), 0),
                        fmt(r["req_per_s_per_server_core"], 1),
                        fmt(r["upstream_cpu_pct"], 0),
                        fmt(r["loadgen_cpu_pct"], 0),
                    ]
                )
        prof = pr["profile"]
        title = (
            f"Profile {pname}: {prof['chunks']} chunks, first after "
            f"{prof['first_chunk_delay_s'] * 1000:g} ms, then every "
            f"{prof['inter_chunk_delay_s'] * 1000:g} ms (ideal stream {pr['ideal_stream_ms']} ms);"
            f" CPU% of one core; wait% = the target runnable without a CPU (machine load);"
            f" req/s/core = req/s per core the target used"
        )
        parts.append(
            format_table(
                [
                    "target",
                    "streams",
                    "ok",
                    "errors",
                    "req/s",
                    "TTFB p50",
                    "TTFB p99",
                    "dur p50",
                    "RSS MB",
                    "CPU%",
                    "wait%",
                    "req/s/core",
                    "upstr CPU%",
                    "loadgen CPU%",
                ],
                rows,
                title,
            )
        )
        for name, res in pr["targets"].items():
            if res.get("status") == "failed":
                parts.append(f"[{pname}] {name} stopped: {res['reason'][:300]}")
        vs = pr.get("comparisons", {})
        lines = []
        for tier, row in vs.items():
            cells = [
                f"{k.removesuffix('_over_langchain')} {fmt(v, 1)}x"
                for k, v in row.items()
                if k.endswith("_over_langchain")
            ]
            if cells:
                lines.append(f"  {int(tier):>5} streams: " + ", ".join(cells))
        if lines:
            parts.append("\n".join([f"[{pname}] Parley req/s / LangChain req/s:", *lines]))
    pub = results["promptkit_published"]
    parts.append(
        f"PromptKit, {pub['source']}: ~{pub['req_per_s_at_1000_streams']:,} req/s at 1,000 "
        f"streams on {pub['cores']} cores (~{pub['req_per_s_per_core']} req/s per core), "
        f"<= {pub['peak_rss_mb_max']} MB; CI gate {pub['ci_gate']}. This machine: "
        f"{results['machine']['cpu_count']} cores (req/s per machine core in the JSON)."
    )
    return "\n\n".join(parts)
