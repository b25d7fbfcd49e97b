"""Configuration: every bad option is a ``ConfigError`` at construction, with a clear message."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import fakeredis
import pytest

import cascache
import cascache.redis
from cascache import (
    BatchReadSeed,
    BatchWriteSeed,
    ConfigError,
    JsonCodec,
    LocalGenStore,
    MemoryProvider,
    Options,
)
from cascache.options import ttl_seconds
from tests.servers import count_round_trips, warm_up


class GetSetDeleteOnly:
    """A provider with no ``add`` (and no ``get_many``)."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    def set(self, key: str, value: bytes, cost: int, ttl: float | None) -> bool:
        self.data[key] = value
        return True

    def delete(self, key: str) -> None:
        self.data.pop(key, None)

    def close(self) -> None:
        pass


class GetOnly:
    def get(self, key: str) -> bytes | None:
        return None


def build(**overrides: Any) -> cascache.CAS[Any]:
    """``cascache.new`` with valid defaults replaced by ``overrides``."""
    options: dict[str, Any] = {
        "namespace": "ns",
        "provider": MemoryProvider(),
        "codec": JsonCodec(),
    }
    options.update(overrides)
    return cascache.new(Options(**options))


@pytest.fixture
def client() -> Iterator[fakeredis.FakeRedis]:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    try:
        yield client
    finally:
        client.close()


def build_redis(client: fakeredis.FakeRedis, **overrides: Any) -> cascache.CAS[Any]:
    options: dict[str, Any] = {"namespace": "ns", "client": client, "codec": JsonCodec()}
    options.update(overrides)
    return cascache.redis.new(cascache.redis.Options(**options))


def test_valid_options_build() -> None:
    cache = build(
        default_ttl=30,
        batch_ttl=timedelta(minutes=1),
        batch_read_seed="if_missing",
        batch_write_seed=BatchWriteSeed.FAST,
        read_guard=lambda key, value: True,
        compute_set_cost=lambda frame: 1,
    )
    assert cache.enabled()
    assert cache.core.default_ttl == 30.0
    assert cache.core.batch_ttl == 60.0
    assert cache.core.read_seed is BatchReadSeed.IF_MISSING
    assert cache.core.write_seed is BatchWriteSeed.FAST


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)
    assert issubclass(ConfigError, cascache.CascacheError)


@pytest.mark.parametrize("not_options", [None, {"namespace": "ns"}, "ns"])
def test_new_takes_options(not_options: Any) -> None:
    with pytest.raises(ConfigError, match=r"^cascache\.new takes a cascache\.Options, got "):
        cascache.new(not_options)


def test_new_given_the_options_class_says_to_build_one() -> None:
    with pytest.raises(ConfigError, match=r"got the class Options: write cascache\.Options\("):
        cascache.new(Options)  # type: ignore[arg-type]


def test_each_front_end_given_another_front_ends_options_names_the_call_that_takes_them(
    client: fakeredis.FakeRedis,
) -> None:
    import cascache.aio
    import cascache.redis.aio

    plain: Options[Any] = Options(namespace="ns", provider=MemoryProvider(), codec=JsonCodec())
    on_redis = cascache.redis.Options(namespace="ns", client=client, codec=JsonCodec())
    on_loop = cascache.aio.AsyncOptions(
        namespace="ns", provider=MemoryProvider(), codec=JsonCodec()
    )
    loop_redis = cascache.redis.aio.Options(
        namespace="ns",
        client=fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer()),
        codec=JsonCodec(),
    )
    cases: list[tuple[Any, Any, str]] = [
        (cascache.new, on_redis, r"got a cascache\.redis\.Options: call cascache\.redis\.new"),
        (cascache.new, on_loop, r"got a cascache\.aio\.AsyncOptions: call cascache\.aio\.new"),
        (cascache.new, loop_redis, r"call await cascache\.redis\.aio\.new\(options\)"),
        (cascache.redis.new, plain, r"got a cascache\.Options: call cascache\.new\(options\)"),
        (cascache.redis.new, loop_redis, r"call await cascache\.redis\.aio\.new\(options\)"),
        (cascache.aio.new, on_redis, r"got a cascache\.redis\.Options: call cascache\.redis\.new"),
        (
            cascache.redis.aio.cache_options,
            on_redis,
            r"got a cascache\.redis\.Options: call cascache\.redis\.new\(options\) instead",
        ),
    ]
    for build_cache, options, message in cases:
        with pytest.raises(ConfigError, match=message):
            build_cache(options)


@pytest.mark.parametrize("namespace", [None, "", 7, b"ns"])
def test_namespace_must_be_a_non_empty_str(namespace: Any) -> None:
    with pytest.raises(ConfigError, match=r"Options\.namespace must be a non-empty str"):
        build(namespace=namespace)


def test_namespace_is_required_by_the_dataclass() -> None:
    with pytest.raises(TypeError, match="namespace"):
        Options(provider=MemoryProvider(), codec=JsonCodec())  # type: ignore[call-arg]


