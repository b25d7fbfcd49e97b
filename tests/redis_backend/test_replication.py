"""``wait_replicas``: invalidates that wait for replicas (real servers: fakeredis has no WAIT)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.connection import AbstractConnection

import cascache
import cascache.redis
import cascache.redis.aio
from cascache.aio import AsyncCAS
from model.servers import RedisCluster, RedisServer, ServerStartError
from tests.servers import count_round_trips, find_server_binary, parse_requests, warm_up


@pytest.fixture(scope="module")
def primary_with_replica() -> Iterator[tuple[redis.Redis, redis.Redis]]:
    if find_server_binary() is None:
        pytest.skip("no redis-server/valkey-server binary: replication needs a real server")
    with RedisServer() as primary:
        try:
            replica_server = RedisServer(extra=["--replicaof", "127.0.0.1", str(primary.port)])
            replica_server.start()
        except ServerStartError as exc:  # pragma: no cover - environment trouble
            pytest.fail(f"could not start a replica: {exc}")
        try:
            client = redis.Redis.from_url(primary.url)
            replica = redis.Redis.from_url(replica_server.url)
            # Wait (bounded) until the replica's link is up; WAIT needs a connected replica.
            # The first sync can take seconds on a loaded 2-core machine (the model tests
            # run beside this one), so the bound is generous.
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if replica.info("replication").get("master_link_status") == "up":
                    break
                time.sleep(0.02)
            else:
                pytest.fail("the replica never connected to the primary")
            yield client, replica
            client.close()
            replica.close()
        finally:
            replica_server.stop()


def _cache(client: redis.Redis, wait: int) -> cascache.CAS[str]:
    return cascache.redis.new(
        cascache.redis.Options(
            namespace="repl",
            client=client,
            codec=cascache.StrCodec(),
            wait_replicas=wait,
            wait_timeout=2.0,
        )
    )


def test_invalidate_waits_for_the_replica_in_one_round_trip(
    primary_with_replica: tuple[redis.Redis, redis.Redis],
) -> None:
    client, replica = primary_with_replica
    cache = _cache(client, wait=1)
    version = cache.snapshot_version("k")
    assert cache.set_if_version("k", "v", version).stored
    cache.invalidate("k")  # loads the script
    warm_up(client)
    with count_round_trips() as log:
        cache.invalidate("k")
    assert log.trips == [["EVALSHA", "WAIT"]]
    # The replica already holds the fence the primary holds: a promotion keeps it.
    name = cache.core.keys.single("k").version
    assert replica.get(name) == client.get(name)
    assert (
        cache.set_if_version("k", "late", version).outcome is cascache.WriteOutcome.VERSION_MISMATCH
    )


def test_too_few_replicas_fails_the_invalidate(
    primary_with_replica: tuple[redis.Redis, redis.Redis],
) -> None:
    client, _ = primary_with_replica
    cache = cascache.redis.new(
        cascache.redis.Options(
            namespace="repl-few",
            client=client,
            codec=cascache.StrCodec(),
            wait_replicas=2,
            wait_timeout=0.05,
        )
    )
    version = cache.snapshot_version("k")
    with pytest.raises(cascache.InvalidateError) as raised:
        cache.invalidate("k")
    assert isinstance(raised.value.advance_error, cascache.ReplicationError)
    assert "1 of 2 replicas" in str(raised.value)
    # Applied on the primary all the same (an ambiguous outcome): the old snapshot lost.
    assert (
        cache.set_if_version("k", "old", version).outcome is cascache.WriteOutcome.VERSION_MISMATCH
    )


@pytest.mark.parametrize("bad", [-1, True, 1.5, "1"])
def test_bad_wait_replicas(bad: object) -> None:
    import fakeredis

    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    with pytest.raises(cascache.ConfigError, match="wait_replicas"):
        cascache.redis.new_key_mutator(client, wait_replicas=bad)  # type: ignore[arg-type]


def test_cluster_wait_goes_to_the_keys_primary(cluster_client: redis.cluster.RedisCluster) -> None:
    """The session's cluster has no replicas, so a WAIT for one times out acknowledged by 0;
    what matters is that it is sent with the script, to the primary that owns the key."""
    cache = cascache.redis.new(
        cascache.redis.Options(
            namespace="repl-cluster",
            client=cluster_client,
            codec=cascache.StrCodec(),
            wait_replicas=1,
            wait_timeout=0.05,
        )
    )
    with pytest.raises(cascache.InvalidateError):
        cache.invalidate("k")  # loads the script on the key's primary
    version = cache.snapshot_version("k")
    name = cache.core.keys.single("k").version
    owner = cluster_client.get_node_from_key(name).port
    sent: list[tuple[int, list[tuple[bytes, ...]]]] = []
    original = AbstractConnection.send_packed_command

    def recording(self: AbstractConnection, command: object, check_health: bool = True) -> None:
        sent.append((getattr(self, "port", 0), parse_requests(command)))
        original(self, command, check_health)  # type: ignore[no-untyped-call]

    AbstractConnection.send_packed_command = recording  # type: ignore[method-assign]
    try:
        with pytest.raises(cascache.InvalidateError) as raised:
            cache.invalidate("k")
    finally:
        AbstractConnection.send_packed_command = original  # type: ignore[method-assign]
    assert isinstance(raised.value.advance_error, cascache.ReplicationError)
    assert str(raised.value.advance_error) == (
        "invalidate of 'k': 0 of 1 replicas acknowledged within 50 ms"
    )
    waits = [(port, command) for port, batch in sent for command in batch if command[0] == b"WAIT"]
    assert waits == [(owner, (b"WAIT", b"1", b"50"))]
    assert (
        cache.set_if_version("k", "old", version).outcome is cascache.WriteOutcome.VERSION_MISMATCH
    )


# --- the same on the asyncio stores ---------------------------------------------------


async def _async_cache(port: int, namespace: str, wait: int, timeout: float) -> AsyncCAS[str]:
    return await cascache.redis.aio.new(
        cascache.redis.aio.Options(
            namespace=namespace,
            client=redis.asyncio.Redis(port=port),
            codec=cascache.StrCodec(),
            wait_replicas=wait,
            wait_timeout=timeout,
            close_client=True,
        )
    )


def test_an_asyncio_invalidate_waits_for_the_replica_in_one_round_trip(
    primary_with_replica: tuple[redis.Redis, redis.Redis],
) -> None:
    client, replica = primary_with_replica
    port = client.get_connection_kwargs()["port"]

    async def scenario() -> list[list[str]]:
        cache = await _async_cache(port, "repl-aio", 1, 2.0)
        version = await cache.snapshot_version("k")
        assert (await cache.set_if_version("k", "v", version)).stored
        await cache.invalidate("k")  # loads the script
        with count_round_trips() as log:
            await cache.invalidate("k")
        name = cache.core.keys.single("k").version
        assert replica.get(name) == client.get(name)
        late = await cache.set_if_version("k", "late", version)
        assert late.outcome is cascache.WriteOutcome.VERSION_MISMATCH
        await cache.aclose()
        return log.trips

    assert asyncio.run(scenario()) == [["EVALSHA", "WAIT"]]


def test_too_few_replicas_fails_an_asyncio_invalidate(
    primary_with_replica: tuple[redis.Redis, redis.Redis],
) -> None:
    client, _ = primary_with_replica
    port = client.get_connection_kwargs()["port"]

    async def scenario() -> None:
        cache = await _async_cache(port, "repl-aio-few", 2, 0.05)
        version = await cache.snapshot_version("k")
        with pytest.raises(cascache.InvalidateError) as raised:
            await cache.invalidate("k")
        assert isinstance(raised.value.advance_error, cascache.ReplicationError)
        assert "1 of 2 replicas" in str(raised.value)
        old = await cache.set_if_version("k", "old", version)
        assert old.outcome is cascache.WriteOutcome.VERSION_MISMATCH
        await cache.aclose()

    asyncio.run(scenario())


async def _waiting_cluster_cache(
    nodes: RedisCluster, namespace: str, check_persistence: bool = True
) -> AsyncCAS[str]:
    """An asyncio cache on a new client of the session's cluster, waiting for 1 replica."""
    node = nodes.startup_nodes[0]
    return await cascache.redis.aio.new(
        cascache.redis.aio.Options(
            namespace=namespace,
            client=redis.asyncio.cluster.RedisCluster(host=node.host, port=node.port),
            codec=cascache.StrCodec(),
            wait_replicas=1,
            wait_timeout=0.05,
            close_client=True,
            check_persistence=check_persistence,
        )
    )


