"""The source of truth the model's processes read and write.

Every committed write to a key gets the next index for that key, and every row the source
hands out carries ``(key, index)``, so a value served by the cache can be traced back to
the exact write it came from. Every key starts committed at index 0.
"""

from __future__ import annotations

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
