"""The start-up heap is frozen while the app serves (`app.gc_freeze`) and thawed when it
stops, so that full collections during serving walk only what serving allocated."""

from __future__ import annotations

import gc
from collections.abc import Callable

from app.settings import Settings
from tests.conftest import running_app


async def test_the_startup_heap_is_frozen_while_serving(
    settings_factory: Callable[..., Settings],
) -> None:
    gc.unfreeze()
    async with running_app(settings_factory()) as client:
        assert gc.get_freeze_count() > 10_000  # modules, routes, validators, packs
        assert (await client.get("/healthz")).status_code == 200
    assert gc.get_freeze_count() == 0
