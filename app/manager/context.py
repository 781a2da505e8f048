"""Context building: what one provider call sends (DESIGN §5 step 3).

The window is the rendered system prompt, then the conversation's context items within
their budget share (`app.manager.context_item_window`), then as much of the path (newest
first) as the conversation's `context_policy` allows, then the messages of the turn in
progress, which are always sent. A window cut by the token budget starts at a `user` message; a
`sliding_window` cut by `max_messages` holds exactly the last `max_messages` messages
(this turn's included) less any leading tool results whose assistant call fell out. Either
way an assistant tool call is never separated from its tool results. With `fail`, a window
that cannot hold the whole path is a 422 `context_overflow` naming the sizes. With
`summarize`, a stored summary stands for the oldest span, sent as a system message after
the system prompt and the items (`app.manager.context_summary`). History budget = input
budget - system - tools - items - this turn's messages (the summary comes out of it).

Every count of one build is by the conversation's counter (`encoding`: the provider's
`token_encoding(model)`, exact for OpenAI's models, else the estimate;
`app.manager.token_count`), so the dry run (`GET .../context`) and the real call agree.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from app.domain import Conversation, Message, Role, Run
from app.domain.context_item import ContextItem
from app.domain.media_tokens import TokenRule
from app.domain.run import RunContext
from app.domain.summary import Summary
from app.domain.tokens import ESTIMATE, TokenCounter, counter_for
from app.errors import ContextOverflow
from app.manager.context_item_window import select_items
from app.manager.context_summary import SummaryOutcome, SummaryWindows
from app.manager.message_cache import (
    CachedMessage,
    MessageCache,
    media_parts,
    message_tokens,
    parts_media_tokens,
    to_provider_message,
    total_cost,
)
from app.manager.summarizer import summary_cost, summary_message
from app.manager.token_count import (
    UsageCalibration,
    system_tokens,
    tools_tokens,
)
from app.manager.turn_plan import BranchPoint
from app.packs import PromptPack, effective_parameters, prompt_tools
from app.providers.base import ProviderRequest, ToolSpec
from app.stores.base import StateStore

NO_LIMIT = 1_000_000
# Per-message reads of the window, done in C (`map`/`filter`): a window holds hundreds.
_PROVIDER_MESSAGE = attrgetter("provider_message")
_MESSAGE_ID = attrgetter("message.id")
_MEDIA = attrgetter("media")


@dataclass
class ContextWindow:
    request: ProviderRequest
    included_ids: list[str]
    dropped: int
    # whether any message of `request` has a media part: a window without (most turns)
    # needs no scan of its messages for stored media to fill in (`MediaService.resolve_window`)
    has_media: bool
    budget: dict[str, int] = field(default_factory=dict)
    correction: float = 1.0  # the budget was divided by it (`UsageCalibration`)
    summary: Summary | None = None  # the summary the request carries
    summary_pending: bool = False  # a new summary was needed and not written (dry run)
    summary_error: str | None = None  # why summarizing failed (truncate_oldest instead)
    summaries_created: list[Summary] = field(default_factory=list)
    context_item_ids: list[str] = field(default_factory=list)  # sent, oldest first
    dropped_context_item_ids: list[str] = field(default_factory=list)

    @property
    def counted(self) -> int:
        """The request's input tokens by the builder's counter, i.e. `request_tokens` of
        `request` (tests/api/test_token_calibration_api.py checks they agree), summed
        from what the build counted already instead of counting every message again."""
        b = self.budget
        parts = ("system", "tools", "context_items", "summary", "history", "pending")
        return sum(b[k] for k in parts)


def tool_specs(pack: PromptPack, prompt_name: str) -> list[ToolSpec]:
    """The tools a prompt may call, as providers receive them (a tool without parameters
    takes an empty object)."""
    specs = []
    for tool in prompt_tools(pack, pack.prompts[prompt_name]):
        spec = ToolSpec(name=tool.name, description=tool.description)
        if tool.parameters is not None:
            spec.parameters = tool.parameters
        specs.append(spec)
    return specs


class ContextBuilder:
    def __init__(
        self,
        store: StateStore,
        cache: MessageCache,
        calibration: UsageCalibration | None = None,
        summaries: SummaryWindows | None = None,
    ) -> None:
        self._store = store
        self._cache = cache
        self._calibration = calibration or UsageCalibration()
        self._summaries = summaries
        self._counters: dict[str, TokenCounter] = {}

    async def counter(self, encoding: str | None) -> TokenCounter:
        """The counter of `encoding` (None: the estimate), loaded in a thread the first
        time (an encoding takes ~0.1-0.4 s of CPU to load)."""
        if encoding is None:
            return ESTIMATE
        found = self._counters.get(encoding)
        if found is None:
            found = counter_for(encoding)
            await asyncio.to_thread(found.load)
            self._counters[encoding] = found
        return found

    async def observe_usage(
        self, conversation_id: str, counted: int, reported: int, encoding: str | None
    ) -> None:
        """A provider reported `reported` input tokens for a request the counter of
        `encoding` counted at `counted` (`ContextWindow.counted`): correct the
        conversation's count (`app.manager.token_count`)."""
        counter = await self.counter(encoding)
        self._calibration.observe(conversation_id, counted, reported, counter.kind)

    def input_budget(self, conversation: Conversation) -> int:
        """`max_input_tokens - reserve_output_tokens`, shrunk by the usage correction."""
        policy = conversation.context_policy
        correction = self._calibration.factor(conversation.id)
        return int((policy.max_input_tokens - policy.reserve_output_tokens) / correction)

    async def history_budget(
        self, conversation: Conversation, pack: PromptPack, encoding: str | None = None
    ) -> int:
        """What a turn without messages of its own leaves for the history (after the
        system prompt, tools and the context items it would send)."""
        counter = await self.counter(encoding)
        tools = tool_specs(pack, conversation.prompt_name)
        input_budget = self.input_budget(conversation)
        items = select_items(conversation, await self._items(conversation), input_budget, counter)
        fixed = (
            system_tokens(conversation.system_prompt, counter)
            + tools_tokens(tools, counter)
            + items.tokens
        )
        return input_budget - fixed

    async def _items(self, conversation: Conversation) -> list[ContextItem]:
        """The conversation's items; no store read for one that never had any."""
        if not conversation.has_context_items:
            return []
        return await self._store.list_context_items(conversation.id)

    async def build(
        self,
        conversation: Conversation,
        pack: PromptPack,
        pending: Sequence[Message],
        *,
        metadata: dict[str, Any] | None = None,
        rule: TokenRule = "openai",
        encoding: str | None = None,
        tools: list[ToolSpec] | None = None,
        branch: BranchPoint | None = None,
        write_summaries: bool = True,
    ) -> ContextWindow:
        """The provider request for the next call of a turn whose uncommitted messages are
        `pending` (the user message, then any assistant/tool messages of earlier rounds).
        Media parts count by the provider's `rule` (`app.domain.media_tokens`), text by the
        counter of `encoding` (the provider's `token_encoding(model)`). `tools` are
        the prompt's tools as bound by the tool registry (default: the pack's own). The
        history ends under `pending[0]`; with nothing pending, at `branch` (a
        regeneration's first call: the path to the regenerated reply's parent), else at
        the head.
        `write_summaries=False` (the dry run) never calls a provider to summarize."""
        policy = conversation.context_policy
        prompt = pack.prompts[conversation.prompt_name]
        if tools is None:
            tools = tool_specs(pack, conversation.prompt_name)
        counter = await self.counter(encoding)
        system = system_tokens(conversation.system_prompt, counter)
        tool_tokens = tools_tokens(tools, counter)
        pending_parts = [media_parts(m) for m in pending]
        pending_media = sum(parts_media_tokens(parts, rule) for parts in pending_parts)
        pending_tokens = sum(message_tokens(m, counter) for m in pending) + pending_media
        correction = self._calibration.factor(conversation.id)
        input_budget = self.input_budget(conversation)
        items = select_items(conversation, await self._items(conversation), input_budget, counter)
        fixed = system + tool_tokens + items.tokens + pending_tokens
        if fixed > input_budget:
            raise ContextOverflow(
                f"The system prompt, tools, context items (~{items.tokens}) and this turn "
                f"need ~{fixed} tokens but the context policy allows {input_budget} input "
                "tokens.",
            )
        history_budget = input_budget - fixed
        window = policy.max_messages if policy.strategy == "sliding_window" else None
        max_history = (window or NO_LIMIT) - len(pending)
        if pending:
            start, path_length = pending[0].parent_id, pending[0].depth
        elif branch is not None:
            start, path_length = branch.parent_id, branch.depth
        else:
            start, path_length = conversation.head_message_id, conversation.message_count
        outcome = SummaryOutcome(history=None)
        if policy.strategy == "summarize" and self._summaries is not None:
            outcome = await self._summaries.window(
                conversation,
                pack,
                start,
                pending,
                history_budget=history_budget,
                input_budget=input_budget,
                rule=rule,
                counter=counter,
                hints=metadata or {},
                write=write_summaries,
            )
        if outcome.history is not None:
            history = outcome.history
        else:
            history, reached_root = await self._cache.walk(
                self._store,
                conversation.lineage_id,
                start,
                max_messages=max(max_history, 0),
                token_budget=history_budget,
                rule=rule,
                counter=counter,
            )
            if not reached_root:
                if window is not None and len(history) >= max_history:
                    history = _trim_to_tool_group(history)  # the window is full: keep it exact
                else:
                    history = _trim_to_turn_boundary(history)
        summary = outcome.summary
        summary_messages = [summary_message(summary)] if summary else []
        dropped = path_length - len(history)
        kept = total_cost(history, rule, counter)
        if dropped and policy.strategy == "fail":
            raise ContextOverflow(
                f"The history has {path_length} messages; {history_budget} of the "
                f"{input_budget} input tokens are left for it after the system prompt, tools, "
                f"context items and this turn (~{fixed}), which hold the newest "
                f"{len(history)} (~{kept} tokens); {dropped} messages do not fit and the "
                "conversation's context policy is 'fail'."
            )
        history.reverse()
        history_media = list(filter(_MEDIA, history))
        request = ProviderRequest.model_construct(
            model=conversation.model,
            system=conversation.system_prompt or None,
            messages=items.messages
            + summary_messages
            + list(map(_PROVIDER_MESSAGE, history))
            + [to_provider_message(m) for m in pending],
            tools=tools,
            tool_choice=prompt.tool_policy.tool_choice if prompt.tool_policy and tools else None,
            parameters={
                k: v
                for k, v in effective_parameters(prompt, conversation.model).items()
                if v is not None
            },
            metadata=metadata or {},
        )
        return ContextWindow(
            request=request,
            included_ids=list(map(_MESSAGE_ID, history)) + [m.id for m in pending],
            dropped=dropped,
            has_media=bool(history_media) or any(pending_parts),
            budget={
                "system": system,
                "tools": tool_tokens,
                "context_items": items.tokens,
                "context_items_share": items.share,
                "history": kept,
                "summary": summary_cost(summary, counter) if summary else 0,
                "pending": pending_tokens,
                "media": pending_media
                + sum(parts_media_tokens(c.media, rule) for c in history_media),
                "reserved_output": policy.reserve_output_tokens,
                "max_input": policy.max_input_tokens,
                "input_budget": input_budget,
            },
            correction=correction,
            summary=summary,
            summary_pending=outcome.pending,
            summary_error=outcome.error,
            summaries_created=outcome.created,
            context_item_ids=items.included_ids,
            dropped_context_item_ids=items.dropped_ids,
        )


