"""`GET /conversations/{id}/context`: the request the next turn would send, without sending
it (DESIGN §6). It goes through the same steps as a turn (`TurnExecutor._turn`): the
context builder, the tool budget, media resolution and the provider adapter's own body
builder, so what it shows is what the next call carries, byte for byte (tests compare it
with the real request)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from app.domain import ConversationStatus, Message, Part, Role
from app.domain.context_view import ContextBudget, ContextPreview
from app.domain.principal import Principal
from app.errors import InvalidRequest, InvalidState, ProviderNotConfigured
from app.manager.context import ContextBuilder
from app.manager.conversations import ConversationService
from app.manager.media import MediaService
from app.manager.packs import PackLibrary
from app.manager.tool_policy import tool_budget
from app.manager.turn_plan import provider_hints
from app.providers.base import LLMProvider
from app.stores.base import StateStore

PREVIEW_MESSAGE_ID = "next"  # the id the previewed user message carries (never stored)


class ContextPreviewService:
    def __init__(
        self,
        *,
        store: StateStore,
        conversations: ConversationService,
        packs: PackLibrary,
        providers: Mapping[str, LLMProvider],
        context: ContextBuilder,
        media: MediaService,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._conversations = conversations
        self._packs = packs
        self._providers = providers
        self._context = context
        self._media = media
        self._now = clock

    async def preview(
        self, principal: Principal, conversation_id: str, *, content: str | None
    ) -> ContextPreview:
        """The next turn's request if its user message is `content` (None: the window of
        the history alone, as a turn would see it before its own message)."""
        conv = await self._conversations.get(principal, conversation_id)
        provider = self._providers.get(conv.provider)
        if provider is None:
            raise ProviderNotConfigured(
                f"Provider {conv.provider!r} is not configured on this instance."
            )
        pack = await self._packs.get(conv.pack_id, conv.pack_version)
        pending: list[Message] = []
        if content is not None:
            if not content.strip():
                raise InvalidRequest(
                    "The message is empty (only whitespace counts as empty too): a turn "
                    "would refuse it.",
                    errors=[{"loc": ["query", "content"], "msg": "non-blank text required"}],
                )
            if conv.status == ConversationStatus.requires_action:
                raise InvalidState(
                    "The conversation is waiting for tool results; its next turn sends them, "
                    "not a user message."
                )
            pending.append(
                Message(
                    id=PREVIEW_MESSAGE_ID,
                    parent_id=conv.head_message_id,
                    conversation_id=conv.id,
                    role=Role.user,
                    content=content,
                    parts=[Part(type="text", text=content)],
                    created_at=self._now(),
                    depth=conv.message_count,
                )
            )
        window = await self._context.build(
            conv,
            pack,
            pending,
            metadata=provider_hints(conv, {}),
            rule=provider.media_token_rule,
            encoding=provider.token_encoding(conv.model),
            write_summaries=False,
        )
        # a preview is of a turn started by a user message: a fresh budget
        budget = await tool_budget(self._store, pack, conv.prompt_name, conv.lineage_id, None)
        if budget.exhausted and window.request.tools:
            window.request.tool_choice = "none"
        request = await self._media.resolve_window(window)
        b = window.budget
        return ContextPreview(
            conversation_id=conv.id,
            provider=conv.provider,
            model=conv.model,
            strategy=conv.context_policy.strategy,
            budget=ContextBudget(
                max_input_tokens=b["max_input"],
                reserved_output=b["reserved_output"],
                input_budget=b["input_budget"],
                correction=window.correction,
                system=b["system"],
                context_items=b["context_items"],
                context_items_share=b["context_items_share"],
                summary=b["summary"],
                history=b["history"],
                pending=b["pending"],
                tools=b["tools"],
                media=b["media"],
                total=window.counted,
            ),
            included_message_ids=[i for i in window.included_ids if i != PREVIEW_MESSAGE_ID],
            dropped=window.dropped,
            context_item_ids=window.context_item_ids,
            dropped_context_item_ids=window.dropped_context_item_ids,
            summary=window.summary,
            summary_pending=window.summary_pending,
            request_body=provider.request_body(request),
        )
