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
  messages and gets one untimed priming turn right before its first timed one, so that
  turn sees exactly `size` messages of history with the server's message cache warm, as
  any conversation's second turn on an instance does. A turn adds two messages, so a
  conversation takes at most `max(1, size // 40)` timed turns (history drifts by at most
  5%) and each size gets as many conversations as its timed turns need. Sizes are
  measured round-robin (one turn of each size in turn), so slow drift of the process
  affects them alike.
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
from contextlib import AsyncExitStack
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.common import RESULTS_DIR
from bench.report import loadavg, machine_info, publish
from bench.stores import STORES, StoreSkipped
from bench.turns_cold import bench_cold
from bench.turns_floor import bench_floor, floor_client
from bench.turns_langgraph import bench_langgraph
from bench.turns_parley import bench_parley_store
from bench.turns_report import compare, render
from bench.turns_timing import Params


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
            "floor": "bench/floor_app.py POST /echo under the same uvicorn command and client; "
            "in its own phase after the stores, and interleaved with each store's timed "
            "turns (one echo per round of sizes: parley.<store>.paired_floor)",
            "server_cpu": "server process user+system CPU from /proc/<pid>/stat, 10 ms ticks "
            "summed over the turns",
            "history": "store API pre-fill to size-2, one untimed priming turn right before "
            "the conversation's first timed one, at most "
            "max(1, size // 40) timed turns per conversation, sizes round-robin",
        },
        "parley": {},
    }
    with tempfile.TemporaryDirectory(prefix="parley-bench-") as tmp:
        workdir = p.logs or Path(tmp)  # --logs keeps the servers' logs (and SQLite files)
        workdir.mkdir(parents=True, exist_ok=True)
        async with AsyncExitStack() as stack:
            paired = None  # the floor interleaved with each store's timed turns
            if p.floor:
                paired = await stack.enter_async_context(floor_client(workdir, rng, "floor-paired"))
                for _ in range(p.warmup):
                    await paired.echo()
            for name in p.stores:
                print(f"Parley on {name} ...", flush=True)
                store_dir = workdir / name
                store_dir.mkdir()
                try:
                    res = await bench_parley_store(STORES[name], p, store_dir, rng, paired)
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
