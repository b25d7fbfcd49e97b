"""The model's checks can fail: each new property is tripped by a deliberately broken run.

Most tests drive one model instance by hand, rule by rule, with a broken ``Core``
subclass defined here (so the failing interleaving is spelt out and needs no luck), and
a few let Hypothesis find the failure with the model narrowed to the rules it needs.
The correct protocol, driven through the same interleavings, passes.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import get_state_machine_test

from cascache.batch import Core
from cascache.effects import Step, perform
from cascache.fence import Version
from cascache.keys import CacheKey, KeySpace
from cascache.options import Options
from cascache.results import BatchWriteResult, Hit, VersionedValue, WriteOutcome, WriteResult
from cascache.wire import Member, decode_single, encode_batch, encode_single
from model.machine import FAULTS, KINDS, CacheModel, ModelFailure, machine_for
from model.oracle import ROW_CODEC, KeyName, LyingKey, Row, plain, spell
from model.run import Target, fake_redis, hunt
from model.topology import AllInRedis, CoreFactory, Local, SharedVersions, Topology
from model.zoo import (
    AnyStoreProves,
    LostStoreProves,
    NoCompare,
    SeedsFreshSnapshot,
    StampsCurrentFence,
)

Build = Callable[[CoreFactory], Topology]


def local(core: CoreFactory) -> Topology:
    return Local(2, core)


def model(
    core: CoreFactory = Core,
    *,
    build: Build = local,
    faults: Iterable[str] = FAULTS,
    kinds: Iterable[str] = KINDS,
    nkeys: int = 3,
) -> CacheModel:
    """One model instance, configured as an example would be, to drive by hand."""
    machine = machine_for(build, core=core, faults=frozenset(faults))()
    machine.configure(nkeys=nkeys, kinds=frozenset(kinds), faults=frozenset(faults))
    return machine


def search(
    core: CoreFactory,
    kinds: Iterable[str],
    faults: Iterable[str],
    *,
    build: Build = local,
    examples: int = 300,
) -> str:
    """Let Hypothesis look for a violation with the model narrowed to ``kinds``/``faults``;
    return the failure's headline (the test fails if none is found)."""
    machine = machine_for(build, core=core, faults=frozenset(faults), kinds=frozenset(kinds))
    config = settings(
        max_examples=examples,
        stateful_step_count=25,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate],  # no shrinking: only the headline matters here
    )
    with pytest.raises(ModelFailure) as failure:
        get_state_machine_test(machine, settings=config)()
    return str(failure.value).splitlines()[0]


def headline(run: Callable[[], None]) -> str:
    with pytest.raises(ModelFailure) as failure:
        run()
        pytest.fail("the model accepted a broken run")
    return str(failure.value).splitlines()[0]


# Drawn numbers for the hand-driven runs: key a on the main node 0 (3 keys in play).
A, B = 0, 1
LYING_A, LYING_B = 6, 7
"""Key numbers that fold into ``a`` / ``b`` spelt as a :class:`LyingKey`."""


def test_key_numbers_fold_into_the_spellings_the_tests_expect() -> None:
    machine = model()
    assert machine.key(0, A) == ("a", "a")
    name, spelt = machine.key(0, LYING_A)
    assert name == "a" and isinstance(spelt, LyingKey)
    assert isinstance(machine.key(0, 3)[1], KeyName)
    assert machine.key(machine.topo.alias, A)[0] == "x:a"
    assert str(LyingKey("a")) != "a" and f"{LyingKey('a')}" != "a"
    assert plain(spell("b", 1)) == "b" and type(plain(spell("b", 2))) is str


# -- fail-closed ---------------------------------------------------------------------------


class ServesWithoutFence(Core[Row]):
    """Broken: when the version read fails, trusts the entry's own stamp."""

    def read_single(self, op: str, ck: CacheKey) -> Step[tuple[bytes | None, Version | None]]:
        frame = yield from perform(
            self.values("get", [ck.value], lambda: self.provider.get(ck.value))
        )
        if frame is None:
            return None, None
        try:
            current = yield from perform(
                self.versions("current", [ck.version], lambda: self.gens.current(ck.version))
            )
        except Exception:
            current, _ = decode_single(frame)
        return frame, current


