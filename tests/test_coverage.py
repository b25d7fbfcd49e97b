"""``model.coverage``: the counts a run reports, read from the library's own refusal reports."""

from __future__ import annotations

from collections.abc import Sequence

import cascache
from cascache import Hooks, VersionedValue
from cascache.core import Refusal
from model.coverage import (
    OUTCOMES,
    PATHS,
    UNREACHABLE,
    Coverage,
    member_refusals,
    path_of,
    refusal_of,
)


class Reasons(Hooks):
    def __init__(self) -> None:
        self.single: list[str] = []
        self.batch: list[str] = []

    def self_healed(self, op: str, key: str, reason: str) -> None:
        self.single.append(reason)

    def batch_rejected(self, keys: Sequence[str], reason: str) -> None:
        self.batch.append(reason)


def test_reasons_the_library_reports_are_classified() -> None:
    hooks = Reasons()
    provider = cascache.MemoryProvider()
    gens = cascache.LocalGenStore()
    cache = cascache.new(
        cascache.Options(
            namespace="cov",
            provider=provider,
            codec=cascache.JsonCodec(),
            gen_store=gens,
            hooks=hooks,
            batch_write_seed="off",
        )
    )
    versions = cache.snapshot_versions(["a", "b", "c"])
    items = [VersionedValue(k, {"v": k}, versions[k]) for k in "abc"]
    cache.set_if_versions(items)
    cache.invalidate("a")
    gens.forget(cache.core.keys.single("c").version)
    assert cache.get_many(["a", "b", "c"]) == ({"b": {"v": "b"}}, ["a", "c"])
    assert [member_refusals(r) for r in hooks.batch] == [[Refusal.STALE, Refusal.LOST]]

    version = cache.snapshot_version("d")
    cache.set_if_version("d", {"v": 1}, version)
    name = cache.core.keys.single("d").value
    frame = provider.get(name)
    assert frame is not None
    provider.set(name, frame[:-1] + bytes([frame[-1] ^ 1]), len(frame), None)
    assert cache.get("d") is None
    assert [refusal_of(r) for r in hooks.single] == [Refusal.CORRUPT]


def test_a_whole_batch_entry_refused_counts_once() -> None:
    assert member_refusals("corrupt batch entry: bad checksum") == [Refusal.CORRUPT]
    assert member_refusals("members not servable: x (undecodable value: at $ (root))") == [
        Refusal.UNDECODABLE
    ]
    assert refusal_of("something else") is None


def test_paths() -> None:
    assert path_of("get", batch=False) == "get"
    assert path_of("get_many", batch=True) == "get_many batch member"
    assert path_of("get_many", batch=False) == "get_many single fallback"
    assert path_of("get_many_or_load", batch=True) == "get_many_or_load"


def test_missing_cells_follow_what_was_run() -> None:
    coverage = Coverage()
    coverage.effect("get", "values.get", "ok", hazard=False)
    gaps = coverage.missing()
    # No failure injected at all: only "ok" outcomes are reachable.
    assert not any(gap.startswith("effect ") for gap in gaps)
    assert "hazard get ok" in gaps
    coverage.effect("get", "values.get", "fail", hazard=True)
    gaps = coverage.missing()
    assert "effect get values.get applied" in gaps
    assert "hazard get fail" not in gaps and "hazard get applied" in gaps
    for path in PATHS:
        for reason in Refusal:
            expected = (path, reason) not in UNREACHABLE
            assert (f"refusal {path}: {reason.value}" in gaps) is expected
    merged = Coverage()
    merged.merge(coverage)
    merged.merge(coverage)
    assert merged.cells["get", "values.get", "fail"] == 2 and merged.faulted
    table = merged.render()
    assert "| get | values.get | 2 | 2 | 0 | 2 |" in table
    assert "n/a" in table and all(outcome in table for outcome in OUTCOMES)
