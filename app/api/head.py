"""HEAD for every GET route (RFC 9110 §9.3.2: the same status and header fields as GET,
no content). FastAPI routes answer only the methods they declare, so HEAD was a 405.

One pure-ASGI piece instead of a HEAD per route (which would also put an operation per
route into the OpenAPI document): a HEAD that no route answers itself but a GET route
would is run as that GET, and the body it sends is dropped (its `Content-Length` stays,
as RFC 9110 allows). A route with its own HEAD (`/media/{id}`, which then reads no bytes)
keeps it. A GET whose answer is only an event stream (`stream="always"`, the run events)
is left a 405 with `Allow: GET`: running it would start following a run for nobody.
A 405's `Allow` names what every route of the path takes (`allowed_methods`).
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.operation import STREAM_KEY


class HeadMiddleware:
    """`routes` is the app's route list (read at each HEAD, so routes added later count)."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD" or not self._runs_as_get(scope):
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b""}
            await send(message)

        # On a copy: the scope is the server's own, and uvicorn decides from its "method"
        # whether a response has a body; changed in place it took the HEAD for a GET,
        # raised "Response content shorter than Content-Length" for every HEAD, closed the
        # keep-alive connection (the next request was reset) and wrote a chunked body's
        # terminator after a HEAD's headers (tester-2 U2). What the router notes in the
        # scope (the route, for the access line and metrics) is copied back.
        as_get = {**scope, "method": "GET"}
        try:
            await self.app(as_get, receive, headers_only)
        finally:
            for key, value in as_get.items():
                if key != "method" and scope.get(key) is not value:
                    scope[key] = value

    def _runs_as_get(self, scope: Scope) -> bool:
        """Whether this HEAD is to run as a GET (else it is passed on as it is)."""
        if any(route.matches(scope)[0] is Match.FULL for route in self.routes):
            return False  # the route the router picks answers HEAD itself
        as_get = {**scope, "method": "GET"}
        for route in self.routes:
            if route.matches(as_get)[0] is Match.FULL:
                return not _streams_only(route)
        return False  # no GET either: the router's own 404 or 405


def allowed_methods(routes: Sequence[BaseRoute], scope: Scope) -> str:
    """The `Allow` field of a 405 at the scope's path: every method some route of the path
    takes, HEAD wherever GET runs as it (RFC 9110 §15.5.6 wants them all; Starlette names
    only the first route's, so `PUT /conversations/{id}` said `Allow: GET`)."""
    return ", ".join(sorted(path_methods(routes, scope)))


def path_methods(routes: Sequence[BaseRoute], scope: Scope) -> set[str]:
    """What `allowed_methods` lists, as a set (empty: no route has the path); the answer
    to `OPTIONS` adds OPTIONS to it (`app.api.cors.OptionsMiddleware`)."""
    methods: set[str] = set()
    for route in routes:
        if isinstance(route, Route) and route.matches(scope)[0] is not Match.NONE:
            methods |= route.methods or set()
            if "GET" in (route.methods or ()) and not _streams_only(route):
                methods.add("HEAD")
    return methods


def _streams_only(route: BaseRoute) -> bool:
    return isinstance(route, APIRoute) and (route.openapi_extra or {}).get(STREAM_KEY) == "always"
