"""Turns over HTTP (non-streaming): commit, history, paging, limits, failures."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx

from app.settings import Settings
from tests.api.helpers import assert_problem, create_conv, send
from tests.conftest import running_app
from tests.fakes.openai_fake import FakeOpenAI, Reply


async def test_send_returns_turn_and_commits_both_messages(client: httpx.AsyncClient) -> None:
    conv = await create_conv(client)
    turn = await send(client, conv["id"], "hello there")
    assert turn["status"] == "completed" and turn["finish_reason"] == "stop"
    user, reply = turn["messages"]
    assert user["role"] == "user" and user["content"] == "hello there"
    assert user["parts"] == [{"type": "text", "text": "hello there", "media": None}]
    assert reply == turn["reply"]
    assert reply["role"] == "assistant" and reply["content"] == "echo: hello there"
    assert reply["parent_id"] == user["id"] and user["parent_id"] is None
    assert reply["run_id"] == user["run_id"] == turn["run_id"]
    assert turn["usage"]["output_tokens"] > 0
    after = (await client.get(f"/conversations/{conv['id']}")).json()
    assert after["head_message_id"] == reply["id"] and after["message_count"] == 2
    assert after["usage"]["total_tokens"] == turn["usage"]["total_tokens"]


async def test_history_pages_oldest_first_within_page(client: httpx.AsyncClient) -> None:
    conv = await create_conv(client)
    for i in range(5):
        await send(client, conv["id"], f"m{i}")
    url = f"/conversations/{conv['id']}/messages"
    full = (await client.get(url)).json()
    assert [m["content"] for m in full["data"]] == [
        x for i in range(5) for x in (f"m{i}", f"echo: m{i}")
    ]
    assert full["next_cursor"] is None
    page1 = (await client.get(url, params={"limit": 4})).json()
    assert [m["content"] for m in page1["data"]] == ["m3", "echo: m3", "m4", "echo: m4"]
    page2 = (await client.get(url, params={"limit": 4, "before": page1["next_cursor"]})).json()
    assert [m["content"] for m in page2["data"]] == ["m1", "echo: m1", "m2", "echo: m2"]
    page3 = (await client.get(url, params={"limit": 4, "before": page2["next_cursor"]})).json()
    assert [m["content"] for m in page3["data"]] == ["m0", "echo: m0"]
    assert page3["next_cursor"] is None
    r = await client.get(url, params={"before": "01NOTAMESSAGE"})
    assert_problem(r, 400, "invalid_cursor")


async def test_get_message_with_relatives(client: httpx.AsyncClient) -> None:
    conv = await create_conv(client)
    t1 = await send(client, conv["id"], "one")
    await send(client, conv["id"], "two")
    _user1, reply1 = t1["messages"]
    r = await client.get(f"/conversations/{conv['id']}/messages/{reply1['id']}")
    body = r.json()
    assert body["id"] == reply1["id"] and body["content"] == "echo: one"
    assert body["sibling_ids"] == []
    assert len(body["children_ids"]) == 1
    r = await client.get(f"/conversations/{conv['id']}/messages/nope")
    assert_problem(r, 404, "message_not_found")


async def test_bad_messages_are_rejected_without_writes(
    settings_factory: Callable[..., Settings],
) -> None:
    # media_max_mb=1: the messages route takes an ordinary body plus one base64 part of
    # the largest media (~2.4 MB here), so a 10 MB body is refused before it is read.
    async with running_app(settings_factory(max_message_bytes=1000, media_max_mb=1)) as client:
        conv = await create_conv(client)
        url = f"/conversations/{conv['id']}/messages"
        assert_problem(
            await client.post(url, json={"content": "x" * 1001}), 413, "message_too_large"
        )
        assert_problem(await client.post(url, json={"content": ""}), 422, "validation_error")
        assert_problem(await client.post(url, json={}), 422, "validation_error")
        assert_problem(
            await client.post(url, json={"content": "x", "bogus": 1}), 422, "validation_error"
        )
        assert_problem(
            await client.post(
                url, content=b"x" * 10_000_000, headers={"content-type": "application/json"}
            ),
            413,
            "message_too_large",
        )

        async def chunked() -> Any:  # no Content-Length: the limit counts what arrives
            for _ in range(100):
                yield b"x" * 100_000

        assert_problem(
            await client.post(url, content=chunked(), headers={"content-type": "application/json"}),
            413,
            "message_too_large",
        )
        assert_problem(
            await client.post("/conversations/nope/messages", json={"content": "hi"}),
            404,
            "conversation_not_found",
        )
        after = (await client.get(f"/conversations/{conv['id']}")).json()
        assert after["message_count"] == 0 and after["version"] == 1


async def test_provider_failure_is_502_and_commits_nothing(client: httpx.AsyncClient) -> None:
    conv = await create_conv(client)
    await send(client, conv["id"], "first")
    before = (await client.get(f"/conversations/{conv['id']}")).json()
    for mode, status, code in [
        ("error", 502, "provider_error"),
        ("midstream", 502, "provider_error"),
        ("timeout", 504, "provider_timeout"),
        ("rate_limit", 429, "rate_limited"),
    ]:
        r = await client.post(
            f"/conversations/{conv['id']}/messages",
            json={"content": "boom", "metadata": {"mock_fail": mode}},
        )
        assert_problem(r, status, code)
    after = (await client.get(f"/conversations/{conv['id']}")).json()
    assert after["head_message_id"] == before["head_message_id"]
    assert after["version"] == before["version"] and after["message_count"] == 2


async def test_fifty_concurrent_sends_serialize(client: httpx.AsyncClient) -> None:
    """Acceptance: 50 concurrent sends -> 100 messages, each user message immediately
    followed by its own reply."""
    conv = await create_conv(client)
    texts = [f"msg-{i}" for i in range(50)]
    rs = await asyncio.gather(
        *(client.post(f"/conversations/{conv['id']}/messages", json={"content": t}) for t in texts)
    )
    assert [r.status_code for r in rs] == [200] * 50
    msgs = (
        await client.get(f"/conversations/{conv['id']}/messages", params={"limit": 500})
    ).json()["data"]
    assert len(msgs) == 100
    for user, reply in zip(msgs[::2], msgs[1::2], strict=True):
        assert user["role"] == "user" and reply["role"] == "assistant"
        assert reply["content"] == f"echo: {user['content']}"
        assert reply["parent_id"] == user["id"]
    assert sorted(m["content"] for m in msgs[::2]) == sorted(texts)
    conv_after = (await client.get(f"/conversations/{conv['id']}")).json()
    assert conv_after["message_count"] == 100


async def test_pack_parameters_and_usage_reach_openai(
    settings_factory: Callable[..., Settings],
) -> None:
    fake = FakeOpenAI(replies=[Reply(text="Hello from the model", usage=(120, 30))])
    settings = settings_factory(openai_api_key="sk-test")
    async with fake.client() as http, running_app(settings, provider_client=http) as client:
        conv = await create_conv(
            client,
            pack_id="customer-support",
            prompt_name="support",
            variables={"company_name": "Acme"},
            provider="openai",
            model="gpt-4o-mini",
        )
        turn = await send(client, conv["id"], "where is my order?")
    sent = fake.requests[0]
    assert sent["model"] == "gpt-4o-mini" and sent["stream"] is True
    assert sent["temperature"] == 0.3 and sent["max_tokens"] == 1024
    assert sent["messages"][0]["role"] == "system" and "Acme" in sent["messages"][0]["content"]
    assert sent["messages"][-1] == {"role": "user", "content": "where is my order?"}
    assert {t["function"]["name"] for t in sent["tools"]} >= {"lookup_order", "create_ticket"}
    assert turn["reply"]["content"] == "Hello from the model"
    assert turn["usage"] == {"input_tokens": 120, "output_tokens": 30, "total_tokens": 150}
    assert turn["cost_usd"] > 0 and turn["reply"]["cost_usd"] == turn["cost_usd"]


async def test_context_window_truncates_oldest(
    settings_factory: Callable[..., Settings],
) -> None:
    fake = FakeOpenAI()
    settings = settings_factory(openai_api_key="sk-test")
    async with fake.client() as http, running_app(settings, provider_client=http) as client:
        conv = await create_conv(
            client,
            provider="openai",
            context_policy={"max_input_tokens": 400, "reserve_output_tokens": 100},
        )
        for i in range(30):
            await send(client, conv["id"], f"message number {i} " + "pad " * 10)
    last: list[dict[str, Any]] = fake.requests[-1]["messages"]
    history = [m for m in last if m["role"] != "system"]
    assert 2 < len(history) < 59, len(history)
    assert history[0]["role"] == "user", "a truncated window starts at a user message"
    assert history[-1]["content"].startswith("message number 29")
    first_kept = int(history[0]["content"].split()[2])
    assert [m["content"].split()[2] for m in history if m["role"] == "user"] == [
        str(i) for i in range(first_kept, 30)
    ]


async def test_model_overrides_reach_the_provider(
    settings_factory: Callable[..., Settings],
) -> None:
    """The pack's model_overrides for the conversation's model change the system prompt
    and the generation parameters sent; another model gets the base prompt."""
    fake = FakeOpenAI()
    settings = settings_factory(openai_api_key="sk-test")
    async with fake.client() as http, running_app(settings, provider_client=http) as client:
        for model in ("gpt-4o-mini", "gpt-4o"):
            conv = await create_conv(
                client,
                pack_id="code-reviewer",
                prompt_name="review",
                provider="openai",
                model=model,
                variables={"language": "Python"},
            )
            await send(client, conv["id"], "def f(): pass")
    overridden, base = fake.requests
    assert overridden["model"] == "gpt-4o-mini" and base["model"] == "gpt-4o"
    assert overridden["max_tokens"] == 1200 and base["max_tokens"] == 2048
    assert overridden["temperature"] == base["temperature"] == 0.2
    suffix = "Keep each finding to three sentences or fewer."
    assert overridden["messages"][0]["content"].endswith(suffix)
    assert suffix not in base["messages"][0]["content"]


async def test_sliding_window_sends_the_last_max_messages(client: httpx.AsyncClient) -> None:
    """`sliding_window` keeps the last `max_messages` messages (this turn's included);
    `truncate_oldest` keeps everything that fits the token budget."""
    sliding = await create_conv(
        client, context_policy={"strategy": "sliding_window", "max_messages": 3}
    )
    growing = await create_conv(client)
    inputs: dict[str, list[int]] = {"sliding": [], "growing": []}
    for _ in range(5):
        for name, conv in (("sliding", sliding), ("growing", growing)):
            turn = await send(client, conv["id"], "the same words every time")
            inputs[name].append(turn["usage"]["input_tokens"])
    # from the second turn on the window is [user, assistant, user]: constant size
    assert len(set(inputs["sliding"][1:])) == 1 and inputs["sliding"][1] > inputs["sliding"][0]
    assert inputs["growing"] == sorted(inputs["growing"]) and len(set(inputs["growing"])) == 5
    assert inputs["growing"][1] == inputs["sliding"][1]
