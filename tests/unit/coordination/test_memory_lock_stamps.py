"""`MemoryTurnLocks.stamp`: while the lock is free, a number a later lease's
`stamp_before` equals only if nobody took the lock in between (`TurnLocks.stamp`)."""

from __future__ import annotations

from app.coordination.memory_locks import MemoryTurnLocks


async def test_a_lease_matches_the_stamp_only_when_nobody_took_the_lock_in_between() -> None:
    locks = MemoryTurnLocks()
    seen = locks.stamp("c")
    assert seen is not None
    lease = await locks.acquire("c", "run-1", wait_s=0)
    assert lease.stamp_before == seen
    assert locks.stamp("c") is None, "a held lock has no stamp: its holder may still commit"
    await lease.release()
    seen = locks.stamp("c")
    other = await locks.acquire("c", "run-2", wait_s=0)  # taken and freed in between
    await other.release()
    lease = await locks.acquire("c", "run-3", wait_s=0)
    assert lease.stamp_before is not None and lease.stamp_before != seen
    await lease.release()


async def test_stamps_still_move_when_the_conversation_fell_out_of_the_kept_ones() -> None:
    locks = MemoryTurnLocks(max_stamps=2)
    seen = locks.stamp("c")
    await (await locks.acquire("c", "run-1", wait_s=0)).release()  # c moves...
    for other in ("d", "e"):  # ...then is dropped from the two kept
        await (await locks.acquire(other, f"run-{other}", wait_s=0)).release()
    lease = await locks.acquire("c", "run-2", wait_s=0)
    assert lease.stamp_before != seen
    stamp = locks.stamp("f")  # never taken, but a kept stamp can no longer tell
    await lease.release()
    assert locks.stamp("c") is not None
    lease = await locks.acquire("f", "run-3", wait_s=0)
    assert lease.stamp_before == stamp  # nothing took f or was dropped since
    await lease.release()
