"""In-process turn locks for a single instance (`memory_coordinator`)."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field

from app.coordination.base import TurnLease, TurnLocks
from app.errors import ConversationBusy


@dataclass
class _LockState:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    holder: str | None = None
    users: int = 0  # holders + waiters; the entry is dropped when it reaches 0


class _MemoryLease(TurnLease):
    def __init__(self, locks: MemoryTurnLocks, conversation_id: str, run_id: str) -> None:
        self._locks = locks
        self._conversation_id = conversation_id
        self.run_id = run_id
        self._released = False

    async def release(self) -> None:
        if not self._released:
            self._released = True
            self._locks._release(self._conversation_id)

    @property
    def lost(self) -> bool:
        return False


class MemoryTurnLocks(TurnLocks):
    """asyncio locks (FIFO-fair) per conversation, dropped when nobody uses them.

    `stamp`: the tick (a counter of every acquisition) of each conversation's last
    acquisition, for the `max_stamps` most recent; a conversation not among them has the
    highest tick ever dropped from them, which is at least its own last one, so a stamp
    never goes back and always moves when its lock is taken."""

    def __init__(self, max_stamps: int = 10_000) -> None:
        self._states: dict[str, _LockState] = {}
        self._ticks = 0
        self._stamps: OrderedDict[str, int] = OrderedDict()
        self._dropped_stamp = 0
        self._max_stamps = max_stamps

    async def acquire(self, conversation_id: str, run_id: str, *, wait_s: float) -> TurnLease:
        state = self._states.setdefault(conversation_id, _LockState())
        state.users += 1
        try:
            if wait_s <= 0:
                if state.lock.locked():
                    raise TimeoutError
                await state.lock.acquire()
            else:  # (not `wait_for`: on 3.11 it runs the acquire in a task of its own)
                async with asyncio.timeout(wait_s):
                    await state.lock.acquire()
        except (TimeoutError, asyncio.CancelledError) as exc:
            self._drop_user(conversation_id, state)
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise ConversationBusy(
                f"Conversation {conversation_id!r} is running another turn.",
                extra={"run_id": state.holder},
            ) from None
        state.holder = run_id
        lease = _MemoryLease(self, conversation_id, run_id)
        lease.stamp_before = self._stamp_of(conversation_id)
        self._ticks += 1
        self._stamps[conversation_id] = self._ticks
        self._stamps.move_to_end(conversation_id)
        while len(self._stamps) > self._max_stamps:
            _, dropped = self._stamps.popitem(last=False)
            self._dropped_stamp = max(self._dropped_stamp, dropped)
        return lease

    def _stamp_of(self, conversation_id: str) -> int:
        return self._stamps.get(conversation_id, self._dropped_stamp)

    def stamp(self, conversation_id: str) -> int | None:
        state = self._states.get(conversation_id)
        if state is not None and state.lock.locked():
            return None
        return self._stamp_of(conversation_id)

    def _release(self, conversation_id: str) -> None:
        state = self._states[conversation_id]
        state.holder = None
        state.lock.release()
        self._drop_user(conversation_id, state)

    def _drop_user(self, conversation_id: str, state: _LockState) -> None:
        state.users -= 1
        if state.users == 0:
            self._states.pop(conversation_id, None)

    async def holder(self, conversation_id: str) -> str | None:
        state = self._states.get(conversation_id)
        return state.holder if state else None
