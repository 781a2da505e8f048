"""Coordination between runs: turn locks, idempotency records and run event logs.

These live beside the `StateStore` rather than in it (DESIGN §4 allows either) because
they are short-lived and latency-sensitive: in-process for a single instance (`memory`),
Redis when several instances share a conversation space (`redis`).

Contract of each ABC is in its docstrings; `tests/contract/coordination/` runs the
same suite against every backend.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, field_validator

from app.domain import Message, Run, ToolCall
from app.domain.limits import as_utc
from app.domain.run import TERMINAL_EVENTS as TERMINAL_EVENTS  # (domain: the API uses it too)
from app.domain.run import PendingApproval
from app.domain.run import RunEvent as RunEvent  # defined in the domain for the API


class TurnResult(BaseModel):
    """What a finished turn committed; the non-streaming response is built from it."""

    messages: list[Message] = Field(default_factory=list)
    finish_reason: str | None = None
    pending_tool_calls: list[ToolCall] = Field(default_factory=list)
    pending_approvals: list[PendingApproval] = Field(default_factory=list)


class RunRecord(BaseModel):
    """A run plus what is needed to answer for it after the fact (idempotent retries,
    reconnects after the event log expired).

    `first_message_id` is the id the run's first committed message will have (chosen
    before the run starts): finding that message in the store, carrying this run's id,
    proves the commit landed even when the record or the event log never learned it.
    `problem` keeps a failed run's whole error (status, code, headers such as Retry-After,
    extra fields such as the busy `run_id`) for the non-streaming answer. `idempotency`
    names the key that answers with this record: in-process logs keep such records as long
    as the key, not only as long as their bound on other records."""

    run: Run
    lineage_id: str
    # the incarnation of its conversation (`app.domain.incarnation`; None: recorded before),
    # in UTC: Redis compares it as the JSON text (a conversation imported before dates were
    # stored in UTC may still carry an offset, review R-C)
    conversation_created_at: datetime | None = None
    result: TurnResult | None = None
    first_message_id: str | None = None
    problem: dict[str, Any] | None = None  # a failed run's error (`app.errors.problem_of`)
    idempotency: tuple[str, str] | None = None  # (scope, key) of the request that started it
    executor: str | None = None  # id of the instance executing it (`InstanceLiveness`)

    @field_validator("conversation_created_at")
    @classmethod
    def _in_utc(cls, at: datetime | None) -> datetime | None:
        return None if at is None else as_utc(at)

    def of_incarnation(self, created_at: datetime | None) -> bool:
        """Whether the record is a run of the incarnation created at `created_at` (None:
        of any; a record from before incarnations were recorded: of every one)."""
        mine = self.conversation_created_at
        return created_at is None or mine is None or mine == created_at


@dataclass(frozen=True)
class LeaseRelease:
    """A lease's release handed to a run log that can do it in the step that ends the run
    (`RunLog.save_and_publish_releasing`): free lock `key` on `client` (a Redis client:
    the key; a PostgreSQL engine: the conversation's lease row) if it still holds `value`
    (the lease's token), then call `done` with whether it did (None: unknown, the step
    failed), which finishes the lease's release here (a lease left unreleased expires)."""

    client: object
    key: str
    value: str
    done: Callable[[bool | None], None]


@dataclass(frozen=True)
class LeaseOffer:
    """A try at a turn lock handed to a run log that can make it in the step creating the
    run (`RunLog.create_and_publish_locking`): run the backend's acquisition on `client`
    with `keys` and `args` (a Redis client: `redis_locks`' acquisition script's; a SQL
    engine: the statement `sql_locks.SqlLeaseBackend.acquire_step` made and its
    arguments), then
    hand its outcome to `done` (acquired, the lock's counter; `acquired` None: unknown,
    the step failed), which returns the held lease (or None). A step cancelled in flight
    goes to `abandon` instead, with what finishes it: a lock it took is released there."""

    client: object
    keys: list[str]
    args: list[str | int]
    done: Callable[[bool | None, int | None], TurnLease | None]
    abandon: Callable[[Awaitable[tuple[bool, int | None]]], None]


class TurnLease(ABC):
    """A held turn lock. Release it exactly once (idempotent)."""

    run_id: str
    # `TurnLocks.stamp` of the conversation just before this lease took the lock (None:
    # the backend cannot tell)
    stamp_before: int | None = None

    @abstractmethod
    async def release(self) -> None: ...

    def take_release(self, client: object) -> LeaseRelease | None:
        """This lease's release as a `LeaseRelease` on `client`, for the caller to carry
        out (the lease counts as released from now on), if its backend is that client's;
        else None (and nothing changes: `release()` it)."""
        return None

    @property
    @abstractmethod
    def lost(self) -> bool:
        """True if the lease could not be kept (expired without renewal). The holder should
        stop; its commit would be rejected by the store's head compare-and-set anyway."""


class TurnLocks(ABC):
    """One turn at a time per conversation, across every instance sharing the backend."""

    @abstractmethod
    async def acquire(self, conversation_id: str, run_id: str, *, wait_s: float) -> TurnLease:
        """Take the conversation's lock for `run_id`, waiting up to `wait_s` seconds
        (0 = try once). Waiters are served roughly in arrival order. Raises
        `app.errors.ConversationBusy` naming the holder's run id (`extra={"run_id": ...}`)
        when the wait runs out."""

    @abstractmethod
    async def holder(self, conversation_id: str) -> str | None:
        """The run id holding the lock, or None."""

    async def offer(self, conversation_id: str, run_id: str, client: object) -> LeaseOffer | None:
        """A try at the lock for `run_id` (once, no waiting) that a run log can make in
        a step of its own on `client` (`LeaseOffer`), if these locks live there and no
        acquisition of this process waits for or holds the conversation (it would be
        overtaken); else None (and nothing changes: `acquire` as usual)."""
        return None

    def stamp(self, conversation_id: str) -> int | None:
        """While the lock is free: a number that grows every time the lock is taken, so
        that a later lease whose `stamp_before` equals it proves nobody held the lock in
        between (and so nobody committed a turn). None while the lock is held, and from
        a backend that cannot tell without a round trip (only in-process locks can)."""
        return None


@dataclass
class IdempotencyRecord:
    """What an `Idempotency-Key` was first used for.

    `fingerprint` identifies the request body; `ref` is what the first request produced
    (a run id for sends, a conversation id for creates)."""

    fingerprint: str
    ref: str
    extra: dict[str, Any] = field(default_factory=dict)


class IdempotencyKeys(ABC):
    """First-writer-wins records of idempotency keys, with a time to live."""

    @abstractmethod
    async def reserve(
        self, scope: str, key: str, record: IdempotencyRecord, *, ttl_s: float
    ) -> IdempotencyRecord | None:
        """Store `record` under (scope, key) if the key is unused and return None; if it is
        already used, store nothing and return the existing record."""

    @abstractmethod
    async def forget(self, scope: str, key: str, *, ref: str) -> None:
        """Remove the record if it still points at `ref` (a failed run frees its key so
        the client can retry with it)."""


class EventsExpired(Exception):
    """The log no longer holds the events asked for (the caller sends `run.snapshot`).

    `last_seq` is the last seq the log gave out for the run (0 if it knows none): the
    snapshot stands for the events up to it, so it is the id the snapshot carries."""

    def __init__(self, run_id: str, *, last_seq: int = 0) -> None:
        super().__init__(run_id)
        self.run_id = run_id
        self.last_seq = last_seq


class RunLog(ABC):
    """Run records and their ordered event logs, readable from any instance."""

    @abstractmethod
    async def create(self, record: RunRecord) -> None:
        """Register a new run."""

    @abstractmethod
    async def save(self, record: RunRecord) -> None:
        """Replace a run's record (status changes, result)."""

    @abstractmethod
    async def get(self, run_id: str) -> RunRecord | None: ...

    @abstractmethod
    async def publish(self, run_id: str, type_: str, data: dict[str, Any]) -> RunEvent:
        """Append an event; its seq is one more than the previous event's."""

    async def publish_many(
        self, run_id: str, events: Sequence[tuple[str, dict[str, Any]]]
    ) -> list[RunEvent]:
        """`publish` each of `events` (type, data), in order; in one atomic step where the
        backend can (Redis: one script, their seqs consecutive). On an error some of them
        may have landed (the first ones), as after that many `publish` calls."""
        return [await self.publish(run_id, type_, data) for type_, data in events]

    async def create_and_publish(
        self, record: RunRecord, type_: str, data: dict[str, Any]
    ) -> RunEvent:
        """`create` then `publish` its first event; one round trip where the backend can."""
        await self.create(record)
        return await self.publish(record.run.id, type_, data)

    async def save_and_publish(
        self, record: RunRecord, type_: str, data: dict[str, Any]
    ) -> RunEvent:
        """`save` then `publish` (a run's end: its record, then its terminal event); in one
        atomic step where the backend can. On an error either may have landed: calling it
        again is safe (saving is a replace, and readers stop at the first terminal event)."""
        await self.save(record)
        return await self.publish(record.run.id, type_, data)

    async def save_and_publish_releasing(
        self, lease: TurnLease, record: RunRecord, type_: str, data: dict[str, Any]
    ) -> RunEvent:
        """A run's end with its turn lock: `lease` released, then `save_and_publish`, so
        that whoever sees the terminal event finds the conversation free. In one atomic
        step where the backend can (Redis on one server: one round trip instead of two).
        `lease` ends released, or left to expire, whatever happens; an error is the
        end's, and calling `save_and_publish` again is safe."""
        await lease.release()
        return await self.save_and_publish(record, type_, data)

    async def create_and_publish_locking(
        self, locks: TurnLocks, record: RunRecord, type_: str, data: dict[str, Any]
    ) -> tuple[RunEvent, TurnLease | None]:
        """`create_and_publish`, and one try at the turn lock of the run's conversation
        for the run (`TurnLocks.offer`; no waiting): the lease when it was taken, else
        None (the caller `acquire`s as usual). In one atomic step where the backend can
        (Redis on one server: one round trip instead of two); by default no try at all.
        On an error the run may have been created, and the lock is not held."""
        return await self.create_and_publish(record, type_, data), None

    @abstractmethod
    def follow(self, run_id: str, *, after: int) -> AsyncGenerator[RunEvent, None]:
        """Events with seq > `after`, replayed then followed live, ending after a terminal
        event. Raises `EventsExpired` (before yielding anything) when some of those events
        were already dropped from the log."""

    @abstractmethod
    async def erase(
        self, conversation_id: str, lineage_id: str | None, *, created_at: datetime | None = None
    ) -> list[str]:
        """Remove the record and the events of every run of conversation
        `conversation_id` that has ended (its terminal event is in), in lineage `lineage_id`
        only (None: in any lineage, for a caller that no longer knows which), and with
        `created_at` of that incarnation only (`RunRecord.conversation_created_at`; records
        without one match: a fork made again under a deleted fork's id has its id and
        lineage, `app.domain.incarnation`); return the
        ids of that conversation's runs still live, which are left alone (their executor
        still writes them: erasing them now would let their next write bring the record
        back). A caller erases again once those ended (`app.manager.run_erasure`).
        Each backend keeps a per-conversation index of its runs for this, as long as the
        runs' records."""

    @abstractmethod
    async def request_cancel(self, run_id: str) -> None:
        """Ask whichever instance executes the run to cancel it."""

    async def warm_up(self) -> None:
        """Pay at start-up what the first run would otherwise pay (a backend whose
        heartbeat or clean-up starts lazily does them now); nothing by default."""
        return None

    @abstractmethod
    def cancel_requests(self) -> AsyncIterator[str]:
        """Run ids whose cancellation was requested (for the executing instance)."""


class Coordinator:
    """The three coordination services of one backend, built together by the lifespan."""

    def __init__(self, locks: TurnLocks, idempotency: IdempotencyKeys, runs: RunLog) -> None:
        self.locks = locks
        self.idempotency = idempotency
        self.runs = runs

    async def ping(self) -> None:
        """Raise `StoreUnavailable` when the coordination backend does not answer."""

    async def warm_up(self) -> None:
        """Start-up (`app.manager.warm_up`): what the first run would pay, paid now."""
        await self.runs.warm_up()

    async def close(self) -> None:
        """Release connections."""
