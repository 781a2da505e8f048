"""Builds the process-wide objects at start-up and closes them at shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypedDict

import httpx
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider

from app.api.endpoint_context import warm_endpoint_context
from app.coordination.base import Coordinator
from app.coordination.factory import build_coordinator
from app.gc_freeze import freeze_startup_heap, thaw
from app.manager.manager import ConversationManager
from app.manager.telemetry import RunTelemetry
from app.media import FilesystemMediaStore
from app.packs import PackRegistry
from app.providers.factory import build_providers
from app.providers.pricing import PriceTable
from app.providers.transport import provider_http_client
from app.settings import Settings
from app.signals import chain_shutdown_signals
from app.stores.factory import create_store
from app.stores.sqlite_owner import claim_sqlite_file
from app.tools import (
    EMPTY,
    CheckedRuntimeConfig,
    RuntimeConfigError,
    ToolRegistry,
    build_registry,
    load_runtime_config,
)

log = logging.getLogger("parley")


class AppState(TypedDict):
    manager: ConversationManager
    settings: Settings
    tools: ToolRegistry


async def load_tools_config(settings: Settings) -> CheckedRuntimeConfig:
    """The checked `PARLEY_RUNTIME_CONFIG` (read and checked in a thread), or nothing.
    A bad file raises `RuntimeConfigError` naming every problem: start-up stops."""
    if settings.runtime_config is None:
        return EMPTY
    try:
        config = await asyncio.to_thread(load_runtime_config, settings.runtime_config)
    except RuntimeConfigError as exc:
        log.error("%s", exc)
        raise
    warning = config.unapplied_warning()
    if warning:
        log.warning("%s", warning)
    for line in config.warnings:
        log.warning("RuntimeConfig: %s", line)
    return config


def effective_settings(settings: Settings, config: CheckedRuntimeConfig) -> Settings:
    """As PromptKit does, the first RuntimeConfig provider is the default provider unless
    `PARLEY_DEFAULT_PROVIDER` names one."""
    if settings.default_provider is None and config.providers:
        return settings.model_copy(update={"default_provider": config.providers[0].id})
    return settings


def price_table(settings: Settings, config: CheckedRuntimeConfig) -> PriceTable:
    """Built-in prices, `PARLEY_PRICING`, then each RuntimeConfig provider's `pricing`
    for its model."""
    configured = {p.model: p.pricing for p in config.providers if p.pricing is not None}
    return PriceTable({**settings.pricing, **configured})


def redacted(url: str) -> str:
    """A store URL fit for logs: the password replaced."""
    parsed = httpx.URL(url) if "://" in url else None
    if parsed is None or not parsed.password:
        return url
    return url.replace(f":{parsed.password}@", ":***@")


Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[AppState]]


def make_lifespan(
    settings: Settings,
    provider_client: httpx.AsyncClient | None,
    tracer_provider: TracerProvider | None = None,
    endpoints: Sequence[Callable[..., Any]] = (),
) -> Lifespan:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[AppState]:
        # One serving process per SQLite file unless coordination is shared (refuses
        # `--workers 2` on the embedded default).
        claim = await asyncio.to_thread(
            claim_sqlite_file, settings.state_url, settings.coordination_url
        )
        store = create_store(
            settings.state_url,
            timeout_s=settings.store_timeout_s,
            redis_max_connections=settings.redis_max_connections,
            database_pool_size=settings.database_pool_size,
            database_max_overflow=settings.database_max_overflow,
        )
        try:
            await store.open()
        except BaseException:
            claim.release()
            raise
        http = provider_client or provider_http_client(settings.provider_max_connections)
        coordinator: Coordinator | None = None
        manager: ConversationManager | None = None
        restore_signals: Callable[[], None] | None = None
        tools: ToolRegistry | None = None
        frozen = False
        try:
            tools_config = await load_tools_config(settings)
            effective = effective_settings(settings, tools_config)
            coordinator = build_coordinator(effective, store)
            media = FilesystemMediaStore(effective.media_dir)
            await media.open()
            packs = PackRegistry()
            problems = await packs.load_dir(effective.packs_dir)
            providers = await asyncio.to_thread(
                build_providers, effective, http, tools_config.providers
            )
            # (creating the TLS context of the tool HTTP pool reads the CA bundle)
            tools = await asyncio.to_thread(build_registry, tools_config, effective)
            await tools.start()
            manager = ConversationManager(
                settings=effective,
                store=store,
                packs=packs,
                providers=providers,
                prices=price_table(effective, tools_config),
                coordinator=coordinator,
                media=media,
                telemetry=RunTelemetry(
                    tracer_provider.get_tracer("parley") if tracer_provider else None
                ),
                tools=tools,
            )
            await manager.start()
            await manager.warm_up()  # before the server listens: /readyz says ready after
            await asyncio.to_thread(warm_endpoint_context, endpoints)
            restore_signals = chain_shutdown_signals(manager.begin_shutdown)
            log.info(
                "parley ready: store=%s media=%s provider=%s auth=%s packs=%d (%d skipped) %s",
                redacted(effective.state_url),
                media.root,
                effective.resolved_provider(),
                effective.auth
                + (" (no API keys: serve on 127.0.0.1 only)" if effective.auth == "none" else ""),
                len(packs),
                len(problems),
                tools.summary(),
            )
            freeze_startup_heap()
            frozen = True
            yield {"manager": manager, "settings": effective, "tools": tools}
        finally:
            if frozen:
                thaw()
            if restore_signals is not None:
                restore_signals()
            if manager is not None:
                await manager.close()
            if tools is not None:
                await tools.aclose()
            if coordinator is not None:
                await coordinator.close()
            await store.close()
            claim.release()
            if provider_client is None:
                await http.aclose()
            if tracer_provider is not None:  # flush what the batch processor holds
                await asyncio.to_thread(tracer_provider.shutdown)

    return lifespan
