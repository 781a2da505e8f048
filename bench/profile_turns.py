"""Profile Parley's turn loop: a real uvicorn, one conversation, N sequential turns; prints
latency and server CPU per window of turns (so drift over the life of a process shows)
and, on PostgreSQL, the CPU of the database's backends per turn (`bench.pg_backends`),
the exact number of store calls, SQL statements and Redis commands per turn
(`bench/counting_app.py`, a separate server run), and, with `--py-spy`, where the server's
CPU goes (py-spy, GIL-held samples only, i.e. CPU, not waiting): self and inclusive time by
library and the hottest functions. Writes the summary to `--json`.

    .venv/bin/python bench/profile_turns.py --store sqlite --turns 1500 --py-spy /tmp/sqlite.txt
    make bench-profile                      # SQLite, PostgreSQL and Redis, 1,500 turns each

py-spy comes with the `bench` extra (`.venv/bin/py-spy`); it needs ptrace rights on the
server (root, or `kernel.yama.ptrace_scope=0`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import shutil
import signal
import statistics
import sys
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from bench.common import random_text
from bench.pg_backends import backend_pids, cpu_s
from bench.report import loadavg, machine_info
from bench.servers import Server, parley_env, uvicorn_server
from bench.stats import percentile
from bench.stores import STORES, provisioned_store
from bench.turns_parley import create_conversations, http_turn, prefill

# A frame belongs to the first library whose path fragment its file contains.
CATEGORIES = (
    ("sqlalchemy/", "sqlalchemy"),
    ("aiosqlite/", "aiosqlite"),
    ("sqlite3/", "sqlite3"),
    ("asyncpg/", "asyncpg"),
    ("redis/", "redis"),
    ("pydantic_core", "pydantic"),
    ("pydantic/", "pydantic"),
    ("fastapi/", "fastapi"),
    ("sse_starlette/", "sse-starlette"),
    ("starlette/", "starlette"),
    ("uvicorn/", "uvicorn"),
    ("httptools", "uvicorn"),
    ("anyio/", "anyio"),
    ("httpx/", "httpx"),
    ("ulid/", "ulid"),
    ("(app/", "app"),
    ("/app/", "app"),
    ("json/", "json"),
    ("asyncio/", "asyncio"),
    ("threading.py", "threading"),
)


def library_of(frame: str) -> str:
    return next((name for frag, name in CATEGORIES if frag in frame), "other")


def _is_app(frame: str) -> bool:
    return "(app/" in frame or "/app/" in frame


def _short(frame: str) -> str:
    """`fn (/long/path/site-packages/pkg/mod.py)` -> `fn (pkg/mod.py)`."""
    return re.sub(r"\((?:[^()]*?/(?:site-packages|lib/python3\.\d+|wt-[\w-]+|work)/)", "(", frame)


def parse_raw(path: Path) -> list[tuple[list[str], int]]:
    """py-spy `--format raw` lines: `frame;frame;...;leaf count` (root first)."""
    out = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        stack, count = line.rsplit(" ", 1)
        frames = [_short(re.sub(r":\d+\)", ")", f)) for f in stack.split(";")]
        out.append((frames, int(count)))
    return out


# Buckets the optimisation phase acts on: label -> frame fragments. A sample counts once
# per bucket when any frame of its stack contains one of the fragments (inclusive), or,
# for a fragment starting with "self:", when its innermost frame does (self time).
BUCKETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("SQLite executing (aiosqlite worker thread)", ("Connection._execute (aiosqlite",)),
    ("aiosqlite thread hand-off", ("_connection_worker_thread", "Condition.notify")),
    ("SQLAlchemy statement build + compile + cache key", ("(sqlalchemy/sql/",)),
    ("SQLAlchemy engine/result/pool", ("(sqlalchemy/engine/", "(sqlalchemy/pool/")),
    ("SQLAlchemy greenlet bridge (self)", ("self:greenlet_spawn", "self:await_only")),
    ("SQLAlchemy pool pre-ping (PostgreSQL)", ("_async_ping", "do_ping")),
    ("transaction begin/commit round trips (asyncpg)", ("_start_transaction", "_call_and_discard")),
    ("asyncpg", ("(asyncpg/",)),
    ("redis-py", ("(redis/",)),
    ("pydantic (validate + dump)", ("(pydantic/", "(pydantic_core/")),
    ("json encode/decode", ("(json/",)),
    ("store.get_conversation", ("get_conversation (app/stores/",)),
    ("store.append_messages", ("append_messages (app/stores/",)),
    ("context window (ContextBuilder.build)", ("ContextBuilder.build",)),
    ("message cache walk", ("MessageCache.walk",)),
    ("pack lookup + prompt render", ("(app/packs/",)),
    ("coordination (locks, run log, idempotency)", ("(app/coordination/",)),
    (
        "FastAPI request parsing + response serialization",
        (
            "solve_dependencies",
            "serialize_response",
            "_prepare_response_content",
            "request_body_to_args",
            "jsonable_encoder",
        ),
    ),
    (
        "SSE / JSONResponse rendering",
        ("(sse_starlette/", "(app/api/sse_response.py)", "JSONResponse.render"),
    ),
    ("uvicorn HTTP protocol (self)", ("self:(uvicorn/protocols/", "self:httptools")),
    ("event loop itself (uvloop native, in Runner.run; self)", ("self:Runner.run (asyncio",)),
)


def bucket_shares(stacks: list[tuple[list[str], int]], total: int) -> list[tuple[str, float]]:
    counts: Counter[str] = Counter()
    for frames, n in stacks:
        for label, fragments in BUCKETS:
            inclusive = [f for f in fragments if not f.startswith("self:")]
            leaf = [f.removeprefix("self:") for f in fragments if f.startswith("self:")]
            if any(frag in f for f in frames for frag in inclusive) or any(
                frag in frames[-1] for frag in leaf
            ):
                counts[label] += n
    return [(label, round(100 * counts[label] / total, 1)) for label, _ in BUCKETS]


def profile_summary(path: Path, turns: int, top: int = 25) -> dict[str, Any]:
    """Self and inclusive shares by library and by function (of GIL-held samples)."""
    by_lib_self: Counter[str] = Counter()
    by_lib_incl: Counter[str] = Counter()
    fn_self: Counter[str] = Counter()
    fn_incl: Counter[str] = Counter()
    total = 0
    stacks = parse_raw(path)
    for frames, n in stacks:
        total += n
        by_lib_self[library_of(frames[-1])] += n
        fn_self[frames[-1]] += n
        for lib in {library_of(f) for f in frames}:
            by_lib_incl[lib] += n
        for f in set(frames):
            fn_incl[f] += n
    if not total:
        return {"samples": 0}

    def share(c: Counter[str], k: int) -> list[tuple[str, float]]:
        return [(name, round(100 * v / total, 1)) for name, v in c.most_common(k)]

    app_incl = Counter({f: v for f, v in fn_incl.items() if _is_app(f)})
    return {
        "samples": total,
        "turns": turns,
        "buckets_inclusive_pct": bucket_shares(stacks, total),
        "self_by_library_pct": share(by_lib_self, top),
        "inclusive_by_library_pct": share(by_lib_incl, top),
        "inclusive_functions_pct": share(fn_incl, top),
        "self_functions_pct": share(fn_self, top),
        "app_inclusive_functions_pct": share(app_incl, top),
    }


def render_profile(s: Mapping[str, Any], top: int = 15) -> str:
    if not s.get("samples"):
        return "(no samples)"
    lines = [f"{s['samples']} samples with the GIL held over {s['turns']} turns"]
    for key, label in (
        ("buckets_inclusive_pct", "where the CPU goes (inclusive buckets; they overlap)"),
        ("self_by_library_pct", "self time by library"),
        ("inclusive_by_library_pct", "inclusive time by library (a stack counts once)"),
        ("app_inclusive_functions_pct", "application functions, inclusive"),
        ("self_functions_pct", "hottest functions, self"),
    ):
        lines.append(f"{label}:")
        lines += [f"  {pct:5.1f}%  {name}" for name, pct in s[key][: max(top, 20)]]
    return "\n".join(lines)


def render_counts(per_turn: Mapping[str, Mapping[str, float]]) -> str:
    lines = []
    for kind, label in (
        ("store", "store calls"),
        ("sql", "SQL statements"),
        ("redis", "Redis commands"),
    ):
        items = per_turn.get(kind) or {}
        if items:
            total = sum(items.values())
            lines.append(f"{label} per turn: {total:.2f}")
            lines += [f"  {v:6.2f}  {k}" for k, v in sorted(items.items(), key=lambda x: -x[1])]
    return "\n".join(lines)


async def _turns(
    client: httpx.AsyncClient,
    conv_id: str,
    n: int,
    rng: random.Random,
    server: Server,
    window: int,
) -> list[float]:
    ms: list[float] = []
    cpu: list[float] = []
    for i in range(n):
        s = await http_turn(client, conv_id, random_text(rng), server)
        ms.append(s.ms)
        cpu.append(s.server_cpu_ms or 0.0)
        if window and (i + 1) % window == 0:
            print(
                f"turns {i + 1 - window:>6}-{i + 1:<6} "
                f"p50 {percentile(ms[-window:], 50):6.2f} ms  "
                f"p99 {percentile(ms[-window:], 99):6.2f} ms  "
                f"server CPU {statistics.mean(cpu[-window:]):6.2f} ms/turn",
                flush=True,
            )
    return ms


async def count_per_turn(
    env: Mapping[str, str], conv_id: str, turns: int, rng: random.Random, workdir: Path
) -> dict[str, dict[str, float]]:
    """Store calls, SQL statements and Redis commands per turn (`bench/counting_app.py`)."""
    async with (
        uvicorn_server("bench.counting_app:create_app", env, workdir / "count.log") as srv,
        httpx.AsyncClient(base_url=srv.base_url, timeout=60) as client,
    ):
        await _turns(client, conv_id, 10, rng, srv, 0)
        await client.get("/__bench/counts")  # forget the warm-up
        await _turns(client, conv_id, turns, rng, srv, 0)
        counts = (await client.get("/__bench/counts")).json()
    return {
        kind: {k: round(v / turns, 2) for k, v in items.items()} for kind, items in counts.items()
    }


async def main_async(a: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(a.seed)
    out: dict[str, Any] = {"store": a.store, "history": a.history, "turns": a.turns}
    with tempfile.TemporaryDirectory(prefix="parley-profile-") as tmp:
        workdir = Path(tmp)
        async with provisioned_store(STORES[a.store], workdir) as url:
            extra = dict(kv.split("=", 1) for kv in a.server_env)
            env = parley_env(url, workdir, **extra)
            (conv_id,), coordination = await create_conversations(env, 1)
            out["coordination"] = coordination
            print(f"store {a.store}, coordination {coordination}", flush=True)
            await prefill(url, {conv_id: a.history}, rng)
            if a.count_turns:
                out["per_turn_counts"] = await count_per_turn(
                    env, conv_id, a.count_turns, rng, workdir
                )
                print(render_counts(out["per_turn_counts"]), flush=True)
            async with (
                uvicorn_server("app.main:create_app", env, workdir / "log") as srv,
                httpx.AsyncClient(base_url=srv.base_url, timeout=60) as client,
            ):
                await _turns(client, conv_id, 20, rng, srv, 0)
                spy = None
                if a.py_spy:
                    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
                    spy = await asyncio.create_subprocess_exec(
                        *(exe, "record", "-p", str(srv.pid), "-o", str(a.py_spy)),
                        *("-f", "raw", "-r", str(a.rate), "--gil", "--nonblocking"),
                        stdout=asyncio.subprocess.DEVNULL,
                        stderr=asyncio.subprocess.DEVNULL,
                    )
                    await asyncio.sleep(1.5)  # py-spy attaches
                pids = await backend_pids(url) if a.store == "postgres" else []
                pg0 = cpu_s(pids)
                ms = await _turns(client, conv_id, a.turns, rng, srv, a.window)
                out["latency_p50_ms"] = round(percentile(ms, 50), 3)
                pg1 = cpu_s(pids)
                if pg0 is not None and pg1 is not None:
                    pg_ms = round((pg1 - pg0) / a.turns * 1000, 3)
                    out["postgres_backends_cpu_ms_per_turn"] = pg_ms
                    print(f"PostgreSQL backends ({len(pids)}) CPU {pg_ms:.2f} ms/turn", flush=True)
                if spy is not None:
                    spy.send_signal(signal.SIGINT)
                    await spy.wait()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--store", default="sqlite", choices=sorted(STORES))
    ap.add_argument("--history", type=int, default=1000, help="pre-filled messages (even)")
    ap.add_argument("--turns", type=int, default=1500)
    ap.add_argument("--count-turns", type=int, default=200, help="turns of the counting run")
    ap.add_argument("--window", type=int, default=500, help="turns per printed line")
    ap.add_argument("--py-spy", type=Path, help="record the server into this raw profile")
    ap.add_argument("--rate", type=int, default=400, help="py-spy samples per second")
    ap.add_argument("--json", type=Path, help="write the summary here")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--server-env", action="append", default=[], metavar="PARLEY_X=VALUE")
    ap.add_argument(
        "--resummarize",
        action="store_true",
        help="only re-read --py-spy into the existing --json (no run)",
    )
    a = ap.parse_args(argv)
    if a.resummarize:
        if not (a.py_spy and a.json):
            ap.error("--resummarize needs --py-spy RAW and --json FILE")
        result = json.loads(a.json.read_text())
        result["profile"] = profile_summary(a.py_spy, result.get("turns", a.turns))
        a.json.write_text(json.dumps(result, indent=2) + "\n")
        print(render_profile(result["profile"]))
        return 0
    result = {"machine": machine_info(), **asyncio.run(main_async(a))}
    if a.py_spy and a.py_spy.exists():
        result["profile"] = profile_summary(a.py_spy, a.turns)
        print()
        print(render_profile(result["profile"]))
    result["machine"]["loadavg_end"] = loadavg()
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
