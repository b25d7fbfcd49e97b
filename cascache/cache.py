"""``CAS``: the synchronous front end, and ``new``, which builds one.

Every method validates its arguments and then drives the matching protocol step of
:class:`cascache.batch.Core` to completion. The protocol itself lives in ``core.py`` and
``batch.py``; nothing here decides freshness.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Generic, TypeVar

from cascache.batch import Core
from cascache.effects import drive
from cascache.errors import ConfigError
from cascache.fence import Version
from cascache.options import STORES, TTL, Options
from cascache.results import BatchWriteResult, Hit, VersionedValue, WriteResult

V = TypeVar("V")


class CAS(Generic[V]):
    """A compare-and-swap cache of values of type ``V``. Build one with ``cascache.new``.

    The contract: after ``invalidate(key)`` returns, no ``get``/``get_many`` that starts
    later serves a value loaded before the invalidate started, and no filler that
    snapshotted before it can store.
    """

    def __init__(self, core: Core[V]) -> None:
        self.core = core
        """The protocol core; drive its steps yourself to interleave operations (tests)."""

    def enabled(self) -> bool:
        """``False`` when built with ``disabled=True`` (every read misses, writes are no-ops)."""
        return not self.core.disabled

    def close(self) -> None:
        """Close the value store and the version store. Idempotent.

        Every later operation raises ``ClosedError``, on every topology (a Redis client
        the cache does not own stays open for its owner).
        """
        self.core.close()

    def __enter__(self) -> CAS[V]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def get(self, key: str) -> Hit[V] | None:
        """``Hit(value)`` if ``key`` holds a value stamped with its current version, else ``None``.

        Raises ``OpError`` if the value store fails. With separate stores, version-store
        trouble is a miss; with ``cascache.redis.new`` one Redis read serves both, and its
        failure raises ``OpError``.
        """
        return drive(self.core.lookup(key))[0]

    def snapshot_version(self, key: str) -> Version:
        """The key's current version (created if missing). Call it *before* loading the source.

        Raises ``OpError`` if the version store fails.
        """
        return drive(self.core.snapshot_version(key))

    def set_if_version(
        self, key: str, value: V, version: Version, ttl: TTL | None = None
    ) -> WriteResult:
        """Store ``value`` only if ``version`` is still the key's current version.

        ``ttl``: seconds or ``timedelta``; ``None`` uses ``default_ttl``. Raises ``OpError``
        if the value cannot be encoded or the value store fails.
        """
        return drive(
            self.core.set_if_version(key, value, version, self.core.ttl("set_if_version", ttl, key))
        )

    def invalidate(self, key: str) -> None:
        """Make every older snapshot and entry of ``key`` lose. Call after each source write.

        Raises ``InvalidateError`` if the version could not be advanced: retry then.
        """
        drive(self.core.invalidate(key))

    def get_or_load(self, key: str, loader: Callable[[], V], ttl: TTL | None = None) -> V:
        """The cached value, or ``loader()`` stored under the version taken before it ran."""
        return drive(self.core.get_or_load(key, loader, self.core.ttl("get_or_load", ttl, key)))

    def get_many(self, keys: Iterable[str]) -> tuple[dict[str, V], list[str]]:
        """``(values, missing)``: the servable values, and the keys that missed, in order."""
        return drive(self.core.get_many(keys))

    def snapshot_versions(self, keys: Iterable[str]) -> dict[str, Version]:
        """``snapshot_version`` for several keys in one version-store interaction."""
        return drive(self.core.snapshot_versions(keys))

    def set_if_versions(
        self, items: Iterable[VersionedValue[V]], ttl: TTL | None = None
    ) -> BatchWriteResult:
        """Store a batch entry if every item's version is current, then seed single entries.

        A key given twice raises ``ValueError``.
        """
        return drive(self.core.set_if_versions(items, self.core.ttl("set_if_versions", ttl)))

    def get_many_or_load(
        self,
        keys: Iterable[str],
        loader: Callable[[list[str]], Mapping[str, V]],
        ttl: TTL | None = None,
    ) -> dict[str, V]:
        """Cached values plus ``loader(missing)``, the loaded ones stored conditionally."""
        return drive(
            self.core.get_many_or_load(keys, loader, self.core.ttl("get_many_or_load", ttl))
        )


def new(options: Options[V]) -> CAS[V]:
    """Build a cache. Raises ``ConfigError`` naming the first thing wrong with ``options``."""
    for name in STORES:
        store = getattr(options, name, None)
        if store is not None and is_async_store(store):
            raise ConfigError(
                f"cascache.new: Options.{name} is {type(store).__name__}, an asyncio store, "
                "which the sync API cannot await (cascache.aio is the asyncio API)"
            )
    return CAS(Core(options))


def is_async_store(store: object) -> bool:
    """Whether ``store``'s operations are coroutine functions (an asyncio store)."""
    return any(
        inspect.iscoroutinefunction(getattr(store, method, None))
        for method in ("get", "snapshot", "read", "write_if_version", "invalidate")
    )
