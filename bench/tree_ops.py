"""Tree operations vs history length (issue 10): checkpoint, fork, rollback, edit and export
of a 10-message and a 10,000-message conversation, on every store, over HTTP against a real
uvicorn server; and the stored message rows/keys before and after 100 forks of the big one.

A conversation is seeded by `POST /conversations/import` of a PromptKit state (a linear
history of alternating user/assistant messages), so seeding costs one request, not 5,000
turns. Each operation is timed `--rounds` times on the same conversation (export a tenth
as often), the two sizes interleaved round by round after two untimed rounds:

* `checkpoint` — `POST .../checkpoints` at the head;
* `fork` — `POST .../fork` at the head (a new conversation each round);
* `rollback` — `POST .../rollback` to the head's grandparent, timed; then (untimed)
  `PUT .../head` back to the `abandoned_head_id`, so every round starts from the same head;
* `edit` — `POST .../messages/{last user message}/edit`, non-streaming, with the mock
  provider (no delay): a new sibling of the last question and its reply, so it includes one
  turn's context build and commit;
* `export` — `GET .../export` of the whole document (expected to follow the history: it
  writes every message; reported, not part of the 1.5x target).

Rows/keys: SQL stores count the `messages` table; Redis sums the fields of every lineage's
message hash (`HLEN *:msg`) and counts all keys of its bench database. The memory store is
measured for time only (its rows are not visible from outside the process).

    .venv/bin/python bench/tree_ops.py                      # prints a Markdown table
    .venv/bin/python bench/tree_ops.py --json bench/results/tree_ops.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from bench.common import RESULTS_DIR
from bench.servers import parley_env, uvicorn_server
from bench.stores import PG_ADMIN_URL, REDIS_URL, STORES, StoreSkipped, provisioned_store

SIZES = (10, 10_000)
OPS = ("checkpoint", "fork", "rollback", "edit", "export")
WARMUP = 2  # untimed rounds per operation first (connection pools, statement caches)
TARGET_RATIO = 1.5  # issue 10: each of fork/checkpoint/rollback/edit at 10,000 <= 1.5x at 10


def promptkit_state(n: int, user_id: str) -> dict[str, Any]:
    """A PromptKit statestore state (Go field names) of `n` alternating messages."""
    words = "the order shipped on tuesday and the invoice is attached to this message "
    messages = [
        {
            "role": "user" if i % 2 == 0 else "assistant",
            "content": f"message {i}: {words * 3}",
        }
        for i in range(n)
    ]
    return {"ID": f"tree-bench-{n}", "UserID": user_id, "Messages": messages}


async def expect(response: Awaitable[httpx.Response], status: int) -> dict[str, Any]:
    r = await response
    if r.status_code != status:
        raise RuntimeError(f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text}")
    body: dict[str, Any] = r.json()
    return body


Step = Callable[[int], Awaitable[None]]
Undo = Callable[[], Awaitable[None]]


async def _nothing() -> None:
    return None


async def prepare(client: httpx.AsyncClient, n: int) -> tuple[str, dict[str, tuple[Step, Undo]]]:
    """Seed an `n`-message conversation; its id and, per operation, one timed step and
    the untimed undo that puts the conversation back where the step found it."""
    conv = await expect(
        client.post(
            "/conversations/import",
            params={"pack_id": "general-assistant", "prompt_name": "chat"},
            json=promptkit_state(n, "bench"),
        ),
        201,
    )
    cid = conv["id"]
    recent = await expect(client.get(f"/conversations/{cid}/messages", params={"limit": 4}), 200)
    by_id = {m["id"]: m for m in recent["data"]}
    head = by_id[conv["head_message_id"]]
    grandparent = by_id[by_id[head["parent_id"]]["parent_id"]]
    last_user = by_id[head["parent_id"]]  # the seeded history ends question, answer
    if last_user["role"] != "user":
        raise RuntimeError(f"expected the head's parent to be a user message: {last_user}")

    async def checkpoint(i: int) -> None:
        await expect(client.post(f"/conversations/{cid}/checkpoints", json={"name": f"c{i}"}), 201)

    async def fork(_: int) -> None:
        await expect(client.post(f"/conversations/{cid}/fork", json={}), 201)

    abandoned: list[str] = []

    async def rollback(_: int) -> None:
        body = await expect(
            client.post(f"/conversations/{cid}/rollback", json={"message_id": grandparent["id"]}),
            200,
        )
        abandoned.append(body["abandoned_head_id"])

    async def restore() -> None:
        await expect(
            client.put(f"/conversations/{cid}/head", json={"message_id": abandoned.pop()}), 200
        )

    async def edit(i: int) -> None:
        await expect(
            client.post(
                f"/conversations/{cid}/messages/{last_user['id']}/edit",
                json={"content": f"edited question {i}", "stream": False},
            ),
            200,
        )

    async def export(_: int) -> None:
        r = await client.get(f"/conversations/{cid}/export")
        if r.status_code != 200:
            raise RuntimeError(f"export: {r.status_code} {r.text}")

    return cid, {
        "checkpoint": (checkpoint, _nothing),
        "fork": (fork, _nothing),
        "rollback": (rollback, restore),
        "edit": (edit, _nothing),
        "export": (export, _nothing),
    }


async def measure(
    client: httpx.AsyncClient, rounds: int, ops: tuple[str, ...]
) -> dict[int, dict[str, Any]]:
    """Each operation on every size, interleaved round by round (small, big, small, ...),
    so a change in the machine's load during the run weighs on both sides of the ratio."""
    prepared = {n: await prepare(client, n) for n in SIZES}
    samples: dict[int, dict[str, list[float]]] = {n: {} for n in SIZES}
    for op in ops:
        op_rounds = max(3, rounds // 10) if op == "export" else rounds
        for i in range(WARMUP + op_rounds):
            for n in SIZES:
                step, undo = prepared[n][1][op]
                t0 = time.perf_counter()
                await step(i)
                elapsed = (time.perf_counter() - t0) * 1000
                await undo()
                if i >= WARMUP:
                    samples[n].setdefault(op, []).append(elapsed)
    return {
        n: {
            "conversation_id": prepared[n][0],
            "ops": {
                op: {
                    "rounds": len(s),
                    "p50_ms": statistics.median(s),
                    "p90_ms": sorted(s)[int(0.9 * (len(s) - 1))],
                }
                for op, s in samples[n].items()
            },
        }
        for n in SIZES
    }


async def stored_rows(store: str, url: str) -> dict[str, int] | None:
    """Message rows (and, on Redis, all keys of the bench db) as the store holds them."""
    if store == "memory":
        return None
    if store == "redis":
        from redis.asyncio import Redis

        r = Redis.from_url(REDIS_URL)
        try:
            messages = 0
            async for key in r.scan_iter(match="*:msg", count=1000):
                messages += int(await r.hlen(key))
            return {"message_rows": messages, "keys": int(await r.dbsize())}
        finally:
            await r.aclose()
    import sqlalchemy as sa
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    try:
        async with engine.connect() as c:
            messages = (await c.execute(sa.text("SELECT count(*) FROM messages"))).scalar_one()
            convs = (await c.execute(sa.text("SELECT count(*) FROM conversations"))).scalar_one()
        return {"message_rows": int(messages), "conversation_rows": int(convs)}
    finally:
        await engine.dispose()


async def forks_footprint(client: httpx.AsyncClient, store: str, url: str, cid: str) -> Any:
    before = await stored_rows(store, url)
    for _ in range(100):
        await expect(client.post(f"/conversations/{cid}/fork", json={}), 201)
    after = await stored_rows(store, url)
    return {"before": before, "after_100_forks": after}


async def run_store(
    store: str, url: str, workdir: Path, rounds: int, ops: tuple[str, ...]
) -> dict[str, Any]:
    env = parley_env(url, workdir, PARLEY_IMPORT_MAX_MB="64")
    log = workdir / f"{store}.log"
    async with (
        uvicorn_server("app.main:create_app", env, log) as server,
        httpx.AsyncClient(base_url=server.base_url, timeout=120) as client,
    ):
        try:
            sizes = await measure(client, rounds, ops)
            big = sizes[SIZES[-1]]["conversation_id"]
            footprint = await forks_footprint(client, store, url, big)
        except (RuntimeError, httpx.HTTPError):
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-400:])
            print(f"[tree_ops] {store} failed; server log:\n{tail}", file=sys.stderr)
            raise
    ratios = {
        op: sizes[SIZES[-1]]["ops"][op]["p50_ms"] / sizes[SIZES[0]]["ops"][op]["p50_ms"]
        for op in ops
    }
    return {"sizes": sizes, "ratio_p50": ratios, "forks": footprint}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    ops = tuple(args.ops.split(","))
    if unknown := set(ops) - set(OPS):
        raise SystemExit(f"unknown --ops {sorted(unknown)}; choose from {','.join(OPS)}")
    for store in args.stores.split(","):
        with tempfile.TemporaryDirectory(prefix="parley-tree-bench-") as tmp:
            workdir = Path(tmp)
            print(f"[tree_ops] {store} ...", file=sys.stderr, flush=True)
            try:
                if store == "memory":
                    results[store] = await run_store(store, "memory://", workdir, args.rounds, ops)
                    continue
                async with provisioned_store(STORES[store], workdir) as url:
                    results[store] = await run_store(store, url, workdir, args.rounds, ops)
            except StoreSkipped as exc:
                print(f"[tree_ops] {store} skipped: {exc}", file=sys.stderr)
                results[store] = {"skipped": str(exc)}
    return {
        "sizes": list(SIZES),
        "rounds": args.rounds,
        "ops": list(ops),
        "target_ratio": TARGET_RATIO,
        "postgres_admin": PG_ADMIN_URL.rsplit("@", 1)[-1],
        "stores": results,
    }


