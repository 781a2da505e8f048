"""Found by the outside tester (500 concurrent streamed turns on PostgreSQL, pool
exhausted): 7 of 500 SSE responses were cut short ("incomplete chunked read", no terminal
event; the log shows "Exception in ASGI application" / "response already started").

Path: a publish fails (StoreUnavailable) -> LocalFanout breaks the run's channel -> the
follower continues from the shared log -> that read fails too (StoreUnavailable) ->
follow_checked re-raises -> the SSE body is cut. README "A run always ends ... its
stream ends with that terminal event" is not held.

Expected: the stream still ends with exactly one terminal event (run.failed with
store_unavailable, or whatever the record settles to), never a cut body.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

import app.lifespan
from app.coordination.base import TERMINAL_EVENTS, Coordinator, RunEvent
from app.coordination.local_fanout import LocalFanout
from app.errors import StoreUnavailable
from app.settings import Settings
from app.stores.base import StateStore
from tests.api.backends import app_on
from tests.api.helpers import create_conv
from tests.api.sse_parse import parse_sse


@pytest.fixture
def flaky_log(monkeypatch: pytest.MonkeyPatch) -> None:
    """The 3rd event publish of every run fails, and so does the first log read after."""
    real = app.lifespan.build_coordinator

    def build(settings: Settings, store: StateStore) -> Coordinator:
        coordinator = real(settings, store)
        assert isinstance(coordinator.runs, LocalFanout)
        inner = coordinator.runs.inner
        inner_publish, inner_follow = inner.publish, inner.follow
        counts: dict[str, int] = {}
        failed_reads: set[str] = set()

        async def publish(run_id: str, type_: str, data: dict[str, Any]) -> RunEvent:
            counts[run_id] = counts.get(run_id, 0) + 1
            if counts[run_id] == 2:  # (run.created went through create_and_publish)
                raise StoreUnavailable("QueuePool limit reached (simulated)")
            return await inner_publish(run_id, type_, data)

        async def follow(run_id: str, *, after: int) -> AsyncIterator[RunEvent]:
            if run_id not in failed_reads:
                failed_reads.add(run_id)
                raise StoreUnavailable("QueuePool limit reached (simulated)")
            async for event in inner_follow(run_id, after=after):
                yield event

        monkeypatch.setattr(inner, "publish", publish)
        monkeypatch.setattr(inner, "follow", follow)
        return coordinator

    monkeypatch.setattr(app.lifespan, "build_coordinator", build)


@pytest.mark.usefixtures("flaky_log")
@pytest.mark.parametrize("backend", ["postgres", "redis"])
async def test_a_stream_whose_log_read_fails_still_ends_with_a_terminal_event(
    backend: str, tmp_path: Path, settings_factory: Callable[..., Settings]
) -> None:
    async with app_on(backend, tmp_path, settings_factory(mock_delay_ms=5, run_recheck_s=0.5)) as c:
        conv = await create_conv(c)
        try:
            r = await c.post(
                f"/conversations/{conv['id']}/messages",
                json={"content": "one two three four five", "stream": True},
            )
        except Exception as exc:  # the ASGI transport surfaces a cut body as the app's error
            pytest.fail(f"the SSE body was cut short: {exc!r}")
        assert r.status_code == 200, r.text
        kinds = [e.event for e in parse_sse(r.text)]
        assert kinds and kinds[-1] in TERMINAL_EVENTS, kinds
