"""Tests for cascache.redis.aio: the asyncio Redis stores on fakeredis, a real server and a
cluster, cancellation at every round trip against a real server, and many concurrent tasks
checked by the model's history checker."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any

import fakeredis
import pytest
import redis
import redis.asyncio
import redis.asyncio.cluster

import cascache
import cascache.aio
import cascache.redis
import cascache.redis.aio
from cascache import ConfigError, Hit, JsonCodec, LocalStore, VersionedValue, WriteOutcome
from cascache.aio import AsyncCAS, AsyncOptions
from cascache.batch import Core
from model.oracle import ROW_CODEC, Row
from model.servers import RedisCluster, RedisServer
from model.zoo import CacheAside, DeleteWithoutAdvance
from tests.test_aio import Nodes, stress

CLEAN = pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
"""A connection or transport left unclosed fails the test (a ResourceWarning from
``__del__`` reaches pytest as an unraisable exception)."""

AsyncClient = redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster
Connect = Callable[[], AsyncClient]
"""Opens an asyncio client; called inside the event loop that will use it."""


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    with warnings.catch_warnings():
        # An unclosed connection or transport is a failure here, not a log line.
        warnings.simplefilter("error", ResourceWarning)
        return asyncio.run(coro)


@pytest.fixture(params=["fake", "real", "cluster"])
def connect(request: pytest.FixtureRequest) -> Connect:
    """Opens asyncio clients on fakeredis, the session's server or its cluster, emptied."""
    if request.param == "fake":
        server = fakeredis.FakeServer()
        return lambda: fakeredis.FakeAsyncRedis(server=server)
    if request.param == "real":
        real: RedisServer = request.getfixturevalue("redis_server")
        redis.Redis(port=real.port).flushall()
        return lambda: redis.asyncio.Redis(port=real.port)
    nodes: RedisCluster = request.getfixturevalue("redis_cluster_nodes")
    host, port = nodes.startup_nodes[0].host, nodes.startup_nodes[0].port
    sync = redis.cluster.RedisCluster(startup_nodes=nodes.startup_nodes)
    sync.flushall(target_nodes=redis.cluster.RedisCluster.PRIMARIES)
    sync.close()
    return lambda: redis.asyncio.cluster.RedisCluster(host=host, port=port)


async def all_in_redis(client: AsyncClient, namespace: str = "aio") -> AsyncCAS[Any]:
    return await cascache.redis.aio.new(
        cascache.redis.aio.Options(
            namespace=namespace, client=client, codec=JsonCodec(), check_persistence=False
        )
    )


async def shared_versions(client: AsyncClient, namespace: str = "aio") -> AsyncCAS[Any]:
    return cascache.aio.new(
        AsyncOptions(
            namespace=namespace,
            provider=LocalStore(),
            gen_store=cascache.redis.aio.new_gen_store(client),
            codec=JsonCodec(),
        )
    )


TOPOLOGIES = pytest.mark.parametrize(
    "build", [all_in_redis, shared_versions], ids=["redis", "shared-versions"]
)
Build = Callable[[AsyncClient, str], Awaitable[AsyncCAS[Any]]]


# --- every method, every backend ---------------------------------------------------------


