"""Tests for cascache.local.LocalStore: one record per key, values and versions together."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cascache
from cascache import ConfigError, JsonCodec, LocalStore, Options, WriteOutcome
from cascache.fence import Version, new_fence
from cascache.genstore import GenStore
from cascache.keys import CacheKey, KeySpace
from cascache.local import MIN_BYTES, RECORD_OVERHEAD
from cascache.mutator import BatchReader, KeyInvalidator, KeyReader, KeyWriter
from cascache.provider import AddProvider, BulkDeleteProvider, ManyProvider, Provider
from tests.conftest import heap_growth
from tests.test_memory import FakeClock

NS = "app"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(clock: FakeClock) -> LocalStore:
    store = LocalStore(clock=clock)
    store.bind(KeySpace(NS))
    return store


def names(key: str, namespace: str = NS) -> CacheKey:
    return KeySpace(namespace).single(key)


def cache(store: LocalStore, namespace: str = NS, **options: Any) -> cascache.CAS[Any]:
    return cascache.new(Options(namespace=namespace, provider=store, codec=JsonCodec(), **options))


# --- construction and binding ----------------------------------------------------------


def test_implements_every_store_interface(store: LocalStore) -> None:
    for interface in (
        Provider,
        ManyProvider,
        BulkDeleteProvider,
        AddProvider,
        GenStore,
        KeyReader,
        KeyWriter,
        KeyInvalidator,
        BatchReader,
    ):
        assert isinstance(store, interface), interface.__name__


@pytest.mark.parametrize("max_bytes", [0, -1, 1.5, True, "1", 256, MIN_BYTES - 1])
def test_rejects_bad_max_bytes(max_bytes: object) -> None:
    # Below MIN_BYTES a store evicted each fence as it made it: every write a mismatch.
    with pytest.raises(ValueError, match=f"LocalStore max_bytes must be an int >= {MIN_BYTES}"):
        LocalStore(max_bytes=max_bytes)  # type: ignore[arg-type]


def test_rejects_a_clock_that_is_not_callable() -> None:
    with pytest.raises(ValueError, match="LocalStore clock must be a callable"):
        LocalStore(clock=1.0)  # type: ignore[arg-type]


def test_an_empty_store_is_still_truthy() -> None:
    assert LocalStore()


def test_new_wires_the_store_in_as_every_store() -> None:
    store = LocalStore()
    core = cache(store).core
    assert store.namespace == NS
    assert core.provider is store and core.gens is store
    assert core.reader is store and core.writer is store and core.invalidator is store
    assert core.batch_reader is store


def test_a_second_cache_of_the_same_namespace_shares_the_store() -> None:
    store = LocalStore()
    first, second = cache(store), cache(store)
    first.get_or_load("k", lambda: 1)
    assert second.get("k") == cascache.Hit(1)
    second.invalidate("k")
    assert first.get("k") is None


def test_a_cache_of_another_namespace_is_refused() -> None:
    store = LocalStore()
    cache(store)
    with pytest.raises(ConfigError, match=r"serves namespace 'app'.*'other'.*of its own"):
        cache(store, namespace="other")


def test_binding_a_store_that_already_holds_records_is_refused() -> None:
    store = LocalStore()
    store.set("loose", b"x", 1, None)
    with pytest.raises(ConfigError, match="before storing anything in it"):
        cache(store)


def test_compute_set_cost_is_refused_with_a_local_store() -> None:
    with pytest.raises(ConfigError, match="compute_set_cost does not apply to a LocalStore"):
        cache(LocalStore(), compute_set_cost=len)


def test_an_explicit_version_store_makes_it_a_value_store_only() -> None:
    store, gens = LocalStore(), cascache.LocalGenStore()
    c = cache(store, gen_store=gens)
    assert c.core.gens is gens and c.core.reader is None and c.core.writer is None
    c.get_or_load("k", lambda: 1)
    assert c.get("k") == cascache.Hit(1)
    assert gens.peek(names("k").version) is not None
    assert store.peek(names("k").version) is None


@pytest.mark.parametrize("first_keeps_versions", [True, False])
def test_caches_sharing_a_store_must_share_its_versions_too(first_keeps_versions: bool) -> None:
    # Accepted before: the two caches shared values but not fences, so a late filler on
    # one stored after the other's invalidate returned, and was served.
    store = LocalStore()
    on_store = lambda: cache(store)  # noqa: E731
    elsewhere = lambda: cache(store, gen_store=cascache.LocalGenStore())  # noqa: E731
    first, second = (on_store, elsewhere) if first_keeps_versions else (elsewhere, on_store)
    first()
    with pytest.raises(ConfigError, match="must see the other's invalidates"):
        second()
    # Naming the store itself as the version store keeps its versions there: allowed.
    if first_keeps_versions:
        cache(store, gen_store=store)


def test_a_closed_store_is_a_config_error() -> None:
    store = LocalStore()
    store.close()
    with pytest.raises(ConfigError, match="this LocalStore is closed"):
        cache(store)


def test_a_local_store_as_a_mutator_must_be_the_version_store() -> None:
    store = LocalStore()
    with pytest.raises(ConfigError, match=r"Options\.key_invalidator is a LocalStore"):
        cascache.new(
            Options(
                namespace=NS,
                provider=cascache.MemoryProvider(),
                codec=JsonCodec(),
                gen_store=cascache.LocalGenStore(),
                key_invalidator=store,
            )
        )


# --- the single-key paths ---------------------------------------------------------------


def test_read_of_an_unknown_key_is_empty(store: LocalStore) -> None:
    assert store.read(names("k")) == (None, None)


def test_write_needs_the_current_fence(store: LocalStore) -> None:
    ck = names("k")
    assert store.write_if_version(ck, b"frame", new_fence(), None) is False
    fence = store.snapshot(ck.version)
    assert store.write_if_version(ck, b"frame", new_fence(), None) is False
    assert store.write_if_version(ck, b"frame", fence, None) is True
    assert store.read(ck) == (b"frame", fence)


def test_invalidate_installs_a_fresh_fence_and_drops_the_frame(store: LocalStore) -> None:
    ck = names("k")
    fence = store.snapshot(ck.version)
    store.write_if_version(ck, b"frame", fence, None)
    store.invalidate(ck)
    frame, current = store.read(ck)
    assert frame is None and current is not None and current != fence
    assert store.write_if_version(ck, b"late", fence, None) is False


def test_invalidate_of_an_unknown_key_installs_a_fence(store: LocalStore) -> None:
    store.invalidate(names("k"))
    assert store.read(names("k"))[1] is not None


def test_a_frame_too_large_to_fit_is_refused_and_the_old_one_dropped(clock: FakeClock) -> None:
    store = LocalStore(max_bytes=MIN_BYTES, clock=clock)
    store.bind(KeySpace(NS))
    ck = names("k")
    fence = store.snapshot(ck.version)
    assert store.write_if_version(ck, b"small", fence, None) is True
    assert store.write_if_version(ck, bytes(MIN_BYTES - RECORD_OVERHEAD), fence, None) is None
    assert store.read(ck) == (None, fence)


def test_a_refused_frame_is_reported_as_provider_rejected() -> None:
    c = cache(LocalStore(max_bytes=MIN_BYTES))
    version = c.snapshot_version("k")
    too_big = "x" * MIN_BYTES
    assert c.set_if_version("k", too_big, version).outcome is WriteOutcome.PROVIDER_REJECTED
    assert c.set_if_version("k", "x", version).outcome is WriteOutcome.STORED


def test_read_batch_reads_the_entry_and_every_fence(store: LocalStore) -> None:
    a, b = names("a"), names("b")
    fence = store.snapshot(a.version)
    batch = KeySpace(NS).batch(["a", "b"])
    store.set(batch, b"blob", 4, None)
    assert store.read_batch(batch, [a, b]) == (b"blob", [fence, None])


# --- the Provider and GenStore views ---------------------------------------------------


def test_storage_names_reach_the_record_of_their_key(store: LocalStore) -> None:
    ck = names("k")
    fence = store.snapshot(ck.version)
    assert store.current(ck.version) == fence
    store.set(ck.value, b"frame", 5, None)
    assert store.read(ck) == (b"frame", fence)
    assert store.get(ck.value) == b"frame"
    assert len(store) == 1
    store.delete(ck.value)
    assert store.read(ck) == (None, fence), "deleting the value keeps the fence"


def test_names_of_another_namespace_or_a_forged_tag_have_records_of_their_own(
    store: LocalStore,
) -> None:
    ours, theirs = names("k"), names("k", "other")
    forged = ours.value.replace(ours.value[5:21], "0" * 16)
    store.set(ours.value, b"ours", 4, None)
    store.set(theirs.value, b"theirs", 6, None)
    store.set(forged, b"forged", 6, None)
    assert store.read(ours)[0] == b"ours"
    assert [store.get(n) for n in (ours.value, theirs.value, forged)] == [
        b"ours",
        b"theirs",
        b"forged",
    ]
    assert len(store) == 3


def test_a_key_that_spells_a_storage_name_does_not_collide_with_it(store: LocalStore) -> None:
    batch = KeySpace(NS).batch(["a", "b"])
    store.set(batch, b"batch", 5, None)
    tricky = names(batch)
    fence = store.snapshot(tricky.version)
    store.write_if_version(tricky, b"single", fence, None)
    assert store.get(batch) == b"batch"
    assert store.read(tricky) == (b"single", fence)


def test_an_unbound_store_is_a_plain_provider_and_version_store() -> None:
    store = LocalStore()
    ck = names("k")
    store.set(ck.value, b"v", 1, None)
    fence = store.snapshot(ck.version)
    assert store.get(ck.value) == b"v" and store.current(ck.version) == fence
    assert len(store) == 2, "unbound, a key's names are two records"


def test_snapshot_creates_once_and_advance_replaces(store: LocalStore) -> None:
    name = names("k").version
    assert store.current(name) is None
    first = store.snapshot(name)
    assert store.snapshot(name) == first == store.current(name)
    advanced = store.advance(name)
    assert advanced != first and store.current(name) == advanced


def test_many_key_views_answer_in_order(store: LocalStore) -> None:
    a, b = names("a"), names("b")
    fences = store.snapshot_many([a.version, b.version])
    assert store.current_many([b.version, a.version]) == fences[::-1]
    store.set(a.value, b"A", 1, None)
    assert store.get_many([b.value, a.value, a.value]) == [None, b"A", b"A"]
    store.delete_many([a.value])
    assert store.get_many([a.value]) == [None]


@pytest.mark.parametrize("method", ["get_many", "delete_many", "current_many", "snapshot_many"])
def test_many_key_views_refuse_a_bare_string(store: LocalStore, method: str) -> None:
    with pytest.raises(TypeError, match=f"LocalStore.{method} takes a sequence of keys"):
        getattr(store, method)("abc")


def test_add_stores_only_without_a_live_frame(store: LocalStore, clock: FakeClock) -> None:
    name = names("k").value
    assert store.add(name, b"first", 1, 10.0) is True
    assert store.add(name, b"second", 1, None) is False
    clock.advance(10.0)
    assert store.add(name, b"third", 1, None) is True
    assert store.get(name) == b"third"


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        ((1, b"v", 1, None), TypeError, "LocalStore keys are str"),
        (("k", "v", 1, None), TypeError, "LocalStore values are bytes"),
        (("k", b"v", 1.5, None), TypeError, "LocalStore cost must be an int"),
        (("k", b"v", 1, "1"), TypeError, "LocalStore ttl must be seconds"),
        (("k", b"v", 1, 0), ValueError, "LocalStore ttl must be positive and finite"),
        (("k", b"v", 1, float("inf")), ValueError, "LocalStore ttl must be positive"),
        (("k", b"v", 1, 10**400), ValueError, "LocalStore ttl must be positive and finite"),
    ],
)
def test_bad_arguments_raise_and_change_nothing(
    store: LocalStore, args: tuple[Any, ...], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        store.set(*args)
    assert len(store) == 0


# --- expiry, eviction, audits, lifecycle ---------------------------------------------------


def test_a_frame_expires_exactly_at_its_ttl_and_the_fence_stays(
    store: LocalStore, clock: FakeClock
) -> None:
    ck = names("k")
    fence = store.snapshot(ck.version)
    store.write_if_version(ck, b"frame", fence, 5.0)
    clock.advance(4.999)
    assert store.read(ck) == (b"frame", fence)
    clock.advance(0.001)
    assert store.read(ck) == (None, fence)
    assert store.get(ck.value) is None


def test_least_recently_used_records_are_evicted_whole(clock: FakeClock) -> None:
    store = LocalStore(max_bytes=3 * (RECORD_OVERHEAD + 40), clock=clock)
    store.bind(KeySpace(NS))
    cks = [names(k) for k in "abcd"]
    for ck in cks[:3]:
        store.write_if_version(ck, bytes(30), store.snapshot(ck.version), None)
    store.read(cks[0])  # a is now the most recently used
    store.write_if_version(cks[3], bytes(30), store.snapshot(cks[3].version), None)
    assert store.read(cks[1]) == (None, None), "b was least recently used: frame and fence gone"
    assert store.read(cks[0])[0] is not None
    assert store.size <= store.max_bytes


def test_a_write_compares_fences_by_value_not_by_identity(store: LocalStore) -> None:
    ck = names("k")
    fence = store.snapshot(ck.version)
    assert store.write_if_version(ck, b"other", new_fence(), None) is False
    assert store.write_if_version(ck, b"frame", Version.from_bytes(fence.to_bytes()), None)
    assert store.read(ck) == (b"frame", fence)


def test_a_write_and_an_invalidate_count_as_use_and_a_new_record_as_the_latest(
    clock: FakeClock,
) -> None:
    store = LocalStore(max_bytes=3 * (RECORD_OVERHEAD + 40), clock=clock)
    store.bind(KeySpace(NS))
    a, b, c, d = (names(k) for k in "abcd")
    fence_a = store.snapshot(a.version)
    store.snapshot_many([b.version, c.version])  # recency now a, b, c
    assert store.write_if_version(a, bytes(30), fence_a, None) is True  # b, c, a
    store.invalidate(b)  # c, a, b
    store.snapshot(d.version)  # c, a, b, d: over the bound, so c goes
    assert store.peek(c.version) is None
    assert None not in (store.peek(a.version), store.peek(b.version), store.peek(d.version))
    assert store.get(a.value) == bytes(30)
    assert store.size <= store.max_bytes


def test_peek_does_not_count_as_use_and_forget_drops_only_the_fence(store: LocalStore) -> None:
    ck = names("k")
    fence = store.snapshot(ck.version)
    store.write_if_version(ck, b"frame", fence, None)
    assert store.peek(ck.version) == fence
    store.forget(ck.version)
    assert store.read(ck) == (b"frame", None)
    store.clear_versions()
    assert store.read(ck) == (b"frame", None)


def test_clear_versions_drops_every_fence(store: LocalStore) -> None:
    a, b = names("a"), names("b")
    store.snapshot_many([a.version, b.version])
    store.clear_versions()
    assert store.current_many([a.version, b.version]) == [None, None]
    assert len(store) == 0, "records left with neither frame nor fence are dropped"


def test_close_is_idempotent_and_everything_else_raises(store: LocalStore) -> None:
    store.snapshot(names("k").version)
    store.close()
    store.close()
    for call in (
        lambda: store.read(names("k")),
        lambda: store.get("k"),
        lambda: store.snapshot("k"),
        lambda: store.invalidate(names("k")),
        lambda: len(store),
        lambda: store.size,
    ):
        with pytest.raises(RuntimeError, match="LocalStore is closed"):
            call()


def test_a_closed_cache_closes_its_store() -> None:
    store = LocalStore()
    cache(store).close()
    with pytest.raises(RuntimeError, match="closed"):
        store.get("k")


# --- accounting ------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                [
                    *("write", "invalidate", "snapshot", "delete", "tick", "batch"),
                    *("add", "advance", "forget", "read"),
                ]
            ),
            st.sampled_from("abcde"),
            st.integers(0, 300),
        ),
        max_size=60,
    )
)
def test_charged_bytes_always_match_the_records_held(ops: list[tuple[str, str, int]]) -> None:
    clock = FakeClock()
    store = LocalStore(max_bytes=4 * (RECORD_OVERHEAD + 200), clock=clock)
    store.bind(KeySpace(NS))
    for op, key, n in ops:
        ck = names(key)
        if op == "write":
            fence = store.current(ck.version) or store.snapshot(ck.version)
            store.write_if_version(ck, bytes(n), fence, (n % 7) or None)
        elif op == "invalidate":
            store.invalidate(ck)
        elif op == "snapshot":
            store.snapshot(ck.version)
        elif op == "delete":
            store.delete(ck.value)
        elif op == "batch":
            store.set(KeySpace(NS).batch([key, "z"]), bytes(n), n, None)
        elif op == "add":
            store.add(ck.value, bytes(n), n, (n % 5) or None)
        elif op == "advance":
            store.advance(ck.version)
        elif op == "forget":
            store.forget(ck.version)
        elif op == "read":
            store.read(ck)
        else:
            clock.advance(n / 50)
        records = store._records
        expected = sum(
            RECORD_OVERHEAD
            + len(slot if isinstance(slot, str) else slot[0])
            + len(record[0] or b"")
            for slot, record in records.items()
        )
        assert store.size == expected <= store.max_bytes
        assert all(record[0] is not None or record[1] is not None for record in records.values())


def test_concurrent_use_keeps_the_accounting_exact() -> None:
    store = LocalStore(max_bytes=20 * (RECORD_OVERHEAD + 100))
    c = cache(store)
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            for i in range(400):
                key = f"k{(seed * 7 + i) % 40}"
                if i % 5 == 0:
                    c.invalidate(key)
                else:
                    c.get_or_load(key, lambda n=i % 90: "x" * n)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    records = store._records
    assert store.size == sum(
        RECORD_OVERHEAD + len(slot if isinstance(slot, str) else slot[0]) + len(r[0] or b"")
        for slot, r in records.items()
    )
    assert store.size <= store.max_bytes


@pytest.mark.parametrize("ttl", [None, 60.0])
@pytest.mark.parametrize("value_bytes", [1, 64, 4096])
def test_max_bytes_bounds_the_heap_the_store_holds(value_bytes: int, ttl: float | None) -> None:
    budget = 1 << 20

    def fill() -> LocalStore:
        store = LocalStore(max_bytes=budget)
        c = cache(store)
        payload = "x" * value_bytes
        for i in range(4 * budget // (value_bytes + 100)):
            c.get_or_load(f"key-{i:07d}", lambda: payload, ttl=ttl)
        c.core.keys.clear()  # the cache's own name cache is not the store's
        return store

    held, store = heap_growth(fill)
    assert isinstance(store, LocalStore) and len(store) > 0
    assert held <= budget * 1.25, f"{held} bytes held for a {budget}-byte budget"


def test_a_version_object_is_what_reads_hand_out(store: LocalStore) -> None:
    ck = names("k")
    fence = store.snapshot(ck.version)
    assert isinstance(fence, Version) and store.read(ck)[1] is fence


def test_single_key_operations_never_derive_storage_names() -> None:
    store = LocalStore()
    c = cache(store)
    c.get_or_load("k", lambda: 1)
    c.get("k")
    c.set_if_version("k", 2, c.snapshot_version("k"))
    c.invalidate("k")
    c.get_or_load("k", lambda: 3)
    ck = c.core.keys.single("k")
    with pytest.raises(AttributeError):
        object.__getattribute__(ck, "value")  # hashing names is not on these paths
    assert c.get("k") == cascache.Hit(3)


def test_snapshot_by_key_is_snapshot_by_name(store: LocalStore) -> None:
    ck = names("k")
    fence = store.snapshot_key(ck)
    assert store.snapshot(ck.version) is fence is store.snapshot_key(ck)
    store.invalidate(ck)
    assert store.snapshot_key(ck) != fence


def test_a_cache_on_a_local_store_keeps_few_key_objects() -> None:
    c = cache(LocalStore())
    for i in range(LocalStore.KEY_CACHE_SIZE * 2):
        c.get(f"k{i}")
    assert len(c.core.keys._cache) == LocalStore.KEY_CACHE_SIZE
