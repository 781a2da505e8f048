"""Erasing a deleted conversation's runs from the coordination backend (DESIGN §4, §6).

A run's record (kept `record_retention_s`, 24 h) and its event log (kept an hour after it
ends) hold the text of its messages, so deleting a conversation (and erasing a user)
erases them too, after the store's deletion:

1. the store's deletion comes first: from then on no turn of the conversation can commit
   (the commit's compare-and-set names the lineage) or start (the conversation is gone);
2. `RunLog.erase` removes every ended run of the conversation (that incarnation only:
   a namesake created since, a fork made again under its id, or a fork, keeps its own)
   and names the live ones;
3. the deletion answers at once, as before; in the background, the live runs are
   followed to their terminal event (for at most `LIVE_WAIT_S`), then erased as in 2.

A live run is never erased while it runs: its executor's next write (an event, its
finished record) would bring the record back. Nor is it cancelled: it goes on to its
commit, which is refused (404 `conversation_not_found` to its request, as before). Its
executor also erases it: a run ending `failed` or `cancelled` (what a deleted
conversation's run does) checks that its conversation still exists, and erases its
conversation's runs if not (`erase_if_deleted`), so a run whose follower in 3 was lost
(a restart of the deleting instance, a backend outage) is erased all the same. What can
be left behind: a run that had committed just before the deletion, ended `completed`,
and whose follower was lost; its record then expires with its retention, as before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime
from typing import Any

from app.coordination.base import Coordinator, EventsExpired
from app.stores.base import DeletedConversation, StateStore

log = logging.getLogger("parley.runs")

ERASE_CONCURRENCY = 8
LIVE_WAIT_S = 900.0  # how long the background follows a deleted conversation's live runs


class RunErasure:
    def __init__(
        self, *, coordinator: Coordinator, store: StateStore, clock: Callable[[], datetime]
    ) -> None:
        self._runs = coordinator.runs
        self._store = store
        self._now = clock
        self._tasks: set[asyncio.Task[None]] = set()  # in the background, kept until done

    async def erase(
        self, conversation_id: str, lineage_id: str, created_at: datetime | None = None
    ) -> None:
        """Steps 2 and 3 of the module docstring, for a conversation the store deleted
        (the incarnation created at `created_at`: a fork made again under its id, in its
        lineage, keeps its runs). Never raises: the deletion stands when the coordination
        backend fails here (the records then expire with their retention)."""
        try:
            live = await self._runs.erase(conversation_id, lineage_id, created_at=created_at)
        except Exception as exc:
            log.warning("erasing the runs of deleted %s failed: %r", conversation_id, exc)
            return
        if live:
            work = self._after(conversation_id, lineage_id, created_at, live)
            self._background(work, conversation_id)

    def _background(self, work: Coroutine[Any, Any, None], conversation_id: str) -> None:
        task = asyncio.get_running_loop().create_task(work, name=f"erase-{conversation_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def erase_all(self, deleted: Sequence[DeletedConversation]) -> None:
        """`erase` for each conversation a user erasure deleted, `ERASE_CONCURRENCY` at a
        time (a user may have thousands; each erasure is a few round trips or more)."""
        gate = asyncio.Semaphore(ERASE_CONCURRENCY)

        async def one(d: DeletedConversation) -> None:
            async with gate:
                await self.erase(d.conversation_id, d.lineage_id, d.created_at)

        await asyncio.gather(*(one(d) for d in deleted))

    async def _after(
        self,
        conversation_id: str,
        lineage_id: str,
        created_at: datetime | None,
        live: list[str],
    ) -> None:
        try:
            ends = [asyncio.create_task(self._until_ended(run_id)) for run_id in live]
            _done, late = await asyncio.wait(ends, timeout=LIVE_WAIT_S)
            for task in late:
                task.cancel()
            still = await self._runs.erase(conversation_id, lineage_id, created_at=created_at)
        except Exception as exc:
            log.warning("erasing the runs of deleted %s failed: %r", conversation_id, exc)
            return
        if still:
            log.warning(
                "deleted conversation %s: runs %s did not end within %.0fs; each erases"
                " its conversation's runs if it ends failed or cancelled",
                conversation_id,
                ", ".join(still),
                LIVE_WAIT_S,
            )

    async def close(self) -> None:
        """Stop the background work (at shutdown); what it would have erased expires
        with its retention."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)

    async def _until_ended(self, run_id: str) -> None:
        try:
            async for _ in self._runs.follow(run_id, after=0):
                pass
        except EventsExpired:
            pass  # (erased meanwhile by its executor)
        except Exception as exc:  # the erasure after the wait goes on regardless
            log.debug("following run %s of a deleted conversation: %r", run_id, exc)

    def erase_if_deleted(
        self, conversation_id: str, lineage_id: str, created_at: datetime | None = None
    ) -> None:
        """A run of the conversation ended `failed` or `cancelled`, its end recorded: if
        the conversation was deleted meanwhile (or re-created in another lineage, or, for
        the incarnation created at `created_at`, made again in its lineage), its runs'
        records go (the deletion's own erasure may have come before this run's end
        was written). In the background: the run's answer does not wait for a store read
        (which, when the run failed because the store is down, would wait its timeout)."""
        work = self._erase_if_deleted(conversation_id, lineage_id, created_at)
        self._background(work, conversation_id)

    async def _erase_if_deleted(
        self, conversation_id: str, lineage_id: str, created_at: datetime | None
    ) -> None:
        try:
            conv = await self._store.get_conversation(conversation_id, now=self._now())
            if (
                conv is None
                or conv.lineage_id != lineage_id
                or (created_at is not None and conv.created_at != created_at)
            ):
                await self._runs.erase(conversation_id, lineage_id, created_at=created_at)
        except Exception as exc:
            log.warning("erasing the runs of deleted %s failed: %r", conversation_id, exc)
