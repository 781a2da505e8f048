"""Import over HTTP on every store backend: lossless round trips (export → delete →
import), fork documents, id choices, refused documents that store nothing, PromptKit
statestore states (DESIGN §6, export/import)."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.domain.summary import Summary
from app.domain.usage import Usage
from app.manager.importer import UNFINISHED_IMPORT_TTL
from app.settings import ApiKey, Settings
from app.stores.base import StateStore
from tests.api.backends import ALL_BACKENDS, app_on, state_url_for
from tests.api.export_helpers import (
    app_with_store,
    export_doc,
    recomputed_checksum,
)
from tests.api.helpers import assert_problem, create_conv, send
from tests.conftest import running_app


@pytest.fixture(params=ALL_BACKENDS)
async def client(
    request: pytest.FixtureRequest, tmp_path: Path, settings_factory: Callable[..., Settings]
) -> AsyncIterator[httpx.AsyncClient]:
    async with app_on(request.param, tmp_path, settings_factory()) as c:
        yield c


async def _import(client: httpx.AsyncClient, doc: Any, **params: str) -> httpx.Response:
    return await client.post("/conversations/import", json=doc, params=params)


async def _path(client: httpx.AsyncClient, cid: str) -> list[dict[str, Any]]:
    r = await client.get(f"/conversations/{cid}/messages", params={"limit": 500})
    assert r.status_code == 200, r.text
    data: list[dict[str, Any]] = r.json()["data"]
    return data


def _by_id(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["id"]: m for m in doc["messages"]}


async def test_export_delete_import_reproduces_ids_parents_checkpoints_and_head(
    client: httpx.AsyncClient,
) -> None:
    conv = await create_conv(client, metadata={"team": "a"})
    cid = conv["id"]
    t1 = await send(client, cid, "one")
    await send(client, cid, "two")
    cp = (await client.post(f"/conversations/{cid}/checkpoints", json={"name": "two"})).json()
    await client.post(f"/conversations/{cid}/rollback", json={"message_id": t1["reply"]["id"]})
    await send(client, cid, "three")
    before = await export_doc(client, cid)
    path_before = await _path(client, cid)
    branches_before = (await client.get(f"/conversations/{cid}/branches")).json()
    assert (await client.delete(f"/conversations/{cid}")).status_code == 204

    r = await _import(client, before)
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == f"/conversations/{cid}"
    imported = r.json()
    assert imported["id"] == cid and imported["user_id"] == "alice"
    assert imported["head_message_id"] == before["head_message_id"]
    assert imported["message_count"] == 4 and imported["usage"] == before["conversation"]["usage"]
    assert imported["metadata"] == {"team": "a"}
    after = await export_doc(client, cid)
    assert _by_id(after) == _by_id(before)  # every id, parent, content, usage, ... kept
    assert (
        after["checkpoints"] == before["checkpoints"] and after["checkpoints"][0]["id"] == cp["id"]
    )
    assert after["head_message_id"] == before["head_message_id"]
    assert await _path(client, cid) == path_before
    assert (await client.get(f"/conversations/{cid}/branches")).json() == branches_before
    # it is an ordinary conversation: a turn continues the head, rollback to the checkpoint works
    t4 = await send(client, cid, "four")
    assert t4["messages"][0]["parent_id"] == before["head_message_id"]
    r = await client.post(f"/conversations/{cid}/rollback", json={"checkpoint_id": cp["id"]})
    assert r.status_code == 200 and r.json()["message_count"] == 4


async def test_import_beside_the_source_and_as_new_ids(client: httpx.AsyncClient) -> None:
    conv = await create_conv(client)
    cid = conv["id"]
    await send(client, cid, "hi")
    doc = await export_doc(client, cid)
    # the source still exists: its id is taken, its message ids are not (a new lineage)
    assert_problem(await _import(client, doc), 409, "conversation_exists")
    r = await _import(client, doc, conversation_id="copy-1", user_id="bob")
    assert r.status_code == 201, r.text
    copy1 = r.json()
    assert copy1["id"] == "copy-1" and copy1["user_id"] == "bob"
    assert copy1["lineage_id"] != conv["lineage_id"] and copy1["forked_from"] is None
    assert [m["id"] for m in await _path(client, "copy-1")] == [
        m["id"] for m in await _path(client, cid)
    ]
    await send(client, "copy-1", "only in the copy")
    assert len(await _path(client, cid)) == 2
    # deleting the copy leaves the source whole
    assert (await client.delete("/conversations/copy-1")).status_code == 204
    assert len(await _path(client, cid)) == 2


async def test_a_fork_document_imports_as_a_standalone_conversation(
    client: httpx.AsyncClient,
) -> None:
    src = await create_conv(client)
    t1 = await send(client, src["id"], "one")
    await send(client, src["id"], "two")
    fork = (
        await client.post(
            f"/conversations/{src['id']}/fork", json={"message_id": t1["reply"]["id"]}
        )
    ).json()
    await send(client, fork["id"], "fork turn")
    doc = await export_doc(client, fork["id"])
    history = await _path(client, fork["id"])
    r = await _import(client, doc, conversation_id="fork-copy")
    assert r.status_code == 201, r.text
    got = await _path(client, "fork-copy")
    assert [(m["id"], m["parent_id"], m["content"]) for m in got] == [
        (m["id"], m["parent_id"], m["content"]) for m in history
    ]
    assert {m["conversation_id"] for m in got} == {"fork-copy"}  # the new lineage's one writer
    assert (await client.delete(f"/conversations/{src['id']}")).status_code == 204
    assert (await client.delete(f"/conversations/{fork['id']}")).status_code == 204
    assert len(await _path(client, "fork-copy")) == 4


async def test_bad_documents_list_every_problem_and_store_nothing(
    client: httpx.AsyncClient,
) -> None:
    conv = await create_conv(client, user_id="carol")
    t1 = await send(client, conv["id"], "one")
    await send(client, conv["id"], "two")
    good = await export_doc(client, conv["id"])
    await client.delete(f"/conversations/{conv['id']}")

    bad = copy.deepcopy(good)
    msgs = bad["messages"]
    by_id = {m["id"]: m for m in msgs}
    user2 = next(m for m in msgs if m["content"] == "two")
    user2["parent_id"] = "not-in-the-document"
    first = by_id[t1["messages"][0]["id"]]
    first["parent_id"] = t1["reply"]["id"]  # one <-> its reply: a cycle
    msgs.append({"id": "broken", "role": "wizard"})  # schema errors
    bad["head_message_id"] = "nowhere"
    bad["conversation"]["head_message_id"] = "nowhere"
    bad["checkpoints"] = [
        {"id": "cp", "conversation_id": conv["id"], "message_id": "gone", "message_count": 1,
         "created_at": good["conversation"]["created_at"]}
    ]  # fmt: skip
    r = await _import(client, bad)
    body = assert_problem(r, 422, "validation_error")
    problems = {(tuple(e["loc"][:2]), e["msg"]) for e in body["errors"]}
    locs = [e["loc"] for e in body["errors"]]
    msgs_text = " | ".join(e["msg"] for e in body["errors"])
    assert ("body", "checksum") in {p[0] for p in problems}  # altered
    assert "parent not in the document" in msgs_text
    assert "cycle" in msgs_text
    assert ["body", "head_message_id"] in locs
    assert ["body", "checkpoints", 0, "message_id"] in locs
    assert any(loc[:3] == ["body", "messages", len(msgs) - 1] for loc in locs)  # the schema
    # a good document with only its checksum altered; an unknown format; a non-document
    tampered = copy.deepcopy(good)
    tampered["messages"][0]["content"] = "edited"
    body = assert_problem(await _import(client, tampered), 422, "validation_error")
    assert [e["loc"] for e in body["errors"]] == [["body", "checksum"]]
    other = {**good, "format": "parley.conversation/v9"}
    body = assert_problem(await _import(client, other), 422, "validation_error")
    assert body["errors"][0]["loc"] == ["body", "format"]
    assert_problem(await _import(client, [1, 2]), 422, "validation_error")
    assert_problem(await _import(client, {"hello": 1}), 422, "validation_error")
    # nothing of any of them was stored
    assert_problem(await client.get(f"/conversations/{conv['id']}"), 404, "conversation_not_found")
    listed = (await client.get("/conversations", params={"user_id": "carol"})).json()["data"]
    assert listed == []
    # and the untouched document still imports
    assert good["checksum"] == recomputed_checksum(good)
    assert (await _import(client, good)).status_code == 201


async def test_a_ttl_out_of_range_is_refused_and_stores_nothing(
    client: httpx.AsyncClient,
) -> None:
    """A document's `ttl_seconds` gets the bounds `POST /conversations` applies: a
    negative one was stored already expired, so the import answered 404 and undid itself;
    a string, a float or a boolean was coerced ("60" stored as 60) where the API refuses it."""
    conv = await create_conv(client, user_id="erin")
    await send(client, conv["id"], "one")
    good = await export_doc(client, conv["id"])
    for ttl in (-1, 0, 10**12, "60", 60.0, True):
        bad = copy.deepcopy(good)
        bad["conversation"]["ttl_seconds"] = ttl
        bad["checksum"] = recomputed_checksum(bad)
        r = await _import(client, bad, conversation_id=f"ttl-{type(ttl).__name__}-{ttl}")
        body = assert_problem(r, 422, "validation_error")
        assert [e["loc"] for e in body["errors"]] == [["body", "conversation", "ttl_seconds"]]
    listed = (await client.get("/conversations", params={"user_id": "erin"})).json()["data"]
    assert [c["id"] for c in listed] == [conv["id"]]


async def test_unknown_fields_of_a_record_are_refused_not_dropped(
    client: httpx.AsyncClient,
) -> None:
    """An unknown member of the document was refused but one of its conversation, a
    message or a checkpoint was dropped silently (a typo'd `tool_call_id` lost)."""
    conv = await create_conv(client, user_id="frank")
    await send(client, conv["id"], "one")
    await client.post(f"/conversations/{conv['id']}/checkpoints", json={})
    good = await export_doc(client, conv["id"])
    bad = copy.deepcopy(good)
    bad["conversation"]["colour"] = "red"
    bad["messages"][1]["tool_callid"] = "call_1"
    bad["checkpoints"][0]["label"] = "x"
    bad["checksum"] = recomputed_checksum(bad)
    body = assert_problem(
        await _import(client, bad, conversation_id="extra"), 422, "validation_error"
    )
    assert sorted(e["loc"] for e in body["errors"]) == [
        ["body", "checkpoints", 0, "label"],
        ["body", "conversation", "colour"],
        ["body", "messages", 1, "tool_callid"],
    ]
    assert {e["msg"] for e in body["errors"]} == {"unknown member"}
    assert (await client.get("/conversations/extra")).status_code == 404
    r = await _import(client, good, conversation_id="extra")
    assert r.status_code == 201, r.text


def _promptkit_go_state() -> dict[str, Any]:
    """A state the way PromptKit's statestore writes it with encoding/json: the Go field
    names of statestore.ConversationState (runtime/statestore/types.go, no json tags) and
    types.Message's json tags (runtime/types/message.go, runtime/types/content.go) in
    github.com/AltairaLabs/PromptKit. Unset time.Time fields are Go's zero time."""
    return {
        "ID": "pk-session-1",
        "UserID": "dave",
        "Messages": [
            {"role": "user", "content": "What's the weather in Paris?",
             "timestamp": "2025-05-01T10:00:00Z"},
            {"role": "assistant", "content": "",
             "tool_calls": [{"id": "call_1", "name": "get_weather", "args": {"city": "Paris"}}],
             "timestamp": "2025-05-01T10:00:01Z", "latency_ms": 420,
             "cost_info": {"input_tokens": 30, "output_tokens": 12, "input_cost_usd": 0.0003,
                           "output_cost_usd": 0.0002, "total_cost_usd": 0.0005},
             "finish_reason": "tool_use"},
            {"role": "tool", "content": "",
             "tool_result": {"id": "call_1", "name": "get_weather",
                             "parts": [{"type": "text", "text": "{\"temp_c\": 18}"}],
                             "latency_ms": 35},
             "timestamp": "0001-01-01T00:00:00Z"},
            {"role": "assistant", "content": "It is 18°C in Paris.",
             "parts": [{"type": "text", "text": "It is 18°C in Paris."}],
             "timestamp": "2025-05-01T10:00:03Z",
             "cost_info": {"input_tokens": 50, "output_tokens": 9, "input_cost_usd": 0.0005,
                           "output_cost_usd": 0.00015, "total_cost_usd": 0.00065},
             "finish_reason": "stop", "meta": {"provider": "openai"}},
        ],
        "SystemPrompt": "You are a weather assistant.",
        "Summaries": None,
        "TokenCount": 101,
        "LastAccessedAt": "2025-05-01T10:00:04Z",
        "Metadata": {"channel": "web"},
    }  # fmt: skip


async def test_promptkit_state_imports_as_its_linear_history(client: httpx.AsyncClient) -> None:
    state = _promptkit_go_state()
    pack = {"pack_id": "general-assistant", "prompt_name": "chat"}
    r = await _import(client, state)
    body = assert_problem(r, 422, "validation_error")
    assert {tuple(e["loc"]) for e in body["errors"]} == {
        ("query", "pack_id"),
        ("query", "prompt_name"),
    }
    r = await _import(client, state, **pack)
    assert r.status_code == 201, r.text
    conv = r.json()
    assert conv["id"] == "pk-session-1" and conv["user_id"] == "dave"
    assert conv["system_prompt"] == "You are a weather assistant."
    assert conv["metadata"] == {"channel": "web"} and conv["message_count"] == 4
    assert conv["usage"]["input_tokens"] == 80 and conv["usage"]["output_tokens"] == 21
    assert conv["usage"]["cost_usd"] == pytest.approx(0.00115)
    path = await _path(client, "pk-session-1")
    assert [m["role"] for m in path] == ["user", "assistant", "tool", "assistant"]
    assert [m["turn"] for m in path] == [1, 1, 1, 1]  # numbered: no walk back on later turns
    assert all(m["parent_id"] == (path[i - 1]["id"] if i else None) for i, m in enumerate(path))
    call = path[1]
    assert call["tool_calls"] == [
        {"id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}}
    ]
    assert call["finish_reason"] == "tool_calls" and call["metadata"]["latency_ms"] == 420
    assert call["created_at"].startswith("2025-05-01T10:00:01")
    tool = path[2]
    assert tool["tool_call_id"] == "call_1" and tool["name"] == "get_weather"
    assert tool["content"] == '{"temp_c": 18}' and tool["metadata"]["is_error"] is False
    assert tool["created_at"].startswith("2025-05-01T10:00:04")  # zero time: LastAccessedAt
    assert path[3]["content"] == "It is 18°C in Paris." and path[3]["parts"] == []
    assert path[3]["usage"]["total_tokens"] == 59 and path[3]["metadata"] == {"provider": "openai"}
    # the conversation continues like any other
    turn = await send(client, "pk-session-1", "thanks")
    assert turn["messages"][0]["parent_id"] == path[3]["id"]
    assert [m["turn"] for m in turn["messages"]] == [2, 2]


async def test_promptkit_snake_case_state_and_refusals(client: httpx.AsyncClient) -> None:
    pack = {"pack_id": "general-assistant", "prompt_name": "chat"}
    state = {
        "conversation_id": "pk-snake",
        "user_id": "erin",
        "messages": [
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": "hi", "cost_info": {"input_tokens": 3,
             "output_tokens": 1, "total_cost_usd": 0.01}},
        ],
        "token_count": 4,
        "total_cost": 0.02,
        "metadata": {"k": 1},
        "created_at": "2025-01-01T00:00:00Z",
        "updated_at": "2025-01-02T00:00:00Z",
    }  # fmt: skip
    r = await _import(client, state, **pack)
    assert r.status_code == 201, r.text
    assert r.json()["usage"]["cost_usd"] == 0.02 and r.json()["message_count"] == 2
    assert [m["content"] for m in await _path(client, "pk-snake")] == ["hello", "hi"]
    bad = {
        "ID": "pk-bad",
        "UserID": "erin",
        "Messages": [
            {"role": "robot", "content": "x"},
            {"role": "user", "parts": [{"type": "image", "media": {"file_path": "/tmp/a.png",
                                                                    "mime_type": "image/png"}}]},
            {"role": "tool", "content": "orphan result"},
        ],
        "Summaries": [{"StartTurn": 0, "EndTurn": 2, "Content": "..."}],
    }  # fmt: skip
    body = assert_problem(await _import(client, bad, **pack), 422, "validation_error")
    assert len(body["errors"]) >= 1
    bad_schema_free = {**bad, "Messages": bad["Messages"][1:]}
    body = assert_problem(await _import(client, bad_schema_free, **pack), 422, "validation_error")
    locs = [e["loc"] for e in body["errors"]]
    assert ["body", "Summaries"] in locs
    assert ["body", "Messages", 0, "parts", 0, "media"] in locs
    assert ["body", "Messages", 1, "tool_result"] in locs
    assert_problem(await client.get("/conversations/pk-bad"), 404, "conversation_not_found")
    # pack parameters are for PromptKit states only
    conv = await create_conv(client)
    doc = await export_doc(client, conv["id"])
    r = await _import(client, doc, conversation_id="x2", **pack)
    assert_problem(r, 422, "validation_error")


