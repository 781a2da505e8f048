"""Starting runs and answering for them: admission, idempotency, `if_busy`, following
events, waiting for results, cancellation (DESIGN §5, §7)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.coordination.base import (
    TERMINAL_EVENTS,
    Coordinator,
    EventsExpired,
    IdempotencyRecord,
    RunEvent,
    RunRecord,
)
from app.domain import Conversation, Part, Role, Run, RunStatus, new_id
from app.domain.principal import Principal
from app.domain.requests import IfBusy, SendMessage, SubmitToolApprovals, SubmitToolResults
from app.errors import (
    ConversationBusy,
    IdempotencyKeyReused,
    InstanceLost,
    InvalidRequest,
    MessageTooLarge,
    ProviderNotConfigured,
    RunCancelled,
    RunNotFound,
    ShuttingDown,
    error_for_code,
    error_from_problem,
)
from app.manager.conversations import IDEMPOTENCY_TTL_S, ConversationService, fingerprint
from app.manager.events import dump
from app.manager.limits import ExecutionLimiter
from app.manager.media import MediaService, PartRules
from app.manager.packs import PackLibrary
from app.manager.run_follow import follow_checked, terminal_of
from app.manager.run_truth import RunTruth
from app.manager.stats import Stats
from app.manager.turns import TurnExecutor, TurnInput, TurnPlan
from app.media.base import StagedBlob
from app.providers.base import LLMProvider
from app.settings import Settings

log = logging.getLogger("parley.runs")

CANCEL_WAIT_S = 5.0
ATTACH_WAIT_S = 5.0
ATTACH_ATTEMPTS = 3


@dataclass(frozen=True)
class StartedRun:
    run_id: str
    conversation_id: str
    attached: bool  # an idempotent retry re-attached to an earlier run


def _empty_message(loc: list[str]) -> InvalidRequest:
    """Empty and whitespace-only messages are refused alike: neither says anything."""
    return InvalidRequest(
        "The message is empty (only whitespace counts as empty too).",
        errors=[{"loc": loc, "msg": "content or parts with non-blank text required"}],
    )


def _instance_lost(record: RunRecord) -> bool:
    """The run's instance died before it finished: its key was freed for a retry."""
    error = record.run.error
    return (
        record.run.status == RunStatus.failed
        and error is not None
        and (error.code == InstanceLost.code)
    )


