"""A real browser on another origin: headless Chromium (Debian's `/usr/bin/chromium`,
driven by `playwright-core`) loads a page from `http://127.0.0.1:<page port>`, which
POSTs a streaming send with `fetch()` and reads the deltas as they arrive, then replays the
run with `EventSource`, which must stop by itself. The same page from an origin that is not
in `PARLEY_CORS_ORIGINS` is blocked by the browser."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.api.sse import SSE_RETRY_MS
from tests.clients.tools import chromium, node_tools, run
from tests.e2e.server import free_port, uvicorn_server

pytestmark = pytest.mark.e2e
MOCK_DELAY_MS = 40


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int, int]]:
    data = tmp_path_factory.mktemp("browser")
    allowed, blocked = free_port(), free_port()
    env = {
        "PARLEY_STATE_URL": f"sqlite+aiosqlite:///{data}/parley.db",
        "PARLEY_MEDIA_DIR": str(data / "media"),
        "PARLEY_CORS_ORIGINS": f"http://127.0.0.1:{allowed}",
        "PARLEY_MOCK_DELAY_MS": str(MOCK_DELAY_MS),
    }
    with uvicorn_server(env) as url:
        yield url, allowed, blocked


def _browse(pages: tuple[str, int, int], tmp: Path) -> dict[str, Any]:
    browser = chromium()
    ts = node_tools()
    url, allowed, blocked = pages
    out = run(
        ["node", "run.mjs", "browser_check.ts"],
        cwd=ts,
        env={
            "PARLEY_URL": url,
            "PAGE_PORT_ALLOWED": str(allowed),
            "PAGE_PORT_BLOCKED": str(blocked),
            "CHROMIUM": str(browser),
            "TMPDIR": str(tmp),
        },
        timeout=120,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_page_on_another_origin_streams_and_replays(
    pages: tuple[str, int, int], browser_tmp: Path
) -> None:
    result = _browse(pages, browser_tmp)
    send = result["allowed"]["send"]
    events = send["events"]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "run.created" and kinds[-1] == "run.completed", kinds
    assert send["runId"] == events[0]["data"]["run"]["id"], "X-Run-Id is exposed to the page"
    deltas = [e for e in events if e["event"] == "message.delta"]
    terminal = events[-1]
    assert len(deltas) >= 3, kinds
    assert "".join(d["data"]["delta"] for d in deltas) == (
        "echo: one two three four five six seven eight"
    )
    # read incrementally: the first delta reached the page well before the end
    assert terminal["at"] - deltas[0]["at"] >= 2 * MOCK_DELAY_MS, events

    replay = result["allowed"]["replay"]
    assert [e["event"] for e in replay["events"]] == kinds[: len(replay["events"])]
    assert replay["events"][-1]["event"] == "run.completed"
    assert not replay.get("timedOut"), replay
    assert replay["opens"] == 1, "the EventSource reconnected to a finished run"
    assert replay["finalState"] == 2, "EventSource.CLOSED: it stopped by itself"
    assert replay["closedAt"] >= SSE_RETRY_MS * 0.8, "it closed after one reconnect (204)"

    assert "Failed to fetch" in result["refused"], result["refused"]
