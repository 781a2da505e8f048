"""One provider call of a turn: stream the completion, publish its deltas and tool calls
as run events, and return the finished assistant message (usage, cost, finish reason).

Text that arrives while the previous delta is being published goes out as one
`message.delta`: a provider slower than the event log gets one event per token, a faster
one does not cost one event-log round trip per token. Text that arrives with the end of
the completion (its finish, in the same batch) is not published here: the caller sends
that last delta with the reply's `message.completed`, in one step of the event log
(`RunLog.publish_many`: one round trip on Redis instead of two).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.domain import Conversation, FinishReason, Message, Part, Role, ToolCall, Usage, new_id
from app.errors import ProviderError
from app.manager.context import ContextBuilder
from app.manager.events import dump
from app.manager.provider_stream import batches, estimated_usage
from app.manager.provider_text import StreamedText, storable_tool_call
from app.manager.stats import Stats
from app.manager.tool_policy import ToolBudget
from app.manager.turn_plan import BranchPoint, TurnPlan
from app.providers.base import (
    Finish,
    LLMProvider,
    ProviderRequest,
    TextDelta,
    ToolCallComplete,
    UsageReport,
)
from app.providers.pricing import PriceTable

Publish = Callable[[TurnPlan, str, dict[str, Any]], Awaitable[None]]


class ProviderCaller:
    def __init__(
        self,
        *,
        context: ContextBuilder,
        prices: PriceTable,
        stats: Stats,
        clock: Callable[[], datetime],
        publish: Publish,
    ) -> None:
        self._context = context
        self._prices = prices
        self._stats = stats
        self._now = clock
        self._publish = publish

    async def call(
        self,
        provider: LLMProvider,
        request: ProviderRequest,
        plan: TurnPlan,
        conv: Conversation,
        budget: ToolBudget,
        *,
        counted: int,
        turn: int | None,
        after: Message | None = None,
        at: BranchPoint | None = None,
        message_id: str | None = None,
    ) -> tuple[Message, str]:
        """Stream one completion, publishing deltas; return the finished assistant message:
        a child of `after`, or (a regeneration's first reply) placed at `at`, with the id
        `message_id` when given, in turn number `turn`; and its last delta, not published
        yet ("" if none: see the module docstring). `counted` is the request's input
        tokens by the context builder's counter (`ContextWindow.counted`), which the
        provider's reported usage calibrates."""
        if after is not None:
            at = BranchPoint(after.id, after.depth + 1)
        assert at is not None, "a reply needs a place: after a message or at a branch point"
        message_id = message_id or new_id()
        text = _Text()
        tool_calls: list[ToolCall] = []
        usage: Usage | None = None
        finish: FinishReason = "stop"
        started = time.perf_counter()
        first_event: float | None = None
        try:
            async with aclosing(batches(provider.stream(request))) as stream:
                async for batch in stream:
                    if first_event is None:
                        first_event = time.perf_counter() - started
                    finish, usage = await self._consume(
                        plan, message_id, batch, text, tool_calls, budget, finish, usage
                    )
            last = text.cleaner.feed("".join(text.pending)) + text.cleaner.flush()
            text.chunks.append(last)
        except ProviderError as exc:
            self._stats.provider_failed(
                conv.provider, exc.code, model=request.model, total_s=time.perf_counter() - started
            )
            raise
        content = "".join(text.chunks)
        if usage is None:
            usage = estimated_usage(request, content)
        else:
            await self._context.observe_usage(
                conv.id, counted, usage.input_tokens, provider.token_encoding(request.model)
            )
        if finish == "tool_calls" and not tool_calls:
            finish = "tool_limit"  # every call was over the tool budget
        self._stats.provider_call(
            conv.provider,
            model=request.model,
            first_event_s=first_event,
            total_s=time.perf_counter() - started,
            usage=usage,
            finish_reason=finish,
        )
        return Message(
            id=message_id,
            parent_id=at.parent_id,
            conversation_id=conv.id,
            role=Role.assistant,
            content=content,
            parts=[Part(type="text", text=content)] if content else [],
            tool_calls=tool_calls,
            created_at=self._now(),
            run_id=plan.run.id,
            usage=usage,
            cost_usd=self._prices.cost_usd(request.model, usage),
            finish_reason=finish,
            depth=at.depth,
            turn=turn,
        ), last

    async def _consume(
        self,
        plan: TurnPlan,
        message_id: str,
        batch: list[Any],
        text: _Text,
        tool_calls: list[ToolCall],
        budget: ToolBudget,
        finish: FinishReason,
        usage: Usage | None,
    ) -> tuple[FinishReason, Usage | None]:
        """Publish one batch of provider events; return the finish reason and usage so far.
        Text from the completion's finish on stays pending (module docstring)."""
        for event in batch:
            if isinstance(event, TextDelta):
                text.pending.append(event.text)
            elif isinstance(event, ToolCallComplete):
                await self._publish_text(plan, message_id, text)
                if not budget.admit(len(tool_calls)):
                    continue  # over the prompt's tool_policy: never published or committed
                call = storable_tool_call(event.tool_call)
                tool_calls.append(call)
                await self._publish(
                    plan, "tool_call.created", {"message_id": message_id, "tool_call": dump(call)}
                )
            elif isinstance(event, UsageReport):
                usage = event.usage
            elif isinstance(event, Finish):
                finish = event.reason
                text.finished = True
        if not text.finished:
            await self._publish_text(plan, message_id, text)
        return finish, usage

    async def _publish_text(self, plan: TurnPlan, message_id: str, text: _Text) -> None:
        delta = text.cleaner.feed("".join(text.pending))
        text.pending.clear()
        if delta:
            text.chunks.append(delta)
            await self._publish(plan, "message.delta", {"message_id": message_id, "delta": delta})


@dataclass
class _Text:
    """A completion's text: `chunks`, its deltas (published, and the last one `call`
    returns), `pending` arrived and not published yet, `finished` once the provider said
    the completion ended (from then on nothing is published here)."""

    chunks: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    cleaner: StreamedText = field(default_factory=StreamedText)  # (nothing unstorable)
    finished: bool = False
