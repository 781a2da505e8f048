"""A new PostgreSQL connection prepares the driver statements of the store and of the SQL
coordinator without running them (review F8: they were run in a transaction rolled back,
which took a transaction id per new connection and ran every INSERT and UPDATE once).

Probe: a statement-level trigger on every table calls `nextval()` on a sequence, which no
rollback undoes, so any statement that ran (even one matching no row, even rolled back)
shows; `pg_prepared_statements` shows what the connection has prepared."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.coordination.sql_event_writer import warm_statements
from app.coordination.sql_locks import SqlLeaseBackend
from app.coordination.sql_run_rows import PostgresRunRows
from app.coordination.sql_runs import SqlRunLog
from app.stores.sql import SqlStore
from app.stores.sql_hot_append import postgres_hot_statements
from tests.services import scratch_postgres_database

pytestmark = pytest.mark.postgres

PROBE = """
CREATE SEQUENCE warm_probe;
CREATE FUNCTION warm_probe() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM nextval('warm_probe'); RETURN NULL; END $$;
DO $$ DECLARE t text; BEGIN
  FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = 'public' LOOP
    EXECUTE format('CREATE TRIGGER warm_probe AFTER INSERT OR UPDATE OR DELETE ON %I'
                   ' FOR EACH STATEMENT EXECUTE FUNCTION warm_probe()', t);
  END LOOP;
END $$;
"""


async def test_a_new_connection_prepares_the_statements_without_running_them() -> None:
    async with scratch_postgres_database() as url:
        store = SqlStore(url)
        await store.open()  # the schema; its own statements prepared on its connections
        runs = None
        try:
            engine = store.engine
            async with engine.connect() as conn:
                driver = (await conn.get_raw_connection()).driver_connection
                assert driver is not None
                await driver.execute(PROBE)
            locks = SqlLeaseBackend(engine)  # (each registers its statements on connect)
            runs = SqlRunLog(engine)
            await engine.dispose()  # so that the next connection is a new one

            async with engine.connect() as conn:
                prepared = set(
                    (await conn.execute(sa.text("SELECT statement FROM pg_prepared_statements")))
                    .scalars()
                    .all()
                )
                probe = (
                    await conn.execute(sa.text("SELECT last_value, is_called FROM warm_probe"))
                ).one()

            expected = [
                *postgres_hot_statements(),
                *PostgresRunRows().warm_statements(),
                *warm_statements(),
                *locks.prepared,
            ]
            assert len(expected) == 14  # (the batch in two commit modes, a creation + lock)
            missing = [s.sql[:60] for s in expected if s.sql not in prepared]
            assert missing == []
            assert not probe.is_called, "a warm-up statement was executed"
        finally:
            if runs is not None:
                await runs.close()
            await store.close()
