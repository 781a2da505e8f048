"""The `LLMProvider` ABC and the provider-neutral request/event types (DESIGN §8).

Contract:

* `stream(request)` is an async iterator of `ProviderEvent`s. Every provider streams
  internally, even when the client asked for a non-streaming turn; `collect()` folds a
  stream into a `ProviderResult`.
* Event order: any number of `TextDelta` / `ToolCallDelta`, then for each tool call exactly
  one `ToolCallComplete` (arguments parsed into a dict), then at most one `UsageReport`,
  then exactly one `Finish`. Nothing follows `Finish`.
* Failures raise `ProviderError` (502 `provider_error`), `ProviderTimeout` (504) or
  `ProviderRateLimited` (429) from `app.errors`, with `retryable=True` when a retry could
  help (429, 5xx, connection errors). Retries are not the provider's job: `RetryingProvider`
  retries only while no event has been yielded yet.
* Adapters take an injected `httpx.AsyncClient`, so tests drive them with `MockTransport`.
* Media: `media_support(kind, mime_type, source)` says up front (None = yes, else the
  reason) whether the provider takes a media part, so a turn is refused with 422 before
  anything is stored or sent. Parts reach `stream` resolved: `media.base64` holds the
  bytes (or `media.url` the URL the client gave). `media_token_rule` names the published
  rule the context budget counts images by (`app.domain.media_tokens`).
* Generation parameters: `supported_parameters` names the pack `parameters` the
  provider's API has. Packs are portable, so a parameter another provider lacks (say
  `top_k` on OpenAI) does not fail the turn: the adapter leaves it out of the request and
  `ignored_parameters()` reports it, logged once per provider and name (README,
  "Generation parameters by provider").
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

from app.domain import FinishReason, Part, ToolCall, Usage
from app.domain.media_tokens import TokenRule

log = logging.getLogger("parley.providers")


class ProviderMessage(BaseModel):
    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    parts: list[Part] = Field(default_factory=list)
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None


class ToolSpec(BaseModel):
    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class ProviderRequest(BaseModel):
    """What one provider call sends.

    `parameters` holds generation parameters (temperature, max_tokens, top_p, top_k,
    frequency_penalty, presence_penalty); adapters map or drop what their API lacks.
    `metadata` is for provider-specific hints (the mock reads `mock_scenario`).
    """

    model: str
    system: str | None = None
    messages: list[ProviderMessage]
    tools: list[ToolSpec] = Field(default_factory=list)
    tool_choice: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ToolCallDelta:
    """A fragment of a tool call as it streams: `id`/`name` on the first fragment of a call,
    then argument text pieces. For display only; act on `ToolCallComplete`."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments_delta: str = ""


@dataclass(frozen=True)
class ToolCallComplete:
    index: int
    tool_call: ToolCall


@dataclass(frozen=True)
class UsageReport:
    usage: Usage


@dataclass(frozen=True)
class Finish:
    reason: FinishReason


ProviderEvent = TextDelta | ToolCallDelta | ToolCallComplete | UsageReport | Finish


@dataclass
class ProviderResult:
    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Usage | None = None
    finish_reason: FinishReason = "stop"


GENERATION_PARAMETERS = frozenset(
    {"temperature", "max_tokens", "top_p", "top_k", "frequency_penalty", "presence_penalty"}
    | {"stop", "seed"}
)


class LLMProvider(ABC):
    """One LLM API. `name` is what conversations store in `provider`."""

    name: str
    default_model: str
    media_token_rule: TokenRule = "openai"
    supported_parameters: frozenset[str] = GENERATION_PARAMETERS

    def ignored_parameters(self, parameters: dict[str, Any]) -> list[str]:
        """The names in `parameters` this provider leaves out of its requests; each is
        logged (WARNING) the first time this provider instance meets it."""
        ignored = sorted(k for k in parameters if k not in self.supported_parameters)
        # per instance, created on first use so subclasses need not call a base __init__
        seen: set[str] = self.__dict__.setdefault("_ignored_logged", set())
        for name in ignored:
            if name not in seen:
                seen.add(name)
                log.warning(
                    "provider %r has no %r parameter: it is left out of its requests",
                    self.name,
                    name,
                )
        return ignored

    def media_support(self, kind: str, mime_type: str, source: str) -> str | None:
        """None if the provider takes a `kind` part of `mime_type` from `source` ("bytes"
        or "url"), else why not. The default takes no media."""
        return f"provider {self.name!r} does not accept {kind} parts"

    def token_encoding(self, model: str) -> str | None:
        """The tokenizer encoding `model`'s input is counted by exactly
        (`app.domain.tokens.ENCODINGS`), or None: counted by the estimate. The default
        knows none."""
        return None

    def request_body(self, request: ProviderRequest) -> dict[str, Any]:
        """The JSON body `stream(request)` would send, built by the same pure function the
        call uses (`GET /conversations/{id}/context` shows it). An adapter without a wire
        format (the mock) returns the provider-neutral request itself."""
        return request.model_dump(mode="json")

    @abstractmethod
    def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        """Stream one completion. See the module docstring for the event contract."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release resources the provider owns (not an injected client)."""


async def collect(events: AsyncIterator[ProviderEvent]) -> ProviderResult:
    """Fold a provider stream into its final result."""
    result = ProviderResult()
    text: list[str] = []
    async for ev in events:
        if isinstance(ev, TextDelta):
            text.append(ev.text)
        elif isinstance(ev, ToolCallComplete):
            result.tool_calls.append(ev.tool_call)
        elif isinstance(ev, UsageReport):
            result.usage = ev.usage
        elif isinstance(ev, Finish):
            result.finish_reason = ev.reason
    result.text = "".join(text)
    return result
