"""The RuntimeConfig document as models (PromptKit `apiVersion:
promptkit.altairalabs.ai/v1alpha1`, `kind: RuntimeConfig`).

The models follow the format's JSON schema for *shape*: unknown fields, wrong types and bad
enum values are refused (strict types: `"5000"` is not an integer). They follow PromptKit's
own loader for what is *required*, which is looser than the schema's `required` lists: a
`ToolSpec` may omit `description`, `input_schema`, `output_schema` and `mode` (they come from
the pack and from the binding present), an `HTTPConfig` may omit `method` and `timeout_ms`,
`ProviderDefaults` may give any subset. What Parley does with each field — apply it or
refuse it — is decided in `app.tools.config_check`, not here.

`approval` on a `ToolSpec` is a Parley extension (`required` | `none`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

API_VERSION = "promptkit.altairalabs.ai/v1alpha1"
KIND = "RuntimeConfig"

LogLevel = Literal["trace", "debug", "info", "warn", "error"]


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, populate_by_name=True)


# --- tools ---------------------------------------------------------------------------------


class RequestMapping(Strict):
    query_params: list[str] | None = None
    header_params: dict[str, str] | None = None
    body_mapping: str | None = None
    exclude: list[str] | None = None
    static_query: dict[str, str] | None = None
    static_headers: dict[str, str] | None = None
    static_body: dict[str, Any] | None = None


class ResponseMapping(Strict):
    body_mapping: str | None = None


class MultimodalConfig(Strict):
    enabled: bool
    accept_types: list[str] | None = None


class HTTPConfig(Strict):
    url: str
    method: str | None = None
    headers_from_env: list[str] | None = None
    timeout_ms: int | None = None
    redact: list[str] | None = None
    headers: dict[str, str] | None = None
    request: RequestMapping | None = None
    response: ResponseMapping | None = None
    multimodal: MultimodalConfig | None = None


class ExecBinding(Strict):
    command: str
    runtime: Literal["exec", "server"] | None = None
    env: list[str] | None = None
    args: list[str] | None = None
    timeout_ms: int | None = None
    sandbox: str | None = None


class ToolConsentConfig(Strict):
    required: bool
    message: str | None = None
    decline_strategy: str | None = None


class ToolClientConfig(Strict):
    consent: ToolConsentConfig | None = None
    timeout_ms: int | None = None
    categories: list[str] | None = None
    validate_output: bool | None = None


class MockMediaSpec(Strict):
    file_path: str | None = None
    url: str | None = None
    mime_type: str
    width: int | None = None
    height: int | None = None
    caption: str | None = None


class MockPartSpec(Strict):
    type: str
    text: str | None = None
    media: MockMediaSpec | None = None


class ToolSpec(Strict):
    name: str | None = None
    description: str | None = None
    input_schema: Any = None
    output_schema: Any = None
    mode: str | None = None
    timeout_ms: int | None = None
    mock_result: Any = None
    mock_template: str | None = None
    mock_parts: list[MockPartSpec] | None = None
    http: HTTPConfig | None = None
    exec: ExecBinding | None = None
    client: ToolClientConfig | None = None
    approval: Literal["required", "none"] | None = None  # Parley extension


# --- MCP -----------------------------------------------------------------------------------


class MCPToolFilter(Strict):
    allowlist: list[str] | None = None
    blocklist: list[str] | None = None


class MCPServerConfig(Strict):
    name: str
    command: str | None = None
    args: list[str] | None = None
    env: dict[str, str] | None = None
    working_dir: str | None = None
    url: str | None = None
    headers: dict[str, str] | None = None
    transport: Literal["", "stdio", "sse", "streamable_http"] | None = None
    source: str | None = None
    scope: Literal["run", "scenario", "session"] | None = None
    source_args: dict[str, Any] | None = None
    timeout_ms: int | None = None
    tool_filter: MCPToolFilter | None = None


# --- providers -----------------------------------------------------------------------------


class CredentialConfig(Strict):
    api_key: str | None = None
    credential_file: str | None = None
    credential_env: str | None = None


class PlatformConfig(Strict):
    type: str | None = None
    region: str | None = None
    project: str | None = None
    endpoint: str | None = None
    additional_config: dict[str, Any] | None = None


class RateLimit(Strict):
    rps: int
    burst: int


class ProviderDefaults(Strict):
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    prompt_caching: bool | None = None


class Pricing(Strict):
    input_cost_per_1k: float
    output_cost_per_1k: float


class StreamRetryBudgetConfig(Strict):
    rate_per_sec: float | None = None
    burst: int | None = None


class StreamRetryConfig(Strict):
    enabled: bool | None = None
    max_attempts: int | None = None
    initial_delay: str | None = None
    max_delay: str | None = None
    retry_window: str | None = None
    budget: StreamRetryBudgetConfig | None = None


class HTTPTransportConfig(Strict):
    max_conns_per_host: int | None = None
    max_idle_conns_per_host: int | None = None
    idle_conn_timeout: str | None = None


class Provider(Strict):
    id: str | None = None
    type: str
    model: str | None = None
    voice: str | None = None
    sample_rate: int | None = None
    audio_files: list[str] | None = None
    role: Literal["llm", "tts", "stt", "embedding", "image", "video", "inference"] | None = None
    base_url: str | None = None
    headers: dict[str, str] | None = None
    rate_limit: RateLimit | None = None
    defaults: ProviderDefaults | None = None
    pricing: Pricing | None = None
    pricing_correct_at: str | None = None
    include_raw_output: bool | None = None
    additional_config: dict[str, Any] | None = None
    credential: CredentialConfig | None = None
    platform: PlatformConfig | None = None
    capabilities: list[str] | None = None
    unsupported_params: list[str] | None = None
    request_timeout: str | None = None
    stream_idle_timeout: str | None = None
    stream_retry: StreamRetryConfig | None = None
    stream_max_concurrent: int | None = None
    http_transport: HTTPTransportConfig | None = None


# --- sections Parley validates but does not apply ------------------------------------------


class _TypedProvider(Strict):
    id: str | None = None
    model: str | None = None
    base_url: str | None = None
    credential: CredentialConfig | None = None
    additional_config: dict[str, Any] | None = None


class EmbeddingProviderConfig(_TypedProvider):
    type: Literal["openai", "gemini", "voyageai", "ollama"]
    platform: PlatformConfig | None = None


class TTSProviderConfig(_TypedProvider):
    type: Literal["openai", "elevenlabs", "cartesia"]


class STTProviderConfig(_TypedProvider):
    type: Literal["openai"]


class InferenceProviderConfig(_TypedProvider):
    type: Literal["huggingface"]


class RedisConfig(Strict):
    address: str
    password: str | None = None
    database: int | None = None
    ttl: str | None = None
    prefix: str | None = None


class FileStateStoreConfig(Strict):
    root: str
    fsync: Literal["", "off", "on-save", "on-append"] | None = None
    ttl_days: int | None = None


class StateStoreConfig(Strict):
    type: str
    redis: RedisConfig | None = None
    file: FileStateStoreConfig | None = None


class ModuleLoggingConfig(Strict):
    name: str
    level: LogLevel
    fields: dict[str, str] | None = None


class LoggingConfigSpec(Strict):
    default_level: LogLevel | None = Field(default=None, alias="defaultLevel")
    format: Literal["json", "text"] | None = None
    common_fields: dict[str, str] | None = Field(default=None, alias="commonFields")
    modules: list[ModuleLoggingConfig] | None = None


class _Process(Strict):
    command: str
    runtime: Literal["exec", "server"] | None = None
    env: list[str] | None = None
    args: list[str] | None = None
    timeout_ms: int | None = None
    sandbox: str | None = None


class ExecHook(_Process):
    hook: Literal["provider", "tool", "session", "eval"]
    phases: list[str] | None = None
    mode: Literal["filter", "observe"] | None = None


class SandboxConfig(BaseModel):
    """The schema lets a sandbox carry any extra fields (they configure its factory)."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True)
    mode: str


class SelectorConfig(Strict):
    command: str
    args: list[str] | None = None
    env: list[str] | None = None
    timeout_ms: int | None = None
    sandbox: str | None = None


class SkillsConfig(Strict):
    selector: str | None = None


class ObjectMeta(Strict):
    name: str | None = None
    namespace: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


# Section name -> model of one entry (for maps and lists) or of the section itself.
UNAPPLIED_SECTIONS: dict[str, tuple[Literal["list", "map", "one"], type[BaseModel] | None]] = {
    "embedding_providers": ("list", EmbeddingProviderConfig),
    "tts_providers": ("list", TTSProviderConfig),
    "stt_providers": ("list", STTProviderConfig),
    "inference_providers": ("list", InferenceProviderConfig),
    "state_store": ("one", StateStoreConfig),
    "logging": ("one", LoggingConfigSpec),
    "evals": ("map", _Process),
    "hooks": ("map", ExecHook),
    "sandboxes": ("map", SandboxConfig),
    "selectors": ("map", SelectorConfig),
    "skills": ("one", SkillsConfig),
    "tool_selector": ("one", None),  # a plain string
}
APPLIED_SECTIONS = ("tools", "mcp_servers", "providers")
