"""The retention rule of `auto` checkpoints (`CheckpointPolicy`), as a pure function.

Deterministic by turn number: whether an old checkpoint survives thinning depends only on
its own turn number (a multiple of `every_n_turns * keep_every_nth`), never on its
position among the others, so pruning one never changes the fate of another and the kept
set does not drift from run to run. Age is measured from `created_at` against `now`
(the caller's clock), so tests pin the result with an injected clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from app.domain.checkpoint import Checkpoint, CheckpointPolicy


def on_thinning_grid(turn: int | None, policy: CheckpointPolicy) -> bool:
    """Whether an auto checkpoint of this turn outlives `keep_all_hours`."""
    return turn is not None and turn % (policy.every_n_turns * policy.keep_every_nth) == 0


def retained(
    checkpoints: Iterable[Checkpoint], policy: CheckpointPolicy, now: datetime
) -> list[Checkpoint]:
    """The `auto` checkpoints the policy keeps, oldest first. Checkpoints of other kinds
    are never pruned and are left out of the result (callers do not pass them)."""
    keep_all_after = now - timedelta(hours=policy.keep_all_hours)
    too_old = None if policy.max_age_days is None else now - timedelta(days=policy.max_age_days)
    kept = [
        cp
        for cp in checkpoints
        if cp.kind == "auto"
        and (too_old is None or cp.created_at > too_old)
        and (cp.created_at > keep_all_after or on_thinning_grid(cp.turn, policy))
    ]
    kept.sort(key=lambda cp: (cp.created_at, cp.turn or 0, cp.id))
    return kept[-policy.max_auto :]


def to_prune(
    checkpoints: Iterable[Checkpoint], policy: CheckpointPolicy, now: datetime
) -> list[Checkpoint]:
    """The `auto` checkpoints the policy drops (the complement of `retained`)."""
    autos = [cp for cp in checkpoints if cp.kind == "auto"]
    keep = {cp.id for cp in retained(autos, policy, now)}
    return [cp for cp in autos if cp.id not in keep]
