"""The one LRU cache behind the core's per-photo caches."""

from __future__ import annotations

from magicbokeh.lru import LruCache


def test_least_recently_used_entry_goes_first_and_lookups_count() -> None:
    cache: LruCache[int] = LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "a" is now the most recent
    cache.put("c", 3)  # evicts "b"
    assert "b" not in cache and "a" in cache and "c" in cache and len(cache) == 2
    assert cache.get("b") is None
    assert (cache.hits, cache.misses) == (1, 1)
    cache.clear()
    assert len(cache) == 0 and (cache.hits, cache.misses) == (0, 0)


def test_get_or_make_makes_once_and_stores_none_as_a_value() -> None:
    cache: LruCache[object] = LruCache(4)
    calls = []

    def make():
        calls.append(1)
        return None  # e.g. "this photo carries no depth": a result, not a miss

    assert cache.get_or_make("photo", make) is None
    assert cache.get_or_make("photo", make) is None
    assert len(calls) == 1 and cache.hits == 1
