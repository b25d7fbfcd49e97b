"""The model, bounded for CI: the correct protocol passes everywhere, every wrong one is caught.

Every run here is seeded (rounds with seeds 0, 1, 2, ...), so a result is reproducible;
the audit command runs the same code with open-ended budgets and fresh seeds.
"""

from __future__ import annotations

import os

import pytest

from model.run import CONTROLS, DIRECTED, TOPOLOGIES, Result, Target, cover, hunt, url_client
from model.servers import RedisServer
from model.zoo import VARIANTS

# The correct protocol's budget follows the profile (CI runs more); catching a known-bad
# variant stops at the first violation, so its cap is the same everywhere.
PROFILE = os.environ.get("CASCACHE_PROFILE", "dev")
PASSING_ROUNDS, PASSING_EXAMPLES = {"dev": (1, 100), "ci": (3, 150)}[PROFILE]
IN_MEMORY_ROUNDS = {"dev": 1, "ci": 10}[PROFILE]
"""In-memory targets run about five times faster than Redis ones, so CI gives them more
rounds for the same time (three rounds there met no hazard at all)."""
DIRECTED_ROUNDS = {"memory": 12, "fakeredis": 9}
DIRECTED_EXAMPLES = 50
"""Rounds of each coverage phase (model.run.DIRECTED) in the CI profile, per backend, and
examples per round (short rounds with many seeds explore more varied starts). The
real-server targets run the same code paths as fakeredis and are not gated (their
coverage is printed)."""
SETTLING = frozenset({"async-local-store", "async-shared-versions", "async-redis"})
"""Topologies that run a sync topology's protocol path with every store call awaited
(local-store's, shared-versions', redis'): in CI a short clean run covers the settling
(``Process`` on an event loop) on every backend, and their coverage phases and most of
their bug-zoo pairs, which repeat the sync topology's, run in the audit
(``cascache-audit``, ``--coverage``, ``--variant all``) to keep CI within its time."""
SETTLING_ROUNDS = 3
SETTLING_ZOO = frozenset(
    {("write-creates-fence", "async-redis"), ("stamps-current-fence", "async-shared-versions")}
)
"""The asyncio bug-zoo pairs CI runs too: #4 wires its own awaited script, and #3 is the
generic path's own mistake, on the asyncio version store."""

MITIGATIONS = frozenset({"redis-failover-wait", "redis-restart-waitaof"})
"""Topologies that run redis' protocol with one more wait in ``invalidate``: CI hunts them
(failovers and restarts are in their swarm) but leaves their coverage phases, which aim at
redis' read paths and repeat ``redis``' own, to the audit (``cascache-audit --coverage``);
the explorer proves the failover mitigation in CI (``tests/test_explore.py``)."""
AUDIT_ZOO = frozenset({("seeds-fresh-snapshot", "redis"), ("seeds-fresh-snapshot", "local")})
"""Bug-zoo pairs whose seeded hunt takes over a minute on a slow CI machine (92 s and
45 s at 13 minutes for the whole suite): the sampled model catches the same variant in
CI on ``local-store`` and ``shared-versions``, the explorer catches it at its smallest
scope, and the audit (``cascache-audit --variant all``) hunts these pairs."""

CATCH_ROUNDS = 25
CATCH_EXAMPLES = 200
SHRINK_SECONDS = 5.0

CORRECT = [
    Target("local"),
    Target("local-store"),
    Target("async-local-store"),
    Target("shared-versions", "fakeredis"),
    Target("redis", "fakeredis"),
    Target("shared-versions", "real"),
    Target("redis", "real"),
    Target("async-shared-versions", "fakeredis"),
    Target("async-redis", "fakeredis"),
    Target("async-shared-versions", "real"),
    Target("async-redis", "real"),
    Target("redis-failover-wait", "fakeredis"),
    Target("redis-restart-waitaof", "fakeredis"),
]


def _show(result: Result) -> None:
    print(
        f"{result.target} variant={result.variant}: {result.rounds} rounds, "
        f"{result.examples} examples, {result.effects} effects, {result.faults} faults, "
        f"{result.seconds:.1f}s, caught after {result.caught_after} (seed {result.seed})"
    )
    if result.failure:
        print(result.failure)
        print(result.reproduce)


