"""`TurnLocks.stamp` contract: a stamp taken while the lock is free equals a later lease's
`stamp_before` only if nobody held the lock in between, on this instance or another (the
executor then skips reading the conversation again, `app.manager.turns`). Backends in
`STAMPING` must give stamps; a wrong "equal" would let a turn start from a conversation
that misses another instance's turn."""

from __future__ import annotations

import asyncio

from app.coordination.base import TurnLocks
from app.coordination.lease_backend import LeaseTiming
from tests.contract.coordination.conftest import LocksEnv

STAMPING = ("memory", "redis", "redis-cluster", "sql-sqlite", "sql-postgres")


async def _stamp_after_a_turn(locks: TurnLocks, conversation_id: str) -> int | None:
    """The stamp after this instance took and freed the lock once (lease backends only
    know stamps their own releases left)."""
    await (await locks.acquire(conversation_id, "warm-up", wait_s=0)).release()
    return locks.stamp(conversation_id)


async def test_a_lease_right_after_the_stamp_matches_it(locks_env: LocksEnv) -> None:
    locks = await locks_env.new()
    seen = await _stamp_after_a_turn(locks, "c")
    if locks_env.name not in STAMPING:
        assert seen is None
        return
    assert seen is not None
    lease = await locks.acquire("c", "run-1", wait_s=0)
    assert lease.stamp_before == seen
    await lease.release()
    seen = locks.stamp("c")
    lease = await locks.acquire("c", "run-2", wait_s=5)  # the waiting path, too
    assert seen is not None and lease.stamp_before == seen
    await lease.release()


async def test_a_held_lock_has_no_stamp(locks_env: LocksEnv) -> None:
    locks = await locks_env.new()
    await _stamp_after_a_turn(locks, "c")
    lease = await locks.acquire("c", "run-1", wait_s=0)
    assert locks.stamp("c") is None, "its holder may still commit"
    await lease.release()
    assert (locks.stamp("c") is not None) == (locks_env.name in STAMPING)


async def test_a_lease_taken_in_between_on_this_instance_breaks_the_stamp(
    locks_env: LocksEnv,
) -> None:
    locks = await locks_env.new()
    seen = await _stamp_after_a_turn(locks, "c")
    await (await locks.acquire("c", "run-1", wait_s=0)).release()
    lease = await locks.acquire("c", "run-2", wait_s=0)
    assert lease.stamp_before != seen or seen is None
    await lease.release()


async def test_another_instance_taking_the_lock_in_between_breaks_the_stamp(
    expiring_locks_env: LocksEnv,
) -> None:
    mine, theirs = await expiring_locks_env.new(), await expiring_locks_env.new()
    seen = await _stamp_after_a_turn(mine, "c")
    assert (seen is not None) == (expiring_locks_env.name in STAMPING)
    await (await theirs.acquire("c", "theirs", wait_s=0)).release()
    assert mine.stamp("c") == seen, "the other instance's turn is invisible here..."
    lease = await mine.acquire("c", "run-1", wait_s=5)
    assert lease.stamp_before != seen or seen is None, "...but the next lease tells"
    await lease.release()
    # and the other instance's own stamp is not fooled by ours either
    their_seen = theirs.stamp("c")
    lease = await theirs.acquire("c", "theirs-2", wait_s=0)
    assert lease.stamp_before != their_seen or their_seen is None
    await lease.release()


async def test_a_lease_lost_to_another_instance_leaves_no_stamp_to_trust(
    expiring_locks_env: LocksEnv,
) -> None:
    short = LeaseTiming(lease_s=0.3, poll_min_s=0.005, poll_max_s=0.02)
    mine, theirs = await expiring_locks_env.new(short), await expiring_locks_env.new()
    seen = await _stamp_after_a_turn(mine, "c")
    lease = await mine.acquire("c", "run-1", wait_s=0)
    lease._renewal.cancel()  # type: ignore[attr-defined]  # a frozen holder: it expires
    await asyncio.sleep(0.4)
    taker = await theirs.acquire("c", "theirs", wait_s=0)  # takes the expired lease over
    await lease.release()  # no longer ours: must not be remembered as a clean release
    stamp = mine.stamp("c")
    await taker.release()
    next_lease = await mine.acquire("c", "run-2", wait_s=5)
    assert next_lease.stamp_before != stamp or stamp is None
    assert stamp == seen
    await next_lease.release()
