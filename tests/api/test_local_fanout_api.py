"""A streamed turn on a shared event log (Redis, PostgreSQL) reaches its SSE response from
the executing instance's memory, without reading the log back; the log still holds every
event, so a later reader of the run's events gets the same stream from it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

import app.lifespan
from app.coordination.base import Coordinator, RunEvent
from app.coordination.local_fanout import LocalFanout
from app.settings import Settings
from app.stores.base import StateStore
from tests.api.backends import app_on
from tests.api.helpers import create_conv
from tests.api.sse_parse import parse_sse


@pytest.fixture
def log_follows(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Run ids whose events were read from the shared log (not from memory)."""
    follows: list[str] = []
    real = app.lifespan.build_coordinator

    def build(settings: Settings, store: StateStore) -> Coordinator:
        coordinator = real(settings, store)
        assert isinstance(coordinator.runs, LocalFanout)
        inner = coordinator.runs.inner
        inner_follow = inner.follow

        def follow(run_id: str, *, after: int) -> AsyncIterator[RunEvent]:
            follows.append(run_id)
            return inner_follow(run_id, after=after)

        monkeypatch.setattr(inner, "follow", follow)
        return coordinator

    monkeypatch.setattr(app.lifespan, "build_coordinator", build)
    return follows


@pytest.mark.parametrize("backend", ["redis", "postgres"])
async def test_a_streamed_turn_is_fanned_out_from_memory_and_logged(
    backend: str,
    tmp_path: Path,
    settings_factory: Callable[..., Settings],
    log_follows: list[str],
) -> None:
    async with app_on(backend, tmp_path, settings_factory(mock_delay_ms=5)) as client:
        conv = await create_conv(client)
        r = await client.post(
            f"/conversations/{conv['id']}/messages",
            json={"content": "one two three", "stream": True},
        )
        assert r.status_code == 200, r.text
        streamed = parse_sse(r.text)
        run_id = r.headers["X-Run-Id"]
        kinds = [e.event for e in streamed]
        assert kinds[0] == "run.created" and kinds[-1] == "run.completed"
        assert kinds.count("message.delta") >= 4
        assert "".join(e.data["delta"] for e in streamed if e.event == "message.delta") == (
            "echo: one two three"
        )
        assert [e.id for e in streamed] == [str(i) for i in range(1, len(streamed) + 1)]
        assert log_follows == []  # the stream never read the log

        replay = await client.get(f"/conversations/{conv['id']}/runs/{run_id}/events")
        assert replay.status_code == 200, replay.text
        logged: list[Any] = [(e.id, e.event, e.data) for e in parse_sse(replay.text)]
        assert logged == [(e.id, e.event, e.data) for e in streamed]
        assert log_follows == [run_id]
