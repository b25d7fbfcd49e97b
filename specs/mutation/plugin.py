"""A pytest plugin for mutation runs: deterministic Hypothesis, and the Lua mutant, if any.

Loaded with ``-p specs.mutation.plugin`` by the mutation runner only (``[tool.mutmut]``
in ``pyproject.toml`` and the Lua stage of ``specs/mutation/run.py``); the normal test run
never loads it.

* Hypothesis gets no example database and derandomized draws, so a mutant's verdict does
  not depend on what an earlier mutant's failing example left behind.
* ``CASCACHE_LUA_MUTANT=<name>`` replaces one Lua script with a mutated source (see
  :mod:`specs.mutation.lua`) before any test module is imported.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

from specs.mutation.lua import ENV, apply


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    del config
    # Registered over whichever profile tests/conftest.py loaded, keeping its budget.
    settings.register_profile("mutation", parent=settings.default, database=None, derandomize=True)
    settings.load_profile("mutation")
    name = os.environ.get(ENV)
    if name:
        apply(name)


def _cost(item: pytest.Item) -> int:
    """Cheap tests first: with ``-x`` a mutant stops at its first failing test."""
    if "model_check.py" in item.nodeid:
        return 2
    if "cluster" in item.nodeid or "test_replication" in item.nodeid:
        return 1  # a 3-node cluster or a replica of its own, seconds each
    return 0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_cost)
