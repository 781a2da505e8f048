"""How `bench/turns.py` times turns, shared by Parley, LangGraph and the floor: the run's
parameters, how many conversations a history size needs, round-robin slots, per-turn
samples and their per-size summary, and the concurrent throughput phase."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.servers import Server
from bench.stats import summarize_ms


@dataclass(frozen=True)
class Params:
    stores: list[str]
    sizes: list[int]
    turns: int  # timed turns per size
    warmup: int  # untimed turns on a separate conversation before timing
    lg_sizes: list[int]
    lg_turns: int
    concurrency: int  # clients of the concurrent throughput phase (0: skip it)
    concurrent_turns: int  # turns per client in that phase
    langgraph: bool
    floor: bool
    seed: int
    output: Path
    quick: bool = False
    server_env: dict[str, str] = field(default_factory=dict)  # extra PARLEY_* for Parley
    workers: int = 2  # uvicorn workers of the multi-process phase (1: skip it)
    cold: bool = True  # the cold-path phase (first turn after a restart / on a 2nd instance)
    langgraph_http: bool = True  # LangGraph behind the floor's FastAPI, over HTTP
    logs: Path | None = None  # keep the servers' logs here instead of a temporary directory


def turns_per_conversation(size: int) -> int:
    """Timed turns one conversation of `size` messages may take: each adds 2 messages, and
    history must stay within 5% of `size`."""
    return max(1, size // 40)


def conversations_needed(size: int, turns: int) -> int:
    return math.ceil(turns / turns_per_conversation(size))


@dataclass
class Slots:
    """Conversations (or threads) of one history size and whose turn is next."""

    size: int
    ids: list[str]
    per_id: int
    used: int = 0

    def next_id(self) -> str:
        conv_id = self.ids[self.used // self.per_id]
        self.used += 1
        return conv_id

    async def next_primed(self, prime: Callable[[str], Awaitable[object]]) -> str:
        """`next_id()`, after one untimed `prime(id)` turn when it is that conversation's
        first timed turn. Priming right before (not all conversations up front) keeps the
        promise "its first timed turn sees a warm cache" whatever the run's working set:
        primed up front, the 200 10-message conversations were the least recently used
        entries of Parley's 16 MB message cache by the time they were timed, evicted by
        the larger histories' windows, so every 10-message turn read its history from the
        store and cost more server CPU than a 10,000-message one (bench/README.md)."""
        if self.used % self.per_id == 0:
            await prime(self.ids[self.used // self.per_id])
        return self.next_id()


@dataclass
class TurnSample:
    ms: float  # wall time, request sent -> response read
    history: int  # messages before the turn (the user message's depth)
    input_tokens: int  # the mock's estimate of the context window it was sent
    client_cpu_ms: float  # CPU this process spent on the turn (the load generator)
    server_cpu_ms: float | None = None  # CPU the server process spent (/proc, 10 ms ticks)
    server_wait_ms: float | None = None  # its event loop runnable but without a CPU


@dataclass
class SizeResult:
    samples: list[TurnSample] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        ms = [s.ms for s in self.samples]
        n = len(ms)
        out: dict[str, Any] = summarize_ms(ms)
        out["turns_per_s"] = round(1000 * n / sum(ms), 2)
        out["client_cpu_ms_per_turn"] = round(sum(s.client_cpu_ms for s in self.samples) / n, 3)
        server = [s.server_cpu_ms for s in self.samples if s.server_cpu_ms is not None]
        if server:
            out["server_cpu_ms_per_turn"] = round(sum(server) / len(server), 3)
        waits = [s.server_wait_ms for s in self.samples if s.server_wait_ms is not None]
        if waits:
            out["server_runqueue_wait_ms_per_turn"] = round(sum(waits) / len(waits), 3)
        out["history_min"] = min(s.history for s in self.samples)
        out["history_max"] = max(s.history for s in self.samples)
        tokens = sorted(s.input_tokens for s in self.samples)
        out["context_input_tokens_median"] = tokens[len(tokens) // 2]
        return out


async def concurrent_throughput(
    server: Server,
    ids: Sequence[str],
    turns_each: int,
    request: Callable[[str], Awaitable[float]],
) -> dict[str, Any]:
    """`len(ids)` clients, each sending `turns_each` requests back to back (`request(id)`
    returns a latency in ms, or raises for a failed request, which is counted and
    sampled, not fatal). Throughput is successful requests / wall time of the phase."""
    latencies: list[float] = []
    errors: list[str] = []

    async def worker(item: str) -> None:
        for _ in range(turns_each):
            try:
                latencies.append(await request(item))
            except (RuntimeError, httpx.HTTPError) as exc:
                errors.append(f"{type(exc).__name__}: {str(exc)[:300]}")

    s0 = server.cpu_s()
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in ids))
    wall = time.perf_counter() - t0
    s1 = server.cpu_s()
    out: dict[str, Any] = {
        "clients": len(ids),
        "requests": len(latencies),
        "errors": len(errors),
        "error_samples": sorted(set(errors))[:5],
        "wall_s": round(wall, 3),
        "per_s": round(len(latencies) / wall, 2),
        **(summarize_ms(latencies) if latencies else {}),
    }
    if s0 is not None and s1 is not None:
        out["server_cpu_ms_per_request"] = round((s1 - s0) * 1000 / len(latencies), 3)
        out["server_cpu_utilization"] = round((s1 - s0) / wall, 3)
    return out
