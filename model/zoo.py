"""The bug zoo: known-bad protocol variants the model must catch (DESIGN §6).

Each variant is a subclass of the production :class:`cascache.batch.Core` that changes
exactly one step, so a caught variant shows that the model can see that step's mistake.
They live here, outside the shipped package, and are only ever built by the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from cascache.batch import Core
from cascache.effects import Step, perform
from cascache.fence import Version
from cascache.keys import CacheKey
from cascache.results import WriteOutcome
from cascache.wire import decode_single, encode_single
from model.topology import CoreFactory

V = TypeVar("V")


class CacheAside(Core[V]):
    """#1 Cache-aside: invalidate only deletes, and fills store unconditionally."""

    def write_single(
        self, op: str, ck: CacheKey, frame: bytes, version: Version, ttl: float | None
    ) -> Step[WriteOutcome]:
        # Stamp whatever is current so reads accept it: in effect, no versioning at all.
        current = yield from perform(
            self.versions("snapshot", [ck.version], lambda: self.gens.snapshot(ck.version))
        )
        _, payload = decode_single(frame)
        ttl = self.default_ttl if ttl is None else ttl
        return (yield from self.store(op, ck.key, ck.value, encode_single(current, payload), ttl))

    def invalidate(self, key: str) -> Step[None]:
        ck = self.keys.single(key)
        yield from perform(
            self.values("delete", [ck.value], lambda: self.provider.delete(ck.value))
        )


class StampsCurrentFence(Core[V]):
    """#3 The generic write checks the snapshot but stamps the fence current at write time."""

    def write_single(
        self, op: str, ck: CacheKey, frame: bytes, version: Version, ttl: float | None
    ) -> Step[WriteOutcome]:
        current = yield from perform(
            self.versions("current", [ck.version], lambda: self.gens.current(ck.version))
        )
        if current != version:
            return WriteOutcome.VERSION_MISMATCH
        stamp = yield from perform(
            self.versions("current", [ck.version], lambda: self.gens.current(ck.version))
        )
        if stamp is None:
            return WriteOutcome.VERSION_MISMATCH
        _, payload = decode_single(frame)
        ttl = self.default_ttl if ttl is None else ttl
        return (yield from self.store(op, ck.key, ck.value, encode_single(stamp, payload), ttl))


class NoCompare(Core[V]):
    """#12 ``set_if_version`` without the compare, still stamping the observed fence.

    Readers never serve what it writes after an invalidate (the stamp is stale), so FRESH
    cannot see it; only the write contract can.
    """

    def write_single(
        self, op: str, ck: CacheKey, frame: bytes, version: Version, ttl: float | None
    ) -> Step[WriteOutcome]:
        ttl = self.default_ttl if ttl is None else ttl
        return (yield from self.store(op, ck.key, ck.value, frame, ttl))


@dataclass(frozen=True)
class Variant:
    """A zoo entry: its DESIGN §6 number, name, protocol core and the properties that catch it."""

    number: int
    name: str
    core: CoreFactory
    caught_by: tuple[str, ...]
    topologies: tuple[str, ...]


ALL = ("local", "shared-versions", "redis")
GENERIC = ("local", "shared-versions")
"""Topologies whose single-key writes take the generic check-then-write path."""

VARIANTS = {
    v.name: v
    for v in (
        Variant(1, "cache-aside", CacheAside, ("FRESH", "state invariant"), ALL),
        Variant(
            3, "stamps-current-fence", StampsCurrentFence, ("FRESH", "state invariant"), GENERIC
        ),
        Variant(12, "no-compare", NoCompare, ("write contract",), GENERIC),
    )
}
