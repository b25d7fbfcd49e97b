"""The deployments the model runs: which stores each cache node uses, and how to hurt them.

A topology builds N cache nodes over its stores and offers the model two things: a
side-effect-free view of the stores (to check the state invariant and the write
contract), and fault injection (evict, corrupt, lose version state, move the clock).
"""

from __future__ import annotations

import itertools
import secrets
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import cascache
from cascache.batch import Core
from cascache.fence import FENCE_SIZE, Version
from cascache.keys import PREFIX, CacheKey, KeySpace
from cascache.mutator import KeyInvalidator

from .oracle import ROW_CODEC, Row

if TYPE_CHECKING:
    import redis
    import redis.cluster

ENTRY_TTL = 30.0

CoreFactory = Callable[[cascache.Options[Row]], Core[Row]]


class FakeClock:
    """A clock the model moves by hand, so TTL expiry is a step like any other."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += seconds


class Topology(ABC):
    """Nodes plus store views and faults. Subclasses say where values and versions live."""

    name: str

    def __init__(self, nodes: int, core: CoreFactory) -> None:
        self.clock = FakeClock()
        # A namespace of its own per example, so a shared server needs no flushing.
        self.namespace = f"m{secrets.token_hex(4)}"
        self.keys = KeySpace(self.namespace)
        self.nodes = [cascache.CAS(core(self.options(i))) for i in range(nodes)]

    @abstractmethod
    def options(self, node: int) -> cascache.Options[Row]:
        """The options of cache node ``node``."""

    @abstractmethod
    def fence(self, node: int, version_key: str) -> Version | None:
        """The current fence as node ``node`` sees it, read without side effects."""

    @abstractmethod
    def value_stores(self) -> int:
        """How many separate value stores there are."""

    def readers(self, store: int) -> range:
        """The nodes that serve entries from value store ``store`` (default: every node)."""
        return range(len(self.nodes))

    @abstractmethod
    def raw(self, store: int, storage_key: str) -> bytes | None:
        """The bytes under ``storage_key`` in value store ``store``."""

    @abstractmethod
    def put_raw(self, store: int, storage_key: str, data: bytes) -> None:
        """Overwrite bytes in a value store (corruption)."""

    @abstractmethod
    def evict(self, store: int, storage_key: str) -> None:
        """Drop an entry, as eviction or expiry would."""

    @abstractmethod
    def lose_version(self, version_key: str) -> None:
        """Drop one key's version state everywhere it lives."""

    @abstractmethod
    def lose_all_versions(self) -> None:
        """Drop every key's version state (restart without persistence, FLUSHALL)."""

    def replicate(self) -> None:
        """Replication catches up (only topologies with a replica do anything)."""
        return None

    def failover(self) -> None:
        """A replica is promoted (only topologies with a replica do anything)."""
        return None

    def rule_done(self) -> None:
        """Called after every rule of the model (replication lag is counted in rules)."""
        return None

    def close(self) -> None:
        """Release the nodes and their stores."""
        for node in self.nodes:
            node.close()


class Local(Topology):
    """One process: every node shares one in-process value store and version store."""

    name = "local"

    def __init__(self, nodes: int, core: CoreFactory, max_versions: int = 64) -> None:
        self.provider = cascache.MemoryProvider(max_cost=1 << 20, clock=self._clock)
        self.gens = cascache.LocalGenStore(max_keys=max_versions)
        super().__init__(nodes, core)

    def _clock(self) -> float:
        return self.clock()

    def options(self, node: int) -> cascache.Options[Row]:
        return cascache.Options(
            namespace=self.namespace,
            provider=self.provider,
            codec=ROW_CODEC,
            gen_store=self.gens,
            default_ttl=ENTRY_TTL,
        )

    def fence(self, node: int, version_key: str) -> Version | None:
        return self.gens.peek(version_key)

    def value_stores(self) -> int:
        return 1

    def raw(self, store: int, storage_key: str) -> bytes | None:
        return self.provider.get(storage_key)

    def put_raw(self, store: int, storage_key: str, data: bytes) -> None:
        self.provider.set(storage_key, data, len(data), ENTRY_TTL)

    def evict(self, store: int, storage_key: str) -> None:
        self.provider.delete(storage_key)

    def lose_version(self, version_key: str) -> None:
        self.gens.forget(version_key)

    def lose_all_versions(self) -> None:
        self.gens.clear()


