"""A small thread-safe least-recently-used cache: the one behind every per-photo cache of the core
(disparity maps, phone-depth reads, subject masks, low-quality simulations, recent GPU requests).

Keys are content hashes plus options, so ``functools.lru_cache`` (keyed by call arguments, values
made only by the call) does not fit: callers look up, compute outside the lock and store.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Callable, Generic, Hashable, TypeVar

V = TypeVar("V")
_MISSING = object()


class LruCache(Generic[V]):
    """At most ``capacity`` entries; the least recently used one is dropped first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[Hashable, V] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def _lookup(self, key: Hashable) -> Any:
        with self._lock:
            item = self._items.get(key, _MISSING)
            if item is _MISSING:
                self.misses += 1
            else:
                self._items.move_to_end(key)
                self.hits += 1
            return item

    def get(self, key: Hashable) -> V | None:
        """The value stored under ``key`` (now the most recent), or None."""
        item = self._lookup(key)
        return None if item is _MISSING else item

    def put(self, key: Hashable, value: V) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def get_or_make(self, key: Hashable, make: Callable[[], V]) -> V:
        """The value under ``key``, else ``make()`` stored (computed outside the lock; None is a value)."""
        item = self._lookup(key)
        if item is not _MISSING:
            return item
        value = make()
        self.put(key, value)
        return value

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.hits = self.misses = 0
