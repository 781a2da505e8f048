"""What a run's outcome really is, when its record may lag behind (DESIGN §5).

The commit is the truth: a run whose messages are in the store is `completed` (or
`requires_action`) whatever its record or its event log say, for recording the end can
fail after the commit (`app.manager.run_end`). `settle` turns a record that still reads
`queued`/`running` into the outcome it stands for, when that is known:

* the executor on this instance is still recording the end: that record;
* the run's first message (`RunRecord.first_message_id`) is in the store with this run's
  id: the commit landed, and the committed messages are the chain of its descendants
  carrying the run's id (one commit appends one path).

Otherwise the record is returned as it is (the run is still running, or nothing is known).
"""

from __future__ import annotations

from app.coordination.base import RunRecord, TurnResult
from app.domain import Message, Role, RunStatus, Usage
from app.manager.run_end import RunEndRecorder
from app.stores.base import StateStore

MAX_TURN_MESSAGES = 1000  # a bound on the chain walk, far above any tool loop


class RunTruth:
    def __init__(self, store: StateStore, ends: RunEndRecorder) -> None:
        self._store = store
        self._ends = ends

    async def settle(self, record: RunRecord) -> RunRecord:
        if record.run.status.terminal:
            return record
        pending = self._ends.pending(record.run.id)
        if pending is not None:
            return pending
        committed = await self.committed(record)
        return committed if committed is not None else record

    async def committed(self, record: RunRecord) -> RunRecord | None:
        """The finished record derived from the store, or None if the run has no commit."""
        first_id = record.first_message_id
        if first_id is None:
            return None
        run_id = record.run.id
        found = await self._store.get_messages(record.lineage_id, [first_id])
        if not found or found[0].run_id != run_id:
            return None
        chain = [found[0]]
        while len(chain) < MAX_TURN_MESSAGES:
            children = await self._store.list_children(record.lineage_id, chain[-1].id)
            mine = [m for m in children if m.run_id == run_id]
            if not mine:
                break
            chain.append(mine[0])
        return derived_record(record, chain)


def derived_record(record: RunRecord, messages: list[Message]) -> RunRecord:
    """The record `_finish` would have saved for a commit of `messages`."""
    replies = [m for m in messages if m.role == Role.assistant]
    last = messages[-1]
    pending = list(last.tool_calls) if last.role == Role.assistant else []
    usage = Usage()
    for reply in replies:
        usage = usage + reply.usage
    run = record.run.model_copy(
        update={
            "status": RunStatus.requires_action if pending else RunStatus.completed,
            "finished_at": last.created_at,
            "usage": usage,
            "cost_usd": sum(r.cost_usd for r in replies),
            "error": None,
        }
    )
    result = TurnResult(
        messages=messages,
        finish_reason=last.finish_reason if last.role == Role.assistant else None,
        pending_tool_calls=pending,
    )
    return record.model_copy(update={"run": run, "result": result})
