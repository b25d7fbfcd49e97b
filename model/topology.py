"""The deployments the model runs: which stores each cache node uses, and how to hurt them.

A topology builds N cache nodes over its stores and offers the model two things: a
side-effect-free view of the stores (to check the state invariant and the write
contract), and fault injection (evict, corrupt, lose version state, move the clock).

Besides its N nodes, every topology has one *alias* node: a second cache with a namespace
chosen to collide with the first under naive joining (DESIGN §3.11 and ``cascache.keys``).
The main namespace is ``<base>:x`` and the alias namespace ``<base>``, and the alias node
uses the keys ``x:a``, ``x:b``, ``x:c``: joined without the length prefix, ``(<base>, x:a)``
and ``(<base>:x, a)`` spell the same storage name. Where the topology allows it, the alias
node shares the value store of node 0 and the version store of the other nodes, so a
collision would hand one cache's entry (or fence) to the other, and the integrity check
would see a row of the wrong key. (A ``LocalStore`` serves one namespace, so on
``local-store`` the alias has a store of its own; on ``per-node-local-versions`` it has
its own version store, like every node there.)
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import secrets
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, TypeAlias, TypeVar, cast

import cascache
import cascache.aio
from cascache.batch import Core
from cascache.effects import Process, Step, drive
from cascache.fence import FENCE_SIZE, Version
from cascache.genstore import GenStore
from cascache.keys import CacheKey, KeySpace
from cascache.mutator import KeyInvalidator, KeyReader, KeyWriter
from cascache.provider import Provider

from .oracle import ROW_CODEC, Row

if TYPE_CHECKING:
    import redis
    import redis.asyncio
    import redis.asyncio.cluster
    import redis.cluster

ENTRY_TTL = 30.0
T = TypeVar("T")

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


ALIAS_PREFIX = "x:"
"""The alias cache's keys are the main cache's keys with this prefix (see the module doc)."""


@dataclass(frozen=True)
class Space:
    """One cache namespace of a topology: its storage names, nodes, and key spelling.

    Attributes:
        keys: the production key derivation for the namespace.
        nodes: the node numbers whose caches use it.
        prefix: the model's logical key for base key ``k`` in this namespace is
            ``prefix + k``.
    """

    keys: KeySpace
    nodes: tuple[int, ...]
    prefix: str


class Topology(ABC):
    """Nodes plus store views and faults. Subclasses say where values and versions live."""

    name: str
    asynchronous = False
    """Whether the nodes' stores are asyncio stores, whose effects :meth:`settle` completes."""
    outage_targets: frozenset[str] = frozenset({"versions", "redis"})
    """The effect targets a version-store outage fails (the ``outage`` fault family)."""

    def __init__(self, nodes: int, core: CoreFactory) -> None:
        self.clock = FakeClock()
        # A namespace of its own per example, so a shared server needs no flushing.
        base = f"m{secrets.token_hex(4)}"
        self.namespace = f"{base}:x"
        self.keys = KeySpace(self.namespace)
        self.main_nodes = nodes
        self.alias = nodes
        """The alias node's number (one past the main nodes)."""
        self.spaces = (
            Space(self.keys, tuple(range(nodes)), ""),
            Space(KeySpace(base), (nodes,), ALIAS_PREFIX),
        )
        self.nodes = [cascache.CAS(core(self.options(i))) for i in range(nodes + 1)]

    def _clock(self) -> float:
        # The stores a subclass builds before this class's __init__ sets ``clock`` read
        # the model's clock through this.
        return self.clock()

    def settle(self, pending: Awaitable[object]) -> object:
        """Complete an asyncio store's call (only asynchronous topologies have any)."""
        raise TypeError(f"{self.name}: its stores are synchronous, nothing to settle")

    def drive(self, step: Step[T]) -> T:
        """Run a protocol step to completion on this topology's stores."""
        if not self.asynchronous:
            return drive(step)
        process = Process(step, self.settle)
        while not process.done:
            process.step()
        return process.result

    def space_of(self, node: int) -> Space:
        """The namespace node ``node`` uses."""
        return self.spaces[node == self.alias]

    def namespace_of(self, node: int) -> str:
        """The namespace of node ``node``'s cache."""
        return self.space_of(node).keys.namespace

    def store_of(self, node: int) -> int:
        """The value store node ``node`` reads and writes (default: the only one)."""
        return 0

    def fence_table(self, names: list[str]) -> list[list[Version | None]]:
        """The current fence of every version name in ``names``, as each node sees it,
        read without side effects (one list per node, in node order)."""
        return [[self.fence(node, name) for name in names] for node in range(len(self.nodes))]

    def raw_many(self, store: int, storage_keys: list[str]) -> list[bytes | None]:
        """The bytes under each of ``storage_keys`` in value store ``store``."""
        return [self.raw(store, name) for name in storage_keys]

    @abstractmethod
    def options(self, node: int) -> cascache.Options[Row]:
        """The options of cache node ``node``."""

    @abstractmethod
    def fence(self, node: int, version_key: str) -> Version | None:
        """The current fence as node ``node`` sees it, read without side effects."""

    @abstractmethod
    def value_stores(self) -> int:
        """How many separate value stores there are."""

    def readers(self, store: int) -> list[int]:
        """The nodes that serve entries from value store ``store``."""
        return [node for node in range(len(self.nodes)) if self.store_of(node) == store]

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

    def garble_version(self, version_key: str, how: str) -> None:
        """Leave something that is not a fence at one key's version key (``how``: one of
        ``machine.GARBLES``). An in-process version store holds only fences, so there it
        is a loss."""
        self.lose_version(version_key)

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
            if self.asynchronous:
                # What AsyncCAS.aclose does: await an asyncio store's aclose.
                self.settle(cascache.aio.AsyncCAS(node.core).aclose())
            else:
                node.close()


