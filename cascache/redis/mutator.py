"""Single-key fast paths for a cache whose values and versions both live in one Redis.

A key's value key and version key share a hash tag, so they sit in one cluster slot and
one command or script can touch both:

* ``read``: one ``MGET value version``, the entry and the fence as of one instant.
* ``write_if_version``: one script that stores the frame only if the version key holds
  the expected fence. A missing version key is a mismatch: a write never creates a
  fence (DESIGN §3.3; bug zoo 4).
* ``invalidate``: one script that installs a fresh fence and deletes the entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import cast

import redis.asyncio.cluster
from redis.exceptions import NoScriptError

from cascache.errors import ConfigError, ReplicationError, WireError
from cascache.fence import Version, new_fence
from cascache.keys import CacheKey
from cascache.options import ttl_seconds
from cascache.redis.scripts import (
    INVALIDATE,
    WRITE_IF_VERSION,
    Arg,
    AsyncClient,
    AsyncClientUser,
    AsyncPipeline,
    Client,
    ClientUser,
    Pipeline,
    VersionTTL,
    as_bytes,
    check_version_ttl,
    mget,
    mget_async,
    mget_one_slot,
    mget_one_slot_async,
    parse_fence,
    pipeline,
    pipeline_async,
    px_millis,
    ttl_arg,
)

Pair = tuple[bytes | None, Version | None]
"""A key's stored frame and current fence."""


class KeyCommands:
    """What the sync and asyncio key mutators share: their settings, checked once, the
    arguments of each command and script, and how each reply is read. Only the I/O
    differs between the two."""

    def __init__(
        self,
        owner: str,
        version_ttl: VersionTTL,
        wait_replicas: int,
        wait_timeout: float | timedelta,
    ) -> None:
        self.version_ttl = check_version_ttl(version_ttl, owner)
        if (
            not isinstance(wait_replicas, int)
            or isinstance(wait_replicas, bool)
            or wait_replicas < 0
        ):
            raise ConfigError(f"{owner} wait_replicas must be an int >= 0, got {wait_replicas!r}")
        self.wait_replicas = wait_replicas
        timeout = ttl_seconds(f"{owner} wait_timeout", wait_timeout)
        if timeout is None:
            raise ConfigError(
                f"{owner} wait_timeout must be seconds or a timedelta, got None (WAIT "
                "needs a bound: an invalidate must not wait forever for a replica)"
            )
        self.wait_ms = px_millis(timeout)
        self._ttl_arg = ttl_arg(self.version_ttl)

    def settings(self) -> tuple[float | None, int, int]:
        """``version_ttl`` (seconds), ``wait_replicas`` and ``wait_ms`` (how long an
        invalidate waits for the replicas, in milliseconds), as a mutator exposes them."""
        return self.version_ttl, self.wait_replicas, self.wait_ms

    @staticmethod
    def pair(frame: object, fence: object, key: CacheKey) -> Pair:
        """A key's MGET replies (value key, version key) as a frame and a fence."""
        return as_bytes(frame, key.value), parse_fence(fence, key.version)

    @staticmethod
    def storage(keys: Sequence[CacheKey]) -> list[str]:
        """Every key's value and version key, in order, for one MGET."""
        return [name for key in keys for name in (key.value, key.version)]

    def pairs(self, replies: Sequence[object], keys: Sequence[CacheKey]) -> list[Pair]:
        """The replies to an MGET of :meth:`storage`, as pairs."""
        return [self.pair(replies[2 * i], replies[2 * i + 1], key) for i, key in enumerate(keys)]

    @staticmethod
    def batch(
        name: str, blob: object, fences: Sequence[object], versions: Sequence[str]
    ) -> tuple[bytes | None, list[Version | None]]:
        """A batch read's replies as the entry and its members' fences."""
        return as_bytes(blob, name), [
            parse_fence(reply, version) for reply, version in zip(fences, versions, strict=True)
        ]

    def write_call(
        self, key: CacheKey, frame: bytes, version: Version, ttl: float | None
    ) -> tuple[tuple[str, str], tuple[Arg, ...]]:
        """The conditional write script's ``KEYS`` and ``ARGV``."""
        return (key.value, key.version), (
            version.to_bytes(),
            frame,
            ttl_arg(ttl),
            self._renewal(ttl),
        )

    @staticmethod
    def written(reply: object, key: CacheKey) -> bool:
        """The conditional write's outcome: ``True`` if stored."""
        if reply not in (0, 1):
            raise WireError(f"write_if_version of {key.key!r}: unexpected reply {reply!r:.60}")
        return reply == 1

    def _renewal(self, ttl: float | None) -> str:
        """The version TTL a stored write renews: ``version_ttl``, or twice the entry's
        TTL when that is longer (so an entry with a TTL never outlives its fence; one
        without a TTL misses once its fence expires, ``version_ttl`` after the write)."""
        if self.version_ttl is None or ttl is None or 2 * ttl <= self.version_ttl:
            return self._ttl_arg
        return ttl_arg(2 * ttl)

    def invalidate_call(self, key: CacheKey) -> tuple[tuple[str, str], tuple[bytes, str]]:
        """The invalidate script's ``KEYS`` and ``ARGV``, with a fresh fence."""
        return (key.value, key.version), (new_fence().to_bytes(), self._ttl_arg)

    def queue_wait(self, pipe: Pipeline | AsyncPipeline, node: object | None) -> None:
        """Queue ``WAIT`` for the replicas; on a cluster, on ``node``, the key's primary."""
        if node is not None:
            pipe.execute_command("WAIT", self.wait_replicas, self.wait_ms, target_nodes=node)
        else:
            pipe.execute_command("WAIT", self.wait_replicas, self.wait_ms)

    def invalidated(self, reply: object, acked: object, key: CacheKey) -> None:
        """Raise unless the invalidate ran (and, with ``wait_replicas``, enough replicas
        acknowledged it)."""
        if self.wait_replicas and (not isinstance(acked, int) or acked < self.wait_replicas):
            raise ReplicationError(
                f"invalidate of {key.key!r}: {acked} of {self.wait_replicas} replicas "
                f"acknowledged within {self.wait_ms} ms"
            )
        if reply != 1:
            raise WireError(f"invalidate of {key.key!r}: unexpected reply {reply!r:.60}")

    @staticmethod
    def retry_wait(replies: Sequence[object], attempt: int) -> bool:
        """Whether the invalidate-and-wait pipeline met ``NOSCRIPT`` (nothing ran) on its
        first attempt and must be sent again once the script is loaded; raises any other
        error it met."""
        if isinstance(replies[0], NoScriptError) and attempt == 0:
            return True
        for got in replies:
            if isinstance(got, BaseException):
                raise got
        return False


