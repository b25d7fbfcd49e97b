"""The value store interface ("provider") that a cache keeps its encoded entries in.

A provider stores opaque bytes under string keys. It never decides freshness: every
entry carries the fence it was written under, and the cache checks that fence against the
version store on every read. That is why a provider may evict, expire or refuse anything
at any time without risking a stale read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable


@runtime_checkable
class Provider(Protocol):
    """Where encoded entries live. Implementations must be safe to call from threads."""

    def get(self, key: str) -> bytes | None:
        """The bytes stored under ``key``, or ``None`` when absent or expired."""
        ...

    def set(self, key: str, value: bytes, cost: int, ttl: float | None) -> bool:
        """Store ``value``; ``ttl`` in seconds (``None``: no expiry).

        Returns ``False`` when the store declined the entry (admission policy, too large),
        which the cache reports as ``provider_rejected``.
        """
        ...

    def delete(self, key: str) -> None:
        """Remove ``key`` if present."""
        ...

    def close(self) -> None:
        """Release resources. Must be idempotent."""
        ...


@runtime_checkable
class ManyProvider(Provider, Protocol):
    """A provider that reads several keys in one interaction (one round trip)."""

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The bytes under each key, in order; ``None`` where absent."""
        ...


@runtime_checkable
class BulkDeleteProvider(Provider, Protocol):
    """A provider that deletes several keys in one interaction (one round trip)."""

    def delete_many(self, keys: Sequence[str]) -> None:
        """Remove every key in ``keys`` that is present."""
        ...


@runtime_checkable
class AddProvider(Provider, Protocol):
    """A provider that can store a key only if it is absent, in one atomic step.

    Required by ``batch_read_seed="if_missing"``.
    """

    def add(self, key: str, value: bytes, cost: int, ttl: float | None) -> bool:
        """Store ``value`` only if ``key`` is absent; ``True`` if it was stored."""
        ...


@runtime_checkable
class AsyncProvider(Protocol):
    """A value store for the asyncio API (:mod:`cascache.aio`): the :class:`Provider`
    operations as coroutines, with the many-key reads and deletes required (the sync
    fallbacks that loop over single calls would not await them), closed by ``aclose``.

    ``add`` (store only if absent, for ``batch_read_seed="if_missing"``) is optional, as
    in :class:`AddProvider`.
    """

    async def get(self, key: str) -> bytes | None:
        """The bytes stored under ``key``, or ``None`` when absent or expired."""
        ...

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The bytes under each key, in order; ``None`` where absent."""
        ...

    async def set(self, key: str, value: bytes, cost: int, ttl: float | None) -> bool:
        """Store ``value``; ``False`` when the store declined it (see :meth:`Provider.set`)."""
        ...

    async def delete(self, key: str) -> None:
        """Remove ``key`` if present."""
        ...

    async def delete_many(self, keys: Sequence[str]) -> None:
        """Remove every key in ``keys`` that is present."""
        ...

    async def aclose(self) -> None:
        """Release resources. Must be idempotent."""
        ...
