"""`GET .../branches` lists the branches that start at an edit of the first message too
(outside tester T19: those are other roots of the tree, which no path message leads to,
and only the head was listed), on every store backend; a fork lists its own such
branches, never the source's."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.api.backends import ALL_BACKENDS, app_on
from tests.api.helpers import create_conv, send
from tests.conftest import make_settings


async def branch_texts(client: httpx.AsyncClient, cid: str) -> list[tuple[str, bool]]:
    r = await client.get(f"/conversations/{cid}/branches")
    assert r.status_code == 200, r.text
    return sorted((b["preview"], b["is_head"]) for b in r.json()["data"])


async def edit(client: httpx.AsyncClient, cid: str, message_id: str, text: str) -> None:
    r = await client.post(
        f"/conversations/{cid}/messages/{message_id}/edit", json={"content": text}
    )
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("backend", ALL_BACKENDS)
async def test_edits_of_the_first_message_are_listed(backend: str, tmp_path: Path) -> None:
    async with app_on(backend, tmp_path, make_settings(tmp_path)) as client:
        cid = (await create_conv(client))["id"]
        first = (await send(client, cid, "orig"))["messages"][0]["id"]
        await edit(client, cid, first, "edit0")
        await edit(client, cid, first, "edit1")
        assert await branch_texts(client, cid) == [
            ("echo: edit0", False),
            ("echo: edit1", True),
            ("echo: orig", False),
        ]
        fork = (await client.post(f"/conversations/{cid}/fork", json={})).json()["id"]
        path = (await client.get(f"/conversations/{fork}/messages")).json()["data"]
        root = path[0]["id"]  # the source's "edit1", inherited
        await edit(client, fork, root, "fork-edit")
        # the fork wrote only its edit; the source's roots are not its branches
        assert await branch_texts(client, fork) == [("echo: fork-edit", True)]
        await edit(client, fork, root, "fork-edit2")
        assert await branch_texts(client, fork) == [
            ("echo: fork-edit", False),
            ("echo: fork-edit2", True),
        ]
        assert len(await branch_texts(client, cid)) == 3
