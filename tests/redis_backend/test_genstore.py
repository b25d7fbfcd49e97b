"""RedisGenStore on fakeredis, a real server and a cluster (fixture ``any_redis``)."""

from __future__ import annotations

import math
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import timedelta

import fakeredis
import pytest
import redis
import redis.cluster

from cascache.errors import ConfigError
from cascache.fence import FENCE_SIZE, Version, new_fence
from cascache.genstore import GenStore
from cascache.keys import KeySpace
from cascache.redis import RedisGenStore, new_gen_store
from cascache.redis.scripts import SNAPSHOT
from tests.servers import RedisCluster, count_round_trips, primaries, warm_up

Client = redis.Redis | redis.cluster.RedisCluster

KS = KeySpace("gen-tests")


def vkey(name: str) -> str:
    return KS.single(name).version


def test_import_cascache_does_not_import_redis() -> None:
    code = "import sys, cascache; sys.exit(1 if 'redis' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
    code = "import sys, cascache.redis; sys.exit(0 if 'redis' in sys.modules else 1)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_implements_protocol(any_redis: Client) -> None:
    store = new_gen_store(any_redis)
    assert isinstance(store, GenStore)
    assert isinstance(store, RedisGenStore)
    assert store.client is any_redis


def test_snapshot_creates_raw_fence(any_redis: Client) -> None:
    store = RedisGenStore(any_redis)
    key = vkey("a")
    assert any_redis.exists(key) == 0
    fence = store.snapshot(key)
    raw = any_redis.get(key)
    assert isinstance(raw, bytes)
    assert len(raw) == FENCE_SIZE
    assert raw == fence.to_bytes()


def test_snapshot_is_stable(any_redis: Client) -> None:
    store = RedisGenStore(any_redis)
    key = vkey("a")
    first = store.snapshot(key)
    assert store.snapshot(key) == first
    assert store.current(key) == first
    # A second store on the same server (another process) sees the same fence.
    assert RedisGenStore(any_redis).snapshot(key) == first


def test_snapshot_returns_existing_fence_unchanged(any_redis: Client) -> None:
    store = RedisGenStore(any_redis)
    key = vkey("a")
    planted = new_fence()
    any_redis.set(key, planted.to_bytes())
    assert store.snapshot(key) == planted
    assert any_redis.get(key) == planted.to_bytes()


def test_snapshot_fences_differ_per_key(any_redis: Client) -> None:
    store = RedisGenStore(any_redis)
    fences = {store.snapshot(vkey(f"k{i}")) for i in range(20)}
    assert len(fences) == 20


def test_concurrent_snapshots_agree(any_redis: Client) -> None:
    store = RedisGenStore(any_redis)
    key = vkey("raced")
    warm_up(any_redis)
    barrier = threading.Barrier(8)
    seen: list[Version] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            seen.append(store.snapshot(key))
        except BaseException as exc:  # collected and re-raised by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(seen) == 8
    assert len(set(seen)) == 1
    assert store.current(key) == seen[0]


def test_lost_fence_is_replaced_by_a_new_one(any_redis: Client) -> None:
    store = RedisGenStore(any_redis)
    key = vkey("a")
    before = store.snapshot(key)
    any_redis.delete(key)
    after = store.snapshot(key)
    assert after != before


def test_snapshot_many_creates_and_keeps(any_redis: Client) -> None:
    store = RedisGenStore(any_redis)
    keys = [vkey(f"k{i}") for i in range(12)]
    existing = store.snapshot(keys[3])
    fences = store.snapshot_many(keys)
    assert len(fences) == len(keys)
    assert fences[3] == existing
    assert len(set(fences)) == len(keys)
    assert store.snapshot_many(keys) == fences
    assert store.current_many(keys) == fences
    for key, fence in zip(keys, fences, strict=True):
        assert any_redis.get(key) == fence.to_bytes()


def test_snapshot_many_repeated_key(any_redis: Client) -> None:
    store = RedisGenStore(any_redis)
    key = vkey("dup")
    first, second = store.snapshot_many([key, key])
    assert first == second == store.current(key)


def test_snapshot_many_empty_sends_nothing(any_redis: Client) -> None:
    store = RedisGenStore(any_redis)
    warm_up(any_redis)
    with count_round_trips() as log:
        assert store.snapshot_many([]) == []
        assert store.current_many([]) == []
    assert log.round_trips == 0


def test_current_never_creates(any_redis: Client) -> None:
    store = RedisGenStore(any_redis)
    key = vkey("a")
    assert store.current(key) is None
    assert any_redis.exists(key) == 0
    assert store.current_many([key, vkey("b")]) == [None, None]
    assert any_redis.exists(key, vkey("b")) == 0


def test_current_many_mixed(any_redis: Client) -> None:
    store = RedisGenStore(any_redis)
    keys = [vkey(f"k{i}") for i in range(10)]
    made = {i: store.snapshot(keys[i]) for i in (0, 4, 9)}
    result = store.current_many(keys)
    assert result == [made.get(i) for i in range(10)]


