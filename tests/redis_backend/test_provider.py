"""RedisProvider on fakeredis, a real server and a cluster (fixture ``any_redis``)."""

from __future__ import annotations

import fakeredis
import pytest
import redis
import redis.cluster

import cascache
import cascache.redis
from cascache.errors import ConfigError
from cascache.keys import KeySpace
from cascache.provider import AddProvider, ManyProvider, Provider
from cascache.redis import RedisProvider, new_provider
from cascache.redis.scripts import px_millis
from tests.servers import count_round_trips, primaries, warm_up

Client = redis.Redis | redis.cluster.RedisCluster

KS = KeySpace("provider-tests")
ALL_BYTES = bytes(range(256))


def key(name: str) -> str:
    return KS.single(name).value


@pytest.mark.parametrize(
    ("seconds", "millis"),
    [
        (1, 1000),
        (1.5, 1500),
        (1.1, 1100),  # 1.1 * 1000 is 1100.0000000000002 in floats
        (0.3, 300),
        (2.0001, 2001),
        (0.0015, 2),
        (0.001, 1),
        (0.0001, 1),
        (1e-9, 1),
        (0, 1),
        (-5, 1),
        (86_400 * 365, 31_536_000_000),
    ],
)
def test_px_millis_rounds_up_to_at_least_one(seconds: float, millis: int) -> None:
    assert px_millis(seconds) == millis


def test_implements_protocols(any_redis: Client) -> None:
    provider = new_provider(any_redis)
    assert isinstance(provider, Provider)
    assert isinstance(provider, ManyProvider)
    assert isinstance(provider, AddProvider)
    assert provider.client is any_redis


def test_get_missing_is_none(any_redis: Client) -> None:
    assert RedisProvider(any_redis).get(key("nothing")) is None


def test_set_get_binary_roundtrip(any_redis: Client) -> None:
    provider = RedisProvider(any_redis)
    assert provider.set(key("a"), ALL_BYTES, 256, None) is True
    assert provider.get(key("a")) == ALL_BYTES
    assert provider.set(key("a"), b"", 0, None) is True
    assert provider.get(key("a")) == b""
    assert any_redis.pttl(key("a")) == -1


def test_set_ttl_becomes_px(any_redis: Client) -> None:
    provider = RedisProvider(any_redis)
    provider.set(key("a"), b"v", 1, 30)
    assert 0 < any_redis.pttl(key("a")) <= 30_000
    provider.set(key("b"), b"v", 1, 12.0005)
    assert 0 < any_redis.pttl(key("b")) <= 12_001


def test_set_without_ttl_clears_an_old_ttl(any_redis: Client) -> None:
    provider = RedisProvider(any_redis)
    provider.set(key("a"), b"v1", 1, 30)
    provider.set(key("a"), b"v2", 1, None)
    assert any_redis.pttl(key("a")) == -1
    assert provider.get(key("a")) == b"v2"


@pytest.mark.parametrize(("ttl", "px"), [(0.0001, b"1"), (1.1, b"1100"), (7, b"7000")])
def test_set_sends_whole_milliseconds(any_redis: Client, ttl: float, px: bytes) -> None:
    provider = RedisProvider(any_redis)
    warm_up(any_redis)
    with count_round_trips() as log:
        provider.set(key("a"), b"v", 1, ttl)
        provider.add(key("b"), b"v", 1, ttl)
    set_cmd, add_cmd = log.commands
    assert set_cmd == (b"SET", key("a").encode(), b"v", b"PX", px)
    assert add_cmd[:3] == (b"SET", key("b").encode(), b"v")
    assert sorted(add_cmd[3:]) == sorted([b"NX", b"PX", px])
    assert add_cmd[add_cmd.index(b"PX") + 1] == px


def test_add_only_when_absent(any_redis: Client) -> None:
    provider = RedisProvider(any_redis)
    assert provider.add(key("a"), b"first", 5, None) is True
    assert provider.add(key("a"), b"second", 6, None) is False
    assert provider.get(key("a")) == b"first"
    assert any_redis.pttl(key("a")) == -1


