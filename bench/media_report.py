"""What `bench/media.py`'s results say: the reductions between modes, and the tables."""

from __future__ import annotations

from typing import Any

from bench.stats import fmt, format_table

# (name, PARLEY_MEDIA_THRESHOLD_KB, PARLEY_MEDIA_CACHE_MB); "inline" gets a threshold above
# the image size at run time
MODES = (
    ("inline", None, "0"),
    ("externalized, no cache", "100", "0"),
    ("externalized, cache 16 MB", "100", "16"),
)

UPLOAD_MODE = MODES[-1][0]  # the default configuration


def reduction(smaller: float | None, larger: float | None) -> float | None:
    """How much less `smaller` is than `larger`, in percent."""
    if smaller is None or larger is None or larger <= 0:
        return None
    return round(100.0 * (1.0 - smaller / larger), 1)


def less_or_more(pct: float | None) -> str:
    """A `reduction` in words: "85.8 % less", "29.9 % more"."""
    if pct is None:
        return "-"
    return f"{abs(pct):.1f} % {'less' if pct >= 0 else 'more'}"


def render(results: dict[str, Any]) -> str:
    p = results["parameters"]
    modes = results["modes"]
    rows = []
    for name, m in modes.items():
        rows.append(
            [
                name,
                fmt(m["rss_start_mb"], 1),
                fmt(m["rss_after_turns_mb"], 1),
                fmt(m["rss_growth_mb"], 1),
                fmt(m["rss_after_read_mb"], 1),
                fmt(m["rss_peak_mb"], 1),
                fmt(m["db_mb"], 1),
                fmt(m["media_dir_mb"], 1),
                fmt(m["rss_growth_mb"] / m["store_mb"] if m["store_mb"] else None, 2),
                fmt(m["turn_latency"]["p50_ms"], 1),
                fmt(m["turn_latency"]["p99_ms"], 1),
                fmt(m["turns_failed"]),
            ]
        )
    title = (
        f"{p['images']} turns, each one unique {p['image_kb']} KB PNG (random pixels) as base64; "
        "SQLite, mock provider, 8,000-token window"
    )
    head = [
        "mode",
        "RSS start MB",
        "after turns",
        "growth",
        "after read",
        "peak",
        "DB MB",
        "media dir MB",
        "growth/store",
        "turn p50 ms",
        "p99 ms",
        "failed",
    ]
    parts = [format_table(head, rows, title)]
    s = results["summary"]
    parts.append(
        "RSS growth, externalized vs inline: "
        f"{less_or_more(s['rss_growth_reduction_pct'])} (no cache), "
        f"{less_or_more(s['rss_growth_reduction_cached_pct'])} (cache {UPLOAD_MODE[-5:]}); "
        f"after also reading the whole history back: "
        f"{less_or_more(s['rss_after_read_reduction_pct'])} (no cache). PromptKit claims "
        "70-90 % less memory. Turn p50 externalized / inline: "
        f"{fmt(s['turn_p50_ratio_no_cache'], 2, 'x')} without the cache, "
        f"{fmt(s['turn_p50_ratio_cached'], 2, 'x')} with it."
    )
    up = results.get("upload")
    if up:
        parts.append(
            f"Upload, {up['files']} unique PNGs of {p['upload_mb']} MB: POST /media (multipart) "
            f"{fmt(up['post_media_mb_s'], 1)} MB/s vs write + fsync of the same bytes "
            f"{fmt(up['disk_write_fsync_mb_s'], 1)} MB/s "
            f"(POST /media takes {fmt(up['ratio_disk_over_post'], 2, 'x')} the time)."
        )
    return "\n\n".join(parts)


def summarize(modes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    inline = modes["inline"]
    bare = modes["externalized, no cache"]
    cached = modes[UPLOAD_MODE]

    def p50(m: dict[str, Any]) -> float:
        return float(m["turn_latency"]["p50_ms"])

    return {
        "rss_growth_reduction_pct": reduction(bare["rss_growth_mb"], inline["rss_growth_mb"]),
        "rss_growth_reduction_cached_pct": reduction(
            cached["rss_growth_mb"], inline["rss_growth_mb"]
        ),
        "rss_after_read_reduction_pct": reduction(
            bare["rss_after_read_mb"] - bare["rss_start_mb"],
            inline["rss_after_read_mb"] - inline["rss_start_mb"],
        ),
        "turn_p50_ratio_no_cache": round(p50(bare) / p50(inline), 2),
        "turn_p50_ratio_cached": round(p50(cached) / p50(inline), 2),
    }
