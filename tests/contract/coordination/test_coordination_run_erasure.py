"""RunLog contract: `erase` removes the ended runs of one conversation (of one lineage),
their records and events, from every instance's view; live runs are left and named."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from app.coordination.base import EventsExpired, RunLog, RunRecord, TurnResult
from app.domain import Message, Run, RunStatus
from tests.contract.coordination.conftest import RunsEnv


def record_of(run_id: str, conversation_id: str, lineage_id: str) -> RunRecord:
    run = Run(
        id=run_id, conversation_id=conversation_id, created_at=datetime(2026, 1, 1, tzinfo=UTC)
    )
    return RunRecord(run=run, lineage_id=lineage_id)


async def run_to_end(runs: RunLog, record: RunRecord) -> None:
    """A run as the executor writes it: created with its first event, a delta holding
    text, then its finished record (with the committed text) and its terminal event."""
    await runs.create_and_publish(record, "run.created", {"run": record.run.id})
    await runs.publish(record.run.id, "message.delta", {"text": "the secret"})
    message = Message(
        id=f"m-{record.run.id}",
        parent_id=None,
        conversation_id=record.run.conversation_id,
        role="assistant",
        content="the secret",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    done = record.model_copy(
        update={
            "run": record.run.model_copy(update={"status": RunStatus.completed}),
            "result": TurnResult(messages=[message], finish_reason="stop"),
        }
    )
    await runs.save_and_publish(done, "run.completed", {"run": done.run.id})


async def gone(runs: RunLog, run_id: str) -> bool:
    if await runs.get(run_id) is not None:
        return False
    try:
        async for _ in runs.follow(run_id, after=0):
            return False
    except EventsExpired as expired:
        return expired.last_seq == 0
    return False


async def kept(runs: RunLog, run_id: str) -> bool:
    if await runs.get(run_id) is None:
        return False
    events = [e async for e in runs.follow(run_id, after=0)]
    return [e.type for e in events][-1:] == ["run.completed"] and len(events) == 3


async def test_ended_runs_of_the_conversation_are_erased_for_every_instance(
    runs_env: RunsEnv,
) -> None:
    runs, other = await runs_env.new(), await runs_env.new()
    mine = [record_of(f"run-{i}", "conv-1", "lin-1") for i in range(3)]
    fork = record_of("run-fork", "conv-fork", "lin-1")  # same lineage, another conversation
    namesake = record_of("run-old", "conv-1", "lin-0")  # same id, an earlier lineage
    stranger = record_of("run-other", "conv-2", "lin-2")
    for record in [*mine, fork, namesake, stranger]:
        await run_to_end(runs, record)

    assert await other.erase("conv-1", "lin-1") == []

    for record in mine:
        assert await gone(other, record.run.id)
        assert await gone(runs, record.run.id)
    for record in (fork, namesake, stranger):
        assert await kept(other, record.run.id)
    assert await runs.erase("conv-1", "lin-1") == []  # again: nothing left, no error


async def test_without_a_lineage_every_lineage_of_the_id_is_erased(runs_env: RunsEnv) -> None:
    runs = await runs_env.new()
    old, new = record_of("run-old", "conv-1", "lin-0"), record_of("run-new", "conv-1", "lin-1")
    other = record_of("run-x", "conv-10", "lin-1")  # an id with conv-1 as its prefix
    for record in (old, new, other):
        await run_to_end(runs, record)
    assert await runs.erase("conv-1", None) == []
    assert await gone(runs, old.run.id) and await gone(runs, new.run.id)
    assert await kept(runs, other.run.id)


async def test_a_live_run_is_named_and_left_until_it_ends(runs_env: RunsEnv) -> None:
    runs, other = await runs_env.new(), await runs_env.new()
    ended, live = record_of("run-1", "conv-1", "lin-1"), record_of("run-2", "conv-1", "lin-1")
    await run_to_end(runs, ended)
    await runs.create_and_publish(live, "run.created", {"run": live.run.id})
    await runs.publish(live.run.id, "message.delta", {"text": "still typing"})

    assert await other.erase("conv-1", "lin-1") == [live.run.id]
    assert await gone(other, ended.run.id)
    assert await other.get(live.run.id) == live  # its executor still writes it

    done = live.model_copy(update={"run": live.run.model_copy(update={"status": RunStatus.failed})})
    await runs.save_and_publish(done, "run.failed", {"run": live.run.id})
    assert await other.erase("conv-1", "lin-1") == []
    assert await gone(other, live.run.id)


async def test_a_terminal_record_without_its_terminal_event_is_live(runs_env: RunsEnv) -> None:
    """The end's record landed but its event not yet (`RunEndRecorder` retries it):
    erasing now would make the retried publish find no run."""
    runs = await runs_env.new()
    record = record_of("run-1", "conv-1", "lin-1")
    await runs.create_and_publish(record, "run.created", {})
    ended = record.run.model_copy(update={"status": RunStatus.completed})
    done = record.model_copy(update={"run": ended})
    await runs.save(done)
    assert await runs.erase("conv-1", "lin-1") == ["run-1"]
    await runs.publish("run-1", "run.completed", {})
    assert await runs.erase("conv-1", "lin-1") == []
    assert await gone(runs, "run-1")


async def test_with_an_incarnation_only_its_runs_are_erased(runs_env: RunsEnv) -> None:
    """A fork deleted and made again under its id has its id and lineage (outside tester
    T1): erasing the deleted one's runs (after its live ones ended, up to 15 min later)
    must leave the new one's. Records from before incarnations (no created_at) are the
    deleted one's as before; a live run of the new one is not named."""
    runs = await runs_env.new()
    bob, alice = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)

    def of(run_id: str, created: datetime | None) -> RunRecord:
        return record_of(run_id, "conv-1", "lin-1").model_copy(
            update={"conversation_created_at": created}
        )

    deleted, legacy, successor = of("run-bob", bob), of("run-legacy", None), of("run-alice", alice)
    for record in (deleted, legacy, successor):
        await run_to_end(runs, record)
    live = of("run-alice-live", alice)
    await runs.create_and_publish(live, "run.created", {"run": live.run.id})

    assert await runs.erase("conv-1", "lin-1", created_at=bob) == []
    assert await gone(runs, deleted.run.id) and await gone(runs, legacy.run.id)
    assert await kept(runs, successor.run.id)
    assert await runs.get(live.run.id) is not None
    assert await runs.erase("conv-1", "lin-1", created_at=alice) == [live.run.id]
    assert await gone(runs, successor.run.id)


async def test_an_incarnation_is_told_by_its_instant_whatever_the_offset(
    runs_env: RunsEnv,
) -> None:
    """`created_at` given with another offset than the record's (a conversation imported
    with an offset: its store's copy and the `DeletedConversation` of a user erasure may
    write it differently) names the same incarnation (review R-C: Redis compared the JSON
    text, so a user erasure left the runs)."""
    runs = await runs_env.new()
    utc = datetime(2026, 1, 1, 10, 0, 0, 123456, tzinfo=UTC)
    plus_two = utc.astimezone(timezone(timedelta(hours=2)))
    for run_id, recorded, asked in (("run-1", plus_two, utc), ("run-2", utc, plus_two)):
        record = record_of(run_id, f"conv-{run_id}", "lin-1")
        record = RunRecord(**{**dict(record), "conversation_created_at": recorded})
        await run_to_end(runs, record)
        other = asked + timedelta(microseconds=1)  # another incarnation is still told apart
        assert await runs.erase(f"conv-{run_id}", "lin-1", created_at=other) == []
        assert await kept(runs, run_id)
        assert await runs.erase(f"conv-{run_id}", "lin-1", created_at=asked) == []
        assert await gone(runs, run_id)