@pytest.mark.parametrize("provider", [None, object(), GetOnly(), LocalGenStore(), "memory"])
def test_provider_is_required(provider: Any) -> None:
    with pytest.raises(ConfigError, match=r"Options\.provider is required"):
        build(provider=provider)


def test_codec_is_required() -> None:
    with pytest.raises(ConfigError, match=r"Options\.codec is required: cascache\.JsonCodec\(\)"):
        build(codec=None)


@pytest.mark.parametrize("codec", [object(), "json", 7])
def test_a_codec_that_is_not_one_says_which_to_use(codec: Any) -> None:
    with pytest.raises(
        ConfigError, match=r"Options\.codec must be a codec instance, got .*JsonCodec\(\)"
    ):
        build(codec=codec)


def test_a_value_type_given_as_the_codec_suggests_json_codec_of_it() -> None:
    class User:
        pass

    with pytest.raises(
        ConfigError,
        match=r"got the class User, which is a value type, not a codec: .*"
        r"codec=cascache\.JsonCodec\(User\)",
    ):
        build(codec=User)
    with pytest.raises(ConfigError, match=r"got the class JsonCodec: write JsonCodec\(\.\.\.\)"):
        build(codec=JsonCodec)


@pytest.mark.parametrize("field", ["provider", "gen_store"])
def test_a_redis_client_given_as_a_store_points_at_the_redis_constructors(
    client: fakeredis.FakeRedis, field: str
) -> None:
    # A redis-py client has get, set and delete, so the protocols alone would take it.
    with pytest.raises(
        ConfigError,
        match=rf"Options\.{field} is a redis-py client, not a store: .*cascache\.redis\.new\(.*"
        r"gen_store=cascache\.redis\.new_gen_store\(client\)",
    ):
        build(**{field: client})


def test_the_hooks_class_instead_of_an_instance_says_to_call_it() -> None:
    with pytest.raises(ConfigError, match=r"got the class LoggingHooks: write LoggingHooks\(\)"):
        build(hooks=cascache.LoggingHooks)


@pytest.mark.parametrize("gen_store", [object(), MemoryProvider(), "redis"])
def test_gen_store_must_be_a_gen_store(gen_store: Any) -> None:
    with pytest.raises(ConfigError, match=r"Options\.gen_store must implement snapshot"):
        build(gen_store=gen_store)


BAD_TTLS: list[Any] = [
    0,
    -1,
    -0.001,
    math.nan,
    math.inf,
    -math.inf,
    True,
    False,
    "10",
    b"10",
    [10],
    timedelta(0),
    timedelta(seconds=-5),
]


@pytest.mark.parametrize("field", ["default_ttl", "batch_ttl"])
@pytest.mark.parametrize("ttl", BAD_TTLS)
def test_bad_ttl(field: str, ttl: Any) -> None:
    with pytest.raises(ConfigError, match=rf"Options\.{field} must be"):
        build(**{field: ttl})


@pytest.mark.parametrize("ttl", [1, 0.25, timedelta(seconds=3), timedelta(microseconds=1)])
def test_good_ttl(ttl: Any) -> None:
    assert build(default_ttl=ttl).core.default_ttl == pytest.approx(ttl_seconds("x", ttl))


def test_ttl_seconds_normalises() -> None:
    assert ttl_seconds("x", None) is None
    assert ttl_seconds("x", 2) == 2.0
    assert isinstance(ttl_seconds("x", 2), float)
    assert ttl_seconds("x", timedelta(minutes=2)) == 120.0
    with pytest.raises(ConfigError, match=r"^what must be a positive duration"):
        ttl_seconds("what", -1)
    with pytest.raises(ConfigError, match=r"^what must be seconds or a timedelta"):
        ttl_seconds("what", "1")  # type: ignore[arg-type]


def test_if_missing_seeding_needs_add() -> None:
    with pytest.raises(ConfigError, match=r"if_missing.*add\(\).*GetSetDeleteOnly has none"):
        build(provider=GetSetDeleteOnly(), batch_read_seed="if_missing")
    with pytest.raises(ConfigError, match="if_missing"):
        build(provider=GetSetDeleteOnly(), batch_read_seed=BatchReadSeed.IF_MISSING)
    # The other modes work with a provider that has no add().
    assert build(provider=GetSetDeleteOnly(), batch_read_seed="all").enabled()


@pytest.mark.parametrize("field", ["key_reader", "key_writer", "key_invalidator"])
def test_mutators_need_a_gen_store(field: str, client: fakeredis.FakeRedis) -> None:
    mutator = cascache.redis.new_key_mutator(client)
    with pytest.raises(ConfigError, match=r"set Options\.gen_store"):
        build(**{field: mutator})
    assert build(**{field: mutator}, gen_store=cascache.redis.new_gen_store(client)).enabled()


@pytest.mark.parametrize("field", ["key_reader", "key_writer", "key_invalidator"])
def test_mutators_must_implement_their_protocol(field: str) -> None:
    with pytest.raises(ConfigError, match=rf"Options\.{field} does not implement"):
        build(**{field: object()}, gen_store=LocalGenStore())


