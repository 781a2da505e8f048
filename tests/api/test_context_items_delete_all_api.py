"""`DELETE /conversations/{id}/context/items`: every item of the conversation at once, on
every backend; its forks keep their copies and the next turn sends none."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.api.backends import ALL_BACKENDS, state_url_for
from tests.api.helpers import assert_problem, create_conv, send
from tests.api.test_context_items_api import add, items_of
from tests.api.test_summarize_api import recorded_app
from tests.conftest import make_settings


@pytest.fixture(params=ALL_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_delete_all_items_empties_the_list_and_leaves_forks_theirs(
    backend: str, tmp_path: Path
) -> None:
    async with (
        state_url_for(backend, tmp_path) as url,
        recorded_app(make_settings(tmp_path, state_url=url)) as (client, _manager, rec),
    ):
        cid = (await create_conv(client))["id"]
        for n in range(3):
            await add(client, cid, content=f"note {n}", pinned=n == 0)
        await send(client, cid, "hello")
        r = await client.post(f"/conversations/{cid}/fork", json={})
        assert r.status_code == 201, r.text
        fork_id = r.json()["id"]

        r = await client.delete(f"/conversations/{cid}/context/items")
        assert r.status_code == 204 and r.content == b""
        assert await items_of(client, cid) == []
        assert [i["content"] for i in await items_of(client, fork_id)] == [
            "note 0",
            "note 1",
            "note 2",
        ]
        await send(client, cid, "again")
        sent = rec.requests[-1].messages
        assert all("[Context item" not in (m.content or "") for m in sent), sent

        r = await client.delete(f"/conversations/{cid}/context/items")  # none left: still 204
        assert r.status_code == 204
        await add(client, cid, content="fresh")  # the list takes new items again
        assert [i["content"] for i in await items_of(client, cid)] == ["fresh"]
        assert_problem(
            await client.delete("/conversations/nope/context/items"),
            404,
            "conversation_not_found",
        )