def test_advance_changes_the_fence(any_redis: Client) -> None:
    store = RedisGenStore(any_redis)
    key = vkey("a")
    old = store.snapshot(key)
    new = store.advance(key)
    assert new != old
    assert store.current(key) == new
    assert store.snapshot(key) == new
    assert any_redis.get(key) == new.to_bytes()
    assert store.advance(key) != new


def test_advance_creates_when_missing(any_redis: Client) -> None:
    store = RedisGenStore(any_redis)
    key = vkey("a")
    fence = store.advance(key)
    assert store.current(key) == fence


MALFORMED: list[tuple[str, Callable[[Client, str], object]]] = [
    ("empty", lambda client, key: client.set(key, b"")),
    ("7 bytes", lambda client, key: client.set(key, b"x" * 7)),
    ("15 bytes", lambda client, key: client.set(key, b"x" * (FENCE_SIZE - 1))),
    ("17 bytes", lambda client, key: client.set(key, b"y" * (FENCE_SIZE + 1))),
    ("a list", lambda client, key: client.rpush(key, b"x")),
    ("a hash", lambda client, key: client.hset(key, "f", "v")),
]
"""Ways a version key can hold something that is not a fence."""


@pytest.mark.parametrize("plant", [plant for _, plant in MALFORMED], ids=[n for n, _ in MALFORMED])
def test_malformed_fence_counts_as_lost_and_heals(
    any_redis: Client, plant: Callable[[Client, str], object]
) -> None:
    store = RedisGenStore(any_redis)
    key, other, good = vkey("bad"), vkey("bad2"), vkey("good")
    kept = store.snapshot(good)
    plant(any_redis, key)
    plant(any_redis, other)
    assert store.current(key) is None
    assert store.current_many([good, key]) == [kept, None]
    fresh = store.snapshot(key)
    assert any_redis.get(key) == fresh.to_bytes()
    assert store.snapshot(key) == fresh and store.current(key) == fresh
    [same, healed] = store.snapshot_many([good, other])
    assert same == kept and any_redis.get(other) == healed.to_bytes() and healed != fresh


def test_version_keys_expire_after_a_day_by_default(any_redis: Client) -> None:
    store = RedisGenStore(any_redis)
    assert store.version_ttl == 86_400.0
    store.snapshot(vkey("a"))
    store.snapshot_many([vkey("b")])
    store.advance(vkey("c"))
    for name in "abc":
        assert 86_000_000 < any_redis.pttl(vkey(name)) <= 86_400_000


def test_no_version_ttl_keeps_version_keys(any_redis: Client) -> None:
    store = RedisGenStore(any_redis, version_ttl=None)
    store.snapshot(vkey("a"))
    store.snapshot_many([vkey("b")])
    store.advance(vkey("c"))
    for name in "abc":
        assert any_redis.pttl(vkey(name)) == -1


@pytest.mark.parametrize("ttl", [30, 12.5, timedelta(seconds=40)])
def test_version_ttl_on_create_and_advance(any_redis: Client, ttl: float | timedelta) -> None:
    store = RedisGenStore(any_redis, version_ttl=ttl)
    seconds = ttl.total_seconds() if isinstance(ttl, timedelta) else ttl
    limit = math.ceil(seconds * 1000)
    store.snapshot(vkey("a"))
    store.snapshot_many([vkey("b"), vkey("c")])
    store.advance(vkey("d"))
    for name in "abcd":
        assert 0 < any_redis.pttl(vkey(name)) <= limit


def test_version_ttl_not_applied_to_existing_fence_on_snapshot(any_redis: Client) -> None:
    key = vkey("a")
    fence = RedisGenStore(any_redis, version_ttl=None).snapshot(key)
    store = RedisGenStore(any_redis, version_ttl=30)
    assert store.snapshot(key) == fence
    assert any_redis.pttl(key) == -1


def test_advance_resets_version_ttl(any_redis: Client) -> None:
    key = vkey("a")
    RedisGenStore(any_redis, version_ttl=None).snapshot(key)
    assert any_redis.pttl(key) == -1
    RedisGenStore(any_redis, version_ttl=30).advance(key)
    assert 0 < any_redis.pttl(key) <= 30_000
    # An advance without a TTL makes the key permanent again (SET clears TTLs).
    RedisGenStore(any_redis, version_ttl=None).advance(key)
    assert any_redis.pttl(key) == -1


@pytest.mark.parametrize("bad", [0, -1, 0.0, float("nan"), float("inf"), True, "5", timedelta(0)])
def test_bad_version_ttl_is_config_error(fake_redis: fakeredis.FakeRedis, bad: object) -> None:
    with pytest.raises(ConfigError, match="version_ttl"):
        RedisGenStore(fake_redis, version_ttl=bad)  # type: ignore[arg-type]


def test_decode_responses_client_is_config_error() -> None:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    with pytest.raises(ConfigError, match="decode_responses"):
        RedisGenStore(client)
    with pytest.raises(ConfigError, match="decode_responses"):
        new_gen_store(client)


