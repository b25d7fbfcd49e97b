"""The interleaving model: concurrent readers, fillers, writers and invalidators as rules.

Each rule either starts a process (a public operation of the *production* protocol code,
wrapped in a :class:`cascache.effects.Process`), advances one in-flight process by exactly
one effect (optionally failing it, applying it and failing the reply, or applying it and
handing the operation its reply at a later step: a *late reply*, so other processes take
effect between an effect and the code after it), or injects a fault into the stores.
Hypothesis chooses the rules, so it chooses the interleaving, and shrinks a failure to a
short one.

The model never re-implements the protocol: it learns what an operation did by watching
the effects the operation yields (which fence a snapshot returned, which keys a version
read covered, which keys the source handed out, whether a write reported stored).

Checked (DESIGN §4), each a named property in the failure message:

* **FRESH** and **integrity**, on every completed read (``get``, ``get_many``,
  ``get_or_load``, ``get_many_or_load``, coalesced callers included: a fill that met
  another's load in the air waits for it as one effect, and the rules step only
  processes that can move), by the history checker; integrity also refuses
  a result keyed by anything but the plain ``str`` of a requested key, and a stored entry
  (not planted by a fault) that holds another key's row or an undecodable payload.
* **fail-closed**, on every completed read: a key served from the cache (not loaded from
  the source by the same call) had its current fence delivered to the call by a version
  read that succeeded. A failed or lost version reply serves nothing for its keys.
* **State invariant**, after every write effect and every rule: a stored single entry or
  batch member whose stamp is its key's current fence holds an index >= the key's floor.
* **Provenance**, after every write effect and every rule: an entry or batch member
  stamped with fence f holds a row loaded while f was already current. The model records
  when each fence was first current (it reads every fence after every effect); a row
  loaded after that time has an index >= the index committed then, so a lower index
  means the value was loaded before its stamp existed.
* **Write contract**, at every write effect of every operation that stores (``fill``,
  ``batch_fill``, ``get_or_load``, ``get_many_or_load``): a write that stored, after the
  operation loaded the source, comes after some effect before which every fence the
  operation had snapshotted for the keys that write stores was current at once (a batch
  fill that follows some keys' flights stores only the others); and a fill that
  *reports* stored saw every fence it snapshotted current at once.
* **Liveness**: with nothing else running, a fill followed by a get hits (and the same for
  a batch fill followed by ``get_many``).

The search is aimed where bugs hide, without narrowing what may happen: reads may aim at
keys whose entries a store holds, writers at keys an operation is working on; a read
starts right after each fault, of what the fault left in a store; a dedicated rule fails
the pending effect of a read that is meeting an entry it must not serve, or deleting one
it refused; and a ``writeback`` may land the frame a slow filler could still write (an
earlier fence, a row below the floor). A read started this way is an ordinary process:
every other rule may still interleave with it.

Keys are drawn per operation as the plain ``str`` or as another spelling equal to it (a
``str``-mixin enum member, a ``str`` subclass whose ``str()`` and ``format()`` lie), so a
library that does not reduce keys to one plain string at its boundary is caught. Every
topology also has an alias node whose namespace collides with the main one under naive
joining (:mod:`model.topology`); integrity sees a row of the wrong key if names collide.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, NoReturn

from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from cascache.batch import Core
from cascache.core import Refusal
from cascache.effects import Effect, Process, Step, perform
from cascache.errors import WireError
from cascache.fence import Version
from cascache.hooks import Hooks, fan_out
from cascache.results import BatchWriteResult, Hit, VersionedValue, WriteResult
from cascache.wire import Member, decode_batch, decode_single, encode_batch, encode_single

from .coverage import READ_OPERATIONS, Coverage, member_refusals, path_of, refusal_of
from .history import History, Op, Violation
from .oracle import ROW_CODEC, Database, KeyName, LyingKey, Row, plain, spell
from .topology import CoreFactory, Space, Topology

KEYS = ("a", "b", "c")
"""The base keys; the alias namespace uses them with the prefix ``x:``."""
MAX_PROCS = 4
FAULTS = frozenset(
    {
        "step",
        "evict",
        "corrupt",
        "lose_version",
        "clock",
        "failover",
        "restart",
        "outage",
        "writeback",
        "cancel",
    }
)
"""Every fault family the model knows; a machine enables a subset."""

CANCELS = {"cancel": "fail", "cancel-applied": "applied"}
"""Cancellation outcomes of an effect, and the effect outcome each is (for coverage): the
operation sees ``CancelledError``, which no ``except Exception`` in the protocol catches,
so it stops at that effect."""

SNAPSHOTS = frozenset({"snapshot", "snapshot_many"})
"""Version-store effects that return the fences a filler will write under."""
VERSION_READS = frozenset({"current", "current_many", "snapshot", "snapshot_many"})
"""Version-store effects whose reply carries the current fence of every key they touch."""
BOTH_READS = frozenset({"read", "read_many", "read_batch"})
"""One-server effects (values and versions together) whose reply carries fences."""
WRITES = {("values", "set"), ("values", "add"), ("redis", "write_if_version")}
"""(target, op) of the effects that store an entry; each returns whether it stored."""

EFFECTS = frozenset(
    {
        *(("versions", op) for op in VERSION_READS | {"advance"}),
        *(("redis", op) for op in BOTH_READS | {"invalidate"}),
        *WRITES,
        *(("values", op) for op in ("get", "get_many", "delete", "delete_many")),
        ("source", "load"),
        ("source", "load_many"),
        ("flight", "wait"),
    }
)
"""Every (target, op) the model knows how to read. An effect outside it is a violation
("effect vocabulary"): the checks above classify effects by these labels, so a renamed or
new effect would otherwise escape the write contract, provenance and fail-closed."""


class FaultInjected(ConnectionError):
    """The error an injected store failure raises into the operation."""


def single_fence(effect: Effect[object], seen: object) -> Version | None:
    """The current fence a one-key read effect delivered (``versions.current``, or the
    fence half of ``redis.read``), or ``None``."""
    if (effect.target, effect.op) == ("versions", "current"):
        return seen if isinstance(seen, Version) else None
    if (effect.target, effect.op) == ("redis", "read") and isinstance(seen, tuple):
        fence = seen[1]
        return fence if isinstance(fence, Version) else None
    return None


@dataclass
class Proc:
    """One in-flight operation, and what the model learnt from its effects so far.

    ``phase`` turns from ``"read"`` to ``"write"`` when the operation loads the source;
    ``observed`` maps a version storage name to the fence a snapshot (or a one-key read)
    returned before that;
    ``fenced`` holds the keys whose current fence a version read delivered; ``loaded`` the
    keys the source handed out to it (noted by the model's loader, whatever key the
    library passed).
    """

    id: int
    label: str
    node: int
    keys: tuple[str, ...]
    process: Process[object]
    op: Op | None = None
    phase: str = "read"
    observed: dict[str, Version] = field(default_factory=dict)
    saw_current: bool = False
    loading: set[str] = field(default_factory=set)
    """The version names of the keys the operation has asked the source for."""
    moments: list[frozenset[str]] = field(default_factory=list)
    """Before each effect since the operation loaded the source: which of its snapshotted
    fences were current (the write contract asks for every fence of what a write stores
    at one moment)."""
    fenced: set[str] = field(default_factory=set)
    loaded: set[str] = field(default_factory=set)


class ModelFailure(AssertionError):
    """A property broke; the message holds the property and the numbered trace."""


def fill(core: Core[Row], key: str, load: Callable[[], Row]) -> Step[WriteResult]:
    """The read-miss fill path of the seed, composed from the production steps."""
    version = yield from core.snapshot_version(key)
    row = yield from perform(Effect("source", "load", (key,), load))
    return (yield from core.set_if_version(key, row, version, None))


def batch_fill(
    core: Core[Row], keys: Sequence[str], load: Callable[[], Mapping[str, Row]]
) -> Step[BatchWriteResult]:
    """The batch fill path of the seed: snapshot_versions, load, set_if_versions."""
    versions = yield from core.snapshot_versions(keys)
    rows = yield from perform(Effect("source", "load", tuple(keys), load))
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
    "get_many_or_load",
    "quiet",
    "inject",
    "alias",
)
"""The rule families an example may enable (swarm testing: each example enables a subset,
which makes the rare combinations a race needs far more likely than uniform choice).
``alias`` puts the alias node (a second namespace over the same stores) in play."""


def coins(names: Sequence[str]) -> st.SearchStrategy[frozenset[str]]:
    """A subset of ``names``, each one in or out by its own coin flip.

    Swarm testing wants every combination of families about equally likely; a set
    strategy favours small sets, which made an example with, say, writes, fills, injected
    faults and failover all enabled at once a rarity."""
    return st.tuples(*(st.booleans() for _ in names)).map(
        lambda flags: frozenset(n for n, on in zip(names, flags, strict=True) if on)
    )


WIDE = st.integers(0, 2**16 - 1)
"""Choices are drawn wide and folded modulo what is in play (nodes, keys, processes):
Hypothesis favours small values, which would otherwise make "the first key, the first node,
the oldest process" far likelier than the rest, and hide every race on the others."""

