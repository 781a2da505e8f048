"""Settings from the environment (DESIGN §10)."""

from __future__ import annotations

import pytest

from app.settings import Settings


def test_defaults_are_the_embedded_loopback_service(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "PARLEY_STATE_URL", "PARLEY_HOST"):
        monkeypatch.delenv(var, raising=False)
    s = Settings()
    assert (s.host, s.port) == ("127.0.0.1", 8000)
    assert s.state_url == "sqlite+aiosqlite:///./data/parley.db"
    assert s.auth == "none" and s.resolved_provider() == "mock"
    assert s.max_concurrent_executions == 10 and s.max_message_bytes == 1024 * 1024


def test_provider_keys_use_unprefixed_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:11434/v1")
    s = Settings()
    assert s.openai_api_key == "sk-x" and s.openai_base_url.endswith("11434/v1")
    assert s.resolved_provider() == "openai"
    monkeypatch.setenv("PARLEY_DEFAULT_PROVIDER", "mock")
    assert Settings().resolved_provider() == "mock"


def test_api_keys_and_pricing_parse_from_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "PARLEY_API_KEYS",
        '[{"key": "svc", "role": "service"}, {"key": "al", "role": "user", "user_id": "alice"}]',
    )
    monkeypatch.setenv(
        "PARLEY_PRICING", '{"my-model": {"input_per_mtok": 1, "output_per_mtok": 2}}'
    )
    monkeypatch.setenv("PARLEY_DEFAULT_TTL_S", "")
    s = Settings()
    assert [k.role for k in s.api_keys] == ["service", "user"]
    assert s.api_keys[1].user_id == "alice"
    assert s.pricing["my-model"].output_per_mtok == 2
    assert s.default_ttl_s is None


def test_user_keys_need_a_valid_user_id(monkeypatch: pytest.MonkeyPatch) -> None:
    for keys in (
        '[{"key": "k", "role": "user"}]',
        '[{"key": "k", "role": "user", "user_id": "a/b"}]',
    ):
        monkeypatch.setenv("PARLEY_API_KEYS", keys)
        with pytest.raises(ValueError):
            Settings()
