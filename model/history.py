"""Recorded histories and the FRESH checker (DESIGN §4), independent of how they were produced.

A history is the source of truth's commit log plus every operation with its invocation
and response points on one logical clock. The checker needs nothing else, so the same
function judges the model's interleavings, a thread-based stress test or a future async
front end.

FRESH: for every ``invalidate(k)`` I that returned successfully and every read G covering
k that started after I returned, a value G serves for k has index >= D_k(start of I), the
last index committed for k before I started. A failed or ambiguous invalidate sets no floor.
Integrity: a served value belongs to the requested key and was committed before G returned.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from .oracle import Row


@dataclass
class Op:
    """One operation of a history.

    ``kind`` is ``"invalidate"`` or a read (``"get"``, ``"get_many"``, ...); ``ok`` is
    whether it returned without error; ``served`` holds the rows a read returned.
    """

    id: int
    kind: str
    node: int
    keys: tuple[str, ...]
    invoked: int
    returned: int | None = None
    ok: bool = False
    served: dict[str, Row] = field(default_factory=dict)


@dataclass(frozen=True)
class Violation:
    """One broken property, with the operations that show it."""

    prop: str
    message: str
    op: int
    witness: int | None = None


class History:
    """Commit log plus operations; feed it as things happen, check any time."""

    def __init__(self, commits: Iterable[tuple[int, str, int]] = ()) -> None:
        self._commits: dict[str, list[tuple[int, int]]] = defaultdict(list)
        self.ops: list[Op] = []
        for when, key, index in commits:
            self.commit(when, key, index)

    def commit(self, when: int, key: str, index: int) -> None:
        """Record that ``key`` was committed at ``index`` at time ``when`` (times ascend)."""
        self._commits[key].append((when, index))

    def invoke(self, kind: str, node: int, keys: Iterable[str], when: int) -> Op:
        """Record an invocation and return its (open) operation."""
        op = Op(len(self.ops), kind, node, tuple(keys), when)
        self.ops.append(op)
        return op

    def committed_before(self, key: str, when: int) -> int:
        """D_k(when): the last index committed for ``key`` at or before ``when``."""
        log = self._commits[key]
        pos = bisect.bisect_right(log, (when, float("inf")))
        return log[pos - 1][1] if pos else -1

    def was_committed(self, key: str, index: int, by: int) -> bool:
        """Whether ``key`` was committed at ``index`` no later than ``by``."""
        return any(i == index and t <= by for t, i in self._commits[key])

    def floor(self, key: str, before: int) -> tuple[int, int | None]:
        """The FRESH floor for reads of ``key`` starting at ``before``, and who set it."""
        best, witness = -1, None
        for op in self.ops:
            if (
                op.kind == "invalidate"
                and op.ok
                and op.returned is not None
                and op.returned < before
                and key in op.keys
            ):
                floor = self.committed_before(key, op.invoked)
                if floor > best:
                    best, witness = floor, op.id
        return best, witness

    def check_read(self, op: Op) -> list[Violation]:
        """FRESH and integrity for one completed read."""
        found: list[Violation] = []
        assert op.returned is not None
        for key, row in op.served.items():
            if key not in op.keys:
                found.append(Violation("integrity", f"served unrequested key {key!r}", op.id))
                continue
            if row.key != key:
                found.append(Violation("integrity", f"served {row} for key {key!r}", op.id))
                continue
            if not self.was_committed(key, row.index, op.returned):
                found.append(Violation("integrity", f"served uncommitted {row}", op.id))
                continue
            floor, witness = self.floor(key, op.invoked)
            if row.index < floor:
                found.append(
                    Violation(
                        "FRESH",
                        f"{op.kind} on node {op.node} served {key}@{row.index}, but "
                        f"invalidate op {witness} returned before it started with "
                        f"{key}@{floor} committed",
                        op.id,
                        witness,
                    )
                )
        return found


def check(history: History) -> list[Violation]:
    """Every violation of FRESH and integrity in a whole history."""
    found: list[Violation] = []
    for op in history.ops:
        if op.kind != "invalidate" and op.ok and op.returned is not None:
            found += history.check_read(op)
    return found
