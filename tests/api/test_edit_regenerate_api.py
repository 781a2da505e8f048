"""Edit a user message and regenerate a reply over HTTP on every store backend (DESIGN §3:
a new sibling under the same parent; §6: ordinary runs, streamed like a turn)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.settings import Settings
from tests.api.backends import ALL_BACKENDS, state_url_for
from tests.api.helpers import assert_problem, create_conv, send
from tests.api.sse_parse import Event, parse_sse
from tests.api.test_streaming_api import until_busy
from tests.api.tool_loop_helpers import exec_tool, tool_app, weather_conv
from tests.conftest import running_app
from tests.fakes.openai_fake import FakeOpenAI, Reply


@pytest.fixture(params=ALL_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@asynccontextmanager
async def openai_app(
    backend: str, tmp_path: Path, settings_factory: Callable[..., Settings], fake: FakeOpenAI
) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        state_url_for(backend, tmp_path) as url,
        fake.client() as http,
        running_app(settings_factory(state_url=url, openai_api_key="sk-test"), http) as client,
    ):
        yield client


async def _conv(client: httpx.AsyncClient) -> str:
    return str((await create_conv(client, provider="openai", model="gpt-4o-mini"))["id"])


async def _history(client: httpx.AsyncClient, cid: str) -> list[dict[str, Any]]:
    r = await client.get(f"/conversations/{cid}/messages", params={"limit": 500})
    assert r.status_code == 200, r.text
    data: list[dict[str, Any]] = r.json()["data"]
    return data


async def _detail(client: httpx.AsyncClient, cid: str, message_id: str) -> dict[str, Any]:
    r = await client.get(f"/conversations/{cid}/messages/{message_id}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _sent(fake: FakeOpenAI, i: int = -1) -> list[str]:
    """The non-system message texts of the provider's `i`-th request."""
    return [m["content"] for m in fake.requests[i]["messages"] if m["role"] != "system"]


