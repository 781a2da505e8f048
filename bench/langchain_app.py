"""The LangChain target of `bench/frameworks.py`, rebuilt after the app of PromptKit's
framework benchmark (`benchmarks/frameworks/langchain` there, same behaviour, our code):
FastAPI, one `POST /v1/chat/completions` that builds a `ChatOpenAI(streaming=True)` pointed
at `OPENAI_BASE_URL` for the request (as that app does), sends the request's last message
as one `HumanMessage` and relays `astream` chunks as OpenAI-style `data:` events, then a
stop chunk and `data: [DONE]`.

**No persistence**: nothing is stored and no history is sent, so a "new" and a
"continuing" request are the same call; Parley stores every turn. Say so next to its
numbers.

    OPENAI_BASE_URL=http://127.0.0.1:8081/v1 uvicorn bench.langchain_app:create_app --factory
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse


def _event(delta: dict[str, Any], finish: str | None = None) -> str:
    doc = {"choices": [{"delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(doc)}\n\n"


def create_app() -> FastAPI:
    from langchain_core.messages import HumanMessage
    from langchain_openai import ChatOpenAI

    base_url = os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:8081/v1")
    api_key = os.environ.get("OPENAI_API_KEY", "sk-bench-not-a-key")
    app = FastAPI(title="langchain-bench")

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        messages = body.get("messages") or []
        if not messages:
            return JSONResponse({"error": "no messages"}, status_code=400)
        llm = ChatOpenAI(
            model="gpt-4o",
            base_url=base_url,
            api_key=api_key,
            streaming=True,
            temperature=0.7,
            max_tokens=256,
        )
        prompt = [HumanMessage(content=str(messages[-1].get("content", "")))]
        if not body.get("stream"):
            result = await llm.ainvoke(prompt)
            msg = {"role": "assistant", "content": result.content}
            return {"choices": [{"message": msg, "finish_reason": "stop"}]}

        async def relay() -> AsyncIterator[str]:
            async for chunk in llm.astream(prompt):
                yield _event({"content": chunk.content})
            yield _event({}, "stop")
            yield "data: [DONE]\n\n"

        return StreamingResponse(relay(), media_type="text/event-stream")

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready"}

    return app
