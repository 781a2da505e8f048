"""Waiting with a deadline takes no task of its own: on Python 3.11 `asyncio.wait_for`
runs what it waits for in a new task (a task and a loop iteration more), once per turn for
the admission gate and once for the in-process turn lock; `asyncio.timeout` does not."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from app.coordination.memory_locks import MemoryTurnLocks
from app.errors import ConversationBusy, Overloaded
from app.manager.admission import AdmissionGate


@contextmanager
def counted_tasks() -> Iterator[list[str]]:
    """The names of the tasks created on the running loop inside the block."""
    loop = asyncio.get_running_loop()
    created: list[str] = []
    before = loop.get_task_factory()

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        created.append(getattr(coro, "__qualname__", repr(coro)))
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(factory)
    try:
        yield created
    finally:
        loop.set_task_factory(before)


async def test_admission_takes_a_free_slot_without_a_task() -> None:
    gate = AdmissionGate(concurrency=2, timeout_s=5)
    with counted_tasks() as created:
        async with gate.admit():
            assert gate.active == 1
    assert created == []
    assert gate.active == 0 and gate.waiting == 0


async def test_admission_waits_for_a_slot_without_a_task_and_still_times_out() -> None:
    gate = AdmissionGate(concurrency=1, timeout_s=0.05)

    async def second() -> None:
        async with gate.admit():
            pass

    async with gate.admit():
        with counted_tasks() as created, pytest.raises(Overloaded):
            await asyncio.ensure_future(second())
        assert [c.rsplit(".", 1)[-1] for c in created] == ["second"]  # the test's own only
        assert gate.waiting == 0 and gate.active == 1


async def test_turn_lock_waits_without_a_task_and_still_times_out() -> None:
    locks = MemoryTurnLocks()
    with counted_tasks() as created:
        lease = await locks.acquire("c", "run-1", wait_s=5)
        with pytest.raises(ConversationBusy):
            await locks.acquire("c", "run-2", wait_s=0.05)
    assert created == []
    waiting = asyncio.ensure_future(locks.acquire("c", "run-3", wait_s=5))
    await asyncio.sleep(0.01)
    await lease.release()
    second = await waiting
    assert await locks.holder("c") == "run-3"
    await second.release()
    assert await locks.holder("c") is None
