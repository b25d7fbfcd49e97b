"""Exhaustive small-scope checking: every interleaving of a declared scope, breadth-first.

The Hypothesis model (:mod:`model.machine`) samples interleavings; this module enumerates
them. A :class:`Scope` declares the operations (each a process of the production code,
started once, at any point), the nodes and keys they use, the topology, and which faults
may happen and how many. :func:`explore` then visits every state reachable by starting an
operation, stepping one in-flight operation by one effect (performed; or, with a fault
left in the budget, failed without being applied, applied with its reply lost, or, where
the scope allows it, performed with its reply handed over at a later step), or injecting
a state fault, and checks every property of the model at every state.

It drives the same :class:`~model.machine.CacheModel` the sampled model does, so the
checks are the model's own (FRESH and integrity at every completed read, fail-closed, the
state invariant and provenance after every transition, the write contract at every
stored write) and a counterexample is printed in the model's trace format.

Breadth-first, so the first violation found has the fewest transitions of any in the
scope: it is a shortest counterexample.

State hashing, and why it is sound
----------------------------------

A state is identified by a fingerprint (:func:`fingerprint`) and a state already seen is
not expanded again. Two runs that reach the same fingerprint have the same futures (the
same enabled transitions, and the same check results along each), because the
fingerprint holds everything the future depends on, with fences renamed canonically:

* **Stores.** Every fence each node sees, and every stored entry decoded to (stamp,
  payload) or (key, stamp, payload) per batch member; whether a fault planted it, and
  what faults planted in each slot even after the entry is gone (the model excuses a
  later entry equal to it). The
  protocol only ever compares fences for equality and makes new ones at random, so a
  renaming (numbered in order of first appearance along a fixed traversal) changes
  nothing it can observe; encoding is deterministic, so equal decodings mean equal bytes
  up to renaming. The stores are used far below any capacity bound and no entry has a
  TTL within reach, so their contents are their whole state.
* **Processes.** An operation is a generator of the production code; it is deterministic
  given what it was handed, so its state is a function of its inputs: the effects it
  performed, with the outcome and the reply of each (rendered canonically; a late reply
  is recorded when its effect is performed and again when it is handed over), and what it
  read of the shared in-process state between effects (:class:`~cascache.flight.Flights`:
  which flight it joined, led by which operation, and whether the flight had issued its
  store by then, which is all a later ``issued > joined`` comparison depends on), and
  the flights it holds as they are now (a landed flight leaves the table of flights in
  the air, but an operation waiting on it still reads what it holds). A failed effect
  is recorded by its exception type, which is all the protocol inspects.
* **Flights in the air**, per node: key, leader, fence and what the leader has recorded.
* **The model's own state**: the source's latest index per key; per key the FRESH floor
  that completed invalidates have set (what a read starting now must meet); for each
  in-flight read the floor it started under; for each in-flight invalidate the index
  committed before it started; per operation what the write contract has learnt
  (snapshotted fences, their maximal moments of being current together, keys loaded and
  fenced); for every fence in the fingerprint the index committed when it became current
  (what provenance compares against); faults used; operations not yet started.

Times themselves (the model's logical clock) are left out: every check compares them only
through the quantities above.

``explore(..., verify=True)`` checks the argument on the run itself: whenever a path
reaches a fingerprint already seen, both states are taken one step further by every
enabled transition, and the children must agree (the same transitions, the same
fingerprints, the same violations). A fingerprint that left out something the future
reads fails this at the first merge where it matters.
"""

from __future__ import annotations

import dataclasses
import enum
import multiprocessing
import sys
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from cascache.batch import Core
from cascache.effects import Effect
from cascache.errors import WireError
from cascache.fence import FENCE_SIZE, Version
from cascache.flight import Flight
from cascache.results import Hit
from cascache.wire import decode_batch, decode_single

from .machine import INJECTIONS, KEYS, LATE, CacheModel, ModelFailure, Proc, machine_for
from .oracle import Row
from .run import Target, build, fake_redis
from .topology import CoreFactory

READS = ("get", "get_or_load", "get_many", "get_many_or_load")
"""Operations started through the model's read path (recorded in the history)."""
KINDS = (*READS, "fill", "batch_fill", "writer", "invalidate")
"""Every operation a scope may name: ``writer`` commits a write to the source and then
calls ``invalidate``; ``fill`` and ``batch_fill`` are the seed's explicit fill paths."""
STEP_FAULTS = ("fail", "applied")
"""Effect outcomes besides success: failed without being applied, applied with the reply
lost."""
STATE_FAULTS = ("evict", "corrupt", "foreign", "lose_version", "failover", "restart")
"""Faults between effects: a value store evicts an entry; a byte of a stored frame flips
(``corrupt``); a stored frame is replaced by one stamped with the key's current fence
whose payload the codec refuses (``foreign``: another writer, a schema change); a key's
fence is lost; on the
topologies with a lagging copy of the server (``redis-failover``, ``redis-restart`` and
their mitigations), the replica is promoted, or the server restarts from its last
snapshot."""
DURABLE = ("failover", "restart")
"""The state faults that need a topology with a lagging copy of the server."""


