"""The interleaving model: concurrent readers, fillers, writers and invalidators as rules.

Each rule either starts a process (an operation of the *production* protocol code, wrapped
in a :class:`cascache.effects.Process`), advances one in-flight process by exactly one
effect (optionally failing it, or applying it and failing the reply), or injects a fault
into the stores. Hypothesis chooses the rules, so it chooses the interleaving, and shrinks
a failure to a short one.

Checked (DESIGN §4):

* **FRESH** and **integrity**, on every completed read, by the history checker.
* **State invariant**, after every step: a stored single entry or batch member whose stamp
  is its key's current fence holds an index >= the key's floor.
* **Write contract**: a conditional write that reports ``stored`` saw its observed fence
  current at some effect of the write call.
* **Liveness**: with nothing else running, a fill followed by a get hits (and the same for
  a batch fill followed by ``get_many``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from cascache.batch import Core
from cascache.effects import Effect, Process, Step, drive, perform
from cascache.errors import WireError
from cascache.fence import Version
from cascache.results import BatchWriteResult, Hit, VersionedValue, WriteResult
from cascache.wire import decode_batch, decode_single

from .history import History, Op, Violation
from .oracle import ROW_CODEC, Database, Row
from .topology import CoreFactory, Topology

KEYS = ("a", "b", "c")
MAX_PROCS = 4
FAULTS = frozenset({"step", "evict", "corrupt", "lose_version", "clock", "failover"})
"""Every fault family the model knows; a machine enables a subset."""


class FaultInjected(ConnectionError):
    """The error an injected store failure raises into the operation."""


@dataclass
class Ctx:
    """What a fill process tells the model about itself while it runs."""

    phase: str = "read"
    observed: dict[str, Version] = field(default_factory=dict)


@dataclass
class Proc:
    """One in-flight operation."""

    id: int
    label: str
    node: int
    keys: tuple[str, ...]
    process: Process[object]
    op: Op | None = None
    ctx: Ctx = field(default_factory=Ctx)
    saw_current: bool = False


class ModelFailure(AssertionError):
    """A property broke; the message holds the property and the numbered trace."""


def fill(core: Core[Row], key: str, db: Database, ctx: Ctx) -> Step[WriteResult]:
    """The read-miss fill path of the seed, composed from the production steps."""
    version = yield from core.snapshot_version(key)
    row = yield from perform(Effect("source", "load", (key,), lambda: db.read(key)))
    ctx.observed, ctx.phase = {key: version}, "write"
    return (yield from core.set_if_version(key, row, version, None))


def batch_fill(
    core: Core[Row], keys: Sequence[str], db: Database, ctx: Ctx
) -> Step[BatchWriteResult]:
    """The batch fill path of the seed: snapshot_versions, load, set_if_versions."""
    versions = yield from core.snapshot_versions(keys)
    rows = yield from perform(
        Effect("source", "load", tuple(keys), lambda: {k: db.read(k) for k in keys})
    )
    ctx.observed, ctx.phase = dict(versions), "write"
    items = [VersionedValue(k, rows[k], versions[k]) for k in keys]
    return (yield from core.set_if_versions(items, None))


KINDS = (
    "get",
    "fill",
    "get_or_load",
    "writer",
    "invalidate",
    "get_many",
    "batch_fill",
    "quiet",
    "inject",
)
"""The rule families an example may enable (swarm testing: each example enables a subset,
which makes the rare combinations a race needs far more likely than uniform choice)."""

WIDE = st.integers(0, 2**16 - 1)
"""Choices are drawn wide and folded modulo what is in play (nodes, keys, processes):
Hypothesis favours small values, which would otherwise make "the first key, the first node,
the oldest process" far likelier than the rest, and hide every race on the others."""

node_ids = WIDE
keys_st = WIDE
outcomes = st.sampled_from(["ok", "ok", "ok", "fail", "applied"])
"""How an effect ends: performed, failed (not applied), or applied with the reply lost."""
INJECTIONS = {
    "evict": "evict",
    "corrupt": "corrupt",
    "lose_version": "lose_version",
    "lose_all_versions": "lose_version",
    "tick": "clock",
    "replicate": "failover",
    "failover": "failover",
}
"""Store faults by kind, with the fault family that enables each."""
aheads = st.integers(0, 3)
"""How many effects a new process runs at once (shortens the rule sequence a race needs)."""
key_sets = st.tuples(WIDE, WIDE)
"""(size, order): folded into an ordered subset of at least two of the keys in play."""


