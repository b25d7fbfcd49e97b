"""The single-key protocol: the one place that decides what is served and what is stored.

Two rules about this file (after h11's ``_state.py``):

1. Everything that decides freshness for a single key lives here; batch operations
   (``batch.py``) are built from the steps defined here and add no freshness rule of their
   own beyond "validate every member".
2. This file does not know how a store is reached. Every interaction with a store is an
   :class:`~cascache.effects.Effect`; a driver decides when it runs.

Theory of operation
-------------------

Every key has a *fence* in the version store: 128 random bits, replaced by a fresh one on
every ``invalidate``. An entry in the value store is a frame stamped with the fence its
writer observed *before* reading the source of truth.

* **get**: read the entry and the key's current fence; serve the value only if the stamp
  equals the current fence. Anything else (stale stamp, lost fence, corrupt bytes, a read
  guard saying no) is a miss, and the entry is dropped. A version store that cannot be
  read makes the read a miss (fail closed); a value store that cannot be read raises.
* **snapshot_version**: return the current fence, creating one if the key has none, in
  one atomic step. A filler therefore always holds a concrete fence.
* **set_if_version**: store the value stamped with the *observed* fence, and only if that
  fence is still current. Generic topologies check, then write: if an invalidate lands in
  between, the entry carries the old fence and no reader will ever serve it.
* **get_or_load**: get; on a miss, load under the fence the read delivered (read before
  the load, so it is what a snapshot at that moment returns), or under a snapshot if the
  read delivered none; then the conditional store.
* **invalidate**: advance the fence first, then delete the entry. Once the advance has
  succeeded, every older snapshot has lost; if it failed, ``invalidate`` raises even when
  the delete succeeded, because nothing guarantees freshness until a retry succeeds.

When the values and versions live in one server, a :mod:`~cascache.mutator` does each
single-key step as one atomic effect instead, with the same meaning.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence, Sized
from enum import StrEnum
from typing import Any, Generic, TypeVar, cast

from cascache.codec import Codec
from cascache.effects import Effect, Step, perform
from cascache.errors import (
    CascacheError,
    ClosedError,
    CodecError,
    ConfigError,
    EncodeError,
    InvalidateError,
    OpError,
    ReplyError,
    WireError,
    describe_keys,
)
from cascache.fence import Version, new_fence
from cascache.flight import Flight, Flights, current_task
from cascache.genstore import GenStore, LocalGenStore
from cascache.hooks import Hooks, call_hook, handler, hook_raised
from cascache.keys import KEY_CACHE_SIZE, CacheKey, KeySpace, canonical_key
from cascache.local import LocalStore
from cascache.mutator import KeyInvalidator, KeyReader, KeyWriter
from cascache.options import TTL, Options, ttl_seconds, validate
from cascache.provider import AsyncProvider, BulkDeleteProvider, ManyProvider, Provider
from cascache.results import Hit, WriteOutcome, WriteResult, new_hit
from cascache.wire import encode_single, split_single

V = TypeVar("V")
R = TypeVar("R")
L = TypeVar("L", bound=Sized)


class Refusal(StrEnum):
    """Why an entry or a batch member is not served: the start of every self-heal reason."""

    STALE = "stale version"
    """Stamped with a fence that is no longer the key's current fence."""
    LOST = "version lost"
    """The key has no current fence (evicted, expired or lost version state)."""
    CORRUPT = "corrupt entry"
    """The bytes are not a well-formed frame (or their checksum does not match)."""
    UNDECODABLE = "undecodable value"
    """A well-formed, current frame whose payload the codec refuses."""
    GUARD = "rejected by read_guard"
    """The caller's read guard (or batch read guard) said no."""


