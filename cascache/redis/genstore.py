"""A version store in Redis, shared by every process that uses the same server.

Each version key (``CacheKey.version``) holds one fence as its raw 16 bytes. ``snapshot``
is a Lua GET-or-create, so a filler always leaves with a concrete fence in one round trip;
``advance`` overwrites the key with a fresh fence; ``current`` reads the key (an ``MGET``
of one, see :meth:`RedisGenStore.current`) and never creates anything.

Fences are random and never reused, so losing a version key (eviction under
``maxmemory``, ``FLUSHALL``, a restart without persistence, or ``version_ttl``) only
turns that key's entries and in-flight fills into misses; it can never make an old entry
current again (DESIGN §3.4).
"""

from __future__ import annotations

from collections.abc import Sequence

from cascache.errors import WireError
from cascache.fence import Version, new_fence
from cascache.redis.scripts import (
    SNAPSHOT,
    AsyncClient,
    AsyncClientUser,
    Client,
    ClientUser,
    VersionTTL,
    check_version_ttl,
    mget,
    mget_async,
    parse_fence,
    px_millis,
    run_pipelined,
    run_pipelined_async,
    ttl_arg,
)


class RedisGenStore(ClientUser):
    """``cascache.genstore.GenStore`` over a redis-py ``Redis`` or ``RedisCluster`` client.

    Args:
        client: a client created with ``decode_responses=False`` (the default).
        version_ttl: version keys expire this long after they are created or advanced
            (seconds or a ``timedelta``), and writes through ``RedisKeyMutator`` renew
            it. The default, ``"auto"``, is one day here (``cascache.redis.new`` derives
            it from the entry TTLs). The trade-off: an expired fence is safe (the next
            snapshot creates a different one, so old entries just become misses) but
            costs hit rate, so with values outside Redis ("shared-versions", where writes
            do not renew it) choose at least twice the longest entry TTL. ``None`` keeps
            version keys forever: every key ever snapshotted or invalidated stays in
            Redis until ``maxmemory`` evicts it.
        close_client: close ``client`` when this store is closed. Leave it ``False``
            when the client is shared.
    """

    def __init__(
        self,
        client: Client,
        *,
        version_ttl: VersionTTL = "auto",
        close_client: bool = False,
    ) -> None:
        super().__init__(client, "RedisGenStore", close_client=close_client)
        self._versions = VersionKeys(version_ttl, "RedisGenStore")
        self.version_ttl = self._versions.ttl

    def snapshot(self, key: str) -> Version:
        """The current fence of ``key``, created atomically if missing (one round trip)."""
        return created(SNAPSHOT(self._client, *self._versions.snapshot_call(key)), key)

    def snapshot_many(self, keys: Sequence[str]) -> list[Version]:
        """``snapshot`` for each key, in order, in one pipeline.

        Each key's GET-or-create is atomic on its own; the keys span hash slots, so on a
        cluster redis-py splits the pipeline per node (one round trip per node, sent
        together).
        """
        calls = [self._versions.snapshot_call(key) for key in keys]
        replies = run_pipelined(self._client, SNAPSHOT, calls)
        return [created(reply, key) for reply, key in zip(replies, keys, strict=True)]

    def current(self, key: str) -> Version | None:
        """The current fence of ``key`` or ``None``; never creates one (one MGET, which
        reads a key of another type as absent where GET would fail)."""
        return parse_fence(mget(self._client, [key])[0], key)

    def current_many(self, keys: Sequence[str]) -> list[Version | None]:
        """``current`` for each key, in order: one MGET (``mget_nonatomic`` on a cluster)."""
        replies = mget(self._client, keys)
        return [parse_fence(reply, key) for reply, key in zip(replies, keys, strict=True)]

    def advance(self, key: str) -> Version:
        """Install a fresh fence for ``key`` and return it (one SET)."""
        fence = new_fence()
        self._client.set(key, fence.to_bytes(), px=self._versions.px)
        return fence

    def __repr__(self) -> str:
        kind = "cluster" if self._cluster else "redis"
        return f"RedisGenStore({kind}, version_ttl={self.version_ttl})"


class AsyncRedisGenStore(AsyncClientUser):
    """:class:`RedisGenStore` over an asyncio client (``redis.asyncio.Redis`` or
    ``redis.asyncio.cluster.RedisCluster``): the same keys, script and commands, awaited,
    for :mod:`cascache.aio`. Build one with :func:`cascache.redis.aio.new_gen_store`.
    """

    def __init__(
        self,
        client: AsyncClient,
        *,
        version_ttl: VersionTTL = "auto",
        close_client: bool = False,
    ) -> None:
        super().__init__(client, "AsyncRedisGenStore", close_client=close_client)
        self._versions = VersionKeys(version_ttl, "AsyncRedisGenStore")
        self.version_ttl = self._versions.ttl

    async def snapshot(self, key: str) -> Version:
        """The current fence of ``key``, created atomically if missing (one round trip)."""
        return created(
            await SNAPSHOT.run_async(self._client, *self._versions.snapshot_call(key)), key
        )

    async def snapshot_many(self, keys: Sequence[str]) -> list[Version]:
        """``snapshot`` for each key, in order, in one pipeline."""
        calls = [self._versions.snapshot_call(key) for key in keys]
        replies = await run_pipelined_async(self._client, SNAPSHOT, calls)
        return [created(reply, key) for reply, key in zip(replies, keys, strict=True)]

    async def current(self, key: str) -> Version | None:
        """The current fence of ``key`` or ``None``; never creates one (one MGET)."""
        return parse_fence((await mget_async(self._client, [key]))[0], key)

    async def current_many(self, keys: Sequence[str]) -> list[Version | None]:
        """``current`` for each key, in order: one MGET (``mget_nonatomic`` on a cluster)."""
        replies = await mget_async(self._client, keys)
        return [parse_fence(reply, key) for reply, key in zip(replies, keys, strict=True)]

    async def advance(self, key: str) -> Version:
        """Install a fresh fence for ``key`` and return it (one SET)."""
        fence = new_fence()
        await self._client.set(key, fence.to_bytes(), px=self._versions.px)
        return fence

    def __repr__(self) -> str:
        kind = "cluster" if self._cluster else "redis"
        return f"AsyncRedisGenStore({kind}, version_ttl={self.version_ttl})"


class VersionKeys:
    """How a Redis version store writes version keys: their TTL, checked once, in each
    spelling the commands take."""

    def __init__(self, version_ttl: VersionTTL, owner: str) -> None:
        self.ttl = check_version_ttl(version_ttl, owner)
        """Seconds, or ``None`` for no expiry."""
        self.px = None if self.ttl is None else px_millis(self.ttl)
        """``SET ... PX`` milliseconds, or ``None``."""
        self.arg = ttl_arg(self.ttl)
        """The scripts' ``ARGV`` spelling."""

    def snapshot_call(self, key: str) -> tuple[tuple[str], tuple[bytes, str]]:
        """The snapshot script's ``KEYS`` and ``ARGV`` for ``key``, with a fresh fence."""
        return (key,), (new_fence().to_bytes(), self.arg)


def created(reply: object, key: str) -> Version:
    """The fence a snapshot script returned."""
    fence = parse_fence(reply, key)
    if fence is None:
        # The script always returns a fence; nil here means the reply is not ours.
        raise WireError(f"snapshot of {key!r} returned no fence")
    return fence
