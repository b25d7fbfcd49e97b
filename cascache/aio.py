"""The asyncio front end: ``AsyncCAS``, the same protocol steps awaited.

Every method drives the matching step of :class:`cascache.batch.Core` with
:func:`cascache.effects.adrive`, which runs each effect and awaits what it returns. The
steps are the ones the sync API and the model drive; only the driver differs, so nothing
here decides freshness.

Loaders may be plain functions or coroutine functions (``async def``): a load effect
that returns an awaitable is awaited. Stores are either in-process stores
(:class:`cascache.LocalStore`, :class:`cascache.MemoryProvider`,
:class:`cascache.LocalGenStore`), which never block the event loop and are called
directly, or asyncio stores (:class:`~cascache.provider.AsyncProvider`,
:class:`~cascache.genstore.AsyncGenStore` and the async key paths, such as the stores of
:mod:`cascache.redis.aio`), whose calls are awaited. The sync Redis stores of
:mod:`cascache.redis` would block the loop, so :func:`new` refuses them.

Cancellation is a fault: a task cancelled while an effect is in flight stops there
(the effect may or may not have taken place, as with a timeout), and nothing after it
runs. The protocol is built for exactly that: a fill cancelled before its conditional
store stores nothing, and an ``invalidate`` cancelled before its advance returned
guarantees nothing, so retry it, as after an ``InvalidateError``.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from types import TracebackType
from typing import Generic, TypeVar, cast

from cascache.batch import Core
from cascache.cache import is_async_store
from cascache.effects import adrive
from cascache.errors import ConfigError
from cascache.fence import Version
from cascache.genstore import AsyncGenStore, GenStore
from cascache.mutator import (
    AsyncKeyInvalidator,
    AsyncKeyReader,
    AsyncKeyWriter,
    KeyInvalidator,
    KeyReader,
    KeyWriter,
)
from cascache.options import STORES, TTL, Options, Settings, wrong_options
from cascache.provider import AsyncProvider, Provider
from cascache.results import BatchWriteResult, Hit, VersionedValue, WriteResult

V = TypeVar("V")

__all__ = ["AsyncCAS", "AsyncOptions", "core_options", "new"]


@dataclass(frozen=True, kw_only=True)
class AsyncOptions(Settings[V]):
    """What :func:`new` takes: :class:`cascache.Options` whose stores may also be asyncio
    stores (an in-process value store with versions in Redis, say:
    ``provider=cascache.LocalStore(), gen_store=cascache.redis.aio.new_gen_store(client)``).

    Attributes:
        provider: the value store: in-process, or an :class:`AsyncProvider`.
        gen_store: the version store (default: a private ``LocalGenStore``).
        key_reader, key_writer, key_invalidator: single-key atomic paths, sync
            in-process ones or asyncio ones.

    The rest as in :class:`cascache.options.Settings`.
    """

    provider: Provider | AsyncProvider
    gen_store: GenStore | AsyncGenStore | None = None
    key_reader: KeyReader | AsyncKeyReader | None = None
    key_writer: KeyWriter | AsyncKeyWriter | None = None
    key_invalidator: KeyInvalidator | AsyncKeyInvalidator | None = None


class AsyncCAS(Generic[V]):
    """A compare-and-swap cache for asyncio code. Build one with :func:`cascache.aio.new`.

    The same contract as :class:`cascache.CAS`: after ``await invalidate(key)`` returns,
    no ``get``/``get_many`` that starts later serves a value loaded before the invalidate
    started, and no filler that snapshotted before it can store.
    """

    def __init__(self, core: Core[V]) -> None:
        self.core = core
        """The protocol core (the same class the sync API and the model drive)."""
        core.awaiting = True

    def enabled(self) -> bool:
        """``False`` when built with ``disabled=True`` (every read misses, writes are no-ops)."""
        return not self.core.disabled

    async def aclose(self) -> None:
        """Close the value store and the version store (awaiting an asyncio store's
        ``aclose``). Idempotent; every later operation raises ``ClosedError``. Every store
        is closed even if one fails; the first failure is raised."""
        failure: Exception | None = None
        for store in self.core.shut():
            try:
                closing = getattr(store, "aclose", None)
                if closing is not None:
                    await closing()
                else:
                    store.close()
            except Exception as exc:
                failure = failure or exc
        if failure is not None:
            raise failure

    async def __aenter__(self) -> AsyncCAS[V]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def get(self, key: str) -> Hit[V] | None:
        """``Hit(value)`` if ``key`` holds a value stamped with its current version, else
        ``None`` (as :meth:`cascache.CAS.get`)."""
        return (await adrive(self.core.lookup(key)))[0]

    async def snapshot_version(self, key: str) -> Version:
        """The key's current version (created if missing); take it *before* loading."""
        return await adrive(self.core.snapshot_version(key))

    async def set_if_version(
        self, key: str, value: V, version: Version, ttl: TTL | None = None
    ) -> WriteResult:
        """Store ``value`` only if ``version`` is still the key's current version."""
        return await adrive(
            self.core.set_if_version(key, value, version, self.core.ttl("set_if_version", ttl, key))
        )

    async def invalidate(self, key: str) -> None:
        """Make every older snapshot and entry of ``key`` lose. Await it after each source
        write; raises ``InvalidateError`` if the version could not be advanced: retry then."""
        await adrive(self.core.invalidate(key))

    async def get_or_load(
        self,
        key: str,
        loader: Callable[[], V] | Callable[[], Awaitable[V]],
        ttl: TTL | None = None,
    ) -> V:
        """The cached value, or the loader's value stored under the version taken before it
        ran. ``loader`` may be a plain function or a coroutine function."""
        return await adrive(
            self.core.get_or_load(key, _as_plain(loader), self.core.ttl("get_or_load", ttl, key))
        )

    async def get_many(self, keys: Iterable[str]) -> tuple[dict[str, V], list[str]]:
        """``(values, missing)``: the servable values, and the keys that missed, in order."""
        return await adrive(self.core.get_many(keys))

    async def snapshot_versions(self, keys: Iterable[str]) -> dict[str, Version]:
        """``snapshot_version`` for several keys in one version-store interaction."""
        return await adrive(self.core.snapshot_versions(keys))

    async def set_if_versions(
        self, items: Iterable[VersionedValue[V]], ttl: TTL | None = None
    ) -> BatchWriteResult:
        """Store a batch entry if every item's version is current, then seed single entries."""
        return await adrive(self.core.set_if_versions(items, self.core.ttl("set_if_versions", ttl)))

    async def get_many_or_load(
        self,
        keys: Iterable[str],
        loader: Callable[[list[str]], Mapping[str, V]]
        | Callable[[list[str]], Awaitable[Mapping[str, V]]],
        ttl: TTL | None = None,
    ) -> dict[str, V]:
        """Cached values plus the loader's values for the missing keys, stored conditionally.
        ``loader`` may be a plain function or a coroutine function."""
        return await adrive(
            self.core.get_many_or_load(
                keys, _as_plain(loader), self.core.ttl("get_many_or_load", ttl)
            )
        )


