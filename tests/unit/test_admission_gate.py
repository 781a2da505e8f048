"""`AdmissionGate`: at most `concurrency` holders, waiters admitted in arrival order, a wait
past the timeout is `Overloaded` (503 with Retry-After), 0 means no gate."""

from __future__ import annotations

import asyncio

import pytest

from app.errors import Overloaded
from app.manager.admission import AdmissionGate, gate_size


async def test_holders_are_bounded_and_waiters_admitted_in_arrival_order() -> None:
    gate = AdmissionGate(concurrency=2, timeout_s=5)
    order: list[int] = []
    release = asyncio.Event()
    peak = 0

    async def request(n: int) -> None:
        nonlocal peak
        async with gate.admit():
            peak = max(peak, gate.active)
            order.append(n)
            await release.wait()

    tasks = []
    for n in range(6):
        tasks.append(asyncio.create_task(request(n)))
        await asyncio.sleep(0)  # arrive one after the other
    await asyncio.sleep(0.01)
    assert order == [0, 1] and gate.active == 2 and gate.waiting == 4
    release.set()
    await asyncio.gather(*tasks)
    assert order == list(range(6))
    assert peak == 2 and gate.active == 0 and gate.waiting == 0


async def test_a_wait_past_the_timeout_is_overloaded_and_frees_nothing_it_did_not_take() -> None:
    gate = AdmissionGate(concurrency=1, timeout_s=0.05)

    async def another_request() -> None:
        async with gate.admit():
            raise AssertionError("admitted beyond the concurrency")

    async with gate.admit():
        with pytest.raises(Overloaded) as raised:
            await asyncio.create_task(another_request())
        assert raised.value.status == 503 and raised.value.code == "overloaded"
        assert raised.value.headers == {"Retry-After": "1"}
        assert gate.waiting == 0 and gate.active == 1
    async with gate.admit():  # the slot the timed-out waiter never had is free again
        assert gate.active == 1


async def test_a_cancelled_waiter_leaves_the_queue() -> None:
    gate = AdmissionGate(concurrency=1, timeout_s=5)
    async with gate.admit():
        waiter = asyncio.create_task(gate.admit().__aenter__())
        await asyncio.sleep(0.01)
        assert gate.waiting == 1
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert gate.waiting == 0
    async with asyncio.timeout(1):
        async with gate.admit():
            assert gate.active == 1


async def test_zero_concurrency_admits_everyone() -> None:
    gate = AdmissionGate(concurrency=0, timeout_s=0.01)
    async with gate.admit(), gate.admit(), gate.admit():
        assert gate.waiting == 0


async def test_a_paused_holder_lends_its_slot_and_queues_for_one_again() -> None:
    gate = AdmissionGate(concurrency=1, timeout_s=5)
    other_in = asyncio.Event()
    release_other = asyncio.Event()

    async def other() -> None:
        async with gate.admit():
            other_in.set()
            await release_other.wait()

    async with gate.admit():
        async with gate.paused():  # e.g. waiting for another request's run to exist
            assert gate.active == 0
            task = asyncio.create_task(other())
            await asyncio.wait_for(other_in.wait(), 1)  # it got the lent slot
            release_other.set()
        assert gate.active == 1  # ours again, after the other request gave it back
        await task
    assert gate.active == 0 and gate.waiting == 0


async def test_a_pause_that_cannot_get_a_slot_back_is_overloaded_and_releases_nothing() -> None:
    gate = AdmissionGate(concurrency=1, timeout_s=0.05)
    hold = asyncio.Event()
    taken = asyncio.Event()

    async def taker() -> None:
        async with gate.admit():
            taken.set()
            await hold.wait()

    with pytest.raises(Overloaded):
        async with gate.admit(), gate.paused():
            task = asyncio.create_task(taker())
            await taken.wait()
    assert gate.active == 1  # the taker's, not released twice by the paused holder
    hold.set()
    await task
    assert gate.active == 0
    async with gate.admit():
        assert gate.active == 1


async def test_pausing_outside_admit_or_without_a_gate_does_nothing() -> None:
    for gate in (AdmissionGate(concurrency=1, timeout_s=1), AdmissionGate(0, 1)):
        async with gate.paused():
            assert gate.active == 0


async def test_admit_is_reentrant_for_the_task_holding_the_slot() -> None:
    """An import creates its conversation inside its own admission (review R1: it waited
    for a second slot, so with one slot every PromptKit import was 503)."""
    gate = AdmissionGate(1, timeout_s=0.2)
    async with gate.admit():
        async with gate.admit():
            assert gate.active == 1
        assert gate.active == 1
    assert gate.active == 0 and gate.waiting == 0


async def test_a_task_started_inside_admit_does_not_share_or_release_its_slot() -> None:
    """A task created while a slot is held inherits the context (a turn's run): it must
    queue like anyone else, and its `paused` must not hand back a slot it does not own."""
    gate = AdmissionGate(1, timeout_s=0.2)

    async def child_admit() -> None:
        async with gate.admit():
            pass

    async def child_pause() -> int:
        async with gate.paused():
            return gate.active

    async with gate.admit():
        with pytest.raises(Overloaded):
            await asyncio.create_task(child_admit())
        assert await asyncio.create_task(child_pause()) == 1
        assert gate.active == 1
    assert gate.active == 0


def test_gate_size_is_a_quarter_of_a_bounded_pool_unless_configured() -> None:
    assert gate_size(None, None) == 32  # no bounded pool: the default
    assert gate_size(None, 30) == 7  # PostgreSQL's default pool (10 + 20)
    assert gate_size(None, 1000) == 32  # never above the default
    assert gate_size(None, 2) == 1  # never closed
    assert gate_size(5, 30) == 5 and gate_size(64, 30) == 64  # a configured size wins
    assert gate_size(0, 30) == 0  # 0 is still "no gate"
