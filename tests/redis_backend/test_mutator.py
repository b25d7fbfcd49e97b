"""RedisKeyMutator on fakeredis, a real server and a cluster (fixture ``any_redis``)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import fakeredis
import pytest
import redis
import redis.asyncio
import redis.cluster

import cascache
import cascache.redis
import cascache.redis.aio
from cascache.errors import ConfigError
from cascache.fence import Version, new_fence
from cascache.keys import CacheKey, KeySpace
from cascache.mutator import KeyInvalidator, KeyReader, KeyWriter
from cascache.redis import RedisGenStore, RedisKeyMutator, new_key_mutator, scripts
from tests.servers import count_round_trips, primaries, warm_up

Client = redis.Redis | redis.cluster.RedisCluster

KS = KeySpace("mutator-tests")


def ck(name: str) -> CacheKey:
    return KS.single(name)


def plant(client: Client, key: CacheKey) -> Version:
    fence = new_fence()
    client.set(key.version, fence.to_bytes())
    return fence


# -- the Lua sources --------------------------------------------------------------------

SOURCES = [scripts.SNAPSHOT_SOURCE, scripts.WRITE_IF_VERSION_SOURCE, scripts.INVALIDATE_SOURCE]
LUA_WORDS = {"if", "then", "else", "elseif", "end", "return", "local", "not", "and", "or"}


@pytest.mark.parametrize("source", SOURCES)
def test_lua_assigns_only_locals(source: str) -> None:
    # One global assignment breaks Lua on a fakeredis FakeServer for good and is an
    # error on Redis 7; every name a script binds must be declared local.
    declared = set(re.findall(r"\blocal\s+(\w+)", source))
    for match in re.finditer(r"^\s*(\w+)\s*=[^=]", source, re.MULTILINE):
        assert match.group(1) in declared, f"global assignment to {match.group(1)!r}"
    for line in source.splitlines():
        assert not re.match(r"^\s*function\b", line), "global function"


@pytest.mark.parametrize("source", SOURCES)
def test_lua_touches_only_declared_keys(source: str) -> None:
    for call in re.findall(r"redis\.call\('(\w+)',\s*([^,)]+)", source):
        assert re.fullmatch(r"KEYS\[\d\]", call[1]), call


def test_scripts_run_on_one_fake_server_repeatedly() -> None:
    # All three scripts, many times, on one FakeServer: a leaked global would surface.
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    store = RedisGenStore(client, version_ttl=60)
    mutator = RedisKeyMutator(client, version_ttl=60)
    for i in range(5):
        key = ck(f"k{i}")
        fence = store.snapshot(key.version)
        assert mutator.write_if_version(key, b"f", fence, 10)
        mutator.invalidate(key)
        assert not mutator.write_if_version(key, b"f", fence, None)
    assert client.eval("return 7", 0) == 7


# -- protocol ---------------------------------------------------------------------------


def test_implements_protocols(any_redis: Client) -> None:
    mutator = new_key_mutator(any_redis)
    assert isinstance(mutator, KeyReader)
    assert isinstance(mutator, KeyWriter)
    assert isinstance(mutator, KeyInvalidator)
    assert mutator.client is any_redis


def test_cluster_checks_answer_per_client_class(any_redis: Client) -> None:
    # Answered once per class and remembered: asked twice, and for the pipeline too.
    cluster = isinstance(any_redis, redis.cluster.RedisCluster)
    for _ in range(2):
        assert scripts.is_cluster(any_redis) is cluster
        assert scripts.is_cluster_pipeline(scripts.pipeline(any_redis)) is cluster
    assert not scripts.is_async_cluster(redis.asyncio.Redis(port=1))


class _OwnRedis(redis.Redis):
    """An application's own client class: a plain client all the same."""


def test_cluster_checks_follow_subclasses() -> None:
    assert not scripts.is_cluster(_OwnRedis(port=1))
    assert scripts.is_cluster_pipeline(
        redis.cluster.ClusterPipeline.__new__(redis.cluster.ClusterPipeline)
    )


# -- read -------------------------------------------------------------------------------


def test_read_nothing(any_redis: Client) -> None:
    assert RedisKeyMutator(any_redis).read(ck("a")) == (None, None)


