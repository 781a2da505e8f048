"""Export over HTTP on every store backend: the document, its tree (branches, checkpoint
and fork paths), its checksum, the user NDJSON export and the refused `include_media`
(DESIGN §6, export/import)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.settings import ApiKey, Settings
from tests.api.backends import ALL_BACKENDS, app_on
from tests.api.export_helpers import export_doc, recomputed_checksum
from tests.api.helpers import assert_problem, create_conv, send
from tests.conftest import running_app


@pytest.fixture(params=ALL_BACKENDS)
async def client(
    request: pytest.FixtureRequest, tmp_path: Path, settings_factory: Callable[..., Settings]
) -> AsyncIterator[httpx.AsyncClient]:
    async with app_on(request.param, tmp_path, settings_factory()) as c:
        yield c


async def _path(client: httpx.AsyncClient, cid: str) -> list[dict[str, Any]]:
    r = await client.get(f"/conversations/{cid}/messages", params={"limit": 500})
    assert r.status_code == 200, r.text
    data: list[dict[str, Any]] = r.json()["data"]
    return data


async def test_export_has_every_branch_checkpoint_and_a_valid_checksum(
    client: httpx.AsyncClient,
) -> None:
    conv = await create_conv(client, metadata={"k": "v"})
    cid = conv["id"]
    t1 = await send(client, cid, "one")
    t2 = await send(client, cid, "two")
    cp = (await client.post(f"/conversations/{cid}/checkpoints", json={"name": "at two"})).json()
    r = await client.post(f"/conversations/{cid}/rollback", json={"message_id": t1["reply"]["id"]})
    assert r.status_code == 200, r.text
    t3 = await send(client, cid, "three")  # a branch beside "two"
    doc = await export_doc(client, cid)

    assert doc["format"] == "parley.conversation/v1"
    assert list(doc) == [
        "format", "conversation", "head_message_id", "checkpoints", "messages", "summaries",
        "context_items", "checksum",
    ]  # fmt: skip
    assert doc["conversation"]["id"] == cid and doc["conversation"]["metadata"] == {"k": "v"}
    assert doc["head_message_id"] == t3["reply"]["id"]
    assert [c["id"] for c in doc["checkpoints"]] == [cp["id"]]
    ids = {m["id"] for m in doc["messages"]}
    written = [m["id"] for t in (t1, t2, t3) for m in t["messages"]]
    assert ids == set(written) and len(doc["messages"]) == 6  # the abandoned branch included
    by_id = {m["id"]: m for m in doc["messages"]}
    assert by_id[t3["messages"][0]["id"]]["parent_id"] == t1["reply"]["id"]
    assert by_id[t2["messages"][0]["id"]]["parent_id"] == t1["reply"]["id"]
    reply = by_id[t1["reply"]["id"]]
    for field in (
        "parent_id", "role", "content", "parts", "tool_calls", "tool_call_id", "name", "usage",
        "cost_usd", "finish_reason", "run_id", "created_at", "metadata",
    ):  # fmt: skip
        assert field in reply
    assert reply["usage"]["output_tokens"] > 0 and reply["run_id"] == t1["run_id"]
    assert doc["checksum"] == recomputed_checksum(doc)
    assert doc["checksum"].startswith("sha256:") and len(doc["checksum"]) == 7 + 64
    # the checksum covers the content: one changed character breaks it
    doc["messages"][0]["content"] += "!"
    assert doc["checksum"] != recomputed_checksum(doc)


async def test_export_of_a_fork_has_the_shared_history_and_only_its_own_branches(
    client: httpx.AsyncClient,
) -> None:
    src = await create_conv(client)
    sid = src["id"]
    t1 = await send(client, sid, "one")
    await send(client, sid, "source only")
    r = await client.post(f"/conversations/{sid}/fork", json={"message_id": t1["reply"]["id"]})
    fork = r.json()
    f1 = await send(client, fork["id"], "fork turn")
    doc = await export_doc(client, fork["id"])
    ids = {m["id"] for m in doc["messages"]}
    assert ids == {m["id"] for m in await _path(client, fork["id"])}
    assert f1["reply"]["id"] in ids and len(ids) == 4  # never the source's later turn
    assert doc["conversation"]["forked_from"]["conversation_id"] == sid
    assert doc["checksum"] == recomputed_checksum(doc)


async def test_empty_conversation_exports_and_errors(client: httpx.AsyncClient) -> None:
    conv = await create_conv(client)
    doc = await export_doc(client, conv["id"])
    assert doc["messages"] == [] and doc["checkpoints"] == [] and doc["head_message_id"] is None
    assert doc["checksum"] == recomputed_checksum(doc)
    r = await client.get(f"/conversations/{conv['id']}/export", params={"include_media": "true"})
    body = assert_problem(r, 422, "validation_error")
    assert body["errors"][0]["loc"] == ["query", "include_media"]
    r = await client.get("/conversations/nope/export")
    assert_problem(r, 404, "conversation_not_found")


async def test_user_export_is_ndjson_one_document_per_conversation(
    client: httpx.AsyncClient,
) -> None:
    ids = []
    for i in range(3):
        conv = await create_conv(client, user_id="ursula")
        await send(client, conv["id"], f"hello {i}")
        ids.append(conv["id"])
    await create_conv(client, user_id="someone-else")
    r = await client.get("/users/ursula/export")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/x-ndjson")
    lines = r.content.decode().splitlines()
    assert len(lines) == 3 and r.content.endswith(b"\n")
    docs = [json.loads(line) for line in lines]
    assert sorted(d["conversation"]["id"] for d in docs) == sorted(ids)
    for d in docs:
        assert len(d["messages"]) == 2 and d["checksum"] == recomputed_checksum(d)
    empty = await client.get("/users/nobody/export")
    assert empty.status_code == 200 and empty.content == b""
    # asked for JSON: the same documents as one array
    r = await client.get("/users/ursula/export", headers={"Accept": "application/json"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert sorted(d["conversation"]["id"] for d in r.json()) == sorted(ids)
    r = await client.get("/users/nobody/export", headers={"Accept": "application/json"})
    assert r.json() == []


async def test_user_export_keeps_one_document_per_line_for_unicode_line_readers(
    client: httpx.AsyncClient,
) -> None:
    """U+0085 / U+2028 / U+2029 in a message are written as JSON escapes: `str.splitlines`
    (and httpx's `iter_lines`) break lines at them, and cut a raw document in two."""
    text = "line\u2028separator, paragraph\u2029separator and next\x85line"
    conv = await create_conv(client, user_id="lsep")
    await send(client, conv["id"], text)
    r = await client.get("/users/lsep/export")
    assert r.status_code == 200, r.text
    for raw in ("\u2028", "\u2029", "\x85"):
        assert raw.encode() not in r.content
    lines = r.content.decode().splitlines()
    assert len(lines) == 1
    doc = json.loads(lines[0])
    assert sorted(m["content"] for m in doc["messages"]) == sorted([text, f"echo: {text}"])
    assert doc["checksum"] == recomputed_checksum(doc)
    one = await client.get(f"/conversations/{conv['id']}/export")
    assert one.status_code == 200 and one.json()["checksum"] == doc["checksum"]
    assert (await client.delete(f"/conversations/{conv['id']}")).status_code == 204
    imported = await client.post(
        "/conversations/import",
        content=lines[0].encode(),
        headers={"Content-Type": "application/json"},
    )
    assert imported.status_code == 201, imported.text  # the escaped document's checksum holds
    assert [m["content"] for m in await _path(client, conv["id"])] == [text, f"echo: {text}"]


async def test_user_key_exports_only_its_own(settings_factory: Callable[..., Settings]) -> None:
    keys = [ApiKey(key="svc", role="service"), ApiKey(key="ak", role="user", user_id="alice")]
    async with running_app(settings_factory(auth="keys", api_keys=keys)) as client:
        svc = {"Authorization": "Bearer svc"}
        alice = {"Authorization": "Bearer ak"}
        r = await client.post(
            "/conversations",
            json={"pack_id": "general-assistant", "prompt_name": "chat", "user_id": "bob"},
            headers=svc,
        )
        bobs = r.json()["id"]
        assert_problem(await client.get(f"/conversations/{bobs}/export", headers=alice), 404,
                       "conversation_not_found")  # fmt: skip
        assert_problem(await client.get("/users/bob/export", headers=alice), 404, "not_found")
        assert (await client.get("/users/alice/export", headers=alice)).status_code == 200
        r = await client.get("/users/bob/export", headers=svc)
        assert [json.loads(line)["conversation"]["id"] for line in r.text.splitlines()] == [bobs]
