"""Service configuration from the environment (prefix `PARLEY_`, DESIGN §10).

Provider credentials keep the ecosystem's unprefixed names (`OPENAI_API_KEY`, ...), so an
existing deployment or a local OpenAI-compatible server works without renaming anything.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.domain.checkpoint import (
    MAX_AGE_DAYS,
    MAX_AUTO_CHECKPOINTS,
    MAX_EVERY_N_TURNS,
    MAX_KEEP_ALL_HOURS,
    CheckpointPolicy,
)
from app.domain.ids import ID_PATTERN
from app.domain.limits import MAX_TTL_S


class ApiKey(BaseModel):
    """One configured API key. `service` keys act for any user; `user` keys for one."""

    key: str = Field(min_length=1)
    role: Literal["service", "user"] = "service"
    user_id: str | None = Field(default=None, pattern=ID_PATTERN)

    @model_validator(mode="after")
    def _user_keys_name_a_user(self) -> ApiKey:
        if self.role == "user" and not self.user_id:
            raise ValueError("a key with role 'user' needs a user_id")
        return self


class ModelPrice(BaseModel):
    """USD per million tokens."""

    input_per_mtok: float
    output_per_mtok: float


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PARLEY_", extra="ignore", populate_by_name=True)

    state_url: str = "sqlite+aiosqlite:///./data/parley.db"
    # Where instances coordinate (turn locks, idempotency keys, run event logs). None: the
    # state store's Redis when STATE_URL is redis, else in-process (single instance).
    coordination_url: str | None = None
    media_dir: Path = Path("./data/media")
    packs_dir: Path = Path("./packs")
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"

    auth: Literal["none", "keys"] = "none"
    api_keys: list[ApiKey] = Field(default_factory=list)

    default_provider: str | None = None
    default_model: str | None = None
    mock_delay_ms: float = 0.0
    mock_scenarios: Path | None = None
    pricing: dict[str, ModelPrice] = Field(default_factory=dict)
    provider_max_retries: int = Field(default=2, ge=0, le=10)
    # Connections the providers' HTTP pool opens and keeps alive: one per concurrent
    # streamed call (HTTP/1.1); a call beyond it waits for one (within its idle timeout).
    provider_max_connections: int = Field(default=1000, ge=1)

    max_concurrent_executions: int = Field(default=10, ge=0)
    # Requests that open turns or create conversations at once (app/manager/admission.py);
    # the rest queue in arrival order, up to the timeout (then 503 overloaded). 0: no gate.
    # Unset: 32, or a quarter of PostgreSQL's pool (`admission.gate_size`).
    admission_concurrency: int | None = Field(default=None, ge=0, le=10_000)
    admission_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    default_timeout_s: float = Field(default=30.0, gt=0)
    turn_lock_timeout_s: float = Field(default=30.0, gt=0)
    # The most one call to the state store or the coordination backend may take (pool
    # wait, connect and the command itself), so a partitioned store is a 503 in seconds.
    store_timeout_s: float = Field(default=5.0, gt=0, le=300)
    # Connections per Redis pool of an instance (the state store's and the coordinator's
    # each): a command queues for one (within the store timeout) when all are busy.
    redis_max_connections: int = Field(default=1000, ge=1)
    # PostgreSQL's connection pool of an instance (store and SQL coordination share it):
    # connections kept open, and opened beyond them under load (closed when returned).
    database_pool_size: int = Field(default=10, ge=1, le=1000)
    database_max_overflow: int = Field(default=20, ge=0, le=1000)

    # Media parts up to this size stay inline in the message; larger ones go to the media
    # store and the message keeps a reference. 0 externalizes everything.
    media_threshold_kb: int = Field(default=100, ge=0)
    media_policy: Literal["retain", "delete"] = "retain"
    media_max_mb: int = Field(default=20, gt=0)
    # Stored media base64-encoded for provider requests, most recently used first, at most
    # this many MB (app/manager/media_cache.py). 0: read and encode on every turn.
    media_cache_mb: int = Field(default=16, ge=0)
    default_ttl_s: int | None = Field(default=None, gt=0, le=MAX_TTL_S)
    sweep_interval_s: float = Field(default=60.0, gt=0)
    max_message_bytes: int = Field(default=1024 * 1024, gt=0)
    # The largest body POST /conversations/import takes (a whole conversation document).
    import_max_mb: int = Field(default=64, gt=0)

    # The largest text of one context item (POST /conversations/{id}/context), in KB of
    # UTF-8; and how many items one conversation holds.
    context_item_max_kb: int = Field(default=64, gt=0)
    context_items_max: int = Field(default=50, gt=0)
    default_max_input_tokens: int = Field(default=8000, gt=0)
    default_reserve_output_tokens: int = Field(default=1024, ge=0)

    # Auto checkpoints (CheckpointPolicy): the policy of conversations created without one.
    checkpoint_enabled: bool = True
    checkpoint_every_n_turns: int = Field(default=10, ge=1, le=MAX_EVERY_N_TURNS)
    checkpoint_keep_all_hours: float = Field(default=24.0, ge=0, le=MAX_KEEP_ALL_HOURS)
    checkpoint_keep_every_nth: int = Field(default=5, ge=1, le=MAX_EVERY_N_TURNS)
    checkpoint_max_age_days: float | None = Field(default=30.0, gt=0, le=MAX_AGE_DAYS)
    checkpoint_max_auto: int = Field(default=50, ge=1, le=MAX_AUTO_CHECKPOINTS)

    # Browser origins allowed to call the API (CORS). Empty: no CORS headers at all.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # GET /playground (the web page in app/playground). None: on when auth is none and the
    # service listens on loopback only, off otherwise.
    playground: bool | None = None

    # Tools (DESIGN §12): the RuntimeConfig binding pack tools to implementations, and the
    # limits every tool call runs under.
    runtime_config: Path | None = None
    tool_allowed_networks: Annotated[list[str], NoDecode] = Field(default_factory=list)
    tool_max_result_bytes: int = Field(default=65536, gt=0)
    tool_max_concurrent_calls: int = Field(default=8, ge=1)
    tool_timeout_s: float = Field(default=30.0, gt=0)

    run_event_retention_s: float = Field(default=3600.0, gt=0)
    # In-process memory bounds (README "Memory"): the committed-message cache of the
    # context builder, and the events the in-process run log keeps of finished runs.
    message_cache_mb: int = Field(default=16, ge=0)
    # Start-up warm-up (app.manager.warm_up): at most this long before the server is
    # ready; 0 skips it.
    warm_up_timeout_s: float = Field(default=10.0, ge=0)
    run_log_max_events: int = Field(default=10_000, ge=100)
    # A follower or waiter of a run re-reads its record after this long without an event,
    # so it ends even when the terminal event never reached the log.
    run_recheck_s: float = Field(default=5.0, gt=0, le=3600)
    # In-process coordination only (Redis expires by TTL): finished run records kept
    # without an idempotency key, and idempotency keys kept (each with its run's record).
    run_records_max: int = Field(default=10_000, ge=1)
    idempotency_max_keys: int = Field(default=100_000, ge=1)
    # SIGTERM/SIGINT: new turns get 503 `shutting_down`; running turns get this long to
    # finish, then they are cancelled (`run.cancelled`, nothing committed).
    shutdown_grace_s: float = Field(default=10.0, ge=0, le=3600)
    sse_ping_s: float = Field(default=15.0, gt=0)

    openai_api_key: str | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_API_KEY", "PARLEY_OPENAI_API_KEY")
    )
    openai_base_url: str = Field(
        default="https://api.openai.com/v1",
        validation_alias=AliasChoices("OPENAI_BASE_URL", "PARLEY_OPENAI_BASE_URL"),
    )
    anthropic_api_key: str | None = Field(
        default=None,
        validation_alias=AliasChoices("ANTHROPIC_API_KEY", "PARLEY_ANTHROPIC_API_KEY"),
    )
    anthropic_base_url: str = Field(
        default="https://api.anthropic.com",
        validation_alias=AliasChoices("ANTHROPIC_BASE_URL", "PARLEY_ANTHROPIC_BASE_URL"),
    )

    @field_validator(
        "default_ttl_s",
        "mock_scenarios",
        "default_provider",
        "default_model",
        "runtime_config",
        "checkpoint_max_age_days",
        mode="before",
    )
    @classmethod
    def _empty_is_none(cls, v: Any) -> Any:
        return None if v == "" else v

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins_list(cls, v: Any) -> Any:
        """A JSON list or a comma-separated string (`http://a:3000,https://b.example`)."""
        if isinstance(v, str):
            text = v.strip()
            if text.startswith("["):
                return json.loads(text)
            return [item.strip() for item in text.split(",") if item.strip()]
        return v

    @field_validator("cors_origins")
    @classmethod
    def _origins_are_origins(cls, v: list[str]) -> list[str]:
        """An origin is `scheme://host[:port]` exactly as a browser sends it; anything else
        (a path, a trailing slash) would never match, so it is refused rather than ignored."""
        for origin in v:
            if origin == "*":
                continue
            parts = urlsplit(origin)
            if (
                parts.scheme not in ("http", "https")
                or not parts.hostname
                or origin != f"{parts.scheme}://{parts.netloc}"
                or parts.username is not None
            ):
                raise ValueError(
                    f"{origin!r} is not an origin: use scheme://host[:port] "
                    "(no path, no trailing slash) or '*'"
                )
        return v

    @field_validator("tool_allowed_networks", mode="before")
    @classmethod
    def _split_networks(cls, v: Any) -> Any:
        """A comma-separated list (or a JSON list) of CIDRs, each checked here."""
        if isinstance(v, str):
            v = v.strip()
            if v.startswith("["):
                v = json.loads(v)
            else:
                v = [part.strip() for part in v.split(",") if part.strip()]
        if isinstance(v, list):
            for cidr in v:
                try:
                    ipaddress.ip_network(str(cidr), strict=False)
                except ValueError as exc:
                    raise ValueError(f"{cidr!r} is not a CIDR network: {exc}") from None
        return v

    @model_validator(mode="after")
    def _checkpoint_policy_is_valid(self) -> Settings:
        self.checkpoint_policy()  # keep_all_hours within max_age_days, or a startup error
        return self

    def checkpoint_policy(self) -> CheckpointPolicy:
        """The `checkpoint_policy` of conversations created (or stored) without one."""
        return CheckpointPolicy(
            enabled=self.checkpoint_enabled,
            every_n_turns=self.checkpoint_every_n_turns,
            keep_all_hours=self.checkpoint_keep_all_hours,
            keep_every_nth=self.checkpoint_keep_every_nth,
            max_age_days=self.checkpoint_max_age_days,
            max_auto=self.checkpoint_max_auto,
        )

    def resolved_provider(self) -> str:
        """The provider used when a conversation names none: explicit, else by key, else mock."""
        if self.default_provider:
            return self.default_provider
        if self.openai_api_key:
            return "openai"
        if self.anthropic_api_key:
            return "anthropic"
        return "mock"
