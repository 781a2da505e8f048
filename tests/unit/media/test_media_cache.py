"""The bounded cache of encoded media (app/manager/media_cache.py)."""

from __future__ import annotations

from app.manager.media_cache import EncodedMediaCache


def test_least_recently_used_goes_first_within_the_byte_budget() -> None:
    cache = EncodedMediaCache(max_bytes=10)
    cache.put("a", "aaaa")
    cache.put("b", "bbbb")
    assert cache.get("a") == "aaaa"  # a is now the most recent
    cache.put("c", "cccc")  # 12 > 10: b goes
    assert cache.get("b") is None
    assert cache.get("a") == "aaaa" and cache.get("c") == "cccc"
    assert cache.size_bytes == 8 and len(cache) == 2
    assert (cache.hits, cache.misses) == (3, 1)


def test_an_entry_over_the_budget_is_never_kept_and_zero_disables() -> None:
    cache = EncodedMediaCache(max_bytes=10)
    cache.put("a", "aaaa")
    cache.put("big", "x" * 11)
    assert cache.get("big") is None and cache.get("a") == "aaaa"
    off = EncodedMediaCache(max_bytes=0)
    off.put("a", "a")
    assert off.get("a") is None and off.size_bytes == 0


def test_putting_the_same_digest_twice_counts_it_once() -> None:
    cache = EncodedMediaCache(max_bytes=10)
    cache.put("a", "aaaa")
    cache.put("a", "aaaa")
    assert cache.size_bytes == 4 and len(cache) == 1
