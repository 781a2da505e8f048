"""A cancel that lands after a turn's commit (in what follows it: media, checkpoints, the
lock's release) does not make the committed run `cancelled`: the run completes, and a
same-key retry returns it instead of running the turn again (`past_cancelling` in
`app.manager.turns`; found by the outside tester: clients hanging up with
`on_disconnect: cancel` right after `message.completed`, and interrupts)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.domain import Message
from app.settings import Settings
from tests.api.backends import state_url_for
from tests.api.helpers import create_conv
from tests.conftest import app_and_manager


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_a_cancel_right_after_the_commit_leaves_the_run_completed(
    backend: str,
    tmp_path: Path,
    settings_factory: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with (
        state_url_for(backend, tmp_path) as url,
        app_and_manager(settings_factory(state_url=url)) as (client, manager),
    ):
        conv = await create_conv(client)
        base = f"/conversations/{conv['id']}"
        cancels: list[Any] = []
        attached = manager.media.attached

        async def cancel_then_attach(messages: list[Message], *args: Any) -> Any:
            """Called right after the commit: an interrupting send arrives now (it cancels
            the lock's holder directly; `POST .../cancel` would see the commit and not)."""
            if not cancels:
                interrupt = {"content": "interrupt", "if_busy": "interrupt"}
                cancels.append(asyncio.create_task(client.post(f"{base}/messages", json=interrupt)))
                await asyncio.sleep(0.2)  # the cancel lands while the run is here
            return await attached(messages, *args)

        monkeypatch.setattr(manager.media, "attached", cancel_then_attach)
        body = {"content": "once"}
        headers = {"Idempotency-Key": "after-commit"}
        r = await client.post(f"{base}/messages", json=body, headers=headers)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "completed", r.json()
        assert cancels and (await cancels[0]).status_code == 200  # it ran after the first
        run = (await client.get(f"{base}/runs/{r.json()['run_id']}")).json()
        assert run["status"] == "completed", run
        again = await client.post(f"{base}/messages", json=body, headers=headers)
        assert again.json()["run_id"] == r.json()["run_id"]
        contents = [m["content"] for m in (await client.get(f"{base}/messages")).json()["data"]]
        assert contents.count("once") == 1 and contents.count("interrupt") == 1, contents
