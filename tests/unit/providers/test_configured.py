"""RuntimeConfig providers: request policies, retry budget, base URLs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from app.errors import ProviderError
from app.providers.base import Finish, LLMProvider, ProviderEvent, ProviderRequest, TextDelta
from app.providers.configured import (
    ConfiguredProvider,
    ProviderSpec,
    RetryPolicy,
    anthropic_base_url,
    build_configured_provider,
    openai_base_url,
)
from app.providers.factory import build_providers
from app.providers.rate import TokenBucket
from app.providers.retry import RetryingProvider
from app.settings import Settings


class Counting(LLMProvider):
    name = "counting"
    default_model = "m"

    def __init__(self, fail: int = 0) -> None:
        self.running = 0
        self.peak = 0
        self.calls = 0
        self.fail = fail
        self.seen: list[ProviderRequest] = []

    async def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        self.calls += 1
        self.seen.append(request)
        if self.calls <= self.fail:
            raise ProviderError("upstream down", retryable=True)
        self.running += 1
        self.peak = max(self.peak, self.running)
        await asyncio.sleep(0.02)
        self.running -= 1
        yield TextDelta("hi")
        yield Finish("stop")


def request(**parameters: object) -> ProviderRequest:
    return ProviderRequest(model="m", messages=[], parameters=dict(parameters))


async def drain(provider: LLMProvider, req: ProviderRequest) -> None:
    async for _ in provider.stream(req):
        pass


async def test_defaults_fill_unset_parameters_and_unsupported_ones_are_dropped() -> None:
    inner = Counting()
    spec = ProviderSpec(
        id="p",
        type="openai",
        model="m",
        defaults={"temperature": 0.2, "top_p": 0.9},
        unsupported_params=frozenset({"top_p"}),
    )
    provider = ConfiguredProvider(spec, inner)
    await drain(provider, request(temperature=0.7, max_tokens=5))
    assert inner.seen[0].parameters == {"temperature": 0.7, "max_tokens": 5}
    assert provider.name == "p" and provider.default_model == "m"


async def test_stream_max_concurrent_caps_streams() -> None:
    inner = Counting()
    provider = ConfiguredProvider(
        ProviderSpec(id="p", type="openai", model="m", max_concurrent_streams=2), inner
    )
    await asyncio.gather(*(drain(provider, request()) for _ in range(6)))
    assert inner.peak == 2 and inner.calls == 6


async def test_rate_limit_waits_for_tokens() -> None:
    provider = ConfiguredProvider(
        ProviderSpec(id="p", type="openai", model="m", rate_limit=(20, 1)), Counting()
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.gather(*(drain(provider, request()) for _ in range(4)))
    assert loop.time() - started >= 0.14  # 3 waits of 1/20 s after the first token


async def test_retry_budget_stops_retries_when_empty() -> None:
    budget = TokenBucket(0.001, 1)
    inner = Counting(fail=10)
    retrying = RetryingProvider(
        inner, 5, base_delay_s=0, budget=budget, sleep=lambda s: asyncio.sleep(0)
    )
    with pytest.raises(ProviderError):
        await drain(retrying, request())
    assert inner.calls == 2  # the first attempt and the one retry the bucket allowed


def test_base_urls_follow_promptkit_conventions() -> None:
    def spec(kind: str, url: str | None) -> ProviderSpec:
        return ProviderSpec(id="x", type=kind, model="m", base_url=url)  # type: ignore[arg-type]

    assert openai_base_url(spec("openai", None)) == "https://api.openai.com/v1"
    assert openai_base_url(spec("ollama", None)) == "http://127.0.0.1:11434/v1"
    assert openai_base_url(spec("vllm", "http://gpu:8000/")) == "http://gpu:8000/v1"
    assert openai_base_url(spec("vllm", "http://gpu:8000/v1")) == "http://gpu:8000/v1"
    assert (
        anthropic_base_url(spec("claude", "https://api.anthropic.com/v1"))
        == "https://api.anthropic.com"
    )


def test_factory_adds_configured_providers_with_their_retry_policy() -> None:
    settings = Settings(openai_api_key=None, anthropic_api_key=None, provider_max_retries=3)
    client = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(500)))
    specs = [
        ProviderSpec(
            id="gw",
            type="openai",
            model="m",
            idle_timeout_s=7,
            retry=RetryPolicy(max_retries=1, budget=(1.0, 2)),
        ),
        ProviderSpec(id="cl", type="claude", model="c"),
        ProviderSpec(id="mock", type="mock", model="scripted"),
    ]
    providers = build_providers(settings, client, specs)
    assert set(providers) == {"mock", "gw", "cl"}
    gw = providers["gw"]
    assert isinstance(gw, ConfiguredProvider) and isinstance(gw.inner, RetryingProvider)
    assert gw.inner.max_retries == 1 and gw.inner.budget is not None
    assert gw.inner.inner.idle_timeout_s == 7  # type: ignore[attr-defined]
    cl = providers["cl"]
    assert isinstance(cl, ConfiguredProvider) and isinstance(cl.inner, RetryingProvider)
    assert cl.inner.max_retries == 3  # no stream_retry: Parley's default
    assert providers["mock"].default_model == "scripted"  # the RuntimeConfig id replaced it
    assert build_configured_provider(specs[2], settings, client, None).name == "mock"
