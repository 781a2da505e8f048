"""Parley's side of `bench/turns.py`: conversations created through the service's own code,
history pre-filled through the store API before the server starts, and timed turns against
a real uvicorn.

* Conversations are created with the app and its real lifespan in-process (`POST
  /conversations` with `general-assistant`/`chat`), configured exactly like the server, so
  they are what the service creates; this also says which coordination backend the
  configuration gets.
* History: `append_messages` with 1,000 messages per call, user messages of 10-40 everyday
  words and `echo: ...` replies built field by field as the turn executor builds them.
  Each conversation is filled to `size - 2` messages and gets one untimed priming turn
  right before its first timed one (`Slots.next_primed`), so that turn sees exactly `size`
  messages with the server's message cache warm.
* A timed turn is `POST /conversations/{id}/messages` sent -> response body read, on one
  keep-alive `httpx.AsyncClient`, one request at a time, with the server process's CPU and
  run-queue wait read from /proc around it. Sizes are measured round-robin.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from app.domain import (
    Conversation,
    ConversationStatus,
    Message,
    Part,
    Role,
    Usage,
    new_id,
    utcnow,
)
from app.domain.tokens import estimate_tokens
from bench.common import random_text
from bench.servers import Server, parley_env, uvicorn_server
from bench.stats import ratio
from bench.stores import StoreBackend, provisioned_store
from bench.turns_floor import FloorClient, sequential_summary
from bench.turns_timing import (
    Params,
    SizeResult,
    Slots,
    TurnSample,
    concurrent_throughput,
    conversations_needed,
    turns_per_conversation,
)

CRITERION = 1.3  # DESIGN §11: p50 at the largest history within 1.3x of the smallest's
PREFILL_BATCH = 1000
CREATE_BODY = {"pack_id": "general-assistant", "prompt_name": "chat"}


def settings_from_env(env: Mapping[str, str]) -> Any:
    """`Settings` built from exactly the `PARLEY_*` variables of `env` (the server's
    environment) and nothing else, so the in-process app is configured like the server."""
    from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

    from app.settings import Settings

    class ExactSettings(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings,)  # no environment, no .env file, no secrets directory

    values: dict[str, Any] = {
        k.removeprefix("PARLEY_").lower(): v for k, v in env.items() if k.startswith("PARLEY_")
    }
    return ExactSettings(**values)


@asynccontextmanager
async def in_process_app(env: Mapping[str, str]) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """The app with its real lifespan and the server's configuration, reached in-process
    (no server), to create conversations exactly as the service does. Yields the client
    and the manager."""
    from app.main import create_app

    app = create_app(settings_from_env(env))
    async with app.router.lifespan_context(app) as state:

        async def with_state(scope: Any, receive: Any, send: Any) -> None:
            scope["state"] = dict(state or {})
            await app(scope, receive, send)

        transport = httpx.ASGITransport(app=with_state)
        async with httpx.AsyncClient(transport=transport, base_url="http://parley.bench") as c:
            yield c, (state or {}).get("manager")


def describe_coordination(manager: Any) -> str | None:
    """Which coordination backend the service builds for this configuration."""
    coord = getattr(manager, "coordinator", None)
    if coord is None:
        return None
    parts = [f"{k}={type(getattr(coord, k)).__name__}" for k in ("locks", "idempotency", "runs")]
    return f"{type(coord).__name__}({', '.join(p for p in parts if not p.endswith('=NoneType'))})"


async def create_conversations(env: Mapping[str, str], count: int) -> tuple[list[str], str | None]:
    """`count` conversations created through the API in-process; also says which
    coordination backend this configuration gets."""
    ids = []
    async with in_process_app(env) as (client, manager):
        for i in range(count):
            r = await client.post("/conversations", json={**CREATE_BODY, "user_id": f"bench-{i}"})
            if r.status_code != 201:
                raise RuntimeError(f"creating a conversation failed: {r.status_code} {r.text}")
            ids.append(r.json()["id"])
        return ids, describe_coordination(manager)


def history_messages(conv: Conversation, count: int, rng: random.Random) -> list[Message]:
    """`count` messages (user, reply, user, reply, ...) continuing `conv`'s head, built as
    the turn executor builds them, each with its turn number (`Message.turn`: the user
    messages on its path, as every committed or imported message has; without it a
    conversation's first turn walks its whole history back to count them, a one-time
    upgrade of data stored before turn numbers, not a cost of a real conversation). Reply
    usage is the mock provider's estimate for a window of the system prompt and the user
    message (approximate; it affects no turn cost)."""
    if count % 2:
        raise ValueError("history is whole turns: an even number of messages")
    out: list[Message] = []
    parent = conv.head_message_id
    depth = conv.message_count  # whole turns from the root: depth // 2 turns before
    start = utcnow() - timedelta(seconds=count)
    for i in range(0, count, 2):
        run_id = new_id()
        text = random_text(rng)
        reply_text = f"echo: {text}"
        user = Message(
            id=new_id(),
            parent_id=parent,
            conversation_id=conv.id,
            role=Role.user,
            content=text,
            parts=[Part(type="text", text=text)],
            created_at=start + timedelta(seconds=i),
            run_id=run_id,
            depth=depth + i,
            turn=(depth + i) // 2 + 1,
        )
        reply = Message(
            id=new_id(),
            parent_id=user.id,
            conversation_id=conv.id,
            role=Role.assistant,
            content=reply_text,
            parts=[Part(type="text", text=reply_text)],
            created_at=start + timedelta(seconds=i + 1),
            run_id=run_id,
            usage=Usage.of(
                estimate_tokens(conv.system_prompt) + estimate_tokens(text),
                estimate_tokens(reply_text),
            ),
            finish_reason="stop",
            depth=depth + i + 1,
            turn=(depth + i) // 2 + 1,
        )
        out += [user, reply]
        parent = reply.id
    return out


async def prefill(state_url: str, targets: dict[str, int], rng: random.Random) -> int:
    """Append history through the store API until each conversation id in `targets` has
    that many messages. Returns the number of messages written."""
    from app.stores.factory import create_store

    store = create_store(state_url)
    await store.open()
    written = 0
    try:
        for conv_id, target in targets.items():
            conv = await store.get_conversation(conv_id, now=utcnow())
            if conv is None:
                raise RuntimeError(f"conversation {conv_id} vanished")
            while conv.message_count < target:
                n = min(PREFILL_BATCH, target - conv.message_count)
                batch = history_messages(conv, n, rng)
                usage = Usage()
                for m in batch:
                    usage = usage + m.usage
                conv = await store.append_messages(
                    conv,
                    batch,
                    usage=usage,
                    cost_usd=0.0,
                    now=utcnow(),
                    status=ConversationStatus.idle,
                )
                written += n
    finally:
        await store.close()
    return written


async def http_turn(
    client: httpx.AsyncClient, conv_id: str, text: str, server: Server | None = None
) -> TurnSample:
    """One turn over HTTP, checked (200, completed, the mock's echo); with `server`, also
    the server process's CPU and run-queue wait during it."""
    s0 = server.cpu_s() if server else None
    w0 = server.wait_s() if server else None
    c0 = time.process_time()
    t0 = time.perf_counter()
    r = await client.post(f"/conversations/{conv_id}/messages", json={"content": text})
    ms = (time.perf_counter() - t0) * 1000
    client_ms = (time.process_time() - c0) * 1000
    s1 = server.cpu_s() if server else None
    w1 = server.wait_s() if server else None
    if r.status_code != 200:
        raise RuntimeError(f"turn on {conv_id} failed: {r.status_code} {r.text[:500]}")
    body = r.json()
    if body["status"] != "completed" or body["reply"]["content"] != f"echo: {text}":
        raise RuntimeError(f"unexpected turn result: {str(body)[:500]}")
    server_ms = (s1 - s0) * 1000 if s0 is not None and s1 is not None else None
    wait_ms = (w1 - w0) * 1000 if w0 is not None and w1 is not None else None
    return TurnSample(
        ms,
        body["messages"][0]["depth"],
        body["usage"]["input_tokens"],
        client_ms,
        server_ms,
        wait_ms,
    )


# Stores several processes may serve at once; SQLite refuses a second serving process
# unless coordination is shared (app/stores/sqlite_owner.py).
MULTI_PROCESS_STORES = ("postgres", "redis")


async def multi_worker_phase(
    backend: StoreBackend,
    env: Mapping[str, str],
    workdir: Path,
    conc_ids: list[str],
    p: Params,
    rng: random.Random,
) -> dict[str, Any]:
    """The concurrent phase again on `uvicorn --workers N` (same conversations)."""
    if backend.name not in MULTI_PROCESS_STORES:
        return {
            "status": "not run",
            "reason": "one serving process per SQLite file unless PARLEY_COORDINATION_URL "
            "is Redis (app/stores/sqlite_owner.py)",
        }
    log = workdir / f"uvicorn-{backend.name}-workers.log"
    async with (
        uvicorn_server("app.main:create_app", env, log, workers=p.workers) as server,
        httpx.AsyncClient(
            base_url=server.base_url, timeout=120, limits=httpx.Limits(max_connections=256)
        ) as client,
    ):

        async def one(conv_id: str) -> float:
            return (await http_turn(client, conv_id, random_text(rng))).ms

        for conv_id in conc_ids:  # every worker process warms up on some of them
            await one(conv_id)
        out = await concurrent_throughput(server, conc_ids, p.concurrent_turns, one)
    out["status"] = "ok"
    out["workers"] = p.workers
    return out


async def bench_parley_store(
    backend: StoreBackend,
    p: Params,
    workdir: Path,
    rng: random.Random,
    floor: FloorClient | None = None,
) -> dict[str, Any]:
    """Parley on one store: create and pre-fill the conversations, start uvicorn, warm up,
    time `p.turns` turns per size round-robin (each conversation primed right before its
    first timed turn), then the concurrent phase (its conversations primed first); the
    result says whether the flat-curve criterion holds.

    With `floor`, one floor request is timed after each round of sizes (`paired_floor`):
    the floor measured at the same time as these turns (a shared VM drifts: the floor's
    p50 ranged 0.7-1.7 ms across runs minutes apart), though not undisturbed: each echo
    lands while Parley still works for the turn before it (bench/README.md, "Framework
    floor"), so this ratio flatters Parley and the own-phase one is the conservative one."""
    result: dict[str, Any] = {"store": backend.name, "description": backend.description}
    async with provisioned_store(backend, workdir) as url:
        small = min(p.sizes)
        plan = {s: conversations_needed(s, p.turns) for s in p.sizes}
        total = sum(plan.values()) + 1 + p.concurrency
        env = parley_env(url, workdir, **p.server_env)
        t0 = time.perf_counter()
        ids, result["coordination"] = await create_conversations(env, total)
        warm_id, rest = ids[0], ids[1:]
        slots: dict[int, Slots] = {}
        targets = {warm_id: small - 2}
        for size in p.sizes:
            mine, rest = rest[: plan[size]], rest[plan[size] :]
            slots[size] = Slots(size, mine, turns_per_conversation(size))
            targets.update(dict.fromkeys(mine, size - 2))
        conc_ids = rest
        targets.update(dict.fromkeys(conc_ids, small - 2))
        written = await prefill(url, targets, rng)
        result["prefill"] = {
            "conversations": total,
            "messages": written,
            "seconds": round(time.perf_counter() - t0, 2),
            "method": "store API append_messages before the server starts",
        }
        print(
            f"  {backend.name}: pre-filled {written:,} messages in {total} conversations "
            f"({result['prefill']['seconds']:.1f}s); starting uvicorn",
            flush=True,
        )
        log = workdir / f"uvicorn-{backend.name}.log"
        async with (
            uvicorn_server("app.main:create_app", env, log) as server,
            httpx.AsyncClient(
                base_url=server.base_url, timeout=120, limits=httpx.Limits(max_connections=256)
            ) as client,
        ):

            async def prime(conv_id: str) -> None:
                await http_turn(client, conv_id, random_text(rng))

            for _ in range(p.warmup):
                await prime(warm_id)
            per_size = {s: SizeResult() for s in p.sizes}
            paired: list[float] = []
            if floor is not None:
                floor.server_cpu_s = floor.client_cpu_s = 0.0
            for _ in range(p.turns):
                for size in p.sizes:
                    conv_id = await slots[size].next_primed(prime)
                    sample = await http_turn(client, conv_id, random_text(rng), server)
                    per_size[size].samples.append(sample)
                if floor is not None:
                    paired.append(await floor.echo())
            result["sizes"] = {str(s): per_size[s].summary() for s in p.sizes}
            if floor is not None:
                result["paired_floor"] = sequential_summary(paired, floor)
            for conv_id in conc_ids:
                await prime(conv_id)  # right before their phase, like the timed ones
            if conc_ids:

                async def one(conv_id: str) -> float:
                    return (await http_turn(client, conv_id, random_text(rng))).ms

                result["concurrent"] = await concurrent_throughput(
                    server, conc_ids, p.concurrent_turns, one
                )
                result["concurrent"]["history_start"] = small
        if conc_ids and p.workers > 1:
            result["concurrent_workers"] = await multi_worker_phase(
                backend, env, workdir, conc_ids, p, rng
            )
    lo, hi = str(min(p.sizes)), str(max(p.sizes))
    r = ratio(result["sizes"][hi]["p50_ms"], result["sizes"][lo]["p50_ms"])
    result["p50_ratio_largest_over_smallest"] = r
    result["criterion"] = f"p50({hi}) <= {CRITERION} x p50({lo})"
    result["criterion_met"] = r is not None and r <= CRITERION
    return result
