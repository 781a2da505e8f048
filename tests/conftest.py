"""Shared fixtures: an app running its real lifespan, reachable through httpx."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from starlette.types import ASGIApp, Receive, Scope, Send

from app.main import create_app
from app.manager.manager import ConversationManager
from app.settings import Settings

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FIXTURE_PACKS = SHARED / "fixtures" / "promptpacks" / "packs"
MOCK_RESPONSES = SHARED / "fixtures" / "mock-responses"


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "state_url": f"sqlite+aiosqlite:///{tmp_path}/parley.db",
        "packs_dir": REPO / "packs",
        "media_dir": tmp_path / "media",
        "openai_api_key": None,
        "anthropic_api_key": None,
        "default_provider": None,
        "default_model": None,
        "log_level": "WARNING",
    }
    values.update(overrides)
    return Settings(**values)


@asynccontextmanager
async def running_app(
    settings: Settings,
    provider_client: httpx.AsyncClient | None = None,
    tracer_provider: TracerProvider | None = None,
) -> AsyncIterator[httpx.AsyncClient]:
    """Start the app's lifespan and yield a client talking to it in-process."""
    app = create_app(settings, provider_client=provider_client, tracer_provider=tracer_provider)
    async with app.router.lifespan_context(app) as state:

        async def with_state(scope: Scope, receive: Receive, send: Send) -> None:
            scope["state"] = dict(state or {})
            await app(scope, receive, send)

        asgi: ASGIApp = with_state
        transport = httpx.ASGITransport(app=asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://parley.test") as c:
            yield c


@asynccontextmanager
async def app_and_manager(
    settings: Settings,
) -> AsyncIterator[tuple[httpx.AsyncClient, ConversationManager]]:
    """`running_app`, with the manager too (to plant records, or to reach a race the HTTP
    layer cannot time)."""
    app = create_app(settings)
    async with app.router.lifespan_context(app) as state:
        assert state is not None

        async def with_state(scope: Scope, receive: Receive, send: Send) -> None:
            scope["state"] = dict(state)
            await app(scope, receive, send)

        transport = httpx.ASGITransport(app=with_state)
        async with httpx.AsyncClient(transport=transport, base_url="http://parley.test") as c:
            yield c, state["manager"]


@pytest.fixture
def settings_factory(tmp_path: Path) -> Callable[..., Settings]:
    return lambda **overrides: make_settings(tmp_path, **overrides)


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(make_settings(tmp_path)) as c:
        yield c
