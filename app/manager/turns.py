"""Executing one run (DESIGN §5 steps 2-6): lock, build context, call the provider, run
the server-side tools and call it again until it answers (`app.manager.tool_loop`), commit.

A run executes in its own task, detached from the HTTP request that started it, so a client
that disconnects does not stop it. It reports only through its event log; it never raises.
Nothing is committed unless the whole turn succeeded: the user message, the reply and any
tool messages are appended in one compare-and-set on the head.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime
from typing import Any, TypeVar

from app.coordination.base import Coordinator, RunRecord, TurnLease, TurnResult
from app.coordination.liveness import InstanceLiveness
from app.domain import (
    Conversation,
    Message,
    RunError,
    RunStatus,
    Usage,
)
from app.errors import (
    ConversationNotFound,
    ParleyError,
    ProviderNotConfigured,
    TurnLockLost,
    problem_of,
)
from app.manager.context import ContextBuilder, record_context
from app.manager.events import dump, terminal_event
from app.manager.media import MediaService
from app.manager.message_cache import MessageCache
from app.manager.packs import PackLibrary
from app.manager.provider_call import ProviderCaller
from app.manager.run_end import RunEndRecorder
from app.manager.run_erasure import RunErasure
from app.manager.stats import Stats
from app.manager.tool_loop import ToolLoop
from app.manager.tool_policy import log_dropped, tool_budget
from app.manager.turn_commit import TurnCommit, past_cancelling
from app.manager.turn_numbers import TurnNumbers
from app.manager.turn_opening import opening_messages
from app.manager.turn_plan import BranchPoint, TurnOutcome, TurnPlan, provider_hints
from app.providers.base import LLMProvider
from app.providers.pricing import PriceTable
from app.settings import Settings
from app.stores.base import StateStore
from app.tools import ToolRegistry

T = TypeVar("T")

log = logging.getLogger("parley.turns")


class TurnExecutor:
    def __init__(
        self,
        *,
        store: StateStore,
        packs: PackLibrary,
        providers: Mapping[str, LLMProvider],
        prices: PriceTable,
        context: ContextBuilder,
        cache: MessageCache,
        coordinator: Coordinator,
        settings: Settings,
        stats: Stats,
        clock: Callable[[], datetime],
        media: MediaService,
        liveness: InstanceLiveness,
        tools: ToolRegistry,
        erasure: RunErasure,
    ) -> None:
        self._erasure = erasure
        self._liveness = liveness
        self._media = media
        self._tools = tools
        self._store = store
        self._packs = packs
        self._providers = providers
        self._prices = prices
        self._context = context
        self._coord = coordinator
        self._settings = settings
        self._stats = stats
        self._now = clock
        self.ends = RunEndRecorder(coordinator, attempt_s=settings.store_timeout_s)
        self._turn_numbers = TurnNumbers(store, cache)
        self._commit = TurnCommit(
            store=store, cache=cache, media=media, settings=settings, stats=stats, clock=clock
        )
        self._provider_call = ProviderCaller(
            context=context,
            prices=prices,
            stats=stats,
            clock=clock,
            publish=lambda plan, type_, data: self._publish(plan, type_, data),
        )

    async def execute(self, plan: TurnPlan) -> RunRecord:
        """Run the turn to a terminal event; return the finished record (also when
        recording it is still being retried, see `RunEndRecorder`). Never raises
        (cancellation included: the end is recorded, then the cancellation goes on)."""
        started = time.perf_counter()
        run = plan.run
        outcome: TurnOutcome | None = None
        status = RunStatus.failed
        error: RunError | None = None
        problem: dict[str, Any] | None = None
        held: TurnLease | None = None  # a turn that ran: its lock goes with its end
        try:
            lease = plan.lease or await self._coord.locks.acquire(
                plan.conversation_id, run.id, wait_s=self._settings.turn_lock_timeout_s
            )
            try:
                # saved with the run's first event (`_publish`): one write less per turn
                plan.run = run.model_copy(update={"status": RunStatus.running})
                plan.status_unsaved = True
                outcome = await self._turn(plan, lease)
                paused = outcome.pending_tool_calls or outcome.pending_approvals
                status = RunStatus.requires_action if paused else RunStatus.completed
            except BaseException:
                await asyncio.shield(lease.release())  # a cancel here must not cut it
                raise
            held = lease
        except asyncio.CancelledError:
            status = RunStatus.cancelled
            error = plan.cancel_error
        except ParleyError as exc:
            error = RunError(code=exc.code, detail=exc.detail)
            problem = problem_of(exc)
        except Exception:
            log.exception("run %s failed unexpectedly", run.id)
            error = RunError(code="internal_error", detail="The run failed unexpectedly.")
        end = self._finish(plan, status, outcome, error, started, problem, held)
        return await asyncio.shield(_released_after(end, held))

    async def _turn(self, plan: TurnPlan, lease: TurnLease) -> TurnOutcome:
        conv = _unchanged_copy(plan, lease)
        if conv is None:
            t = time.perf_counter()
            conv = await self._store.get_conversation(plan.conversation_id, now=self._now())
            self._stats.store_call("load_conversation", time.perf_counter() - t)
        if conv is None or not _planned_incarnation(plan, conv):
            # (deleted and created or forked again under its id since the request)
            raise ConversationNotFound(f"Conversation {plan.conversation_id!r} not found.")
        if plan.input.if_match is not None:  # atomic with the turn: checked under its lock
            plan.input.if_match.require(conv)
        provider = self._providers.get(conv.provider)
        if provider is None:
            raise ProviderNotConfigured(
                f"Provider {conv.provider!r} is not configured on this instance."
            )
        pack = await self._packs.get(conv.pack_id, conv.pack_version)
        turn = plan.input
        branch = turn.branch_from or BranchPoint(conv.head_message_id, conv.message_count)
        budget = await tool_budget(
            self._store,
            pack,
            conv.prompt_name,
            conv.lineage_id,
            branch.parent_id if turn.continues_turn else None,
        )
        # every message of a run has its turn's number (`app.manager.turn_numbers`), set
        # as it is created so that what the events show is what is committed
        number = await self._turn_numbers.turn_of(conv.lineage_id, branch.parent_id)
        if turn.kind in ("message", "edit"):
            number += 1
        loop = ToolLoop(
            toolset=self._tools.toolset(pack, conv.prompt_name),
            budget=budget,
            conversation=conv,
            run_id=plan.run.id,
            publish=lambda type_, data: self._publish(plan, type_, data),
            stats=self._stats,
            clock=self._now,
            turn=number,
            # the run's first message is a tool message when it answers pending calls
            first_message_id=plan.first_message_id
            if turn.kind in ("tool_results", "tool_approvals")
            else None,
        )
        pending, left = await opening_messages(
            plan,
            conv,
            branch,
            loop,
            number,
            store=self._store,
            tools=self._tools,
            clock=self._now,
            publish=self._publish,
        )
        replies: list[Message] = []
        while not left.paused:
            t = time.perf_counter()
            window = await self._context.build(
                conv,
                pack,
                pending,
                metadata=provider_hints(conv, turn.metadata),
                rule=provider.media_token_rule,
                encoding=provider.token_encoding(conv.model),
                tools=loop.toolset.specs,
                branch=branch,
            )
            self._stats.store_call("build_context", time.perf_counter() - t)
            plan.run = record_context(plan.run, conv, window)
            window.request.tool_choice = loop.tool_choice(window.request.tool_choice)
            request = await self._media.resolve_window(window)
            if pending:
                reply, last_delta = await self._provider_call.call(
                    provider,
                    request,
                    plan,
                    conv,
                    budget,
                    counted=window.counted,
                    turn=number,
                    after=pending[-1],
                )
            else:  # a regeneration's first reply (the run's first message), at the branch point
                reply, last_delta = await self._provider_call.call(
                    provider,
                    request,
                    plan,
                    conv,
                    budget,
                    counted=window.counted,
                    turn=number,
                    at=branch,
                    message_id=plan.first_message_id,
                )
            reply = loop.annotate(reply)
            pending.append(reply)
            replies.append(reply)
            completed = ("message.completed", {"message": dump(reply)})
            if last_delta:  # with its last delta, in one step (`app.manager.provider_call`)
                delta = ("message.delta", {"message_id": reply.id, "delta": last_delta})
                await self._publish_many(plan, [delta, completed])
            else:
                await self._publish(plan, *completed)
            if not reply.tool_calls:
                break
            left = await loop.run_round(reply)
            pending.extend(left.messages)
        log_dropped(budget, plan.run.id)
        if not self._liveness.held:  # others may be declaring this run lost
            raise TurnLockLost(
                "This instance lost its liveness lease before the commit; nothing was committed."
            )
        if lease.lost:
            raise TurnLockLost("The turn lock was lost before commit; nothing was committed.")
        # from the commit on it is too late to cancel: the commit and what follows it
        # finish, and the run completes, however many cancels come (`past_cancelling`)
        return await past_cancelling(self._commit.commit(conv, pending, replies, left))

    async def _finish(
        self,
        plan: TurnPlan,
        status: RunStatus,
        outcome: TurnOutcome | None,
        error: RunError | None,
        started: float,
        problem: dict[str, Any] | None = None,
        lease: TurnLease | None = None,
    ) -> RunRecord:
        """Record the run's end; `lease` (still held) is released first (`RunEndRecorder`)."""
        run = plan.run.model_copy(
            update={
                "status": status,
                "finished_at": self._now(),
                "usage": outcome.usage if outcome else Usage(),
                "cost_usd": outcome.cost_usd if outcome else 0.0,
                "error": error,
            }
        )
        result = None
        if outcome is not None:
            result = TurnResult(
                messages=outcome.messages,
                finish_reason=outcome.finish_reason,
                pending_tool_calls=outcome.pending_tool_calls,
                pending_approvals=outcome.pending_approvals,
            )
        plan.run = run
        record = self._record(plan, result).model_copy(update={"problem": problem})
        freed = status in (RunStatus.failed, RunStatus.cancelled)
        recorded = await self.ends.record(
            record,
            terminal_event(
                run,
                outcome.pending_tool_calls if outcome else [],
                outcome.pending_approvals if outcome else [],
            ),
            forget=plan.idempotency if freed else None,
            lease=lease,
        )
        if freed and recorded:  # (what a run of a conversation deleted meanwhile does)
            created = plan.conversation_created_at
            self._erasure.erase_if_deleted(plan.conversation_id, plan.lineage_id, created)
        self._stats.run_finished(
            status.value,
            time.perf_counter() - started,
            run.usage,
            run.cost_usd,
            len(outcome.messages) if outcome else 0,
            error=error.code if error else None,
        )
        return record

    def _record(self, plan: TurnPlan, result: TurnResult | None = None) -> RunRecord:
        return RunRecord(
            run=plan.run,
            lineage_id=plan.lineage_id,
            conversation_created_at=plan.conversation_created_at,
            result=result,
            first_message_id=plan.first_message_id,
            idempotency=plan.idempotency,
            executor=plan.executor,
        )

    async def _publish_many(self, plan: TurnPlan, events: list[tuple[str, dict[str, Any]]]) -> None:
        if plan.status_unsaved:  # (the first goes with the `running` status)
            for type_, data in events:
                await self._publish(plan, type_, data)
            return
        await self._coord.runs.publish_many(plan.run.id, events)

    async def _publish(self, plan: TurnPlan, type_: str, data: dict[str, Any]) -> None:
        if plan.status_unsaved:  # the `running` status goes with the run's first event
            plan.status_unsaved = False
            await self._coord.runs.save_and_publish(self._record(plan), type_, data)
            return
        await self._coord.runs.publish(plan.run.id, type_, data)


