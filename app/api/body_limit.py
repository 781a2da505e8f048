"""Refuse request bodies larger than a bound before they are buffered (413)."""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.error_handlers import problem_response
from app.errors import MediaTooLarge, MessageTooLarge, ParleyError

# Requests that may carry media bytes (uploads, multipart or base64 parts).
MEDIA_PATHS = re.compile(r"^/media$|^/conversations/[^/]+/messages(/[^/]+/edit)?$")
# A whole conversation document.
IMPORT_PATH = "/conversations/import"


class BodyLimitMiddleware:
    """Checks `Content-Length` up front and counts streamed bytes for bodies without one.
    Routes matching `MEDIA_PATHS` get `media_max_bytes` instead (their media parts are
    then limited one by one by `PARLEY_MEDIA_MAX_MB`), the import `import_max_bytes`."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        media_max_bytes: int | None = None,
        import_max_bytes: int | None = None,
    ) -> None:
        self.app = app
        self.default_max = max_bytes
        self.media_max = max(max_bytes, media_max_bytes or 0)
        self.import_max = max(max_bytes, import_max_bytes or 0)

    @staticmethod
    def _too_large(limit: int, path: str = "") -> ParleyError:
        """`media_too_large` for an upload (its body is the media), else `message_too_large`."""
        if path == "/media":
            return MediaTooLarge(f"The upload exceeds {limit} bytes.")
        return MessageTooLarge(f"The request body exceeds {limit} bytes.")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if path == IMPORT_PATH:
            limit = self.import_max
        else:
            limit = self.media_max if MEDIA_PATHS.match(path) else self.default_max
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    break  # the server refuses it; count what arrives
                if declared < 0:
                    break  # not a length (uvicorn's parsers refuse it): count what arrives
                if declared > limit:
                    await problem_response(self._too_large(limit, path))(scope, receive, send)
                    return
                # The server delivers exactly Content-Length bytes (HTTP/1.1 framing, as
                # uvicorn's h11/httptools enforce), so a declared length within the limit
                # needs no counting on every request.
                await self.app(scope, receive, send)
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise self._too_large(limit, path)
            return message

        await self.app(scope, limited_receive, send)