@TOPOLOGIES
@CLEAN
def test_read_path_write_path_and_every_method(connect: Connect, build: Build) -> None:
    db = {"a": 1, "b": 2, "c": 3}

    async def load(keys: list[str]) -> dict[str, int]:
        await asyncio.sleep(0)
        return {k: 4 for k in keys}

    async def scenario() -> None:
        client = connect()
        async with await build(client, "aio") as cache:
            assert cache.enabled()
            assert await cache.get("a") is None
            version = await cache.snapshot_version("a")
            stored = await cache.set_if_version("a", db["a"], version)
            assert stored.outcome is WriteOutcome.STORED
            assert await cache.get("a") == Hit(1)
            db["a"] = 10
            await cache.invalidate("a")
            assert await cache.get("a") is None
            stale = await cache.set_if_version("a", 1, version)
            assert stale.outcome is WriteOutcome.VERSION_MISMATCH
            assert await cache.get_or_load("a", lambda: db["a"]) == 10
            assert await cache.get("a") == Hit(10)

            versions = await cache.snapshot_versions(["b", "c"])
            result = await cache.set_if_versions(
                [VersionedValue(k, db[k], versions[k]) for k in ("b", "c")]
            )
            assert result.outcome is WriteOutcome.STORED
            assert await cache.get_many(["a", "b", "c", "d"]) == (
                {"a": 10, "b": 2, "c": 3},
                ["d"],
            )
            assert await cache.get_many_or_load(["c", "d"], load) == {"c": 3, "d": 4}
            await cache.invalidate("c")
            assert await cache.get_many(["b", "c", "d"]) == ({"b": 2, "d": 4}, ["c"])
        await client.aclose()

    run(scenario())


@CLEAN
def test_if_missing_read_seeding_works_on_an_asyncio_provider(connect: Connect) -> None:
    # AddProvider (a sync Provider) cannot describe an awaited add: the option was refused
    # on every asyncio provider, the library's own AsyncRedisProvider included.
    async def scenario() -> None:
        cache = await cascache.redis.aio.new(
            cascache.redis.aio.Options(
                namespace="seed",
                client=connect(),
                codec=JsonCodec(),
                check_persistence=False,
                close_client=True,
                batch_write_seed="off",
                batch_read_seed="if_missing",
            )
        )
        versions = await cache.snapshot_versions(["a", "b"])
        assert (await cache.set_if_version("a", "single", versions["a"])).stored
        items = [VersionedValue(k, f"batch-{k}", versions[k]) for k in ("a", "b")]
        assert (await cache.set_if_versions(items)).seeded_singles == 0
        assert await cache.get_many(["a", "b"]) == ({"a": "batch-a", "b": "batch-b"}, [])
        # b was seeded from the batch; a kept its own single entry.
        assert await cache.get("a") == Hit("single")
        assert await cache.get("b") == Hit("batch-b")
        await cache.aclose()

    run(scenario())


@CLEAN
def test_a_sync_and_an_asyncio_cache_share_keys_and_invalidates(
    redis_server: RedisServer,
) -> None:
    sync_client = redis.Redis(port=redis_server.port)
    sync = cascache.redis.new(
        cascache.redis.Options(
            namespace="both", client=sync_client, codec=JsonCodec(), check_persistence=False
        )
    )

    async def scenario() -> None:
        client = redis.asyncio.Redis(port=redis_server.port)
        cache = await all_in_redis(client, "both")
        assert sync.get_or_load("k", lambda: "v0") == "v0"
        assert await cache.get("k") == Hit("v0")
        await cache.invalidate("k")
        assert sync.get("k") is None
        assert await cache.get_or_load("k", lambda: "v1") == "v1"
        assert sync.get("k") == Hit("v1")
        sync.invalidate("k")
        assert await cache.get("k") is None
        await cache.aclose()
        await client.aclose()

    try:
        run(scenario())
    finally:
        sync.close()
        sync_client.close()


# --- construction --------------------------------------------------------------------------