def test_read_frame_and_fence(any_redis: Client) -> None:
    mutator = RedisKeyMutator(any_redis)
    key = ck("a")
    fence = plant(any_redis, key)
    assert mutator.read(key) == (None, fence)
    any_redis.set(key.value, b"frame")
    assert mutator.read(key) == (b"frame", fence)
    any_redis.delete(key.version)
    assert mutator.read(key) == (b"frame", None)


def any_redis_is_cluster(client: Client) -> bool:
    return isinstance(client, redis.cluster.RedisCluster)


@pytest.mark.parametrize("bad", [b"", b"x" * 7, b"not-a-fence!!", None])
def test_read_malformed_fence_counts_as_lost(any_redis: Client, bad: bytes | None) -> None:
    mutator = RedisKeyMutator(any_redis)
    key, other = ck("a"), ck("b")
    fence = plant(any_redis, other)
    any_redis.set(key.value, b"frame")
    if bad is None:
        any_redis.rpush(key.version, b"x")  # another type: MGET reads it as absent
    else:
        any_redis.set(key.version, bad)
    assert mutator.read(key) == (b"frame", None)
    assert mutator.read_many([other, key])[1] == (b"frame", None)
    assert mutator.read_many([other, key])[0][1] == fence
    _, fences = mutator.read_batch("batch", [other, key])
    assert fences == ([fence, None] if not any_redis_is_cluster(any_redis) else None)


def test_read_many_in_order(any_redis: Client) -> None:
    mutator = RedisKeyMutator(any_redis)
    keys = [ck(f"k{i}") for i in range(15)]
    expected: list[tuple[bytes | None, Version | None]] = []
    for i, key in enumerate(keys):
        fence = plant(any_redis, key) if i % 2 == 0 else None
        frame = f"f{i}".encode() if i % 3 == 0 else None
        if frame is not None:
            any_redis.set(key.value, frame)
        expected.append((frame, fence))
    assert mutator.read_many(keys) == expected
    assert mutator.read_many(keys[::-1]) == expected[::-1]
    assert mutator.read_many([keys[0], keys[0]]) == [expected[0], expected[0]]


def test_read_many_empty_sends_nothing(any_redis: Client) -> None:
    mutator = RedisKeyMutator(any_redis)
    warm_up(any_redis)
    with count_round_trips() as log:
        assert mutator.read_many([]) == []
    assert log.round_trips == 0


# -- write_if_version -------------------------------------------------------------------


def test_write_rejects_missing_version_key(any_redis: Client) -> None:
    mutator = RedisKeyMutator(any_redis, version_ttl=30)
    key = ck("a")
    assert mutator.write_if_version(key, b"frame", new_fence(), 10) is False
    # Neither the entry nor a fence may appear: a write never creates a fence.
    assert any_redis.exists(key.value, key.version) == 0


def test_write_rejects_a_lost_fence(any_redis: Client) -> None:
    mutator = RedisKeyMutator(any_redis)
    store = RedisGenStore(any_redis)
    key = ck("a")
    fence = store.snapshot(key.version)
    any_redis.delete(key.version)  # eviction / FLUSHALL / TTL
    assert mutator.write_if_version(key, b"late", fence, None) is False
    assert any_redis.exists(key.value, key.version) == 0


def test_write_rejects_wrong_fence(any_redis: Client) -> None:
    mutator = RedisKeyMutator(any_redis)
    key = ck("a")
    current = plant(any_redis, key)
    any_redis.set(key.value, b"kept")
    assert mutator.write_if_version(key, b"stale", new_fence(), None) is False
    assert any_redis.get(key.value) == b"kept"
    assert any_redis.get(key.version) == current.to_bytes()


def test_write_rejects_against_corrupt_fence(any_redis: Client) -> None:
    mutator = RedisKeyMutator(any_redis)
    key = ck("a")
    any_redis.set(key.version, b"garbage")
    assert mutator.write_if_version(key, b"f", new_fence(), None) is False
    assert any_redis.exists(key.value) == 0


def test_write_accepts_current_fence(any_redis: Client) -> None:
    mutator = RedisKeyMutator(any_redis)
    store = RedisGenStore(any_redis)
    key = ck("a")
    fence = store.snapshot(key.version)
    assert mutator.write_if_version(key, b"fresh", fence, None) is True
    assert mutator.read(key) == (b"fresh", fence)
    # The write does not move the fence: a second fill under it also succeeds.
    assert mutator.write_if_version(key, b"again", fence, None) is True
    assert mutator.read(key) == (b"again", fence)
    assert store.current(key.version) == fence


