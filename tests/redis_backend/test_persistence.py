"""Restarts from persistence: the hazard, its mitigations, and the check that reports it.

Each test starts its own server (never 6379) in its own directory, kills it with
``SIGKILL`` and restarts it from that directory, so it loads what it persisted.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import fakeredis
import pytest
import redis

import cascache
import cascache.redis
from cascache.redis import persistence_risk
from model.servers import RedisServer
from tests.servers import find_server_binary

RDB = ["--save", "3600", "1"]
"""RDB snapshots, as a default ``redis.conf`` takes them (``SAVE`` forces one here)."""
EVERYSEC = ["--appendonly", "yes", "--appendfsync", "everysec"]
ALWAYS = ["--appendonly", "yes", "--appendfsync", "always"]
NONE: list[str] = []
"""The test servers' own default: ``save ""`` and ``appendonly no``."""
RESTARTS = pytest.mark.parametrize(
    ("extra", "stale"),
    [(RDB, True), (NONE, False), (ALWAYS, False)],
    ids=["rdb", "no-persistence", "appendfsync-always"],
)
"""Each persistence setting, and whether a restart under it brings the old entry back."""


class Risks(cascache.Hooks):
    def __init__(self) -> None:
        self.reports: list[tuple[str, str]] = []

    def persistence_risk(self, namespace: str, detail: str) -> None:
        self.reports.append((namespace, detail))


@pytest.fixture
def binary() -> str:
    found = find_server_binary()
    if found is None:
        pytest.skip("no redis-server/valkey-server binary")
    return found


def _server(binary: str, extra: Sequence[str]) -> Iterator[RedisServer]:
    with RedisServer(binary, extra) as server:
        yield server


def _redis_cache(server: RedisServer, hooks: cascache.Hooks | None = None) -> cascache.CAS[Any]:
    return cascache.redis.new(
        cascache.redis.Options(
            namespace="restart",
            client=redis.Redis.from_url(server.url),
            codec=cascache.JsonCodec(),
            hooks=hooks,
            close_client=True,
        )
    )


def _restart(server: RedisServer, cache: cascache.CAS[Any]) -> None:
    cache.core.provider.close()  # drop the pooled connections to the dead server
    server.crash()
    server.restart()


@RESTARTS
def test_a_restart_brings_old_fences_back_unless_persistence_is_safe(
    binary: str, extra: list[str], stale: bool
) -> None:
    """The hazard on the redis topology: fill, snapshot to disk, invalidate, kill -9,
    restart. Under RDB the old entry and its old fence come back together."""
    for server in _server(binary, extra):
        cache = _redis_cache(server)
        assert cache.get_or_load("k", lambda: "old") == "old"
        if extra is not NONE:
            # The snapshot a persisting server takes on its own (save 3600 1, or a BGSAVE).
            redis.Redis.from_url(server.url).save()
        cache.invalidate("k")
        assert cache.get("k") is None
        _restart(server, cache)
        assert cache.get("k") == (cascache.Hit("old") if stale else None)
        cache.close()


@RESTARTS
def test_a_restart_of_the_version_server_revives_a_nodes_local_entry(
    binary: str, extra: list[str], stale: bool
) -> None:
    """The same hazard on shared-versions: node B's entry lives in its own memory, and the
    restart makes the fence it was stamped with current again."""
    for server in _server(binary, extra):
        client = redis.Redis.from_url(server.url)
        a, b = (
            cascache.new(
                cascache.Options(
                    namespace="restart-shared",
                    provider=cascache.MemoryProvider(),
                    codec=cascache.JsonCodec(),
                    gen_store=cascache.redis.new_gen_store(client),
                )
            )
            for _ in range(2)
        )
        assert b.get_or_load("k", lambda: "old") == "old"
        if extra is not NONE:
            client.save()
        a.invalidate("k")  # b's entry is stale now (b does not read it: that would drop it)
        client.close()
        server.crash()
        server.restart()
        assert b.get("k") == (cascache.Hit("old") if stale else None)
        client.close()


@pytest.mark.parametrize(
    ("extra", "risky"),
    [
        (RDB, "takes RDB snapshots"),
        (EVERYSEC, "appendfsync 'everysec'"),
        (NONE, None),
        (ALWAYS, None),
    ],
    ids=["rdb", "everysec", "no-persistence", "appendfsync-always"],
)
def test_redis_new_reports_a_risky_persistence_setting(
    binary: str, extra: list[str], risky: str | None
) -> None:
    for server in _server(binary, extra):
        hooks = Risks()
        cache = _redis_cache(server, hooks)
        if risky is None:
            assert hooks.reports == []
            assert persistence_risk(redis.Redis.from_url(server.url)) is None
        else:
            [(namespace, detail)] = hooks.reports
            assert namespace == "restart" and risky in detail and f":{server.port}" in detail
        cache.close()


def test_a_server_that_refuses_config_get_is_reported_and_the_cache_still_works() -> None:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())  # no CONFIG command
    hooks = Risks()
    cache = cascache.redis.new(
        cascache.redis.Options(
            namespace="managed", client=client, codec=cascache.JsonCodec(), hooks=hooks
        )
    )
    [(namespace, detail)] = hooks.reports
    assert namespace == "managed" and detail.startswith("could not read the persistence settings")
    assert cache.get_or_load("k", lambda: 1) == 1 and cache.get("k") == cascache.Hit(1)


def test_the_cluster_check_reads_every_primary(cluster_client: redis.cluster.RedisCluster) -> None:
    assert persistence_risk(cluster_client) is None  # the test cluster persists nothing
