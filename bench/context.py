"""Context building cost vs conversation length (issue 13): `ContextBuilder.build` for a
10,000-message conversation against a 100-message one under an 8k budget, per strategy,
on the embedded SQLite store and the memory store.

Each measurement builds the window of the next turn (a pending user message) `--rounds`
times. `warm`: the message cache already holds the window (the steady state of a live
conversation: the previous turn put its messages there); `cold`: a fresh cache each build
(a new instance, or an evicted conversation), so the window is read from the store. The
ratio 10,000 / 100 is the point: a strategy whose cost followed the history would show
~100x. `fail` on 10,000 messages is the 422 path (it sizes the whole history to name it in
the error), so it is expected to follow the history. `summarize` is measured with its
summary stored (the warming build writes it, with the mock provider): the steady state.

Then summarize's own provider calls: `--turns` turns (a short user message, the mock's
echo) under `max_input_tokens` 4,000 through the same builder, counting summarization
calls per 100 turns (the calls the strategy adds to the turns' own).

    .venv/bin/python bench/context.py            # prints a Markdown table
    .venv/bin/python bench/context.py --json bench/results/context.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.domain import ContextPolicy, Conversation, Message, Role, Usage, new_id, utcnow
from app.errors import ContextOverflow
from app.manager.context import ContextBuilder
from app.manager.context_summary import SummaryWindows
from app.manager.message_cache import MessageCache
from app.manager.summarizer import Summarizer
from app.packs import PackRegistry
from app.providers.base import LLMProvider, ProviderRequest
from app.providers.mock import MockProvider
from app.stores.base import StateStore
from app.stores.factory import create_store

REPO = Path(__file__).resolve().parents[1]
STRATEGIES: dict[str, dict[str, Any]] = {
    "truncate_oldest": {"strategy": "truncate_oldest"},
    "sliding_window": {"strategy": "sliding_window", "max_messages": 50},
    "fail": {"strategy": "fail"},
    "summarize": {"strategy": "summarize"},
}
BATCH = 500


async def seed(store: StateStore, n: int) -> Conversation:
    now = utcnow()
    cid = f"bench-{new_id()}"
    conv = Conversation(
        id=cid,
        lineage_id=cid,
        user_id="bench",
        pack_id="general-assistant",
        pack_version="1.0.0",
        prompt_name="chat",
        provider="mock",
        model="mock-echo",
        system_prompt="You are a helpful assistant.",
        created_at=now,
        updated_at=now,
    )
    conv = await store.create_conversation(conv)
    parent: Message | None = None
    for start in range(0, n, BATCH):
        batch: list[Message] = []
        for i in range(start, min(n, start + BATCH)):
            m = Message(
                id=new_id(),
                parent_id=parent.id if parent else None,
                conversation_id=conv.id,
                role=Role.user if i % 2 == 0 else Role.assistant,
                content=f"message {i}: " + "lorem ipsum dolor sit amet " * 4,
                created_at=utcnow(),
                depth=i,
            )
            batch.append(m)
            parent = m
        conv = await store.append_messages(conv, batch, usage=Usage(), cost_usd=0.0, now=utcnow())
    return conv


def pending_for(conv: Conversation) -> list[Message]:
    return [
        Message(
            id=new_id(),
            parent_id=conv.head_message_id,
            conversation_id=conv.id,
            role=Role.user,
            content="and the next question?",
            created_at=utcnow(),
            depth=conv.message_count,
        )
    ]


class CountingMock(MockProvider):
    """The mock provider, counting summarization requests."""

    summarizations = 0

    async def stream(self, request: ProviderRequest) -> Any:
        if request.metadata.get("task") == "summarize":
            self.summarizations += 1
        async for event in super().stream(request):
            yield event


def builder_for(store: StateStore, cache: MessageCache, provider: LLMProvider) -> ContextBuilder:
    summarizer = Summarizer(store, {"mock": provider}, utcnow)
    return ContextBuilder(store, cache, None, SummaryWindows(store, cache, summarizer))


async def measure(
    store: StateStore, conv: Conversation, pack: Any, rounds: int, warm: bool
) -> float:
    """Median seconds of one build."""
    provider = MockProvider()
    cache = MessageCache()
    builder = builder_for(store, cache, provider)
    pending = pending_for(conv)
    times = []
    for r in range(rounds + (1 if warm else 0)):
        if not warm:
            builder = builder_for(store, MessageCache(), provider)
        t = time.perf_counter()
        with contextlib.suppress(ContextOverflow):
            await builder.build(conv, pack, pending)
        if warm and r == 0:
            continue  # the warming build
        times.append(time.perf_counter() - t)
    return statistics.median(times)


async def run(stores: list[str], rounds: int) -> list[dict[str, Any]]:
    packs = PackRegistry()
    await packs.load_dir(REPO / "packs")
    pack = packs.get("general-assistant")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        urls = {"memory": "memory://", "sqlite": f"sqlite+aiosqlite:///{tmp}/bench.db"}
        for name in stores:
            store = create_store(urls[name])
            await store.open()
            try:
                convs = {n: await seed(store, n) for n in (100, 10_000)}
                for strategy, policy in STRATEGIES.items():
                    for warm in (True, False):
                        t = {}
                        for n, conv in convs.items():
                            cp = ContextPolicy(
                                max_input_tokens=8192, reserve_output_tokens=1024, **policy
                            )
                            c = conv.model_copy(update={"context_policy": cp})
                            t[n] = await measure(store, c, pack, rounds, warm)
                        rows.append(
                            {
                                "store": name,
                                "strategy": strategy,
                                "cache": "warm" if warm else "cold",
                                "ms_100": round(t[100] * 1000, 3),
                                "ms_10000": round(t[10_000] * 1000, 3),
                                "ratio": round(t[10_000] / t[100], 2),
                            }
                        )
            finally:
                await store.close()
    return rows


async def summary_calls(turns: int) -> dict[str, Any]:
    """Summarization calls of `turns` turns under a 4,000-token window (SQLite)."""
    packs = PackRegistry()
    await packs.load_dir(REPO / "packs")
    pack = packs.get("general-assistant")
    provider = CountingMock()
    with tempfile.TemporaryDirectory() as tmp:
        store = create_store(f"sqlite+aiosqlite:///{tmp}/calls.db")
        await store.open()
        try:
            conv = await seed(store, 0)
            conv = await store.update_conversation(
                conv.model_copy(
                    update={
                        "context_policy": ContextPolicy(max_input_tokens=4000, strategy="summarize")
                    }
                ),
                expected_version=conv.version,
            )
            cache = MessageCache()
            builder = builder_for(store, cache, provider)
            first_at = None
            started = time.perf_counter()
            for turn in range(turns):
                user = pending_for(conv)[0].model_copy(
                    update={"content": f"turn {turn}: a short message about nothing much at all"}
                )
                window = await builder.build(conv, pack, [user])
                if provider.summarizations and first_at is None:
                    first_at = turn
                reply = Message(
                    id=new_id(),
                    parent_id=user.id,
                    conversation_id=conv.id,
                    role=Role.assistant,
                    content="echo: " + user.content,
                    created_at=utcnow(),
                    depth=user.depth + 1,
                )
                assert window.request.messages
                conv = await store.append_messages(
                    conv, [user, reply], usage=Usage(), cost_usd=0.0, now=utcnow()
                )
                cache.put([user, reply])
            elapsed = time.perf_counter() - started
        finally:
            await store.close()
    steady = turns - (first_at or 0)
    return {
        "turns": turns,
        "max_input_tokens": 4000,
        "summarization_calls": provider.summarizations,
        "first_summary_at_turn": first_at,
        "calls_per_100_turns": round(100 * provider.summarizations / turns, 2),
        "calls_per_100_turns_after_first": round(100 * provider.summarizations / steady, 2)
        if steady
        else None,
        "ms_per_turn": round(1000 * elapsed / turns, 3),
    }


def table(rows: list[dict[str, Any]]) -> str:
    out = [
        "| store | strategy | cache | 100 msgs (ms) | 10,000 msgs (ms) | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['store']} | {r['strategy']} | {r['cache']} | {r['ms_100']} "
            f"| {r['ms_10000']} | {r['ratio']} |"
        )
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--stores", default="memory,sqlite")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--turns", type=int, default=1000, help="turns of the summarize call count")
    args = ap.parse_args()
    load_start = os.getloadavg()
    rows = asyncio.run(run(args.stores.split(","), args.rounds))
    print(table(rows))
    calls = asyncio.run(summary_calls(args.turns))
    print(
        f"\nsummarize: {calls['summarization_calls']} summarization calls in {calls['turns']} "
        f"turns under 4,000 tokens: {calls['calls_per_100_turns']} per 100 turns "
        f"({calls['calls_per_100_turns_after_first']} after the first, at turn "
        f"{calls['first_summary_at_turn']})"
    )
    if args.json:
        facts = {
            "rounds": args.rounds,
            "cpus": os.cpu_count(),
            "loadavg_start": load_start,
            "loadavg_end": os.getloadavg(),
            "budget": {"max_input_tokens": 8192, "reserve_output_tokens": 1024},
            "sliding_window_max_messages": 50,
        }
        document = {"rows": rows, "summarize_calls": calls, **facts}
        args.json.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
