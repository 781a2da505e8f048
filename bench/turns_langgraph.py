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
from pathlib import Path
from typing import Any

import httpx

from bench.common import random_text
from bench.langgraph_app import DB_ENV
from bench.servers import child_env, uvicorn_server
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


async def bench_langgraph(p: Params, rng: random.Random, workdir: Path) -> dict[str, Any]:
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

        async def prime(thread: str) -> None:
            await turn(graph, thread, random_text(rng))  # as for Parley

        per_size = {s: SizeResult() for s in p.lg_sizes}
        for _ in range(p.lg_turns):
            for size in p.lg_sizes:
                thread = await slots[size].next_primed(prime)
                sample = await turn(graph, thread, random_text(rng))
                per_size[size].samples.append(sample)
        if p.langgraph_http:
            print("  langgraph: behind the floor app, over HTTP ...", flush=True)
            result["http"] = await over_http(graph, libpq_url(url), p, rng, workdir)
    sizes = {}
    for size, res in per_size.items():
        summary = res.summary()
        summary.pop("context_input_tokens_median")
        summary["cpu_ms_per_turn"] = summary.pop("client_cpu_ms_per_turn")  # all in-process
        sizes[str(size)] = summary
    result["sizes"] = sizes
    return result


async def over_http(
    graph: Any, db_url: str, p: Params, rng: random.Random, workdir: Path
) -> dict[str, Any]:
    """The same graph behind `bench/langgraph_app.py` (the floor app + one route) under the
    uvicorn command and client of Parley's turns, on threads of its own (pre-filled like
    the in-process ones), timed the same way (priming turn, round-robin sizes)."""
    slots: dict[int, Slots] = {}
    for size in p.lg_sizes:
        threads = [f"h{size}-{i}" for i in range(conversations_needed(size, p.lg_turns))]
        slots[size] = Slots(size, threads, turns_per_conversation(size))
        for thread in threads:
            if size > 2:
                cfg = {"configurable": {"thread_id": thread}}
                await graph.aupdate_state(cfg, {"messages": lc_history(size - 2, rng)}, "echo")
    env = child_env({DB_ENV: db_url})
    log = workdir / "uvicorn-langgraph.log"
    async with (
        uvicorn_server("bench.langgraph_app:create_app", env, log) as server,
        httpx.AsyncClient(base_url=server.base_url, timeout=120) as client,
    ):

        async def turn(thread: str) -> TurnSample:
            text = random_text(rng)
            s0, w0, c0 = server.cpu_s(), server.wait_s(), time.process_time()
            t0 = time.perf_counter()
            r = await client.post(f"/threads/{thread}/messages", json={"content": text})
            ms = (time.perf_counter() - t0) * 1000
            client_ms = (time.process_time() - c0) * 1000
            s1, w1 = server.cpu_s(), server.wait_s()
            body = r.json()
            if r.status_code != 200 or body["content"] != f"echo: {text}":
                raise RuntimeError(f"LangGraph over HTTP: {r.status_code} {r.text[:200]}")
            srv = (s1 - s0) * 1000 if s0 is not None and s1 is not None else None
            wait = (w1 - w0) * 1000 if w0 is not None and w1 is not None else None
            return TurnSample(ms, body["messages"] - 2, 0, client_ms, srv, wait)

        for _ in range(p.warmup):
            await turn("h-warmup")
        per_size = {s: SizeResult() for s in p.lg_sizes}
        for _ in range(p.lg_turns):
            for size in p.lg_sizes:
                thread = await slots[size].next_primed(turn)
                per_size[size].samples.append(await turn(thread))
    sizes = {}
    for size, res in per_size.items():
        summary = res.summary()
        summary.pop("context_input_tokens_median")
        sizes[str(size)] = summary
    return {"status": "ok", "sizes": sizes, "server": "bench/langgraph_app.py under uvicorn"}
