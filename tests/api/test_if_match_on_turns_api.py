"""Review R-B (8f9c63f incomplete): `If-Match` was evaluated by PATCH, DELETE, PUT head and
rollback only. Every other operation that changes a conversation -- the turns (send,
regenerate, edit, tool results, tool approvals: each moves the head and bumps the ETag),
checkpoints created or deleted, context items added or deleted, compact, a summary
deleted -- ignored it: a send guarded with the ETag the client last saw got 200 and its
message appended onto a head it never saw (RFC 9110 §13.1.1: not performed when false).

Now 412 `precondition_failed` and nothing stored, on every backend; a current ETag (or
`*`) performs them. A turn checks the tag when it is admitted (a 412 problem before any
run exists, also for a stream) and again under the turn lock: a turn queued behind
another whose tag went stale while it waited fails with `precondition_failed`.
(The reviewer's repro, /work/notes/review-tests/test_review_if_match_on_turns.py, is the
first four operations of the first test.)"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter

from app.api import PUBLIC_OPERATIONS, UNCONDITIONAL_WRITES
from app.api.operation import operation
from app.api.params import IfMatchDep, PathId
from app.deps import PrincipalDep
from app.main import create_app
from app.settings import Settings
from tests.api.backends import ALL_BACKENDS, app_on
from tests.api.helpers import assert_problem
from tests.api.openapi_rules import committed_document, document_violations
from tests.api.test_streaming_api import until_busy
from tests.conftest import make_settings

BODY = {"pack_id": "general-assistant", "prompt_name": "chat", "conversation_id": "ifm-t"}
CONV = "/conversations/ifm-t"

Op = Callable[[httpx.AsyncClient, dict[str, str], dict[str, str]], Awaitable[httpx.Response]]

# Each operation, given the If-Match headers and the ids set up by `_set_up`.
OPS: dict[str, Op] = {
    "send": lambda c, h, ids: c.post(f"{CONV}/messages", json={"content": "blind"}, headers=h),
    "send_stream": lambda c, h, ids: c.post(
        f"{CONV}/messages", json={"content": "blind", "stream": True}, headers=h
    ),
    "regenerate": lambda c, h, ids: c.post(f"{CONV}/regenerate", json={}, headers=h),
    "edit": lambda c, h, ids: c.post(
        f"{CONV}/messages/{ids['user']}/edit", json={"content": "x"}, headers=h
    ),
    "tool_results": lambda c, h, ids: c.post(
        f"{CONV}/tool-results",
        json={"results": [{"tool_call_id": "call-1", "output": "x"}]},
        headers=h,
    ),
    "tool_approvals": lambda c, h, ids: c.post(
        f"{CONV}/tool-approvals",
        json={"decisions": [{"tool_call_id": "call-1", "approve": True}]},
        headers=h,
    ),
    "create_checkpoint": lambda c, h, ids: c.post(
        f"{CONV}/checkpoints", json={"name": "c"}, headers=h
    ),
    "delete_checkpoint": lambda c, h, ids: c.delete(
        f"{CONV}/checkpoints/{ids['checkpoint']}", headers=h
    ),
    "add_context_item": lambda c, h, ids: c.post(
        f"{CONV}/context", json={"content": "a note"}, headers=h
    ),
    "delete_context_item": lambda c, h, ids: c.delete(
        f"{CONV}/context/items/{ids['item']}", headers=h
    ),
    "delete_context_items": lambda c, h, ids: c.delete(f"{CONV}/context/items", headers=h),
    "compact": lambda c, h, ids: c.post(f"{CONV}/compact", json={}, headers=h),
    "delete_summary": lambda c, h, ids: c.delete(f"{CONV}/summaries/no-such-summary", headers=h),
}


async def _set_up(client: httpx.AsyncClient) -> tuple[str, dict[str, str]]:
    """A conversation with a turn, a checkpoint and a context item; the ETag it had before
    them (stale now) and their ids."""
    r = await client.post("/conversations", json={**BODY, "user_id": "u"})
    assert r.status_code == 201, r.text
    stale = r.headers["etag"]
    r = await client.post(f"{CONV}/messages", json={"content": "first"})
    assert r.status_code == 200, r.text
    ids = {"user": r.json()["messages"][0]["id"]}
    r = await client.post(f"{CONV}/checkpoints", json={"name": "kept"})
    assert r.status_code == 201, r.text
    ids["checkpoint"] = r.json()["id"]
    r = await client.post(f"{CONV}/context", json={"content": "kept"})
    assert r.status_code == 201, r.text
    ids["item"] = r.json()["id"]
    assert (await client.get(CONV)).headers["etag"] != stale
    return stale, ids


async def _state(client: httpx.AsyncClient) -> list[Any]:
    """Everything the operations could change."""
    return [
        (await client.get(path)).json()
        for path in (
            CONV,
            f"{CONV}/messages",
            f"{CONV}/checkpoints",
            f"{CONV}/context/items",
            f"{CONV}/summaries",
        )
    ]


@pytest.mark.parametrize("backend", ALL_BACKENDS)
async def test_a_stale_if_match_refuses_every_write_and_stores_nothing(
    backend: str, tmp_path: Path
) -> None:
    async with app_on(backend, tmp_path, make_settings(tmp_path)) as client:
        stale, ids = await _set_up(client)
        before = await _state(client)
        for op, call in OPS.items():
            for tag in (stale, '"999.000000000000"', '"999"'):
                r = await call(client, {"If-Match": tag}, ids)
                assert r.status_code == 412, f"{op} with If-Match {tag}: {r.status_code} {r.text}"
                assert_problem(r, 412, "precondition_failed")  # (a stream too: not started)
        assert await _state(client) == before


@pytest.mark.parametrize("backend", ALL_BACKENDS)
async def test_a_current_if_match_or_star_performs_them(backend: str, tmp_path: Path) -> None:
    async with app_on(backend, tmp_path, make_settings(tmp_path)) as client:
        _, ids = await _set_up(client)
        for op, call in OPS.items():
            for tag in ((await client.get(CONV)).headers["etag"], "*"):
                r = await call(client, {"If-Match": tag}, ids)
                # (tool results/approvals name no pending call, the summary does not
                # exist, compact needs strategy summarize: refused, but not for the tag)
                assert r.status_code != 412, f"{op} with If-Match {tag}: {r.text}"
                if op in ("send", "edit", "regenerate", "create_checkpoint", "add_context_item"):
                    assert r.status_code in (200, 201), f"{op}: {r.status_code} {r.text}"


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.parametrize("stream", [False, True])
async def test_a_queued_turn_whose_tag_went_stale_while_it_waited_fails_412(
    backend: str, stream: bool, tmp_path: Path
) -> None:
    """Its tag held when it was admitted (the turn ahead had not committed); it is
    evaluated again when the turn gets the lock, against what the turn ahead committed."""
    settings: Settings = make_settings(tmp_path, mock_delay_ms=30)
    async with app_on(backend, tmp_path, settings) as client:
        r = await client.post("/conversations", json={**BODY, "user_id": "u"})
        assert r.status_code == 201, r.text
        slow = asyncio.create_task(
            client.post(f"{CONV}/messages", json={"content": "a b c d e f g h i j"})
        )
        await until_busy(client, CONV.removeprefix("/conversations/"))
        tag = (await client.get(CONV)).headers["etag"]  # current until the slow turn commits
        r = await client.post(
            f"{CONV}/messages",
            json={"content": "queued", "if_busy": "enqueue", "stream": stream},
            headers={"If-Match": tag},
        )
        first = await slow
        assert first.status_code == 200, first.text
        if stream:  # admitted, so its stream had started: the run fails with the 412
            assert r.status_code == 200, r.text
            assert "event: run.failed" in r.text, r.text
            assert '"code":"precondition_failed"' in r.text.replace(" ", ""), r.text
        else:
            body = assert_problem(r, 412, "precondition_failed")
            assert body["version"] == (await client.get(CONV)).json()["version"]
        conv = (await client.get(CONV)).json()
        assert conv["head_message_id"] == first.json()["reply"]["id"]
        messages = (await client.get(f"{CONV}/messages")).json()["data"]
        assert [m["content"] for m in messages if m["role"] == "user"] == ["a b c d e f g h i j"]
        # a queued turn whose tag still holds when it gets the lock runs
        slow = asyncio.create_task(client.post(f"{CONV}/messages", json={"content": "a b c d"}))
        await until_busy(client, CONV.removeprefix("/conversations/"))
        r = await client.post(
            f"{CONV}/messages", json={"content": "queued"}, headers={"If-Match": "*"}
        )
        assert (await slow).status_code == 200
        assert r.status_code == 200, r.text


def test_the_openapi_walk_requires_if_match_on_every_write_of_a_conversation() -> None:
    """The rule that keeps it so (`tests/api/openapi_rules.document_violations`): a write
    under /conversations/{conversation_id} without If-Match, or If-Match without 412, is
    reported; the committed document has none (R-B: 13 operations lacked it)."""
    router = APIRouter(tags=["conversations"])

    @router.post("/conversations/{conversation_id}/poke", **operation("pokeConversation"))
    async def poke(conversation_id: PathId, _: PrincipalDep) -> dict[str, str]:
        return {}

    @router.delete("/conversations/{conversation_id}/nudge", **operation("nudgeConversation"))
    async def nudge(
        conversation_id: PathId, _: PrincipalDep, if_match: IfMatchDep
    ) -> dict[str, str]:
        return {}

    test_app = create_app(Settings())
    test_app.include_router(router)
    found = document_violations(test_app.openapi(), PUBLIC_OPERATIONS)
    assert found == [
        "POST /conversations/{conversation_id}/poke: changes a conversation but takes no "
        "If-Match (IfMatchDep)",
        "DELETE /conversations/{conversation_id}/nudge: takes If-Match but has no 412 "
        "(PreconditionFailed)",
    ]
    assert document_violations(committed_document(), PUBLIC_OPERATIONS) == []
    unlisted = document_violations(committed_document(), PUBLIC_OPERATIONS, unconditional=())
    assert len(unlisted) == len(UNCONDITIONAL_WRITES)
