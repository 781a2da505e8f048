"""`bench.pg_backends`: the backends of a benchmark's database and their CPU from /proc."""

from __future__ import annotations

import os

import asyncpg
import pytest

from bench.pg_backends import backend_pids, cpu_s
from bench.stores import libpq_url
from tests.services import scratch_postgres_database


@pytest.mark.postgres
async def test_the_backends_of_a_database_are_its_connections_only() -> None:
    async with scratch_postgres_database() as url:
        conn = await asyncpg.connect(libpq_url(url))
        try:
            mine = await conn.fetchval("SELECT pg_backend_pid()")
            pids = await backend_pids(url)
        finally:
            await conn.close()
    assert pids == [mine]  # (not the connection that asked, on another database)


def test_cpu_sums_what_proc_tells_and_none_for_nothing_readable() -> None:
    used = cpu_s([os.getpid()])
    assert used is not None and used > 0
    assert cpu_s([]) is None
    assert cpu_s([2**22 + 1]) is None  # (no such process)
    both = cpu_s([os.getpid(), 2**22 + 1])  # a process gone counts nothing
    assert both is not None and both >= used
