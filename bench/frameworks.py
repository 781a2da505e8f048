"""PromptKit's framework benchmark, reproduced here: LLM streaming through a framework
against a shared mock OpenAI-compatible upstream, at concurrency tiers 10, 50, 100, 250,
500 and 1,000 with 10 x tier requests each. Prints a table, writes
bench/results/frameworks.json.

    .venv/bin/python bench/frameworks.py                 # full run (both profiles)
    .venv/bin/python bench/frameworks.py --quick         # fast profile, tiers 10 and 100
    .venv/bin/python bench/frameworks.py --profiles fast --tiers 500 \
        --targets parley-redis,langchain

Method (details in bench/README.md):

* `bench/mock_upstream.py` with PromptKit's profiles (`fast`: 10 chunks, 10 ms first chunk,
  10 ms apart; `realistic`: 30 chunks, 200 ms, 30 ms), one process per profile.
* Targets (`bench/frameworks_targets.py`): the upstream itself (the load generator's
  ceiling), Parley on SQLite / PostgreSQL / Redis (OpenAI provider on the upstream), and
  the LangChain app of that benchmark rebuilt in `bench/langchain_app.py` (no persistence).
  One uvicorn worker each unless `--workers`.
* Load generator (`bench/loadgen.py`, this process): `tier` workers, one keep-alive
  connection each, taking the tier's `10 x tier` requests from a shared counter (PromptKit's
  harness does the same with goroutines). A request is one streamed turn read to its end;
  TTFB is request sent -> first event with reply text; the reply must be the profile's
  exact text. req/s = successful requests / wall time of the tier.
* Resources: the target's process tree, sampled every 100 ms (peak RSS), and CPU from
  /proc over the tier (CPU% = CPU seconds / wall seconds x 100, so 100% = one core; the
  upstream's and the load generator's are reported beside it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.common import RESULTS_DIR, run_fast
from bench.frameworks_report import compare, render
from bench.frameworks_targets import TARGETS, Running, start_target
from bench.loadgen import Connection, HttpError, RequestRecord, split_url
from bench.mock_upstream import PROFILES, Profile
from bench.report import loadavg, machine_info, publish, write_results
from bench.servers import Server, child_server, free_port
from bench.stats import fmt, percentile
from bench.stores import StoreSkipped

# As published by PromptKit (README of its framework benchmark), not measured here.
PROMPTKIT_PUBLISHED = {
    "source": "AltairaLabs/PromptKit benchmarks/frameworks, as published (not measured here)",
    "req_per_s_at_1000_streams": 1400,
    "cores": 14,
    "req_per_s_per_core": 100,
    "peak_rss_mb_max": 514,
    "ci_gate": ">= 1,300 req/s at 500 streams, fast profile, <= 512 MB RSS",
}
SAMPLE_INTERVAL_S = 0.1


@dataclass(frozen=True)
class Params:
    profiles: list[str]
    tiers: list[int]
    requests_per_worker: int  # PromptKit: 10 x tier requests
    targets: list[str]
    workers: int
    output: Path
    quick: bool = False
    resume: bool = False  # keep the targets already in `output`, run the others


class ResourceSampler:
    """Peak RSS of a process tree, sampled in the background."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.peak = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, self.server.rss_bytes() or 0)
            await asyncio.sleep(SAMPLE_INTERVAL_S)

    def __enter__(self) -> ResourceSampler:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *_: object) -> None:
        if self._task:
            self._task.cancel()


async def run_tier(target: Running, upstream: Server, tier: int, n: int) -> dict[str, Any]:
    host, port = split_url(target.server.base_url)
    records: list[RequestRecord] = []
    counter = iter(range(n))

    async def worker(w: int) -> None:
        conn = Connection(host, port)
        try:
            for k in counter:
                records.append(await target.request(w, k, conn))
        finally:
            conn.close()

    await target.prepare(tier)
    cpu0, up0, lg0 = target.server.cpu_s(), upstream.cpu_s(), time.process_time()
    wait0 = target.server.wait_s()
    t0 = time.perf_counter()
    with ResourceSampler(target.server) as rss:
        await asyncio.gather(*(worker(w) for w in range(tier)))
    wall = time.perf_counter() - t0
    cpu1, up1, lg1 = target.server.cpu_s(), upstream.cpu_s(), time.process_time()
    wait1 = target.server.wait_s()
    out = summarize_tier(tier, records, wall, rss.peak, cpu1 - cpu0, up1 - up0, lg1 - lg0)
    if wait0 is not None and wait1 is not None:
        # Share of the tier the target's threads were runnable but had no CPU (others had it)
        out["server_runqueue_wait_pct"] = round(100 * (wait1 - wait0) / wall, 1)
    return out


