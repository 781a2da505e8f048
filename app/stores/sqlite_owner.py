"""One serving process per SQLite file unless the processes coordinate through Redis: the
start-up check that refuses a second one.

The SQLite file itself survives several processes (WAL, busy timeout, `BEGIN IMMEDIATE`),
and with `PARLEY_COORDINATION_URL=redis://...` turn locks, idempotency keys and run event
logs are shared, so several workers or instances on one file work (tested in
`tests/contract/coordination/test_coordination_instances.py`). Without it they coordinate
in-process (`app/coordination/factory.py`): two processes on one file could run two turns of
one conversation at once (the head compare-and-set refuses one with `head_conflict`),
replay a retry, or answer 404 for a run the other process is executing. `uvicorn --workers
2` on the embedded default would look like it works and fail under load; refusing at
start-up says so instead.

How: the serving process holds an exclusive `flock` on `<database>.lock` (next to the
`-wal`/`-shm` files) for its whole life and writes its pid in it. The kernel drops the lock
when the process exits, `kill -9` included, so there is no stale lease to expire. Only the
lifespan (a serving process) claims the file; tools that open the store directly (the
benchmarks' pre-fill, migrations, tests) do not.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import IO

from app.stores.redis_conn import is_redis_url
from app.stores.sql_engine import parse_url, sqlite_path

log = logging.getLogger("parley.stores.sqlite")

try:  # POSIX; elsewhere the check is skipped (with a log line)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class SqliteFileInUse(RuntimeError):
    """Another process is already serving this SQLite file."""


class SqliteServerClaim:
    """The serving process's claim on its SQLite file (a no-op for other stores)."""

    def __init__(self, handle: IO[str] | None = None) -> None:
        self._handle = handle

    @property
    def held(self) -> bool:
        return self._handle is not None

    def release(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.close()  # closing the descriptor drops the flock
            self._handle = None


def lock_path(database: Path) -> Path:
    return database.with_name(database.name + ".lock")


ONE_SERVER = (
    "The embedded SQLite store supports one serving process while turn locks, idempotency "
    "keys and run events are in-process: run a single worker (no `uvicorn --workers N`, no "
    "second instance on the same file), share them through Redis "
    "(PARLEY_COORDINATION_URL=redis://...), or use PostgreSQL or Redis as the state store "
    "(PARLEY_STATE_URL) for several workers or instances."
)


def served_alone(state_url: str, coordination_url: str | None = None) -> Path | None:
    """The SQLite file of `state_url` when a process serving it must be its only one (no
    Redis coordination); else None. What `claim_sqlite_file` claims, and what `parley
    serve --workers N` checks before it starts any worker."""
    if not state_url.lower().startswith("sqlite") or (
        coordination_url and is_redis_url(coordination_url)
    ):
        return None
    return sqlite_path(parse_url(state_url))


def claim_sqlite_file(state_url: str, coordination_url: str | None = None) -> SqliteServerClaim:
    """Claim `state_url`'s SQLite file for this process, or raise `SqliteFileInUse`.

    Not a SQLite URL, or coordination shared through Redis: nothing to claim. A lock file
    that cannot be created (unusable directory): nothing claimed either,
    so that `store.open()` reports the real problem.
    Blocking file I/O: call it through `asyncio.to_thread`.
    """
    database = served_alone(state_url, coordination_url)
    if database is None:
        return SqliteServerClaim()
    if fcntl is None:  # pragma: no cover - Windows
        log.warning("cannot check that %s is served by one process only (no fcntl)", database)
        return SqliteServerClaim()
    path = lock_path(database)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("a+")
    except OSError as exc:
        log.debug("no single-server lock on %s: %s", path, exc)
        return SqliteServerClaim()
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip()
        handle.close()
        who = f"process {holder}" if holder.isdigit() else "another process"
        raise SqliteFileInUse(
            f"PARLEY_STATE_URL is the SQLite file {database}, which {who} is already "
            f"serving. {ONE_SERVER}"
        ) from None
    except OSError as exc:  # e.g. a filesystem without flock support
        handle.close()
        log.warning("cannot check that %s is served by one process only: %s", database, exc)
        return SqliteServerClaim()
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return SqliteServerClaim(handle)
