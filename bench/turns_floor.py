"""The framework floor of `bench/turns.py` (DESIGN §11): `bench/floor_app.py` (`POST /echo`
returns its JSON body) under the same uvicorn command and the same client as Parley, with
bodies of the same kind of message: the cost of HTTP + JSON + FastAPI with no work at all."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import random_text
from bench.servers import child_env, uvicorn_server
from bench.stats import summarize_ms
from bench.turns_timing import Params, concurrent_throughput


async def bench_floor(p: Params, workdir: Path, rng: random.Random) -> dict[str, Any]:
    env = child_env({})
    log = workdir / "uvicorn-floor.log"
    async with (
        uvicorn_server("bench.floor_app:create_app", env, log) as server,
        httpx.AsyncClient(
            base_url=server.base_url, timeout=60, limits=httpx.Limits(max_connections=256)
        ) as client,
    ):

        async def echo(_: str = "") -> float:
            body = {"content": random_text(rng)}
            t0 = time.perf_counter()
            r = await client.post("/echo", json=body)
            ms = (time.perf_counter() - t0) * 1000
            if r.status_code != 200 or r.json() != body:
                raise RuntimeError(f"floor echo failed: {r.status_code} {r.text[:200]}")
            return ms

        for _ in range(p.warmup):
            await echo()
        n = p.turns * len(p.sizes)  # as many requests as Parley's timed turns per store
        ms: list[float] = []
        client_cpu = server_cpu = 0.0
        for _ in range(n):
            s0, c0 = server.cpu_s() or 0.0, time.process_time()
            ms.append(await echo())
            client_cpu += time.process_time() - c0
            server_cpu += (server.cpu_s() or 0.0) - s0
        seq: dict[str, Any] = summarize_ms(ms)
        seq["per_s"] = round(1000 * n / sum(ms), 2)
        seq["client_cpu_ms_per_request"] = round(client_cpu * 1000 / n, 3)
        seq["server_cpu_ms_per_request"] = round(server_cpu * 1000 / n, 3)
        out: dict[str, Any] = {"sequential": seq}
        if p.concurrency:
            out["concurrent"] = await concurrent_throughput(
                server, [str(i) for i in range(p.concurrency)], p.concurrent_turns, echo
            )
    if p.concurrency and p.workers > 1:
        log = workdir / "uvicorn-floor-workers.log"
        async with (
            uvicorn_server("bench.floor_app:create_app", env, log, workers=p.workers) as server,
            httpx.AsyncClient(
                base_url=server.base_url, timeout=60, limits=httpx.Limits(max_connections=256)
            ) as client,
        ):
            for _ in range(4 * p.warmup):
                await echo()  # `echo` reads `client` when called: now this server's
            out["concurrent_workers"] = await concurrent_throughput(
                server, [str(i) for i in range(p.concurrency)], p.concurrent_turns, echo
            )
            out["concurrent_workers"]["workers"] = p.workers
    return out