def test_write_after_invalidate_is_rejected(any_redis: Client) -> None:
    mutator = RedisKeyMutator(any_redis)
    store = RedisGenStore(any_redis)
    key = ck("a")
    old = store.snapshot(key.version)
    mutator.invalidate(key)
    assert mutator.write_if_version(key, b"old row", old, None) is False
    assert mutator.read(key)[0] is None
    new = store.snapshot(key.version)
    assert new != old
    assert mutator.write_if_version(key, b"new row", new, None) is True


def test_write_entry_ttl(any_redis: Client) -> None:
    mutator = RedisKeyMutator(any_redis, version_ttl=None)
    key = ck("a")
    fence = plant(any_redis, key)
    assert mutator.write_if_version(key, b"f", fence, 25)
    assert 0 < any_redis.pttl(key.value) <= 25_000
    # No TTL on a rewrite clears the old one, like SET.
    assert mutator.write_if_version(key, b"g", fence, None)
    assert any_redis.pttl(key.value) == -1
    # Without a version_ttl the version key stays permanent.
    assert any_redis.pttl(key.version) == -1


def test_write_renews_version_ttl(any_redis: Client) -> None:
    mutator = RedisKeyMutator(any_redis, version_ttl=timedelta(seconds=40))
    key = ck("a")
    fence = plant(any_redis, key)
    assert any_redis.pttl(key.version) == -1
    assert mutator.write_if_version(key, b"f", fence, 5)
    assert 0 < any_redis.pttl(key.version) <= 40_000
    assert 0 < any_redis.pttl(key.value) <= 5_000


@pytest.mark.parametrize(
    ("entry_ttl", "renewed"),
    [(5, 40_000), (15, 40_000), (20, 40_000), (25, 50_000), (None, 40_000)],
)
def test_write_renews_version_ttl_to_twice_a_longer_entry_ttl(
    any_redis: Client, entry_ttl: float | None, renewed: int
) -> None:
    mutator = RedisKeyMutator(any_redis, version_ttl=40)
    key = ck("a")
    fence = plant(any_redis, key)
    assert mutator.write_if_version(key, b"f", fence, entry_ttl)
    assert renewed - 2_000 < any_redis.pttl(key.version) <= renewed


def test_rejected_write_leaves_version_ttl_alone(any_redis: Client) -> None:
    mutator = RedisKeyMutator(any_redis, version_ttl=40)
    key = ck("a")
    plant(any_redis, key)
    assert not mutator.write_if_version(key, b"f", new_fence(), 5)
    assert any_redis.pttl(key.version) == -1


def test_write_sends_both_keys_as_keys(any_redis: Client) -> None:
    mutator = RedisKeyMutator(any_redis, version_ttl=3)
    key = ck("a")
    fence = plant(any_redis, key)
    mutator.write_if_version(key, b"warm", fence, None)  # script loaded
    warm_up(any_redis)
    with count_round_trips() as log:
        mutator.write_if_version(key, b"frame", fence, 1.5)
    (command,) = log.commands
    assert command == (
        b"EVALSHA",
        scripts.WRITE_IF_VERSION.sha.encode(),
        b"2",
        key.value.encode(),
        key.version.encode(),
        fence.to_bytes(),
        b"frame",
        b"1500",
        b"3000",
    )


def test_write_over_a_version_of_another_type_is_a_mismatch(any_redis: Client) -> None:
    mutator = RedisKeyMutator(any_redis)
    key = ck("a")
    any_redis.rpush(key.version, b"x")
    assert not mutator.write_if_version(key, b"f", new_fence(), None)
    assert any_redis.get(key.value) is None
    assert any_redis.lrange(key.version, 0, -1) == [b"x"]  # only a snapshot replaces it


# -- invalidate -------------------------------------------------------------------------


def test_invalidate_new_fence_no_value(any_redis: Client) -> None:
    mutator = RedisKeyMutator(any_redis)
    key = ck("a")
    old = plant(any_redis, key)
    any_redis.set(key.value, b"frame")
    mutator.invalidate(key)
    frame, fence = mutator.read(key)
    assert frame is None
    assert fence is not None
    assert fence != old
    mutator.invalidate(key)
    assert mutator.read(key)[1] not in (None, old, fence)


