"""Context strategy `summarize`: summaries written when the history no longer fits, reused,
extended, dropped on rollback/DELETE, failure falling back to truncation; compact and the
summaries endpoints; the dry run. Provider requests are recorded and checked against the
input budget by the context builder's own counter."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import httpx
from starlette.types import Receive, Scope, Send

from app.main import create_app
from app.manager.manager import ConversationManager
from app.manager.token_count import request_tokens
from app.providers.base import LLMProvider, ProviderEvent, ProviderRequest
from app.settings import Settings
from tests.api.helpers import assert_problem, create_conv, send
from tests.conftest import make_settings


class RecordingProvider(LLMProvider):
    """The mock provider, keeping every request it is sent."""

    def __init__(self, inner: LLMProvider) -> None:
        self.inner = inner
        self.name = inner.name
        self.default_model = inner.default_model
        self.requests: list[ProviderRequest] = []

    def media_support(self, kind: str, mime_type: str, source: str) -> str | None:
        return self.inner.media_support(kind, mime_type, source)

    def request_body(self, request: ProviderRequest) -> dict[str, Any]:
        return self.inner.request_body(request)

    async def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        self.requests.append(request.model_copy(deep=True))
        async for event in self.inner.stream(request):
            yield event

    def summarizations(self) -> list[ProviderRequest]:
        return [r for r in self.requests if r.metadata.get("task") == "summarize"]


@asynccontextmanager
async def recorded_app(
    settings: Settings,
) -> AsyncIterator[tuple[httpx.AsyncClient, ConversationManager, RecordingProvider]]:
    app = create_app(settings)
    async with app.router.lifespan_context(app) as state:
        assert state is not None
        manager: ConversationManager = state["manager"]
        providers = cast(dict[str, LLMProvider], manager.providers)
        recorder = RecordingProvider(providers["mock"])
        providers["mock"] = recorder

        async def with_state(scope: Scope, receive: Receive, send: Send) -> None:
            scope["state"] = dict(state)
            await app(scope, receive, send)

        transport = httpx.ASGITransport(app=with_state)
        async with httpx.AsyncClient(transport=transport, base_url="http://parley.test") as c:
            yield c, manager, recorder


def policy(max_input: int, **extra: Any) -> dict[str, Any]:
    return {
        "max_input_tokens": max_input,
        "reserve_output_tokens": 100,
        "strategy": "summarize",
        **extra,
    }


FILLER = "Turn {i}: nothing new here, just chatting about the weather and lunch plans."


async def chat(client: httpx.AsyncClient, cid: str, turns: range) -> dict[str, Any]:
    """Send filler turns; the last turn's response."""
    reply: dict[str, Any] = {}
    for i in turns:
        reply = await send(client, cid, FILLER.format(i=i))
    return reply


async def run_of(client: httpx.AsyncClient, cid: str, reply: dict[str, Any]) -> dict[str, Any]:
    r = await client.get(f"/conversations/{cid}/runs/{reply['run_id']}")
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def test_acceptance_2000_turns_within_4000_tokens_recall_turn_1_from_the_summary(
    tmp_path: Path,
) -> None:
    # ~20 s on an idle 2-core machine (timing is not asserted: shared CI machines vary)
    # the store is SQLite; runs are coordinated in process (the store is what is tested)
    settings = make_settings(tmp_path, coordination_url="memory://")
    async with recorded_app(settings) as (client, _, rec):
        conv = await create_conv(
            client,
            context_policy={"max_input_tokens": 4000, "strategy": "summarize"},
            metadata={"mock_recall": True},
        )
        cid = conv["id"]
        await send(client, cid, "Fact: my locker code is 4417.")
        await chat(client, cid, range(2, 2000))
        reply = await send(client, cid, "What is my locker code?")
        # every original message is still readable
        ids: list[str] = []
        before = None
        while True:
            params: dict[str, Any] = {"limit": 500}
            if before:
                params["before"] = before
            page = (await client.get(f"/conversations/{cid}/messages", params=params)).json()
            ids += [m["id"] for m in page["data"]]
            before = page["next_cursor"]
            if not before:
                break
        summaries = (await client.get(f"/conversations/{cid}/summaries")).json()["data"]

    assert "4417" in reply["reply"]["content"], reply["reply"]["content"]
    budget = 4000 - 1024  # max_input_tokens - the default reserve_output_tokens
    over = [r for r in rec.requests if request_tokens(r, "openai") > budget]
    assert not over, f"{len(over)} requests over {budget} input tokens"
    assert len(rec.requests) == 2000 + len(rec.summarizations())
    assert len(ids) == len(set(ids)) == 4000
    assert summaries and all("4417" in s["text"] for s in summaries)
    # the last turn carried a summary and far fewer than 4,000 messages
    last_turn = rec.requests[-1]
    assert last_turn.messages[0].role == "system" and "4417" in last_turn.messages[0].content
    assert not any("4417" in m.content for m in last_turn.messages[1:]), "only in the summary"
    assert len(last_turn.messages) < 200
    assert 10 < len(rec.summarizations()) < 200


