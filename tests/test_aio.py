"""Tests for cascache.aio: the asyncio front end on the in-process stores."""

from __future__ import annotations

import asyncio
import random
import warnings
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import fakeredis
import pytest

import cascache
import cascache.redis
from cascache import ClosedError, ConfigError, Hit, JsonCodec, LocalStore, Options, WriteOutcome
from cascache.aio import AsyncCAS, new
from cascache.batch import Core
from cascache.effects import Effect, adrive
from model.history import History, check
from model.oracle import ROW_CODEC, Row
from model.zoo import CacheAside, DeleteWithoutAdvance


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


StoreFactory = Callable[[], Options[Any]]


def on_local_store() -> Options[Any]:
    return Options(namespace="aio", provider=LocalStore(), codec=JsonCodec())


def on_memory_provider() -> Options[Any]:
    return Options(namespace="aio", provider=cascache.MemoryProvider(), codec=JsonCodec())


@pytest.fixture(params=[on_local_store, on_memory_provider], ids=["local-store", "local"])
def cache(request: pytest.FixtureRequest) -> AsyncCAS[Any]:
    factory: StoreFactory = request.param
    return new(factory())


# --- every method ------------------------------------------------------------------------


def test_read_path_write_path_and_every_method(cache: AsyncCAS[Any]) -> None:
    db = {"a": 1, "b": 2, "c": 3}

    async def scenario() -> None:
        assert cache.enabled()
        assert await cache.get("a") is None
        version = await cache.snapshot_version("a")
        assert (await cache.set_if_version("a", db["a"], version)).outcome is WriteOutcome.STORED
        assert await cache.get("a") == Hit(1)
        db["a"] = 10
        await cache.invalidate("a")
        assert await cache.get("a") is None
        assert await cache.get_or_load("a", lambda: db["a"]) == 10
        assert await cache.get("a") == Hit(10)

        versions = await cache.snapshot_versions(["b", "c"])
        result = await cache.set_if_versions(
            [cascache.VersionedValue(k, db[k], versions[k]) for k in ("b", "c")]
        )
        assert result.outcome is WriteOutcome.STORED
        assert await cache.get_many(["a", "b", "c", "d"]) == ({"a": 10, "b": 2, "c": 3}, ["d"])
        loaded = await cache.get_many_or_load(["c", "d"], lambda keys: {k: 4 for k in keys})
        assert loaded == {"c": 3, "d": 4}

    run(scenario())


def test_coroutine_loaders_are_awaited(cache: AsyncCAS[Any]) -> None:
    calls: list[str] = []

    async def load() -> str:
        await asyncio.sleep(0)
        calls.append("one")
        return "loaded"

    async def load_many(keys: list[str]) -> dict[str, str]:
        await asyncio.sleep(0)
        calls.append("many")
        return {k: k.upper() for k in keys if k != "none"}

    async def scenario() -> None:
        assert await cache.get_or_load("k", load) == "loaded"
        assert await cache.get_or_load("k", load) == "loaded"
        assert await cache.get_many_or_load(["x", "y", "none"], load_many) == {"x": "X", "y": "Y"}
        assert await cache.get_many(["x", "y"]) == ({"x": "X", "y": "Y"}, [])

    run(scenario())
    assert calls == ["one", "many"], "the second get_or_load hit"


def test_a_loader_error_reaches_the_caller_and_stores_nothing(cache: AsyncCAS[Any]) -> None:
    async def fails() -> int:
        raise LookupError("no such row")

    async def scenario() -> None:
        with pytest.raises(LookupError, match="no such row"):
            await cache.get_or_load("k", fails)
        assert await cache.get("k") is None

    run(scenario())


def test_aclose_and_async_with(cache: AsyncCAS[Any]) -> None:
    async def scenario() -> None:
        async with cache as c:
            await c.get_or_load("k", lambda: 1)
        with pytest.raises(ClosedError, match="get"):
            await cache.get("k")
        await cache.aclose()  # idempotent

    run(scenario())


