"""A stream ends with its run's terminal event when the store vanishes mid-run: the
executing instance answers from memory.

Found by the outside tester (after 93f63a1): Redis (state + coordination) behind a
proxy switched to a black hole while 100 streamed turns ran (mock 200 ms/token). The
executing instance ended every run `failed` (store_unavailable) ~9 s in and logged it,
but all 100 SSE bodies were cut ~44 s in ("incomplete chunked read", no terminal event):
the follow retried the unreadable log for OUTAGE_S (30 s) and then raised.

The outcome was known in the executing instance's memory (README "answers for the run
from memory meanwhile"; "A run always ends ... its stream ends with that terminal
event"); its own followers could get `run.failed` from there.

The test shortens OUTAGE_S to 2 s (follow_checked's `outage_s`) and store timeouts to 1 s.
Expected: the stream ends with a terminal event.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

import app.manager.runs
from tests.api.helpers import create_conv
from tests.api.sse_parse import parse_sse
from tests.blackhole import blackhole_proxy
from tests.conftest import make_settings, running_app
from tests.contract.cluster import delete_prefixed
from tests.services import check_redis, redis_url

TERMINAL = {"run.completed", "run.failed", "run.cancelled", "run.requires_action"}


async def test_a_stream_ends_with_a_terminal_event_when_the_store_vanishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        app.manager.runs,
        "follow_checked",
        functools.partial(app.manager.runs.follow_checked, outage_s=2.0),
    )
    url = redis_url()
    await check_redis(url)
    prefix = f"parley-test-found-{uuid.uuid4().hex[:12]}:"
    parts = urlsplit(url)
    try:
        async with blackhole_proxy(parts.hostname or "127.0.0.1", parts.port or 6379) as proxy:
            through = f"redis://127.0.0.1:{proxy.port}{parts.path}?prefix={prefix}"
            settings = make_settings(
                tmp_path, state_url=through, store_timeout_s=1.0, mock_delay_ms=100,
                run_recheck_s=0.5,
            )  # fmt: skip
            async with running_app(settings) as client:
                conv = await create_conv(client)
                body: list[str] = []

                async def stream() -> Any:
                    async with client.stream(
                        "POST",
                        f"/conversations/{conv['id']}/messages",
                        json={"content": "one two three four five six seven", "stream": True},
                    ) as r:
                        async for chunk in r.aiter_text():
                            body.append(chunk)

                task = asyncio.create_task(stream())
                await asyncio.sleep(0.4)  # a few deltas are out
                proxy.blackhole()
                try:
                    await asyncio.wait_for(task, 30)
                except TimeoutError:
                    pytest.fail("the stream did not end within 30 s")
                except Exception as exc:  # the ASGI transport surfaces a cut body as an error
                    pytest.fail(f"stream cut (no terminal event): {exc!r}")
                kinds = [e.event for e in parse_sse("".join(body))]
                assert kinds and kinds[-1] in TERMINAL, kinds
                assert kinds[-1] == "run.failed", kinds  # nothing could be committed
    finally:
        await delete_prefixed(url, prefix)
