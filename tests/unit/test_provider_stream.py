"""Batching a provider stream by arrival."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing

import pytest

from app.errors import ProviderError
from app.manager.provider_stream import batches
from app.providers.base import Finish, ProviderEvent, TextDelta


async def _stream(delays: list[float], fail: bool = False) -> AsyncIterator[ProviderEvent]:
    for i, delay in enumerate(delays):
        if delay:
            await asyncio.sleep(delay)
        yield TextDelta(f"t{i} ")
    if fail:
        raise ProviderError("boom")
    yield Finish("stop")


async def test_slow_tokens_come_one_batch_each() -> None:
    got = [b async for b in batches(_stream([0.01] * 4))]
    texts_per_batch = [sum(isinstance(e, TextDelta) for e in b) for b in got]
    assert texts_per_batch == [1, 1, 1, 1]


async def test_tokens_that_arrive_together_come_together() -> None:
    got = [b async for b in batches(_stream([0, 0, 0, 0]))]
    assert sum(len(b) for b in got) == 5 and len(got) < 5


async def test_errors_arrive_after_what_came_before() -> None:
    seen: list[ProviderEvent] = []
    with pytest.raises(ProviderError):
        async for b in batches(_stream([0.01, 0.01], fail=True)):
            seen.extend(b)
    assert seen == [TextDelta("t0 "), TextDelta("t1 ")]


async def test_closing_early_stops_the_reader() -> None:
    closed = asyncio.Event()

    async def endless() -> AsyncIterator[ProviderEvent]:
        try:
            while True:
                await asyncio.sleep(0.001)
                yield TextDelta("x")
        finally:
            closed.set()

    async with aclosing(batches(endless())) as stream:
        async for _ in stream:
            break
    await asyncio.wait_for(closed.wait(), timeout=1)