@dataclass(frozen=True)
class Operation:
    """One operation of a scope: ``kind`` on ``node`` over ``keys`` (base keys: a, b, c)."""

    kind: str
    keys: tuple[str, ...]
    node: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown operation {self.kind!r}; known: {', '.join(KINDS)}")
        if not self.keys or any(k not in KEYS for k in self.keys):
            raise ValueError(f"{self.kind}: keys must be some of {KEYS}, got {self.keys}")
        many = self.kind in ("get_many", "get_many_or_load", "batch_fill")
        if many != (len(self.keys) > 1) or len(set(self.keys)) != len(self.keys):
            raise ValueError(f"{self.kind} takes {'two or more' if many else 'one'} distinct keys")

    def __str__(self) -> str:
        return f"{self.kind}({','.join(self.keys)})@n{self.node}"


@dataclass(frozen=True)
class Scope:
    """A bounded configuration to check exhaustively.

    Attributes:
        name: how tables and the command line refer to it.
        operations: what runs; each operation starts once, at any point.
        faults: which of :data:`STEP_FAULTS` and :data:`STATE_FAULTS` may happen, and
            whether an effect's reply may come late (:data:`~model.machine.LATE`: the
            effect is performed, and its operation handed the reply at a later step).
        max_faults: how many faults (late replies included) one run may contain, in all.
        nodes: cache nodes (two processes of a service, say) sharing the topology's stores.
    """

    name: str
    operations: tuple[Operation, ...]
    faults: frozenset[str] = frozenset()
    max_faults: int = 0
    nodes: int = 1

    def __post_init__(self) -> None:
        unknown = self.faults - {*STEP_FAULTS, *STATE_FAULTS, LATE}
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}")
        if any(op.node >= self.nodes for op in self.operations):
            raise ValueError(f"scope {self.name}: an operation names a node >= {self.nodes}")

    @property
    def keys(self) -> tuple[str, ...]:
        """The base keys the operations use, in :data:`~model.machine.KEYS` order."""
        used = {k for op in self.operations for k in op.keys}
        return tuple(k for k in KEYS if k in used)

    def describe(self) -> str:
        """One line: operations, nodes and faults."""
        faults = f"{self.max_faults} of {','.join(sorted(self.faults))}" if self.faults else "none"
        ops = ", ".join(map(str, self.operations))
        return f"{ops}; {self.nodes} node(s); faults: {faults}"


Choice = tuple[Hashable, ...]
"""One transition: ``("start", i)``, ``("step", i, outcome)`` or a state fault."""


@dataclass
class Report:
    """What one exploration covered and found."""

    scope: Scope
    topology: str
    variant: str | None
    states: int = 0
    transitions: int = 0
    complete: int = 0
    """States in which every operation has finished (distinct end states)."""
    depth: int = 0
    """The most transitions on any path explored."""
    seconds: float = 0.0
    failure: str | None = None
    path: tuple[Choice, ...] = ()
    """The transitions of the (shortest) counterexample, if one was found."""
    truncated: bool = False
    """The state limit stopped the search before it was exhausted."""
    faults_seen: dict[str, int] = field(default_factory=dict)
    """Transitions that injected each fault (how much of the fault space was visited)."""

    @property
    def ok(self) -> bool:
        """No violation, and the whole scope was explored."""
        return self.failure is None and not self.truncated


