"""`live` tools: one HTTP request per call (mapping in `app.tools.http_mapping`).

Every request goes through the shared `HttpToolClient`: an httpcore pool whose network
backend is `app.tools.ssrf.GuardedBackend`, so each connection — the first and one per
redirect — is checked against the network policy before it is made. No proxy from the
environment is used (it would connect on the tool's behalf, past the guard).

* Redirects (301/302/303/307/308) are followed up to 5 times; 303, and 301/302 of a POST,
  become a GET without body. A redirect to another origin drops every configured header
  (credentials from `headers_from_env` never leave the configured origin).
* The response body is read up to `max_result_bytes`; a larger body is cut with a note the
  model sees — or, when `redact` or `response.body_mapping` would need the whole body, is
  a tool error (a partial body is never shown unredacted).
* `multimodal.enabled`: the `accept_types` go in `Accept`; a binary (media) response is a
  tool error until Parley stores media.
* The deadline is the call's (the smallest of the binding's `timeout_ms` and the caller's).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import httpcore
import httpx

from app.tools.base import ToolExecutor, ToolFailure, ToolMode
from app.tools.bindings import HttpBinding
from app.tools.http_mapping import MappedRequest, build_request, shape_response
from app.tools.limits import TruncatedText, truncation_note
from app.tools.ssrf import AddressRefused, GuardedBackend

MAX_REDIRECTS = 5
REDIRECTS = frozenset({301, 302, 303, 307, 308})
MEDIA_PREFIXES = ("image/", "audio/", "video/")
MEDIA_TYPES = frozenset({"application/pdf", "application/octet-stream"})


class HttpToolClient:
    """The connection pool every `live` tool shares (closed by the registry)."""

    def __init__(self, backend: GuardedBackend, *, max_connections: int = 50) -> None:
        self.pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=max_connections,
            max_keepalive_connections=10,
            keepalive_expiry=30.0,
            network_backend=backend,
        )

    async def aclose(self) -> None:
        await self.pool.aclose()


class HttpExecutor(ToolExecutor):
    mode: ClassVar[ToolMode] = "live"

    def __init__(
        self,
        binding: HttpBinding,
        client: HttpToolClient,
        *,
        max_result_bytes: int,
        environ: Mapping[str, str],
    ) -> None:
        self.binding = binding
        self._client = client
        self.max_result_bytes = max_result_bytes
        self._environ = environ

    async def call(self, arguments: dict[str, Any], *, timeout_s: float) -> Any:
        timeout = min(timeout_s, self.binding.timeout_s or math.inf)
        request = build_request(self.binding, arguments, self._environ)
        if self.binding.multimodal_accept:
            request.headers["Accept"] = ", ".join(self.binding.multimodal_accept)
        try:
            return await self._send(request, deadline_s=timeout)
        except AddressRefused as exc:
            raise ToolFailure(str(exc)) from None
        except httpcore.TimeoutException:
            raise ToolFailure(f"the HTTP request timed out after {timeout:g} s") from None
        except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol) as e:
            raise ToolFailure(f"the HTTP request failed: {type(e).__name__}: {e}") from None

    async def _send(self, request: MappedRequest, *, deadline_s: float) -> Any:
        origin = httpx.URL(request.url)
        current = request
        for _ in range(MAX_REDIRECTS + 1):
            headers = list(current.headers.items())
            extensions = {
                "timeout": dict.fromkeys(("connect", "read", "write", "pool"), deadline_s)
            }
            async with self._client.pool.stream(
                current.method,
                current.url,
                headers=headers,
                content=current.body,
                extensions=extensions,
            ) as response:
                location = _header(response.headers, b"location")
                if response.status in REDIRECTS and location:
                    current = _redirected(current, response.status, location, origin)
                    continue
                return await self._read(response)
        raise ToolFailure(f"more than {MAX_REDIRECTS} redirects")

    async def _read(self, response: httpcore.Response) -> Any:
        content_type = (_header(response.headers, b"content-type") or "").split(";")[0].strip()
        if self.binding.multimodal_accept is not None and _is_media(content_type):
            raise ToolFailure(
                f"the tool returned {content_type} media, which Parley cannot pass to the "
                "model until media support lands"
            )
        limit = self.max_result_bytes
        body = bytearray()
        async for chunk in response.aiter_stream():
            body.extend(chunk)
            if len(body) > limit:
                break
        if len(body) <= limit:
            return shape_response(self.binding, response.status, bytes(body))
        if not 200 <= response.status < 300:
            return shape_response(self.binding, response.status, bytes(body[:limit]))
        if self.binding.redact or self.binding.response_mapping is not None:
            raise ToolFailure(
                f"the response is larger than {limit} bytes (PARLEY_TOOL_MAX_RESULT_BYTES), "
                "too large to redact or map"
            )
        text = bytes(body[:limit]).decode("utf-8", "ignore")
        return TruncatedText(text + truncation_note(None, limit))


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _is_media(content_type: str) -> bool:
    return content_type.startswith(MEDIA_PREFIXES) or content_type in MEDIA_TYPES


def _redirected(
    request: MappedRequest, status: int, location: str, origin: httpx.URL
) -> MappedRequest:
    try:
        target = httpx.URL(request.url).join(location)
    except httpx.InvalidURL as exc:
        raise ToolFailure(f"redirect to an invalid URL refused: {exc}") from None
    if target.scheme not in ("http", "https"):
        raise ToolFailure(f"redirect to a non-HTTP URL refused ({target.scheme})")
    method, body, headers = request.method, request.body, dict(request.headers)
    if status == 303 or (status in (301, 302) and method == "POST"):
        method, body = ("HEAD" if method == "HEAD" else "GET"), None
        headers.pop("Content-Type", None)
    same_origin = (target.scheme, target.host, target.port) == (
        origin.scheme,
        origin.host,
        origin.port,
    )
    if not same_origin:
        headers = {}
    return MappedRequest(method=method, url=str(target), headers=headers, body=body)