class RedisKeyMutator(ClientUser):
    """``KeyReader``, ``KeyWriter`` and ``KeyInvalidator`` over a redis-py client.

    Args:
        client: a ``redis.Redis`` or ``redis.cluster.RedisCluster`` created with
            ``decode_responses=False`` (the default).
        version_ttl: give the same value as the ``RedisGenStore`` on the same server
            (default ``"auto"``: one day). When set, an invalidate installs its fence with
            this TTL and each successful write renews the version key's TTL to this, or
            to twice the entry's TTL if that is longer, so keys in use keep their fence
            as long as their entries live.
        wait_replicas: after each invalidate, wait (``WAIT``, in the same round trip)
            until that many replicas acknowledged it, or raise ``ReplicationError``.
        wait_timeout: how long to wait for them.
    """

    def __init__(
        self,
        client: Client,
        *,
        version_ttl: VersionTTL = "auto",
        wait_replicas: int = 0,
        wait_timeout: float | timedelta = 1.0,
    ) -> None:
        super().__init__(client, "RedisKeyMutator")
        self._do = KeyCommands("RedisKeyMutator", version_ttl, wait_replicas, wait_timeout)
        self.version_ttl, self.wait_replicas, self.wait_ms = self._do.settings()

    def read(self, key: CacheKey) -> Pair:
        """The stored frame and the current fence, in one ``MGET`` (one round trip).

        Both keys share a hash slot, so this is a single-slot MGET even on a cluster.
        """
        frame, fence = mget_one_slot(self._client, (key.value, key.version))
        return self._do.pair(frame, fence, key)

    def read_many(self, keys: Sequence[CacheKey]) -> list[Pair]:
        """``read`` for each key, in order.

        One MGET of every value and version key on a plain client. On a cluster the keys
        span slots, so ``mget_nonatomic`` sends one MGET per slot (one round trip per
        node); each key's pair still comes from one slot's MGET, so it is consistent.
        """
        return self._do.pairs(mget(self._client, self._do.storage(keys)), keys)

    def read_batch(
        self, name: str, keys: Sequence[CacheKey]
    ) -> tuple[bytes | None, list[Version | None] | None]:
        """A batch entry and, on a plain client, its members' fences: one round trip.

        A plain client pipelines ``GET`` and ``MGET``. On a cluster the fences span slots
        and nodes, so reading them up front would cost a round trip per node even when the
        entry is missing: there only the entry is read, and the caller reads the fences.
        """
        # MGET, not GET: a key of another type reads as absent instead of failing.
        if self._cluster:
            return as_bytes(mget(self._client, [name])[0], name), None
        versions = [key.version for key in keys]
        pipe = pipeline(self._client)
        pipe.mget([name])
        pipe.mget(versions)
        (blob,), fences = pipe.execute()
        return self._do.batch(name, blob, fences, versions)

    def write_if_version(
        self, key: CacheKey, frame: bytes, version: Version, ttl: float | None
    ) -> bool:
        """Store ``frame`` only if the fence is still ``version``, in one script run.

        ``ttl`` is the entry's lifetime in seconds (``None``: no expiry). Returns
        ``False`` when the fence differs or the version key is missing.
        """
        reply = WRITE_IF_VERSION(self._client, *self._do.write_call(key, frame, version, ttl))
        return self._do.written(reply, key)

    def invalidate(self, key: CacheKey) -> None:
        """Install a fresh fence and delete the entry, in one script run.

        With ``wait_replicas``, the script and a ``WAIT`` go in one pipeline (still one
        round trip) and :class:`~cascache.errors.ReplicationError` is raised when fewer
        replicas acknowledged in time. Redis errors propagate: the caller must treat the
        invalidation as not done.
        """
        keys, args = self._do.invalidate_call(key)
        if not self.wait_replicas:
            self._do.invalidated(INVALIDATE(self._client, keys, args), None, key)
            return
        for attempt in range(2):
            pipe = pipeline(self._client)
            INVALIDATE.queue(pipe, keys, args)
            node = pipe.get_node_from_key(key.value) if self._cluster else None  # type: ignore[union-attr]
            self._do.queue_wait(pipe, node)
            replies = pipe.execute(raise_on_error=False)
            if self._do.retry_wait(replies, attempt):
                INVALIDATE.load(self._client)
                continue
            self._do.invalidated(replies[0], replies[1], key)
            return

    def __repr__(self) -> str:
        kind = "cluster" if self._cluster else "redis"
        return (
            f"RedisKeyMutator({kind}, version_ttl={self.version_ttl}, "
            f"wait_replicas={self.wait_replicas})"
        )