def test_fail_closed_catches_a_get_served_after_its_version_read_failed() -> None:
    machine = model(ServesWithoutFence)
    machine.fill_then_get_hits(node=0, key=A)
    machine.start_get(node=0, key=A, ahead=1)  # values.get found the entry

    found = headline(lambda: machine.step(pick=0, fault="fail"))

    assert found.startswith("fail-closed violated")


def test_fail_closed_also_catches_a_lost_reply() -> None:
    machine = model(ServesWithoutFence)
    machine.fill_then_get_hits(node=0, key=A)
    machine.start_get(node=0, key=A, ahead=1)

    found = headline(lambda: machine.step(pick=0, fault="applied"))

    assert found.startswith("fail-closed violated")


def test_fail_closed_allows_the_correct_get_and_a_loaded_value() -> None:
    machine = model()
    machine.fill_then_get_hits(node=0, key=A)
    machine.start_get(node=0, key=A, ahead=1)
    machine.step(pick=0, fault="fail")  # a miss, not a violation
    assert not machine.procs
    # get_or_load: the version read fails, so it loads; serving the loaded row is fine.
    machine.start_get_or_load(node=0, key=A, ahead=1)
    machine.step(pick=0, fault="fail")
    machine.run(picks=[(0, "ok")] * 4)
    machine.after_every_rule()
    assert not machine.procs
    assert machine.history.ops[-1].served == {"a": Row("a", 0)}


def test_an_outage_alone_makes_the_model_find_the_fail_closed_bug() -> None:
    found = search(ServesWithoutFence, {"get", "quiet", "inject"}, {"outage"}, examples=200)
    assert found.startswith("fail-closed violated")


# -- provenance ----------------------------------------------------------------------------


def test_provenance_catches_a_stamp_newer_than_the_load_before_anything_is_read() -> None:
    machine = model(StampsCurrentFence)
    machine.start_fill(node=0, key=A, ahead=3)  # snapshot, load a@0, current (still f1)
    machine.start_writer(node=0, key=A, ahead=1)  # commit a@1, advance to f2
    machine.step(pick=0, fault="ok")  # the fill reads f2 to stamp with

    found = headline(lambda: machine.step(pick=0, fault="ok"))  # stores a@0 stamped f2

    assert found.startswith("provenance violated"), found


def test_provenance_accepts_the_correct_write_in_the_same_interleaving() -> None:
    machine = model()
    machine.start_fill(node=0, key=A, ahead=2)
    machine.start_writer(node=0, key=A, ahead=1)
    machine.run(picks=[(0, "ok")] * 4)
    machine.after_every_rule()
    assert not machine.procs


@pytest.mark.parametrize(
    ("variant", "kinds"),
    [
        (StampsCurrentFence, {"fill", "get_or_load", "writer"}),
        (SeedsFreshSnapshot, {"batch_fill", "get_many_or_load", "writer"}),
    ],
)
def test_the_model_finds_stamps_newer_than_the_load(variant: CoreFactory, kinds: set[str]) -> None:
    found = search(variant, kinds, set(), examples=500)
    assert found.startswith(("provenance violated", "state invariant violated")), found


def test_a_stamp_that_was_never_current_is_a_provenance_violation() -> None:
    machine = model()
    machine.fill_then_get_hits(node=0, key=A)
    name = machine.topo.keys.single("a").value
    frame = encode_single(Version(b"\x01" * 16), ROW_CODEC.encode(Row("a", 0)))
    machine.topo.put_raw(0, name, frame)

    assert headline(machine.after_every_rule).startswith("provenance violated")


# -- write contract for every operation that stores --------------------------------------


def test_write_contract_covers_get_or_load() -> None:
    machine = model(NoCompare)
    machine.start_get_or_load(node=0, key=A, ahead=3)  # get misses, snapshot, load
    machine.start_writer(node=0, key=A, ahead=2)  # commit, advance, delete: returned

    found = headline(lambda: machine.step(pick=0, fault="ok"))  # the unchecked store

    assert found.startswith("write contract violated"), found


class BatchNoCompare(Core[Row]):
    """Broken: the batch write stores without checking the observed fences."""

    def set_if_versions(
        self, items: Iterable[VersionedValue[Row]], ttl: float | None
    ) -> Step[BatchWriteResult]:
        batch = self.check_items(items)
        members = [Member(i.key, i.version, ROW_CODEC.encode(i.value)) for i in batch]
        outcome = yield from self.store(
            "set_if_versions",
            [m.key for m in members],
            self.keys.batch(m.key for m in members),
            encode_batch(members),
            None,
            batch=True,
        )
        return BatchWriteResult(outcome)


