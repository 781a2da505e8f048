"""`GET /conversations/{id}/messages?before=` pages only what the conversation may see: a
source cannot page its fork's messages through a fork message id, nor a fork its source's
later turns (outside tester T21: any message id of the lineage was accepted as the cursor,
so a fork handed to another user leaked both ways). Every store backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.api.backends import ALL_BACKENDS, app_on
from tests.api.helpers import assert_problem, create_conv, send
from tests.conftest import make_settings


@pytest.mark.parametrize("backend", ALL_BACKENDS)
async def test_before_must_be_a_message_the_conversation_sees(backend: str, tmp_path: Path) -> None:
    async with app_on(backend, tmp_path, make_settings(tmp_path)) as client:
        src = (await create_conv(client))["id"]
        await send(client, src, "shared")
        r = await client.post(f"/conversations/{src}/fork", json={"user_id": "other-user"})
        fork = r.json()["id"]
        fork_reply = (await send(client, fork, "fork secret"))["messages"][1]["id"]
        src_reply = (await send(client, src, "source later secret"))["messages"][1]["id"]
        for conv, foreign in ((src, fork_reply), (fork, src_reply)):
            r = await client.get(f"/conversations/{conv}/messages", params={"before": foreign})
            assert_problem(r, 400, "invalid_cursor")
        # its own messages, and the shared history, still page
        r = await client.get(f"/conversations/{fork}/messages", params={"before": fork_reply})
        assert [m["content"] for m in r.json()["data"]] == ["shared", "echo: shared", "fork secret"]
        r = await client.get(f"/conversations/{src}/messages", params={"limit": 1})
        cursor = r.json()["next_cursor"]
        r = await client.get(f"/conversations/{src}/messages", params={"before": cursor})
        assert r.status_code == 200 and len(r.json()["data"]) == 3
