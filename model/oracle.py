"""The source of truth the model's processes read and write.

Every committed write to a key gets the next index for that key, and every row the source
hands out carries ``(key, index)``, so a value served by the cache can be traced back to
the exact write it came from. Every key starts committed at index 0.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

import cascache


@dataclass(frozen=True)
class Row:
    """A row of the source of truth: which key, and which committed write produced it."""

    key: str
    index: int


ROW_CODEC: cascache.JsonCodec[Row] = cascache.JsonCodec(Row)


class Database:
    """Committed rows plus a commit log with logical times."""

    def __init__(self, keys: Iterable[str]) -> None:
        self.latest: dict[str, int] = {key: 0 for key in keys}
        self.commits: list[tuple[int, str, int]] = [(0, key, 0) for key in self.latest]

    def write(self, key: str, now: int) -> int:
        """Commit a new write to ``key`` at logical time ``now``; returns its index."""
        index = self.latest[key] + 1
        self.latest[key] = index
        self.commits.append((now, key, index))
        return index

    def read(self, key: str) -> Row:
        """The row as committed now."""
        return Row(key, self.latest[key])


class LyingKey(str):
    """A ``str`` subclass equal to (and hashing like) its plain value, whose ``str()`` and
    ``format()`` return something else: a library that formats a caller's key instead of
    reducing it to its plain value derives the wrong storage names, and every key spelt
    this way collides with every other."""

    __slots__ = ()

    def __str__(self) -> str:
        return "lying-key"

    def __format__(self, spec: str) -> str:
        return "lying-key"


class KeyName(str, enum.Enum):  # noqa: UP042 - deliberately not a StrEnum
    """Every key the model uses, as a ``str``-mixin enum member: equal to the plain key,
    but (unlike ``enum.StrEnum``) its ``str()`` and ``format()`` are ``KeyName.A``."""

    A = "a"
    B = "b"
    C = "c"
    XA = "x:a"
    XB = "x:b"
    XC = "x:c"


SPELLINGS = ("plain", "enum", "lying")
"""How the model spells a key when it passes it to the library (DESIGN §3.11)."""


def spell(key: str, how: int) -> str:
    """``key`` as the plain ``str``, a :class:`KeyName` member or a :class:`LyingKey`."""
    kind = SPELLINGS[how % len(SPELLINGS)]
    if kind == "enum":
        return KeyName(key)
    if kind == "lying":
        return LyingKey(key)
    return key


def plain(key: str) -> str:
    """The plain string a key stands for, whatever ``str`` subclass spells it."""
    return key if type(key) is str else str.__str__(key)
