"""The message tree over HTTP on every store backend: checkpoints, rollback, the head,
branches, sibling positions, forks (DESIGN §3, §6)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.settings import ApiKey, Settings
from tests.api.backends import BACKENDS, state_url_for
from tests.api.helpers import assert_problem, create_conv, send
from tests.conftest import running_app
from tests.fakes.openai_fake import FakeOpenAI, Reply


@pytest.fixture(params=BACKENDS)
def state_url_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    return lambda: state_url_for(request.param, tmp_path)


@pytest.fixture
async def client(
    state_url_factory: Any, settings_factory: Callable[..., Settings]
) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        state_url_factory() as url,
        running_app(settings_factory(state_url=url)) as c,
    ):
        yield c


async def _history(client: httpx.AsyncClient, cid: str) -> list[dict[str, Any]]:
    r = await client.get(f"/conversations/{cid}/messages", params={"limit": 500})
    assert r.status_code == 200, r.text
    data: list[dict[str, Any]] = r.json()["data"]
    return data


async def test_checkpoints_crud_kinds_and_paging(client: httpx.AsyncClient) -> None:
    conv = await create_conv(client)
    cid = conv["id"]
    base = f"/conversations/{cid}/checkpoints"
    empty = await client.post(base, json={"name": "empty"})
    assert empty.status_code == 201, empty.text
    assert empty.json()["message_id"] is None and empty.json()["message_count"] == 0
    t1 = await send(client, cid, "one")
    await send(client, cid, "two")
    at_head = (await client.post(base, json={"name": "head", "metadata": {"k": 1}})).json()
    assert at_head["kind"] == "manual" and at_head["message_count"] == 4
    assert at_head["metadata"] == {"k": 1} and at_head["conversation_id"] == cid
    at_first = await client.post(
        base, json={"kind": "snapshot", "message_id": t1["reply"]["id"], "description": "d"}
    )
    assert at_first.status_code == 201
    snap = at_first.json()
    assert snap["message_id"] == t1["reply"]["id"] and snap["message_count"] == 2
    # newest first, paged
    page1 = (await client.get(base, params={"limit": 2})).json()
    assert [c["id"] for c in page1["data"]] == [snap["id"], at_head["id"]]
    page2 = (await client.get(base, params={"limit": 2, "cursor": page1["next_cursor"]})).json()
    assert [c["id"] for c in page2["data"]] == [empty.json()["id"]]
    assert page2["next_cursor"] is None
    snaps = (await client.get(base, params={"kind": "snapshot"})).json()["data"]
    assert [c["id"] for c in snaps] == [snap["id"]]
    assert (await client.get(base, params={"kind": "auto"})).json()["data"] == []
    got = await client.get(f"{base}/{at_head['id']}")
    assert got.status_code == 200 and got.json() == at_head
    # refused: auto by hand, unknown kinds, a message off the path, bad cursors, unknown ids
    assert_problem(await client.post(base, json={"kind": "auto"}), 422, "validation_error")
    assert_problem(await client.get(base, params={"kind": "x"}), 422, "validation_error")
    r = await client.post(base, json={"message_id": "01NOTAMESSAGE"})
    assert_problem(r, 404, "message_not_found")
    assert_problem(await client.get(base, params={"cursor": "zzz"}), 400, "invalid_cursor")
    assert_problem(await client.get(f"{base}/nope"), 404, "checkpoint_not_found")
    assert (await client.delete(f"{base}/{snap['id']}")).status_code == 204
    assert_problem(await client.delete(f"{base}/{snap['id']}"), 404, "checkpoint_not_found")
    assert_problem(
        await client.get("/conversations/nope/checkpoints"), 404, "conversation_not_found"
    )
    # a checkpoint never moved anything
    assert (await client.get(f"/conversations/{cid}")).json()["message_count"] == 4


async def test_rollback_new_turn_and_head_back_restore_history(
    state_url_factory: Any, settings_factory: Callable[..., Settings]
) -> None:
    """The acceptance scenario: the turn after a rollback sends the provider only the
    rolled-back path; PUT head back to `abandoned_head_id` restores the old history."""
    fake = FakeOpenAI(default=Reply(text="noted"))
    async with (
        state_url_factory() as url,
        fake.client() as http,
        running_app(settings_factory(state_url=url, openai_api_key="sk-test"), http) as client,
    ):
        conv = await create_conv(client, provider="openai", model="gpt-4o-mini")
        cid = conv["id"]
        await send(client, cid, "one")
        cp = (await client.post(f"/conversations/{cid}/checkpoints", json={})).json()
        await send(client, cid, "two")
        t3 = await send(client, cid, "three")
        before = await _history(client, cid)
        assert len(before) == 6

        r = await client.post(f"/conversations/{cid}/rollback", json={"checkpoint_id": cp["id"]})
        assert r.status_code == 200, r.text
        rolled = r.json()
        assert rolled["abandoned_head_id"] == t3["reply"]["id"]
        assert rolled["head_message_id"] == cp["message_id"] and rolled["message_count"] == 2
        assert r.headers["ETag"] == (await client.get(f"/conversations/{cid}")).headers["ETag"]
        assert r.headers["ETag"].startswith(f'"{rolled["version"]}.')
        assert [m["id"] for m in await _history(client, cid)] == [m["id"] for m in before[:2]]

        fake.requests.clear()
        t4 = await send(client, cid, "four")
        sent = [m for m in fake.requests[0]["messages"] if m["role"] != "system"]
        assert [m["content"] for m in sent] == ["one", "noted", "four"]
        assert t4["messages"][0]["parent_id"] == cp["message_id"]

        user4 = (
            await client.get(f"/conversations/{cid}/messages/{t4['messages'][0]['id']}")
        ).json()
        assert user4["sibling_count"] == 2 and user4["sibling_index"] == 1
        assert user4["sibling_ids"] == [before[2]["id"]]
        first = (await client.get(f"/conversations/{cid}/messages/{before[0]['id']}")).json()
        assert first["sibling_index"] == 0 and first["sibling_count"] == 1

        branches = (await client.get(f"/conversations/{cid}/branches")).json()["data"]
        by_leaf = {b["head_message_id"]: b for b in branches}
        assert set(by_leaf) == {t3["reply"]["id"], t4["reply"]["id"]}
        old = by_leaf[t3["reply"]["id"]]
        assert not old["is_head"] and old["fork_point_id"] == cp["message_id"]
        assert old["depth"] == 5 and old["message_count"] == 6 and old["preview"] == "noted"
        assert by_leaf[t4["reply"]["id"]]["is_head"]

        r = await client.put(f"/conversations/{cid}/head", json={"message_id": t3["reply"]["id"]})
        assert r.status_code == 200, r.text
        assert r.json()["abandoned_head_id"] == t4["reply"]["id"]
        assert r.json()["message_count"] == 6
        assert await _history(client, cid) == before
        fake.requests.clear()
        await send(client, cid, "five")
        sent = [m for m in fake.requests[0]["messages"] if m["role"] != "system"]
        assert [m["content"] for m in sent] == [
            "one", "noted", "two", "noted", "three", "noted", "five"
        ]  # fmt: skip


async def test_rollback_and_head_errors(client: httpx.AsyncClient) -> None:
    conv = await create_conv(client)
    cid = conv["id"]
    t1 = await send(client, cid, "one")
    t2 = await send(client, cid, "two")
    url = f"/conversations/{cid}/rollback"
    assert_problem(await client.post(url, json={}), 422, "validation_error")
    both = {"checkpoint_id": "x", "message_id": t1["reply"]["id"]}
    assert_problem(await client.post(url, json=both), 422, "validation_error")
    assert_problem(await client.post(url, json={"checkpoint_id": "x"}), 404, "checkpoint_not_found")
    assert_problem(await client.post(url, json={"message_id": "nope"}), 404, "message_not_found")
    # rollback to the first user message, then "forward" along the path is not a rollback
    r = await client.post(url, json={"message_id": t1["messages"][0]["id"]})
    assert r.status_code == 200 and r.json()["message_count"] == 1
    r = await client.post(url, json={"message_id": t2["reply"]["id"]})
    assert_problem(r, 404, "message_not_found")
    # ... but selecting it as the head is
    r = await client.put(f"/conversations/{cid}/head", json={"message_id": t2["reply"]["id"]})
    assert r.status_code == 200 and r.json()["message_count"] == 4
    r = await client.put(f"/conversations/{cid}/head", json={"message_id": "nope"})
    assert_problem(r, 404, "message_not_found")
    assert_problem(await client.put(f"/conversations/{cid}/head", json={}), 422, "validation_error")
    # another conversation's messages are not this one's
    other = await create_conv(client)
    t_other = await send(client, other["id"], "elsewhere")
    r = await client.put(f"/conversations/{cid}/head", json={"message_id": t_other["reply"]["id"]})
    assert_problem(r, 404, "message_not_found")


async def test_fork_shares_history_and_diverges(client: httpx.AsyncClient) -> None:
    src = await create_conv(client, metadata={"team": "a"})
    sid = src["id"]
    t1 = await send(client, sid, "one")
    await send(client, sid, "two")
    source_history = await _history(client, sid)

    r = await client.post(f"/conversations/{sid}/fork", json={})
    assert r.status_code == 201, r.text
    fork = r.json()
    assert r.headers["Location"] == f"/conversations/{fork['id']}"
    assert fork["forked_from"] == {"conversation_id": sid, "message_id": source_history[-1]["id"]}
    assert fork["lineage_id"] == src["lineage_id"] and fork["message_count"] == 4
    assert fork["metadata"] == {"team": "a"} and fork["usage"]["total_tokens"] == 0
    assert await _history(client, fork["id"]) == source_history

    at = await client.post(
        f"/conversations/{sid}/fork",
        json={"message_id": t1["reply"]["id"], "conversation_id": "fork-at-1", "metadata": {}},
    )
    assert at.status_code == 201, at.text
    assert at.json()["id"] == "fork-at-1" and at.json()["message_count"] == 2
    await send(client, "fork-at-1", "fork turn")
    # a fork of the fork
    ff = (await client.post("/conversations/fork-at-1/fork", json={})).json()
    assert ff["forked_from"]["conversation_id"] == "fork-at-1" and ff["message_count"] == 4
    await send(client, ff["id"], "deeper")
    assert [m["content"] for m in await _history(client, ff["id"])] == [
        "one", "echo: one", "fork turn", "echo: fork turn", "deeper", "echo: deeper"
    ]  # fmt: skip
    # the source never sees the forks' turns
    assert await _history(client, sid) == source_history
    branches = (await client.get(f"/conversations/{sid}/branches")).json()["data"]
    assert [b["head_message_id"] for b in branches] == [source_history[-1]["id"]]

    # fork at a checkpoint
    cp = (
        await client.post(
            f"/conversations/{sid}/checkpoints", json={"message_id": t1["reply"]["id"]}
        )
    ).json()
    r = await client.post(f"/conversations/{sid}/fork", json={"checkpoint_id": cp["id"]})
    assert r.status_code == 201 and r.json()["message_count"] == 2

    # errors
    url = f"/conversations/{sid}/fork"
    r = await client.post(url, json={"conversation_id": "fork-at-1"})
    assert_problem(r, 409, "conversation_exists")
    r = await client.post(url, json={"checkpoint_id": cp["id"], "message_id": t1["reply"]["id"]})
    assert_problem(r, 422, "validation_error")
    assert_problem(await client.post(url, json={"checkpoint_id": "x"}), 404, "checkpoint_not_found")
    assert_problem(await client.post(url, json={"message_id": "x"}), 404, "message_not_found")
    r = await client.post("/conversations/nope/fork", json={})
    assert_problem(r, 404, "conversation_not_found")

    # deleting the source leaves every fork intact and readable
    assert (await client.delete(f"/conversations/{sid}")).status_code == 204
    assert len(await _history(client, fork["id"])) == 4
    assert len(await _history(client, ff["id"])) == 6
    await send(client, fork["id"], "still alive")


async def test_fork_for_another_user(
    settings_factory: Callable[..., Settings],
) -> None:
    keys = [ApiKey(key="svc", role="service"), ApiKey(key="ak", role="user", user_id="alice")]
    async with running_app(settings_factory(auth="keys", api_keys=keys)) as client:
        svc = {"Authorization": "Bearer svc"}
        alice = {"Authorization": "Bearer ak"}
        r = await client.post(
            "/conversations",
            json={"pack_id": "general-assistant", "prompt_name": "chat", "user_id": "alice"},
            headers=alice,
        )
        cid = r.json()["id"]
        r = await client.post(f"/conversations/{cid}/fork", json={"user_id": "bob"}, headers=alice)
        assert_problem(r, 401, "unauthorized")
        r = await client.post(f"/conversations/{cid}/fork", json={"user_id": "bob"}, headers=svc)
        assert r.status_code == 201 and r.json()["user_id"] == "bob"
        bobs = r.json()["id"]
        # alice cannot see bob's fork
        assert_problem(await client.get(f"/conversations/{bobs}", headers=alice), 404,
                       "conversation_not_found")  # fmt: skip


async def test_checkpoint_and_fork_at_a_message_of_an_abandoned_branch(
    client: httpx.AsyncClient,
) -> None:
    """A checkpoint or fork may name any message of the conversation's own tree (found by
    one read, not a walk from the head); rollback by message_id stays ancestors-only."""
    conv = await create_conv(client)
    cid = conv["id"]
    await send(client, cid, "one")
    old = await send(client, cid, "two")
    first = (await client.get(f"/conversations/{cid}/messages")).json()["data"][0]
    r = await client.post(f"/conversations/{cid}/rollback", json={"message_id": first["id"]})
    assert r.status_code == 200, r.text
    await send(client, cid, "other way")
    abandoned = old["reply"]["id"]  # no longer on the current path
    r = await client.post(f"/conversations/{cid}/checkpoints", json={"message_id": abandoned})
    assert r.status_code == 201, r.text
    assert r.json()["message_id"] == abandoned and r.json()["message_count"] == 4
    r = await client.post(f"/conversations/{cid}/fork", json={"message_id": abandoned})
    assert r.status_code == 201, r.text
    fork = r.json()
    assert fork["head_message_id"] == abandoned and fork["message_count"] == 4
    path = (await client.get(f"/conversations/{fork['id']}/messages")).json()["data"]
    assert [m["content"] for m in path][-2:] == ["two", old["reply"]["content"]]
    r = await client.post(f"/conversations/{cid}/rollback", json={"message_id": abandoned})
    assert_problem(r, 404, "message_not_found")
    # another conversation's message is still not one of this tree
    other = await create_conv(client)
    elsewhere = (await send(client, other["id"], "elsewhere"))["reply"]["id"]
    r = await client.post(f"/conversations/{cid}/fork", json={"message_id": elsewhere})
    assert_problem(r, 404, "message_not_found")
    r = await client.post(f"/conversations/{cid}/checkpoints", json={"message_id": elsewhere})
    assert_problem(r, 404, "message_not_found")


async def test_a_checkpoint_cursor_of_one_conversation_is_refused_on_another(
    client: httpx.AsyncClient,
) -> None:
    a, b = (await create_conv(client))["id"], (await create_conv(client))["id"]
    for cid in (a, b, a, b):  # interleaved times: b's rows lie on both sides of a's cursor
        await client.post(f"/conversations/{cid}/checkpoints", json={"name": cid})
    page = (await client.get(f"/conversations/{a}/checkpoints", params={"limit": 1})).json()
    cursor = page["next_cursor"]
    assert cursor is not None
    r = await client.get(f"/conversations/{b}/checkpoints", params={"cursor": cursor})
    assert_problem(r, 400, "invalid_cursor")
    rest = (await client.get(f"/conversations/{a}/checkpoints", params={"cursor": cursor})).json()
    assert len(rest["data"]) == 1 and rest["data"][0]["conversation_id"] == a
