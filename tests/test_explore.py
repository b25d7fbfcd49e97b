"""The exhaustive explorer (model/explore.py): both directions, on a CI-sized share of the
claimed scopes. ``cascache-audit --exhaustive`` runs all of them (``specs/README.md``),
and ``--variant all`` establishes each variant's smallest scope (``specs/bug-zoo.md``);
CI checks each variant at that scope, and the reduction on the scopes where it matters."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest

from cascache.batch import Core
from model.explore import (
    ALL_SCOPES,
    CI_SCOPES,
    CONTROLS,
    MITIGATIONS,
    SCOPES,
    Operation,
    Scope,
    broken_property,
    explore,
    fingerprint,
    machine,
    replay,
    smallest,
)
from model.machine import ModelFailure
from model.zoo import STALE, VARIANTS

BY_NAME = {scope.name: scope for scope in SCOPES}

LOCAL_CI_SCOPES = ("fill-write-read+loss", "load-write-read+fault", "batch-write-read")
"""On ``local`` (two stores, the generic path), the scopes whose faults and batches take
that path's own steps; ``local-store`` runs every CI scope."""
REDIS_CI = (
    ("redis", "fill-write-read"),
    ("redis", "load-write-read"),
    ("shared-versions", "load-write-read"),
)
"""On the fakeredis topologies (a fresh server per replayed path, about five times the
cost), the smallest scopes of the Redis code paths."""

CAUGHT_IN = {
    "cache-aside": ("local", "fill-write-read"),
    "delete-without-advance": ("local", "fill-write-read"),
    "stamps-current-fence": ("local", "fill-write-read"),
    "write-creates-fence": ("local-store", "fill-write-read+loss"),
    "delete-then-advance-unchecked": ("local", "load-write-read+fault"),
    "fire-and-forget": ("local", "fill-write-read"),
    "integer-generations": ("local", "fill-write-read+loss"),
    "missing-snapshot-accepted": ("local", "fill-write-read"),
    "first-member-only": ("local", "batch-write-read"),
    "seeds-fresh-snapshot": ("local", "batch-write-read"),
    "join-any": ("local-store", "load-write-load"),
    "any-store-proves": ("local-store", "load-write-load+late"),
    "lost-store-proves": ("local-store", "load-write-load+late"),
    "lost-batch-store-proves": ("local-store", "batch-load-write-load+late"),
    "no-compare": ("local", "fill-write-read"),
}
"""Every bug-zoo variant, the topology it is checked on here, and the smallest scope of
:data:`model.explore.SCOPES` that catches it (``specs/bug-zoo.md`` has the table)."""


@pytest.mark.parametrize(
    ("topology", "scope"),
    [("local-store", name) for name in CI_SCOPES] + [("local", name) for name in LOCAL_CI_SCOPES],
)
def test_the_correct_protocol_has_no_violation_in_any_ci_scope(topology: str, scope: str) -> None:
    report = explore(BY_NAME[scope], topology)
    assert report.failure is None, report.failure
    assert report.ok and report.states > 1 and report.complete >= 1


@pytest.mark.parametrize(("topology", "scope"), REDIS_CI)
def test_the_correct_protocol_has_no_violation_on_fakeredis(topology: str, scope: str) -> None:
    report = explore(BY_NAME[scope], topology)
    assert report.failure is None, report.failure
    assert report.ok and report.complete >= 1


@pytest.mark.parametrize(("topology", "scope"), CONTROLS)
def test_each_control_is_caught(topology: str, scope: str) -> None:
    report = explore(ALL_SCOPES[scope], topology)
    assert report.failure is not None
    assert broken_property(report.failure) in STALE
    assert f"violated on topology {topology}:" in report.failure


@pytest.mark.parametrize(("topology", "scope"), MITIGATIONS[:1])
def test_each_mitigation_holds(topology: str, scope: str) -> None:
    # The restart mitigation is the same code path with another name (the audit runs it).
    report = explore(ALL_SCOPES[scope], topology)
    assert report.failure is None, report.failure
    assert report.ok and report.faults_seen  # the promotion (or restart) was explored


def test_failover_and_restart_need_a_copy_to_fall_back_to() -> None:
    with pytest.raises(ValueError, match="has no replica or snapshot"):
        explore(ALL_SCOPES["fill-write-read+failover"], "redis")


def test_smallest_tries_the_scopes_in_order() -> None:
    # The audit's --variant all: the first scope that catches the variant, smallest first.
    report = smallest("fire-and-forget", "local-store", VARIANTS["fire-and-forget"].core)
    assert report.failure is not None and report.scope.name == "fill-write-read"