def test_decode_responses_cluster_client_is_config_error(
    redis_cluster_nodes: RedisCluster,
) -> None:
    decoding = redis.cluster.RedisCluster(
        startup_nodes=redis_cluster_nodes.startup_nodes, decode_responses=True
    )
    try:
        with pytest.raises(ConfigError, match="decode_responses"):
            RedisGenStore(decoding)
    finally:
        decoding.close()


@pytest.mark.parametrize("bad", [None, object(), "redis://127.0.0.1:1"])
def test_not_a_client_is_config_error(bad: object) -> None:
    with pytest.raises(ConfigError):
        RedisGenStore(bad)  # type: ignore[arg-type]


def _count_close(client: Client, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    original = client.close

    def close() -> None:
        calls.append(1)
        original()

    monkeypatch.setattr(client, "close", close)
    return calls


def test_close_leaves_a_shared_client_open(
    any_redis: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _count_close(any_redis, monkeypatch)
    store = new_gen_store(any_redis)
    store.close()
    store.close()
    assert calls == []
    assert any_redis.ping()


def test_close_closes_an_owned_client_once(
    any_redis: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _count_close(any_redis, monkeypatch)
    store = new_gen_store(any_redis, close_client=True)
    store.close()
    store.close()
    assert calls == [1]


def test_round_trips(any_redis: Client) -> None:
    store = RedisGenStore(any_redis)
    keys = [vkey(f"k{i}") for i in range(16)]
    warm_up(any_redis)
    store.snapshot(keys[0])
    store.snapshot_many(keys)  # loads the script everywhere
    nodes = primaries(any_redis)

    with count_round_trips() as log:
        store.snapshot(keys[0])
    assert log.trips == [["EVALSHA"]]
    with count_round_trips() as log:
        store.snapshot(vkey("fresh"))
    assert log.trips == [["EVALSHA"]]
    with count_round_trips() as log:
        store.current(keys[0])
    assert log.trips == [["MGET"]]
    with count_round_trips() as log:
        store.advance(keys[0])
    assert log.trips == [["SET"]]
    with count_round_trips() as log:
        store.current_many(keys)
    assert all(set(trip) == {"MGET"} for trip in log.trips)
    with count_round_trips() as log2:
        store.snapshot_many(keys)
    assert all(set(trip) == {"EVALSHA"} for trip in log2.trips)
    assert log2.names.count("EVALSHA") == len(keys)
    if nodes == 1:
        assert log.round_trips == 1
        assert log2.round_trips == 1
    else:
        # One batch per node that owns any of the keys, never one per key.
        assert 1 <= log.round_trips <= nodes
        assert 1 <= log2.round_trips <= nodes


def test_snapshot_reloads_a_flushed_script(any_redis: Client) -> None:
    store = RedisGenStore(any_redis)
    key = vkey("a")
    fence = store.snapshot(key)
    any_redis.script_flush()
    warm_up(any_redis)
    with count_round_trips() as log:
        assert store.snapshot(key) == fence
    assert log.names == ["EVALSHA", *["SCRIPT LOAD"] * primaries(any_redis), "EVALSHA"]
    any_redis.script_flush()
    keys = [vkey(f"k{i}") for i in range(8)]
    fences = store.snapshot_many(keys)
    assert store.current_many(keys) == fences
    assert any_redis.script_exists(SNAPSHOT.sha) == [True]


def test_snapshot_passes_key_as_keys_and_fence_as_argv(any_redis: Client) -> None:
    store = RedisGenStore(any_redis, version_ttl=5)
    store.snapshot(vkey("warm"))
    warm_up(any_redis)
    key = vkey("a")
    with count_round_trips() as log:
        fence = store.snapshot(key)
    (command,) = log.commands
    assert command == (
        b"EVALSHA",
        SNAPSHOT.sha.encode(),
        b"1",
        key.encode(),
        fence.to_bytes(),
        b"5000",
    )


def test_repr_is_exact(any_redis: Client) -> None:
    kind = "cluster" if isinstance(any_redis, redis.cluster.RedisCluster) else "redis"
    assert repr(RedisGenStore(any_redis)) == f"RedisGenStore({kind}, version_ttl=86400.0)"
    assert repr(RedisGenStore(any_redis, version_ttl=None)) == (
        f"RedisGenStore({kind}, version_ttl=None)"
    )
    assert repr(RedisGenStore(any_redis, version_ttl=timedelta(seconds=3))) == (
        f"RedisGenStore({kind}, version_ttl=3.0)"
    )


def test_config_errors_name_the_gen_store(fake_redis: fakeredis.FakeRedis) -> None:
    with pytest.raises(ConfigError, match=r"^RedisGenStore version_ttl must be"):
        RedisGenStore(fake_redis, version_ttl=-1)
    with pytest.raises(ConfigError, match=r"^RedisGenStore needs a redis\.Redis"):
        RedisGenStore(object())  # type: ignore[arg-type]


def test_closing_leaves_a_shared_client_open(any_redis: Client) -> None:
    RedisGenStore(any_redis).close()
    assert any_redis.ping()