class _Explored(CacheModel):
    """The model, with what each operation was handed recorded for the fingerprint."""

    scope: Scope

    def __init__(self) -> None:
        super().__init__()
        self.inputs: dict[int, list[object]] = {}
        """By process id: the effects it performed with their outcomes and replies, and
        what it read of the flights between effects."""
        self.index_of: dict[int, int] = {}
        """Process id -> the scope operation it runs."""
        self.running: dict[int, Proc] = {}
        """Scope operation -> its process, once started (kept after it finishes)."""
        self.leaders: dict[int, int] = {}
        """id(flight) -> the scope operation leading it."""
        self.held: dict[int, list[Flight]] = {}
        """By process id: the flights it joined or leads. A flight is shared state the
        operation holds across effects: its future depends on what the flight holds now,
        even after the flight has landed and left the table of flights in the air."""
        self.faults_used = 0
        self.newest: Proc | None = None
        self.replaying = False
        """Replaying transitions already checked: the stored-entry audit is skipped."""
        self.damaged: dict[bytes, tuple[int, bytes]] = {}
        """Every frame a fault damaged, by its bytes -> where the fault damaged it, and the
        frame it was. Kept after the damaged frame is replaced (by another fault, say):
        an operation may still hold what it read."""
        for node, cache in enumerate(self.topo.nodes):
            flights = cache.core.flights
            if flights is not None:
                flights.join = self._recording_join(node, flights.join)  # type: ignore[method-assign]

    def _recording_join(
        self, node: int, join: Callable[..., tuple[Flight | None, int | None]]
    ) -> Callable[..., tuple[Flight | None, int | None]]:
        def recorded(
            key: str, fence: Version, task: object = None
        ) -> tuple[Flight | None, int | None]:
            flight, joined = join(key, fence, task)
            proc = self.stepping
            assert proc is not None, "a flight is joined only while an operation steps"
            mine = self.index_of[proc.id]
            if flight is not None and joined is None:
                self.leaders[id(flight)] = mine
            leader = None if flight is None else self.leaders.get(id(flight))
            # Only the order of the join against the leader's issue is ever compared.
            before_issue = flight is not None and flight.issued is None
            self.inputs[proc.id].append(("join", node, leader, joined is None, before_issue))
            if flight is not None:
                self.held.setdefault(proc.id, []).append(flight)
            return flight, joined

        return recorded

    def _step(self, proc: Proc, fault: str) -> None:
        effect = self._pending(proc)
        if proc.process.replying:
            self.inputs[proc.id].append(("reply", fault))
        else:
            self.inputs[proc.id].append(("effect", effect.target, effect.op, effect.keys, fault))
        if fault != "ok":
            self.faults_used += 1
        super()._step(proc, fault)

    def _audit(self, store: int, names: list[str]) -> None:
        # Its only other effect is remembering frames for the write-back and swap faults,
        # which the explorer does not inject.
        if not self.replaying:
            super()._audit(store, names)

    def _learn(self, proc: Proc, effect: Effect[object], seen: object) -> None:
        self.inputs[proc.id].append(("seen", seen))
        super()._learn(proc, effect, seen)

    # -- transitions ------------------------------------------------------------------

    def start(self, index: int) -> None:
        """Start the scope's operation ``index``."""
        op = self.scope.operations[index]
        names = [self.topo.spaces[0].prefix + k for k in op.keys]
        if op.kind in READS:
            if len(names) > 1:
                self._batch_set(0, names)
            self._start_read(op.kind, op.node, names, list(names), 0)
        elif op.kind == "fill":
            self.start_fill_of(op.node, names[0], names[0], 0)
        elif op.kind == "batch_fill":
            self._batch_set(0, names)
            self.start_batch_fill_of(op.node, names, list(names), 0)
        elif op.kind == "writer":
            self.start_writer_of(op.node, names[0], names[0], 0)
        else:
            self._invalidate(op.node, names[0], names[0], 0)
        proc = self.newest
        assert proc is not None and proc.id not in self.index_of
        self.running[index] = proc
        self.index_of[proc.id] = index
        self.inputs[proc.id] = []

    def _settle(self, proc: Proc) -> None:
        # Called on every process as it starts (and after each of its steps): the one
        # place that sees an operation that finished without an effect.
        if proc.id not in self.index_of:
            self.newest = proc
        super()._settle(proc)

    def choices(self) -> list[Choice]:
        """Every transition enabled in this state, in a fixed order."""
        found: list[Choice] = [
            ("start", i) for i in range(len(self.scope.operations)) if i not in self.running
        ]
        budget = self.faults_used < self.scope.max_faults
        for index, proc in sorted(self.running.items()):
            if proc.process.done or not self._ready(proc):
                continue
            found.append(("step", index, "ok"))
            pending = proc.process.pending
            if budget and pending is not None and pending.target != "flight":
                if proc.process.replying:
                    # Performed already: the operation is handed its reply, nothing else.
                    continue
                found += [("step", index, f) for f in STEP_FAULTS if f in self.scope.faults]
                if LATE in self.scope.faults:
                    found.append(("step", index, LATE))
        if budget:
            damage = [f for f in ("evict", "corrupt", "foreign") if f in self.scope.faults]
            if damage:
                # Named by role (entry or batch, and its keys): a replay runs in a fresh
                # namespace, so a storage name would not name the same slot there.
                for store in range(self.topo.value_stores()):
                    for slot in sorted(self._slots(), key=repr):
                        if self.topo.raw(store, self._slots()[slot]) is not None:
                            found += [(fault, store, *slot) for fault in damage]
            if "lose_version" in self.scope.faults:
                for key in self.scope.keys:
                    name = self.topo.spaces[0].keys.single(key).version
                    if any(row.get(name) is not None for row in self.current):
                        found.append(("lose_version", key))
            if hasattr(self.topo, "replica"):
                found += [(fault,) for fault in DURABLE if fault in self.scope.faults]
        return found

    def _slots(self) -> dict[tuple[bool, tuple[str, ...]], str]:
        """The main namespace's storage slots by role: (batch?, keys) -> storage name."""
        main = self.topo.spaces[0]
        return {
            (slot.batch, slot.keys): name for name, slot in self.slots.items() if slot.space is main
        }

    def take(self, choice: Choice) -> None:
        """Apply one transition, then the model's after-every-rule checks."""
        kind = choice[0]
        if kind == "start":
            self.start(int(choice[1]))  # type: ignore[call-overload]
        elif kind == "step":
            index, outcome = choice[1], choice[2]
            self._step(self.running[index], str(outcome))  # type: ignore[index]
        elif kind in ("evict", "corrupt", "foreign"):
            store, batch, keys = int(choice[1]), bool(choice[2]), choice[3]  # type: ignore[call-overload]
            assert isinstance(keys, tuple)
            name = self._slots()[(batch, keys)]
            self.faults_used += 1
            if kind == "evict":
                self._fault("evict", f"value store {store} evicts {self._short([name])}")
                self.topo.evict(store, name)
            else:
                data = self.topo.raw(store, name)
                assert data is not None
                # One position: every flipped byte fails the frame's checksum alike.
                pos = len(data) // 2
                self._damage(str(kind), store, name, pos)
                damaged = self.topo.raw(store, name)
                if damaged is not None and damaged != data:
                    self.damaged.setdefault(damaged, (pos, data))
        elif kind == "lose_version":
            self.faults_used += 1
            self.inject_exactly("lose_version", 0, KEYS.index(str(choice[1])), False, 0)
        elif kind in DURABLE:
            self.faults_used += 1
            self.inject_exactly(str(kind), 0, 0, False, 0)
        else:
            raise ValueError(f"unknown transition {choice!r}")
        self.after_every_rule()


