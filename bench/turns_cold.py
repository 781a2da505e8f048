"""The cold path of `bench/turns.py` (issue 15): the first turn on a long conversation when
the server's message cache does not hold it, next to the warm p50 of the same run.

On its own scratch store, `conversations` conversations are pre-filled to `size` messages
(10,000 by default) through the store API, then for each conversation *i*:

* a new uvicorn is started (a restart: empty message cache, nothing imported lazily yet,
  fresh connection pools) and its **first request** is a turn on conversation *i*:
  `first turn after restart`;
* its second request is a turn on conversation *i + 1*, which this process has not seen
  either: `cold cache, warm process`;
* then three turns on conversation *i*: `warm` (its history is cached).

On PostgreSQL and Redis, with the last server still running, a **second instance** is
started next to it and each conversation gets one turn there (its cache is empty; the first
instance holds the conversation warm): `first turn on a second instance`. SQLite refuses a
second serving process (app/stores/sqlite_owner.py), so that row is not run there.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from bench.common import random_text
from bench.servers import parley_env, uvicorn_server
from bench.stats import ratio, summarize_ms
from bench.stores import StoreBackend, provisioned_store
from bench.turns_parley import MULTI_PROCESS_STORES, create_conversations, http_turn, prefill


async def _turn(client: httpx.AsyncClient, conv_id: str, rng: random.Random) -> float:
    return (await http_turn(client, conv_id, random_text(rng))).ms


async def bench_cold(
    backend: StoreBackend,
    workdir: Path,
    rng: random.Random,
    *,
    size: int = 10_000,
    conversations: int = 5,
    server_env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    first: list[float] = []
    cold_cache: list[float] = []
    warm: list[float] = []
    second: list[float] = []
    out: dict[str, Any] = {"history": size, "conversations": conversations}
    async with provisioned_store(backend, workdir) as url:
        env = parley_env(url, workdir, **(server_env or {}))
        ids, _ = await create_conversations(env, conversations)
        await prefill(url, dict.fromkeys(ids, size), rng)
        for i, conv_id in enumerate(ids):
            log = workdir / f"uvicorn-cold-{i}.log"
            async with (
                uvicorn_server("app.main:create_app", env, log) as server,
                httpx.AsyncClient(base_url=server.base_url, timeout=120) as client,
            ):
                first.append(await _turn(client, conv_id, rng))
                cold_cache.append(await _turn(client, ids[(i + 1) % len(ids)], rng))
                warm += [await _turn(client, conv_id, rng) for _ in range(3)]
                if i == len(ids) - 1 and backend.name in MULTI_PROCESS_STORES:
                    log2 = workdir / "uvicorn-cold-second.log"
                    async with (
                        uvicorn_server("app.main:create_app", env, log2) as other,
                        httpx.AsyncClient(base_url=other.base_url, timeout=120) as client2,
                    ):
                        await _turn(client2, ids[0], rng)  # the process warms up first
                        second += [await _turn(client2, c, rng) for c in ids[1:]]
    warm_p50 = summarize_ms(warm)["p50_ms"]
    out["first_turn_after_restart"] = summarize_ms(first)
    out["cold_cache_warm_process"] = summarize_ms(cold_cache)
    out["warm"] = summarize_ms(warm)
    out["first_over_warm_p50"] = ratio(out["first_turn_after_restart"]["p50_ms"], warm_p50)
    out["cold_cache_over_warm_p50"] = ratio(out["cold_cache_warm_process"]["p50_ms"], warm_p50)
    if second:
        out["second_instance"] = summarize_ms(second)
        out["second_instance_over_warm_p50"] = ratio(out["second_instance"]["p50_ms"], warm_p50)
    else:
        out["second_instance"] = None
        out["second_instance_reason"] = (
            "SQLite: one serving process per file (app/stores/sqlite_owner.py)"
            if backend.name not in MULTI_PROCESS_STORES
            else "too few conversations"
        )
    return out
