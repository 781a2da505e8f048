"""Paging a fork's inherited history (review R8): `GET .../messages?before=` through the
whole path of a fork of a 10,000-message conversation, against the same pages of the source
(its own messages), on every store, over HTTP against a real uvicorn server.

The source is seeded by `POST /conversations/import` (one request), forked at its head, and
then both are paged from the head to the root, `--limit` messages a page; every page is
timed. Then (`*_cold_cursor`) one page before each message half a page off those cursors:
ids the server never issued as a cursor, each asked once, so the cursor's visibility check
cannot be answered from what the previous page learnt and walks parent links (what the first
page costs on an instance that did not serve the previous one). Reported per conversation:
the median and p90 page time over all pages and over the deepest tenth (nearest the root,
where a walk from the head is longest).

Redis runs on `--redis-url` (default db 14) under a key prefix of its own, and only the keys
under that prefix are deleted afterwards (no FLUSHDB).

    .venv/bin/python bench/fork_paging.py --stores sqlite,redis
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from bench.servers import parley_env, uvicorn_server
from bench.stores import STORES, provisioned_store
from bench.tree_ops import expect, promptkit_state


@asynccontextmanager
async def _redis_prefixed(base_url: str) -> AsyncIterator[str]:
    from redis.asyncio import Redis

    prefix = f"forkpaging-{uuid.uuid4().hex[:8]}:"
    try:
        yield f"{base_url}?prefix={prefix}"
    finally:
        client = Redis.from_url(base_url, socket_connect_timeout=2)
        try:
            keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
            for i in range(0, len(keys), 500):
                await client.delete(*keys[i : i + 500])
        finally:
            await client.aclose()


async def page_all(
    client: httpx.AsyncClient, cid: str, limit: int
) -> tuple[list[float], list[str]]:
    """Every page of `cid` from the head to the root: the time of each, and the ids read
    (newest first)."""
    times: list[float] = []
    seen: list[str] = []
    before: str | None = None
    while True:
        params: dict[str, Any] = {"limit": limit}
        if before is not None:
            params["before"] = before
        t0 = time.perf_counter()
        r = await client.get(f"/conversations/{cid}/messages", params=params)
        times.append((time.perf_counter() - t0) * 1000)
        if r.status_code != 200:
            raise RuntimeError(f"page {len(times)}: {r.status_code} {r.text}")
        body = r.json()
        seen.extend(m["id"] for m in reversed(body["data"]))
        before = body["next_cursor"]
        if before is None:
            break
    if len(set(seen)) != len(seen):
        raise RuntimeError("duplicate messages across pages")
    return times, seen


async def page_cold(client: httpx.AsyncClient, cid: str, ids: list[str], limit: int) -> list[float]:
    """One page before each of the ids half a page off the cursors `page_all` was given:
    cursors the server never issued, each asked once, so its visibility check walks (what
    the first page costs on an instance that did not serve the previous one). Asked root
    first, so that what each page remembers (its own next cursor, an id asked already) does
    not answer a later one; the times are returned head first, as `page_all`'s."""
    times: list[float] = []
    for before in reversed(ids[limit // 2 :: limit]):
        t0 = time.perf_counter()
        r = await client.get(
            f"/conversations/{cid}/messages", params={"limit": limit, "before": before}
        )
        times.append((time.perf_counter() - t0) * 1000)
        if r.status_code != 200:
            raise RuntimeError(f"cold page before {before}: {r.status_code} {r.text}")
    times.reverse()
    return times


def summary(times: list[float]) -> dict[str, float]:
    deep = times[-max(1, len(times) // 10) :]
    q = statistics.quantiles
    return {
        "pages": len(times),
        "p50_ms": round(statistics.median(times), 2),
        "p90_ms": round(q(times, n=10)[-1], 2) if len(times) > 1 else round(times[0], 2),
        "deep_p50_ms": round(statistics.median(deep), 2),
        "deep_max_ms": round(max(deep), 2),
    }


async def run_store(url: str, workdir: Path, n: int, limit: int, rounds: int) -> dict[str, Any]:
    env = parley_env(url, workdir, PARLEY_IMPORT_MAX_MB="64")
    async with (
        uvicorn_server("app.main:create_app", env, workdir / "server.log") as server,
        httpx.AsyncClient(base_url=server.base_url, timeout=300) as client,
    ):
        conv = await expect(
            client.post(
                "/conversations/import",
                params={"pack_id": "general-assistant", "prompt_name": "chat"},
                json=promptkit_state(n, "bench"),
            ),
            201,
        )
        src = conv["id"]
        fork = (await expect(client.post(f"/conversations/{src}/fork", json={}), 201))["id"]
        out: dict[str, Any] = {}
        for name, cid in (("source", src), ("fork", fork)):
            await page_all(client, cid, limit)  # untimed: caches, pools
            times: list[float] = []
            ids: list[str] = []
            for _ in range(rounds):
                t, ids = await page_all(client, cid, limit)
                if len(ids) != n:
                    raise RuntimeError(f"{name}: paged {len(ids)} messages, expected {n}")
                times.extend(t)
            out[name] = summary(times)
            out[f"{name}_cold_cursor"] = summary(await page_cold(client, cid, ids, limit))
        return out


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for store in args.stores.split(","):
        with tempfile.TemporaryDirectory(prefix="parley-fork-paging-") as tmp:
            workdir = Path(tmp)
            print(f"[fork_paging] {store} ...", file=sys.stderr, flush=True)
            if store == "memory":
                results[store] = await run_store(
                    "memory://", workdir, args.messages, args.limit, args.rounds
                )
                continue
            if store == "redis":
                async with _redis_prefixed(args.redis_url) as url:
                    results[store] = await run_store(
                        url, workdir, args.messages, args.limit, args.rounds
                    )
                continue
            async with provisioned_store(STORES[store], workdir) as url:
                results[store] = await run_store(
                    url, workdir, args.messages, args.limit, args.rounds
                )
    return {"messages": args.messages, "limit": args.limit, "stores": results}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stores", default="sqlite,redis")
    p.add_argument("--messages", type=int, default=10_000)
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    report = asyncio.run(main_async(args))
    text = json.dumps(report, indent=2)
    if args.json is not None:
        args.json.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
