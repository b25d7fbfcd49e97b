"""The public API (``cascache.CAS``) on every topology (fixture ``topology``, DESIGN §2).

Each test builds its caches with ``topology(node=..., **options)``; the same test runs on
the local topology, shared versions in Redis (fakeredis, a real server, a cluster) and
values and versions in Redis. Tests that inject store failures run on the generic
topologies only (``GENERIC``); round-trip budgets (DESIGN §3.8) on the Redis ones.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
import redis
import redis.cluster

import cascache
import cascache.keys
from cascache import (
    CAS,
    BatchWriteResult,
    CodecError,
    ConfigError,
    Hit,
    Hooks,
    InvalidateError,
    MemoryProvider,
    OpError,
    Version,
    VersionedValue,
    WriteOutcome,
)
from cascache.effects import Process, Step
from cascache.fence import new_fence
from cascache.genstore import GenStore
from cascache.keys import CacheKey
from cascache.wire import decode_single, encode_single
from tests.conftest import Hostile, heap_growth
from tests.servers import count_round_trips, primaries, warm_up

GENERIC = ["local", "shared-versions-fake"]
"""Topologies whose stores are plain Python objects a test can wrap with faults."""

REDIS = ["redis-fake", "redis-real", "redis-cluster"]
SHARED_VERSIONS = ["shared-versions-fake", "shared-versions-real", "shared-versions-cluster"]

MISMATCH = WriteOutcome.VERSION_MISMATCH

if TYPE_CHECKING:
    from tests.conftest import Topology


# -- helpers ------------------------------------------------------------------------------


class Recorder(Hooks):
    """Records every hook event as ``(event, args)``."""

    def __init__(self) -> None:
        self.events: list[tuple[str, tuple[Any, ...]]] = []

    def of(self, event: str) -> list[tuple[Any, ...]]:
        """The arguments of every ``event`` recorded, in order."""
        return [args for name, args in self.events if name == event]

    def self_healed(self, op: str, key: str, reason: str) -> None:
        self.events.append(("self_healed", (op, key, reason)))

    def batch_rejected(self, keys: Sequence[str], reason: str) -> None:
        self.events.append(("batch_rejected", (list(keys), reason)))

    def provider_set_rejected(self, key: str, batch: bool) -> None:
        self.events.append(("provider_set_rejected", (key, batch)))

    def version_snapshot_error(self, op: str, key: str, error: BaseException) -> None:
        self.events.append(("version_snapshot_error", (op, key, error)))

    def version_advance_error(self, key: str, error: BaseException) -> None:
        self.events.append(("version_advance_error", (key, error)))

    def invalidate_outage(
        self, key: str, advance_error: BaseException, delete_error: BaseException | None
    ) -> None:
        self.events.append(("invalidate_outage", (key, advance_error, delete_error)))

    def cleanup_error(self, op: str, key: str, error: BaseException) -> None:
        self.events.append(("cleanup_error", (op, key, error)))

    def read_error(self, op: str, key: str, error: BaseException) -> None:
        self.events.append(("read_error", (op, key, error)))

    def store_error(self, op: str, key: str, error: BaseException) -> None:
        self.events.append(("store_error", (op, key, error)))

    def codec_error(self, op: str, key: str, error: BaseException) -> None:
        self.events.append(("codec_error", (op, key, error)))

    def local_versions_with_batch(self, namespace: str) -> None:
        self.events.append(("local_versions_with_batch", (namespace,)))


class Boom(Exception):
    """The failure injected into a store."""


class FaultyProvider:
    """Wraps a ``MemoryProvider``; each operation named in ``failing`` raises ``Boom``, and
    ``get_many`` drops its last result while ``short`` is set (a store breaking its interface).
    """

    def __init__(self, inner: MemoryProvider, failing: Iterable[str] = ()) -> None:
        self.inner = inner
        self.failing = set(failing)
        self.short = False

    def _check(self, op: str) -> None:
        if op in self.failing:
            raise Boom(f"provider {op}")

    def get(self, key: str) -> bytes | None:
        self._check("get")
        return self.inner.get(key)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        self._check("get_many")
        return self.inner.get_many(keys)[: -1 if self.short else None]

    def set(self, key: str, value: bytes, cost: int, ttl: float | None) -> bool:
        self._check("set")
        return self.inner.set(key, value, cost, ttl)

    def add(self, key: str, value: bytes, cost: int, ttl: float | None) -> bool:
        self._check("add")
        return self.inner.add(key, value, cost, ttl)

    def delete(self, key: str) -> None:
        self._check("delete")
        self.inner.delete(key)

    def close(self) -> None:
        self.inner.close()


class FaultyGenStore:
    """Wraps a version store; each operation named in ``failing`` raises ``Boom``, and each
    many-key operation named in ``short`` drops the last of its results."""

    def __init__(self, inner: GenStore, failing: Iterable[str] = ()) -> None:
        self.inner = inner
        self.failing = set(failing)
        self.short: set[str] = set()

    def _check(self, op: str) -> None:
        if op in self.failing:
            raise Boom(f"versions {op}")

    def snapshot(self, key: str) -> Version:
        self._check("snapshot")
        return self.inner.snapshot(key)

    def snapshot_many(self, keys: Sequence[str]) -> list[Version]:
        self._check("snapshot_many")
        return self.inner.snapshot_many(keys)[: -1 if "snapshot_many" in self.short else None]

    def current(self, key: str) -> Version | None:
        self._check("current")
        return self.inner.current(key)

    def current_many(self, keys: Sequence[str]) -> list[Version | None]:
        self._check("current_many")
        return self.inner.current_many(keys)[: -1 if "current_many" in self.short else None]

    def advance(self, key: str) -> Version:
        self._check("advance")
        return self.inner.advance(key)

    def close(self) -> None:
        self.inner.close()


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fill(cache: CAS[Any], key: str, value: object) -> Version:
    """The safe fill path; asserts the value was stored and returns the version used."""
    version = cache.snapshot_version(key)
    assert cache.set_if_version(key, value, version).outcome is WriteOutcome.STORED
    return version


def fill_batch(cache: CAS[Any], values: Mapping[str, object]) -> BatchWriteResult:
    """Snapshot, then ``set_if_versions`` every item; asserts the batch was stored."""
    versions = cache.snapshot_versions(values)
    result = cache.set_if_versions(VersionedValue(k, v, versions[k]) for k, v in values.items())
    assert result.outcome is WriteOutcome.STORED
    return result


def single(cache: CAS[Any], key: str) -> CacheKey:
    return cache.core.keys.single(key)


def stored_bytes(cache: CAS[Any], key: str) -> bytes | None:
    """What the cache's value store holds for ``key``'s single entry, read directly."""
    return cache.core.provider.get(single(cache, key).value)


def batch_bytes(cache: CAS[Any], keys: Iterable[str]) -> bytes | None:
    """What the cache's value store holds for the batch entry of ``keys``, read directly."""
    return cache.core.provider.get(cache.core.keys.batch(keys))


def plant(cache: CAS[Any], key: str, raw: bytes) -> None:
    """Write raw bytes where ``key``'s single entry lives, bypassing the cache."""
    assert cache.core.provider.set(single(cache, key).value, raw, len(raw), None)


def effects_of(step: Step[Any]) -> int:
    """How many effects an operation performs when nothing else runs."""
    process = Process(step)
    count = 0
    while not process.done:
        process.step()
        count += 1
    process.result  # noqa: B018 - raise if it failed
    return count


def finish(process: Process[Any]) -> Any:
    while not process.done:
        process.step()
    return process.result


NAMES = [f"k{i:02d}" for i in range(4)]


# -- single keys ---------------------------------------------------------------------------


def test_miss_versus_cached_none(topology: Topology) -> None:
    cache = topology()
    assert cache.enabled()
    assert cache.get("k") is None
    fill(cache, "k", None)
    hit = cache.get("k")
    assert hit == Hit(None)
    assert hit is not None
    assert hit.value is None


def test_snapshot_set_get_hit(topology: Topology) -> None:
    cache = topology()
    value = {"name": "ada", "tags": ["x", "y"], "n": 3}
    version = cache.snapshot_version("user:1")
    assert isinstance(version, Version)
    result = cache.set_if_version("user:1", value, version)
    assert result.stored
    assert cache.get("user:1") == Hit(value)
    assert cache.get("user:2") is None
    # The entry is stamped with the version the writer observed.
    raw = stored_bytes(cache, "user:1")
    assert raw is not None
    assert decode_single(raw)[0] == version


def test_snapshot_is_stable_until_invalidate(topology: Topology) -> None:
    cache = topology()
    first = cache.snapshot_version("k")
    assert cache.snapshot_version("k") == first
    assert cache.snapshot_version("other") != first
    cache.invalidate("k")
    second = cache.snapshot_version("k")
    assert second != first
    assert cache.snapshot_version("k") == second


def test_invalidate_then_stale_set_is_rejected(topology: Topology) -> None:
    cache = topology()
    version = fill(cache, "k", "v1")
    cache.invalidate("k")
    assert cache.get("k") is None
    assert stored_bytes(cache, "k") is None
    assert cache.set_if_version("k", "v1", version).outcome is MISMATCH
    assert cache.get("k") is None
    fill(cache, "k", "v2")
    assert cache.get("k") == Hit("v2")


def test_invalidate_of_unknown_key_is_fine(topology: Topology) -> None:
    cache = topology()
    cache.invalidate("never-seen")
    assert cache.get("never-seen") is None
    fill(cache, "never-seen", 1)
    assert cache.get("never-seen") == Hit(1)


def test_seed_race_late_set_is_rejected(topology: Topology) -> None:
    """The README's race: snapshot, read old row, writer updates and invalidates, late set."""
    cache = topology()
    db = {"k": "old"}
    version = cache.snapshot_version("k")  # reader R misses and snapshots
    loaded = db["k"]  # R reads the old row
    db["k"] = "new"  # writer W commits...
    cache.invalidate("k")  # ...and invalidates
    assert cache.set_if_version("k", loaded, version).outcome is MISMATCH  # R is late
    assert cache.get("k") is None
    assert cache.get_or_load("k", lambda: db["k"]) == "new"
    assert cache.get("k") == Hit("new")


def test_invalidate_between_any_effects_of_set_wins(topology: Topology) -> None:
    """However a complete invalidate interleaves with ``set_if_version``, nothing old is served."""
    cache = topology()
    scratch = cache.snapshot_version("scratch")
    n = effects_of(cache.core.set_if_version("scratch", 0, scratch, None))
    assert n == (1 if topology.one_step else 2)
    for split in range(n + 1):
        key = f"k{split}"
        version = cache.snapshot_version(key)
        process = Process(cache.core.set_if_version(key, "old", version, None))
        for _ in range(split):
            process.step()
        cache.invalidate(key)
        result = finish(process)
        if split == 0:
            assert result.outcome is MISMATCH
        assert cache.get(key) is None, f"stale value served after split {split}"
        assert cache.get_or_load(key, lambda: "new") == "new"
        assert cache.get(key) == Hit("new")


def test_stale_entry_is_dropped_on_read(topology: Topology) -> None:
    hooks = Recorder()
    cache = topology(hooks=hooks)
    version = fill(cache, "k", "v")
    frame = stored_bytes(cache, "k")
    assert frame is not None
    cache.invalidate("k")
    # An entry stamped with an old fence (a late write on a generic topology) is dropped.
    plant(cache, "k", frame)
    assert cache.get("k") is None
    assert stored_bytes(cache, "k") is None
    assert hooks.of("self_healed") == [("get", "k", "stale version")]
    assert decode_single(frame)[0] == version


# -- TTL ------------------------------------------------------------------------------------


def test_ttl_seconds_and_timedelta_accepted(topology: Topology) -> None:
    cache = topology(default_ttl=timedelta(minutes=5), batch_ttl=60)
    for i, ttl in enumerate([30, 2.5, timedelta(seconds=30), timedelta(milliseconds=1500), None]):
        key = f"k{i}"
        assert cache.set_if_version(key, i, cache.snapshot_version(key), ttl).stored
        assert cache.get(key) == Hit(i)
    assert cache.get_or_load("gl", lambda: "x", ttl=timedelta(seconds=9)) == "x"
    assert cache.get("gl") == Hit("x")
    versions = cache.snapshot_versions(["a", "b"])
    items = [VersionedValue(k, k, versions[k]) for k in ("a", "b")]
    assert cache.set_if_versions(items, ttl=timedelta(seconds=9)).stored
    assert cache.get_many_or_load(["c", "d"], lambda ks: {k: k for k in ks}, ttl=7) == {
        "c": "c",
        "d": "d",
    }
    assert cache.get_many(["a", "b", "c", "d"]) == ({k: k for k in "abcd"}, [])


@pytest.mark.parametrize("topology", ["local", "shared-versions-fake"], indirect=True)
def test_ttl_expires_entries_in_the_value_store(topology: Topology) -> None:
    clock = FakeClock()
    cache = topology(provider=MemoryProvider(clock=clock), default_ttl=10, batch_ttl=4)
    fill(cache, "default", 1)
    assert cache.set_if_version("short", 2, cache.snapshot_version("short"), 3).stored
    assert cache.set_if_version("td", 3, cache.snapshot_version("td"), timedelta(seconds=5)).stored
    fill_batch(cache, {"a": 1, "b": 2})
    clock.now += 3.5
    assert cache.get("short") is None
    assert cache.get("td") == Hit(3)
    assert cache.get_many(["a", "b"]) == ({"a": 1, "b": 2}, [])
    assert batch_bytes(cache, ["a", "b"]) is not None
    clock.now += 2
    assert cache.get("td") is None
    assert cache.get("default") == Hit(1)
    assert batch_bytes(cache, ["a", "b"]) is None
    clock.now += 5
    assert cache.get("default") is None


