"""RuntimeConfig checks: what loads (PromptKit's looser rules), what is refused, and that
every problem is listed."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.tools import RuntimeConfigError, check_runtime_config, load_runtime_config
from app.tools.config_loader import parse_yaml
from tests.conftest import SHARED
from tests.unit.tools.helpers import PYTHON, checked, problems

FIXTURE_RC = SHARED / "fixtures" / "runtime-config" / "sdk__examples__runtime-config__runtime.yaml"


def test_the_fixture_example_loads() -> None:
    config = load_runtime_config(FIXTURE_RC)
    assert config.name == "development"
    binding = config.tools["sentiment_analysis"]
    assert binding.mode == "exec" and binding.exec is not None
    assert binding.exec.args == ("./tools/sentiment.py",) and binding.exec.timeout_s == 5.0
    assert binding.exec.cwd == FIXTURE_RC.parent.resolve()
    assert binding.description is None and binding.input_schema is None  # the pack's
    assert config.unapplied_sections == ("evals", "hooks", "logging")
    assert "evals, hooks, logging" in (config.unapplied_warning() or "")


@pytest.mark.parametrize(
    ("binding", "mode"),
    [
        ({"http": {"url": "https://api.example.com/x"}}, "live"),
        ({"exec": {"command": PYTHON}}, "exec"),
        ({"mock_result": {"ok": True}}, "mock"),
        ({"mock_template": '{"city": "{{.city}}"}'}, "mock"),
        ({"client": {"consent": {"required": True, "message": "Share location?"}}}, "client"),
        ({"mode": "mcp"}, "mcp"),
        ({"mode": "client"}, "client"),
    ],
)
def test_mode_is_inferred_from_the_binding_present(binding: dict, mode: str) -> None:
    assert checked({"tools": {"t": binding}}).tools["t"].mode == mode


def test_consent_and_parley_approval_mark_tools_for_approval() -> None:
    config = checked(
        {
            "tools": {
                "refund": {
                    "exec": {"command": PYTHON},
                    "client": {"consent": {"required": True, "message": "Refund this order?"}},
                },
                "wipe": {"mock_result": "done", "approval": "required"},
                "plain": {"mock_result": "done", "approval": "none"},
                "where": {"client": {"consent": {"required": False}, "categories": ["location"]}},
            }
        }
    )
    assert config.tools["refund"].approval is not None
    assert config.tools["refund"].approval.message == "Refund this order?"
    assert config.tools["wipe"].approval.message == "Allow the call to wipe?"  # type: ignore[union-attr]
    assert config.tools["plain"].approval is None and config.tools["where"].approval is None
    assert config.tools["where"].categories == ("location",)


def test_binding_description_and_schemas_override_the_pack() -> None:
    config = checked(
        {
            "tools": {
                "t": {
                    "description": "Custom",
                    "mock_result": 1,
                    "input_schema": {"type": "object", "properties": {"a": {"type": "integer"}}},
                    "output_schema": {"type": "integer"},
                }
            }
        }
    )
    tool = config.tools["t"]
    assert tool.description == "Custom" and tool.input_schema["properties"]["a"]  # type: ignore[index]
    assert tool.output_schema == {"type": "integer"}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"tools": {"t": {"exec": {"command": PYTHON, "timeout_ms": "5000"}}}},
            "spec.tools.t.exec.timeout_ms: Input should be a valid integer",
        ),
        (
            {"tools": {"t": {"mock_result": 1, "colour": "red"}}},
            "spec.tools.t.colour: unknown field",
        ),
        ({"tools": {"t": {"mode": "remote"}}}, "spec.tools.t.mode: must be one of"),
        ({"tools": {"t": {"mock_result": 1, "mock_template": "{}"}}}, "mutually exclusive"),
        ({"tools": {"t": {"mode": "live", "exec": {"command": PYTHON}}}}, "exec is set but mode"),
        ({"tools": {"t": {"mode": "live"}}}, "mode 'live' needs http"),
        ({"tools": {"t": {}}}, "no implementation"),
        ({"tools": {"t": {"mock_template": "{{.a | printf}}"}}}, "is not supported"),
        ({"tools": {"t": {"mock_template": "{{- .a -}}"}}}, "is not supported"),
        ({"tools": {"t": {"mock_template": "{{.a"}}}, "unclosed"),
        (
            {"tools": {"t": {"mock_result": 1, "mock_parts": [{"type": "text", "text": "x"}]}}},
            "mock_parts: is not supported until media lands",
        ),
        ({"tools": {"t": {"http": {"url": "http://{{.host}}/x"}}}}, "not the host"),
        ({"tools": {"t": {"http": {"url": "file:///etc/passwd"}}}}, "http:// or https://"),
        (
            {"tools": {"t": {"http": {"url": "https://a.example/x", "method": "TRACE"}}}},
            "method: must be one of",
        ),
        (
            {"tools": {"t": {"http": {"url": "https://a.example/x", "headers_from_env": ["KEY"]}}}},
            "must be 'Header-Name=ENV_VARIABLE'",
        ),
        (
            {
                "tools": {
                    "t": {
                        "http": {"url": "https://a.example/x", "response": {"body_mapping": "a[?"}}
                    }
                }
            },
            "invalid JMESPath",
        ),
        (
            {
                "tools": {
                    "t": {"http": {"url": "https://a.example/x", "headers": {"X-A": "a\r\nX-B: b"}}}
                }
            },
            "line breaks",
        ),
        ({"tools": {"t": {"exec": {"command": "no-such-command-xyz"}}}}, "is not an executable"),
        ({"tools": {"t": {"exec": {"command": PYTHON, "runtime": "server"}}}}, "'server'"),
        ({"tools": {"t": {"exec": {"command": PYTHON, "sandbox": "box"}}}}, "sandboxes"),
        ({"tools": {"t": {"client": {"timeout_ms": 1000}}}}, "does not expire"),
        (
            {
                "tools": {
                    "t": {"client": {"consent": {"required": True, "decline_strategy": "retry"}}}
                }
            },
            "only 'fallback'",
        ),
        ({"tools": {"t": {"mock_result": 1, "input_schema": {"type": "string"}}}}, "type: object"),
        ({"tools": {"t": {"mock_result": 1, "output_schema": {"type": 5}}}}, "invalid JSON Schema"),
        ({"tools": {"t": {"client": {"validate_output": True}}}}, "needs an output_schema"),
        ({"tools": {"mcp__x__y": {"mock_result": 1}}}, "reserved for MCP"),
        ({"tools": {"t": {"name": "u", "mock_result": 1}}}, "must equal its key"),
        (
            {"mcp_servers": [{"name": "a", "command": PYTHON, "url": "http://x/mcp"}]},
            "exactly one of",
        ),
        (
            {"mcp_servers": [{"name": "a", "url": "http://x/mcp", "transport": "websocket"}]},
            "Input should be",
        ),
        ({"mcp_servers": [{"name": "a", "source": "docker", "scope": "run"}]}, "not supported"),
        (
            {"mcp_servers": [{"name": "a", "command": PYTHON}, {"name": "a", "command": PYTHON}]},
            "duplicate MCP server name",
        ),
        (
            {"mcp_servers": [{"name": "a", "command": PYTHON, "transport": "streamable_http"}]},
            "streamable_http needs url",
        ),
        ({"providers": [{"type": "openai"}]}, "provider model is required"),
        ({"providers": [{"type": "bedrock", "model": "m"}]}, "must be one of"),
        ({"providers": [{"type": "vllm", "model": "m"}]}, "is required for vllm"),
        ({"providers": [{"type": "mock", "model": "m", "role": "tts"}]}, "only 'llm'"),
        (
            {"providers": [{"type": "mock", "model": "m"}, {"type": "mock", "model": "n"}]},
            "duplicate provider id",
        ),
        (
            {"providers": [{"type": "openai", "model": "m", "headers": {"Authorization": "x"}}]},
            "is set by Parley itself",
        ),
        (
            {"providers": [{"type": "mock", "model": "m", "defaults": {"temperature": 3}}]},
            "must be in [0, 2]",
        ),
        (
            {"providers": [{"type": "claude", "model": "m", "defaults": {"prompt_caching": True}}]},
            "prompt caching is not implemented",
        ),
        (
            {"providers": [{"type": "mock", "model": "m", "request_timeout": "30s"}]},
            "always streams",
        ),
        ({"providers": [{"type": "mock", "model": "m", "http_transport": {}}]}, "connection pools"),
        (
            {"providers": [{"type": "mock", "model": "m", "capabilities": ["tools"]}]},
            "capabilities: is not supported",
        ),
        (
            {"providers": [{"type": "mock", "model": "m", "stream_idle_timeout": "10 sec"}]},
            "not a duration",
        ),
        (
            {"providers": [{"type": "mock", "model": "m", "unsupported_params": ["seed"]}]},
            "not a parameter Parley sends",
        ),
        (
            {
                "providers": [
                    {"type": "mock", "model": "m", "stream_retry": {"retry_window": "always"}}
                ]
            },
            "pre_first_chunk",
        ),
        (
            {
                "providers": [
                    {
                        "type": "openai",
                        "model": "m",
                        "credential": {"credential_env": "NOT_SET_ANYWHERE"},
                    }
                ]
            },
            "NOT_SET_ANYWHERE is not set",
        ),
        (
            {
                "providers": [
                    {
                        "id": "a",
                        "type": "mock",
                        "model": "m",
                        "pricing": {"input_cost_per_1k": 1, "output_cost_per_1k": 1},
                    },
                    {
                        "id": "b",
                        "type": "mock",
                        "model": "m",
                        "pricing": {"input_cost_per_1k": 2, "output_cost_per_1k": 1},
                    },
                ]
            },
            "already priced differently",
        ),
        ({"logging": {"format": "xml"}}, "spec.logging.format"),
        ({"state_store": {"type": "redis", "colour": 1}}, "spec.state_store.colour: unknown field"),
        ({"tool_selector": 5}, "spec.tool_selector: must be a string"),
        ({"tools": []}, "spec.tools: must be a mapping"),
        ({"surprise": {}}, "spec.surprise: unknown field"),
    ],
)
def test_refusals_name_the_field(spec: dict, expected: str) -> None:
    found = problems(spec)
    assert any(expected in p for p in found), found


def test_every_problem_of_a_file_is_listed(tmp_path: Path) -> None:
    path = tmp_path / "runtime.yaml"
    path.write_text(
        "apiVersion: v1\nkind: Config\nextra: 1\nspec:\n"
        "  tools:\n    a: {mode: nope}\n    b: {mock_template: '{{if .x}}'}\n"
        "  providers: [{type: gemini}]\n"
    )
    with pytest.raises(RuntimeConfigError) as info:
        load_runtime_config(path)
    text = [str(p) for p in info.value.problems]
    assert text[:3] == [
        "extra: unknown field",
        "apiVersion: must be promptkit.altairalabs.ai/v1alpha1 (got 'v1')",
        "kind: must be RuntimeConfig (got 'Config')",
    ]
    assert any(p.startswith("spec.tools.a.mode") for p in text)
    assert any(p.startswith("spec.tools.b.mock_template") for p in text)
    assert any(p.startswith("spec.providers.0.type") for p in text)
    assert any(p.startswith("spec.providers.0.model") for p in text)
    assert len(text) == 7


def test_yaml_duplicate_keys_unreadable_files_and_non_mappings(tmp_path: Path) -> None:
    dup = tmp_path / "dup.yaml"
    dup.write_text("apiVersion: a\napiVersion: b\nkind: RuntimeConfig\n")
    assert "defined twice" in str(check_runtime_config(dup).problems[0])
    assert "cannot read" in str(check_runtime_config(tmp_path / "missing.yaml").problems[0])
    flat = tmp_path / "flat.yaml"
    flat.write_text("- a\n- b\n")
    assert "must be a mapping" in str(check_runtime_config(flat).problems[0])


def test_dates_stay_strings_and_credentials_resolve_like_promptkit(tmp_path: Path) -> None:
    assert parse_yaml("when: 2024-01-02") == {"when": "2024-01-02"}
    (tmp_path / "key.txt").write_text("  sk-from-file\n")
    config = checked(
        {
            "providers": [
                {
                    "id": "file",
                    "type": "openai",
                    "model": "m",
                    "credential": {"credential_file": "key.txt"},
                },
                {
                    "id": "env",
                    "type": "openai",
                    "model": "m",
                    "credential": {"credential_env": "MY_KEY"},
                },
                {"id": "default", "type": "claude", "model": "m"},
                {"id": "none", "type": "ollama", "model": "llama3"},
            ]
        },
        base_dir=tmp_path,
        env={"MY_KEY": "sk-env", "CLAUDE_API_KEY": "sk-claude"},
    )
    keys = {p.id: p.api_key for p in config.providers}
    assert keys == {"file": "sk-from-file", "env": "sk-env", "default": "sk-claude", "none": None}


def test_stream_retry_follows_promptkit_defaults() -> None:
    config = checked(
        {
            "providers": [
                {
                    "id": "on",
                    "type": "openai",
                    "model": "m",
                    "stream_idle_timeout": "1m30s",
                    "stream_retry": {"enabled": True, "budget": {"rate_per_sec": 2, "burst": 4}},
                },
                {"id": "off", "type": "openai", "model": "m", "stream_retry": {"max_attempts": 5}},
                {"id": "unset", "type": "openai", "model": "m"},
            ]
        }
    )
    on, off, unset = config.providers
    assert on.idle_timeout_s == 90 and on.retry is not None
    assert (on.retry.max_retries, on.retry.base_delay_s, on.retry.max_delay_s) == (1, 0.25, 2.0)
    assert on.retry.budget == (2.0, 4)
    assert off.retry is not None and off.retry.max_retries == 0  # enabled defaults to false
    assert unset.retry is None  # Parley's default retries


def test_a_keyless_vendor_provider_is_named_in_a_warning() -> None:
    """`examples/runtime.yaml` without OPENAI_API_KEY: its first provider (the default)
    can only fail, and start-up and `parley config check` say so."""
    spec = {
        "providers": [
            {"id": "openai-main", "type": "openai", "model": "gpt-4o-mini"},
            {"id": "claude-main", "type": "claude", "model": "m"},
            {"id": "keyed", "type": "openai", "model": "m", "credential": {"api_key": "sk"}},
            {"id": "proxy", "type": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1"},
            {"id": "local", "type": "ollama", "model": "llama3"},
        ]
    }
    warned = [w for w in checked(spec).warnings if "no credential" in w]
    assert len(warned) == 2
    assert "'openai-main'" in warned[0] and "OPENAI_API_KEY" in warned[0]
    assert "'claude-main'" in warned[1] and "ANTHROPIC_API_KEY" in warned[1]
    assert not [
        w
        for w in checked(spec, env={"OPENAI_API_KEY": "sk", "ANTHROPIC_API_KEY": "k"}).warnings
        if "no credential" in w
    ]