class _Canon:
    """Renders model and store state canonically: fences numbered by first appearance."""

    def __init__(self, model: CacheModel) -> None:
        self.fences: dict[bytes, int] = {}
        # Storage names carry a namespace drawn afresh for every run: name them by role.
        self.names: dict[str, Hashable] = {
            name: (
                "batch" if slot.batch else "entry",
                model.topo.spaces.index(slot.space),
                slot.keys,
            )
            for name, slot in model.slots.items()
        }
        self.names.update((name, ("version", key)) for name, key in model.version_of.items())
        # A flipped byte leaves fences and a checksum that no renaming reaches: such bytes
        # are rendered by how they were made, a deterministic function of the position
        # and the frame flipped (a foreign frame decodes, and is rendered as any frame).
        self.damaged: dict[bytes, tuple[int, bytes]] = (
            model.damaged if isinstance(model, _Explored) else {}
        )

    def name(self, name: str) -> Hashable:
        return self.names[name]

    def fence(self, version: Version | None) -> int | None:
        if version is None:
            return None
        raw = version.to_bytes()
        return self.fences.setdefault(raw, len(self.fences))

    def frame(self, data: bytes | None, batch: bool) -> Hashable:
        if data is None:
            return None
        try:
            if batch:
                return tuple((m.key, self.fence(m.fence), m.payload) for m in decode_batch(data))
            stamp, payload = decode_single(data)
            return (self.fence(stamp), payload)
        except WireError:
            return ("undecodable", data)

    def value(self, seen: object) -> Hashable:
        """A reply or result, with every fence renamed."""
        if isinstance(seen, str):
            return self.names.get(seen, seen)
        if seen is None or isinstance(seen, bool | int | float):
            return seen
        if isinstance(seen, Version):
            return ("fence", self.fence(seen))
        if isinstance(seen, bytes):
            for batch in (False, True):
                rendered = self.frame(seen, batch)
                if not (isinstance(rendered, tuple) and rendered[:1] == ("undecodable",)):
                    return ("frame", rendered)
            how = self.damaged.get(seen)
            if how is not None:
                return ("flipped", how[0], self.value(how[1]))
            return ("bytes", seen)
        if isinstance(seen, Row):
            return ("row", seen.key, seen.index)
        if isinstance(seen, Hit):
            return ("hit", self.value(seen.value))
        if isinstance(seen, Flight):
            return (
                "flight",
                self.fence(seen.fence),
                seen.landed,
                seen.loaded,
                self.value(seen.value),
                seen.stored,
                seen.issued is not None,
            )
        if isinstance(seen, BaseException):
            # The protocol branches on an exception's type only.
            return ("raised", type(seen).__name__)
        if isinstance(seen, enum.Enum):
            return ("enum", type(seen).__name__, seen.name)
        if isinstance(seen, tuple | list):
            return (type(seen).__name__, *(self.value(item) for item in seen))
        if isinstance(seen, dict):
            return ("dict", *sorted((str(k), self.value(v)) for k, v in seen.items()))
        if dataclasses.is_dataclass(seen) and not isinstance(seen, type):
            return (
                type(seen).__name__,
                *((f.name, self.value(getattr(seen, f.name))) for f in dataclasses.fields(seen)),
            )
        raise TypeError(f"the fingerprint cannot render {type(seen).__name__}: {seen!r}")


