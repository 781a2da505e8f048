"""PostgreSQL: which run log writes notify the followers' channel (`LISTEN/NOTIFY`,
`app.coordination.sql_listen`). A run's creation does not (no follower can wait for a run
that does not exist yet: one that reads no record gives up); its events do, so a follower
on another instance that started after the creation still wakes for each batch."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any

import asyncpg
import pytest

from app.coordination.base import EventsExpired
from app.coordination.sql_listen import EVENTS_CHANNEL
from app.coordination.sql_runs import SqlRunLog
from app.domain import RunStatus
from tests.contract.coordination import test_coordination_sql_async_commit as async_commit

pytestmark = pytest.mark.postgres


# the PostgreSQL scratch database and engine of the commit-mode tests
pg_url = async_commit.pg_url
engine = async_commit.engine
new_record = async_commit.new_record


async def _listening(engine: Any, stack: AsyncExitStack) -> list[str]:
    """The payloads notified on the events channel from now on (a listener of its own)."""
    got: list[str] = []
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(url)
    stack.push_async_callback(conn.close)
    await conn.add_listener(EVENTS_CHANNEL, lambda *args: got.append(args[3]))
    return got


async def test_a_runs_creation_notifies_nobody_its_events_do(engine: Any) -> None:
    runs = SqlRunLog(engine)
    async with AsyncExitStack() as stack:
        got = await _listening(engine, stack)
        record = new_record("run-1")
        await runs.create_and_publish(record, "run.created", {"run": "run-1"})
        await asyncio.sleep(0.2)  # (a notification would be delivered by now)
        assert got == []
        follower = SqlRunLog(engine)  # another instance, following after the creation
        seen = asyncio.create_task(_types(follower, "run-1"))
        await runs.publish("run-1", "message.created", {"a": 1})
        done = record.model_copy(
            update={"run": record.run.model_copy(update={"status": RunStatus.completed})}
        )
        await runs.save_and_publish(done, "run.completed", {})
        assert await asyncio.wait_for(seen, 5) == [
            "run.created",
            "message.created",
            "run.completed",
        ]
        await asyncio.sleep(0.2)  # (the follower woke for them: delivered by now)
        assert got and set(got) == {"run-1"}  # the events' batches
        await follower.close()
    await runs.close()


async def _types(follower: SqlRunLog, run_id: str) -> list[str]:
    return [event.type async for event in follower.follow(run_id, after=0)]


async def test_a_follower_of_a_run_not_created_yet_gives_up(engine: Any) -> None:
    follower = SqlRunLog(engine)
    with pytest.raises(EventsExpired):
        async for _ in follower.follow("run-unborn", after=0):
            pass
    await follower.close()