def test_every_variant_has_an_expected_scope() -> None:
    assert set(CAUGHT_IN) == set(VARIANTS)
    for variant, (topology, _) in CAUGHT_IN.items():
        assert topology in VARIANTS[variant].topologies


@pytest.mark.parametrize("variant", sorted(CAUGHT_IN))
def test_each_variant_is_caught_in_its_smallest_scope_with_a_trace(variant: str) -> None:
    topology, scope = CAUGHT_IN[variant]
    report = explore(ALL_SCOPES[scope], topology, VARIANTS[variant].core, variant)
    assert report.failure is not None, f"{variant} not caught in {scope}"
    prop = broken_property(report.failure)
    assert prop in VARIANTS[variant].caught_by
    # The model's trace format, ending where the violation was seen.
    assert "trace (time, process, node, effect -> what the operation saw):" in report.failure
    assert len(report.path) == report.depth > 0


def test_a_shortest_counterexample_has_no_shorter_one() -> None:
    # Every path of the scope shorter than the counterexample, enumerated without state
    # hashing, holds; so the breadth-first search with hashing lost nothing shorter.
    topology, scope = CAUGHT_IN["cache-aside"]
    core = VARIANTS["cache-aside"].core
    report = explore(BY_NAME[scope], topology, core)
    assert report.failure is not None
    cls = machine(BY_NAME[scope], topology, core)
    paths, frontier = 0, [()]
    for _ in range(len(report.path) - 1):
        longer = []
        for path in frontier:
            model = replay(cls, path)
            choices = model.choices()
            model.teardown()
            for choice in choices:
                replay(cls, (*path, choice)).teardown()  # raises on a violation
                longer.append((*path, choice))
        paths += len(longer)
        frontier = longer
    assert paths > report.transitions  # hashing merged states the brute force did not
    with pytest.raises(ModelFailure):
        replay(cls, report.path)


@pytest.mark.parametrize(
    ("topology", "scope", "variant"),
    [
        ("local-store", "load-write-load", None),
        ("local-store", "load-write-read+damage", None),
        ("local-store", "load-write-load", "join-any"),
        ("local-store", "load-write-load+late", None),
        ("local-store", "load-write-load+late", "lost-store-proves"),
    ],
)
def test_no_merge_hides_a_different_future(topology: str, scope: str, variant: str | None) -> None:
    # verify=True takes both states of every merge one step further and requires the
    # same transitions, fingerprints and violations (a fingerprint that left out the
    # flights a waiting caller holds failed exactly this, on join-any).
    core = VARIANTS[variant].core if variant else Core
    report = explore(ALL_SCOPES[scope], topology, core, variant, verify=True)
    assert (report.failure is not None) == (variant is not None), report.failure


def test_fingerprints_rename_fences_and_storage_names() -> None:
    scope = BY_NAME["load-write-read"]
    cls = machine(scope, "local", Core)
    path = (("start", 0), ("start", 1), ("step", 1, "ok"), ("step", 0, "ok"))
    first, second = replay(cls, path), replay(cls, path)
    try:
        # Fresh fences and a fresh namespace each run: the same abstract state.
        assert first.topo.nodes[0].core.keys.namespace != second.topo.nodes[0].core.keys.namespace
        assert fingerprint(first) == fingerprint(second)
    finally:
        first.teardown()
        second.teardown()


def fingerprint_after(cls: type[Any], *path: tuple[object, ...]) -> object:
    """The fingerprint of the state ``path`` leads to, in a model torn down afterwards."""
    model = replay(cls, path)
    try:
        return fingerprint(model)
    finally:
        model.teardown()


def test_fingerprints_merge_independent_orders_and_tell_states_apart() -> None:
    scope = BY_NAME["load-write-read"]
    cls = machine(scope, "local", Core)

    at = partial(fingerprint_after, cls)

    starts = (("start", 0), ("start", 2))
    assert at(*starts) == at(*reversed(starts))
    # A reader that has read the entry and one that has not are different states; so are
    # a writer before and after its advance.
    assert at(*starts, ("step", 2, "ok")) != at(*starts)
    assert at(("start", 1)) != at(("start", 1), ("step", 1, "ok"))