def test_an_asyncio_cluster_wait_goes_with_the_script_to_the_keys_primary(
    redis_cluster_nodes: RedisCluster,
) -> None:
    async def scenario() -> None:
        cache = await _waiting_cluster_cache(redis_cluster_nodes, "repl-aio-cluster")
        version = await cache.snapshot_version("k")
        # No replicas in the session's cluster: acknowledged by 0, so the invalidate fails,
        # but it ran on the key's primary (the old snapshot lost) and WAIT went there too.
        with pytest.raises(cascache.InvalidateError) as raised:
            await cache.invalidate("k")
        assert "0 of 1 replicas" in str(raised.value)
        old = await cache.set_if_version("k", "old", version)
        assert old.outcome is cascache.WriteOutcome.VERSION_MISMATCH
        await cache.aclose()

    asyncio.run(scenario())


def test_an_asyncio_cluster_invalidate_that_is_the_clients_first_command_waits(
    redis_cluster_nodes: RedisCluster,
) -> None:
    # The asyncio cluster client learns its slot map on its first command: without the
    # persistence check's reads first, the WAIT's node lookup failed on every invalidate.
    async def scenario() -> None:
        cache = await _waiting_cluster_cache(redis_cluster_nodes, "repl-aio-cold", False)
        for _ in range(2):
            with pytest.raises(cascache.InvalidateError) as raised:
                await cache.invalidate("k")
            assert isinstance(raised.value.advance_error, cascache.ReplicationError)
            assert "0 of 1 replicas" in str(raised.value)
        await cache.aclose()

    asyncio.run(scenario())


