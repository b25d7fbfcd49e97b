"""Redis outages: with the client the README recommends, the cache answers from the source
at once while Redis is down or frozen, serves nothing unverified, and recovers by itself.

Each test starts its own server (never 6379) and stops it afterwards. No timing is
asserted here (DESIGN §7): ``bench/outage.py`` measures how long a call takes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

import cascache
import cascache.redis
from model.servers import RedisServer
from tests.servers import find_server_binary


def fail_fast_client(url: str) -> redis.Redis:
    """The configuration the README recommends, spelt the same way."""
    return redis.Redis.from_url(
        url,
        socket_timeout=0.1,
        socket_connect_timeout=0.1,
        retry=Retry(NoBackoff(), 1),
    )


class Reports(cascache.Hooks):
    def __init__(self) -> None:
        self.read: list[tuple[str, str, BaseException]] = []
        self.cleanup: list[tuple[str, str, BaseException]] = []

    def read_error(self, op: str, key: str, error: BaseException) -> None:
        self.read.append((op, key, error))

    def cleanup_error(self, op: str, key: str, error: BaseException) -> None:
        self.cleanup.append((op, key, error))


@pytest.fixture
def server() -> Iterator[RedisServer]:
    if find_server_binary() is None:
        pytest.skip("no redis-server/valkey-server binary")
    with RedisServer() as running:
        yield running


def _cache(server: RedisServer, hooks: Reports) -> cascache.CAS[Any]:
    return cascache.redis.new(
        cascache.redis.Options(
            namespace="outage",
            client=fail_fast_client(server.url),
            codec=cascache.JsonCodec(),
            hooks=hooks,
            close_client=True,
        )
    )


@pytest.mark.parametrize("kind", ["paused", "down"])
def test_get_or_load_answers_from_the_source_during_an_outage(
    server: RedisServer, kind: str
) -> None:
    hooks = Reports()
    cache = _cache(server, hooks)
    source = {"k": "v1"}
    assert cache.get_or_load("k", lambda: source["k"]) == "v1"
    assert cache.get("k") == cascache.Hit("v1")
    if kind == "paused":
        server.pause()
    else:
        server.crash()
    try:
        source["k"] = "v2"
        with pytest.raises(cascache.InvalidateError) as failed:
            cache.invalidate("k")  # not done: the caller must retry once Redis is back
        assert isinstance(failed.value.cause, redis.ConnectionError | redis.TimeoutError)
        for _ in range(3):
            assert cache.get_or_load("k", lambda: source["k"]) == "v2"
        # Reported as what it is, a failed read the loader answered; nothing was cleaned up.
        assert [op for op, _, _ in hooks.read] == ["get_or_load"] * 3
        assert all(isinstance(error, cascache.OpError) for _, _, error in hooks.read)
        assert hooks.cleanup == []
        with pytest.raises(cascache.OpError):
            cache.get("k")
        assert cache.get_many_or_load(["a", "b"], lambda keys: dict.fromkeys(keys, 1)) == {
            "a": 1,
            "b": 1,
        }
    finally:
        if kind == "paused":
            server.resume()
        else:
            server.restart()
    # Back: the retried invalidate lands, and the next read is fresh.
    cache.invalidate("k")
    assert cache.get("k") is None
    assert cache.get_or_load("k", lambda: source["k"]) == "v2"
    assert cache.get("k") == cascache.Hit("v2")
    cache.close()