class Local(Topology):
    """One process: every node shares one in-process value store and version store."""

    name = "local"

    def __init__(self, nodes: int, core: CoreFactory, max_versions: int = 64) -> None:
        self.provider = cascache.MemoryProvider(max_cost=1 << 20, clock=self._clock)
        self.gens = cascache.LocalGenStore(max_keys=max_versions)
        super().__init__(nodes, core)

    def options(self, node: int) -> cascache.Options[Row]:
        return cascache.Options(
            namespace=self.namespace_of(node),
            provider=self.provider,
            codec=ROW_CODEC,
            gen_store=self.gens,
            default_ttl=ENTRY_TTL,
        )

    def fence(self, node: int, version_key: str) -> Version | None:
        return self.gens.peek(version_key)

    def fence_table(self, names: list[str]) -> list[list[Version | None]]:
        row = [self.gens.peek(name) for name in names]
        return [row] * len(self.nodes)

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


class LocalRecords(Topology):
    """One process, one :class:`cascache.LocalStore`: each key's frame and fence in one
    record, read, written and invalidated in one atomic step (effects on the ``redis``
    target, the label of every one-step effect over value and version together).

    A ``LocalStore`` serves one namespace, so the alias node has a store of its own
    (value store 1): the two namespaces share no store here, and the alias check only
    shows that neither reads the other's records.
    """

    name = "local-store"

    def __init__(self, nodes: int, core: CoreFactory) -> None:
        # Large enough that the model's rows never evict on their own: eviction is a fault.
        self.stores = [cascache.LocalStore(max_bytes=1 << 20, clock=self._clock) for _ in range(2)]
        super().__init__(nodes, core)

    def options(self, node: int) -> cascache.Options[Row]:
        return cascache.Options(
            namespace=self.namespace_of(node),
            provider=self.stores[self.store_of(node)],
            codec=ROW_CODEC,
            default_ttl=ENTRY_TTL,
        )

    def store_of(self, node: int) -> int:
        return int(node == self.alias)

    def fence(self, node: int, version_key: str) -> Version | None:
        return self.stores[self.store_of(node)].peek(version_key)

    def value_stores(self) -> int:
        return 2

    def raw(self, store: int, storage_key: str) -> bytes | None:
        return self.stores[store].get(storage_key)

    def put_raw(self, store: int, storage_key: str, data: bytes) -> None:
        self.stores[store].set(storage_key, data, len(data), ENTRY_TTL)

    def evict(self, store: int, storage_key: str) -> None:
        self.stores[store].delete(storage_key)

    def lose_version(self, version_key: str) -> None:
        for store in self.stores:
            store.forget(version_key)

    def lose_all_versions(self) -> None:
        for store in self.stores:
            store.clear_versions()


