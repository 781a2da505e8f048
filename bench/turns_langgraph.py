"""The LangGraph peer of `bench/turns.py` (DESIGN §11): the same chat loop as a
`StateGraph(MessagesState)` with one async echo node, `START -> echo -> END`, compiled with
`AsyncPostgresSaver` on a scratch database (`setup()` first, default durability) and invoked
in this process with `ainvoke(..., {"configurable": {"thread_id": ...}})`: the graph run and
the checkpoint read/write, no HTTP, no JSON API.

Threads are filled with one `aupdate_state(..., as_node="echo")` of `size - 2` messages, get
one priming turn and are timed like Parley's conversations (same sizes, round-robin). Needs
the `bench` extra; without it the result is `skipped` with the reason.
"""

from __future__ import annotations

import random
import time
from typing import Any

from bench.common import random_text
from bench.stores import libpq_url, scratch_postgres
from bench.turns_timing import (
    Params,
    SizeResult,
    Slots,
    TurnSample,
    conversations_needed,
    turns_per_conversation,
)


def build_echo_graph(checkpointer: Any) -> Any:
    from langchain_core.messages import AIMessage
    from langgraph.graph import END, START, MessagesState, StateGraph

    async def echo(state: MessagesState) -> dict[str, Any]:
        return {"messages": [AIMessage("echo: " + str(state["messages"][-1].content))]}

    builder = StateGraph(MessagesState)
    builder.add_node("echo", echo)
    builder.add_edge(START, "echo")
    builder.add_edge("echo", END)
    return builder.compile(checkpointer=checkpointer)


def lc_history(count: int, rng: random.Random) -> list[Any]:
    from langchain_core.messages import AIMessage, HumanMessage

    out: list[Any] = []
    for _ in range(count // 2):
        text = random_text(rng)
        out += [HumanMessage(text), AIMessage(f"echo: {text}")]
    return out


async def bench_langgraph(p: Params, rng: random.Random) -> dict[str, Any]:
    try:
        from langchain_core.messages import HumanMessage
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    except ImportError as exc:
        return {"status": "skipped", "reason": f"bench extra not installed: {exc}"}

    async def turn(graph: Any, thread: str, text: str) -> TurnSample:
        cfg = {"configurable": {"thread_id": thread}}
        c0 = time.process_time()
        t0 = time.perf_counter()
        out = await graph.ainvoke({"messages": [HumanMessage(text)]}, cfg)
        ms = (time.perf_counter() - t0) * 1000
        cpu_ms = (time.process_time() - c0) * 1000
        if out["messages"][-1].content != f"echo: {text}":
            raise RuntimeError("LangGraph echo returned something else")
        return TurnSample(ms, len(out["messages"]) - 2, 0, cpu_ms)

    result: dict[str, Any] = {"status": "ok"}
    async with (
        scratch_postgres("parley_bench_lg") as url,
        AsyncPostgresSaver.from_conn_string(libpq_url(url)) as saver,
    ):
        await saver.setup()
        graph = build_echo_graph(saver)
        slots: dict[int, Slots] = {}
        t0 = time.perf_counter()
        for size in p.lg_sizes:
            threads = [f"t{size}-{i}" for i in range(conversations_needed(size, p.lg_turns))]
            slots[size] = Slots(size, threads, turns_per_conversation(size))
            for thread in threads:
                cfg = {"configurable": {"thread_id": thread}}
                if size > 2:
                    await graph.aupdate_state(cfg, {"messages": lc_history(size - 2, rng)}, "echo")
        result["prefill"] = {
            "threads": sum(len(s.ids) for s in slots.values()),
            "seconds": round(time.perf_counter() - t0, 2),
            "method": "one aupdate_state(as_node='echo') per thread with size-2 messages",
        }
        print(f"  langgraph: pre-filled threads in {result['prefill']['seconds']:.1f}s", flush=True)
        for _ in range(p.warmup):
            await turn(graph, "warmup", random_text(rng))
        for s in slots.values():
            for thread in s.ids:
                await turn(graph, thread, random_text(rng))  # priming, as for Parley
        per_size = {s: SizeResult() for s in p.lg_sizes}
        for _ in range(p.lg_turns):
            for size in p.lg_sizes:
                sample = await turn(graph, slots[size].next_id(), random_text(rng))
                per_size[size].samples.append(sample)
    sizes = {}
    for size, res in per_size.items():
        summary = res.summary()
        summary.pop("context_input_tokens_median")
        summary["cpu_ms_per_turn"] = summary.pop("client_cpu_ms_per_turn")  # all in-process
        sizes[str(size)] = summary
    result["sizes"] = sizes
    return result
