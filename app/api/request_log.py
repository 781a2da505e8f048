"""Request ids, the access log line and the request span (pure ASGI middleware).

Every request gets an id: the client's `X-Request-ID` when it is a usable token (1-128
characters of `[A-Za-z0-9._:-]`), else a new one; it is returned in `X-Request-ID`, set in
`app.logs.REQUEST_ID` for every log line written while serving (and by the runs the
request starts), and put on the request's span. When the response is over — for a
stream, when its last byte is sent — one `parley.access` line says method, route
template, status, latency, user, conversation and run ids.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer, set_span_in_context
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.domain.ids import new_id
from app.logs import PRINCIPAL_USER_KEY, REQUEST_ID

log = logging.getLogger("parley.access")
REQUEST_ID_HEADER = "x-request-id"
_USABLE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def request_id_from(headers: list[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name == b"x-request-id":
            text = value.decode("latin-1").strip()
            if _USABLE_ID.match(text):
                return text
            break
    return new_id()


class RequestLogMiddleware:
    def __init__(self, app: ASGIApp, tracer: Tracer | None = None) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope.get("headers", []))
        id_token = REQUEST_ID.set(request_id)
        span = None
        otel_token = None
        if self.tracer is not None:
            span = self.tracer.start_span(
                f"HTTP {scope['method']}",
                kind=SpanKind.SERVER,
                attributes={
                    "http.request.method": scope["method"],
                    "url.path": scope["path"],
                    "parley.request_id": request_id,
                },
            )
            otel_token = otel_context.attach(set_span_in_context(span))
        started = time.perf_counter()
        seen: dict[str, Any] = {"status": 500, "run_id": None}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                headers = list(message.get("headers", []))
                for name, value in headers:
                    if name.lower() == b"x-run-id":
                        seen["run_id"] = value.decode("latin-1")
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self._finish(scope, seen, started, request_id, span)
            if otel_token is not None:
                otel_context.detach(otel_token)
            REQUEST_ID.reset(id_token)

    def _finish(
        self, scope: Scope, seen: dict[str, Any], started: float, request_id: str, span: Any
    ) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or "(unrouted)"
        params = scope.get("path_params") or {}
        user = (scope.get("state") or {}).get(PRINCIPAL_USER_KEY)
        latency_ms = (time.perf_counter() - started) * 1000
        status = seen["status"]
        log.info(
            "%s %s %d %.1f ms",
            scope["method"],
            template,
            status,
            latency_ms,
            extra={
                "method": scope["method"],
                "route": template,
                "status": status,
                "latency_ms": round(latency_ms, 2),
                "user_id": user,
                "conversation_id": params.get("conversation_id"),
                "run_id": seen["run_id"] or params.get("run_id"),
            },
        )
        if span is not None:
            span.update_name(f"HTTP {scope['method']} {template}")
            span.set_attributes({"http.route": template, "http.response.status_code": status})
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR))
            span.end()
