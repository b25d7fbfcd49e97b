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

from redis.exceptions import NoScriptError

from cascache.errors import ConfigError, ReplicationError, WireError
from cascache.fence import Version, new_fence
from cascache.keys import CacheKey
from cascache.options import ttl_seconds
from cascache.redis.scripts import (
    INVALIDATE,
    WRITE_IF_VERSION,
    Client,
    ClientUser,
    VersionTTL,
    as_bytes,
    check_version_ttl,
    mget,
    mget_one_slot,
    parse_fence,
    pipeline,
    px_millis,
    ttl_arg,
)


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
        self.version_ttl = check_version_ttl(version_ttl, "RedisKeyMutator")
        if (
            not isinstance(wait_replicas, int)
            or isinstance(wait_replicas, bool)
            or wait_replicas < 0
        ):
            raise ConfigError(
                f"RedisKeyMutator wait_replicas must be an int >= 0, got {wait_replicas!r}"
            )
        self.wait_replicas = wait_replicas
        timeout = ttl_seconds("RedisKeyMutator wait_timeout", wait_timeout)
        assert timeout is not None
        self._wait_ms = px_millis(timeout)
        self._ttl_arg = ttl_arg(self.version_ttl)

    def read(self, key: CacheKey) -> tuple[bytes | None, Version | None]:
        """The stored frame and the current fence, in one ``MGET`` (one round trip).

        Both keys share a hash slot, so this is a single-slot MGET even on a cluster.
        """
        frame, fence = mget_one_slot(self._client, (key.value, key.version))
        return as_bytes(frame, key.value), parse_fence(fence, key.version)

    def read_many(self, keys: Sequence[CacheKey]) -> list[tuple[bytes | None, Version | None]]:
        """``read`` for each key, in order.

        One MGET of every value and version key on a plain client. On a cluster the keys
        span slots, so ``mget_nonatomic`` sends one MGET per slot (one round trip per
        node); each key's pair still comes from one slot's MGET, so it is consistent.
        """
        storage = [name for key in keys for name in (key.value, key.version)]
        replies = mget(self._client, storage)
        return [
            (as_bytes(replies[2 * i], key.value), parse_fence(replies[2 * i + 1], key.version))
            for i, key in enumerate(keys)
        ]

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
        return as_bytes(blob, name), [
            parse_fence(reply, version) for reply, version in zip(fences, versions, strict=True)
        ]

    def write_if_version(
        self, key: CacheKey, frame: bytes, version: Version, ttl: float | None
    ) -> bool:
        """Store ``frame`` only if the fence is still ``version``, in one script run.

        ``ttl`` is the entry's lifetime in seconds (``None``: no expiry). Returns
        ``False`` when the fence differs or the version key is missing.
        """
        reply = WRITE_IF_VERSION(
            self._client,
            (key.value, key.version),
            (version.to_bytes(), frame, ttl_arg(ttl), self._renewal(ttl)),
        )
        if reply not in (0, 1):
            raise WireError(f"write_if_version of {key.key!r}: unexpected reply {reply!r:.60}")
        return reply == 1

    def _renewal(self, ttl: float | None) -> str:
        """The version TTL a stored write renews: ``version_ttl``, or twice the entry's
        TTL when that is longer (so an entry never outlives its fence by design)."""
        if self.version_ttl is None or ttl is None or 2 * ttl <= self.version_ttl:
            return self._ttl_arg
        return ttl_arg(2 * ttl)

    def invalidate(self, key: CacheKey) -> None:
        """Install a fresh fence and delete the entry, in one script run.

        With ``wait_replicas``, the script and a ``WAIT`` go in one pipeline (still one
        round trip) and :class:`~cascache.errors.ReplicationError` is raised when fewer
        replicas acknowledged in time. Redis errors propagate: the caller must treat the
        invalidation as not done.
        """
        keys, args = (key.value, key.version), (new_fence().to_bytes(), self._ttl_arg)
        if not self.wait_replicas:
            reply = INVALIDATE(self._client, keys, args)
        else:
            reply, acked = self._invalidate_and_wait(keys, args)
            if not isinstance(acked, int) or acked < self.wait_replicas:
                raise ReplicationError(
                    f"invalidate of {key.key!r}: {acked} of {self.wait_replicas} replicas "
                    f"acknowledged within {self._wait_ms} ms"
                )
        if reply != 1:
            raise WireError(f"invalidate of {key.key!r}: unexpected reply {reply!r:.60}")

    def _invalidate_and_wait(
        self, keys: tuple[str, str], args: tuple[bytes, str]
    ) -> tuple[object, object]:
        for attempt in range(2):
            pipe = pipeline(self._client)
            INVALIDATE.queue(pipe, keys, args)
            if self._cluster:
                node = pipe.get_node_from_key(keys[0])  # type: ignore[union-attr]
                pipe.execute_command(  # type: ignore[no-untyped-call]
                    "WAIT", self.wait_replicas, self._wait_ms, target_nodes=node
                )
            else:
                pipe.execute_command("WAIT", self.wait_replicas, self._wait_ms)  # type: ignore[no-untyped-call]
            reply, acked = pipe.execute(raise_on_error=False)
            if isinstance(reply, NoScriptError) and attempt == 0:
                # Nothing ran; load the script and send both again.
                INVALIDATE.load(self._client)
                continue
            for got in (reply, acked):
                if isinstance(got, BaseException):
                    raise got
            return reply, acked
        raise AssertionError("unreachable")  # pragma: no cover

    def __repr__(self) -> str:
        kind = "cluster" if self._cluster else "redis"
        return (
            f"RedisKeyMutator({kind}, version_ttl={self.version_ttl}, "
            f"wait_replicas={self.wait_replicas})"
        )
