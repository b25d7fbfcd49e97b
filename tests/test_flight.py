"""Tests for coalescing (cascache.flight and get_or_load's joining rule), with threads and
with tasks: one load for a herd of cold requests, and never a stale value handed on."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import fakeredis
import pytest

import cascache
import cascache.aio
import cascache.redis.aio
from cascache import JsonCodec, LocalStore, Options
from cascache.aio import AsyncCAS
from cascache.batch import Core
from model.zoo import JoinAny

CoreFactory = Callable[[Options[Any]], Core[Any]]


def _sync(core: CoreFactory = Core, **extra: Any) -> cascache.CAS[Any]:
    return cascache.CAS(
        core(Options(namespace="f", provider=LocalStore(), codec=JsonCodec(), **extra))
    )


# --- threads ---------------------------------------------------------------------------


@pytest.mark.parametrize("herd", [10, 50])
def test_a_herd_of_cold_requests_makes_one_load(herd: int) -> None:
    cache = _sync()
    loads = 0
    release = threading.Event()
    start = threading.Barrier(herd)
    results: list[object] = []

    def loader() -> str:
        nonlocal loads
        loads += 1
        release.wait(5)
        return "row"

    def request() -> None:
        start.wait()
        results.append(cache.get_or_load("k", loader))

    threads = [threading.Thread(target=request) for _ in range(herd)]
    for thread in threads:
        thread.start()
    # Let every request reach the flight before the load returns.
    deadline = time.monotonic() + 5
    while len(cache.core.flights or ()) == 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    time.sleep(0.05)
    release.set()
    for thread in threads:
        thread.join(10)
    assert results == ["row"] * herd
    assert loads == 1


def test_without_coalescing_every_cold_request_loads() -> None:
    cache = _sync(coalesce=False)
    assert cache.core.flights is None
    loads = 0
    start = threading.Barrier(8)

    def loader() -> str:
        nonlocal loads
        loads += 1
        time.sleep(0.05)
        return "row"

    def request() -> None:
        start.wait()
        cache.get_or_load("k", loader)

    threads = [threading.Thread(target=request) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert loads == 8


def _stale_race_with_threads(core: CoreFactory) -> object:
    """The issue's scenario: a slow load of v0 is in the air; the source is written and
    the invalidate returns; a request that starts after that meets the flight. Returns
    what that request got."""
    cache = _sync(core)
    db = {"k": "v0"}
    loading = threading.Event()
    release = threading.Event()

    def slow() -> str:
        value = db["k"]  # read before the write below
        loading.set()
        release.wait(5)
        return value

    leader = threading.Thread(target=lambda: cache.get_or_load("k", slow))
    leader.start()
    loading.wait(5)
    db["k"] = "v1"
    cache.invalidate("k")
    got: list[object] = []
    follower = threading.Thread(target=lambda: got.append(cache.get_or_load("k", lambda: db["k"])))
    follower.start()
    deadline = time.monotonic() + 5
    while not cache.core.flights or not cache.core.flights.in_air("k"):
        assert time.monotonic() < deadline
        time.sleep(0.001)
    time.sleep(0.05)  # the follower is waiting on the flight now
    release.set()
    leader.join(5)
    follower.join(5)
    return got[0]


def test_a_request_after_an_invalidate_is_never_handed_an_older_flight() -> None:
    assert _stale_race_with_threads(Core) == "v1"


def test_joining_without_proof_hands_out_the_stale_value() -> None:
    # The same scenario with the naive rule (bug zoo #13): the test above can fail.
    assert _stale_race_with_threads(JoinAny) == "v0"


def test_a_loader_that_calls_back_in_for_its_key_loads_alone() -> None:
    cache = _sync()

    def outer() -> str:
        return "outer+" + cache.get_or_load("k", lambda: "inner")

    assert cache.get_or_load("k", outer) == "outer+inner"


def test_a_failed_leader_leaves_its_followers_to_load() -> None:
    cache = _sync()
    loading = threading.Event()
    release = threading.Event()
    errors: list[BaseException] = []

    def failing() -> str:
        loading.set()
        release.wait(5)
        raise LookupError("source down")

    def lead() -> None:
        try:
            cache.get_or_load("k", failing)
        except LookupError as exc:
            errors.append(exc)

    leader = threading.Thread(target=lead)
    leader.start()
    loading.wait(5)
    got: list[object] = []
    follower = threading.Thread(target=lambda: got.append(cache.get_or_load("k", lambda: "ok")))
    follower.start()
    time.sleep(0.05)
    release.set()
    leader.join(5)
    follower.join(5)
    assert len(errors) == 1 and got == ["ok"]
    assert len(cache.core.flights or ()) == 0


# --- tasks ------------------------------------------------------------------------------


def _local_async() -> AsyncCAS[Any]:
    return cascache.aio.new(Options(namespace="f", provider=LocalStore(), codec=JsonCodec()))


def _redis_async() -> AsyncCAS[Any]:
    client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    return cascache.aio.new(
        cascache.redis.aio.cache_options(
            cascache.redis.aio.Options(
                namespace="f", client=client, codec=JsonCodec(), close_client=True
            )
        )
    )


@pytest.mark.parametrize("make", [_local_async, _redis_async], ids=["local-store", "redis"])
@pytest.mark.parametrize("herd", [10, 100])
def test_a_herd_of_cold_tasks_makes_one_load(make: Callable[[], AsyncCAS[Any]], herd: int) -> None:
    loads = 0

    async def loader() -> str:
        nonlocal loads
        loads += 1
        await asyncio.sleep(0.01)
        return "row"

    async def scenario() -> list[str]:
        cache = make()
        try:
            return await asyncio.gather(*(cache.get_or_load("k", loader) for _ in range(herd)))
        finally:
            await cache.aclose()

    assert asyncio.run(scenario()) == ["row"] * herd
    assert loads == 1


@pytest.mark.parametrize(("core", "expected"), [(Core, "v1"), (JoinAny, "v0")])
def test_a_task_after_an_invalidate_is_never_handed_an_older_flight(
    core: CoreFactory, expected: str
) -> None:
    db = {"k": "v0"}

    async def scenario() -> object:
        cache = AsyncCAS(core(Options(namespace="f", provider=LocalStore(), codec=JsonCodec())))
        loading, release = asyncio.Event(), asyncio.Event()

        async def slow() -> str:
            value = db["k"]
            loading.set()
            await release.wait()
            return value

        leader = asyncio.create_task(cache.get_or_load("k", slow))
        await loading.wait()
        db["k"] = "v1"
        await cache.invalidate("k")
        follower = asyncio.create_task(cache.get_or_load("k", lambda: db["k"]))
        for _ in range(5):
            await asyncio.sleep(0)  # the follower reaches the flight and waits
        release.set()
        await leader
        return await follower

    assert asyncio.run(scenario()) == expected


def test_a_cancelled_leader_task_leaves_its_followers_to_load() -> None:
    async def scenario() -> object:
        cache = _local_async()
        loading = asyncio.Event()

        async def forever() -> str:
            loading.set()
            await asyncio.sleep(60)
            return "never"

        leader = asyncio.create_task(cache.get_or_load("k", forever))
        await loading.wait()
        follower = asyncio.create_task(cache.get_or_load("k", lambda: "mine"))
        for _ in range(5):
            await asyncio.sleep(0)
        leader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leader
        return await follower

    assert asyncio.run(scenario()) == "mine"


def test_an_async_loader_that_calls_back_in_for_its_key_loads_alone() -> None:
    async def scenario() -> str:
        cache = _local_async()

        async def outer() -> str:
            return "outer+" + await cache.get_or_load("k", lambda: "inner")

        return await cache.get_or_load("k", outer)

    assert asyncio.run(scenario()) == "outer+inner"
