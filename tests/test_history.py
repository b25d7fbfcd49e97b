"""The history checker (``model.history``): unit tests, then a thread-based stress test.

The unit tests build histories by hand and pin down what ``check`` reports (DESIGN §4:
FRESH and integrity). The stress test records a real multi-threaded run of one shared
cache on a single logical clock and judges it with the same checker; running the same
harness against a deliberately broken cache (``model.zoo.DeleteWithoutAdvance``) shows
that the harness can fail. The broken run does not rely on luck: one scripted
interleaving (a fill that loads, then waits on ``threading.Event`` handshakes until a
writer has committed and invalidated the key, then stores) runs inside every stress run,
so the stale fill happens in every broken run and is rejected in every correct one.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

import pytest

import cascache
from cascache import CAS, InvalidateError, LocalGenStore, MemoryProvider, Options
from cascache.batch import Core
from cascache.fence import Version
from cascache.results import WriteOutcome
from model.history import History, Op, Violation, check
from model.oracle import ROW_CODEC, Database, Row
from model.zoo import DeleteWithoutAdvance

# -- unit tests of the checker on hand-built histories -------------------------------------


def op_at(
    history: History,
    kind: str,
    keys: Iterable[str],
    invoked: int,
    returned: int | None,
    *,
    ok: bool = True,
    served: Mapping[str, Row] | None = None,
    node: int = 0,
) -> Op:
    """Record one operation with explicit invocation and response times."""
    op = history.invoke(kind, node, keys, invoked)
    op.returned = returned
    op.ok = ok
    op.served = dict(served or {})
    return op


def base_history() -> History:
    """``k`` committed at index 0 (t=0) and index 1 (t=5); ``j`` committed at index 0."""
    return History([(0, "k", 0), (0, "j", 0), (5, "k", 1)])


def test_read_after_invalidate_returned_below_floor_is_one_fresh_violation() -> None:
    history = base_history()
    invalidate = op_at(history, "invalidate", ["k"], 6, 7)
    read = op_at(history, "get", ["k"], 8, 9, served={"k": Row("k", 0)})

    found = check(history)

    assert len(found) == 1
    violation = found[0]
    assert violation.prop == "FRESH"
    assert violation.op == read.id
    assert violation.witness == invalidate.id
    assert f"invalidate op {invalidate.id}" in violation.message
    assert "k@0" in violation.message and "k@1" in violation.message


def test_read_at_or_above_floor_is_fresh() -> None:
    history = base_history()
    op_at(history, "invalidate", ["k"], 6, 7)
    op_at(history, "get", ["k"], 8, 9, served={"k": Row("k", 1)})
    op_at(history, "get_many", ["k", "j"], 10, 11, served={"k": Row("k", 1), "j": Row("j", 0)})

    assert check(history) == []


@pytest.mark.parametrize("invoked", [6, 7, 8], ids=["before-invoke", "at-invoke", "overlapping"])
def test_read_started_before_invalidate_returned_has_no_floor(invoked: int) -> None:
    history = base_history()
    op_at(history, "invalidate", ["k"], 7, 9)
    op_at(history, "get", ["k"], invoked, 10, served={"k": Row("k", 0)})

    assert check(history) == []


def test_read_started_exactly_when_invalidate_returned_has_no_floor() -> None:
    # "Started after I returned" is strict: a shared time point is not after.
    history = base_history()
    op_at(history, "invalidate", ["k"], 6, 7)
    op_at(history, "get", ["k"], 7, 9, served={"k": Row("k", 0)})

    assert check(history) == []


def test_failed_invalidate_sets_no_floor_but_successful_retry_does() -> None:
    history = base_history()
    failed = op_at(history, "invalidate", ["k"], 6, 7, ok=False)
    early = op_at(history, "get", ["k"], 8, 9, served={"k": Row("k", 0)})

    assert history.floor("k", early.invoked) == (-1, None)
    assert check(history) == []

    retry = op_at(history, "invalidate", ["k"], 10, 11)
    late = op_at(history, "get", ["k"], 12, 13, served={"k": Row("k", 0)})

    found = check(history)
    assert [(v.prop, v.op, v.witness) for v in found] == [("FRESH", late.id, retry.id)]
    assert all(v.witness != failed.id for v in found)


def test_unfinished_invalidate_sets_no_floor() -> None:
    history = base_history()
    op_at(history, "invalidate", ["k"], 6, None, ok=False)
    op_at(history, "get", ["k"], 8, 9, served={"k": Row("k", 0)})

    assert check(history) == []


def test_invalidate_of_another_key_sets_no_floor() -> None:
    history = base_history()
    op_at(history, "invalidate", ["j"], 6, 7)
    op_at(history, "get", ["k"], 8, 9, served={"k": Row("k", 0)})

    assert check(history) == []


def test_failed_or_unfinished_reads_are_not_judged() -> None:
    history = base_history()
    op_at(history, "invalidate", ["k"], 6, 7)
    op_at(history, "get", ["k"], 8, 9, ok=False, served={"k": Row("k", 0)})
    op_at(history, "get", ["k"], 10, None, served={"k": Row("other", 9)})

    assert check(history) == []


def test_missed_read_is_fresh() -> None:
    history = base_history()
    op_at(history, "invalidate", ["k"], 6, 7)
    op_at(history, "get", ["k"], 8, 9)

    assert check(history) == []


@pytest.mark.parametrize(
    ("served", "fragment"),
    [
        ({"k": Row("j", 0)}, "for key 'k'"),
        ({"k": Row("k", 7)}, "uncommitted"),
        ({"j": Row("j", 0)}, "unrequested key 'j'"),
    ],
    ids=["another-key", "never-committed", "unrequested"],
)
def test_integrity_violations(served: dict[str, Row], fragment: str) -> None:
    history = base_history()
    read = op_at(history, "get", ["k"], 8, 9, served=served)

    found = check(history)

    assert [(v.prop, v.op, v.witness) for v in found] == [("integrity", read.id, None)]
    assert fragment in found[0].message


def test_row_committed_only_after_the_read_returned_is_an_integrity_violation() -> None:
    history = History([(0, "k", 0)])
    read = op_at(history, "get", ["k"], 2, 3, served={"k": Row("k", 1)})
    history.commit(4, "k", 1)

    assert [(v.prop, v.op) for v in check(history)] == [("integrity", read.id)]


def test_integrity_is_reported_instead_of_fresh_for_the_same_key() -> None:
    # A foreign row below the floor is one violation (integrity), not two.
    history = base_history()
    op_at(history, "invalidate", ["k"], 6, 7)
    read = op_at(history, "get", ["k"], 8, 9, served={"k": Row("j", 0)})

    assert [(v.prop, v.op) for v in check(history)] == [("integrity", read.id)]


def test_floor_is_max_over_invalidates_returned_before_the_read_started() -> None:
    history = History([(0, "k", 0), (2, "k", 1), (10, "k", 2), (20, "k", 3)])
    high = op_at(history, "invalidate", ["k"], 11, 12)  # floor 2
    low = op_at(history, "invalidate", ["k"], 3, 4)  # floor 1, recorded later
    pending = op_at(history, "invalidate", ["k"], 21, 30)  # floor 3, returns late

    assert history.floor("k", 4) == (-1, None)
    assert history.floor("k", 5) == (1, low.id)
    assert history.floor("k", 13) == (2, high.id)
    assert history.floor("k", 30) == (2, high.id)
    assert history.floor("k", 31) == (3, pending.id)

    ok_read = op_at(history, "get", ["k"], 8, 9, served={"k": Row("k", 1)})
    stale = op_at(history, "get", ["k"], 13, 14, served={"k": Row("k", 1)})
    overlap = op_at(history, "get", ["k"], 25, 31, served={"k": Row("k", 2)})
    late = op_at(history, "get", ["k"], 32, 33, served={"k": Row("k", 2)})

    found = {v.op: v for v in check(history)}
    assert ok_read.id not in found
    assert overlap.id not in found
    assert set(found) == {stale.id, late.id}
    assert found[stale.id].witness == high.id
    assert found[late.id].witness == pending.id


def test_committed_before_includes_its_time_point() -> None:
    history = History([(0, "k", 0), (5, "k", 1), (9, "k", 2)])

    assert history.committed_before("k", 4) == 0
    assert history.committed_before("k", 5) == 1
    assert history.committed_before("k", 8) == 1
    assert history.committed_before("k", 9) == 2
    assert history.committed_before("k", 100) == 2
    assert history.committed_before("never", 100) == -1
    assert History([(3, "k", 0)]).committed_before("k", 2) == -1


def test_commit_at_the_invalidate_invocation_counts_toward_its_floor() -> None:
    # D_k(t) includes t: a write committed at the very time point the invalidate started
    # is covered by it.
    history = History([(0, "k", 0), (6, "k", 1)])
    invalidate = op_at(history, "invalidate", ["k"], 6, 7)
    read = op_at(history, "get", ["k"], 8, 9, served={"k": Row("k", 0)})

    assert history.floor("k", read.invoked) == (1, invalidate.id)
    assert [(v.prop, v.op, v.witness) for v in check(history)] == [
        ("FRESH", read.id, invalidate.id)
    ]


def test_commit_after_the_invalidate_started_is_not_covered() -> None:
    history = History([(0, "k", 0), (7, "k", 1)])
    op_at(history, "invalidate", ["k"], 6, 8)
    op_at(history, "get", ["k"], 9, 10, served={"k": Row("k", 0)})

    assert check(history) == []


def test_get_many_is_judged_per_key() -> None:
    history = History([(0, "a", 0), (0, "b", 0), (2, "a", 1), (2, "b", 1)])
    inv_a = op_at(history, "invalidate", ["a"], 3, 4)
    read = op_at(history, "get_many", ["a", "b"], 5, 6, served={"a": Row("a", 0), "b": Row("b", 0)})

    assert [(v.prop, v.op, v.witness) for v in check(history)] == [("FRESH", read.id, inv_a.id)]


# -- the stress harness ------------------------------------------------------------------

KEYS = ("a", "b", "c")
HOT = "hot"
"""The key of the scripted interleaving; random traffic never touches it."""
WAIT = 10.0
"""Upper bound on any handshake wait: a broken handshake fails the test, never hangs it."""


class Recorder:
    """The source of truth and the history, on one logical clock under one lock.

    Every time point comes from ``itertools.count`` while holding ``_lock``, and a commit
    is written to the source and the history under that same lock, so the commit order,
    what loaders see and the clock always agree.
    """

    def __init__(self, keys: Iterable[str]) -> None:
        self._lock = threading.Lock()
        self._clock = itertools.count(1)
        self.db = Database(keys)
        self.history = History(self.db.commits)

    def write(self, key: str) -> int:
        """Commit a new write to ``key``; returns its index."""
        with self._lock:
            now = next(self._clock)
            index = self.db.write(key, now)
            self.history.commit(now, key, index)
            return index

    def load(self, key: str) -> Row:
        with self._lock:
            return self.db.read(key)

    def load_many(self, keys: Iterable[str]) -> dict[str, Row]:
        with self._lock:
            return {key: self.db.read(key) for key in keys}

    def invoke(self, kind: str, node: int, keys: Iterable[str]) -> Op:
        with self._lock:
            return self.history.invoke(kind, node, keys, next(self._clock))

    def respond(self, op: Op, ok: bool, served: Mapping[str, Row] | None = None) -> None:
        with self._lock:
            op.returned = next(self._clock)
            op.ok = ok
            op.served = dict(served or {})


class FlakyGenStore(LocalGenStore):
    """A ``LocalGenStore`` whose every ``fail_every``-th ``advance`` fails (nothing changes)."""

    def __init__(self, fail_every: int) -> None:
        super().__init__()
        self._calls = itertools.count(1)
        self._calls_lock = threading.Lock()
        self.fail_every = fail_every

    def advance(self, key: str) -> Version:
        with self._calls_lock:
            call = next(self._calls)
        if call % self.fail_every == 0:
            raise ConnectionError(f"injected advance failure #{call}")
        return super().advance(key)


@dataclass
class Script:
    """One scripted stale-fill interleaving on ``HOT``, played by reader 0 and writer 0.

    Reader 0 snapshots ``HOT`` and loads it, then waits; writer 0 commits a new write to
    ``HOT`` and invalidates it (retrying until an invalidate succeeds), then lets reader 0
    store what it loaded and read ``HOT`` again. A correct cache rejects the store (the
    version moved), so the read misses; a cache whose invalidate does not advance the
    version stores the stale row and serves it to a read that started after the
    invalidate returned.
    """

    loaded: threading.Event = field(default_factory=threading.Event)
    invalidated: threading.Event = field(default_factory=threading.Event)
    fill_outcome: WriteOutcome | None = None
    invalidate_op: Op | None = None
    read_op: Op | None = None


@dataclass(frozen=True)
class Workload:
    readers: int = 4
    writers: int = 2
    ops_per_thread: int = 300
    keys: tuple[str, ...] = KEYS
    seed: int = 0


@dataclass
class Run:
    history: History
    script: Script
    violations: list[Violation]


def wait(event: threading.Event, what: str) -> None:
    if not event.wait(WAIT):
        raise TimeoutError(f"scripted interleaving stuck waiting for {what}")


def recorded_invalidate(cache: CAS[Row], rec: Recorder, node: int, key: str) -> Op:
    """Invalidate ``key`` until it succeeds, recording every attempt; returns the success."""
    for _ in range(100):
        op = rec.invoke("invalidate", node, [key])
        try:
            cache.invalidate(key)
        except InvalidateError:
            rec.respond(op, ok=False)
            continue
        rec.respond(op, ok=True)
        return op
    raise AssertionError(f"invalidate({key!r}) never succeeded")


def recorded_get(cache: CAS[Row], rec: Recorder, node: int, key: str) -> Op:
    op = rec.invoke("get", node, [key])
    hit = cache.get(key)
    rec.respond(op, ok=True, served={key: hit.value} if hit is not None else None)
    return op


def reader(cache: CAS[Row], rec: Recorder, node: int, work: Workload, script: Script) -> None:
    rng = random.Random(f"{work.seed}-reader-{node}")
    if node == 0:
        # The scripted stale fill: snapshot and load, let writer 0 commit and invalidate,
        # then store and read back.
        version = cache.snapshot_version(HOT)
        row = rec.load(HOT)
        script.loaded.set()
        wait(script.invalidated, "writer 0 to invalidate")
        script.fill_outcome = cache.set_if_version(HOT, row, version).outcome
        script.read_op = recorded_get(cache, rec, node, HOT)
    keys = list(work.keys)  # never HOT: no random fill may overwrite the scripted one
    for _ in range(work.ops_per_thread):
        action = rng.randrange(6)
        key = rng.choice(keys)
        if action == 0:
            recorded_get(cache, rec, node, key)
        elif action == 1:
            op = rec.invoke("get_or_load", node, [key])
            value = cache.get_or_load(key, partial(rec.load, key))
            rec.respond(op, ok=True, served={key: value})
        elif action == 2:
            wanted = rng.sample(keys, rng.randint(1, len(keys)))
            op = rec.invoke("get_many", node, wanted)
            found, _ = cache.get_many(wanted)
            rec.respond(op, ok=True, served=found)
        elif action == 3:
            wanted = rng.sample(keys, rng.randint(1, len(keys)))
            op = rec.invoke("get_many_or_load", node, wanted)
            values = cache.get_many_or_load(wanted, rec.load_many)
            rec.respond(op, ok=True, served=values)
        elif action == 4:
            # The manual fill path, with a chance for others to run between load and store.
            version = cache.snapshot_version(key)
            row = rec.load(key)
            time.sleep(0)
            cache.set_if_version(key, row, version)
        else:
            wanted = rng.sample(keys, rng.randint(2, len(keys)))
            versions = cache.snapshot_versions(wanted)
            rows = rec.load_many(wanted)
            time.sleep(0)
            cache.set_if_versions(cascache.VersionedValue(k, rows[k], versions[k]) for k in wanted)
        time.sleep(0)


def writer(cache: CAS[Row], rec: Recorder, node: int, work: Workload, script: Script) -> None:
    rng = random.Random(f"{work.seed}-writer-{node}")
    if node == 0:
        wait(script.loaded, "reader 0 to load")
        rec.write(HOT)
        script.invalidate_op = recorded_invalidate(cache, rec, node, HOT)
        script.invalidated.set()
    for _ in range(work.ops_per_thread):
        key = rng.choice(work.keys)
        rec.write(key)
        time.sleep(0)
        recorded_invalidate(cache, rec, node, key)
        time.sleep(0)


def stress(cache: CAS[Row], work: Workload = Workload()) -> Run:
    """Run ``work`` against ``cache`` from many threads and check the recorded history."""
    rec = Recorder([*work.keys, HOT])
    script = Script()
    roles: list[tuple[Callable[[CAS[Row], Recorder, int, Workload, Script], None], int]] = [
        *((reader, node) for node in range(work.readers)),
        *((writer, node) for node in range(work.writers)),
    ]
    start = threading.Barrier(len(roles))

    def play(role: Callable[[CAS[Row], Recorder, int, Workload, Script], None], node: int) -> None:
        start.wait(WAIT)
        role(cache, rec, node, work, script)

    with ThreadPoolExecutor(max_workers=len(roles)) as pool:
        futures = [pool.submit(play, role, node) for role, node in roles]
        for future in futures:
            future.result(timeout=60)
    # A tail read of every key once all writers are done, so some read certainly starts
    # after invalidates returned.
    for key in [*work.keys, HOT]:
        op = rec.invoke("get_or_load", work.readers, [key])
        value = cache.get_or_load(key, partial(rec.load, key))
        rec.respond(op, ok=True, served={key: value})
    return Run(rec.history, script, check(rec.history))


def serving_reads(history: History) -> list[Op]:
    return [op for op in history.ops if op.kind != "invalidate" and op.ok and op.served]


def floored_reads(history: History) -> list[Op]:
    """Serving reads that started after some successful invalidate of a served key returned."""
    return [
        op
        for op in serving_reads(history)
        if any(history.floor(key, op.invoked)[1] is not None for key in op.served)
    ]


def invalidates(history: History, *, ok: bool) -> list[Op]:
    return [op for op in history.ops if op.kind == "invalidate" and op.ok is ok]


def correct_cache(namespace: str, gen_store: LocalGenStore) -> CAS[Row]:
    return cascache.new(
        Options(
            namespace=namespace, provider=MemoryProvider(), codec=ROW_CODEC, gen_store=gen_store
        )
    )


def broken_cache(namespace: str) -> CAS[Row]:
    core: Core[Row] = DeleteWithoutAdvance(
        Options(
            namespace=namespace,
            provider=MemoryProvider(),
            codec=ROW_CODEC,
            gen_store=LocalGenStore(),
        )
    )
    return CAS(core)


@pytest.mark.parametrize("seed", [0, 1])
def test_stress_correct_cache_is_fresh(seed: int) -> None:
    with correct_cache("stress", FlakyGenStore(fail_every=7)) as cache:
        run = stress(cache, Workload(seed=seed))

    assert run.violations == []
    # Not vacuous: values were served, invalidates succeeded and failed, and reads
    # started after successful invalidates returned and served values.
    history = run.history
    assert len(serving_reads(history)) > 100
    assert len(invalidates(history, ok=True)) >= 600
    assert invalidates(history, ok=False)
    assert floored_reads(history)
    # The scripted interleaving really happened and the correct cache rejected the fill.
    assert run.script.fill_outcome is WriteOutcome.VERSION_MISMATCH
    assert run.script.invalidate_op is not None and run.script.read_op is not None
    assert run.script.invalidate_op.returned is not None
    assert run.script.read_op.invoked > run.script.invalidate_op.returned
    assert run.script.read_op.served == {}


def test_stress_catches_invalidate_that_does_not_advance() -> None:
    with broken_cache("stress-broken") as cache:
        run = stress(cache)

    fresh = [v for v in run.violations if v.prop == "FRESH"]
    assert fresh, "the checker must catch DeleteWithoutAdvance"
    assert all(v.prop == "FRESH" for v in run.violations)
    # The scripted stale fill is among them, every time: the fill was stored and the read
    # that started after the invalidate returned served the row loaded before it.
    script = run.script
    assert script.fill_outcome is WriteOutcome.STORED
    assert script.invalidate_op is not None and script.read_op is not None
    assert script.read_op.served == {HOT: Row(HOT, 0)}
    assert any(v.op == script.read_op.id and v.witness == script.invalidate_op.id for v in fresh)
