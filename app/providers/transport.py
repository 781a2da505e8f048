"""HTTP plumbing shared by the OpenAI and Anthropic adapters.

`stream_sse` POSTs a JSON body, checks the status, and yields SSE events while enforcing an
*idle* timeout: the limit applies to each wait for the provider (response headers, then
every chunk), never to the stream as a whole, and never to the time the consumer spends
between chunks. Every failure becomes an `app.errors` provider error:

* 429 -> `ProviderRateLimited(retryable=True)`, Retry-After (seconds or HTTP date, or
  `retry-after-ms`) in `extra["retry_after_s"]` and echoed as a `Retry-After` header;
* 5xx and 529 -> `ProviderError(retryable=True)`; other 4xx -> `retryable=False`, with the
  provider's own error message (parsed from its JSON body) in `detail`;
* connection failures and idle timeouts are retryable until the first byte of the stream
  arrived; afterwards they are not (a partial answer was already delivered).

API keys never appear in errors: every detail string passes through `redact`.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncGenerator, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from app.errors import ProviderError, ProviderRateLimited, ProviderTimeout
from app.json_text import loads_strict
from app.providers.sse_lines import SSEDecoder, SSEEvent

MAX_DETAIL_CHARS = 500


# The client's defaults; `stream_sse` sets each call's own (the idle timeout, which also
# bounds its wait for a free connection).
PROVIDER_TIMEOUT = httpx.Timeout(connect=10.0, read=None, write=30.0, pool=10.0)


def provider_http_client(max_connections: int) -> httpx.AsyncClient:
    """The HTTP client every provider adapter shares. Every connection it may open is kept
    alive once idle: with httpx's default (20 kept of 100), every streamed call beyond the
    20th opened a new TCP (and TLS) connection to the provider and closed it afterwards."""
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    return httpx.AsyncClient(timeout=PROVIDER_TIMEOUT, limits=limits)


def redact(text: str, secret: str | None) -> str:
    """Remove `secret` (an API key) from `text`."""
    if secret and len(secret) >= 4:
        return text.replace(secret, "[redacted]")
    return text


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from `retry-after-ms` or `Retry-After` (delta-seconds or HTTP date)."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000.0)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def error_message(body: bytes) -> str:
    """The human message of a provider error body (`{"error": {"message": ...}}` for both
    OpenAI and Anthropic), else the start of the raw body."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        doc = json.loads(text)
    except ValueError:
        return text[:MAX_DETAIL_CHARS]
    if isinstance(doc, dict):
        err = doc.get("error", doc)
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            kind = err.get("type")
            msg: str = err["message"]
            return f"{kind}: {msg}" if isinstance(kind, str) and kind else msg
        if isinstance(err, str):
            return err
        if isinstance(doc.get("message"), str):
            return str(doc["message"])
    return text[:MAX_DETAIL_CHARS]


def http_error(
    provider: str, status: int, headers: Mapping[str, str], body: bytes, secret: str | None
) -> ProviderError:
    """Map a non-2xx provider response to the provider error tree."""
    message = redact(error_message(body), secret)[:MAX_DETAIL_CHARS]
    detail = f"{provider} returned HTTP {status}" + (f": {message}" if message else "")
    if status == 429:
        retry_after = parse_retry_after(headers)
        if retry_after is None:
            return ProviderRateLimited(detail, retryable=True)
        return ProviderRateLimited(
            detail,
            retryable=True,
            extra={"retry_after_s": retry_after},
            headers={"Retry-After": str(math.ceil(retry_after))},
        )
    return ProviderError(detail, retryable=status >= 500, extra={"provider_status": status})


def _timeout(idle_timeout_s: float) -> httpx.Timeout:
    # httpx's read timeout is itself per-read (idle), matching our own asyncio guard.
    return httpx.Timeout(idle_timeout_s, connect=min(idle_timeout_s, 30.0))


async def stream_sse(
    client: httpx.AsyncClient,
    *,
    provider: str,
    url: str,
    headers: Mapping[str, str],
    body: Mapping[str, Any],
    idle_timeout_s: float,
    secret: str | None,
) -> AsyncGenerator[SSEEvent, None]:
    """POST `body` as JSON and yield the SSE events of the response (see module doc)."""
    request = client.build_request(
        "POST", url, headers=dict(headers), json=dict(body), timeout=_timeout(idle_timeout_s)
    )
    try:
        async with asyncio.timeout(idle_timeout_s):
            response = await client.send(request, stream=True)
    except (TimeoutError, httpx.TimeoutException) as exc:
        raise ProviderTimeout(
            f"{provider} did not respond within {idle_timeout_s:g}s ({type(exc).__name__})",
            retryable=True,
        ) from None
    except httpx.TransportError as exc:
        raise ProviderError(
            f"could not reach {provider}: {type(exc).__name__}: {redact(str(exc), secret)}",
            retryable=True,
        ) from None

    received = False
    try:
        if response.status_code >= 400:
            try:
                async with asyncio.timeout(idle_timeout_s):
                    payload = await response.aread()
            except (TimeoutError, httpx.HTTPError):
                payload = b""
            raise http_error(provider, response.status_code, response.headers, payload, secret)
        decoder = SSEDecoder()
        chunks = response.aiter_bytes()
        while True:
            try:
                async with asyncio.timeout(idle_timeout_s):
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                break
            except (TimeoutError, httpx.TimeoutException):
                raise ProviderTimeout(
                    f"{provider} stream idle for more than {idle_timeout_s:g}s",
                    retryable=not received,
                ) from None
            except httpx.TransportError as exc:
                raise ProviderError(
                    f"{provider} connection failed mid-stream: {type(exc).__name__}",
                    retryable=not received,
                ) from None
            received = received or bool(chunk)
            for event in decoder.feed(chunk):
                yield event
        for event in decoder.flush():
            yield event
    finally:
        await response.aclose()


def parse_json_event(provider: str, data: str, *, retryable: bool) -> dict[str, Any]:
    """Parse one SSE `data` payload that must be a JSON object."""
    try:
        doc = loads_strict(data)
    except ValueError:
        raise ProviderError(
            f"{provider} sent malformed JSON in its stream: {data[:200]!r}", retryable=retryable
        ) from None
    if not isinstance(doc, dict):
        raise ProviderError(
            f"{provider} sent a non-object stream event: {data[:200]!r}", retryable=retryable
        )
    return doc


def parse_tool_arguments(provider: str, name: str, raw: str) -> dict[str, Any]:
    """Parse streamed tool-call arguments; an empty string means no arguments."""
    if not raw.strip():
        return {}
    try:
        args = loads_strict(raw)
    except ValueError:
        raise ProviderError(
            f"{provider} returned invalid JSON arguments for tool {name!r}: {raw[:200]!r}"
        ) from None
    if not isinstance(args, dict):
        raise ProviderError(f"{provider} returned non-object arguments for tool {name!r}")
    return args


def unexpected_shape(provider: str, data: str, exc: Exception, emitted: bool) -> ProviderError:
    """A well-formed JSON event whose structure the adapter cannot read."""
    return ProviderError(
        f"{provider} sent an unexpected stream event ({type(exc).__name__}): {data[:200]!r}",
        retryable=not emitted,
    )
