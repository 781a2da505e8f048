"""Which instances are alive, so that the runs of a dead one can be declared lost.

Each instance holds a lease named `#instance:<instance_id>` in the turn-lock backend
(`TurnLocks`: in process, Redis or SQL lease rows), renewed like a turn lock (every
`lease_s / 3`; gone `lease_s` after the last renewal, 10 s by default). `#` cannot occur
in a conversation id, so the name never collides with a conversation's lock. An instance
whose lease is not held by it is dead (or cut off from the backend for longer than
`lease_s`, in which case its own turn leases are lost as well and it cannot commit).
A lease lost while the instance lives (a backend outage) is taken again by `keep`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from app.coordination.base import TurnLease, TurnLocks

log = logging.getLogger("parley.coordination.liveness")

PREFIX = "#instance:"
START_WAIT_S = 2.0


def lease_name(instance_id: str) -> str:
    return f"{PREFIX}{instance_id}"


class InstanceLiveness:
    def __init__(self, locks: TurnLocks, instance_id: str, *, check_every_s: float = 1.0):
        self.instance_id = instance_id
        self._locks = locks
        self._check_every_s = check_every_s
        self._lease: TurnLease | None = None
        self._keeper: asyncio.Task[None] | None = None

    @property
    def held(self) -> bool:
        """Whether this instance holds its lease now. A run commits only while it does:
        otherwise another instance may be declaring the run lost."""
        return self._lease is not None and not self._lease.lost

    async def start(self) -> None:
        """Take the lease (waiting up to `START_WAIT_S`: a backend that is down at start-up
        does not stop the start; the lease is taken as soon as it answers), then keep it."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(START_WAIT_S):
                await self._take()
        self._keeper = asyncio.create_task(self._keep(), name="instance-liveness")

    async def _take(self) -> None:
        try:
            name = lease_name(self.instance_id)
            self._lease = await self._locks.acquire(name, self.instance_id, wait_s=0)
        except Exception as exc:  # the backend is down, or our expired lease lingers
            log.debug("taking the liveness lease failed: %r", exc)

    async def _keep(self) -> None:
        while True:
            await asyncio.sleep(self._check_every_s)
            if not self.held:
                await self._take()

    async def alive(self, instance_id: str) -> bool:
        """Whether `instance_id` holds its liveness lease (this instance: always)."""
        if instance_id == self.instance_id:
            return True
        return await self._locks.holder(lease_name(instance_id)) == instance_id

    async def close(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        if self._lease is not None:
            with contextlib.suppress(Exception):
                await self._lease.release()
