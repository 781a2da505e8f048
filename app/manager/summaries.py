"""`/conversations/{id}/summaries` and `/compact`: the summaries a conversation's path has,
forcing one now, and going back on one (DESIGN §6).

Summaries belong to the lineage (`app.domain.summary`); a conversation sees those whose
covered message is on its current path, which only ever summarize messages it can read.
Deleting one means the next turn no longer uses it (the context builder falls back to an
older summary on the path, or writes a new one when the history does not fit); forks
whose path holds it lose it too, as they share the message it covers.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from app.domain import ConversationStatus
from app.domain.preconditions import IfMatch
from app.domain.principal import Principal
from app.domain.summary import Summary
from app.errors import InvalidState, SummaryNotFound
from app.manager.context import ContextBuilder
from app.manager.context_summary import SUMMARY_SHARE, path_summaries
from app.manager.conversations import ConversationService
from app.manager.message_cache import MessageCache
from app.manager.packs import PackLibrary
from app.manager.summarizer import Summarizer
from app.manager.turn_plan import provider_hints
from app.stores.base import StateStore


class SummaryService:
    def __init__(
        self,
        *,
        store: StateStore,
        cache: MessageCache,
        conversations: ConversationService,
        packs: PackLibrary,
        context: ContextBuilder,
        summarizer: Summarizer,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._cache = cache
        self._conversations = conversations
        self._packs = packs
        self._context = context
        self._summarizer = summarizer
        self._now = clock

    async def list(self, principal: Principal, conversation_id: str) -> list[Summary]:
        conv = await self._conversations.get(principal, conversation_id)
        found, _ = await path_summaries(self._store, self._cache, conv)
        return found

    async def delete(
        self,
        principal: Principal,
        conversation_id: str,
        summary_id: str,
        if_match: IfMatch | None = None,
    ) -> None:
        conv = await self._conversations.get(principal, conversation_id, if_match=if_match)
        found, _ = await path_summaries(self._store, self._cache, conv)
        if not any(s.id == summary_id for s in found) or not await self._store.delete_summary(
            conv.lineage_id, summary_id
        ):
            raise SummaryNotFound(
                f"Summary {summary_id!r} not found on the conversation's current path."
            )

    async def compact(
        self, principal: Principal, conversation_id: str, if_match: IfMatch | None = None
    ) -> Summary:
        """Summarize the path up to the head now (extending the deepest summary on it) of
        the conversation read, which `if_match` is checked against."""
        conv = await self._conversations.get(principal, conversation_id, if_match=if_match)
        if conv.context_policy.strategy != "summarize":
            raise InvalidState(
                "Compacting needs context strategy 'summarize' (no other strategy uses "
                "summaries); PATCH the conversation's context_policy first."
            )
        if conv.status == ConversationStatus.requires_action:
            raise InvalidState(
                "The conversation is waiting for tool results: its head is not the end of "
                "a turn, which a summary must end at."
            )
        found, tail = await path_summaries(self._store, self._cache, conv)
        if not tail:
            raise InvalidState(
                "Nothing to compact: the conversation has no messages after its latest summary."
            )
        pack = await self._packs.get(conv.pack_id, conv.pack_version)
        history_budget = await self._context.history_budget(conv, pack)
        deepest = max(found, key=lambda s: (s.covers_depth, s.created_at), default=None)
        created = await self._summarizer.extend(
            conv,
            pack,
            deepest,
            [c.message for c in reversed(tail)],
            input_budget=self._context.input_budget(conv),
            max_tokens=history_budget // SUMMARY_SHARE,
            hints=provider_hints(conv, {}),
        )
        return created[-1]
