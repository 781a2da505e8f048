"""T-2 (outside tester): on PostgreSQL the coordination's one-statement driver calls
(`SqlClock.postgres_statement`: a run's creation, event batches, run-row writes;
`SqlLeaseBackend._one_driver`: lease acquire/renew/release) are bounded by
PARLEY_STORE_TIMEOUT_S like the store's (`sql_driver.bounded_postgres_driver`, one copy).
Measured live before the fix behind a TCP proxy holding only the run-creation statement
(PARLEY_STORE_TIMEOUT_S=2): no answer after 20 s. README (Scaling, Failures): "Every store
and coordination call is bounded by PARLEY_STORE_TIMEOUT_S".

The stall is simulated by a driver whose statements carrying `run.created` (the run's
creation, fused with its lease try) never answer, what asyncpg does while its bytes sit
in a stalled TCP connection; every other statement (the store's) runs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from app.coordination import sql_clock, sql_locks
from app.settings import Settings
from app.stores import sql_driver
from tests.api.backends import app_on

pytestmark = pytest.mark.postgres


class _StallingDriver:
    """asyncpg, except that a statement whose arguments mention `marker` never answers."""

    def __init__(self, real: Any, marker: str) -> None:
        self._real, self._marker = real, marker

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._real, name)
        if name not in ("execute", "fetch", "fetchrow", "fetchval"):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            if any(self._marker in str(arg) for arg in args):
                await asyncio.Event().wait()
            return await attr(*args, **kwargs)

        return call


def _stall_statements_with(monkeypatch: pytest.MonkeyPatch, marker: str) -> None:
    real = sql_driver.pooled_postgres_driver

    @asynccontextmanager
    async def stalling(engine: Any) -> AsyncIterator[Any]:
        async with real(engine) as driver:
            yield _StallingDriver(driver, marker)

    monkeypatch.setattr(sql_driver, "pooled_postgres_driver", stalling)
    # (before the fix these checked out through their own import of it)
    for module in (sql_clock, sql_locks):
        monkeypatch.setattr(module, "pooled_postgres_driver", stalling, raising=False)


async def test_a_turn_whose_run_creation_stalls_answers_503_within_a_few_store_timeouts(
    settings_factory: Callable[..., Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with app_on("postgres", tmp_path, settings_factory(store_timeout_s=1.0)) as client:
        r = await client.post(
            "/conversations",
            json={"pack_id": "general-assistant", "prompt_name": "chat", "user_id": "t"},
        )
        assert r.status_code == 201, r.text
        cid = r.json()["id"]
        _stall_statements_with(monkeypatch, "run.created")
        send = asyncio.create_task(
            client.post(f"/conversations/{cid}/messages", json={"content": "hi"})
        )
        done, _ = await asyncio.wait({send}, timeout=6.0)
        monkeypatch.undo()
        if not done:
            send.cancel()
        assert done, "no answer within 6 s (store timeout 1 s): the run creation is unbounded"
        r = send.result()
        assert r.status_code == 503 and r.json()["code"] == "store_unavailable", r.text
        # the conversation is usable again once the link is
        r = await client.post(f"/conversations/{cid}/messages", json={"content": "again"})
        assert r.status_code == 200, r.text
