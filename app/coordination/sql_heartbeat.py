"""An instance's heartbeat row in `coordination_instances`, for `SqlRunLog`.

A run that is not terminal and whose owner's heartbeat expired reads `instance_lost`
(`app.coordination.sql_run_lost`); this module keeps this instance's row alive (renewed
every `every_s`, valid `ttl_s`). Separate from `app.coordination.sql_runs` because it is
the instance's liveness, not any run's state. With `sole_instance` (SQLite: the lifespan
holds the file's single-server claim) the rows found at start-up are dropped at once:
their runs read `instance_lost` right after a restart instead of `ttl_s` later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import sqlalchemy as sa

from app.coordination.sql_clock import SqlClock
from app.stores.sql_engine import unavailable_on_connection_errors
from app.stores.sql_tables import coordination_instances

log = logging.getLogger("parley.coordination.sql")


class InstanceHeartbeat:
    """Started by the first `start()` (the row is written before it returns); `close()`
    stops it and removes the row (only when it was started: a stopped task leaves it)."""

    def __init__(
        self,
        sql: SqlClock,
        instance_id: str,
        *,
        ttl_s: float,
        every_s: float,
        sole_instance: bool,
    ) -> None:
        self._sql = sql
        self._instance_id = instance_id
        self._ttl_s = ttl_s
        self._every_s = every_s
        self._sole_instance = sole_instance
        self.task: asyncio.Task[None] | None = None
        self._starting = asyncio.Lock()

    async def start(self) -> None:
        """Start the heartbeat (first call only; the row is written before it returns)."""
        if self.task is not None:
            return
        async with self._starting:
            if self.task is not None:
                return
            if self._sole_instance:  # whoever else has a heartbeat row is dead: its runs too
                i = coordination_instances
                with unavailable_on_connection_errors():
                    async with self._sql.write() as conn:
                        await conn.execute(sa.delete(i).where(i.c.id != self._instance_id))
            await self._beat()
            self.task = asyncio.create_task(self._beat_forever(), name="sql-run-heartbeat")

    async def _beat(self) -> None:
        i = coordination_instances
        values = self._sql.insert(i).values(
            id=self._instance_id, expires_at=self._sql.later(self._ttl_s)
        )
        statement = values.on_conflict_do_update(
            index_elements=[i.c.id], set_={"expires_at": values.excluded.expires_at}
        )
        with unavailable_on_connection_errors():
            async with self._sql.statement() as conn:
                await conn.execute(statement)

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(self._every_s)
            try:
                await self._beat()
            except Exception as exc:
                log.warning("run heartbeat failed (retrying): %r", exc)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None
            i = coordination_instances
            with contextlib.suppress(Exception):
                async with self._sql.write() as conn:
                    await conn.execute(sa.delete(i).where(i.c.id == self._instance_id))