def _pct(xs: list[float], q: float) -> float | None:
    return round(percentile(xs, q), 2) if xs else None


def summarize_tier(
    tier: int,
    records: Sequence[RequestRecord],
    wall: float,
    peak_rss: int,
    server_cpu_s: float,
    upstream_cpu_s: float,
    loadgen_cpu_s: float,
) -> dict[str, Any]:
    ok = [r for r in records if r.ok]
    errors = [r for r in records if not r.ok]
    ttfb = [r.ttfb_ms for r in ok if r.ttfb_ms is not None]
    total = [r.total_ms for r in ok if r.total_ms is not None]
    per_s = len(ok) / wall if wall else 0.0
    server_cores = server_cpu_s / wall if wall else None
    out: dict[str, Any] = {
        "concurrency": tier,
        "requests": len(records),
        "ok": len(ok),
        "errors": len(errors),
        "error_samples": sorted({r.error or "" for r in errors})[:5],
        "wall_s": round(wall, 3),
        "req_per_s": round(per_s, 1),
        "ttfb_p50_ms": _pct(ttfb, 50),
        "ttfb_p99_ms": _pct(ttfb, 99),
        "duration_p50_ms": _pct(total, 50),
        "duration_p99_ms": _pct(total, 99),
        "peak_rss_mb": round(peak_rss / 2**20, 1),
        "server_cpu_pct": round(100 * server_cores, 1) if server_cores is not None else None,
        "upstream_cpu_pct": round(100 * upstream_cpu_s / wall, 1) if wall else None,
        "loadgen_cpu_pct": round(100 * loadgen_cpu_s / wall, 1) if wall else None,
        # req/s per core the target actually used (CPU seconds / wall seconds)
        "req_per_s_per_server_core": round(per_s / server_cores, 1) if server_cores else None,
    }
    kinds = sorted({r.kind for r in ok})
    if len(kinds) > 1:
        out["ttfb_p50_ms_by_kind"] = {
            k: _pct([r.ttfb_ms for r in ok if r.kind == k and r.ttfb_ms is not None], 50)
            for k in kinds
        }
    return out


async def bench_profile(
    p: Params, profile: Profile, workdir: Path, results: dict[str, Any]
) -> dict[str, Any]:
    """Every target on one profile; after each target the results so far are written to
    `p.output` (marked `"partial": true`), so an interrupted run keeps what it measured."""
    port = free_port()
    cmd = [sys.executable, "-m", "bench.mock_upstream", "--profile", profile.name]
    cmd += ["--port", str(port)]
    log = workdir / f"upstream-{profile.name}.log"
    out: dict[str, Any] = {
        "profile": asdict(profile),
        "ideal_stream_ms": round(profile.ideal_stream_s() * 1000, 1),
        "targets": {},
    }
    done = (results.get("profiles") or {}).get(profile.name, {}).get("targets", {})
    if p.resume:
        out["targets"].update(done)
    async with child_server(cmd, port, {}, log, "/health") as upstream:
        for name in p.targets:
            if p.resume and name in done:
                print(f"[{profile.name}] {name}: kept from the previous run", flush=True)
                continue
            print(f"[{profile.name}] {name} ...", flush=True)
            res: dict[str, Any] = {"status": "ok", "tiers": {}, "loadavg_start": loadavg()}
            try:
                async with start_target(
                    name, upstream, profile.reply_text(), workdir, p.workers
                ) as target:
                    res["notes"] = target.notes
                    await run_tier(target, upstream, 10, 20)  # warm-up, not reported
                    for tier in p.tiers:
                        r = await run_tier(target, upstream, tier, tier * p.requests_per_worker)
                        res["tiers"][str(tier)] = r
                        print(
                            f"  {tier:>5} streams: {r['req_per_s']:>7.1f} req/s, TTFB p50 "
                            f"{fmt(r['ttfb_p50_ms'], 1)} ms, {r['errors']} errors, "
                            f"{r['peak_rss_mb']:.0f} MB, CPU {fmt(r['server_cpu_pct'], 0)}%, "
                            f"run-queue wait {fmt(r.get('server_runqueue_wait_pct'), 0)}%",
                            flush=True,
                        )
                        if r["errors"]:
                            print(f"    errors: {r['error_samples']}", flush=True)
                        await asyncio.sleep(1.0)
            except StoreSkipped as exc:
                print(f"  skipped: {exc}", flush=True)
                res = {"status": "skipped", "reason": str(exc)}
            except (HttpError, RuntimeError) as exc:
                # e.g. the conversations of the next tier could not be created: the tiers
                # measured so far are kept, the failure is the result of the next one.
                print(f"  stopped: {exc}", flush=True)
                res["status"] = "failed"
                res["reason"] = f"{type(exc).__name__}: {str(exc)[:500]}"
            res["loadavg_end"] = loadavg()
            out["targets"][name] = res
            results["profiles"][profile.name] = out
            write_results(p.output.stem, {**results, "partial": True}, p.output.parent)
    return out


