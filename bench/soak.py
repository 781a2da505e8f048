"""Soak: does the server's memory stay flat over many turns? (issue 8, "bounded memory")

Runs `--turns` non-streaming turns (mock provider, no delay) against a real uvicorn
process on a fresh store (`--store`: a SQLite file, or Redis at `PARLEY_BENCH_REDIS_URL`
under a key prefix of its own, deleted afterwards, never flushed; coordination is the
store's default: in-process/SQLite, or Redis), `--concurrency` clients at a time, each
client starting a new conversation every `--turns-per-conversation` turns (so
per-conversation and per-message state keeps arriving, as in production). The server's
RSS is sampled every `--sample-every` turns. The verdict compares the RSS at the end with
the RSS after `--baseline` turns: flat means within `--tolerance` (20 %).

    .venv/bin/python bench/soak.py                       # 20,000 turns, ~5-15 min
    .venv/bin/python bench/soak.py --turns 3000 --baseline 1000 --out /tmp/soak.json
    .venv/bin/python bench/soak.py --store redis --turns 10000 --out /tmp/soak-redis.json
    .venv/bin/python bench/soak.py --turns 6000 --trace-malloc --out /tmp/soak-trace.json

Writes the samples, the verdict and the machine facts to `--out` (default
bench/results/soak.json, which also rewrites the soak table of bench/README.md) and
prints them. Exit status 1 when the RSS is not flat.

`--trace-malloc` serves `bench.malloc_app` instead: at `--baseline` turns the server
starts tracemalloc, at the end it reports what grew since (by allocation line, by the
innermost `app/` frame, and by object type from `gc.get_objects()`), printed and kept in
`<out>-malloc.json`. The RSS of such a run is inflated by tracemalloc's own bookkeeping,
so its verdict does not count (exit status 0).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from bench.common import RESULTS_DIR, random_text, run_fast
from bench.report import loadavg, machine_info, publish
from bench.servers import Server, parley_env, uvicorn_server
from bench.stores import REDIS_URL

SOAK_STORES = ("sqlite", "redis")


@asynccontextmanager
async def soak_store(store: str, workdir: Path) -> AsyncIterator[str]:
    """The state URL of a fresh store: a SQLite file in `workdir`, or Redis under a prefix
    of its own (`?prefix=soak-<hex>:`, which the store and its coordination both use),
    whose keys are deleted afterwards; the database is shared, so it is not flushed."""
    if store == "sqlite":
        yield f"sqlite+aiosqlite:///{workdir / 'parley.db'}"
        return
    from redis.asyncio import Redis

    prefix = f"soak-{uuid.uuid4().hex[:8]}:"
    sep = "&" if "?" in REDIS_URL else "?"
    try:
        yield f"{REDIS_URL}{sep}prefix={prefix}"
    finally:
        client = Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        try:
            batch: list[bytes] = []
            async for key in client.scan_iter(match=f"{prefix}*", count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    await client.unlink(*batch)
                    batch.clear()
            if batch:
                await client.unlink(*batch)
        finally:
            await client.aclose()


@dataclass(frozen=True)
class Params:
    turns: int = 20_000
    baseline: int = 2_000
    concurrency: int = 8
    turns_per_conversation: int = 10
    sample_every: int = 500
    tolerance: float = 0.20
    out: Path = RESULTS_DIR / "soak.json"
    server_env: tuple[tuple[str, str], ...] = ()
    store: str = "sqlite"
    trace_malloc: bool = False
    trace_top: int = 20


@dataclass
class Sample:
    turns: int
    seconds: float
    rss_mb: float
    p50_ms: float


def parse_args(argv: Sequence[str] | None = None) -> Params:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    d = Params()
    ap.add_argument("--turns", type=int, default=d.turns)
    ap.add_argument("--baseline", type=int, default=d.baseline)
    ap.add_argument("--concurrency", type=int, default=d.concurrency)
    ap.add_argument("--turns-per-conversation", type=int, default=d.turns_per_conversation)
    ap.add_argument("--sample-every", type=int, default=d.sample_every)
    ap.add_argument("--tolerance", type=float, default=d.tolerance)
    ap.add_argument("--out", type=Path, default=d.out)
    ap.add_argument("--store", choices=SOAK_STORES, default=d.store)
    ap.add_argument(
        "--trace-malloc",
        action="store_true",
        help="tracemalloc in the server: top growth sites from --baseline to the end",
    )
    ap.add_argument("--trace-top", type=int, default=d.trace_top)
    ap.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="PARLEY_NAME=VALUE",
        help="extra server setting (repeatable)",
    )
    a = ap.parse_args(argv)
    if not 0 < a.baseline < a.turns:
        ap.error("--baseline must be between 0 and --turns")
    env = tuple(tuple(item.split("=", 1)) for item in a.server_env)
    return Params(
        turns=a.turns,
        baseline=a.baseline,
        concurrency=a.concurrency,
        turns_per_conversation=a.turns_per_conversation,
        sample_every=a.sample_every,
        tolerance=a.tolerance,
        out=a.out,
        server_env=env,  # type: ignore[arg-type]
        store=a.store,
        trace_malloc=a.trace_malloc,
        trace_top=a.trace_top,
    )


@dataclass
class SoakRun:
    samples: list[Sample]
    malloc: dict[str, Any] | None = None  # `bench.malloc_app`'s diff (--trace-malloc)


async def soak(server: Server, p: Params) -> SoakRun:
    samples: list[Sample] = []
    done = 0
    latencies: list[float] = []
    started = time.monotonic()
    lock = asyncio.Lock()
    marks = sorted({p.baseline, p.turns, *range(p.sample_every, p.turns + 1, p.sample_every)})

    async def record(http: httpx.AsyncClient) -> None:
        if p.trace_malloc and done == p.baseline:
            (await http.post("/__bench/malloc/mark")).raise_for_status()
        rss = server.rss_bytes() or 0
        window = sorted(latencies[-500:])
        p50 = window[len(window) // 2] * 1000 if window else 0.0
        samples.append(Sample(done, round(time.monotonic() - started, 1), rss / 2**20, p50))
        print(
            f"  {done:>6} turns  {samples[-1].seconds:>7.1f} s  RSS {rss / 2**20:7.1f} MB"
            f"  p50 {p50:6.2f} ms",
            flush=True,
        )

    async def client(worker: int, http: httpx.AsyncClient) -> None:
        nonlocal done
        rng = random.Random(worker)
        conv_id: str | None = None
        left = 0
        while True:
            if done >= p.turns:
                return
            if left == 0:
                r = await http.post(
                    "/conversations",
                    json={
                        "pack_id": "general-assistant",
                        "prompt_name": "chat",
                        "user_id": f"soak-{worker}",
                    },
                )
                r.raise_for_status()
                conv_id, left = r.json()["id"], p.turns_per_conversation
            t = time.perf_counter()
            r = await http.post(
                f"/conversations/{conv_id}/messages", json={"content": random_text(rng)}
            )
            r.raise_for_status()
            latencies.append(time.perf_counter() - t)
            left -= 1
            async with lock:
                if done >= p.turns:
                    return
                done += 1
                if done in marks:
                    await record(http)

    limits = httpx.Limits(max_connections=p.concurrency + 1)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=120, limits=limits) as http:
        await record(http)
        await asyncio.gather(*(client(w, http) for w in range(p.concurrency)))
        malloc = None
        if p.trace_malloc:
            r = await http.get("/__bench/malloc/diff", params={"top": p.trace_top}, timeout=600)
            r.raise_for_status()
            malloc = r.json()
    return SoakRun(samples, malloc)


def verdict(samples: list[Sample], p: Params) -> dict[str, Any]:
    base = next(s for s in samples if s.turns >= p.baseline)
    end = samples[-1]
    growth = (end.rss_mb - base.rss_mb) / base.rss_mb
    return {
        "rss_mb_at_baseline": round(base.rss_mb, 1),
        "rss_mb_at_end": round(end.rss_mb, 1),
        "growth": round(growth, 4),
        "flat": growth <= p.tolerance,
        "p50_ms_at_baseline": round(base.p50_ms, 2),
        "p50_ms_at_end": round(end.p50_ms, 2),
    }


def table(samples: list[Sample], p: Params, v: dict[str, Any]) -> str:
    """The README block: RSS at the baseline, every 5,000 turns (or at 5 evenly spaced
    points of a shorter run) and at the end, then the verdict line."""
    step = 5000 if p.turns >= 10_000 else max(p.sample_every, p.turns // 5)
    shown = {0, p.baseline, p.turns, *range(step, p.turns + 1, step)}
    rows = [s for s in samples if s.turns in shown]
    lines = [
        f"{p.turns:,} non-streaming turns, {p.concurrency} clients, a new conversation every "
        f"{p.turns_per_conversation} turns; store {p.store}"
        + (f"; server env {dict(p.server_env)}" if p.server_env else ""),
        "",
        f"{'turns':>7}  {'RSS MB':>7}  {'p50 ms':>7}  {'elapsed s':>9}",
    ]
    lines += [f"{s.turns:>7,}  {s.rss_mb:>7.1f}  {s.p50_ms:>7.2f}  {s.seconds:>9.1f}" for s in rows]
    lines += ["", verdict_line(v, p)]
    return "\n".join(lines)


def verdict_line(v: dict[str, Any], p: Params) -> str:
    return (
        f"RSS after {p.baseline:,} turns: {v['rss_mb_at_baseline']:.1f} MB, after {p.turns:,}: "
        f"{v['rss_mb_at_end']:.1f} MB ({v['growth']:+.1%}); "
        f"{'PASS (flat)' if v['flat'] else 'FAIL (growing)'}: tolerance {p.tolerance:.0%}"
    )


def print_malloc(malloc: dict[str, Any]) -> None:
    print(
        f"\ntracemalloc: {malloc['traced_mb_at_mark']} MB traced at the mark, "
        f"{malloc['traced_mb_now']} MB at the end"
    )
    for title, key in (
        ("growth by allocation line", "by_line"),
        ("growth by innermost app/ frame", "by_app_frame"),
    ):
        print(f"  {title}:")
        for row in malloc[key]:
            print(f"    {row['kb']:>10.1f} KB  {row['blocks']:>8} blocks  {row['site']}")
    print("  live objects (gc.get_objects) by type, growth:")
    for row in malloc["types"]:
        print(f"    {row['count']:>8}  {row['type']}")


async def run(p: Params) -> dict[str, Any]:
    started = time.monotonic()
    machine = machine_info()
    target = "bench.malloc_app:create_app" if p.trace_malloc else "app.main:create_app"
    with tempfile.TemporaryDirectory(prefix="parley-soak-") as tmp:
        work = Path(tmp)
        async with soak_store(p.store, work) as url:
            extra = dict(p.server_env)
            if p.trace_malloc:  # the mark and the diff stop the server for seconds
                extra.setdefault("PARLEY_STORE_TIMEOUT_S", "300")
            env = parley_env(url, work, **extra)
            async with uvicorn_server(target, env, work / "server.log") as server:
                result = await soak(server, p)
    machine["loadavg_end"] = loadavg()
    v = verdict(result.samples, p)
    out: dict[str, Any] = {
        "params": {k: str(x) if isinstance(x, Path) else x for k, x in asdict(p).items()},
        "machine": machine,
        "elapsed_s": round(time.monotonic() - started, 1),
        "samples": [asdict(s) for s in result.samples],
        "verdict": v,
        "table": table(result.samples, p, v),
    }
    if result.malloc is not None:
        out["malloc"] = result.malloc
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = parse_args(argv)
    result = run_fast(run(p))
    if p.trace_malloc:
        print_malloc(result["malloc"])
        p = Params(**{**asdict(p), "out": p.out.with_name(p.out.stem + "-malloc.json")})
        p.out.parent.mkdir(parents=True, exist_ok=True)
        p.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {p.out} (tracemalloc on: RSS inflated, no verdict)")
        return 0
    publish("soak", result, p.out)
    print(verdict_line(result["verdict"], p))
    return 0 if result["verdict"]["flat"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