def fingerprint(model: _Explored) -> Hashable:
    """The abstract state of ``model`` (module docstring: what it holds, and why)."""
    canon = _Canon(model)
    fences = tuple(
        tuple(canon.fence(row.get(name)) for name in model.version_names) for row in model.current
    )
    # By role: storage names hold a namespace drawn per run, so their order would vary.
    names = sorted(model.slots, key=lambda name: repr(canon.name(name)))
    stores = []
    for store in range(model.topo.value_stores()):
        held = []
        for name, data in zip(names, model.topo.raw_many(store, names), strict=True):
            if data is not None:
                planted = model.planted.get((store, name)) == data
                batch = model.slots[name].batch
                frame = canon.frame(data, batch)
                how = canon.damaged.get(data)
                if how is not None and frame == ("undecodable", data):
                    frame = ("flipped", how[0], canon.frame(how[1], batch))
                held.append((canon.name(name), frame, planted))
        stores.append(tuple(held))
    # What faults planted, per slot, even where the store no longer holds it: the model
    # excuses an entry equal to what a fault planted there, so a later write of the same
    # bytes is judged by this record.
    plants = tuple(
        sorted(
            (
                (store, canon.name(name), canon.value(data))
                for (store, name), data in model.planted.items()
            ),
            key=repr,
        )
    )
    flights = []
    for node, cache in enumerate(model.topo.nodes):
        table = cache.core.flights
        if table is not None:
            for key, flight in sorted(table._flights.items()):
                flights.append((node, key, model.leaders.get(id(flight)), canon.value(flight)))
    keys = [model.topo.spaces[0].prefix + k for k in KEYS]
    procs: list[Hashable] = []
    for index, proc in sorted(model.running.items()):
        if proc.process.done:
            # Checked when it returned; a finished operation has no future.
            procs.append((index, "done"))
            continue
        op = proc.op
        if op is None:
            started = None
        elif op.kind == "invalidate":
            started = tuple(model.history.committed_before(k, op.invoked) for k in op.keys)
        else:
            started = tuple(model.history.floor(k, op.invoked)[0] for k in op.keys)
        maximal = {m for m in proc.moments if not any(m < other for other in proc.moments)}
        procs.append(
            (
                index,
                tuple(canon.value(item) for item in model.inputs[proc.id]),
                tuple(canon.value(flight) for flight in model.held.get(proc.id, ())),
                started,
                proc.phase,
                tuple(
                    sorted((model.version_of[n], canon.fence(f)) for n, f in proc.observed.items())
                ),
                tuple(sorted(tuple(sorted(model.version_of[n] for n in m)) for m in maximal)),
                proc.saw_current,
                tuple(sorted(model.version_of[n] for n in proc.loading)),
                tuple(sorted(proc.fenced)),
                tuple(sorted(proc.loaded)),
            )
        )
    born = tuple(
        sorted(
            (
                canon.fences[fence.to_bytes()],
                model.version_of[name],
                model.history.committed_before(model.version_of[name], at),
            )
            for (name, fence), at in model.born.items()
            if fence.to_bytes() in canon.fences
        )
    )
    return (
        fences,
        tuple(stores),
        plants,
        _copies(model, canon),
        tuple(flights),
        tuple(model.db.latest[k] for k in keys),
        tuple(model.history.floor(k, model.now)[0] for k in keys),
        tuple(procs),
        born,
        model.faults_used,
        model.outage,
    )


def _copies(model: CacheModel, canon: _Canon) -> Hashable:
    """The lagging copies of the server (replica, or the snapshots a restart may load),
    on the topologies that have them: what a failover or restart would bring back, and
    which queued copy is newer than the one in place (only a newer one is adopted)."""
    topo = model.topo
    replica = getattr(topo, "replica", None)
    if replica is None:
        return None

    def render(copy: dict[str, tuple[bytes, int]]) -> Hashable:
        held: list[Hashable] = []
        # By role, so that fences are numbered in an order the namespace cannot change.
        for role, name in sorted((repr(canon.names.get(n, n)), n) for n in copy):
            data = copy[name][0]  # no TTL is within a scope's reach
            kind = canon.names.get(name)
            if isinstance(kind, tuple) and kind[0] == "version" and len(data) == FENCE_SIZE:
                held.append((role, ("fence", canon.fence(Version(data)))))
            elif isinstance(kind, tuple) and kind[0] in ("entry", "batch"):
                held.append((role, canon.frame(data, kind[0] == "batch")))
            else:
                held.append((role, ("bytes", data)))
        return tuple(held)

    queued = getattr(topo, "lagging", ())
    return (
        render(replica[0]),
        tuple((render(state), number > replica[1]) for state, number in queued),
    )


def machine(scope: Scope, topology: str, core: CoreFactory) -> type[_Explored]:
    """The explored model class for ``scope`` on ``topology`` (fakeredis where it needs
    Redis) with the protocol ``core``."""
    needs_redis = topology not in ("local", "local-store", "per-node-local-versions")
    if scope.faults & set(DURABLE) and topology not in DURABLE_TOPOLOGIES:
        raise ValueError(
            f"scope {scope.name}: {topology} has no replica or snapshot to fall back to"
        )
    factory = build(Target(topology, "fakeredis", scope.nodes), fake_redis if needs_redis else None)
    families = {"step"} if scope.faults & set(STEP_FAULTS) else set()
    families |= {INJECTIONS[fault] for fault in scope.faults & set(STATE_FAULTS)}
    base = machine_for(
        factory,
        core,
        faults=frozenset(families),
        name=f"Explore[{scope.name}]",
        max_keys=len(KEYS),
        swarm=False,
    )
    return type(f"Explore[{scope.name}]", (_Explored, base), {"scope": scope})


def replay(cls: type[_Explored], path: Sequence[Choice], checked: int = 0) -> _Explored:
    """A fresh model with ``path`` applied (a violation raises ``ModelFailure``).

    ``checked``: how many leading transitions were checked when the search first took
    them; the stored-entry audit (the state invariant, provenance, and integrity of what
    is stored) is skipped for those, as it found nothing there. Every other check runs,
    and every bookkeeping step the later checks rely on.
    """
    model = cls()
    try:
        model.configure(nkeys=len(KEYS), kinds=frozenset(), faults=frozenset())
        model.trace[0] = f"  0  scope {model.scope.name}: {model.scope.describe()}"
        for number, choice in enumerate(path):
            model.replaying = number < checked
            model.take(choice)
        model.replaying = False
    except BaseException:
        model.teardown()
        raise
    return model


@dataclass(frozen=True)
class _Broken:
    """A transition that broke a property: the model's report of it."""

    failure: str

    @property
    def prop(self) -> str:
        """The property it broke."""
        return broken_property(self.failure)


def broken_property(failure: str) -> str:
    """The property a model failure report names (its headline reads ``<property>
    violated ...``)."""
    return failure.split(" violated", 1)[0]


