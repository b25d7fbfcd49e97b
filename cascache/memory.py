"""The built-in in-process value store: a thread-safe, cost-bounded LRU with per-entry TTLs.

:class:`MemoryProvider` implements the ``Provider``, ``ManyProvider`` and ``AddProvider``
interfaces of :mod:`cascache.provider`. Like every provider it never decides freshness
(entries carry their fence), so evicting or refusing an entry only ever costs a miss.
"""

from __future__ import annotations

import heapq
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Final, NamedTuple

ENTRY_OVERHEAD: Final = 400
"""Bytes of heap one entry takes beyond its value's and its key's characters: the entry
record, its share of the ordered dictionary and the object headers of the key and the
value (measured on CPython 3.11 with ``tracemalloc``: 275-370 bytes)."""
TTL_OVERHEAD: Final = 250
"""Bytes more for an entry with a TTL: its expiry record, and the records of evicted or
replaced entries that wait in the expiry heap until it is compacted (measured: up to
about 250)."""


class _Entry(NamedTuple):
    value: bytes
    cost: int
    expires_at: float | None
    # Tells a heap item for this key apart from one left behind by an older entry.
    serial: int


class MemoryProvider:
    """An in-process value store bounded by the total ``cost`` of what it holds.

    * **Cost**: each entry is charged the ``cost`` its writer gives (the cache's default
      is the frame's size in bytes) plus, with ``charge_overhead`` (the default), the
      length of its key, :data:`ENTRY_OVERHEAD` bytes, and :data:`TTL_OVERHEAD` more if
      it has a TTL, so that with byte costs
      ``max_cost`` bounds the heap the store holds (within a few percent on CPython
      3.11). Turn ``charge_overhead`` off when costs are not bytes (a cost of 1 per entry
      bounds the count). An entry with a negative cost or a charge above ``max_cost`` is
      refused; otherwise least-recently-used entries are evicted until it fits. Reads
      (``get``, ``get_many``) and writes count as use.
    * **TTL**: ``ttl`` seconds, measured on ``clock`` (``None``: no expiry). An entry set
      at time ``t`` is visible while ``clock() < t + ttl``. Expired entries are invisible
      at once and are dropped on the next call of any method, before any live entry is
      evicted to make room.
    * **Threads**: every method runs under one lock.
    * **Lifecycle**: :meth:`close` drops everything; afterwards every method (and ``len``
      and ``cost``) raises ``RuntimeError``. ``close`` itself may be called again.
    """

    def __init__(
        self,
        max_cost: int = 64 << 20,
        clock: Callable[[], float] = time.monotonic,
        *,
        charge_overhead: bool = True,
    ) -> None:
        if not isinstance(max_cost, int) or isinstance(max_cost, bool) or max_cost < 1:
            raise ValueError(f"MemoryProvider max_cost must be an int >= 1, got {max_cost!r}")
        if not callable(clock):
            raise ValueError(
                f"MemoryProvider clock must be a callable returning seconds, got {clock!r}"
            )
        self._max_cost = max_cost
        self._clock = clock
        self._overhead = ENTRY_OVERHEAD if charge_overhead else None
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._cost = 0
        # (expires_at, serial, key) for every entry with a TTL, plus stale items for keys
        # since overwritten or deleted; popping the earliest finds expired entries without
        # scanning the whole store.
        self._expiries: list[tuple[float, int, str]] = []
        self._serial = 0
        self._closed = False

    @property
    def max_cost(self) -> int:
        """The most total cost this store holds at once."""
        return self._max_cost

    @property
    def cost(self) -> int:
        """The total charge of the live entries held now (costs plus overheads)."""
        with self._lock:
            self._begin()
            return self._cost

    def __len__(self) -> int:
        with self._lock:
            self._begin()
            return len(self._entries)

    def __bool__(self) -> bool:
        # A store is a store even when empty: ``provider or default`` must not replace it.
        return True

    def get(self, key: str) -> bytes | None:
        """The bytes stored under ``key``, or ``None`` when absent or expired."""
        if type(key) is not str:
            _check_key(key)
        with self._lock:
            self._begin()
            return self._get(key)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """``get`` for each key, in order, under one lock (and one clock reading)."""
        keys = _key_list("get_many", keys)
        for key in keys:
            _check_key(key)
        with self._lock:
            self._begin()
            return [self._get(key) for key in keys]

    def set(self, key: str, value: bytes, cost: int, ttl: float | None) -> bool:
        """Store ``value`` under ``key``; ``False`` if refused for its cost.

        A refused ``set`` still deletes the entry previously under ``key``: the caller
        meant to replace it, so keeping the old bytes would leave behind a value its own
        writer has already superseded.
        """
        _check_entry(key, value, cost, ttl)
        charge = self._charge(key, cost, ttl)
        with self._lock:
            now = self._begin()
            self._remove(key)
            if not self._admissible(cost, charge):
                return False
            self._store(key, value, charge, ttl, now)
            return True

    def add(self, key: str, value: bytes, cost: int, ttl: float | None) -> bool:
        """Store ``value`` only if ``key`` holds no live entry; ``True`` if it was stored.

        An existing live entry is left exactly as it is (``add`` is not a read, so it does
        not count as use either).
        """
        _check_entry(key, value, cost, ttl)
        charge = self._charge(key, cost, ttl)
        with self._lock:
            now = self._begin()
            if key in self._entries or not self._admissible(cost, charge):
                return False
            self._store(key, value, charge, ttl, now)
            return True

    def delete(self, key: str) -> None:
        """Remove ``key`` if present."""
        _check_key(key)
        with self._lock:
            self._begin()
            self._remove(key)

    def delete_many(self, keys: Sequence[str]) -> None:
        """Remove every key in ``keys`` that is present, under one lock."""
        keys = _key_list("delete_many", keys)
        for key in keys:
            _check_key(key)
        with self._lock:
            self._begin()
            for key in keys:
                self._remove(key)

    def close(self) -> None:
        """Drop every entry. Idempotent; afterwards every other method raises."""
        with self._lock:
            self._closed = True
            self._entries.clear()
            self._expiries.clear()
            self._cost = 0

    def _begin(self) -> float:
        """Refuse if closed, drop expired entries and return the time. Lock held."""
        if self._closed:
            raise RuntimeError("MemoryProvider is closed")
        now = self._clock()
        expiries = self._expiries
        while expiries and expiries[0][0] <= now:
            _, serial, key = heapq.heappop(expiries)
            entry = self._entries.get(key)
            if entry is not None and entry.serial == serial:
                self._remove(key)
        return now

    def _get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry.value

    def _charge(self, key: str, cost: int, ttl: float | None) -> int:
        if self._overhead is None:
            return cost
        return cost + len(key) + self._overhead + (0 if ttl is None else TTL_OVERHEAD)

    def _admissible(self, cost: int, charge: int) -> bool:
        return cost >= 0 and charge <= self._max_cost

    def _remove(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._cost -= entry.cost

    def _store(self, key: str, value: bytes, cost: int, ttl: float | None, now: float) -> None:
        # ``key`` holds nothing here (set removed it, add checked), so no entry is charged
        # twice while making room.
        while self._cost + cost > self._max_cost:
            _, evicted = self._entries.popitem(last=False)
            self._cost -= evicted.cost
        self._serial += 1
        expires_at = None if ttl is None else now + ttl
        self._entries[key] = _Entry(value, cost, expires_at, self._serial)
        self._cost += cost
        if expires_at is not None:
            heapq.heappush(self._expiries, (expires_at, self._serial, key))
            self._compact_expiries()

    def _compact_expiries(self) -> None:
        # Overwriting or deleting a key leaves its heap item behind until it comes due;
        # rebuild once stale items outnumber live entries, so memory stays proportional
        # to what is stored even when a key is rewritten with a long TTL in a loop.
        if len(self._expiries) <= 2 * len(self._entries) + 64:
            return
        self._expiries = [
            (entry.expires_at, entry.serial, key)
            for key, entry in self._entries.items()
            if entry.expires_at is not None
        ]
        heapq.heapify(self._expiries)


def _check_key(key: object) -> None:
    if not isinstance(key, str):
        raise TypeError(f"MemoryProvider keys are str, got {type(key).__name__} {key!r}")


def _check_entry(key: object, value: object, cost: object, ttl: object) -> None:
    # Wrong types are programming errors, raised before anything changes; a cost out of
    # range is a refusal instead (the Provider contract's ``False``).
    _check_key(key)
    if not isinstance(value, bytes):
        raise TypeError(f"MemoryProvider values are bytes, got {type(value).__name__}")
    if not isinstance(cost, int) or isinstance(cost, bool):
        raise TypeError(f"MemoryProvider cost must be an int, got {cost!r}")
    if ttl is None:
        return
    if not isinstance(ttl, int | float) or isinstance(ttl, bool):
        raise TypeError(f"MemoryProvider ttl must be seconds (int or float) or None, got {ttl!r}")
    if not (ttl > 0 and _finite(ttl)):
        raise ValueError(f"MemoryProvider ttl must be positive and finite, got {ttl!r}")


def _finite(seconds: int | float) -> bool:
    """Whether ``seconds`` is a finite float, or an int that converts to one."""
    try:
        return math.isfinite(seconds)
    except OverflowError:  # an int past a float's range: no clock can add it
        return False


def _key_list(op: str, keys: Sequence[str]) -> list[str]:
    """``keys`` as a list (a generator is read once), refusing one str or bytes."""
    if isinstance(keys, str | bytes):
        # A str is a Sequence[str] of its characters, which is never what was meant.
        raise TypeError(f"MemoryProvider.{op} takes a sequence of keys, got {keys!r}")
    return list(keys)