@pytest.mark.parametrize("topology", REDIS, indirect=True)
def test_ttl_reaches_redis(topology: Topology) -> None:
    client = topology.redis
    cache = topology(default_ttl=timedelta(seconds=100), batch_ttl=50)
    assert cache.set_if_version("s", 1, cache.snapshot_version("s"), 5).stored
    assert cache.set_if_version("td", 1, cache.snapshot_version("td"), timedelta(seconds=30)).stored
    fill(cache, "d", 1)
    fill_batch(cache, {"a": 1, "b": 2})
    assert 0 < client.pttl(single(cache, "s").value) <= 5_000
    assert 5_000 < client.pttl(single(cache, "td").value) <= 30_000
    assert 30_000 < client.pttl(single(cache, "d").value) <= 100_000
    assert 0 < client.pttl(cache.core.keys.batch(["a", "b"])) <= 50_000
    # Version keys expire by default: after one day, or twice the longest entry TTL.
    assert 86_000_000 < client.pttl(single(cache, "s").version) <= 86_400_000
    long = topology(default_ttl=timedelta(days=2), batch_ttl=timedelta(days=3))
    long.invalidate("never-read")
    assert 5.9 * 86_400_000 < client.pttl(single(long, "never-read").version) <= 6 * 86_400_000
    # A write with a longer entry TTL renews its version key to twice that TTL.
    assert long.set_if_version("w", 1, long.snapshot_version("w"), timedelta(days=5)).stored
    assert 9.9 * 86_400_000 < client.pttl(single(long, "w").version) <= 10 * 86_400_000
    forever = topology(version_ttl=None)
    forever.invalidate("k")
    assert client.pttl(single(forever, "k").version) == -1


BAD_TTLS: list[object] = [
    0,
    -1,
    -0.5,
    math.nan,
    math.inf,
    True,
    False,
    "10",
    timedelta(0),
    timedelta(seconds=-1),
]


def test_nonsense_ttl_is_rejected_naming_the_operation(topology: Topology) -> None:
    cache = topology()
    loads: list[object] = []

    def load() -> str:
        loads.append(1)
        return "x"

    def load_many(keys: list[str]) -> dict[str, str]:
        loads.append(keys)
        return {k: "x" for k in keys}

    for bad in BAD_TTLS:
        version = cache.snapshot_version("k")
        with pytest.raises(ConfigError, match=r"^cascache set_if_version\('k'\) ttl must be"):
            cache.set_if_version("k", 1, version, bad)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match=r"^cascache get_or_load\('k'\) ttl must be"):
            cache.get_or_load("k", load, bad)  # type: ignore[arg-type]
        items = [VersionedValue("k", 1, version)]
        with pytest.raises(ConfigError, match=r"set_if_versions ttl"):
            cache.set_if_versions(items, bad)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match=r"get_many_or_load ttl"):
            cache.get_many_or_load(["k", "j"], load_many, bad)  # type: ignore[arg-type]
    assert loads == []
    assert cache.get("k") is None


# -- get_or_load ------------------------------------------------------------------------------


def test_get_or_load_loads_once_then_hits(topology: Topology) -> None:
    cache = topology()
    calls: list[str] = []

    def loader() -> dict[str, int]:
        calls.append("k")
        return {"v": len(calls)}

    assert cache.get_or_load("k", loader) == {"v": 1}
    assert cache.get_or_load("k", loader) == {"v": 1}
    assert cache.get("k") == Hit({"v": 1})
    assert calls == ["k"]
    cache.invalidate("k")
    assert cache.get_or_load("k", loader) == {"v": 2}
    assert cache.get_or_load("k", loader) == {"v": 2}
    assert calls == ["k", "k"]


def test_get_or_load_caches_none(topology: Topology) -> None:
    cache = topology()
    calls: list[int] = []

    def loader() -> None:
        calls.append(1)

    assert cache.get_or_load("k", loader) is None
    assert cache.get_or_load("k", loader) is None
    assert calls == [1]
    assert cache.get("k") == Hit(None)


def test_get_or_load_does_not_store_when_invalidated_during_load(topology: Topology) -> None:
    cache = topology()
    db = {"k": "old"}

    def racing_loader() -> str:
        loaded = db["k"]
        db["k"] = "new"
        cache.invalidate("k")  # a writer lands while the source is being read
        return loaded

    assert cache.get_or_load("k", racing_loader) == "old"
    assert cache.get("k") is None
    assert cache.get_or_load("k", lambda: db["k"]) == "new"


def test_get_or_load_loader_error_propagates(topology: Topology) -> None:
    cache = topology()

    def loader() -> str:
        raise LookupError("db down")

    with pytest.raises(LookupError, match="db down"):
        cache.get_or_load("k", loader)
    assert cache.get("k") is None


@pytest.mark.parametrize("topology", GENERIC, indirect=True)
def test_get_or_load_survives_cache_failure(topology: Topology) -> None:
    hooks = Recorder()
    provider = FaultyProvider(topology.provider(), {"get", "set"})
    cache = topology(provider=provider, hooks=hooks)
    calls: list[int] = []

    def loader() -> str:
        calls.append(1)
        return "loaded"

    assert cache.get_or_load("k", loader) == "loaded"
    assert calls == [1]
    failures = hooks.of("read_error") + hooks.of("store_error")
    assert [(op, key) for op, key, _ in failures] == [("get_or_load", "k")] * 2
    assert all(isinstance(err, OpError) for _, _, err in failures)
    # The read names the operation it served (it said "get" before).
    assert [err.op for _, _, err in failures] == ["get_or_load", "set_if_version"]
    assert hooks.of("cleanup_error") == []
    # Version store down too: still the loaded value, nothing stored.
    versions = FaultyGenStore(topology.versions(), {"snapshot", "current"})
    broken = topology(provider=provider, gen_store=versions, hooks=hooks)
    assert broken.get_or_load("k", loader) == "loaded"
    assert calls == [1, 1]


# -- batches ------------------------------------------------------------------------------------


def test_get_many_batch_hit(topology: Topology) -> None:
    cache = topology(batch_write_seed="off")
    values: dict[str, object] = {k: {"k": k} for k in NAMES}
    values[NAMES[-1]] = None  # a cached None is a hit in a batch too
    result = fill_batch(cache, values)
    assert result.seeded_singles == 0
    assert batch_bytes(cache, reversed(NAMES)) is not None
    # Served from the batch entry alone: there are no single entries.
    assert all(cache.get(k) is None for k in NAMES)
    assert cache.get_many(NAMES) == (values, [])
    assert cache.get_many(list(reversed(NAMES))) == (values, [])
    assert cache.get_many([*NAMES, NAMES[0]]) == (values, [])


def test_get_many_member_invalidated(topology: Topology) -> None:
    hooks = Recorder()
    cache = topology(batch_write_seed="off", hooks=hooks)
    values = {k: k.upper() for k in NAMES}
    fill_batch(cache, values)
    cache.invalidate(NAMES[1])
    found, missing = cache.get_many(NAMES)
    assert missing == [NAMES[1]]
    assert found == {k: v for k, v in values.items() if k != NAMES[1]}
    # The entry was not served whole, so it is dropped and the rest fall back to singles.
    assert batch_bytes(cache, NAMES) is None
    assert hooks.of("batch_rejected") == [
        (NAMES, f"members not servable: {NAMES[1]} (stale version)")
    ]
    assert cache.get_many(NAMES) == ({}, NAMES)


def test_refused_batch_members_say_why(topology: Topology) -> None:
    hooks = Recorder()
    cache = topology(batch_write_seed="off", hooks=hooks)
    fill_batch(cache, {"a": 1, "b": 2, "c": 3})
    cache.invalidate("a")
    topology.lose_version("c")
    assert cache.get_many(["a", "b", "c"]) == ({"b": 2}, ["a", "c"])
    assert hooks.of("batch_rejected") == [
        (["a", "b", "c"], "members not servable: a (stale version); c (version lost)")
    ]


def test_get_many_member_invalidated_falls_back_to_singles(topology: Topology) -> None:
    cache = topology()  # strict write seeding: singles exist
    values = {k: k for k in NAMES}
    assert fill_batch(cache, values).seeded_singles == len(NAMES)
    cache.invalidate(NAMES[2])
    found, missing = cache.get_many(NAMES)
    assert missing == [NAMES[2]]
    assert found == {k: k for k in NAMES if k != NAMES[2]}
    fill(cache, NAMES[2], "fresh")
    assert cache.get_many(NAMES) == ({**found, NAMES[2]: "fresh"}, [])


def test_get_many_mixes_singles_and_misses_in_request_order(topology: Topology) -> None:
    cache = topology()
    fill(cache, "b", 2)
    fill(cache, "d", None)
    found, missing = cache.get_many(["e", "d", "c", "b", "a", "c"])
    assert found == {"b": 2, "d": None}
    assert missing == ["e", "c", "a"]


def test_set_if_versions_stale_member_stores_nothing(topology: Topology) -> None:
    cache = topology()
    versions = cache.snapshot_versions(NAMES)
    cache.invalidate(NAMES[3])
    result = cache.set_if_versions([VersionedValue(k, k, versions[k]) for k in NAMES])
    assert result.outcome is MISMATCH
    assert result.seeded_singles == 0
    assert batch_bytes(cache, NAMES) is None
    assert cache.get_many(NAMES) == ({}, NAMES)


def test_snapshot_versions_match_singles(topology: Topology) -> None:
    cache = topology()
    single_version = cache.snapshot_version(NAMES[0])
    versions = cache.snapshot_versions([*NAMES, NAMES[0]])
    assert list(versions) == NAMES
    assert versions[NAMES[0]] == single_version
    assert {k: cache.snapshot_version(k) for k in NAMES} == versions
    assert len(set(versions.values())) == len(NAMES)


def test_set_if_versions_duplicate_key_is_value_error(topology: Topology) -> None:
    cache = topology()
    version = cache.snapshot_version("dup")
    other = cache.snapshot_version("other")
    items = [
        VersionedValue("dup", 1, version),
        VersionedValue("other", 2, other),
        VersionedValue("dup", 3, version),
    ]
    with pytest.raises(ValueError, match="'dup'"):
        cache.set_if_versions(items)
    assert cache.get_many(["dup", "other"]) == ({}, ["dup", "other"])


def test_empty_batch_inputs(topology: Topology) -> None:
    cache = topology()
    calls: list[list[str]] = []

    def loader(keys: list[str]) -> dict[str, int]:
        calls.append(keys)
        return {}

    assert cache.get_many([]) == ({}, [])
    assert cache.get_many(iter([])) == ({}, [])
    assert cache.snapshot_versions([]) == {}
    result = cache.set_if_versions([])
    assert result.outcome is WriteOutcome.STORED
    assert result.seeded_singles == 0
    assert cache.get_many_or_load([], loader) == {}
    assert calls == []


@pytest.mark.parametrize("keys", ["abc", b"abc"])
def test_keys_given_as_one_string_is_type_error(topology: Topology, keys: Any) -> None:
    cache = topology()
    with pytest.raises(TypeError, match="get_many"):
        cache.get_many(keys)
    with pytest.raises(TypeError, match="snapshot_versions"):
        cache.snapshot_versions(keys)
    with pytest.raises(TypeError, match="get_many_or_load"):
        cache.get_many_or_load(keys, lambda ks: {})


@pytest.mark.parametrize("keys", [None, 123])
def test_keys_that_are_no_collection_are_a_type_error_naming_the_call(
    topology: Topology, keys: Any
) -> None:
    cache = topology()
    for call, name in [
        (lambda: cache.get_many(keys), "get_many"),
        (lambda: cache.snapshot_versions(keys), "snapshot_versions"),
        (lambda: cache.get_many_or_load(keys, lambda ks: {}), "get_many_or_load"),
    ]:
        with pytest.raises(TypeError, match=rf"cascache {name}: keys must be a collection"):
            call()
    with pytest.raises(TypeError, match=r"set_if_versions: items must be a collection"):
        cache.set_if_versions(keys)


@pytest.mark.parametrize("returned", [None, 5, [("a", "x")]])
def test_a_batch_loader_that_returns_no_mapping_is_a_type_error_naming_the_call(
    topology: Topology, returned: object
) -> None:
    cache = topology()
    with pytest.raises(TypeError, match=r"get_many_or_load\('a', 'b'\): the loader returned"):
        cache.get_many_or_load(["a", "b"], lambda ks: returned)  # type: ignore[arg-type,return-value]


def test_get_many_or_load(topology: Topology) -> None:
    cache = topology()
    fill(cache, "a", "cached")
    calls: list[list[str]] = []

    def loader(keys: list[str]) -> dict[str, str]:
        calls.append(keys)
        # "gone" is not in the source; "extra" was not asked for.
        return {k: f"db-{k}" for k in keys if k != "gone"} | {"extra": "x"}

    got = cache.get_many_or_load(["c", "a", "gone", "b", "c"], loader)
    assert got == {"a": "cached", "b": "db-b", "c": "db-c"}
    assert calls == [["c", "gone", "b"]]
    assert cache.get_many_or_load(["a", "b", "c"], loader) == got
    assert cache.get_many_or_load(["b", "c"], loader) == {"b": "db-b", "c": "db-c"}
    assert calls == [["c", "gone", "b"]]
    assert cache.get("extra") is None
    assert cache.get_many_or_load(["gone", "b"], loader) == {"b": "db-b"}
    assert calls[-1] == ["gone"]


