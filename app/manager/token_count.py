"""The token counter of the context window, and its per-conversation correction.

Each conversation is counted by its provider's counter (`app.domain.tokens`): an OpenAI
adapter names the tiktoken encoding of the conversation's model
(`LLMProvider.token_encoding`: gpt-4o*, gpt-4.1*, gpt-5*, o1/o3/o4* -> o200k_base;
gpt-4*, gpt-3.5* -> cl100k_base) and the text is counted exactly by `toktok`, whose
encodings are compiled into its wheel (nothing is downloaded at run time); every other
provider and model (Anthropic, the mock, Ollama/vLLM, unknown OpenAI names) is counted by
the estimate (~4 characters per token). What is counted, by either:

* a message: 4 tokens of overhead (role, separators) + its text + each tool call's name
  and JSON arguments + its media parts by the provider's published rule
  (`app.domain.media_tokens`); a tool result is a message whose text is the result;
* the system prompt: like a message;
* the tool definitions: their JSON as sent (name, description, parameters schema).

The overheads are the estimate's even with an exact text count (the wire framing of
messages and tool definitions differs by API and is not published exactly), so an exact
counter is exact for the text, not for the whole request; the usage correction covers
the rest.

Provider-reported usage corrects it: after every call that reports `input_tokens`,
`UsageCalibration.observe` records reported / counted for the conversation, and the
context builder shrinks that conversation's budget by the (smoothed) ratio when the
count was low. It never grows the budget (a provider reporting fewer tokens than
counted does not make Parley send more than `max_input_tokens - reserve_output_tokens` by
its own counter). The correction lives in the process (bounded LRU); `GET /stats` reports
the counter's error (`context_estimate`), overall and per counter kind (`by_counter`).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

from app.domain.media_tokens import TokenRule
from app.domain.tokens import ESTIMATE, TokenCounter
from app.manager.message_cache import (
    MESSAGE_OVERHEAD_TOKENS,
    message_text_tokens,
    parts_media_tokens,
)
from app.providers.base import ProviderMessage, ProviderRequest, ToolSpec

MAX_FACTOR = 4.0
SMOOTHING = 0.5  # weight of the newest observation


def text_tokens(text: str | None, counter: TokenCounter = ESTIMATE) -> int:
    return counter.total([text or ""])


def system_tokens(system: str | None, counter: TokenCounter = ESTIMATE) -> int:
    return MESSAGE_OVERHEAD_TOKENS + counter.total([system]) if system else 0


def tools_tokens(tools: list[ToolSpec], counter: TokenCounter = ESTIMATE) -> int:
    return counter.total([json.dumps([t.model_dump() for t in tools])]) if tools else 0


def provider_message_tokens(
    m: ProviderMessage, rule: TokenRule, counter: TokenCounter = ESTIMATE
) -> int:
    tokens = message_text_tokens(m.content, m.tool_calls, counter)
    return tokens + parts_media_tokens((p for p in m.parts if p.type != "text"), rule)


def request_tokens(
    request: ProviderRequest, rule: TokenRule, counter: TokenCounter = ESTIMATE
) -> int:
    """Input tokens of a whole provider request by the counter (what the builder budgets)."""
    return (
        system_tokens(request.system, counter)
        + tools_tokens(request.tools, counter)
        + sum(provider_message_tokens(m, rule, counter) for m in request.messages)
    )


class _ErrorSums:
    """Running sums of (counted - reported) / reported."""

    def __init__(self) -> None:
        self.samples = 0
        self.sum_error = 0.0
        self.sum_abs_error = 0.0

    def add(self, error: float) -> None:
        self.samples += 1
        self.sum_error += error
        self.sum_abs_error += abs(error)

    def snapshot(self) -> dict[str, Any]:
        n = self.samples
        return {
            "samples": n,
            "mean_error_pct": round(100 * self.sum_error / n, 2) if n else 0.0,
            "mean_abs_error_pct": round(100 * self.sum_abs_error / n, 2) if n else 0.0,
        }


class UsageCalibration:
    """reported / counted input tokens per conversation, and the counter's error (overall
    and per counter kind: "estimate", "o200k_base", "cl100k_base")."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._ratios: OrderedDict[str, float] = OrderedDict()
        self._max = max_entries
        self._all = _ErrorSums()
        self._by_kind: dict[str, _ErrorSums] = {}

    @property
    def samples(self) -> int:
        return self._all.samples

    def factor(self, conversation_id: str) -> float:
        """How much to shrink the conversation's budget by (1.0: not at all)."""
        ratio = self._ratios.get(conversation_id)
        return 1.0 if ratio is None else min(MAX_FACTOR, max(1.0, ratio))

    def observe(
        self, conversation_id: str, estimated: int, reported: int, kind: str = ESTIMATE.kind
    ) -> None:
        """A call counted at `estimated` by a counter of `kind` reported `reported`."""
        if estimated <= 0 or reported <= 0:
            return
        ratio = reported / estimated
        old = self._ratios.pop(conversation_id, None)
        self._ratios[conversation_id] = (
            ratio if old is None else SMOOTHING * ratio + (1 - SMOOTHING) * old
        )
        while len(self._ratios) > self._max:
            self._ratios.popitem(last=False)
        error = (estimated - reported) / reported
        self._all.add(error)
        self._by_kind.setdefault(kind, _ErrorSums()).add(error)

    def snapshot(self) -> dict[str, Any]:
        return {
            **self._all.snapshot(),
            "conversations_corrected": sum(1 for r in self._ratios.values() if r > 1.0),
            "by_counter": {k: v.snapshot() for k, v in sorted(self._by_kind.items())},
        }