def _as_plain(loader: Callable[..., object]) -> Callable[..., V]:
    # The core's steps are typed for the value a load effect is sent back; ``adrive``
    # awaits an awaitable before sending it, so both kinds of loader deliver a ``V``.
    return loader  # type: ignore[return-value]


def _blocking() -> tuple[type, ...]:
    # The sync Redis stores, if a caller has imported them (cascache.aio itself must not
    # import redis-py, an optional dependency).
    pieces = sys.modules.get("cascache.redis")
    if pieces is None:
        return ()
    return (pieces.RedisProvider, pieces.RedisGenStore, pieces.RedisKeyMutator)


_ASYNC_PROTOCOLS: dict[str, type] = {
    "provider": AsyncProvider,
    "gen_store": AsyncGenStore,
    "key_reader": AsyncKeyReader,
    "key_writer": AsyncKeyWriter,
    "key_invalidator": AsyncKeyInvalidator,
}


def core_options(options: AsyncOptions[V] | Options[V]) -> Options[V]:
    """The :class:`cascache.Options` the protocol core is built from. Raises
    ``ConfigError`` for a store that would block the event loop.

    The core's steps are typed for the stores' results; an asyncio store's call returns an
    awaitable of that result, which :func:`~cascache.effects.adrive` (and the model's
    :class:`~cascache.effects.Process`, given an event loop) awaits before the step sees
    it. So an asyncio store stands in for its sync protocol here, and only here.
    """
    if not isinstance(options, AsyncOptions | Options):
        raise wrong_options("cascache.aio.new", "cascache.aio.AsyncOptions", options)
    blocking = _blocking()
    for name in STORES:
        store = getattr(options, name, None)
        if isinstance(store, blocking):
            raise ConfigError(
                f"cascache.aio.new: Options.{name} is a {type(store).__name__}, whose calls "
                "block the event loop: build the asyncio Redis stores with "
                "cascache.redis.aio (new, new_gen_store, new_provider, new_key_mutator) "
                "on a redis.asyncio client"
            )
        wanted = _ASYNC_PROTOCOLS[name]
        if store is not None and is_async_store(store) and not isinstance(store, wanted):
            raise ConfigError(
                f"cascache.aio.new: Options.{name} is {type(store).__name__}, an asyncio "
                f"store that does not implement {wanted.__name__} (every method of "
                f"cascache.{wanted.__module__.rsplit('.', 1)[-1]}.{wanted.__name__}, "
                "closed by aclose)"
            )
    if isinstance(options, Options):
        return options
    return cast(
        Options[V],
        Options(**{field.name: getattr(options, field.name) for field in fields(options)}),
    )


def new(options: AsyncOptions[V] | Options[V]) -> AsyncCAS[V]:
    """Build an asyncio cache. Raises ``ConfigError`` naming the first thing wrong with
    ``options``, including a store that would block the event loop.

    ``cascache.aio.new(cascache.aio.AsyncOptions(namespace=..., provider=cascache.LocalStore(),
    codec=...))`` is the asyncio counterpart of the README's quick start; with versions in
    Redis, give ``gen_store=cascache.redis.aio.new_gen_store(client)``. For values and
    versions in Redis, :func:`cascache.redis.aio.new` builds the whole cache.
    """
    return AsyncCAS(Core(core_options(options)))