def test_get_many_or_load_does_not_store_a_member_invalidated_during_load(
    topology: Topology,
) -> None:
    cache = topology()

    def loader(keys: list[str]) -> dict[str, str]:
        cache.invalidate("b")
        return {k: "old" for k in keys}

    assert cache.get_many_or_load(["a", "b"], loader) == {"a": "old", "b": "old"}
    found, missing = cache.get_many(["a", "b"])
    assert "b" in missing
    assert "b" not in found


@pytest.mark.parametrize("topology", GENERIC, indirect=True)
def test_get_many_or_load_survives_cache_failure(topology: Topology) -> None:
    hooks = Recorder()
    provider = FaultyProvider(topology.provider(), {"get", "get_many", "set"})
    cache = topology(provider=provider, hooks=hooks)
    assert cache.get_many_or_load(["a", "b"], lambda ks: {k: k for k in ks}) == {"a": "a", "b": "b"}
    # The read and the write, each by its own event.
    assert [op for op, _, _ in hooks.of("read_error")] == ["get_many_or_load"]
    assert [op for op, _, _ in hooks.of("store_error")] == ["get_many_or_load"]
    assert hooks.of("cleanup_error") == []


# -- batch seeding -------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", ["strict", "fast", "off"])
def test_batch_write_seed_counts(topology: Topology, seed: str) -> None:
    cache = topology(batch_write_seed=seed)
    values = {k: k for k in NAMES}
    result = fill_batch(cache, values)
    seeded = 0 if seed == "off" else len(NAMES)
    assert result.seeded_singles == seeded
    assert batch_bytes(cache, NAMES) is not None
    singles = {k: cache.get(k) for k in NAMES}
    if seed == "off":
        assert singles == dict.fromkeys(NAMES)
    else:
        assert singles == {k: Hit(k) for k in NAMES}


@pytest.mark.parametrize("seed", ["strict", "fast"])
def test_batch_write_seed_carries_observed_version(topology: Topology, seed: str) -> None:
    """An invalidate between the batch write and the seeding: the seed is never served."""
    cache = topology(batch_write_seed=seed)
    versions = cache.snapshot_versions(NAMES)
    items = [VersionedValue(k, f"old-{k}", versions[k]) for k in NAMES]
    batch_name = cache.core.keys.batch(NAMES)
    process = Process(cache.core.set_if_versions(items, None))
    while not (process.pending is not None and process.pending.keys == (batch_name,)):
        process.step()
    process.step()  # the batch entry is stored; seeding comes next
    cache.invalidate(NAMES[0])
    result = finish(process)
    assert result.outcome is WriteOutcome.STORED
    # strict checks each seed, so the invalidated one is skipped; fast writes it anyway,
    # stamped with the observed (now old) version.
    assert result.seeded_singles == (len(NAMES) - 1 if seed == "strict" else len(NAMES))
    assert cache.get(NAMES[0]) is None
    assert cache.get(NAMES[1]) == Hit(f"old-{NAMES[1]}")
    found, missing = cache.get_many(NAMES)
    assert missing == [NAMES[0]]
    assert found == {k: f"old-{k}" for k in NAMES[1:]}


@pytest.mark.parametrize("seed", ["strict", "fast", "off"])
def test_invalidate_between_any_effects_of_set_if_versions(topology: Topology, seed: str) -> None:
    cache = topology(batch_write_seed=seed)
    keys = NAMES[:3]
    scratch = [f"s{k}" for k in keys]
    scratch_versions = cache.snapshot_versions(scratch)
    n = effects_of(
        cache.core.set_if_versions(
            [VersionedValue(k, 0, scratch_versions[k]) for k in scratch], None
        )
    )
    for split in range(n + 1):
        ns_keys = [f"{split}-{k}" for k in keys]
        versions = cache.snapshot_versions(ns_keys)
        items = [VersionedValue(k, "old", versions[k]) for k in ns_keys]
        process = Process(cache.core.set_if_versions(items, None))
        for _ in range(split):
            process.step()
        cache.invalidate(ns_keys[1])
        finish(process)
        assert cache.get(ns_keys[1]) is None, f"split {split}"
        found, missing = cache.get_many(ns_keys)
        assert ns_keys[1] in missing, f"split {split}"
        assert ns_keys[1] not in found


@pytest.mark.parametrize("seed", ["off", "all", "if_missing"])
def test_batch_read_seed(topology: Topology, seed: str) -> None:
    cache = topology(batch_write_seed="off", batch_read_seed=seed)
    # One member already has a single entry (same version, different value).
    versions = cache.snapshot_versions(NAMES)
    assert cache.set_if_version(NAMES[0], "single", versions[NAMES[0]]).stored
    items = [VersionedValue(k, f"batch-{k}", versions[k]) for k in NAMES]
    assert cache.set_if_versions(items).seeded_singles == 0
    expected = {k: f"batch-{k}" for k in NAMES}
    assert cache.get_many(NAMES) == (expected, [])
    singles = {k: cache.get(k) for k in NAMES}
    if seed == "off":
        assert singles == {NAMES[0]: Hit("single"), **dict.fromkeys(NAMES[1:])}
    elif seed == "all":
        assert singles == {k: Hit(v) for k, v in expected.items()}
    else:
        assert singles == {NAMES[0]: Hit("single")} | {k: Hit(expected[k]) for k in NAMES[1:]}


@pytest.mark.parametrize("seed", ["all", "if_missing"])
def test_batch_read_seed_carries_observed_version(topology: Topology, seed: str) -> None:
    """An invalidate between validating a batch hit and seeding it: the seed is never served."""
    cache = topology(batch_write_seed="off", batch_read_seed=seed)
    fill_batch(cache, {k: k for k in NAMES})
    process = Process(cache.core.get_many(NAMES))
    # Run until the first seeding write is next: every member has been validated by then.
    while not (process.pending is not None and process.pending.op in ("set", "add")):
        process.step()
    cache.invalidate(NAMES[0])
    found, missing = finish(process)
    assert missing == []  # validated before the invalidate started
    assert found == {k: k for k in NAMES}
    assert cache.get(NAMES[0]) is None
    assert cache.get(NAMES[1]) == Hit(NAMES[1])
    assert cache.get_many(NAMES)[1] == [NAMES[0]]


def test_disable_batch(topology: Topology) -> None:
    writer = topology(batch_write_seed="off")
    fill_batch(writer, {k: "batch" for k in NAMES})
    cache = topology(disable_batch=True)
    # A batch entry written by another cache is never read.
    assert cache.get_many(NAMES) == ({}, NAMES)
    others = [f"x{k}" for k in NAMES]
    result = fill_batch(cache, {k: k for k in others})
    assert result.seeded_singles == len(others)
    assert batch_bytes(cache, others) is None
    assert cache.get_many(others) == ({k: k for k in others}, [])
    versions = cache.snapshot_versions(NAMES)
    cache.invalidate(NAMES[0])
    result = cache.set_if_versions([VersionedValue(k, k, versions[k]) for k in NAMES])
    assert result.outcome is MISMATCH
    assert result.seeded_singles == len(NAMES) - 1
    assert cache.get_many(NAMES) == ({k: k for k in NAMES[1:]}, [NAMES[0]])


def test_local_versions_with_batch_is_reported_once(topology: Topology) -> None:
    hooks = Recorder()
    cache = topology(hooks=hooks)
    fill_batch(cache, {"a": 1, "b": 2})
    cache.get_many(["a", "b"])
    expected = [] if topology.shared else [("t",)]
    assert hooks.of("local_versions_with_batch") == expected


# -- guards -----------------------------------------------------------------------------------


def test_read_guard_rejecting_is_a_miss_and_drops_the_entry(topology: Topology) -> None:
    hooks = Recorder()
    seen: list[tuple[str, object]] = []

    def guard(key: str, value: Any) -> bool:
        seen.append((key, value))
        return bool(value != "banned")

    cache = topology(read_guard=guard, hooks=hooks)
    fill(cache, "ok", "fine")
    fill(cache, "bad", "banned")
    assert cache.get("ok") == Hit("fine")
    assert cache.get("bad") is None
    assert stored_bytes(cache, "bad") is None
    assert stored_bytes(cache, "ok") is not None
    assert ("get", "bad", "rejected by read_guard") in hooks.of("self_healed")
    assert seen == [("ok", "fine"), ("bad", "banned")]
    # Singles read by get_many go through the same guard.
    fill(cache, "bad", "banned")
    assert cache.get_many(["ok", "bad"]) == ({"ok": "fine"}, ["bad"])
    assert stored_bytes(cache, "bad") is None


def test_a_fill_reports_its_read_under_its_own_operation(topology: Topology) -> None:
    # Hooks and metrics label events by the public operation: a get_or_load's dropped
    # entry said "get", and a get_many_or_load's "get_many".
    hooks = Recorder()
    cache = topology(read_guard=lambda key, value: value != "banned", hooks=hooks)
    fill(cache, "k", "banned")
    assert cache.get_or_load("k", lambda: "fine") == "fine"
    fill(cache, "a", "banned")
    assert cache.get_many_or_load(["a"], lambda keys: dict.fromkeys(keys, "fine")) == {"a": "fine"}
    assert [(op, key) for op, key, _ in hooks.of("self_healed")] == [
        ("get_or_load", "k"),
        ("get_many_or_load", "a"),
    ]


def test_batch_read_guard_rejecting_is_a_miss_and_drops_the_entry(topology: Topology) -> None:
    hooks = Recorder()
    cache = topology(
        batch_write_seed="off", batch_read_guard=lambda key, value: value != "banned", hooks=hooks
    )
    fill_batch(cache, {"a": "fine", "b": "banned", "c": "fine"})
    assert cache.get_many(["a", "b", "c"]) == ({"a": "fine", "c": "fine"}, ["b"])
    assert batch_bytes(cache, ["a", "b", "c"]) is None
    assert len(hooks.of("batch_rejected")) == 1


def test_raising_read_guard_is_an_op_error_naming_the_key(topology: Topology) -> None:
    def guard(key: str, value: Any) -> bool:
        raise KeyError("guard broke")

    cache = topology(read_guard=guard)
    fill(cache, "k", 1)
    with pytest.raises(OpError) as info:
        cache.get("k")
    assert info.value.op == "get"
    assert info.value.key == "k"
    assert isinstance(info.value.cause, KeyError)


# -- disabled ------------------------------------------------------------------------------


def test_disabled_cache(topology: Topology) -> None:
    enabled = topology()
    fill(enabled, "k", "v")
    fill_batch(enabled, {"a": 1, "b": 2})
    # On a shared topology the disabled cache is another node; locally it shares node 0.
    disabled = topology(node=1 if topology.shared else 0, disabled=True)
    assert not disabled.enabled()
    assert disabled.get("k") is None
    assert disabled.get_many(["a", "b"]) == ({}, ["a", "b"])
    version = disabled.snapshot_version("k")
    assert isinstance(version, Version)
    assert version != enabled.snapshot_version("k")
    assert disabled.set_if_version("k", "other", version).outcome is WriteOutcome.DISABLED
    versions = disabled.snapshot_versions(["a", "b"])
    assert set(versions) == {"a", "b"}
    items = [VersionedValue(k, 9, versions[k]) for k in ("a", "b")]
    assert disabled.set_if_versions(items).outcome is WriteOutcome.DISABLED
    calls: list[int] = []

    def loader() -> str:
        calls.append(1)
        return "loaded"

    assert disabled.get_or_load("k", loader) == "loaded"
    assert disabled.get_or_load("k", loader) == "loaded"
    assert calls == [1, 1]
    assert enabled.get("k") == Hit("v")
    # Invalidate still advances the shared version: the enabled node sees it.
    disabled.invalidate("k")
    disabled.invalidate("a")
    assert enabled.get("k") is None
    assert enabled.get_many(["a", "b"]) == ({"b": 2}, ["a"])


def test_disabled_cache_bad_arguments_still_rejected(topology: Topology) -> None:
    cache = topology(disabled=True)
    with pytest.raises(TypeError):
        cache.get(1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        cache.set_if_version("", 1, new_fence())
    with pytest.raises(TypeError):
        cache.set_if_version("k", 1, "v1")  # type: ignore[arg-type]


# -- corruption ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make_bad",
    [
        pytest.param(lambda frame: b"garbage", id="garbage"),
        pytest.param(lambda frame: b"", id="empty"),
        pytest.param(lambda frame: frame[:-1], id="truncated"),
        pytest.param(lambda frame: frame[:-6] + bytes([frame[-6] ^ 1]) + frame[-5:], id="bitflip"),
        pytest.param(lambda frame: frame + b"\0", id="trailing"),
    ],
)
def test_corrupt_entry_is_a_miss_and_self_heals(
    topology: Topology, make_bad: Callable[[bytes], bytes]
) -> None:
    hooks = Recorder()
    cache = topology(hooks=hooks)
    fill(cache, "k", {"price": 10})
    frame = stored_bytes(cache, "k")
    assert frame is not None
    plant(cache, "k", make_bad(frame))
    assert cache.get("k") is None
    assert stored_bytes(cache, "k") is None
    healed = hooks.of("self_healed")
    assert len(healed) == 1
    op, key, reason = healed[0]
    assert (op, key) == ("get", "k")
    assert reason.startswith("corrupt entry")
    fill(cache, "k", {"price": 11})
    assert cache.get("k") == Hit({"price": 11})


def test_undecodable_payload_is_a_miss_and_self_heals(topology: Topology) -> None:
    hooks = Recorder()
    cache = topology(hooks=hooks)
    version = cache.snapshot_version("k")
    plant(cache, "k", encode_single(version, b"{not json"))
    assert cache.get("k") is None
    assert stored_bytes(cache, "k") is None
    assert hooks.of("self_healed")[0][2].startswith("undecodable value")


