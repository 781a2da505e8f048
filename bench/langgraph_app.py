"""LangGraph behind the floor app (`bench/floor_app.py`), so that the LangGraph peer of
`bench/turns.py` crosses HTTP and JSON like Parley does: the same FastAPI app plus
`POST /threads/{thread_id}/messages` (`{"content": ...}`), which runs the echo graph of
`bench/turns_langgraph.py` (`AsyncPostgresSaver` on `PARLEY_BENCH_LANGGRAPH_DB`, a libpq
URL) for that thread and answers `{"content": <reply>, "messages": <thread length>}`.

    PARLEY_BENCH_LANGGRAPH_DB=postgresql://... uvicorn bench.langgraph_app:create_app --factory
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from bench.floor_app import create_app as create_floor_app

DB_ENV = "PARLEY_BENCH_LANGGRAPH_DB"


def create_app() -> FastAPI:
    from langchain_core.messages import HumanMessage
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    from bench.turns_langgraph import build_echo_graph

    graphs: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with AsyncPostgresSaver.from_conn_string(os.environ[DB_ENV]) as saver:
            graphs["echo"] = build_echo_graph(saver)
            yield

    app = create_floor_app()
    app.router.lifespan_context = lifespan

    @app.post("/threads/{thread_id}/messages")
    async def send(thread_id: str, body: dict[str, Any]) -> dict[str, Any]:
        cfg = {"configurable": {"thread_id": thread_id}}
        out = await graphs["echo"].ainvoke({"messages": [HumanMessage(body["content"])]}, cfg)
        return {"content": out["messages"][-1].content, "messages": len(out["messages"])}

    return app