async def test_a_stored_summary_is_reused_without_a_provider_call(tmp_path: Path) -> None:
    async with recorded_app(make_settings(tmp_path)) as (client, _, rec):
        conv = await create_conv(client, context_policy=policy(700))
        cid = conv["id"]
        run = await run_of(client, cid, await chat(client, cid, range(30)))
        first = len(rec.summarizations())
        assert first >= 1
        reply = await send(client, cid, "one more")
        assert len(rec.summarizations()) == first, "the stored summary still covers the drop"
        after = await run_of(client, cid, reply)
    assert rec.requests[-1].messages[0].role == "system"
    assert after["context"]["summaries_created"] == []
    assert after["context"]["summary_id"] is not None
    assert run["context"]["summary_error"] is None


async def test_summaries_extend_incrementally(tmp_path: Path) -> None:
    async with recorded_app(make_settings(tmp_path)) as (client, _, rec):
        conv = await create_conv(client, context_policy=policy(700))
        cid = conv["id"]
        await chat(client, cid, range(80))
        summaries = (await client.get(f"/conversations/{cid}/summaries")).json()["data"]
    assert len(summaries) >= 2
    for older, newer in itertools.pairwise(summaries):
        assert newer["previous_id"] == older["id"]
        assert newer["covers_depth"] > older["covers_depth"]
    # an extension reads the previous summary and only the messages after it
    later = rec.summarizations()[1].messages[0].content
    assert later.startswith("Previous summary:") and "Turn 0:" not in later


async def test_summarization_failure_falls_back_to_truncation_and_is_recorded(
    tmp_path: Path,
) -> None:
    async with recorded_app(make_settings(tmp_path)) as (client, _, rec):
        conv = await create_conv(
            client, context_policy=policy(700), metadata={"mock_summary_fail": "error"}
        )
        cid = conv["id"]
        run = await run_of(client, cid, await chat(client, cid, range(30)))
        summaries = (await client.get(f"/conversations/{cid}/summaries")).json()["data"]
    assert run["status"] == "completed"
    assert "summarization failed" in run["context"]["summary_error"]
    assert run["context"]["summary_id"] is None and summaries == []
    last = rec.requests[-1]
    assert last.messages[0].role == "user" and request_tokens(last, "openai") <= 600


async def test_rolling_back_past_a_summary_stops_using_it(tmp_path: Path) -> None:
    async with recorded_app(make_settings(tmp_path)) as (client, _, rec):
        conv = await create_conv(client, context_policy=policy(2000))
        cid = conv["id"]
        await chat(client, cid, range(6))
        early = (await client.get(f"/conversations/{cid}/messages", params={"limit": 500})).json()
        await chat(client, cid, range(6, 10))
        r = await client.post(f"/conversations/{cid}/compact")
        assert r.status_code == 201, r.text
        summary = r.json()
        reply = await send(client, cid, "after compact")
        assert rec.requests[-1].messages[0].content.endswith(summary["text"])
        ctx = await run_of(client, cid, reply)
        assert ctx["context"]["summary_id"] == summary["id"]

        back_to = early["data"][0]["id"]  # newest first: the reply of turn 5
        r = await client.post(f"/conversations/{cid}/rollback", json={"message_id": back_to})
        assert r.status_code == 200, r.text
        preview = (await client.get(f"/conversations/{cid}/context")).json()
        await send(client, cid, "after rollback")
        listed = (await client.get(f"/conversations/{cid}/summaries")).json()["data"]
    assert preview["summary"] is None and preview["summary_pending"] is False
    assert all(m.role != "system" for m in rec.requests[-1].messages)
    assert listed == []  # its covered message is no longer on the path


async def test_deleting_a_summary_means_the_next_turn_does_not_use_it(tmp_path: Path) -> None:
    async with recorded_app(make_settings(tmp_path)) as (client, _, rec):
        conv = await create_conv(client, context_policy=policy(2000))
        cid = conv["id"]
        await chat(client, cid, range(4))
        summary = (await client.post(f"/conversations/{cid}/compact")).json()
        listed = (await client.get(f"/conversations/{cid}/summaries")).json()["data"]
        assert [s["id"] for s in listed] == [summary["id"]]
        r = await client.delete(f"/conversations/{cid}/summaries/{summary['id']}")
        assert r.status_code == 204
        again = await client.delete(f"/conversations/{cid}/summaries/{summary['id']}")
        assert_problem(again, 404, "summary_not_found")
        run = await run_of(client, cid, await send(client, cid, "after delete"))
    assert all(m.role != "system" for m in rec.requests[-1].messages)
    assert len(rec.requests[-1].messages) == 9  # the whole history fits again
    assert run["context"]["summary_id"] is None