def test_corrupt_batch_entry_falls_back_to_singles(topology: Topology) -> None:
    hooks = Recorder()
    cache = topology(hooks=hooks)
    fill_batch(cache, {"a": 1, "b": 2})
    name = cache.core.keys.batch(["a", "b"])
    assert cache.core.provider.set(name, b"CASC\x01\x02junk", 1, None)
    assert cache.get_many(["a", "b"]) == ({"a": 1, "b": 2}, [])
    assert batch_bytes(cache, ["a", "b"]) is None
    (keys, reason) = hooks.of("batch_rejected")[0]
    assert keys == ["a", "b"]
    assert reason.startswith("corrupt batch entry")


def test_batch_entry_of_another_member_set_is_not_served(topology: Topology) -> None:
    hooks = Recorder()
    cache = topology(batch_write_seed="off", hooks=hooks)
    fill_batch(cache, {"a": 1, "b": 2, "c": 3})
    # Copy the {a,b,c} entry to where the {a,b} entry lives.
    blob = batch_bytes(cache, ["a", "b", "c"])
    assert blob is not None
    assert cache.core.provider.set(cache.core.keys.batch(["a", "b"]), blob, 1, None)
    assert cache.get_many(["a", "b"]) == ({}, ["a", "b"])
    assert hooks.of("batch_rejected")[0][1] == "batch entry holds another member set"


def test_unencodable_value_is_an_op_error(topology: Topology) -> None:
    cache = topology()
    with pytest.raises(OpError) as info:
        cache.set_if_version("k", {1, 2}, cache.snapshot_version("k"))
    # The OpError for a value the codec refused says so by its type.
    assert isinstance(info.value, cascache.EncodeError)
    assert info.value.op == "set_if_version"
    assert info.value.key == "k"
    assert isinstance(info.value.cause, CodecError)
    versions = cache.snapshot_versions(["a", "b"])
    with pytest.raises(OpError, match="set_if_versions") as batch_info:
        cache.set_if_versions(
            [VersionedValue("a", 1, versions["a"]), VersionedValue("b", object(), versions["b"])]
        )
    assert batch_info.value.key == "b"
    assert isinstance(batch_info.value, cascache.EncodeError)
    assert cache.get_many(["a", "b"]) == ({}, ["a", "b"])


# -- nodes and version loss ------------------------------------------------------------------------


def test_cross_node_invalidation(topology: Topology) -> None:
    node0 = topology(node=0)
    node1 = topology(node=1)
    stale = fill(node0, "k", "v1")
    fill_batch(node0, {"a": 1, "b": 2})
    if topology.kind == "redis":
        assert node1.get("k") == Hit("v1")  # values are shared too
    else:
        assert node1.get("k") is None  # each node keeps its own values
    node1.invalidate("k")
    node1.invalidate("a")
    if topology.shared:
        assert node0.get("k") is None
        assert node0.set_if_version("k", "v1", stale).outcome is MISMATCH
        assert node0.get_many(["a", "b"]) == ({"b": 2}, ["a"])
        assert node0.snapshot_version("k") == node1.snapshot_version("k")
    else:
        # Negative control: per-node local version stores give no cross-node guarantee.
        assert node0.get("k") == Hit("v1")
        assert node0.get_many(["a", "b"]) == ({"a": 1, "b": 2}, [])


def test_version_lost_turns_entries_into_misses(topology: Topology) -> None:
    cache = topology()
    old = fill(cache, "k", "v")
    fill_batch(cache, {"a": 1, "b": 2})
    topology.lose_version("k")
    topology.lose_version("a")
    assert cache.get("k") is None
    assert cache.get_many(["a", "b"]) == ({"b": 2}, ["a"])
    # A snapshot taken before the loss can no longer store, and no new one equals it.
    assert cache.set_if_version("k", "v", old).outcome is MISMATCH
    new = cache.snapshot_version("k")
    assert new != old
    assert cache.set_if_version("k", "v", old).outcome is MISMATCH
    assert cache.get("k") is None
    assert cache.set_if_version("k", "v2", new).stored
    assert cache.get("k") == Hit("v2")


def test_version_lost_between_snapshot_and_set(topology: Topology) -> None:
    cache = topology()
    version = cache.snapshot_version("k")
    topology.lose_version("k")
    assert cache.set_if_version("k", "late", version).outcome is MISMATCH
    assert cache.get("k") is None
    versions = cache.snapshot_versions(["a", "b"])
    topology.lose_version("b")
    items = [VersionedValue(k, k, versions[k]) for k in ("a", "b")]
    assert cache.set_if_versions(items).outcome is MISMATCH
    assert cache.get_many(["a", "b"]) == ({}, ["a", "b"])


@pytest.mark.parametrize("topology", ["local"], indirect=True)
def test_local_version_store_cleared(topology: Topology) -> None:
    cache = topology()
    old = fill(cache, "k", "v")
    store = topology.versions()
    assert store is cache.core.gens
    store.clear()  # type: ignore[attr-defined]
    assert cache.get("k") is None
    assert cache.set_if_version("k", "v", old).outcome is MISMATCH


@pytest.mark.parametrize("topology", ["local"], indirect=True)
def test_bounded_local_version_store_evicts_safely(topology: Topology) -> None:
    from cascache.genstore import LocalGenStore

    cache = topology(gen_store=LocalGenStore(max_keys=2))
    fill(cache, "a", 1)
    fill(cache, "b", 2)
    fill(cache, "c", 3)  # evicts a's fence
    assert cache.get("a") is None
    assert cache.get("c") == Hit(3)


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("topology", GENERIC, indirect=True)
def test_provider_get_failure_is_op_error(topology: Topology) -> None:
    provider = FaultyProvider(topology.provider())
    cache = topology(provider=provider)
    fill(cache, "k", 1)
    provider.failing = {"get"}
    with pytest.raises(OpError) as info:
        cache.get("k")
    err = info.value
    assert (err.op, err.key) == ("get", "k")
    assert isinstance(err.cause, Boom)
    assert err.__cause__ is err.cause
    assert "get" in str(err)
    assert "'k'" in str(err)
    with pytest.raises(OpError) as batch_info:
        cache.get_many(["a", "b"])  # the batch entry read
    assert batch_info.value.op == "get_many"
    assert batch_info.value.key == "'a', 'b'" and batch_info.value.keys == ("a", "b")
    provider.failing = {"get_many"}
    with pytest.raises(OpError) as many_info:
        cache.get_many(["a"])
    assert many_info.value.op == "get_many"
    provider.failing = set()
    assert cache.get("k") == Hit(1)


@pytest.mark.parametrize("topology", GENERIC, indirect=True)
def test_provider_set_failure_is_op_error(topology: Topology) -> None:
    provider = FaultyProvider(topology.provider(), {"set"})
    cache = topology(provider=provider)
    with pytest.raises(OpError) as info:
        cache.set_if_version("k", 1, cache.snapshot_version("k"))
    assert (info.value.op, info.value.key) == ("set_if_version", "k")


@pytest.mark.parametrize("topology", GENERIC, indirect=True)
def test_provider_rejecting_a_write(topology: Topology) -> None:
    hooks = Recorder()
    cache = topology(provider=MemoryProvider(max_cost=60), hooks=hooks)
    version = cache.snapshot_version("k")
    assert cache.set_if_version("k", "x" * 100, version).outcome is WriteOutcome.PROVIDER_REJECTED
    assert hooks.of("provider_set_rejected") == [("k", False)]
    assert cache.get("k") is None
    versions = cache.snapshot_versions(["a", "b"])
    items = [VersionedValue(k, "y" * 20, versions[k]) for k in ("a", "b")]
    assert cache.set_if_versions(items).outcome is WriteOutcome.PROVIDER_REJECTED
    assert hooks.of("provider_set_rejected")[-1] == (AB, True)


@pytest.mark.parametrize("topology", GENERIC, indirect=True)
def test_advance_failure_is_invalidate_error(topology: Topology) -> None:
    hooks = Recorder()
    versions = FaultyGenStore(topology.versions())
    cache = topology(gen_store=versions, hooks=hooks)
    old = fill(cache, "k", 1)
    versions.failing = {"advance"}
    with pytest.raises(InvalidateError) as info:
        cache.invalidate("k")
    err = info.value
    assert (err.op, err.key) == ("invalidate", "k")
    assert isinstance(err.advance_error, Boom)
    assert err.delete_error is None
    assert err.__cause__ is err.advance_error
    assert hooks.of("version_advance_error") == [("k", err.advance_error)]
    assert hooks.of("invalidate_outage") == [("k", err.advance_error, None)]
    # The delete still ran, but the version did not move: older snapshots still win.
    assert stored_bytes(cache, "k") is None
    assert cache.set_if_version("k", 1, old).stored
    versions.failing = set()
    cache.invalidate("k")  # the retry
    assert cache.get("k") is None


@pytest.mark.parametrize("topology", GENERIC, indirect=True)
def test_advance_and_delete_failure(topology: Topology) -> None:
    hooks = Recorder()
    provider = FaultyProvider(topology.provider(), {"delete"})
    cache = topology(
        provider=provider, gen_store=FaultyGenStore(topology.versions(), {"advance"}), hooks=hooks
    )
    with pytest.raises(InvalidateError) as info:
        cache.invalidate("k")
    assert isinstance(info.value.delete_error, Boom)
    assert "delete failed" in str(info.value)
    assert hooks.of("invalidate_outage") == [
        ("k", info.value.advance_error, info.value.delete_error)
    ]


@pytest.mark.parametrize("topology", GENERIC, indirect=True)
def test_delete_failure_alone_does_not_raise(topology: Topology) -> None:
    hooks = Recorder()
    provider = FaultyProvider(topology.provider())
    cache = topology(provider=provider, hooks=hooks)
    old = fill(cache, "k", 1)
    provider.failing = {"delete"}
    cache.invalidate("k")
    (op, key, error) = hooks.of("cleanup_error")[0]
    assert (op, key) == ("invalidate", "k")
    assert isinstance(error, Boom)
    assert hooks.of("invalidate_outage") == []
    assert stored_bytes(cache, "k") is not None  # still there, but unservable
    assert cache.get("k") is None
    assert cache.set_if_version("k", 1, old).outcome is MISMATCH


@pytest.mark.parametrize("topology", GENERIC, indirect=True)
def test_version_read_failure_on_get_is_a_miss(topology: Topology) -> None:
    hooks = Recorder()
    versions = FaultyGenStore(topology.versions())
    cache = topology(gen_store=versions, hooks=hooks)
    fill(cache, "k", 1)
    fill_batch(cache, {"a": 1, "b": 2})
    versions.failing = {"current", "current_many"}
    assert cache.get("k") is None
    (op, key, error) = hooks.of("version_snapshot_error")[0]
    assert (op, key) == ("get", "k")
    assert isinstance(error, Boom)
    assert cache.get_many(["a", "b"]) == ({}, ["a", "b"])
    assert [(op, key) for op, key, _ in hooks.of("version_snapshot_error")[1:]] == [
        ("get_many", AB),
        ("get_many", AB),
    ]
    # Failing closed does not destroy anything: once the store is back, the entries serve.
    assert stored_bytes(cache, "k") is not None
    versions.failing = set()
    assert cache.get("k") == Hit(1)
    assert cache.get_many(["a", "b"]) == ({"a": 1, "b": 2}, [])


@pytest.mark.parametrize("topology", GENERIC, indirect=True)
def test_version_read_failure_on_set_is_snapshot_error(topology: Topology) -> None:
    hooks = Recorder()
    versions = FaultyGenStore(topology.versions())
    cache = topology(gen_store=versions, hooks=hooks)
    version = cache.snapshot_version("k")
    batch_versions = cache.snapshot_versions(["a", "b"])
    versions.failing = {"current", "current_many"}
    assert cache.set_if_version("k", 1, version).outcome is WriteOutcome.SNAPSHOT_ERROR
    items = [VersionedValue(k, 1, batch_versions[k]) for k in ("a", "b")]
    assert cache.set_if_versions(items).outcome is WriteOutcome.SNAPSHOT_ERROR
    assert [op for op, _, _ in hooks.of("version_snapshot_error")] == [
        "set_if_version",
        "set_if_versions",
    ]
    versions.failing = set()
    assert cache.get("k") is None
    assert cache.get_many(["a", "b"]) == ({}, ["a", "b"])


@pytest.mark.parametrize("topology", GENERIC, indirect=True)
def test_snapshot_failure_is_op_error(topology: Topology) -> None:
    hooks = Recorder()
    cache = topology(
        gen_store=FaultyGenStore(topology.versions(), {"snapshot", "snapshot_many"}), hooks=hooks
    )
    with pytest.raises(OpError) as info:
        cache.snapshot_version("k")
    assert (info.value.op, info.value.key) == ("snapshot_version", "k")
    with pytest.raises(OpError) as many:
        cache.snapshot_versions(["a", "b"])
    assert (many.value.op, many.value.key) == ("snapshot_versions", AB)
    assert len(hooks.of("version_snapshot_error")) == 2


def _disconnect(topology: Topology) -> None:
    client = topology.redis
    assert isinstance(client, redis.Redis)
    server = client.connection_pool.connection_kwargs["server"]
    server.connected = False


