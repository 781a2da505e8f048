"""Committing a turn that ran to its end (`app.manager.turns`, DESIGN §5 step 6).

The user message, the replies and any tool messages are appended in one compare-and-set
on the head (`StateStore.append_messages`); a commit whose answer was lost to a store
timeout is looked for before it is reported failed (`commit_landed`). Then the message
cache gets the committed messages, their media records are attached and the automatic
checkpoints are taken. Once started, a commit is not cancelled half-way (`past_cancelling`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any, TypeVar

from app.domain import Conversation, ConversationStatus, Message, Usage
from app.domain.incarnation import not_before
from app.errors import StoreUnavailable
from app.manager.auto_checkpoints import AutoCheckpoints
from app.manager.commit_outcome import commit_landed
from app.manager.media import MediaService
from app.manager.message_cache import MessageCache
from app.manager.stats import Stats
from app.manager.tool_loop import RoundResult
from app.manager.turn_plan import TurnOutcome
from app.settings import Settings
from app.stores.base import StateStore

T = TypeVar("T")

log = logging.getLogger("parley.turns")


class TurnCommit:
    def __init__(
        self,
        *,
        store: StateStore,
        cache: MessageCache,
        media: MediaService,
        settings: Settings,
        stats: Stats,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._cache = cache
        self._media = media
        self._settings = settings
        self._stats = stats
        self._now = clock
        self._checkpoints = AutoCheckpoints(
            store=store, settings=settings, stats=stats, clock=clock
        )

    async def commit(
        self, conv: Conversation, pending: list[Message], replies: list[Message], left: RoundResult
    ) -> TurnOutcome:
        usage = sum((r.usage for r in replies), Usage())
        cost = sum(r.cost_usd for r in replies)
        if conv.forked_from is not None:  # (its messages are told from a namesake's by date)
            pending = not_before(conv, pending)
        t = time.perf_counter()
        try:
            committed = await self._store.append_messages(
                conv,
                pending,
                usage=usage,
                cost_usd=cost,
                now=self._now(),
                status=ConversationStatus.requires_action
                if left.paused
                else ConversationStatus.idle,
            )
        except StoreUnavailable:  # the commit may have landed, its answer lost
            within_s = self._settings.store_timeout_s
            if not await commit_landed(self._store, conv.lineage_id, pending, within_s):
                raise
            committed = conv  # what the steps below read of it (id, policy) is unchanged
        self._stats.store_call("commit_turn", time.perf_counter() - t)
        self._cache.put(conv.lineage_id, pending)
        await self._mark_media(pending, conv)
        await self._checkpoints.after_commit(committed, pending, paused=left.paused)
        return TurnOutcome(
            messages=pending,
            usage=usage,
            cost_usd=cost,
            finish_reason=replies[-1].finish_reason if replies else None,
            pending_tool_calls=left.pending_calls,
            pending_approvals=left.pending_approvals,
        )

    async def _mark_media(self, messages: list[Message], conv: Conversation) -> None:
        """Committed: its media records are attached (see `MediaRecord`). A failure only
        leaves them unattached, i.e. kept until user erasure, never deleted wrongly."""
        try:
            await self._media.attached(messages, self._media.policy_of(conv.media_policy))
        except Exception as exc:
            log.warning("marking media attached failed: %r", exc)


async def past_cancelling(work: Coroutine[Any, Any, T]) -> T:
    """`work`'s result, however many times this task is cancelled meanwhile: each cancel
    is absorbed (`uncancel`) and `work` goes on. For what must not stop half-way: a turn
    whose commit has started. A cancel landing after the commit, in what follows it
    (media, checkpoints), made a committed run read `cancelled` and a same-key retry run
    the turn again (found by the outside tester: an interrupt, or a client hanging up
    with `on_disconnect: cancel` right after `message.completed`)."""
    future = asyncio.ensure_future(work)
    while True:
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            if future.cancelled():
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
