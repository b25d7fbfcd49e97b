"""Fences: the opaque versions that decide whether a cached value is still current.

A fence is 128 random bits. Fences are compared for equality only: there is no order and
no counter inside, so losing a key's version state can never make an old fence current
again (an integer generation restarting at zero would, which is the ABA hazard the
design rules out).
"""

from __future__ import annotations

import os
import secrets
from typing import Final

FENCE_SIZE: Final = 16

_BATCH: Final = 64
"""Fences drawn from the operating system at once: one ``os.urandom`` call is a system
call, which costs more than the rest of making a fence."""


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


_spare: list[bytes] = []
"""Fences drawn and not handed out yet. ``list.pop`` is atomic, so two threads never take
the same one; two that find it empty both draw, which only wastes a few."""


def _draw() -> bytes:
    pool = os.urandom(FENCE_SIZE * _BATCH)
    _spare.extend(pool[at : at + FENCE_SIZE] for at in range(FENCE_SIZE, len(pool), FENCE_SIZE))
    return pool[:FENCE_SIZE]


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork either
    # A forked child starts with its parent's spare fences: both would hand out the same.
    os.register_at_fork(after_in_child=_spare.clear)


def new_fence() -> Version:
    """A fresh fence: 128 bits from the operating system's CSPRNG."""
    # ``os.urandom`` is what ``secrets.token_bytes`` calls, and its bytes need none of the
    # constructor's checks: every fill of a new key and every invalidate makes a fence.
    try:
        raw = _spare.pop()
    except IndexError:
        raw = _draw()
    fence = Version.__new__(Version)
    fence._raw = raw
    return fence