class PerNodeLocalVersions(Local):
    """Negative control: shared values, but each node keeps its *own* version store.

    Nothing tells node B that node A invalidated a key, so B keeps serving the old entry.
    The model must catch this; if it did not, its checks would be vacuous.
    """

    name = "per-node-local-versions"

    def __init__(self, nodes: int, core: CoreFactory, max_versions: int = 64) -> None:
        self.node_gens = [cascache.LocalGenStore(max_keys=max_versions) for _ in range(nodes)]
        super().__init__(nodes, core, max_versions)

    def options(self, node: int) -> cascache.Options[Row]:
        return cascache.Options(
            namespace=self.namespace,
            provider=self.provider,
            codec=ROW_CODEC,
            gen_store=self.node_gens[node] if node < len(self.node_gens) else self.gens,
            default_ttl=ENTRY_TTL,
        )

    def fence(self, node: int, version_key: str) -> Version | None:
        return self.node_gens[node].peek(version_key)

    def lose_version(self, version_key: str) -> None:
        for gens in self.node_gens:
            gens.forget(version_key)

    def lose_all_versions(self) -> None:
        for gens in self.node_gens:
            gens.clear()


Connect = Callable[[], "redis.Redis | redis.cluster.RedisCluster"]
"""Returns a client on an empty Redis the model may use freely (fresh fakeredis server, or
a flushed server the test session started)."""


class _OnRedis(Topology):
    """Shared machinery of the topologies whose versions live in Redis."""

    def __init__(self, nodes: int, core: CoreFactory, connect: Connect) -> None:
        self.client = connect()
        super().__init__(nodes, core)

    def fence(self, node: int, version_key: str) -> Version | None:
        raw = self.client.get(version_key)
        if not isinstance(raw, bytes) or len(raw) != FENCE_SIZE:
            return None
        return Version.from_bytes(raw)

    def lose_version(self, version_key: str) -> None:
        self.client.delete(version_key)

    def _ours(self, kind: str) -> list[str]:
        pattern = f"{PREFIX}:*:{kind}:{len(self.namespace)}:{self.namespace}:*"
        return [k.decode() for k in self.client.scan_iter(match=pattern, count=1000)]

    def lose_all_versions(self) -> None:
        for name in self._ours("g"):
            self.client.delete(name)

    def close(self) -> None:
        super().close()
        for name in self._ours("*"):
            self.client.delete(name)
        self.client.close()


class SharedVersions(_OnRedis):
    """Each node keeps values in its own in-process store; versions are shared in Redis."""

    name = "shared-versions"

    def __init__(self, nodes: int, core: CoreFactory, connect: Connect) -> None:
        self.providers = [
            cascache.MemoryProvider(max_cost=1 << 20, clock=self._clock) for _ in range(nodes)
        ]
        super().__init__(nodes, core, connect)

    def _clock(self) -> float:
        return self.clock()

    def options(self, node: int) -> cascache.Options[Row]:
        import cascache.redis

        return cascache.Options(
            namespace=self.namespace,
            provider=self.providers[node],
            codec=ROW_CODEC,
            gen_store=cascache.redis.new_gen_store(self.client),
            default_ttl=ENTRY_TTL,
        )

    def value_stores(self) -> int:
        return len(self.providers)

    def readers(self, store: int) -> range:
        return range(store, store + 1)

    def raw(self, store: int, storage_key: str) -> bytes | None:
        return self.providers[store].get(storage_key)

    def put_raw(self, store: int, storage_key: str, data: bytes) -> None:
        self.providers[store].set(storage_key, data, len(data), ENTRY_TTL)

    def evict(self, store: int, storage_key: str) -> None:
        self.providers[store].delete(storage_key)


