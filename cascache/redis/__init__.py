"""Redis support for cascache (the ``redis`` extra: ``pip install cascache[redis]``).

Three pieces, usable alone or together (DESIGN §2):

* :func:`new_gen_store` -- versions in Redis, shared by every node ("shared-versions").
* :func:`new_provider` -- values in Redis.
* :func:`new_key_mutator` -- one-round-trip ``get``, ``set_if_version`` and
  ``invalidate`` when values and versions live in the same Redis ("redis" topology).

Every piece takes a redis-py ``Redis`` or ``RedisCluster`` created with
``decode_responses=False`` (the default). Redis errors are not caught here; the cache
core turns them into typed errors. ``import cascache`` never imports this module, so the
core has no dependency on redis-py.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import timedelta
from typing import TypeVar

import cascache
from cascache.cache import CAS
from cascache.options import TTL, Settings, check_bools, ttl_seconds, wrong_options
from cascache.redis.genstore import RedisGenStore
from cascache.redis.mutator import RedisKeyMutator
from cascache.redis.persistence import check_persistence, persistence_risk
from cascache.redis.provider import RedisProvider
from cascache.redis.scripts import Client, VersionTTL, check_client, check_version_ttl

V = TypeVar("V")

__all__ = [
    "Client",
    "Options",
    "RedisGenStore",
    "RedisKeyMutator",
    "RedisProvider",
    "RedisSettings",
    "cache_options",
    "check_persistence",
    "new",
    "new_gen_store",
    "new_key_mutator",
    "new_provider",
    "persistence_risk",
]


def new_gen_store(
    client: Client,
    *,
    version_ttl: VersionTTL = "auto",
    close_client: bool = False,
) -> RedisGenStore:
    """A version store in Redis; see :class:`RedisGenStore` for ``version_ttl``."""
    return RedisGenStore(client, version_ttl=version_ttl, close_client=close_client)


def new_provider(client: Client, *, close_client: bool = False) -> RedisProvider:
    """A value store in Redis; see :class:`RedisProvider`."""
    return RedisProvider(client, close_client=close_client)


def new_key_mutator(
    client: Client,
    *,
    version_ttl: VersionTTL = "auto",
    wait_replicas: int = 0,
    wait_timeout: float | timedelta = 1.0,
) -> RedisKeyMutator:
    """Single-key atomic paths in Redis; give it the gen store's ``version_ttl``.

    ``wait_replicas``: after each invalidate, wait (``WAIT``, same round trip) until that
    many replicas acknowledged it, or raise; see ``specs/assumptions.md`` on failover.
    """
    return RedisKeyMutator(
        client, version_ttl=version_ttl, wait_replicas=wait_replicas, wait_timeout=wait_timeout
    )


@dataclass(frozen=True, kw_only=True)
class RedisSettings(Settings[V]):
    """What a cache with values and versions in Redis takes besides its client (the base
    of :class:`Options` and of :class:`cascache.redis.aio.Options`).

    Attributes:
        version_ttl: expiry of version keys, renewed by successful writes (to twice the
            entry's TTL when that is longer). Safe (an expired version only turns
            entries into misses) and it bounds memory: without it every key ever
            snapshotted or invalidated keeps a version key. The default, ``"auto"``, is
            twice the longer of ``default_ttl`` and ``batch_ttl``, and at least one day.
            ``None``: no expiry.
        close_client: the cache owns the client and closes it when it is closed.
        wait_replicas: after each invalidate, wait until this many replicas acknowledged
            it (``WAIT``, pipelined with the script: still one round trip) and make the
            invalidate fail otherwise. Guards against failover to a replica that lacks
            the invalidate (``specs/assumptions.md``). 0 (default): do not wait.
        wait_timeout: how long to wait for those acknowledgements (default 1 s).
        check_persistence: read the server's persistence settings when the cache is built
            and report a risky one to ``hooks.persistence_risk`` (default ``True``).

    The rest as in :class:`cascache.options.Settings`.
    """

    version_ttl: VersionTTL = "auto"
    close_client: bool = False
    wait_replicas: int = 0
    wait_timeout: TTL = 1.0
    check_persistence: bool = True

    def check_flags(self, owner: str) -> None:
        """Raise ``ConfigError`` unless ``close_client`` and ``check_persistence`` are
        bools (a truthy string would close a client the cache was told not to own)."""
        check_bools(owner, self, ("close_client", "check_persistence"))

    def entry_version_ttl(self) -> float | None:
        """``version_ttl`` in seconds, ``"auto"`` resolved against the entry TTLs."""
        entry_ttls = [
            ttl_seconds(f"Options.{name}", ttl)
            for name, ttl in (("default_ttl", self.default_ttl), ("batch_ttl", self.batch_ttl))
        ]
        return check_version_ttl(
            self.version_ttl,
            "Options",
            max((ttl for ttl in entry_ttls if ttl is not None), default=None),
        )

    def settings(self) -> dict[str, object]:
        """The :class:`cascache.options.Settings` fields, by name."""
        return {field.name: getattr(self, field.name) for field in fields(Settings)}


@dataclass(frozen=True, kw_only=True)
class Options(RedisSettings[V]):
    """What :func:`new` needs: the Redis client instead of a provider and a version store.

    Attributes:
        client: a ``redis.Redis`` or ``redis.cluster.RedisCluster`` with
            ``decode_responses=False``.

    The rest as in :class:`RedisSettings`.
    """

    client: Client


def new(options: Options[V]) -> CAS[V]:
    """A cache with values and versions in Redis: the recommended Redis entry point.

    ``get`` reads value and version in one ``MGET``; ``set_if_version`` and
    ``invalidate`` each run as one atomic Lua script. A key's value key and version key
    share a Redis Cluster hash tag, so this works unchanged on a cluster.

    Reads the server's persistence settings once (one round trip per primary; the only
    I/O construction does, off with ``check_persistence=False``) and reports a risky one
    (RDB snapshots, ``appendfsync everysec``) to ``hooks.persistence_risk``: see
    :mod:`cascache.redis.persistence`. It never fails on a server that refuses
    ``CONFIG GET`` or cannot be reached.
    """
    cache = cascache.new(cache_options(options))
    if options.check_persistence:
        check_persistence(options.client, cache.core.hooks, cache.core.keys.namespace)
    return cache


def cache_options(options: Options[V]) -> cascache.Options[V]:
    """The :class:`cascache.Options` that :func:`new` builds: a Redis provider, version
    store and key mutator on one client. For composing or auditing; most code wants ``new``.
    """
    if not isinstance(options, Options):
        raise wrong_options("cascache.redis.new", "cascache.redis.Options", options)
    options.check_flags("cascache.redis.new")
    client = check_client(options.client, "cascache.redis.new")
    version_ttl = options.entry_version_ttl()
    mutator = RedisKeyMutator(
        client,
        version_ttl=version_ttl,
        wait_replicas=options.wait_replicas,
        wait_timeout=options.wait_timeout,
    )
    return cascache.Options(
        provider=RedisProvider(client, close_client=options.close_client),
        gen_store=RedisGenStore(client, version_ttl=version_ttl),
        key_reader=mutator,
        key_writer=mutator,
        key_invalidator=mutator,
        **options.settings(),  # type: ignore[arg-type]
    )