def test_constructors_refuse_what_would_not_work_and_say_what_to_do() -> None:
    sync = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    decoding = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(), decode_responses=True)
    with pytest.raises(ConfigError, match=r"got a synchronous FakeRedis.*block the event loop"):
        cascache.redis.aio.new_gen_store(sync)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="decode_responses=False"):
        cascache.redis.aio.new_provider(decoding)
    with pytest.raises(
        ConfigError, match=r"takes a cascache\.redis\.aio\.Options, got a cascache\.redis\.Options"
    ):
        cascache.redis.aio.cache_options(
            cascache.redis.Options(namespace="n", client=sync, codec=JsonCodec())  # type: ignore[arg-type]
        )
    with pytest.raises(ConfigError, match="wait_replicas must be an int >= 0"):
        cascache.redis.aio.new_key_mutator(
            fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer()), wait_replicas=-1
        )
    with pytest.raises(ConfigError, match=r"gen_store is a RedisGenStore.*cascache.redis.aio"):
        cascache.aio.new(
            AsyncOptions(
                namespace="n",
                provider=LocalStore(),
                gen_store=cascache.redis.new_gen_store(sync),
                codec=JsonCodec(),
            )
        )
    # The sync API refuses the asyncio stores (it cannot await them).
    with pytest.raises(ConfigError, match="an asyncio store, which the sync API cannot await"):
        cascache.new(
            cascache.Options(
                namespace="n",
                provider=LocalStore(),
                gen_store=cascache.redis.aio.new_gen_store(decoding.__class__()),  # type: ignore[arg-type]
                codec=JsonCodec(),
            )
        )
    sync.close()


@CLEAN
def test_new_reports_a_risky_persistence_setting(redis_server: RedisServer) -> None:
    reported: list[str] = []

    class Seen(cascache.Hooks):
        def persistence_risk(self, namespace: str, risk: str) -> None:
            reported.append(risk)

    async def scenario() -> None:
        client = redis.asyncio.Redis(port=redis_server.port)
        options = cascache.redis.aio.Options(
            namespace="p", client=client, codec=JsonCodec(), hooks=Seen()
        )
        await (await cascache.redis.aio.new(options)).aclose()
        assert reported == []  # the test server persists nothing
        await client.config_set("save", "3600 1")
        try:
            await (await cascache.redis.aio.new(options)).aclose()
        finally:
            await client.config_set("save", "")
        await client.aclose()

    run(scenario())
    assert len(reported) == 1 and "takes RDB snapshots" in reported[0]


@CLEAN
def test_the_persistence_check_reads_every_primary_of_a_cluster(
    redis_cluster_nodes: RedisCluster,
) -> None:
    node = redis_cluster_nodes.startup_nodes[0]

    async def scenario() -> str | None:
        client = redis.asyncio.cluster.RedisCluster(host=node.host, port=node.port)
        try:
            return await cascache.redis.aio.persistence_risk_async(client)
        finally:
            await client.aclose()

    assert run(scenario()) is None


@CLEAN
@pytest.mark.parametrize("owned", [True, False])
def test_aclose_closes_the_client_only_when_the_cache_owns_it(
    redis_server: RedisServer, owned: bool
) -> None:
    async def scenario() -> None:
        client = redis.asyncio.Redis(port=redis_server.port)
        cache = await cascache.redis.aio.new(
            cascache.redis.aio.Options(
                namespace="close", client=client, codec=JsonCodec(), close_client=owned
            )
        )
        await cache.get_or_load("k", lambda: 1)
        await cache.aclose()
        await cache.aclose()  # idempotent
        if not owned:
            assert await client.ping()
            await client.aclose()

    run(scenario())  # ResourceWarning (an unclosed connection) would fail it


# --- cancellation at every round trip, against a real server -----------------------------


class Cancelling(redis.asyncio.Connection):
    """A connection that cancels the task using it at one chosen command (or pipeline)
    sent on the pool, the connection handshake's commands included.

    ``after=False``: the task is cancelled before the command is sent, so it is not
    applied (when the connection is idle; in the middle of a handshake, where a real
    cancellation can only land inside redis-py's own awaits, as below).
    ``after=True``: the task is cancelled as the command is sent, so the
    ``CancelledError`` lands at redis-py's next await, writing it or waiting for its
    reply: applied or not, the reply lost. Either way redis-py must drop the connection.
    """

    at: int | None = None
    after = False
    sent = 0
    handshaking = False

    async def on_connect_check_health(self, check_health: bool = True) -> None:
        self.handshaking = True
        try:
            await super().on_connect_check_health(check_health)
        finally:
            self.handshaking = False

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        cls = type(self)
        n = cls.sent
        cls.sent += 1
        if n == cls.at:
            _cancel_me()
            if not cls.after and not self.handshaking:
                await asyncio.sleep(0)  # raises here: nothing is sent or pending
        await super().send_packed_command(command, check_health)


