"""Batch operations: one entry for a set of keys, validated member by member.

A batch entry is keyed by a hash of the sorted, de-duplicated member set and holds every
member stamped with the fence its writer observed. ``get_many`` serves a member only if
that member's stamp equals its current fence, exactly as ``get`` does for a single entry;
an entry that is not served whole is dropped and the rest fall back to single entries,
read in one interaction per store. ``set_if_versions`` writes the batch entry only if
every observed version is still current, then seeds single entries as configured. Batch
writes are not atomic across keys; freshness comes from the per-member check on read.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TypeVar, cast

from cascache.core import (
    SingleCore,
    bad_loader,
    check_version,
    counted,
    keys_text,
    not_awaitable,
)
from cascache.effects import Effect, Step, perform
from cascache.errors import CascacheError, OpError, WireError
from cascache.fence import Version, new_fence
from cascache.flight import Flight, current_task
from cascache.genstore import LocalGenStore
from cascache.hooks import call_hook
from cascache.keys import CacheKey, canonical_key
from cascache.local import LocalStore
from cascache.mutator import BatchReader
from cascache.options import BatchReadSeed, BatchWriteSeed, Options, ttl_seconds
from cascache.provider import AddProvider
from cascache.results import BatchWriteResult, VersionedValue, WriteOutcome
from cascache.wire import Member, decode_batch, encode_batch, encode_single

V = TypeVar("V")


def unique_keys(op: str, keys: Iterable[str]) -> list[str]:
    """Validate keys and drop repeats, keeping first-seen order."""
    if isinstance(keys, str | bytes):
        raise TypeError(
            f"cascache {op}: keys must be a collection of str, not one {type(keys).__name__}"
        )
    if not isinstance(keys, Iterable):
        raise TypeError(
            f"cascache {op}: keys must be a collection of str, got {type(keys).__name__}"
        )
    return list(dict.fromkeys(canonical_key(op, key) for key in keys))


class Core(SingleCore[V]):
    """The whole protocol: the single-key operations plus the batch operations."""

    def __init__(self, options: Options[V]) -> None:
        super().__init__(options)
        self.batch_ttl = ttl_seconds("Options.batch_ttl", options.batch_ttl)
        self.batching = not options.disable_batch
        self.read_seed = BatchReadSeed(options.batch_read_seed)
        self.write_seed = BatchWriteSeed(options.batch_write_seed)
        self._warned_local = False
        self.batch_reader: BatchReader | None = (
            self.reader if isinstance(self.reader, BatchReader) else None
        )

    def get_many(
        self, keys: Iterable[str], report: str | None = "get_many"
    ) -> Step[tuple[dict[str, V], list[str]]]:
        """The servable values of ``keys`` and, in request order, the keys that missed.

        ``report``: the operation whose hits and misses these are, for the ``hit`` and
        ``miss`` hooks, fired once per key (``None``: not reported), and which its errors
        and other hooks name (``"get_many"`` when not reported).
        """
        op = "get_many" if report is None else report
        wanted = unique_keys(op, keys)
        self.check_open(op, wanted)
        if self.disabled or not wanted:
            if report is not None:
                self.report_reads(report, wanted, {})
            return {}, wanted
        found: dict[str, V] = {}
        fences: dict[str, Version | None] | None = None
        if self.batching and len(wanted) > 1:
            found, fences = yield from self.read_batch(op, wanted)
        rest = [self.keys.single(key) for key in wanted if key not in found]
        if rest:
            # The fences read with the batch entry serve the single entries too: the keys'
            # fences are read once, and a missing batch entry costs one more round trip.
            found.update((yield from self.read_singles(op, rest, fences)))
        if report is not None:
            self.report_reads(report, wanted, found)
        return found, [key for key in wanted if key not in found]

    def report_reads(self, op: str, wanted: Sequence[str], found: Mapping[str, V]) -> None:
        """Fire ``hit`` for every key of ``wanted`` in ``found`` and ``miss`` for the
        others, in request order (nothing when no hook handles either)."""
        on_hit, on_miss = self.on_hit, self.on_miss
        if on_hit is None and on_miss is None:
            return
        for key in wanted:
            event = on_hit if key in found else on_miss
            if event is not None:
                call_hook(event, op, key)

    def report_writes(self, keys: Iterable[str], outcome: WriteOutcome) -> None:
        """Fire ``write`` for each of ``keys`` with ``outcome`` (``set_if_versions``)."""
        on_write = self.on_write
        if on_write is not None:
            for key in keys:
                call_hook(on_write, "set_if_versions", key, outcome)

    def snapshot_versions(self, keys: Iterable[str]) -> Step[dict[str, Version]]:
        """``snapshot_version`` for several keys in one version-store interaction."""
        wanted = unique_keys("snapshot_versions", keys)
        self.check_open("snapshot_versions", wanted)
        if self.disabled:
            return {key: new_fence() for key in wanted}
        if not wanted:
            return {}
        names = [self.keys.single(key).version for key in wanted]
        try:
            fences = counted(
                "snapshot_many",
                names,
                (
                    yield from perform(
                        self.versions(
                            "snapshot_many", names, lambda: self.gens.snapshot_many(names)
                        )
                    )
                ),
            )
        except Exception as exc:
            call_hook(
                self.hooks.version_snapshot_error, "snapshot_versions", keys_text(wanted), exc
            )
            raise OpError("snapshot_versions", wanted, exc) from exc
        return dict(zip(wanted, fences, strict=True))

    def set_if_versions(
        self, items: Iterable[VersionedValue[V]], ttl: float | None
    ) -> Step[BatchWriteResult]:
        """Store a batch entry if every observed version is current; then seed singles."""
        batch = self.check_items(items)
        if self.closed:
            self.check_open("set_if_versions", [item.key for item in batch])
        if self.disabled:
            self.report_writes((item.key for item in batch), WriteOutcome.DISABLED)
            return BatchWriteResult(WriteOutcome.DISABLED)
        if not batch:
            return BatchWriteResult(WriteOutcome.STORED)
        members = [
            Member(item.key, item.version, self.encode("set_if_versions", item.key, item.value))
            for item in batch
        ]
        cks = [self.keys.single(member.key) for member in members]
        if not self.batching or len(members) == 1:
            return (yield from self.write_singles(cks, members, ttl))
        self.note_local_batch()
        keys = [m.key for m in members]
        try:
            fences = yield from self.current_many(cks)
        except Exception as exc:
            call_hook(self.hooks.version_snapshot_error, "set_if_versions", keys_text(keys), exc)
            self.report_writes(keys, WriteOutcome.SNAPSHOT_ERROR)
            return BatchWriteResult(WriteOutcome.SNAPSHOT_ERROR)
        if any(fence != m.fence for fence, m in zip(fences, members, strict=True)):
            self.report_writes(keys, WriteOutcome.VERSION_MISMATCH)
            return BatchWriteResult(WriteOutcome.VERSION_MISMATCH)
        name = self.keys.batch(m.key for m in members)
        batch_ttl = self.batch_ttl if self.batch_ttl is not None else self.default_ttl
        outcome = yield from self.store(
            "set_if_versions", keys, name, encode_batch(members), batch_ttl, batch=True
        )
        # Every member shares the batch entry's outcome; seeding singles is not reported.
        self.report_writes(keys, outcome)
        if outcome is not WriteOutcome.STORED:
            return BatchWriteResult(outcome)
        seeded = yield from self.seed_after_write(cks, members, ttl)
        return BatchWriteResult(WriteOutcome.STORED, seeded)

    def get_many_or_load(
        self,
        keys: Iterable[str],
        loader: Callable[[list[str]], Mapping[str, V]],
        ttl: float | None,
    ) -> Step[dict[str, V]]:
        """The batch fill path: get_many, then snapshot, load and store the missing keys.

        ``loader`` gets the missing keys and returns the values it found; keys it leaves
        out are absent from the result. Cache failures fall back to ``loader`` and are
        reported to a hook (``read_error``, ``version_snapshot_error``, ``codec_error`` or
        ``store_error``, as in ``get_or_load``). With coalescing, a missing key whose load is
        in the air in this cache is followed instead of loaded, under the same proof rule
        as ``get_or_load``; the keys without proof are loaded in one more loader call.
        """
        wanted = unique_keys("get_many_or_load", keys)
        self.check_open("get_many_or_load", wanted)
        if not callable(loader):
            raise bad_loader("get_many_or_load", wanted, loader)
        try:
            found, missing = yield from self.get_many(wanted, "get_many_or_load")
        except CascacheError as exc:
            call_hook(self.hooks.read_error, "get_many_or_load", keys_text(wanted), exc)
            self.report_reads("get_many_or_load", wanted, {})
            found, missing = {}, wanted
        if not missing:
            return found
        versions = yield from self.fences_for_load(missing)
        # Coalescing, key by key (``SingleCore.get_or_load`` has the rule): lead the
        # flights of the keys nobody is loading, follow the others. Every led flight
        # lands before this call waits for any other, so two batches that lead and
        # follow each other's keys cannot wait for each other.
        led: dict[str, Flight] = {}
        followed: list[tuple[str, Flight, int]] = []
        flights = self.flights
        if flights is not None and not self.disabled:
            task = current_task() if self.awaiting else None
            for key in missing:
                if key in versions:
                    flight, joined = flights.join(key, versions[key], task)
                    if flight is not None and joined is None:
                        led[key] = flight
                    elif flight is not None and joined is not None:
                        followed.append((key, flight, joined))
        try:
            following = {key for key, _, _ in followed}
            mine = [key for key in missing if key not in following]
            if mine:
                found.update(
                    (yield from self.load_and_store_many(mine, loader, versions, ttl, led))
                )
        finally:
            if flights is not None:
                for key, flight in led.items():
                    flights.land(key, flight)
        unproven: list[str] = []
        for key, flight, joined in followed:
            proven, value, _ = yield from self.follow(key, flight, joined, "get_many_or_load")
            if proven:
                found[key] = cast(V, value)
            else:
                unproven.append(key)
        if unproven:
            versions = yield from self.fences_for_load(unproven)
            found.update((yield from self.load_and_store_many(unproven, loader, versions, ttl, {})))
        return found

    def fences_for_load(self, keys: list[str]) -> Step[dict[str, Version]]:
        """Snapshots of ``keys`` to store their loaded values under (none if that failed:
        the values are then loaded and returned, not stored)."""
        try:
            return (yield from self.snapshot_versions(keys))
        except CascacheError as exc:
            # A failed snapshot was reported by the step itself (version_snapshot_error),
            # once; anything else (the cache closed meanwhile) is reported here.
            if not isinstance(exc, OpError):
                call_hook(self.hooks.store_error, "get_many_or_load", keys_text(keys), exc)
            return {}

    def load_and_store_many(
        self,
        keys: list[str],
        loader: Callable[[list[str]], Mapping[str, V]],
        versions: Mapping[str, Version],
        ttl: float | None,
        led: Mapping[str, Flight],
    ) -> Step[dict[str, V]]:
        """One loader call for ``keys``, then one conditional batch store of what it
        returned under ``versions``; as the leader of the flights in ``led``, record both
        for their followers. Returns the loaded values."""
        # The effect is the loader's call alone (an async driver awaits what it returns);
        # the copy into a dict happens here, once the values are in.
        flights = tuple(led.values())

        def load() -> Mapping[str, V]:
            return loader(list(keys))

        run = (lambda: self.lead(flights, load)) if flights else load
        on_load = self.on_load
        started = time.perf_counter() if on_load is not None else 0.0
        got = not_awaitable(
            "get_many_or_load",
            keys,
            (yield from perform(Effect("source", "load_many", tuple(keys), run))),
            self.awaiting,
        )
        if not isinstance(got, Mapping):
            raise TypeError(
                f"cascache get_many_or_load({keys_text(keys)}): the loader returned "
                f"{type(got).__name__}; it must return a mapping of the keys it found to "
                "their values"
            )
        loaded = dict(got)
        if on_load is not None:
            call_hook(on_load, "get_many_or_load", tuple(keys), time.perf_counter() - started)
        for key, flight in led.items():
            if key in loaded:
                flight.value, flight.loaded = loaded[key], True
        items = [
            VersionedValue(key, loaded[key], versions[key])
            for key in keys
            if key in loaded and key in versions
        ]
        if items:
            try:
                if self.flights is not None:
                    # Before the store's first effect: its atomic check comes after this.
                    for flight in led.values():
                        self.flights.issue(flight)
                result = yield from self.set_if_versions(items, ttl)
                for flight in led.values():
                    flight.stored = result.outcome is WriteOutcome.STORED
            except CascacheError as exc:
                self.store_failed("get_many_or_load", keys_text(keys), exc)
        return {key: loaded[key] for key in keys if key in loaded}

    # -- steps ------------------------------------------------------------------------

    def read_batch(
        self, op: str, wanted: Sequence[str]
    ) -> Step[tuple[dict[str, V], dict[str, Version | None] | None]]:
        """Members served from the batch entry for ``wanted`` (the entry is dropped unless all
        are), and the current fences of ``wanted`` if this step read them; errors and hooks
        name ``op``."""
        self.note_local_batch()
        name = self.keys.batch(wanted)
        cks = {key: self.keys.single(key) for key in wanted}
        fences: dict[str, Version | None] | None = None
        reader = self.batch_reader
        try:
            if reader is not None:
                # One round trip: the fences of the requested keys are known up front.
                both = list(cks.values())
                blob, got = yield from perform(
                    self.both("read_batch", both, lambda: reader.read_batch(name, both))
                )
                if got is not None:
                    counted("read_batch", both, got)
                    fences = dict(zip(wanted, got, strict=True))
            else:
                blob = yield from perform(
                    self.values("get", [name], lambda: self.provider.get(name))
                )
        except Exception as exc:
            raise OpError(op, wanted, exc) from exc
        if blob is None:
            return {}, fences
        try:
            members = decode_batch(blob)
        except WireError as exc:
            yield from self.drop_batch(op, wanted, name, f"corrupt batch entry: {exc}")
            return {}, fences
        if sorted(m.key for m in members) != sorted(wanted):
            yield from self.drop_batch(op, wanted, name, "batch entry holds another member set")
            return {}, fences
        if fences is None:
            try:
                got = yield from self.current_many([cks[m.key] for m in members])
            except Exception as exc:
                call_hook(self.hooks.version_snapshot_error, op, keys_text(wanted), exc)
                return {}, None
            fences = {m.key: fence for m, fence in zip(members, got, strict=True)}
        served: dict[str, V] = {}
        fresh: list[tuple[CacheKey, Member]] = []
        rejected: list[str] = []
        verdicts = self.servable(op, members, [fences[m.key] for m in members])
        for member, verdict in zip(members, verdicts, strict=True):
            if isinstance(verdict, str):
                rejected.append(f"{member.key} ({verdict})")
            else:
                served[member.key] = verdict[0]
                fresh.append((cks[member.key], member))
        if rejected:
            reasons = "; ".join(rejected)
            yield from self.drop_batch(op, wanted, name, f"members not servable: {reasons}")
        yield from self.seed_after_read(op, fresh)
        return served, fences

    def servable(
        self, op: str, members: Sequence[Member], fences: Sequence[Version | None]
    ) -> list[tuple[V] | str]:
        """Judge every member against its own current fence (DESIGN §3.7), by the same rule
        as a single entry: each verdict is the member's value in a 1-tuple, or why not."""
        guard = self.options.batch_read_guard
        return [
            self.verdict(op, m.key, m.fence.to_bytes(), fence, m.payload, guard)
            for m, fence in zip(members, fences, strict=True)
        ]

    def drop_batch(self, op: str, wanted: Sequence[str], name: str, reason: str) -> Step[None]:
        """Delete a batch entry that could not be served whole, and report it."""
        try:
            yield from perform(self.values("delete", [name], lambda: self.provider.delete(name)))
        except Exception as exc:
            call_hook(self.hooks.cleanup_error, op, keys_text(wanted), exc)
        call_hook(self.hooks.batch_rejected, list(wanted), reason)

    def seed_after_read(self, op: str, fresh: Sequence[tuple[CacheKey, Member]]) -> Step[None]:
        """Write served batch members as single entries, stamped with their validated fence."""
        if self.read_seed is BatchReadSeed.OFF:
            return None
        for ck, member in fresh:
            frame = encode_single(member.fence, member.payload)
            try:
                if self.read_seed is BatchReadSeed.IF_MISSING:
                    yield from self.add(op, ck, frame)
                else:
                    yield from self.store(op, ck.key, ck.value, frame, self.default_ttl)
            except CascacheError as exc:
                # Seeding is an optimisation of a read that already succeeded.
                call_hook(self.hooks.store_error, op, ck.key, exc)
        return None

    def add(self, op: str, ck: CacheKey, frame: bytes) -> Step[bool]:
        """Store a stamped frame only where no single entry exists (for ``op``'s errors)."""
        # options.validate checked that it has ``add`` (a coroutine on an asyncio provider,
        # awaited by the driver like every other store call).
        provider = cast(AddProvider, self.provider)
        ttl = self.default_ttl
        try:
            cost = self.cost(frame)
            return (
                yield from perform(
                    self.values("add", [ck.value], lambda: provider.add(ck.value, frame, cost, ttl))
                )
            )
        except Exception as exc:
            raise OpError(op, ck.key, exc) from exc

    def seed_after_write(
        self, cks: Sequence[CacheKey], members: Sequence[Member], ttl: float | None
    ) -> Step[int]:
        """Seed single entries after a stored batch; every seed carries the *observed* fence."""
        if self.write_seed is BatchWriteSeed.OFF:
            return 0
        seeded = 0
        for ck, member in zip(cks, members, strict=True):
            frame = encode_single(member.fence, member.payload)
            try:
                if self.write_seed is BatchWriteSeed.STRICT:
                    outcome = yield from self.write_single(
                        "set_if_versions", ck, frame, member.fence, ttl
                    )
                else:
                    ttl_or_default = self.default_ttl if ttl is None else ttl
                    outcome = yield from self.store(
                        "set_if_versions", ck.key, ck.value, frame, ttl_or_default
                    )
            except CascacheError as exc:
                # The batch entry is stored; a seed is an optimisation, so its failure is
                # reported (and not counted) rather than hiding the stored batch.
                call_hook(self.hooks.store_error, "set_if_versions", ck.key, exc)
                continue
            seeded += outcome is WriteOutcome.STORED
        return seeded

    def write_singles(
        self, cks: Sequence[CacheKey], members: Sequence[Member], ttl: float | None
    ) -> Step[BatchWriteResult]:
        """Without batching: one conditional single write per member."""
        outcomes = []
        for ck, member in zip(cks, members, strict=True):
            frame = encode_single(member.fence, member.payload)
            outcomes.append(
                (yield from self.write_single("set_if_versions", ck, frame, member.fence, ttl))
            )
            # Each key its own outcome, as it happens (a later member may still raise).
            self.report_writes((ck.key,), outcomes[-1])
        seeded = sum(outcome is WriteOutcome.STORED for outcome in outcomes)
        failed = [outcome for outcome in outcomes if outcome is not WriteOutcome.STORED]
        return BatchWriteResult(failed[0] if failed else WriteOutcome.STORED, seeded)

    def check_items(self, items: Iterable[VersionedValue[V]]) -> list[VersionedValue[V]]:
        """Validate batch items; a key given twice is an error, not a silent overwrite."""
        if not isinstance(items, Iterable):
            raise TypeError(
                "cascache set_if_versions: items must be a collection of VersionedValue, "
                f"got {type(items).__name__}"
            )
        batch: list[VersionedValue[V]] = []
        seen: set[str] = set()
        for item in items:
            if not isinstance(item, VersionedValue):
                raise TypeError(
                    "cascache set_if_versions: items must be VersionedValue, "
                    f"got {type(item).__name__}"
                )
            key = canonical_key("set_if_versions", item.key)
            check_version("set_if_versions", key, item.version)
            if key in seen:
                raise ValueError(f"cascache set_if_versions: key {key!r} is given twice")
            seen.add(key)
            batch.append(item if item.key is key else VersionedValue(key, item.value, item.version))
        return batch

    def note_local_batch(self) -> None:
        """Report once that batch entries are validated against a per-process version store."""
        if not self._warned_local and isinstance(self.gens, LocalGenStore | LocalStore):
            self._warned_local = True
            call_hook(self.hooks.local_versions_with_batch, self.keys.namespace)