@pytest.mark.parametrize("field", ["read_guard", "batch_read_guard", "compute_set_cost"])
@pytest.mark.parametrize("value", ["yes", 1, True, [len]])
def test_non_callable_functions(field: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=rf"Options\.{field} must be callable"):
        build(**{field: value})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("batch_read_seed", "sometimes"),
        ("batch_read_seed", "ALL"),
        ("batch_read_seed", None),
        ("batch_write_seed", "eager"),
        ("batch_write_seed", BatchReadSeed.ALL),
        ("batch_write_seed", 1),
    ],
)
def test_bad_enum_strings(field: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=r"^Options: .* is not a valid Batch"):
        build(**{field: value})


@pytest.mark.parametrize("value", ["off", "all", "if_missing"])
def test_read_seed_strings(value: str) -> None:
    assert build(batch_read_seed=value).core.read_seed is BatchReadSeed(value)


@pytest.mark.parametrize("value", ["strict", "fast", "off"])
def test_write_seed_strings(value: str) -> None:
    assert build(batch_write_seed=value).core.write_seed is BatchWriteSeed(value)


# -- objects of the wrong kind ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "cls"),
    [("provider", MemoryProvider), ("codec", JsonCodec), ("gen_store", LocalGenStore)],
)
def test_a_class_instead_of_an_instance_is_refused(field: str, cls: type) -> None:
    with pytest.raises(ConfigError, match=rf"Options\.{field}"):
        build(**{field: cls})


def test_hooks_must_be_hooks() -> None:
    with pytest.raises(ConfigError, match=r"Options\.hooks"):
        build(hooks=object())


@pytest.mark.parametrize("field", ["disabled", "disable_batch"])
def test_flags_must_be_bools(field: str) -> None:
    with pytest.raises(ConfigError, match=rf"Options\.{field}"):
        build(**{field: "no"})


# -- cascache.redis.new ---------------------------------------------------------------------------


def test_redis_new_refuses_decode_responses() -> None:
    decoding = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    with pytest.raises(ConfigError, match="decode_responses=False"):
        build_redis(decoding)
    with pytest.raises(ConfigError, match="decode_responses=False"):
        cascache.redis.new_gen_store(decoding)
    with pytest.raises(ConfigError, match="decode_responses=False"):
        cascache.redis.new_provider(decoding)


@pytest.mark.parametrize("client", [None, "redis://127.0.0.1", MemoryProvider(), object()])
def test_redis_new_refuses_a_non_client(client: Any) -> None:
    with pytest.raises(ConfigError, match=r"cascache\.redis\.new needs a redis\.Redis"):
        cascache.redis.new(cascache.redis.Options(namespace="ns", client=client, codec=JsonCodec()))
    with pytest.raises(ConfigError, match=r"RedisGenStore needs a redis\.Redis"):
        cascache.redis.new_gen_store(client)


def test_a_url_given_as_the_client_says_how_to_build_one() -> None:
    with pytest.raises(
        ConfigError, match=r"got str: for a URL build the client with redis\.Redis\.from_url\("
    ):
        cascache.redis.new(
            cascache.redis.Options(namespace="ns", client="redis://h:1", codec=JsonCodec())  # type: ignore[arg-type]
        )


def test_redis_new_takes_redis_options(client: fakeredis.FakeRedis) -> None:
    plain: Options[Any] = Options(namespace="ns", provider=MemoryProvider(), codec=JsonCodec())
    with pytest.raises(
        ConfigError, match=r"^cascache\.redis\.new takes a cascache\.redis\.Options"
    ):
        cascache.redis.new(plain)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"namespace": ""}, r"Options\.namespace"),
        ({"codec": None}, r"Options\.codec"),
        ({"default_ttl": 0}, r"Options\.default_ttl"),
        ({"batch_ttl": "1"}, r"Options\.batch_ttl"),
        ({"version_ttl": -1}, "version_ttl"),
        ({"version_ttl": math.nan}, "version_ttl"),
        ({"batch_read_seed": "never"}, "BatchReadSeed"),
        ({"batch_write_seed": "never"}, "BatchWriteSeed"),
        ({"read_guard": 3}, r"Options\.read_guard must be callable"),
    ],
)
def test_redis_new_validates_options(
    client: fakeredis.FakeRedis, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        build_redis(client, **overrides)


def test_construction_does_no_io_but_the_persistence_check(client: fakeredis.FakeRedis) -> None:
    warm_up(client)
    with count_round_trips() as log:
        build_redis(client, version_ttl=60, default_ttl=10, check_persistence=False)
        build(gen_store=cascache.redis.new_gen_store(client))
        with pytest.raises(ConfigError):
            build_redis(client, default_ttl=-1)
    assert log.round_trips == 0
    with count_round_trips() as log:
        build_redis(client)
    assert log.trips == [["CONFIG GET"] * 3]  # one pipeline


@pytest.mark.parametrize("ttl", [10**400, 1e300, 100 * 365 * 24 * 3600 + 1])
def test_ttl_beyond_what_stores_represent_is_refused(ttl: float) -> None:
    with pytest.raises(ConfigError, match="at most"):
        build(default_ttl=ttl)