@pytest.mark.filterwarnings("ignore:Call to '__init__' function with deprecated usage")
@pytest.mark.parametrize(
    ("setting", "shown"),
    [
        ({"read_from_replicas": True}, "read_from_replicas=True"),
        (
            {"load_balancing_strategy": redis.cluster.LoadBalancingStrategy.RANDOM_REPLICA},
            "load_balancing_strategy=",
        ),
    ],
)
def test_a_cluster_client_that_reads_from_replicas_is_refused(
    redis_cluster_nodes: RedisCluster, setting: dict[str, object], shown: str
) -> None:
    # The invalidate advances the fence on the primary: a lagging replica still holds the
    # old fence and entry, and served the old value after the invalidate returned.
    node = redis_cluster_nodes.startup_nodes[0]
    client = redis.cluster.RedisCluster(host=node.host, port=node.port, **setting)  # type: ignore[arg-type]
    try:
        for build in (
            lambda: cascache.redis.new(
                cascache.redis.Options(namespace="r", client=client, codec=cascache.StrCodec())
            ),
            lambda: cascache.redis.new_provider(client),
            lambda: cascache.redis.new_gen_store(client),
            lambda: cascache.redis.new_key_mutator(client),
        ):
            with pytest.raises(cascache.ConfigError, match=f"reads from primaries.*{shown}"):
                build()
    finally:
        client.close()
    async_client = redis.asyncio.cluster.RedisCluster(host=node.host, port=node.port, **setting)  # type: ignore[arg-type]
    with pytest.raises(cascache.ConfigError, match=f"reads from primaries.*{shown}"):
        cascache.redis.aio.new_provider(async_client)
