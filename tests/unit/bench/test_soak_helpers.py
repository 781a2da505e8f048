"""bench/soak.py's verdict and report, and bench/malloc_app.py's attribution of growth to
Parley's code (the full soak is a benchmark, not a test)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

from bench import malloc_app
from bench.soak import Params, Sample, table, verdict


def samples(*rss: float) -> list[Sample]:
    return [
        Sample(turns=i * 1000, seconds=float(i), rss_mb=r, p50_ms=5.0) for i, r in enumerate(rss)
    ]


def test_verdict_passes_within_the_tolerance_of_the_baseline_and_fails_beyond() -> None:
    p = Params(turns=4000, baseline=1000, sample_every=1000)
    flat = verdict(samples(100, 150, 160, 170, 179), p)
    assert flat["flat"] and flat["growth"] == round(29 / 150, 4)
    growing = verdict(samples(100, 150, 160, 170, 181), p)
    assert not growing["flat"]


def test_table_shows_the_baseline_and_end_and_says_fail() -> None:
    p = Params(turns=4000, baseline=1000, sample_every=1000)
    rows = samples(100, 150, 160, 170, 200)
    text = table(rows, p, verdict(rows, p))
    assert "store sqlite" in text
    assert "  1,000    150.0" in text and "  4,000    200.0" in text
    assert text.splitlines()[-1].startswith("RSS after 1,000 turns: 150.0 MB, after 4,000: 200.0")
    assert "FAIL (growing)" in text


def test_growth_is_charged_to_the_innermost_app_frame() -> None:
    app_file = str(Path(malloc_app.APP_DIR) / "manager" / "x.py")
    lib_file = "/venv/lib/python3.11/site-packages/pydantic/main.py"
    # tracemalloc.Traceback takes frames most recent first and keeps them oldest first
    tb = tracemalloc.Traceback(((lib_file, 280), (app_file, 12), ("/other/app.py", 3)))
    assert malloc_app.app_site(tb) == "app/manager/x.py:12"
    outside = tracemalloc.Traceback(((lib_file, 280),))
    assert malloc_app.app_site(outside) == "(no app frame) pydantic/main.py:280"