class SingleCore(Generic[V]):
    """The stores of one cache and the single-key operations, each a :data:`Step`.

    Built by ``cascache.new``; drive its steps with :func:`cascache.effects.drive` or
    :class:`cascache.effects.Process`. ``CAS`` is the synchronous front end.
    """

    def __init__(self, options: Options[V]) -> None:
        validate(options)
        self.options = options
        store = options.provider if isinstance(options.provider, LocalStore) else None
        # A LocalStore reads and writes by key: its cache needs names only off the hot path.
        self.keys = KeySpace(
            options.namespace, KEY_CACHE_SIZE if store is None else LocalStore.KEY_CACHE_SIZE
        )
        self.provider: Provider = options.provider
        # What the value store can do beyond the Provider basics, decided once: checking
        # a runtime-checkable protocol costs microseconds, on every batch call otherwise.
        # An AsyncProvider has both (its results are awaited by the driver, as ever).
        many = isinstance(options.provider, ManyProvider | AsyncProvider)
        bulk = isinstance(options.provider, BulkDeleteProvider | AsyncProvider)
        self.many_provider = cast(ManyProvider, options.provider) if many else None
        self.bulk_provider = cast(BulkDeleteProvider, options.provider) if bulk else None
        self.codec: Codec[V] = options.codec
        self.gens: GenStore = (
            options.gen_store if options.gen_store is not None else LocalGenStore()
        )
        self.reader: KeyReader | None = options.key_reader
        self.writer: KeyWriter | None = options.key_writer
        self.invalidator: KeyInvalidator | None = options.key_invalidator
        self.snapshot_key: Callable[[CacheKey], Version] | None = None
        """Snapshots a key's fence without its storage names (a bound ``LocalStore``)."""
        if store is not None:
            store.bind(self.keys, options.gen_store is None or options.gen_store is store)
            if options.gen_store is None:
                # Its own versions, and its single-key paths (validate saw no mutators).
                self.gens = self.reader = self.writer = self.invalidator = store
                self.snapshot_key = store.snapshot_key
        self.on_hit: Callable[[str, str], None] | None = None
        self.on_miss: Callable[[str, str], None] | None = None
        self.on_load: Callable[[str, Sequence[str], float], None] | None = None
        self.on_write: Callable[[str, str, WriteOutcome], None] | None = None
        self.on_invalidate: Callable[[str], None] | None = None
        self.hooks = options.hooks if options.hooks is not None else Hooks()
        self.disabled = options.disabled
        self.default_ttl = ttl_seconds("Options.default_ttl", options.default_ttl)
        self.cost: Callable[[bytes], int] = options.compute_set_cost or len
        self.closed = False
        self.flights: Flights | None = Flights() if options.coalesce else None
        """The loads in the air (``None``: coalescing off)."""
        self.awaiting = False
        """Whether an asyncio front end drives this core (a follower then awaits its
        flight instead of blocking the thread)."""

    @property
    def hooks(self) -> Hooks:
        """Where this cache reports events (``Options.hooks``)."""
        return self._hooks

    @hooks.setter
    def hooks(self, hooks: Hooks) -> None:
        # The traffic events fire on every operation: resolve them here, once, to the
        # method to call or ``None`` when the hook leaves them alone, so a cache hit with
        # the default hooks pays a ``None`` check. Replacing the hooks resolves again.
        self._hooks = hooks
        self.on_hit = handler(hooks, "hit")
        self.on_miss = handler(hooks, "miss")
        self.on_load = handler(hooks, "load")
        self.on_write = handler(hooks, "write")
        self.on_invalidate = handler(hooks, "invalidate")

    def close(self) -> None:
        """Refuse every later operation, then close the value store and the version store.
        Idempotent. Every store is closed even if one fails; the first failure is raised."""
        failure: Exception | None = None
        for store in self.shut():
            try:
                store.close()
            except Exception as exc:
                failure = failure or exc
        if failure is not None:
            raise failure

    def shut(self) -> list[Provider | GenStore]:
        """Refuse every later operation and return the stores still to close: the value
        store and the version store, once each; nothing if the cache was already shut.

        :meth:`close` closes them; the asyncio front end awaits an asyncio store's
        ``aclose`` instead.
        """
        if self.closed:
            return []
        self.closed = True
        self.keys.clear()
        # A bound LocalStore is both; closing it twice is harmless but pointless.
        same = cast(object, self.gens) is self.provider
        return [self.provider] if same else [self.provider, self.gens]

    def check_open(self, op: str, key: str | Sequence[str]) -> None:
        """Raise ``ClosedError`` naming ``op`` and ``key`` once the cache is closed."""
        if self.closed:
            raise ClosedError(op, key)

    # -- effects: one atomic interaction with one store each ---------------------------

    def values(self, op: str, keys: Sequence[str], run: Callable[[], R]) -> Effect[R]:
        """An effect on the value store."""
        return Effect("values", op, tuple(keys), run)

    def versions(self, op: str, keys: Sequence[str], run: Callable[[], R]) -> Effect[R]:
        """An effect on the version store."""
        return Effect("versions", op, tuple(keys), run)

    def both(self, op: str, ck: CacheKey | Sequence[CacheKey], run: Callable[[], R]) -> Effect[R]:
        """One atomic effect on a key's value and version together (a mutator)."""
        if isinstance(ck, CacheKey):
            return Effect("redis", op, ck.names, run)
        return Effect("redis", op, tuple(k for c in ck for k in (c.value, c.version)), run)

    # -- single-key operations ----------------------------------------------------------

    def get(self, key: str) -> Step[Hit[V] | None]:
        """The cached value of ``key`` if its stamp is the current fence, else ``None``."""
        hit, _ = yield from self.lookup(key)
        return hit

    def lookup(
        self,
        key: str,
        report: str | None = "get",
        op: str | None = None,
        ck: CacheKey | None = None,
    ) -> Step[tuple[Hit[V] | None, Version | None]]:
        """``get``, and the current fence the read delivered (``None`` if it read none): a
        miss that read the fence has read what a snapshot taken at that moment would have
        returned. The sync ``get`` drives this step directly (one generator less).

        ``report``: the operation whose hit or miss this read is, for the ``hit``/``miss``
        hooks (``None``: not reported, for a read that only checks a proof). ``op``: the
        operation its errors and other hooks name (default: ``report``, else ``"get"``).
        ``ck``: the key's storage keys, when the caller has derived them already.
        """
        if op is None:
            op = "get" if report is None else report
        if type(key) is not str or not key or not key.isascii():
            # Every hit comes through here: a plain ASCII ``str`` is already canonical,
            # and this check costs half the call that would say so.
            key = canonical_key(op, key)
        if self.closed:
            raise ClosedError(op, key)
        if self.disabled:
            if report is not None and self.on_miss is not None:
                call_hook(self.on_miss, report, key)
            return None, None
        if ck is None:
            ck = self.keys.single(key)
        reader = self.reader
        if reader is not None:
            # The one-interaction read (``both``), yielded here rather than through a
            # sub-step: this is every hit's path, and a generator frame costs a tenth of it.
            frame: bytes | None
            current: Version | None
            try:
                # Typed by annotation, not ``cast``: a cast is a call at run time.
                reply: Any = yield Effect("redis", "read", ck.names, lambda: reader.read(ck))
            except Exception as exc:
                raise OpError(op, key, exc) from exc
            frame, current = reply
        else:
            frame, current = yield from self.read_single(op, ck)
        if frame is None:
            if report is not None and self.on_miss is not None:
                call_hook(self.on_miss, report, key)
            return None, current
        hit, reason = self.judge(op, ck, frame, current)
        if reason is not None:
            yield from self.drop(op, ck.key, ck.value, reason)
        if report is not None:
            # ``call_hook`` inlined: this is every hit's path, and the extra call would
            # double what counting a hit costs.
            event = self.on_hit if hit is not None else self.on_miss
            if event is not None:
                try:
                    event(report, key)
                except Exception:
                    hook_raised(event)
        return hit, current

    def snapshot_version(self, key: str) -> Step[Version]:
        """The key's current fence, created if missing; take it *before* loading the source."""
        key = canonical_key("snapshot_version", key)
        return (yield from self.snapshot(self.keys.single(key)))

    def snapshot(self, ck: CacheKey) -> Step[Version]:
        """:meth:`snapshot_version` of a canonical key, by its storage keys (a fill's
        snapshot, which reports as ``snapshot_version``)."""
        key = ck.key
        self.check_open("snapshot_version", key)
        if self.disabled:
            # Nothing will be stored, so do no I/O; a fresh fence matches nothing.
            return new_fence()
        by_key = self.snapshot_key
        run = (
            (lambda: by_key(ck)) if by_key is not None else (lambda: self.gens.snapshot(ck.version))
        )
        # The effect yielded here: every fill of a key that has no fence yet takes this
        # step, and ``perform`` would add a generator per effect.
        got: Any
        try:
            got = yield Effect("versions", "snapshot", ck.version_name, run)
        except Exception as exc:
            call_hook(self.hooks.version_snapshot_error, "snapshot_version", key, exc)
            raise OpError("snapshot_version", key, exc) from exc
        fence: Version = got
        return fence

    def set_if_version(
        self, key: str, value: V, version: Version, ttl: float | None
    ) -> Step[WriteResult]:
        """Store ``value`` stamped with ``version`` only if ``version`` is still current.

        ``ttl`` is already normalised to seconds (``None``: the default TTL).
        """
        key = canonical_key("set_if_version", key)
        self.check_open("set_if_version", key)
        check_version("set_if_version", key, version)
        ck = self.keys.single(key)
        return WriteResult((yield from self.store_if_version(ck, value, version, ttl)))

    def store_if_version(
        self, ck: CacheKey, value: V, version: Version, ttl: float | None
    ) -> Step[WriteOutcome]:
        """:meth:`set_if_version` of a canonical key, by its storage keys, and a checked
        version (a fill's store, which reports as ``set_if_version``), returning the
        outcome alone."""
        key = ck.key
        self.check_open("set_if_version", key)
        if self.disabled:
            if self.on_write is not None:
                call_hook(self.on_write, "set_if_version", key, WriteOutcome.DISABLED)
            return WriteOutcome.DISABLED
        frame = encode_single(version, self.encode("set_if_version", key, value))
        outcome = yield from self.write_single("set_if_version", ck, frame, version, ttl)
        if self.on_write is not None:
            call_hook(self.on_write, "set_if_version", key, outcome)
        return outcome

    def invalidate(self, key: str) -> Step[None]:
        """Advance the key's fence, then delete its entry; raise if the advance failed.

        Runs even on a disabled cache: other nodes sharing the version store rely on it.
        """
        key = canonical_key("invalidate", key)
        self.check_open("invalidate", key)
        ck = self.keys.single(key)
        if self.invalidator is not None:
            invalidator = self.invalidator
            try:
                yield from perform(self.both("invalidate", ck, lambda: invalidator.invalidate(ck)))
            except Exception as exc:
                call_hook(self.hooks.version_advance_error, key, exc)
                call_hook(self.hooks.invalidate_outage, key, exc, None)
                raise InvalidateError(key, exc) from exc
            if self.on_invalidate is not None:
                call_hook(self.on_invalidate, key)
            return None
        advance_error: Exception | None = None
        delete_error: Exception | None = None
        try:
            yield from perform(
                self.versions("advance", [ck.version], lambda: self.gens.advance(ck.version))
            )
        except Exception as exc:
            advance_error = exc
            call_hook(self.hooks.version_advance_error, key, exc)
        try:
            yield from perform(
                self.values("delete", [ck.value], lambda: self.provider.delete(ck.value))
            )
        except Exception as exc:
            delete_error = exc
        if advance_error is not None:
            call_hook(self.hooks.invalidate_outage, key, advance_error, delete_error)
            raise InvalidateError(key, advance_error, delete_error) from advance_error
        if delete_error is not None:
            call_hook(self.hooks.cleanup_error, "invalidate", key, delete_error)
        if self.on_invalidate is not None:
            call_hook(self.on_invalidate, key)
        return None

    def get_or_load(self, key: str, loader: Callable[[], V], ttl: float | None) -> Step[V]:
        """The safe fill path: get, else snapshot, load, conditional store; returns the value.

        A miss whose read delivered the key's current fence (an entry that did not serve,
        or a one-server read of entry and fence together) loads under that fence: it was
        read before the load, exactly as a snapshot finding a fence would have returned
        it, so the separate snapshot is only taken when the read delivered none.

        With coalescing (the default), a miss holding its fence leads the key's flight or
        joins the one in the air, and a follower returns the flight's value only with
        proof, taken after it joined, that the flight's fence was still current
        (:meth:`follow`, ``cascache.flight``); without proof it loads for itself.

        Cache trouble never hides the source: if a cache step fails, the value still comes
        from ``loader`` and the failure is reported to a hook: ``read_error`` (the read;
        the key also counts as a miss), ``version_snapshot_error`` (the snapshot),
        ``codec_error`` (the codec refused the loaded value) or ``store_error`` (the store).
        """
        key = canonical_key("get_or_load", key)
        self.check_open("get_or_load", key)
        if not callable(loader):
            raise bad_loader("get_or_load", key, loader)
        ck = self.keys.single(key)
        hit: Hit[V] | None = None
        version: Version | None = None
        try:
            hit, version = yield from self.lookup(key, "get_or_load", ck=ck)
        except CascacheError as exc:
            call_hook(self.hooks.read_error, "get_or_load", key, exc)
            if self.on_miss is not None:
                call_hook(self.on_miss, "get_or_load", key)
        if hit is not None:
            return hit.value
        if version is None:
            version = yield from self.fence_for_load(ck, version)
        flights = self.flights
        leading: Flight | None = None
        if version is not None and flights is not None and not self.disabled:
            flight, joined = flights.join(key, version, current_task() if self.awaiting else None)
            if flight is not None and joined is None:
                leading = flight
            elif flight is not None and joined is not None:
                proven, value, version = yield from self.follow(key, flight, joined)
                if proven:
                    return cast(V, value)
                # No proof: load alone, under the fence the proof read delivered.
                version = yield from self.fence_for_load(ck, version)
        try:
            return (yield from self.load_and_store(ck, loader, version, ttl, leading))
        finally:
            if leading is not None and flights is not None:
                flights.land(key, leading)

    def fence_for_load(self, ck: CacheKey, version: Version | None) -> Step[Version | None]:
        """``version`` if a read delivered one, else a snapshot (``None`` if that failed:
        the caller then loads without storing)."""
        if version is not None:
            return version
        try:
            return (yield from self.snapshot(ck))
        except CascacheError as exc:
            # A failed snapshot was reported by the step itself (version_snapshot_error),
            # once; anything else (the cache closed meanwhile) is reported here.
            if not isinstance(exc, OpError):
                call_hook(self.hooks.store_error, "get_or_load", ck.key, exc)
            return None

    def load_and_store(
        self,
        ck: CacheKey,
        loader: Callable[[], V],
        version: Version | None,
        ttl: float | None,
        flight: Flight | None,
    ) -> Step[V]:
        """Load the source, then store the value conditionally under ``version`` (when
        there is one); as the leader of ``flight``, record both for its followers."""
        key = ck.key
        run = loader if flight is None else (lambda: self.lead((flight,), loader))
        on_load = self.on_load
        # Timed around the load effect as the step sees it: the loader's call (and, under
        # asyncio, the await of what it returned); only when a hook wants the duration.
        started = time.perf_counter() if on_load is not None else 0.0
        loaded: Any = yield Effect("source", "load", (key,), run)
        value: V = not_awaitable("get_or_load", key, loaded, self.awaiting)
        if on_load is not None:
            call_hook(on_load, "get_or_load", (key,), time.perf_counter() - started)
        if flight is not None:
            flight.value, flight.loaded = value, True
        if version is not None:
            try:
                if flight is not None and self.flights is not None:
                    # Before the store's first effect: its atomic check comes after this.
                    self.flights.issue(flight)
                outcome = yield from self.store_if_version(ck, value, version, ttl)
                if flight is not None:
                    flight.stored = outcome is WriteOutcome.STORED
            except CascacheError as exc:
                self.store_failed("get_or_load", key, exc)
        return value

    def store_failed(self, op: str, key: str, error: CascacheError) -> None:
        """Report why a fill's conditional store raised: the codec refused the value
        (``codec_error``), or the store failed (``store_error``)."""
        hooks = self.hooks
        event = hooks.codec_error if isinstance(error, EncodeError) else hooks.store_error
        call_hook(event, op, key, error)

    @staticmethod
    def lead(flights: Collection[Flight], load: Callable[[], R]) -> R:
        """Run the leader's load, noting its thread on every flight it leads: the loader
        calling back in for one of those keys must load alone, not wait for itself."""
        thread = threading.get_ident()
        for flight in flights:
            flight.loading_thread = thread
        try:
            return load()
        finally:
            for flight in flights:
                flight.loading_thread = None

    def wait_for(self, key: str, flight: Flight) -> Step[None]:
        """Wait, as one effect, until ``flight`` lands (awaited by the asyncio front end)."""
        waiting = flight.wait_async if self.awaiting else flight.wait
        yield Effect("flight", "wait", (key,), waiting, ready=flight.is_landed)

    def follow(
        self, key: str, flight: Flight, joined: int, op: str = "get_or_load"
    ) -> Step[tuple[bool, V | None, Version | None]]:
        """Wait for ``flight`` to land, then decide whether its value may be returned:
        ``(True, value, None)`` with proof that it is fresh (DESIGN §3.9), else ``(False,
        None, fence)`` with the fence a fresh read delivered (``None`` if none).

        Proof is one of: the flight's conditional store was issued after this caller
        joined (tick ``joined``) and stored; or a read made after the flight landed
        serves an entry, or delivers the fence the flight loaded under.
        """
        yield from self.wait_for(key, flight)
        issued = flight.issued
        if flight.loaded and flight.stored and issued is not None and issued > joined:
            return True, cast(V, flight.value), None
        try:
            # A proof read, not the caller's hit or miss (its first read was that).
            hit, current = yield from self.lookup(key, None, op)
        except CascacheError as exc:
            call_hook(self.hooks.read_error, op, key, exc)
            return False, None, None
        if hit is not None:
            return True, hit.value, None
        if flight.loaded and current is not None and current == flight.fence:
            return True, cast(V, flight.value), None
        return False, None, current

    # -- steps shared with batch operations ---------------------------------------------

    def read_single(self, op: str, ck: CacheKey) -> Step[tuple[bytes | None, Version | None]]:
        """The generic read of one key: its stored frame from the value store, then its
        current fence from the version store (not read on a miss). ``lookup`` reads both
        in one interaction instead when the cache has a key reader."""
        # Every generic read comes through here, so it yields its effects itself:
        # ``perform`` would add a generator per effect.
        # Typed by annotation, not ``cast`` (a call at run time), as in ``lookup``.
        got: Any
        try:
            got = yield self.values("get", (ck.value,), lambda: self.provider.get(ck.value))
        except Exception as exc:
            raise OpError(op, ck.key, exc) from exc
        frame: bytes | None = got
        if frame is None:
            return None, None
        try:
            got = yield self.versions(
                "current", (ck.version,), lambda: self.gens.current(ck.version)
            )
        except Exception as exc:
            # Fail closed: without the current fence nothing can be served.
            call_hook(self.hooks.version_snapshot_error, op, ck.key, exc)
            return None, None
        current: Version | None = got
        return frame, current

    def read_singles(
        self,
        op: str,
        cks: Sequence[CacheKey],
        fences: Mapping[str, Version | None] | None = None,
    ) -> Step[dict[str, V]]:
        """Validated values of several keys, read in one interaction per store.

        ``fences``: the keys' current fences, when this operation has already read them
        (``get_many`` reads them with the batch entry). Then only the frames are read, and
        judged against those fences: they were read after the operation started, so an
        invalidate that returned before it had already replaced them, and every entry
        written under an older fence misses, as it would against fences read later.
        """
        if not cks:
            return {}
        pairs: list[tuple[bytes | None, Version | None]]
        if fences is not None:
            frames = yield from self.read_frames(op, cks)
            pairs = [(frame, fences[ck.key]) for ck, frame in zip(cks, frames, strict=True)]
        elif self.reader is not None:
            reader = self.reader
            try:
                pairs = counted(
                    "read_many",
                    cks,
                    (
                        yield from perform(
                            self.both("read_many", cks, lambda: reader.read_many(cks))
                        )
                    ),
                )
            except Exception as exc:
                raise OpError(op, [ck.key for ck in cks], exc) from exc
        else:
            pairs = yield from self.read_frames_then_fences(op, cks)
        found: dict[str, V] = {}
        dropped: list[tuple[CacheKey, str]] = []
        for ck, (frame, current) in zip(cks, pairs, strict=True):
            if frame is None:
                continue
            hit, reason = self.judge(op, ck, frame, current)
            if hit is not None:
                found[ck.key] = hit.value
            elif reason is not None:
                dropped.append((ck, reason))
        if dropped:
            yield from self.drop_many(op, dropped)
        return found

    def read_frames(self, op: str, cks: Sequence[CacheKey]) -> Step[list[bytes | None]]:
        """The stored frames of several keys, in order, in one value-store interaction."""
        names = [ck.value for ck in cks]
        provider, many = self.provider, self.many_provider
        try:
            if many is not None:
                return counted(
                    "get_many",
                    names,
                    (
                        yield from perform(
                            self.values("get_many", names, lambda: many.get_many(names))
                        )
                    ),
                )
            return (
                yield from perform(
                    self.values("get_many", names, lambda: [provider.get(n) for n in names])
                )
            )
        except Exception as exc:
            raise OpError(op, [ck.key for ck in cks], exc) from exc

    def read_frames_then_fences(
        self, op: str, cks: Sequence[CacheKey]
    ) -> Step[list[tuple[bytes | None, Version | None]]]:
        """Generic many-key read: frames from the value store, then the fences of those found."""
        frames = yield from self.read_frames(op, cks)
        present = [ck for ck, frame in zip(cks, frames, strict=True) if frame is not None]
        if not present:
            return [(None, None)] * len(cks)
        try:
            fences = yield from self.current_many(present)
        except Exception as exc:
            call_hook(
                self.hooks.version_snapshot_error, op, keys_text(ck.key for ck in present), exc
            )
            return [(None, None)] * len(cks)
        by_key = dict(zip((ck.key for ck in present), fences, strict=True))
        return [
            (frame, by_key.get(ck.key)) if frame is not None else (None, None)
            for ck, frame in zip(cks, frames, strict=True)
        ]

    def current_many(self, cks: Sequence[CacheKey]) -> Step[list[Version | None]]:
        """The current fences of several keys in one version-store interaction."""
        names = [ck.version for ck in cks]
        return counted(
            "current_many",
            names,
            (
                yield from perform(
                    self.versions("current_many", names, lambda: self.gens.current_many(names))
                )
            ),
        )

    def judge(
        self, op: str, ck: CacheKey, frame: bytes, current: Version | None
    ) -> tuple[Hit[V] | None, str | None]:
        """The value, if ``frame`` is well-formed, stamped with ``current`` and guard-approved;
        else why the entry must be dropped."""
        try:
            stamp, payload = split_single(frame)
        except WireError as exc:
            return None, f"{Refusal.CORRUPT}: {exc}"
        verdict = self.verdict(op, ck.key, stamp, current, payload, self.options.read_guard)
        if isinstance(verdict, str):
            return None, verdict
        return new_hit(verdict[0]), None

    def verdict(
        self,
        op: str,
        key: str,
        stamp: bytes,
        current: Version | None,
        payload: bytes,
        guard: Callable[[str, V], bool] | None,
    ) -> tuple[V] | str:
        """The freshness rule, for single entries and batch members alike: the value (in a
        1-tuple, so ``None`` survives) if ``stamp`` (the fence the entry carries, as stored)
        is the current fence, the payload decodes and the guard approves; otherwise why not
        (a :class:`Refusal`, with detail)."""
        if current is None:
            return Refusal.LOST
        if not current.matches(stamp):
            return Refusal.STALE
        try:
            value = self.codec.decode(payload)
        except CodecError as exc:
            return f"{Refusal.UNDECODABLE}: {exc}"
        if guard is not None and not self.run_guard(op, key, guard, value):
            return Refusal.GUARD
        return (value,)

    def run_guard(self, op: str, key: str, guard: Callable[[str, V], bool], value: V) -> bool:
        """Call a read guard; its own exceptions become an ``OpError`` naming the key."""
        try:
            return bool(guard(key, value))
        except Exception as exc:
            raise OpError(op, key, exc) from exc

    def drop(self, op: str, key: str, storage_key: str, reason: str) -> Step[None]:
        """Delete an unservable entry (self-heal). A failed delete is only reported."""
        try:
            yield from perform(
                self.values("delete", [storage_key], lambda: self.provider.delete(storage_key))
            )
        except Exception as exc:
            call_hook(self.hooks.cleanup_error, op, key, exc)
        call_hook(self.hooks.self_healed, op, key, reason)

    def drop_many(self, op: str, dropped: Sequence[tuple[CacheKey, str]]) -> Step[None]:
        """Delete several unservable entries in one value-store interaction."""
        names = [ck.value for ck, _ in dropped]
        provider, bulk = self.provider, self.bulk_provider
        try:
            if bulk is not None:
                yield from perform(
                    self.values("delete_many", names, lambda: bulk.delete_many(names))
                )
            else:
                yield from perform(
                    self.values("delete_many", names, lambda: delete_each(provider, names))
                )
        except Exception as exc:
            call_hook(self.hooks.cleanup_error, op, keys_text(ck.key for ck, _ in dropped), exc)
        for ck, reason in dropped:
            call_hook(self.hooks.self_healed, op, ck.key, reason)

    def write_single(
        self, op: str, ck: CacheKey, frame: bytes, version: Version, ttl: float | None
    ) -> Step[WriteOutcome]:
        """Store ``frame`` (stamped with ``version``) only if ``version`` is current."""
        ttl = self.default_ttl if ttl is None else ttl
        if self.writer is not None:
            writer = self.writer
            # Yielded here, as in ``snapshot_version``: every fill's store on a one-server
            # topology or a LocalStore comes this way.
            got: Any
            try:
                got = yield Effect(
                    "redis",
                    "write_if_version",
                    ck.names,
                    lambda: writer.write_if_version(ck, frame, version, ttl),
                )
            except Exception as exc:
                raise OpError(op, ck.key, exc) from exc
            stored: bool | None = got
            if stored is None:
                call_hook(self.hooks.provider_set_rejected, ck.key, False)
                return WriteOutcome.PROVIDER_REJECTED
            return WriteOutcome.STORED if stored else WriteOutcome.VERSION_MISMATCH
        try:
            current = yield from perform(
                self.versions("current", [ck.version], lambda: self.gens.current(ck.version))
            )
        except Exception as exc:
            call_hook(self.hooks.version_snapshot_error, op, ck.key, exc)
            return WriteOutcome.SNAPSHOT_ERROR
        if current != version:
            return WriteOutcome.VERSION_MISMATCH
        return (yield from self.store(op, ck.key, ck.value, frame, ttl))

    def store(
        self,
        op: str,
        key: str | Sequence[str],
        storage_key: str,
        frame: bytes,
        ttl: float | None,
        batch: bool = False,
    ) -> Step[WriteOutcome]:
        """An unconditional value-store write of an already stamped frame (``key``: the
        logical key, or a batch entry's member keys)."""
        try:
            cost = self.cost(frame)
            stored = yield from perform(
                self.values(
                    "set", [storage_key], lambda: self.provider.set(storage_key, frame, cost, ttl)
                )
            )
        except Exception as exc:
            raise OpError(op, key, exc) from exc
        if not stored:
            text = key if isinstance(key, str) else keys_text(key)
            call_hook(self.hooks.provider_set_rejected, text, batch)
            return WriteOutcome.PROVIDER_REJECTED
        return WriteOutcome.STORED

    def encode(self, op: str, key: str, value: V) -> bytes:
        """Encode a value, naming the operation and key if the codec refuses it."""
        try:
            return self.codec.encode(value)
        except Exception as exc:
            raise EncodeError(op, key, exc) from exc

    def ttl(self, op: str, ttl: TTL | None, key: object = None) -> float | None:
        """Normalise a per-call TTL (seconds or ``timedelta``); ``None`` means the default.
        A bad one raises ``ConfigError`` naming ``op`` and, for a single-key call, ``key``."""
        if ttl is None:
            return None
        try:
            return ttl_seconds("ttl", ttl)
        except ConfigError:
            # Name the call only when it is wrong: describing the key on every call would
            # cost more than the rest of a cache hit.
            call = f"{op}({describe_keys([key])})" if isinstance(key, str) else op
            return ttl_seconds(f"cascache {call} ttl", ttl)