def parse_args(argv: Sequence[str] | None = None) -> Params:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fast profile, tiers 10,100, 5 x tier")
    ap.add_argument("--profiles", help="comma list (default fast,realistic)")
    ap.add_argument("--tiers", help="concurrency tiers (default 10,50,100,250,500,1000)")
    ap.add_argument("--per-worker", type=int, help="requests per tier = this x tier (default 10)")
    ap.add_argument("--targets", default=",".join(TARGETS), help="comma list (default: all)")
    ap.add_argument("--workers", type=int, default=1, help="uvicorn workers of each target")
    ap.add_argument("--output", type=Path, default=RESULTS_DIR / "frameworks.json")
    ap.add_argument(
        "--resume", action="store_true", help="keep the targets already in --output, run the rest"
    )
    a = ap.parse_args(argv)
    profiles = (a.profiles or ("fast" if a.quick else "fast,realistic")).split(",")
    targets = [t.strip() for t in a.targets.split(",") if t.strip()]
    if bad := [x for x in profiles if x not in PROFILES] + [x for x in targets if x not in TARGETS]:
        ap.error(f"unknown profile/target {bad}; profiles {list(PROFILES)}, targets {TARGETS}")
    default_tiers = "10,100" if a.quick else "10,50,100,250,500,1000"
    tiers = sorted({int(x) for x in (a.tiers or default_tiers).split(",") if x.strip()})
    return Params(
        profiles=profiles,
        tiers=tiers,
        requests_per_worker=a.per_worker or (5 if a.quick else 10),
        targets=targets,
        workers=a.workers,
        output=a.output,
        quick=a.quick,
        resume=a.resume,
    )


def raise_fd_limit() -> int:
    """1,000 streams need ~2,000 descriptors in a Parley process (client + upstream
    sockets); children inherit the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def run(p: Params) -> dict[str, Any]:
    started = time.perf_counter()
    previous: dict[str, Any] = {}
    if p.resume and p.output.exists():
        previous = json.loads(p.output.read_text())
    results: dict[str, Any] = {
        "benchmark": "frameworks",
        "machine": machine_info(),
        "parameters": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(p).items()},
        "fd_limit": raise_fd_limit(),
        "promptkit_published": PROMPTKIT_PUBLISHED,
        "profiles": previous.get("profiles", {}),
    }
    if previous:
        results["resumed_from"] = previous.get("machine")
    cpus = results["machine"]["cpu_count"] or 1
    with tempfile.TemporaryDirectory(prefix="parley-frameworks-") as tmp:
        for name in p.profiles:
            pr = await bench_profile(p, PROFILES[name], Path(tmp), results)
            pr["comparisons"] = compare(pr, cpus)
            results["profiles"][name] = pr
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    results["machine"]["loadavg_end"] = loadavg()
    return results


def main(argv: Sequence[str] | None = None) -> int:
    p = parse_args(argv)
    results = run_fast(run(p))
    results["table"] = render(results)
    print()
    print(results["table"])
    publish("frameworks", results, p.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
