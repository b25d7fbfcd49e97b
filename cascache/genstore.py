"""Version stores: where each key's current fence lives.

The rules every implementation follows (DESIGN §3.2-3.4):

* ``snapshot`` returns the current fence and *creates* one when the key has none, in one
  atomic step, so a filler always holds a concrete fence and "missing" is never a
  compare-and-set expectation.
* ``advance`` always installs a fresh fence, whether or not one existed.
* ``current`` only reads; it never creates.
* Losing a key's fence (eviction, expiry, restart) is allowed: the next snapshot creates a
  fence that differs from every fence handed out before, so lost state can only turn
  entries and in-flight fills into misses.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from cascache.fence import Version, new_fence


@runtime_checkable
class GenStore(Protocol):
    """The version store interface. Keys are version storage keys (``CacheKey.version``)."""

    def snapshot(self, key: str) -> Version:
        """The current fence of ``key``, created atomically if it has none."""
        ...

    def snapshot_many(self, keys: Sequence[str]) -> list[Version]:
        """``snapshot`` for each key, in order, in one interaction."""
        ...

    def current(self, key: str) -> Version | None:
        """The current fence of ``key``, or ``None``; never creates one."""
        ...

    def current_many(self, keys: Sequence[str]) -> list[Version | None]:
        """``current`` for each key, in order, in one interaction."""
        ...

    def advance(self, key: str) -> Version:
        """Install a fresh fence for ``key`` and return it."""
        ...

    def close(self) -> None:
        """Release resources. Must be idempotent."""
        ...


@runtime_checkable
class AsyncGenStore(Protocol):
    """The version store interface for the asyncio API: :class:`GenStore`'s operations as
    coroutines, with the same rules, closed by ``aclose``."""

    async def snapshot(self, key: str) -> Version:
        """The current fence of ``key``, created atomically if it has none."""
        ...

    async def snapshot_many(self, keys: Sequence[str]) -> list[Version]:
        """``snapshot`` for each key, in order, in one interaction."""
        ...

    async def current(self, key: str) -> Version | None:
        """The current fence of ``key``, or ``None``; never creates one."""
        ...

    async def current_many(self, keys: Sequence[str]) -> list[Version | None]:
        """``current`` for each key, in order, in one interaction."""
        ...

    async def advance(self, key: str) -> Version:
        """Install a fresh fence for ``key`` and return it."""
        ...

    async def aclose(self) -> None:
        """Release resources. Must be idempotent."""
        ...


class LocalGenStore:
    """The in-process strict version store: random fences, bounded, thread-safe.

    Past ``max_keys`` fences it forgets the least recently used ones. That is safe (a
    forgotten fence only turns that key's entries into misses) but costs hit rate, so size
    it at least as large as the number of entries the value store holds.
    """

    def __init__(self, max_keys: int = 1_000_000) -> None:
        if not isinstance(max_keys, int) or isinstance(max_keys, bool) or max_keys < 1:
            raise ValueError(f"LocalGenStore max_keys must be an int >= 1, got {max_keys!r}")
        self.max_keys = max_keys
        self._fences: OrderedDict[str, Version] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._fences)

    def snapshot(self, key: str) -> Version:
        """The current fence of ``key``, created if it has none."""
        with self._lock:
            return self._snapshot(key)

    def snapshot_many(self, keys: Sequence[str]) -> list[Version]:
        """``snapshot`` for each key, in order, under one lock."""
        with self._lock:
            return [self._snapshot(key) for key in keys]

    def current(self, key: str) -> Version | None:
        """The current fence of ``key`` or ``None``."""
        with self._lock:
            return self._current(key)

    def current_many(self, keys: Sequence[str]) -> list[Version | None]:
        """``current`` for each key, in order, under one lock."""
        with self._lock:
            return [self._current(key) for key in keys]

    def advance(self, key: str) -> Version:
        """Install and return a fresh fence for ``key``."""
        fence = new_fence()
        with self._lock:
            self._install(key, fence)
        return fence

    def peek(self, key: str) -> Version | None:
        """The current fence without touching recency (for audits; never on the hot path)."""
        with self._lock:
            return self._fences.get(key)

    def forget(self, key: str) -> None:
        """Drop the fence of ``key``, as eviction would. Safe at any time."""
        with self._lock:
            self._fences.pop(key, None)

    def clear(self) -> None:
        """Drop every fence, as a process restart would. Safe at any time."""
        with self._lock:
            self._fences.clear()

    def close(self) -> None:
        """Drop every fence, releasing their memory (safe: a loss only causes misses).

        The store stays usable, because one store may serve several caches: a cache that
        is still open just meets lost fences and creates new ones.
        """
        self.clear()

    def _snapshot(self, key: str) -> Version:
        fence = self._current(key)
        if fence is None:
            fence = new_fence()
            self._install(key, fence)
        return fence

    def _current(self, key: str) -> Version | None:
        fence = self._fences.get(key)
        if fence is not None:
            self._fences.move_to_end(key)
        return fence

    def _install(self, key: str, fence: Version) -> None:
        self._fences[key] = fence
        self._fences.move_to_end(key)
        while len(self._fences) > self.max_keys:
            self._fences.popitem(last=False)
