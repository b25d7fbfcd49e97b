"""Redis support for the asyncio API: :mod:`cascache.redis` on ``redis.asyncio`` clients.

The same three pieces as :mod:`cascache.redis`, with the same storage keys, commands and
Lua scripts, each call awaited:

* :func:`new_gen_store` -- versions in Redis, shared by every node ("shared-versions"):
  give it to :func:`cascache.aio.new` with an in-process value store.
* :func:`new_provider` -- values in Redis.
* :func:`new_key_mutator` -- the one-round-trip single-key paths.

:func:`new` builds the whole cache (values and versions in Redis), the recommended entry
point. A sync and an asyncio cache on one server and namespace interoperate: they read and
write the same keys the same way.

Every piece takes a ``redis.asyncio.Redis`` or ``redis.asyncio.cluster.RedisCluster``
created with ``decode_responses=False`` (the default). A cache closes its client in
``aclose()`` only with ``close_client=True``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

from cascache.aio import AsyncCAS, AsyncOptions
from cascache.aio import new as new_async
from cascache.options import wrong_options
from cascache.redis import RedisSettings
from cascache.redis.genstore import AsyncRedisGenStore
from cascache.redis.mutator import AsyncRedisKeyMutator
from cascache.redis.persistence import check_persistence_async, persistence_risk_async
from cascache.redis.provider import AsyncRedisProvider
from cascache.redis.scripts import AsyncClient, VersionTTL, check_async_client

V = TypeVar("V")

__all__ = [
    "AsyncClient",
    "AsyncRedisGenStore",
    "AsyncRedisKeyMutator",
    "AsyncRedisProvider",
    "Options",
    "cache_options",
    "new",
    "new_gen_store",
    "new_key_mutator",
    "new_provider",
    "persistence_risk_async",
]


def new_gen_store(
    client: AsyncClient,
    *,
    version_ttl: VersionTTL = "auto",
    close_client: bool = False,
) -> AsyncRedisGenStore:
    """A version store in Redis on an asyncio client (see
    :class:`cascache.redis.RedisGenStore` for ``version_ttl``)."""
    return AsyncRedisGenStore(client, version_ttl=version_ttl, close_client=close_client)


def new_provider(client: AsyncClient, *, close_client: bool = False) -> AsyncRedisProvider:
    """A value store in Redis on an asyncio client."""
    return AsyncRedisProvider(client, close_client=close_client)


def new_key_mutator(
    client: AsyncClient,
    *,
    version_ttl: VersionTTL = "auto",
    wait_replicas: int = 0,
    wait_timeout: float | timedelta = 1.0,
) -> AsyncRedisKeyMutator:
    """Single-key atomic paths in Redis on an asyncio client; give it the gen store's
    ``version_ttl`` (see :func:`cascache.redis.new_key_mutator`)."""
    return AsyncRedisKeyMutator(
        client, version_ttl=version_ttl, wait_replicas=wait_replicas, wait_timeout=wait_timeout
    )


@dataclass(frozen=True, kw_only=True)
class Options(RedisSettings[V]):
    """What :func:`new` needs: :class:`cascache.redis.Options` with an asyncio client.

    Attributes:
        client: a ``redis.asyncio.Redis`` or ``redis.asyncio.cluster.RedisCluster`` with
            ``decode_responses=False``.

    The rest as in :class:`cascache.redis.RedisSettings`.
    """

    client: AsyncClient


async def new(options: Options[V]) -> AsyncCAS[V]:
    """An asyncio cache with values and versions in Redis (``await`` it).

    The asyncio counterpart of :func:`cascache.redis.new`: ``get`` is one ``MGET``,
    ``set_if_version`` and ``invalidate`` one Lua script each, and construction reads the
    server's persistence settings once (off with ``check_persistence=False``), reporting
    a risky one to ``hooks.persistence_risk``.
    """
    cache = new_async(cache_options(options))
    if options.check_persistence:
        await check_persistence_async(options.client, cache.core.hooks, cache.core.keys.namespace)
    return cache


def cache_options(options: Options[V]) -> AsyncOptions[V]:
    """The :class:`cascache.aio.AsyncOptions` that :func:`new` builds: an asyncio Redis
    provider, version store and key mutator on one client."""
    if not isinstance(options, Options):
        raise wrong_options("cascache.redis.aio.new", "cascache.redis.aio.Options", options)
    options.check_flags("cascache.redis.aio.new")
    client = check_async_client(options.client, "cascache.redis.aio.new")
    version_ttl = options.entry_version_ttl()
    mutator = AsyncRedisKeyMutator(
        client,
        version_ttl=version_ttl,
        wait_replicas=options.wait_replicas,
        wait_timeout=options.wait_timeout,
    )
    return AsyncOptions(
        provider=AsyncRedisProvider(client, close_client=options.close_client),
        gen_store=AsyncRedisGenStore(client, version_ttl=version_ttl),
        key_reader=mutator,
        key_writer=mutator,
        key_invalidator=mutator,
        **options.settings(),  # type: ignore[arg-type]
    )