def table(report: dict[str, Any]) -> str:
    small, big = report["sizes"]
    lines = [
        f"| store | op | p50 @{small} ms | p50 @{big:,} ms | ratio |",
        "|---|---|---:|---:|---:|",
    ]
    for store, res in report["stores"].items():
        if "skipped" in res:
            lines.append(f"| {store} | skipped: {res['skipped']} | | | |")
            continue
        for op in report["ops"]:
            a = res["sizes"][small]["ops"][op]["p50_ms"]
            b = res["sizes"][big]["ops"][op]["p50_ms"]
            lines.append(f"| {store} | {op} | {a:.2f} | {b:.2f} | {b / a:.2f}x |")
    lines += ["", "| store | message rows before | after 100 forks | other |"]
    lines += ["|---|---:|---:|---|"]
    for store, res in report["stores"].items():
        f = res.get("forks")
        if not f or f["before"] is None:
            continue
        other = {k: (f["before"][k], f["after_100_forks"][k]) for k in f["before"]}
        other.pop("message_rows")
        lines.append(
            f"| {store} | {f['before']['message_rows']:,} | "
            f"{f['after_100_forks']['message_rows']:,} | "
            + ", ".join(f"{k} {a} → {b}" for k, (a, b) in other.items())
            + " |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stores", default="memory,sqlite,postgres,redis")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--ops", default=",".join(OPS), help="comma-separated, of " + ",".join(OPS))
    ap.add_argument("--json", type=Path, default=None, help=f"e.g. {RESULTS_DIR}/tree_ops.json")
    args = ap.parse_args()
    report = asyncio.run(main_async(args))
    print(table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    over = [
        f"{s}:{op}"
        for s, res in report["stores"].items()
        if "ratio_p50" in res
        for op, ratio in res["ratio_p50"].items()
        if op != "export" and ratio > TARGET_RATIO
    ]
    grew = [
        s
        for s, res in report["stores"].items()
        if (f := res.get("forks"))
        and f["before"] is not None
        and f["before"]["message_rows"] != f["after_100_forks"]["message_rows"]
    ]
    if over or grew:
        print(f"over {TARGET_RATIO}x: {over or 'none'}; message rows grew: {grew or 'none'}")
        sys.exit(1)


if __name__ == "__main__":
    main()
