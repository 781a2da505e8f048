"""Server CPU per turn when the live conversations' windows do not all fit the message
cache: `--conversations` conversations of short messages, pre-filled to each of
`--histories` messages in turn, get turns round-robin (one turn each, then again), so a
cache smaller than all their windows is cold on every turn (`PARLEY_MESSAGE_CACHE_MB`,
default 16). Prints server CPU per turn (mean over the timed rounds) and p50 latency for
each history size. `bench/turns.py` does not show this: its working set fits the cache.

    .venv/bin/python bench/cache_cliff.py                         # ~1 minute, SQLite
    .venv/bin/python bench/cache_cliff.py --cache-mb 64           # the same, cache fits

Method: one real uvicorn (mock provider, zero delay, default context policy), one client,
one request at a time. History is appended through the store API before the server starts
(as in `bench/turns.py`) and grows between sizes with the server stopped, so each size
starts on an empty cache; the first round of each size is untimed (it fills the cache as
far as it can), the next `--rounds` are timed. Server CPU is read from /proc (10 ms ticks),
hence a mean over many turns, not a per-turn percentile.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from bench.common import random_text, run_fast
from bench.report import loadavg
from bench.servers import parley_env, uvicorn_server
from bench.stats import percentile
from bench.stores import STORES, provisioned_store
from bench.turns_parley import create_conversations, http_turn, prefill


async def main_async(a: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(a.seed)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="parley-cliff-") as tmp:
        workdir = Path(tmp)
        async with provisioned_store(STORES[a.store], workdir) as url:
            env = parley_env(url, workdir, PARLEY_MESSAGE_CACHE_MB=str(a.cache_mb))
            conv_ids, _ = await create_conversations(env, a.conversations)
            done = {c: 0 for c in conv_ids}  # messages each conversation holds
            for history in a.histories:
                targets = {c: max(history, n) for c, n in done.items()}
                await prefill(url, targets, rng)
                done = dict(targets)
                cpu: list[float] = []
                ms: list[float] = []
                async with (
                    uvicorn_server("app.main:create_app", env, workdir / "log") as srv,
                    httpx.AsyncClient(base_url=srv.base_url, timeout=60) as client,
                ):
                    for r in range(a.rounds + 1):
                        for c in conv_ids:
                            s = await http_turn(client, c, random_text(rng), srv)
                            done[c] += 2
                            if r:
                                cpu.append(s.server_cpu_ms or 0.0)
                                ms.append(s.ms)
                row = {
                    "history": history,
                    "turns_per_conversation": history // 2,
                    "server_cpu_ms": round(statistics.mean(cpu), 2),
                    "p50_ms": round(percentile(ms, 50), 2),
                    "turns": len(cpu),
                }
                rows.append(row)
                print(
                    f"history {history:>5} msgs ({history // 2:>4} turns/conv)  "
                    f"server CPU {row['server_cpu_ms']:6.2f} ms/turn  p50 {row['p50_ms']:6.2f} ms",
                    flush=True,
                )
    return {
        "store": a.store,
        "conversations": a.conversations,
        "cache_mb": a.cache_mb,
        "rounds": a.rounds,
        "loadavg": loadavg(),
        "rows": rows,
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--store", default="sqlite", choices=sorted(STORES))
    ap.add_argument("--conversations", type=int, default=30)
    ap.add_argument(
        "--histories",
        default="100,400",
        help="pre-filled messages per conversation, comma list (even, increasing)",
    )
    ap.add_argument("--rounds", type=int, default=5, help="timed round-robin rounds per size")
    ap.add_argument("--cache-mb", type=int, default=16, help="PARLEY_MESSAGE_CACHE_MB")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", type=Path, help="write the rows here")
    a = ap.parse_args(argv)
    a.histories = [int(x) for x in a.histories.split(",")]
    out = run_fast(main_async(a))
    if a.json:
        a.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
