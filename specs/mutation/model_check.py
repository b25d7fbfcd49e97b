"""The focused, seeded model run every mutant faces (after the unit tests).

Not collected by the normal test run (the name does not match ``test_*.py``); the mutation
runner names this file explicitly. Each target runs ``ROUNDS`` rounds of ``EXAMPLES``
examples with fixed seeds, so a mutant's verdict is reproducible. Override the budget with
``CASCACHE_MUTATION_ROUNDS`` / ``CASCACHE_MUTATION_EXAMPLES``. Then the race phases
(``model.run.RACES``), ``RACE_ROUNDS`` rounds of 50 examples each from seed 0, as CI runs
them: the swarm meets coalescing's race too rarely to judge a mutant of it.
"""

from __future__ import annotations

import os

import pytest

from model.run import RACES, Target, cover, hunt

ROUNDS = int(os.environ.get("CASCACHE_MUTATION_ROUNDS", "2"))
EXAMPLES = int(os.environ.get("CASCACHE_MUTATION_EXAMPLES", "100"))
FIRST_SEED = int(os.environ.get("CASCACHE_MUTATION_FIRST_SEED", "7000"))
RACE_ROUNDS = int(os.environ.get("CASCACHE_MUTATION_RACE_ROUNDS", "4"))

TARGETS = [
    Target("local"),
    Target("shared-versions", "fakeredis"),
    Target("redis", "fakeredis"),
]


@pytest.mark.parametrize("target", TARGETS, ids=str)
def test_model_finds_no_violation(target: Target) -> None:
    result = hunt(
        target,
        rounds=ROUNDS,
        examples=EXAMPLES,
        first_seed=FIRST_SEED,
        shrink_seconds=1.0,
    )
    assert result.failure is None, result.failure + "\n" + result.reproduce
    # A mutant that makes every example crash before its first effect must not pass.
    assert result.effects > result.examples, "the model ran almost no effects"


@pytest.mark.parametrize("target", TARGETS, ids=str)
def test_model_finds_no_violation_in_the_race_phases(target: Target) -> None:
    result = cover(target, rounds=RACE_ROUNDS, examples=50, phases=tuple(RACES), shrink_seconds=1.0)
    assert result.failure is None, result.failure + "\n" + result.reproduce
    assert result.effects > result.examples, "the model ran almost no effects"
