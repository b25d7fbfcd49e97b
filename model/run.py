"""Running the model: targets (topology x backend), variants, budgets and results.

Tests and the audit command both go through :func:`run`, so what CI checks and what an
auditor runs are the same code with different budgets.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hypothesis import HealthCheck, settings
from hypothesis import seed as hypothesis_seed
from hypothesis.stateful import get_state_machine_test

from cascache.batch import Core

from .coverage import Coverage
from .machine import FAULTS, ModelFailure, machine_for
from .topology import (
    AllInRedis,
    AsyncAllInRedis,
    AsyncLocalRecords,
    AsyncSharedVersions,
    Connect,
    CoreFactory,
    Local,
    LocalRecords,
    PerNodeLocalVersions,
    RedisFailover,
    RedisRestart,
    SharedVersions,
    SharedVersionsRestart,
    Topology,
)
from .zoo import VARIANTS, Variant

if TYPE_CHECKING:
    import redis
    import redis.cluster

NO_REPLICA = FAULTS - {"failover", "restart"}
TOPOLOGIES: dict[str, tuple[bool, frozenset[str]]] = {
    # name: (needs Redis, faults the topology is expected to survive)
    "local": (False, NO_REPLICA),
    "local-store": (False, NO_REPLICA),
    "async-local-store": (False, NO_REPLICA),
    "shared-versions": (True, NO_REPLICA),
    "redis": (True, NO_REPLICA - {"clock"}),
    "async-shared-versions": (True, NO_REPLICA),
    "async-redis": (True, NO_REPLICA - {"clock"}),
    "per-node-local-versions": (False, NO_REPLICA),
    "redis-failover": (True, NO_REPLICA - {"clock"} | {"failover"}),
    "redis-failover-wait": (True, NO_REPLICA - {"clock"} | {"failover"}),
    "redis-restart": (True, NO_REPLICA - {"clock"} | {"restart"}),
    "redis-restart-waitaof": (True, NO_REPLICA - {"clock"} | {"restart"}),
    "shared-versions-restart": (True, NO_REPLICA | {"restart"}),
}
"""Every topology the model knows, with the faults it runs under. Redis keeps its own
clock, so the model cannot move it; only the failover topologies have a replica, and only
the restart topologies persist to disk."""

TOPOLOGY_HELP: dict[str, str] = {
    "local": "cascache.new, in-process stores shared by the nodes (no violation expected)",
    "local-store": "cascache.new on one LocalStore: value and version in one record per key "
    "(none expected)",
    "async-local-store": "local-store with every store call awaited on an event loop, each "
    "awaitable effect stepped on its own (none expected)",
    "shared-versions": "a MemoryProvider per node, versions shared in Redis (none expected)",
    "redis": "cascache.redis.new: values and versions in Redis, Lua scripts (none expected)",
    "async-shared-versions": "shared-versions with the versions on a redis.asyncio client "
    "(cascache.redis.aio.new_gen_store), each awaited call stepped on its own (none expected)",
    "async-redis": "cascache.redis.aio.new: redis on a redis.asyncio client, each awaited "
    "command or script stepped on its own (none expected)",
    "per-node-local-versions": "negative control: shared values, a version store per node "
    "(must be caught)",
    "redis-failover": "negative control: redis with a lagging replica that a fault promotes "
    "(must be caught)",
    "redis-failover-wait": "redis-failover with every invalidate waiting for the replica "
    "(none expected)",
    "redis-restart": "negative control: redis with RDB snapshots, killed and restarted from "
    "the last one (must be caught)",
    "redis-restart-waitaof": "redis-restart with every invalidate on disk before it returns "
    "(WAITAOF or appendfsync always; none expected)",
    "shared-versions-restart": "negative control: shared-versions whose Redis restarts from "
    "its last RDB snapshot while nodes keep their values (must be caught)",
}
"""One line per topology, for ``cascache-audit --help`` and the README."""

FAULT_HELP: dict[str, str] = {
    "step": "a store effect fails, either not applied or applied with the reply lost",
    "cancel": "an operation is cancelled at its pending effect (asyncio task cancellation): "
    "the effect applied or not, the operation stops with CancelledError",
    "evict": "a value-store entry or batch entry disappears (eviction)",
    "corrupt": "a stored entry is corrupted: a byte flips, another valid frame of the same "
    "length replaces it, or a current frame whose payload the codec refuses",
    "writeback": "an older frame of a key is written back into a value store (a slow "
    "writer, a lagging value replica), or one a slow filler could still land",
    "outage": "the version store fails every effect for several rules",
    "lose_version": "one key's version, or every version, is lost (eviction, restart, FLUSHALL) "
    "or overwritten with something that is not a fence",
    "clock": "time jumps forward, so entries expire (in-process stores only)",
    "failover": "the replica syncs, or is promoted (failover topologies only)",
    "restart": "the server snapshots to disk, or is killed and restarts from its last "
    "snapshot (restart topologies only)",
}
"""One line per fault family, for ``cascache-audit --help`` and the README."""

CONTROLS = frozenset(
    {"per-node-local-versions", "redis-failover", "redis-restart", "shared-versions-restart"}
)
"""Negative controls: expected to fail, so a passing run of one is itself a failure."""


@dataclass(frozen=True)
class Focus:
    """A focused run: the model narrowed to the rule families and faults one hazard needs.

    A negative control shows that the checks are not vacuous; it needs only to be caught,
    and the full swarm reaches its hazard only now and then. Its targeted run
    (:data:`TARGETED`) uses the same machine, rules and checks with fewer families
    enabled, so the hazard is a few rules away in most examples. A coverage phase
    (:data:`DIRECTED`) narrows the correct protocol the same way, so that a read path
    meets what it must refuse, and a race phase (:data:`RACES`) so that one race comes up
    in most examples; there ``hazard`` says what the phase aims at.
    """

    kinds: frozenset[str]
    faults: frozenset[str]
    max_keys: int
    hazard: str


TARGETED: dict[str, Focus] = {
    "per-node-local-versions": Focus(
        frozenset({"fill", "writer", "get"}),
        frozenset(),
        1,
        "a fill races a write and invalidate made on the other node, then a read",
    ),
    "redis-failover": Focus(
        frozenset({"writer", "get", "inject"}),
        frozenset({"failover"}),
        1,
        "a fill, a write and invalidate, then a failover before the replica caught up",
    ),
    "redis-restart": Focus(
        frozenset({"writer", "get", "inject"}),
        frozenset({"restart"}),
        1,
        "a fill, a snapshot to disk, a write and invalidate, then a restart from it",
    ),
    "shared-versions-restart": Focus(
        frozenset({"writer", "get", "inject"}),
        frozenset({"restart"}),
        1,
        "a fill, a snapshot to disk, a write and invalidate, a restart, then a node "
        "reads its own entry",
    ),
}
"""The targeted run of each negative control (the audit runs it first)."""

_SINGLE = frozenset({"fill", "get", "get_or_load", "inject"})
_BATCH = frozenset({"batch_fill", "get_many", "get_many_or_load", "inject"})
_FALLBACK = frozenset({"fill", "get_many", "get_many_or_load", "inject"})
_STALE = frozenset({"step", "writeback"})
_DAMAGE = frozenset({"corrupt", "lose_version", "evict"})

DIRECTED: dict[str, Focus] = {
    "stale singles": Focus(
        _SINGLE | {"writer"},
        _STALE,
        1,
        "get and get_or_load meet entries a write made stale, while their effects fail",
    ),
    "damaged singles": Focus(
        _SINGLE,
        _DAMAGE | {"step"},
        1,
        "get and get_or_load meet lost versions, corrupt and foreign entries",
    ),
    "stale batches": Focus(
        _BATCH | {"writer"},
        _STALE,
        2,
        "get_many and get_many_or_load meet stale batch entries, while their effects fail",
    ),
    "damaged batches": Focus(
        frozenset({"batch_fill", "get_many", "inject"}),
        _DAMAGE | {"step"},
        2,
        "get_many meets lost versions, corrupt and foreign batch entries",
    ),
    "damaged batch loads": Focus(
        frozenset({"batch_fill", "get_many_or_load", "inject"}),
        _DAMAGE | {"step"},
        2,
        "get_many_or_load meets lost versions, corrupt and foreign batch entries",
    ),
    "damaged fallbacks": Focus(
        _FALLBACK | {"writer"},
        _STALE | _DAMAGE,
        2,
        "get_many and get_many_or_load fall back to stale and damaged single entries",
    ),
}
"""The coverage phases: the model narrowed to the families that make each read path meet
every kind of entry it must refuse, under every effect outcome (see :mod:`model.coverage`).
The CI profile runs them beside the swarm and fails on any reachable cell left at zero."""

_COALESCING = frozenset({"get_or_load", "writer"})

RACES: dict[str, Focus] = {
    "coalesced singles": Focus(
        _COALESCING,
        frozenset(),
        1,
        "a get_or_load's load is in the air (or its store has taken effect) when a write "
        "and invalidate return, and then a get_or_load joins its flight",
    ),
    "coalesced batches": Focus(
        _COALESCING | {"get_many_or_load"},
        frozenset(),
        2,
        "the same race with get_many_or_load leading or joining the flights",
    ),
}
"""The race phases: the model narrowed to the families of one race, without faults, so that
the race is a few rules away in most examples. Coalescing is where a moment inside one
operation decides freshness, and the swarm meets it only now and then: its mistakes
(bug zoo #13-#16, and the hand mutants of ``specs/mutants.md``) take the swarm hundreds to
thousands of examples, these phases a few to a few hundred. The default audit runs them on
every correct target beside its swarm."""

PHASES: dict[str, Focus] = {**DIRECTED, **RACES}
"""Every named phase: the coverage phases, then the race phases."""


@dataclass(frozen=True)
class Target:
    """Where the model runs: a topology on a backend with some number of cache nodes."""

    topology: str
    backend: str = "memory"
    nodes: int = 2

    def __str__(self) -> str:
        return f"{self.topology}/{self.backend}/{self.nodes}n"


@dataclass
class Result:
    """What one run found."""

    target: Target
    variant: str | None
    examples: int = 0
    effects: int = 0
    faults: int = 0
    seconds: float = 0.0
    failure: str | None = None
    caught_after: int | None = None
    reproduce: str = ""
    expected_to_fail: bool = False
    rounds: int = 0
    seed: int | None = None
    round_examples: int = 0
    targeted: bool = False
    phase: str | None = None
    """The :data:`PHASES` phase the violation was found in, if any."""
    phase_rounds: int = 0
    """With :func:`cover`: the most rounds any one phase ran (seeds ``seed..seed+n-1``)."""
    coverage: Coverage = field(default_factory=Coverage)

    def add(self, found: Result) -> None:
        """Add the counts of a later run (a round, or a phase) to these; its violation, if
        any, becomes this result's."""
        self.expected_to_fail = found.expected_to_fail
        self.rounds += found.rounds
        self.examples += found.examples
        self.effects += found.effects
        self.faults += found.faults
        self.seconds += found.seconds
        self.coverage.merge(found.coverage)
        if found.failure is not None:
            self.failure, self.reproduce = found.failure, found.reproduce
            if found.caught_after is not None:
                self.caught_after = self.examples - found.examples + found.caught_after
            self.seed, self.phase = found.seed, found.phase

    @property
    def as_expected(self) -> bool:
        """A correct protocol passes; a variant or a negative control must be caught."""
        return (self.failure is not None) == self.expected_to_fail


_SLOW_SHRINK = "WARNING: Hypothesis has spent more than five minutes"


def fake_redis() -> redis.Redis | redis.cluster.RedisCluster:
    """A client on a brand-new fakeredis server (one per example: Lua state is per server)."""
    import fakeredis

    return fakeredis.FakeRedis(server=fakeredis.FakeServer())


def url_client(url: str) -> Connect:
    """Connect to a real server; the model never flushes it (each example has a namespace)."""

    def connect() -> redis.Redis | redis.cluster.RedisCluster:
        import redis

        return redis.Redis.from_url(url)

    return connect


def build(target: Target, connect: Connect | None) -> Callable[[CoreFactory], Topology]:
    """The topology factory of ``target``."""
    nodes = target.nodes
    if target.topology == "local":
        return lambda core: Local(nodes, core)
    if target.topology == "local-store":
        return lambda core: LocalRecords(nodes, core)
    if target.topology == "async-local-store":
        return lambda core: AsyncLocalRecords(nodes, core)
    if target.topology == "per-node-local-versions":
        return lambda core: PerNodeLocalVersions(nodes, core)
    if connect is None:
        raise ValueError(f"{target} needs a Redis connection")
    redis_connect = connect
    if target.topology == "shared-versions":
        return lambda core: SharedVersions(nodes, core, redis_connect)
    if target.topology == "redis":
        return lambda core: AllInRedis(nodes, core, redis_connect)
    if target.topology == "async-shared-versions":
        return lambda core: AsyncSharedVersions(nodes, core, redis_connect)
    if target.topology == "async-redis":
        return lambda core: AsyncAllInRedis(nodes, core, redis_connect)
    if target.topology == "redis-failover":
        return lambda core: RedisFailover(nodes, core, redis_connect)
    if target.topology == "redis-failover-wait":
        return lambda core: RedisFailover(nodes, core, redis_connect, wait=True)
    if target.topology == "redis-restart":
        return lambda core: RedisRestart(nodes, core, redis_connect)
    if target.topology == "redis-restart-waitaof":
        return lambda core: RedisRestart(nodes, core, redis_connect, wait=True)
    if target.topology == "shared-versions-restart":
        return lambda core: SharedVersionsRestart(nodes, core, redis_connect)
    raise ValueError(f"unknown topology {target.topology!r}; known: {', '.join(TOPOLOGIES)}")


@contextlib.contextmanager
def shrink_limit(seconds: float | None) -> Iterator[None]:
    """Cap Hypothesis's shrinking time (an internal constant; uncapped if it ever moves)."""
    if seconds is None:
        yield
        return
    try:
        from hypothesis.internal.conjecture import engine
    except ImportError:  # pragma: no cover - Hypothesis reorganised its internals
        yield
        return
    saved = getattr(engine, "MAX_SHRINKING_SECONDS", None)
    if saved is None:  # pragma: no cover
        yield
        return
    engine.MAX_SHRINKING_SECONDS = int(seconds)
    try:
        yield
    finally:
        engine.MAX_SHRINKING_SECONDS = saved


@contextlib.contextmanager
def no_local_constants() -> Iterator[None]:
    """Keep Hypothesis from mixing literals of the loaded modules into its draws.

    Hypothesis draws now and then from the constants it finds in every local module
    loaded so far, so the same seed generates other examples in a process that happens to
    have imported more (pytest's conftest, a lazy import in an earlier test). The model's
    rounds must replay from their seed alone (the audit's replay lines, the CI coverage
    gate), so they run with no local constants. Uses a Hypothesis internal; if it ever
    moves, runs fall back to Hypothesis's default behaviour.
    """
    try:
        from hypothesis.internal.conjecture import providers
    except ImportError:  # pragma: no cover - Hypothesis reorganised its internals
        yield
        return
    saved = getattr(providers, "_get_local_constants", None)
    cache = getattr(providers, "CONSTANTS_CACHE", None)
    empty = getattr(providers, "Constants", None)
    if saved is None or cache is None or empty is None:  # pragma: no cover
        yield
        return
    none = empty()
    providers._get_local_constants = lambda: none
    cache.cache.clear()
    try:
        yield
    finally:
        providers._get_local_constants = saved
        cache.cache.clear()


def run(
    target: Target,
    variant: str | None = None,
    *,
    examples: int = 100,
    steps: int = 25,
    min_steps: int = 0,
    seed: int | None = None,
    faults: frozenset[str] | None = None,
    connect: Connect | None = None,
    shrink_seconds: float | None = 30.0,
    targeted: bool = False,
    focus: Focus | None = None,
) -> Result:
    """Run the model once on ``target`` (optionally with a bug-zoo ``variant``); with
    ``targeted``, narrowed to the control's :data:`TARGETED` focus; with ``focus``, to
    that one (a :data:`PHASES` phase)."""
    needs_redis, survives = TOPOLOGIES[target.topology]
    if needs_redis and connect is None:
        connect = fake_redis if target.backend == "fakeredis" else None
    chosen: Variant | None = VARIANTS[variant] if variant is not None else None
    core: CoreFactory = chosen.core if chosen is not None else Core
    active = survives & (faults if faults is not None else FAULTS)
    if targeted:
        focus = TARGETED[target.topology]
    if focus is None:
        machine = machine_for(build(target, connect), core=core, faults=active)
    else:
        machine = machine_for(
            build(target, connect),
            core=core,
            faults=survives & focus.faults,
            kinds=focus.kinds,
            max_keys=focus.max_keys,
            swarm=False,
        )
    config = settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        database=None,
        derandomize=seed is None,
        report_multiple_bugs=False,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    test = get_state_machine_test(machine, settings=config, _min_steps=min_steps)
    if seed is not None:
        test = hypothesis_seed(seed)(test)
    result = Result(
        target,
        variant,
        expected_to_fail=chosen is not None or target.topology in CONTROLS,
        round_examples=examples,
        targeted=targeted,
        seed=seed,
    )
    report = io.StringIO()
    started = time.perf_counter()
    try:
        with (
            shrink_limit(shrink_seconds),
            no_local_constants(),
            contextlib.redirect_stdout(report),
        ):
            test()
    except ModelFailure as failure:
        result.failure = str(failure)
        # Hypothesis attaches the failing program and its replay blob as notes.
        notes = "\n".join(getattr(failure, "__notes__", []))
        report.write(notes)
    text = report.getvalue()
    if _SLOW_SHRINK in text:
        # Hypothesis words this for its own five-minute cap; ours is ``shrink_seconds``.
        start = text.index(_SLOW_SHRINK)
        end = text.find("\n", text.find("PLEASE REPORT THIS", start))
        text = (
            text[:start]
            + f"(shrinking stopped at the {shrink_seconds:g}s cap; the trace may not be minimal)"
            + text[end if end != -1 else len(text) :]
        )
    result.seconds = time.perf_counter() - started
    tally = machine.tally
    result.examples, result.effects, result.faults = tally.examples, tally.effects, tally.faults
    result.caught_after = tally.first_failure
    result.coverage = machine.coverage
    result.reproduce = text
    return result


def hunt(
    target: Target,
    variant: str | None = None,
    *,
    rounds: int,
    examples: int = 200,
    first_seed: int = 0,
    deadline: float | None = None,
    steps: int = 25,
    faults: frozenset[str] | None = None,
    connect: Connect | None = None,
    shrink_seconds: float | None = 30.0,
    targeted: bool = False,
    focus: Focus | None = None,
    progress: Callable[[Result], None] | None = None,
) -> Result:
    """Run seeded rounds until one finds a violation, ``rounds`` ran, or ``deadline`` passed.

    Many short rounds with different seeds explore more varied interleavings than one
    long run, whose later examples mostly mutate its earlier ones. The result adds up
    every round; its ``seed`` and ``round_examples`` replay the round that found the
    violation.

    Rounds are all ``examples`` long, so rounds ``first_seed .. first_seed + n - 1`` replay
    exactly. With a ``deadline`` no round starts after it, and shrinking a violation is
    capped by the time left (at least one second), so a hunt overruns its deadline by at
    most one round. ``progress`` is called after every round.
    """
    total = Result(target, variant, targeted=targeted, round_examples=examples)
    for number in range(rounds):
        shrink = shrink_seconds
        if deadline is not None:
            left = deadline - time.perf_counter()
            if number > 0 and left <= 0:
                break
            shrink = max(1.0, min(shrink_seconds or left, left))
        seed = first_seed + number
        found = run(
            target,
            variant,
            examples=examples,
            steps=steps,
            seed=seed,
            faults=faults,
            connect=connect,
            shrink_seconds=shrink,
            targeted=targeted,
            focus=focus,
        )
        found.rounds, found.seed = 1, seed
        total.add(found)
        if progress is not None:
            progress(total)
        if found.failure is not None:
            break
    return total


def cover(
    target: Target,
    variant: str | None = None,
    *,
    rounds: int,
    examples: int = 150,
    first_seed: int = 0,
    deadline: float | None = None,
    steps: int = 25,
    connect: Connect | None = None,
    shrink_seconds: float | None = 30.0,
    phases: Sequence[str] = tuple(DIRECTED),
    progress: Callable[[Result], None] | None = None,
) -> Result:
    """Hunt the correct protocol (or bug-zoo ``variant``) on ``target`` in each of ``phases``
    (:data:`PHASES`; ``rounds`` rounds each, seeds from ``first_seed``; with a ``deadline``,
    an equal share of the time left per phase), merging their counts and coverage; stops at
    the first violation."""
    total = Result(target, variant, round_examples=examples)

    def report(partial: Result) -> None:
        """Progress after every round: the phases so far plus this one's rounds."""
        if progress is not None:
            view = Result(target, variant, round_examples=examples)
            view.add(total)
            view.add(partial)
            progress(view)

    for index, name in enumerate(phases):
        share = None
        if deadline is not None:
            share = time.perf_counter() + (deadline - time.perf_counter()) / (len(phases) - index)
        found = hunt(
            target,
            variant,
            rounds=rounds,
            examples=examples,
            first_seed=first_seed,
            deadline=share,
            steps=steps,
            connect=connect,
            shrink_seconds=shrink_seconds,
            focus=PHASES[name],
            progress=report,
        )
        found.phase = name
        total.add(found)
        total.phase_rounds = max(total.phase_rounds, found.rounds)
        if found.failure is not None:
            break
    return total
