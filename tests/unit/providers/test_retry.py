from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest

from app.errors import ProviderError, ProviderRateLimited
from app.providers.anthropic import AnthropicProvider
from app.providers.base import (
    Finish,
    LLMProvider,
    ProviderEvent,
    ProviderMessage,
    ProviderRequest,
    TextDelta,
    collect,
)
from app.providers.openai import OpenAIProvider
from app.providers.retry import RetryingProvider
from tests.unit.providers.wire import Server, fixture_bytes, json_response, run, stream_response

REQ = ProviderRequest(model="m", messages=[ProviderMessage(role="user", content="hi")])


class FakeSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


class Scripted(LLMProvider):
    """Each attempt runs the next script: a list of events and/or an exception to raise."""

    name = "scripted"
    default_model = "s-1"

    def __init__(self, *scripts: list[ProviderEvent | Exception]) -> None:
        self.scripts = list(scripts)
        self.attempts = 0
        self.closed = 0

    async def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        script = self.scripts[self.attempts]
        self.attempts += 1
        try:
            for item in script:
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            self.closed += 1

    async def aclose(self) -> None:
        self.closed += 100


def openai(server: Server) -> OpenAIProvider:
    return OpenAIProvider(server.client(), api_key="k", base_url="https://x/v1", idle_timeout_s=1)


async def test_500_then_success_through_the_openai_adapter() -> None:
    server = Server(
        [
            lambda: json_response(500, {"error": {"message": "boom"}}),
            lambda: json_response(503, b"unavailable"),
            lambda: stream_response(fixture_bytes("openai_text.txt")),
        ]
    )
    sleep = FakeSleep()
    p = RetryingProvider(openai(server), max_retries=3, sleep=sleep, rng=random.Random(1))
    result = await collect(p.stream(REQ))
    assert len(server.requests) == 3
    assert result.text.startswith("Bonjour") and result.finish_reason == "stop"
    assert len(sleep.calls) == 2
    assert 0.125 <= sleep.calls[0] <= 0.25 and 0.25 <= sleep.calls[1] <= 0.5


async def test_429_retry_after_is_honoured() -> None:
    server = Server(
        [
            lambda: json_response(429, {"error": {"message": "slow down"}}, {"retry-after": "3"}),
            lambda: stream_response(fixture_bytes("openai_text.txt")),
        ]
    )
    sleep = FakeSleep()
    result = await collect(RetryingProvider(openai(server), 2, sleep=sleep).stream(REQ))
    assert sleep.calls == [3.0]
    assert result.finish_reason == "stop"


async def test_retry_after_beyond_the_cap_fails_immediately() -> None:
    server = Server([lambda: json_response(429, b"{}", {"retry-after": "120"})])
    sleep = FakeSleep()
    with pytest.raises(ProviderRateLimited):
        await run(RetryingProvider(openai(server), 5, sleep=sleep, max_retry_after_s=10), REQ)
    assert sleep.calls == [] and len(server.requests) == 1


async def test_gives_up_after_max_retries_with_the_last_error() -> None:
    server = Server(
        [lambda i=i: json_response(502, f"bad gateway {i}".encode()) for i in range(3)]  # type: ignore[misc]
    )
    sleep = FakeSleep()
    with pytest.raises(ProviderError, match="bad gateway 2") as info:
        await run(RetryingProvider(openai(server), max_retries=2, sleep=sleep), REQ)
    assert info.value.retryable is True
    assert len(server.requests) == 3 and len(sleep.calls) == 2


async def test_non_retryable_error_is_not_retried() -> None:
    server = Server([lambda: json_response(400, {"error": {"message": "bad param"}})])
    sleep = FakeSleep()
    with pytest.raises(ProviderError, match="bad param"):
        await run(RetryingProvider(openai(server), 3, sleep=sleep), REQ)
    assert len(server.requests) == 1 and sleep.calls == []


async def test_no_retry_once_an_event_was_yielded() -> None:
    err = ProviderError("dropped", retryable=True)
    inner = Scripted([TextDelta("par"), err], [TextDelta("never"), Finish("stop")])
    sleep = FakeSleep()
    seen: list[ProviderEvent] = []
    with pytest.raises(ProviderError) as info:
        async for ev in RetryingProvider(inner, 3, sleep=sleep).stream(REQ):
            seen.append(ev)
    assert info.value is err  # propagated unchanged
    assert seen == [TextDelta("par")]
    assert inner.attempts == 1 and sleep.calls == []


async def test_anthropic_overloaded_mid_stream_is_not_retried() -> None:
    server = Server([lambda: stream_response(fixture_bytes("anthropic_error_midstream.txt"))])
    p = AnthropicProvider(server.client(), api_key="k", base_url="https://a", idle_timeout_s=1)
    with pytest.raises(ProviderError, match="Overloaded"):
        await run(RetryingProvider(p, 3, sleep=FakeSleep()), REQ)
    assert len(server.requests) == 1


async def test_retry_before_first_event_then_stream_passes_through() -> None:
    inner = Scripted(
        [ProviderError("connect", retryable=True)],
        [TextDelta("a"), TextDelta("b"), Finish("stop")],
    )
    p = RetryingProvider(inner, 1, sleep=FakeSleep())
    assert await run(p, REQ) == [TextDelta("a"), TextDelta("b"), Finish("stop")]
    assert inner.attempts == 2 and inner.closed == 2


async def test_zero_retries() -> None:
    inner = Scripted([ProviderError("x", retryable=True)], [Finish("stop")])
    with pytest.raises(ProviderError):
        await run(RetryingProvider(inner, 0, sleep=FakeSleep()), REQ)
    assert inner.attempts == 1


async def test_early_stop_by_consumer_closes_inner_stream() -> None:
    inner = Scripted([TextDelta("a"), TextDelta("b"), Finish("stop")])
    stream = RetryingProvider(inner, 1, sleep=FakeSleep()).stream(REQ)
    assert await anext(stream) == TextDelta("a")
    await stream.aclose()  # type: ignore[attr-defined]
    assert inner.closed == 1


async def test_identity_and_aclose_delegate() -> None:
    inner = Scripted()
    p = RetryingProvider(inner, 2)
    assert (p.name, p.default_model) == ("scripted", "s-1")
    await p.aclose()
    assert inner.closed == 100


def test_backoff_grows_and_is_capped() -> None:
    p = RetryingProvider(Scripted(), 10, base_delay_s=0.5, max_delay_s=2.0, rng=random.Random(0))
    err = ProviderError("x", retryable=True)
    delays = [p.delay_for(k, err) for k in range(6)]
    caps = [0.5, 1.0, 2.0, 2.0, 2.0, 2.0]
    for d, cap in zip(delays, caps, strict=True):
        assert d is not None and cap / 2 <= d <= cap


def test_negative_retries_rejected() -> None:
    with pytest.raises(ValueError):
        RetryingProvider(Scripted(), -1)