def counted(store_op: str, asked: Sized, reply: L) -> L:
    """``reply`` if it holds one result per key asked; a store that answers with more or
    fewer is broken, and pairing its results with keys would pair them with the wrong ones.

    Checked in the step, after the effect: an effect is the store's call alone, so that an
    async driver can await what the call returns.
    """
    if len(reply) != len(asked):
        raise ReplyError(f"{store_op} returned {len(reply)} results for {len(asked)} keys")
    return reply


_PLAIN_TYPES: frozenset[type] = frozenset(
    {dict, list, tuple, str, bytes, int, float, bool, type(None)}
)
"""Types whose instances are never awaitable."""


def not_awaitable(op: str, key: str | Sequence[str], value: R, awaited: bool = False) -> R:
    """``value``, unless a loader handed back something to await: the sync driver cannot
    await it, so it is closed (no "never awaited" warning) and refused, naming the fix.

    ``awaited``: the asyncio driver already awaited what the loader returned, so this is
    an awaitable that the awaited result itself was.
    """
    if type(value) in _PLAIN_TYPES:
        # Most loaders return one of these; asking ``inspect`` costs four times as much.
        return value
    if inspect.isawaitable(value):
        close = getattr(value, "close", None)
        if callable(close):
            close()
        where = repr(key) if isinstance(key, str) else keys_text(key)
        if awaited:
            raise TypeError(
                f"cascache {op}({where}): awaiting the loader gave {type(value).__name__}, "
                "which needs awaiting again: does the loader return a coroutine it did not "
                "await?"
            )
        raise TypeError(
            f"cascache {op}({where}): the loader returned {type(value).__name__}, which "
            "needs awaiting: use cascache.aio (AsyncCAS) for async loaders"
        )
    return value


def delete_each(provider: Provider, names: Sequence[str]) -> None:
    """Delete keys one by one, for providers without ``delete_many``."""
    for name in names:
        provider.delete(name)


def bad_loader(op: str, key: str | Sequence[str], loader: object) -> TypeError:
    """The error for a ``loader`` that cannot be called, raised before anything is read: a
    call that failed only after a miss would make the bug depend on what the cache held."""
    where = repr(key) if isinstance(key, str) else keys_text(key)
    return TypeError(
        f"cascache {op}({where}): loader must be a function to call on a miss, "
        f"got {type(loader).__name__} {loader!r:.40}"
    )


def check_version(op: str, key: str, version: object) -> Version:
    """Reject anything that is not a ``Version`` handed out by a snapshot."""
    if not isinstance(version, Version):
        raise TypeError(
            f"cascache {op}({key!r}): version must be a Version from snapshot_version, "
            f"got {type(version).__name__}"
        )
    return version


def keys_text(keys: Iterable[str]) -> str:
    """The keys of a batch operation as the bounded text hooks receive (the same text an
    ``OpError`` for them carries as ``key``)."""
    return describe_keys(tuple(keys))