class Awaited:
    """A ``LocalStore`` behind coroutine methods, for :class:`AsyncLocalRecords`: every
    store call is an awaitable that yields to the event loop once before it runs, as an
    asyncio client's call does. Test scaffolding for the model's asyncio path, not a store
    anyone should use (a ``LocalStore`` never blocks)."""

    def __init__(self, store: cascache.LocalStore) -> None:
        self.store = store

    async def get(self, key: str) -> bytes | None:
        await asyncio.sleep(0)
        return self.store.get(key)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        await asyncio.sleep(0)
        return self.store.get_many(keys)

    async def set(self, key: str, value: bytes, cost: int, ttl: float | None) -> bool:
        await asyncio.sleep(0)
        return self.store.set(key, value, cost, ttl)

    async def add(self, key: str, value: bytes, cost: int, ttl: float | None) -> bool:
        await asyncio.sleep(0)
        return self.store.add(key, value, cost, ttl)

    async def delete(self, key: str) -> None:
        await asyncio.sleep(0)
        self.store.delete(key)

    async def delete_many(self, keys: Sequence[str]) -> None:
        await asyncio.sleep(0)
        self.store.delete_many(keys)

    async def snapshot(self, key: str) -> Version:
        await asyncio.sleep(0)
        return self.store.snapshot(key)

    async def snapshot_many(self, keys: Sequence[str]) -> list[Version]:
        await asyncio.sleep(0)
        return self.store.snapshot_many(keys)

    async def current(self, key: str) -> Version | None:
        await asyncio.sleep(0)
        return self.store.current(key)

    async def current_many(self, keys: Sequence[str]) -> list[Version | None]:
        await asyncio.sleep(0)
        return self.store.current_many(keys)

    async def advance(self, key: str) -> Version:
        await asyncio.sleep(0)
        return self.store.advance(key)

    async def read(self, key: CacheKey) -> tuple[bytes | None, Version | None]:
        await asyncio.sleep(0)
        return self.store.read(key)

    async def read_many(
        self, keys: Sequence[CacheKey]
    ) -> list[tuple[bytes | None, Version | None]]:
        await asyncio.sleep(0)
        return self.store.read_many(keys)

    async def read_batch(
        self, name: str, keys: Sequence[CacheKey]
    ) -> tuple[bytes | None, list[Version | None]]:
        await asyncio.sleep(0)
        return self.store.read_batch(name, keys)

    async def write_if_version(
        self, key: CacheKey, frame: bytes, version: Version, ttl: float | None
    ) -> bool | None:
        await asyncio.sleep(0)
        return self.store.write_if_version(key, frame, version, ttl)

    async def invalidate(self, key: CacheKey) -> None:
        await asyncio.sleep(0)
        self.store.invalidate(key)

    def close(self) -> None:
        self.store.close()


class _OnLoop:
    """An event loop of the topology's own, on which :meth:`settle` completes each
    awaitable effect: the model steps one awaited store call at a time (and a
    cancellation fault cancels an operation at an await), so the protocol's effects must
    each be one store call whose result the driver awaits. Mixed into a topology."""

    asynchronous = True

    def _start_loop(self) -> None:
        self.loop = asyncio.new_event_loop()

    def settle(self, pending: Awaitable[object]) -> object:
        return self.loop.run_until_complete(pending)

    def _stop_loop(self, *closing: Callable[[], Awaitable[None]]) -> None:
        try:
            for close in closing:
                self.loop.run_until_complete(close())
        finally:
            self.loop.close()


class AsyncLocalRecords(_OnLoop, LocalRecords):
    """``local-store`` with every store call awaited on the topology's event loop."""

    name = "async-local-store"

    def __init__(self, nodes: int, core: CoreFactory) -> None:
        self._start_loop()
        super().__init__(nodes, core)

    def options(self, node: int) -> cascache.Options[Row]:
        store = self.stores[self.store_of(node)]
        # cascache.new binds a LocalStore it is given; behind the adapter, bind it here.
        store.bind(self.space_of(node).keys)
        awaited = Awaited(store)
        return cascache.Options(
            namespace=self.namespace_of(node),
            provider=cast(Provider, awaited),
            codec=ROW_CODEC,
            default_ttl=ENTRY_TTL,
            gen_store=cast(GenStore, awaited),
            key_reader=cast(KeyReader, awaited),
            key_writer=cast(KeyWriter, awaited),
            key_invalidator=cast(KeyInvalidator, awaited),
        )

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._stop_loop()


