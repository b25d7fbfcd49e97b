"""``wait_replicas``: invalidates that wait for replicas (real servers: fakeredis has no WAIT)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

import cascache
import cascache.redis
from model.servers import RedisServer, ServerStartError
from tests.servers import count_round_trips, find_server_binary, warm_up


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
            for _ in range(500):
                if replica.info("replication").get("master_link_status") == "up":
                    break
                time.sleep(0.01)
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