def test_add_with_ttl(any_redis: Client) -> None:
    provider = RedisProvider(any_redis)
    assert provider.add(key("a"), b"v", 1, 20) is True
    assert 0 < any_redis.pttl(key("a")) <= 20_000
    provider.delete(key("a"))
    assert provider.add(key("a"), b"w", 1, None) is True
    assert provider.get(key("a")) == b"w"


def test_delete(any_redis: Client) -> None:
    provider = RedisProvider(any_redis)
    provider.set(key("a"), b"v", 1, None)
    provider.delete(key("a"))
    assert provider.get(key("a")) is None
    provider.delete(key("a"))  # absent: no error
    provider.delete(key("never"))


def test_get_many_in_order(any_redis: Client) -> None:
    provider = RedisProvider(any_redis)
    keys = [key(f"k{i}") for i in range(20)]
    for i in range(0, 20, 3):
        provider.set(keys[i], f"v{i}".encode(), 2, None)
    expected = [f"v{i}".encode() if i % 3 == 0 else None for i in range(20)]
    assert provider.get_many(keys) == expected
    assert provider.get_many(list(reversed(keys))) == list(reversed(expected))
    assert provider.get_many([keys[0], keys[0]]) == [b"v0", b"v0"]


def test_batch_keys(any_redis: Client) -> None:
    provider = RedisProvider(any_redis)
    batch = KS.batch(["a", "b", "c"])
    provider.set(batch, b"blob", 4, 10)
    assert provider.get(batch) == b"blob"
    assert provider.get_many([batch, key("a")]) == [b"blob", None]


def test_round_trips(any_redis: Client) -> None:
    provider = RedisProvider(any_redis)
    keys = [key(f"k{i}") for i in range(16)]
    warm_up(any_redis)
    with count_round_trips() as log:
        provider.get(keys[0])
    assert log.trips == [["MGET"]]
    with count_round_trips() as log:
        provider.set(keys[0], b"v", 1, 1)
    assert log.trips == [["SET"]]
    with count_round_trips() as log:
        provider.add(keys[1], b"v", 1, None)
    assert log.trips == [["SET"]]
    with count_round_trips() as log:
        provider.delete(keys[0])
    assert log.trips == [["DEL"]]
    with count_round_trips() as log:
        assert provider.get_many([]) == []
    assert log.round_trips == 0
    with count_round_trips() as log:
        provider.get_many(keys)
    assert all(set(trip) == {"MGET"} for trip in log.trips)
    if primaries(any_redis) == 1:
        assert log.trips == [["MGET"]]
    else:
        assert 1 <= log.round_trips <= primaries(any_redis)


def test_decode_responses_client_is_config_error() -> None:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    with pytest.raises(ConfigError, match="decode_responses"):
        RedisProvider(client)


def test_not_a_client_is_config_error() -> None:
    with pytest.raises(ConfigError, match="RedisProvider"):
        RedisProvider({})  # type: ignore[arg-type]


def _count_close(client: Client, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    original = client.close

    def close() -> None:
        calls.append(1)
        original()

    monkeypatch.setattr(client, "close", close)
    return calls


def test_close_ownership(any_redis: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_close(any_redis, monkeypatch)
    shared = new_provider(any_redis)
    shared.close()
    shared.close()
    assert calls == []
    assert any_redis.ping()
    owner = new_provider(any_redis, close_client=True)
    owner.close()
    owner.close()
    assert calls == [1]


def test_a_key_of_another_type_reads_as_absent_and_is_replaced(any_redis: Client) -> None:
    provider = RedisProvider(any_redis)
    any_redis.rpush(key("list"), b"x")
    assert provider.get(key("list")) is None
    assert provider.get_many([key("list")]) == [None]
    assert not provider.add(key("list"), b"frame", 5, None)  # SET NX: the key exists
    assert provider.set(key("list"), b"frame", 5, None)
    assert provider.get(key("list")) == b"frame"


def test_an_asyncio_client_is_refused_with_what_to_use_instead() -> None:
    client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    with pytest.raises(
        ConfigError, match=r"needs a synchronous .* got an asyncio .*cascache\.redis\.aio"
    ):
        cascache.redis.new(
            cascache.redis.Options(
                namespace="n",
                client=client,  # type: ignore[arg-type]
                codec=cascache.JsonCodec(),
            )
        )
