"""The backend contract of lease locks (`app.coordination.lease_locks`): the lease's
identity, what an acquisition attempt found, the backend's one-round-trip operations
(`LeaseBackend`, one implementation per backend: redis_locks.py, sql_locks.py) and the
lease timing. Waiting, renewing and giving up live in lease_locks.py."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass


@dataclass(frozen=True)
class LeaseId:
    """Who holds (or wants) a conversation's lock; `token` is unique per acquisition."""

    conversation_id: str
    run_id: str
    token: str


@dataclass(frozen=True)
class Attempt:
    """What one acquisition attempt found: `acquired`, else the `holder`'s run id; `seq`,
    when acquired, the conversation's acquisition counter after it (lease_locks module
    docstring, *stamps*; None from a backend that keeps none)."""

    acquired: bool
    holder: str | None = None
    seq: int | None = None


class LeaseBackend(ABC):
    """The shared half of lease locks: each call is one atomic backend operation.

    Unreachable-backend errors are raised as `app.errors.StoreUnavailable`."""

    @abstractmethod
    async def try_acquire(self, lease: LeaseId, lease_s: float) -> Attempt:
        """Take the lock if it is free or expired (and bump its counter); else say who
        holds it."""

    @abstractmethod
    async def renew(self, lease: LeaseId, lease_s: float) -> bool:
        """Extend the lease if it is still ours and unexpired; False if the token is gone
        or the lease expired (even if nobody took it since: its holder counts it lost)."""

    @abstractmethod
    async def release(self, lease: LeaseId) -> bool:
        """Free the lock if the lease is still ours (True), leaving its counter as is."""

    @abstractmethod
    async def holder(self, conversation_id: str) -> str | None:
        """The run id of the current (unexpired) holder."""

    def acquire_step(
        self, lease: LeaseId, lease_s: float, client: object
    ) -> tuple[list[str], list[str | int]] | None:
        """`try_acquire` as the keys and arguments of a `LeaseOffer` on `client`, when this
        backend is that client's (`TurnLocks.offer`); else None."""
        return None

    def release_key(self, lease: LeaseId, client: object) -> tuple[str, str] | None:
        """`release` as the (key, value) of a `LeaseRelease` on `client`, when this
        backend is that client's (`TurnLease.take_release`); else None."""
        return None


@dataclass(frozen=True)
class LeaseTiming:
    """lease_s: how long a lease outlives its holder's last renewal (crash recovery time).
    poll_min_s / poll_max_s: backoff bounds of a waiter polling the backend."""

    lease_s: float = 10.0
    poll_min_s: float = 0.005
    poll_max_s: float = 0.05

    @property
    def renew_every_s(self) -> float:
        return self.lease_s / 3
