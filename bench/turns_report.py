"""What `bench/turns.py`'s results say: the ratios against the floor and LangGraph, and
the tables printed and written to bench/README.md."""

from __future__ import annotations

from typing import Any

from bench.stats import fmt, format_table, ratio


def compare(results: dict[str, Any]) -> dict[str, Any]:
    """LangGraph vs Parley per size and Parley vs the floor, from the measured numbers."""
    parley = {k: v for k, v in results["parley"].items() if v.get("status") == "ok"}
    floor = results.get("floor") or {}
    floor_p50 = floor.get("sequential", {}).get("p50_ms")
    out: dict[str, Any] = {"langgraph_vs_parley": {}, "parley_vs_floor": {}}
    lg = results.get("langgraph") or {}
    lg_http = (lg.get("http") or {}).get("sizes") or {}
    for size, lgs in (lg.get("sizes") or {}).items():
        row: dict[str, Any] = {"langgraph_p50_ms": lgs["p50_ms"]}
        http_p50 = (lg_http.get(size) or {}).get("p50_ms")
        row["langgraph_http_p50_ms"] = http_p50
        for store, res in parley.items():
            ps = res["sizes"].get(size)
            if ps is None:
                continue
            row[f"{store}_p50_ms"] = ps["p50_ms"]
            # > 1: Parley is faster. Parley's number includes HTTP + JSON, LangGraph's not.
            row[f"langgraph_over_{store}"] = ratio(lgs["p50_ms"], ps["p50_ms"])
            # Both over HTTP, same uvicorn command and client: the fair ratio.
            row[f"langgraph_http_over_{store}"] = ratio(http_p50, ps["p50_ms"])
            if floor_p50 is not None and ps["p50_ms"] > floor_p50:
                row[f"langgraph_over_{store}_minus_floor"] = ratio(
                    lgs["p50_ms"], ps["p50_ms"] - floor_p50
                )
        out["langgraph_vs_parley"][size] = row
    for store, res in parley.items():
        small = str(min(int(s) for s in res["sizes"]))
        row = {
            "history": int(small),
            "turns_per_s": res["sizes"][small]["turns_per_s"],
            "fraction_of_floor": ratio(
                res["sizes"][small]["turns_per_s"], floor.get("sequential", {}).get("per_s")
            ),
        }
        parley_cpu = res["sizes"][small].get("server_cpu_ms_per_turn")
        floor_cpu = floor.get("sequential", {}).get("server_cpu_ms_per_request")
        row["server_cpu_ms_per_turn"] = parley_cpu
        row["server_cpu_fraction_of_floor"] = ratio(floor_cpu, parley_cpu)
        row["p50_over_floor_p50"] = ratio(res["sizes"][small]["p50_ms"], floor_p50)
        paired = res.get("paired_floor") or {}
        if paired:
            row["paired_floor_p50_ms"] = paired["p50_ms"]
            row["paired_floor_server_cpu_ms"] = paired["server_cpu_ms_per_request"]
            row["p50_over_paired_floor_p50"] = ratio(
                res["sizes"][small]["p50_ms"], paired["p50_ms"]
            )
        if "concurrent" in res and "concurrent" in floor:
            row["concurrent_turns_per_s"] = res["concurrent"]["per_s"]
            row["concurrent_fraction_of_floor"] = ratio(
                res["concurrent"]["per_s"], floor["concurrent"]["per_s"]
            )
        multi = res.get("concurrent_workers") or {}
        if multi.get("status") == "ok":
            row["workers_turns_per_s"] = multi["per_s"]
            row["workers_fraction_of_floor"] = ratio(
                multi["per_s"], (floor.get("concurrent_workers") or {}).get("per_s")
            )
            row["workers_speedup"] = ratio(multi["per_s"], res["concurrent"]["per_s"])
            row["workers_errors"] = multi.get("errors", 0)
        out["parley_vs_floor"][store] = row
    return out


