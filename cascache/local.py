"""``LocalStore``: one cache's values and versions in one in-process record per key.

The two-store local topology (:class:`~cascache.memory.MemoryProvider` plus
:class:`~cascache.genstore.LocalGenStore`) keeps every key twice: a value entry under its
value storage name and a fence under its version storage name, each with its own index
entry and bookkeeping. A ``LocalStore`` keeps one record per logical key, holding the
key's frame, its current fence and the frame's expiry, so a read is one dictionary
lookup under one lock, and a cached key costs about half the heap.

It is the store for one namespace. ``cascache.new`` binds it to the namespace of the
first cache built on it and wires it in as the value store, the version store and the
single-key paths (:mod:`cascache.mutator`); a second cache on the same store must use the
same namespace. It still answers the ``Provider`` and ``GenStore`` interfaces under
storage names (batch operations use them): a name of the bound namespace reaches the
record of its key, and any other name (a batch entry's) has a record of its own.

Every rule of :mod:`cascache.genstore` holds: ``snapshot`` creates a fence atomically,
``invalidate`` and ``advance`` always install a fresh one, and losing a record (eviction)
loses its fence with it, which only ever turns entries and in-flight fills into misses.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Final

from cascache.errors import ConfigError
from cascache.fence import Version, new_fence
from cascache.keys import KINDS, TAG_HEX, CacheKey, KeySpace
from cascache.memory import _finite

RECORD_OVERHEAD: Final = 400
"""Bytes of heap one record takes beyond its frame's bytes and its key's characters: the
index entry, the record, the fence and the expiry (measured on CPython 3.11 with
``tracemalloc``: 325-350 bytes, and up to 420 once evictions have left the index larger
than the records it holds)."""

MIN_BYTES: Final = 1024
"""The smallest ``max_bytes`` a :class:`LocalStore` takes: room for a few records of short
keys. Below it a store would evict each fence as soon as it made it, and hold nothing."""

_KIND_AT: Final = len("cas:{") + TAG_HEX + len("}:")
"""Where the kind letter sits in every storage name (``cascache.keys``)."""

_Slot = str | tuple[str]
"""A record's index key: the logical key for a single key of the bound namespace, and a
1-tuple of the storage name for anything else, so the two can never collide."""

_Record = tuple[bytes | None, Version | None, float | None]
"""(frame, current fence, when the frame expires). Immutable: a change installs a new one."""

_EMPTY: Final[_Record] = (None, None, None)


class LocalStore:
    """The in-process store of one cache: values and versions side by side, bounded in bytes.

    * **Size**: each record is charged its frame's length, its key's length and
      :data:`RECORD_OVERHEAD`, so ``max_bytes`` bounds the heap the store holds (within a
      few percent on CPython 3.11; at least :data:`MIN_BYTES`). Past it, the least
      recently used records are evicted, frames and fences together (safe: a lost fence
      only causes misses). A frame too large to fit alone is refused. Reads and writes
      count as use.
    * **TTL**: a frame set with ``ttl`` seconds (measured on ``clock``) is invisible once
      ``clock() >= set time + ttl``; it is dropped when next touched or evicted, and the
      key's fence stays.
    * **Threads**: every method runs under one lock.
    * **Lifecycle**: :meth:`close` drops everything; afterwards every method raises
      ``RuntimeError``. ``close`` itself may be called again.

    Pass it as ``Options.provider`` and leave ``gen_store`` unset: ``cascache.new`` then
    uses it for versions and single-key operations too. ``compute_set_cost`` does not
    apply (the store charges bytes).
    """

    KEY_CACHE_SIZE: Final = 256
    """How many keys' storage-name objects a cache on a ``LocalStore`` keeps: it reads and
    writes by key, so the names are only derived off the hot path (batches, self-heal),
    and a small cache of the hottest keys saves building their key objects again."""

    def __init__(
        self, max_bytes: int = 64 << 20, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < MIN_BYTES:
            raise ValueError(
                f"LocalStore max_bytes must be an int >= {MIN_BYTES} (each key's record takes "
                f"{RECORD_OVERHEAD} bytes beyond its key and frame), got {max_bytes!r}"
            )
        if not callable(clock):
            raise ValueError(
                f"LocalStore clock must be a callable returning seconds, got {clock!r}"
            )
        self._max = max_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._records: OrderedDict[_Slot, _Record] = OrderedDict()
        self._bytes = 0
        self._closed = False
        self._keys: KeySpace | None = None
        self._tail = ""
        self._keeps_versions = True

    # -- binding -----------------------------------------------------------------------

    @property
    def namespace(self) -> str | None:
        """The namespace this store is bound to, or ``None`` before a cache is built on it."""
        return None if self._keys is None else self._keys.namespace

    def bind(self, keys: KeySpace, keeps_versions: bool = True) -> None:
        """Serve the cache whose storage names ``keys`` derives (``cascache.new`` calls
        this, sharing the cache's own derivation and its cache of names).

        ``keeps_versions``: whether the cache keeps its fences here too (no other
        ``gen_store``). Every cache of the store must agree: one that read its fences
        elsewhere would not see another's invalidates of the values they share.

        Raises ``ConfigError`` if the store is closed, bound to another namespace or the
        other way round, or holds records from before it was bound.
        """
        with self._lock:
            if self._closed:
                raise ConfigError("this LocalStore is closed: give the cache a new one")
            namespace = keys.namespace
            if self._keys is not None:
                if self._keys.namespace != namespace:
                    raise ConfigError(
                        f"this LocalStore serves namespace {self._keys.namespace!r}; give the "
                        f"cache of namespace {namespace!r} a LocalStore of its own"
                    )
                if self._keeps_versions != keeps_versions:
                    first, now = (
                        ("keeps its versions", "another gen_store")
                        if self._keeps_versions
                        else ("uses another gen_store", "the store's own versions")
                    )
                    raise ConfigError(
                        f"a cache of namespace {namespace!r} on this LocalStore {first}, so "
                        f"a second one cannot use {now}: the caches share values, and each "
                        "must see the other's invalidates (give them the same version store)"
                    )
                return
            if self._records:
                raise ConfigError(
                    "bind a LocalStore to its cache before storing anything in it "
                    f"(it holds {len(self._records)} records)"
                )
            self._keys = keys
            self._keeps_versions = keeps_versions
            # Every single-key name of the namespace continues with this after the letter.
            self._tail = f":{len(keys.namespace)}:{keys.namespace}:"

    @property
    def max_bytes(self) -> int:
        """The most heap, in charged bytes, this store holds at once."""
        return self._max

    @property
    def size(self) -> int:
        """The charged bytes of the records held now."""
        with self._lock:
            self._check_open()
            return self._bytes

    def __len__(self) -> int:
        with self._lock:
            self._check_open()
            return len(self._records)

    def __bool__(self) -> bool:
        # A store is a store even when empty: ``provider or default`` must not replace it.
        return True

    # -- the single-key paths (KeyReader, KeyWriter, KeyInvalidator, BatchReader) -------

    def read(self, key: CacheKey) -> tuple[bytes | None, Version | None]:
        """The key's live frame (or ``None``) and current fence (or ``None``)."""
        with self._lock:
            if self._closed:
                self._check_open()
            return self._read(key.key)

    def read_many(self, keys: Sequence[CacheKey]) -> list[tuple[bytes | None, Version | None]]:
        """``read`` for each key, in order, under one lock."""
        with self._lock:
            self._check_open()
            return [self._read(ck.key) for ck in keys]

    def write_if_version(
        self, key: CacheKey, frame: bytes, version: Version, ttl: float | None
    ) -> bool | None:
        """Store ``frame`` if ``version`` is the key's current fence: ``True`` if stored,
        ``False`` if the fence differed or was missing, ``None`` if it matched but the
        frame alone exceeds ``max_bytes`` (the old frame is dropped then)."""
        if ttl is not None or type(frame) is not bytes:
            _check_frame(frame, ttl)
        with self._lock:
            if self._closed:
                self._check_open()
            record = self._records.get(key.key)
            if record is None:
                return False
            fence = record[1]
            # ``is`` first: a fill hands back the very fence its snapshot returned, and
            # comparing two fences' bytes in constant time costs more than the rest.
            if fence is None or (fence is not version and fence != version):
                return False
            return self._put(key.key, frame, ttl, record)

    def invalidate(self, key: CacheKey) -> None:
        """Install a fresh fence for the key and drop its frame, in one step."""
        fence = new_fence()
        with self._lock:
            self._check_open()
            self._install(key.key, (None, fence, None), self._records.get(key.key))

    def snapshot_key(self, key: CacheKey) -> Version:
        """``snapshot`` of the key's fence, by the key itself (no storage name needed)."""
        with self._lock:
            self._check_open()
            return self._snapshot(key.key)

    def read_batch(
        self, name: str, keys: Sequence[CacheKey]
    ) -> tuple[bytes | None, list[Version | None]]:
        """The batch entry under ``name`` and the current fence of each key, under one lock."""
        with self._lock:
            self._check_open()
            return self._frame(self._slot(name, "value")), [self._read(ck.key)[1] for ck in keys]

    # -- Provider (ManyProvider, BulkDeleteProvider, AddProvider) ----------------------

    def get(self, key: str) -> bytes | None:
        """The live frame stored under the storage name ``key``, or ``None``."""
        slot = self._slot(key, "value")
        with self._lock:
            self._check_open()
            return self._frame(slot)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """``get`` for each storage name, in order, under one lock."""
        slots = [self._slot(key, "value") for key in _names("get_many", keys)]
        with self._lock:
            self._check_open()
            return [self._frame(slot) for slot in slots]

    def set(self, key: str, value: bytes, cost: int, ttl: float | None) -> bool:
        """Store ``value`` under the storage name ``key``, keeping the key's fence; ``False``
        if it alone exceeds ``max_bytes`` (the old frame is dropped then). ``cost`` is not
        used: the store charges bytes."""
        _check_cost(cost)
        slot = self._slot(key, "value")
        _check_frame(value, ttl)
        with self._lock:
            self._check_open()
            record = self._records.get(slot)
            return self._put(slot, value, ttl, record) is True

    def add(self, key: str, value: bytes, cost: int, ttl: float | None) -> bool:
        """``set`` only if the storage name holds no live frame; ``True`` if stored."""
        _check_cost(cost)
        slot = self._slot(key, "value")
        _check_frame(value, ttl)
        with self._lock:
            self._check_open()
            record = self._records.get(slot)
            if record is not None and self._live(slot, record)[0] is not None:
                return False
            # (An expired frame was dropped just now: the record to replace is that one.)
            record = self._records.get(slot)
            return self._put(slot, value, ttl, record) is True

    def delete(self, key: str) -> None:
        """Drop the frame under the storage name ``key`` (the key's fence stays)."""
        slot = self._slot(key, "value")
        with self._lock:
            self._check_open()
            self._drop_frame(slot)

    def delete_many(self, keys: Sequence[str]) -> None:
        """``delete`` each storage name, under one lock."""
        slots = [self._slot(key, "value") for key in _names("delete_many", keys)]
        with self._lock:
            self._check_open()
            for slot in slots:
                self._drop_frame(slot)

    def close(self) -> None:
        """Drop every record. Idempotent; afterwards every other method raises."""
        with self._lock:
            self._closed = True
            self._records.clear()
            self._bytes = 0

    # -- GenStore -------------------------------------------------------------------------

    def snapshot(self, key: str) -> Version:
        """The current fence under the version name ``key``, created if it has none."""
        slot = self._slot(key, "version")
        with self._lock:
            self._check_open()
            return self._snapshot(slot)

    def snapshot_many(self, keys: Sequence[str]) -> list[Version]:
        """``snapshot`` for each version name, in order, under one lock."""
        slots = [self._slot(key, "version") for key in _names("snapshot_many", keys)]
        with self._lock:
            self._check_open()
            return [self._snapshot(slot) for slot in slots]

    def current(self, key: str) -> Version | None:
        """The current fence under the version name ``key``, or ``None``."""
        slot = self._slot(key, "version")
        with self._lock:
            self._check_open()
            return self._fence(slot)

    def current_many(self, keys: Sequence[str]) -> list[Version | None]:
        """``current`` for each version name, in order, under one lock."""
        slots = [self._slot(key, "version") for key in _names("current_many", keys)]
        with self._lock:
            self._check_open()
            return [self._fence(slot) for slot in slots]

    def advance(self, key: str) -> Version:
        """Install and return a fresh fence under the version name ``key`` (the frame stays:
        it carries the old fence and can no longer be served)."""
        slot = self._slot(key, "version")
        fence = new_fence()
        with self._lock:
            self._check_open()
            record = self._records.get(slot)
            frame, _, expires = _EMPTY if record is None else record
            self._install(slot, (frame, fence, expires), record)
        return fence

    # -- audits (never on the hot path; no recency change) -------------------------------

    def peek(self, key: str) -> Version | None:
        """The current fence under the version name ``key``, without counting as use."""
        slot = self._slot(key, "version")
        with self._lock:
            self._check_open()
            return self._records.get(slot, _EMPTY)[1]

    def forget(self, key: str) -> None:
        """Drop the fence under the version name ``key``, as losing version state would."""
        slot = self._slot(key, "version")
        with self._lock:
            self._check_open()
            record = self._records.get(slot)
            if record is not None and record[1] is not None:
                self._install(slot, (record[0], None, record[2]), record, touch=False)

    def clear_versions(self) -> None:
        """Drop every fence and keep the frames, as a lost version state would."""
        with self._lock:
            self._check_open()
            for slot in [s for s, r in self._records.items() if r[1] is not None]:
                record = self._records[slot]
                self._install(slot, (record[0], None, record[2]), record, touch=False)

    # -- internals (lock held) ------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("LocalStore is closed")

    def _slot(self, name: str, kind: str) -> _Slot:
        """The record a storage name of ``kind`` (``"value"`` or ``"version"``) lives in."""
        if not isinstance(name, str):
            raise TypeError(f"LocalStore keys are str, got {type(name).__name__} {name!r}")
        keys, tail = self._keys, self._tail
        if (
            keys is not None
            and name[_KIND_AT : _KIND_AT + 1] == KINDS[kind]
            and name.startswith(tail, _KIND_AT + 1)
        ):
            key = name[_KIND_AT + 1 + len(tail) :]
            if key:
                derived = keys.single(key)
                # Only the name the namespace derives for ``key`` reaches its record; and
                # the key the cache itself passed is kept, not this slice of the name.
                if getattr(derived, kind) == name:
                    return derived.key
        return (name,)

    def _live(self, slot: _Slot, record: _Record) -> _Record:
        """``record`` with an expired frame dropped (and the drop applied)."""
        expires = record[2]
        if expires is not None and self._clock() >= expires:
            live = (None, record[1], None)
            self._install(slot, live, record, touch=False)
            return live
        return record

    def _read(self, slot: _Slot) -> tuple[bytes | None, Version | None]:
        records = self._records
        record = records.get(slot)
        if record is None:
            return None, None
        records.move_to_end(slot)
        if record[2] is not None:
            record = self._live(slot, record)
        return record[0], record[1]

    def _frame(self, slot: _Slot) -> bytes | None:
        return self._read(slot)[0]

    def _fence(self, slot: _Slot) -> Version | None:
        record = self._records.get(slot)
        if record is None:
            return None
        self._records.move_to_end(slot)
        return record[1]

    def _snapshot(self, slot: _Slot) -> Version:
        record = self._records.get(slot)
        if record is not None and record[1] is not None:
            self._records.move_to_end(slot)
            return record[1]
        fence = new_fence()
        if record is None:
            self._install(slot, (None, fence, None), None)
        else:
            self._install(slot, (record[0], fence, record[2]), record)
        return fence

    def _drop_frame(self, slot: _Slot) -> None:
        record = self._records.get(slot)
        if record is not None and record[0] is not None:
            self._install(slot, (None, record[1], None), record, touch=False)

    def _put(
        self, slot: _Slot, frame: bytes, ttl: float | None, old: _Record | None
    ) -> bool | None:
        """Store ``frame`` in ``slot``, whose record is ``old`` now, keeping its fence."""
        if _charge(slot, frame) > self._max:
            self._drop_frame(slot)
            return None
        fence = None if old is None else old[1]
        self._install(slot, (frame, fence, None if ttl is None else self._clock() + ttl), old)
        return True

    def _install(
        self, slot: _Slot, record: _Record, old: _Record | None, touch: bool = True
    ) -> None:
        """Replace ``old``, the record of ``slot`` now (``None``: it has none), with
        ``record`` (dropping it when it holds nothing), then evict least recently used
        records until the store fits."""
        records = self._records
        frame = record[0]
        if frame is None and record[1] is None:
            if old is not None:
                del records[slot]
                self._bytes -= _charge(slot, old[0])
            return
        records[slot] = record
        if old is None:
            # A new slot is already the most recently used: it went in at the end.
            self._bytes += _charge(slot, frame)
        else:
            # The same slot under the same name: only the frames' lengths differ.
            was = old[0]
            self._bytes += (0 if frame is None else len(frame)) - (0 if was is None else len(was))
            if touch:
                records.move_to_end(slot)
        while self._bytes > self._max:
            evicted, gone = records.popitem(last=False)
            self._bytes -= _charge(evicted, gone[0])


def _charge(slot: _Slot, frame: bytes | None) -> int:
    name = slot if isinstance(slot, str) else slot[0]
    return RECORD_OVERHEAD + len(name) + (0 if frame is None else len(frame))


def _names(op: str, keys: Sequence[str]) -> Sequence[str]:
    if isinstance(keys, str | bytes):
        # A str is a Sequence[str] of its characters, which is never what was meant.
        raise TypeError(f"LocalStore.{op} takes a sequence of keys, got {keys!r}")
    return keys


def _check_cost(cost: object) -> None:
    if not isinstance(cost, int) or isinstance(cost, bool):
        raise TypeError(f"LocalStore cost must be an int, got {cost!r}")


def _check_frame(value: object, ttl: object) -> None:
    if not isinstance(value, bytes):
        raise TypeError(f"LocalStore values are bytes, got {type(value).__name__}")
    if ttl is None:
        return
    if not isinstance(ttl, int | float) or isinstance(ttl, bool):
        raise TypeError(f"LocalStore ttl must be seconds (int or float) or None, got {ttl!r}")
    if not (ttl > 0 and _finite(ttl)):
        raise ValueError(f"LocalStore ttl must be positive and finite, got {ttl!r}")
