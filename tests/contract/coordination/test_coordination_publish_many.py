"""`RunLog.publish_many`: several events of one run in one step (a reply's last delta and
its `message.completed`), numbered and delivered as that many `publish` calls would be,
on every backend; on Redis one script, whatever else publishes meanwhile."""

from __future__ import annotations

import asyncio
from typing import Any

from app.coordination.redis_runs import RedisRunLog
from tests.contract.coordination.conftest import RunsEnv
from tests.contract.coordination.test_coordination_runs import collect, started


def _commands(runs: Any) -> list[str]:
    """The commands a Redis run log's client sends from now on."""
    sent: list[str] = []
    client = runs._client
    original = client.execute_command

    async def counted(*args: Any, **options: Any) -> Any:
        sent.append(str(args[0]).upper())
        return await original(*args, **options)

    client.execute_command = counted
    return sent


async def test_events_published_together_are_numbered_in_order(runs_env: RunsEnv) -> None:
    runs, other = await runs_env.new(), await runs_env.new()
    run_id = await started(runs)
    await runs.publish(run_id, "message.created", {"i": 1})
    warm = await started(runs, "run-0")  # (loads the script)
    await runs.publish_many(warm, [("message.delta", {}), ("message.delta", {})])
    sent = _commands(runs) if isinstance(runs, RedisRunLog) else None
    events = [("message.delta", {"i": 2}), ("message.completed", {"i": 3, "x": [None]})]
    published = await runs.publish_many(run_id, events)
    if sent is not None:
        assert sent == ["EVALSHA"], sent
    assert [(e.seq, e.type, e.data) for e in published] == [
        (2, "message.delta", {"i": 2}),
        (3, "message.completed", {"i": 3, "x": [None]}),
    ]
    assert [e.seq for e in await runs.publish_many(run_id, [])] == []
    (one,) = await runs.publish_many(run_id, [("message.delta", {"i": 4})])
    assert one.seq == 4
    await runs.publish_many(run_id, [("message.delta", {"i": 5}), ("run.completed", {"i": 6})])
    followed = await collect(other, run_id)
    assert [(e.seq, e.data["i"]) for e in followed] == [(n, n) for n in range(1, 7)]
    assert followed[-1].type == "run.completed"


async def test_a_live_follower_gets_them_in_order_among_other_publishes(
    runs_env: RunsEnv,
) -> None:
    runs = await runs_env.new()
    run_id = await started(runs)
    follower = asyncio.create_task(collect(runs, run_id))
    await asyncio.sleep(0.05)

    async def singles() -> None:
        for i in range(10):
            await runs.publish(run_id, "message.delta", {"single": i})

    async def pairs() -> None:
        for i in range(10):
            await runs.publish_many(
                run_id, [("message.delta", {"pair": i}), ("message.delta", {"pair": i})]
            )

    await asyncio.gather(singles(), pairs())
    await runs.publish(run_id, "run.completed", {})
    events = await asyncio.wait_for(follower, timeout=5)
    assert [e.seq for e in events] == list(range(1, 32))
    paired = [e.data["pair"] for e in events if "pair" in e.data]
    assert paired == [i for i in range(10) for _ in range(2)]
    if isinstance(runs, RedisRunLog):  # one script: nothing comes in between
        seqs: dict[int, list[int]] = {}
        for e in events:
            if "pair" in e.data:
                seqs.setdefault(e.data["pair"], []).append(e.seq)
        assert all(b == a + 1 for a, b in seqs.values()), seqs