class PerNodeLocalVersions(Local):
    """Negative control: shared values, but each node keeps its *own* version store.

    Nothing tells node B that node A invalidated a key, so B keeps serving the old entry.
    The model must catch this; if it did not, its checks would be vacuous.
    """

    name = "per-node-local-versions"

    def __init__(self, nodes: int, core: CoreFactory, max_versions: int = 64) -> None:
        # One per node, the alias node included.
        self.node_gens = [cascache.LocalGenStore(max_keys=max_versions) for _ in range(nodes + 1)]
        super().__init__(nodes, core, max_versions)

    def options(self, node: int) -> cascache.Options[Row]:
        return cascache.Options(
            namespace=self.namespace_of(node),
            provider=self.provider,
            codec=ROW_CODEC,
            gen_store=self.node_gens[node],
            default_ttl=ENTRY_TTL,
        )

    def fence(self, node: int, version_key: str) -> Version | None:
        return self.node_gens[node].peek(version_key)

    def fence_table(self, names: list[str]) -> list[list[Version | None]]:
        return [[gens.peek(name) for name in names] for gens in self.node_gens]

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
        # MGET: a version key of another type (garble_version) reads as absent.
        [raw] = self.client.mget([version_key])
        if not isinstance(raw, bytes) or len(raw) != FENCE_SIZE:
            return None
        return Version.from_bytes(raw)

    def fence_table(self, names: list[str]) -> list[list[Version | None]]:
        row: list[Version | None] = []
        from cascache.redis.scripts import mget

        # The library's MGET: one per hash slot on a cluster, where the names span slots.
        for raw in mget(self.client, names):
            valid = isinstance(raw, bytes) and len(raw) == FENCE_SIZE
            row.append(Version.from_bytes(raw) if valid and isinstance(raw, bytes) else None)
        return [row] * len(self.nodes)

    def lose_version(self, version_key: str) -> None:
        self.client.delete(version_key)

    def garble_version(self, version_key: str, how: str) -> None:
        self.client.delete(version_key)
        if how == "a list":
            self.client.rpush(version_key, b"x")
        elif how == "a hash":
            self.client.hset(version_key, "f", "v")
        else:
            self.client.set(version_key, b"7 bytes" if how == "7 bytes" else b"")

    def _ours(self, kind: str | None = None) -> list[str]:
        """This example's storage names of ``kind`` (``None``: all), in both namespaces;
        the patterns come from the production key derivation."""
        return [
            k.decode()
            for space in self.spaces
            for k in self.client.scan_iter(match=space.keys.pattern(kind), count=1000)
        ]

    def lose_all_versions(self) -> None:
        for name in self._ours("version"):
            self.client.delete(name)

    def close(self) -> None:
        super().close()
        for name in self._ours():
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

    def options(self, node: int) -> cascache.Options[Row]:
        import cascache.redis

        return cascache.Options(
            namespace=self.namespace_of(node),
            provider=self.providers[self.store_of(node)],
            codec=ROW_CODEC,
            gen_store=cascache.redis.new_gen_store(self.client),
            default_ttl=ENTRY_TTL,
        )

    def value_stores(self) -> int:
        return len(self.providers)

    def store_of(self, node: int) -> int:
        # The alias node shares node 0's value store (see the module doc).
        return 0 if node == self.alias else node

    def raw(self, store: int, storage_key: str) -> bytes | None:
        return self.providers[store].get(storage_key)

    def put_raw(self, store: int, storage_key: str, data: bytes) -> None:
        self.providers[store].set(storage_key, data, len(data), ENTRY_TTL)

    def evict(self, store: int, storage_key: str) -> None:
        self.providers[store].delete(storage_key)


