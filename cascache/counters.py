"""``Counters``: a hook that counts what a cache does, cheap enough to leave on.

Give a cache ``hooks=Counters()`` (or ``fan_out(Counters(), ...)``) and read
``counters.snapshot()`` whenever you like: hits, misses and the hit rate, loads and the
time spent in loaders, every write outcome, invalidates, and every error the cache
absorbed, as one immutable :class:`CounterSnapshot`.

Thread-safe without a lock on the hot path: each thread counts into its own cells and
``snapshot`` adds them up. A lock around every increment costs several times more per
event (measured with the README's local ``get`` hit; see the Observability section).
A thread's counts outlive the thread: they are folded into a shared total when it ends.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, fields

from cascache.hooks import Hooks
from cascache.results import WriteOutcome


@dataclass(frozen=True, slots=True)
class CounterSnapshot:
    """The counts of a :class:`Counters` at one moment (since it was built or last reset).

    Batch operations count keys: a ``get_many`` of *n* keys adds *n* to ``hits`` plus
    ``misses``, and a ``set_if_versions`` of *n* items adds *n* to its outcome's count.

    Attributes:
        hits: keys served from the cache (``get``, ``get_or_load``, ``get_many``,
            ``get_many_or_load``).
        misses: keys those operations did not serve from the cache.
        loads: loader calls that returned (one per ``get_many_or_load`` call that loaded).
        loaded_keys: keys those loader calls were asked for.
        load_seconds: total time spent in those loader calls.
        stored: keys a conditional write stored (``WriteOutcome.STORED``).
        mismatches: keys not stored because their version moved on (``VERSION_MISMATCH``).
        rejected: keys the value store declined (``PROVIDER_REJECTED``).
        skipped: keys not stored because the version store could not be read
            (``SNAPSHOT_ERROR``; the failure itself counts in ``version_errors``).
        disabled: writes to a disabled cache (``DISABLED``).
        invalidates: ``invalidate`` calls that succeeded.
        self_healed: single entries dropped as unservable (stale, lost version, corrupt).
        batch_rejected: batch entries dropped because not every member was servable.
        read_errors: cache reads that failed in a fill (the keys came from the loader).
        store_errors: writes made on the caller's behalf that failed (a fill's store, a
            seed).
        codec_errors: loaded values the codec refused to encode (returned, not stored).
        version_errors: version-store reads or snapshots that failed (fail closed).
        invalidate_errors: ``invalidate`` calls that failed (they raised).
        cleanup_errors: failed deletes of entries that were already unservable.
    """

    hits: int = 0
    misses: int = 0
    loads: int = 0
    loaded_keys: int = 0
    load_seconds: float = 0.0
    stored: int = 0
    mismatches: int = 0
    rejected: int = 0
    skipped: int = 0
    disabled: int = 0
    invalidates: int = 0
    self_healed: int = 0
    batch_rejected: int = 0
    read_errors: int = 0
    store_errors: int = 0
    codec_errors: int = 0
    version_errors: int = 0
    invalidate_errors: int = 0
    cleanup_errors: int = 0

    @property
    def lookups(self) -> int:
        """``hits + misses``: every key a read operation was asked for."""
        return self.hits + self.misses

    @property
    def hit_rate(self) -> float:
        """``hits / (hits + misses)``; ``0.0`` before the first lookup."""
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0

    @property
    def writes(self) -> int:
        """Every key a conditional write finished with, whatever the outcome."""
        return self.stored + self.mismatches + self.rejected + self.skipped + self.disabled

    @property
    def errors(self) -> int:
        """Every failure the cache absorbed: the sum of the ``*_errors`` counts. Each
        failed store interaction counts once."""
        return (
            self.read_errors
            + self.store_errors
            + self.codec_errors
            + self.version_errors
            + self.invalidate_errors
            + self.cleanup_errors
        )


_NAMES = tuple(f.name for f in fields(CounterSnapshot) if f.name != "load_seconds")
"""The integer counts, in cell order; load time is kept as integer nanoseconds after them."""
_INDEX = {name: i for i, name in enumerate(_NAMES)}
_HITS, _MISSES = _INDEX["hits"], _INDEX["misses"]
_LOADS, _LOADED_KEYS = _INDEX["loads"], _INDEX["loaded_keys"]
_INVALIDATES = _INDEX["invalidates"]
_NANOS = len(_NAMES)
_WIDTH = _NANOS + 1
_OUTCOME = {
    WriteOutcome.STORED: _INDEX["stored"],
    WriteOutcome.VERSION_MISMATCH: _INDEX["mismatches"],
    WriteOutcome.PROVIDER_REJECTED: _INDEX["rejected"],
    WriteOutcome.SNAPSHOT_ERROR: _INDEX["skipped"],
    WriteOutcome.DISABLED: _INDEX["disabled"],
}


class _Token:
    """Lives in one thread's local storage; its finalizer folds that thread's counts."""

    __slots__ = ("__weakref__",)


class Counters(Hooks):
    """A hook that counts hits, misses, loads, write outcomes, invalidates and errors.

    Thread-safe and cheap: an event adds one to a list owned by the calling thread (no
    lock); :meth:`snapshot` adds the threads' lists up under a lock. A snapshot taken
    while other threads count sees each of their counts either before or after its
    latest event.
    """

    def __init__(self) -> None:
        self._local = threading.local()
        # Reentrant: a thread's cells are folded in by a finalizer, which the garbage
        # collector may run on a thread that already holds the lock.
        self._lock = threading.RLock()
        self._live: dict[int, list[int]] = {}
        self._retired = [0] * _WIDTH
        self._base = [0] * _WIDTH
        self._ids = itertools.count()

    # -- counting ------------------------------------------------------------------------

    def _cells(self) -> list[int]:
        """The calling thread's counts, created on its first event."""
        try:
            cells: list[int] = self._local.cells
        except AttributeError:
            cells = [0] * _WIDTH
            token = _Token()
            ident = next(self._ids)
            with self._lock:
                self._live[ident] = cells
            self._local.cells, self._local.token = cells, token
            # The thread's local storage (and the token) goes when the thread ends. The
            # finalizer holds the counters weakly: a long-lived thread (the main thread)
            # must not keep every Counters it ever counted on alive.
            weakref.finalize(token, _retire, weakref.ref(self), ident)
        return cells

    def _retire(self, ident: int) -> None:
        with self._lock:
            cells = self._live.pop(ident, None)
            if cells is not None:
                self._retired = [a + b for a, b in zip(self._retired, cells, strict=True)]

    def _add(self, index: int, amount: int = 1) -> None:
        self._cells()[index] += amount

    def hit(self, op: str, key: str) -> None:
        """Count a hit."""
        # Inlined ``_cells``: this runs on every cache hit.
        try:
            self._local.cells[_HITS] += 1
        except AttributeError:
            self._add(_HITS)

    def miss(self, op: str, key: str) -> None:
        """Count a miss."""
        try:
            self._local.cells[_MISSES] += 1
        except AttributeError:
            self._add(_MISSES)

    def load(self, op: str, keys: Sequence[str], seconds: float) -> None:
        """Count a loader call, its keys and its duration."""
        try:
            cells: list[int] = self._local.cells
        except AttributeError:
            cells = self._cells()
        cells[_LOADS] += 1
        cells[_LOADED_KEYS] += len(keys)
        cells[_NANOS] += round(seconds * 1e9)

    def write(self, op: str, key: str, outcome: WriteOutcome) -> None:
        """Count a write by its outcome."""
        try:
            self._local.cells[_OUTCOME[outcome]] += 1
        except AttributeError:
            self._add(_OUTCOME[outcome])

    def invalidate(self, key: str) -> None:
        """Count a successful invalidate."""
        self._add(_INVALIDATES)

    def self_healed(self, op: str, key: str, reason: str) -> None:
        """Count a dropped single entry."""
        self._add(_INDEX["self_healed"])

    def batch_rejected(self, keys: Sequence[str], reason: str) -> None:
        """Count a dropped batch entry."""
        self._add(_INDEX["batch_rejected"])

    def version_snapshot_error(self, op: str, key: str, error: BaseException) -> None:
        """Count a version-store failure."""
        self._add(_INDEX["version_errors"])

    def invalidate_outage(
        self, key: str, advance_error: BaseException, delete_error: BaseException | None
    ) -> None:
        """Count a failed invalidate (its ``version_advance_error`` is not counted again)."""
        self._add(_INDEX["invalidate_errors"])

    def read_error(self, op: str, key: str, error: BaseException) -> None:
        """Count a failed cache read in a fill."""
        self._add(_INDEX["read_errors"])

    def store_error(self, op: str, key: str, error: BaseException) -> None:
        """Count a failed write made on the caller's behalf."""
        self._add(_INDEX["store_errors"])

    def codec_error(self, op: str, key: str, error: BaseException) -> None:
        """Count a loaded value the codec refused."""
        self._add(_INDEX["codec_errors"])

    def cleanup_error(self, op: str, key: str, error: BaseException) -> None:
        """Count a failed cleanup delete."""
        self._add(_INDEX["cleanup_errors"])

    # -- reading -------------------------------------------------------------------------

    def _totals(self) -> list[int]:
        # Under the lock: no thread is registered or retired meanwhile. Other threads'
        # cells are read without it; each read sees a whole count, before or after an event.
        totals = list(self._retired)
        for cells in list(self._live.values()):
            totals = [a + b for a, b in zip(totals, cells, strict=True)]
        return totals

    def snapshot(self) -> CounterSnapshot:
        """The counts so far (since construction or the last :meth:`reset`)."""
        with self._lock:
            totals = [a - b for a, b in zip(self._totals(), self._base, strict=True)]
        counts = dict(zip(_NAMES, totals, strict=False))
        return CounterSnapshot(**counts, load_seconds=totals[_NANOS] / 1e9)

    def reset(self) -> None:
        """Start counting from zero again (events counted concurrently with the reset land
        on one side of it or the other)."""
        with self._lock:
            self._base = self._totals()

    def __repr__(self) -> str:
        snap = self.snapshot()
        return f"Counters(hits={snap.hits}, misses={snap.misses}, errors={snap.errors})"


def _retire(counters: weakref.ref[Counters], ident: int) -> None:
    """Fold an ended thread's counts into its counters, if they still exist."""
    alive = counters()
    if alive is not None:
        alive._retire(ident)
