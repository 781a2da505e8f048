"""A round mixing a server tool and a client tool pauses with the server call's *tool*
message as its head. Every path that derives the status from a head (PUT head, rollback to
a checkpoint, fork, import) must still see the client call pending (outside tester T7: they
looked at the head's role only, said `idle`, and the call could never be answered)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.settings import Settings
from tests.api.backends import ALL_BACKENDS
from tests.api.tool_loop_helpers import (
    MOCK_WEATHER,
    mock_weather_app,
    roles,
    tool_app,
    turn,
    weather_conv,
)


async def _answer_time(client: httpx.AsyncClient, cid: str) -> dict[str, Any]:
    r = await client.post(
        f"/conversations/{cid}/tool-results",
        json={"results": [{"tool_call_id": "call_2", "output": "14:00"}]},
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def _leave(client: httpx.AsyncClient, cid: str, user_id: str) -> None:
    """Roll the head back to the user message: the paused branch is left (idle)."""
    r = await client.post(f"/conversations/{cid}/rollback", json={"message_id": user_id})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "idle"


@pytest.mark.parametrize("backend", ALL_BACKENDS)
async def test_a_head_on_a_tool_result_with_a_client_call_unanswered_requires_action(
    backend: str, settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    async with mock_weather_app(backend, settings_factory, tmp_path) as client:
        cid = await weather_conv(client, "mixed")
        first = await turn(client, cid, "weather and time in Paris?")
        assert first["status"] == "requires_action" and roles(first) == [
            "user",
            "assistant",
            "tool",
        ]
        user, _, paused = first["messages"]
        cp = await client.post(f"/conversations/{cid}/checkpoints", json={"name": "paused"})
        assert cp.status_code == 201, cp.text

        await _leave(client, cid, user["id"])

        # PUT head back on the paused branch: it waits again
        r = await client.put(f"/conversations/{cid}/head", json={"message_id": paused["id"]})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "requires_action"

        # rollback to a checkpoint taken at the paused head (after leaving it again)
        await _leave(client, cid, user["id"])
        r = await client.post(
            f"/conversations/{cid}/rollback", json={"checkpoint_id": cp.json()["id"]}
        )
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "requires_action"

        # a fork at the paused message
        r = await client.post(f"/conversations/{cid}/fork", json={"message_id": paused["id"]})
        assert r.status_code == 201, r.text
        fork = r.json()
        assert fork["status"] == "requires_action"

        # an export of the paused conversation, imported as a new one
        doc = (await client.get(f"/conversations/{cid}/export")).json()
        r = await client.post("/conversations/import", json=doc, params={"conversation_id": "imp"})
        assert r.status_code == 201, r.text
        assert r.json()["status"] == "requires_action"

        # and the pending call can be answered everywhere, completing the turn
        for target in (cid, fork["id"], "imp"):
            done = await _answer_time(client, target)
            assert done["status"] == "completed", target
            assert done["reply"]["content"] == "Weather and time known."
            path = (await client.get(f"/conversations/{target}/messages")).json()["data"]
            assert [m["role"] for m in path] == ["user", "assistant", "tool", "tool", "assistant"]


async def test_a_head_on_a_tool_result_with_every_call_answered_is_idle(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    """The path walk does not invent a wait: once both calls are answered, a head put on
    the last tool result (the reply after it abandoned) is idle."""
    async with tool_app(settings_factory, tmp_path, MOCK_WEATHER) as client:
        cid = await weather_conv(client, "mixed")
        await turn(client, cid, "weather and time in Paris?")
        done = await _answer_time(client, cid)
        answered = done["messages"][0]
        assert answered["role"] == "tool" and answered["tool_call_id"] == "call_2"
        r = await client.post(f"/conversations/{cid}/rollback", json={"message_id": answered["id"]})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "idle"