def record_context(run: Run, conversation: Conversation, window: ContextWindow) -> Run:
    """`run` with what building `window` did for strategy `summarize` (`Run.context`):
    across the calls of a turn, the last summary used, every summary written, the last
    error."""
    if conversation.context_policy.strategy != "summarize":
        return run
    before = run.context or RunContext()
    return run.model_copy(
        update={
            "context": RunContext(
                summary_id=window.summary.id if window.summary else None,
                summaries_created=before.summaries_created
                + [s.id for s in window.summaries_created],
                summary_error=window.summary_error or before.summary_error,
            )
        }
    )


def _trim_to_tool_group(history: list[CachedMessage]) -> list[CachedMessage]:
    """Drop the oldest kept messages while they are tool results (`history` is newest
    first): their assistant tool call fell out of the window, and a tool result is never
    sent without it."""
    end = len(history)
    while end > 0 and history[end - 1].message.role == Role.tool:
        end -= 1
    return history[:end]


def _trim_to_turn_boundary(history: list[CachedMessage]) -> list[CachedMessage]:
    """Drop the oldest kept messages until the oldest is a user message (`history` is
    newest first), so a truncated window starts at the beginning of a turn."""
    end = len(history)
    while end > 0 and history[end - 1].message.role != Role.user:
        end -= 1
    return history[:end]