def test_the_sync_api_refuses_a_coroutine_loader_and_names_the_fix() -> None:
    sync = cascache.new(on_local_store())

    async def load() -> int:
        return 1

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the coroutine is closed, never left un-awaited
        with pytest.raises(TypeError, match=r"get_or_load\('k'\).*use cascache.aio"):
            sync.get_or_load("k", load)

        async def load_many(keys: list[str]) -> dict[str, int]:
            return {}

        with pytest.raises(TypeError, match=r"get_many_or_load.*use cascache.aio"):
            sync.get_many_or_load(["a", "b"], load_many)  # type: ignore[arg-type]
    assert sync.get("k") is None


def test_new_refuses_stores_that_block_the_event_loop() -> None:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    try:
        with pytest.raises(ConfigError, match=r"gen_store is a RedisGenStore.*block the event"):
            new(
                Options(
                    namespace="aio",
                    provider=cascache.MemoryProvider(),
                    codec=JsonCodec(),
                    gen_store=cascache.redis.new_gen_store(client),
                )
            )
        with pytest.raises(ConfigError, match="provider is a RedisProvider"):
            new(
                cascache.redis.cache_options(
                    cascache.redis.Options(namespace="aio", client=client, codec=JsonCodec())
                )
            )
    finally:
        client.close()


# --- the driver ---------------------------------------------------------------------------


def test_adrive_awaits_awaitable_results_and_passes_plain_ones() -> None:
    async def later() -> int:
        return 2

    def step() -> Any:
        first = yield Effect("values", "get", ("a",), lambda: 1)
        second = yield Effect("values", "get", ("b",), later)
        return first, second

    assert run(adrive(step())) == (1, 2)


def test_adrive_throws_effect_errors_into_the_operation() -> None:
    async def boom() -> None:
        raise OSError("down")

    def step() -> Any:
        try:
            yield Effect("values", "get", ("a",), boom)
        except OSError as exc:
            return f"handled {exc}"
        return "not reached"

    assert run(adrive(step())) == "handled down"


def test_adrive_carries_a_stop_iteration_raised_by_an_effect_as_asyncio_would() -> None:
    def raises() -> None:
        raise StopIteration("from a loader")

    def step() -> Any:
        yield Effect("source", "load", ("k",), raises)

    # It reaches the coroutine's caller as any StopIteration leaving a coroutine does
    # (PEP 479), not as the RuntimeError of the protocol's own generators.
    with pytest.raises(RuntimeError, match="coroutine raised StopIteration") as caught:
        run(adrive(step()))
    assert isinstance(caught.value.__cause__, StopIteration)
    assert caught.value.__cause__.args == ("from a loader",)


# --- cancellation is a fault ------------------------------------------------------------


def test_a_fill_cancelled_during_its_load_stores_nothing(cache: AsyncCAS[Any]) -> None:
    started = asyncio.Event()

    async def slow() -> str:
        started.set()
        await asyncio.sleep(10)
        return "never"

    async def scenario() -> None:
        task = asyncio.create_task(cache.get_or_load("k", slow))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await cache.get("k") is None
        assert await cache.get_or_load("k", lambda: "fresh") == "fresh"

    run(scenario())


def test_a_fill_whose_load_spans_an_invalidate_is_never_served(cache: AsyncCAS[Any]) -> None:
    db = {"k": "v0"}
    loading = asyncio.Event()
    release = asyncio.Event()

    async def slow() -> str:
        value = db["k"]  # the old row, read before the write below
        loading.set()
        await release.wait()
        return value

    async def scenario() -> None:
        filler = asyncio.create_task(cache.get_or_load("k", slow))
        await loading.wait()
        db["k"] = "v1"
        await cache.invalidate("k")
        release.set()
        assert await filler == "v0"  # the caller gets what it loaded...
        assert await cache.get("k") is None  # ...but it was not stored
        assert await cache.get_or_load("k", lambda: db["k"]) == "v1"

    run(scenario())


# --- many tasks, checked by the model's history checker -----------------------------------


Nodes = Callable[[], Awaitable[list[AsyncCAS[Row]]]]
"""Opens the caches (nodes) of one stress run, inside its event loop."""


