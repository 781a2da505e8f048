"""Writing summaries: the summarization call of context strategy `summarize`.

A summary is written by a provider (the conversation's own, or `context_policy.summarizer`)
from the previous summary, if any, and the span of messages after it, so it grows
incrementally: the history before the previous summary is never read again. The
instructions are, first found: `context_policy.summary_prompt`, the pack's
`fragments.summarize` (a PromptPack fragment: a shared text block of the pack), the
built-in `DEFAULT_SUMMARY_PROMPT`. `{max_words}` in them is replaced by the length asked.

Every summarization request fits the conversation's own input budget (`max_input_tokens -
reserve_output_tokens`, by the counter of `app.manager.token_count`): a span too long for
one request is summarized in chunks of whole turns, each chunk extending the summary of
the previous one, and each stored as its own record (every record ends at a turn boundary,
so any of them can start a window). A turn too long for a request alone is clipped.
The reply is clipped to `max_tokens` (the summary's share of the window) as sent.

The mock provider sees `metadata["task"] == "summarize"` (its deterministic compression,
`app.providers.mock`); other adapters ignore metadata.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from app.domain import Conversation, Message, Role, new_id
from app.domain.summary import Summary
from app.domain.tokens import ESTIMATE, TokenCounter, estimate_tokens
from app.errors import ProviderError, ProviderNotConfigured
from app.manager.provider_stream import estimated_usage
from app.manager.token_count import provider_message_tokens, request_tokens, system_tokens
from app.packs import PromptPack
from app.providers.base import LLMProvider, ProviderMessage, ProviderRequest, collect
from app.stores.base import StateStore

DEFAULT_SUMMARY_PROMPT = (
    "You compress the beginning of a conversation so that it can go on without it. "
    "Summarize the previous summary (if any) and the conversation below into one summary "
    "that keeps every fact, name, number, decision, preference and open question a later "
    "reply may need, and drops pleasantries. Plain text, at most {max_words} words."
)
PACK_FRAGMENT = "summarize"  # pack `fragments.summarize` overrides the default prompt
SUMMARY_HEADER = "Summary of the earlier conversation (its messages are not shown):\n"
PREVIOUS_LABEL = "Previous summary:\n"
SPAN_LABEL = "Conversation:\n"
CLIPPED = " [...]"


def summary_message(summary: Summary) -> ProviderMessage:
    """The summary as the context window carries it: a system message after the system
    prompt."""
    return ProviderMessage(role="system", content=SUMMARY_HEADER + summary.text)


def summary_tokens(text: str, counter: TokenCounter = ESTIMATE) -> int:
    return provider_message_tokens(
        ProviderMessage(role="system", content=SUMMARY_HEADER + text), "openai", counter
    )


def summary_cost(summary: Summary, counter: TokenCounter) -> int:
    """The summary's tokens by `counter` (its stored `tokens` are the estimate's)."""
    return summary_tokens(summary.text, counter) if counter.exact else summary.tokens


def clip(text: str, max_tokens: int) -> str:
    """`text` cut so that `estimate_tokens` of it is at most `max_tokens`."""
    if estimate_tokens(text) <= max_tokens:
        return text
    keep = max(0, max_tokens * 4 - len(CLIPPED))
    return text[:keep] + CLIPPED


def render(message: Message) -> str:
    """One message as a line of the summarization input."""
    text = message.content
    for call in message.tool_calls:
        text += f" [calls {call.name}({json.dumps(call.arguments, ensure_ascii=False)})]"
    if message.role == Role.tool:
        return f"tool {message.name or ''}: {text}".replace("  ", " ")
    return f"{message.role.value}: {text}"


def turns_of(span: Sequence[Message]) -> list[list[Message]]:
    """`span` (oldest first) cut before every user message."""
    turns: list[list[Message]] = []
    for m in span:
        if m.role == Role.user or not turns:
            turns.append([])
        turns[-1].append(m)
    return turns


class Summarizer:
    def __init__(
        self,
        store: StateStore,
        providers: Mapping[str, LLMProvider],
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._providers = providers
        self._now = clock

    def target(self, conv: Conversation) -> tuple[LLMProvider, str]:
        """The provider and model that write this conversation's summaries."""
        chosen = conv.context_policy.summarizer
        name = chosen.provider if chosen else conv.provider
        provider = self._providers.get(name)
        if provider is None:
            raise ProviderNotConfigured(f"Summarizer provider {name!r} is not configured.")
        if chosen is None:
            return provider, conv.model
        return provider, chosen.model or provider.default_model

    @staticmethod
    def instructions(conv: Conversation, pack: PromptPack, max_tokens: int) -> str:
        prompt = (
            conv.context_policy.summary_prompt
            or pack.fragments.get(PACK_FRAGMENT)
            or DEFAULT_SUMMARY_PROMPT
        )
        return prompt.replace("{max_words}", str(max(1, max_tokens * 3 // 4)))

    async def extend(
        self,
        conv: Conversation,
        pack: PromptPack,
        previous: Summary | None,
        span: Sequence[Message],
        *,
        input_budget: int,
        max_tokens: int,
        hints: Mapping[str, Any],
    ) -> list[Summary]:
        """Summarize `span` (oldest first; it follows `previous`, or starts at the root)
        into new stored summaries, one per request (see the module docstring); the last
        covers `span[-1]`. Raises what the provider raises; records already stored stay
        (each is valid on its own)."""
        provider, model = self.target(conv)
        prompt = self.instructions(conv, pack, max_tokens)
        created: list[Summary] = []
        turns = turns_of(span)
        while turns:
            prior = created[-1] if created else previous
            head = PREVIOUS_LABEL + prior.text + "\n\n" if prior else ""
            room = input_budget - system_tokens(prompt) - estimate_tokens(head + SPAN_LABEL) - 8
            chunk, turns = _take_turns(turns, room)
            body = clip("\n".join(render(m) for m in chunk), max(room, 0))
            request = ProviderRequest(
                model=model,
                system=prompt,
                messages=[ProviderMessage(role="user", content=head + SPAN_LABEL + body)],
                parameters={"max_tokens": max_tokens},
                metadata={**hints, "task": "summarize"},
            )
            if request_tokens(request, provider.media_token_rule) > input_budget:
                raise ProviderError("The summarization request does not fit the input budget.")
            result = await collect(provider.stream(request))
            text = result.text.strip()
            if not text:
                raise ProviderError("The summarizer answered with an empty summary.")
            text = clip(text, max_tokens - summary_tokens(""))
            summary = Summary(
                id=new_id(),
                lineage_id=conv.lineage_id,
                conversation_id=conv.id,
                covers_message_id=chunk[-1].id,
                covers_depth=chunk[-1].depth,
                previous_id=prior.id if prior else None,
                text=text,
                tokens=summary_tokens(text),
                provider=provider.name,
                model=model,
                usage=result.usage or estimated_usage(request, text),
                created_at=self._now(),
            )
            created.append(await self._store.save_summary(summary))
        return created


def _take_turns(turns: list[list[Message]], room: int) -> tuple[list[Message], list[list[Message]]]:
    """The whole turns from the front of `turns` whose rendered lines fit `room` tokens
    (at least one turn, clipped later if it alone is too long), and the rest."""
    chunk: list[Message] = []
    chars = 0
    taken = 0
    for turn in turns:
        extra = sum(len(render(m)) + 1 for m in turn)
        if taken and (chars + extra + 3) // 4 > room:
            break
        chunk.extend(turn)
        chars += extra
        taken += 1
    return chunk, turns[taken:]
