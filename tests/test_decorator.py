"""Tests for cascache.decorator: ``cached`` on sync and async functions, every topology."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Iterator
from typing import Any

import fakeredis
import mypy.api
import pytest

import cascache
import cascache.aio
import cascache.redis
import cascache.redis.aio
from cascache import InvalidateError, JsonCodec, LocalStore, cached
from cascache.aio import AsyncCAS


class Color(enum.Enum):
    RED = "red"


@pytest.fixture(params=["local-store", "local", "shared-versions", "redis"])
def cache(request: pytest.FixtureRequest) -> Iterator[cascache.CAS[Any]]:
    if request.param == "redis":
        client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
        made = cascache.redis.new(
            cascache.redis.Options(
                namespace="dec", client=client, codec=JsonCodec(), close_client=True
            )
        )
    elif request.param == "shared-versions":
        client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
        made = cascache.new(
            cascache.Options(
                namespace="dec",
                provider=cascache.MemoryProvider(),
                codec=JsonCodec(),
                gen_store=cascache.redis.new_gen_store(client, close_client=True),
            )
        )
    else:
        provider = LocalStore() if request.param == "local-store" else cascache.MemoryProvider()
        made = cascache.new(cascache.Options(namespace="dec", provider=provider, codec=JsonCodec()))
    yield made
    made.close()


def test_a_call_reads_through_and_invalidate_takes_the_same_arguments(
    cache: cascache.CAS[Any],
) -> None:
    db = {"42": "Ada"}
    calls: list[str] = []

    @cached(cache, ttl=60)
    def user_name(user_id: str, upper: bool = False) -> str:
        calls.append(user_id)
        return db[user_id].upper() if upper else db[user_id]

    assert user_name("42") == "Ada"
    assert user_name("42") == "Ada"
    assert user_name(user_id="42") == "Ada"  # the same bound arguments, the same key
    assert calls == ["42"]
    assert user_name("42", upper=True) == "ADA"  # another key
    assert calls == ["42", "42"]
    db["42"] = "Ada Lovelace"
    user_name.invalidate("42")
    assert user_name("42") == "Ada Lovelace"
    assert user_name.__name__ == "user_name"
    assert user_name.key("42") == f"{__name__}.{user_name.__qualname__}(user_id='42', upper=False)"


def test_the_default_key_spells_plain_arguments_and_refuses_others() -> None:
    cache = cascache.new(cascache.Options(namespace="k", provider=LocalStore(), codec=JsonCodec()))

    @cached(cache)
    def f(a: int, b: float, c: bool, d: None, e: Color, *rest: str, **named: int) -> int:
        return a

    assert f.key(1, 2.5, True, None, Color.RED, "x", n=3, m=4) == (
        f"{__name__}.{f.__qualname__}(a=1, b=2.5, c=True, d=None, "
        "e=<Color.RED: 'red'>, *rest=('x'), **named=(m=4, n=3))"
    )
    # Keyword order is not part of the call.
    assert f.key(1, 2.5, True, None, Color.RED, m=4, n=3) == f.key(
        1, 2.5, True, None, Color.RED, n=3, m=4
    )
    with pytest.raises(TypeError, match=r"argument 'rest' holds a bytes"):
        f.key(1, 2.5, True, None, Color.RED, b"x")  # type: ignore[arg-type]


def test_default_keys_are_typed_and_a_normalising_key_makes_invalidate_reach() -> None:
    class Category(enum.StrEnum):
        BOOKS = "books"

    cache = cascache.new(cascache.Options(namespace="t", provider=LocalStore(), codec=JsonCodec()))
    source = {"books": "v1"}

    @cached(cache)
    def typed(category: str) -> str:
        return source[category]

    @cached(cache, key=lambda category: f"category:{str.__str__(category)}")
    def normalised(category: str) -> str:
        return source[category]

    assert typed.key(Category.BOOKS) != typed.key("books")  # documented: typed keys
    assert typed.key(42) != typed.key(42.0)  # type: ignore[arg-type]
    for function in (typed, normalised):
        assert function(Category.BOOKS) == "v1"
    source["books"] = "v2"
    typed.invalidate("books")
    normalised.invalidate("books")
    assert typed(Category.BOOKS) == "v1", "typed: a str invalidate does not reach the enum's key"
    assert normalised(Category.BOOKS) == "v2"


def test_a_custom_key_and_its_errors() -> None:
    cache = cascache.new(cascache.Options(namespace="k", provider=LocalStore(), codec=JsonCodec()))

    @cached(cache, key=lambda row: f"row:{row['id']}")
    def load(row: dict[str, str]) -> str:
        return row["id"]

    assert load({"id": "7"}) == "7"
    assert load.key({"id": "7"}) == "row:7"

    @cached(cache)
    def by_row(row: dict[str, str]) -> str:
        return row["id"]

    with pytest.raises(TypeError, match=r"argument 'row' holds a dict.*pass key="):
        by_row({"id": "7"})

    @cached(cache, key=lambda n: n)  # type: ignore[arg-type, return-value]
    def bad(n: int) -> int:
        return n

    with pytest.raises(TypeError, match="key= must return a str, got int"):
        bad(1)


def test_the_wrong_kind_of_function_or_cache_is_refused() -> None:
    sync = cascache.new(cascache.Options(namespace="k", provider=LocalStore(), codec=JsonCodec()))
    asynchronous = cascache.aio.new(
        cascache.Options(namespace="k", provider=LocalStore(), codec=JsonCodec())
    )

    async def coroutine() -> int:
        return 1

    def plain() -> int:
        return 1

    with pytest.raises(TypeError, match="is a coroutine function; cache it in an AsyncCAS"):
        cached(sync)(coroutine)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="is not a coroutine function"):
        cached(asynchronous)(plain)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="takes a CAS or an AsyncCAS, got dict"):
        cached({})  # type: ignore[call-overload]


@pytest.mark.parametrize("ttl", [-5, 0, True, "60"])
def test_a_bad_ttl_is_refused_when_decorating(ttl: object) -> None:
    cache = cascache.new(cascache.Options(namespace="t", provider=LocalStore(), codec=JsonCodec()))
    with pytest.raises(cascache.ConfigError, match=r"cascache\.cached ttl"):
        cached(cache, ttl=ttl)  # type: ignore[arg-type]


def test_an_invalidate_failure_reaches_the_caller() -> None:
    class Down(cascache.LocalGenStore):
        def advance(self, key: str) -> cascache.Version:
            raise OSError("version store down")

    cache = cascache.new(
        cascache.Options(
            namespace="k", provider=cascache.MemoryProvider(), codec=JsonCodec(), gen_store=Down()
        )
    )

    @cached(cache)
    def f(x: int) -> int:
        return x

    assert f(1) == 1
    with pytest.raises(InvalidateError):
        f.invalidate(1)


AsyncFactory = Callable[[], AsyncCAS[Any]]


def _async_local() -> AsyncCAS[Any]:
    return cascache.aio.new(
        cascache.Options(namespace="dec", provider=LocalStore(), codec=JsonCodec())
    )


def _async_redis() -> AsyncCAS[Any]:
    client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    return cascache.aio.new(
        cascache.redis.aio.cache_options(
            cascache.redis.aio.Options(
                namespace="dec", client=client, codec=JsonCodec(), close_client=True
            )
        )
    )


def _async_shared_versions() -> AsyncCAS[Any]:
    client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    return cascache.aio.new(
        cascache.aio.AsyncOptions(
            namespace="dec",
            provider=cascache.MemoryProvider(),
            codec=JsonCodec(),
            gen_store=cascache.redis.aio.new_gen_store(client, close_client=True),
        )
    )


@pytest.mark.parametrize(
    "factory",
    [_async_local, _async_shared_versions, _async_redis],
    ids=["local-store", "shared-versions", "redis"],
)
def test_an_async_function_reads_through_its_async_cache(factory: AsyncFactory) -> None:
    db = {"42": "Ada"}
    calls: list[str] = []

    async def scenario() -> None:
        cache = factory()

        @cached(cache)
        async def user_name(user_id: str) -> str:
            await asyncio.sleep(0)
            calls.append(user_id)
            return db[user_id]

        assert await user_name("42") == "Ada"
        assert await user_name("42") == "Ada"
        db["42"] = "Ada Lovelace"
        await user_name.invalidate("42")
        assert await user_name("42") == "Ada Lovelace"
        await cache.aclose()

    asyncio.run(scenario())
    assert calls == ["42", "42"]


def test_type_checkers_see_the_wrapped_signature() -> None:
    program = """
import cascache
import cascache.aio

cache = cascache.new(
    cascache.Options(namespace="t", provider=cascache.LocalStore(), codec=cascache.StrCodec())
)
acache = cascache.aio.new(
    cascache.Options(namespace="t", provider=cascache.LocalStore(), codec=cascache.StrCodec())
)

@cascache.cached(cache)
def name(user_id: int) -> str:
    return str(user_id)

@cascache.cached(acache)
async def aname(user_id: int) -> str:
    return str(user_id)

async def use() -> None:
    ok: str = await aname(1)
    await aname.invalidate(1)

ok: str = name(1)
name.invalidate(1)
"""
    wrong = """
bad: int = name(1)
name("x")
name.invalidate(1, 2)
"""
    report, _, status = mypy.api.run(["--strict", "--no-incremental", "-c", program])
    assert status == 0, report
    report, _, status = mypy.api.run(["--strict", "--no-incremental", "-c", program + wrong])
    assert status == 1, report
    assert report.count("error:") == 3, report