def test_write_contract_covers_get_many_or_load() -> None:
    machine = model(BatchNoCompare)
    # get_many: batch entry missing, singles missing; snapshot both; load both.
    machine.start_get_many_or_load(node=0, keys=(0, 0), ahead=4)
    assert machine.procs[0].phase == "write"
    machine.start_writer(node=0, key=A, ahead=2)

    found = headline(lambda: machine.step(pick=0, fault="ok"))

    assert found.startswith("write contract violated"), found


def test_get_many_or_load_is_a_rule_and_passes_on_the_correct_protocol() -> None:
    machine = model()
    machine.start_get_many_or_load(node=0, keys=(0, 0), ahead=3)
    machine.start_writer(node=0, key=A, ahead=2)
    machine.run(picks=[(0, "ok")] * 8)
    machine.after_every_rule()
    machine.start_get_many_or_load(node=0, keys=(0, 0), ahead=20)
    assert not machine.procs
    assert machine.history.ops[-1].kind == "get_many_or_load"


# -- integrity of what is stored; undecodable payloads ----------------------------------


def test_an_undecodable_payload_is_a_named_violation_not_a_crash() -> None:
    machine = model()
    machine.fill_then_get_hits(node=0, key=A)
    name = machine.topo.keys.single("a").value
    stamp, _ = decode_single(machine.topo.raw(0, name) or b"")
    machine.topo.put_raw(0, name, encode_single(stamp, b"\xff not json"))

    found = headline(machine.after_every_rule)

    assert found.startswith("integrity violated") and "undecodable" in found


def test_frames_a_fault_planted_are_not_blamed_on_the_protocol() -> None:
    machine = model(faults={"corrupt", "writeback"}, kinds={"inject", "writer", "get"})
    for key in (A, B):
        machine.fill_then_get_hits(node=0, key=key)
        machine.after_every_rule()
    machine.start_writer(node=0, key=A, ahead=2)
    machine.after_every_rule()
    name = machine.topo.keys.single("a").value
    for kind in ("swap", "splice", "foreign", "corrupt"):
        machine.fill_then_get_hits(node=0, key=A)
        machine.after_every_rule()
        machine._damage(kind, 0, name, 0)
        assert machine.planted.get((0, name)) == machine.topo.raw(0, name), kind
        machine.after_every_rule()
        machine.start_get(node=0, key=A, ahead=3)
        while machine.procs:  # the read stops before deleting what it refused
            machine.step(pick=0, fault="ok")
        machine.after_every_rule()
        assert machine.history.ops[-1].served == {}, kind


# -- the aimed search -----------------------------------------------------------------


def test_a_fault_that_leaves_bytes_to_refuse_is_met_by_a_read() -> None:
    machine = model(faults={"corrupt"}, kinds={"inject", "get"}, nkeys=1)
    machine.fill_then_get_hits(node=0, key=A)
    name = machine.topo.keys.single("a").value
    machine.inject(kind="corrupt", store=0, key=A, batch=False, pos=0, then=0)
    assert machine.touched == (0, name)
    assert [(p.label, p.keys) for p in machine.procs] == [("get", ("a",))]
    while machine.procs:
        machine.step(pick=0, fault="ok")
    assert machine.history.ops[-1].served == {}
    assert sum(type(machine).coverage.refusals.values()) == 1


def test_a_writeback_can_land_what_a_slow_filler_would() -> None:
    machine = model(faults={"writeback"}, kinds={"inject", "writer", "get"}, nkeys=1)
    machine.fill_then_get_hits(node=0, key=A)  # a@0 under the first fence
    machine.after_every_rule()
    machine.start_writer(node=0, key=A, ahead=2)  # commits a@1; invalidate returns
    machine.after_every_rule()
    space = machine.topo.spaces[0]
    [(name, frame)] = machine._late_frames(space, "a")
    stamp, payload = decode_single(frame)
    assert ROW_CODEC.decode(payload) == Row("a", 0)  # below the floor (a@1)
    assert stamp != machine.topo.fence(0, space.keys.single("a").version)
    assert machine._below_floor(name, frame)


