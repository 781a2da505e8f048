"""OpenAI Chat Completions (streaming) and any OpenAI-compatible server.

Request: `POST {base_url}/chat/completions` with `stream: true` and
`stream_options.include_usage`. Response: SSE `data:` lines holding `chat.completion.chunk`
objects, ended by `data: [DONE]`.

Tolerance for compatible servers (Ollama, vLLM, llama.cpp, LM Studio, OpenRouter):
usage may be missing or `null` on every chunk; a chunk may carry usage and a finish reason
together; a tool-call fragment may lack `index` (then a new `id` starts a new call); a
server that reports `finish_reason: "stop"` while returning tool calls is read as
`tool_calls`; an unknown finish reason is read as `stop`; the legacy `function_call` delta
is accepted. A stream that ends without `[DONE]` is a truncation error.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import httpx

from app.domain import FinishReason, Part, ToolCall, Usage
from app.domain.tokens import openai_encoding
from app.errors import ProviderError
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
from app.providers.media_parts import (
    IMAGE_TYPES,
    TEXT_DOCUMENTS,
    data_url,
    document_name,
    document_text,
    part_kind,
)
from app.providers.transport import (
    parse_json_event,
    parse_tool_arguments,
    stream_sse,
    unexpected_shape,
)

_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}
_PASSTHROUGH = ("temperature", "top_p", "frequency_penalty", "presence_penalty", "stop", "seed")
# o-series reasoning models reject `max_tokens` and require `max_completion_tokens`.
_REASONING_MODEL = re.compile(r"^o\d")


def media_support(kind: str, mime_type: str, source: str) -> str | None:
    """What Chat Completions takes: images (PNG, JPEG, GIF, WebP) as a data URL or a URL;
    audio (WAV, MP3) as `input_audio` bytes; PDFs as `file` bytes; text documents inlined
    as text. Anything else is refused up front."""
    if kind == "image":
        if mime_type in IMAGE_TYPES:
            return None
        return f"openai takes PNG, JPEG, GIF or WebP images, not {mime_type}"
    if kind == "audio":
        if source != "bytes":
            return "openai takes audio only as bytes (base64 or upload), not by URL"
        if mime_type in _AUDIO_FORMATS:
            return None
        return f"openai takes WAV or MP3 audio, not {mime_type}"
    if kind == "document":
        if source != "bytes":
            return "openai takes documents only as bytes (base64 or upload), not by URL"
        if mime_type == "application/pdf" or mime_type in TEXT_DOCUMENTS:
            return None
        return f"openai takes PDF or text documents, not {mime_type}"
    return f"openai does not take {kind} parts"


_AUDIO_FORMATS = {"audio/wav": "wav", "audio/mpeg": "mp3"}


def _media_block(part: Part) -> dict[str, Any] | None:
    media = part.media
    if media is None:
        return None
    kind = part_kind(part)
    if kind == "image":
        url = media.url or data_url(part)
        if url is None:
            return None
        image: dict[str, Any] = {"url": url}
        if media.detail:
            image["detail"] = media.detail
        return {"type": "image_url", "image_url": image}
    if media.base64 is None:
        return None
    if kind == "audio":
        fmt = _AUDIO_FORMATS.get(media.mime_type or "", "wav")
        return {"type": "input_audio", "input_audio": {"data": media.base64, "format": fmt}}
    if kind == "document" and media.mime_type in TEXT_DOCUMENTS:
        return {"type": "text", "text": document_text(part)}
    if kind == "document":
        return {
            "type": "file",
            "file": {"filename": document_name(part, "pdf"), "file_data": data_url(part)},
        }
    return None


def message_content(msg: ProviderMessage) -> str | list[dict[str, Any]]:
    """A plain string, or content parts when the message carries media."""
    if not any(p.type != "text" and p.media is not None for p in msg.parts):
        return msg.content
    out: list[dict[str, Any]] = []
    if msg.content and not any(p.type == "text" for p in msg.parts):
        out.append({"type": "text", "text": msg.content})
    for part in msg.parts:
        if part.type == "text":
            if part.text:
                out.append({"type": "text", "text": part.text})
            continue
        block = _media_block(part)
        if block is not None:
            out.append(block)
            if part.media is not None and part.media.caption:
                out.append({"type": "text", "text": part.media.caption})
    return out


def map_message(msg: ProviderMessage) -> dict[str, Any]:
    if msg.role == "tool":
        return {"role": "tool", "tool_call_id": msg.tool_call_id or "", "content": msg.content}
    if msg.role == "assistant":
        out: dict[str, Any] = {"role": "assistant", "content": msg.content or None}
        if msg.tool_calls:
            out["tool_calls"] = [
                {
                    "id": tc.id,
                    "type": "function",
                    "function": {"name": tc.name, "arguments": json.dumps(tc.arguments)},
                }
                for tc in msg.tool_calls
            ]
        elif out["content"] is None:
            out["content"] = ""
        return out
    return {"role": msg.role, "content": message_content(msg)}


def build_body(request: ProviderRequest) -> dict[str, Any]:
    """The JSON body for `/chat/completions` (pure; tested directly)."""
    messages: list[dict[str, Any]] = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    messages.extend(map_message(m) for m in request.messages)
    body: dict[str, Any] = {
        "model": request.model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if request.tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": t.parameters,
                },
            }
            for t in request.tools
        ]
        choice = request.tool_choice
        if choice in ("auto", "none", "required"):
            body["tool_choice"] = choice
        elif choice:
            body["tool_choice"] = {"type": "function", "function": {"name": choice}}
    params = request.parameters
    for key in _PASSTHROUGH:
        if params.get(key) is not None:
            body[key] = params[key]
    if params.get("max_tokens") is not None:
        key = "max_completion_tokens" if _REASONING_MODEL.match(request.model) else "max_tokens"
        body[key] = params["max_tokens"]
    return body


@dataclass
class _PendingCall:
    id: str
    name: str
    arguments: str = ""


class _ChunkParser:
    """Turns decoded `chat.completion.chunk` objects into provider events."""

    def __init__(self) -> None:
        self.calls: dict[int, _PendingCall] = {}
        self.completed = False
        self.finish: FinishReason | None = None
        self.usage: Usage | None = None
        self.emitted = False

    def feed(self, chunk: dict[str, Any]) -> list[ProviderEvent]:
        if chunk.get("error"):
            err = chunk["error"]
            msg = err.get("message") if isinstance(err, dict) else str(err)
            raise ProviderError(f"openai stream error: {msg}", retryable=not self.emitted)
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            prompt = int(usage.get("prompt_tokens") or 0)
            completion = int(usage.get("completion_tokens") or 0)
            self.usage = Usage(
                input_tokens=prompt,
                output_tokens=completion,
                total_tokens=int(usage.get("total_tokens") or prompt + completion),
            )
        events: list[ProviderEvent] = []
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue  # n > 1 is never requested
            if self.finish is None:
                events.extend(self._delta(choice.get("delta") or {}))
            reason = choice.get("finish_reason")
            if reason and self.finish is None:
                self.finish = _FINISH.get(reason, "stop")
                events.extend(self.complete_calls())
        self.emitted = self.emitted or bool(events)
        return events

    def _delta(self, delta: dict[str, Any]) -> list[ProviderEvent]:
        events: list[ProviderEvent] = []
        for key in ("content", "refusal"):
            text = delta.get(key)
            if isinstance(text, str) and text:
                events.append(TextDelta(text))
        fragments = list(delta.get("tool_calls") or [])
        legacy = delta.get("function_call")
        if isinstance(legacy, dict):
            fragments.append({"index": 0, "function": legacy})
        for frag in fragments:
            events.extend(self._tool_fragment(frag))
        return events

    def _tool_fragment(self, frag: dict[str, Any]) -> list[ProviderEvent]:
        fn = frag.get("function") or {}
        frag_id = frag.get("id")
        index = frag.get("index")
        if not isinstance(index, int):
            known = {c.id for c in self.calls.values()}
            if not self.calls or (frag_id and frag_id not in known):
                index = len(self.calls)
            else:
                index = max(self.calls)
        args = fn.get("arguments") or ""
        if not isinstance(args, str):  # some servers send an already-parsed object
            args = json.dumps(args)
        call = self.calls.get(index)
        if call is None:
            call = _PendingCall(id=frag_id or f"call_{index}", name=fn.get("name") or "")
            self.calls[index] = call
            call.arguments += args
            return [ToolCallDelta(index, id=call.id, name=call.name, arguments_delta=args)]
        if fn.get("name") and not call.name:
            call.name = fn["name"]
        call.arguments += args
        return [ToolCallDelta(index, arguments_delta=args)] if args else []

    def complete_calls(self) -> list[ProviderEvent]:
        events: list[ProviderEvent] = []
        if self.completed:
            return events
        self.completed = True
        for index in sorted(self.calls):
            call = self.calls[index]
            if not call.name:
                raise ProviderError(f"openai returned tool call {index} without a name")
            args = parse_tool_arguments("openai", call.name, call.arguments)
            tc = ToolCall(id=call.id, name=call.name, arguments=args)
            events.append(ToolCallComplete(index, tc))
        return events

    def end(self) -> list[ProviderEvent]:
        """`[DONE]` seen: complete leftovers, then usage and finish."""
        events = self.complete_calls()
        reason: FinishReason = self.finish or "stop"
        if self.calls and reason == "stop":
            reason = "tool_calls"
        if self.usage is not None:
            events.append(UsageReport(self.usage))
        events.append(Finish(reason))
        return events


class OpenAIProvider(LLMProvider):
    """Chat Completions over an injected `httpx.AsyncClient` (never owned, never closed)."""

    name = "openai"
    supported_parameters = GENERATION_PARAMETERS - {"top_k"}

    def __init__(
        self,
        client: httpx.AsyncClient,
        api_key: str | None,
        base_url: str,
        default_model: str = "gpt-4o-mini",
        idle_timeout_s: float = 30.0,
        extra_headers: Mapping[str, str] | None = None,
    ) -> None:
        self._client = client
        self._api_key = api_key
        self._extra_headers = dict(extra_headers or {})
        self.base_url = base_url.rstrip("/")
        self.default_model = default_model
        self.idle_timeout_s = idle_timeout_s

    def media_support(self, kind: str, mime_type: str, source: str) -> str | None:
        return media_support(kind, mime_type, source)

    def token_encoding(self, model: str) -> str | None:
        return openai_encoding(model)

    def __repr__(self) -> str:
        return f"OpenAIProvider(base_url={self.base_url!r}, default_model={self.default_model!r})"

    def headers(self) -> dict[str, str]:
        headers = {**self._extra_headers}
        headers.update({"content-type": "application/json", "accept": "text/event-stream"})
        if self._api_key:
            headers["authorization"] = f"Bearer {self._api_key}"
        return headers

    def request_body(self, request: ProviderRequest) -> dict[str, Any]:
        return build_body(request)

    async def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        self.ignored_parameters(request.parameters)
        parser = _ChunkParser()
        events = stream_sse(
            self._client,
            provider=self.name,
            url=f"{self.base_url}/chat/completions",
            headers=self.headers(),
            body=build_body(request),
            idle_timeout_s=self.idle_timeout_s,
            secret=self._api_key,
        )
        async with aclosing(events):
            async for sse in events:
                data = sse.data.strip()
                if data == "[DONE]":
                    for ev in parser.end():
                        yield ev
                    return
                if not data:
                    continue
                chunk = parse_json_event(self.name, data, retryable=not parser.emitted)
                try:
                    out = parser.feed(chunk)
                except (AttributeError, TypeError, ValueError) as exc:
                    raise unexpected_shape(self.name, data, exc, parser.emitted) from None
                for ev in out:
                    yield ev
        raise ProviderError(
            "openai stream ended before [DONE] (truncated response)",
            retryable=not parser.emitted,
        )
