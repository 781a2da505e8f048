"""Build the process's providers from `Settings` and the RuntimeConfig's `spec.providers`.

`build_providers` is synchronous and cheap, except that it reads the mock scenario file when
`settings.mock_scenarios` is set: the lifespan runs it with `asyncio.to_thread`.
RuntimeConfig providers are added under their ids next to the environment-configured ones;
an id equal to an environment-configured name (`mock`, `openai`, `anthropic`) replaces it.
"""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from app.providers.anthropic import AnthropicProvider
from app.providers.base import LLMProvider
from app.providers.configured import ProviderSpec, build_configured_provider
from app.providers.mock import MockProvider
from app.providers.openai import OpenAIProvider
from app.providers.retry import RetryingProvider
from app.providers.scenarios import load_scenarios
from app.settings import Settings

DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"


def _default_model(settings: Settings, provider: str) -> str | None:
    """`PARLEY_DEFAULT_MODEL` applies to the provider it is the default for."""
    if settings.default_model and settings.resolved_provider() == provider:
        return settings.default_model
    return None


def openai_enabled(settings: Settings) -> bool:
    """A key, or a non-default base URL (local compatible servers often need no key)."""
    base = settings.openai_base_url.rstrip("/")
    return bool(settings.openai_api_key) or base != DEFAULT_OPENAI_BASE_URL


def build_providers(
    settings: Settings,
    client: httpx.AsyncClient,
    configured: Sequence[ProviderSpec] = (),
) -> dict[str, LLMProvider]:
    """`mock` always; `openai` and `anthropic` when configured, each behind retries; then
    every `configured` (RuntimeConfig) provider under its id.

    Raises `ValueError` when the mock scenario file is unreadable or invalid.
    """
    scenarios = load_scenarios(settings.mock_scenarios) if settings.mock_scenarios else None
    providers: dict[str, LLMProvider] = {
        "mock": MockProvider(
            scenarios=scenarios,
            delay_ms=settings.mock_delay_ms,
            default_model=_default_model(settings, "mock") or "mock-echo",
        )
    }
    if openai_enabled(settings):
        openai = OpenAIProvider(
            client=client,
            api_key=settings.openai_api_key,
            base_url=settings.openai_base_url,
            default_model=_default_model(settings, "openai") or "gpt-4o-mini",
            idle_timeout_s=settings.default_timeout_s,
        )
        providers["openai"] = RetryingProvider(openai, settings.provider_max_retries)
    if settings.anthropic_api_key:
        anthropic = AnthropicProvider(
            client=client,
            api_key=settings.anthropic_api_key,
            base_url=settings.anthropic_base_url,
            default_model=_default_model(settings, "anthropic") or "claude-sonnet-4-5",
            idle_timeout_s=settings.default_timeout_s,
        )
        providers["anthropic"] = RetryingProvider(anthropic, settings.provider_max_retries)
    for spec in configured:
        providers[spec.id] = build_configured_provider(spec, settings, client, scenarios)
    return providers
