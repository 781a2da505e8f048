"""Forking (DESIGN §6): a new conversation of the same lineage whose head is a chosen
message of another. No message is copied, so a fork costs the same at any history length.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from app.domain import Conversation, ForkedFrom, Message, new_id
from app.domain.incarnation import Incarnation
from app.domain.principal import Principal
from app.domain.requests import ForkConversation
from app.errors import ConversationExists, ConversationNotFound, InvalidRequest
from app.manager.admission import AdmissionGate
from app.manager.context_items import copy_context_items
from app.manager.conversations import ConversationService
from app.manager.pending_calls import status_at
from app.manager.tree import TreeService
from app.stores.base import StateStore

log = logging.getLogger("parley.tree")


class ForkService:
    def __init__(
        self,
        *,
        store: StateStore,
        conversations: ConversationService,
        tree: TreeService,
        admission: AdmissionGate,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._conversations = conversations
        self._tree = tree
        self._admission = admission
        self._now = clock

    async def fork(
        self, principal: Principal, conversation_id: str, req: ForkConversation
    ) -> Conversation:
        """A new conversation of the same lineage whose head is the chosen message: no
        message is copied, so a fork costs the same at any history length. The source's
        context items are copied (they are the conversation's own state, and few). Gated
        like a conversation's creation (`AdmissionGate`)."""
        async with self._admission.admit():
            return await self._fork(principal, conversation_id, req)

    async def _fork(
        self, principal: Principal, conversation_id: str, req: ForkConversation
    ) -> Conversation:
        if req.checkpoint_id is not None and req.message_id is not None:
            raise InvalidRequest(
                "Give at most one of checkpoint_id and message_id.",
                errors=[{"loc": ["body"], "msg": "checkpoint_id and message_id are exclusive"}],
            )
        src = await self._conversations.get(principal, conversation_id)
        target: Message | None = None
        if req.checkpoint_id is not None:
            checkpoint = await self._tree.checkpoint(src, req.checkpoint_id)
            if checkpoint.message_id is not None:
                target = await self._tree.message(src, checkpoint.message_id)
        elif req.message_id is not None:
            target = await self._tree.visible_message(src, req.message_id)
        elif src.head_message_id is not None:
            target = await self._tree.message(src, src.head_message_id)
        user_id = self._conversations.resolve_user(principal, req.user_id or src.user_id)
        now = self._now()
        ttl = req.ttl_seconds or src.ttl_seconds
        fork_id = req.conversation_id or new_id()
        fork = src.model_copy(
            update={
                "id": fork_id,
                "user_id": user_id,
                "metadata": src.metadata if req.metadata is None else req.metadata,
                "head_message_id": target.id if target else None,
                "message_count": target.depth + 1 if target else 0,
                "usage": type(src.usage)(),
                "forked_from": ForkedFrom(
                    conversation_id=src.id, message_id=target.id if target else None
                ),
                "status": await status_at(self._store, src.lineage_id, target),
                "created_at": now,
                "updated_at": now,
                "ttl_seconds": ttl,
                "expires_at": now + timedelta(seconds=ttl) if ttl else None,
                "version": 1,
            }
        )
        try:
            created = await self._store.create_conversation(fork)
        except ConversationExists:
            raise ConversationExists(f"Conversation {fork_id!r} already exists.") from None
        mine = Incarnation.of(created)  # (the clean-ups never delete a namesake: review R-A)
        if target is not None and not await self._store.get_messages(src.lineage_id, [target.id]):
            # the source was deleted while forking and took the fork point with it
            await self._store.delete_conversation(fork_id, incarnation=mine)
            raise ConversationNotFound(f"Conversation {conversation_id!r} not found.")
        try:
            if src.has_context_items:  # the fork inherits the flag with the record
                await copy_context_items(self._store, src.id, created)
        except Exception:
            await self._store.delete_conversation(fork_id, incarnation=mine)  # no half items
            raise
        log.info("conversation forked id=%s from=%s at=%s", fork_id, src.id, fork.head_message_id)
        return created
