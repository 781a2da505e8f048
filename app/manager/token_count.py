"""The one token counter of the context window, and its per-conversation correction.

No tokenizer ships inside an installed package (tiktoken, in the lock only through an
optional dependency, downloads its encodings at run time, which Parley never does), so
every provider and model is counted by one calibrated estimate (`app.domain.tokens`:
~4 characters per token, the providers' documented rule of thumb for English):

* a message: 4 tokens of overhead (role, separators) + its text + each tool call's name
  and JSON arguments + its media parts by the provider's published rule
  (`app.domain.media_tokens`); a tool result is a message whose text is the result;
* the system prompt: like a message;
* the tool definitions: their JSON as sent (name, description, parameters schema).

Provider-reported usage corrects it: after every call that reports `input_tokens`,
`UsageCalibration.observe` records reported / estimated for the conversation, and the
context builder shrinks that conversation's budget by the (smoothed) ratio when the
estimate was low. It never grows the budget (a provider reporting fewer tokens than
counted does not make Parley send more than `max_input_tokens - reserve_output_tokens` by
its own counter). The correction lives in the process (bounded LRU); `GET /stats` reports
the estimate's error (`context_estimate`).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

from app.domain.media_tokens import TokenRule
from app.domain.tokens import estimate_tokens
from app.manager.message_cache import MESSAGE_OVERHEAD_TOKENS, parts_media_tokens
from app.providers.base import ProviderMessage, ProviderRequest, ToolSpec

MAX_FACTOR = 4.0
SMOOTHING = 0.5  # weight of the newest observation


def text_tokens(text: str | None) -> int:
    return estimate_tokens(text or "")


def system_tokens(system: str | None) -> int:
    return MESSAGE_OVERHEAD_TOKENS + estimate_tokens(system) if system else 0


def tools_tokens(tools: list[ToolSpec]) -> int:
    return estimate_tokens(json.dumps([t.model_dump() for t in tools])) if tools else 0


def provider_message_tokens(m: ProviderMessage, rule: TokenRule) -> int:
    tokens = MESSAGE_OVERHEAD_TOKENS + estimate_tokens(m.content)
    for call in m.tool_calls:
        tokens += estimate_tokens(call.name) + estimate_tokens(json.dumps(call.arguments))
    return tokens + parts_media_tokens((p for p in m.parts if p.type != "text"), rule)


def request_tokens(request: ProviderRequest, rule: TokenRule) -> int:
    """Input tokens of a whole provider request by the counter (what the builder budgets)."""
    return (
        system_tokens(request.system)
        + tools_tokens(request.tools)
        + sum(provider_message_tokens(m, rule) for m in request.messages)
    )


class UsageCalibration:
    """reported / estimated input tokens per conversation, and the estimate's error."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._ratios: OrderedDict[str, float] = OrderedDict()
        self._max = max_entries
        self.samples = 0
        self._sum_error = 0.0
        self._sum_abs_error = 0.0

    def factor(self, conversation_id: str) -> float:
        """How much to shrink the conversation's budget by (1.0: not at all)."""
        ratio = self._ratios.get(conversation_id)
        return 1.0 if ratio is None else min(MAX_FACTOR, max(1.0, ratio))

    def observe(self, conversation_id: str, estimated: int, reported: int) -> None:
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
        self.samples += 1
        self._sum_error += error
        self._sum_abs_error += abs(error)

    def snapshot(self) -> dict[str, Any]:
        n = self.samples
        return {
            "samples": n,
            "mean_error_pct": round(100 * self._sum_error / n, 2) if n else 0.0,
            "mean_abs_error_pct": round(100 * self._sum_abs_error / n, 2) if n else 0.0,
            "conversations_corrected": sum(1 for r in self._ratios.values() if r > 1.0),
        }