@dataclass
class Tally:
    """Counts across every example a machine class ran."""

    examples: int = 0
    effects: int = 0
    faults: int = 0
    first_failure: int | None = None


class CacheModel(RuleBasedStateMachine):
    """The model over one topology. Subclass with :func:`machine_for`."""

    build: ClassVar[Callable[[CoreFactory], Topology]]
    core: ClassVar[CoreFactory] = Core
    faults: ClassVar[frozenset[str]] = FAULTS
    tally: ClassVar[Tally] = Tally()

    def __init__(self) -> None:
        super().__init__()
        self.topo = type(self).build(type(self).core)
        self.db = Database(KEYS)
        self.history = History(self.db.commits)
        self.now = 1
        self.ids = itertools.count(1)
        self.procs: list[Proc] = []
        self.trace: list[str] = []
        self.batch_sets: set[tuple[str, ...]] = set()
        self.stats = {"effects": 0, "faults": 0}
        self.kinds: frozenset[str] = frozenset(KINDS)
        self.active = type(self).faults
        self.nkeys = len(KEYS)
        self._names = self._storage_names()

    def teardown(self) -> None:
        tally = type(self).tally
        tally.examples += 1
        tally.effects += self.stats["effects"]
        tally.faults += self.stats["faults"]
        self.topo.close()

    @initialize(
        nkeys=st.integers(1, len(KEYS)),
        kinds=st.sets(st.sampled_from(KINDS), min_size=2),
        faults=st.sets(st.sampled_from(sorted(FAULTS))),
    )
    def configure(self, nkeys: int, kinds: set[str], faults: set[str]) -> None:
        """Choose which keys, rule families and faults this example uses."""
        self.nkeys = nkeys
        self.kinds = frozenset(kinds)
        self.active = type(self).faults & frozenset(faults)
        self.trace.append(
            f"  0  example uses keys {','.join(KEYS[:nkeys])}; rules {','.join(sorted(kinds))}; "
            f"faults {','.join(sorted(self.active)) or 'none'}"
        )

    def on(self, kind: str) -> bool:
        """Whether rule family ``kind`` is enabled and a process slot is free."""
        return kind in self.kinds and len(self.procs) < MAX_PROCS

    def key(self, drawn: int) -> str:
        """Fold a drawn number into one of the keys this example uses."""
        return KEYS[drawn % self.nkeys]

    def key_set(self, drawn: tuple[int, int]) -> tuple[str, ...]:
        """Fold two drawn numbers into an ordered set of at least two keys in play."""
        size, order = drawn
        orders = list(itertools.permutations(KEYS[: self.nkeys]))
        chosen = orders[order % len(orders)]
        return chosen[: 2 + size % (self.nkeys - 1)]

    # -- processes ----------------------------------------------------------------------

    def _node(self, node: int) -> int:
        return node % len(self.topo.nodes)

    def _start(
        self,
        label: str,
        node: int,
        keys: Sequence[str],
        make: Callable[[Ctx], Step[object]],
        record: str | None = None,
        ahead: int = 0,
    ) -> None:
        node = self._node(node)
        ctx = Ctx()
        op = self.history.invoke(record, node, keys, self.now) if record else None
        proc = Proc(next(self.ids), label, node, tuple(keys), Process(make(ctx)), op, ctx)
        self.trace.append(f"{self.now:>3}  p{proc.id} n{node} starts {label}({','.join(keys)})")
        self.now += 1
        self.procs.append(proc)
        self._settle(proc)
        for _ in range(ahead):
            if proc.process.done:
                break
            self._step(proc, "ok")

    @precondition(lambda self: self.on("get"))
    @rule(node=node_ids, key=keys_st, ahead=aheads)
    def start_get(self, node: int, key: int, ahead: int) -> None:
        """A reader calls ``get``."""
        name = self.key(key)
        core = self.topo.nodes[self._node(node)].core
        self._start("get", node, [name], lambda _: core.get(name), record="get", ahead=ahead)

    @precondition(lambda self: self.on("fill"))
    @rule(node=node_ids, key=keys_st, ahead=aheads)
    def start_fill(self, node: int, key: int, ahead: int) -> None:
        """A reader that missed fills: snapshot, load the source, conditional store."""
        name = self.key(key)
        core = self.topo.nodes[self._node(node)].core
        self._start("fill", node, [name], lambda ctx: fill(core, name, self.db, ctx), ahead=ahead)

    @precondition(lambda self: self.on("get_or_load"))
    @rule(node=node_ids, key=keys_st, ahead=aheads)
    def start_get_or_load(self, node: int, key: int, ahead: int) -> None:
        """A reader uses the ``get_or_load`` convenience (get, snapshot, load, store)."""
        name = self.key(key)
        core = self.topo.nodes[self._node(node)].core
        self._start(
            "get_or_load",
            node,
            [name],
            lambda _: core.get_or_load(name, lambda: self.db.read(name), None),
            record="get_or_load",
            ahead=ahead,
        )

    @precondition(lambda self: self.on("writer"))
    @rule(node=node_ids, key=keys_st, ahead=aheads)
    def start_writer(self, node: int, key: int, ahead: int) -> None:
        """The seed's write path: commit to the source, then call ``invalidate``."""
        name = self.key(key)
        index = self.db.write(name, self.now)
        self.history.commit(self.now, name, index)
        self.trace.append(f"{self.now:>3}  source commits {name}@{index}")
        self.now += 1
        self._invalidate(node, name, ahead)

    @precondition(lambda self: self.on("invalidate"))
    @rule(node=node_ids, key=keys_st, ahead=aheads)
    def start_invalidate(self, node: int, key: int, ahead: int) -> None:
        """An ``invalidate`` with no new commit before it (a retry, or a cautious writer)."""
        self._invalidate(node, self.key(key), ahead)

    def _invalidate(self, node: int, name: str, ahead: int) -> None:
        core = self.topo.nodes[self._node(node)].core
        self._start(
            "invalidate",
            node,
            [name],
            lambda _: core.invalidate(name),
            record="invalidate",
            ahead=ahead,
        )

    @precondition(lambda self: self.on("get_many") and self.nkeys > 1)
    @rule(node=node_ids, keys=key_sets, ahead=aheads)
    def start_get_many(self, node: int, keys: tuple[int, int], ahead: int) -> None:
        """A reader calls ``get_many``."""
        names = self.key_set(keys)
        core = self.topo.nodes[self._node(node)].core
        self.batch_sets.add(tuple(sorted(names)))
        self._start(
            "get_many", node, names, lambda _: core.get_many(names), record="get_many", ahead=ahead
        )

    @precondition(lambda self: self.on("batch_fill") and self.nkeys > 1)
    @rule(node=node_ids, keys=key_sets, ahead=aheads)
    def start_batch_fill(self, node: int, keys: tuple[int, int], ahead: int) -> None:
        """A reader fills several keys: snapshot_versions, load, set_if_versions."""
        names = self.key_set(keys)
        core = self.topo.nodes[self._node(node)].core
        self.batch_sets.add(tuple(sorted(names)))
        self._start(
            "batch_fill",
            node,
            names,
            lambda ctx: batch_fill(core, names, self.db, ctx),
            ahead=ahead,
        )

    @precondition(lambda self: bool(self.procs))
    @rule(pick=WIDE, fault=outcomes)
    def step(self, pick: int, fault: str) -> None:
        """Advance one in-flight process by one effect; maybe fail it (applied or not)."""
        self._step(self.procs[pick % len(self.procs)], fault if "step" in self.active else "ok")

    @precondition(lambda self: bool(self.procs))
    @rule(picks=st.lists(st.tuples(WIDE, outcomes), min_size=1, max_size=8))
    def run(self, picks: list[tuple[int, str]]) -> None:
        """Advance in-flight processes by one effect each, in the order given."""
        for pick, fault in picks:
            if not self.procs:
                return
            proc = self.procs[pick % len(self.procs)]
            self._step(proc, fault if "step" in self.active else "ok")

    def _step(self, proc: Proc, fault: str) -> None:
        effect = proc.process.pending
        assert effect is not None
        if proc.ctx.phase == "write" and self._observed_current(proc):
            proc.saw_current = True
        if fault == "ok":
            seen = proc.process.step()
        else:
            self.stats["faults"] += 1
            seen = proc.process.step(FaultInjected(f"injected {fault}"), applied=fault == "applied")
        self.stats["effects"] += 1
        mark = (
            "" if fault == "ok" else f"  !! {'applied, ' if fault == 'applied' else ''}reply lost"
        )
        self.trace.append(
            f"{self.now:>3}  p{proc.id} n{proc.node} {proc.label}: "
            f"{effect.target}.{effect.op}({self._short(effect.keys)}) -> {self._describe(seen)}"
            f"{mark}"
        )
        self.now += 1
        self._settle(proc)

    def _settle(self, proc: Proc) -> None:
        """Record a finished process and check what can be checked at its response."""
        if not proc.process.done:
            return
        self.procs.remove(proc)
        error = proc.process.error
        outcome = f"error {type(error).__name__}" if error else self._describe_result(proc)
        self.trace.append(f"{self.now:>3}  p{proc.id} returns {outcome}")
        if proc.op is not None:
            proc.op.returned, proc.op.ok = self.now, error is None
            if error is None and proc.op.kind != "invalidate":
                proc.op.served = self._served(proc)
                self._report(self.history.check_read(proc.op))
        self.now += 1
        if error is None and proc.label in ("fill", "batch_fill"):
            result = proc.process.result
            assert isinstance(result, WriteResult | BatchWriteResult)
            if result.stored and not proc.saw_current:
                self._fail(
                    "write contract",
                    f"p{proc.id} {proc.label}({','.join(proc.keys)}) reported stored, but its "
                    "observed version was never current during the write",
                )

    def _served(self, proc: Proc) -> dict[str, Row]:
        result = proc.process.result
        if proc.label == "get":
            assert result is None or isinstance(result, Hit)
            return {} if result is None else {proc.keys[0]: result.value}
        if proc.label == "get_or_load":
            assert isinstance(result, Row)
            return {proc.keys[0]: result}
        assert isinstance(result, tuple)
        values: dict[str, Row] = result[0]
        return dict(values)

    def _observed_current(self, proc: Proc) -> bool:
        return all(
            self.topo.fence(proc.node, self.topo.keys.single(key).version) == fence
            for key, fence in proc.ctx.observed.items()
        )

    # -- liveness -------------------------------------------------------------------

    @rule(node=node_ids, key=keys_st)
    def fill_then_get_hits(self, node: int, key: int) -> None:
        """With nothing else running, a fill followed by a get serves the latest row."""
        self._quiet_fill(node, self.key(key))

    def _quiet_fill(self, node: int, key: str) -> None:
        node = self._node(node)
        cache = self.topo.nodes[node]
        result = drive(fill(cache.core, key, self.db, Ctx()))
        op = self.history.invoke("get", node, [key], self.now)
        hit = cache.get(key)
        op.returned, op.ok = self.now, True
        op.served = {} if hit is None else {key: hit.value}
        self.trace.append(
            f"{self.now:>3}  n{node} quiet fill({key}) -> {result.outcome.value}; "
            f"get -> {self._describe(hit)}"
        )
        self.now += 1
        self._report(self.history.check_read(op))
        if not result.stored or hit is None or hit.value != self.db.read(key):
            self._fail("liveness", f"quiet fill({key}) {result.outcome.value}, then get -> {hit}")

    @precondition(lambda self: "quiet" in self.kinds and self.nkeys > 1)
    @rule(node=node_ids, keys=key_sets)
    def batch_fill_then_get_many_hits(self, node: int, keys: tuple[int, int]) -> None:
        """With nothing else running, a batch fill followed by ``get_many`` hits every key."""
        self._quiet_batch_fill(node, self.key_set(keys))

    def _quiet_batch_fill(self, node: int, keys: tuple[str, ...]) -> None:
        node = self._node(node)
        cache = self.topo.nodes[node]
        self.batch_sets.add(tuple(sorted(keys)))
        result = drive(batch_fill(cache.core, keys, self.db, Ctx()))
        op = self.history.invoke("get_many", node, keys, self.now)
        values, missing = cache.get_many(keys)
        op.returned, op.ok, op.served = self.now, True, dict(values)
        self.trace.append(
            f"{self.now:>3}  n{node} quiet batch_fill({','.join(keys)}) -> "
            f"{result.outcome.value}; get_many missed {missing}"
        )
        self.now += 1
        self._report(self.history.check_read(op))
        expected = {k: self.db.read(k) for k in keys}
        if not result.stored or values != expected:
            self._fail("liveness", f"quiet batch fill {keys}: {result}, then get_many {values}")

    # -- faults ---------------------------------------------------------------------

    def _fault(self, family: str, text: str) -> bool:
        if family not in self.active:
            return False
        self.stats["faults"] += 1
        self.trace.append(f"{self.now:>3}  FAULT {text}")
        self.now += 1
        return True

    @precondition(
        lambda self: "inject" in self.kinds and any(f in self.active for f in INJECTIONS.values())
    )
    @rule(
        kind=st.sampled_from(list(INJECTIONS)),
        store=st.integers(0, 3),
        key=keys_st,
        batch=st.booleans(),
        pos=st.integers(0, 255),
    )
    def inject(self, kind: str, store: int, key: int, batch: bool, pos: int) -> None:
        """A fault between effects: eviction, corruption, version loss, time passing."""
        # Fold the drawn kind into the active families, so no draw is wasted.
        usable = [k for k in INJECTIONS if INJECTIONS[k] in self.active]
        kind = usable[list(INJECTIONS).index(kind) % len(usable)]
        which = self.key(key)
        store %= self.topo.value_stores()
        if kind == "evict":
            names = self._batch_names(which) if batch else [self.topo.keys.single(which).value]
            if self._fault("evict", f"value store {store} evicts {self._short(names)}"):
                for name in names:
                    self.topo.evict(store, name)
        elif kind == "corrupt":
            names = self._batch_names(which)[:1] if batch else [self.topo.keys.single(which).value]
            for name in names:
                data = self.topo.raw(store, name)
                at = pos % len(data) if data else 0
                if data and self._fault("corrupt", f"byte {at} of {self._short([name])} flips"):
                    flipped = bytearray(data)
                    flipped[at] ^= 0x5A
                    self.topo.put_raw(store, name, bytes(flipped))
        elif kind == "lose_version":
            if self._fault("lose_version", f"version of {which} lost"):
                self.topo.lose_version(self.topo.keys.single(which).version)
        elif kind == "lose_all_versions":
            if self._fault("lose_version", "every version lost"):
                self.topo.lose_all_versions()
        elif kind == "replicate":
            if self._fault("failover", "the replica catches up"):
                self.topo.replicate()
        elif kind == "failover":
            if self._fault("failover", "FAILOVER: the replica is promoted"):
                self.topo.failover()
        elif self._fault("clock", f"clock +{5 + 26 * batch}s"):
            self.topo.clock.advance(5.0 + 26.0 * batch)

    @invariant()
    def replication_lags(self) -> None:
        """Replicas (where a topology has one) trail the primary by one rule."""
        self.topo.rule_done()

    # -- the state invariant ------------------------------------------------------------

    @invariant()
    def current_entries_are_fresh(self) -> None:
        """Every stored entry whose stamp is current (for a node that reads that store) holds a
        row at or above its key's floor."""
        for store in range(self.topo.value_stores()):
            for key in KEYS:
                data = self.topo.raw(store, self.topo.keys.single(key).value)
                if data is None:
                    continue
                try:
                    stamp, payload = decode_single(data)
                except WireError:
                    continue
                self._check_stored(store, key, stamp, payload, "single entry")
            for members in self.batch_sets:
                data = self.topo.raw(store, self.topo.keys.batch(members))
                if data is None:
                    continue
                try:
                    decoded = decode_batch(data)
                except WireError:
                    continue
                for member in decoded:
                    self._check_stored(
                        store, member.key, member.fence, member.payload, "batch member"
                    )

    def _check_stored(
        self, store: int, key: str, stamp: Version, payload: bytes, what: str
    ) -> None:
        # Judge the entry by every node that could serve it: with per-node version
        # stores, "the current fence" is a different fence on each node.
        name = self.topo.keys.single(key).version
        if all(stamp != self.topo.fence(node, name) for node in self.topo.readers(store)):
            return
        row = ROW_CODEC.decode(payload)
        floor, witness = self.history.floor(key, self.now)
        if row.key != key or row.index < floor:
            self._fail(
                "state invariant",
                f"value store {store} holds {what} {key} -> {row.key}@{row.index} stamped with "
                f"the current fence {stamp.short()}, below floor {floor} set by op {witness}",
            )

    # -- reporting ----------------------------------------------------------------------

    def _report(self, violations: list[Violation]) -> None:
        if violations:
            v = violations[0]
            self._fail(v.prop, v.message)

    def _fail(self, prop: str, message: str) -> None:
        tally = type(self).tally
        if tally.first_failure is None:
            tally.first_failure = tally.examples + 1
        raise ModelFailure(
            f"{prop} violated on topology {self.topo.name}: {message}\n"
            "trace (time, process, node, effect -> what the operation saw):\n"
            + "\n".join(self.trace)
        )

    def _storage_names(self) -> dict[str, str]:
        names: dict[str, str] = {}
        for key in KEYS:
            ck = self.topo.keys.single(key)
            names[ck.value], names[ck.version] = f"value:{key}", f"version:{key}"
        return names

    def _batch_names(self, key: str) -> list[str]:
        return [self.topo.keys.batch(s) for s in sorted(self.batch_sets) if key in s]

    def _short(self, keys: Sequence[str]) -> str:
        out = []
        for name in keys:
            if name in self._names:
                out.append(self._names[name])
            elif ":b:" in name:
                members = next(
                    (s for s in self.batch_sets if self.topo.keys.batch(s) == name), ("?",)
                )
                out.append(f"batch:{'+'.join(members)}")
            else:
                out.append(name)
        return ",".join(out)

    def _describe(self, seen: object) -> str:
        if isinstance(seen, Version):
            return f"fence {seen.short()}"
        if isinstance(seen, bytes):
            for decode in (decode_single, decode_batch):
                try:
                    decoded = decode(seen)
                except WireError:
                    continue
                if isinstance(decoded, tuple):
                    return f"entry[{self._row(decoded[1])} stamped {decoded[0].short()}]"
                return (
                    "batch["
                    + ", ".join(
                        f"{self._row(m.payload)} stamped {m.fence.short()}" for m in decoded
                    )
                    + "]"
                )
            return f"<{len(seen)} corrupt bytes>"
        if isinstance(seen, Row):
            return f"{seen.key}@{seen.index}"
        if isinstance(seen, Hit):
            return f"hit {self._describe(seen.value)}"
        if isinstance(seen, BaseException):
            return f"raises {type(seen).__name__}"
        if isinstance(seen, list | tuple):
            return "[" + ", ".join(self._describe(x) for x in seen) + "]"
        if isinstance(seen, dict):
            return "{" + ", ".join(f"{k}: {self._describe(v)}" for k, v in seen.items()) + "}"
        return repr(seen)

    def _row(self, payload: bytes) -> str:
        try:
            row = ROW_CODEC.decode(payload)
        except Exception:
            return "<undecodable>"
        return f"{row.key}@{row.index}"

    def _describe_result(self, proc: Proc) -> str:
        result = proc.process.result
        if isinstance(result, WriteResult | BatchWriteResult):
            return result.outcome.value
        return self._describe(result)


def machine_for(
    build: Callable[[CoreFactory], Topology],
    core: CoreFactory = Core,
    faults: frozenset[str] = FAULTS,
    name: str = "CacheModel",
) -> type[CacheModel]:
    """A state machine class for one topology, protocol variant and fault set."""
    return type(
        name,
        (CacheModel,),
        {
            "build": staticmethod(build),
            "core": staticmethod(core),
            "faults": faults,
            "tally": Tally(),
        },
    )