def _cancel_me() -> None:
    task = asyncio.current_task()
    assert task is not None
    task.cancel()


Scenario = Callable[[AsyncCAS[Any], dict[str, str]], Coroutine[Any, Any, object]]


async def _fill(cache: AsyncCAS[Any], db: dict[str, str]) -> object:
    return await cache.get_or_load("k", lambda: db["k"])


async def _fill_many(cache: AsyncCAS[Any], db: dict[str, str]) -> object:
    return await cache.get_many_or_load(["k", "j"], lambda keys: {k: db[k] for k in keys})


async def _set(cache: AsyncCAS[Any], db: dict[str, str]) -> object:
    version = await cache.snapshot_version("k")
    return await cache.set_if_version("k", db["k"], version)


async def _set_many(cache: AsyncCAS[Any], db: dict[str, str]) -> object:
    versions = await cache.snapshot_versions(["k", "j"])
    return await cache.set_if_versions([VersionedValue(k, db[k], versions[k]) for k in versions])


async def _invalidate(cache: AsyncCAS[Any], db: dict[str, str]) -> object:
    await cache.invalidate("k")
    await cache.invalidate("j")
    return None


async def _reads(cache: AsyncCAS[Any], db: dict[str, str]) -> object:
    # Entries first, so that the reads below have fences to check in Redis.
    await cache.get_many_or_load(["k", "j"], lambda keys: {k: db[k] for k in keys})
    return await cache.get("k"), await cache.get_many(["k", "j"])


CANCELLED = {
    "get_or_load": _fill,
    "get_many_or_load": _fill_many,
    "set_if_version": _set,
    "set_if_versions": _set_many,
    "invalidate": _invalidate,
    "get/get_many": _reads,
}


async def _cancelled_then_checked(
    port: int, build: Build, namespace: str, operation: Scenario, at: int | None, after: bool
) -> int:
    """Run ``operation`` on old rows, cancelled at command ``at``; then write new rows and
    invalidate them (retrying, as after any failed invalidate), and check that no read
    serves an old row. Returns how many commands ``operation`` sent."""
    pool = redis.asyncio.ConnectionPool(port=port, connection_class=Cancelling)
    client = redis.asyncio.Redis(connection_pool=pool)
    cache = await build(client, namespace)
    db = {"k": "old", "j": "old"}
    await cache.get_many(["k", "j"])  # connect (and load the scripts) before counting
    Cancelling.sent, Cancelling.at, Cancelling.after = 0, at, after
    try:
        await asyncio.create_task(operation(cache, db))
    except asyncio.CancelledError:
        assert at is not None, "cancelled with no cancellation planned"
    sent, Cancelling.at = Cancelling.sent, None
    db.update(k="new", j="new")
    await cache.invalidate("k")
    await cache.invalidate("j")
    hit = await cache.get("k")
    assert hit is None or hit.value == "new", f"served {hit} after the invalidate"
    values, _ = await cache.get_many(["k", "j"])
    assert set(values.values()) <= {"new"}, f"served {values} after the invalidate"
    assert await cache.get_or_load("k", lambda: db["k"]) == "new"
    assert await cache.get_many_or_load(["k", "j"], lambda ks: {k: db[k] for k in ks}) == {
        "k": "new",
        "j": "new",
    }
    await cache.aclose()
    await client.aclose()
    return sent


