"""A version store in Redis, shared by every process that uses the same server.

Each version key (``CacheKey.version``) holds one fence as its raw 16 bytes. ``snapshot``
is a Lua GET-or-create, so a filler always leaves with a concrete fence in one round trip;
``advance`` overwrites the key with a fresh fence; ``current`` is a plain GET and never
creates anything.

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
    Client,
    ClientUser,
    VersionTTL,
    check_version_ttl,
    mget,
    parse_fence,
    px_millis,
    run_pipelined,
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
        self.version_ttl = check_version_ttl(version_ttl, "RedisGenStore")
        self._ttl_arg = ttl_arg(self.version_ttl)

    def snapshot(self, key: str) -> Version:
        """The current fence of ``key``, created atomically if missing (one round trip)."""
        reply = SNAPSHOT(self._client, (key,), (new_fence().to_bytes(), self._ttl_arg))
        return self._created(reply, key)

    def snapshot_many(self, keys: Sequence[str]) -> list[Version]:
        """``snapshot`` for each key, in order, in one pipeline.

        Each key's GET-or-create is atomic on its own; the keys span hash slots, so on a
        cluster redis-py splits the pipeline per node (one round trip per node, sent
        together).
        """
        calls = [((key,), (new_fence().to_bytes(), self._ttl_arg)) for key in keys]
        replies = run_pipelined(self._client, SNAPSHOT, calls)
        return [self._created(reply, key) for reply, key in zip(replies, keys, strict=True)]

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
        if self.version_ttl is None:
            self._client.set(key, fence.to_bytes())
        else:
            self._client.set(key, fence.to_bytes(), px=px_millis(self.version_ttl))
        return fence

    def __repr__(self) -> str:
        kind = "cluster" if self._cluster else "redis"
        return f"RedisGenStore({kind}, version_ttl={self.version_ttl})"

    @staticmethod
    def _created(reply: object, key: str) -> Version:
        fence = parse_fence(reply, key)
        if fence is None:
            # The script always returns a fence; nil here means the reply is not ours.
            raise WireError(f"snapshot of {key!r} returned no fence")
        return fence