class AllInRedis(_OnRedis):
    """``cascache.redis.new``: values and versions in one Redis, single-key steps in Lua."""

    name = "redis"

    def options(self, node: int) -> cascache.Options[Row]:
        import cascache.redis

        # Exactly what cascache.redis.new builds, so variants can swap one piece.
        return cascache.redis.cache_options(
            cascache.redis.Options(
                namespace=self.namespace, client=self.client, codec=ROW_CODEC, default_ttl=ENTRY_TTL
            )
        )

    def value_stores(self) -> int:
        return 1

    def raw(self, store: int, storage_key: str) -> bytes | None:
        data = self.client.get(storage_key)
        assert data is None or isinstance(data, bytes)
        return data

    def put_raw(self, store: int, storage_key: str, data: bytes) -> None:
        self.client.set(storage_key, data, keepttl=True)

    def evict(self, store: int, storage_key: str) -> None:
        self.client.delete(storage_key)


class _WaitingInvalidator:
    """The failover mitigation: after the invalidate script, wait until a replica has it.

    Stands for ``WAIT 1 <timeout>`` after each invalidate: the call returns only once the
    replica acknowledged every write up to and including the invalidate.
    """

    def __init__(self, inner: KeyInvalidator, replicate: Callable[[], None]) -> None:
        self.inner = inner
        self.replicate = replicate

    def invalidate(self, key: CacheKey) -> None:
        self.inner.invalidate(key)
        self.replicate()


class RedisFailover(AllInRedis):
    """``cascache.redis.new`` on a primary whose replica lags, and may be promoted.

    Replication is asynchronous: the replica holds the primary's state as of its last
    sync (the ``replicate`` injection). A ``failover`` injection promotes it, so every write
    since the last sync, acknowledged or not, is gone. Without waiting for the replica, an
    acknowledged invalidate can be lost and an old fence becomes current again: the model
    must catch that (a negative control). With ``wait=True`` every invalidate returns only
    after the replica has it.
    """

    name = "redis-failover"

    def __init__(
        self, nodes: int, core: CoreFactory, connect: Connect, *, wait: bool = False
    ) -> None:
        self.wait = wait
        self.syncs = itertools.count()
        # (state, sequence number): the replica never moves back to an older sync.
        self.replica: tuple[dict[str, tuple[bytes, int]], int] = ({}, -1)
        self.lagging: tuple[dict[str, tuple[bytes, int]], int] | None = None
        super().__init__(nodes, core, connect)
        if wait:
            self.name = "redis-failover-wait"

    def options(self, node: int) -> cascache.Options[Row]:
        options = super().options(node)
        if not self.wait or options.key_invalidator is None:
            return options
        return replace(
            options, key_invalidator=_WaitingInvalidator(options.key_invalidator, self.replicate)
        )

    def _snapshot(self) -> tuple[dict[str, tuple[bytes, int]], int]:
        names = self._ours("*")
        pipe = self.client.pipeline()
        for name in names:
            pipe.get(name)
            pipe.pttl(name)
        replies = pipe.execute()
        state = {
            name: (data, ttl)
            for name, data, ttl in zip(names, replies[::2], replies[1::2], strict=True)
            if isinstance(data, bytes) and isinstance(ttl, int) and ttl != -2
        }
        return state, next(self.syncs)

    def _adopt(self, sync: tuple[dict[str, tuple[bytes, int]], int]) -> None:
        if sync[1] > self.replica[1]:
            self.replica = sync

    def rule_done(self) -> None:
        """Asynchronous replication: the replica is always one rule behind the primary."""
        if self.lagging is not None:
            self._adopt(self.lagging)
        self.lagging = self._snapshot()

    def replicate(self) -> None:
        """The replica catches up with the primary now (a full sync of this example's keys)."""
        self._adopt(self._snapshot())

    def failover(self) -> None:
        """The replica is promoted: the primary's state becomes the replica's last sync."""
        for name in self._ours("*"):
            self.client.delete(name)
        for name, (data, ttl) in self.replica[0].items():
            self.client.set(name, data, px=ttl if ttl > 0 else None)
        self.lagging = None
