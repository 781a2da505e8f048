"""Soak: does the server's memory stay flat over many turns? (issue 8, "bounded memory")

Runs `--turns` non-streaming turns (mock provider, no delay) against a real uvicorn
process on a fresh SQLite file, `--concurrency` clients at a time, each client starting a
new conversation every `--turns-per-conversation` turns (so per-conversation and
per-message state keeps arriving, as in production). The server's RSS is sampled every
`--sample-every` turns. The verdict compares the RSS at the end with the RSS after
`--baseline` turns: flat means within `--tolerance` (20 %).

    .venv/bin/python bench/soak.py                       # 20,000 turns, ~5-15 min
    .venv/bin/python bench/soak.py --turns 3000 --baseline 1000 --out /tmp/soak.json

Writes the samples and the verdict to `--out` (default bench/results/soak.json) and
prints them. Exit status 1 when the RSS is not flat.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from bench.common import RESULTS_DIR, random_text, run_fast
from bench.servers import Server, parley_env, uvicorn_server


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
    )


async def soak(server: Server, p: Params) -> list[Sample]:
    samples: list[Sample] = []
    done = 0
    latencies: list[float] = []
    started = time.monotonic()
    lock = asyncio.Lock()
    marks = sorted({p.baseline, p.turns, *range(p.sample_every, p.turns + 1, p.sample_every)})

    async def record() -> None:
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
                    await record()

    limits = httpx.Limits(max_connections=p.concurrency)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60, limits=limits) as http:
        await record()
        await asyncio.gather(*(client(w, http) for w in range(p.concurrency)))
    return samples


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


async def run(p: Params) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="parley-soak-") as tmp:
        work = Path(tmp)
        env = parley_env(f"sqlite+aiosqlite:///{work}/parley.db", work, **dict(p.server_env))
        async with uvicorn_server("app.main:create_app", env, work / "server.log") as server:
            samples = await soak(server, p)
    result = {
        "params": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(p).items()},
        "samples": [asdict(s) for s in samples],
        "verdict": verdict(samples, p),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    return result


def main(argv: Sequence[str] | None = None) -> int:
    p = parse_args(argv)
    result = run_fast(run(p))
    p.out.parent.mkdir(parents=True, exist_ok=True)
    p.out.write_text(json.dumps(result, indent=2) + "\n")
    v = result["verdict"]
    print(
        f"RSS after {p.baseline} turns: {v['rss_mb_at_baseline']} MB, after {p.turns}: "
        f"{v['rss_mb_at_end']} MB ({v['growth']:+.1%}); "
        f"{'FLAT' if v['flat'] else 'GROWING'} (tolerance {p.tolerance:.0%}) -> {p.out}"
    )
    return 0 if v["flat"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
