"""The bounded clean-up of the SQL run tables, for `SqlRunLog`.

One batch (`SWEEP_BATCH`) of expired records (their events with them), of expired event
logs, of dead heartbeats and of turn-lock rows free for `LEASE_ROW_IDLE_S` (a released
row, or a crashed holder's long expired one: without this the lease table kept a row for
every conversation ever locked), at most every `SWEEP_EVERY_S` per instance. Deleting a
lock row is safe for its stamps: a new row's counter restarts from the clock, above every
stamp handed out (`app.coordination.sql_locks`). Separate from `app.coordination.sql_runs`
because it spans these tables and no run's path.
"""

from __future__ import annotations

import sqlalchemy as sa

from app.coordination.sql_clock import SqlClock
from app.stores.sql_engine import unavailable_on_connection_errors
from app.stores.sql_tables import coordination_instances, run_events, run_records, turn_leases

SWEEP_EVERY_S = 30.0
SWEEP_BATCH = 200
LEASE_ROW_IDLE_S = 3600.0  # released rows expire at 1970: they always qualify


async def sweep_runs(sql: SqlClock) -> None:
    """One bounded batch of clean-up (see the module docstring)."""
    t, e, i = run_records, run_events, coordination_instances
    now = sql.now()
    with unavailable_on_connection_errors():
        async with sql.write() as conn:
            old = sa.select(t.c.run_id).where(t.c.expires_at <= now).limit(SWEEP_BATCH)
            ids = list((await conn.execute(old)).scalars())
            if ids:
                await conn.execute(sa.delete(e).where(e.c.run_id.in_(ids)))
                await conn.execute(sa.delete(t).where(t.c.run_id.in_(ids)))
            spent = (
                sa.select(t.c.run_id)
                .where(t.c.events_expire_at <= now, t.c.first_seq <= t.c.last_seq)
                .limit(SWEEP_BATCH)
            )
            ids = list((await conn.execute(spent)).scalars())
            if ids:
                await conn.execute(sa.delete(e).where(e.c.run_id.in_(ids)))
                await conn.execute(
                    sa.update(t).where(t.c.run_id.in_(ids)).values(first_seq=t.c.last_seq + 1)
                )
            dead = sa.select(i.c.id).where(i.c.expires_at <= now).limit(SWEEP_BATCH)
            await conn.execute(sa.delete(i).where(i.c.id.in_(dead.scalar_subquery())))
            lk, idle = turn_leases, sql.later(-LEASE_ROW_IDLE_S)
            free = sa.select(lk.c.conversation_id).where(lk.c.expires_at <= idle)
            await conn.execute(
                sa.delete(lk).where(
                    lk.c.conversation_id.in_(free.limit(SWEEP_BATCH).scalar_subquery()),
                    lk.c.expires_at <= idle,  # re-checked: an acquire may have taken it since
                )
            )
