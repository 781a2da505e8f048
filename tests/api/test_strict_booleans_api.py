"""Booleans in request bodies are strict: `"yes"`, `1`, `"true"` are a 422
`validation_error` at the field's loc, never coerced, and the request changes nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.helpers import assert_problem, create_conv

NOT_BOOLEANS = ["yes", 1, "true", 0, "false", None]


def assert_bool_refused(r: httpx.Response, loc: list[str | int]) -> None:
    problem = assert_problem(r, 422, "validation_error")
    assert [e["loc"] for e in problem["errors"]] == [loc], problem


@pytest.mark.parametrize("value", NOT_BOOLEANS)
async def test_context_item_pinned_must_be_a_boolean(client: httpx.AsyncClient, value: Any) -> None:
    cid = (await create_conv(client))["id"]
    r = await client.post(f"/conversations/{cid}/context", json={"content": "x", "pinned": value})
    assert_bool_refused(r, ["body", "pinned"])
    items = await client.get(f"/conversations/{cid}/context/items")
    assert items.json()["data"] == []
    r = await client.post(f"/conversations/{cid}/context", json={"content": "x", "pinned": True})
    assert r.status_code == 201 and r.json()["pinned"] is True


@pytest.mark.parametrize("value", NOT_BOOLEANS)
async def test_stream_flags_must_be_booleans(client: httpx.AsyncClient, value: Any) -> None:
    cid = (await create_conv(client))["id"]
    base = f"/conversations/{cid}"
    r = await client.post(f"{base}/messages", json={"content": "hi", "stream": value})
    assert_bool_refused(r, ["body", "stream"])
    assert (await client.get(base)).json()["message_count"] == 0
    r = await client.post(f"{base}/regenerate", json={"stream": value})
    assert_bool_refused(r, ["body", "stream"])
    results = {"results": [{"tool_call_id": "call-1", "output": "x"}], "stream": value}
    assert_bool_refused(await client.post(f"{base}/tool-results", json=results), ["body", "stream"])


@pytest.mark.parametrize("value", NOT_BOOLEANS)
async def test_tool_flags_and_checkpoint_policy_must_be_booleans(
    client: httpx.AsyncClient, value: Any
) -> None:
    cid = (await create_conv(client))["id"]
    base = f"/conversations/{cid}"
    results = {"results": [{"tool_call_id": "call-1", "is_error": value}]}
    r = await client.post(f"{base}/tool-results", json=results)
    assert_bool_refused(r, ["body", "results", 0, "is_error"])
    decisions = {"decisions": [{"tool_call_id": "call-1", "approve": value}]}
    r = await client.post(f"{base}/tool-approvals", json=decisions)
    assert_bool_refused(r, ["body", "decisions", 0, "approve"])
    policy = {"checkpoint_policy": {"enabled": value}}
    payload = {"pack_id": "general-assistant", "prompt_name": "chat", "user_id": "alice"}
    r = await client.post("/conversations", json={**payload, **policy})
    assert_bool_refused(r, ["body", "checkpoint_policy", "enabled"])
    r = await client.patch(base, json=policy)
    assert_bool_refused(r, ["body", "checkpoint_policy", "enabled"])


async def test_a_multipart_stream_field_is_true_or_false(client: httpx.AsyncClient) -> None:
    cid = (await create_conv(client))["id"]
    path = f"/conversations/{cid}/messages"
    files = {"file": ("a.txt", b"x", "text/plain")}
    r = await client.post(path, data={"content": "hi", "stream": "banana"}, files=files)
    assert_bool_refused(r, ["body", "stream"])
    assert (await client.get(f"/conversations/{cid}")).json()["message_count"] == 0
    r = await client.post(path, data={"content": "hi", "stream": "False"}, files=files)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