@pytest.mark.parametrize("topology", ["redis-fake"], indirect=True)
def test_redis_down(topology: Topology) -> None:
    hooks = Recorder()
    cache = topology(hooks=hooks)
    version = fill(cache, "k", 1)
    _disconnect(topology)
    calls: list[tuple[str, Callable[[], object]]] = [
        ("get", lambda: cache.get("k")),
        ("snapshot_version", lambda: cache.snapshot_version("k")),
        ("set_if_version", lambda: cache.set_if_version("k", 2, version)),
        ("get_many", lambda: cache.get_many(["a", "b"])),
        ("snapshot_versions", lambda: cache.snapshot_versions(["a", "b"])),
    ]
    for op, call in calls:
        with pytest.raises(OpError) as info:
            call()
        assert info.value.op == op
        assert isinstance(info.value.cause, redis.ConnectionError)
    with pytest.raises(InvalidateError) as inv:
        cache.invalidate("k")
    assert isinstance(inv.value.advance_error, redis.ConnectionError)
    assert len(hooks.of("invalidate_outage")) == 1
    assert cache.get_or_load("k", lambda: "db") == "db"


@pytest.mark.parametrize("topology", ["shared-versions-fake"], indirect=True)
def test_shared_versions_redis_down(topology: Topology) -> None:
    hooks = Recorder()
    cache = topology(hooks=hooks)
    version = fill(cache, "k", 1)
    _disconnect(topology)
    assert cache.get("k") is None  # fail closed, not raise
    assert hooks.of("version_snapshot_error")[0][:2] == ("get", "k")
    assert cache.set_if_version("k", 2, version).outcome is WriteOutcome.SNAPSHOT_ERROR
    with pytest.raises(OpError):
        cache.snapshot_version("k")
    with pytest.raises(InvalidateError) as info:
        cache.invalidate("k")
    assert isinstance(info.value.advance_error, redis.ConnectionError)
    assert stored_bytes(cache, "k") is None  # the local delete still ran
    assert cache.get_or_load("k", lambda: "db") == "db"


# -- lifecycle and arguments ---------------------------------------------------------------------


def test_close_is_idempotent_and_a_context_manager(topology: Topology) -> None:
    with topology() as cache:
        fill(cache, "k", 1)
        assert cache.get("k") == Hit(1)
    cache.close()
    cache.close()
    if topology.client is not None:
        assert topology.redis.get("alive") is None  # the cache does not own the client


def test_every_operation_on_a_closed_cache_raises_closed_error(topology: Topology) -> None:
    cache = topology()
    version = cache.snapshot_version("k")
    fill(cache, "k", 1)
    cache.close()
    loads: list[str] = []

    def load() -> int:
        loads.append("k")
        return 2

    calls: list[tuple[str, tuple[str, ...], Callable[[], object]]] = [
        ("get", ("k",), lambda: cache.get("k")),
        ("snapshot_version", ("k",), lambda: cache.snapshot_version("k")),
        ("set_if_version", ("k",), lambda: cache.set_if_version("k", 3, version)),
        ("invalidate", ("k",), lambda: cache.invalidate("k")),
        ("get_or_load", ("k",), lambda: cache.get_or_load("k", load)),
        ("get_many", ("k", "j"), lambda: cache.get_many(["k", "j"])),
        ("snapshot_versions", ("k", "j"), lambda: cache.snapshot_versions(["k", "j"])),
        (
            "set_if_versions",
            ("k",),
            lambda: cache.set_if_versions([VersionedValue("k", 3, version)]),
        ),
        (
            "get_many_or_load",
            ("k", "j"),
            lambda: cache.get_many_or_load(["k", "j"], lambda keys: dict.fromkeys(keys, 2)),
        ),
    ]
    for op, keys, call in calls:
        with pytest.raises(cascache.ClosedError) as info:
            call()
        assert (info.value.op, info.value.keys) == (op, keys)
        assert str(info.value).endswith(": the cache is closed")
    assert loads == []
    cache.close()  # idempotent


@pytest.mark.parametrize("key", [1, None, b"k", ("k",)])
def test_non_str_key_is_type_error(topology: Topology, key: Any) -> None:
    cache = topology()
    version = cache.snapshot_version("ok")
    calls: list[tuple[str, Callable[[], object]]] = [
        ("get", lambda: cache.get(key)),
        ("snapshot_version", lambda: cache.snapshot_version(key)),
        ("set_if_version", lambda: cache.set_if_version(key, 1, version)),
        ("invalidate", lambda: cache.invalidate(key)),
        ("get_or_load", lambda: cache.get_or_load(key, lambda: 1)),
        ("get_many", lambda: cache.get_many(["ok", key])),
        ("snapshot_versions", lambda: cache.snapshot_versions([key])),
        ("set_if_versions", lambda: cache.set_if_versions([VersionedValue(key, 1, version)])),
        ("get_many_or_load", lambda: cache.get_many_or_load([key], lambda ks: {})),
    ]
    for op, call in calls:
        with pytest.raises(TypeError, match=rf"^cascache {op}: keys are str"):
            call()


