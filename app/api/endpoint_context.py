"""FastAPI's per-endpoint source lookup, paid at start-up instead of by first requests.

The first time an endpoint is called, FastAPI looks up where it is defined to name it in
error messages (`fastapi.routing._extract_endpoint_context`: `inspect.getsourcefile` and
`getsourcelines`, i.e. reading and tokenizing the module's source file) and caches that by
function. That is blocking file I/O and ~2-6 ms of CPU on the event loop, paid by the first
request of every endpoint after each start: the first turn after a restart paid it. The
lifespan runs it once per endpoint in a thread before the server listens. If FastAPI drops
the private helper the warm-up does nothing (the first requests pay it again) and says so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from fastapi import APIRouter
from fastapi.routing import APIRoute

log = logging.getLogger("parley")


def endpoint_functions(routers: Iterable[APIRouter]) -> list[Callable[..., Any]]:
    return [r.endpoint for router in routers for r in router.routes if isinstance(r, APIRoute)]


def warm_endpoint_context(endpoints: Iterable[Callable[..., Any]]) -> int:
    """Fill FastAPI's endpoint-context cache for `endpoints` (blocking: run in a thread).
    Returns how many were looked up."""
    try:
        from fastapi.routing import _extract_endpoint_context
    except ImportError:
        log.info("warm-up: this FastAPI has no endpoint-context cache to fill")
        return 0
    count = 0
    for endpoint in endpoints:
        _extract_endpoint_context(endpoint)
        count += 1
    return count
