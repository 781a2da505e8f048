"""The CPU that PostgreSQL's own processes spend for a benchmark: the backends connected
to its database (`pg_stat_activity`), read from /proc like the server's (`bench.servers.
process_cpu_s`; PostgreSQL on this host, Linux). A turn's statements cost CPU there too,
on the same cores as the server: planning, execution, WAL, the listener woken by each
`pg_notify` (`bench/profile_turns.py --store postgres` prints it per turn)."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from bench.servers import process_cpu_s
from bench.stores import libpq_url


async def backend_pids(url: str) -> list[int]:
    """The pids of the backends connected to `url`'s database now (read from another
    database of the server, so this connection is not one of them)."""
    parts = urlsplit(libpq_url(url))
    database = parts.path.lstrip("/")
    admin = await asyncpg.connect(urlunsplit(parts._replace(path="/postgres")), timeout=5)
    try:
        rows = await admin.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", database)
    finally:
        await admin.close()
    return [int(r["pid"]) for r in rows]


def cpu_s(pids: Sequence[int]) -> float | None:
    """CPU (user + system) the processes `pids` used so far; None if none can be read
    (PostgreSQL on another host). A backend gone meanwhile counts nothing."""
    readings = [process_cpu_s(pid) for pid in pids]
    known = [r for r in readings if r is not None]
    return sum(known) if known else None
