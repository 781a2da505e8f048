"""Cross-origin access for browsers (`PARLEY_CORS_ORIGINS`) and `OPTIONS` on every route.

With no origin configured (the default) no CORS header is ever sent, so browsers refuse
cross-origin calls; `OPTIONS` still answers with the route's `Allow` list. With origins
configured, preflights are answered for every path with the methods the API routes use and
the request headers clients send; responses expose the headers clients read.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.head import path_methods
from app.error_handlers import problem_response
from app.errors import CORSRejected
from app.settings import Settings

REQUEST_HEADERS = (
    "Authorization",
    "Content-Type",
    "Accept",
    "Idempotency-Key",
    "If-Match",
    "Last-Event-ID",
    "X-Request-ID",  # a front end correlates its requests with the logs (tester T9)
)
EXPOSED_HEADERS = ("X-Run-Id", "ETag", "Retry-After", "Location", "X-Request-ID")
PREFLIGHT_MAX_AGE_S = 600


def route_methods(routes: list[BaseRoute]) -> list[str]:
    """Every method some route answers, plus OPTIONS (answered for every route) and HEAD
    (wherever GET is, `app.api.head`)."""
    methods = {"OPTIONS"}
    for route in iter_route_contexts(routes):
        methods |= route.methods or set()
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


class ProblemCORSMiddleware(CORSMiddleware):
    """Starlette's CORS middleware, with a refused preflight as a problem document."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        detail = bytes(response.body).decode().removeprefix("Disallowed CORS ")
        problem = problem_response(CORSRejected(f"This preflight is not allowed: {detail}."))
        for name in ("Vary", "Access-Control-Allow-Methods", "Access-Control-Allow-Headers"):
            if name in response.headers:
                problem.headers[name] = response.headers[name]
        return problem


class OptionsMiddleware:
    """`OPTIONS <path>` that is not a CORS preflight: 204 with the methods of that path in
    `Allow` (404 for an unknown path), instead of the router's 405; the same list as a
    405's `Allow`, HEAD wherever GET runs as it (tester-2 U5: it lacked HEAD)."""

    def __init__(self, app: ASGIApp, routes: list[BaseRoute]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "OPTIONS":
            await self.app(scope, receive, send)
            return
        methods = path_methods(self.routes, scope)  # the 405's Allow, HEAD included
        if not methods:
            await self.app(scope, receive, send)
            return
        allow = ", ".join(sorted(methods | {"OPTIONS"}))
        await Response(status_code=204, headers={"Allow": allow})(scope, receive, send)


def install_cors(app: FastAPI, settings: Settings) -> None:
    """Call after every router is included (the preflight lists their methods)."""
    app.add_middleware(OptionsMiddleware, routes=app.router.routes)
    if settings.cors_origins:
        app.add_middleware(
            ProblemCORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=route_methods(app.router.routes),
            allow_headers=REQUEST_HEADERS,
            expose_headers=EXPOSED_HEADERS,
            max_age=PREFLIGHT_MAX_AGE_S,
        )