def test_failures_are_aimed_at_a_read_meeting_a_stale_entry() -> None:
    machine = model(faults={"step", "writeback"}, kinds={"fill", "writer", "get"}, nkeys=1)
    machine.fill_then_get_hits(node=0, key=A)
    machine.after_every_rule()
    machine.start_writer(node=0, key=A, ahead=2)
    machine.after_every_rule()
    [(name, frame)] = machine._late_frames(machine.topo.spaces[0], "a")
    machine._plant("writeback", 0, name, frame, "a late frame lands in")
    machine.start_fill(node=0, key=A, ahead=0)  # another process, pending
    machine.start_get(node=0, key=A, ahead=0)
    coverage = type(machine).coverage
    before = coverage.hazards_met("get", "fail")
    assert [p.label for p in machine.procs] == ["fill", "get"]
    machine.fail_at_hazard(pick=0, fault="fail")  # the draw names the fill; the get fails
    assert [p.label for p in machine.procs] == ["fill"]
    after = coverage.hazards_met("get", "fail")
    assert after > before
    assert machine.history.ops[-1].kind == "get" and not machine.history.ops[-1].ok


def test_a_model_run_replays_whatever_else_the_process_imported(tmp_path: Path) -> None:
    # Hypothesis mixes literals of loaded local modules into its draws; the model's rounds
    # must not depend on what else happens to be imported.
    def once() -> tuple[int, int, int]:
        found = hunt(Target("local"), rounds=1, examples=30)
        return found.examples, found.effects, found.faults

    first = once()
    module = tmp_path / "cascache_constants_probe.py"
    module.write_text("PROBE = (7, 4096, 65535, 'a', 'b', b'value:a', 0.5)\n")
    sys.path.insert(0, str(tmp_path))
    try:
        importlib.import_module("cascache_constants_probe")
        assert once() == first
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("cascache_constants_probe", None)


# -- corruption that only the checksum catches -----------------------------------------


class IgnoresChecksum(Core[Row]):
    """Broken: reads the stamp and payload out of a frame without checking its CRC."""

    def judge(
        self, op: str, ck: CacheKey, frame: bytes, current: Version | None
    ) -> tuple[Hit[Row] | None, str | None]:
        stamp, payload = Version(frame[6:22]), frame[26:-4]
        if current is None or stamp != current:
            return None, "stale version"
        return Hit(self.codec.decode(payload)), None


def test_a_spliced_frame_is_served_by_a_reader_that_skips_the_checksum() -> None:
    machine = model(IgnoresChecksum, faults={"corrupt"})
    machine.fill_then_get_hits(node=0, key=A)  # a@0 stored and remembered
    machine.after_every_rule()
    machine.start_writer(node=0, key=A, ahead=2)
    machine.after_every_rule()
    machine.fill_then_get_hits(node=0, key=A)  # a@1 stamped with the new fence
    machine.after_every_rule()
    name = machine.topo.keys.single("a").value
    machine._damage("splice", 0, name, 0)  # a@0's payload under a@1's stamp and CRC
    machine.after_every_rule()

    found = headline(lambda: machine.start_get(node=0, key=A, ahead=3))

    assert found.startswith("FRESH violated"), found


def test_the_correct_reader_refuses_the_same_splice() -> None:
    machine = model(faults={"corrupt"})
    machine.fill_then_get_hits(node=0, key=A)
    machine.after_every_rule()
    machine.start_writer(node=0, key=A, ahead=2)
    machine.after_every_rule()
    machine.fill_then_get_hits(node=0, key=A)
    machine.after_every_rule()
    name = machine.topo.keys.single("a").value
    machine._damage("splice", 0, name, 0)
    machine.start_get(node=0, key=A, ahead=3)
    assert machine.history.ops[-1].served == {}


# -- outage -----------------------------------------------------------------------------


def test_an_outage_fails_every_version_effect_for_its_rules() -> None:
    machine = model(faults={"outage"}, kinds={"get", "inject"})
    machine.fill_then_get_hits(node=0, key=A)
    machine.outage = 3
    machine.start_get(node=0, key=A, ahead=3)
    assert "outage" in machine.trace[-2] and machine.history.ops[-1].served == {}
    for _ in range(3):
        machine.after_every_rule()
    machine.start_get(node=0, key=A, ahead=3)
    assert machine.history.ops[-1].served == {"a": Row("a", 0)}


# -- keys: spellings and colliding namespaces ------------------------------------------


