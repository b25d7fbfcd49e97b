"""What a model run exercised: effects and their outcomes, refusals, and hazards.

A clean run is evidence only if the run went where the bugs would be. This module counts,
per operation of the model:

* **cells**: (operation, effect, outcome) for every effect the model drove, where the
  outcome is ``ok``, ``fail`` (failed without being applied) or ``applied`` (applied, and
  the reply lost);
* **refusals**: (read path, reason) for every entry or batch member the library refused to
  serve, as the library itself reported it (``Hooks.self_healed`` / ``batch_rejected``,
  reasons from :class:`cascache.core.Refusal`);
* **hazards**: (operation, effect, outcome) for every effect of a read driven while the
  store held, for one of the read's keys, an entry that would break FRESH if it were
  served (a row below the floor that a successful invalidate set before the read began).
  A clean run with many hazards met under every outcome is a run where the protocol was
  tested, not merely run.

:func:`Coverage.missing` lists the reachable cells a run never reached. In the CI profile,
``tests/test_model_run.py`` runs the swarm and then every coverage phase
(:data:`model.run.DIRECTED`) on each in-memory and fakeredis target, and fails on any;
except the asyncio topologies and the failover and restart mitigations, whose phases
repeat a sync topology's and run in the audit.
Reachable means: every outcome of every (operation, effect) pair the run performed, when
store failures were injected at all; every refusal reason on every read path, except those
listed in :data:`UNREACHABLE` with the reason; every read operation meeting a hazard under
every outcome.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from cascache.core import Refusal

OUTCOMES = ("ok", "fail", "applied")
UNFAULTED = frozenset({"flight.wait"})
"""Effects that touch no store, so no store fault reaches them: a coalesced caller's wait
for its flight (only a cancellation can end it early, and nothing is applied). Counted,
not required: whether a run meets a flight is up to its interleavings, and the rules that
aim at flights (``join_a_flight``, ``write_under_a_flight``) make it common."""
"""How an effect ended: performed; failed without being applied; applied, reply lost."""

READ_OPERATIONS = ("get", "get_or_load", "get_many", "get_many_or_load")
"""The model's operations that serve values (their results are judged by FRESH)."""

PATHS = (
    "get",
    "get_or_load",
    "get_many batch member",
    "get_many single fallback",
    "get_many_or_load",
)
"""Read paths on which a refusal can happen (``get_many_or_load`` counts both of its
sub-paths, batch member and single fallback)."""

REASONS = tuple(Refusal)

UNREACHABLE: dict[tuple[str, Refusal], str] = {
    **{
        (path, Refusal.GUARD): "not modelled: the model's caches have no read guard "
        "(guards are tested in tests/test_cache.py)"
        for path in PATHS
    },
}
"""Refusal cells the model does not reach, with the reason."""

_MEMBER = re.compile(r"(?:^|; )(.+?) \(((?:[^()]|\([^()]*\))*)\)")


def refusal_of(reason: str) -> Refusal | None:
    """The :class:`Refusal` a self-heal or batch-rejection reason starts with."""
    for refusal in Refusal:
        if reason.startswith(refusal.value):
            return refusal
    if reason.startswith(("corrupt batch entry", "batch entry holds another member set")):
        return Refusal.CORRUPT
    return None


def member_refusals(reason: str) -> list[Refusal]:
    """The per-member refusals of a ``batch_rejected`` reason (``members not servable: a
    (stale version); b (version lost)``), or the one refusal of a whole batch entry."""
    prefix = "members not servable: "
    if not reason.startswith(prefix):
        whole = refusal_of(reason)
        return [] if whole is None else [whole]
    found = [refusal_of(text) for _, text in _MEMBER.findall(reason[len(prefix) :])]
    return [r for r in found if r is not None]


