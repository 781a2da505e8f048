"""T-2 (outside tester): the PostgreSQL coordination's driver statements are bounded by
PARLEY_STORE_TIMEOUT_S as the store's are (`sql_driver.bounded_postgres_driver`): a lease
acquisition whose link stalls is `StoreUnavailable` within the bound, not a hang. (The run
creation's bound is checked end to end in tests/api/test_pg_coordination_bounded_api.py.)"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from app.coordination.factory import build_coordinator
from app.errors import StoreUnavailable
from app.stores.sql import SqlStore
from tests.api.test_pg_coordination_bounded_api import _stall_statements_with
from tests.conftest import make_settings
from tests.contract.coordination.conftest import clear_sql_coordination

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("postgres_scratch"))


async def test_a_stalled_lease_acquisition_is_store_unavailable_within_the_store_timeout(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await clear_sql_coordination(pg_url)
    settings = make_settings(tmp_path, state_url=pg_url, store_timeout_s=1.0)
    store = SqlStore(pg_url, timeout_s=1.0)
    await store.open()
    coordinator = build_coordinator(settings, store)
    try:
        _stall_statements_with(monkeypatch, "turn_leases")
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await asyncio.wait_for(coordinator.locks.acquire("conv-1", "run-1", wait_s=0), 5)
        assert time.monotonic() - started < 2.0
        monkeypatch.undo()
        lease = await coordinator.locks.acquire("conv-1", "run-2", wait_s=0)
        await lease.release()
    finally:
        monkeypatch.undo()
        await coordinator.close()
        await store.close()