Successor = tuple[Choice, "Hashable | _Broken"]


def successors(
    cls: type[_Explored], path: tuple[Choice, ...], stop: bool = True
) -> list[Successor]:
    """Each transition enabled after ``path``, in order, with the fingerprint it leads to
    or the violation it raises (``stop``: none after the first violation, where the
    search stops). Empty when every operation has finished."""
    here = replay(cls, path, len(path))
    choices = here.choices()
    found: list[Successor] = []
    try:
        for number, choice in enumerate(choices):
            # The last transition from here needs no replay: it is taken on the state.
            last = number == len(choices) - 1
            try:
                if last:
                    here.take(choice)
                    after = here
                else:
                    after = replay(cls, (*path, choice), len(path))
            except ModelFailure as failure:
                found.append((choice, _Broken(str(failure))))
                if stop:
                    break
                continue
            found.append((choice, fingerprint(after)))
            if not last:
                after.teardown()
    finally:
        here.teardown()
    return found


_EXPLORED: list[type[_Explored]] = []
"""In a worker process: the explored model class (inherited through ``fork``)."""


def _set_explored(cls: type[_Explored]) -> None:
    _EXPLORED[:] = [cls]


def _successors_in_worker(path: tuple[Choice, ...]) -> list[Successor]:
    return successors(_EXPLORED[0], path)


Expand = Callable[[Sequence[tuple[Choice, ...]]], Iterator[list[Successor]]]


