"""Auto checkpoints (`CheckpointPolicy`): made after a committed turn, then pruned.

A turn ends when its commit does not pause for tools; if that turn's number is a multiple
of `every_n_turns`, an `auto` checkpoint of the new head is stored (with the turn number),
then the conversation's `auto` checkpoints are pruned by `checkpoint_retention.to_prune`.
Manual and snapshot checkpoints are never looked at.

This runs after the commit, inside the run, and never fails it: a store error is logged
and counted (`parley_auto_checkpoints_total{outcome="failed"}`), and the next checkpoint
turn prunes whatever this one left. A cancellation arriving here is absorbed like one
arriving during the commit: the run completes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from app.domain import Checkpoint, Conversation, Message, new_id
from app.domain.checkpoint import CheckpointPolicy
from app.domain.checkpoint_retention import to_prune
from app.domain.incarnation import Incarnation
from app.manager.stats import Stats
from app.settings import Settings
from app.stores.base import StateStore

log = logging.getLogger("parley.checkpoints")


class AutoCheckpoints:
    def __init__(
        self,
        *,
        store: StateStore,
        settings: Settings,
        stats: Stats,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._default = settings.checkpoint_policy()
        self._stats = stats
        self._now = clock

    def policy_of(self, conv: Conversation) -> CheckpointPolicy:
        return conv.checkpoint_policy or self._default

    async def after_commit(
        self, conv: Conversation, committed: Sequence[Message], *, paused: bool
    ) -> Checkpoint | None:
        """Checkpoint and prune if the committed turn calls for it; return the new
        checkpoint. Never raises (`Exception`s are logged and counted)."""
        policy = self.policy_of(conv)
        if paused or not committed or not policy.enabled:
            return None
        head = committed[-1]
        if head.turn is None or head.turn % policy.every_n_turns:
            return None
        try:
            made = await self._store.create_checkpoint(
                Checkpoint(
                    id=new_id(),
                    conversation_id=conv.id,
                    name=f"turn {head.turn}",
                    kind="auto",
                    message_id=head.id,
                    message_count=head.depth + 1,
                    created_at=self._now(),
                    turn=head.turn,
                ),
                incarnation=Incarnation.of(conv),  # not a namesake created since the commit
            )
            self._stats.auto_checkpoint("created")
            autos = await self._store.list_checkpoints(conv.id, kind="auto")
            for old in to_prune(autos, policy, self._now()):
                if await self._store.delete_checkpoint(conv.id, old.id):
                    self._stats.auto_checkpoint("pruned")
        except asyncio.CancelledError:
            # The turn has committed: too late to cancel it (as for the commit itself),
            # so the run still completes; only this checkpoint may be missing.
            log.warning("auto checkpoint of conversation %s cancelled", conv.id)
            self._stats.auto_checkpoint("failed")
            return None
        except Exception as exc:
            log.warning(
                "auto checkpoint of conversation %s at turn %s failed (the turn stands): %r",
                conv.id,
                head.turn,
                exc,
            )
            self._stats.auto_checkpoint("failed")
            return None
        return made
