"""A reply's last `message.delta` (the text that arrived with the completion's finish) is
published together with its `message.completed`, in one step of the event log
(`RunLog.publish_many`: one round trip on Redis); earlier deltas still go out as they
arrive. The events a client sees are the same: every delta, then `message.completed`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.settings import Settings
from tests.api.backends import state_url_for
from tests.api.helpers import create_conv
from tests.api.test_streaming_api import stream
from tests.api.test_turn_reads_api import counting_app


@pytest.mark.parametrize("delay_ms", [0, 5])
async def test_the_last_delta_goes_with_message_completed(
    delay_ms: int, tmp_path: Path, settings_factory: Callable[..., Settings]
) -> None:
    async with (
        state_url_for("memory", tmp_path) as url,
        counting_app(settings_factory(state_url=url, mock_delay_ms=delay_ms)) as (
            client,
            manager,
            _,
        ),
    ):
        runs = manager.coordinator.runs
        calls: list[Any] = []
        publish, publish_many = runs.publish, runs.publish_many

        inside = [False]  # (the default `publish_many` calls `publish`: not counted)

        async def one(run_id: str, type_: str, data: dict[str, Any]) -> Any:
            if not inside[0]:
                calls.append(type_)
            return await publish(run_id, type_, data)

        async def many(run_id: str, events: list[tuple[str, dict[str, Any]]]) -> Any:
            calls.append([type_ for type_, _ in events])
            inside[0] = True
            try:
                return await publish_many(run_id, events)
            finally:
                inside[0] = False

        runs.publish, runs.publish_many = one, many  # type: ignore[method-assign]
        conv = await create_conv(client)
        _, events = await stream(client, conv["id"], {"content": "hello big world"})
        together = [i for i, c in enumerate(calls) if isinstance(c, list)]
        assert [calls[i] for i in together] == [["message.delta", "message.completed"]], calls
        assert "message.completed" not in calls and "message.delta" not in calls[together[0] :]
        types = [e.event for e in events]
        assert types[-2:] == ["message.completed", "run.completed"] and types[-3] == "message.delta"
        deltas = [e.data["delta"] for e in events if e.event == "message.delta"]
        assert "".join(deltas) == "echo: hello big world"
        if delay_ms:  # the tokens before the last went out one by one, as they came
            assert calls.count("message.delta") == len(deltas) - 1 >= 2, calls
        else:  # every token at once: one delta, the last
            assert len(deltas) == 1 and "message.delta" not in calls, calls
