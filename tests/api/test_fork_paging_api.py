"""Paging a fork's inherited history (review R8): `GET .../messages?before=` walks the whole
path of a fork, and of a fork of a fork, in order, without gaps or duplicates, and never past
the fork point (the source's later messages); every store backend. A page deep in inherited
history costs what a page of the fork's own messages does: its visibility check follows
parent links by id (`StateStore.ancestor_id`) instead of reading every message between the
head and the cursor."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.domain import Message
from app.manager.known_ancestors import KnownAncestors
from tests.api.backends import ALL_BACKENDS, app_on
from tests.api.helpers import send
from tests.conftest import app_and_manager, make_settings


def promptkit_state(n: int) -> dict[str, Any]:
    messages = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"m{i}"} for i in range(n)
    ]
    return {"ID": f"paging-{n}", "UserID": "alice", "Messages": messages}


async def imported(client: httpx.AsyncClient, n: int) -> str:
    r = await client.post(
        "/conversations/import",
        params={"pack_id": "general-assistant", "prompt_name": "chat"},
        json=promptkit_state(n),
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def all_pages(client: httpx.AsyncClient, cid: str, limit: int) -> list[dict[str, Any]]:
    """Every page from the head to the root, concatenated oldest first."""
    pages: list[list[dict[str, Any]]] = []
    before: str | None = None
    while True:
        params: dict[str, Any] = {"limit": limit}
        if before is not None:
            params["before"] = before
        r = await client.get(f"/conversations/{cid}/messages", params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        assert 0 < len(body["data"]) <= limit
        pages.append(body["data"])
        before = body["next_cursor"]
        if before is None:
            break
        assert before == body["data"][0]["id"]
    return [m for page in reversed(pages) for m in page]


def assert_chain(path: list[dict[str, Any]]) -> None:
    """Root first, each message the parent of the next: no gap, no duplicate."""
    assert path[0]["parent_id"] is None
    for parent, child in pairwise(path):
        assert child["parent_id"] == parent["id"]
    assert len({m["id"] for m in path}) == len(path)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
async def test_a_fork_pages_its_whole_inherited_history(backend: str, tmp_path: Path) -> None:
    async with app_on(backend, tmp_path, make_settings(tmp_path)) as client:
        src = await imported(client, 60)
        source_path = await all_pages(client, src, 50)
        assert [m["content"] for m in source_path] == [f"m{i}" for i in range(60)]
        point = source_path[39]  # the source's 20 later messages are past the fork point
        r = await client.post(f"/conversations/{src}/fork", json={"message_id": point["id"]})
        assert r.status_code == 201, r.text
        fork = r.json()["id"]
        await send(client, fork, "fork own")
        await send(client, src, "source later")
        fork_path = await all_pages(client, fork, 7)
        assert_chain(fork_path)
        assert [m["id"] for m in fork_path[:40]] == [m["id"] for m in source_path[:40]]
        assert [m["content"] for m in fork_path[40:]] == ["fork own", "echo: fork own"]
        # a fork of the fork inherits both: the source's first 40 and the fork's two
        r = await client.post(f"/conversations/{fork}/fork", json={})
        assert r.status_code == 201, r.text
        grandchild = r.json()["id"]
        await send(client, grandchild, "grandchild own")
        deeper = await all_pages(client, grandchild, 9)
        assert_chain(deeper)
        assert [m["id"] for m in deeper[:42]] == [m["id"] for m in fork_path]
        assert [m["content"] for m in deeper[42:]] == ["grandchild own", "echo: grandchild own"]
        # the source still pages its own later turns, which the fork never saw
        assert [m["content"] for m in (await all_pages(client, src, 11))[-2:]] == [
            "source later",
            "echo: source later",
        ]


async def test_a_page_deep_in_inherited_history_reads_only_the_page(tmp_path: Path) -> None:
    """Before R8's fix the cursor's visibility check read every message between the
    fork's head and the cursor (here ~290 of them) to serve a page of 5."""
    async with app_and_manager(make_settings(tmp_path, state_url="memory://")) as (client, m):
        src = await imported(client, 300)
        r = await client.post(f"/conversations/{src}/fork", json={})
        fork = r.json()["id"]
        deep = (await all_pages(client, fork, 100))[10]
        store = m.store
        read: list[int] = []
        original = store.get_path

        async def counting(lineage_id: str, message_id: str, *, limit: int) -> list[Message]:
            path = await original(lineage_id, message_id, limit=limit)
            read.append(len(path))
            return path

        store.get_path = counting  # type: ignore[method-assign]
        r = await client.get(
            f"/conversations/{fork}/messages", params={"limit": 5, "before": deep["id"]}
        )
        assert r.status_code == 200, r.text
        assert [x["content"] for x in r.json()["data"]] == [f"m{i}" for i in range(5, 10)]
        assert sum(read) <= 5, read


async def test_the_next_page_of_a_fork_checks_its_cursor_without_a_walk(tmp_path: Path) -> None:
    """The page that issued a cursor remembers it lies on the path it paged, so the next
    page's check is a lookup; a cursor this instance did not issue still walks (ids only)."""
    async with app_and_manager(make_settings(tmp_path, state_url="memory://")) as (client, m):
        src = await imported(client, 40)
        fork = (await client.post(f"/conversations/{src}/fork", json={})).json()["id"]
        store = m.store
        walks: list[int] = []
        original = store.ancestor_id

        async def counting(lineage_id: str, message_id: str, *, steps: int) -> str | None:
            walks.append(steps)
            return await original(lineage_id, message_id, steps=steps)

        store.ancestor_id = counting  # type: ignore[method-assign]
        path = await all_pages(client, fork, 10)
        assert [x["content"] for x in path] == [f"m{i}" for i in range(40)]
        assert walks == []
        m.tree.known_ancestors = KnownAncestors()  # as on another instance
        r = await client.get(
            f"/conversations/{fork}/messages", params={"limit": 5, "before": path[20]["id"]}
        )
        assert [x["content"] for x in r.json()["data"]] == [f"m{i}" for i in range(15, 20)]
        assert walks == [19]
        r = await client.get(
            f"/conversations/{fork}/messages", params={"before": r.json()["next_cursor"]}
        )
        assert len(r.json()["data"]) == 15 and walks == [19]


def test_known_ancestors_is_a_bounded_lru() -> None:
    known = KnownAncestors(max_facts=2)
    known.remember("l", "t", "a")
    known.remember("l", "t", "b")
    assert known.knows("l", "t", "a")  # now the most recent
    known.remember("l", "t", "c")
    assert known.knows("l", "t", "a") and known.knows("l", "t", "c")
    assert not known.knows("l", "t", "b") and len(known) == 2
    assert not known.knows("other", "t", "a") and not known.knows("l", "u", "a")
    off = KnownAncestors(max_facts=0)
    off.remember("l", "t", "a")
    assert not off.knows("l", "t", "a")
