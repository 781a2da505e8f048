"""`POST .../runs/{id}/cancel` takes no fields: no body or `{}` cancels; an unknown field or
a body that is not an object is a 422 `validation_error` and the run goes on untouched."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from app.settings import Settings
from tests.api.helpers import assert_problem, create_conv, send
from tests.api.test_streaming_api import stream, until_busy
from tests.conftest import running_app


@pytest.mark.parametrize(
    ("body", "loc"),
    [({"reason": "user left"}, ["body", "reason"]), ([], ["body"]), ("stop", ["body"])],
)
async def test_a_cancel_body_with_fields_is_refused_and_the_run_goes_on(
    settings_factory: Callable[..., Settings], body: Any, loc: list[str]
) -> None:
    async with running_app(settings_factory(mock_delay_ms=40)) as client:
        cid = (await create_conv(client))["id"]
        task = asyncio.create_task(stream(client, cid, {"content": "h i j k"}))
        await until_busy(client, cid)
        busy = await client.post(
            f"/conversations/{cid}/messages", json={"content": "x", "if_busy": "reject"}
        )
        run_id = assert_problem(busy, 409, "conversation_busy")["run_id"]
        r = await client.post(f"/conversations/{cid}/runs/{run_id}/cancel", json=body)
        problem = assert_problem(r, 422, "validation_error")
        assert [e["loc"] for e in problem["errors"]] == [loc], problem
        _, events = await task
        assert events[-1].event == "run.completed"
        assert (await client.get(f"/conversations/{cid}")).json()["message_count"] == 2


async def test_a_cancel_without_a_body_or_with_an_empty_one_is_accepted(
    client: httpx.AsyncClient,
) -> None:
    cid = (await create_conv(client))["id"]
    run_id = (await send(client, cid, "done"))["run_id"]
    path = f"/conversations/{cid}/runs/{run_id}/cancel"
    for r in (await client.post(path), await client.post(path, json={})):
        assert r.status_code == 200 and r.json()["status"] == "completed", r.text