def stress(open_nodes: Nodes, seed: int, tasks: int = 300) -> list[str]:
    """Readers, writers and invalidators as tasks on one loop, spread over the nodes;
    returns the FRESH violations the model's history checker finds."""
    rng = random.Random(seed)
    keys = ["a", "b", "c"]
    clock = 0
    db = {k: 0 for k in keys}
    history = History((0, k, 0) for k in keys)

    def tick() -> int:
        nonlocal clock
        clock += 1
        return clock

    async def pause() -> None:
        for _ in range(rng.randrange(3)):
            await asyncio.sleep(0)

    async def reader(cache: AsyncCAS[Row], node: int, key: str) -> None:
        op = history.invoke("get_or_load", node, [key], tick())

        async def load() -> Row:
            await pause()
            row = Row(key, db[key])
            await pause()
            return row

        row = await cache.get_or_load(key, load)
        op.returned, op.ok, op.served = tick(), True, {key: row}

    async def getter(cache: AsyncCAS[Row], node: int, key: str) -> None:
        op = history.invoke("get", node, [key], tick())
        hit = await cache.get(key)
        op.returned, op.ok = tick(), True
        if hit is not None:
            op.served = {key: hit.value}

    async def writer(cache: AsyncCAS[Row], node: int, key: str) -> None:
        await pause()
        db[key] += 1
        history.commit(tick(), key, db[key])
        await pause()
        op = history.invoke("invalidate", node, [key], tick())
        await cache.invalidate(key)
        op.returned, op.ok = tick(), True

    async def main() -> None:
        nodes = await open_nodes()
        try:
            running = []
            for _ in range(tasks):
                node = rng.randrange(len(nodes))
                key = rng.choice(keys)
                roll = rng.random()
                role = writer if roll < 0.2 else getter if roll < 0.35 else reader
                running.append(asyncio.create_task(role(nodes[node], node, key)))
                if rng.random() < 0.3:
                    await asyncio.sleep(0)
            await asyncio.gather(*running)
        finally:
            for cache in nodes:
                await cache.aclose()

    run(main())
    return [v.message for v in check(history) if v.prop == "FRESH"]


def on_one_local_store(core: Callable[[Options[Row]], Core[Row]]) -> Nodes:
    async def open_nodes() -> list[AsyncCAS[Row]]:
        return [AsyncCAS(core(Options(namespace="s", provider=LocalStore(), codec=ROW_CODEC)))]

    return open_nodes


def test_concurrent_tasks_never_serve_stale() -> None:
    for seed in range(5):
        assert stress(on_one_local_store(Core), seed) == [], f"seed {seed}"


@pytest.mark.parametrize("variant", [CacheAside, DeleteWithoutAdvance], ids=lambda v: v.__name__)
def test_the_same_harness_catches_a_broken_variant(variant: Callable[..., Core[Row]]) -> None:
    assert any(stress(on_one_local_store(variant), seed) for seed in range(20)), (
        "the harness would miss it"
    )


class AsyncStore:
    """A provider whose operations are coroutines (what an asyncio store looks like)."""

    async def get(self, key: str) -> bytes | None:
        return None

    async def set(self, key: str, value: bytes, cost: int, ttl: float | None) -> bool:
        return True

    async def delete(self, key: str) -> None:
        return None

    async def close(self) -> None:
        return None


def test_the_sync_api_refuses_an_asyncio_store_and_the_async_api_an_incomplete_one() -> None:
    options = Options(namespace="aio", provider=AsyncStore(), codec=JsonCodec())
    with pytest.raises(ConfigError, match=r"cascache.new: Options.provider is AsyncStore"):
        cascache.new(options)  # type: ignore[arg-type]
    # Without get_many, delete_many and aclose the core would fall back to single calls
    # it cannot await: refused, naming the protocol to implement.
    with pytest.raises(
        ConfigError,
        match=r"aio.new: Options.provider is AsyncStore, an asyncio store that does not "
        r"implement AsyncProvider",
    ):
        new(options)  # type: ignore[arg-type]