def test_invalidate_unknown_key_installs_a_fence(any_redis: Client) -> None:
    mutator = RedisKeyMutator(any_redis)
    key = ck("never seen")
    mutator.invalidate(key)
    frame, fence = mutator.read(key)
    assert frame is None
    assert fence is not None
    assert RedisGenStore(any_redis).current(key.version) == fence


def test_invalidate_replaces_a_corrupt_fence(any_redis: Client) -> None:
    mutator = RedisKeyMutator(any_redis)
    key = ck("a")
    any_redis.set(key.version, b"garbage")
    mutator.invalidate(key)
    assert mutator.read(key)[1] is not None


def test_invalidate_version_ttl(any_redis: Client) -> None:
    key = ck("a")
    RedisKeyMutator(any_redis, version_ttl=50).invalidate(key)
    assert 0 < any_redis.pttl(key.version) <= 50_000
    RedisKeyMutator(any_redis, version_ttl=None).invalidate(key)
    assert any_redis.pttl(key.version) == -1
    RedisKeyMutator(any_redis).invalidate(key)
    assert 86_000_000 < any_redis.pttl(key.version) <= 86_400_000


def test_invalidate_sends_both_keys_as_keys(any_redis: Client) -> None:
    mutator = RedisKeyMutator(any_redis, version_ttl=None)
    key = ck("a")
    mutator.invalidate(key)
    warm_up(any_redis)
    with count_round_trips() as log:
        mutator.invalidate(key)
    (command,) = log.commands
    assert command[:5] == (
        b"EVALSHA",
        scripts.INVALIDATE.sha.encode(),
        b"2",
        key.value.encode(),
        key.version.encode(),
    )
    fence = mutator.read(key)[1]
    assert fence is not None
    assert command[5:] == (fence.to_bytes(), b"0")


# -- round trips ------------------------------------------------------------------------


def test_round_trips(any_redis: Client) -> None:
    mutator = RedisKeyMutator(any_redis, version_ttl=60)
    key = ck("a")
    keys = [ck(f"k{i}") for i in range(16)]
    fence = plant(any_redis, key)
    mutator.write_if_version(key, b"warm", fence, None)
    mutator.invalidate(ck("warm"))
    warm_up(any_redis)

    with count_round_trips() as log:
        mutator.read(key)
    assert log.trips == [["MGET"]]
    with count_round_trips() as log:
        assert not mutator.write_if_version(key, b"f", new_fence(), 10)
    assert log.trips == [["EVALSHA"]]
    with count_round_trips() as log:
        assert mutator.write_if_version(key, b"f", fence, 10)
    assert log.trips == [["EVALSHA"]]
    with count_round_trips() as log:
        mutator.invalidate(key)
    assert log.trips == [["EVALSHA"]]
    with count_round_trips() as log:
        mutator.read_many(keys)
    assert all(set(trip) == {"MGET"} for trip in log.trips)
    if primaries(any_redis) == 1:
        assert log.trips == [["MGET"]]
    else:
        assert 1 <= log.round_trips <= primaries(any_redis)


def test_scripts_reload_after_flush(any_redis: Client) -> None:
    mutator = RedisKeyMutator(any_redis)
    key = ck("a")
    fence = plant(any_redis, key)
    any_redis.script_flush()
    warm_up(any_redis)
    loads = ["SCRIPT LOAD"] * primaries(any_redis)
    with count_round_trips() as log:
        assert mutator.write_if_version(key, b"f", fence, None)
    assert log.names == ["EVALSHA", *loads, "EVALSHA"]
    any_redis.script_flush()
    with count_round_trips() as log:
        mutator.invalidate(key)
    assert log.names == ["EVALSHA", *loads, "EVALSHA"]
    assert mutator.read(key)[0] is None


# -- configuration ----------------------------------------------------------------------


def test_decode_responses_client_is_config_error() -> None:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    with pytest.raises(ConfigError, match="decode_responses"):
        RedisKeyMutator(client)
    with pytest.raises(ConfigError, match="decode_responses"):
        new_key_mutator(client)