class AsyncRedisKeyMutator(AsyncClientUser):
    """:class:`RedisKeyMutator` over an asyncio client (``redis.asyncio.Redis`` or
    ``redis.asyncio.cluster.RedisCluster``): ``AsyncKeyReader``, ``AsyncKeyWriter`` and
    ``AsyncKeyInvalidator`` with the same commands and scripts, awaited. Build one with
    :func:`cascache.redis.aio.new_key_mutator`; the arguments are :class:`RedisKeyMutator`'s.
    """

    def __init__(
        self,
        client: AsyncClient,
        *,
        version_ttl: VersionTTL = "auto",
        wait_replicas: int = 0,
        wait_timeout: float | timedelta = 1.0,
    ) -> None:
        super().__init__(client, "AsyncRedisKeyMutator")
        self._do = KeyCommands("AsyncRedisKeyMutator", version_ttl, wait_replicas, wait_timeout)
        self.version_ttl, self.wait_replicas, self.wait_ms = self._do.settings()

    async def read(self, key: CacheKey) -> Pair:
        """The stored frame and the current fence, in one ``MGET``."""
        frame, fence = await mget_one_slot_async(self._client, (key.value, key.version))
        return self._do.pair(frame, fence, key)

    async def read_many(self, keys: Sequence[CacheKey]) -> list[Pair]:
        """``read`` for each key, in order (see :meth:`RedisKeyMutator.read_many`)."""
        return self._do.pairs(await mget_async(self._client, self._do.storage(keys)), keys)

    async def read_batch(
        self, name: str, keys: Sequence[CacheKey]
    ) -> tuple[bytes | None, list[Version | None] | None]:
        """A batch entry and, on a plain client, its members' fences: one round trip."""
        if self._cluster:
            return as_bytes((await mget_async(self._client, [name]))[0], name), None
        versions = [key.version for key in keys]
        pipe = pipeline_async(self._client)
        pipe.mget([name])
        pipe.mget(versions)
        (blob,), fences = await pipe.execute()
        return self._do.batch(name, blob, fences, versions)

    async def write_if_version(
        self, key: CacheKey, frame: bytes, version: Version, ttl: float | None
    ) -> bool:
        """Store ``frame`` only if the fence is still ``version``, in one script run."""
        keys, args = self._do.write_call(key, frame, version, ttl)
        return self._do.written(await WRITE_IF_VERSION.run_async(self._client, keys, args), key)

    async def invalidate(self, key: CacheKey) -> None:
        """Install a fresh fence and delete the entry, in one script run (see
        :meth:`RedisKeyMutator.invalidate`)."""
        keys, args = self._do.invalidate_call(key)
        if not self.wait_replicas:
            self._do.invalidated(await INVALIDATE.run_async(self._client, keys, args), None, key)
            return
        for attempt in range(2):
            pipe = pipeline_async(self._client)
            INVALIDATE.queue(pipe, keys, args)
            node = None
            if self._cluster:
                cluster = cast(redis.asyncio.cluster.RedisCluster, self._client)
                # The asyncio cluster client learns its slot map on its first command;
                # until then it knows no node for the key. (Once it has, this returns.)
                await cluster.initialize()
                node = cluster.get_node_from_key(key.value)
            self._do.queue_wait(pipe, node)
            replies = await pipe.execute(raise_on_error=False)
            if self._do.retry_wait(replies, attempt):
                await INVALIDATE.load_async(self._client)
                continue
            self._do.invalidated(replies[0], replies[1], key)
            return

    def __repr__(self) -> str:
        kind = "cluster" if self._cluster else "redis"
        return (
            f"AsyncRedisKeyMutator({kind}, version_ttl={self.version_ttl}, "
            f"wait_replicas={self.wait_replicas})"
        )