@pytest.mark.parametrize("target", CORRECT, ids=str)
def test_protocol_keeps_every_property(target: Target, request: pytest.FixtureRequest) -> None:
    connect = None
    if target.backend == "real":
        server: RedisServer = request.getfixturevalue("redis_server")
        connect = url_client(server.url)
    rounds = IN_MEMORY_ROUNDS if target.backend == "memory" else PASSING_ROUNDS
    if target.topology in SETTLING:
        rounds = min(rounds, SETTLING_ROUNDS)
    result = hunt(target, rounds=rounds, examples=PASSING_EXAMPLES, connect=connect)
    _show(result)
    gated = (
        PROFILE == "ci"
        and target.backend in DIRECTED_ROUNDS
        and target.topology not in SETTLING | MITIGATIONS
    )
    if gated:
        # The coverage phases are correctness runs too: a violation there fails the test.
        phases = cover(target, rounds=DIRECTED_ROUNDS[target.backend], examples=DIRECTED_EXAMPLES)
        print(f"coverage phases ({', '.join(DIRECTED)}):")
        _show(phases)
        assert phases.failure is None, f"in phase {phases.phase}: {phases.failure}"
        result.coverage.merge(phases.coverage)
    coverage = result.coverage
    print(coverage.render())
    print("reachable cells not reached:", "; ".join(coverage.missing()) or "none")
    assert result.failure is None, result.failure
    assert result.examples >= rounds * PASSING_EXAMPLES
    assert result.effects > result.examples, "the model ran almost no effects: vacuous"
    assert result.faults > 0, "no fault was ever injected"
    assert coverage.faulted
    if PROFILE == "ci":
        # Not vacuous: reads met entries they had to refuse, and entries that would have
        # broken FRESH if served. (The dev profile's 100 examples sometimes meet neither.)
        assert sum(coverage.refusals.values()) > 0, "no read ever refused an entry"
        assert sum(coverage.hazards.values()) > 0, "no read ever met a stale entry"
    if gated:
        # Every reachable cell was reached (model.coverage lists what is unreachable, and
        # why): effects under every outcome, every refusal on every read path, hazards.
        assert not coverage.missing(), "reachable cells not reached: " + "; ".join(
            coverage.missing()
        )


def _assert_caught(
    topology: str, variant: str | None, properties: tuple[str, ...], targeted: bool = False
) -> None:
    backend = "fakeredis" if TOPOLOGIES[topology][0] else "memory"
    result = hunt(
        Target(topology, backend),
        variant,
        rounds=CATCH_ROUNDS,
        examples=CATCH_EXAMPLES,
        shrink_seconds=SHRINK_SECONDS,
        targeted=targeted,
    )
    _show(result)
    assert result.failure is not None, f"{variant or 'the control'} was not caught on {topology}"
    headline = result.failure.splitlines()[0]
    assert any(prop in headline for prop in properties), headline


SWARM_CONTROLS = ["per-node-local-versions"]
"""Controls the full swarm must catch in CI too. The swarm meets the redis-failover hazard
(a promotion within a few rules of an acknowledged invalidate, with the old entry already
on the replica) about once in a few thousand examples (caught after 400, 870 and 3,152
examples from seeds 200, 100 and 300; not in 7,102 from seed 0), too rare for a bounded CI
run: it is caught in its targeted phase, as the audit runs it."""


@pytest.mark.parametrize("topology", sorted(CONTROLS))
def test_negative_control_is_caught_in_its_targeted_phase(topology: str) -> None:
    _assert_caught(topology, None, ("FRESH", "state invariant"), targeted=True)


@pytest.mark.parametrize("topology", SWARM_CONTROLS)
def test_negative_control_is_caught_by_the_full_swarm(topology: str) -> None:
    _assert_caught(topology, None, ("FRESH", "state invariant"))


ZOO = [
    (name, topology)
    for name, variant in VARIANTS.items()
    for topology in variant.topologies
    if (topology not in SETTLING or (name, topology) in SETTLING_ZOO)
    and (name, topology) not in AUDIT_ZOO
]


@pytest.mark.parametrize(("variant", "topology"), ZOO)
def test_bug_zoo_variant_is_caught(variant: str, topology: str) -> None:
    _assert_caught(topology, variant, VARIANTS[variant].caught_by)
