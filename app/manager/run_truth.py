"""What a run's outcome really is, when its record may lag behind (DESIGN §5).

The commit is the truth: a run whose messages are in the store is `completed` (or
`requires_action`) whatever its record or its event log say, for recording the end can
fail after the commit (`app.manager.run_end`). `settle` turns a record that still reads
`queued`/`running` into the outcome it stands for, when that is known:

* the executor on this instance is still recording the end: that record;
* the run's first message (`RunRecord.first_message_id`) is in the store with this run's
  id: the commit landed, and the committed messages are the chain of its descendants
  carrying the run's id (one commit appends one path).

* the instance executing it (`RunRecord.executor`) is dead (`InstanceLiveness`: its
  liveness lease expired) and the run does not hold the conversation's turn lock: the run
  is lost. It is marked `failed` with code `instance_lost` (nothing was committed; the
  commit check above came first), its idempotency key is freed and `run.failed` is
  published, by whichever instance notices first: a one-off claim
  (`IdempotencyKeys.reserve` under scope `run-end`) elects it, the others answer with
  the same outcome without writing it. A committed run of a dead instance is recorded
  the same way, as `completed`.

Otherwise the record is returned as it is (the run is still running, or nothing is known).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from app.coordination.base import Coordinator, IdempotencyRecord, RunRecord, TurnResult
from app.coordination.liveness import InstanceLiveness
from app.domain import Message, Role, RunError, RunStatus, Usage
from app.errors import InstanceLost, problem_of
from app.manager.events import terminal_event
from app.manager.run_end import RunEndRecorder
from app.stores.base import StateStore

MAX_TURN_MESSAGES = 1000  # a bound on the chain walk, far above any tool loop
END_CLAIM_SCOPE = "run-end"
END_CLAIM_TTL_S = 24 * 3600.0


class RunTruth:
    def __init__(
        self,
        store: StateStore,
        ends: RunEndRecorder,
        coordinator: Coordinator,
        liveness: InstanceLiveness,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._ends = ends
        self._coord = coordinator
        self._liveness = liveness
        self._now = clock

    @property
    def instance_id(self) -> str:
        """This instance's id, recorded as `RunRecord.executor` of the runs it starts."""
        return self._liveness.instance_id

    async def instance_alive(self, instance_id: str) -> bool:
        """Whether instance `instance_id` still holds its liveness lease."""
        return await self._liveness.alive(instance_id)

    def ended_here(self, run_id: str) -> RunRecord | None:
        """The finished record of a run this instance executed whose end is still being
        recorded: the outcome, known without the store (which may be the reason it is
        not recorded yet)."""
        return self._ends.pending(run_id)

    async def settle(self, record: RunRecord) -> RunRecord:
        if record.run.status.terminal:
            return record
        pending = self._ends.pending(record.run.id)
        if pending is not None:
            return pending
        executor_dead = await self._executor_dead(record)
        committed = await self.committed(record)
        if committed is not None:
            if executor_dead:
                await self._record_end(committed, record)
            return committed
        if not executor_dead:
            return record
        detail = (
            f"The instance executing run {record.run.id} stopped before the run ended; "
            "nothing was committed. Retry (the idempotency key is free again)."
        )
        run = record.run.model_copy(
            update={
                "status": RunStatus.failed,
                "finished_at": self._now(),
                "error": RunError(code=InstanceLost.code, detail=detail),
            }
        )
        lost = record.model_copy(update={"run": run, "problem": problem_of(InstanceLost(detail))})
        await self._record_end(lost, record)
        return lost

    async def _executor_dead(self, record: RunRecord) -> bool:
        executor = record.executor
        if executor is None or await self._liveness.alive(executor):
            return False
        holder = await self._coord.locks.holder(record.run.conversation_id)
        return holder != record.run.id

    async def _record_end(self, ended: RunRecord, seen: RunRecord) -> None:
        """Write the end of a dead instance's run, if this instance is the first to."""
        claim = IdempotencyRecord(
            fingerprint=ended.run.status.value, ref=self._liveness.instance_id
        )
        taken = await self._coord.idempotency.reserve(
            END_CLAIM_SCOPE, ended.run.id, claim, ttl_s=END_CLAIM_TTL_S
        )
        if taken is not None:
            return  # another instance writes it
        pending = ended.result.pending_tool_calls if ended.result else []
        approvals = ended.result.pending_approvals if ended.result else []
        freed = ended.run.status == RunStatus.failed
        await self._ends.record(
            ended,
            terminal_event(ended.run, pending, approvals),
            forget=seen.idempotency if freed else None,
        )

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
