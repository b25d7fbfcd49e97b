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

from datetime import timedelta

from cascache.redis.genstore import RedisGenStore
from cascache.redis.mutator import RedisKeyMutator
from cascache.redis.provider import RedisProvider
from cascache.redis.scripts import Client

__all__ = [
    "Client",
    "RedisGenStore",
    "RedisKeyMutator",
    "RedisProvider",
    "new_gen_store",
    "new_key_mutator",
    "new_provider",
]


def new_gen_store(
    client: Client,
    *,
    version_ttl: float | timedelta | None = None,
    close_client: bool = False,
) -> RedisGenStore:
    """A version store in Redis; see :class:`RedisGenStore` for ``version_ttl``."""
    return RedisGenStore(client, version_ttl=version_ttl, close_client=close_client)


def new_provider(client: Client, *, close_client: bool = False) -> RedisProvider:
    """A value store in Redis; see :class:`RedisProvider`."""
    return RedisProvider(client, close_client=close_client)


def new_key_mutator(
    client: Client, *, version_ttl: float | timedelta | None = None
) -> RedisKeyMutator:
    """Single-key atomic paths in Redis; give it the gen store's ``version_ttl``."""
    return RedisKeyMutator(client, version_ttl=version_ttl)


# ---------------------------------------------------------------------------------------
# new(...): reserved for the lead. It builds a whole cache on one Redis (values, versions
# and the single-key scripts from the same client) on top of ``cascache.new``, which is
# not ready yet. Add it here and to ``__all__``.
# ---------------------------------------------------------------------------------------
