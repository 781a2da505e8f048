"""GET /conversations/{id}/context (dry run) and the strategies' exact windows, asserted on
the provider request (OpenAI adapter behind MockTransport)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from app.domain.tokens import O200K, EncodingCounter
from app.manager.context_item_window import item_tokens
from app.settings import Settings
from tests.api.helpers import assert_problem, create_conv, send
from tests.conftest import running_app
from tests.fakes.openai_fake import FakeOpenAI, Reply


class Recorder:
    def __init__(self, replies: list[Reply] | None = None) -> None:
        self.fake = FakeOpenAI(replies=replies or [])
        self.raw: list[httpx.Request] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.raw.append(request)
        return self.fake.handler(request)


@asynccontextmanager
async def openai_app(
    settings_factory: Callable[..., Settings], recorder: Recorder
) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings_factory(openai_api_key="sk-test")
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(recorder.handler)) as http,
        running_app(settings, provider_client=http) as client,
    ):
        yield client


def wire(body: dict[str, Any]) -> bytes:
    """The bytes httpx sends for a JSON body (the adapter posts with `json=`)."""
    return httpx.Request("POST", "http://x", json=body).content


async def test_preview_equals_the_next_real_request_byte_for_byte(
    settings_factory: Callable[..., Settings],
) -> None:
    rec = Recorder()
    async with openai_app(settings_factory, rec) as client:
        conv = await create_conv(
            client,
            pack_id="customer-support",
            prompt_name="support",
            variables={"company_name": "Acme"},
            provider="openai",
            model="gpt-4o-mini",
        )
        cid = conv["id"]
        for i in range(3):
            await send(client, cid, f"question {i} ü ✓")
        r = await client.post(
            f"/conversations/{cid}/context",
            json={"content": "# Reference ✓\nThe answer is 42.", "source": "ref.md"},
        )
        assert r.status_code == 201, r.text
        item = r.json()
        r = await client.get(f"/conversations/{cid}/context", params={"content": "next one ✓"})
        assert r.status_code == 200, r.text
        preview = r.json()
        calls_before = len(rec.raw)
        await send(client, cid, "next one ✓")
    assert calls_before == 3, "the dry run calls no provider"
    assert rec.raw[-1].content == wire(preview["request_body"])
    assert preview["provider"] == "openai" and preview["model"] == "gpt-4o-mini"
    assert preview["dropped"] == 0 and len(preview["included_message_ids"]) == 6
    b = preview["budget"]
    assert b["total"] == b["system"] + b["context_items"] + b["history"] + b["pending"] + b["tools"]
    assert b["tools"] > 0 and b["system"] > 0 and b["pending"] > 0
    assert b["input_budget"] == b["max_input_tokens"] - b["reserved_output"] >= b["total"]
    assert preview["summary"] is None and b["summary"] == 0
    # gpt-4o-mini is counted exactly by o200k_base; the item's stored tokens are the estimate
    exact = item_tokens(item["content"], item["source"], EncodingCounter(O200K))
    assert b["context_items"] == exact != item["tokens"] > 0
    assert preview["context_item_ids"] == [item["id"]]
    sent = json.loads(rec.raw[-1].content)["messages"]
    assert sent[1] == {
        "role": "system",
        "content": "[Context item: ref.md]\n# Reference ✓\nThe answer is 42.",
    }


async def test_preview_without_content_is_the_history_window(client: httpx.AsyncClient) -> None:
    conv = await create_conv(
        client, context_policy={"strategy": "sliding_window", "max_messages": 3}
    )
    turns = [await send(client, conv["id"], f"m{i}") for i in range(3)]
    r = await client.get(f"/conversations/{conv['id']}/context")
    assert r.status_code == 200, r.text
    p = r.json()
    ids = [m["id"] for t in turns for m in t["messages"]]
    assert p["included_message_ids"] == ids[-3:] and p["dropped"] == 3
    assert p["budget"]["pending"] == 0
    # the mock's body is the provider-neutral request
    assert [m["content"] for m in p["request_body"]["messages"]] == ["echo: m1", "m2", "echo: m2"]
    missing = await client.get("/conversations/nope/context")
    assert_problem(missing, 404, "conversation_not_found")
    for blank in ("", "   "):
        r = await client.get(f"/conversations/{conv['id']}/context", params={"content": blank})
        assert_problem(r, 422, "validation_error")  # as the turn would refuse it
    r = await client.get(f"/conversations/{conv['id']}/context?content=%00x")
    assert_problem(r, 422, "validation_error")
    too_long = await client.get(f"/conversations/{conv['id']}/context?content=" + "x" * 32_001)
    assert_problem(too_long, 422, "validation_error")


async def test_sliding_window_sends_exactly_the_last_six_keeping_tool_groups_whole(
    settings_factory: Callable[..., Settings],
) -> None:
    calls = [
        {"id": f"call_{n}", "name": "lookup_order", "arguments": {"order_id": f"A{n}"}}
        for n in (1, 2)
    ]
    rec = Recorder()
    async with openai_app(settings_factory, rec) as client:
        conv = await create_conv(
            client,
            pack_id="customer-support",
            prompt_name="support",
            variables={"company_name": "Acme"},
            provider="openai",
            context_policy={"strategy": "sliding_window", "max_messages": 6},
        )
        cid = conv["id"]
        for i in range(5):
            await send(client, cid, f"plain {i}")
        sent = rec.fake.requests[-1]["messages"][1:]
        assert [m["content"] for m in sent] == [
            "ok",
            "plain 2",
            "ok",
            "plain 3",
            "ok",
            "plain 4",
        ], "exactly the last 6 messages, this turn's included"
        # a turn that calls a (client-side or server-side) tool leaves a tool-call group
        rec.fake.replies.extend([Reply(text="", tool_calls=calls), Reply(text="done")])
        turn = await send(client, cid, "where is A1?")
        if turn["status"] == "requires_action":
            r = await client.post(
                f"/conversations/{cid}/tool-results",
                json={
                    "results": [
                        {"tool_call_id": c["id"], "output": {"status": "shipped"}} for c in calls
                    ]
                },
            )
            assert r.status_code == 200, r.text
        roles_seen: list[list[str]] = []
        for i in range(3):
            await send(client, cid, f"after {i}")
            roles_seen.append([m["role"] for m in rec.fake.requests[-1]["messages"][1:]])
            sent = rec.fake.requests[-1]["messages"][1:]
            assert len(sent) <= 6
            roles = [m["role"] for m in sent]
            assert roles[0] != "tool", "a tool result never arrives without its call"
            for j, m in enumerate(sent):
                if m["role"] == "tool":
                    calls = [c["id"] for c in sent[j - 1].get("tool_calls", [])] + [
                        c["id"] for k in range(j) for c in sent[k].get("tool_calls", [])
                    ]
                    assert m["tool_call_id"] in calls
            preview = (await client.get(f"/conversations/{cid}/context")).json()
            assert len(preview["included_message_ids"]) <= 6
    # the group entered whole, then its results were dropped with the call, never alone
    assert "tool" in roles_seen[0], roles_seen
    assert any(len(r) < 6 for r in roles_seen), roles_seen


async def test_fail_is_a_422_naming_sizes_and_commits_nothing(client: httpx.AsyncClient) -> None:
    conv = await create_conv(
        client,
        context_policy={"strategy": "fail", "max_input_tokens": 600, "reserve_output_tokens": 50},
    )
    cid = conv["id"]
    sent = 0
    while True:
        r = await client.post(f"/conversations/{cid}/messages", json={"content": "word " * 30})
        if r.status_code != 200:
            break
        sent += 1
        assert sent < 20
    body = assert_problem(r, 422, "context_overflow")
    assert "550 input tokens" in body["detail"] and "messages" in body["detail"]
    after = (await client.get(f"/conversations/{cid}")).json()
    assert after["message_count"] == 2 * sent, "the failed turn committed nothing"
    history = (await client.get(f"/conversations/{cid}/messages")).json()["data"]
    assert len(history) == 2 * sent
    preview = await client.get(f"/conversations/{cid}/context", params={"content": "word " * 30})
    assert_problem(preview, 422, "context_overflow")


async def test_no_request_exceeds_the_input_budget(
    settings_factory: Callable[..., Settings],
) -> None:
    rec = Recorder()
    counter = EncodingCounter(O200K)  # the openai provider's default model, gpt-4o-mini
    async with openai_app(settings_factory, rec) as client:
        conv = await create_conv(
            client,
            provider="openai",
            context_policy={"max_input_tokens": 500, "reserve_output_tokens": 100},
        )
        for i in range(25):
            await send(client, conv["id"], f"turn {i} " + "lorem ipsum " * (i % 7 * 5))
            preview = (await client.get(f"/conversations/{conv['id']}/context")).json()
            assert preview["budget"]["total"] <= 400
    for body in rec.fake.requests:
        counted = sum(4 + counter.total([m["content"]]) for m in body["messages"])
        assert counted <= 400, counted
    assert json.dumps(rec.fake.requests[-1]).count("turn 24") == 1


async def test_previews_racing_turns_never_fail_and_show_a_committed_state(
    client: httpx.AsyncClient,
) -> None:
    import asyncio

    conv = await create_conv(client)
    cid = conv["id"]
    turns = [
        client.post(f"/conversations/{cid}/messages", json={"content": f"c{i}"}) for i in range(4)
    ]
    previews = [client.get(f"/conversations/{cid}/context") for _ in range(8)]
    results = await asyncio.gather(*turns, *previews)
    assert all(r.status_code == 200 for r in results), [
        r.text for r in results if r.status_code != 200
    ]
    for r in results[4:]:
        ids = r.json()["included_message_ids"]
        assert len(ids) % 2 == 0, "a preview sees whole committed turns only"
    final = (await client.get(f"/conversations/{cid}/context")).json()
    assert len(final["included_message_ids"]) == 8 and final["dropped"] == 0


async def test_preview_matches_a_runtime_config_provider_with_defaults(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    """A RuntimeConfig provider fills defaults and drops unsupported parameters before
    the adapter builds its body; the preview goes through the same steps."""
    from tests.api.test_runtime_config_api import GATEWAY

    path = tmp_path / "runtime.yaml"
    path.write_text(GATEWAY)
    rec = Recorder()
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(rec.handler)) as http,
        running_app(settings_factory(runtime_config=path), provider_client=http) as client,
    ):
        conv = await create_conv(client)
        await send(client, conv["id"], "one")
        r = await client.get(f"/conversations/{conv['id']}/context", params={"content": "two"})
        await send(client, conv["id"], "two")
    assert conv["provider"] == "gateway"
    body = r.json()["request_body"]
    assert body["top_p"] == 0.5 and "max_tokens" not in body
    assert rec.raw[-1].content == wire(body)