@pytest.mark.parametrize("bad", [0, -2.5, float("inf"), float("nan"), False, "10"])
def test_bad_version_ttl_is_config_error(fake_redis: fakeredis.FakeRedis, bad: object) -> None:
    with pytest.raises(ConfigError, match="version_ttl"):
        RedisKeyMutator(fake_redis, version_ttl=bad)  # type: ignore[arg-type]


def test_repr_names_backend(any_redis: Client) -> None:
    text = repr(RedisKeyMutator(any_redis, version_ttl=2))
    kind = "cluster" if isinstance(any_redis, redis.cluster.RedisCluster) else "redis"
    assert kind in text
    assert "2.0" in text


def test_repr_is_exact(any_redis: Client) -> None:
    kind = "cluster" if isinstance(any_redis, redis.cluster.RedisCluster) else "redis"
    assert repr(RedisKeyMutator(any_redis)) == (
        f"RedisKeyMutator({kind}, version_ttl=86400.0, wait_replicas=0)"
    )
    assert repr(RedisKeyMutator(any_redis, version_ttl=None)) == (
        f"RedisKeyMutator({kind}, version_ttl=None, wait_replicas=0)"
    )
    assert repr(RedisKeyMutator(any_redis, version_ttl=2, wait_replicas=1)) == (
        f"RedisKeyMutator({kind}, version_ttl=2.0, wait_replicas=1)"
    )


def test_config_errors_name_the_mutator(fake_redis: fakeredis.FakeRedis) -> None:
    with pytest.raises(ConfigError, match=r"^RedisKeyMutator version_ttl must be"):
        RedisKeyMutator(fake_redis, version_ttl=-1)
    with pytest.raises(ConfigError, match=r"^RedisKeyMutator wait_timeout must be"):
        RedisKeyMutator(fake_redis, wait_timeout=-1)
    # None used to fail an assert (and under -O, later, with a TypeError).
    with pytest.raises(ConfigError, match=r"^RedisKeyMutator wait_timeout must be .* got None"):
        RedisKeyMutator(fake_redis, wait_timeout=None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"^RedisKeyMutator needs a redis\.Redis"):
        RedisKeyMutator(object())  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["close_client", "check_persistence"])
def test_the_redis_flags_must_be_bools(fake_redis: fakeredis.FakeRedis, name: str) -> None:
    # close_client="no" was truthy: closing the cache closed a client it did not own.
    settings: dict[str, Any] = {name: "no"}
    with pytest.raises(ConfigError, match=rf"Options\.{name} must be True or False, got 'no'"):
        cascache.redis.new(
            cascache.redis.Options(
                namespace="f", client=fake_redis, codec=cascache.StrCodec(), **settings
            )
        )
    async_client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    with pytest.raises(ConfigError, match=rf"Options\.{name} must be True or False, got 'no'"):
        cascache.redis.aio.cache_options(
            cascache.redis.aio.Options(
                namespace="f", client=async_client, codec=cascache.StrCodec(), **settings
            )
        )
    assert fake_redis.ping()


def test_wait_timeout_defaults_to_one_second(fake_redis: fakeredis.FakeRedis) -> None:
    assert RedisKeyMutator(fake_redis, wait_replicas=1).wait_ms == 1000


def test_get_many_without_a_batch_entry_takes_two_round_trips(any_redis: Client) -> None:
    """The fences come with the (missing) batch entry; the second trip reads values only."""
    cache = cascache.redis.new(
        cascache.redis.Options(namespace="trips", client=any_redis, codec=cascache.JsonCodec())
    )
    for key in ("a", "b"):
        version = cache.snapshot_version(key)
        cache.set_if_version(key, key.upper(), version)
    warm_up(any_redis)
    keys = [f"k{i}" for i in range(8)] + ["a", "b"]
    values = {cache.core.keys.single(key).value for key in keys}
    with count_round_trips() as log:
        assert cache.get_many(keys) == ({"a": "A", "b": "B"}, keys[:-2])
    if primaries(any_redis) == 1:
        assert log.trips == [["MGET", "MGET"], ["MGET"]]
        # The second trip reads exactly the value keys: no fence is read twice.
        assert {key.decode() for key in log.requests[-1][0][1:]} == values
    else:
        # A cluster reads the batch entry alone, then each node's values and fences.
        assert log.trips[0] == ["MGET"]
        assert all(set(trip) == {"MGET"} for trip in log.trips)
        assert log.round_trips <= 1 + primaries(any_redis)
