"""`RetryingProvider`: exponential backoff around any `LLMProvider`.

A call is retried only when it failed with a `retryable` `ProviderError` **before any event
was yielded**; once the caller has seen an event, a retry would duplicate output, so the
error propagates unchanged. Delay for attempt *k* (0-based) is
`min(max_delay_s, base_delay_s * 2**k)` scaled by a jitter factor in [0.5, 1.0]. A
Retry-After hint (`err.extra["retry_after_s"]`, set by the adapters on 429) replaces the
computed delay; if it exceeds `max_retry_after_s` the error is raised at once instead of
holding the run (the client gets a 429 with the hint and can come back later).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from app.errors import ProviderError
from app.providers.base import LLMProvider, ProviderEvent, ProviderRequest
from app.providers.rate import TokenBucket

log = logging.getLogger("parley.providers")

Sleep = Callable[[float], Awaitable[None]]


class RetryingProvider(LLMProvider):
    def __init__(
        self,
        inner: LLMProvider,
        max_retries: int,
        base_delay_s: float = 0.25,
        max_delay_s: float = 4.0,
        sleep: Sleep = asyncio.sleep,
        *,
        max_retry_after_s: float = 10.0,
        rng: random.Random | None = None,
        budget: TokenBucket | None = None,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.inner = inner
        self.name = inner.name
        self.default_model = inner.default_model
        self.media_token_rule = inner.media_token_rule
        self.max_retries = max_retries
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.max_retry_after_s = max_retry_after_s
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.budget = budget

    def media_support(self, kind: str, mime_type: str, source: str) -> str | None:
        return self.inner.media_support(kind, mime_type, source)

    def request_body(self, request: ProviderRequest) -> dict[str, Any]:
        return self.inner.request_body(request)

    def token_encoding(self, model: str) -> str | None:
        return self.inner.token_encoding(model)

    def __repr__(self) -> str:
        return f"RetryingProvider({self.inner!r}, max_retries={self.max_retries})"

    def delay_for(self, attempt: int, err: ProviderError) -> float | None:
        """Seconds to wait before retry number `attempt + 1`, or None to give up now."""
        hint = err.extra.get("retry_after_s")
        if isinstance(hint, int | float):
            wait = float(hint)
            return wait if wait <= self.max_retry_after_s else None
        backoff = min(self.max_delay_s, self.base_delay_s * (2.0**attempt))
        return backoff * (0.5 + 0.5 * self._rng.random())

    async def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        attempt = 0
        while True:
            yielded = False
            delay: float | None = None
            events = self.inner.stream(request)
            try:
                async for event in events:
                    yielded = True
                    yield event
                return
            except ProviderError as err:
                if yielded or not err.retryable or attempt >= self.max_retries:
                    raise
                delay = self.delay_for(attempt, err)
                if delay is None or (self.budget is not None and not self.budget.try_take()):
                    raise
                log.info(
                    "%s: retryable error (%s), retry %d/%d in %.2fs",
                    self.name,
                    err.detail,
                    attempt + 1,
                    self.max_retries,
                    delay,
                )
            finally:
                aclose = getattr(events, "aclose", None)
                if aclose is not None:
                    await aclose()
            await self._sleep(delay or 0.0)
            attempt += 1

    async def aclose(self) -> None:
        await self.inner.aclose()