class AllInRedis(_OnRedis):
    """``cascache.redis.new``: values and versions in one Redis, single-key steps in Lua."""

    name = "redis"
    outage_targets = frozenset({"versions", "redis", "values"})
    """Values and versions live in one server: an outage takes both."""

    def options(self, node: int) -> cascache.Options[Row]:
        import cascache.redis

        # Exactly what cascache.redis.new builds, so variants can swap one piece.
        return cascache.redis.cache_options(
            cascache.redis.Options(
                namespace=self.namespace_of(node),
                client=self.client,
                codec=ROW_CODEC,
                default_ttl=ENTRY_TTL,
            )
        )

    def value_stores(self) -> int:
        return 1

    def raw(self, store: int, storage_key: str) -> bytes | None:
        data = self.client.get(storage_key)
        assert data is None or isinstance(data, bytes)
        return data

    def raw_many(self, store: int, storage_keys: list[str]) -> list[bytes | None]:
        found: list[bytes | None] = []
        from cascache.redis.scripts import mget

        for data in mget(self.client, storage_keys):
            assert data is None or isinstance(data, bytes)
            found.append(data)
        return found

    def put_raw(self, store: int, storage_key: str, data: bytes) -> None:
        self.client.set(storage_key, data, keepttl=True)

    def evict(self, store: int, storage_key: str) -> None:
        self.client.delete(storage_key)


AsyncClient: TypeAlias = "redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster"


def async_twin(client: redis.Redis | redis.cluster.RedisCluster) -> AsyncClient:
    """An asyncio client on the server ``client`` talks to (the same fakeredis server, or
    the same address), for the topologies whose nodes use :mod:`cascache.redis.aio`
    while the model inspects and injects faults through the sync client."""
    import fakeredis
    import redis.asyncio
    import redis.asyncio.cluster
    import redis.cluster

    kwargs = client.get_connection_kwargs()
    if isinstance(client, fakeredis.FakeRedis):
        return fakeredis.FakeAsyncRedis(server=kwargs["server"])
    if isinstance(client, redis.cluster.RedisCluster):
        node = client.get_default_node()  # type: ignore[no-untyped-call]
        return redis.asyncio.cluster.RedisCluster(host=node.host, port=node.port)
    return redis.asyncio.Redis(
        host=kwargs["host"],
        port=kwargs["port"],
        db=kwargs.get("db", 0),
        username=kwargs.get("username"),
        password=kwargs.get("password"),
    )


class _Awaiting(_OnLoop):
    """A Redis topology whose nodes talk to the server through an asyncio client, while
    the model inspects it and injects faults through the sync one."""

    client: redis.Redis | redis.cluster.RedisCluster

    def __init__(self, nodes: int, core: CoreFactory, connect: Connect) -> None:
        self.client = connect()
        self._start_loop()
        self.aclient = async_twin(self.client)
        super().__init__(nodes, core, lambda: self.client)  # type: ignore[call-arg]

    def close(self) -> None:
        try:
            super().close()  # type: ignore[misc]
        finally:
            self._stop_loop(self.aclient.aclose)


class AsyncAllInRedis(_Awaiting, AllInRedis):
    """``cascache.redis.aio.new``: ``redis`` on an asyncio client, each awaited command
    or script one effect, stepped on the topology's event loop."""

    name = "async-redis"

    def options(self, node: int) -> cascache.Options[Row]:
        import cascache.aio
        import cascache.redis.aio

        # Exactly what cascache.redis.aio.new builds, so variants can swap one piece.
        return cascache.aio.core_options(
            cascache.redis.aio.cache_options(
                cascache.redis.aio.Options(
                    namespace=self.namespace_of(node),
                    client=self.aclient,
                    codec=ROW_CODEC,
                    default_ttl=ENTRY_TTL,
                )
            )
        )


class AsyncSharedVersions(_Awaiting, SharedVersions):
    """``shared-versions`` with the versions on an asyncio client
    (``cascache.redis.aio.new_gen_store``) and each node's values in process."""

    name = "async-shared-versions"

    def options(self, node: int) -> cascache.Options[Row]:
        import cascache.aio
        import cascache.redis.aio

        return cascache.aio.core_options(
            cascache.aio.AsyncOptions(
                namespace=self.namespace_of(node),
                provider=self.providers[self.store_of(node)],
                codec=ROW_CODEC,
                gen_store=cascache.redis.aio.new_gen_store(self.aclient),
                default_ttl=ENTRY_TTL,
            )
        )


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


LAG = 3
"""How many rules the replica of the failover topologies lags behind its primary: a
window of several rules in which a promotion loses acknowledged writes (one rule made the
hazard so narrow that the full swarm met it about once in thousands of examples)."""


