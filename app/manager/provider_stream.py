"""Reading a provider stream for a turn: batching by arrival, usage when none is reported."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator

from app.domain import Usage
from app.domain.tokens import estimate_tokens
from app.providers.base import ProviderEvent, ProviderRequest


async def batches(
    events: AsyncIterator[ProviderEvent],
) -> AsyncGenerator[list[ProviderEvent], None]:
    """Re-yield a provider stream in batches: everything that arrived while the consumer
    was busy with the previous batch. The stream is read by a task of its own, which is
    cancelled (closing the provider's response) if the consumer stops early."""
    arrivals = _Arrivals()
    reader = asyncio.create_task(arrivals.pump(events))
    try:
        while True:
            if not arrivals.items and not arrivals.ended:
                await arrivals.next()
            if arrivals.items:
                yield arrivals.take()
            elif arrivals.error is not None:
                raise arrivals.error
            else:
                return
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


class _Arrivals:
    """What the reader task read and the consumer has not taken yet, and how the reading
    ended; the consumer waits on a bare future (an `asyncio.Queue` cost every token a
    dozen more calls, in the reader's `put` and the consumer's `get`s)."""

    __slots__ = ("_waiter", "ended", "error", "items")

    def __init__(self) -> None:
        self.items: list[ProviderEvent] = []
        self.ended = False
        self.error: Exception | None = None
        self._waiter: asyncio.Future[None] | None = None

    async def pump(self, events: AsyncIterator[ProviderEvent]) -> None:
        try:
            async for event in events:
                self.items.append(event)
                self._wake()
        except Exception as exc:
            self.error = exc
        self.ended = True
        self._wake()

    def take(self) -> list[ProviderEvent]:
        items, self.items = self.items, []
        return items

    async def next(self) -> None:
        """Until something arrives or the reading ends."""
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


def estimated_usage(request: ProviderRequest, reply: str) -> Usage:
    prompt = (request.system or "") + "".join(m.content for m in request.messages)
    return Usage.of(estimate_tokens(prompt), estimate_tokens(reply))
