"""A value store ("provider") in Redis.

The provider stores opaque frames and decides nothing about freshness: every frame carries
the fence it was written under and the cache checks it on every read. So Redis may evict
or expire any entry at any time (any ``maxmemory-policy`` is fine) without risking a stale
read.
"""

from __future__ import annotations

from collections.abc import Sequence

from cascache.redis.scripts import (
    AsyncClient,
    AsyncClientUser,
    Client,
    ClientUser,
    as_bytes,
    mget,
    mget_async,
    pipeline,
    pipeline_async,
    px_millis,
)


class RedisProvider(ClientUser):
    """``Provider``, ``ManyProvider`` and ``AddProvider`` over a redis-py client.

    Entry TTLs become ``PX`` milliseconds, rounded up and at least 1, so an entry never
    outlives its TTL by less than it asked for and never gets "no expiry" by rounding.
    ``cost`` is ignored: Redis bounds memory with ``maxmemory``, not per-entry costs.

    Args:
        client: a ``redis.Redis`` or ``redis.cluster.RedisCluster`` created with
            ``decode_responses=False`` (the default).
        close_client: close ``client`` when this provider is closed. Leave it ``False``
            when the client is shared.
    """

    def __init__(self, client: Client, *, close_client: bool = False) -> None:
        super().__init__(client, "RedisProvider", close_client=close_client)

    def get(self, key: str) -> bytes | None:
        """The frame under ``key`` or ``None`` (one MGET, which reads a key of another type
        as absent where GET would fail; the next write replaces it)."""
        return as_bytes(mget(self._client, [key])[0], key)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The frames under ``keys``, in order: one MGET (``mget_nonatomic`` on a cluster)."""
        replies = mget(self._client, keys)
        return [as_bytes(reply, key) for reply, key in zip(replies, keys, strict=True)]

    def set(self, key: str, value: bytes, cost: int, ttl: float | None) -> bool:
        """Store ``value`` (one SET); ``True`` when Redis acknowledged it."""
        return bool(self._client.set(key, value, px=entry_px(ttl)))

    def add(self, key: str, value: bytes, cost: int, ttl: float | None) -> bool:
        """Store ``value`` only if ``key`` is absent (one SET NX); ``True`` if stored."""
        return bool(self._client.set(key, value, px=entry_px(ttl), nx=True))

    def delete(self, key: str) -> None:
        """Remove ``key`` if present (one DEL)."""
        self._client.delete(key)

    def delete_many(self, keys: Sequence[str]) -> None:
        """Remove several keys in one round trip (one per node on a cluster)."""
        if not keys:
            return
        if self._cluster:
            pipe = pipeline(self._client)
            for key in keys:
                pipe.delete(key)
            pipe.execute()
        else:
            self._client.delete(*keys)

    def __repr__(self) -> str:
        return f"RedisProvider({'cluster' if self._cluster else 'redis'})"


class AsyncRedisProvider(AsyncClientUser):
    """:class:`RedisProvider` over an asyncio client (``redis.asyncio.Redis`` or
    ``redis.asyncio.cluster.RedisCluster``): the same commands, awaited, for
    :mod:`cascache.aio`. Build one with :func:`cascache.redis.aio.new_provider`.
    """

    def __init__(self, client: AsyncClient, *, close_client: bool = False) -> None:
        super().__init__(client, "AsyncRedisProvider", close_client=close_client)

    async def get(self, key: str) -> bytes | None:
        """The frame under ``key`` or ``None`` (one MGET)."""
        return as_bytes((await mget_async(self._client, [key]))[0], key)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The frames under ``keys``, in order: one MGET (``mget_nonatomic`` on a cluster)."""
        replies = await mget_async(self._client, keys)
        return [as_bytes(reply, key) for reply, key in zip(replies, keys, strict=True)]

    async def set(self, key: str, value: bytes, cost: int, ttl: float | None) -> bool:
        """Store ``value`` (one SET); ``True`` when Redis acknowledged it."""
        return bool(await self._client.set(key, value, px=entry_px(ttl)))

    async def add(self, key: str, value: bytes, cost: int, ttl: float | None) -> bool:
        """Store ``value`` only if ``key`` is absent (one SET NX); ``True`` if stored."""
        return bool(await self._client.set(key, value, px=entry_px(ttl), nx=True))

    async def delete(self, key: str) -> None:
        """Remove ``key`` if present (one DEL)."""
        await self._client.delete(key)

    async def delete_many(self, keys: Sequence[str]) -> None:
        """Remove several keys in one round trip (one per node on a cluster)."""
        if not keys:
            return
        if self._cluster:
            pipe = pipeline_async(self._client)
            for key in keys:
                pipe.delete(key)
            await pipe.execute()
        else:
            await self._client.delete(*keys)

    def __repr__(self) -> str:
        return f"AsyncRedisProvider({'cluster' if self._cluster else 'redis'})"


def entry_px(ttl: float | None) -> int | None:
    """An entry's TTL as ``PX`` milliseconds (``None``: no expiry)."""
    return None if ttl is None else px_millis(ttl)
