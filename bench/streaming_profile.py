"""Where the server's CPU goes in a streaming round (bench/streaming.py `--py-spy RAW`).

py-spy records the server's GIL-held samples (CPU, not waiting) over the measured rounds of
the instrumented phase. Each sample is put in one stage of a streamed turn by a frame of
its stack that names a stage (`STAGES`, in their order), so the shares add up to 100 %:

* `turn open`: the HTTP request up to the provider's first call (validation, the run
  service, the executor's conversation read, context window);
* `per token`: the provider stream, the arrival batching, publishing a delta, the
  follower and the SSE response writing it;
* `commit + end`: the store's commit after the last token, recording the run's end and
  its terminal event;
* `SQL in its own task or thread`: the SQLite group commit's task, aiosqlite's thread;
* `HTTP protocol` (uvicorn and httptools outside the app), `event loop` (uvloop itself
  and asyncio's plumbing with no app frame), `other`.

With the phase's server CPU seconds and counts of streams and tokens, a share becomes CPU
ms per turn (open, commit) and CPU µs per token.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.profile_turns import parse_raw

# stage -> frame fragments, checked in this order: a sample is in the first stage one of
# whose fragments is in any frame of its stack
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "commit + end",
        ("TurnExecutor._commit", "TurnExecutor._finish", "RunEndRecorder", "past_cancelling"),
    ),
    (
        "per token",
        (
            "ProviderCaller._consume",
            "batches (app/manager/provider_stream.py)",
            "pump (app/manager/provider_stream.py)",
            "MockProvider.stream",
            "follow_checked",
            "_frames (app/api/sse.py)",
            "_stream_response (sse_starlette",
            "RunEventStream._stream",
            "timed_frame",
            "(app/coordination/local_fanout.py)",
            "MemoryRunLog.follow",
            "MemoryRunLog.publish",
            "timed_frames",
            "stream (bench/streaming_app.py)",
        ),
    ),
    (
        "turn open",
        (
            "TurnExecutor",
            "TurnRequests",
            "RunService",
            "RunTasks",
            "(fastapi/",
            "(starlette/",
            "(app/api/",
            "(sse_starlette/",
            "(app/api/sse_response.py)",
        ),
    ),
    ("SQL in its own task or thread", ("(app/coordination/sql_", "(aiosqlite/", "(app/stores/")),
    ("HTTP protocol", ("(uvicorn/", "httptools")),
)
STAGE_NAMES = (*(s for s, _ in STAGES), "event loop", "other")


def stage_of(frames: Sequence[str]) -> str:
    """The stage of one sample (its frames, root first), see `STAGES`. A sample without
    Python frames is the event loop's native code (uvloop: callbacks, socket writes)."""
    for stage, fragments in STAGES:
        if any(fragment in frame for frame in frames for fragment in fragments):
            return stage
    if not [f for f in frames if f.strip()] or any(
        "(asyncio/" in f or "Runner.run" in f for f in frames[-2:]
    ):
        return "event loop"
    return "other"


def stage_shares(path: Path) -> dict[str, Any]:
    """Samples per stage and the top self frames of each (for reading the profile)."""
    counts: Counter[str] = Counter()
    leaves: dict[str, Counter[str]] = {}
    total = 0
    for frames, n in parse_raw(path):
        stage = stage_of(frames)
        counts[stage] += n
        leaves.setdefault(stage, Counter())[frames[-1]] += n
        total += n
    if not total:
        return {"samples": 0}
    names = STAGE_NAMES
    return {
        "samples": total,
        "share_pct": {s: round(100 * counts[s] / total, 1) for s in names},
        "top_self": {
            s: [(f, round(100 * v / total, 1)) for f, v in leaves.get(s, Counter()).most_common(8)]
            for s in names
        },
    }


def per_unit(shares: dict[str, Any], cpu_s: float, streams: int, tokens: int) -> dict[str, float]:
    """CPU per turn (ms) of the turn stages and per token (µs) of the token stage."""
    pct = shares.get("share_pct") or {}
    if not pct or not streams or not tokens:
        return {}
    return {
        "turn_open_cpu_ms_per_turn": round(cpu_s * pct["turn open"] / 100 / streams * 1e3, 3),
        "commit_cpu_ms_per_turn": round(cpu_s * pct["commit + end"] / 100 / streams * 1e3, 3),
        "http_cpu_ms_per_turn": round(cpu_s * pct["HTTP protocol"] / 100 / streams * 1e3, 3),
        "per_token_cpu_us": round(cpu_s * pct["per token"] / 100 / tokens * 1e6, 1),
        "event_loop_cpu_us_per_token": round(cpu_s * pct["event loop"] / 100 / tokens * 1e6, 1),
    }


async def start_py_spy(pid: int, out: Path | None, rate: int) -> asyncio.subprocess.Process | None:
    """py-spy recording `pid` into `out` (raw format, GIL-held samples), or None."""
    if out is None:
        return None
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    spy = await asyncio.create_subprocess_exec(
        *(exe, "record", "-p", str(pid), "-o", str(out), "-f", "raw", "-r", str(rate)),
        *("--gil", "--nonblocking"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await asyncio.sleep(1.5)  # py-spy attaches
    return spy


async def stop_py_spy(spy: asyncio.subprocess.Process | None) -> None:
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        await spy.wait()
