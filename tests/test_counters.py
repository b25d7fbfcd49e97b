"""``cascache.Counters``: exact counts after known sequences, from one thread and many."""

from __future__ import annotations

import dataclasses
import gc
import threading
import weakref
from typing import Any

import pytest

import cascache
from cascache import (
    Counters,
    CounterSnapshot,
    Hit,
    InvalidateError,
    JsonCodec,
    LocalGenStore,
    MemoryProvider,
    Options,
    VersionedValue,
    WriteOutcome,
    fan_out,
)


def local(hooks: cascache.Hooks, **options: Any) -> cascache.CAS[Any]:
    options.setdefault("provider", MemoryProvider())
    return cascache.new(Options(namespace="c", codec=JsonCodec(), hooks=hooks, **options))


def test_a_new_counter_is_all_zero() -> None:
    snap = Counters().snapshot()
    assert snap == CounterSnapshot()
    assert (snap.hit_rate, snap.lookups, snap.writes, snap.errors) == (0.0, 0, 0, 0)


def test_the_snapshot_is_an_immutable_record() -> None:
    counters = Counters()
    snap = counters.snapshot()
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.hits = 1  # type: ignore[misc]
    counters.hit("get", "k")
    assert snap.hits == 0 and counters.snapshot().hits == 1


def test_a_known_sequence_counts_exactly() -> None:
    counters = Counters()
    cache = local(counters)
    assert cache.get("a") is None  # miss
    assert cache.get_or_load("a", lambda: 1) == 1  # miss, load, stored
    for _ in range(3):
        assert cache.get("a") == Hit(1)  # 3 hits
    old = cache.snapshot_version("a")
    cache.invalidate("a")  # invalidate
    assert cache.set_if_version("a", 2, old).outcome is WriteOutcome.VERSION_MISMATCH
    assert cache.get_many_or_load(["x", "y", "z"], lambda keys: {k: k for k in keys}) == {
        "x": "x",
        "y": "y",
        "z": "z",
    }  # 3 misses, 1 load of 3 keys, 3 stored
    assert cache.get_many(["x", "y", "z", "w"]) == ({"x": "x", "y": "y", "z": "z"}, ["w"])
    snap = counters.snapshot()
    assert dataclasses.replace(snap, load_seconds=0.0) == CounterSnapshot(
        hits=6,
        misses=6,
        loads=2,
        loaded_keys=4,
        stored=4,
        mismatches=1,
        invalidates=1,
    )
    assert snap.load_seconds > 0.0
    assert snap.lookups == 12 and snap.hit_rate == 0.5 and snap.writes == 5


def test_every_write_outcome_and_every_error_has_its_count() -> None:
    counters = Counters()

    class Declines(MemoryProvider):
        def set(self, key: str, value: bytes, cost: int, ttl: float | None) -> bool:
            return False

    declined = local(counters, provider=Declines())
    version = declined.snapshot_version("k")
    assert declined.set_if_version("k", 1, version).outcome is WriteOutcome.PROVIDER_REJECTED

    disabled = local(counters, disabled=True)
    assert disabled.get("k") is None
    assert disabled.set_if_version("k", 1, version).outcome is WriteOutcome.DISABLED

    class Broken(LocalGenStore):
        def current(self, key: str) -> cascache.Version | None:
            raise OSError("versions down")

        def advance(self, key: str) -> cascache.Version:
            raise OSError("versions down")

    broken = local(counters, gen_store=Broken())
    version = broken.snapshot_version("k")
    assert broken.set_if_version("k", 1, version).outcome is WriteOutcome.SNAPSHOT_ERROR
    with pytest.raises(InvalidateError):
        broken.invalidate("k")
    assert broken.get_or_load("j", lambda: {1}) == {1}  # the codec refuses a set

    snap = counters.snapshot()
    assert (snap.rejected, snap.disabled, snap.skipped, snap.misses) == (1, 1, 1, 2)
    assert (snap.version_errors, snap.invalidate_errors, snap.codec_errors) == (1, 1, 1)
    # The declined write is counted once (not again as ``provider_set_rejected``), and the
    # failed invalidate once (not again as ``version_advance_error``).
    assert snap.writes == 3 and snap.errors == 3


