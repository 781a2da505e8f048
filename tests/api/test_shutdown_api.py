"""Graceful shutdown (issue 8): once a shutdown signal reaches the manager, new turns get
503 `shutting_down`; running turns finish within `PARLEY_SHUTDOWN_GRACE_S` or are
cancelled (`run.cancelled`, nothing committed); every stream ends with a terminal event."""

from __future__ import annotations

import asyncio
import signal
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.manager.manager import ConversationManager
from app.signals import chain_shutdown_signals
from tests.api.backends import state_url_for
from tests.api.helpers import assert_problem, create_conv
from tests.api.sse_parse import parse_sse
from tests.conftest import app_and_manager, make_settings

LONG = " ".join(f"w{i}" for i in range(200))  # the mock echoes it: 200 deltas


def app_with_manager(
    tmp_path: Path, **overrides: Any
) -> AbstractAsyncContextManager[tuple[httpx.AsyncClient, ConversationManager]]:
    return app_and_manager(make_settings(tmp_path, **overrides))


async def stream(client: httpx.AsyncClient, conv: str, content: str) -> list[str]:
    r = await client.post(
        f"/conversations/{conv}/messages", json={"content": content, "stream": True}
    )
    assert r.status_code == 200, r.text
    return [e.event for e in parse_sse(r.text)]


async def until_running(manager: ConversationManager, n: int) -> None:
    for _ in range(500):
        if manager.runs.active >= n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{manager.runs.active} runs active, expected {n}")


async def until_admitting(manager: ConversationManager) -> None:
    for _ in range(1000):
        if manager.runs._admitting:
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the send was never being admitted")


async def test_drain_refuses_new_turns_finishes_short_ones_and_cancels_the_rest(
    tmp_path: Path,
) -> None:
    async with app_with_manager(tmp_path, mock_delay_ms=20, shutdown_grace_s=1.0) as (
        client,
        manager,
    ):
        short, long = await create_conv(client), await create_conv(client)
        short_stream = asyncio.create_task(stream(client, short["id"], "just a few words"))
        long_stream = asyncio.create_task(stream(client, long["id"], LONG))
        await until_running(manager, 2)
        manager.begin_shutdown()
        r = await client.post(f"/conversations/{short['id']}/messages", json={"content": "x"})
        body = assert_problem(r, 503, "shutting_down")
        assert r.headers["retry-after"] == "1" and "shutting down" in body["detail"]
        short_events, long_events = await asyncio.wait_for(
            asyncio.gather(short_stream, long_stream), timeout=20
        )
        assert short_events[-1] == "run.completed"
        assert long_events[-1] == "run.cancelled"
        assert long_events.count("run.cancelled") == 1
        got = (await client.get(f"/conversations/{short['id']}")).json()
        assert got["message_count"] == 2
        got = (await client.get(f"/conversations/{long['id']}")).json()
        assert got["message_count"] == 0 and got["head_message_id"] is None
        manager.begin_shutdown()  # again: nothing changes
        assert manager.runs.active == 0


async def test_a_drain_cancelled_send_answers_shutting_down_and_its_retry_runs_once(
    tmp_path: Path,
) -> None:
    """The non-streaming send cut by the drain is told to retry (503), and the cancelled
    run freed its key: the retry (after the restart) runs it, once."""
    async with app_with_manager(tmp_path, mock_delay_ms=20, shutdown_grace_s=0.2) as (
        client,
        manager,
    ):
        conv = await create_conv(client)
        headers = {"Idempotency-Key": "drained"}
        path = f"/conversations/{conv['id']}/messages"
        first = asyncio.create_task(client.post(path, json={"content": LONG}, headers=headers))
        await until_running(manager, 1)
        manager.begin_shutdown()
        # 503 shutting_down (retry), not 409 run_cancelled (what a client's own cancel gets)
        body = assert_problem(await first, 503, "shutting_down")
        assert "retry" in body["detail"]
    async with app_with_manager(tmp_path, mock_delay_ms=0) as (client, _):
        r = await client.post(path, json={"content": LONG}, headers=headers)
        assert r.status_code == 200, r.text
        again = await client.post(path, json={"content": LONG}, headers=headers)
        assert again.json()["run_id"] == r.json()["run_id"]
        got = (await client.get(f"/conversations/{conv['id']}")).json()
        assert got["message_count"] == 2


