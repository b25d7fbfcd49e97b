"""The model, bounded for CI: correct protocol passes everywhere, every wrong one is caught.

Runs are derandomized, so a result here is reproducible; the audit command runs the same
code with open-ended budgets and fresh seeds.
"""

from __future__ import annotations

import pytest

from model.run import Result, Target, run, url_client
from model.zoo import VARIANTS
from tests.servers import RedisServer

PASSING_EXAMPLES = 150
CATCH_EXAMPLES = 3000
SHRINK_SECONDS = 5.0

CORRECT = [
    Target("local"),
    Target("shared-versions", "fakeredis"),
    Target("redis", "fakeredis"),
    Target("shared-versions", "real"),
    Target("redis", "real"),
]


def _run(
    target: Target, variant: str | None, request: pytest.FixtureRequest, **kw: object
) -> Result:
    connect = None
    if target.backend == "real":
        server: RedisServer = request.getfixturevalue("redis_server")
        connect = url_client(server.url)
    return run(target, variant, connect=connect, **kw)  # type: ignore[arg-type]


def _show(result: Result) -> None:
    print(
        f"{result.target} variant={result.variant}: {result.examples} examples, "
        f"{result.effects} effects, {result.faults} faults, {result.seconds:.1f}s, "
        f"caught after {result.caught_after}"
    )
    if result.failure:
        print(result.failure)
        print(result.reproduce)


@pytest.mark.parametrize("target", CORRECT, ids=str)
def test_protocol_keeps_every_property(target: Target, request: pytest.FixtureRequest) -> None:
    result = _run(target, None, request, examples=PASSING_EXAMPLES)
    _show(result)
    assert result.failure is None, result.failure
    assert result.examples >= PASSING_EXAMPLES
    assert result.effects > result.examples, "the model ran almost no effects: vacuous"


def test_negative_control_is_caught() -> None:
    result = run(
        Target("per-node-local-versions"),
        examples=CATCH_EXAMPLES,
        shrink_seconds=SHRINK_SECONDS,
    )
    _show(result)
    assert result.failure is not None, "per-node local versions must fail FRESH"
    assert "FRESH" in result.failure.splitlines()[0] or "state invariant" in result.failure


ZOO = [(name, topology) for name, variant in VARIANTS.items() for topology in variant.topologies]


@pytest.mark.parametrize(("variant", "topology"), ZOO)
def test_bug_zoo_variant_is_caught(variant: str, topology: str) -> None:
    backend = "memory" if topology == "local" else "fakeredis"
    result = run(
        Target(topology, backend),
        variant,
        examples=CATCH_EXAMPLES,
        shrink_seconds=SHRINK_SECONDS,
    )
    _show(result)
    assert result.failure is not None, f"{variant} was not caught on {topology}"
    headline = result.failure.splitlines()[0]
    assert any(prop in headline for prop in VARIANTS[variant].caught_by), headline
