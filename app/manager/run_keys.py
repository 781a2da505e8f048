"""The `Idempotency-Key` of a turn request: reserved for the run it starts, or leading a
retry to the run its first request started (DESIGN §5: an idempotent retry gets the
same result, nothing runs twice).

A key names its run before the run's record exists (reserve, then create). A retry that
finds the key but no record waits a little for the first request's admission to create
it. If the instance that reserved the key (`ADMITTED_BY`, recorded with the key) is dead,
no record can come any more: a kill -9 between the two writes. Nothing ran, so the key is
freed and reserved again; before, the retry answered 409 `conversation_busy` for the key's
whole life (24 h; found by the outside tester on SQLite). A record that is found is
settled first (`RunTruth`): a dead instance's committed run answers `completed`, and its
lost one frees the key for the retry to run the turn once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, nullcontext

from app.coordination.base import Coordinator, IdempotencyRecord, RunRecord
from app.domain import Conversation, RunStatus
from app.domain.incarnation import scope_tag
from app.errors import ConversationBusy, IdempotencyKeyReused, InstanceLost
from app.manager.conversations import IDEMPOTENCY_TTL_S
from app.manager.run_truth import RunTruth

ATTACH_WAIT_S = 5.0
ATTACH_ATTEMPTS = 3
ADMITTED_BY = "instance"  # `IdempotencyRecord.extra` member: the reserving instance


def run_scope(conv: Conversation) -> str:
    """The scope of a conversation's turn keys: its id and its incarnation, since ids are
    reusable and a conversation re-created under a deleted one's id must not replay that
    one's runs (outside tester T4), nor a fork made again under a deleted fork's id (same
    lineage) find that one's keys bound (outside tester T1: 422 / 409 for 24 h). A
    conversation that is not a fork keeps the scope it had (`scope_tag`)."""
    return f"run:{conv.id}:{scope_tag(conv)}"


def instance_lost(record: RunRecord) -> bool:
    """The run's instance died before it finished: its key was freed for a retry."""
    error = record.run.error
    return (
        record.run.status == RunStatus.failed
        and error is not None
        and (error.code == InstanceLost.code)
    )


class RunKeys:
    def __init__(
        self,
        coordinator: Coordinator,
        truth: RunTruth,
        idle: Callable[[], AbstractAsyncContextManager[None]] = nullcontext,
    ) -> None:
        """`idle`: entered while a retry waits for its first request's run record
        (`AdmissionGate.paused`: the wait is another request's progress, not store work)."""
        self._coord = coordinator
        self._truth = truth
        self._idle = idle

    def record(self, fingerprint: str, run_id: str) -> IdempotencyRecord:
        """What a key reserved for run `run_id` of this instance holds."""
        extra = {ADMITTED_BY: self._truth.instance_id}
        return IdempotencyRecord(fingerprint=fingerprint, ref=run_id, extra=extra)

    async def claim(self, scope: str, key: str, record: IdempotencyRecord) -> str | None:
        """Reserve `key` for `record.ref` (None), or the id of the run the key's first
        request started, to attach to. `IdempotencyKeyReused` for another request's key;
        `ConversationBusy` while its first request is still being admitted."""
        for _ in range(ATTACH_ATTEMPTS):
            existing = await self._coord.idempotency.reserve(
                scope, key, record, ttl_s=IDEMPOTENCY_TTL_S
            )
            if existing is None:
                return None
            if existing.fingerprint != record.fingerprint:
                raise IdempotencyKeyReused(
                    "This Idempotency-Key was already used for a different request."
                )
            found = await self._await_record(existing.ref)
            if found is not None:
                found = await self._truth.settle(found)
                if not instance_lost(found):
                    return existing.ref
                continue  # its instance died, which freed the key: reserve again
            admitted_by = existing.extra.get(ADMITTED_BY)
            if not isinstance(admitted_by, str) or await self._truth.instance_alive(admitted_by):
                continue  # still being admitted there (or it failed and freed the key)
            await self._coord.idempotency.forget(scope, key, ref=existing.ref)
        raise ConversationBusy(
            "A request with this Idempotency-Key is still being admitted; retry."
        )

    async def _await_record(self, run_id: str) -> RunRecord | None:
        """Run `run_id`'s record, waiting briefly: a retry can learn the run id from the
        idempotency record (possibly on another instance) before the run is created."""
        deadline = asyncio.get_running_loop().time() + ATTACH_WAIT_S
        record = await self._coord.runs.get(run_id)
        if record is not None:
            return record
        async with self._idle():
            while (record := await self._coord.runs.get(run_id)) is None:
                if asyncio.get_running_loop().time() > deadline:
                    return None
                await asyncio.sleep(0.02)
        return record