def test_self_heals_and_cleanup_failures_are_counted() -> None:
    counters = Counters()

    class NoDelete(MemoryProvider):
        def delete(self, key: str) -> None:
            raise OSError("delete refused")

    provider = NoDelete()
    cache = local(counters, provider=provider)
    provider.set(cache.core.keys.single("k").value, b"corrupt", 7, None)
    assert cache.get("k") is None
    snap = counters.snapshot()
    assert (snap.self_healed, snap.cleanup_errors, snap.misses, snap.errors) == (1, 1, 1, 1)


def test_batch_rejections_are_counted() -> None:
    counters = Counters()
    cache = local(counters)
    versions = cache.snapshot_versions(["a", "b"])
    assert cache.set_if_versions([VersionedValue(k, k, versions[k]) for k in "ab"]).stored
    cache.invalidate("a")
    assert cache.get_many(["a", "b"]) == ({"b": "b"}, ["a"])
    snap = counters.snapshot()
    assert (snap.batch_rejected, snap.hits, snap.misses, snap.stored) == (1, 1, 1, 2)


def test_reset_starts_from_zero() -> None:
    counters = Counters()
    cache = local(counters)
    cache.get_or_load("k", lambda: 1)
    cache.get("k")
    counters.reset()
    assert counters.snapshot() == CounterSnapshot()
    cache.get("k")
    assert counters.snapshot() == CounterSnapshot(hits=1)


THREADS = 8
ROUNDS = 500


def test_many_threads_count_exactly() -> None:
    counters = Counters()
    cache = local(counters)
    barrier = threading.Barrier(THREADS)

    def work(t: int) -> None:
        barrier.wait()
        for i in range(ROUNDS):
            key = f"{t}-{i}"
            assert cache.get_or_load(key, lambda i=i: i) == i  # miss, load, stored
            assert cache.get(key) == Hit(i)  # hit
            counters.hit("get", key)  # and the event straight, to race the same cells

    threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    # Snapshots taken while they count never go backwards.
    seen = 0
    while any(thread.is_alive() for thread in threads):
        now = counters.snapshot().hits
        assert now >= seen
        seen = now
    for thread in threads:
        thread.join()
    gc.collect()  # the threads' own cells are folded into the total as they go
    n = THREADS * ROUNDS
    expected = CounterSnapshot(hits=2 * n, misses=n, loads=n, loaded_keys=n, stored=n)
    assert dataclasses.replace(counters.snapshot(), load_seconds=0.0) == expected
    # One more thread after the others ended: still exact.
    extra = threading.Thread(target=counters.miss, args=("get", "x"))
    extra.start()
    extra.join()
    assert counters.snapshot().misses == n + 1


def test_a_thread_that_counted_then_ended_is_not_kept() -> None:
    counters = Counters()

    def count() -> None:
        counters.hit("get", "k")

    for _ in range(50):
        thread = threading.Thread(target=count)
        thread.start()
        thread.join()
    gc.collect()
    assert counters.snapshot().hits == 50
    assert len(counters._live) <= 1  # every ended thread's cells were folded


def test_counters_that_counted_on_a_living_thread_are_freed_with_their_last_reference() -> None:
    # The thread's finalizer held the counters strongly: every Counters ever counted on
    # the main thread (or a pool thread) stayed alive as long as that thread.
    counters = Counters()
    counters.hit("get", "k")
    gone = weakref.ref(counters)
    del counters
    gc.collect()
    assert gone() is None


def test_counters_compose_with_other_hooks() -> None:
    first, second = Counters(), Counters()
    cache = local(fan_out(first, cascache.LoggingHooks(), second))
    cache.get_or_load("k", lambda: 1)
    cache.get("k")
    assert first.snapshot() == second.snapshot()
    assert first.snapshot().hits == 1
    assert repr(first) == "Counters(hits=1, misses=1, errors=0)"