async def _released_after(end: Coroutine[Any, Any, T], lease: TurnLease | None) -> T:
    """`end`, then `lease` released (the end's first step releases it: then a no-op), in
    the one task that shields both from a cancel of the run (a task for each was a task
    and a loop iteration more per turn)."""
    try:
        return await end
    finally:
        if lease is not None:
            await lease.release()


def _planned_incarnation(plan: TurnPlan, conv: Conversation) -> bool:
    """Whether `conv` is the incarnation the turn was requested on (`app.domain.incarnation`:
    a fork made again under a deleted fork's id has its id and lineage)."""
    created = plan.conversation_created_at
    return conv.lineage_id == plan.lineage_id and (created is None or conv.created_at == created)


def _unchanged_copy(plan: TurnPlan, lease: TurnLease) -> Conversation | None:
    """The request's copy of the conversation when no turn can have committed since it
    was read: the lock was free when its stamp was taken, before the read, and nobody took
    it between then and this lease (`TurnLocks.stamp`). A write that takes no lock (a
    `PATCH`) is then as if it came after the turn's read; one that moves the head fails
    the commit's compare-and-set, as it would during the provider call."""
    if plan.seen is None or plan.seen_stamp is None or lease.stamp_before != plan.seen_stamp:
        return None
    return plan.seen