async def test_user_key_imports_only_for_itself(settings_factory: Callable[..., Settings]) -> None:
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
        doc = (await client.get(f"/conversations/{bobs}/export", headers=svc)).json()
        r = await client.post("/conversations/import", json=doc, headers=alice,
                              params={"conversation_id": "a1", "user_id": "bob"})  # fmt: skip
        assert_problem(r, 401, "unauthorized")
        r = await client.post("/conversations/import", json=doc, headers=alice,
                              params={"conversation_id": "a1"})  # fmt: skip
        assert r.status_code == 201 and r.json()["user_id"] == "alice"
        r = await client.post("/conversations/import", content=b"x", headers={**svc,
                              "content-type": "text/plain"})  # fmt: skip
        assert_problem(r, 415, "unsupported_media_type")


async def test_import_body_has_its_own_size_limit(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(max_message_bytes=1000, import_max_mb=2)
    async with running_app(settings) as client:
        big = {"hello": "x" * (3 << 19)}  # 1.5 MiB: over the general limit, under the import's
        r = await client.post("/conversations/import", json=big)
        assert_problem(r, 422, "validation_error")  # read and refused as a document
        r = await client.post("/conversations", json=big)
        assert_problem(r, 413, "message_too_large")
        huge = {"hello": "x" * (5 << 19)}  # 2.5 MiB
        assert_problem(
            await client.post("/conversations/import", json=huge), 413, "message_too_large"
        )


@pytest.fixture(params=ALL_BACKENDS)
async def client_and_store(
    request: pytest.FixtureRequest, tmp_path: Path, settings_factory: Callable[..., Settings]
) -> AsyncIterator[tuple[httpx.AsyncClient, StateStore]]:
    async with (
        state_url_for(request.param, tmp_path) as url,
        app_with_store(settings_factory(state_url=url)) as pair,
    ):
        yield pair


async def test_summaries_covering_exported_messages_round_trip(
    client_and_store: tuple[httpx.AsyncClient, StateStore],
) -> None:
    client, store = client_and_store
    conv = await create_conv(client)
    cid = conv["id"]
    t1 = await send(client, cid, "one")
    t2 = await send(client, cid, "two")
    fork = (await client.post(f"/conversations/{cid}/fork", json={})).json()
    f1 = await send(client, fork["id"], "fork only")

    def summary(sid: str, covers: dict[str, Any], previous: str | None, by: str) -> Summary:
        return Summary(
            id=sid, lineage_id=conv["lineage_id"], conversation_id=by,
            covers_message_id=covers["id"], covers_depth=covers["depth"], previous_id=previous,
            text=f"summary {sid}", tokens=5,
            provider="mock", model="mock-1", usage=Usage.of(10, 5),
            created_at=datetime.fromisoformat(covers["created_at"]),
        )  # fmt: skip

    await store.save_summary(summary("s1", t1["reply"], None, cid))
    await store.save_summary(summary("s2", t2["reply"], "s1", cid))
    await store.save_summary(summary("s3", f1["reply"], "s2", fork["id"]))  # the fork's branch
    doc = await export_doc(client, cid)
    assert [s["id"] for s in doc["summaries"]] == ["s1", "s2"]  # not the fork's
    assert doc["checksum"] == recomputed_checksum(doc)
    fork_doc = await export_doc(client, fork["id"])
    assert [s["id"] for s in fork_doc["summaries"]] == ["s1", "s2", "s3"]

    r = await _import(client, doc, conversation_id="with-summaries")
    assert r.status_code == 201, r.text
    stored = await store.list_summaries(r.json()["lineage_id"])
    assert [(s.id, s.previous_id, s.conversation_id) for s in stored] == [
        ("s1", None, "with-summaries"), ("s2", "s1", "with-summaries")
    ]  # fmt: skip
    again = await export_doc(client, "with-summaries")
    assert [
        {k: v for k, v in s.items() if k not in ("lineage_id", "conversation_id")}
        for s in again["summaries"]
    ] == [
        {k: v for k, v in s.items() if k not in ("lineage_id", "conversation_id")}
        for s in doc["summaries"]
    ]
    # a summary covering a message not in the document, or extending a missing one
    bad = copy.deepcopy(doc)
    bad["summaries"][0]["covers_message_id"] = "elsewhere"
    bad["summaries"][1]["previous_id"] = "s0"
    body = assert_problem(await _import(client, bad, conversation_id="x"), 422, "validation_error")
    locs = [e["loc"] for e in body["errors"]]
    assert ["body", "summaries", 0, "covers_message_id"] in locs
    assert ["body", "summaries", 1, "previous_id"] in locs
    assert ["body", "checksum"] in locs


async def test_context_items_round_trip_and_old_documents_without_them_import(
    client: httpx.AsyncClient,
) -> None:
    conv = await create_conv(client)
    cid = conv["id"]
    await send(client, cid, "one")
    added = []
    for body in (
        {"content": "# Notes\nThe code is 7.", "source": "notes.md", "pinned": True},
        {"content": "plain note", "metadata": {"k": 1}},
    ):
        r = await client.post(f"/conversations/{cid}/context", json=body)
        assert r.status_code == 201, r.text
        added.append(r.json())
    doc = await export_doc(client, cid)
    assert doc["context_items"] == added
    assert doc["checksum"] == recomputed_checksum(doc)

    r = await _import(client, doc, conversation_id="with-items")
    assert r.status_code == 201, r.text
    items = (await client.get("/conversations/with-items/context/items")).json()["data"]
    assert [{**i, "conversation_id": cid} for i in items] == added
    preview = (await client.get("/conversations/with-items/context")).json()
    assert preview["context_item_ids"] == [i["id"] for i in added]

    # a document written before context items existed: no member, no part of the checksum
    old = copy.deepcopy(doc)
    del old["context_items"]
    old["checksum"] = recomputed_checksum(old)
    r = await _import(client, old, conversation_id="old-doc")
    assert r.status_code == 201, r.text
    assert (await client.get("/conversations/old-doc/context/items")).json()["data"] == []

    # the checksum covers the items; bad items are listed and nothing is stored
    altered = copy.deepcopy(doc)
    altered["context_items"][0]["content"] = "changed"
    body = assert_problem(
        await _import(client, altered, conversation_id="x1"), 422, "validation_error"
    )
    assert [e["loc"] for e in body["errors"]] == [["body", "checksum"]]
    bad = copy.deepcopy(doc)
    bad["context_items"][1]["pinned"] = "sometimes"
    bad["context_items"].append(bad["context_items"][0])
    bad["checksum"] = recomputed_checksum(bad)
    body = assert_problem(await _import(client, bad, conversation_id="x2"), 422, "validation_error")
    locs = [e["loc"] for e in body["errors"]]
    assert ["body", "context_items", 1, "pinned"] in locs
    assert ["body", "context_items"] in locs
    for cid_left in ("x1", "x2"):
        assert (await client.get(f"/conversations/{cid_left}")).status_code == 404


async def test_an_import_in_flight_expires_unless_it_finishes(
    client_and_store: tuple[httpx.AsyncClient, StateStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process killed mid-import cannot undo: the conversation it created stays. It is
    created expiring (`UNFINISHED_IMPORT_TTL`), so such a shell is reclaimed and its id
    freed instead of answering 409 `conversation_exists` forever; the finished import
    gets the document's expiry (none here)."""
    client, store = client_and_store
    conv = await create_conv(client)
    await send(client, conv["id"], "one")
    doc = await export_doc(client, conv["id"])
    seen: list[datetime | None] = []
    append = store.append_messages

    async def watching(conversation: Any, *args: Any, **kwargs: Any) -> Any:
        stored = await store.get_conversation(conversation.id, now=datetime.now(UTC))
        seen.append(stored.expires_at if stored else None)
        return await append(conversation, *args, **kwargs)

    monkeypatch.setattr(store, "append_messages", watching)
    before = datetime.now(UTC)
    r = await _import(client, doc, conversation_id="in-flight")
    assert r.status_code == 201, r.text
    assert r.json()["expires_at"] is None
    assert (await client.get("/conversations/in-flight")).json()["expires_at"] is None
    r = await _import(
        client, _promptkit_go_state(), pack_id="general-assistant", prompt_name="chat"
    )
    assert r.status_code == 201, r.text
    assert r.json()["expires_at"] is None
    assert (await client.get(f"/conversations/{r.json()['id']}")).json()["expires_at"] is None
    assert len(seen) == 2 and all(exp is not None for exp in seen)  # one chain each
    grace = UNFINISHED_IMPORT_TTL
    assert all(before < exp <= datetime.now(UTC) + grace for exp in seen if exp)


async def test_a_tool_message_that_answers_no_tool_call_is_refused_and_nothing_stored(
    client: httpx.AsyncClient,
) -> None:
    conv = await create_conv(client, user_id="frank")
    turn = await send(client, conv["id"], "one")
    good = await export_doc(client, conv["id"])
    await client.delete(f"/conversations/{conv['id']}")
    reply = _by_id(good)[turn["reply"]["id"]]
    bad = copy.deepcopy(good)
    root_tool = {**copy.deepcopy(reply), "id": "tool-root", "role": "tool", "parent_id": None}
    root_tool["depth"], root_tool["turn"] = 0, 0  # a root tool message: no user turn yet
    stray = {**copy.deepcopy(reply), "id": "tool-stray", "role": "tool", "tool_call_id": "c9"}
    stray["parent_id"], stray["depth"] = reply["id"], reply["depth"] + 1
    bad["messages"] += [root_tool, stray]
    bad["checksum"] = recomputed_checksum(bad)
    body = assert_problem(await _import(client, bad), 422, "validation_error")
    n = len(good["messages"])
    assert sorted(e["loc"] for e in body["errors"]) == [
        ["body", "messages", n, "tool_call_id"],
        ["body", "messages", n + 1, "tool_call_id"],
    ]
    assert_problem(await client.get(f"/conversations/{conv['id']}"), 404, "conversation_not_found")
    # PromptKit: a tool result whose id is no call of the assistant before it
    state = _promptkit_go_state()
    tool = next(m for m in state["Messages"] if m["role"] == "tool")
    tool["tool_result"]["id"] = "call_unknown"
    pack = {"pack_id": "general-assistant", "prompt_name": "chat"}
    body = assert_problem(await _import(client, state, **pack), 422, "validation_error")
    at = state["Messages"].index(tool)
    assert [e["loc"] for e in body["errors"]] == [["body", "Messages", at, "tool_result", "id"]]
    assert_problem(await client.get(f"/conversations/{state['ID']}"), 404, "conversation_not_found")
    listed = (await client.get("/conversations", params={"user_id": "frank"})).json()["data"]
    assert listed == []


async def test_record_ids_outside_the_id_rule_are_refused(client: httpx.AsyncClient) -> None:
    """A checkpoint or context item imported with an id like `../../x` could never be
    read or deleted by its URL (found by the outside tester): such ids are refused."""
    conv = await create_conv(client, user_id="gina")
    await send(client, conv["id"], "one")
    await client.post(f"/conversations/{conv['id']}/checkpoints", json={})
    r = await client.post(f"/conversations/{conv['id']}/context", json={"content": "note"})
    assert r.status_code == 201, r.text
    good = await export_doc(client, conv["id"])
    bad = copy.deepcopy(good)
    bad["checkpoints"][0]["id"] = "../../x"
    bad["context_items"][0]["id"] = "item\n"
    bad["checksum"] = recomputed_checksum(bad)
    body = assert_problem(
        await _import(client, bad, conversation_id="ids"), 422, "validation_error"
    )
    assert sorted(e["loc"] for e in body["errors"]) == [
        ["body", "checkpoints", 0, "id"],
        ["body", "context_items", 0, "id"],
    ]
    assert (await client.get("/conversations/ids")).status_code == 404
    assert (await _import(client, good, conversation_id="ids")).status_code == 201