@dataclass
class Coverage:
    """Counters of one model run (or of several, merged)."""

    cells: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    refusals: Counter[tuple[str, Refusal]] = field(default_factory=Counter)
    hazards: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    faulted: bool = False
    """Whether any effect was failed on purpose (else only ``ok`` outcomes are reachable)."""

    def effect(self, operation: str, effect: str, outcome: str, hazard: bool) -> None:
        """Count one effect driven by the model."""
        self.cells[operation, effect, outcome] += 1
        self.faulted |= outcome != "ok"
        if hazard:
            self.hazards[operation, effect, outcome] += 1

    def refused(self, path: str, refusals: Iterable[Refusal]) -> None:
        """Count refusals the library reported on ``path``."""
        for refusal in refusals:
            self.refusals[path, refusal] += 1

    def merge(self, other: Coverage) -> None:
        """Add another run's counts to these."""
        self.cells.update(other.cells)
        self.refusals.update(other.refusals)
        self.hazards.update(other.hazards)
        self.faulted |= other.faulted

    def pairs(self) -> list[tuple[str, str]]:
        """Every (operation, effect) the run performed, sorted."""
        return sorted({(op, effect) for op, effect, _ in self.cells})

    def hazards_met(self, operation: str, outcome: str) -> int:
        """Effects of ``operation`` that met a hazard and ended with ``outcome``."""
        return sum(
            n for (op, _, out), n in self.hazards.items() if op == operation and out == outcome
        )

    def missing(self) -> list[str]:
        """Reachable cells with a zero count, one line each."""
        outcomes = OUTCOMES if self.faulted else OUTCOMES[:1]
        gaps = [
            f"effect {op} {effect} {outcome}"
            for op, effect in self.pairs()
            if effect not in UNFAULTED
            for outcome in outcomes
            if not self.cells[op, effect, outcome]
        ]
        gaps += [
            f"refusal {path}: {reason.value}"
            for path in PATHS
            for reason in REASONS
            if (path, reason) not in UNREACHABLE and not self.refusals[path, reason]
        ]
        reads = {op for op, _, _ in self.cells} & set(READ_OPERATIONS)
        gaps += [
            f"hazard {op} {outcome}"
            for op in sorted(reads)
            for outcome in outcomes
            if not self.hazards_met(op, outcome)
        ]
        return gaps

    def render(self) -> str:
        """The three matrices as Markdown tables, then the unreachable cells."""
        lines = ["| operation | effect | " + " | ".join(OUTCOMES) + " | hazards met |"]
        lines.append("|---|---|" + "---|" * (len(OUTCOMES) + 1))
        for op, effect in self.pairs():
            counts = " | ".join(str(self.cells[op, effect, o]) for o in OUTCOMES)
            met = sum(self.hazards[op, effect, o] for o in OUTCOMES)
            lines.append(f"| {op} | {effect} | {counts} | {met} |")
        lines += ["", "| read path | " + " | ".join(r.value for r in REASONS) + " |"]
        lines.append("|---|" + "---|" * len(REASONS))
        for path in PATHS:
            counts = " | ".join(_refusal_cell(self, path, r) for r in REASONS)
            lines.append(f"| {path} | {counts} |")
        lines += ["", "| read operation | hazards met: " + " | ".join(OUTCOMES) + " |"]
        lines.append("|---|" + "---|" * len(OUTCOMES))
        for op in READ_OPERATIONS:
            per = [self.hazards_met(op, outcome) for outcome in OUTCOMES]
            lines.append(f"| {op} | " + " | ".join(map(str, per)) + " |")
        reasons = sorted(set(UNREACHABLE.values()))
        lines += ["", "Cells marked n/a:", *(f"- {reason}" for reason in reasons)]
        return "\n".join(lines)


def _refusal_cell(coverage: Coverage, path: str, reason: Refusal) -> str:
    if (path, reason) in UNREACHABLE:
        return "n/a"
    return str(coverage.refusals[path, reason])


def path_of(operation: str, batch: bool) -> str:
    """The read path a refusal reported during ``operation`` belongs to."""
    if operation in ("get", "get_or_load", "get_many_or_load"):
        return operation
    return "get_many batch member" if batch else "get_many single fallback"


def summary(coverage: Coverage) -> str:
    """One line: how many cells, refusals and hazards a run reached."""
    return (
        f"{len(coverage.cells)} effect cells, {sum(coverage.refusals.values())} refusals, "
        f"{sum(coverage.hazards.values())} hazard effects, {len(coverage.missing())} gaps"
    )