@contextmanager
def _expander(cls: type[_Explored], jobs: int) -> Iterator[Expand]:
    """Successors of many states at once, in order: in this process, or across ``jobs``
    forked workers (each replays its states in its own stores; fakeredis servers too)."""
    if jobs <= 1:
        yield lambda paths: (successors(cls, path) for path in paths)
        return
    # fork: the model class is built at run time and cannot be pickled; it is inherited.
    with multiprocessing.get_context("fork").Pool(jobs, _set_explored, (cls,)) as pool:

        def expand(paths: Sequence[tuple[Choice, ...]]) -> Iterator[list[Successor]]:
            chunk = max(1, min(32, len(paths) // (jobs * 8)))
            return pool.imap(_successors_in_worker, paths, chunk)

        yield expand


def _future(cls: type[_Explored], path: tuple[Choice, ...]) -> list[tuple[Choice, Hashable]]:
    """Each transition enabled after ``path``, with the fingerprint it leads to (or the
    property it breaks)."""
    return [
        (choice, ("violation", after.prop) if isinstance(after, _Broken) else after)
        for choice, after in successors(cls, path, stop=False)
    ]


def _same_futures(
    cls: type[_Explored], kept: tuple[Choice, ...], merged: tuple[Choice, ...]
) -> None:
    """Raise ``AssertionError`` unless the states after ``kept`` and ``merged`` (one
    fingerprint) agree one step further."""
    if _future(cls, kept) != _future(cls, merged):
        raise AssertionError(
            f"unsound merge: {merged} reached the fingerprint of {kept}, but their next "
            "steps differ (the fingerprint leaves out something the future reads)"
        )


def _fault_of(choice: Choice) -> str | None:
    """The fault a transition injects, if any."""
    if choice[0] == "step":
        return None if choice[2] == "ok" else str(choice[2])
    return None if choice[0] == "start" else str(choice[0])


def explore(
    scope: Scope,
    topology: str = "local",
    core: CoreFactory = Core,
    variant: str | None = None,
    max_states: int | None = None,
    verify: bool = False,
    jobs: int = 1,
    progress: Callable[[Report], None] | None = None,
) -> Report:
    """Visit every state of ``scope`` on ``topology`` breadth-first, checking the model's
    properties at each; stop at the first violation (a shortest counterexample).

    ``verify``: check every merge of two paths into one state (module docstring).
    ``jobs``: worker processes expanding each breadth-first level; the results are taken
    in the same order as one process takes them, so the report is the same.
    ``progress``: called with the report so far after each level."""
    cls = machine(scope, topology, core)
    report = Report(scope, topology, variant)
    began = time.perf_counter()
    first = replay(cls, ())
    seen: dict[Hashable, tuple[Choice, ...]] = {fingerprint(first): ()}
    first.teardown()
    level: list[tuple[Choice, ...]] = [()]
    try:
        with _expander(cls, jobs) as expand:
            while level:
                following: list[tuple[Choice, ...]] = []
                for path, found in zip(level, expand(level), strict=True):
                    if not found:
                        report.complete += 1
                    for choice, state in found:
                        report.transitions += 1
                        fault = _fault_of(choice)
                        if fault is not None:
                            report.faults_seen[fault] = report.faults_seen.get(fault, 0) + 1
                        if isinstance(state, _Broken):
                            report.failure = state.failure
                            report.path = (*path, choice)
                            report.depth = len(report.path)
                            return report
                        if verify and state in seen:
                            _same_futures(cls, seen[state], (*path, choice))
                        if state not in seen:
                            seen[state] = (*path, choice)
                            report.depth = max(report.depth, len(path) + 1)
                            following.append((*path, choice))
                            if max_states is not None and len(seen) >= max_states:
                                report.truncated = True
                                return report
                level = following
                if progress is not None:
                    report.states, report.seconds = len(seen), time.perf_counter() - began
                    progress(report)
        return report
    finally:
        report.states = len(seen)
        report.seconds = time.perf_counter() - began


def _ops(*spec: str) -> tuple[Operation, ...]:
    """Operations from ``"kind(keys)@node"`` strings, e.g. ``"get_or_load(a)@1"``."""
    found = []
    for text in spec:
        call, _, node = text.partition("@")
        kind, _, keys = call.rstrip(")").partition("(")
        found.append(Operation(kind, tuple(keys.split(",")), int(node or 0)))
    return tuple(found)


_STEP = frozenset(STEP_FAULTS)
_ALL = frozenset({*STEP_FAULTS, "evict", "corrupt", "foreign", "lose_version"})

SCOPES: tuple[Scope, ...] = (
    Scope("read-write", _ops("get(a)", "writer(a)")),
    Scope("fill-write-read", _ops("fill(a)", "writer(a)", "get(a)")),
    Scope("load-write-read", _ops("get_or_load(a)", "writer(a)", "get(a)")),
    Scope(
        "fill-write-read+loss",
        _ops("fill(a)", "writer(a)", "get(a)"),
        frozenset({"lose_version"}),
        1,
    ),
    Scope("load-write-read+fault", _ops("get_or_load(a)", "writer(a)", "get(a)"), _STEP, 1),
    Scope(
        "load-write-read+damage",
        _ops("get_or_load(a)", "writer(a)", "get(a)"),
        frozenset({"evict", "corrupt", "foreign"}),
        1,
    ),
    Scope("batch-write-read", _ops("batch_fill(a,b)", "writer(b)", "get_many(a,b)")),
    Scope("load-write-load", _ops("get_or_load(a)", "writer(a)", "get_or_load(a)")),
    Scope("two-nodes", _ops("get_or_load(a)@1", "writer(a)@0", "get(a)@1"), nodes=2),
    # A reply on its way: between a leader's load reading the source and its return, or
    # between its store taking effect and its flight landing.
    Scope(
        "load-write-load+late",
        _ops("get_or_load(a)", "writer(a)", "get_or_load(a)"),
        frozenset({LATE}),
        1,
    ),
    # The same with a batch leader: get_many_or_load leads both keys' flights.
    Scope(
        "batch-load-write-load+late",
        _ops("get_many_or_load(a,b)", "writer(a)", "get_or_load(a)"),
        frozenset({LATE}),
        1,
    ),
    # Larger: the audit's (cascache-audit --exhaustive).
    Scope("load-write-read+2", _ops("get_or_load(a)", "writer(a)", "get(a)"), _ALL, 2),
    Scope("batch-write-read+1", _ops("batch_fill(a,b)", "writer(b)", "get_many(a,b)"), _ALL, 1),
    Scope("load-write-load+1", _ops("get_or_load(a)", "writer(a)", "get_or_load(a)"), _ALL, 1),
    # The headline: two fillers (one of each kind), a writer and a reader, two faults.
    Scope(
        "two-fillers-writer-reader+2",
        _ops("fill(a)", "get_or_load(a)", "writer(a)", "get(a)"),
        _ALL,
        2,
    ),
)
"""The scopes the project claims, smallest first (:func:`smallest` tries them in order)."""
CI_SCOPES = tuple(scope.name for scope in SCOPES[:11])
"""The scopes CI checks on every exhaustive topology (``tests/test_explore.py``)."""

TOPOLOGIES = ("local", "local-store", "shared-versions", "redis")
"""The topologies the explorer checks (the Redis ones on fakeredis, a fresh server per run
of a path)."""
IN_PROCESS = ("local", "local-store")
"""The topologies without a server, where every scope of :data:`SCOPES` runs by default."""
DURABLE_TOPOLOGIES = (
    "redis-failover",
    "redis-failover-wait",
    "redis-restart",
    "redis-restart-waitaof",
)
"""The topologies with a lagging copy of the server (:class:`model.topology.RedisFailover`,
:class:`~model.topology.RedisRestart`), where the ``failover`` and ``restart`` faults
apply."""
DURABLE_SCOPES: tuple[Scope, ...] = (
    Scope(
        "fill-write-read+failover",
        _ops("fill(a)", "writer(a)", "get(a)"),
        frozenset({"failover"}),
        1,
    ),
    Scope(
        "fill-write-read+restart", _ops("fill(a)", "writer(a)", "get(a)"), frozenset({"restart"}), 1
    ),
)
"""Scopes with a promotion or a restart; they run only on :data:`DURABLE_TOPOLOGIES`."""
CONTROLS = (
    ("per-node-local-versions", "two-nodes"),
    ("redis-failover", "fill-write-read+failover"),
    ("redis-restart", "fill-write-read+restart"),
)
"""(topology, scope) pairs that must fail (the negative controls): a version store per
node cannot see another node's invalidate (bug-zoo #11); a promoted replica, or a
restart from the last snapshot, brings back a fence an acknowledged invalidate replaced
(``specs/assumptions.md``). The explorer has to find each stale read."""
MITIGATIONS = (
    ("redis-failover-wait", "fill-write-read+failover"),
    ("redis-restart-waitaof", "fill-write-read+restart"),
)
"""The same faults with their mitigation (every invalidate waits until the replica, or
the disk, has it): these must hold."""
ALL_SCOPES = {scope.name: scope for scope in (*SCOPES, *DURABLE_SCOPES)}
"""Every scope by name."""


def command(topology: str, scope: str, variant: str | None = None) -> str:
    """The command line that reproduces one row."""
    chosen = f" --variant {variant}" if variant else ""
    return f"cascache-audit --exhaustive --topology {topology} --scope {scope}{chosen}"


HEADER = (
    "| topology | scope | faults | states | transitions | end states | depth | seconds "
    "| result |\n|---|---|---|---:|---:|---:|---:|---:|---|"
)


def row(report: Report, expected_to_fail: bool = False) -> str:
    """One table row for ``report``."""
    scope = report.scope
    faults = f"{scope.max_faults} of {','.join(sorted(scope.faults))}" if scope.faults else "-"
    if report.failure is not None:
        prop = broken_property(report.failure)
        verdict = f"{prop} in {len(report.path)} steps" + (
            " (expected)" if expected_to_fail else " UNEXPECTED"
        )
    elif report.truncated:
        verdict = "stopped at the state limit"
    else:
        verdict = "no violation" + (" (control NOT caught)" if expected_to_fail else "")
    return (
        f"| {report.topology} | {scope.name} | {faults} | {report.states:,} | "
        f"{report.transitions:,} | {report.complete:,} | {report.depth} | "
        f"{report.seconds:.1f} | {verdict} |"
    )


def _show(report: Report) -> None:
    """A level done, on standard error, once a scope has run ten seconds (the larger
    scopes take minutes)."""
    if report.seconds < 10:
        return
    print(
        f"  {report.topology} {report.scope.name}: depth {report.depth}, "
        f"{report.states:,} states, {report.transitions:,} transitions, "
        f"{report.seconds:.0f}s",
        file=sys.stderr,
        flush=True,
    )


def smallest(
    variant: str,
    topology: str,
    core: CoreFactory,
    max_states: int | None = None,
    scopes: Sequence[Scope] = SCOPES,
    jobs: int = 1,
) -> Report:
    """The first of ``scopes`` (smallest first) in which ``variant`` is caught on
    ``topology`` (the last report, uncaught, if none catches it)."""
    report = None
    for scope in scopes:
        report = explore(scope, topology, core, variant, max_states, jobs=jobs)
        if report.failure is not None:
            break
    assert report is not None
    return report


def audit(
    topologies: Sequence[str],
    scopes: Sequence[str],
    variants: Sequence[str],
    max_states: int | None = None,
    jobs: int = 1,
) -> int:
    """``cascache-audit --exhaustive``: every scope on every topology (and the controls),
    or for each variant the smallest scope that catches it; prints a table and each
    counterexample. Returns the exit status (0: every result as expected)."""
    from .zoo import VARIANTS

    began = time.perf_counter()
    chosen = [s for s in ALL_SCOPES.values() if s.name in scopes] if scopes else list(SCOPES)
    bad: list[str] = []
    shown: list[tuple[str, Report]] = []
    # Each row as soon as it is known: the larger scopes take minutes each.
    print("| variant " + HEADER.replace("\n|", "\n|---|", 1) if variants else HEADER, flush=True)
    if variants:
        for name in variants:
            found = VARIANTS[name]
            for topology in [t for t in found.topologies if t in topologies]:
                report = smallest(name, topology, found.core, max_states, chosen, jobs)
                print(f"| #{found.number} {name} " + row(report, True), flush=True)
                shown.append((command(topology, report.scope.name, name), report))
                if report.failure is None:
                    bad.append(f"{name} on {topology}: not caught")
    else:
        pairs = [
            (t, s)
            for t in topologies
            if t in TOPOLOGIES
            for s in chosen
            # By default the larger scopes run in process only: on fakeredis each replayed
            # path starts a server, about five times the cost (name a scope to run it).
            if s not in DURABLE_SCOPES and (scopes or t in IN_PROCESS or s.name in CI_SCOPES)
        ]
        for t, name in (*CONTROLS, *MITIGATIONS):
            if t in topologies and (not scopes or name in scopes):
                pairs.append((t, ALL_SCOPES[name]))
        for topology, scope in pairs:
            expected = (topology, scope.name) in CONTROLS
            report = explore(scope, topology, Core, None, max_states, jobs=jobs, progress=_show)
            print(row(report, expected), flush=True)
            shown.append((command(topology, scope.name), report))
            if (report.failure is not None) != expected or report.truncated:
                bad.append(f"{topology} {scope.name}: {row(report, expected).split('|')[-2]}")
    if not shown:
        print(
            "exhaustive: nothing to check: no scope matches these options (a variant on a "
            "topology it does not apply to, or a scope not checked on that topology?)"
        )
        return 2
    for reproduce, report in shown:
        if report.failure is not None:
            print(f"\n--- {report.topology} {report.scope.name}: {report.scope.describe()}")
            print(report.failure)
            print(f"replay: {reproduce}")
    seconds = time.perf_counter() - began
    print()
    print(
        f"exhaustive: OK in {seconds:.0f}s"
        if not bad
        else f"exhaustive: {len(bad)} unexpected result(s) in {seconds:.0f}s: " + "; ".join(bad)
    )
    return 1 if bad else 0
