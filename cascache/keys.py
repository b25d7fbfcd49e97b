"""Storage keys: how a (namespace, key) pair becomes the strings a store sees.

The namespace is length-prefixed, so ``("a:b", "c")`` and ``("a", "b:c")`` never share a
storage key. A key's value entry and its version share one Redis Cluster hash tag derived
from the canonical key, so a server-side script can touch both in one slot. The tag is a
hash in hex, so braces inside user keys can never change which part Redis hashes.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

PREFIX = "cas"


@dataclass(frozen=True, slots=True)
class CacheKey:
    """The storage keys of one logical key.

    Attributes:
        key: the caller's key.
        value: where its single entry is stored.
        version: where its fence is stored.
    """

    key: str
    value: str
    version: str


def check_key(op: str, key: object) -> str:
    """Validate one caller key and return it, or raise a message naming ``op``."""
    if not isinstance(key, str):
        raise TypeError(f"cascache {op}: keys are str, got {type(key).__name__} {key!r}")
    if not key:
        raise ValueError(f"cascache {op}: the empty string is not a valid key")
    if not key.isascii():
        try:
            key.encode()
        except UnicodeEncodeError:
            raise ValueError(f"cascache {op}: key {key!r} is not valid Unicode text") from None
    return key


class KeySpace:
    """Derives storage keys for one namespace."""

    __slots__ = ("_frame", "namespace")

    def __init__(self, namespace: str) -> None:
        if not isinstance(namespace, str) or not namespace:
            raise ValueError(f"namespace must be a non-empty str, got {namespace!r}")
        self.namespace = namespace
        self._frame = f"{len(namespace)}:{namespace}"

    def single(self, key: str) -> CacheKey:
        """The value and version storage keys of ``key``."""
        return _single(self._frame, key)

    def batch(self, keys: Iterable[str]) -> str:
        """The storage key of the batch entry for this member *set* (order and repeats ignored)."""
        digest = hashlib.blake2b(digest_size=20)
        for member in sorted(set(keys)):
            raw = member.encode()
            digest.update(len(raw).to_bytes(4, "big"))
            digest.update(raw)
        hexed = digest.hexdigest()
        return f"{PREFIX}:{{{hexed[:16]}}}:b:{self._frame}:{hexed}"


@functools.lru_cache(maxsize=1 << 16)
def _single(frame: str, key: str) -> CacheKey:
    # Cached: hot keys are read far more often than they change, and hashing dominates.
    canonical = f"{frame}:{key}"
    tag = hashlib.blake2b(canonical.encode(), digest_size=8).hexdigest()
    return CacheKey(
        key=key,
        value=f"{PREFIX}:{{{tag}}}:v:{canonical}",
        version=f"{PREFIX}:{{{tag}}}:g:{canonical}",
    )