class FormatsKeys(Core[Row]):
    """Broken: reduces a key to ``format(key)`` at the boundary, not to its plain string."""

    def get(self, key: str) -> Step[Hit[Row] | None]:
        return (yield from super().get(f"{key}"))

    def get_or_load(self, key: str, loader: Callable[[], Row], ttl: float | None) -> Step[Row]:
        return (yield from super().get_or_load(f"{key}", loader, ttl))

    def snapshot_version(self, key: str) -> Step[Version]:
        return (yield from super().snapshot_version(f"{key}"))

    def set_if_version(
        self, key: str, value: Row, version: Version, ttl: float | None
    ) -> Step[WriteResult]:
        return (yield from super().set_if_version(f"{key}", value, version, ttl))

    def invalidate(self, key: str) -> Step[None]:
        return (yield from super().invalidate(f"{key}"))


def test_a_key_spelling_the_library_formats_is_caught() -> None:
    machine = model(FormatsKeys)
    machine.start_get_or_load(node=0, key=LYING_A, ahead=5)  # stores a@0 under "lying-key"

    found = headline(lambda: machine.start_get_or_load(node=0, key=LYING_B, ahead=5))

    assert found.startswith("integrity violated"), found


def test_the_model_finds_the_key_formatting_bug_by_itself() -> None:
    found = search(FormatsKeys, {"get_or_load", "get", "fill"}, set(), examples=200)
    assert found.startswith(("integrity", "FRESH", "fail-closed", "liveness")), found


class NaiveKeySpace(KeySpace):
    """Broken: joins namespace and key without the length prefix."""

    __slots__ = ()

    def single(self, key: str) -> CacheKey:
        joined = f"{self.namespace}:{key}"
        return CacheKey(key, f"naive:v:{joined}", f"naive:g:{joined}")


on_every_topology = pytest.mark.parametrize(
    "build",
    [
        local,
        lambda core: SharedVersions(2, core, fake_redis),
        lambda core: AllInRedis(2, core, fake_redis),
    ],
    ids=["local", "shared-versions", "redis"],
)


class NaiveNames(Core[Row]):
    """Broken: a cache whose storage names of two namespaces can collide."""

    def __init__(self, options: Options[Row]) -> None:
        super().__init__(options)
        self.keys = NaiveKeySpace(options.namespace)


@on_every_topology
def test_colliding_namespaces_are_caught_by_integrity(build: Build) -> None:
    machine = model(NaiveNames, build=build)
    try:
        machine.fill_then_get_hits(node=0, key=A)  # main namespace <base>:x, key a
        alias = machine.topo.alias

        found = headline(lambda: machine.start_get(node=alias, key=A, ahead=3))  # x:a

        assert found.startswith("integrity violated"), found
    finally:
        machine.topo.close()


@on_every_topology
def test_the_production_names_keep_the_namespaces_apart(build: Build) -> None:
    machine = model(build=build)
    try:
        machine.fill_then_get_hits(node=0, key=A)
        machine.start_get(node=machine.topo.alias, key=A, ahead=3)
        machine.after_every_rule()
        assert machine.history.ops[-1].served == {}
    finally:
        machine.topo.close()


def test_result_keys_must_be_plain_strings() -> None:
    class EnumKeyedResults(Core[Row]):
        """Broken: returns ``get_many`` results keyed by the caller's spelling."""

        def get_many(self, keys: Iterable[str]) -> Step[tuple[dict[str, Row], list[str]]]:
            wanted: Sequence[str] = list(keys)
            found, missing = yield from super().get_many(wanted)
            spelt = {plain(k): k for k in wanted}
            return {spelt[k]: v for k, v in found.items()}, missing

    machine = model(EnumKeyedResults)
    machine.fill_then_get_hits(node=0, key=A)
    machine.fill_then_get_hits(node=0, key=B)
    size = 64  # two members (size % 2 == 0), both spelt as KeyName: (64 >> 4) % 3 == 1 == 64 >> 6
    found = headline(lambda: machine.start_get_many(node=0, keys=(size, 0), ahead=6))
    assert found.startswith("integrity violated"), found


class RenamedWrite(Core[Row]):
    """Broken: the conditional write's store effect is relabelled, so a model that sorted
    effects by label would no longer hold it to the write contract."""

    def store(
        self,
        op: str,
        key: str,
        storage_key: str,
        frame: bytes,
        ttl: float | None,
        batch: bool = False,
    ) -> Step[WriteOutcome]:
        stored = yield from perform(
            self.values(
                "put", [storage_key], lambda: self.provider.set(storage_key, frame, len(frame), ttl)
            )
        )
        return WriteOutcome.STORED if stored else WriteOutcome.PROVIDER_REJECTED