async def test_the_dry_run_shows_the_summary_in_use_byte_for_byte_and_never_summarizes(
    tmp_path: Path,
) -> None:
    async with recorded_app(make_settings(tmp_path)) as (client, manager, rec):
        conv = await create_conv(client, context_policy=policy(700))
        cid = conv["id"]
        await chat(client, cid, range(30))
        r = await client.get(f"/conversations/{cid}/context", params={"content": "next ✓"})
        preview = r.json()
        calls = len(rec.requests)
        await send(client, cid, "next ✓")
        mock = manager.providers["mock"]
        assert len(rec.requests) == calls + 1, "the dry run called no provider"
        assert preview["summary_pending"] is False and preview["summary"] is not None
        assert mock.request_body(rec.requests[-1]) == preview["request_body"]
        b = preview["budget"]
        assert b["summary"] == preview["summary"]["tokens"] > 0
        assert b["total"] == b["system"] + b["summary"] + b["history"] + b["pending"] + b["tools"]
        assert b["total"] <= b["input_budget"]

        # a history that needs a new summary: the dry run says so and calls nobody
        await client.delete(f"/conversations/{cid}/summaries/{preview['summary']['id']}")
        for s in (await client.get(f"/conversations/{cid}/summaries")).json()["data"]:
            await client.delete(f"/conversations/{cid}/summaries/{s['id']}")
        calls = len(rec.requests)
        pending = (await client.get(f"/conversations/{cid}/context")).json()
        assert len(rec.requests) == calls
    assert pending["summary_pending"] is True and pending["summary"] is None
    assert pending["dropped"] > 0


async def test_the_pack_fragment_and_the_policy_override_the_summary_prompt(
    tmp_path: Path,
) -> None:
    async with recorded_app(make_settings(tmp_path)) as (client, _, rec):
        conv = await create_conv(
            client, context_policy=policy(2000, summary_prompt="Squeeze it: {max_words} words.")
        )
        await send(client, conv["id"], "hello")
        r = await client.post(f"/conversations/{conv['id']}/compact")
        assert r.status_code == 201, r.text
    system = rec.summarizations()[-1].system or ""
    assert system.startswith("Squeeze it: ") and system.endswith(" words.")
    assert "{max_words}" not in system


async def test_compact_and_policy_refusals(tmp_path: Path) -> None:
    async with recorded_app(make_settings(tmp_path)) as (client, _, _):
        r = await client.post(
            "/conversations",
            json={
                "pack_id": "general-assistant",
                "prompt_name": "chat",
                "context_policy": policy(2000, summarizer={"provider": "nope"}),
            },
        )
        assert_problem(r, 422, "validation_error")
        r = await client.post(
            "/conversations",
            json={
                "pack_id": "general-assistant",
                "prompt_name": "chat",
                "context_policy": {"strategy": "truncate_oldest", "summary_prompt": "x"},
            },
        )
        assert_problem(r, 422, "validation_error")
        plain = await create_conv(client)
        assert_problem(
            await client.post(f"/conversations/{plain['id']}/compact"), 422, "invalid_state"
        )
        empty = await create_conv(client, context_policy=policy(2000))
        assert_problem(
            await client.post(f"/conversations/{empty['id']}/compact"), 422, "invalid_state"
        )
        other = await create_conv(
            client,
            context_policy=policy(2000, summarizer={"provider": "mock", "model": "mock-small"}),
        )
        await send(client, other["id"], "hello")
        made = (await client.post(f"/conversations/{other['id']}/compact")).json()
    assert made["provider"] == "mock" and made["model"] == "mock-small"


async def test_compact_refuses_an_unknown_body_field_and_takes_an_empty_one(
    tmp_path: Path,
) -> None:
    async with recorded_app(make_settings(tmp_path)) as (client, _, recorder):
        conv = await create_conv(client, context_policy=policy(2000))
        cid = conv["id"]
        await send(client, cid, "hello")
        r = await client.post(f"/conversations/{cid}/compact", json={"force": True})
        body = assert_problem(r, 422, "validation_error")
        assert body["errors"][0]["loc"][-1] == "force"
        assert recorder.summarizations() == []
        assert (await client.get(f"/conversations/{cid}/summaries")).json()["data"] == []
        r = await client.post(f"/conversations/{cid}/compact", json={})
        assert r.status_code == 201, r.text
