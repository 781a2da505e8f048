"""Parley with `tracemalloc` on, for `bench/soak.py --trace-malloc`: what the memory that
stays after many turns was allocated by, measured inside the serving process.

The app is `app.main.create_app()` unchanged, plus, in this benchmark process only:

* `POST /__bench/malloc/mark`: a full collection, the live objects' type counts
  (`gc.get_objects()`) kept as the baseline, then `tracemalloc.start(BENCH_MALLOC_FRAMES)`
  (default 10 frames). Tracing starts there, not at start-up: the turns before the mark
  run at full speed, and every traced block still alive at the end was allocated after
  the mark, i.e. is growth (or the replacement of something the mark's memory held:
  a bounded structure that is full shows up as churn, not growth);
* `GET /__bench/malloc/diff?top=20`: a full collection, then what grew since the mark:
  by allocation line, by the innermost `app/` frame that led to the allocation (which of
  Parley's structures holds it), and by object type.

    BENCH_MALLOC_FRAMES=12 uvicorn bench.malloc_app:create_app --factory

tracemalloc slows the server several times after the mark, and its bookkeeping inflates
the RSS, so RSS measured with it on is not the production RSS.
"""

from __future__ import annotations

import gc
import os
import tracemalloc
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from app.main import create_app as create_parley

REPO = Path(__file__).resolve().parents[1]
APP_DIR = str(REPO / "app") + os.sep


@dataclass
class Baseline:
    snapshot: tracemalloc.Snapshot | None = None
    types: Counter[str] = field(default_factory=Counter)


def type_counts() -> Counter[str]:
    """Live objects tracked by the collector, by type name (module-qualified)."""
    counts: Counter[str] = Counter()
    for obj in gc.get_objects():
        t = type(obj)
        counts[f"{t.__module__}.{t.__qualname__}"] += 1
    return counts


def _snapshot() -> tracemalloc.Snapshot:
    gc.collect()
    return tracemalloc.take_snapshot().filter_traces(
        (
            tracemalloc.Filter(False, tracemalloc.__file__),
            tracemalloc.Filter(False, __file__),
        )
    )


def _where(frame: tracemalloc.Frame) -> str:
    name = frame.filename
    if name.startswith(str(REPO) + os.sep):
        name = name[len(str(REPO)) + 1 :]
    elif "site-packages" + os.sep in name:
        name = name.split("site-packages" + os.sep, 1)[1]
    return f"{name}:{frame.lineno}"


def app_site(traceback: tracemalloc.Traceback) -> str:
    """The innermost frame of Parley's own code (`app/`) in an allocation's traceback, or
    the allocation line itself when none of it is Parley's."""
    for frame in reversed(traceback):  # tracemalloc keeps the most recent frame last
        if frame.filename.startswith(APP_DIR):
            return _where(frame)
    return "(no app frame) " + _where(traceback[-1])


def growth(
    before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, top: int
) -> dict[str, list[dict[str, Any]]]:
    """The `top` growth sites by allocation line and by innermost app frame, in KB."""
    by_line = [
        {
            "site": _where(s.traceback[-1]),
            "kb": round(s.size_diff / 1024, 1),
            "blocks": s.count_diff,
        }
        for s in after.compare_to(before, "lineno")[:top]
    ]
    sites: Counter[str] = Counter()
    blocks: Counter[str] = Counter()
    for s in after.compare_to(before, "traceback"):
        site = app_site(s.traceback)
        sites[site] += s.size_diff
        blocks[site] += s.count_diff
    by_app = [
        {"site": site, "kb": round(size / 1024, 1), "blocks": blocks[site]}
        for site, size in sites.most_common(top)
    ]
    return {"by_line": by_line, "by_app_frame": by_app}


def create_app() -> FastAPI:
    app = create_parley()
    baseline = Baseline()

    @app.post("/__bench/malloc/mark", include_in_schema=False)
    async def mark() -> dict[str, Any]:
        gc.collect()
        baseline.types = type_counts()
        if not tracemalloc.is_tracing():
            tracemalloc.start(int(os.environ.get("BENCH_MALLOC_FRAMES", "10")))
        baseline.snapshot = _snapshot()
        traced, _ = tracemalloc.get_traced_memory()
        return {"traced_mb": round(traced / 2**20, 1)}

    @app.get("/__bench/malloc/diff", include_in_schema=False)
    async def diff(top: int = 20) -> dict[str, Any]:
        if baseline.snapshot is None:
            return {"error": "POST /__bench/malloc/mark first"}
        now = _snapshot()
        types = type_counts()
        types.subtract(baseline.types)
        before_total = sum(s.size for s in baseline.snapshot.statistics("filename"))
        after_total = sum(s.size for s in now.statistics("filename"))
        return {
            "traced_mb_at_mark": round(before_total / 2**20, 1),
            "traced_mb_now": round(after_total / 2**20, 1),
            **growth(baseline.snapshot, now, top),
            "types": [{"type": t, "count": n} for t, n in types.most_common(top)],
        }

    return app
