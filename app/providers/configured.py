"""Providers declared in a RuntimeConfig's `spec.providers`.

A `ProviderSpec` is one checked entry (`app.tools.config_providers` checks the document and
refuses what Parley cannot apply). `build_configured_provider` turns it into an
`LLMProvider` named by the entry's `id`, which conversations pick with `provider: <id>`:

* `openai` and `vllm` / `ollama` (OpenAI-compatible servers) use the Chat Completions
  adapter, `claude` the Anthropic Messages adapter, `mock` the mock provider;
* `headers` are sent with every request; `stream_idle_timeout` is the adapter's idle timeout;
* `stream_retry` replaces Parley's default retries (`enabled: false` means none; its
  `budget` is a token bucket shared by the provider's calls); absent, the provider retries
  like the environment-configured ones (`PARLEY_PROVIDER_MAX_RETRIES`);
* `ConfiguredProvider` applies `defaults` (temperature, top_p, max_tokens) where the pack
  and request leave a parameter unset, drops `unsupported_params`, waits for `rate_limit`
  (requests per second, per instance) and caps concurrent streams at
  `stream_max_concurrent`;
* `pricing` is per 1K tokens in the file; the lifespan adds it to the price table for the
  provider's model.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from app.providers.anthropic import AnthropicProvider
from app.providers.base import LLMProvider, ProviderEvent, ProviderRequest
from app.providers.mock import MockProvider
from app.providers.openai import OpenAIProvider
from app.providers.rate import TokenBucket
from app.providers.retry import RetryingProvider
from app.providers.scenarios import Scenarios
from app.settings import ModelPrice, Settings

ConfiguredType = Literal["openai", "claude", "ollama", "vllm", "mock"]
CONFIGURED_TYPES: tuple[ConfiguredType, ...] = ("openai", "claude", "ollama", "vllm", "mock")


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int
    base_delay_s: float = 0.25
    max_delay_s: float = 2.0
    budget: tuple[float, int] | None = None  # (tokens per second, burst)


@dataclass(frozen=True)
class ProviderSpec:
    id: str
    type: ConfiguredType
    model: str
    base_url: str | None = None
    api_key: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    unsupported_params: frozenset[str] = frozenset()
    pricing: ModelPrice | None = None
    pricing_correct_at: str | None = None
    idle_timeout_s: float | None = None
    retry: RetryPolicy | None = None  # None: Parley's default retries
    rate_limit: tuple[int, int] | None = None  # (requests per second, burst)
    max_concurrent_streams: int | None = None


class ConfiguredProvider(LLMProvider):
    """An adapter under a RuntimeConfig id, with the entry's request-level policies."""

    def __init__(self, spec: ProviderSpec, inner: LLMProvider) -> None:
        self.name = spec.id
        self.default_model = spec.model
        self.spec = spec
        self.inner = inner
        self._bucket = TokenBucket(*spec.rate_limit) if spec.rate_limit else None
        self._slots = (
            asyncio.Semaphore(spec.max_concurrent_streams) if spec.max_concurrent_streams else None
        )

    def __repr__(self) -> str:
        return f"ConfiguredProvider({self.spec.id!r}, {self.inner!r})"

    def prepare(self, request: ProviderRequest) -> ProviderRequest:
        """The request with the entry's defaults filled in and unsupported params dropped."""
        params = {**self.spec.defaults, **request.parameters}
        for name in self.spec.unsupported_params:
            params.pop(name, None)
        if params == request.parameters:
            return request
        return request.model_copy(update={"parameters": params})

    def request_body(self, request: ProviderRequest) -> dict[str, Any]:
        return self.inner.request_body(self.prepare(request))

    def token_encoding(self, model: str) -> str | None:
        """OpenAI's own models only: an OpenAI-compatible server (`ollama`, `vllm`) runs
        models with their own tokenizers, counted by the estimate."""
        return self.inner.token_encoding(model) if self.spec.type == "openai" else None

    async def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        request = self.prepare(request)
        if self._bucket is not None:
            await self._bucket.take()
        if self._slots is None:
            async for event in self.inner.stream(request):
                yield event
            return
        async with self._slots:
            async for event in self.inner.stream(request):
                yield event

    async def aclose(self) -> None:
        await self.inner.aclose()


OLLAMA_DEFAULT_URL = "http://127.0.0.1:11434"


def openai_base_url(spec: ProviderSpec) -> str:
    """Chat Completions base URL. PromptKit's `ollama`/`vllm` `base_url` is the server root
    (it appends `/v1/chat/completions`); `openai`'s includes `/v1`, as in Parley."""
    if spec.type == "openai":
        return (spec.base_url or "https://api.openai.com/v1").rstrip("/")
    root = (spec.base_url or OLLAMA_DEFAULT_URL).rstrip("/")
    return root if root.endswith("/v1") else f"{root}/v1"


def anthropic_base_url(spec: ProviderSpec) -> str:
    """Parley's adapter appends `/v1/messages`; PromptKit accepts a base with `/v1`."""
    root = (spec.base_url or "https://api.anthropic.com").rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


def build_configured_provider(
    spec: ProviderSpec,
    settings: Settings,
    client: httpx.AsyncClient,
    scenarios: Scenarios | None,
) -> LLMProvider:
    idle = spec.idle_timeout_s or settings.default_timeout_s
    inner: LLMProvider
    if spec.type == "mock":
        inner = MockProvider(
            scenarios=scenarios, delay_ms=settings.mock_delay_ms, default_model=spec.model
        )
        return ConfiguredProvider(spec, inner)
    if spec.type == "claude":
        inner = AnthropicProvider(
            client=client,
            api_key=spec.api_key,
            base_url=anthropic_base_url(spec),
            default_model=spec.model,
            idle_timeout_s=idle,
            extra_headers=spec.headers,
        )
    else:
        inner = OpenAIProvider(
            client=client,
            api_key=spec.api_key,
            base_url=openai_base_url(spec),
            default_model=spec.model,
            idle_timeout_s=idle,
            extra_headers=spec.headers,
        )
    policy = spec.retry
    if policy is None:
        retrying = RetryingProvider(inner, settings.provider_max_retries)
    else:
        retrying = RetryingProvider(
            inner,
            policy.max_retries,
            base_delay_s=policy.base_delay_s,
            max_delay_s=policy.max_delay_s,
            budget=TokenBucket(*policy.budget) if policy.budget else None,
        )
    return ConfiguredProvider(spec, retrying)
