"""Fences: the opaque versions that decide whether a cached value is still current.

A fence is 128 random bits. Fences are compared for equality only: there is no order and
no counter inside, so losing a key's version state can never make an old fence current
again (an integer generation restarting at zero would, which is the ABA hazard the
design rules out).
"""

from __future__ import annotations

import secrets
from os import urandom
from typing import Final

FENCE_SIZE: Final = 16


class Version:
    """An opaque, unforgeable version of one key, handed out by ``snapshot_version``.

    Compare versions with ``==`` only. A version store implementation builds one with
    :meth:`from_bytes` and stores :meth:`to_bytes`; application code never needs to.
    """

    __slots__ = ("_raw",)

    def __init__(self, raw: bytes) -> None:
        if not isinstance(raw, bytes) or len(raw) != FENCE_SIZE:
            raise ValueError(f"a version is exactly {FENCE_SIZE} bytes, got {raw!r}")
        self._raw = raw

    @classmethod
    def from_bytes(cls, raw: bytes) -> Version:
        """Rebuild a version from the bytes a store kept (:meth:`to_bytes`)."""
        return cls(bytes(raw))

    def matches(self, raw: bytes) -> bool:
        """Whether ``raw``, a fence as a frame stores it, is this version.

        Reads compare a frame's stamp this way without building a ``Version`` for it.
        """
        return secrets.compare_digest(self._raw, raw)

    def to_bytes(self) -> bytes:
        """The 16 bytes a store keeps for this version."""
        return self._raw

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return secrets.compare_digest(self._raw, other._raw)

    def __hash__(self) -> int:
        return hash(self._raw)

    def __repr__(self) -> str:
        return f"Version({self.short()})"

    def short(self) -> str:
        """The first 8 hex digits, for traces and logs."""
        return self._raw.hex()[:8]


def new_fence() -> Version:
    """A fresh fence: 128 bits from the operating system's CSPRNG."""
    # ``os.urandom`` is what ``secrets.token_bytes`` calls, and its bytes need none of the
    # constructor's checks: every fill of a new key and every invalidate makes a fence.
    fence = Version.__new__(Version)
    fence._raw = urandom(FENCE_SIZE)
    return fence