node_ids = WIDE
keys_st = WIDE
"""A drawn key number picks the key (modulo the keys in play) and its spelling."""
outcomes = st.sampled_from(["ok", "ok", "ok", "fail", "applied"])
"""How an effect ends: performed, failed (not applied), or applied with the reply lost."""
LATE = "late"
"""An effect performed now whose reply reaches its operation at a later step of it: other
operations take effect in between (a slow reply; a loader that returns a while after it
read the source; a store that took effect before its caller records it)."""
INJECTIONS = {
    "evict": "evict",
    "corrupt": "corrupt",
    "swap": "corrupt",
    "splice": "corrupt",
    "foreign": "corrupt",
    "writeback": "writeback",
    "lose_version": "lose_version",
    "garble_version": "lose_version",
    "lose_all_versions": "lose_version",
    "outage": "outage",
    "tick": "clock",
    "replicate": "failover",
    "failover": "failover",
    "save": "restart",
    "restart": "restart",
}
"""Store faults by kind, with the fault family that enables each."""
aheads = st.integers(0, 3)
"""How many effects a new process runs at once (shortens the rule sequence a race needs)."""
key_sets = st.tuples(WIDE, WIDE)
"""(size, order): folded into an ordered subset of at least two of the keys in play."""
GARBLES = ("7 bytes", "an empty string", "a list", "a hash")
"""What a ``garble_version`` fault leaves at a version key: anything but a fence."""
REMEMBERED = 6
"""Frames remembered per storage slot, for the ``writeback`` and ``corrupt`` faults."""
FOREIGN = b'{"not": "a row"}'
"""A well-formed JSON payload the model's row codec refuses (another schema)."""


@dataclass
class Tally:
    """Counts across every example a machine class ran."""

    examples: int = 0
    effects: int = 0
    faults: int = 0
    first_failure: int | None = None


@dataclass(frozen=True)
class Slot:
    """What a storage name holds: a single entry of ``keys[0]`` or a batch of ``keys``."""

    space: Space
    batch: bool
    keys: tuple[str, ...]


