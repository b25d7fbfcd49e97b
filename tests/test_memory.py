"""Tests for cascache.memory.MemoryProvider."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from cascache.memory import MemoryProvider
from cascache.provider import AddProvider, ManyProvider, Provider
from tests.conftest import heap_growth


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(clock: FakeClock) -> MemoryProvider:
    return MemoryProvider(max_cost=10, clock=clock, charge_overhead=False)


# --- construction and protocol --------------------------------------------------------


def test_implements_every_provider_interface(store: MemoryProvider) -> None:
    assert isinstance(store, Provider)
    assert isinstance(store, ManyProvider)
    assert isinstance(store, AddProvider)


def test_defaults() -> None:
    store = MemoryProvider()
    assert store.max_cost == 64 << 20
    assert store.set("k", b"v", 1, 60)
    assert store.get("k") == b"v"


@pytest.mark.parametrize("max_cost", [0, -5, True, 1.5, "10", None])
def test_rejects_bad_max_cost(max_cost: object) -> None:
    with pytest.raises(ValueError, match="max_cost"):
        MemoryProvider(max_cost=max_cost)  # type: ignore[arg-type]


def test_rejects_a_clock_that_is_not_callable() -> None:
    with pytest.raises(ValueError, match="clock"):
        MemoryProvider(clock=123.0)  # type: ignore[arg-type]


def test_an_empty_store_is_still_truthy(store: MemoryProvider) -> None:
    assert len(store) == 0
    assert store


# --- basic operations -----------------------------------------------------------------


def test_get_set_delete(store: MemoryProvider) -> None:
    assert store.get("a") is None
    assert store.set("a", b"1", 1, None) is True
    assert store.get("a") == b"1"
    store.delete("a")
    assert store.get("a") is None
    store.delete("a")  # deleting an absent key is fine
    assert len(store) == 0
    assert store.cost == 0


def test_overwrite_replaces_value_and_cost(store: MemoryProvider) -> None:
    store.set("a", b"1", 3, None)
    store.set("b", b"2", 2, None)
    assert store.cost == 5
    store.set("a", b"one", 4, None)
    assert store.get("a") == b"one"
    assert store.cost == 6
    assert len(store) == 2


def test_get_many_returns_values_in_order_with_repeats(store: MemoryProvider) -> None:
    store.set("a", b"1", 1, None)
    store.set("b", b"2", 1, None)
    assert store.get_many(["b", "x", "a", "b"]) == [b"2", None, b"1", b"2"]
    assert store.get_many([]) == []
    assert store.get_many(("a",)) == [b"1"]


def test_get_many_refuses_a_bare_string(store: MemoryProvider) -> None:
    store.set("a", b"1", 1, None)
    with pytest.raises(TypeError, match="sequence of keys"):
        store.get_many("a")


def test_delete_many_refuses_a_bare_string_and_reads_a_generator_once(
    store: MemoryProvider,
) -> None:
    for key in ("a", "b", "c", "abc", "x", "y"):
        store.set(key, b"1", 1, None)
    # A str deleted one key per character; a generator was used up by the type check.
    with pytest.raises(TypeError, match=r"MemoryProvider\.delete_many takes a sequence"):
        store.delete_many("abc")
    assert store.get_many(["a", "b", "c", "abc"]) == [b"1"] * 4
    store.delete_many(key for key in ("x", "y"))
    assert store.get_many(["x", "y"]) == [None, None]


def test_zero_cost_entries_are_allowed(store: MemoryProvider) -> None:
    store.set("big", b"x", 10, None)
    assert store.set("free", b"y", 0, None)
    assert store.get("big") == b"x"
    assert store.cost == 10


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.get(1),
        lambda s: s.get_many(["a", 1]),
        lambda s: s.delete(None),
        lambda s: s.set(1, b"v", 1, None),
        lambda s: s.set("k", "v", 1, None),
        lambda s: s.set("k", bytearray(b"v"), 1, None),
        lambda s: s.set("k", b"v", 1.0, None),
        lambda s: s.set("k", b"v", True, None),
        lambda s: s.set("k", b"v", 1, "5"),
        lambda s: s.set("k", b"v", 1, True),
        lambda s: s.add("k", "v", 1, None),
    ],
)
def test_wrong_argument_types_raise_type_error_and_change_nothing(
    store: MemoryProvider, call: Callable[[MemoryProvider], object]
) -> None:
    store.set("k", b"old", 1, None)
    with pytest.raises(TypeError):
        call(store)
    assert store.get("k") == b"old"
    assert store.cost == 1


@pytest.mark.parametrize(
    # 10**400: an int past a float's range raised OverflowError from math.isfinite
    "ttl",
    [0, -1, 0.0, float("nan"), float("inf"), float("-inf"), 10**400],
)
def test_bad_ttls_raise_value_error_and_change_nothing(store: MemoryProvider, ttl: float) -> None:
    store.set("k", b"old", 1, None)
    with pytest.raises(ValueError, match="ttl"):
        store.set("k", b"new", 1, ttl)
    with pytest.raises(ValueError, match="ttl"):
        store.add("other", b"new", 1, ttl)
    assert store.get("k") == b"old"
    assert store.get("other") is None


# --- TTL ------------------------------------------------------------------------------


def test_entry_expires_exactly_at_its_ttl(store: MemoryProvider, clock: FakeClock) -> None:
    store.set("k", b"v", 2, 5)
    clock.advance(4.999)
    assert store.get("k") == b"v"
    clock.advance(0.001)
    assert store.get("k") is None
    assert len(store) == 0
    assert store.cost == 0


def test_no_ttl_never_expires(store: MemoryProvider, clock: FakeClock) -> None:
    store.set("k", b"v", 1, None)
    clock.advance(1e9)
    assert store.get("k") == b"v"


def test_overwrite_replaces_the_ttl(store: MemoryProvider, clock: FakeClock) -> None:
    store.set("k", b"v1", 1, 1)
    store.set("k", b"v2", 1, None)
    clock.advance(10)
    assert store.get("k") == b"v2"
    store.set("k", b"v3", 1, 1)
    clock.advance(1)
    assert store.get("k") is None


def test_a_stale_expiry_does_not_remove_a_newer_entry(
    store: MemoryProvider, clock: FakeClock
) -> None:
    store.set("k", b"short", 1, 1)
    store.delete("k")
    store.set("k", b"long", 1, 100)
    clock.advance(2)
    assert store.get("k") == b"long"
    assert store.cost == 1


def test_expired_entries_are_invisible_to_every_read(
    store: MemoryProvider, clock: FakeClock
) -> None:
    store.set("gone", b"1", 3, 1)
    store.set("kept", b"2", 4, 100)
    clock.advance(1)
    assert store.get_many(["gone", "kept"]) == [None, b"2"]
    assert len(store) == 1
    assert store.cost == 4
    assert store.add("gone", b"new", 1, None) is True
    assert store.get("gone") == b"new"


def test_expired_entries_make_room_before_live_ones_are_evicted(
    store: MemoryProvider, clock: FakeClock
) -> None:
    store.set("old-live", b"1", 4, None)  # least recently used
    store.set("expiring", b"2", 4, 1)
    clock.advance(1)
    assert store.set("new", b"3", 6, None)
    assert store.get("old-live") == b"1"
    assert store.get("new") == b"3"


def test_clock_is_read_through_the_injected_callable() -> None:
    readings: list[float] = []

    def clock() -> float:
        readings.append(5.0)
        return 5.0

    store = MemoryProvider(clock=clock)
    store.set("k", b"v", 1, 1)
    assert readings


def test_rewriting_a_key_with_a_long_ttl_keeps_bookkeeping_bounded(
    store: MemoryProvider,
) -> None:
    for i in range(10_000):
        store.set("k", str(i).encode(), 1, 3600)
    assert store.get("k") == b"9999"
    # White-box: the expiry heap must not keep one item per overwrite.
    assert len(store._expiries) <= 2 * len(store) + 65


# --- cost bound and LRU ---------------------------------------------------------------


def test_evicts_least_recently_used_to_make_room(store: MemoryProvider) -> None:
    store.set("a", b"a", 4, None)
    store.set("b", b"b", 4, None)
    assert store.set("c", b"c", 4, None)
    assert store.get("a") is None
    assert store.get("b") == b"b"
    assert store.get("c") == b"c"
    assert store.cost == 8


def test_get_refreshes_recency(store: MemoryProvider) -> None:
    store.set("a", b"a", 4, None)
    store.set("b", b"b", 4, None)
    store.get("a")
    store.set("c", b"c", 4, None)
    assert store.get("a") == b"a"
    assert store.get("b") is None


def test_get_many_refreshes_recency(store: MemoryProvider) -> None:
    store.set("a", b"a", 4, None)
    store.set("b", b"b", 4, None)
    store.get_many(["a"])
    store.set("c", b"c", 4, None)
    assert store.get_many(["a", "b"]) == [b"a", None]


def test_overwrite_refreshes_recency(store: MemoryProvider) -> None:
    store.set("a", b"a", 4, None)
    store.set("b", b"b", 4, None)
    store.set("a", b"a2", 4, None)
    store.set("c", b"c", 4, None)
    assert store.get("a") == b"a2"
    assert store.get("b") is None


def test_evicts_as_many_entries_as_needed(store: MemoryProvider) -> None:
    for key in "abcde":
        store.set(key, key.encode(), 2, None)
    assert store.set("big", b"B", 7, None)
    assert [store.get(key) for key in "abcde"] == [None, None, None, None, b"e"]
    assert store.cost == 9


def test_an_entry_of_exactly_max_cost_evicts_everything_else(store: MemoryProvider) -> None:
    store.set("a", b"a", 3, None)
    store.set("b", b"b", 3, None)
    assert store.set("full", b"f", 10, None)
    assert len(store) == 1
    assert store.cost == 10


@pytest.mark.parametrize("cost", [11, -1])
def test_refused_set_returns_false_and_deletes_the_old_entry(
    store: MemoryProvider, cost: int
) -> None:
    store.set("k", b"old", 2, None)
    store.set("other", b"o", 2, None)
    assert store.set("k", b"new", cost, None) is False
    assert store.get("k") is None
    assert store.get("other") == b"o"
    assert store.cost == 2
    assert len(store) == 1


def test_refused_set_on_an_absent_key_evicts_nothing(store: MemoryProvider) -> None:
    store.set("a", b"a", 9, None)
    assert store.set("huge", b"h", 11, None) is False
    assert store.get("a") == b"a"
    assert store.cost == 9


# --- add ------------------------------------------------------------------------------


def test_add_stores_only_when_absent(store: MemoryProvider) -> None:
    assert store.add("k", b"first", 1, None) is True
    assert store.add("k", b"second", 1, None) is False
    assert store.get("k") == b"first"
    assert store.cost == 1


def test_add_after_delete_stores(store: MemoryProvider) -> None:
    store.set("k", b"v", 1, None)
    store.delete("k")
    assert store.add("k", b"again", 1, None) is True
    assert store.get("k") == b"again"


def test_refused_add_leaves_the_existing_entry(store: MemoryProvider) -> None:
    store.set("k", b"v", 2, None)
    assert store.add("k", b"w", 11, None) is False
    assert store.get("k") == b"v"
    assert store.add("absent", b"w", 11, None) is False
    assert store.add("absent", b"w", -1, None) is False
    assert store.get("absent") is None
    assert store.cost == 2


def test_failed_add_does_not_refresh_recency(store: MemoryProvider) -> None:
    store.set("a", b"a", 4, None)
    store.set("b", b"b", 4, None)
    assert store.add("a", b"x", 4, None) is False
    store.set("c", b"c", 4, None)
    assert store.get("a") is None
    assert store.get("b") == b"b"


def test_add_evicts_to_make_room(store: MemoryProvider) -> None:
    store.set("a", b"a", 6, None)
    assert store.add("b", b"b", 6, None) is True
    assert store.get("a") is None
    assert store.cost == 6


# --- close ----------------------------------------------------------------------------


def test_close_is_idempotent_and_everything_else_raises(store: MemoryProvider) -> None:
    store.set("k", b"v", 1, None)
    store.close()
    store.close()
    calls: list[Callable[[], object]] = [
        lambda: store.get("k"),
        lambda: store.get_many(["k"]),
        lambda: store.set("k", b"v", 1, None),
        lambda: store.add("k", b"v", 1, None),
        lambda: store.delete("k"),
        lambda: len(store),
        lambda: store.cost,
    ]
    for call in calls:
        with pytest.raises(RuntimeError, match="MemoryProvider is closed"):
            call()


def test_close_drops_the_entries(store: MemoryProvider) -> None:
    store.set("k", b"v", 1, None)
    store.close()
    assert store._entries == OrderedDict()


# --- threads --------------------------------------------------------------------------


def test_concurrent_use_keeps_the_cost_accounting_exact() -> None:
    max_cost = 500
    store = MemoryProvider(max_cost=max_cost, charge_overhead=False)
    keys = [f"k{i}" for i in range(40)]
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def worker(seed: int) -> None:
        try:
            start.wait()
            for i in range(2000):
                key = keys[(seed * 7 + i) % len(keys)]
                cost = (seed + i) % 30
                if i % 5 == 0:
                    store.delete(key)
                elif i % 5 == 1:
                    store.add(key, cost.to_bytes(2, "big"), cost, None)
                elif i % 5 == 2:
                    store.get_many(keys[:5])
                else:
                    store.set(key, cost.to_bytes(2, "big"), cost, None)
                    store.get(key)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    held = [value for value in store.get_many(keys) if value is not None]
    # Each value encodes its own cost, so the total must match the store's accounting.
    assert sum(int.from_bytes(value, "big") for value in held) == store.cost
    assert store.cost <= max_cost
    assert len(store) == len(held)


# --- the store against a reference model ----------------------------------------------

MAX_COST = 12
KEYS = st.sampled_from(["a", "b", "c", "d", "e"])
COSTS = st.integers(min_value=-2, max_value=MAX_COST + 2)
TTLS = st.none() | st.sampled_from([0.5, 1, 2, 3.25, 10])


class Model:
    """The specified behaviour, written as plainly as possible: a dict in LRU order."""

    def __init__(self, max_cost: int) -> None:
        self.max_cost = max_cost
        self.entries: OrderedDict[str, tuple[bytes, int, float | None]] = OrderedDict()

    def purge(self, now: float) -> None:
        for key, (_, _, expires_at) in list(self.entries.items()):
            if expires_at is not None and expires_at <= now:
                del self.entries[key]

    def total(self) -> int:
        return sum(cost for _, cost, _ in self.entries.values())

    def get(self, key: str) -> bytes | None:
        if key not in self.entries:
            return None
        self.entries.move_to_end(key)
        return self.entries[key][0]

    def store(self, key: str, value: bytes, cost: int, ttl: float | None, now: float) -> bool:
        if cost < 0 or cost > self.max_cost:
            return False
        while self.total() + cost > self.max_cost:
            self.entries.popitem(last=False)
        self.entries[key] = (value, cost, None if ttl is None else now + ttl)
        return True


class MemoryProviderMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock(0.0)
        self.store = MemoryProvider(max_cost=MAX_COST, clock=self.clock, charge_overhead=False)
        self.model = Model(MAX_COST)
        self.writes = 0
        self.closed = False

    def _value(self) -> bytes:
        self.writes += 1
        return f"v{self.writes}".encode()

    @precondition(lambda self: not self.closed)
    @rule(key=KEYS)
    def get(self, key: str) -> None:
        self.model.purge(self.clock.now)
        assert self.store.get(key) == self.model.get(key)

    @precondition(lambda self: not self.closed)
    @rule(keys=st.lists(KEYS, max_size=6))
    def get_many(self, keys: list[str]) -> None:
        self.model.purge(self.clock.now)
        assert self.store.get_many(keys) == [self.model.get(key) for key in keys]

    @precondition(lambda self: not self.closed)
    @rule(key=KEYS, cost=COSTS, ttl=TTLS)
    def set(self, key: str, cost: int, ttl: float | None) -> None:
        value = self._value()
        self.model.purge(self.clock.now)
        self.model.entries.pop(key, None)
        expected = self.model.store(key, value, cost, ttl, self.clock.now)
        assert self.store.set(key, value, cost, ttl) is expected

    @precondition(lambda self: not self.closed)
    @rule(key=KEYS, cost=COSTS, ttl=TTLS)
    def add(self, key: str, cost: int, ttl: float | None) -> None:
        value = self._value()
        self.model.purge(self.clock.now)
        expected = key not in self.model.entries and self.model.store(
            key, value, cost, ttl, self.clock.now
        )
        assert self.store.add(key, value, cost, ttl) is expected

    @precondition(lambda self: not self.closed)
    @rule(key=KEYS)
    def delete(self, key: str) -> None:
        self.model.purge(self.clock.now)
        self.model.entries.pop(key, None)
        self.store.delete(key)

    @rule(seconds=st.sampled_from([0, 0.25, 0.5, 1, 2.5, 20]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @precondition(lambda self: not self.closed)
    @rule()
    def close(self) -> None:
        self.store.close()
        self.closed = True

    @precondition(lambda self: self.closed)
    @rule(key=KEYS)
    def use_after_close(self, key: str) -> None:
        self.store.close()
        with pytest.raises(RuntimeError, match="MemoryProvider is closed"):
            self.store.get(key)

    @invariant()
    def size_and_cost_match(self) -> None:
        if self.closed:
            return
        self.model.purge(self.clock.now)
        assert len(self.store) == len(self.model.entries)
        assert self.store.cost == self.model.total()
        assert self.store.cost <= MAX_COST


MemoryProviderMachine.TestCase.settings = settings(
    max_examples=200, stateful_step_count=40, deadline=None
)
test_memory_provider_matches_the_model = MemoryProviderMachine.TestCase


# --- heap actually held (tracemalloc) -------------------------------------------------------


@pytest.mark.parametrize("ttl", [None, 60.0])
@pytest.mark.parametrize("value_bytes", [1, 64, 4096])
def test_max_cost_bounds_the_heap_the_store_holds(value_bytes: int, ttl: float | None) -> None:
    budget = 1 << 20

    def fill() -> MemoryProvider:
        store = MemoryProvider(max_cost=budget)
        for i in range(4 * budget // (value_bytes + 100)):
            name = f"cc:{{0123456789abcdef}}:v:2:ns:key-{i:07d}"
            store.set(name, bytes(value_bytes), value_bytes, ttl)
        return store

    held, store = heap_growth(fill)
    assert isinstance(store, MemoryProvider) and len(store) > 0
    # Tiny values once cost 12x the budget in heap; the charge now covers keys and overhead.
    assert held <= budget * 1.25, f"{held} bytes held for a {budget}-byte budget"


def test_values_larger_than_the_budget_are_not_held() -> None:
    budget = 1 << 20

    def fill() -> MemoryProvider:
        store = MemoryProvider(max_cost=budget)
        for i in range(50):
            store.set(f"big-{i}", bytes(budget), budget, None)  # refused: key and overhead
            store.set(f"fits-{i}", bytes(budget // 2), budget // 2, None)
        return store

    held, store = heap_growth(fill)
    assert isinstance(store, MemoryProvider) and len(store) == 1
    assert held <= budget * 1.25
