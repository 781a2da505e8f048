"""The run events published at about the same time, sent to Redis in one round trip.

A streamed turn publishes an event per delta, each the publish script of
`app.coordination.redis_runs` awaited by its executor. With 100 streams that is ~5,000
script calls a second, each its own command through redis-py (packing, a pooled
connection, a socket write, a wake-up for its reply): most of a Redis-backed stream's
server CPU, and ~2 s per stream spent waiting on publishes (bench/streaming.py).

`PublishBatch.publish` queues one script call; one task sends everything queued by the
time it runs as one `MULTI` ... `EXEC` pipeline of `EVALSHA`s, in queue order, and hands
each caller its own reply (its event's seq) or its own error. Each caller still returns
only once its event is in Redis, as before. In a transaction no other client's command
runs between ours, so the script is either loaded for the whole batch or for none of it:
on `NOSCRIPT` (Redis restarted) the script is loaded and the whole batch sent again,
nothing of it having run. A single queued call goes as a plain script call.

A Redis Cluster client is not batched (a transaction cannot span slots): the caller
keeps calling the script directly there.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import NoScriptError

from app.coordination.redis_client import RedisClient


@dataclass
class _Call:
    keys: list[str]
    args: list[Any]
    done: asyncio.Future[Any] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class PublishBatch:
    def __init__(self, client: RedisClient, script: Any) -> None:
        """`script`: the publish script as registered on `client` (`register_script`)."""
        self._client = client
        self._script = script
        self._queued: list[_Call] = []
        self._task: asyncio.Task[None] | None = None

    async def call(self, *, keys: list[str], args: list[Any]) -> Any:
        """`script(keys=keys, args=args)`, in the next batch; its reply."""
        call = _Call(keys, args)
        self._queued.append(call)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name="redis-publish-batch")
        try:
            return await asyncio.shield(call.done)  # a cancelled caller leaves the batch be
        except asyncio.CancelledError:
            call.done.add_done_callback(_retrieved)
            raise

    async def _drain(self) -> None:
        await asyncio.sleep(0)  # let the publishes of this turn of the loop join
        while self._queued:
            batch, self._queued = self._queued, []
            try:
                replies = await self._send(batch)
            except Exception as exc:
                for call in batch:
                    _settle(call, exc)
                continue
            except BaseException:  # cancelled (the loop is closing): nobody waits any more
                for call in [*batch, *self._queued]:
                    call.done.cancel()
                self._queued = []
                raise
            for call, reply in zip(batch, replies, strict=True):
                _settle(call, reply)

    async def _send(self, batch: list[_Call]) -> list[Any]:
        if len(batch) == 1:
            return [await self._script(keys=batch[0].keys, args=batch[0].args)]
        replies = await self._pipelined(batch)
        if any(isinstance(r, NoScriptError) for r in replies):
            await self._client.script_load(self._script.script)  # none of the batch ran
            replies = await self._pipelined(batch)
        return replies

    async def _pipelined(self, batch: list[_Call]) -> list[Any]:
        pipe = self._client.pipeline(transaction=True)
        for call in batch:
            pipe.evalsha(self._script.sha, len(call.keys), *call.keys, *call.args)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        return replies

    async def close(self) -> None:
        """Wait for what is queued (at shutdown)."""
        if self._task is not None and not self._task.done():
            await asyncio.wait([self._task])


def _retrieved(done: asyncio.Future[Any]) -> None:
    if not done.cancelled():
        done.exception()


def _settle(call: _Call, outcome: Any) -> None:
    if call.done.done():
        return
    if isinstance(outcome, BaseException):
        call.done.set_exception(outcome)
    else:
        call.done.set_result(outcome)
