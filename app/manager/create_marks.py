"""Which `Idempotency-Key`ed conversation creations finished.

A retry of `POST /conversations` with the key of an earlier request looks the key's
conversation up. Not finding it means either that the first request is still creating it
(wait for it) or that it was created and deleted since; then the key is the client's
again and the retry creates afresh (outside tester T17: it answered 404 for the key's
24 h, so a client with deterministic keys could never re-create a deleted conversation).
A finished creation leaves a mark under `<scope>:done` with the same ref, which tells the
two apart. Keys can only be reserved (first writer wins) and forgotten, not read: a probe
reserves an empty ref, which no conversation id equals, and takes itself back. A missing
mark (a coordination error while writing it, a probe racing the mark) leaves the old
behaviour: the retry waits and answers 404.
"""

from __future__ import annotations

import contextlib

from app.coordination.base import IdempotencyKeys, IdempotencyRecord
from app.errors import StoreUnavailable

_PROBE = IdempotencyRecord(fingerprint="probe", ref="")


class CreateMarks:
    def __init__(self, keys: IdempotencyKeys, ttl_s: float) -> None:
        self._keys = keys
        self._ttl_s = ttl_s

    async def mark(self, scope: str, key: str, record: IdempotencyRecord) -> None:
        with contextlib.suppress(StoreUnavailable):
            await self._keys.reserve(f"{scope}:done", key, record, ttl_s=self._ttl_s)

    async def finished(self, scope: str, key: str, ref: str) -> bool:
        found = await self._keys.reserve(f"{scope}:done", key, _PROBE, ttl_s=60)
        if found is None:
            await self._keys.forget(f"{scope}:done", key, ref="")
            return False
        return found.ref == ref

    async def release(self, scope: str, key: str, ref: str) -> None:
        """Free the key of the deleted conversation `ref` and its mark."""
        await self._keys.forget(scope, key, ref=ref)
        await self._keys.forget(f"{scope}:done", key, ref=ref)
