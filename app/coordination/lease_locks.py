"""Turn locks held as renewable leases in a shared backend (Redis, SQL).

The backend (`LeaseBackend`, lease_backend.py) only knows four one-round-trip operations
on a lease record `(conversation_id -> run_id, token, expiry)`; everything about waiting,
renewing and giving up lives here, once, so Redis and SQL locks behave the same:

* **acquire** with `wait_s == 0` tries once. With `wait_s > 0`, waiters of *this* process
  first queue FIFO on a local `asyncio.Lock` per conversation (the "gate"), so only the
  head of the local queue polls the backend, with jittered exponential backoff (`poll_min_s`
  up to `poll_max_s`). The lease then keeps the gate until it is released, so the next
  local waiter gets the lock right after the release without polling at all, and waiters
  on other instances are served by their polling. Arrival order is respected within an
  instance, roughly across instances.
* A backend call in flight when the waiter is cancelled (client gone, deadline) may still
  take the lock; it is finished in the background and undone, so cancellation never
  leaks a lock until its expiry.
* A **renewal task** per held lease extends it every `lease_s / 3` (compare-and-extend on
  the token). If the token is gone, or the backend fails for longer than the lease, the
  lease is `lost`; `lost` is also true as soon as `lease_s` passed since the last
  successful renewal was *sent*, whatever the renewal task is doing (a frozen process
  must not trust a lease the backend already expired). A lost lease stays lost; the
  store's head compare-and-set still rejects the loser's commit.
* **release** is a compare-and-delete on the token (idempotent, never deletes a lease a
  successor took over). If the backend is unreachable the lease simply expires.
* **offers** (`TurnLocks.offer`): one try at the lock made by someone else's backend step
  (a Redis run log takes it in the script creating the run: one round trip less per
  turn). Only when no acquisition of this process waits for or holds the conversation,
  so the local queue is never overtaken; the try holds the gate as a waiter would, and an
  outcome that is unknown (the step failed) or whose caller was cancelled ends with the
  lock released (token-checked), as a cancelled `acquire` does.
* **late landings**: a step whose outcome is unknown (an acquisition, or an offer's run
  creation, that timed out client-side: `StoreUnavailable`) may still run on the server
  afterwards, its bytes having been sent (a stalled link delivers them later; closing
  the socket does not take them back). Its lock would then be held by a token nobody
  renews or releases: the conversation blocked for a whole lease. So the token-checked
  release is made at once and then again `LATE_UNDO_DELAYS_S` later (0.1 s doubling, up
  to ~13 s, past one lease), stopping at the first that deletes the lock (it had
  landed). No clock is compared (the alternative, a deadline the step checks against
  the server's clock, trusts the instance's clock to agree with the server's within a
  margin: a skew past it would refuse every step, or let late ones through), and a
  token-checked release is harmless at any time (the token is this try's alone, so it
  never deletes a lease anyone else holds). A step landing later than the schedule
  blocks the conversation at most one lease, as a crashed holder does. `close()` stops
  the schedule.
* **stamps** (`TurnLocks.stamp`) without a round trip. The backend keeps, per
  conversation, a counter `seq` bumped by every acquisition and returned by it (it survives
  releases). A lease of this process whose release deleted it (still ours: nobody took the
  lock over while we held it) leaves `seq` where its acquisition put it, say N, with the
  lock free: this process remembers N as the conversation's stamp. A later acquisition
  returning N + 1 proves that nobody held the lock between that release and itself, so a
  conversation read after the stamp was taken saw every turn committed (turns commit only
  under the lock, before its release): its lease's `stamp_before` is `seq - 1`. Any other
  acquisition in between (another instance's, or ours) made the counter larger, so the
  comparison fails and the executor reads again. A remembered stamp can only be too old
  (the counter never goes back), which costs a read, never a stale conversation. If the
  backend loses the counter (expiry, eviction), it restarts from its clock in microseconds,
  above any value it had (fewer than one acquisition per microsecond per conversation), so
  it never lands on N + 1 by chance.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from app.coordination.base import LeaseOffer, LeaseRelease, TurnLease, TurnLocks
from app.coordination.lease_backend import Attempt, LeaseBackend, LeaseId, LeaseTiming
from app.coordination.retry import Backoff
from app.errors import ConversationBusy

log = logging.getLogger("parley.coordination.locks")

# after an unknown outcome, the token-checked release is tried again these many seconds
# apart (module docstring, *late landings*): ~12.7 s in all, past a lease
LATE_UNDO_DELAYS_S = (0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4)


@dataclass
class _Gate:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0  # waiters + the lease holding it; dropped at 0


class _Lease(TurnLease):
    def __init__(
        self,
        locks: LeaseLocks,
        lease: LeaseId,
        gate: _Gate | None,
        sent_at: float,
        seq: int | None,
    ) -> None:
        self.run_id = lease.run_id
        self.id = lease
        self.seq = seq
        self.stamp_before = None if seq is None else seq - 1
        self._locks = locks
        self._gate = gate
        self._valid_until = sent_at + locks.timing.lease_s
        self._lost = False
        self._released = False
        self._renewal = asyncio.create_task(
            self._renew_loop(), name=f"lease-renewal-{lease.conversation_id}"
        )

    @property
    def lost(self) -> bool:
        return self._lost or time.monotonic() >= self._valid_until

    async def release(self) -> None:
        if self._released:
            return
        self._released = True
        self._renewal.cancel()
        await self._locks._release(self, self._gate)

    def take_release(self, client: object) -> LeaseRelease | None:
        if self._released:
            return None
        key = self._locks.backend.release_key(self.id, client)
        if key is None:
            return None
        self._released = True
        self._renewal.cancel()
        self._locks._leases.discard(self)
        return LeaseRelease(client, *key, done=self._released_by_caller)

    def _released_by_caller(self, deleted: bool | None) -> None:
        if deleted is None:  # unknown (the step failed): released the usual way
            self._locks._spawn(self._locks._release_remote(self, self._gate))
        else:
            self._locks._released(self, self._gate, deleted=deleted)

    def _mark_lost(self, why: str) -> None:
        if not self._lost:
            self._lost = True
            log.warning(
                "turn lock of conversation %s (run %s) lost: %s",
                self.id.conversation_id,
                self.run_id,
                why,
            )

    async def _renew_loop(self) -> None:
        timing = self._locks.timing
        retry = Backoff(0.05, 1.0)
        delay = timing.renew_every_s
        while True:
            await asyncio.sleep(delay)
            sent_at = time.monotonic()
            try:
                still_ours = await self._locks.backend.renew(self.id, timing.lease_s)
            except Exception as exc:  # keep trying until the lease is over
                if time.monotonic() >= self._valid_until:
                    self._mark_lost(f"renewal failing for longer than the lease ({exc!r})")
                    return
                log.warning("renewing turn lock of %s failed: %r", self.id.conversation_id, exc)
                delay = min(retry.next(), timing.renew_every_s / 2)
                continue
            if not still_ours:
                self._mark_lost("the lease expired and was taken over or removed")
                return
            if sent_at >= self._valid_until:
                self._mark_lost("renewed only after the lease had expired")
                return
            self._valid_until = sent_at + timing.lease_s
            retry.reset()
            delay = timing.renew_every_s


class LeaseLocks(TurnLocks):
    """`TurnLocks` over a `LeaseBackend` (see the module docstring)."""

    def __init__(
        self, backend: LeaseBackend, timing: LeaseTiming | None = None, max_stamps: int = 10_000
    ) -> None:
        self.backend = backend
        self.timing = timing or LeaseTiming()
        self._gates: dict[str, _Gate] = {}
        self._leases: set[_Lease] = set()
        self._held: dict[str, int] = {}  # conversation -> leases of this process holding it
        # conversation -> `seq` its lock was left at by this process's last clean release,
        # for the `max_stamps` most recent (module docstring, *stamps*)
        self._stamps: OrderedDict[str, int] = OrderedDict()
        self._max_stamps = max_stamps
        self._background: set[asyncio.Task[None]] = set()
        self._late_undos: set[asyncio.Task[None]] = set()

    async def acquire(self, conversation_id: str, run_id: str, *, wait_s: float) -> TurnLease:
        lease_id = LeaseId(conversation_id, run_id, secrets.token_hex(16))
        if wait_s <= 0:
            sent_at = time.monotonic()
            attempt = await self._attempt(lease_id)
            if attempt.acquired:
                return self._hold(lease_id, None, sent_at, attempt.seq)
            raise _busy(conversation_id, attempt.holder)
        deadline = time.monotonic() + wait_s
        gate = self._gates.setdefault(conversation_id, _Gate())
        gate.users += 1
        gate_held = handed_over = False
        try:
            try:
                async with asyncio.timeout(wait_s):
                    await gate.lock.acquire()
            except TimeoutError:
                raise _busy(conversation_id, await self._quiet_holder(conversation_id)) from None
            gate_held = True
            poll = Backoff(self.timing.poll_min_s, self.timing.poll_max_s)
            while True:
                sent_at = time.monotonic()
                attempt = await self._attempt(lease_id)
                if attempt.acquired:
                    handed_over = True
                    return self._hold(lease_id, gate, sent_at, attempt.seq)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _busy(conversation_id, attempt.holder)
                await asyncio.sleep(min(remaining, poll.next()))
        finally:
            if not handed_over:
                if gate_held:
                    gate.lock.release()
                self._leave_gate(conversation_id, gate)

    async def holder(self, conversation_id: str) -> str | None:
        return await self.backend.holder(conversation_id)

    async def offer(self, conversation_id: str, run_id: str, client: object) -> LeaseOffer | None:
        if conversation_id in self._gates:  # waited for or held here: the queue's turn
            return None
        lease_id = LeaseId(conversation_id, run_id, secrets.token_hex(16))
        step = self.backend.acquire_step(lease_id, self.timing.lease_s, client)
        if step is None:
            return None
        # the gate, as a waiter that got it first: a local acquisition meanwhile queues
        gate = self._gates[conversation_id] = _Gate(users=1)
        await gate.lock.acquire()  # (a new lock: taken without yielding)
        sent_at = time.monotonic()
        settled = False

        def done(acquired: bool | None, seq: int | None) -> _Lease | None:
            nonlocal settled
            if settled:
                return None
            settled = True
            if acquired:
                return self._hold(lease_id, gate, sent_at, seq)
            if acquired is None:  # it may have landed: deleted if ours (token-checked)
                self._spawn(self._undo_offer(lease_id, gate))
            else:
                self._free_gate(conversation_id, gate)
            return None

        def abandon(outcome: Awaitable[tuple[bool, int | None]]) -> None:
            self._spawn(self._abandoned(outcome, done))

        keys, args = step
        return LeaseOffer(client, keys, args, done, abandon)

    async def _undo_offer(self, lease: LeaseId, gate: _Gate) -> None:
        try:
            await self._undo_unknown(lease)
        finally:
            self._free_gate(lease.conversation_id, gate)

    async def _undo_unknown(self, lease: LeaseId) -> None:
        """A step whose outcome is unknown: released now (token-checked), and again on the
        late-landing schedule unless this release found it (module docstring)."""
        deleted = False
        with contextlib.suppress(Exception):
            deleted = await self.backend.release(lease)
        if not deleted:
            task = asyncio.get_running_loop().create_task(self._undo_late(lease))
            self._late_undos.add(task)
            task.add_done_callback(self._late_undos.discard)

    async def _undo_late(self, lease: LeaseId) -> None:
        for delay in LATE_UNDO_DELAYS_S:
            await asyncio.sleep(delay)
            with contextlib.suppress(Exception):
                if await self.backend.release(lease):
                    log.warning(
                        "a turn lock try of conversation %s (run %s) landed after its "
                        "caller gave up on it; released",
                        lease.conversation_id,
                        lease.run_id,
                    )
                    return

    async def _abandoned(
        self,
        outcome: Awaitable[tuple[bool, int | None]],
        done: Callable[[bool | None, int | None], _Lease | None],
    ) -> None:
        """An offer's step whose caller was cancelled: finished here, its lock undone."""
        try:
            acquired, seq = await outcome
        except Exception:
            done(None, None)
            return
        except BaseException:
            done(None, None)
            raise
        lease = done(acquired, seq)
        if lease is not None:
            await lease.release()

    def _free_gate(self, conversation_id: str, gate: _Gate) -> None:
        gate.lock.release()
        self._leave_gate(conversation_id, gate)

    def stamp(self, conversation_id: str) -> int | None:
        """The counter this process's last clean release left (module docstring,
        *stamps*); None while a lease of this process holds the lock, or when it
        remembers none."""
        if conversation_id in self._held:
            return None
        return self._stamps.get(conversation_id)

    async def close(self) -> None:
        """Stop renewing (held leases then expire by themselves) and finish cleanups."""
        for lease in list(self._leases):
            lease._renewal.cancel()
        self._leases.clear()
        for task in list(self._late_undos):
            task.cancel()
        if self._background:  # releases in flight; bounded, as the backend may be down
            await asyncio.wait(list(self._background), timeout=min(5.0, self.timing.lease_s))

    # --- internals ---------------------------------------------------------------------

    async def _attempt(self, lease: LeaseId) -> Attempt:
        """One acquisition attempt that never leaks the lock when cancelled mid-flight."""
        attempt = asyncio.ensure_future(self.backend.try_acquire(lease, self.timing.lease_s))
        try:
            return await asyncio.shield(attempt)
        except asyncio.CancelledError:
            self._spawn(self._undo(attempt, lease))
            raise
        except Exception:  # unknown outcome (a timeout): it may land late
            self._spawn(self._undo_unknown(lease))
            raise

    async def _undo(self, attempt: asyncio.Future[Attempt], lease: LeaseId) -> None:
        try:
            acquired = (await attempt).acquired
        except Exception:
            acquired = True  # unknown outcome: delete in case it landed (token-checked)
        if acquired:
            await self._undo_unknown(lease)

    def _hold(
        self, lease_id: LeaseId, gate: _Gate | None, sent_at: float, seq: int | None
    ) -> _Lease:
        lease = _Lease(self, lease_id, gate, sent_at, seq)
        self._leases.add(lease)
        conversation_id = lease_id.conversation_id
        self._held[conversation_id] = self._held.get(conversation_id, 0) + 1
        return lease

    async def _release(self, lease: _Lease, gate: _Gate | None) -> None:
        self._leases.discard(lease)
        # Shielded: a caller cancelled while releasing still frees the lock and the gate.
        await asyncio.shield(self._spawn(self._release_remote(lease, gate)))

    async def _release_remote(self, held: _Lease, gate: _Gate | None) -> None:
        lease = held.id
        deleted = False
        try:
            deleted = await self.backend.release(lease)
        except Exception as exc:
            log.warning(
                "releasing turn lock of %s failed (it expires by itself): %r",
                lease.conversation_id,
                exc,
            )
        finally:
            self._released(held, gate, deleted=deleted)

    def _released(self, held: _Lease, gate: _Gate | None, *, deleted: bool) -> None:
        """What follows the backend's release (`deleted`: it was still ours)."""
        conversation_id = held.id.conversation_id
        if deleted and held.seq is not None:
            self._remember(conversation_id, held.seq)
        self._unhold(conversation_id)
        if gate is not None:
            gate.lock.release()
            self._leave_gate(conversation_id, gate)

    def _remember(self, conversation_id: str, seq: int) -> None:
        self._stamps[conversation_id] = seq
        self._stamps.move_to_end(conversation_id)
        while len(self._stamps) > self._max_stamps:
            self._stamps.popitem(last=False)

    def _unhold(self, conversation_id: str) -> None:
        left = self._held.pop(conversation_id, 0) - 1
        if left > 0:
            self._held[conversation_id] = left

    def _leave_gate(self, conversation_id: str, gate: _Gate) -> None:
        gate.users -= 1
        if gate.users == 0 and self._gates.get(conversation_id) is gate:
            del self._gates[conversation_id]

    async def _quiet_holder(self, conversation_id: str) -> str | None:
        try:
            return await self.backend.holder(conversation_id)
        except Exception:
            return None

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task


def _busy(conversation_id: str, holder: str | None) -> ConversationBusy:
    return ConversationBusy(
        f"Conversation {conversation_id!r} is running another turn.",
        extra={"run_id": holder},
    )