class _Durable:
    """State that can fall back to an older copy of the server: a replica that a failover
    promotes, or the snapshot a restart loads. Mixed into a Redis topology.

    The copy holds the server's state as it was :data:`LAG` rules ago, or as of its last
    full sync (:meth:`replicate`), whichever is newer; :meth:`failover` makes the copy the
    server's state, so every write since the last sync, acknowledged or not, is gone.
    """

    client: redis.Redis | redis.cluster.RedisCluster
    _ours: Callable[..., list[str]]

    def _start_copy(self) -> None:
        self.syncs = itertools.count()
        # (state, sequence number): the copy never moves back to an older sync.
        self.replica: tuple[dict[str, tuple[bytes, int]], int] = ({}, -1)
        self.lagging: collections.deque[tuple[dict[str, tuple[bytes, int]], int]] = (
            collections.deque()
        )

    def _snapshot(self) -> tuple[dict[str, tuple[bytes, int]], int]:
        names = self._ours()
        pipe = self.client.pipeline()
        for name in names:
            pipe.get(name)
            pipe.pttl(name)
        # A key of another type (garble_version) fails its GET: it is not copied here.
        replies = pipe.execute(raise_on_error=False)
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
        """The copy is :data:`LAG` rules behind the server."""
        self.lagging.append(self._snapshot())
        if len(self.lagging) > LAG:
            self._adopt(self.lagging.popleft())

    def replicate(self) -> None:
        """The copy catches up with the server now (a full sync of this example's keys)."""
        self._adopt(self._snapshot())

    def failover(self) -> None:
        """The server's state becomes the copy's."""
        for name in self._ours():
            self.client.delete(name)
        for name, (data, ttl) in self.replica[0].items():
            self.client.set(name, data, px=ttl if ttl > 0 else None)
        self.lagging.clear()


class RedisFailover(_Durable, AllInRedis):
    """``cascache.redis.new`` on a primary whose replica lags, and may be promoted.

    Replication is asynchronous: the replica is the :class:`_Durable` copy, :data:`LAG`
    rules behind or as of its last full sync (the ``replicate`` injection). A ``failover``
    injection promotes it. Without waiting for the replica, an acknowledged invalidate
    can be lost and an old fence becomes current again: the model must catch that (a
    negative control). With ``wait=True`` every invalidate returns only after the replica
    has it.
    """

    name = "redis-failover"

    def __init__(
        self, nodes: int, core: CoreFactory, connect: Connect, *, wait: bool = False
    ) -> None:
        self.wait = wait
        self._start_copy()
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


class RedisRestart(RedisFailover):
    """``cascache.redis.new`` on a server with RDB snapshots (a default ``redis.conf``),
    killed and restarted from its directory.

    The :class:`_Durable` copy is the last snapshot: taken every :data:`LAG` rules (like
    ``save 60 1``) and by the ``save`` injection (``BGSAVE``); the ``restart`` injection
    loads it, so every write since, acknowledged or not, is gone (AOF with
    ``appendfsync everysec`` loses up to a second the same way). A negative control. With
    ``wait=True`` every invalidate returns only once it is on disk (``WAITAOF 1 0`` on
    Redis 7.2+, or ``appendfsync always``), the mitigation, which must hold. Persistence
    off is the other mitigation: a restart then loses everything, which is the
    ``lose_all_versions`` fault plus evictions, safe on every topology.
    """

    name = "redis-restart"

    def __init__(
        self, nodes: int, core: CoreFactory, connect: Connect, *, wait: bool = False
    ) -> None:
        super().__init__(nodes, core, connect, wait=wait)
        self.name = "redis-restart-waitaof" if wait else "redis-restart"


class SharedVersionsRestart(_Durable, SharedVersions):
    """Shared versions on a Redis with RDB snapshots that is killed and restarted: the
    versions fall back to the last snapshot while every node keeps its in-process values,
    so an entry stamped with a fence an acknowledged invalidate replaced becomes current
    again. A negative control (the same hole as :class:`RedisRestart`, reached through a
    node's local entry)."""

    name = "shared-versions-restart"

    def __init__(self, nodes: int, core: CoreFactory, connect: Connect) -> None:
        self._start_copy()
        super().__init__(nodes, core, connect)
