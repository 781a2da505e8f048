"""The request path's dependencies run on the event loop, never in a worker thread
(`app.deps`: a worker-thread hop per dependency per request is pure overhead)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi.dependencies import utils as fastapi_dependencies

from tests.api.helpers import create_conv


async def test_a_streamed_turn_resolves_its_dependencies_without_worker_threads(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    conv = await create_conv(client)
    threaded: list[str] = []
    original = fastapi_dependencies.run_in_threadpool

    async def counting(call: Any, *args: Any, **kwargs: Any) -> Any:
        threaded.append(getattr(call, "__name__", repr(call)))
        return await original(call, *args, **kwargs)

    monkeypatch.setattr(fastapi_dependencies, "run_in_threadpool", counting)
    r = await client.post(
        f"/conversations/{conv['id']}/messages", json={"content": "hi", "stream": True}
    )
    assert r.status_code == 200, r.text
    assert "event: run.completed" in r.text
    assert (await client.get(f"/conversations/{conv['id']}")).status_code == 200
    assert threaded == []
