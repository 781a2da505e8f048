"""Parley with the mock provider's token emissions time-stamped, for bench/streaming.py.

The app is `app.main.create_app()` unchanged, plus two things that exist only in this
benchmark process:

* a wrapper around `MockProvider.stream` that records `time.monotonic_ns()` as each text
  delta leaves the provider, keyed by the text of the request's last user message (the
  benchmark makes it unique per stream). It costs about a microsecond per token.
* `GET /__bench/emissions`, which returns the recorded stamps and forgets them.

`time.monotonic_ns()` reads CLOCK_MONOTONIC, one clock for every process of a Linux host,
so the client can subtract these stamps from its own receive times.

    uvicorn bench.streaming_app:create_app --factory
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI

from app.main import create_app as create_parley
from app.providers.base import ProviderEvent, ProviderRequest, TextDelta
from app.providers.mock import MockProvider, message_text

EMISSIONS: dict[str, list[int]] = {}


def _last_user_text(request: ProviderRequest) -> str:
    last = next((m for m in reversed(request.messages) if m.role == "user"), None)
    return message_text(last) if last else ""


def instrument_mock_provider() -> None:
    """Wrap `MockProvider.stream` (once) so that it records when each text delta leaves."""
    original: Any = MockProvider.stream
    if getattr(original, "bench_instrumented", False):
        return

    async def stream(self: MockProvider, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        stamps = EMISSIONS.setdefault(_last_user_text(request), [])
        async for event in original(self, request):
            if isinstance(event, TextDelta) and event.text:
                stamps.append(time.monotonic_ns())
            yield event

    stream.bench_instrumented = True  # type: ignore[attr-defined]
    MockProvider.stream = stream  # type: ignore[method-assign]


def create_app() -> FastAPI:
    instrument_mock_provider()
    app = create_parley()

    @app.get("/__bench/emissions", include_in_schema=False)
    async def emissions() -> dict[str, list[int]]:
        out = dict(EMISSIONS)
        EMISSIONS.clear()
        return out

    return app
