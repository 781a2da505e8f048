"""The retention rule of auto checkpoints (`app.domain.checkpoint_retention`), and the
rule applied turn after turn by `AutoCheckpoints` over a scripted 500-turn run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.domain import Checkpoint, Conversation, Message, Role
from app.domain.checkpoint import CheckpointPolicy
from app.domain.checkpoint_retention import retained, to_prune
from app.domain.incarnation import Incarnation
from app.errors import StoreUnavailable
from app.manager.auto_checkpoints import AutoCheckpoints
from app.manager.stats import Stats
from app.stores.memory import MemoryStore
from tests.conftest import make_settings

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _auto(turn: int, hours: float, kind: str = "auto") -> Checkpoint:
    return Checkpoint(
        id=f"cp{turn:05d}{kind}",
        conversation_id="c",
        kind=kind,  # type: ignore[arg-type]
        message_id=f"m{turn}",
        message_count=2 * turn,
        created_at=T0 + timedelta(hours=hours),
        turn=turn if kind == "auto" else None,
    )


def _turns(cps: list[Checkpoint]) -> list[int | None]:
    return [cp.turn for cp in cps]


def test_recent_checkpoints_are_all_kept_and_older_ones_only_on_the_turn_grid() -> None:
    policy = CheckpointPolicy(
        every_n_turns=2, keep_all_hours=10, keep_every_nth=3, max_age_days=None, max_auto=100
    )
    # turn t made at hour t; now = hour 20: the last 10 hours are (10, 20]
    cps = [_auto(t, t) for t in range(2, 21, 2)]
    kept = retained(cps, policy, T0 + timedelta(hours=20))
    # older than 10 h: only multiples of 2 * 3 = 6 survive (6); 12..20 are recent
    assert _turns(kept) == [6, 12, 14, 16, 18, 20]
    assert _turns(to_prune(cps, policy, T0 + timedelta(hours=20))) == [2, 4, 8, 10]


def test_the_grid_counts_turn_numbers_so_pruning_does_not_shift_survivors() -> None:
    policy = CheckpointPolicy(
        every_n_turns=5, keep_all_hours=0, keep_every_nth=2, max_age_days=None, max_auto=100
    )
    now = T0 + timedelta(hours=1000)
    cps = [_auto(t, t) for t in range(5, 101, 5)]
    first = retained(cps, policy, now)
    assert _turns(first) == list(range(10, 101, 10))
    # pruning again what survived (or after losing some) never drops more of them
    assert retained(first, policy, now) == first
    assert _turns(retained(first[3:], policy, now)) == list(range(40, 101, 10))


def test_max_age_drops_old_checkpoints_even_on_the_grid_at_the_exact_boundary() -> None:
    policy = CheckpointPolicy(
        every_n_turns=1, keep_all_hours=0, keep_every_nth=1, max_age_days=1, max_auto=100
    )
    now = T0 + timedelta(hours=48)
    cps = [_auto(t, t) for t in range(20, 31)]
    # exactly 24 h old (made at hour 24) is too old; 25 onward stays
    assert _turns(retained(cps, policy, now)) == [25, 26, 27, 28, 29, 30]


def test_max_auto_drops_the_oldest_first() -> None:
    policy = CheckpointPolicy(every_n_turns=1, keep_all_hours=100, max_age_days=None, max_auto=3)
    cps = [_auto(t, t) for t in (4, 1, 3, 2, 5)]
    assert _turns(retained(cps, policy, T0 + timedelta(hours=6))) == [3, 4, 5]


def test_other_kinds_are_never_pruned_nor_counted() -> None:
    policy = CheckpointPolicy(every_n_turns=1, keep_all_hours=0, max_age_days=1, max_auto=1)
    now = T0 + timedelta(days=100)
    cps = [_auto(1, 1, "manual"), _auto(2, 2, "snapshot"), _auto(3, 3), _auto(4, 4)]
    assert to_prune(cps, policy, now) == [cps[2], cps[3]]
    assert retained(cps, policy, now) == []


@pytest.mark.parametrize(
    "bad",
    [
        {"every_n_turns": 0},
        {"keep_every_nth": 0},
        {"max_auto": 0},
        {"keep_all_hours": -1},
        {"max_age_days": 0},
        {"max_age_days": 1, "keep_all_hours": 25},
        {"unknown": 1},
    ],
)
def test_policy_refuses_bad_values(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        CheckpointPolicy.model_validate(bad)


def _conversation(policy: CheckpointPolicy) -> Conversation:
    return Conversation(
        id="c",
        user_id="u",
        pack_id="p",
        pack_version="1",
        prompt_name="chat",
        provider="mock",
        model="m",
        created_at=T0,
        updated_at=T0,
        lineage_id="c",
        checkpoint_policy=policy,
    )


async def test_scripted_500_turn_run_keeps_exactly_the_expected_auto_checkpoints(
    tmp_path: Path,
) -> None:
    """Turn k commits at hour k; policy: every 5 turns, keep all of the last 24 h, beyond
    that every 4th (turn numbers that are multiples of 20), nothing older than 10 days
    (240 h), at most 12. A manual checkpoint at turn 3 and a snapshot at turn 250 stay.

    Expected after turn 500 (now = hour 500), worked out by hand:
    * made: turns 5, 10, ..., 500, each at hour = turn;
    * age: kept only if made after hour 500 - 240 = 260, so 260 itself goes: 265..500;
    * last 24 h (after hour 476): 480, 485, 490, 495, 500 all stay;
    * older than 24 h: multiples of 20 only: 280, 300, ..., 460 (ten);
    * 15 left, max 12: the three oldest (280, 300, 320) go.
    Pruning turn by turn gives the same set as pruning once at the end: at any hour
    m <= 500 at most 11 kept checkpoints are newer than turn 340 (the grid turns 360..460
    plus at most five recent ones), so max_auto never dropped one of the final twelve
    earlier, and age and the grid only ever drop more as time goes on.
    """
    store = MemoryStore()
    policy = CheckpointPolicy(
        every_n_turns=5, keep_all_hours=24, keep_every_nth=4, max_age_days=10, max_auto=12
    )
    conv = await store.create_conversation(_conversation(policy))
    hour = [0]
    stats = Stats()
    auto = AutoCheckpoints(
        store=store,
        settings=make_settings(tmp_path),
        stats=stats,
        clock=lambda: T0 + timedelta(hours=hour[0]),
    )
    parent: str | None = None
    for turn in range(1, 501):
        hour[0] = turn
        user = Message(
            id=f"u{turn}",
            parent_id=parent,
            conversation_id="c",
            role=Role.user,
            created_at=T0,
            depth=2 * turn - 2,
            turn=turn,
        )
        reply = Message(
            id=f"a{turn}",
            parent_id=user.id,
            conversation_id="c",
            role=Role.assistant,
            created_at=T0,
            depth=2 * turn - 1,
            turn=turn,
        )
        conv = await store.append_messages(
            conv, [user, reply], usage=reply.usage, cost_usd=0, now=T0
        )
        made = await auto.after_commit(conv, [user, reply], paused=False)
        assert (made is not None) == (turn % 5 == 0)
        if turn in (3, 250):
            await store.create_checkpoint(
                _auto(turn, turn, "manual" if turn == 3 else "snapshot").model_copy(
                    update={"conversation_id": "c", "message_id": reply.id}
                )
            )
        parent = reply.id
    autos = await store.list_checkpoints("c", kind="auto")
    assert sorted(cp.turn or 0 for cp in autos) == [
        340, 360, 380, 400, 420, 440, 460, 480, 485, 490, 495, 500,
    ]  # fmt: skip
    newest = max(autos, key=lambda cp: cp.created_at)
    assert newest.message_id == "a500" and newest.message_count == 1000
    others = await store.list_checkpoints("c")
    assert sorted(cp.kind for cp in others if cp.kind != "auto") == ["manual", "snapshot"]


class _FailingCheckpoints(MemoryStore):
    async def create_checkpoint(
        self, checkpoint: Checkpoint, *, incarnation: Incarnation | None = None
    ) -> Checkpoint:
        raise StoreUnavailable("checkpoint table unreachable")


async def test_a_failing_auto_checkpoint_is_logged_and_counted_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = _FailingCheckpoints()
    policy = CheckpointPolicy(every_n_turns=1)
    conv = await store.create_conversation(_conversation(policy))
    stats = Stats()
    auto = AutoCheckpoints(
        store=store, settings=make_settings(tmp_path), stats=stats, clock=lambda: T0
    )
    reply = Message(
        id="a1", parent_id=None, conversation_id="c", role=Role.assistant, created_at=T0, turn=1
    )
    with caplog.at_level("WARNING", logger="parley.checkpoints"):
        assert await auto.after_commit(conv, [reply], paused=False) is None
    assert "the turn stands" in caplog.text
    assert b'parley_auto_checkpoints_total{outcome="failed"} 1.0' in stats.prometheus(active_runs=0)
    # a paused commit (waiting on tools) is not the end of a turn: nothing is tried
    assert await auto.after_commit(conv, [reply], paused=True) is None
    assert b'outcome="failed"} 1.0' in stats.prometheus(active_runs=0)