@TOPOLOGIES
@pytest.mark.parametrize("name", list(CANCELLED))
# redis-py drops a connection whose command was cancelled with disconnect(nowait=True),
# which closes the socket without awaiting the close; Python 3.11's StreamWriter warns
# when it is collected. That is redis-py's cancellation handling, not a leak of ours.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_cancellation_at_any_command_never_leaves_a_stale_read(
    redis_server: RedisServer, build: Build, name: str
) -> None:
    operation = CANCELLED[name]

    async def scenario() -> list[tuple[int, bool]]:
        sent = await _cancelled_then_checked(redis_server.port, build, "c0", operation, None, False)
        assert sent > 0
        cases = [(at, after) for at in range(sent) for after in (False, True)]
        for i, (at, after) in enumerate(cases):
            await _cancelled_then_checked(
                redis_server.port, build, f"c{i + 1}", operation, at, after
            )
        return cases

    assert len(run(scenario())) >= 2


# --- many tasks against a real server, checked by the history checker ---------------------

STRESS_TASKS = 400
STRESS_POOL = STRESS_TASKS
"""Connections each stress client may open. Every task may be in the middle of a command
at once, and redis.asyncio's pool raises ``MaxConnectionsError`` past its default of 100
instead of waiting; on a loaded machine the tasks got that far (CI, 30 November 2026)."""


def on_real_redis(
    port: int, core: Callable[[cascache.Options[Row]], Core[Row]], nodes: int
) -> Nodes:
    """``nodes`` caches with values and versions in the real server (one asyncio client
    each), built from ``core`` (the production core or a bug-zoo variant)."""

    async def open_nodes() -> list[AsyncCAS[Row]]:
        caches = []
        for _ in range(nodes):
            options = cascache.redis.aio.cache_options(
                cascache.redis.aio.Options(
                    namespace="stress",
                    client=redis.asyncio.Redis(port=port, max_connections=STRESS_POOL),
                    codec=ROW_CODEC,
                    close_client=True,
                )
            )
            caches.append(AsyncCAS(core(cascache.aio.core_options(options))))
        return caches

    return open_nodes


def on_shared_versions(port: int, nodes: int) -> Nodes:
    """``nodes`` caches, each with its own in-process values, versions in the server."""

    async def open_nodes() -> list[AsyncCAS[Row]]:
        return [
            cascache.aio.new(
                AsyncOptions(
                    namespace="stress",
                    provider=LocalStore(),
                    gen_store=cascache.redis.aio.new_gen_store(
                        redis.asyncio.Redis(port=port, max_connections=STRESS_POOL),
                        close_client=True,
                    ),
                    codec=ROW_CODEC,
                )
            )
            for _ in range(nodes)
        ]

    return open_nodes


def _empty(port: int) -> None:
    client = redis.Redis(port=port)
    client.flushall()
    client.close()


@pytest.mark.parametrize("topology", ["redis", "shared-versions"])
@CLEAN
def test_many_tasks_on_a_real_server_never_serve_stale(
    redis_server: RedisServer, topology: str
) -> None:
    for seed in range(3):
        _empty(redis_server.port)
        nodes = (
            on_real_redis(redis_server.port, Core, 2)
            if topology == "redis"
            else on_shared_versions(redis_server.port, 2)
        )
        assert stress(nodes, seed, tasks=STRESS_TASKS) == [], f"seed {seed}"


@pytest.mark.parametrize("variant", [CacheAside, DeleteWithoutAdvance], ids=lambda v: v.__name__)
def test_the_same_harness_catches_a_broken_variant_on_a_real_server(
    redis_server: RedisServer, variant: Callable[[cascache.Options[Row]], Core[Row]]
) -> None:
    def caught(seed: int) -> bool:
        _empty(redis_server.port)
        return bool(stress(on_real_redis(redis_server.port, variant, 2), seed, tasks=STRESS_TASKS))

    assert any(caught(seed) for seed in range(20)), "the harness would miss it"
