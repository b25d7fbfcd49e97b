"""``cascache-audit`` (also ``python -m model``): the model over every topology, on a budget.

With no arguments it runs the correct protocol on every topology it can reach (in-process
stores, fakeredis, plus a real server when a binary is found or ``--redis-url`` is given,
plus a local cluster with ``--cluster``), in the swarm and again in the race phases
(``model.run.RACES``), and the negative controls, within ``--budget`` seconds in all, then
prints one table with a legend. Exit status 1 means an unexpected result: a violation on
a correct topology, or a control / bug-zoo variant that was *not* caught; 2, options
that select nothing to run or could not work (refused before anything runs).

Time: the negative controls run first, in their targeted phase, each for up to 30 s (or
its share, if larger) and usually caught in a few; then every other row (a target's
swarm, its race phases) gets an equal share of the time still left when it starts, so
time a control did not need goes to the others, and a row that overruns is absorbed by
the rest. Rounds are short (``--examples`` each) and none starts after its row's
deadline; shrinking a violation stops after 5 s (or the time left), so the whole run
stays within the budget.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shlex
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from .coverage import Coverage, summary
from .explore import ALL_SCOPES
from .explore import CONTROLS as EXPLORED_CONTROLS
from .explore import MITIGATIONS as EXPLORED_MITIGATIONS
from .explore import TOPOLOGIES as EXPLORED
from .explore import audit as exhaustive
from .machine import FAULTS
from .run import (
    CONTROLS,
    DIRECTED,
    FAULT_HELP,
    PHASES,
    RACES,
    TARGETED,
    TOPOLOGIES,
    TOPOLOGY_HELP,
    Result,
    Target,
    cover,
    hunt,
    url_client,
)
from .topology import Connect
from .zoo import VARIANTS

EXPLORABLE = list(
    dict.fromkeys([*EXPLORED, *(t for t, _ in (*EXPLORED_CONTROLS, *EXPLORED_MITIGATIONS))])
)
"""Every topology ``--exhaustive`` checks: the explorer's own, then those of its controls
and mitigations (each with its one scope)."""

if TYPE_CHECKING:
    import redis.cluster

PROGRESS_SECONDS = 5.0
"""Progress is printed at least this often while a target runs (and at its end)."""
SHRINK_SECONDS = 5.0
"""Shrinking a violation found within a budget stops after this long (the trace printed
may then not be minimal; its replay line shrinks for up to ``REPLAY_SHRINK_SECONDS``)."""
REPLAY_SHRINK_SECONDS = 30.0
CONTROL_SECONDS = 30.0
"""A targeted negative control may use up to this long (or its share, if larger)."""
RESERVE_SECONDS = 4.0
"""Kept back from the budget for start-up, the closing table and shutting servers down
(measured: about 2.5 s with 18 targets, two of them servers started here)."""


@dataclass
class Row:
    """The audit table row of one target (all rounds added up)."""

    target: Target
    variant: str | None
    expected_to_fail: bool
    targeted: bool = False
    phases: tuple[str, ...] = ()
    """Phases (``model.run.PHASES``) this row runs instead of the swarm."""
    first_seed: int = 0
    rounds: int = 0
    examples: int = 0
    effects: int = 0
    faults: int = 0
    seconds: float = 0.0
    caught: Result | None = None
    coverage: Coverage = field(default_factory=Coverage)
    phase_rounds: int = 0

    @property
    def phase(self) -> str:
        """How the row ran, in the words of the legend."""
        if len(self.phases) == 1:
            return self.phases[0]
        if self.phases:
            return "races" if self.phases == tuple(RACES) else "coverage"
        return "targeted" if self.targeted else "swarm"

    @property
    def label(self) -> str:
        """The target, what runs on it, and how (unless in the swarm), for progress lines."""
        label = f"{self.target} {self.variant or 'protocol'}"
        return label if self.phase == "swarm" else f"{label} ({self.phase})"

    @property
    def unexpected(self) -> bool:
        """A violation where none may be, or no violation where one must be."""
        return (self.caught is not None) != self.expected_to_fail

    @property
    def verdict(self) -> str:
        """What happened, in the words of the legend."""
        if self.caught is None:
            if not self.expected_to_fail:
                return "clean"
            return "CONTROL NOT CAUGHT" if self.variant is None else "VARIANT NOT CAUGHT"
        if not self.expected_to_fail:
            return "UNEXPECTED VIOLATION"
        return "control caught" if self.variant is None else "variant caught"


LEGEND = """\
Legend:
  verdict     clean: the correct protocol, no property broke in any example.
              control caught / variant caught: a negative control or bug-zoo variant broke
                a property, as it must (it shows the checks are not vacuous).
              UNEXPECTED VIOLATION: the correct protocol broke a property (a bug).
              CONTROL NOT CAUGHT / VARIANT NOT CAUGHT: a known-bad setup went undetected
                in its share of the budget (the model was too weak or too slow).
  phase       swarm: every rule family and fault the topology survives, a random subset
                per example; targeted: a negative control's run narrowed to the rules its
                hazard needs (same machine, same checks; see model/run.py TARGETED);
                races (or one phase's name): the model in each race phase, narrowed
                without faults to the rules of coalescing's race, so that it comes up in
                most examples (every correct target runs both; a variant the swarm meets
                too rarely is hunted in its own; model/run.py RACES);
                coverage (or one phase's name): the correct protocol in each coverage phase,
                narrowed so that every read path meets every entry it must refuse under
                every effect outcome (--coverage, --phase; model/run.py DIRECTED).
  examples    generated examples (each up to --steps rules); effects: store interactions
              driven one at a time; faults: injected failures and store faults.
  caught at   examples generated before the first violation (shrinking not counted).
  seeds       Hypothesis seeds of the rounds run (one round = --examples examples)."""


def _epilog() -> str:
    width = max(len(name) for name in [*TOPOLOGY_HELP, *FAULT_HELP])
    topologies = "\n".join(f"  {n:<{width}}  {TOPOLOGY_HELP[n]}" for n in sorted(TOPOLOGIES))
    faults = "\n".join(f"  {n:<{width}}  {FAULT_HELP[n]}" for n in sorted(FAULTS))
    return (
        f"topologies:\n{topologies}\n\nfault families:\n{faults}\n\n"
        "Exit status 0: every result as expected; 1: an unexpected result (see the table); "
        "2: options that select nothing to run or cannot work (refused before anything runs)."
    )


SAMPLING_FLAGS = (
    "--budget",
    "--seed",
    "--nodes",
    "--faults",
    "--redis-url",
    "--no-real",
    "--cluster",
    "--backend",
    "--examples",
    "--steps",
    "--rounds",
    "--swarm-controls",
    "--verbose",
    "--coverage",
    "--phase",
    "--json",
)
"""The flags of the sampling audit, which ``--exhaustive`` refuses rather than ignore."""


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="cascache-audit",
        description="Run the cascache interleaving model over every topology.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=120.0,
        help="seconds in all, shrinking included (120)",
    )
    parser.add_argument("--seed", type=int, default=None, help="first Hypothesis seed")
    parser.add_argument(
        "--topology", action="append", choices=sorted(TOPOLOGIES), help="repeatable"
    )
    parser.add_argument("--nodes", type=int, default=2, help="cache nodes per topology (2)")
    parser.add_argument(
        "--faults",
        default=",".join(sorted(FAULTS)),
        help="comma-separated fault families (below), or 'none' (all)",
    )
    parser.add_argument(
        "--variant",
        choices=[*sorted(VARIANTS), "all"],
        help="run a bug-zoo variant (or all) instead of the correct protocol",
    )
    parser.add_argument("--redis-url", help="also run on this Redis (never flushed)")
    parser.add_argument("--no-real", action="store_true", help="skip the real-server targets")
    parser.add_argument("--cluster", action="store_true", help="also run on a local cluster")
    parser.add_argument(
        "--backend",
        action="append",
        choices=["fakeredis", "real", "cluster"],
        help="only these Redis backends (repeatable)",
    )
    parser.add_argument("--examples", type=int, default=50, help="examples per round (50)")
    parser.add_argument("--steps", type=int, default=25, help="rules per example (25)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="run exactly this many rounds per target, ignoring --budget (replays a row)",
    )
    parser.add_argument(
        "--swarm-controls",
        action="store_true",
        help="run negative controls with the full swarm instead of their targeted phase",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="also print Hypothesis's failing program and its reproduce blob",
    )
    parser.add_argument(
        "--coverage",
        action="store_true",
        help="also run the coverage phases of the correct protocol on each topology, and "
        "print per target which (operation, effect, outcome) cells, refusal reasons and "
        "hazards the swarm and the phases reached",
    )
    parser.add_argument(
        "--phase",
        choices=[*PHASES, "all", "races"],
        help="run only this phase of the correct protocol on each topology, or every "
        "coverage phase (all), or every race phase (races); replays a coverage or races row",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON to PATH")
    parser.add_argument(
        "--exhaustive",
        action="store_true",
        help="check every interleaving of each declared small scope instead of sampling "
        "(model.explore; topologies: " + ", ".join(EXPLORED) + "; with --variant, the "
        "smallest scope that catches each variant and a shortest counterexample)",
    )
    parser.add_argument(
        "--scope",
        action="append",
        choices=list(ALL_SCOPES),
        help="with --exhaustive: only this scope (repeatable; default: all, smallest first)",
    )
    parser.add_argument(
        "--max-states",
        type=int,
        default=None,
        help="with --exhaustive: stop a scope after this many states (reported as stopped)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="with --exhaustive: worker processes expanding each breadth-first level "
        "(default: one per core; the counts and counterexamples do not depend on it)",
    )
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    if args.max_states is not None and args.max_states < 1:
        parser.error(f"--max-states must be at least 1, got {args.max_states}")
    unexplored = set(args.topology or ()) - set(EXPLORABLE)
    if args.exhaustive and unexplored:
        parser.error(f"--exhaustive does not check {', '.join(sorted(unexplored))}")
    dests = {flag: flag[2:].replace("-", "_") for flag in SAMPLING_FLAGS}
    if args.exhaustive and (
        unused := [
            flag for flag, dest in dests.items() if getattr(args, dest) != parser.get_default(dest)
        ]
    ):
        parser.error(
            f"--exhaustive does not use {', '.join(unused)}: it checks every interleaving "
            "of its scopes in process, with no budget, seed or sampling"
        )
    if args.nodes < 1:
        parser.error("--nodes must be at least 1")
    if args.nodes < 2 and "per-node-local-versions" in (args.topology or TOPOLOGIES):
        parser.error(
            "--nodes 1 cannot show the per-node-local-versions control (it needs two nodes "
            "sharing values): pass --nodes 2 or more, or name other topologies"
        )
    if not math.isfinite(args.budget) or args.budget <= 0:
        parser.error(f"--budget must be a positive number of seconds, got {args.budget}")
    if args.redis_url is not None:
        import redis

        try:
            redis.Redis.from_url(args.redis_url).close()  # parses it; connects on use only
        except ValueError as exc:
            parser.error(f"--redis-url {args.redis_url!r}: {exc}")
    if args.json is not None:
        folder = os.path.dirname(os.path.abspath(args.json))
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            parser.error(f"--json {args.json}: cannot write into {folder}")
    if args.examples < 1 or args.steps < 1 or (args.rounds is not None and args.rounds < 1):
        parser.error("--examples, --steps and --rounds must be at least 1")
    faults = set() if args.faults == "none" else set(filter(None, args.faults.split(",")))
    if unknown := faults - FAULTS:
        parser.error(
            f"unknown fault families: {', '.join(sorted(unknown))} "
            f"(known: {', '.join(sorted(FAULTS))})"
        )
    args.faults = frozenset(faults)
    return args


def plan(args: argparse.Namespace, real: bool) -> list[tuple[Target, str | None]]:
    """The (target, variant) pairs to run."""
    topologies = args.topology or sorted(TOPOLOGIES)
    redis_backends = ["fakeredis", *(["real"] if real else []), *(["cluster"] * args.cluster)]
    if args.backend:
        redis_backends = [b for b in redis_backends if b in args.backend]
    pairs: list[tuple[Target, str | None]] = []
    variants: list[str | None]
    if args.variant == "all":
        variants = list[str | None](sorted(VARIANTS))
        if args.phase:
            # In phases, the variants a phase aims at; the swarm hunts every one.
            variants = [
                v for v in variants if v is not None and VARIANTS[v].race in named(args.phase)
            ]
    elif args.variant:
        variants = [args.variant]
    else:
        variants = [None]
    for variant in variants:
        for topology in topologies:
            if variant is not None and topology not in VARIANTS[variant].topologies:
                continue
            if variant is not None and topology in CONTROLS:
                continue
            needs_redis, _ = TOPOLOGIES[topology]
            for backend in redis_backends if needs_redis else ["memory"]:
                pairs.append((Target(topology, backend, args.nodes), variant))
    return pairs


@contextlib.contextmanager
def servers(args: argparse.Namespace) -> Iterator[dict[str, Connect]]:
    """Connections for the real backends: ``--redis-url``, or servers we start ourselves."""
    from .servers import RedisCluster, RedisServer, find_server_binary

    connects: dict[str, Connect] = {}
    with contextlib.ExitStack() as stack:
        if args.redis_url:
            reachable(args.redis_url)
            connects["real"] = url_client(args.redis_url)
        elif not args.no_real and find_server_binary() is not None:
            server = stack.enter_context(RedisServer())
            connects["real"] = url_client(server.url)
        if args.cluster:
            if find_server_binary() is None:
                raise SystemExit("--cluster needs redis-server or valkey-server (none found)")
            cluster = stack.enter_context(RedisCluster())
            nodes = cluster.startup_nodes

            def connect_cluster() -> redis.cluster.RedisCluster:
                import redis.cluster

                return redis.cluster.RedisCluster(startup_nodes=nodes)

            connects["cluster"] = connect_cluster
        yield connects


def reachable(url: str) -> None:
    """Exit with a message unless the server at ``url`` answers ``PING``."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise SystemExit(f"cascache-audit: --redis-url {url}: {exc}") from None
    finally:
        client.close()


def audit(args: argparse.Namespace, started: float | None = None) -> list[Row]:
    """Run every planned target within the budget; print progress as it goes."""
    started = time.perf_counter() if started is None else started
    deadline = started + max(1.0, args.budget - RESERVE_SECONDS)
    seed = args.seed if args.seed is not None else int(time.time())
    with servers(args) as connects:
        pairs = plan(args, real="real" in connects)
        rows = [
            Row(
                t,
                v,
                expected_to_fail=v is not None or t.topology in CONTROLS,
                targeted=v is None and t.topology in TARGETED and not args.swarm_controls,
                phases=VARIANTS[v].hunted_in if v is not None else (),
                first_seed=seed,
            )
            for t, v in pairs
        ]
        correct = [row.target for row in rows if row.variant is None and not row.expected_to_fail]
        if args.phase:
            # The correct protocol and the variants in the phases; the controls have theirs.
            names = named(args.phase)
            rows = [
                replace(row, phases=aimed(row.variant, names))
                for row in rows
                if row.variant is not None or not row.expected_to_fail
            ]
        else:
            # Every correct target also runs the race phases; --coverage adds the others.
            for names in (tuple(RACES), *[tuple(DIRECTED)] * args.coverage):
                rows += [Row(t, None, False, phases=names, first_seed=seed) for t in correct]
        budget = "no budget" if args.rounds else f"{args.budget:.0f}s budget"
        print(
            f"cascache-audit: {len(rows)} rows, {budget}, seed {seed}, "
            f"{args.examples} examples per round, "
            f"faults {','.join(sorted(args.faults)) or 'none'}",
            flush=True,
        )
        # Controls first: a targeted control is usually caught in seconds and hands the
        # rest of its time to the targets after it, but may take up to CONTROL_SECONDS.
        order = sorted(rows, key=lambda row: not row.targeted)
        for index, row in enumerate(order):
            left = deadline - time.perf_counter()
            share = left / (len(order) - index)
            if row.targeted:
                share = max(share, min(CONTROL_SECONDS, left / 3))
            run_target(args, row, connects, share, started)
    return rows


def named(phase: str) -> tuple[str, ...]:
    """The phases ``--phase`` names: one, every coverage phase (``all``) or every race
    phase (``races``)."""
    return {"all": tuple(DIRECTED), "races": tuple(RACES)}.get(phase, (phase,))


def aimed(variant: str | None, names: tuple[str, ...]) -> tuple[str, ...]:
    """Of the phases ``names``, the one aimed at ``variant`` if it is among them, else all."""
    race = VARIANTS[variant].race if variant is not None else None
    return (race,) if race in names else names


def run_target(
    args: argparse.Namespace,
    row: Row,
    connects: dict[str, Connect],
    share: float,
    started: float,
) -> None:
    """Hunt one target for its share of the time (or ``--rounds`` rounds), with progress."""
    name = row.label
    last = [time.perf_counter()]

    def progress(total: Result) -> None:
        now = time.perf_counter()
        if total.failure is None and now - last[0] < PROGRESS_SECONDS:
            return
        last[0] = now
        print(
            f"[{now - started:5.0f}s]   {name}: {total.rounds} rounds, {total.examples} "
            f"examples{', caught' if total.failure else ''}",
            flush=True,
        )

    fixed = args.rounds is not None
    rounds = args.rounds if fixed else 1_000_000
    deadline = None if fixed else time.perf_counter() + max(0.0, share)
    shrink = REPLAY_SHRINK_SECONDS if fixed else min(SHRINK_SECONDS, max(1.0, share))
    connect = connects.get(row.target.backend)
    if row.phases:
        result = cover(
            row.target,
            row.variant,
            rounds=rounds,
            examples=args.examples,
            first_seed=row.first_seed,
            deadline=deadline,
            steps=args.steps,
            connect=connect,
            shrink_seconds=shrink,
            phases=row.phases,
            progress=progress,
        )
    else:
        result = hunt(
            row.target,
            row.variant,
            rounds=rounds,
            examples=args.examples,
            first_seed=row.first_seed,
            deadline=deadline,
            steps=args.steps,
            faults=args.faults,
            connect=connect,
            shrink_seconds=shrink,
            targeted=row.targeted,
            progress=progress,
        )
    row.phase_rounds = result.phase_rounds
    row.rounds, row.examples = result.rounds, result.examples
    row.effects, row.faults, row.seconds = result.effects, result.faults, result.seconds
    row.coverage = result.coverage
    if result.failure is not None:
        row.caught = result
    print(
        f"[{time.perf_counter() - started:5.0f}s] {name}: {row.rounds} rounds, "
        f"{row.examples} examples, {row.effects} effects, {row.faults} faults: {row.verdict}"
        f"{'  << UNEXPECTED' if row.unexpected else ''}",
        flush=True,
    )


def replay(args: argparse.Namespace, row: Row) -> str:
    """The command line that replays ``row``: its caught round, or all its rounds (for a
    coverage row run on a budget, each phase as many rounds as the longest one ran)."""
    seed = row.caught.seed if row.caught is not None else row.first_seed
    rounds = 1 if row.caught is not None else max(1, row.phase_rounds or row.rounds)
    phase = ""
    if row.phases:
        caught = row.caught.phase if row.caught is not None else None
        name = caught or ("all" if row.phase == "coverage" else row.phase)
        phase = f" --phase {shlex.quote(name)}"
    return (
        f"cascache-audit --topology {row.target.topology} "
        f"--nodes {row.target.nodes} --seed {seed} --rounds {rounds} "
        f"--examples {args.examples} --steps {args.steps} "
        f"--faults {','.join(sorted(args.faults)) or 'none'}"
        + (f" --variant {row.variant}" if row.variant else "")
        + phase
        + (" --swarm-controls" if row.target.topology in TARGETED and not row.targeted else "")
        + {
            "memory": " --no-real",
            "fakeredis": " --no-real --backend fakeredis",
            "real": " --backend real",
            "cluster": " --no-real --cluster --backend cluster",
        }[row.target.backend]
    )


def table(rows: Sequence[Row]) -> str:
    """The closing Markdown table."""
    lines = [
        "| topology | backend | nodes | variant | phase | verdict | examples | effects "
        "| faults | caught at | seeds | time |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        caught_at = (
            "-"
            if row.caught is None or row.caught.caught_after is None
            else str(row.caught.caught_after)
        )
        last_seed = row.first_seed + max(0, (row.phase_rounds or row.rounds) - 1)
        lines.append(
            f"| {row.target.topology} | {row.target.backend} | {row.target.nodes} "
            f"| {row.variant or '-'} | {row.phase} "
            f"| {row.verdict} | {row.examples} | {row.effects} | {row.faults} | {caught_at} "
            f"| {row.first_seed}..{last_seed} | {row.seconds:.0f}s |"
        )
    return "\n".join(lines)


def as_json(rows: Sequence[Row], args: argparse.Namespace, seconds: float) -> str:
    """The rows as JSON (for scripts such as ``bench/audit_repeat.py``)."""
    return json.dumps(
        {
            "budget": args.budget,
            "seconds": seconds,
            "unexpected": sum(row.unexpected for row in rows),
            "rows": [
                {
                    "topology": row.target.topology,
                    "backend": row.target.backend,
                    "nodes": row.target.nodes,
                    "variant": row.variant,
                    "targeted": row.targeted,
                    "phase": row.phase,
                    "expected_to_fail": row.expected_to_fail,
                    "verdict": row.verdict,
                    "unexpected": row.unexpected,
                    "rounds": row.rounds,
                    "examples": row.examples,
                    "effects": row.effects,
                    "faults": row.faults,
                    "caught_at": None if row.caught is None else row.caught.caught_after,
                    "caught_seed": None if row.caught is None else row.caught.seed,
                    "violation": None
                    if row.caught is None or row.caught.failure is None
                    else row.caught.failure.splitlines()[0],
                    "seconds": row.seconds,
                    "replay": replay(args, row),
                }
                for row in rows
            ],
        },
        indent=2,
    )


def merged_coverage(rows: Sequence[Row]) -> dict[Target, Coverage]:
    """The coverage of every correct-protocol target: its swarm and phase rows."""
    merged: dict[Target, Coverage] = {}
    for row in rows:
        if row.variant is None and not row.expected_to_fail:
            merged.setdefault(row.target, Coverage()).merge(row.coverage)
    return merged


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``cascache-audit``."""
    started = time.perf_counter()
    args = parse(argv)
    if args.exhaustive:
        variants = (
            sorted(VARIANTS) if args.variant == "all" else [args.variant] * bool(args.variant)
        )
        topologies = args.topology or EXPLORABLE
        return exhaustive(topologies, args.scope or [], variants, args.max_states, args.jobs)
    rows = audit(args, started)
    if not rows:
        print(
            "audit: nothing to run: no target matches these options (a variant on a "
            "topology it does not apply to, or a backend that is not there?)"
        )
        return 2
    print()
    print(table(rows))
    print()
    print(LEGEND)
    for row in rows:
        print()
        if row.caught is None:
            print(f"--- {row.verdict}: {row.label}")
        else:
            kind = "expected" if row.expected_to_fail else "UNEXPECTED"
            print(f"--- {kind} violation: {row.label}")
            print(row.caught.failure)
            if args.verbose:
                print(row.caught.reproduce)
        print(f"replay: {replay(args, row)}")
    if args.coverage:
        for target, coverage in merged_coverage(rows).items():
            print()
            print(f"--- coverage of {target}, swarm and phases: {summary(coverage)}")
            print(coverage.render())
            gaps = coverage.missing()
            print("reachable cells not reached: " + ("; ".join(gaps) or "none"))
    bad = [row for row in rows if row.unexpected]
    seconds = time.perf_counter() - started
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            out.write(as_json(rows, args, seconds))
    print()
    print(
        f"audit: OK in {seconds:.0f}s"
        if not bad
        else f"audit: {len(bad)} unexpected result(s) in {seconds:.0f}s: "
        + "; ".join(f"{row.label}: {row.verdict}" for row in bad)
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
