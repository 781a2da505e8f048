"""`parley serve`: uvicorn on the app factory, with an exit status that says whether it
started.

With several workers, uvicorn's own supervisor (`uvicorn --workers N`, 0.54) stops the
whole server when a worker fails its start-up, but exits 0: a process manager or a
container runtime then reads a clean stop. `parley serve --workers N` runs the same
supervisor and exits 3 (uvicorn's `STARTUP_FAILURE`, what a single worker exits with)
when a worker failed to start; and when the store cannot be served by several processes
(SQLite without Redis coordination, `app.stores.sqlite_owner`) it says so and exits 2
before starting any.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.settings import Settings

APP = "app.main:create_app"
REFUSED = 2  # several workers asked of a store that one process must serve


def serve(*, host: str | None, port: int | None, reload: bool, workers: int | None = None) -> int:
    """Run uvicorn on the app factory; unset host/port come from the settings, unset
    workers from `WEB_CONCURRENCY` (as uvicorn's command line does), else 1.

    The chosen host/port are also exported as `PARLEY_HOST`/`PARLEY_PORT`, so the settings
    the factory builds (and a `--reload` worker process) agree with where it listens: the
    app warns about `PARLEY_AUTH=none` on a non-loopback host and logs its address.
    """
    import uvicorn

    from app.settings import Settings

    settings = Settings()
    host = settings.host if host is None else host
    port = settings.port if port is None else port
    if workers is None:
        workers = int(os.environ.get("WEB_CONCURRENCY") or 1)
    os.environ["PARLEY_HOST"] = host
    os.environ["PARLEY_PORT"] = str(port)
    if workers > 1 and not reload:
        return _several(settings, host, port, workers)
    uvicorn.run(APP, factory=True, host=host, port=port, reload=reload)
    return 0


def _several(settings: Settings, host: str, port: int, workers: int) -> int:
    """uvicorn's multiprocess supervisor, and whether each worker started."""
    from uvicorn import Config
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    from app.stores.sqlite_owner import ONE_SERVER, served_alone

    database = served_alone(settings.state_url, settings.coordination_url)
    if database is not None:
        print(
            f"parley serve: not starting {workers} workers: PARLEY_STATE_URL is the SQLite "
            f"file {database}. {ONE_SERVER}",
            file=sys.stderr,
        )
        return REFUSED
    config = Config(APP, factory=True, host=host, port=port, workers=workers)
    supervisor = Multiprocess(config, sockets=[config.bind_socket()])
    supervisor.run()
    failed = [p.pid for p in supervisor.processes if p.exitcode == STARTUP_FAILURE]
    if failed:
        print(f"parley serve: worker {failed[0]} failed to start", file=sys.stderr)
        return STARTUP_FAILURE
    return 0
