"""Turn overhead vs history length, side by side with LangGraph, against the framework floor
(DESIGN §11). Prints tables and writes bench/results/turns.json.

    .venv/bin/python bench/turns.py                      # full run (~3.5 minutes)
    .venv/bin/python bench/turns.py --quick              # ~40 seconds
    .venv/bin/python bench/turns.py --stores sqlite --sizes 10,1000 --no-langgraph

Method (details in bench/README.md):

* Parley runs as a real `uvicorn app.main:create_app --factory` child per store, mock
  provider with zero delay, default context policy (8,000 input tokens), no admission limit.
  The client is one `httpx.AsyncClient` with keep-alive, one request at a time; a turn's
  latency is `POST /conversations/{id}/messages` sent -> response body read.
* History: conversations are created through the service's own code (the app in-process,
  `POST /conversations`), then pre-filled through the store API (`append_messages`, 1,000
  messages per call) with user messages of 10-40 words and `echo: ...` replies built as
  the turn executor builds them, *before* uvicorn starts. Each is pre-filled to `size - 2`
  messages and gets one untimed priming turn, so its first timed turn sees exactly `size`
  messages of history with the server's message cache warm, as any conversation's second
  turn on an instance does. A turn adds two messages, so a conversation takes at most
  `max(1, size // 40)` timed turns (history drifts by at most 5%) and each size gets as many
  conversations as its timed turns need. Sizes are measured round-robin (one turn of each
  size in turn), so slow drift of the process affects them alike.
* LangGraph: `StateGraph(MessagesState)` with one async echo node, compiled with
  `AsyncPostgresSaver` on a scratch database, invoked in this process per turn with its
  `thread_id`. Threads are pre-filled with one `aupdate_state` of `size - 2` messages, get
  one priming turn, then are timed like Parley's conversations.
* Floor: `bench/floor_app.py` (`POST /echo` returns its JSON body) under the same uvicorn
  command and client.

Modules: `bench/turns_timing.py` (parameters, samples, summaries), `bench/turns_parley.py`
(pre-fill and timed turns), `bench/turns_langgraph.py`, `bench/turns_floor.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.common import RESULTS_DIR
from bench.report import loadavg, machine_info, publish
from bench.stats import fmt, format_table, ratio
from bench.stores import STORES, StoreSkipped
from bench.turns_cold import bench_cold
from bench.turns_floor import bench_floor
from bench.turns_langgraph import bench_langgraph
from bench.turns_parley import bench_parley_store
from bench.turns_timing import Params


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
        p50_lines = [
            f"  {store}: p50 {fmt(v.get('p50_over_floor_p50'), 2)}x the floor's p50"
            for store, v in vs.items()
        ]
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


def parse_args(argv: Sequence[str] | None = None) -> Params:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small run (~40 seconds)")
    ap.add_argument("--stores", default=",".join(STORES), help="comma list (default: all)")
    ap.add_argument("--sizes", help="history sizes in messages (default 10,1000,5000,10000)")
    ap.add_argument("--turns", type=int, help="timed turns per size and store (default 200)")
    ap.add_argument("--warmup", type=int, help="untimed warm-up turns (default 20)")
    ap.add_argument("--lg-sizes", help="LangGraph history sizes (default: --sizes)")
    ap.add_argument("--lg-turns", type=int, help="timed LangGraph turns per size (default 200)")
    ap.add_argument("--concurrency", type=int, default=64, help="clients of the throughput phase")
    ap.add_argument("--workers", type=int, default=2, help="uvicorn workers of the scaling phase")
    ap.add_argument("--no-cold", action="store_true", help="skip the cold-path phase")
    ap.add_argument("--no-langgraph-http", action="store_true", help="LangGraph in-process only")
    ap.add_argument("--logs", type=Path, help="keep the servers' logs in this (new) directory")
    ap.add_argument("--concurrent-turns", type=int, help="turns per client (default 20)")
    ap.add_argument("--no-langgraph", action="store_true")
    ap.add_argument("--no-floor", action="store_true")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--output", type=Path, default=RESULTS_DIR / "turns.json")
    ap.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="PARLEY_X=VALUE",
        help="extra configuration of the Parley servers (repeatable), e.g. "
        "PARLEY_COORDINATION_URL=memory://",
    )
    a = ap.parse_args(argv)
    server_env = dict(kv.split("=", 1) for kv in a.server_env if "=" in kv)
    if len(server_env) != len(a.server_env) or any(not k.startswith("PARLEY_") for k in server_env):
        ap.error("--server-env takes PARLEY_NAME=VALUE")

    def ints(text: str) -> list[int]:
        return sorted({int(x.replace("_", "")) for x in text.split(",") if x.strip()})

    sizes = (
        ints(a.sizes) if a.sizes else ([10, 1000, 10000] if a.quick else [10, 1000, 5000, 10000])
    )
    if any(s < 2 or s % 2 for s in sizes):
        ap.error("sizes are whole turns: even numbers >= 2")
    stores = [s.strip() for s in a.stores.split(",") if s.strip()]
    unknown = [s for s in stores if s not in STORES]
    if unknown:
        ap.error(f"unknown store(s) {unknown}; known: {list(STORES)}")
    turns = a.turns or (40 if a.quick else 200)
    return Params(
        stores=stores,
        sizes=sizes,
        turns=turns,
        warmup=a.warmup if a.warmup is not None else (5 if a.quick else 20),
        lg_sizes=ints(a.lg_sizes) if a.lg_sizes else sizes,
        lg_turns=a.lg_turns or (20 if a.quick else turns),
        concurrency=a.concurrency,
        concurrent_turns=a.concurrent_turns or (5 if a.quick else 20),
        langgraph=not a.no_langgraph,
        floor=not a.no_floor,
        seed=a.seed,
        output=a.output,
        quick=a.quick,
        server_env=server_env,
        workers=a.workers,
        cold=not a.no_cold,
        langgraph_http=not a.no_langgraph_http,
        logs=a.logs,
    )


async def run(p: Params) -> dict[str, Any]:
    rng = random.Random(p.seed)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "benchmark": "turns",
        "machine": machine_info(),
        "parameters": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(p).items()},
        "notes": {
            "parley": "real uvicorn, one sequential keep-alive httpx client; a latency is "
            "request sent -> response read: HTTP + JSON + service + store",
            "langgraph": "in this process, no HTTP: graph run + AsyncPostgresSaver "
            "checkpoint read/write",
            "floor": "bench/floor_app.py POST /echo under the same uvicorn command and client",
            "server_cpu": "server process user+system CPU from /proc/<pid>/stat, 10 ms ticks "
            "summed over the turns",
            "history": "store API pre-fill to size-2, one untimed priming turn, at most "
            "max(1, size // 40) timed turns per conversation, sizes round-robin",
        },
        "parley": {},
    }
    with tempfile.TemporaryDirectory(prefix="parley-bench-") as tmp:
        workdir = p.logs or Path(tmp)  # --logs keeps the servers' logs (and SQLite files)
        workdir.mkdir(parents=True, exist_ok=True)
        for name in p.stores:
            print(f"Parley on {name} ...", flush=True)
            store_dir = workdir / name
            store_dir.mkdir()
            try:
                res = await bench_parley_store(STORES[name], p, store_dir, rng)
                res["status"] = "ok"
            except StoreSkipped as exc:
                print(f"  {name}: SKIPPED - {exc}", flush=True)
                res = {"status": "skipped", "reason": str(exc)}
            results["parley"][name] = res
        if p.floor:
            print("Framework floor ...", flush=True)
            results["floor"] = await bench_floor(p, workdir, rng)
        if p.langgraph:
            print("LangGraph ...", flush=True)
            results["langgraph"] = await bench_langgraph(p, rng, workdir)
        if p.cold:
            results["cold"] = {}
            for name in p.stores:
                if results["parley"][name].get("status") != "ok":
                    continue
                print(f"Cold path on {name} ...", flush=True)
                cold_dir = workdir / f"cold-{name}"
                cold_dir.mkdir()
                results["cold"][name] = await bench_cold(
                    STORES[name],
                    cold_dir,
                    rng,
                    size=max(p.sizes),
                    conversations=3 if p.quick else 5,
                    server_env=p.server_env,
                )
    results["comparisons"] = compare(results)
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    results["machine"]["loadavg_end"] = loadavg()
    return results


def main(argv: Sequence[str] | None = None) -> int:
    p = parse_args(argv)
    results = asyncio.run(run(p))
    results["table"] = render(results)
    print()
    print(results["table"])
    publish("turns", results, p.output)
    ok = [r for r in results["parley"].values() if r.get("status") == "ok"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
