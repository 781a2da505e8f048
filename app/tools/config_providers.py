"""Checks of `spec.providers` entries into `ProviderSpec`s: each field applied or refused.

Applied: `id` (defaults to `type`), `type` (openai, claude, ollama, vllm, mock), `model`
(required, as PromptKit's loader requires it), `base_url`, `headers`, `credential`,
`defaults`, `unsupported_params`, `pricing` (+ `pricing_correct_at`, reported), `rate_limit`,
`stream_idle_timeout`, `stream_retry`, `stream_max_concurrent`, `role: llm`.
Refused: other types and roles, `voice`/`sample_rate`/`audio_files` (speech providers),
`platform`, `additional_config`, `capabilities`, `request_timeout` (Parley always streams:
use `stream_idle_timeout`), `http_transport`, `include_raw_output: true`,
`defaults.prompt_caching: true`.

Credentials resolve as PromptKit resolves them: `api_key`, else `credential_file` (relative
to the RuntimeConfig's directory, whitespace trimmed), else `credential_env` (which must be
set), else the type's usual variables (`OPENAI_API_KEY`/`OPENAI_TOKEN`,
`ANTHROPIC_API_KEY`/`CLAUDE_API_KEY`); no key at all is allowed (local servers).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from app.providers.configured import CONFIGURED_TYPES, ProviderSpec, RetryPolicy
from app.settings import ModelPrice
from app.tools.bindings import Loc, Problem
from app.tools.config_models import CredentialConfig, Provider, StreamRetryConfig
from app.tools.config_parse import go_duration_s, parse_model, strings_without_crlf

PROVIDER_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
DEFAULT_KEY_ENV = {
    "openai": ("OPENAI_API_KEY", "OPENAI_TOKEN"),
    "claude": ("ANTHROPIC_API_KEY", "CLAUDE_API_KEY"),
}
RESERVED_HEADERS = frozenset(
    {"authorization", "content-type", "accept", "x-api-key", "anthropic-version"}
)
PARAMETERS = frozenset(
    {"temperature", "top_p", "max_tokens", "top_k", "frequency_penalty", "presence_penalty"}
)
_REFUSED = {
    "voice": "applies to speech providers, which Parley does not support",
    "sample_rate": "applies to speech providers, which Parley does not support",
    "audio_files": "applies to speech providers, which Parley does not support",
    "platform": "hyperscaler platforms (azure, bedrock, vertex) are not supported",
    "additional_config": "provider-specific extras are not supported",
    "capabilities": "is not supported (Parley sends tools and media when a prompt has them)",
    "request_timeout": "does not apply: Parley always streams (use stream_idle_timeout)",
    "http_transport": "per-provider connection pools are not supported",
}


def check_provider(
    raw: Any, loc: Loc, base_dir: Path, seen: set[str], env: Mapping[str, str]
) -> tuple[ProviderSpec | None, list[Problem]]:
    entry, problems = parse_model(Provider, raw, loc)
    if entry is None:
        return None, problems
    if entry.type not in CONFIGURED_TYPES:
        problems.append(
            Problem(
                (*loc, "type"), f"must be one of {', '.join(CONFIGURED_TYPES)} (got {entry.type!r})"
            )
        )
    provider_id = entry.id or entry.type
    if not PROVIDER_ID.match(provider_id):
        problems.append(Problem((*loc, "id"), "1-64 letters, digits, '.', '_' or '-'"))
    elif provider_id in seen:
        problems.append(Problem((*loc, "id"), f"duplicate provider id {provider_id!r}"))
    seen.add(provider_id)
    if not entry.model:
        problems.append(Problem((*loc, "model"), "provider model is required"))
    if entry.role not in (None, "llm"):
        problems.append(Problem((*loc, "role"), "only 'llm' providers are supported"))
    for key, why in _REFUSED.items():
        if getattr(entry, key):
            problems.append(Problem((*loc, key), why))
    if entry.include_raw_output:
        problems.append(Problem((*loc, "include_raw_output"), "is not supported"))
    base_url = entry.base_url
    if base_url is not None and not base_url.startswith(("http://", "https://")):
        problems.append(Problem((*loc, "base_url"), "must be an http:// or https:// URL"))
    if entry.type == "vllm" and not base_url:
        problems.append(Problem((*loc, "base_url"), "is required for vllm"))
    headers = strings_without_crlf(entry.headers, (*loc, "headers"), problems, header_names=True)
    for name in headers:
        if name.lower() in RESERVED_HEADERS:
            problems.append(Problem((*loc, "headers", name), "is set by Parley itself"))
    defaults = _defaults(entry, loc, problems)
    unsupported = frozenset(entry.unsupported_params or ())
    for name in sorted(unsupported - PARAMETERS):
        problems.append(
            Problem((*loc, "unsupported_params"), f"{name!r} is not a parameter Parley sends")
        )
    pricing = None
    if entry.pricing is not None:
        if entry.pricing.input_cost_per_1k < 0 or entry.pricing.output_cost_per_1k < 0:
            problems.append(Problem((*loc, "pricing"), "costs must not be negative"))
        pricing = ModelPrice(
            input_per_mtok=entry.pricing.input_cost_per_1k * 1000,
            output_per_mtok=entry.pricing.output_cost_per_1k * 1000,
        )
    rate_limit = None
    if entry.rate_limit is not None:
        if entry.rate_limit.rps <= 0 or entry.rate_limit.burst < 1:
            problems.append(Problem((*loc, "rate_limit"), "rps must be > 0 and burst >= 1"))
        else:
            rate_limit = (entry.rate_limit.rps, entry.rate_limit.burst)
    idle = go_duration_s(entry.stream_idle_timeout, (*loc, "stream_idle_timeout"), problems)
    if idle is not None and idle <= 0:
        problems.append(Problem((*loc, "stream_idle_timeout"), "must be positive"))
    retry = _retry(entry.stream_retry, (*loc, "stream_retry"), problems)
    api_key = _credential(
        entry.type, entry.credential, (*loc, "credential"), base_dir, env, problems
    )
    if problems:
        return None, problems
    return (
        ProviderSpec(
            id=provider_id,
            type=entry.type,  # type: ignore[arg-type]
            model=entry.model or "",
            base_url=base_url,
            api_key=api_key,
            headers=headers,
            defaults=defaults,
            unsupported_params=unsupported,
            pricing=pricing,
            pricing_correct_at=entry.pricing_correct_at,
            idle_timeout_s=idle,
            retry=retry,
            rate_limit=rate_limit,
            max_concurrent_streams=entry.stream_max_concurrent
            if entry.stream_max_concurrent and entry.stream_max_concurrent > 0
            else None,
        ),
        [],
    )


def _defaults(entry: Provider, loc: Loc, problems: list[Problem]) -> dict[str, Any]:
    d = entry.defaults
    if d is None:
        return {}
    out: dict[str, Any] = {}
    if d.temperature is not None:
        if not 0 <= d.temperature <= 2:
            problems.append(Problem((*loc, "defaults", "temperature"), "must be in [0, 2]"))
        out["temperature"] = d.temperature
    if d.top_p is not None:
        if not 0 <= d.top_p <= 1:
            problems.append(Problem((*loc, "defaults", "top_p"), "must be in [0, 1]"))
        out["top_p"] = d.top_p
    if d.max_tokens is not None:
        if d.max_tokens <= 0:
            problems.append(Problem((*loc, "defaults", "max_tokens"), "must be positive"))
        out["max_tokens"] = d.max_tokens
    if d.prompt_caching:
        problems.append(
            Problem((*loc, "defaults", "prompt_caching"), "prompt caching is not implemented")
        )
    return out


def _retry(cfg: StreamRetryConfig | None, loc: Loc, problems: list[Problem]) -> RetryPolicy | None:
    """PromptKit's semantics: retries happen only with `enabled: true`; `max_attempts`
    counts the first attempt (default 2); delays default to 250ms / 2s."""
    if cfg is None:
        return None
    if cfg.retry_window not in (None, "", "pre_first_chunk"):
        problems.append(Problem((*loc, "retry_window"), "only 'pre_first_chunk' is supported"))
    initial = go_duration_s(cfg.initial_delay, (*loc, "initial_delay"), problems)
    maximum = go_duration_s(cfg.max_delay, (*loc, "max_delay"), problems)
    if not cfg.enabled:
        return RetryPolicy(max_retries=0)
    attempts = cfg.max_attempts if cfg.max_attempts is not None else 2
    budget = None
    if (
        cfg.budget is not None
        and (cfg.budget.rate_per_sec or 0) > 0
        and (cfg.budget.burst or 0) > 0
    ):
        budget = (float(cfg.budget.rate_per_sec or 0), int(cfg.budget.burst or 0))
    return RetryPolicy(
        max_retries=max(attempts, 1) - 1,
        base_delay_s=initial if initial is not None else 0.25,
        max_delay_s=maximum if maximum is not None else 2.0,
        budget=budget,
    )


def _credential(
    kind: str,
    cfg: CredentialConfig | None,
    loc: Loc,
    base_dir: Path,
    env: Mapping[str, str],
    problems: list[Problem],
) -> str | None:
    if cfg is not None and cfg.api_key:
        return cfg.api_key
    if cfg is not None and cfg.credential_file:
        path = base_dir / cfg.credential_file
        try:
            key = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem((*loc, "credential_file"), f"cannot read {path}: {exc}"))
            return None
        if not key:
            problems.append(Problem((*loc, "credential_file"), f"{path} is empty"))
        return key or None
    if cfg is not None and cfg.credential_env:
        value = env.get(cfg.credential_env)
        if not value:
            problems.append(
                Problem(
                    (*loc, "credential_env"),
                    f"environment variable {cfg.credential_env} is not set",
                )
            )
        return value or None
    for name in DEFAULT_KEY_ENV.get(kind, ()):
        if env.get(name):
            return env[name]
    return None


def default_env() -> Mapping[str, str]:
    return os.environ
