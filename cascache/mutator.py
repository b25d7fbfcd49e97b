"""Single-key fast paths: a store that reads, writes or invalidates value and version together.

The generic protocol touches the value store and the version store in separate steps
(check, then write; advance, then delete) and stays safe because entries carry their
fence. When both live in one server, these interfaces let the cache do each single-key
operation in one atomic server-side step instead (``cascache.redis.new_key_mutator``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from cascache.fence import Version
from cascache.keys import CacheKey


@runtime_checkable
class KeyReader(Protocol):
    """Reads a key's stored frame and its current fence in one interaction."""

    def read(self, key: CacheKey) -> tuple[bytes | None, Version | None]:
        """The stored frame (or ``None``) and the current fence (or ``None``)."""
        ...

    def read_many(self, keys: Sequence[CacheKey]) -> list[tuple[bytes | None, Version | None]]:
        """``read`` for each key, in order, in as few round trips as the store allows."""
        ...


@runtime_checkable
class KeyWriter(Protocol):
    """Stores a frame only if the key's current fence equals ``version``, atomically."""

    def write_if_version(
        self, key: CacheKey, frame: bytes, version: Version, ttl: float | None
    ) -> bool | None:
        """``True`` if stored; ``False`` if the fence differed or was missing; ``None`` if
        the fence matched but the store refused the frame (too large), which the cache
        reports as ``provider_rejected``."""
        ...


@runtime_checkable
class KeyInvalidator(Protocol):
    """Advances a key's fence and deletes its entry in one atomic step."""

    def invalidate(self, key: CacheKey) -> None:
        """Install a fresh fence and delete the entry; raise if not applied."""
        ...


@runtime_checkable
class BatchReader(Protocol):
    """Reads a batch entry and the current fences of its members in one interaction."""

    def read_batch(
        self, name: str, keys: Sequence[CacheKey]
    ) -> tuple[bytes | None, list[Version | None] | None]:
        """The batch entry stored under ``name`` and the current fence of each key, in order,
        or ``None`` for the fences when reading them up front would not save a round trip."""
        ...


@runtime_checkable
class AsyncKeyReader(Protocol):
    """:class:`KeyReader` for the asyncio API: the same reads as coroutines."""

    async def read(self, key: CacheKey) -> tuple[bytes | None, Version | None]:
        """The stored frame (or ``None``) and the current fence (or ``None``)."""
        ...

    async def read_many(
        self, keys: Sequence[CacheKey]
    ) -> list[tuple[bytes | None, Version | None]]:
        """``read`` for each key, in order, in as few round trips as the store allows."""
        ...


@runtime_checkable
class AsyncKeyWriter(Protocol):
    """:class:`KeyWriter` for the asyncio API."""

    async def write_if_version(
        self, key: CacheKey, frame: bytes, version: Version, ttl: float | None
    ) -> bool | None:
        """As :meth:`KeyWriter.write_if_version`."""
        ...


@runtime_checkable
class AsyncKeyInvalidator(Protocol):
    """:class:`KeyInvalidator` for the asyncio API."""

    async def invalidate(self, key: CacheKey) -> None:
        """Install a fresh fence and delete the entry; raise if not applied."""
        ...
