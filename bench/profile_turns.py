"""Profile Parley's turn loop: a real uvicorn, one conversation, N sequential turns; prints
latency and server CPU per window of turns (so drift over the life of a process shows) and,
with `--py-spy`, records the server with py-spy and prints where its CPU goes.

    .venv/bin/python bench/profile_turns.py --store sqlite --turns 4000 --window 500
    .venv/bin/python bench/profile_turns.py --store postgres --turns 1500 --py-spy /tmp/pg.txt

py-spy is not a project dependency: `uv pip install --python .venv/bin/python py-spy`.
`--py-spy` samples only while the GIL is held (`--gil`), so the profile is CPU, not waiting.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import shutil
import signal
import statistics
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import httpx

from bench.common import random_text
from bench.servers import parley_env, uvicorn_server
from bench.stats import percentile
from bench.stores import STORES, provisioned_store
from bench.turns_parley import create_conversations, http_turn, prefill

# Leaf frames are attributed to the first library whose path fragment their file contains.
CATEGORIES = (
    ("sqlalchemy/", "sqlalchemy"),
    ("aiosqlite/", "aiosqlite"),
    ("asyncpg/", "asyncpg"),
    ("redis/", "redis"),
    ("pydantic", "pydantic"),
    ("fastapi/", "fastapi"),
    ("sse_starlette/", "sse-starlette"),
    ("starlette/", "starlette"),
    ("uvicorn/", "uvicorn"),
    ("anyio/", "anyio"),
    ("(app/", "app"),
    ("/app/", "app"),
    ("json/", "json"),
    ("asyncio/", "asyncio"),
    ("threading.py", "threading"),
)


def _is_app(frame: str) -> bool:
    return "(app/" in frame or "/app/" in frame


def summarize_profile(path: Path, top: int = 15) -> str:
    """Self time by library, and the application's own hottest functions (py-spy raw)."""
    by_lib: Counter[str] = Counter()
    app_self: Counter[str] = Counter()
    app_incl: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        stack, count = line.rsplit(" ", 1)
        n = int(count)
        total += n
        frames = [re.sub(r":\d+\)", ")", f) for f in stack.split(";")]
        leaf = frames[-1]
        by_lib[next((name for frag, name in CATEGORIES if frag in leaf), "other")] += n
        if _is_app(leaf):
            app_self[leaf] += n
        for f in {f for f in frames if _is_app(f)}:
            app_incl[f] += n
    if not total:
        return "(no samples)"
    lines = [f"{total} samples with the GIL held", "self time by library:"]
    lines += [f"  {100 * v / total:5.1f}%  {k}" for k, v in by_lib.most_common(top)]
    lines.append("application functions, inclusive:")
    lines += [f"  {100 * v / total:5.1f}%  {k}" for k, v in app_incl.most_common(top)]
    lines.append("application functions, self:")
    lines += [f"  {100 * v / total:5.1f}%  {k}" for k, v in app_self.most_common(top // 2)]
    return "\n".join(lines)


async def main_async(a: argparse.Namespace) -> None:
    rng = random.Random(a.seed)
    with tempfile.TemporaryDirectory(prefix="parley-profile-") as tmp:
        workdir = Path(tmp)
        async with provisioned_store(STORES[a.store], workdir) as url:
            extra = dict(kv.split("=", 1) for kv in a.server_env)
            env = parley_env(url, workdir, **extra)
            (conv_id,), coordination = await create_conversations(env, 1)
            print(f"store {a.store}, coordination {coordination}", flush=True)
            await prefill(url, {conv_id: a.history}, rng)
            async with (
                uvicorn_server("app.main:create_app", env, workdir / "log") as srv,
                httpx.AsyncClient(base_url=srv.base_url, timeout=60) as client,
            ):
                for _ in range(20):
                    await http_turn(client, conv_id, random_text(rng))
                spy = None
                if a.py_spy:
                    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
                    spy = await asyncio.create_subprocess_exec(
                        *(exe, "record", "-p", str(srv.pid), "-o", str(a.py_spy)),
                        *("-f", "raw", "-r", "400", "--gil", "--nonblocking"),
                        stdout=asyncio.subprocess.DEVNULL,
                        stderr=asyncio.subprocess.DEVNULL,
                    )
                    await asyncio.sleep(1.5)  # py-spy attaches
                ms: list[float] = []
                cpu: list[float] = []
                for i in range(a.turns):
                    s = await http_turn(client, conv_id, random_text(rng), srv)
                    ms.append(s.ms)
                    cpu.append(s.server_cpu_ms or 0.0)
                    if (i + 1) % a.window == 0:
                        print(
                            f"turns {i + 1 - a.window:>6}-{i + 1:<6} "
                            f"p50 {percentile(ms[-a.window :], 50):6.2f} ms  "
                            f"p99 {percentile(ms[-a.window :], 99):6.2f} ms  "
                            f"server CPU {statistics.mean(cpu[-a.window :]):6.2f} ms/turn",
                            flush=True,
                        )
                if spy is not None:
                    spy.send_signal(signal.SIGINT)
                    await spy.wait()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--store", default="sqlite", choices=sorted(STORES))
    ap.add_argument("--history", type=int, default=1000, help="pre-filled messages (even)")
    ap.add_argument("--turns", type=int, default=2000)
    ap.add_argument("--window", type=int, default=500, help="turns per printed line")
    ap.add_argument("--py-spy", type=Path, help="record the server into this raw profile")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--server-env", action="append", default=[], metavar="PARLEY_X=VALUE")
    a = ap.parse_args(argv)
    asyncio.run(main_async(a))
    if a.py_spy and a.py_spy.exists():
        print()
        print(summarize_profile(a.py_spy))
    return 0


if __name__ == "__main__":
    sys.exit(main())
