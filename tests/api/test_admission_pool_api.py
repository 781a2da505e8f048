"""The admission gate's default size follows the store's connection pool: on PostgreSQL a
quarter of `pool_size + max_overflow` (7 with the default 10 + 20), elsewhere 32, and an
explicit `PARLEY_ADMISSION_CONCURRENCY` wins. With the gate at 32 over PostgreSQL's 30
connections, the framework benchmark's overload (250-1,000 concurrent streams) made turns
fail with 503 `store_unavailable` from pool starvation instead of queueing at the gate."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.api.backends import ALL_BACKENDS, state_url_for
from tests.conftest import app_and_manager, make_settings


@pytest.mark.parametrize("backend", ALL_BACKENDS)
async def test_default_gate_size_per_store(backend: str, tmp_path: Path) -> None:
    async with (
        state_url_for(backend, tmp_path) as url,
        app_and_manager(make_settings(tmp_path, state_url=url)) as (_, manager),
    ):
        assert manager.admission.concurrency == (7 if backend == "postgres" else 32)


async def test_the_gate_follows_the_configured_pool_and_setting(tmp_path: Path) -> None:
    async with state_url_for("postgres", tmp_path) as url:
        pooled = make_settings(
            tmp_path, state_url=url, database_pool_size=20, database_max_overflow=60
        )
        async with app_and_manager(pooled) as (_, manager):
            assert manager.admission.concurrency == 20
        explicit = make_settings(tmp_path, state_url=url, admission_concurrency=32)
        async with app_and_manager(explicit) as (_, manager):
            assert manager.admission.concurrency == 32
