"""The framework floor of `bench/turns.py` (DESIGN §11): `bench/floor_app.py` (`POST /echo`
returns its JSON body) under the same uvicorn command and the same client as Parley, with
bodies of the same kind of message: the cost of HTTP + JSON + FastAPI with no work at all."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.common import random_text
from bench.servers import Server, child_env, uvicorn_server
from bench.stats import summarize_ms
from bench.turns_timing import Params, concurrent_throughput


@dataclass
class FloorClient:
    """One floor server and its client: `echo()` times one request (ms) and adds the
    server's CPU for it to `server_cpu_s`."""

    server: Server
    client: httpx.AsyncClient
    rng: random.Random
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0

    async def echo(self, _: str = "") -> float:
        body = {"content": random_text(self.rng)}
        s0, c0 = self.server.cpu_s() or 0.0, time.process_time()
        t0 = time.perf_counter()
        r = await self.client.post("/echo", json=body)
        ms = (time.perf_counter() - t0) * 1000
        self.client_cpu_s += time.process_time() - c0
        self.server_cpu_s += (self.server.cpu_s() or 0.0) - s0
        if r.status_code != 200 or r.json() != body:
            raise RuntimeError(f"floor echo failed: {r.status_code} {r.text[:200]}")
        return ms


@asynccontextmanager
async def floor_client(
    workdir: Path, rng: random.Random, name: str = "floor", workers: int = 1
) -> AsyncIterator[FloorClient]:
    """The floor app under uvicorn (log in `workdir`) with a keep-alive client."""
    log = workdir / f"uvicorn-{name}.log"
    async with (
        uvicorn_server("bench.floor_app:create_app", child_env({}), log, workers=workers) as server,
        httpx.AsyncClient(
            base_url=server.base_url, timeout=60, limits=httpx.Limits(max_connections=256)
        ) as client,
    ):
        yield FloorClient(server, client, rng)


def sequential_summary(ms: list[float], floor: FloorClient) -> dict[str, Any]:
    """Latency summary of `ms`, requests/s, and the client's and server's CPU per request
    accumulated by `floor` over exactly these requests."""
    n = len(ms)
    seq: dict[str, Any] = summarize_ms(ms)
    seq["per_s"] = round(1000 * n / sum(ms), 2)
    seq["client_cpu_ms_per_request"] = round(floor.client_cpu_s * 1000 / n, 3)
    seq["server_cpu_ms_per_request"] = round(floor.server_cpu_s * 1000 / n, 3)
    return seq


async def bench_floor(p: Params, workdir: Path, rng: random.Random) -> dict[str, Any]:
    async with floor_client(workdir, rng) as floor:
        for _ in range(p.warmup):
            await floor.echo()
        floor.server_cpu_s = floor.client_cpu_s = 0.0
        n = p.turns * len(p.sizes)  # as many requests as Parley's timed turns per store
        ms = [await floor.echo() for _ in range(n)]
        out: dict[str, Any] = {"sequential": sequential_summary(ms, floor)}
        if p.concurrency:
            out["concurrent"] = await concurrent_throughput(
                floor.server, [str(i) for i in range(p.concurrency)], p.concurrent_turns, floor.echo
            )
    if p.concurrency and p.workers > 1:
        async with floor_client(workdir, rng, "floor-workers", p.workers) as floor:
            for _ in range(4 * p.warmup):
                await floor.echo()
            out["concurrent_workers"] = await concurrent_throughput(
                floor.server, [str(i) for i in range(p.concurrency)], p.concurrent_turns, floor.echo
            )
            out["concurrent_workers"]["workers"] = p.workers
    return out
