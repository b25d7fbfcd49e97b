"""LocalGenStore: the in-process strict version store (bounded, thread-safe)."""

from __future__ import annotations

import threading

import pytest

from cascache.fence import Version
from cascache.genstore import GenStore, LocalGenStore


@pytest.fixture
def store() -> LocalGenStore:
    return LocalGenStore()


def test_implements_the_protocol(store: LocalGenStore) -> None:
    assert isinstance(store, GenStore)
    assert store.max_keys == 1_000_000


def test_snapshot_creates_once_and_is_stable(store: LocalGenStore) -> None:
    first = store.snapshot("a")
    assert isinstance(first, Version)
    assert len(store) == 1
    assert store.snapshot("a") == first
    assert store.current("a") == first
    assert store.peek("a") == first
    assert len(store) == 1
    assert store.snapshot("b") != first
    assert len(store) == 2


def test_current_never_creates(store: LocalGenStore) -> None:
    assert store.current("a") is None
    assert store.current_many(["a", "b"]) == [None, None]
    assert store.peek("a") is None
    assert len(store) == 0


def test_advance_always_changes(store: LocalGenStore) -> None:
    seen = {store.snapshot("a")}
    for _ in range(50):
        fence = store.advance("a")
        assert fence not in seen
        assert store.current("a") == fence
        assert store.snapshot("a") == fence
        seen.add(fence)
    # On a key with no fence, advance installs one.
    fresh = store.advance("new")
    assert store.current("new") == fresh


def test_many_variants_agree_with_singles(store: LocalGenStore) -> None:
    fences = store.snapshot_many(["a", "b", "a"])
    assert fences[0] == fences[2]
    assert fences[0] != fences[1]
    assert store.current_many(["b", "x", "a"]) == [fences[1], None, fences[0]]
    assert store.snapshot("a") == fences[0]
    assert store.snapshot_many([]) == []
    assert store.current_many([]) == []


def test_lru_bound_evicts_least_recently_used() -> None:
    store = LocalGenStore(max_keys=2)
    a = store.snapshot("a")
    store.snapshot("b")
    assert store.current("a") == a  # a is now more recent than b
    store.snapshot("c")
    assert len(store) == 2
    assert store.peek("b") is None
    assert store.peek("a") == a
    # snapshot_many and advance count as use too.
    store.snapshot_many(["a"])
    store.advance("d")
    assert store.peek("c") is None
    assert store.peek("a") == a


def test_peek_does_not_touch_recency() -> None:
    store = LocalGenStore(max_keys=2)
    store.snapshot("a")
    b = store.snapshot("b")
    assert store.peek("a") is not None
    store.snapshot("c")
    assert store.peek("a") is None
    assert store.peek("b") == b


def test_eviction_then_snapshot_gives_a_new_fence() -> None:
    store = LocalGenStore(max_keys=1)
    a = store.snapshot("a")
    store.snapshot("b")
    assert store.current("a") is None
    assert store.snapshot("a") != a


def test_forget_and_clear(store: LocalGenStore) -> None:
    a = store.snapshot("a")
    b = store.snapshot("b")
    store.forget("a")
    store.forget("never")
    assert store.current("a") is None
    assert store.current("b") == b
    new_a = store.snapshot("a")
    assert new_a != a
    store.clear()
    assert len(store) == 0
    assert store.current_many(["a", "b"]) == [None, None]
    assert store.snapshot("b") != b


def test_threads_snapshotting_one_key_get_one_fence(store: LocalGenStore) -> None:
    threads = 16
    barrier = threading.Barrier(threads)
    results: list[Version] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait()
        for _ in range(50):
            fence = store.snapshot("hot")
            with lock:
                results.append(fence)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert len(results) == threads * 50
    assert set(results) == {store.current("hot")}


def test_threads_under_eviction_pressure_stay_bounded() -> None:
    store = LocalGenStore(max_keys=8)
    threads = 8
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        barrier.wait()
        try:
            for i in range(200):
                key = f"k{(n * 7 + i) % 32}"
                store.snapshot(key)
                if i % 5 == 0:
                    store.advance(key)
                store.current_many([key, "k0"])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert errors == []
    assert len(store) <= 8


@pytest.mark.parametrize("max_keys", [0, -1, True, 1.5, "10", None])
def test_bad_max_keys(max_keys: object) -> None:
    with pytest.raises(ValueError, match="max_keys must be an int >= 1"):
        LocalGenStore(max_keys=max_keys)  # type: ignore[arg-type]


def test_close_releases_the_fences_and_leaves_a_shared_store_usable() -> None:
    store = LocalGenStore()
    old = store.snapshot("k")
    store.close()
    store.close()
    assert store.current("k") is None
    assert store.snapshot("k") != old
