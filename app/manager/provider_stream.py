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
    queue: asyncio.Queue[ProviderEvent | BaseException | None] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for event in events:
                queue.put_nowait(event)
            queue.put_nowait(None)
        except Exception as exc:
            queue.put_nowait(exc)

    reader = asyncio.create_task(pump())
    try:
        while True:
            items = [await queue.get()]
            while not queue.empty():
                items.append(queue.get_nowait())
            batch: list[ProviderEvent] = []
            for item in items:
                if item is None or isinstance(item, BaseException):
                    if batch:
                        yield batch
                    if item is None:
                        return
                    raise item
                batch.append(item)
            yield batch
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


def estimated_usage(request: ProviderRequest, reply: str) -> Usage:
    prompt = (request.system or "") + "".join(m.content for m in request.messages)
    return Usage.of(estimate_tokens(prompt), estimate_tokens(reply))