@pytest.mark.parametrize("backend", ["postgres", "redis"])  # a coordination both share
async def test_a_retry_attached_on_another_instance_also_answers_shutting_down(
    backend: str, tmp_path: Path
) -> None:
    """Instance A holds a same-key retry attached to a run of instance B; B's drain cancels
    the run. A learns why from the run's record (error `shutting_down`), so it answers
    503 with Retry-After like B, not 409 `run_cancelled` (a client's cancel)."""
    async with (
        state_url_for(backend, tmp_path) as url,
        app_with_manager(tmp_path, state_url=url, mock_delay_ms=0) as (a, a_manager),
    ):
        async with app_with_manager(
            tmp_path, state_url=url, mock_delay_ms=20, shutdown_grace_s=0.5
        ) as (b, b_manager):
            conv = await create_conv(b)
            headers = {"Idempotency-Key": "drained-elsewhere"}
            path = f"/conversations/{conv['id']}/messages"
            on_b = asyncio.create_task(b.post(path, json={"content": LONG}, headers=headers))
            await until_running(b_manager, 1)
            (run_id,) = b_manager.runs._tasks  # the one run B executes
            on_a = asyncio.create_task(a.post(path, json={"content": LONG}, headers=headers))
            await asyncio.sleep(0.2)  # A attaches within B's grace (the run takes ~4 s)
            assert a_manager.runs.active == 0  # attached, not running it itself
            b_manager.begin_shutdown()
            assert_problem(await on_b, 503, "shutting_down")
            r = await asyncio.wait_for(on_a, timeout=20)
            body = assert_problem(r, 503, "shutting_down")
            assert r.headers["retry-after"] == "1" and "retry" in body["detail"]
        run = (await a.get(f"/conversations/{conv['id']}/runs/{run_id}")).json()
        assert run["status"] == "cancelled" and run["error"]["code"] == "shutting_down"
        got = (await a.get(f"/conversations/{conv['id']}")).json()
        assert got["message_count"] == 0  # nothing committed; the key is free again
        again = await a.post(path, json={"content": "after"}, headers=headers)
        assert again.status_code == 200, again.text


async def test_signal_handlers_are_chained_and_restored() -> None:
    seen: list[str] = []
    previous = signal.getsignal(signal.SIGTERM)

    def server_handler(signum: int, frame: object) -> None:
        seen.append("server")

    signal.signal(signal.SIGTERM, server_handler)
    try:
        restore = chain_shutdown_signals(lambda: seen.append("drain"))
        signal.raise_signal(signal.SIGTERM)
        await asyncio.sleep(0.01)  # the drain callback runs on the loop
        assert seen == ["server", "drain"]
        restore()
        assert signal.getsignal(signal.SIGTERM) is server_handler
    finally:
        signal.signal(signal.SIGTERM, previous)


async def test_without_a_server_handler_nothing_is_installed() -> None:
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        restore = chain_shutdown_signals(lambda: None)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        restore()
    finally:
        signal.signal(signal.SIGTERM, previous)


async def test_a_send_being_admitted_when_the_drain_begins_is_waited_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its run starts after the drain began: the drain still waits for it (not closing
    the store under it), and cancels it cleanly once the grace is over."""
    async with app_with_manager(tmp_path, mock_delay_ms=20, shutdown_grace_s=5.0) as (
        client,
        manager,
    ):
        runs = manager.coordinator.runs
        create = runs.create

        async def slow_create(record: Any) -> None:
            await asyncio.sleep(0.3)
            await create(record)

        monkeypatch.setattr(runs, "create", slow_create)
        conv = await create_conv(client)
        send = asyncio.create_task(
            client.post(f"/conversations/{conv['id']}/messages", json={"content": "hello"})
        )
        await until_admitting(manager)
        manager.begin_shutdown()
        r = await send
        assert r.status_code == 200, r.text
        got = (await client.get(f"/conversations/{conv['id']}")).json()
        assert got["message_count"] == 2
    async with app_with_manager(tmp_path, mock_delay_ms=20, shutdown_grace_s=0.0) as (
        client,
        manager,
    ):
        runs = manager.coordinator.runs
        create = runs.create
        monkeypatch.setattr(runs, "create", slow_create)
        conv = await create_conv(client)
        send = asyncio.create_task(
            client.post(f"/conversations/{conv['id']}/messages", json={"content": LONG})
        )
        await until_admitting(manager)
        manager.begin_shutdown()
        assert_problem(await send, 503, "shutting_down")
        got = (await client.get(f"/conversations/{conv['id']}")).json()
        assert got["message_count"] == 0
