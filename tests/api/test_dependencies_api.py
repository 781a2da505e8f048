"""The request path's dependencies run on the event loop, never in a worker thread
(`app.deps`: a worker-thread hop per dependency per request is pure overhead)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi.dependencies import utils as fastapi_dependencies
from starlette.types import Receive, Scope, Send

from app.deps import get_service_principal
from app.domain.principal import Principal
from app.main import create_app
from app.settings import ApiKey, Settings
from tests.api.helpers import create_conv


async def test_a_streamed_turn_and_a_patch_resolve_their_dependencies_without_threads(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    conv = await create_conv(client)
    threaded: list[str] = []
    original = fastapi_dependencies.run_in_threadpool

    async def counting(call: Any, *args: Any, **kwargs: Any) -> Any:
        threaded.append(getattr(call, "__name__", repr(call)))
        return await original(call, *args, **kwargs)

    monkeypatch.setattr(fastapi_dependencies, "run_in_threadpool", counting)
    r = await client.post(
        f"/conversations/{conv['id']}/messages", json={"content": "hi", "stream": True}
    )
    assert r.status_code == 200, r.text
    assert "event: run.completed" in r.text
    got = await client.get(f"/conversations/{conv['id']}")
    assert got.status_code == 200
    # the If-Match dependency of PATCH, DELETE and the head moves too
    r = await client.patch(
        f"/conversations/{conv['id']}",
        json={"metadata": {"k": "v"}},
        headers={"If-Match": got.headers["etag"]},
    )
    assert r.status_code == 200, r.text
    assert threaded == []


async def test_each_app_honours_its_own_dependency_overrides(
    settings_factory: Callable[..., Settings],
) -> None:
    """Routes are added without `include_router` (`app.main.add_routes`) and shared by
    every app of the process: each app's `dependency_overrides` reach its requests only
    (review F5: they reached none)."""
    settings = settings_factory(auth="keys", api_keys=[ApiKey(key="service-key")])
    overridden, plain = create_app(settings), create_app(settings)

    async def anyone_is_the_service() -> Principal:
        return Principal(role="service")

    overridden.dependency_overrides[get_service_principal] = anyone_is_the_service
    for app, expected in ((overridden, 200), (plain, 401), (overridden, 200)):
        async with app.router.lifespan_context(app) as state:

            async def with_state(
                scope: Scope, receive: Receive, send: Send, app: Any = app
            ) -> None:
                scope["state"] = dict(state or {})
                await app(scope, receive, send)

            transport = httpx.ASGITransport(app=with_state)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                assert (await c.get("/stats")).status_code == expected  # no key sent
