"""IdempotencyKeys contract: first writer wins, per scope, with a time to live."""

from __future__ import annotations

import asyncio

from app.coordination.base import IdempotencyRecord
from tests.contract.coordination.conftest import IdempotencyEnv


def record(ref: str, fingerprint: str = "fp-1") -> IdempotencyRecord:
    return IdempotencyRecord(fingerprint=fingerprint, ref=ref, extra={"n": 1, "tags": ["a"]})


async def test_first_writer_wins(idempotency_env: IdempotencyEnv) -> None:
    keys = await idempotency_env.new()
    assert await keys.reserve("s", "k", record("run-1"), ttl_s=60) is None
    existing = await keys.reserve("s", "k", record("run-2", "fp-2"), ttl_s=60)
    assert existing == record("run-1")
    assert await keys.reserve("other-scope", "k", record("run-3"), ttl_s=60) is None
    assert await keys.reserve("s", "k2", record("run-4"), ttl_s=60) is None


async def test_concurrent_reservations_have_one_winner(idempotency_env: IdempotencyEnv) -> None:
    a, b = await idempotency_env.new(), await idempotency_env.new()
    results = await asyncio.gather(
        *((a if i % 2 else b).reserve("s", "k", record(f"run-{i}"), ttl_s=60) for i in range(20))
    )
    winners = [i for i, r in enumerate(results) if r is None]
    assert len(winners) == 1
    assert all(r == record(f"run-{winners[0]}") for r in results if r is not None)


async def test_forget_only_removes_its_own_ref(idempotency_env: IdempotencyEnv) -> None:
    keys = await idempotency_env.new()
    await keys.reserve("s", "k", record("run-1"), ttl_s=60)
    await keys.forget("s", "k", ref="run-other")
    assert await keys.reserve("s", "k", record("run-2"), ttl_s=60) == record("run-1")
    await keys.forget("s", "k", ref="run-1")
    assert await keys.reserve("s", "k", record("run-2"), ttl_s=60) is None
    await keys.forget("s", "missing", ref="run-1")  # no record: nothing happens


async def test_records_expire_after_their_ttl(idempotency_env: IdempotencyEnv) -> None:
    keys = await idempotency_env.new()
    await keys.reserve("s", "k", record("run-1"), ttl_s=0.2)
    await asyncio.sleep(0.3)
    assert await keys.reserve("s", "k", record("run-2"), ttl_s=60) is None
