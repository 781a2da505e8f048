"""`PARLEY_CONTEXT_ITEMS_MAX` over HTTP under concurrency: adds racing for the last free
places never take a conversation past the cap, on every backend."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.api.backends import ALL_BACKENDS, state_url_for
from tests.api.helpers import assert_problem, create_conv
from tests.api.test_context_items_api import add, items_of
from tests.api.test_summarize_api import recorded_app
from tests.conftest import make_settings


@pytest.fixture(params=ALL_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_twenty_concurrent_adds_at_max_minus_two_store_exactly_two(
    backend: str, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, context_items_max=5)
    async with (
        state_url_for(backend, tmp_path) as url,
        recorded_app(settings.model_copy(update={"state_url": url})) as (client, _, _rec),
    ):
        cid = (await create_conv(client))["id"]
        for n in range(3):
            await add(client, cid, content=f"held {n}")
        path = f"/conversations/{cid}/context"
        answers = await asyncio.gather(
            *(client.post(path, json={"content": f"racer {n}"}) for n in range(20))
        )
        created = [r for r in answers if r.status_code == 201]
        refused = [r for r in answers if r.status_code != 201]
        assert len(created) == 2, [r.text for r in answers]
        for r in refused:
            problem = assert_problem(r, 422, "validation_error")
            assert problem["errors"] == [{"loc": ["body"], "msg": "too many context items"}]
        stored = await items_of(client, cid)
        assert len(stored) == 5
        assert {i["id"] for i in stored} >= {r.json()["id"] for r in created}
        # the conversation's export is still importable (the import refuses over the cap)
        doc = (await client.get(f"/conversations/{cid}/export")).json()
        r = await client.post(
            "/conversations/import", json=doc, params={"conversation_id": f"{cid}-copy"}
        )
        assert r.status_code == 201, r.text
