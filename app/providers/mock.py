"""The deterministic, network-free `mock` provider (DESIGN §8).

Default behaviour: reply `echo: <text of the last user message>` (plus a description of
its media parts, see `describe_media`), streamed word by word (each
`TextDelta` is a word plus its trailing whitespace, so the deltas join back to the exact
reply), then a `UsageReport` (input = `estimate_tokens` of the system prompt plus every
message's content, output = `estimate_tokens` of the reply) and `Finish("stop")`.

Scripted scenarios (PromptKit `mock-responses.yaml`, see `scenarios.py`) are selected by
`request.metadata["mock_scenario"]`. **Turn numbering:** turn N = 1 + the number of
assistant messages anywhere in the request. So the first call of a conversation is turn 1;
after a scripted tool call, the follow-up call (which carries that assistant tool-call
message and its tool results) is turn 2; and in a plain multi-turn chat, the reply to the
k-th user message is turn k. (Counting only assistant messages after the last user message
would restart at 1 on every user message; counting user messages would never advance
through a tool loop.) The count covers what the request carries, so a context policy that
drops old assistant messages lowers it.

Resolution: the named scenario's turn N; else the scenario's own `defaultResponse`; else
the file's `defaultResponse`; else echo. Without `mock_scenario`, the file's
`defaultResponse` (if any) else echo. A scripted turn may carry text and tool calls; tool
calls get ids `call_<n>` numbered after the tool calls already in the request, stream as a
`ToolCallDelta` with id/name then one with the JSON arguments, complete in order, and end
with `Finish("tool_calls")`.

Failure injection (`request.metadata["mock_fail"]`), for tests of the failure paths:
`"error"` raises `ProviderError` before any event; `"midstream"` yields two deltas then
raises `ProviderError(retryable=False)`; `"rate_limit"` raises
`ProviderRateLimited(retryable=True)` with a 1 s Retry-After hint; `"timeout"` raises
`ProviderTimeout(retryable=True)`.

`delay_ms` paces the streamed deltas (0 means no sleep at all): delta n is due n x
`delay_ms` after the first, on the mock's own clock, as an upstream's tokens are. Sleeping
`delay_ms` after each wake-up instead added every late wake-up of a busy event loop to all
later gaps (bench/streaming.py at 20 ms: up to 25 ms per 50-token reply).

Summaries and recall, for tests of context strategy `summarize`: a summarization request
(`metadata["task"] == "summarize"`, sent by `app.manager.summarizer`) is answered with a
deterministic compression of its input: every line mentioning a fact (containing "fact",
any case), once each, in order; "(no facts)" if none. Its failure mode is
`metadata["mock_summary_fail"]` (the same modes), not `mock_fail`. With
`metadata["mock_recall"]` true, a user message containing "?" is answered from what the
request carries: `recall: <line>`, the line of the system prompt or an earlier message
sharing the most words (3+ letters) with the question (the newest on ties), or
`recall: nothing`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from itertools import chain, repeat
from operator import add, attrgetter, floordiv, not_

from app.domain import Part, ToolCall, Usage
from app.domain.tokens import estimate_tokens
from app.errors import ProviderError, ProviderRateLimited, ProviderTimeout
from app.providers.base import (
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
from app.providers.scenarios import Scenarios, ScriptedTurn

_WORDS = re.compile(r"\s*\S+\s*|\s+")
# The mock reads every message of every request it gets (hundreds per turn): these reads
# run in C (`map`), so the mock's own cost does not drown the service's in benchmarks.
_ROLE = attrgetter("role")
_PARTS = attrgetter("parts")
_TOOL_CALLS = attrgetter("tool_calls")
_CONTENT = attrgetter("content")
FAIL_MODES = ("error", "midstream", "rate_limit", "timeout")


def split_tokens(text: str) -> list[str]:
    """Words with their trailing whitespace; `"".join(split_tokens(t)) == t`."""
    return _WORDS.findall(text)


def _all_parts(request: ProviderRequest) -> Iterator[Part]:
    return chain.from_iterable(map(_PARTS, request.messages))


def message_text(msg: ProviderMessage) -> str:
    if msg.content:
        return msg.content
    return "".join(p.text or "" for p in msg.parts if p.type == "text")


def input_tokens(request: ProviderRequest) -> int:
    """`estimate_tokens` of the system prompt plus of each message's text (`message_text`),
    summed in C: `estimate_tokens(t)` is `(len(t) + 3) // 4` (0 for ""), so only a message
    without `content` (its text, if any, in its parts) takes a Python step."""
    messages = request.messages
    contents = list(map(_CONTENT, messages))
    total: int = sum(map(floordiv, map(add, map(len, contents), repeat(3)), repeat(4)))
    without_content = itertools.compress(messages, map(not_, contents))
    total += sum(estimate_tokens(message_text(m)) for m in without_content)
    return total + estimate_tokens(request.system or "")


def describe_media(msg: ProviderMessage) -> str:
    """What the mock saw of each media part of a message, appended to its echo:
    ` [image image/png 2048 bytes sha256=<hex>]` for bytes (hashed as received),
    ` [image url=<url>]` for a URL. Tests read it to see media arrive intact."""
    out = []
    for part in msg.parts:
        media = part.media
        if part.type == "text" or media is None:
            continue
        if media.base64 is not None:
            data = base64.b64decode(media.base64)
            digest = hashlib.sha256(data).hexdigest()
            out.append(f" [{part.type} {media.mime_type} {len(data)} bytes sha256={digest}]")
        elif media.url:
            out.append(f" [{part.type} url={media.url}]")
        else:
            out.append(f" [{part.type} unresolved media_id={media.media_id}]")
    return "".join(out)


def turn_number(request: ProviderRequest) -> int:
    """1 + the number of assistant messages in the request (see the module docstring)."""
    return 1 + list(map(_ROLE, request.messages)).count("assistant")


class MockProvider(LLMProvider):
    name = "mock"

    def media_support(self, kind: str, mime_type: str, source: str) -> str | None:
        return None  # the mock takes every media kind and describes it (`describe_media`)

    def __init__(
        self,
        scenarios: Scenarios | None = None,
        delay_ms: float = 0.0,
        *,
        default_model: str = "mock-echo",
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if delay_ms < 0:
            raise ValueError("delay_ms must be >= 0")
        self.scenarios = scenarios or Scenarios()
        self.delay_ms = delay_ms
        self.default_model = default_model
        self._sleep = sleep
        self._clock = clock

    def scripted_turn(self, request: ProviderRequest) -> ScriptedTurn | None:
        """The scripted answer for this request, or None to echo."""
        name = request.metadata.get("mock_scenario")
        fallback = self.scenarios.default_response
        if isinstance(name, str) and name in self.scenarios.scenarios:
            scenario = self.scenarios.scenarios[name]
            turn = scenario.turns.get(turn_number(request))
            if turn is not None:
                return turn
            fallback = scenario.default_response or fallback
        return ScriptedTurn(response=fallback) if fallback is not None else None

    def reply_for(self, request: ProviderRequest) -> ScriptedTurn:
        if request.metadata.get("task") == "summarize":
            return ScriptedTurn(response=compress(request))
        last_user = next((m for m in reversed(request.messages) if m.role == "user"), None)
        if request.metadata.get("mock_recall") and last_user and "?" in message_text(last_user):
            return ScriptedTurn(response=recall(request, last_user))
        turn = self.scripted_turn(request)
        if turn is not None:
            return turn
        last_user = next((m for m in reversed(request.messages) if m.role == "user"), None)
        if last_user is None:
            return ScriptedTurn(response="echo: ")
        return ScriptedTurn(response=f"echo: {message_text(last_user)}{describe_media(last_user)}")

    async def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        summarizing = request.metadata.get("task") == "summarize"
        fail = request.metadata.get("mock_summary_fail" if summarizing else "mock_fail")
        if fail is not None:
            _fail_early(fail)
        has_media = any(p.media is not None for p in _all_parts(request))
        # Hashing received media is CPU work: off the event loop.
        turn = (
            await asyncio.to_thread(self.reply_for, request)
            if has_media
            else self.reply_for(request)
        )
        text = turn.response or ""
        prior_calls = sum(map(len, map(_TOOL_CALLS, request.messages)))
        calls = [
            ToolCall(id=f"call_{prior_calls + i + 1}", name=tc.name, arguments=tc.arguments)
            for i, tc in enumerate(turn.tool_calls)
        ]
        deltas: list[ProviderEvent] = [TextDelta(t) for t in split_tokens(text)]
        for i, call in enumerate(calls):
            deltas.append(ToolCallDelta(i, id=call.id, name=call.name))
            deltas.append(ToolCallDelta(i, arguments_delta=json.dumps(call.arguments)))

        delay_s, start = self.delay_ms / 1000.0, self._clock()
        for n, event in enumerate(deltas):
            if n and delay_s:  # (paced from the first delta: see the module docstring)
                await self._sleep(max(0.0, start + n * delay_s - self._clock()))
            if fail == "midstream" and n == 2:
                raise ProviderError("mock failure requested mid-stream", retryable=False)
            yield event
        if fail == "midstream":
            raise ProviderError("mock failure requested mid-stream", retryable=False)

        for i, call in enumerate(calls):
            yield ToolCallComplete(i, call)
        output_tokens = estimate_tokens(text) + sum(
            estimate_tokens(json.dumps(c.arguments)) for c in calls
        )
        yield UsageReport(Usage.of(input_tokens(request), output_tokens))
        yield Finish("tool_calls" if calls else "stop")


_WORD = re.compile(r"[a-z0-9]{3,}")


def compress(request: ProviderRequest) -> str:
    """The mock's summary: the fact lines of the summarization input, once each."""
    lines: dict[str, None] = {}
    for m in request.messages:
        for line in message_text(m).splitlines():
            if "fact" in line.lower():
                lines[line.strip()] = None
    return "\n".join(lines) if lines else "(no facts)"


def recall(request: ProviderRequest, question: ProviderMessage) -> str:
    """The line of the request's context that shares the most words with `question`."""
    wanted = set(_WORD.findall(message_text(question).lower()))
    texts = [request.system or ""] + [
        message_text(m) for m in request.messages if m is not question
    ]
    best, score = "nothing", 0
    for text in texts:
        for line in text.splitlines():
            n = len(wanted & set(_WORD.findall(line.lower())))
            if n and n >= score:
                best, score = line.strip(), n
    return f"recall: {best}"


def _fail_early(mode: object) -> None:
    if mode == "error":
        raise ProviderError("mock failure requested", retryable=False)
    if mode == "rate_limit":
        raise ProviderRateLimited(
            "mock rate limit requested",
            retryable=True,
            extra={"retry_after_s": 1.0},
            headers={"Retry-After": "1"},
        )
    if mode == "timeout":
        raise ProviderTimeout("mock timeout requested", retryable=True)
    if mode != "midstream":
        raise ProviderError(f"unknown mock_fail mode {mode!r}; use one of {', '.join(FAIL_MODES)}")
