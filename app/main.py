"""The application factory: `uvicorn app.main:create_app --factory`. No I/O at import."""

from __future__ import annotations

import logging
import os
from typing import Any

import httpx
from fastapi import APIRouter, FastAPI
from opentelemetry.sdk.trace import TracerProvider

from app.api import (
    context,
    context_items,
    conversations,
    export,
    health,
    media,
    messages,
    packs,
    playground,
    runs,
    summaries,
    tree,
)
from app.api.body_limit import BodyLimitMiddleware
from app.api.cors import install_cors
from app.api.endpoint_context import endpoint_functions
from app.api.head import HeadMiddleware
from app.api.openapi import TAGS, install_openapi
from app.api.request_log import RequestLogMiddleware
from app.domain.export_doc import ConversationDocument
from app.domain.promptkit_state import PromptKitState
from app.domain.requests import SendMessage
from app.error_handlers import install_error_handlers
from app.lifespan import make_lifespan
from app.logs import configure_logging
from app.settings import Settings
from app.tracing import tracer_provider_from_env

API_VERSION = "0.1.0"
LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def create_app(
    settings: Settings | None = None,
    *,
    provider_client: httpx.AsyncClient | None = None,
    tracer_provider: TracerProvider | None = None,
) -> FastAPI:
    """Build the app. `provider_client` replaces the HTTP client of the LLM providers
    (tests inject one with `httpx.MockTransport`); `tracer_provider` replaces the one the
    standard `OTEL_*` variables describe (`app.tracing`; tests inject an in-memory one)."""
    settings = settings or Settings()
    configure_logging(settings.log_level, settings.log_format)
    tracer_provider = tracer_provider or tracer_provider_from_env(os.environ)
    tracer = tracer_provider.get_tracer("parley") if tracer_provider else None
    if settings.auth == "none" and settings.host not in LOOPBACK:
        logging.getLogger("parley").warning(
            "PARLEY_AUTH=none while PARLEY_HOST=%s: anyone who can reach it can use it",
            settings.host,
        )
    routers = [
        m.router
        for m in (
            packs,
            conversations,
            messages,
            context,
            context_items,
            summaries,
            tree,
            export,
            runs,
            media,
            health,
        )
    ]
    if playground_enabled(settings):
        routers.append(playground.router)
    app = FastAPI(
        title="Parley",
        version=API_VERSION,
        summary="Persistent, streaming LLM conversations from PromptPacks.",
        openapi_tags=TAGS,
        lifespan=make_lifespan(
            settings, provider_client, tracer_provider, endpoints=endpoint_functions(routers)
        ),
        # No 307 from `/x/` to `/x`: a 307 keeps the method, so `DELETE .../items/` (an
        # empty item id) would be redirected to, and followed by clients as, delete-all.
        redirect_slashes=False,
        # Parley makes its own request span and metrics (`RequestLogMiddleware`,
        # `app.tracing`, `/metrics`); FastAPI's would be a second copy if a global
        # OpenTelemetry provider were set, and checks three providers on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    # innermost: a HEAD runs as its GET below the access log (which still says HEAD)
    app.add_middleware(HeadMiddleware, routes=app.router.routes)
    body_limit = 4 * settings.max_message_bytes + (1 << 20)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=body_limit,
        # one part of the largest media, base64-encoded, on top of an ordinary body
        media_max_bytes=body_limit + (settings.media_max_mb << 20) * 4 // 3 + 4096,
        import_max_bytes=settings.import_max_mb << 20,
    )
    install_error_handlers(app)
    for router in routers:
        add_routes(app, router)
    install_cors(app, settings)
    # outermost: the request id and span cover CORS, limits and errors too
    app.add_middleware(RequestLogMiddleware, tracer=tracer)
    install_openapi(
        app, request_models=[SendMessage, ConversationDocument, PromptKitState]
    )  # bodies parsed by the route
    return app


def add_routes(app: FastAPI, router: APIRouter) -> None:
    """The router's routes as the app's own, not `include_router`: FastAPI keeps an
    included router as a branch that every request walks (each earlier branch matched
    route by route, the selected one matched twice, its route-version count summed each
    time), ~300-800 Python calls per request before the endpoint runs (measured, issue
    15). A router puts its own prefix, tags and dependencies into each route as the route
    is added, so the routes are the same either way (only `include_router`'s own
    arguments would be lost, and none are passed), except for `app.dependency_overrides`,
    which `GuardedRoute` honours itself (`app.api.guard`)."""
    app.router.routes.extend(router.routes)


def playground_enabled(settings: Settings) -> bool:
    """`PARLEY_PLAYGROUND` decides when set; unset, the page is served only where nobody but
    this machine can reach an unauthenticated service."""
    if settings.playground is not None:
        return settings.playground
    return settings.auth == "none" and settings.host in LOOPBACK


def openapi_document() -> dict[str, Any]:
    return create_app(Settings()).openapi()
