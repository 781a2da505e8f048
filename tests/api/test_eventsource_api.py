"""What a browser `EventSource` needs from `GET .../runs/{id}/events`: ids on every event
(the snapshot included), a `retry:` hint, and 204 once it has seen the end, so it stops
reconnecting instead of replaying the run every few seconds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from app.api.sse import SSE_RETRY_MS
from app.settings import Settings
from tests.api.backends import ALL_BACKENDS, state_url_for
from tests.api.helpers import assert_problem, create_conv, send
from tests.api.sse_parse import parse_sse
from tests.conftest import running_app


async def _finished_run(client: httpx.AsyncClient) -> tuple[str, list[str]]:
    conv = await create_conv(client)
    r = await client.post(
        f"/conversations/{conv['id']}/messages", json={"content": "one two", "stream": True}
    )
    events = parse_sse(r.text)
    url = f"/conversations/{conv['id']}/runs/{events[0].data['run']['id']}/events"
    return url, [e.id or "" for e in events]


async def test_reconnect_at_or_past_the_end_is_204(client: httpx.AsyncClient) -> None:
    url, ids = await _finished_run(client)
    last = int(ids[-1])
    # any number past the end, however long (5,000 digits was a 500: outside tester T1)
    for header in (str(last), str(last + 5), "1" * 5000):
        r = await client.get(url, headers={"Last-Event-ID": header})
        assert r.status_code == 204 and r.content == b"", header
    assert (await client.get(url, params={"after": last})).status_code == 204
    r = await client.get(url, headers={"Last-Event-ID": str(last - 1)})
    assert r.status_code == 200
    assert [(e.id, e.event) for e in parse_sse(r.text)] == [(str(last), "run.completed")]
    # `?after=` wins over the header, as for a live stream
    r = await client.get(url, params={"after": 0}, headers={"Last-Event-ID": str(last)})
    assert [e.id for e in parse_sse(r.text)] == ids


async def test_the_first_event_carries_a_retry_hint(client: httpx.AsyncClient) -> None:
    conv = await create_conv(client)
    r = await client.post(
        f"/conversations/{conv['id']}/messages", json={"content": "hint", "stream": True}
    )
    body = r.text.replace("\r\n", "\n")
    assert body.count("retry:") == 1
    first_block = body.split("\n\n", 1)[0]
    assert f"retry: {SSE_RETRY_MS}" in first_block and "event: run.created" in first_block


async def test_last_event_id_sent_twice_is_refused(client: httpx.AsyncClient) -> None:
    """Tester-2 U7: the first of two lines was taken (a proxy keeping the other resumes
    elsewhere), as an Idempotency-Key sent twice is refused."""
    url, _ = await _finished_run(client)
    r = await client.get(url, headers=[("Last-Event-ID", "2"), ("Last-Event-ID", "5")])
    problem = assert_problem(r, 422, "validation_error")
    assert problem["errors"][0]["loc"] == ["header", "Last-Event-ID"]


async def test_snapshot_and_its_terminal_event_carry_ids(
    settings_factory: Callable[..., Settings],
) -> None:
    async with running_app(settings_factory(run_event_retention_s=0.05)) as client:
        conv = await create_conv(client)
        turn = await send(client, conv["id"], "remember me")
        await asyncio.sleep(0.1)
        await send(client, conv["id"], "a later run lets the log drop expired events")
        url = f"/conversations/{conv['id']}/runs/{turn['run_id']}/events"
        r = await client.get(url, headers={"Last-Event-ID": "1"})
        events = parse_sse(r.text)
        assert [e.event for e in events] == ["run.snapshot", "run.completed"]
        assert events[0].id is not None and events[0].id == events[1].id
        # an EventSource reconnects with that id: the run is over, so it stops
        r = await client.get(url, headers={"Last-Event-ID": events[1].id})
        assert r.status_code == 204
        # one that never saw anything still gets the snapshot
        r = await client.get(url)
        assert [e.event for e in parse_sse(r.text)] == ["run.snapshot", "run.completed"]


@pytest.mark.parametrize("backend", ALL_BACKENDS)
async def test_a_seq_past_any_64_bit_seq_is_the_end_or_a_422(
    backend: str, tmp_path: Path, settings_factory: Callable[..., Settings]
) -> None:
    """PostgreSQL's seq column is 64-bit: `?after=2**63` was a 500 there (SQLite: 204).
    The header is a hint, read as "after everything"; the query parameter is checked."""
    async with (
        state_url_for(backend, tmp_path) as state_url,
        running_app(settings_factory(state_url=state_url)) as client,
    ):
        url, _ = await _finished_run(client)
        for header in (str(2**63), str(10**30)):
            r = await client.get(url, headers={"Last-Event-ID": header})
            assert r.status_code == 204, (header, r.text)
        for after in (2**63, 10**30):
            assert_problem(await client.get(url, params={"after": after}), 422, "validation_error")
        assert (await client.get(url, params={"after": 2**63 - 1})).status_code == 204


async def test_an_explicit_stream_false_wins_over_accept(client: httpx.AsyncClient) -> None:
    """`Accept: text/event-stream` asks for SSE only when the body does not say (outside
    tester T10: `"stream": false` was overridden by the header)."""
    conv = await create_conv(client)
    url = f"/conversations/{conv['id']}/messages"
    sse = {"Accept": "application/json, text/event-stream"}
    r = await client.post(url, json={"content": "x", "stream": False}, headers=sse)
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["status"] == "completed"
    r = await client.post(url, json={"content": "y"}, headers=sse)
    assert r.headers["content-type"].startswith("text/event-stream")
    assert parse_sse(r.text)[-1].event == "run.completed"
