"""Storage keys: how a (namespace, key) pair becomes the strings a store sees.

A key, and a namespace, becomes one plain ``str`` at the API boundary
(:func:`canonical_key`): a ``str`` subclass (``enum.StrEnum``, ``class Color(str, Enum)``,
a type with its own ``__str__`` or ``__format__``) is reduced to its underlying string
value, so ``Color.RED`` and ``"red"`` are the same key everywhere. Every storage name,
digest and cache below is derived from that one string; nothing here formats a caller's
object, because a subclass's ``__str__``/``__format__`` may disagree with its equality
and hash, and two spellings of one key would then reach two storage keys.

The namespace is length-prefixed, so ``("a:b", "c")`` and ``("a", "b:c")`` never share a
storage key. A key's value entry and its version share one Redis Cluster hash tag derived
from the canonical key, so a server-side script can touch both in one slot. The tag is a
hash in hex, so braces inside user keys can never change which part Redis hashes.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Final

PREFIX: Final = "cas"
KINDS: Final = {"value": "v", "version": "g", "batch": "b"}
"""The kind letter of each storage name: ``cas:{tag}:<kind>:<framed namespace>:...``."""

TAG_HEX: Final = 16
"""Hex digits of the hash tag every storage name carries."""
KEY_CACHE_SIZE: Final = 4096
"""Storage names kept per :class:`KeySpace` (hot keys are read far more often than they
change, and hashing dominates deriving them). Bounded per instance, never process-wide."""
KEY_CACHE_CHARS: Final = 1 << 20
"""Characters of storage names (both names and the key) a :class:`KeySpace` keeps at most,
so long keys cannot make its cache large; a key whose names alone would take more than a
sixteenth of it is derived on every use instead of being kept."""


class CacheKey:
    """The storage keys of one logical key.

    Attributes:
        key: the canonical key (a plain ``str``).
        value: where its single entry is stored.
        version: where its fence is stored.

    A :class:`KeySpace` derives ``value`` and ``version`` on first use and keeps them:
    hashing them costs more than an in-process read, and a store that keeps its records
    by ``key`` (:class:`cascache.LocalStore`) never needs them on its hot paths.
    """

    __slots__ = ("_space", "key", "value", "version")

    key: str
    value: str
    version: str

    def __init__(
        self,
        key: str,
        value: str | None = None,
        version: str | None = None,
        *,
        space: KeySpace | None = None,
    ) -> None:
        if (value is None) != (version is None) or (value is None) == (space is None):
            raise ValueError("CacheKey takes both storage names, or the KeySpace that derives them")
        self.key = key
        self._space = space
        if value is not None and version is not None:
            self.value = value
            self.version = version

    def __getattr__(self, name: str) -> str:
        # Reached only while ``value``/``version`` are unset: derive both once, after which
        # reading them is a plain slot read.
        if name not in ("value", "version"):
            raise AttributeError(name)
        space = self._space
        assert space is not None  # __init__ takes names or a space
        self.value, self.version = space.names_of(self.key)
        return self.value if name == "value" else self.version

    def names(self) -> tuple[str, str]:
        """``(value, version)``: the keys of an effect on the entry and the fence together."""
        return (self.value, self.version)

    def version_name(self) -> tuple[str]:
        """``(version,)``: the keys of an effect on the fence alone."""
        return (self.version,)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CacheKey):
            return NotImplemented
        return self.key == other.key and self.names() == other.names()

    def __hash__(self) -> int:
        return hash((self.key, self.names()))

    def __repr__(self) -> str:
        value, version = self.names()
        return f"CacheKey(key={self.key!r}, value={value!r}, version={version!r})"


def _key_hint(key: object) -> str:
    """How to spell ``key`` as text: every process must spell a key the same way, so the
    cache never guesses a conversion."""
    if isinstance(key, bytes | bytearray):
        return ": decode it (key.decode()) if it is text"
    if isinstance(key, tuple):
        return ': join its parts into one string, e.g. f"{a}:{b}"'
    if key is None:
        return ""
    return f": convert it yourself, e.g. str({key!r:.40})"


def canonical_key(op: str, key: object) -> str:
    """The one plain ``str`` a caller's key stands for, or an error naming ``op``.

    A ``str`` subclass is reduced to its string value (``str.__str__``, which no subclass
    can override for this call); anything that is not a ``str`` is refused. A non-empty
    ASCII ``str`` comes back as it is: ``SingleCore.lookup``, every hit's path, skips this
    call for such a key, so a rule added here for them must be added there too.
    """
    if type(key) is not str:
        if not isinstance(key, str):
            raise TypeError(
                f"cascache {op}: keys are str, got {type(key).__name__} {key!r:.60}{_key_hint(key)}"
            )
        key = str.__str__(key)
    if not key:
        raise ValueError(f"cascache {op}: the empty string is not a valid key")
    if not key.isascii():
        try:
            key.encode()
        except UnicodeEncodeError:
            raise ValueError(f"cascache {op}: key {key!r} is not valid Unicode text") from None
    return key


def canonical_namespace(namespace: object) -> str:
    """The plain ``str`` of a namespace; raises ``ValueError`` naming what is wrong."""
    if not isinstance(namespace, str) or not namespace:
        raise ValueError(f"namespace must be a non-empty str, got {namespace!r}")
    plain = str.__str__(namespace)
    try:
        plain.encode()
    except UnicodeEncodeError:
        raise ValueError(f"namespace {plain!r} is not valid Unicode text") from None
    return plain


class KeySpace:
    """Derives storage keys for one namespace, caching a bounded number per instance.

    ``cache_size``: how many keys' :class:`CacheKey` objects it keeps (default
    :data:`KEY_CACHE_SIZE`).
    """

    __slots__ = ("_cache", "_chars", "_frame", "_lock", "_name_chars", "_size", "namespace")

    def __init__(self, namespace: str, cache_size: int = KEY_CACHE_SIZE) -> None:
        if not isinstance(cache_size, int) or isinstance(cache_size, bool) or cache_size < 0:
            raise ValueError(f"KeySpace cache_size must be an int >= 0, got {cache_size!r}")
        self.namespace = canonical_namespace(namespace)
        self._frame = f"{len(self.namespace)}:{self.namespace}"
        self._name_chars = 2 * (len(PREFIX) + TAG_HEX + 7 + len(self._frame))
        self._size = cache_size
        # Ordered so the oldest entry is dropped in O(1): taking the first key of a plain
        # dict scans past every slot deleted before it, which made each new key cost
        # microseconds once the cache was full.
        self._cache: OrderedDict[str, CacheKey] = OrderedDict()
        self._chars = 0
        # Every operation on every thread derives keys here: the bookkeeping of what the
        # cache holds changes under this lock (a hit is one dict read, and needs none).
        self._lock = threading.Lock()

    def single(self, key: str) -> CacheKey:
        """The value and version storage keys of the canonical ``key``."""
        found = self._cache.get(key)
        if found is not None:
            return found
        plain = key if type(key) is str else str.__str__(key)
        # Built without ``__init__`` and its argument checks: a never-seen key comes here
        # on every operation, and the checks cost as much as the rest of this method.
        derived = CacheKey.__new__(CacheKey)
        derived.key = plain
        derived._space = self
        chars = self._chars_of(plain)
        if chars > KEY_CACHE_CHARS // 16:
            return derived
        cache = self._cache
        with self._lock:
            found = cache.get(plain)
            if found is not None:  # another thread derived it meanwhile
                return found
            while cache and (len(cache) >= self._size or self._chars + chars > KEY_CACHE_CHARS):
                self._chars -= self._chars_of(cache.popitem(last=False)[0])
            if self._size:
                cache[plain] = derived
                self._chars += chars
        return derived

    def names_of(self, key: str) -> tuple[str, str]:
        """The value and version storage names of the canonical ``key``."""
        canonical = f"{self._frame}:{key}"
        tag = hashlib.blake2b(canonical.encode(), digest_size=TAG_HEX // 2).hexdigest()
        return (
            f"{PREFIX}:{{{tag}}}:{KINDS['value']}:{canonical}",
            f"{PREFIX}:{{{tag}}}:{KINDS['version']}:{canonical}",
        )

    def _chars_of(self, key: str) -> int:
        # The key and both names, counted whether or not the names are derived yet (they
        # are kept once they are): ``cas:{<tag>}:<kind>:<frame>:<key>``.
        return 3 * len(key) + self._name_chars

    def batch(self, keys: Iterable[str]) -> str:
        """The storage key of the batch entry for this member *set* (order and repeats ignored)."""
        digest = hashlib.blake2b(digest_size=20)
        for member in sorted({k if type(k) is str else str.__str__(k) for k in keys}):
            raw = member.encode()
            digest.update(len(raw).to_bytes(4, "big"))
            digest.update(raw)
        hexed = digest.hexdigest()
        return f"{PREFIX}:{{{hexed[:TAG_HEX]}}}:{KINDS['batch']}:{self._frame}:{hexed}"

    def pattern(self, kind: str | None = None) -> str:
        """A Redis ``SCAN MATCH`` pattern for this namespace's storage names of ``kind``
        (``"value"``, ``"version"``, ``"batch"``, or ``None`` for all of them)."""
        letter = "?" if kind is None else KINDS[kind]
        # The tag has a fixed width, so no namespace or key can shift where this matches.
        return f"{PREFIX}:{{{'?' * TAG_HEX}}}:{letter}:{_glob_escape(self._frame)}:*"

    def clear(self) -> None:
        """Forget the cached storage names (they are derived again on demand)."""
        with self._lock:
            self._cache.clear()
            self._chars = 0


def _glob_escape(text: str) -> str:
    # Redis glob metacharacters in a namespace must match themselves.
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)
