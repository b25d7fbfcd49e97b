"""The asyncio front end: ``AsyncCAS``, the same protocol steps awaited.

Every method drives the matching step of :class:`cascache.batch.Core` with
:func:`cascache.effects.adrive`, which runs each effect and awaits what it returns. The
steps are the ones the sync API and the model drive; only the driver differs, so nothing
here decides freshness.

Loaders may be plain functions or coroutine functions (``async def``): a load effect
that returns an awaitable is awaited. Stores run on the event loop: the in-process
stores (:class:`cascache.LocalStore`, :class:`cascache.MemoryProvider`,
:class:`cascache.LocalGenStore`) never block it. The Redis stores of
:mod:`cascache.redis` do, so :func:`new` refuses them.

Cancellation is a fault: a task cancelled while an effect is in flight stops there
(the effect may or may not have taken place, as with a timeout), and nothing after it
runs. The protocol is built for exactly that: a fill cancelled before its conditional
store stores nothing, and an ``invalidate`` cancelled before its advance returned
guarantees nothing, so retry it, as after an ``InvalidateError``.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Generic, TypeVar

from cascache.batch import Core
from cascache.cache import is_async_store
from cascache.effects import adrive
from cascache.errors import ConfigError
from cascache.fence import Version
from cascache.options import STORES, TTL, Options
from cascache.results import BatchWriteResult, Hit, VersionedValue, WriteResult

V = TypeVar("V")

__all__ = ["AsyncCAS", "new"]


class AsyncCAS(Generic[V]):
    """A compare-and-swap cache for asyncio code. Build one with :func:`cascache.aio.new`.

    The same contract as :class:`cascache.CAS`: after ``await invalidate(key)`` returns,
    no ``get``/``get_many`` that starts later serves a value loaded before the invalidate
    started, and no filler that snapshotted before it can store.
    """

    def __init__(self, core: Core[V]) -> None:
        self.core = core
        """The protocol core (the same class the sync API and the model drive)."""

    def enabled(self) -> bool:
        """``False`` when built with ``disabled=True`` (every read misses, writes are no-ops)."""
        return not self.core.disabled

    async def aclose(self) -> None:
        """Close the value store and the version store. Idempotent; every later operation
        raises ``ClosedError``."""
        self.core.close()

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


def new(options: Options[V]) -> AsyncCAS[V]:
    """Build an asyncio cache on in-process stores. Raises ``ConfigError`` naming the first
    thing wrong with ``options``, including a store that would block the event loop.

    ``cascache.aio.new(cascache.Options(namespace=..., provider=cascache.LocalStore(),
    codec=...))`` is the asyncio counterpart of the README's quick start.
    """
    blocking = _blocking()
    for name in STORES:
        store = getattr(options, name, None)
        kind = type(store).__name__
        if isinstance(store, blocking):
            raise ConfigError(
                f"cascache.aio.new: Options.{name} is a {kind}, whose calls block the event "
                "loop; the asyncio API runs on in-process stores (LocalStore, "
                "MemoryProvider, LocalGenStore) so far"
            )
        if store is not None and is_async_store(store):
            raise ConfigError(
                f"cascache.aio.new: Options.{name} is {kind}, an asyncio store; the asyncio "
                "API runs on in-process stores (LocalStore, MemoryProvider, LocalGenStore) "
                "so far"
            )
    return AsyncCAS(Core(options))
