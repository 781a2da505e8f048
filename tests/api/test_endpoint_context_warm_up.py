"""The start-up fills FastAPI's endpoint-context cache (`app.api.endpoint_context`), so no
first request of an endpoint reads and tokenizes its module's source on the event loop.
Reads FastAPI's private cache: if FastAPI renames it this test fails and says where."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import routing

from app.api import health, messages
from app.main import create_app
from app.settings import Settings


async def test_the_lifespan_looks_up_every_endpoint_before_the_first_request(
    settings_factory: Callable[..., Settings],
) -> None:
    cache = routing._endpoint_context_cache
    cache.clear()
    app = create_app(settings_factory())
    async with app.router.lifespan_context(app):
        for endpoint in (messages.send_message, messages.list_messages, health.readyz):
            ctx = cache.get(id(endpoint))
            assert ctx is not None and ctx.get("function") == endpoint.__name__
            assert str(ctx.get("file", "")).endswith(".py") and ctx.get("line", 0) > 0
