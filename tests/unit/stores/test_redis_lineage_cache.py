"""The Redis store's conversation id -> lineage id cache stays within its bound."""

from __future__ import annotations

from typing import Any, cast

from app.stores.redis_refs import Directory


def directory(cache_max: int) -> Directory:
    unused = cast(Any, None)  # remember/forget touch nothing but the cache
    return Directory(unused, unused, unused, unused, unused, grace_ms=0, cache_max=cache_max)


def test_lineage_cache_keeps_at_most_its_bound_dropping_the_oldest() -> None:
    d = directory(cache_max=3)
    for i in range(10):
        d.remember(f"c{i}", f"l{i}")
    assert len(d._cache) == 3
    assert list(d._cache) == ["c7", "c8", "c9"]


def test_remembering_a_cached_id_again_evicts_nothing() -> None:
    d = directory(cache_max=2)
    d.remember("a", "la")
    d.remember("b", "lb")
    d.remember("a", "la")
    assert d._cache == {"a": "la", "b": "lb"}
