"""Review R12: a provider's error message holding a lone UTF-16 surrogate (its error body
is JSON; `json.loads` accepts `"\\ud83d"`) becomes the run's `error.detail`, which no
backend can encode: recording the run's end fails with PydanticSerializationError on
every attempt, and `RunEndRecorder` retries it in the background forever (a WARNING every
few seconds), so the shared record never turns terminal (other instances see the run
running, its idempotency key is not freed there) and the finished record stays pinned in
`RunEndRecorder.pending`. 8fe1950 (R10) cleaned provider *text* and tool calls, not
`ProviderError` details (app/providers/transport.py `error_message`).

Failed at cd105b6 (sqlite, redis: the record still `running`, the end still pending);
`RunError.detail` is made storable where it is built."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from app.main import create_app
from tests.api.backends import state_url_for
from tests.api.sse_parse import parse_sse
from tests.conftest import make_settings

ERROR_BODY = b'{"error":{"message":"bad \\ud83d input","type":"invalid_request_error"}}'


def upstream(request: httpx.Request) -> httpx.Response:
    return httpx.Response(400, content=ERROR_BODY, headers={"content-type": "application/json"})


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_a_provider_error_with_a_lone_surrogate_still_records_the_runs_end(
    tmp_path: Path, backend: str
) -> None:
    async with (
        state_url_for(backend, tmp_path) as url,
        httpx.AsyncClient(transport=httpx.MockTransport(upstream)) as http,
    ):
        settings = make_settings(tmp_path, state_url=url, openai_api_key="sk-test")
        app = create_app(settings, provider_client=http)
        async with app.router.lifespan_context(app) as state:
            assert state is not None
            manager = state["manager"]

            async def with_state(scope: Scope, receive: Receive, send: Send) -> None:
                scope["state"] = dict(state)
                await app(scope, receive, send)

            transport = httpx.ASGITransport(app=with_state)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                r = await c.post(
                    "/conversations",
                    json={
                        "pack_id": "general-assistant",
                        "prompt_name": "chat",
                        "user_id": "alice",
                        "provider": "openai",
                        "model": "gpt-4o-mini",
                    },
                )
                cid = r.json()["id"]
                r = await c.post(
                    f"/conversations/{cid}/messages", json={"content": "hi", "stream": True}
                )
                events = parse_sse(r.text)
                run_id = events[0].data["run"]["id"]
                assert events[-1].event == "run.failed"
                await asyncio.sleep(0.5)  # past the first background retry
                record = await manager.coordinator.runs.get(run_id)
                assert record is not None and record.run.status.value == "failed"
                assert manager.runs._executor.ends.pending(run_id) is None