def test_an_effect_the_model_cannot_classify_is_a_violation() -> None:
    machine = model(RenamedWrite)
    try:
        machine.start_fill(node=0, key=A, ahead=3)  # snapshot, load, version check

        found = headline(lambda: machine.step(pick=0, fault="ok"))  # the relabelled store

        assert found.startswith("effect vocabulary violated"), found
    finally:
        machine.topo.close()


# --- cancellation ---------------------------------------------------------------------


def test_a_cancelled_operation_stops_at_its_effect_and_counts_as_failed() -> None:
    machine = model(faults={"cancel"})
    machine.start_writer(node=0, key=A, ahead=0)
    machine.cancel(pick=0, fault="cancel-applied")

    assert not machine.procs, "the writer stopped at the cancelled effect"
    invalidate = machine.history.ops[-1]
    assert invalidate.kind == "invalidate" and invalidate.ok is False
    assert any("applied, cancelled" in line for line in machine.trace)
    assert machine.stats["faults"] == 1


class SwallowsCancel(Core[Row]):
    """Broken: an invalidate that treats its own cancellation as done."""

    def invalidate(self, key: str) -> Step[None]:
        try:
            yield from super().invalidate(key)
        except BaseException:
            return None


def test_the_cancel_fault_catches_an_invalidate_that_swallows_its_cancellation() -> None:
    found = search(
        SwallowsCancel,
        kinds={"fill", "get", "writer", "quiet"},
        faults={"cancel"},
        examples=500,
    )
    assert found.startswith(("FRESH", "state invariant")), found


def test_the_correct_protocol_survives_cancellation_everywhere() -> None:
    machine = machine_for(local, core=Core, faults=frozenset({"cancel"}))
    config = settings(
        max_examples=150,
        stateful_step_count=25,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    get_state_machine_test(machine, settings=config)()


# -- late replies: the moments inside a leader's load and between its store and landing ---


def _race_under_a_flight(core: CoreFactory, store_first: bool) -> CacheModel:
    """A leader up to its load; then :meth:`CacheModel.write_under_a_flight` (its load, or
    its store, performed with the reply on its way; a write and invalidate; a reader that
    joins; the leader landing); then every process run to its end."""
    machine = model(core, faults=())
    machine.start_get_or_load(node=0, key=A, ahead=2)
    assert machine.procs[0].process.pending is not None
    assert machine.procs[0].process.pending.target == "source"
    # pick 1: the one leader, and a get_or_load (not a batch) of its key, spelt plainly.
    machine.write_under_a_flight(pick=1, store_first=store_first, land=True)
    while machine.procs:
        machine.step(pick=0, fault="ok")
    return machine


@pytest.mark.parametrize(
    ("variant", "store_first"), [(LostStoreProves, False), (AnyStoreProves, True)]
)
def test_a_late_reply_opens_the_moment_a_coalescing_bug_needs(
    variant: CoreFactory, store_first: bool
) -> None:
    # #15: the load read the source before the write, and returned after the reader
    # joined. #14: the store took effect before the invalidate, and the flight landed after
    # the reader joined. Without the late reply neither moment has a step of its own.
    found = headline(lambda: _race_under_a_flight(variant, store_first))
    assert found.startswith("FRESH"), found


@pytest.mark.parametrize("store_first", [False, True])
def test_the_correct_follower_loads_for_itself_in_the_same_moments(store_first: bool) -> None:
    machine = _race_under_a_flight(Core, store_first)
    late = "values.set(value:a)" if store_first else "source.load(a)"
    trace = "\n".join(machine.trace)
    assert f"p1 n0 get_or_load: {late} -> " in trace and "  .. reply on its way" in trace, trace
    assert f"p1 n0 get_or_load: the reply of {late} arrives" in trace, trace
    # The follower joined the flight, had no proof, and loaded the new row itself.
    assert "p3 n0 get_or_load: flight.wait(a)" in trace, trace
    assert "p3 n0 get_or_load: source.load(a) -> a@1" in trace, trace
    follower = machine.history.ops[-1]
    assert follower.kind == "get_or_load" and follower.ok
    assert follower.served == {"a": Row("a", 1)}
