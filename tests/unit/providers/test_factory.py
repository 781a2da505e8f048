from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from app.providers.anthropic import AnthropicProvider
from app.providers.factory import build_providers
from app.providers.mock import MockProvider
from app.providers.openai import OpenAIProvider
from app.providers.retry import RetryingProvider
from app.settings import Settings
from tests.unit.providers.wire import SHARED_MOCK_RESPONSES


def settings(**values: Any) -> Settings:
    base: dict[str, Any] = {
        "openai_api_key": None,
        "anthropic_api_key": None,
        "openai_base_url": "https://api.openai.com/v1",
        "anthropic_base_url": "https://api.anthropic.com",
    }
    return Settings(**{**base, **values})


@pytest.fixture
def client() -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(500)))


def test_mock_only_by_default(client: httpx.AsyncClient) -> None:
    providers = build_providers(settings(), client)
    assert list(providers) == ["mock"]
    mock = providers["mock"]
    assert isinstance(mock, MockProvider) and mock.default_model == "mock-echo"


def test_openai_with_key_is_wrapped_in_retries(client: httpx.AsyncClient) -> None:
    providers = build_providers(
        settings(openai_api_key="sk-x", provider_max_retries=4, default_timeout_s=12), client
    )
    assert set(providers) == {"mock", "openai"}
    wrapped = providers["openai"]
    assert isinstance(wrapped, RetryingProvider) and wrapped.max_retries == 4
    inner = wrapped.inner
    assert isinstance(inner, OpenAIProvider)
    assert inner.idle_timeout_s == 12 and inner.default_model == "gpt-4o-mini"
    assert wrapped.name == "openai"


def test_openai_compatible_base_url_without_key(client: httpx.AsyncClient) -> None:
    providers = build_providers(settings(openai_base_url="http://127.0.0.1:11434/v1"), client)
    inner = providers["openai"]
    assert isinstance(inner, RetryingProvider) and isinstance(inner.inner, OpenAIProvider)
    assert inner.inner.base_url == "http://127.0.0.1:11434/v1"


def test_anthropic_with_key_and_default_model(client: httpx.AsyncClient) -> None:
    providers = build_providers(
        settings(
            anthropic_api_key="sk-ant",
            default_provider="anthropic",
            default_model="claude-3-5-haiku-latest",
        ),
        client,
    )
    assert set(providers) == {"mock", "anthropic"}
    wrapped = providers["anthropic"]
    assert isinstance(wrapped, RetryingProvider) and isinstance(wrapped.inner, AnthropicProvider)
    assert wrapped.default_model == "claude-3-5-haiku-latest"
    assert providers["mock"].default_model == "mock-echo"


def test_mock_scenarios_and_delay_from_settings(client: httpx.AsyncClient) -> None:
    path = SHARED_MOCK_RESPONSES / "server__a2a__examples__a2a-demo__arena__mock-responses.yaml"
    providers = build_providers(settings(mock_scenarios=path, mock_delay_ms=5), client)
    mock = providers["mock"]
    assert isinstance(mock, MockProvider)
    assert "delegated-research" in mock.scenarios.scenarios and mock.delay_ms == 5


def test_bad_scenario_file_is_a_value_error(client: httpx.AsyncClient, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        build_providers(settings(mock_scenarios=tmp_path / "missing.yaml"), client)
