"""``cascache-audit`` (also ``python -m model``): the model over every topology, on a budget.

With no arguments it runs the correct protocol on every topology it can reach (in-process
stores, fakeredis, plus a real server when a binary is found or ``--redis-url`` is given,
plus a local cluster with ``--cluster``) and the negative control, splitting ``--budget``
seconds between them, then prints one table. Exit status 1 means an unexpected result: a
violation on a correct topology, or a control / bug-zoo variant that was *not* caught.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .machine import FAULTS
from .run import CONTROLS, TOPOLOGIES, Result, Target, hunt, url_client
from .topology import Connect
from .zoo import VARIANTS

if TYPE_CHECKING:
    import redis.cluster


@dataclass
class Row:
    """The audit table row of one target (all rounds added up)."""

    target: Target
    variant: str | None
    expected_to_fail: bool
    rounds: int = 0
    examples: int = 0
    effects: int = 0
    faults: int = 0
    seconds: float = 0.0
    caught: Result | None = None
    seed: int | None = None

    @property
    def unexpected(self) -> bool:
        """A violation where none may be, or no violation where one must be."""
        return (self.caught is not None) != self.expected_to_fail


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="cascache-audit",
        description="Run the cascache interleaving model over every topology.",
    )
    parser.add_argument("--budget", type=float, default=120.0, help="seconds in all (120)")
    parser.add_argument("--seed", type=int, default=None, help="first Hypothesis seed")
    parser.add_argument(
        "--topology", action="append", choices=sorted(TOPOLOGIES), help="repeatable"
    )
    parser.add_argument("--nodes", type=int, default=2, help="cache nodes per topology (2)")
    parser.add_argument(
        "--faults",
        default=",".join(sorted(FAULTS)),
        help=f"comma-separated fault families, or 'none' ({','.join(sorted(FAULTS))})",
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
    parser.add_argument("--examples", type=int, default=200, help="examples per round (200)")
    parser.add_argument("--steps", type=int, default=25, help="rules per example (25)")
    args = parser.parse_args(argv)
    if args.nodes < 1:
        parser.error("--nodes must be at least 1")
    if args.budget <= 0:
        parser.error("--budget must be positive")
    faults = set() if args.faults == "none" else set(filter(None, args.faults.split(",")))
    if unknown := faults - FAULTS:
        parser.error(f"unknown fault families: {', '.join(sorted(unknown))}")
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


def audit(args: argparse.Namespace) -> list[Row]:
    """Run every planned target on its share of the budget; print progress as it goes."""
    with servers(args) as connects:
        pairs = plan(args, real="real" in connects)
        rows = [
            Row(t, v, expected_to_fail=v is not None or t.topology in CONTROLS) for t, v in pairs
        ]
        share = args.budget / max(1, len(rows))
        seed = args.seed if args.seed is not None else int(time.time())
        print(
            f"cascache-audit: {len(rows)} targets, {args.budget:.0f}s budget, seed {seed}, "
            f"faults {','.join(sorted(args.faults)) or 'none'}",
            flush=True,
        )
        started = time.perf_counter()
        for row in rows:
            result = hunt(
                row.target,
                row.variant,
                rounds=1_000_000,
                examples=args.examples,
                first_seed=seed,
                deadline=time.perf_counter() + share,
                steps=args.steps,
                faults=args.faults,
                connect=connects.get(row.target.backend),
                shrink_seconds=max(10.0, share / 2),
            )
            row.rounds, row.examples = result.rounds, result.examples
            row.effects, row.faults, row.seconds = result.effects, result.faults, result.seconds
            if result.failure is not None:
                row.caught, row.seed = result, result.seed
            mark = "caught" if row.caught else "clean"
            print(
                f"[{time.perf_counter() - started:6.0f}s] {row.target} "
                f"{row.variant or 'protocol'}: {row.rounds} rounds, {row.examples} examples, "
                f"{row.effects} effects, {row.faults} faults: {mark}"
                f"{'  << UNEXPECTED' if row.unexpected else ''}",
                flush=True,
            )
    return rows


def table(rows: Sequence[Row]) -> str:
    """The closing Markdown table."""
    lines = [
        "| topology | backend | nodes | variant | examples | effects | faults injected "
        "| violations expected / unexpected | caught after (examples) | time |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        expected = 1 if row.caught is not None and row.expected_to_fail else 0
        unexpected = 1 if row.unexpected else 0
        caught_after = (
            "-"
            if row.caught is None or row.caught.caught_after is None
            else str(row.caught.caught_after)
        )
        lines.append(
            f"| {row.target.topology} | {row.target.backend} | {row.target.nodes} "
            f"| {row.variant or '-'} | {row.examples} | {row.effects} | {row.faults} "
            f"| {expected} / {unexpected} | {caught_after} | {row.seconds:.0f}s |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``cascache-audit``."""
    args = parse(argv)
    rows = audit(args)
    print()
    print(table(rows))
    for row in rows:
        if row.caught is not None:
            print()
            kind = "expected" if row.expected_to_fail else "UNEXPECTED"
            print(f"--- {kind} violation: {row.target} {row.variant or 'protocol'}")
            print(row.caught.failure)
            print(row.caught.reproduce)
            print(
                f"replay: cascache-audit --topology {row.target.topology} "
                f"--backend {row.target.backend} --nodes {row.target.nodes} --seed {row.seed} "
                f"--examples {args.examples} --steps {args.steps} --faults "
                f"{','.join(sorted(args.faults)) or 'none'}"
                + (f" --variant {row.variant}" if row.variant else "")
            )
    bad = [row for row in rows if row.unexpected]
    print()
    print("audit: OK" if not bad else f"audit: {len(bad)} unexpected result(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