class RunService:
    def __init__(
        self,
        *,
        conversations: ConversationService,
        executor: TurnExecutor,
        coordinator: Coordinator,
        limiter: ExecutionLimiter,
        media: MediaService,
        packs: PackLibrary,
        providers: Mapping[str, LLMProvider],
        settings: Settings,
        stats: Stats,
        clock: Callable[[], datetime],
        truth: RunTruth,
    ) -> None:
        self._truth = truth
        self._conversations = conversations
        self._media = media
        self._packs = packs
        self._providers = providers
        self._executor = executor
        self._coord = coordinator
        self._limiter = limiter
        self._settings = settings
        self._stats = stats
        self._now = clock
        self._tasks: dict[str, asyncio.Task[RunRecord]] = {}
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
            for run_id, task in list(self._tasks.items()):
                if run_id not in cancelled:  # once: a second cancel would cut its cleanup
                    cancelled.add(run_id)
                    task.cancel()
            await self._settle(end - loop.time())

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
            task = self._tasks.get(run_id)
            if task is not None:
                task.cancel()

    # --- starting ----------------------------------------------------------------------

    async def send_message(
        self,
        principal: Principal,
        conversation_id: str,
        req: SendMessage,
        *,
        key: str | None,
        staged: Mapping[int, StagedBlob] | None = None,
    ) -> StartedRun:
        """Start a turn. `staged` holds the bytes of parts uploaded as multipart files
        (by part index; those parts carry no source); the caller closes them."""
        conv = await self._conversations.get(principal, conversation_id)
        content, parts = self._user_content(req, staged or {})
        if any(p.type != "text" for p in parts):
            parts = await self._media.prepare_parts(
                parts, user_id=conv.user_id, rules=await self._media_rules(conv), staged=staged
            )
        turn = TurnInput(kind="message", content=content, parts=parts, metadata=req.metadata)
        body = req.model_dump(mode="json", exclude={"stream", "on_disconnect", "parts"})
        body["parts"] = [p.model_dump(mode="json", exclude_none=True) for p in parts]
        return await self._start(conv, turn, req.if_busy, key, ("message", body))

    async def _media_rules(self, conv: Conversation) -> PartRules:
        pack = await self._packs.get(conv.pack_id, conv.pack_version)
        provider = self._providers.get(conv.provider)
        if provider is None:
            raise ProviderNotConfigured(
                f"Provider {conv.provider!r} is not configured on this instance."
            )
        prompt = pack.prompts[conv.prompt_name]
        return PartRules(config=prompt.media, provider=provider, max_mb=self._settings.media_max_mb)

    async def submit_tool_results(
        self,
        principal: Principal,
        conversation_id: str,
        req: SubmitToolResults,
        *,
        key: str | None,
    ) -> StartedRun:
        conv = await self._conversations.get(principal, conversation_id)
        size = len(json.dumps([r.model_dump(mode="json") for r in req.results]).encode())
        self._check_size(size)
        turn = TurnInput(kind="tool_results", tool_results=req.results)
        body = req.model_dump(mode="json", exclude={"stream", "on_disconnect"})
        return await self._start(conv, turn, req.if_busy, key, ("tool_results", body))

    async def submit_tool_approvals(
        self,
        principal: Principal,
        conversation_id: str,
        req: SubmitToolApprovals,
        *,
        key: str | None,
    ) -> StartedRun:
        conv = await self._conversations.get(principal, conversation_id)
        size = len(json.dumps([d.model_dump(mode="json") for d in req.decisions]).encode())
        self._check_size(size)
        turn = TurnInput(kind="tool_approvals", decisions=req.decisions)
        body = req.model_dump(mode="json", exclude={"stream", "on_disconnect"})
        return await self._start(conv, turn, req.if_busy, key, ("tool_approvals", body))

    def _user_content(
        self, req: SendMessage, staged: Mapping[int, StagedBlob]
    ) -> tuple[str, list[Part]]:
        if req.parts:
            if req.content is not None:
                raise InvalidRequest(
                    "Send either content or parts, not both.",
                    errors=[{"loc": ["body"], "msg": "content and parts are exclusive"}],
                )
            parts = req.parts
            content = "".join(p.text or "" for p in parts if p.type == "text")
            for i, p in enumerate(parts):
                if p.type == "text" and p.text is None:
                    raise InvalidRequest(
                        "A text part needs text.",
                        errors=[{"loc": ["body", "parts", i, "text"], "msg": "required"}],
                    )
                if p.type != "text" and p.media is None and i not in staged:
                    raise InvalidRequest(
                        "A media part needs media (base64, url or media_id).",
                        errors=[{"loc": ["body", "parts", i, "media"], "msg": "required"}],
                    )
            if not content.strip() and all(p.type == "text" for p in parts):
                raise _empty_message(["body", "parts"])
        else:
            if req.content is None or not req.content.strip():
                raise _empty_message(["body", "content"])
            content = req.content
            parts = [Part(type="text", text=content)]
        # Media bytes have their own limits (PARLEY_MEDIA_MAX_MB, the prompt's media config).
        size = len(content.encode()) + len(json.dumps(req.metadata).encode())
        size += sum(len((p.media.url or "").encode()) for p in parts if p.media)
        size += sum(len((p.media.caption or "").encode()) for p in parts if p.media)
        self._check_size(size)
        return content, parts

    def _check_size(self, size: int) -> None:
        limit = self._settings.max_message_bytes
        if size > limit:
            raise MessageTooLarge(f"The message is {size} bytes; the limit is {limit} bytes.")

    async def _start(
        self,
        conv: Conversation,
        turn: TurnInput,
        if_busy: IfBusy,
        key: str | None,
        request_identity: Any,
    ) -> StartedRun:
        if self.draining:
            raise ShuttingDown("This instance is shutting down and takes no new turns; retry.")
        self._admitting += 1
        try:
            return await self._admit(conv, turn, if_busy, key, request_identity)
        finally:
            self._admitting -= 1

    async def _admit(
        self,
        conv: Conversation,
        turn: TurnInput,
        if_busy: IfBusy,
        key: str | None,
        request_identity: Any,
    ) -> StartedRun:
        run_id = new_id()
        first_message_id = new_id()
        idempotency: tuple[str, str] | None = None
        if key is not None:
            scope = f"run:{conv.id}"
            record = IdempotencyRecord(fingerprint=fingerprint(request_identity), ref=run_id)
            idempotency = (scope, key)
            for _ in range(ATTACH_ATTEMPTS):
                existing = await self._coord.idempotency.reserve(
                    scope, key, record, ttl_s=IDEMPOTENCY_TTL_S
                )
                if existing is None:
                    break
                if existing.fingerprint != record.fingerprint:
                    raise IdempotencyKeyReused(
                        "This Idempotency-Key was already used for a different request."
                    )
                found = await self._await_record(existing.ref)
                if found is not None and not _instance_lost(found):
                    return StartedRun(existing.ref, conv.id, attached=True)
                # the first attempt's instance died (which freed the key), or it failed
                # before creating its run: reserve again
            else:
                raise ConversationBusy(
                    "A request with this Idempotency-Key is still being admitted; retry."
                )
        lease = None
        admitted = False
        try:
            self._limiter.admit(conv.id)
            admitted = True
            if if_busy == "reject":
                lease = await self._coord.locks.acquire(conv.id, run_id, wait_s=0)
            elif if_busy == "interrupt":
                holder = await self._coord.locks.holder(conv.id)
                if holder is not None:
                    await self._request_cancel(holder)
            run = Run(id=run_id, conversation_id=conv.id, created_at=self._now())
            await self._coord.runs.create(
                RunRecord(
                    run=run,
                    lineage_id=conv.lineage_id,
                    first_message_id=first_message_id,
                    idempotency=idempotency,
                    executor=self._truth.instance_id,
                )
            )
            await self._coord.runs.publish(run_id, "run.created", {"run": dump(run)})
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
            input=turn,
            lease=lease,
            idempotency=idempotency,
            first_message_id=first_message_id,
            executor=self._truth.instance_id,
        )
        self._stats.run_started(run_id, conv.id)
        task = asyncio.create_task(self._execute(plan), name=f"run-{run_id}")
        self._tasks[run_id] = task
        if self._cancel_new:  # the drain's grace is over (it still waits for this one);
            # cancelled once started, so that its own clean-up records `run.cancelled`
            asyncio.get_running_loop().call_soon(task.cancel)
        return StartedRun(run_id, conv.id, attached=False)

    async def _await_record(self, run_id: str) -> RunRecord | None:
        """Run `run_id`'s record, waiting briefly: a retry can learn the run id from the
        idempotency record (possibly on another instance) before the run is created."""
        deadline = asyncio.get_running_loop().time() + ATTACH_WAIT_S
        while (record := await self._coord.runs.get(run_id)) is None:
            if asyncio.get_running_loop().time() > deadline:
                return None
            await asyncio.sleep(0.02)
        return record

    async def _execute(self, plan: TurnPlan) -> RunRecord:
        try:
            return await self._executor.execute(plan)
        finally:
            self._limiter.release(plan.conversation_id)
            self._tasks.pop(plan.run.id, None)

    # --- answering ---------------------------------------------------------------------

    async def get(self, principal: Principal, conversation_id: str, run_id: str) -> RunRecord:
        conv = await self._conversations.get(principal, conversation_id)
        record = await self._settled(run_id)
        if record is None or record.run.conversation_id != conv.id:
            raise RunNotFound(f"Run {run_id!r} not found in this conversation.")
        return record

    async def _settled(self, run_id: str) -> RunRecord | None:
        """The run's record, its outcome derived when the record lags (`RunTruth`)."""
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
        record = await self.wait(run_id)
        run = record.run
        if run.status == RunStatus.failed:
            if record.problem is not None:
                raise error_from_problem(record.problem)
            assert run.error is not None
            raise error_for_code(run.error.code, run.error.detail)
        if run.status == RunStatus.cancelled:
            raise RunCancelled(f"Run {run.id} was cancelled; nothing was committed.")
        assert record.result is not None
        messages = record.result.messages
        # the final assistant message (a run that only answered some pending calls and
        # paused again has none: then its last tool message)
        reply = next((m for m in reversed(messages) if m.role == Role.assistant), messages[-1])
        return {
            "run_id": run.id,
            "conversation_id": run.conversation_id,
            "status": run.status.value,
            "messages": [dump(m) for m in messages],
            "reply": dump(reply),
            "usage": dump(run.usage),
            "cost_usd": run.cost_usd,
            "finish_reason": record.result.finish_reason,
            "pending_tool_calls": [dump(c) for c in record.result.pending_tool_calls],
            "pending_approvals": [dump(a) for a in record.result.pending_approvals],
        }

    async def events(
        self, run_id: str, *, after: int, cancel_on_disconnect: bool = False
    ) -> AsyncIterator[RunEvent]:
        """Replay then follow a run's events; a `run.snapshot` stands in for events the log
        no longer holds. Nothing at all when the run is finished and `after` is at or past
        its terminal event. With `cancel_on_disconnect`, a reader that goes away before the
        terminal event cancels the run."""
        finished = False
        try:
            try:
                async for event in self._follow(run_id, after):
                    finished = event.type in TERMINAL_EVENTS
                    yield event
                return
            except EventsExpired as expired:
                last_seq = expired.last_seq
            record = await self._settled(run_id)
            if record is None:
                raise RunNotFound(f"Run {run_id!r} is no longer known.")
            if record.run.status.terminal and 0 < last_seq <= after:
                finished = True
                return  # the reader has seen the end already
            messages = record.result.messages if record.result else []
            yield RunEvent(  # its id (the log's last seq) lets a reconnect resume after it
                seq=last_seq,
                type="run.snapshot",
                data={"run": dump(record.run), "messages": [dump(m) for m in messages]},
            )
            if not record.run.status.terminal:
                record = await self.wait(run_id)
            finished = True
            yield terminal_of(record, last_seq)
        finally:
            if cancel_on_disconnect and not finished:
                task = self._tasks.get(run_id)
                if task is not None:
                    task.cancel()
                else:
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
        task = self._tasks.get(run_id)
        if task is not None:
            task.cancel()
        else:
            await self._coord.runs.request_cancel(run_id)