async def _stream(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> list[Event]:
    r = await client.post(url, json={**body, "stream": True})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    return parse_sse(r.text)


async def test_edit_streams_like_a_turn_and_puts_the_new_message_beside_the_old(
    backend: str, tmp_path: Path, settings_factory: Callable[..., Settings]
) -> None:
    fake = FakeOpenAI(default=Reply(text="noted here"))
    async with openai_app(backend, tmp_path, settings_factory, fake) as client:
        cid = await _conv(client)
        t1 = await send(client, cid, "one")
        t2 = await send(client, cid, "two")
        t3 = await send(client, cid, "three")
        before = await _history(client, cid)
        usage_before = (await client.get(f"/conversations/{cid}")).json()["usage"]
        edited = t2["messages"][0]

        events = await _stream(
            client, f"/conversations/{cid}/messages/{edited['id']}/edit", {"content": "TWO"}
        )
        kinds = [e.event for e in events if e.event != "message.delta"]
        assert kinds == ["run.created", "message.created", "message.completed", "run.completed"]
        assert [int(e.id or 0) for e in events] == list(range(1, len(events) + 1))
        assert "".join(e.data["delta"] for e in events if e.event == "message.delta") == (
            "noted here"
        )
        run = events[0].data["run"]
        assert run["kind"] == "edit"
        user = events[1].data["message"]
        assert user["content"] == "TWO" and user["role"] == "user"
        assert user["parent_id"] == edited["parent_id"] == t1["reply"]["id"]
        assert user["depth"] == edited["depth"] == 2
        reply = events[-2].data["message"]
        assert reply["parent_id"] == user["id"] and reply["depth"] == 3
        # the provider got the path to the branch point and the new message, nothing after
        assert _sent(fake) == ["one", "noted here", "TWO"]

        conv = (await client.get(f"/conversations/{cid}")).json()
        assert conv["head_message_id"] == reply["id"] and conv["message_count"] == 4
        assert conv["usage"]["total_tokens"] == usage_before["total_tokens"] + 18
        assert [m["id"] for m in await _history(client, cid)] == [
            before[0]["id"],
            before[1]["id"],
            user["id"],
            reply["id"],
        ]
        new, old = await _detail(client, cid, user["id"]), await _detail(client, cid, edited["id"])
        # the events show exactly what was committed, turn number included
        assert user["turn"] == edited["turn"] == 2 and reply["turn"] == 2
        relatives = ("sibling_ids", "sibling_index", "sibling_count", "children_ids")
        assert {k: v for k, v in new.items() if k not in relatives} == user
        committed_reply = await _detail(client, cid, reply["id"])
        assert {k: v for k, v in committed_reply.items() if k not in relatives} == reply
        assert (new["sibling_index"], new["sibling_count"]) == (1, 2)
        assert (old["sibling_index"], old["sibling_count"]) == (0, 2)
        assert new["sibling_ids"] == [edited["id"]]
        record = (await client.get(f"/conversations/{cid}/runs/{run['id']}")).json()
        assert record["kind"] == "edit" and record["status"] == "completed"
        assert record["usage"]["total_tokens"] == 18

        # the old branch is intact: PUT head back restores exactly the old history
        r = await client.put(f"/conversations/{cid}/head", json={"message_id": t3["reply"]["id"]})
        assert r.status_code == 200, r.text
        assert await _history(client, cid) == before
        branches = (await client.get(f"/conversations/{cid}/branches")).json()["data"]
        assert {b["head_message_id"] for b in branches} == {t3["reply"]["id"], reply["id"]}


async def test_edit_non_streaming_answers_like_send_and_edits_the_first_message(
    backend: str, tmp_path: Path, settings_factory: Callable[..., Settings]
) -> None:
    fake = FakeOpenAI(default=Reply(text="ok"))
    async with openai_app(backend, tmp_path, settings_factory, fake) as client:
        cid = await _conv(client)
        t1 = await send(client, cid, "first")
        await send(client, cid, "second")
        r = await client.post(
            f"/conversations/{cid}/messages/{t1['messages'][0]['id']}/edit",
            json={"parts": [{"type": "text", "text": "FIRST"}], "metadata": {"v": 2}},
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == "completed" and body["finish_reason"] == "stop"
        user, reply = body["messages"]
        assert user["parent_id"] is None and user["depth"] == 0 and user["metadata"] == {"v": 2}
        assert body["reply"] == reply and r.headers["X-Run-Id"] == body["run_id"]
        assert _sent(fake) == ["FIRST"]
        assert [m["id"] for m in await _history(client, cid)] == [user["id"], reply["id"]]


async def test_regenerate_makes_a_sibling_reply_from_the_same_context(
    backend: str, tmp_path: Path, settings_factory: Callable[..., Settings]
) -> None:
    fake = FakeOpenAI(
        replies=[Reply(text="A1"), Reply(text="A2"), Reply(text="A2 again"), Reply(text="B")]
    )
    async with openai_app(backend, tmp_path, settings_factory, fake) as client:
        cid = await _conv(client)
        t1 = await send(client, cid, "q1")
        t2 = await send(client, cid, "q2")

        events = await _stream(client, f"/conversations/{cid}/regenerate", {})
        kinds = [e.event for e in events if e.event != "message.delta"]
        assert kinds == ["run.created", "message.completed", "run.completed"]  # no user message
        assert events[0].data["run"]["kind"] == "regenerate"
        again = events[-2].data["message"]
        assert again["content"] == "A2 again" and again["role"] == "assistant"
        assert again["parent_id"] == t2["messages"][0]["id"] and again["depth"] == 3
        assert _sent(fake) == ["q1", "A1", "q2"]  # the old reply is not in the context
        assert again["turn"] == t2["reply"]["turn"] == 2
        detail = await _detail(client, cid, again["id"])
        assert (detail["sibling_index"], detail["sibling_count"]) == (1, 2)
        assert detail["sibling_ids"] == [t2["reply"]["id"]]
        conv = (await client.get(f"/conversations/{cid}")).json()
        assert conv["head_message_id"] == again["id"] and conv["message_count"] == 4

        # a given, older reply: from its own context, the later turns left on their branch
        r = await client.post(
            f"/conversations/{cid}/regenerate", json={"message_id": t1["reply"]["id"]}
        )
        assert r.status_code == 200, r.text
        body = r.json()
        [b] = body["messages"]
        assert body["reply"] == b and b["content"] == "B"
        assert b["parent_id"] == t1["messages"][0]["id"] and b["depth"] == 1
        assert _sent(fake) == ["q1"]
        assert [m["id"] for m in await _history(client, cid)] == [t1["messages"][0]["id"], b["id"]]
        record = (await client.get(f"/conversations/{cid}/runs/{body['run_id']}")).json()
        assert record["kind"] == "regenerate" and record["usage"] == body["usage"]

        # a head that is no reply (rolled back to a user message): the newest reply above it
        t3 = await send(client, cid, "q3")
        r = await client.post(
            f"/conversations/{cid}/rollback", json={"message_id": t3["messages"][0]["id"]}
        )
        assert r.status_code == 200, r.text
        r = await client.post(f"/conversations/{cid}/regenerate", json={})
        assert r.status_code == 200, r.text
        assert r.json()["reply"]["parent_id"] == t1["messages"][0]["id"]
        assert _sent(fake) == ["q1"]


async def test_wrong_messages_are_refused_and_nothing_is_committed(
    backend: str, tmp_path: Path, settings_factory: Callable[..., Settings]
) -> None:
    fake = FakeOpenAI()
    async with openai_app(backend, tmp_path, settings_factory, fake) as client:
        cid = await _conv(client)
        empty = f"/conversations/{cid}/regenerate"
        assert_problem(await client.post(empty, json={}), 422, "not_an_assistant_message")
        t = await send(client, cid, "hello")
        user_id, reply_id = t["messages"][0]["id"], t["reply"]["id"]
        # rolled back to the first user message: no reply on the path to regenerate
        await client.post(f"/conversations/{cid}/rollback", json={"message_id": user_id})
        assert_problem(await client.post(empty, json={}), 422, "not_an_assistant_message")
        await client.put(f"/conversations/{cid}/head", json={"message_id": reply_id})
        edit = f"/conversations/{cid}/messages"
        r = await client.post(f"{edit}/{reply_id}/edit", json={"content": "x"})
        assert "regenerate" in assert_problem(r, 422, "not_a_user_message")["detail"]
        r = await client.post(empty, json={"message_id": user_id})
        assert_problem(r, 422, "not_an_assistant_message")
        r = await client.post(f"{edit}/01NOSUCHMESSAGE/edit", json={"content": "x"})
        assert_problem(r, 404, "message_not_found")
        r = await client.post(empty, json={"message_id": "01NOSUCHMESSAGE"})
        assert_problem(r, 404, "message_not_found")
        r = await client.post(f"/conversations/nope/messages/{user_id}/edit", json={"content": "x"})
        assert_problem(r, 404, "conversation_not_found")
        assert_problem(
            await client.post("/conversations/nope/regenerate", json={}),
            404,
            "conversation_not_found",
        )
        r = await client.post(f"{edit}/{user_id}/edit", json={"content": "  "})
        assert_problem(r, 422, "validation_error")
        r = await client.post(f"{edit}/{user_id}/edit", json={"content": "x", "bogus": 1})
        assert_problem(r, 422, "validation_error")
        r = await client.post(empty, json={"metadata": {}})  # regenerate takes no metadata
        assert_problem(r, 422, "validation_error")
        # another conversation's message is not this one's to edit
        other = await _conv(client)
        r = await client.post(
            f"/conversations/{other}/messages/{user_id}/edit", json={"content": "x"}
        )
        assert_problem(r, 404, "message_not_found")
        conv = (await client.get(f"/conversations/{cid}")).json()
        assert conv["message_count"] == 2 and conv["head_message_id"] == reply_id
        assert (await _detail(client, cid, user_id))["sibling_count"] == 1
        assert len(fake.requests) == 1


async def test_an_idempotent_retry_of_an_edit_makes_one_sibling(
    backend: str, tmp_path: Path, settings_factory: Callable[..., Settings]
) -> None:
    fake = FakeOpenAI()
    async with openai_app(backend, tmp_path, settings_factory, fake) as client:
        cid = await _conv(client)
        t = await send(client, cid, "hello")
        url = f"/conversations/{cid}/messages/{t['messages'][0]['id']}/edit"
        key = {"Idempotency-Key": "edit-1"}
        first = await client.post(url, json={"content": "hi"}, headers=key)
        retry = await client.post(url, json={"content": "hi"}, headers=key)
        assert first.status_code == retry.status_code == 200, retry.text
        assert retry.json()["run_id"] == first.json()["run_id"]
        assert retry.json()["messages"] == first.json()["messages"]
        detail = await _detail(client, cid, t["messages"][0]["id"])
        assert detail["sibling_count"] == 2
        r = await client.post(url, json={"content": "other"}, headers=key)
        assert_problem(r, 422, "idempotency_key_reused")
        # the same key on a regeneration is another request
        r = await client.post(f"/conversations/{cid}/regenerate", json={}, headers=key)
        assert_problem(r, 422, "idempotency_key_reused")
        regen_key = {"Idempotency-Key": "regen-1"}
        a = await client.post(f"/conversations/{cid}/regenerate", json={}, headers=regen_key)
        b = await client.post(f"/conversations/{cid}/regenerate", json={}, headers=regen_key)
        assert a.status_code == b.status_code == 200
        assert a.json()["run_id"] == b.json()["run_id"]
        reply = a.json()["reply"]
        assert (await _detail(client, cid, reply["id"]))["sibling_count"] == 2
        assert len(fake.requests) == 3


async def test_an_edit_in_a_fork_never_shows_in_the_source(
    backend: str, tmp_path: Path, settings_factory: Callable[..., Settings]
) -> None:
    fake = FakeOpenAI(default=Reply(text="ok"))
    async with openai_app(backend, tmp_path, settings_factory, fake) as client:
        src = await _conv(client)
        t1 = await send(client, src, "one")
        await send(client, src, "two")
        before = await _history(client, src)
        src_branches = (await client.get(f"/conversations/{src}/branches")).json()["data"]
        fork = (await client.post(f"/conversations/{src}/fork", json={})).json()["id"]
        # a message of the shared ancestry, written by the source
        r = await client.post(
            f"/conversations/{fork}/messages/{t1['messages'][0]['id']}/edit",
            json={"content": "ONE"},
        )
        assert r.status_code == 200, r.text
        new_user = r.json()["messages"][0]
        assert new_user["conversation_id"] == fork
        r = await client.post(f"/conversations/{fork}/regenerate", json={})
        assert r.status_code == 200, r.text
        assert [m["content"] for m in await _history(client, fork)] == ["ONE", "ok"]
        assert await _history(client, src) == before
        assert (await client.get(f"/conversations/{src}/branches")).json()["data"] == src_branches
        # the source cannot move onto the fork's branch, read it, or count it as a sibling
        r = await client.put(f"/conversations/{src}/head", json={"message_id": new_user["id"]})
        assert_problem(r, 404, "message_not_found")
        r = await client.get(f"/conversations/{src}/messages/{new_user['id']}")
        assert_problem(r, 404, "message_not_found")
        assert await _history(client, src) == before
        one = t1["messages"][0]["id"]
        in_src, in_fork = await _detail(client, src, one), await _detail(client, fork, one)
        assert (in_src["sibling_count"], in_src["sibling_ids"]) == (1, [])
        assert (in_fork["sibling_count"], in_fork["sibling_ids"]) == (2, [new_user["id"]])
        assert (in_fork["sibling_index"], in_src["sibling_index"]) == (0, 0)
        # a turn in the fork under the shared head is not the source head's child either
        await client.put(f"/conversations/{fork}/head", json={"message_id": before[-1]["id"]})
        turn = await send(client, fork, "three")
        assert turn["messages"][0]["parent_id"] == before[-1]["id"]
        assert (await _detail(client, src, before[-1]["id"]))["children_ids"] == []
        fork_view = await _detail(client, fork, before[-1]["id"])
        assert fork_view["children_ids"] == [turn["messages"][0]["id"]]


async def test_if_busy_reject_and_enqueue_apply_to_edit_and_regenerate(
    settings_factory: Callable[..., Settings],
) -> None:
    async with running_app(settings_factory(mock_delay_ms=30)) as client:
        conv = await create_conv(client)
        cid = conv["id"]
        t = await send(client, cid, "a")
        user_id = t["messages"][0]["id"]
        slow = asyncio.create_task(send(client, cid, "b c d e f g h"))
        await until_busy(client, cid)
        r = await client.post(
            f"/conversations/{cid}/messages/{user_id}/edit",
            json={"content": "x", "if_busy": "reject"},
        )
        busy = assert_problem(r, 409, "conversation_busy")
        r = await client.post(f"/conversations/{cid}/regenerate", json={"if_busy": "reject"})
        assert assert_problem(r, 409, "conversation_busy")["run_id"] == busy["run_id"]
        # enqueue (the default) waits for the running turn, then branches
        queued = await client.post(
            f"/conversations/{cid}/messages/{user_id}/edit", json={"content": "edited"}
        )
        running = await slow
        assert queued.status_code == 200, queued.text
        assert busy["run_id"] == running["run_id"]
        history = await _history(client, cid)
        assert [m["content"] for m in history] == ["edited", "echo: edited"]
        assert (await _detail(client, cid, user_id))["sibling_count"] == 2


async def test_tool_loop_runs_inside_edit_and_regenerate(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    async with tool_app(settings_factory, tmp_path, {"get_weather": exec_tool("weather")}) as c:
        cid = await weather_conv(c, "weather")
        r = await c.post(f"/conversations/{cid}/messages", json={"content": "weather?"})
        user, call, tool, final = r.json()["messages"]
        # an edit is a whole new turn: the tool round runs again inside it
        r = await c.post(
            f"/conversations/{cid}/messages/{user['id']}/edit",
            json={"content": "weather in Paris?", "stream": True},
        )
        events = parse_sse(r.text)
        kinds = [e.event for e in events if e.event != "message.delta"]
        assert kinds == [
            "run.created",
            "message.created",
            "tool_call.created",
            "message.completed",
            "tool_call.completed",
            "message.created",
            "message.completed",
            "run.completed",
        ]
        roles = [m["role"] for m in await _history(c, cid)]
        assert roles == ["user", "assistant", "tool", "assistant"]
        await c.put(f"/conversations/{cid}/head", json={"message_id": final["id"]})
        # regenerating the final reply answers the same tool result again (no tool re-run)
        r = await c.post(f"/conversations/{cid}/regenerate", json={})
        [again] = r.json()["messages"]
        assert again["parent_id"] == tool["id"] and again["content"] == "It is sunny in Paris."
        # regenerating the reply that called the tool runs the rest of the turn again
        r = await c.post(f"/conversations/{cid}/regenerate", json={"message_id": call["id"]})
        body = r.json()
        assert [m["role"] for m in body["messages"]] == ["assistant", "tool", "assistant"]
        assert body["messages"][0]["parent_id"] == user["id"]
        assert body["messages"][0]["tool_calls"][0]["name"] == "get_weather"
        assert body["reply"]["content"] == "It is sunny in Paris."
        conv = (await c.get(f"/conversations/{cid}")).json()
        assert conv["status"] == "idle" and conv["message_count"] == 4