def test_a_read_of_a_frame_damaged_twice_is_still_renamed() -> None:
    # An operation read a flipped frame; a second flip then restored the stored frame.
    # What the operation holds must still be named by how it was made (the position and
    # the frame flipped, fences renamed), not by its raw bytes, which carry fences drawn
    # afresh on every run: two orders of the same steps are one state. (Found by
    # verify=True on the headline scope, where such states were never merged.)
    scope = ALL_SCOPES["two-fillers-writer-reader+2"]
    cls = machine(scope, "local-store", Core)
    fill, load, write = ("start", 0), ("start", 1), ("start", 2)
    flip, step = ("corrupt", 0, False, ("a",)), ("step", 0, "ok")
    one = (fill, load, step, step, step, flip, ("step", 1, "ok"), write)
    other = (fill, load, step, step, write, step, flip, ("step", 1, "ok"))

    at = partial(fingerprint_after, cls)

    assert at(*one) == at(*other)
    assert at(*one, flip) == at(*other, flip)
    assert at(*one, flip) != at(*one)


def test_what_a_fault_planted_is_part_of_the_state_after_the_entry_is_gone() -> None:
    # Two flips restore a stored frame, which the model then counts as planted by a
    # fault; a read drops it. When get_or_load later writes the same bytes, the model
    # excuses them as planted. So a state with that record and one without it (the same
    # stores otherwise) have different futures: found by verify=True on the headline.
    scope = ALL_SCOPES["two-fillers-writer-reader+2"]
    cls = machine(scope, "local-store", Core)
    fill, load, read = ("start", 0), ("start", 1), ("start", 3)
    flip = ("corrupt", 0, False, ("a",))
    fills, loads, reads = ("step", 0, "ok"), ("step", 1, "ok"), ("step", 3, "ok")
    planted = (fill, load, read, fills, fills, loads, fills, loads, flip, reads, flip, reads)
    never = (fill, load, read, ("step", 0, "applied"), loads, loads, ("step", 3, "fail"))
    models = [replay(cls, planted), replay(cls, never)]
    try:
        assert models[0].planted and not models[1].planted
        assert fingerprint(models[0]) != fingerprint(models[1])
    finally:
        for model in models:
            model.teardown()


def test_scopes_refuse_what_they_cannot_run() -> None:
    with pytest.raises(ValueError, match="unknown operation"):
        Operation("put", ("a",))
    with pytest.raises(ValueError, match="takes two or more distinct keys"):
        Operation("get_many", ("a",))
    with pytest.raises(ValueError, match="keys must be some of"):
        Operation("get", ("z",))
    with pytest.raises(ValueError, match="node >= 1"):
        Scope("s", (Operation("get", ("a",), 1),))
    with pytest.raises(ValueError, match="unknown faults"):
        Scope("s", (Operation("get", ("a",)),), frozenset({"meteor"}), 1)


@pytest.mark.parametrize(
    ("topology", "scope", "variant"),
    [
        ("local-store", "load-write-read+fault", None),
        ("redis", "fill-write-read", None),
        ("local", "batch-write-read", "first-member-only"),
    ],
)
def test_worker_processes_give_the_same_report(
    topology: str, scope: str, variant: str | None
) -> None:
    # Each level's states are expanded by forked workers and taken back in order: the
    # counts, the end states and a counterexample are those of one process.
    core = VARIANTS[variant].core if variant else Core
    alone = explore(ALL_SCOPES[scope], topology, core, variant)
    shared = explore(ALL_SCOPES[scope], topology, core, variant, jobs=2)
    # A counterexample's trace differs only in its fences, drawn afresh on every replay.
    failures = [r.failure and r.failure.splitlines()[0] for r in (alone, shared)]
    assert failures[0] == failures[1]
    for report in (alone, shared):
        report.seconds, report.failure = 0.0, None
    assert shared == alone
    assert (failures[0] is not None) == (variant is not None)
    assert alone.transitions > alone.states > 1


def test_a_reply_on_its_way_is_part_of_the_state() -> None:
    scope = BY_NAME["load-write-load+late"]
    cls = machine(scope, "local-store", Core)
    at = partial(fingerprint_after, cls)
    # get_or_load's read, then its snapshot: the load is its next effect.
    ready = (("start", 0), ("step", 0, "ok"), ("step", 0, "ok"))
    late, done = at(*ready, ("step", 0, "late")), at(*ready, ("step", 0, "ok"))
    # The source was read either way; only the late one has not been handed the row.
    assert len({at(*ready), late, done}) == 3
    model = replay(cls, (*ready, ("step", 0, "late")))
    try:
        assert model.choices().count(("step", 0, "ok")) == 1
        assert ("step", 0, "late") not in model.choices()  # the scope's one late reply is used
    finally:
        model.teardown()
