"""Anthropic Messages API (streaming).

Request: `POST {base_url}/v1/messages` with `stream: true`; the system prompt is top-level,
`max_tokens` is required (the request's, else 4096). Tool calls are `tool_use` blocks of an
assistant message and tool results are `tool_result` blocks of a *user* message; consecutive
messages that map to the same role (e.g. several tool results, or tool results followed by a
user message) are merged into one, since the API wants alternating roles.

Response: `event: <type>` / `data: {...}` frames: `message_start` (input usage),
`content_block_start|delta|stop`, `message_delta` (stop reason, output usage),
`message_stop`, `ping`, `error`. Tool calls are numbered 0, 1, ... in the order their
`tool_use` blocks start (Anthropic's own block index also counts text blocks).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import httpx

from app.domain import FinishReason, Part, ToolCall, Usage
from app.errors import ProviderError, ProviderRateLimited
from app.providers.base import (
    GENERATION_PARAMETERS,
    Finish,
    LLMProvider,
    ProviderEvent,
    ProviderMessage,
    ProviderRequest,
    TextDelta,
    ToolCallComplete,
    ToolCallDelta,
    UsageReport,
)
from app.providers.media_parts import IMAGE_TYPES, TEXT_DOCUMENTS, document_text, part_kind
from app.providers.transport import (
    parse_json_event,
    parse_tool_arguments,
    stream_sse,
    unexpected_shape,
)

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096

_STOP: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_RETRYABLE_ERRORS = {"overloaded_error", "api_error"}


def media_support(kind: str, mime_type: str, source: str) -> str | None:
    """What the Messages API takes: images (JPEG, PNG, GIF, WebP) and PDF documents as
    base64 or URL sources, text documents as text sources (bytes only)."""
    if kind == "image":
        if mime_type in IMAGE_TYPES:
            return None
        return f"anthropic takes JPEG, PNG, GIF or WebP images, not {mime_type}"
    if kind == "document":
        if mime_type == "application/pdf":
            return None
        if mime_type in TEXT_DOCUMENTS:
            return None if source == "bytes" else "anthropic takes text documents as bytes"
        return f"anthropic takes PDF or text documents, not {mime_type}"
    return f"anthropic does not take {kind} parts"


def _source(part: Part) -> dict[str, Any] | None:
    media = part.media
    if media is None:
        return None
    if media.base64 is not None:
        return {"type": "base64", "media_type": media.mime_type, "data": media.base64}
    url = media.url
    if not url:
        return None
    if url.startswith("data:") and ";base64," in url:
        header, data = url[5:].split(";base64,", 1)
        return {"type": "base64", "media_type": header or media.mime_type, "data": data}
    return {"type": "url", "url": url}


def _media_block(part: Part) -> dict[str, Any] | None:
    kind = part_kind(part)
    media = part.media
    if kind == "document" and media is not None and media.mime_type in TEXT_DOCUMENTS:
        text = {"type": "text", "media_type": "text/plain", "data": document_text(part)}
        return {"type": "document", "source": text}
    source = _source(part)
    if source is None or kind not in ("image", "document"):
        return None
    return {"type": kind, "source": source}


def _user_blocks(msg: ProviderMessage) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    has_text_part = any(p.type == "text" for p in msg.parts)
    if msg.content and not has_text_part:
        blocks.append({"type": "text", "text": msg.content})
    for part in msg.parts:
        if part.type == "text":
            if part.text:
                blocks.append({"type": "text", "text": part.text})
            continue
        block = _media_block(part)
        if block is not None:
            blocks.append(block)
            if part.media is not None and part.media.caption:
                blocks.append({"type": "text", "text": part.media.caption})
    return blocks


def _blocks(msg: ProviderMessage) -> list[dict[str, Any]]:
    if msg.role == "tool":
        block: dict[str, Any] = {"type": "tool_result", "tool_use_id": msg.tool_call_id or ""}
        if msg.content:
            block["content"] = msg.content
        return [block]
    if msg.role == "assistant":
        blocks: list[dict[str, Any]] = []
        if msg.content:
            blocks.append({"type": "text", "text": msg.content})
        blocks.extend(
            {"type": "tool_use", "id": tc.id, "name": tc.name, "input": tc.arguments}
            for tc in msg.tool_calls
        )
        return blocks
    return _user_blocks(msg)


def map_messages(messages: list[ProviderMessage]) -> tuple[list[str], list[dict[str, Any]]]:
    """(system texts found among the messages, Anthropic messages)."""
    system: list[str] = []
    turns: list[tuple[str, list[dict[str, Any]]]] = []
    for msg in messages:
        if msg.role == "system":
            if msg.content:
                system.append(msg.content)
            continue
        role = "assistant" if msg.role == "assistant" else "user"
        blocks = _blocks(msg)
        if not blocks:
            continue  # the API rejects empty content
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(blocks)
        else:
            turns.append((role, blocks))
    out: list[dict[str, Any]] = []
    for role, blocks in turns:
        only_text = len(blocks) == 1 and blocks[0]["type"] == "text"
        out.append({"role": role, "content": blocks[0]["text"] if only_text else blocks})
    return system, out


def build_body(request: ProviderRequest) -> dict[str, Any]:
    """The JSON body for `/v1/messages` (pure; tested directly)."""
    extra_system, messages = map_messages(request.messages)
    params = request.parameters
    body: dict[str, Any] = {
        "model": request.model,
        "max_tokens": int(params.get("max_tokens") or DEFAULT_MAX_TOKENS),
        "messages": messages,
        "stream": True,
    }
    system = "\n\n".join([request.system, *extra_system] if request.system else extra_system)
    if system:
        body["system"] = system
    if request.tools:
        body["tools"] = [
            {"name": t.name, "description": t.description, "input_schema": t.parameters}
            for t in request.tools
        ]
        choice = request.tool_choice
        if choice == "auto":
            body["tool_choice"] = {"type": "auto"}
        elif choice == "required":
            body["tool_choice"] = {"type": "any"}
        elif choice == "none":
            body["tool_choice"] = {"type": "none"}
        elif choice:
            body["tool_choice"] = {"type": "tool", "name": choice}
    for key in ("temperature", "top_p", "top_k"):
        if params.get(key) is not None:
            body[key] = params[key]
    stop = params.get("stop")
    if stop:
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    return body


@dataclass
class _ToolBlock:
    ordinal: int
    id: str
    name: str
    initial: dict[str, Any]
    json: str = ""
    done: bool = False


class _EventParser:
    def __init__(self) -> None:
        self.tools: dict[int, _ToolBlock] = {}
        self.input_tokens = 0
        self.output_tokens = 0
        self.stop: FinishReason | None = None
        self.done = False
        self.emitted = False

    def feed(self, doc: dict[str, Any]) -> list[ProviderEvent]:
        kind = doc.get("type")
        events: list[ProviderEvent] = []
        if kind == "message_start":
            self._usage((doc.get("message") or {}).get("usage") or {})
        elif kind == "content_block_start":
            events = self._block_start(int(doc.get("index", 0)), doc.get("content_block") or {})
        elif kind == "content_block_delta":
            events = self._block_delta(int(doc.get("index", 0)), doc.get("delta") or {})
        elif kind == "content_block_stop":
            block = self.tools.get(int(doc.get("index", 0)))
            if block is not None:
                events = self._complete(block)
        elif kind == "message_delta":
            reason = (doc.get("delta") or {}).get("stop_reason")
            if reason:
                self.stop = _STOP.get(reason, "stop")
            self._usage(doc.get("usage") or {})
        elif kind == "message_stop":
            events = self._end()
        elif kind == "error":
            self._raise(doc.get("error") or {})
        self.emitted = self.emitted or bool(events)
        return events

    def _usage(self, usage: dict[str, Any]) -> None:
        if usage.get("input_tokens") is not None:
            self.input_tokens = (
                int(usage["input_tokens"])
                + int(usage.get("cache_creation_input_tokens") or 0)
                + int(usage.get("cache_read_input_tokens") or 0)
            )
        if usage.get("output_tokens") is not None:
            self.output_tokens = int(usage["output_tokens"])  # cumulative, per the docs

    def _block_start(self, index: int, block: dict[str, Any]) -> list[ProviderEvent]:
        if block.get("type") == "text" and block.get("text"):
            return [TextDelta(str(block["text"]))]
        if block.get("type") != "tool_use":
            return []  # thinking, server tools, ...: not surfaced
        initial = block.get("input")
        tool = _ToolBlock(
            ordinal=len(self.tools),
            id=str(block.get("id") or f"toolu_{len(self.tools)}"),
            name=str(block.get("name") or ""),
            initial=initial if isinstance(initial, dict) else {},
        )
        self.tools[index] = tool
        return [ToolCallDelta(tool.ordinal, id=tool.id, name=tool.name)]

    def _block_delta(self, index: int, delta: dict[str, Any]) -> list[ProviderEvent]:
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            return [TextDelta(str(delta["text"]))]
        tool = self.tools.get(index)
        if kind == "input_json_delta" and tool is not None:
            piece = str(delta.get("partial_json") or "")
            tool.json += piece
            return [ToolCallDelta(tool.ordinal, arguments_delta=piece)] if piece else []
        return []

    def _complete(self, tool: _ToolBlock) -> list[ProviderEvent]:
        if tool.done:
            return []
        tool.done = True
        args = (
            parse_tool_arguments("anthropic", tool.name, tool.json)
            if tool.json.strip()
            else tool.initial
        )
        call = ToolCall(id=tool.id, name=tool.name, arguments=args)
        return [ToolCallComplete(tool.ordinal, call)]

    def _end(self) -> list[ProviderEvent]:
        self.done = True
        events: list[ProviderEvent] = []
        for index in sorted(self.tools):
            events.extend(self._complete(self.tools[index]))
        reason: FinishReason = self.stop or ("tool_calls" if self.tools else "stop")
        events.append(UsageReport(Usage.of(self.input_tokens, self.output_tokens)))
        events.append(Finish(reason))
        return events

    def _raise(self, error: dict[str, Any]) -> None:
        kind = str(error.get("type") or "error")
        detail = f"anthropic stream error: {kind}: {error.get('message') or ''}".rstrip(": ")
        if kind == "rate_limit_error":
            raise ProviderRateLimited(detail, retryable=True)
        raise ProviderError(detail, retryable=kind in _RETRYABLE_ERRORS)


class AnthropicProvider(LLMProvider):
    """Messages API over an injected `httpx.AsyncClient` (never owned, never closed)."""

    name = "anthropic"
    supported_parameters = GENERATION_PARAMETERS - {"frequency_penalty", "presence_penalty", "seed"}
    media_token_rule = "anthropic"

    def media_support(self, kind: str, mime_type: str, source: str) -> str | None:
        return media_support(kind, mime_type, source)

    def __init__(
        self,
        client: httpx.AsyncClient,
        api_key: str | None,
        base_url: str = "https://api.anthropic.com",
        default_model: str = "claude-sonnet-4-5",
        idle_timeout_s: float = 30.0,
        extra_headers: Mapping[str, str] | None = None,
    ) -> None:
        self._client = client
        self._api_key = api_key
        self._extra_headers = dict(extra_headers or {})
        self.base_url = base_url.rstrip("/")
        self.default_model = default_model
        self.idle_timeout_s = idle_timeout_s

    def __repr__(self) -> str:
        return (
            f"AnthropicProvider(base_url={self.base_url!r}, default_model={self.default_model!r})"
        )

    def headers(self) -> dict[str, str]:
        headers = {
            **self._extra_headers,
            "anthropic-version": API_VERSION,
            "content-type": "application/json",
            "accept": "text/event-stream",
        }
        if self._api_key:
            headers["x-api-key"] = self._api_key
        return headers

    def request_body(self, request: ProviderRequest) -> dict[str, Any]:
        return build_body(request)

    async def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        self.ignored_parameters(request.parameters)
        parser = _EventParser()
        events = stream_sse(
            self._client,
            provider=self.name,
            url=f"{self.base_url}/v1/messages",
            headers=self.headers(),
            body=build_body(request),
            idle_timeout_s=self.idle_timeout_s,
            secret=self._api_key,
        )
        async with aclosing(events):
            async for sse in events:
                if not sse.data.strip():
                    continue
                doc = parse_json_event(self.name, sse.data, retryable=not parser.emitted)
                doc.setdefault("type", sse.event)
                try:
                    out = parser.feed(doc)
                except (AttributeError, TypeError, ValueError) as exc:
                    raise unexpected_shape(self.name, sse.data, exc, parser.emitted) from None
                for ev in out:
                    yield ev
                if parser.done:
                    return
        raise ProviderError(
            "anthropic stream ended before message_stop (truncated response)",
            retryable=not parser.emitted,
        )