def test_a_loader_that_is_not_callable_is_refused_before_anything_is_read(
    topology: Topology,
) -> None:
    cache = topology()
    fill(cache, "cached", 1)
    # Refused on a hit too: whether the bug shows must not depend on what the cache held.
    with pytest.raises(TypeError, match=r"^cascache get_or_load\('cached'\): loader must be a fun"):
        cache.get_or_load("cached", 5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^cascache get_many_or_load\('cached'\): loader must"):
        cache.get_many_or_load(["cached"], {"cached": 1})  # type: ignore[arg-type]
    assert cache.get("cached") == Hit(1)


def test_empty_key_is_value_error(topology: Topology) -> None:
    cache = topology()
    version = cache.snapshot_version("ok")
    calls: list[Callable[[], object]] = [
        lambda: cache.get(""),
        lambda: cache.snapshot_version(""),
        lambda: cache.set_if_version("", 1, version),
        lambda: cache.invalidate(""),
        lambda: cache.get_or_load("", lambda: 1),
        lambda: cache.get_many(["ok", ""]),
        lambda: cache.snapshot_versions([""]),
        lambda: cache.set_if_versions([VersionedValue("", 1, version)]),
        lambda: cache.get_many_or_load([""], lambda ks: {}),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="empty string"):
            call()


@pytest.mark.parametrize("bad", [None, b"\0" * 16, "0" * 32, 1])
def test_non_version_is_type_error(topology: Topology, bad: Any) -> None:
    cache = topology()
    with pytest.raises(TypeError, match="Version"):
        cache.set_if_version("k", 1, bad)
    with pytest.raises(TypeError, match="Version"):
        cache.set_if_versions([VersionedValue("k", 1, bad)])
    with pytest.raises(TypeError, match="VersionedValue"):
        cache.set_if_versions([("k", 1, cache.snapshot_version("k"))])  # type: ignore[list-item]
    assert cache.get("k") is None


def test_foreign_version_never_stores(topology: Topology) -> None:
    cache = topology()
    cache.snapshot_version("k")
    assert cache.set_if_version("k", 1, new_fence()).outcome is MISMATCH
    # A version of another key is not this key's version either.
    assert cache.set_if_version("k", 1, cache.snapshot_version("j")).outcome is MISMATCH
    assert cache.get("k") is None


def test_namespaces_do_not_collide(topology: Topology) -> None:
    users = topology(namespace="users")
    orders = topology(namespace="orders")
    fill(users, "1", "ada")
    assert orders.get("1") is None
    fill(orders, "1", "order")
    orders.invalidate("1")
    assert users.get("1") == Hit("ada")


# -- canonical keys (DESIGN §3.11) --------------------------------------------------------------


class Color(str, enum.Enum):  # noqa: UP042 - the mixin is the point: its f-string is not its value
    """A key type users write: its ``str()`` and f-string are ``Color.RED``, its value ``red``."""

    RED = "red"


class Shade(enum.StrEnum):
    RED = "red"


SPELLINGS: list[Callable[[str], str]] = [str, Hostile, Color, Shade]


def _forget_storage_names() -> None:
    """What another process, or eviction from a bounded name cache, amounts to.

    Before keys were canonical, storage names lived in one process-wide cache; emptying it
    is what a second process starting cold looks like. (Caches are per instance now.)
    """
    cached = getattr(cascache.keys, "_single", None)
    if cached is not None:
        cached.cache_clear()


def test_a_str_enum_key_and_its_value_are_one_key(topology: Topology) -> None:
    """The stale path that escaped the model: one key spelt two ways reached two entries."""
    reader, writer = topology(), topology()  # node 0 twice: two processes on one store
    assert reader.get_or_load(Color.RED, lambda: "old") == "old"
    _forget_storage_names()
    writer.invalidate("red")
    _forget_storage_names()
    assert reader.get(Color.RED) is None
    assert reader.get("red") is None
    assert writer.get(Color.RED) is None


@pytest.mark.parametrize("spell", range(len(SPELLINGS)), ids=lambda i: SPELLINGS[i].__name__)
def test_every_path_uses_the_canonical_key(topology: Topology, spell: int) -> None:
    a = topology(namespace=Hostile("ns"))
    b = topology(namespace="ns")

    def red(offset: int = 0) -> str:
        return SPELLINGS[(spell + offset) % len(SPELLINGS)]("red")

    assert a.get_or_load(red(), lambda: 1) == 1
    assert b.get(red(1)) == Hit(1)
    versions = b.snapshot_versions([red(2), "blue"])
    assert [type(key) for key in versions] == [str, str]
    stored = a.set_if_versions(
        [VersionedValue(red(3), 2, versions["red"]), VersionedValue("blue", 3, versions["blue"])]
    )
    assert stored.outcome is WriteOutcome.STORED
    assert b.get_many([red(1), "blue"]) == ({"red": 2, "blue": 3}, [])
    b.invalidate(red(2))
    assert a.get(red()) is None
    assert b.get("red") is None
    values, missing = a.get_many(["blue", red(3)])
    assert (values, missing) == ({"blue": 3}, ["red"])
    assert [type(key) for key in missing] == [str]
    assert a.set_if_version(red(1), 9, versions["red"]).outcome is MISMATCH
    asked: list[list[str]] = []

    def load(keys: list[str]) -> dict[str, int]:
        asked.append(keys)
        return {key: 4 for key in keys}

    assert b.get_many_or_load([red(), "blue"], load) == {"red": 4, "blue": 3}
    assert asked == [["red"]] and type(asked[0][0]) is str
    assert a.get(red(2)) == Hit(4)


# -- round trips (DESIGN §3.8) ---------------------------------------------------------------------


def _warm(topology: Topology, **options: Any) -> CAS[Any]:
    """A cache whose scripts are loaded and whose connections are open."""
    cache = topology(**options)
    cache.invalidate("warm")
    fill(cache, "warm", 0)
    fill_batch(cache, {"warm1": 1, "warm2": 2})
    warm_up(topology.redis)
    return cache


def _is_cluster(topology: Topology) -> bool:
    return isinstance(topology.client, redis.cluster.RedisCluster)


@pytest.mark.parametrize("topology", REDIS, indirect=True)
def test_round_trips_single_key(topology: Topology) -> None:
    cache = _warm(topology)
    with count_round_trips() as log:
        version = cache.snapshot_version("k")
    assert log.trips == [["EVALSHA"]]
    with count_round_trips() as log:
        assert cache.get("k") is None
    assert log.trips == [["MGET"]]
    with count_round_trips() as log:
        assert cache.set_if_version("k", {"v": 1}, version).stored
    assert log.trips == [["EVALSHA"]]
    with count_round_trips() as log:
        assert cache.get("k") == Hit({"v": 1})
    assert log.trips == [["MGET"]]
    with count_round_trips() as log:
        cache.invalidate("k")
    assert log.trips == [["EVALSHA"]]
    with count_round_trips() as log:
        assert cache.set_if_version("k", {"v": 1}, version).outcome is MISMATCH
    assert log.trips == [["EVALSHA"]]


@pytest.mark.parametrize("topology", REDIS, indirect=True)
def test_round_trips_get_many(topology: Topology) -> None:
    cache = _warm(topology)
    keys = [f"m{i}" for i in range(32)]
    values = {k: i for i, k in enumerate(keys)}
    fan_out = primaries(topology.redis)
    with count_round_trips() as log:
        versions = cache.snapshot_versions(keys)
    assert log.round_trips <= fan_out
    # Batch miss, no singles: the batch entry read plus one batched read of the singles.
    with count_round_trips() as log:
        assert cache.get_many(keys) == ({}, keys)
    assert log.round_trips <= 1 + fan_out
    assert cache.set_if_versions(VersionedValue(k, values[k], versions[k]) for k in keys).stored
    # Batch hit: the batch entry and every member's version in one pipelined round trip.
    with count_round_trips() as log:
        assert cache.get_many(keys) == (values, [])
    if _is_cluster(topology):
        assert 2 <= log.round_trips <= 1 + fan_out
    else:
        assert log.trips == [["MGET", "MGET"]]
    # A stale member: the batch entry is dropped and the fallback is batched, not 32 reads.
    cache.invalidate(keys[5])
    with count_round_trips() as log:
        found, missing = cache.get_many(keys)
    assert missing == [keys[5]]
    assert len(found) == 31
    if _is_cluster(topology):
        assert log.round_trips <= 2 + 2 * fan_out
    else:
        assert log.round_trips <= 3
        assert log.trips == [["MGET", "MGET"], ["DEL"], ["MGET"]]
    # Batch entry gone, singles seeded: fallback reads stay batched.
    with count_round_trips() as log:
        assert cache.get_many(keys) == (found, [keys[5]])
    assert log.round_trips <= (1 + fan_out if _is_cluster(topology) else 2)


@pytest.mark.parametrize("topology", REDIS, indirect=True)
def test_round_trips_get_many_after_version_loss(topology: Topology) -> None:
    cache = _warm(topology)
    keys = [f"m{i}" for i in range(32)]
    for key in keys:
        fill(cache, key, key)
    for key in keys:
        topology.lose_version(key)
    with count_round_trips() as log:
        assert cache.get_many(keys) == ({}, keys)
    assert all(stored_bytes(cache, k) is None for k in keys)  # every stale entry was dropped
    budget = 4 if not _is_cluster(topology) else 2 + 2 * primaries(topology.redis)
    assert log.round_trips <= budget, log.trips


@pytest.mark.parametrize("topology", REDIS, indirect=True)
def test_round_trips_get_many_without_batching(topology: Topology) -> None:
    cache = _warm(topology, disable_batch=True)
    keys = [f"m{i}" for i in range(32)]
    with count_round_trips() as log:
        cache.get_many(keys)
    if _is_cluster(topology):
        assert log.round_trips <= primaries(topology.redis)
    else:
        assert log.trips == [["MGET"]]


@pytest.mark.parametrize("topology", SHARED_VERSIONS, indirect=True)
def test_round_trips_shared_versions(topology: Topology) -> None:
    cache = _warm(topology)
    with count_round_trips() as log:
        version = cache.snapshot_version("k")
    assert log.trips == [["EVALSHA"]]
    with count_round_trips() as log:
        assert cache.get("k") is None  # a local miss needs no version read
    assert log.round_trips == 0
    with count_round_trips() as log:
        assert cache.set_if_version("k", 1, version).stored
    assert log.trips == [["MGET"]]
    with count_round_trips() as log:
        assert cache.get("k") == Hit(1)
    assert log.trips == [["MGET"]]
    with count_round_trips() as log:
        cache.invalidate("k")
    assert log.trips == [["SET"]]


@pytest.mark.parametrize("topology", ["local"], indirect=True)
def test_local_does_no_redis_io(topology: Topology) -> None:
    cache = topology()
    with count_round_trips() as log:
        fill(cache, "k", 1)
        cache.get("k")
        fill_batch(cache, {"a": 1, "b": 2})
        cache.get_many(["a", "b"])
        cache.invalidate("k")
    assert log.round_trips == 0


def test_a_failing_cost_function_is_a_typed_error_and_never_hides_the_source() -> None:
    def cost(frame: bytes) -> int:
        raise ZeroDivisionError("bad cost")

    cache = cascache.new(
        cascache.Options(
            namespace="cost",
            provider=cascache.MemoryProvider(),
            codec=cascache.StrCodec(),
            compute_set_cost=cost,
        )
    )
    version = cache.snapshot_version("k")
    with pytest.raises(cascache.OpError) as raised:
        cache.set_if_version("k", "v", version)
    assert raised.value.op == "set_if_version" and raised.value.key == "k"
    assert cache.get_or_load("k", lambda: "loaded") == "loaded"


def test_close_closes_the_version_store_even_if_the_provider_fails() -> None:
    class FailingClose(cascache.MemoryProvider):
        def close(self) -> None:
            raise OSError("provider close failed")

    class Recording(cascache.LocalGenStore):
        closed = False

        def close(self) -> None:
            self.closed = True

    gens = Recording()
    cache = cascache.new(
        cascache.Options(
            namespace="close", provider=FailingClose(), codec=cascache.StrCodec(), gen_store=gens
        )
    )
    with pytest.raises(OSError):
        cache.close()
    assert gens.closed


def test_a_failing_seed_does_not_hide_the_stored_batch() -> None:
    class SetFailsForSingles(cascache.MemoryProvider):
        def set(self, key: str, value: bytes, cost: int, ttl: float | None) -> bool:
            if ":v:" in key:
                raise OSError("single-entry write failed")
            return super().set(key, value, cost, ttl)

    events: list[str] = []

    class Record(cascache.Hooks):
        def store_error(self, op: str, key: str, error: BaseException) -> None:
            events.append(f"{op}:{key}")

    cache = cascache.new(
        cascache.Options(
            namespace="seed",
            provider=SetFailsForSingles(),
            codec=cascache.StrCodec(),
            hooks=Record(),
        )
    )
    versions = cache.snapshot_versions(["a", "b"])
    result = cache.set_if_versions([VersionedValue(k, k, versions[k]) for k in ("a", "b")])
    assert result.stored and result.seeded_singles == 0
    assert events == ["set_if_versions:a", "set_if_versions:b"]
    assert cache.get_many(["a", "b"]) == ({"a": "a", "b": "b"}, [])


# -- exact reports per call site ---------------------------------------------------------
# Each scenario injects one store failure into a cache with in-process stores (the call
# sites are the same code on every topology) and checks what the caller and the hooks are
# told: the operation, the key(s) and the error, exactly.


def _reporting(**options: Any) -> tuple[CAS[Any], FaultyProvider, FaultyGenStore, Recorder]:
    hooks = Recorder()
    provider = FaultyProvider(MemoryProvider())
    gens = FaultyGenStore(cascache.LocalGenStore())
    cache = cascache.new(
        cascache.Options(
            namespace="reports",
            provider=provider,
            codec=cascache.JsonCodec(),
            gen_store=gens,
            hooks=hooks,
            **options,
        )
    )
    return cache, provider, gens, hooks


AB = "'a', 'b'"
"""The text naming the keys ``a`` and ``b`` of a batch operation (``errors.describe_keys``)."""


def _op_error(error: Any, op: str, key: str) -> bool:
    """``error`` is an ``OpError`` of ``op`` for ``key`` (``AB``: the batch of a and b)."""
    keys = ("a", "b") if key == AB else (key,)
    return isinstance(error, OpError) and error.op == op and error.key == key and error.keys == keys


def test_report_snapshot_version_failure() -> None:
    cache, _, gens, hooks = _reporting()
    gens.failing = {"snapshot"}
    with pytest.raises(OpError) as raised:
        cache.snapshot_version("k")
    assert _op_error(raised.value, "snapshot_version", "k")
    assert isinstance(raised.value.cause, Boom)
    assert hooks.events == [
        ("version_snapshot_error", ("snapshot_version", "k", raised.value.cause))
    ]


@pytest.mark.parametrize("batch", [False, True], ids=["get_or_load", "get_many_or_load"])
def test_a_fill_whose_cache_closes_before_its_snapshot_loads_and_reports_it(batch: bool) -> None:
    cache, _, _, hooks = _reporting()
    core = cache.core
    step: Step[object] = (
        core.get_many_or_load(["a", "b"], lambda keys: dict.fromkeys(keys, 1), None)
        if batch
        else core.get_or_load("a", lambda: 1, None)
    )
    fill = Process(step)
    fill.step(late=True)  # the read that misses, its reply on its way
    cache.close()
    while not fill.done:
        fill.step()
    assert fill.result == ({"a": 1, "b": 1} if batch else 1)  # loaded, not stored
    [(op, key, error)] = hooks.of("store_error")
    assert (op, key) == (("get_many_or_load", AB) if batch else ("get_or_load", "a"))
    assert isinstance(error, cascache.ClosedError)
    assert hooks.of("version_snapshot_error") == []


def test_report_invalidate_advance_failure() -> None:
    cache, _, gens, hooks = _reporting()
    gens.failing = {"advance"}
    with pytest.raises(InvalidateError) as raised:
        cache.invalidate("k")
    boom = raised.value.advance_error
    assert isinstance(boom, Boom) and raised.value.key == "k"
    assert hooks.events == [
        ("version_advance_error", ("k", boom)),
        ("invalidate_outage", ("k", boom, None)),
    ]


def test_report_get_or_load_read_failure() -> None:
    cache, provider, _, hooks = _reporting()
    provider.failing = {"get"}
    assert cache.get_or_load("k", lambda: 1) == 1
    [(op, key, error)] = hooks.of("read_error")
    assert (op, key) == ("get_or_load", "k") and _op_error(error, "get_or_load", "k")
    assert hooks.of("cleanup_error") == []


def test_report_get_many_or_load_read_failure() -> None:
    cache, provider, _, hooks = _reporting()
    provider.failing = {"get_many"}
    assert cache.get_many_or_load(["a", "b"], lambda keys: dict.fromkeys(keys, 1)) == {
        "a": 1,
        "b": 1,
    }
    [(op, key, error)] = hooks.of("read_error")
    assert (op, key) == ("get_many_or_load", AB) and _op_error(error, "get_many_or_load", AB)
    assert hooks.of("cleanup_error") == []


def test_report_get_many_or_load_snapshot_failure() -> None:
    cache, _, gens, hooks = _reporting()
    gens.failing = {"snapshot_many"}
    assert cache.get_many_or_load(["a", "b"], lambda keys: dict.fromkeys(keys, 1)) == {
        "a": 1,
        "b": 1,
    }
    [(op, key, boom)] = hooks.of("version_snapshot_error")
    assert (op, key) == ("snapshot_versions", AB) and isinstance(boom, Boom)
    # Reported once, by the snapshot; the fill loads and stores nothing.
    assert hooks.of("store_error") == hooks.of("cleanup_error") == []
    assert cache.get_many(["a", "b"]) == ({}, ["a", "b"])  # nothing stored without versions


def test_report_set_if_versions_check_failure() -> None:
    cache, _, gens, hooks = _reporting()
    versions = cache.snapshot_versions(["a", "b"])
    gens.failing = {"current_many"}
    result = cache.set_if_versions([VersionedValue(k, 1, versions[k]) for k in "ab"])
    assert result.outcome is WriteOutcome.SNAPSHOT_ERROR
    [(op, key, boom)] = hooks.of("version_snapshot_error")
    assert (op, key) == ("set_if_versions", AB) and isinstance(boom, Boom)


def test_report_batch_fence_read_failure() -> None:
    cache, _, gens, hooks = _reporting(batch_write_seed="off")
    fill_batch(cache, {"a": 1, "b": 2})
    gens.failing = {"current_many"}
    assert cache.get_many(["a", "b"]) == ({}, ["a", "b"])
    [(op, key, boom)] = hooks.of("version_snapshot_error")
    assert (op, key) == ("get_many", AB) and isinstance(boom, Boom)


def test_report_single_fence_read_failure() -> None:
    cache, _, gens, hooks = _reporting(disable_batch=True)
    fill(cache, "a", 1)
    fill(cache, "b", 2)
    gens.failing = {"current_many"}
    assert cache.get_many(["a", "b"]) == ({}, ["a", "b"])
    [(op, key, boom)] = hooks.of("version_snapshot_error")
    assert (op, key) == ("get_many", AB) and isinstance(boom, Boom)


def test_report_batch_drop_failure() -> None:
    cache, provider, _, hooks = _reporting(batch_write_seed="off")
    fill_batch(cache, {"a": 1, "b": 2})
    cache.invalidate("a")
    provider.failing = {"delete"}
    assert cache.get_many(["a", "b"]) == ({"b": 2}, ["a"])  # the fresh member is served
    [(op, key, boom)] = hooks.of("cleanup_error")
    assert (op, key) == ("get_many", AB) and isinstance(boom, Boom)
    assert hooks.of("batch_rejected") == [(["a", "b"], "members not servable: a (stale version)")]


def test_report_single_drop_failure() -> None:
    cache, provider, gens, hooks = _reporting()
    fill(cache, "k", 1)
    assert isinstance(gens.inner, cascache.LocalGenStore)
    gens.inner.forget(cache.core.keys.single("k").version)
    provider.failing = {"delete"}
    assert cache.get("k") is None
    [(op, key, boom)] = hooks.of("cleanup_error")
    assert (op, key) == ("get", "k") and isinstance(boom, Boom)
    assert hooks.of("self_healed") == [("get", "k", "version lost")]


def test_report_read_seed_failure() -> None:
    cache, provider, _, hooks = _reporting(batch_write_seed="off", batch_read_seed="all")
    fill_batch(cache, {"a": 1, "b": 2})
    provider.failing = {"set"}
    assert cache.get_many(["a", "b"]) == ({"a": 1, "b": 2}, [])
    reports = hooks.of("store_error")
    assert [(op, key) for op, key, _ in reports] == [("get_many", "a"), ("get_many", "b")]
    assert all(_op_error(error, "get_many", key) for _, key, error in reports)


def test_report_get_or_load_snapshot_failure() -> None:
    cache, _, gens, hooks = _reporting()
    gens.failing = {"snapshot"}
    assert cache.get_or_load("k", lambda: 1) == 1
    [(op, key, boom)] = hooks.of("version_snapshot_error")
    assert (op, key) == ("snapshot_version", "k") and isinstance(boom, Boom)
    # Reported once, by the snapshot; the fill loads and stores nothing.
    assert hooks.of("store_error") == hooks.of("cleanup_error") == []


def test_report_get_or_load_store_failure() -> None:
    cache, provider, _, hooks = _reporting()
    provider.failing = {"set"}
    assert cache.get_or_load("k", lambda: 1) == 1
    [(op, key, error)] = hooks.of("store_error")
    assert (op, key) == ("get_or_load", "k") and _op_error(error, "set_if_version", "k")
    assert isinstance(error.cause, Boom)
    assert hooks.of("codec_error") == hooks.of("cleanup_error") == []


def test_report_get_or_load_version_check_failure() -> None:
    cache, _, gens, hooks = _reporting()
    gens.failing = {"current"}
    assert cache.get_or_load("k", lambda: 1) == 1
    [(op, key, boom)] = hooks.of("version_snapshot_error")
    assert (op, key) == ("set_if_version", "k") and isinstance(boom, Boom)
    assert hooks.of("cleanup_error") == hooks.of("store_error") == []


def test_report_get_version_read_failure() -> None:
    cache, _, gens, hooks = _reporting()
    fill(cache, "k", 1)
    gens.failing = {"current"}
    assert cache.get("k") is None
    [(op, key, boom)] = hooks.of("version_snapshot_error")
    assert (op, key) == ("get", "k") and isinstance(boom, Boom)


def test_report_invalidate_delete_failure() -> None:
    cache, provider, _, hooks = _reporting()
    provider.failing = {"delete"}
    cache.invalidate("k")
    [(op, key, boom)] = hooks.of("cleanup_error")
    assert (op, key) == ("invalidate", "k") and isinstance(boom, Boom)


def test_report_invalidate_total_failure() -> None:
    cache, provider, gens, hooks = _reporting()
    gens.failing = {"advance"}
    provider.failing = {"delete"}
    with pytest.raises(InvalidateError) as raised:
        cache.invalidate("k")
    advance, delete = raised.value.advance_error, raised.value.delete_error
    assert isinstance(advance, Boom) and isinstance(delete, Boom) and advance is not delete
    assert hooks.events == [
        ("version_advance_error", ("k", advance)),
        ("invalidate_outage", ("k", advance, delete)),
    ]


def test_report_get_many_or_load_store_failure() -> None:
    cache, provider, _, hooks = _reporting(batch_write_seed="off")
    provider.failing = {"set"}
    assert cache.get_many_or_load(["a", "b"], lambda keys: dict.fromkeys(keys, 1)) == {
        "a": 1,
        "b": 1,
    }
    [(op, key, error)] = hooks.of("store_error")
    assert (op, key) == ("get_many_or_load", AB) and _op_error(error, "set_if_versions", AB)


def test_report_write_seed_failure() -> None:
    cache, provider, _, hooks = _reporting(batch_write_seed="fast")
    versions = cache.snapshot_versions(["a", "b"])
    real_set = provider.inner.set

    def set_batch_only(key: str, value: bytes, cost: int, ttl: float | None) -> bool:
        if key in (single(cache, "a").value, single(cache, "b").value):
            raise Boom("seed")
        return real_set(key, value, cost, ttl)

    provider.inner.set = set_batch_only  # type: ignore[method-assign]
    result = cache.set_if_versions([VersionedValue(k, 1, versions[k]) for k in "ab"])
    assert result.stored and result.seeded_singles == 0
    reports = hooks.of("store_error")
    assert [(op, key) for op, key, _ in reports] == [
        ("set_if_versions", "a"),
        ("set_if_versions", "b"),
    ]
    assert all(_op_error(error, "set_if_versions", key) for _, key, error in reports)


def test_report_many_drop_failure() -> None:
    cache, provider, _, hooks = _reporting(disable_batch=True)
    fill(cache, "a", 1)
    fill(cache, "b", 2)
    plant(cache, "a", b"corrupt")
    plant(cache, "b", b"corrupt")
    provider.failing = {"delete"}
    assert cache.get_many(["a", "b"]) == ({}, ["a", "b"])
    [(op, key, boom)] = hooks.of("cleanup_error")
    assert (op, key) == ("get_many", AB) and isinstance(boom, Boom)
    healed = hooks.of("self_healed")
    assert [(op, key) for op, key, _ in healed] == [("get_many", "a"), ("get_many", "b")]
    assert all(reason.startswith("corrupt entry: ") for _, _, reason in healed)


# -- TTLs on every path that stores ------------------------------------------------------
# default_ttl 10 s, batch_ttl unset (the batch entry falls back to default_ttl), and a
# per-call TTL of 3 s where the path takes one: each entry is there just before its TTL
# and gone just after.


def _timed(**options: Any) -> tuple[CAS[Any], FakeClock]:
    clock = FakeClock()
    cache = cascache.new(
        cascache.Options(
            namespace="ttl",
            provider=MemoryProvider(clock=clock),
            codec=cascache.JsonCodec(),
            default_ttl=10,
            **options,
        )
    )
    return cache, clock


def _lives(cache: CAS[Any], clock: FakeClock, present: Callable[[], bool], ttl: float) -> None:
    start = clock.now
    clock.now = start + ttl - 0.5
    assert present(), f"gone before its {ttl} s TTL"
    clock.now = start + ttl + 0.5
    assert not present(), f"still there after its {ttl} s TTL"
    clock.now = start


def test_ttl_of_get_or_load() -> None:
    cache, clock = _timed()
    cache.get_or_load("k", lambda: 1, ttl=3)
    _lives(cache, clock, lambda: stored_bytes(cache, "k") is not None, 3)


@pytest.mark.parametrize("seed", ["strict", "fast"])
def test_ttl_of_get_many_or_load_and_its_seeds(seed: str) -> None:
    cache, clock = _timed(batch_write_seed=seed)
    cache.get_many_or_load(["a", "b"], lambda keys: dict.fromkeys(keys, 1), ttl=3)
    _lives(cache, clock, lambda: stored_bytes(cache, "a") is not None, 3)
    _lives(cache, clock, lambda: batch_bytes(cache, ["a", "b"]) is not None, 10)


@pytest.mark.parametrize("seed", ["strict", "fast"])
def test_ttl_of_batch_seeds_defaults_to_default_ttl(seed: str) -> None:
    cache, clock = _timed(batch_write_seed=seed)
    fill_batch(cache, {"a": 1, "b": 2})
    _lives(cache, clock, lambda: stored_bytes(cache, "b") is not None, 10)


def test_ttl_of_batch_entry_is_batch_ttl() -> None:
    cache, clock = _timed(batch_ttl=4)
    fill_batch(cache, {"a": 1, "b": 2})
    _lives(cache, clock, lambda: batch_bytes(cache, ["a", "b"]) is not None, 4)


def test_ttl_of_unbatched_writes() -> None:
    cache, clock = _timed(disable_batch=True)
    versions = cache.snapshot_versions(["a", "b"])
    cache.set_if_versions([VersionedValue(k, 1, versions[k]) for k in "ab"], ttl=3)
    _lives(cache, clock, lambda: stored_bytes(cache, "a") is not None, 3)


@pytest.mark.parametrize("seed", ["all", "if_missing"])
def test_ttl_of_read_seeds_is_default_ttl(seed: str) -> None:
    cache, clock = _timed(batch_write_seed="off", batch_read_seed=seed)
    fill_batch(cache, {"a": 1, "b": 2})
    clock.now += 5  # the seeds are written by this read, 5 s after the batch
    assert cache.get_many(["a", "b"]) == ({"a": 1, "b": 2}, [])
    _lives(cache, clock, lambda: stored_bytes(cache, "a") is not None, 10)


# -- stores that break their interface ------------------------------------------------------
# A many-key reply with fewer results than keys is a store failure (``ReplyError``), handled
# like any other failure of that store; its results are never paired with keys.


def _reply_error(error: BaseException | None, op: str, asked: int) -> bool:
    return (
        isinstance(error, cascache.ReplyError)
        and str(error) == f"{op} returned {asked - 1} results for {asked} keys"
    )


def test_short_value_reply_fails_the_read() -> None:
    cache, provider, _, hooks = _reporting(disable_batch=True)
    fill(cache, "a", 1)
    fill(cache, "b", 2)
    provider.short = True
    with pytest.raises(OpError) as raised:
        cache.get_many(["a", "b"])
    assert _op_error(raised.value, "get_many", AB)
    assert _reply_error(raised.value.cause, "get_many", 2)
    assert cache.get_many_or_load(["a", "b"], lambda keys: dict.fromkeys(keys, 0)) == {
        "a": 0,
        "b": 0,
    }
    [(op, key, error)] = hooks.of("read_error")
    assert (op, key) == ("get_many_or_load", AB) and _op_error(error, "get_many_or_load", AB)


@pytest.mark.parametrize("batch", [True, False])
def test_short_fence_reply_fails_closed(batch: bool) -> None:
    cache, _, gens, hooks = _reporting(disable_batch=not batch, batch_write_seed="off")
    if batch:
        fill_batch(cache, {"a": 1, "b": 2})
    else:
        fill(cache, "a", 1)
        fill(cache, "b", 2)
    gens.short = {"current_many"}
    assert cache.get_many(["a", "b"]) == ({}, ["a", "b"])
    [(op, key, error)] = hooks.of("version_snapshot_error")
    assert (op, key) == ("get_many", AB) and _reply_error(error, "current_many", 2)


def test_short_fence_reply_refuses_the_batch_write() -> None:
    cache, _, gens, hooks = _reporting()
    versions = cache.snapshot_versions(["a", "b"])
    gens.short = {"current_many"}
    result = cache.set_if_versions([VersionedValue(k, 1, versions[k]) for k in "ab"])
    assert result.outcome is WriteOutcome.SNAPSHOT_ERROR
    [(op, key, error)] = hooks.of("version_snapshot_error")
    assert (op, key) == ("set_if_versions", AB) and _reply_error(error, "current_many", 2)


def test_short_snapshot_reply_fails_the_snapshot() -> None:
    cache, _, gens, _ = _reporting()
    gens.short = {"snapshot_many"}
    with pytest.raises(OpError) as raised:
        cache.snapshot_versions(["a", "b"])
    assert _op_error(raised.value, "snapshot_versions", AB)
    assert _reply_error(raised.value.cause, "snapshot_many", 2)


class ShortReader:
    """A key reader whose many-key replies lack their last result."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def read(self, key: CacheKey) -> tuple[bytes | None, Version | None]:
        return self.inner.read(key)  # type: ignore[no-any-return]

    def read_many(self, keys: Sequence[CacheKey]) -> list[tuple[bytes | None, Version | None]]:
        return self.inner.read_many(keys)[:-1]  # type: ignore[no-any-return]

    def read_batch(
        self, name: str, keys: Sequence[CacheKey]
    ) -> tuple[bytes | None, list[Version | None] | None]:
        blob, fences = self.inner.read_batch(name, keys)
        return blob, None if fences is None else fences[:-1]


@pytest.mark.parametrize("topology", ["redis-fake"], indirect=True)
@pytest.mark.parametrize("batch", [True, False])
def test_short_reader_reply_fails_the_read(topology: Topology, batch: bool) -> None:
    cache = topology(disable_batch=not batch)
    fill_batch(cache, {"a": 1, "b": 2})
    cache.core.reader = cache.core.batch_reader = ShortReader(cache.core.reader)
    with pytest.raises(OpError) as raised:
        cache.get_many(["a", "b"])
    assert _op_error(raised.value, "get_many", AB)
    assert _reply_error(raised.value.cause, "read_batch" if batch else "read_many", 2)


def trace_of(step: Step[Any]) -> list[tuple[str, str]]:
    """The ``(target, op)`` of every effect an operation performs when nothing else runs."""
    process = Process(step)
    trace = []
    while process.pending is not None:
        trace.append((process.pending.target, process.pending.op))
        process.step()
    process.result  # noqa: B018 - raise if it failed
    return trace


def test_one_key_get_many_reads_no_batch_entry() -> None:
    cache = cascache.new(
        cascache.Options(namespace="one", provider=MemoryProvider(), codec=cascache.JsonCodec())
    )
    fill(cache, "a", 1)
    assert trace_of(cache.core.get_many(["a"])) == [
        ("values", "get_many"),
        ("versions", "current_many"),
    ]
    assert trace_of(cache.core.get_many(["a", "b"])) == [
        ("values", "get"),
        ("values", "get_many"),
        ("versions", "current_many"),
    ]


def test_get_many_reads_the_fences_once_when_the_batch_entry_is_rejected() -> None:
    cache = cascache.new(
        cascache.Options(namespace="once", provider=MemoryProvider(), codec=cascache.JsonCodec())
    )
    fill_batch(cache, {"a": 1, "b": 2, "c": 3})
    cache.invalidate("b")
    fill(cache, "b", 20)
    # The batch entry's fences serve the single entries too: one fence read in all.
    assert trace_of(cache.core.get_many(["a", "b", "c"])) == [
        ("values", "get"),
        ("versions", "current_many"),
        ("values", "delete"),
        ("values", "get_many"),
    ]
    assert cache.get_many(["a", "b", "c"]) == ({"a": 1, "b": 20, "c": 3}, [])


@pytest.mark.parametrize("topology", ["redis-fake"], indirect=True)
def test_get_many_without_a_batch_entry_reads_the_fences_once(topology: Topology) -> None:
    cache = topology()
    fill(cache, "a", 1)
    fill(cache, "b", 2)
    assert trace_of(cache.core.get_many(["a", "b", "c"])) == [
        ("redis", "read_batch"),
        ("values", "get_many"),
    ]
    assert cache.get_many(["a", "b", "c"]) == ({"a": 1, "b": 2}, ["c"])


@pytest.mark.parametrize("topology", ["redis-fake"], indirect=True)
@pytest.mark.parametrize("batch", [True, False])
def test_get_many_without_batch_fences_reads_entries_and_fences_together(
    topology: Topology, batch: bool
) -> None:
    """One key (no batch entry is read) or batching off: one read_many of both."""
    cache = topology(disable_batch=not batch)
    fill(cache, "a", 1)
    keys = ["a"] if batch else ["a", "b"]
    assert trace_of(cache.core.get_many(keys)) == [("redis", "read_many")]
    assert cache.get_many(keys) == ({"a": 1}, keys[1:])


@pytest.mark.parametrize("topology", ["redis-fake"], indirect=True)
def test_get_many_judges_single_entries_by_the_fences_it_read_first(topology: Topology) -> None:
    """An entry written after the fences were read, under a newer fence, misses (safe)."""
    cache = topology()
    fill(cache, "a", 1)
    process = Process(cache.core.get_many(["a", "b"]))
    process.step()  # the batch entry (absent) and the fences of a and b
    cache.invalidate("a")
    fill(cache, "a", 2)
    while not process.done:
        process.step()
    assert process.result == ({}, ["a", "b"])
    # The newer entry was dropped as stale by that read: a miss, never a stale hit (the
    # same race a generic many-key read has between its frame read and its fence read).
    assert cache.get_many(["a", "b"]) == ({}, ["a", "b"])


@pytest.mark.parametrize("topology", ["redis-fake"], indirect=True)
def test_get_or_load_loads_under_the_fence_its_read_delivered(topology: Topology) -> None:
    cache = topology()
    fill(cache, "a", 1)
    cache.invalidate("a")
    # The read (entry and fence in one MGET) found the fence: no separate snapshot.
    assert trace_of(cache.core.get_or_load("a", lambda: 2, None)) == [
        ("redis", "read"),
        ("source", "load"),
        ("redis", "write_if_version"),
    ]
    assert cache.get("a") == Hit(2)
    # A key without a fence needs one created before the load.
    assert trace_of(cache.core.get_or_load("cold", lambda: 3, None)) == [
        ("redis", "read"),
        ("versions", "snapshot"),
        ("source", "load"),
        ("redis", "write_if_version"),
    ]
    assert cache.get("cold") == Hit(3)


def test_get_or_load_reuses_the_fence_read_for_a_stale_entry() -> None:
    cache = cascache.new(
        cascache.Options(namespace="reuse", provider=MemoryProvider(), codec=cascache.JsonCodec())
    )
    fill(cache, "a", 1)
    cache.core.gens.advance(single(cache, "a").version)  # the entry is now stale
    assert trace_of(cache.core.get_or_load("a", lambda: 2, None)) == [
        ("values", "get"),
        ("versions", "current"),
        ("values", "delete"),
        ("source", "load"),
        ("versions", "current"),
        ("values", "set"),
    ]
    assert cache.get("a") == Hit(2)
    # Without an entry the fence is not read with it, so the snapshot is taken.
    assert trace_of(cache.core.get_or_load("b", lambda: 3, None)) == [
        ("values", "get"),
        ("versions", "snapshot"),
        ("source", "load"),
        ("versions", "current"),
        ("values", "set"),
    ]


class PlainProvider:
    """A provider with only the required methods (no ``get_many``, ``delete_many``, ``add``)."""

    def __init__(self) -> None:
        self.inner = MemoryProvider()

    def get(self, key: str) -> bytes | None:
        return self.inner.get(key)

    def set(self, key: str, value: bytes, cost: int, ttl: float | None) -> bool:
        return self.inner.set(key, value, cost, ttl)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def close(self) -> None:
        self.inner.close()


def test_self_heal_deletes_through_a_plain_provider() -> None:
    provider = PlainProvider()
    hooks = Recorder()
    cache = cascache.new(
        cascache.Options(
            namespace="plain",
            provider=provider,
            codec=cascache.JsonCodec(),
            hooks=hooks,
            disable_batch=True,
        )
    )
    assert not isinstance(provider, cascache.ManyProvider)
    fill(cache, "a", 1)
    fill(cache, "b", 2)
    cache.invalidate("a")
    plant(cache, "b", b"corrupt")
    stale = encode_single(new_fence(), b"3")
    plant(cache, "a", stale)
    assert cache.get_many(["a", "b"]) == ({}, ["a", "b"])
    assert provider.get(single(cache, "a").value) is None
    assert provider.get(single(cache, "b").value) is None
    assert [args[:2] for args in hooks.of("self_healed")] == [("get_many", "a"), ("get_many", "b")]


@pytest.mark.parametrize("topology", ["redis-fake"], indirect=True)
def test_report_atomic_invalidate_failure(topology: Topology) -> None:
    hooks = Recorder()
    cache = topology(hooks=hooks)

    class Failing:
        def invalidate(self, key: CacheKey) -> None:
            raise Boom(f"invalidate {key.key}")

    cache.core.invalidator = Failing()
    with pytest.raises(InvalidateError) as raised:
        cache.invalidate("k")
    boom = raised.value.advance_error
    assert isinstance(boom, Boom) and raised.value.key == "k" and raised.value.delete_error is None
    assert hooks.events == [
        ("version_advance_error", ("k", boom)),
        ("invalidate_outage", ("k", boom, None)),
    ]


# -- malformed state in Redis heals -------------------------------------------------------

MALFORMED_VERSIONS: dict[str, Callable[[Any, str], object]] = {
    "empty": lambda client, name: client.set(name, b""),
    "7 bytes": lambda client, name: client.set(name, b"7 bytes"),
    "a list": lambda client, name: (client.delete(name), client.rpush(name, b"x")),
    "a hash": lambda client, name: (client.delete(name), client.hset(name, "f", "v")),
}


@pytest.mark.parametrize("topology", REDIS + SHARED_VERSIONS, indirect=True)
@pytest.mark.parametrize("how", list(MALFORMED_VERSIONS))
def test_a_malformed_version_counts_as_lost_and_heals(topology: Topology, how: str) -> None:
    cache = topology()
    keys = [f"k{i:03d}" for i in range(100)]
    assert cache.get_many_or_load(keys, lambda ks: dict.fromkeys(ks, "v1")) == dict.fromkeys(
        keys, "v1"
    )
    bad = keys[37]
    MALFORMED_VERSIONS[how](topology.redis, single(cache, bad).version)
    assert cache.get(bad) is None
    values, missing = cache.get_many(keys)
    assert missing == [bad] and values == {k: "v1" for k in keys if k != bad}
    # The next snapshot replaces the malformed version with a fresh fence: the key fills.
    assert cache.get_or_load(bad, lambda: "v2") == "v2"
    assert cache.get(bad) == Hit("v2")
    assert isinstance(topology.redis.get(single(cache, bad).version), bytes)
    MALFORMED_VERSIONS[how](topology.redis, single(cache, "solo").version)
    version = cache.snapshot_version("solo")
    assert cache.set_if_version("solo", "s", version).stored
    assert cache.get("solo") == Hit("s")


@pytest.mark.parametrize("topology", REDIS, indirect=True)
def test_an_entry_of_another_type_is_a_miss_and_the_next_fill_replaces_it(
    topology: Topology,
) -> None:
    cache = topology(batch_write_seed="off")
    keys = ["a", "b", "c"]
    fill_batch(cache, dict.fromkeys(keys, 1))
    topology.redis.delete(cache.core.keys.batch(keys))
    topology.redis.rpush(cache.core.keys.batch(keys), b"x")
    topology.redis.rpush(single(cache, "a").value, b"x")
    assert cache.get("a") is None
    assert cache.get_many(keys) == ({}, keys)
    assert cache.get_many_or_load(keys, lambda ks: dict.fromkeys(ks, 2)) == dict.fromkeys(keys, 2)
    assert cache.get_many(keys) == (dict.fromkeys(keys, 2), [])
    assert topology.redis.type(cache.core.keys.batch(keys)) == b"string"
    assert cache.get_or_load("a", lambda: 3) == 3
    assert cache.get("a") == Hit(3)


# -- errors that name what failed -------------------------------------------------------------


def test_op_error_message_keeps_the_causes_own_text() -> None:
    cache, provider, _, _ = _reporting()
    refused = redis.ConnectionError("Error 111 connecting to localhost:6399. Connection refused.")

    def down(key: str) -> bytes | None:
        raise refused

    provider.inner.get = down  # type: ignore[method-assign]
    with pytest.raises(OpError) as raised:
        cache.get("k")
    assert str(raised.value) == (
        "cascache get('k') failed: ConnectionError: "
        "Error 111 connecting to localhost:6399. Connection refused."
    )
    assert raised.value.cause is refused and raised.value.__cause__ is refused


def test_invalidate_error_has_a_cause() -> None:
    cache, provider, gens, _ = _reporting()
    gens.failing = {"advance"}
    provider.failing = {"delete"}
    with pytest.raises(InvalidateError) as raised:
        cache.invalidate("k")
    error = raised.value
    assert error.cause is error.advance_error is error.__cause__
    assert (error.op, error.key, error.keys) == ("invalidate", "k", ("k",))
    assert str(error) == (
        "cascache invalidate('k') failed: advance failed: Boom: versions advance; "
        "delete failed: Boom: provider delete"
    )


def test_a_batch_error_keeps_every_key_and_names_a_few() -> None:
    cache, provider, _, _ = _reporting(disable_batch=True)
    provider.failing = {"get_many"}
    keys = ["a,b", "c", *(f"k{i}" for i in range(100_000))]
    with pytest.raises(OpError) as raised:
        cache.get_many(keys)
    error = raised.value
    assert error.keys == tuple(keys)
    assert error.key == "'a,b', 'c', 'k0' and 99999 more"
    assert str(error) == (
        "cascache get_many('a,b', 'c', 'k0' and 99999 more) failed: Boom: provider get_many"
    )


def test_a_long_key_is_cut_in_messages() -> None:
    cache, provider, _, _ = _reporting()
    provider.failing = {"get"}
    key = "x" * 8192
    with pytest.raises(OpError) as raised:
        cache.get(key)
    assert raised.value.key == key
    assert len(str(raised.value)) < 200 and "...'" in str(raised.value)


@pytest.mark.parametrize("topology", GENERIC, indirect=True)
def test_a_loader_raising_stop_iteration_reaches_the_caller_as_itself(
    topology: Topology,
) -> None:
    cache = topology()
    mine = StopIteration("the loader's own")

    def load() -> int:
        raise mine

    def load_many(keys: list[str]) -> dict[str, int]:
        raise mine

    with pytest.raises(StopIteration) as single:
        cache.get_or_load("k", load)
    assert single.value is mine
    with pytest.raises(StopIteration) as many:
        cache.get_many_or_load(["a", "b"], load_many)
    assert many.value is mine
    process = Process(cache.core.get_or_load("k", load, None))
    while not process.done:
        process.step()
    assert process.error is mine
    assert cache.get_or_load("k", lambda: 1) == 1  # nothing was stored by the failed load


def test_a_bad_version_names_the_operation_and_key() -> None:
    cache, _, _, _ = _reporting()
    with pytest.raises(TypeError, match=r"^cascache set_if_version\('k'\): version must be"):
        cache.set_if_version("k", 1, "v1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^cascache set_if_versions\('k'\): version must be"):
        cache.set_if_versions([VersionedValue("k", 1, "v1")])  # type: ignore[arg-type]


def test_batch_failures_name_the_batch_operation() -> None:
    cache, provider, _, _ = _reporting(disable_batch=True)
    versions = cache.snapshot_versions(["a", "b"])
    provider.failing = {"set"}
    with pytest.raises(OpError) as unbatched:
        cache.set_if_versions([VersionedValue(k, 1, versions[k]) for k in "ab"])
    assert _op_error(unbatched.value, "set_if_versions", "a")
    strict, provider, _, _ = _reporting(batch_write_seed="strict")
    versions = strict.snapshot_versions(["a", "b"])
    real_set = provider.inner.set

    def batch_only(key: str, value: bytes, cost: int, ttl: float | None) -> bool:
        if key == single(strict, "a").value:
            raise Boom("seed")
        return real_set(key, value, cost, ttl)

    provider.inner.set = batch_only  # type: ignore[method-assign]
    reports = strict.core.hooks
    assert isinstance(reports, Recorder)
    result = strict.set_if_versions([VersionedValue(k, 1, versions[k]) for k in "ab"])
    assert result.stored and result.seeded_singles == 1
    [(op, key, error)] = reports.of("store_error")
    assert (op, key) == ("set_if_versions", "a") and _op_error(error, "set_if_versions", "a")


def test_an_unencodable_batch_value_names_the_operation_and_key() -> None:
    cache, _, _, _ = _reporting()
    versions = cache.snapshot_versions(["a", "b"])
    with pytest.raises(OpError) as raised:
        cache.set_if_versions(
            [VersionedValue("a", 1, versions["a"]), VersionedValue("b", {1}, versions["b"])]
        )
    assert _op_error(raised.value, "set_if_versions", "b")


def test_a_failing_batch_guard_names_the_batch_read() -> None:
    def guard(key: str, value: object) -> bool:
        raise Boom(f"guard {key}")

    cache, _, _, _ = _reporting(batch_read_guard=guard, batch_write_seed="off")
    fill_batch(cache, {"a": 1, "b": 2})
    with pytest.raises(OpError) as raised:
        cache.get_many(["a", "b"])
    assert _op_error(raised.value, "get_many", "a")


def test_a_batch_written_with_a_hostile_key_is_served_whole() -> None:
    cache, _, _, hooks = _reporting(batch_write_seed="off")
    versions = cache.snapshot_versions(["red", "blue"])
    stored = cache.set_if_versions(
        [
            VersionedValue(Hostile("red"), 1, versions["red"]),
            VersionedValue("blue", 2, versions["blue"]),
        ]
    )
    assert stored.stored
    assert cache.get_many(["red", "blue"]) == ({"red": 1, "blue": 2}, [])
    assert hooks.of("batch_rejected") == [] and hooks.of("self_healed") == []


def test_get_many_through_a_plain_provider_names_its_effects() -> None:
    provider = PlainProvider()
    cache = cascache.new(
        cascache.Options(
            namespace="plain-trace",
            provider=provider,
            codec=cascache.JsonCodec(),
            disable_batch=True,
        )
    )
    fill(cache, "a", 1)
    plant(cache, "b", b"corrupt")
    assert trace_of(cache.core.get_many(["a", "b"])) == [
        ("values", "get_many"),
        ("versions", "current_many"),
        ("values", "delete_many"),
    ]


def test_close_releases_what_the_cache_held() -> None:
    """20,000 reads of 8 KiB keys once left 477 MiB held after close."""

    def use() -> CAS[Any]:
        cache = cascache.new(
            cascache.Options(
                namespace="heap", provider=MemoryProvider(), codec=cascache.JsonCodec()
            )
        )
        for i in range(20_000):
            cache.get(f"{i:06d}" + "k" * 8192)
        cache.close()
        return cache

    held, cache = heap_growth(use)
    assert isinstance(cache, CAS) and cache.core.closed
    assert held < 1 << 20, f"{held} bytes still held by a closed cache"
