"""Builds the process-wide objects at start-up and closes them at shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypedDict

import httpx
from fastapi import FastAPI

from app.coordination.base import Coordinator
from app.coordination.factory import build_coordinator
from app.manager.manager import ConversationManager
from app.packs import PackRegistry
from app.providers.factory import build_providers
from app.providers.pricing import PriceTable
from app.settings import Settings
from app.stores.factory import create_store
from app.stores.sqlite_owner import claim_sqlite_file

log = logging.getLogger("parley")


class AppState(TypedDict):
    manager: ConversationManager
    settings: Settings


def redacted(url: str) -> str:
    """A store URL fit for logs: the password replaced."""
    parsed = httpx.URL(url) if "://" in url else None
    if parsed is None or not parsed.password:
        return url
    return url.replace(f":{parsed.password}@", ":***@")


def make_lifespan(settings: Settings, provider_client: httpx.AsyncClient | None) -> object:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[AppState]:
        # One serving process per SQLite file unless coordination is shared (refuses
        # `--workers 2` on the embedded default).
        claim = await asyncio.to_thread(
            claim_sqlite_file, settings.state_url, settings.coordination_url
        )
        store = create_store(settings.state_url)
        try:
            await store.open()
        except BaseException:
            claim.release()
            raise
        http = provider_client or httpx.AsyncClient(
            timeout=httpx.Timeout(connect=10.0, read=None, write=30.0, pool=10.0)
        )
        coordinator: Coordinator | None = None
        manager: ConversationManager | None = None
        try:
            coordinator = build_coordinator(settings, store)
            packs = PackRegistry()
            problems = await packs.load_dir(settings.packs_dir)
            providers = await asyncio.to_thread(build_providers, settings, http)
            manager = ConversationManager(
                settings=settings,
                store=store,
                packs=packs,
                providers=providers,
                prices=PriceTable(settings.pricing),
                coordinator=coordinator,
            )
            await manager.start()
            log.info(
                "parley ready: store=%s provider=%s auth=%s packs=%d (%d skipped)",
                redacted(settings.state_url),
                settings.resolved_provider(),
                settings.auth
                + (" (no API keys: serve on 127.0.0.1 only)" if settings.auth == "none" else ""),
                len(packs),
                len(problems),
            )
            yield {"manager": manager, "settings": settings}
        finally:
            if manager is not None:
                await manager.close()
            if coordinator is not None:
                await coordinator.close()
            await store.close()
            claim.release()
            if provider_client is None:
                await http.aclose()

    return lifespan
