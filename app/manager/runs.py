"""Starting runs and answering for them: admission, idempotency, `if_busy`, following
events, waiting for results, cancellation (DESIGN §5, §7)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.coordination.base import (
    TERMINAL_EVENTS,
    Coordinator,
    EventsExpired,
    RunEvent,
    RunRecord,
)
from app.domain import Conversation, Run, new_id
from app.domain.principal import Principal
from app.domain.requests import IfBusy
from app.domain.run import RunError
from app.errors import (
    RunNotFound,
    ShuttingDown,
)
from app.manager.admission import AdmissionGate
from app.manager.conversations import ConversationService, fingerprint
from app.manager.events import dump
from app.manager.limits import ExecutionLimiter
from app.manager.run_follow import follow_checked
from app.manager.run_keys import RunKeys, run_scope
from app.manager.run_readers import replay_and_follow, unless_gone
from app.manager.run_response import turn_response
from app.manager.run_tasks import RunTasks
from app.manager.run_truth import RunTruth
from app.manager.stats import Stats
from app.manager.turn_plan import TurnInput, TurnPlan
from app.manager.turns import TurnExecutor
from app.settings import Settings

log = logging.getLogger("parley.runs")

CANCEL_WAIT_S = 5.0


@dataclass(frozen=True)
class StartedRun:
    run_id: str
    conversation_id: str
    attached: bool  # an idempotent retry re-attached to an earlier run


class RunService:
    def __init__(
        self,
        *,
        conversations: ConversationService,
        executor: TurnExecutor,
        coordinator: Coordinator,
        limiter: ExecutionLimiter,
        settings: Settings,
        stats: Stats,
        clock: Callable[[], datetime],
        truth: RunTruth,
        admission: AdmissionGate,
    ) -> None:
        self._truth = truth
        self._conversations = conversations
        self._executor = executor
        self._coord = coordinator
        self._limiter = limiter
        self._settings = settings
        self._stats = stats
        self._now = clock
        self._tasks = RunTasks()
        self._keys = RunKeys(coordinator, truth, idle=admission.paused)
        self._cancel_listener: asyncio.Task[None] | None = None
        self._cancel_requests: set[asyncio.Task[None]] = set()  # referenced until done
        self._drain: asyncio.Task[None] | None = None
        self._admitting = 0  # sends between the draining check and their run's task
        self._cancel_new = False

    @property
    def active(self) -> int:
        return len(self._tasks)

    # --- lifecycle ---------------------------------------------------------------------

    def start_background(self) -> None:
        self._cancel_listener = asyncio.create_task(self._listen_for_cancels())

    @property
    def draining(self) -> bool:
        return self._drain is not None

    def begin_drain(self, grace_s: float) -> None:
        """Stop taking turns (503 `shutting_down` from now on); running turns get `grace_s`
        to finish, then are cancelled, which publishes their `run.cancelled` (so every
        stream following them ends with a terminal event) and commits nothing. Idempotent:
        the first call's grace counts."""
        if self._drain is None:
            self._drain = asyncio.create_task(self._drain_runs(grace_s), name="drain-runs")

    async def _drain_runs(self, grace_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        if self._tasks:
            log.info("shutting down: waiting up to %.1fs for %d runs", grace_s, len(self._tasks))
        # Sends admitted before the drain began may still be creating their runs: wait for
        # them too, or their runs would start against a closed store.
        while (self._tasks or self._admitting) and loop.time() < deadline:
            await self._settle(deadline - loop.time())
        self._cancel_new = True  # a run admitted from now on is cancelled as it starts
        if self._tasks:
            log.info("shutting down: cancelling %d runs", len(self._tasks))
        cancelled: set[str] = set()
        end = loop.time() + CANCEL_WAIT_S
        while (self._tasks or self._admitting) and loop.time() < end:
            for run_id, _task in list(self._tasks.items()):
                if run_id not in cancelled:  # once: a second cancel would cut its cleanup
                    cancelled.add(run_id)
                    self._cancel_for_shutdown(run_id)
                    self._tasks.cancel(run_id)
            await self._settle(end - loop.time())

    def _cancel_for_shutdown(self, run_id: str) -> None:
        """Mark a run the drain cancels: its record carries error `shutting_down`, so the
        requests waiting on it, here or on another instance (a same-key retry attached
        there), answer 503 with Retry-After (retry elsewhere), not 409 `run_cancelled`
        (which says someone cancelled it)."""
        plan = self._tasks.plan(run_id)
        if plan is not None:
            plan.cancel_error = RunError(
                code=ShuttingDown.code,
                detail=f"Run {run_id} was cancelled by an instance's shutdown; nothing was "
                "committed and its Idempotency-Key is free: retry.",
            )

    async def _settle(self, left: float) -> None:
        """Wait a little (at most `left`) for runs to end or admissions to finish."""
        if self._tasks:
            await asyncio.wait(list(self._tasks.values()), timeout=max(0.0, min(left, 0.1)))
        else:
            await asyncio.sleep(max(0.0, min(left, 0.02)))

    async def shutdown(self, grace_s: float) -> None:
        """Drain (`begin_drain`, if a signal did not already), then stop listening."""
        self.begin_drain(grace_s)
        assert self._drain is not None
        await self._drain
        if self._cancel_listener is not None:
            self._cancel_listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._cancel_listener
        await self._executor.ends.close()

    async def _listen_for_cancels(self) -> None:
        async for run_id in self._coord.runs.cancel_requests():
            self._tasks.cancel(run_id)

    # --- starting ----------------------------------------------------------------------

    def lock_stamp(self, conversation_id: str) -> int | None:
        """Take before reading the conversation a turn starts from, and pass to `start`
        with it (`TurnPlan.seen_stamp`)."""
        return self._coord.locks.stamp(conversation_id)

    async def start(
        self,
        conv: Conversation,
        turn: TurnInput,
        if_busy: IfBusy,
        key: str | None,
        request_identity: Any,
        *,
        stamp: int | None = None,
    ) -> StartedRun:
        """Admit `turn` as a run of `conv` and start executing it (`app.manager.turns`).
        `request_identity` is what an `Idempotency-Key` retry must repeat exactly (the
        request's kind and body); a retry re-attaches to the first run. `stamp` is the
        `lock_stamp` taken before `conv` was read."""
        if self.draining:
            raise ShuttingDown("This instance is shutting down and takes no new turns; retry.")
        self._admitting += 1
        try:
            return await self._admit(conv, turn, if_busy, key, request_identity, stamp)
        finally:
            self._admitting -= 1

    async def _admit(
        self,
        conv: Conversation,
        turn: TurnInput,
        if_busy: IfBusy,
        key: str | None,
        request_identity: Any,
        stamp: int | None,
    ) -> StartedRun:
        run_id = new_id()
        first_message_id = new_id()
        idempotency: tuple[str, str] | None = None
        if key is not None:
            scope = run_scope(conv)
            record = self._keys.record(fingerprint(request_identity), run_id)
            idempotency = (scope, key)
            attach_to = await self._keys.claim(scope, key, record)
            if attach_to is not None:
                return StartedRun(attach_to, conv.id, attached=True)
        lease = None
        admitted = False
        try:
            if turn.if_match is not None:  # 412 before any run exists (a stream: not started)
                turn.if_match.require(conv)
            self._limiter.admit(conv.id)
            admitted = True
            try_lock = True  # with the run's creation, where the log can (else: executor)
            if if_busy == "reject":
                lease = await self._coord.locks.acquire(conv.id, run_id, wait_s=0)
                try_lock = False
            elif if_busy == "interrupt":
                holder = await self._coord.locks.holder(conv.id)
                if holder is not None:
                    await self._request_cancel(holder)
                    try_lock = False
            run = Run(id=run_id, conversation_id=conv.id, kind=turn.kind, created_at=self._now())
            run_record = RunRecord(
                run=run,
                lineage_id=conv.lineage_id,
                conversation_created_at=conv.created_at,
                first_message_id=first_message_id,
                idempotency=idempotency,
                executor=self._truth.instance_id,
            )
            created = ("run.created", {"run": dump(run)})
            if try_lock:
                _, lease = await self._coord.runs.create_and_publish_locking(
                    self._coord.locks, run_record, *created
                )
            else:
                await self._coord.runs.create_and_publish(run_record, *created)
        except BaseException:
            if lease is not None:
                await lease.release()
            if admitted:
                self._limiter.release(conv.id)
            if idempotency is not None:
                await self._coord.idempotency.forget(*idempotency, ref=run_id)
            raise
        plan = TurnPlan(
            run=run,
            conversation_id=conv.id,
            lineage_id=conv.lineage_id,
            conversation_created_at=conv.created_at,
            input=turn,
            lease=lease,
            idempotency=idempotency,
            first_message_id=first_message_id,
            executor=self._truth.instance_id,
            seen=conv,
            seen_stamp=stamp,
        )
        self._stats.run_started(run_id, conv.id)
        self._tasks.start(plan, self._execute)
        if self._cancel_new:  # the drain's grace is over (it still waits for this one);
            # cancelled once started, so that its own clean-up records `run.cancelled`
            self._cancel_for_shutdown(run_id)
            self._tasks.cancel(run_id)
        return StartedRun(run_id, conv.id, attached=False)

    async def _execute(self, plan: TurnPlan) -> RunRecord:
        try:
            return await self._executor.execute(plan)
        finally:
            self._limiter.release(plan.conversation_id)

    # --- answering ---------------------------------------------------------------------

    async def get(self, principal: Principal, conversation_id: str, run_id: str) -> RunRecord:
        conv = await self._conversations.get(principal, conversation_id)
        record = await self._settled(run_id)
        if (
            record is None
            or record.run.conversation_id != conv.id
            or record.lineage_id != conv.lineage_id  # a run of a deleted namesake
            or record.conversation_created_at not in (None, conv.created_at)  # or fork
        ):
            raise RunNotFound(f"Run {run_id!r} not found in this conversation.")
        return record

    async def _settled(self, run_id: str) -> RunRecord | None:
        """The run's record, its outcome derived when the record lags (`RunTruth`). A run
        that ended here but whose end is not recorded yet answers from memory first, so
        its followers get the outcome even while the store is unreachable."""
        ended = self._truth.ended_here(run_id)
        if ended is not None:
            return ended
        record = await self._coord.runs.get(run_id)
        return None if record is None else await self._truth.settle(record)

    def _follow(self, run_id: str, after: int) -> AsyncIterator[RunEvent]:
        return follow_checked(
            self._coord.runs,
            run_id,
            after=after,
            recheck_s=self._settings.run_recheck_s,
            settle=lambda: self._settled(run_id),
        )

    async def wait(self, run_id: str) -> RunRecord:
        """Block until the run is terminal; return its record. A run executing here
        answers with the record its executor returned (even while recording it is being
        retried); any other is followed until its terminal event, or until its settled
        record is terminal (every `PARLEY_RUN_RECHECK_S`)."""
        task = self._tasks.get(run_id)
        if task is not None:
            await asyncio.wait([task])  # cancelling the waiter never cancels the run
            if not task.cancelled() and task.exception() is None:
                return task.result()
        record = await self._settled(run_id)
        if record is not None and not record.run.status.terminal:
            with contextlib.suppress(EventsExpired):
                async for _ in self._follow(run_id, after=0):
                    pass
            record = await self._settled(run_id)
        if record is None:
            raise RunNotFound(f"Run {run_id!r} is no longer known.")
        return record

    async def result(self, run_id: str) -> dict[str, Any]:
        """The non-streaming response of a run (DESIGN §6), or its error raised."""
        return turn_response(await self.wait(run_id))

    async def result_for(self, run_id: str, reader_gone: Awaitable[None]) -> dict[str, Any] | None:
        """`result` for a reader with `on_disconnect: "cancel"`: if `reader_gone`
        completes before the run ends, the run is cancelled and there is no answer."""
        ended, record = await unless_gone(self.wait(run_id), reader_gone)
        if ended and record is not None:
            return turn_response(record)
        self._cancel_for_reader(run_id)
        return None

    async def events(
        self, run_id: str, *, after: int, cancel_on_disconnect: bool = False
    ) -> AsyncGenerator[RunEvent, None]:
        """Replay then follow a run's events; a `run.snapshot` stands in for events the log
        no longer holds. Nothing at all when the run is finished and `after` is at or past
        its terminal event. With `cancel_on_disconnect`, a reader that goes away before the
        terminal event cancels the run."""
        finished = False
        try:
            events = replay_and_follow(
                run_id, after, follow=self._follow, settled=self._settled, wait=self.wait
            )
            async for event in events:
                finished = event.type in TERMINAL_EVENTS
                yield event
            finished = True  # (also when there was nothing left to send)
        finally:
            if cancel_on_disconnect and not finished:
                self._cancel_for_reader(run_id)

    def _cancel_for_reader(self, run_id: str) -> None:
        """The reader of `on_disconnect: "cancel"` went away before the end."""
        if not self._tasks.cancel(run_id):
            self._spawn_cancel(run_id)

    def _spawn_cancel(self, run_id: str) -> None:
        """Ask for a cancellation from a `finally` that cannot wait for it; the task is
        kept until it is done and its failure is logged."""
        task = asyncio.get_running_loop().create_task(
            self._request_cancel(run_id), name=f"cancel-{run_id}"
        )
        self._cancel_requests.add(task)
        task.add_done_callback(self._cancel_requested)

    def _cancel_requested(self, task: asyncio.Task[None]) -> None:
        self._cancel_requests.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning(
                "%s: asking for the cancellation failed: %r", task.get_name(), task.exception()
            )

    async def cancel(self, principal: Principal, conversation_id: str, run_id: str) -> RunRecord:
        record = await self.get(principal, conversation_id, run_id)
        if record.run.status.terminal:
            return record
        await self._request_cancel(run_id)
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(self.wait(run_id), timeout=CANCEL_WAIT_S)
        return await self.get(principal, conversation_id, run_id)

    async def _request_cancel(self, run_id: str) -> None:
        if not self._tasks.cancel(run_id):
            await self._coord.runs.request_cancel(run_id)
