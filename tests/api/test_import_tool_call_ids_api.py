"""An import refuses a history a provider refuses: one assistant message giving two tool
calls the same id, or a tool message answering a call that a tool message above it in
its chain (same assistant message, same path) already answers (outside tester, LOW).
Both imported (201) before, and every later turn of the conversation sent the provider a
repeated tool_call_id. Another branch answering the same call again is a history of its
own and still imports.

Memory and SQLite only: the refusal is made from the document, before anything is
stored (`import_checks.tool_call_problems`, `import_tool_rule`), so no backend is
reached; the 404 after each refusal shows nothing was written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.settings import Settings
from tests.api.export_helpers import recomputed_checksum
from tests.api.helpers import assert_problem
from tests.api.tool_loop_helpers import mock_weather_app, turn, weather_conv

BACKENDS = ["memory", "sqlite"]


async def _weather_doc(client: httpx.AsyncClient) -> dict[str, Any]:
    """The export of one weather turn: user, assistant calling get_weather, the tool
    message answering it, the final assistant message."""
    cid = await weather_conv(client, "weather")
    first = await turn(client, cid, "weather in Paris?")
    assert first["status"] == "completed", first
    doc: dict[str, Any] = (await client.get(f"/conversations/{cid}/export")).json()
    assert sorted(m["role"] for m in doc["messages"]) == ["assistant", "assistant", "tool", "user"]
    return doc


def _calling(doc: dict[str, Any]) -> dict[str, Any]:
    return next(m for m in doc["messages"] if m["role"] == "assistant" and m["tool_calls"])


def _answer(doc: dict[str, Any]) -> dict[str, Any]:
    return next(m for m in doc["messages"] if m["role"] == "tool")


async def _import(client: httpx.AsyncClient, doc: dict[str, Any], new_id: str) -> httpx.Response:
    doc["conversation"].update(id=new_id, message_count=len(doc["messages"]))
    doc["checksum"] = recomputed_checksum(doc)
    return await client.post("/conversations/import", json=doc)


def _second_answer(doc: dict[str, Any], new_id: str, *, parent: dict[str, Any]) -> int:
    """A copy of the tool message under `parent`; its index in the document."""
    copy = {**_answer(doc), "id": new_id, "parent_id": parent["id"], "depth": parent["depth"] + 1}
    doc["messages"].append(copy)
    return len(doc["messages"]) - 1


@pytest.mark.parametrize("backend", BACKENDS)
async def test_two_tool_calls_with_one_id_on_a_message_are_refused(
    backend: str, settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    async with mock_weather_app(backend, settings_factory, tmp_path) as client:
        doc = await _weather_doc(client)
        asst = _calling(doc)
        call = asst["tool_calls"][0]
        asst["tool_calls"] = [call, {**call, "arguments": {"city": "Rome", "country": "IT"}}]
        r = await _import(client, doc, "imported-twice-called")
        body = assert_problem(r, 422, "validation_error")
        locs = [e["loc"] for e in body["errors"]]
        assert locs == [["body", "messages", asst["id"], "tool_calls"]], body
        assert "given twice" in body["errors"][0]["msg"]
        assert (await client.get("/conversations/imported-twice-called")).status_code == 404


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_tool_message_answering_an_answered_call_is_refused(
    backend: str, settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    """user -> assistant(call) -> tool(call) -> tool(call again) -> final assistant."""
    async with mock_weather_app(backend, settings_factory, tmp_path) as client:
        doc = await _weather_doc(client)
        tool = _answer(doc)
        final = next(m for m in doc["messages"] if m["parent_id"] == tool["id"])
        again = _second_answer(doc, "answered-again", parent=tool)
        final.update(parent_id="answered-again", depth=final["depth"] + 1)
        r = await _import(client, doc, "imported-twice-answered")
        body = assert_problem(r, 422, "validation_error")
        locs = [e["loc"] for e in body["errors"]]
        assert locs == [["body", "messages", again, "tool_call_id"]], body
        assert "already answered" in body["errors"][0]["msg"]
        assert (await client.get("/conversations/imported-twice-answered")).status_code == 404


@pytest.mark.parametrize("backend", BACKENDS)
async def test_another_branch_answering_the_same_call_imports(
    backend: str, settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    """A second tool message under the assistant message (a sibling of the first answer)
    is on another path: each path answers the call once."""
    async with mock_weather_app(backend, settings_factory, tmp_path) as client:
        doc = await _weather_doc(client)
        _second_answer(doc, "other-branch", parent=_calling(doc))
        r = await _import(client, doc, "imported-branches")
        assert r.status_code == 201, r.text
        r = await client.put(
            "/conversations/imported-branches/head", json={"message_id": "other-branch"}
        )
        assert r.status_code == 200, r.text
        assert (await turn(client, "imported-branches", "and Rome?"))["status"] == "completed"
