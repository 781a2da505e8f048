"""How often a turn reads its conversation from the store: once (the request's read,
reused by the executor) when the turn lock proves no turn committed since
(`TurnLocks.stamp`: in-process locks, memory and SQLite; Redis and PostgreSQL lease locks
once this instance released the conversation's lock, so from its second turn on), twice
otherwise;
a turn enqueued behind another always reads again, and so continues after the other's
reply."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from app.main import create_app
from app.manager.manager import ConversationManager
from app.settings import Settings
from tests.api.backends import ALL_BACKENDS, state_url_for
from tests.api.helpers import create_conv, send
from tests.api.test_streaming_api import until_busy


@asynccontextmanager
async def counting_app(
    settings: Settings,
) -> AsyncIterator[tuple[httpx.AsyncClient, ConversationManager, list[str]]]:
    """The app, its manager, and the ids of every `get_conversation` its store served."""
    app = create_app(settings)
    async with app.router.lifespan_context(app) as state:
        assert state is not None
        manager: ConversationManager = state["manager"]
        reads: list[str] = []
        get = manager.store.get_conversation

        async def counted(conversation_id: str, **kwargs: Any) -> Any:
            reads.append(conversation_id)
            return await get(conversation_id, **kwargs)

        manager.store.get_conversation = counted  # type: ignore[method-assign]

        async def with_state(scope: Scope, receive: Receive, send: Send) -> None:
            scope["state"] = dict(state)
            await app(scope, receive, send)

        transport = httpx.ASGITransport(app=with_state)
        async with httpx.AsyncClient(transport=transport, base_url="http://parley.test") as c:
            yield c, manager, reads


# in-process locks know their stamps from the start; lease locks from their first release
READS_OF_3_TURNS = {"memory": 3, "sqlite": 3, "redis": 4, "postgres": 4}


@pytest.mark.parametrize("backend", ALL_BACKENDS)
async def test_sequential_turns_read_the_conversation_once_where_the_lock_can_tell(
    backend: str, tmp_path: Path, settings_factory: Callable[..., Settings]
) -> None:
    async with (
        state_url_for(backend, tmp_path) as url,
        counting_app(settings_factory(state_url=url)) as (client, manager, reads),
    ):
        cid = (await create_conv(client))["id"]
        reads.clear()
        turns = [await send(client, cid, f"turn {i}") for i in range(3)]
        assert len(reads) == READS_OF_3_TURNS[backend]
        assert manager.coordinator.locks.stamp(cid) is not None
        for before, after in itertools.pairwise(turns):  # each continues the last
            assert after["messages"][0]["parent_id"] == before["reply"]["id"]


@pytest.mark.parametrize("backend", ALL_BACKENDS)
async def test_a_turn_enqueued_behind_another_reads_again_and_continues_its_reply(
    backend: str, tmp_path: Path, settings_factory: Callable[..., Settings]
) -> None:
    async with (
        state_url_for(backend, tmp_path) as url,
        counting_app(settings_factory(state_url=url, mock_delay_ms=30)) as (client, _, reads),
    ):
        cid = (await create_conv(client))["id"]
        await send(client, cid, "warm-up")  # lease locks know a stamp from now on
        reads.clear()
        slow = asyncio.create_task(send(client, cid, "a b c d e f g h"))
        await until_busy(client, cid)
        before = len(reads)  # the slow turn's one read, and the polls of `until_busy`
        queued = await send(client, cid, "queued")  # enqueue, the default
        first = await slow
        assert queued["messages"][0]["parent_id"] == first["reply"]["id"]
        assert len(reads) - before == 2  # its request's read, then the executor's
