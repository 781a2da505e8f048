"""`AdmissionGate`: at most `concurrency` holders, waiters admitted in arrival order, a wait
past the timeout is `Overloaded` (503 with Retry-After), 0 means no gate."""

from __future__ import annotations

import asyncio

import pytest

from app.errors import Overloaded
from app.manager.admission import AdmissionGate


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
    async with gate.admit():
        with pytest.raises(Overloaded) as raised:
            async with gate.admit():
                raise AssertionError("admitted beyond the concurrency")
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
