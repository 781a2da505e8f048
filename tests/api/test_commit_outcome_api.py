"""Found by the outside tester: 500 concurrent streamed turns on PostgreSQL (one instance,
pool exhausted). 2 of 500 streams ended with `run.failed` (store_unavailable) and the
run's record stays `failed`, yet the conversation holds the turn's user message and
reply (message_count 2, the reply's run_id is the failed run's). The store call that
committed timed out on the client side after PostgreSQL had committed it.

README "The commit is the truth. A run whose messages were committed is `completed` ...
whatever else failed": a client told `failed` retries and the turn is stored twice.

Reproduction: the commit (`append_messages`) lands, then its answer is lost (raises
StoreUnavailable, as a timeout around COMMIT does). Expected: the run is `completed`
(its answer, its record) since its messages are committed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.errors import StoreUnavailable
from app.settings import Settings
from tests.api.backends import state_url_for
from tests.api.export_helpers import app_with_store
from tests.api.helpers import create_conv


@pytest.mark.parametrize("backend", ["postgres", "redis"])
async def test_a_turn_whose_commit_landed_but_answered_an_error_is_completed(
    backend: str,
    tmp_path: Path,
    settings_factory: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with (
        state_url_for(backend, tmp_path) as url,
        app_with_store(settings_factory(state_url=url, run_recheck_s=0.5)) as (client, store),
    ):
        conv = await create_conv(client)
        real = store.append_messages

        async def commit_then_lose_the_answer(*args: Any, **kwargs: Any) -> Any:
            await real(*args, **kwargs)
            raise StoreUnavailable("The state store is unavailable: TimeoutError")

        monkeypatch.setattr(store, "append_messages", commit_then_lose_the_answer)
        r = await client.post(f"/conversations/{conv['id']}/messages", json={"content": "hi"})
        monkeypatch.setattr(store, "append_messages", real)

        stored = (await client.get(f"/conversations/{conv['id']}")).json()
        assert stored["message_count"] == 2  # the turn is committed
        msgs = (await client.get(f"/conversations/{conv['id']}/messages")).json()["data"]
        run_id = msgs[-1]["run_id"]
        record = (await client.get(f"/conversations/{conv['id']}/runs/{run_id}")).json()
        assert (r.status_code, record["status"]) == (200, "completed"), (r.text, record)


@pytest.mark.parametrize("backend", ["postgres", "redis"])
async def test_a_turn_whose_commit_failed_without_landing_is_failed(
    backend: str,
    tmp_path: Path,
    settings_factory: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with (
        state_url_for(backend, tmp_path) as url,
        app_with_store(settings_factory(state_url=url, store_timeout_s=0.3)) as (client, store),
    ):
        conv = await create_conv(client)

        async def lose_the_commit(*args: Any, **kwargs: Any) -> Any:
            raise StoreUnavailable("The state store is unavailable: TimeoutError")

        monkeypatch.setattr(store, "append_messages", lose_the_commit)
        r = await client.post(f"/conversations/{conv['id']}/messages", json={"content": "hi"})
        monkeypatch.undo()

        stored = (await client.get(f"/conversations/{conv['id']}")).json()
        assert (r.status_code, r.json()["code"], stored["message_count"]) == (
            503,
            "store_unavailable",
            0,
        ), r.text