def render(results: dict[str, Any]) -> str:
    parts: list[str] = []
    rows = []
    verdicts = []
    for store, res in results["parley"].items():
        if res.get("status") != "ok":
            verdicts.append(f"  {store}: skipped ({res.get('reason')})")
            continue
        small = res["sizes"][str(min(int(s) for s in res["sizes"]))]["p50_ms"]
        for size, s in res["sizes"].items():
            rows.append(
                [
                    store,
                    fmt(int(size)),
                    f"{s['history_min']:,}-{s['history_max']:,}",
                    fmt(s["context_input_tokens_median"]),
                    fmt(s["p50_ms"], 2),
                    fmt(s["p99_ms"], 2),
                    fmt(s["mean_ms"], 2),
                    fmt(s.get("server_cpu_ms_per_turn"), 2),
                    fmt(s.get("server_runqueue_wait_ms_per_turn"), 2),
                    fmt(s["turns_per_s"], 0),
                    fmt(ratio(s["p50_ms"], small), 2, "x"),
                ]
            )
        verdicts.append(
            f"  {store}: {res['criterion']}: {fmt(res['p50_ratio_largest_over_smallest'], 2)}x"
            f" -> {'PASS' if res['criterion_met'] else 'FAIL'}"
            f"  (coordination: {res.get('coordination') or 'unknown'})"
        )
    parts.append(
        format_table(
            [
                "store",
                "history",
                "measured at",
                "ctx tokens",
                "p50 ms",
                "p99 ms",
                "mean ms",
                "srv CPU ms",
                "srv wait ms",
                "turns/s",
                "p50/p50@min",
            ],
            rows,
            "Parley turn latency (real uvicorn; HTTP + JSON included; one sequential client)",
        )
    )
    parts.append("\n".join(["Flat-curve criterion (DESIGN 11):", *verdicts]))

    lg = results.get("langgraph") or {}
    cmp_ = results.get("comparisons", {}).get("langgraph_vs_parley", {})
    if lg.get("status") == "ok":
        stores = [k for k, v in results["parley"].items() if v.get("status") == "ok"]
        headers = ["history", "LG p50", "LG p99", "LG HTTP p50"]
        for st in stores:
            headers += [f"{st} p50", f"LG/{st}", f"LG HTTP/{st}", f"LG/({st}-floor)"]
        rows = []
        for size, s in lg["sizes"].items():
            c = cmp_.get(size, {})
            row = [fmt(int(size)), fmt(s["p50_ms"], 2), fmt(s["p99_ms"], 2)]
            row.append(fmt(c.get("langgraph_http_p50_ms"), 2))
            for st in stores:
                row += [
                    fmt(c.get(f"{st}_p50_ms"), 2),
                    fmt(c.get(f"langgraph_over_{st}"), 1, "x"),
                    fmt(c.get(f"langgraph_http_over_{st}"), 1, "x"),
                    fmt(c.get(f"langgraph_over_{st}_minus_floor"), 1, "x"),
                ]
            rows.append(row)
        parts.append(
            format_table(
                headers,
                rows,
                "LangGraph (AsyncPostgresSaver) in-process and behind the floor app over HTTP "
                "vs Parley (over HTTP), ms; LG/x > 1 means Parley is faster; 'LG HTTP/x' is the "
                "fair ratio (both cross HTTP); '-floor' subtracts the floor's HTTP+JSON p50",
            )
        )
    elif lg:
        parts.append(f"LangGraph: skipped ({lg.get('reason')})")

    floor = results.get("floor")
    if floor:
        vs = results.get("comparisons", {}).get("parley_vs_floor", {})
        seq = floor["sequential"]
        conc = floor.get("concurrent")
        rows = [
            [
                "FastAPI echo (floor)",
                fmt(seq["p50_ms"], 2),
                fmt(seq["p99_ms"], 2),
                fmt(seq["server_cpu_ms_per_request"], 2),
                "1.00",
                fmt(seq["per_s"], 0),
                "1.00",
                fmt(conc["per_s"], 0) if conc else "-",
                "1.00" if conc else "-",
            ]
        ]
        for store, v in vs.items():
            s = results["parley"][store]["sizes"][str(v["history"])]
            rows.append(
                [
                    f"Parley {store} @{v['history']}",
                    fmt(s["p50_ms"], 2),
                    fmt(s["p99_ms"], 2),
                    fmt(v["server_cpu_ms_per_turn"], 2),
                    fmt(v["server_cpu_fraction_of_floor"], 2),
                    fmt(v["turns_per_s"], 0),
                    fmt(v["fraction_of_floor"], 2),
                    fmt(v.get("concurrent_turns_per_s"), 0),
                    fmt(v.get("concurrent_fraction_of_floor"), 2),
                ]
            )
        n = conc["clients"] if conc else 0
        parts.append(
            format_table(
                [
                    "",
                    "p50 ms",
                    "p99 ms",
                    "srv CPU ms",
                    "of floor",
                    "req/s seq",
                    "of floor",
                    f"req/s x{n}",
                    "of floor",
                ],
                rows,
                "Framework floor: same uvicorn command, same client (a Parley request is a turn)",
            )
        )
        multi = floor.get("concurrent_workers")
        if multi:
            w = multi["workers"]
            mrows = [["FastAPI echo (floor)", fmt(conc["per_s"], 0), fmt(multi["per_s"], 0)]]
            mrows[0] += [fmt(ratio(multi["per_s"], conc["per_s"]), 2), "1.00", "0"]
            for store, v in vs.items():
                mrows.append(
                    [
                        f"Parley {store}",
                        fmt(v.get("concurrent_turns_per_s"), 0),
                        fmt(v.get("workers_turns_per_s"), 0),
                        fmt(v.get("workers_speedup"), 2),
                        fmt(v.get("workers_fraction_of_floor"), 2),
                        fmt(v.get("workers_errors")),
                    ]
                )
            parts.append(
                format_table(
                    [
                        "",
                        f"req/s x{n} 1 worker",
                        f"req/s x{n} {w} workers",
                        "speed-up",
                        "of floor",
                        "errors",
                    ],
                    mrows,
                    f"Scaling to the machine's cores: uvicorn --workers {w} (SQLite: one serving "
                    "process per file, not run)",
                )
            )
        p50_lines = []
        for store, v in vs.items():
            line = f"  {store}: p50 {fmt(v.get('p50_over_floor_p50'), 2)}x the floor phase's p50"
            if v.get("p50_over_paired_floor_p50") is not None:
                line += (
                    f"; {fmt(v['p50_over_paired_floor_p50'], 2)}x the floor interleaved with "
                    f"its turns (p50 {fmt(v['paired_floor_p50_ms'], 2)} ms, server CPU "
                    f"{fmt(v['paired_floor_server_cpu_ms'], 2)} ms)"
                )
            p50_lines.append(line)
        parts.append(
            "\n".join(
                ["Turn p50 / floor p50 (issue 15 target: <= 3x, PostgreSQL <= 3.5x):", *p50_lines]
            )
        )
    cold = results.get("cold") or {}
    if cold:
        rows = []
        for store, c in cold.items():
            second = c.get("second_instance") or {}
            rows.append(
                [
                    store,
                    fmt(c["history"]),
                    fmt(c["warm"]["p50_ms"], 2),
                    fmt(c["first_turn_after_restart"]["p50_ms"], 2),
                    fmt(c["first_over_warm_p50"], 2, "x"),
                    fmt(c["cold_cache_warm_process"]["p50_ms"], 2),
                    fmt(c["cold_cache_over_warm_p50"], 2, "x"),
                    fmt(second.get("p50_ms"), 2),
                    fmt(c.get("second_instance_over_warm_p50"), 2, "x"),
                ]
            )
        parts.append(
            format_table(
                [
                    "store",
                    "history",
                    "warm p50",
                    "1st after restart",
                    "/warm",
                    "cold cache",
                    "/warm",
                    "2nd instance",
                    "/warm",
                ],
                rows,
                "Cold path, ms (issue 15 target: cold first turn <= 3x the warm p50); "
                "SQLite has no second instance (one serving process per file)",
            )
        )
    return "\n\n".join(parts)


# --- main ---------------------------------------------------------------------------------