class CacheModel(RuleBasedStateMachine):
    """The model over one topology. Subclass with :func:`machine_for`."""

    build: ClassVar[Callable[[CoreFactory], Topology]]
    core: ClassVar[CoreFactory] = Core
    faults: ClassVar[frozenset[str]] = FAULTS
    kinds_allowed: ClassVar[frozenset[str]] = frozenset(KINDS)
    """The rule families examples may draw from (a targeted run narrows them)."""
    max_keys: ClassVar[int] = len(KEYS)
    swarm: ClassVar[bool] = True
    """Each example enables a random subset of the allowed families (off: all of them)."""
    tally: ClassVar[Tally] = Tally()
    coverage: ClassVar[Coverage] = Coverage()

    def __init__(self) -> None:
        super().__init__()
        self.topo = type(self).build(type(self).core)
        for cache in self.topo.nodes:
            # The library's own reports of what it refused to serve, for the coverage.
            cache.core.hooks = fan_out(cache.core.hooks, _Refusals(self))
        spaces = self.topo.spaces
        self.db = Database(space.prefix + key for space in spaces for key in KEYS)
        self.history = History(self.db.commits)
        self.now = 1
        self.ids = itertools.count(1)
        self.procs: list[Proc] = []
        self.trace: list[str] = []
        self.stats = {"effects": 0, "faults": 0}
        self.kinds: frozenset[str] = frozenset(KINDS)
        self.active = type(self).faults
        self.nkeys = len(KEYS)
        self.outage = 0
        """Rules left in the current version-store outage."""
        self.stepping: Proc | None = None
        """The process whose effect runs now (the source notes what it hands out to it)."""
        # Storage names: what each holds, and which key each version name belongs to.
        self.slots: dict[str, Slot] = {}
        self.version_of: dict[str, str] = {}
        self.version_names: list[str] = []
        for space in spaces:
            for base in KEYS:
                ck = space.keys.single(space.prefix + base)
                self.slots[ck.value] = Slot(space, False, (ck.key,))
                self.version_of[ck.version] = ck.key
                self.version_names.append(ck.version)
        self.batch_sets: set[tuple[int, tuple[str, ...]]] = set()
        # What the stores held: fences as each node sees them, when each fence was first
        # current, frames seen per slot, and frames a fault put there.
        self.current: list[dict[str, Version | None]] = []
        self.born: dict[tuple[str, Version], int] = {}
        self.frames: dict[tuple[int, str], list[bytes]] = {}
        self.planted: dict[tuple[int, str], bytes] = {}
        self.touched: tuple[int, str] | None = None
        """Where the last fault put bytes a reader must refuse (value store, name)."""
        self._refresh(0)

    def teardown(self) -> None:
        tally = type(self).tally
        tally.examples += 1
        tally.effects += self.stats["effects"]
        tally.faults += self.stats["faults"]
        self.topo.close()

    @initialize(
        nkeys=st.integers(1, len(KEYS)),
        kinds=coins(KINDS),
        faults=coins(sorted(FAULTS)),
    )
    def configure(self, nkeys: int, kinds: frozenset[str], faults: frozenset[str]) -> None:
        """Choose which keys, rule families and faults this example uses."""
        allowed = type(self).kinds_allowed
        self.nkeys = min(nkeys, type(self).max_keys)
        if type(self).swarm:
            chosen = kinds & allowed
            self.kinds = chosen if len(chosen) > 1 else allowed
            self.active = type(self).faults & frozenset(faults)
        else:
            # A focused run uses all it was given (batch rules need two keys).
            self.kinds, self.active = allowed, type(self).faults
            self.nkeys = type(self).max_keys
        self.trace.append(
            f"  0  example uses keys {','.join(KEYS[: self.nkeys])}; "
            f"rules {','.join(sorted(self.kinds))}; "
            f"faults {','.join(sorted(self.active)) or 'none'}"
        )

    def on(self, kind: str) -> bool:
        """Whether rule family ``kind`` is enabled and a process slot is free."""
        return kind in self.kinds and len(self.procs) < MAX_PROCS

    # -- choosing nodes and keys ----------------------------------------------------------

    def _node(self, drawn: int) -> int:
        """Fold a drawn number into a node in play (the alias node only with ``alias``)."""
        return drawn % (self.topo.main_nodes + ("alias" in self.kinds))

    def key(self, node: int, drawn: int) -> tuple[str, str]:
        """Fold a drawn number into a key in play on ``node``: (plain key, as spelt)."""
        name = self.topo.space_of(node).prefix + KEYS[drawn % self.nkeys]
        return name, spell(name, drawn // len(KEYS))

    def key_set(self, node: int, drawn: tuple[int, int]) -> tuple[tuple[str, ...], list[str]]:
        """Fold two drawn numbers into an ordered set of at least two keys in play on
        ``node``: (plain keys, as spelt, one spelling per member)."""
        size, order = drawn
        orders = list(itertools.permutations(KEYS[: self.nkeys]))
        prefix = self.topo.space_of(node).prefix
        names = tuple(
            prefix + k for k in orders[order % len(orders)][: 2 + size % (self.nkeys - 1)]
        )
        spelt = [spell(name, size >> (4 + 2 * i)) for i, name in enumerate(names)]
        space = self.topo.spaces.index(self.topo.space_of(node))
        self._batch_set(space, names)
        return names, spelt

    def stored_set(
        self, node: int, drawn: tuple[int, int], aim: bool
    ) -> tuple[int, tuple[str, ...], list[str]]:
        """(node, plain keys, as spelt) for a batch read: with ``aim``, the member set of a
        batch entry some value store holds, on a node that reads that store; else as
        :meth:`key_set` folds ``drawn`` on the drawn node.

        A batch entry is served only to a read of exactly its member set, on a node that
        reads the store holding it; drawn uniformly, that is a long shot."""
        size, order = drawn
        at = self._node(node)
        if aim:
            held = self._held(batch=True)
            if held:
                at, slot = held[order % len(held)]
                orders = list(itertools.permutations(slot.keys))
                names = orders[size % len(orders)]
                return at, names, [spell(n, order >> (4 + 2 * i)) for i, n in enumerate(names)]
        return (at, *self.key_set(at, drawn))

    def stored_key(self, node: int, drawn: int, aim: bool) -> tuple[int, str, str]:
        """(node, plain key, as spelt) for a single-key read: with ``aim``, a key whose
        single entry some value store holds, on a node that reads that store; else as
        :meth:`key` folds ``drawn`` on the drawn node.

        Refusals (stale, lost, corrupt, undecodable) and hazards happen only where a read
        meets a stored entry; drawn uniformly, most reads meet an empty slot."""
        at = self._node(node)
        if aim:
            held = self._held(batch=False)
            if held:
                at, slot = held[drawn % len(held)]
                return at, slot.keys[0], spell(slot.keys[0], drawn // 7)
        return (at, *self.key(at, drawn))

    def _held(self, batch: bool) -> list[tuple[int, Slot]]:
        """(node, slot) for every batch (or single) entry a value store holds, paired with
        each node in play that reads that store and serves that slot's namespace."""
        return [
            (reader, slot)
            for name, slot in self.slots.items()
            if slot.batch == batch
            for store in range(self.topo.value_stores())
            for reader in self.topo.readers(store)
            if reader in slot.space.nodes
            and self._node(reader) == reader
            and self.topo.raw(store, name) is not None
        ]

    def _batch_set(self, space: int, names: Sequence[str]) -> None:
        members = tuple(sorted(names))
        if (space, members) not in self.batch_sets:
            self.batch_sets.add((space, members))
            where = self.topo.spaces[space]
            self.slots[where.keys.batch(members)] = Slot(where, True, members)

    # -- processes ----------------------------------------------------------------------

    def _start(
        self,
        label: str,
        node: int,
        keys: Sequence[str],
        spelt: Sequence[str],
        make: Callable[[], Step[object]],
        record: bool = False,
        ahead: int = 0,
    ) -> None:
        op = self.history.invoke(label, node, keys, self.now) if record else None
        proc = Proc(
            next(self.ids),
            label,
            node,
            tuple(keys),
            Process(make(), self.topo.settle if self.topo.asynchronous else None),
            op,
        )
        self.trace.append(
            f"{self.now:>3}  p{proc.id} n{node} starts {label}({','.join(map(_spelling, spelt))})"
        )
        self.now += 1
        self.procs.append(proc)
        self._settle(proc)
        self._run_ahead(proc, ahead)

    def _run_ahead(self, proc: Proc, steps: int) -> None:
        """Step ``proc`` by up to ``steps`` effects, all performed, while it can move."""
        for _ in range(steps):
            # A read's cleanup of an entry it refused is left for a rule to step (and
            # maybe fail): its error handling is where a careless ``except`` would hide.
            if proc.process.done or self._cleaning(proc) or not self._ready(proc):
                break
            self._step(proc, "ok")

    @precondition(lambda self: self.on("get"))
    @rule(node=node_ids, key=keys_st, ahead=aheads, aim=st.booleans())
    def start_get(self, node: int, key: int, ahead: int, aim: bool = False) -> None:
        """A reader calls ``get`` (with ``aim``, of a key whose entry a store holds)."""
        at, name, spelt = self.stored_key(node, key, aim)
        self._start_read("get", at, [name], [spelt], ahead)

    @precondition(lambda self: self.on("fill"))
    @rule(node=node_ids, key=keys_st, ahead=aheads)
    def start_fill(self, node: int, key: int, ahead: int) -> None:
        """A reader that missed fills: snapshot, load the source, conditional store."""
        at = self._node(node)
        self.start_fill_of(at, *self.key(at, key), ahead)

    def start_fill_of(self, at: int, name: str, spelt: str, ahead: int) -> None:
        """Start a ``fill`` of ``name`` (spelt ``spelt``) on node ``at``."""
        core = self.topo.nodes[at].core
        load = self._loader(name)
        self._start("fill", at, [name], [spelt], lambda: fill(core, spelt, load), ahead=ahead)

    @precondition(lambda self: self.on("get_or_load"))
    @rule(node=node_ids, key=keys_st, ahead=aheads, aim=st.booleans())
    def start_get_or_load(self, node: int, key: int, ahead: int, aim: bool = False) -> None:
        """A reader uses ``get_or_load`` (get, else snapshot, load, conditional store; with
        ``aim``, of a key whose entry a store holds)."""
        at, name, spelt = self.stored_key(node, key, aim)
        self._start_read("get_or_load", at, [name], [spelt], ahead)

    def _leading(self) -> list[tuple[Proc, str]]:
        """Each filling process (``get_or_load``, ``get_many_or_load``) with a key whose
        flight is in the air on its node."""
        found = []
        for proc in self.procs:
            flights = self.topo.nodes[proc.node].core.flights
            if proc.label in ("get_or_load", "get_many_or_load") and flights is not None:
                found += [(proc, key) for key in proc.keys if flights.in_air(plain(key))]
        return found

    def _join(self, node: int, name: str, pick: int, ahead: int) -> None:
        """Start a fill of ``name`` on ``node``: ``get_or_load``, or ``get_many_or_load``
        of it and one more key."""
        space = self.topo.space_of(node)
        others = [f"{space.prefix}{k}" for k in KEYS[: self.nkeys] if f"{space.prefix}{k}" != name]
        if pick % 3 == 0 and others:
            names = [name, others[pick // 3 % len(others)]]
            spelt = [spell(n, pick // 7) for n in names]
            self._start_read("get_many_or_load", node, names, spelt, ahead)
        else:
            self._start_read("get_or_load", node, [name], [spell(name, pick // 7)], ahead)

    @precondition(lambda self: self.on("get_or_load") and bool(self._leading()))
    @rule(pick=WIDE, ahead=aheads)
    def join_a_flight(self, pick: int, ahead: int) -> None:
        """A reader fills a key whose load is in the air on its node, so it meets that
        flight (coalescing, DESIGN §3.9)."""
        loading = self._leading()
        # A flight that has loaded already is where joining can go wrong: its value may
        # predate an invalidate that returned before this reader starts; above all one
        # whose fence an invalidate has replaced since it was taken.
        loaded = [(p, k) for p, k in loading if p.phase == "write"]
        stale = [(p, k) for p, k in loaded if not self._observed_current(p)]
        pool = (stale or loaded) if loaded and pick % 4 else loading
        target, name = pool[pick % len(pool)]
        self._join(target.node, name, pick, ahead)

    @precondition(
        lambda self: self.on("writer") and self.on("get_or_load") and bool(self._loads_in_the_air())
    )
    @rule(pick=WIDE, store_first=st.booleans(), land=st.booleans())
    def write_under_a_flight(self, pick: int, store_first: bool, land: bool) -> None:
        """While a load is in the air (loaded, not yet stored), a writer commits and
        invalidates its key, and then a reader meets the flight: the one order in which
        joining without proof hands out a stale value (DESIGN §3.9). A leader about to
        load reads the source first, with the reply on its way (it has not returned yet);
        with ``store_first``, the leader first goes on to its store, which takes effect
        the same way (its flight has not landed yet). With ``land``, the leader then runs
        on until its flight lands, and the reader to its response: a race left in the air
        when the example's rules run out is never judged.
        Each is an ordinary process; the rules may still interleave anything with them."""
        loaded = self._loads_in_the_air()
        target, name = loaded[pick % len(loaded)]
        if store_first:
            # Up to its store (the generic path reads the fence first), which then takes
            # effect with the reply on its way.
            for _ in range(3):
                if target.process.done or target.process.replying or not self._ready(target):
                    break
                effect = self._pending(target)
                self._step(target, LATE if (effect.target, effect.op) in WRITES else "ok")
        elif not target.process.replying and self._pending(target).target == "source":
            self._step(target, LATE)
        self.start_writer_of(target.node, name, spell(name, pick // 3), ahead=2)
        before = {proc.id for proc in self.procs}
        self._join(target.node, name, pick, ahead=3)
        if not land:
            return
        joined = [proc for proc in self.procs if proc.id not in before]
        flights = self.topo.nodes[target.node].core.flights
        for _ in range(4):
            if target.process.done or flights is None or not self._ready(target):
                break
            if not flights.in_air(plain(name)):  # landed
                break
            self._step(target, "ok")
        for reader in joined:
            self._run_ahead(reader, 6)

    def _loads_in_the_air(self) -> list[tuple[Proc, str]]:
        """:meth:`_leading`'s leaders that have loaded their key, or are about to."""
        return [
            (proc, key)
            for proc, key in self._leading()
            if proc.phase == "write" or self._pending(proc).target == "source"
        ]

    @precondition(lambda self: self.on("writer"))
    @rule(node=node_ids, key=keys_st, ahead=aheads, aim=st.booleans())
    def start_writer(self, node: int, key: int, ahead: int, aim: bool = False) -> None:
        """The seed's write path: commit to the source, then call ``invalidate`` (with
        ``aim``, of a key an in-flight operation is working on: see :meth:`aimed`)."""
        self.start_writer_of(*self.aimed(node, key, aim), ahead)

    def start_writer_of(self, at: int, name: str, spelt: str, ahead: int) -> None:
        """Commit a write of ``name`` to the source, then start its ``invalidate`` on node
        ``at``."""
        index = self.db.write(name, self.now)
        self.history.commit(self.now, name, index)
        self.trace.append(f"{self.now:>3}  source commits {name}@{index}")
        self.now += 1
        self._invalidate(at, name, spelt, ahead)

    @precondition(lambda self: self.on("invalidate"))
    @rule(node=node_ids, key=keys_st, ahead=aheads, aim=st.booleans())
    def start_invalidate(self, node: int, key: int, ahead: int, aim: bool = False) -> None:
        """An ``invalidate`` with no new commit before it (a retry, or a cautious writer)."""
        self._invalidate(*self.aimed(node, key, aim), ahead)

    def aimed(self, node: int, drawn: int, aim: bool) -> tuple[int, str, str]:
        """(node, plain key, as spelt) for a writer: with ``aim``, a key of an in-flight
        operation (on a node of its namespace), else as :meth:`key` folds ``drawn``.

        A race needs the write and the operation on one key; drawn uniformly, the two
        share a key only one time in (keys in play x namespaces in play)."""
        at = self._node(node)
        if not aim or not self.procs:
            return (at, *self.key(at, drawn))
        target = self.procs[drawn % len(self.procs)]
        if target.node == self.topo.alias or at == self.topo.alias:
            at = target.node
        name = target.keys[drawn // 8 % len(target.keys)]
        return at, name, spell(name, drawn // 3)

    def _invalidate(self, node: int, name: str, spelt: str, ahead: int) -> None:
        core = self.topo.nodes[node].core
        self._start(
            "invalidate", node, [name], [spelt], lambda: core.invalidate(spelt), True, ahead
        )

    @precondition(lambda self: self.on("get_many") and self.nkeys > 1)
    @rule(node=node_ids, keys=key_sets, ahead=aheads, aim=st.booleans())
    def start_get_many(
        self, node: int, keys: tuple[int, int], ahead: int, aim: bool = False
    ) -> None:
        """A reader calls ``get_many`` (with ``aim``, of a stored batch: :meth:`stored_set`)."""
        at, names, spelt = self.stored_set(node, keys, aim)
        self._start_read("get_many", at, names, spelt, ahead)

    @precondition(lambda self: self.on("batch_fill") and self.nkeys > 1)
    @rule(node=node_ids, keys=key_sets, ahead=aheads)
    def start_batch_fill(self, node: int, keys: tuple[int, int], ahead: int) -> None:
        """A reader fills several keys: snapshot_versions, load, set_if_versions."""
        at = self._node(node)
        self.start_batch_fill_of(at, *self.key_set(at, keys), ahead)

    def start_batch_fill_of(
        self, at: int, names: Sequence[str], spelt: Sequence[str], ahead: int
    ) -> None:
        """Start a ``batch_fill`` of ``names`` (spelt ``spelt``) on node ``at``."""
        core = self.topo.nodes[at].core
        load = self._batch_loader(spelt)
        self._start(
            "batch_fill", at, names, spelt, lambda: batch_fill(core, spelt, load), ahead=ahead
        )

    @precondition(lambda self: self.on("get_many_or_load") and self.nkeys > 1)
    @rule(node=node_ids, keys=key_sets, ahead=aheads, aim=st.booleans())
    def start_get_many_or_load(
        self, node: int, keys: tuple[int, int], ahead: int, aim: bool = False
    ) -> None:
        """A reader uses ``get_many_or_load`` (get_many, then snapshot, load and store the
        keys that missed; with ``aim``, of a stored batch: :meth:`stored_set`)."""
        at, names, spelt = self.stored_set(node, keys, aim)
        self._start_read("get_many_or_load", at, names, spelt, ahead)

    def _start_read(
        self, kind: str, at: int, names: Sequence[str], spelt: Sequence[str], ahead: int
    ) -> None:
        """Start read operation ``kind`` (one of :data:`READ_OPERATIONS`) on node ``at``."""
        core = self.topo.nodes[at].core
        make: Callable[[], Step[object]]
        if kind == "get":
            make = lambda: core.get(spelt[0])  # noqa: E731
        elif kind == "get_or_load":
            load = self._loader(names[0])
            make = lambda: core.get_or_load(spelt[0], load, None)  # noqa: E731
        elif kind == "get_many":
            make = lambda: core.get_many(spelt)  # noqa: E731
        else:
            make = lambda: core.get_many_or_load(spelt, self._load_many, None)  # noqa: E731
        self._start(kind, at, names, spelt, make, True, ahead)

    def _read(self, key: str) -> Row:
        """The source of truth hands out ``key``'s row (noted for the process stepping)."""
        if self.stepping is not None:
            self.stepping.loaded.add(key)
        return self.db.read(key)

    def _loader(self, name: str) -> Callable[[], Row]:
        return lambda: self._read(name)

    def _batch_loader(self, spelt: Sequence[str]) -> Callable[[], dict[str, Row]]:
        return lambda: {k: self._read(plain(k)) for k in spelt}

    def _load_many(self, keys: list[str]) -> dict[str, Row]:
        """The loader ``get_many_or_load`` calls with the keys that missed."""
        return {k: self._read(plain(k)) for k in keys}

    @staticmethod
    def _ready(proc: Proc) -> bool:
        """Whether ``proc``'s pending effect can be performed now (a coalesced caller
        waits until the flight it joined has landed)."""
        effect = proc.process.pending
        return effect is not None and (effect.ready is None or effect.ready())

    def _runnable(self) -> list[Proc]:
        """The in-flight processes that can take a step (never empty while any is in
        flight: a flight's leader never waits, and lands whatever ends it)."""
        runnable = [proc for proc in self.procs if self._ready(proc)]
        assert runnable or not self.procs, "every in-flight process waits: a flight never landed"
        return runnable

    @precondition(lambda self: bool(self.procs))
    @rule(pick=WIDE, fault=outcomes)
    def step(self, pick: int, fault: str) -> None:
        """Advance one in-flight process by one effect; maybe fail it (applied or not)."""
        runnable = self._runnable()
        self._step(runnable[pick % len(runnable)], fault if "step" in self.active else "ok")

    @precondition(lambda self: bool(self.procs))
    @rule(picks=st.lists(st.tuples(WIDE, outcomes), min_size=1, max_size=8))
    def run(self, picks: list[tuple[int, str]]) -> None:
        """Advance in-flight processes by one effect each, in the order given."""
        for pick, fault in picks:
            runnable = self._runnable()
            if not runnable:
                return
            proc = runnable[pick % len(runnable)]
            self._step(proc, fault if "step" in self.active else "ok")

    @staticmethod
    def _pending(proc: Proc) -> Effect[object]:
        """The effect ``proc`` performs (or, replying late, has performed) at its next step."""
        effect = proc.process.pending
        assert effect is not None
        return effect

    @precondition(lambda self: bool(self.procs) and "cancel" in self.active)
    @rule(pick=WIDE, fault=st.sampled_from(sorted(CANCELS)))
    def cancel(self, pick: int, fault: str) -> None:
        """Cancel an in-flight operation at its pending effect, as asyncio cancels a task
        awaiting it: the effect may or may not have been applied, and the operation stops.
        A caller waiting for a flight is cancelled while it waits (nothing applied)."""
        waiting = [proc for proc in self.procs if not self._ready(proc)]
        if waiting and pick % 4 == 0:
            self._step(waiting[pick // 4 % len(waiting)], "cancel")
            return
        runnable = self._runnable()
        self._step(runnable[pick % len(runnable)], fault)

    @precondition(lambda self: bool(self.procs) and "step" in self.active)
    @rule(pick=WIDE, fault=st.sampled_from(["fail", "applied"]))
    def fail_at_hazard(self, pick: int, fault: str) -> None:
        """Fail the pending effect of a read about to meet an entry it must not serve, or
        about to delete one it refused (error handling matters most there: the hazard is
        one careless ``except`` away); with no such read in flight, of any process."""
        runnable = self._runnable()
        risky = [proc for proc in runnable if self._cleaning(proc) or self._hazard(proc)]
        pool = risky or runnable
        self._step(pool[pick % len(pool)], fault)

    def _step(self, proc: Proc, fault: str) -> None:
        """Perform ``proc``'s pending effect (failed during an outage of its store), learn
        what it did, and check what a write effect may have broken."""
        effect = self._pending(proc)
        if proc.process.replying:
            self._hand_over(proc, effect, fault)
            return
        if (effect.target, effect.op) not in EFFECTS:
            self._fail(
                "effect vocabulary",
                f"p{proc.id} {proc.label} yields {effect.target}.{effect.op}, an effect the "
                "model cannot classify (see model.machine.EFFECTS)",
            )
        down = self.outage > 0 and effect.target in self.topo.outage_targets
        if down and fault not in CANCELS:
            fault = "applied" if fault == "applied" else "fail"
        if effect.target == "flight" and fault not in ("ok", "cancel"):
            # Waiting for a flight touches no store: nothing to fail but the waiting task
            # itself, which the cancel fault covers; a waiter cannot be "applied".
            fault = "ok" if fault not in CANCELS else "cancel"
        if proc.phase == "write":
            moment = self._current_observed(proc)
            proc.moments.append(moment)
            if len(moment) == len(proc.observed):
                proc.saw_current = True
        type(self).coverage.effect(
            proc.label,
            f"{effect.target}.{effect.op}",
            "ok" if fault == LATE else CANCELS.get(fault, fault),
            self._hazard(proc),
        )
        applied = fault in ("applied", "cancel-applied")
        seen = self._perform(proc, fault, applied)
        self.stats["effects"] += 1
        mark = (
            ""
            if fault == "ok"
            else "  .. reply on its way"
            if fault == LATE
            else f"  !! {'outage, ' if down else ''}"
            f"{'applied, ' if applied else ''}{'cancelled' if fault in CANCELS else 'reply lost'}"
        )
        self.trace.append(
            f"{self.now:>3}  p{proc.id} n{proc.node} {proc.label}: "
            f"{effect.target}.{effect.op}({self._short(effect.keys)}) -> {self._describe(seen)}"
            f"{mark}"
        )
        self._refresh(self.now)
        if fault in ("ok", LATE):
            self._learn(proc, effect, seen)
        if fault not in ("fail", "cancel") and (effect.target, effect.op) in WRITES:
            store = self.topo.store_of(proc.node)
            self._audit(store, [name for name in effect.keys if name in self.slots])
        self.now += 1
        self._settle(proc)

    def _hand_over(self, proc: Proc, effect: Effect[object], fault: str) -> None:
        """Hand ``proc`` the reply of the effect it performed at an earlier step (``late``),
        and run it up to its next effect; a fault now loses that reply (the effect stays
        applied), or cancels the operation while it waits for it."""
        seen = self._perform(proc, fault)
        mark = "" if fault == "ok" else "  !! cancelled" if fault in CANCELS else "  !! reply lost"
        self.trace.append(
            f"{self.now:>3}  p{proc.id} n{proc.node} {proc.label}: the reply of "
            f"{effect.target}.{effect.op}({self._short(effect.keys)}) arrives -> "
            f"{self._describe(seen)}{mark}"
        )
        self.now += 1
        self._settle(proc)

    def _perform(self, proc: Proc, fault: str, applied: bool = False) -> object:
        """Step ``proc``'s operation under ``fault`` and return what it was handed: ``"ok"``,
        :data:`LATE` (performed, the reply kept on its way), a cancel, or any other fault
        (the reply lost; ``applied``: the effect took place anyway)."""
        self.stepping = proc
        if fault == "ok":
            seen = proc.process.step()
        elif fault == LATE:
            seen = proc.process.step(late=True)
        else:
            self.stats["faults"] += 1
            error: BaseException = (
                asyncio.CancelledError("injected cancel")
                if fault in CANCELS
                else FaultInjected(f"injected {fault}")
            )
            seen = proc.process.step(error, applied=applied)
        self.stepping = None
        return seen

    @staticmethod
    def _cleaning(proc: Proc) -> bool:
        """Whether ``proc`` is a read about to delete an entry it refused (self-heal)."""
        effect = proc.process.pending
        return (
            proc.label in READ_OPERATIONS
            and effect is not None
            and (effect.target, effect.op) in {("values", "delete"), ("values", "delete_many")}
        )

    def _hazard(self, proc: Proc) -> bool:
        """Whether the store ``proc`` reads holds, for one of its keys, an entry or batch
        member that would break FRESH if this read served it (coverage, not a check)."""
        if proc.op is None or proc.op.kind == "invalidate":
            return False
        store = self.topo.store_of(proc.node)
        for key in proc.keys:
            floor, _ = self.history.floor(key, proc.op.invoked)
            if floor <= 0:
                continue
            space = self.topo.space_of(proc.node)
            for name in [space.keys.single(key).value, *self._batch_names(space, key)]:
                for member, payload in _payloads(self.topo.raw(store, name)):
                    if member in (None, key) and _index(payload) < floor:
                        return True
        return False

    def refused(self, batch: bool, reason: str) -> None:
        """The library refused an entry (or batch members) during the effect running now."""
        proc = self.stepping
        if proc is None:
            return
        path = path_of(proc.label, batch)
        type(self).coverage.refused(path, member_refusals(reason) if batch else _one(reason))

    def _learn(self, proc: Proc, effect: Effect[object], seen: object) -> None:
        """What a performed effect tells the model about its process (nothing if it raised):
        the fences a snapshot returned, the keys a version read covered, the keys the source
        handed out; and a write that stored is held to the write contract."""
        if isinstance(seen, BaseException):
            return
        if effect.target == "source":
            proc.phase = "write"
            space = self.topo.space_of(proc.node)
            proc.loading.update(space.keys.single(plain(key)).version for key in effect.keys)
            return
        if effect.target == "flight":
            # A follower's flight was loaded from the source (by its leader, on its
            # behalf): a value returned from it is a load, not an entry served from the
            # cache. FRESH judges it like any other value the call returns.
            if getattr(seen, "loaded", False):
                proc.loaded.update(plain(key) for key in effect.keys)
            return
        if effect.target == "versions" and effect.op in SNAPSHOTS:
            fences = [seen] if effect.op == "snapshot" else seen
            assert isinstance(fences, list)
            for name, taken in zip(effect.keys, fences, strict=True):
                self._observe(proc, name, taken)
        fence = single_fence(effect, seen)
        if fence is not None:
            # get_or_load loads under the fence its read delivered, as a snapshot would
            # have: the write contract holds it to that fence.
            self._observe(proc, effect.keys[-1], fence)
        replied = (effect.target == "versions" and effect.op in VERSION_READS) or (
            effect.target == "redis"
            and effect.op in BOTH_READS
            and not (effect.op == "read_batch" and isinstance(seen, tuple) and seen[1] is None)
        )
        if replied:
            proc.fenced.update(self.version_of[n] for n in effect.keys if n in self.version_of)
        stored = (effect.target, effect.op) in WRITES and seen is True
        if stored and proc.phase == "write" and not self._write_was_current(proc, effect):
            self._fail(
                "write contract",
                f"p{proc.id} {proc.label}({','.join(proc.keys)}) stored "
                f"{self._short(effect.keys)}, but the fences it snapshotted for what it "
                f"stored ({self._fences(proc.observed)}) were not all current before any "
                "effect since it loaded the source",
            )

    @staticmethod
    def _observe(proc: Proc, name: str, fence: Version) -> None:
        """Note ``fence`` as what ``proc`` will store ``name``'s key under, if it has not
        loaded that key yet: a fence taken after the load is no expectation (a write
        stamped with it would carry a version newer than its value). A key the operation
        loads again (a batch fill's keys whose flight gave no proof) gets the fence taken
        before that load, and the moments measured against the old one no longer count."""
        if name in proc.loading or proc.observed.get(name) == fence:
            return
        proc.observed[name] = fence
        proc.moments = [moment - {name} for moment in proc.moments]

    def _write_was_current(self, proc: Proc, effect: Effect[object]) -> bool:
        """Whether, before some effect since ``proc`` loaded the source, every fence it
        snapshotted for the keys ``effect`` stores was current at once. A batch fill that
        follows some keys' flights stores only the keys it loaded, under their fences."""
        needed: set[str] = set()
        for name in effect.keys:
            slot = self.slots.get(name)
            if slot is not None:
                needed.update(slot.space.keys.single(key).version for key in slot.keys)
        needed &= proc.observed.keys()
        if not needed:
            return proc.saw_current
        return any(needed <= moment for moment in proc.moments)

    def _current_observed(self, proc: Proc) -> frozenset[str]:
        """The version names whose fence ``proc`` snapshotted and which are current now."""
        current = self.current[proc.node]
        return frozenset(
            name
            for name, fence in proc.observed.items()
            if (current[name] if name in current else self.topo.fence(proc.node, name)) == fence
        )

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
                self._fail_closed(proc)
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
        """The rows a finished read returned, by key (each key must be a plain ``str``)."""
        result = proc.process.result
        if proc.label == "get":
            assert result is None or isinstance(result, Hit)
            return {} if result is None else {proc.keys[0]: result.value}
        if proc.label == "get_or_load":
            assert isinstance(result, Row)
            return {proc.keys[0]: result}
        if proc.label == "get_many":
            assert isinstance(result, tuple)
            result = result[0]
        values = result
        assert isinstance(values, dict)
        spelt = [k for k in values if type(k) is not str]
        if spelt:
            self._fail(
                "integrity",
                f"p{proc.id} {proc.label} returned keys {spelt!r} that are not plain str "
                "(a caller's lookup with the plain key misses them)",
            )
        return dict(values)

    def _fail_closed(self, proc: Proc) -> None:
        """A key served from the cache had its current fence delivered to this call."""
        assert proc.op is not None
        blind = [key for key in proc.op.served if key not in proc.loaded and key not in proc.fenced]
        if blind:
            self._fail(
                "fail-closed",
                f"p{proc.id} {proc.label} on node {proc.node} served {','.join(blind)} from "
                "the cache, but no version read of this call delivered its current fence",
            )

    def _observed_current(self, proc: Proc) -> bool:
        """Whether every fence ``proc`` snapshotted is current."""
        return len(self._current_observed(proc)) == len(proc.observed)

    # -- liveness -------------------------------------------------------------------

    @rule(node=node_ids, key=keys_st)
    def fill_then_get_hits(self, node: int, key: int) -> None:
        """With nothing else running, a fill followed by a get serves the latest row."""
        at = self._node(node)
        self._quiet_fill(at, *self.key(at, key))

    def _quiet_fill(self, node: int, key: str, spelt: str) -> None:
        cache = self.topo.nodes[node]
        result = self.topo.drive(fill(cache.core, spelt, self._loader(key)))
        op = self.history.invoke("get", node, [key], self.now)
        hit = self.topo.drive(cache.core.get(spelt))
        op.returned, op.ok = self.now, True
        op.served = {} if hit is None else {key: hit.value}
        self.trace.append(
            f"{self.now:>3}  n{node} quiet fill({_spelling(spelt)}) -> "
            f"{result.outcome.value}; get -> {self._describe(hit)}"
        )
        self.now += 1
        self._report(self.history.check_read(op))
        if not result.stored or hit is None or hit.value != self.db.read(key):
            self._fail("liveness", f"quiet fill({key}) {result.outcome.value}, then get -> {hit}")

    @precondition(lambda self: "quiet" in self.kinds and self.nkeys > 1)
    @rule(node=node_ids, keys=key_sets)
    def batch_fill_then_get_many_hits(self, node: int, keys: tuple[int, int]) -> None:
        """With nothing else running, a batch fill followed by ``get_many`` hits every key."""
        at = self._node(node)
        self._quiet_batch_fill(at, *self.key_set(at, keys))

    def _quiet_batch_fill(self, node: int, keys: tuple[str, ...], spelt: list[str]) -> None:
        cache = self.topo.nodes[node]
        result = self.topo.drive(batch_fill(cache.core, spelt, self._batch_loader(spelt)))
        op = self.history.invoke("get_many", node, keys, self.now)
        values, missing = self.topo.drive(cache.core.get_many(spelt))
        op.returned, op.ok, op.served = self.now, True, dict(values)
        self.trace.append(
            f"{self.now:>3}  n{node} quiet batch_fill({','.join(map(_spelling, spelt))}) -> "
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
        then=WIDE,
    )
    def inject(self, kind: str, store: int, key: int, batch: bool, pos: int, then: int) -> None:
        """A fault between effects: eviction, corruption (a flipped byte, another valid frame
        of the same length, or another frame's payload under this frame's stamp and
        checksum), an older frame written back, version loss, a version-store outage lasting
        several rules, time passing, replication and failover. After a fault that left
        bytes a reader must refuse (damage, a write-back) or a key's entries without their
        version, a read of that entry starts right away: :meth:`read_next`."""
        self.touched = None
        before = self.stats["faults"]
        self._inject(kind, store, key, batch, pos)
        if self.stats["faults"] > before and self.touched is not None:
            self.read_next(*self.touched, then)

    def read_next(self, store: int, name: str, drawn: int) -> None:
        """Start a read (of a kind enabled) that meets what a fault left under ``name`` in
        value store ``store``: the damage is worth checking only if a read meets it before
        a fill or a write replaces it. A single entry is read alone or in a set (which
        falls back to single entries where no batch entry holds the set); a batch entry is
        read with its exact member set."""
        slot = self.slots[name]
        nodes = [
            n for n in self.topo.readers(store) if n in slot.space.nodes and self._node(n) == n
        ]
        many = slot.batch or self.nkeys > 1
        reads = [
            kind
            for kind in READ_OPERATIONS
            if self.on(kind) and (many if kind.startswith("get_many") else not slot.batch)
        ]
        if not nodes or not reads:
            return
        kind = reads[drawn % len(reads)]
        at = nodes[drawn // 4 % len(nodes)]
        names = list(slot.keys)
        if kind.startswith("get_many") and not slot.batch:
            others = [slot.space.prefix + k for k in KEYS[: self.nkeys]]
            names.append(next(k for k in others if k != names[0]))
            self._batch_set(self.topo.spaces.index(slot.space), names)
        if drawn // 16 % 2:
            names.reverse()
        spelt = [spell(n, drawn >> (5 + 2 * i)) for i, n in enumerate(names)]
        self._start_read(kind, at, names, spelt, drawn // 128 % 4)

    def _inject(self, kind: str, store: int, key: int, batch: bool, pos: int) -> None:
        # Fold the drawn kind into the active families, so no draw is wasted.
        usable = [k for k in INJECTIONS if INJECTIONS[k] in self.active]
        self.inject_exactly(
            usable[list(INJECTIONS).index(kind) % len(usable)], store, key, batch, pos
        )

    def inject_exactly(self, kind: str, store: int, key: int, batch: bool, pos: int) -> None:
        """Inject fault ``kind`` (one of :data:`INJECTIONS`) as :meth:`inject` describes,
        at the key and value store that ``key`` and ``store`` fold into."""
        spaces = self.topo.spaces[: 1 + ("alias" in self.kinds)]
        space = spaces[key // len(KEYS) % len(spaces)]
        which = space.prefix + KEYS[key % self.nkeys]
        ck = space.keys.single(which)
        store %= self.topo.value_stores()
        names = self._batch_names(space, which) if batch else [ck.value]
        if kind == "evict":
            if self._fault("evict", f"value store {store} evicts {self._short(names)}"):
                for name in names:
                    self.topo.evict(store, name)
        elif kind in ("corrupt", "swap", "splice", "foreign"):
            # Damage only bites where something is stored: fold the draw into those slots,
            # the drawn key's single or batch entries first.
            held = [name for name in names if self.topo.raw(store, name) is not None] or [
                name for name in self.slots if self.topo.raw(store, name) is not None
            ]
            if held:
                self._damage(kind, store, held[key % len(held)], pos)
        elif kind == "writeback":
            # Only a slot with an older frame on record can have one written back; half the
            # time, one whose row is below its key's floor (the frame a reader must refuse).
            older = [
                (name, frame)
                for (at, name), frames in self.frames.items()
                if at == store
                for frame in frames
                if frame != self.topo.raw(store, name)
            ]
            dangerous = [(name, frame) for name, frame in older if self._below_floor(name, frame)]
            if pos % 2 and not dangerous:
                dangerous = self._late_frames(space, which)
            pool = dangerous if dangerous and pos % 2 else older
            if pool:
                name, frame = pool[key % len(pool)]
                self._plant("writeback", store, name, frame, "an older frame is written back to")
        elif kind in ("lose_version", "garble_version"):
            how = GARBLES[(pos + key) % len(GARBLES)]
            text = "lost" if kind == "lose_version" else f"overwritten with {how}"
            if self._fault("lose_version", f"version of {which} {text}"):
                if kind == "lose_version":
                    self.topo.lose_version(ck.version)
                else:
                    self.topo.garble_version(ck.version, how)
                # Every entry of the key is now unservable: a read should meet one.
                held = [
                    name
                    for name in [ck.value, *self._batch_names(space, which)]
                    if self.topo.raw(store, name) is not None
                ]
                if held:
                    self.touched = (store, held[pos % len(held)])
        elif kind == "lose_all_versions":
            if self._fault("lose_version", "every version lost"):
                self.topo.lose_all_versions()
        elif kind == "outage":
            rules = 2 + pos % 5
            if self._fault("outage", f"the version store is down for {rules} rules"):
                self.outage = max(self.outage, rules)
        elif kind == "replicate":
            if self._fault("failover", "the replica catches up"):
                self.topo.replicate()
        elif kind == "failover":
            if self._fault("failover", "FAILOVER: the replica is promoted"):
                self.topo.failover()
        elif kind == "save":
            if self._fault("restart", "SAVE: the server snapshots its state to disk"):
                self.topo.replicate()
        elif kind == "restart":
            if self._fault("restart", "RESTART: the server is killed and loads its last snapshot"):
                self.topo.failover()
        elif self._fault("clock", f"clock +{5 + 26 * batch}s"):
            self.topo.clock.advance(5.0 + 26.0 * batch)

    def _late_frames(self, space: Space, key: str) -> list[tuple[str, bytes]]:
        """(storage name, frame) for each entry holding ``key`` that a slow filler could
        still land: every member stamped with an earlier fence of its key and holding the
        row committed just below its floor (the state the stale-set race leaves behind)."""
        found = []
        for name in [space.keys.single(key).value, *self._batch_names(space, key)]:
            slot = self.slots[name]
            members = [self._late(space, member) for member in slot.keys]
            if any(m is None for m in members):
                continue
            late = [m for m in members if m is not None]
            frame = (
                encode_batch(late) if slot.batch else encode_single(late[0].fence, late[0].payload)
            )
            found.append((name, frame))
        return found

    def _late(self, space: Space, key: str) -> Member | None:
        """``key`` stamped with its latest fence that no node sees as current any more,
        holding the row committed just below its floor; ``None`` if it has neither."""
        floor, _ = self.history.floor(key, self.now)
        version = space.keys.single(key).version
        now = {row.get(version) for row in self.current}
        earlier = [fence for name, fence in self.born if name == version and fence not in now]
        if floor <= 0 or not earlier:
            return None
        return Member(key, earlier[-1], ROW_CODEC.encode(Row(key, floor - 1)))

    def _below_floor(self, name: str, frame: bytes) -> bool:
        """Whether ``frame`` under ``name`` holds a row below the floor of its key now."""
        slot = self.slots.get(name)
        if slot is None:
            return False
        for member, payload in _payloads(frame):
            key = member if member is not None else slot.keys[0]
            floor, _ = self.history.floor(key, self.now)
            if _index(payload) < floor:
                return True
        return False

    def _plant(self, family: str, store: int, name: str, bad: bytes, text: str) -> None:
        """Put ``bad`` under ``name`` in value store ``store``, as a fault of ``family``."""
        if self._fault(family, f"{text} {self._short([name])} in value store {store}"):
            self.topo.put_raw(store, name, bad)
            self.planted[(store, name)] = bad
            self.touched = (store, name)

    def _damage(self, kind: str, store: int, name: str, pos: int) -> None:
        """Put other bytes under a stored ``name`` in value store ``store`` (``swap``:
        another valid frame of the same length seen in this store; ``splice``: another
        same-length payload under this frame's stamp and checksum; ``foreign``: a current
        frame whose payload the codec refuses; ``corrupt``: a flipped byte). A kind with
        nothing to work with falls through to the next one, so no draw is wasted."""
        data = self.topo.raw(store, name)
        if data is None:
            return
        order = ["swap", "splice", "foreign", "corrupt"]
        for each in order[order.index(kind) :]:
            damaged = self._damaged(each, store, name, data, pos)
            if damaged is not None:
                self._plant("corrupt", store, name, *damaged)
                return

    def _damaged(
        self, kind: str, store: int, name: str, data: bytes, pos: int
    ) -> tuple[bytes, str] | None:
        """(bad bytes, what happened) for one kind of :meth:`_damage`, or ``None``."""
        if kind == "swap":
            same = self._same_length(store, data)
            if not same:
                return None
            return same[pos % len(same)], "another valid frame of the same length replaces"
        if kind == "splice":
            spliced = self._splices(store, data)
            if not spliced:
                return None
            return spliced[pos % len(spliced)], "another frame's payload is spliced into"
        if kind == "foreign":
            # A well-formed frame stamped with the key's current fence, whose payload the
            # codec refuses (another writer, or a schema change): only the codec defends.
            slot = self.slots.get(name)
            readers = self.topo.readers(store)
            foreign = (
                None if slot is None or not readers else self._foreign(readers[0], slot, data, pos)
            )
            return (
                None
                if foreign is None
                else (foreign, "a current frame of a foreign schema replaces")
            )
        at = pos % len(data)
        flipped = bytearray(data)
        flipped[at] ^= 0x5A
        return bytes(flipped), f"byte {at} flips in"

    def _foreign(self, reader: int, slot: Slot, data: bytes, pos: int) -> bytes | None:
        """``data`` with the payload of its single entry, or of one batch member, replaced
        by one the codec refuses, stamped with that key's fence as ``reader`` sees it now."""
        if not slot.batch:
            current = self.topo.fence(reader, slot.space.keys.single(slot.keys[0]).version)
            return None if current is None else encode_single(current, FOREIGN)
        try:
            members = decode_batch(data)
        except WireError:
            return None
        hit = members[pos % len(members)]
        current = self.topo.fence(reader, slot.space.keys.single(hit.key).version)
        if current is None:
            return None
        return encode_batch([Member(m.key, current, FOREIGN) if m is hit else m for m in members])

    def _same_length(self, store: int, data: bytes) -> list[bytes]:
        """Other frames of ``data``'s length seen in ``store``, in the order first seen.

        Never ordered by their bytes: fences are random, so a byte order would differ
        between runs of one example, and Hypothesis needs each example to replay exactly."""
        return list(
            dict.fromkeys(
                frame
                for (at, _), frames in self.frames.items()
                if at == store
                for frame in frames
                if len(frame) == len(data) and frame != data
            )
        )

    def _splices(self, store: int, data: bytes) -> list[bytes]:
        """``data``'s header and stamp with another same-length payload, under ``data``'s
        checksum: only the checksum tells these bytes from a valid frame."""
        try:
            stamp, payload = decode_single(data)
        except WireError:
            return []
        found: dict[bytes, None] = {}
        for frame in self._same_length(store, data):
            try:
                _, other = decode_single(frame)
            except WireError:
                continue
            if len(other) == len(payload) and other != payload:
                found[encode_single(stamp, other)[:-4] + data[-4:]] = None
        return list(found)

    # -- after every rule -----------------------------------------------------------------

    @invariant()
    def after_every_rule(self) -> None:
        """Replication and outages move on by one rule; then every stored entry and batch
        member is checked (state invariant, provenance, integrity of what is stored)."""
        self.topo.rule_done()
        if self.outage:
            self.outage -= 1
        # A quiet operation or a fault may have changed fences at the last time used.
        self._refresh(self.now - 1)
        for store in range(self.topo.value_stores()):
            readers = set(self.topo.readers(store))
            names = [n for n, slot in self.slots.items() if readers & set(slot.space.nodes)]
            self._audit(store, names)

    def _refresh(self, at: int) -> None:
        """Read every fence as each node sees it; note each fence first current at ``at``
        (the time of the last event that may have changed fences)."""
        table = self.topo.fence_table(self.version_names)
        self.current = [dict(zip(self.version_names, row, strict=True)) for row in table]
        for row in table:
            for name, fence in zip(self.version_names, row, strict=True):
                if fence is not None and (name, fence) not in self.born:
                    self.born[(name, fence)] = at

    def _audit(self, store: int, names: list[str]) -> None:
        """Check the entries under ``names`` in value store ``store``."""
        if not names:
            return
        for name, data in zip(names, self.topo.raw_many(store, names), strict=True):
            if data is None:
                continue
            planted = self.planted.get((store, name)) == data
            if not planted:
                remembered = self.frames.setdefault((store, name), [])
                if data not in remembered:
                    remembered.append(data)
                    del remembered[:-REMEMBERED]
            slot = self.slots[name]
            try:
                entries = (
                    [(m.key, m.fence, m.payload) for m in decode_batch(data)]
                    if slot.batch
                    else [(slot.keys[0], *decode_single(data))]
                )
            except WireError:
                continue  # refused by every reader: the checksum's job, tested elsewhere
            for key, stamp, payload in entries:
                if key not in slot.keys:
                    if not planted:
                        self._fail(
                            "integrity",
                            f"value store {store} holds {self._short([name])} with a member "
                            f"for key {key!r}",
                        )
                    continue
                self._check_stored(store, slot, key, stamp, payload, planted)

    def _check_stored(
        self, store: int, slot: Slot, key: str, stamp: Version, payload: bytes, planted: bool
    ) -> None:
        what = f"{'batch member' if slot.batch else 'single entry'} {key}"
        version = slot.space.keys.single(key).version
        # Judge the entry by every node that could serve it: with per-node version
        # stores, "the current fence" is a different fence on each node.
        current = any(
            stamp == self.current[node].get(version)
            for node in self.topo.readers(store)
            if node in slot.space.nodes
        )
        if planted and not current:
            return
        try:
            row = ROW_CODEC.decode(payload)
        except Exception as exc:
            if planted:
                return
            self._fail(
                "integrity",
                f"value store {store} holds {what} with an undecodable payload ({exc})",
            )
        if current:
            floor, witness = self.history.floor(key, self.now)
            if row.key != key or row.index < floor:
                self._fail(
                    "state invariant",
                    f"value store {store} holds {what} -> {row.key}@{row.index} stamped with "
                    f"the current fence {stamp.short()}, below floor {floor} set by op "
                    f"{witness}",
                )
        if planted:
            return
        if row.key != key:
            self._fail("integrity", f"value store {store} holds {what} -> {row.key}@{row.index}")
        born = self.born.get((version, stamp))
        if born is None:
            self._fail(
                "provenance",
                f"value store {store} holds {what} -> {row.key}@{row.index} stamped "
                f"{stamp.short()}, a fence that was never {key}'s current fence",
            )
        floor = self.history.committed_before(key, born)
        if row.index < floor:
            self._fail(
                "provenance",
                f"value store {store} holds {what} -> {row.key}@{row.index} stamped "
                f"{stamp.short()}, which became current at {born} when {key}@{floor} was "
                "already committed: the row was loaded before its stamp was current",
            )

    # -- reporting ----------------------------------------------------------------------

    def _report(self, violations: list[Violation]) -> None:
        if violations:
            v = violations[0]
            self._fail(v.prop, v.message)

    def _fail(self, prop: str, message: str) -> NoReturn:
        tally = type(self).tally
        if tally.first_failure is None:
            tally.first_failure = tally.examples + 1
        raise ModelFailure(
            f"{prop} violated on topology {self.topo.name}: {message}\n"
            "trace (time, process, node, effect -> what the operation saw):\n"
            + "\n".join(self.trace)
        )

    def _batch_names(self, space: Space, key: str) -> list[str]:
        return sorted(
            name
            for name, slot in self.slots.items()
            if slot.batch and slot.space is space and key in slot.keys
        )

    def _short(self, names: Sequence[str]) -> str:
        out = []
        for name in names:
            slot = self.slots.get(name)
            if slot is not None:
                out.append(("batch:" if slot.batch else "value:") + "+".join(slot.keys))
            elif name in self.version_of:
                out.append(f"version:{self.version_of[name]}")
            else:
                out.append(_spelling(name))
        return ",".join(out)

    def _fences(self, fences: Mapping[str, Version]) -> str:
        return ", ".join(f"{self._short([n])}={f.short()}" for n, f in fences.items())

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
            return (
                "{"
                + ", ".join(f"{_spelling(k)}: {self._describe(v)}" for k, v in seen.items())
                + "}"
            )
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


def _spelling(key: object) -> str:
    """A key as the trace shows it: the plain key, marked if another spelling was used."""
    if isinstance(key, KeyName):
        return f"{plain(key)}~enum"
    if isinstance(key, LyingKey):
        return f"{plain(key)}~lying"
    return str(key)


class _Refusals(Hooks):
    """Tells the model what the library refused to serve (coverage only)."""

    def __init__(self, machine: CacheModel) -> None:
        self.machine = machine

    def self_healed(self, op: str, key: str, reason: str) -> None:
        self.machine.refused(False, reason)

    def batch_rejected(self, keys: Sequence[str], reason: str) -> None:
        self.machine.refused(True, reason)


def _one(reason: str) -> list[Refusal]:
    refusal = refusal_of(reason)
    return [] if refusal is None else [refusal]


def _payloads(data: bytes | None) -> list[tuple[str | None, bytes]]:
    """The payloads in stored bytes: ``(None, payload)`` of a single entry, ``(key,
    payload)`` per batch member; nothing for bytes that are not a frame."""
    if data is None:
        return []
    try:
        return [(None, decode_single(data)[1])]
    except WireError:
        pass
    try:
        return [(m.key, m.payload) for m in decode_batch(data)]
    except WireError:
        return []


def _index(payload: bytes) -> int:
    """The row index in a payload; a payload that is not a row is no hazard."""
    try:
        return ROW_CODEC.decode(payload).index
    except Exception:
        return 1 << 62


def machine_for(
    build: Callable[[CoreFactory], Topology],
    core: CoreFactory = Core,
    faults: frozenset[str] = FAULTS,
    name: str = "CacheModel",
    kinds: frozenset[str] = frozenset(KINDS),
    max_keys: int = len(KEYS),
    swarm: bool = True,
) -> type[CacheModel]:
    """A state machine class for one topology, protocol variant and fault set, whose
    examples draw their rule families from ``kinds`` and use at most ``max_keys`` keys."""
    return type(
        name,
        (CacheModel,),
        {
            "build": staticmethod(build),
            "core": staticmethod(core),
            "faults": faults,
            "kinds_allowed": kinds,
            "max_keys": max_keys,
            "swarm": swarm,
            "tally": Tally(),
            "coverage": Coverage(),
        },
    )
