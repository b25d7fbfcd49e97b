"""Cache configuration and its validation. Bad configuration fails at construction."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Generic, TypeVar

from cascache.codec import Codec
from cascache.errors import ConfigError
from cascache.genstore import AsyncGenStore, GenStore
from cascache.hooks import Hooks
from cascache.keys import canonical_namespace
from cascache.local import LocalStore
from cascache.mutator import KeyInvalidator, KeyReader, KeyWriter
from cascache.provider import AddProvider, AsyncProvider, Provider

V = TypeVar("V")

MAX_TTL_SECONDS = 100 * 365 * 24 * 3600
"""Longer TTLs are refused: stores (Redis PX included) cannot represent them all."""

TTL = float | int | timedelta
"""A time to live: seconds (int or float) or a ``timedelta``."""


class BatchReadSeed(StrEnum):
    """What a batch hit does to the members' single entries."""

    OFF = "off"
    """Batch hits are read-only (the default)."""
    ALL = "all"
    """Write every served member as a single entry, stamped with its validated fence."""
    IF_MISSING = "if_missing"
    """As ``ALL`` but only where no single entry exists (needs an ``AddProvider``)."""


class BatchWriteSeed(StrEnum):
    """What a successful ``set_if_versions`` does to the members' single entries."""

    STRICT = "strict"
    """Seed each single through the conditional single-key write (the default)."""
    FAST = "fast"
    """Seed each single unconditionally, stamped with the version the caller observed."""
    OFF = "off"
    """Write only the batch entry."""


@dataclass(frozen=True, kw_only=True)
class Settings(Generic[V]):
    """What every cache takes besides its stores (the base of each front end's options).

    Attributes:
        namespace: prefixes every storage key; caches with different namespaces never collide.
        codec: turns values into bytes and back.
        default_ttl: entry lifetime when a write gives none (``None``: no expiry).
        batch_ttl: batch entry lifetime (``None``: ``default_ttl``).
        disabled: every read misses and every write reports ``disabled``.
        compute_set_cost: the cost an entry is charged in the provider (default: its size).
        disable_batch: ``get_many``/``set_if_versions`` use single entries only.
        read_guard: a final check on a decoded, validated value; ``False`` drops the entry.
        batch_read_guard: the same for a member served from a batch entry.
        batch_read_seed: see :class:`BatchReadSeed`.
        batch_write_seed: see :class:`BatchWriteSeed`.
        hooks: receives events (self-heal, rejected writes, version-store trouble).
        coalesce: concurrent ``get_or_load`` misses of one key in this cache share one
            load, and a caller that joined another's load returns it only with proof that
            it is fresh (``cascache.flight``; default ``True``).
    """

    namespace: str
    codec: Codec[V]
    default_ttl: TTL | None = None
    batch_ttl: TTL | None = None
    disabled: bool = False
    compute_set_cost: Callable[[bytes], int] | None = None
    disable_batch: bool = False
    read_guard: Callable[[str, V], bool] | None = None
    batch_read_guard: Callable[[str, V], bool] | None = None
    batch_read_seed: BatchReadSeed = BatchReadSeed.OFF
    batch_write_seed: BatchWriteSeed = BatchWriteSeed.STRICT
    hooks: Hooks | None = None
    coalesce: bool = True


@dataclass(frozen=True, kw_only=True)
class Options(Settings[V]):
    """Everything ``cascache.new`` needs; ``namespace``, ``provider`` and ``codec`` are required.

    Attributes:
        provider: the value store.
        gen_store: the version store (default: a private ``LocalGenStore``).
        key_reader, key_writer, key_invalidator: single-key atomic paths (see ``mutator``).

    The rest as in :class:`Settings`.
    """

    provider: Provider
    gen_store: GenStore | None = None
    key_reader: KeyReader | None = None
    key_writer: KeyWriter | None = None
    key_invalidator: KeyInvalidator | None = None


def ttl_seconds(what: str, ttl: TTL | None) -> float | None:
    """Normalise a TTL to seconds, rejecting nonsense with a message naming ``what``."""
    if ttl is None:
        return None
    if isinstance(ttl, bool):
        raise ConfigError(f"{what} must be seconds or a timedelta, got {ttl!r}")
    seconds = ttl.total_seconds() if isinstance(ttl, timedelta) else ttl
    if not isinstance(seconds, int | float):
        raise ConfigError(f"{what} must be seconds or a timedelta, got {ttl!r}")
    if not 0 < seconds <= MAX_TTL_SECONDS:
        raise ConfigError(
            f"{what} must be a positive duration of at most {MAX_TTL_SECONDS:g} s "
            f"(~100 years), got {ttl!r}"
        )
    return float(seconds)


STORES = ("provider", "gen_store", "key_reader", "key_writer", "key_invalidator")
"""The ``Options`` fields that hold a store."""


def validate(options: Options[V]) -> None:
    """Raise ``ConfigError`` naming the first thing wrong with ``options``."""
    if not isinstance(options, Options):
        raise ConfigError(f"cascache.new takes an Options, got {type(options).__name__}")
    try:
        canonical_namespace(options.namespace)
    except ValueError as exc:
        raise ConfigError(f"Options.{exc}") from None
    for name in (STORES[0], "codec", *STORES[1:]):  # provider first, as before
        part = getattr(options, name)
        # A runtime-checkable protocol accepts the class itself; only instances work.
        if isinstance(part, type):
            raise ConfigError(
                f"Options.{name} must be an instance, got the class {part.__name__}: "
                f"write {part.__name__}(...)"
            )
    for name in ("disabled", "disable_batch", "coalesce"):
        if not isinstance(getattr(options, name), bool):
            raise ConfigError(
                f"Options.{name} must be True or False, got {getattr(options, name)!r}"
            )
    if options.hooks is not None and not isinstance(options.hooks, Hooks):
        raise ConfigError(
            "Options.hooks must be a cascache.Hooks (subclass it), "
            f"got {type(options.hooks).__name__}"
        )
    if options.provider is None or not isinstance(options.provider, Provider | AsyncProvider):
        raise ConfigError(
            "Options.provider is required and must implement get, set, delete and close "
            "(or, for the asyncio API, be an AsyncProvider)"
        )
    if options.codec is None or not isinstance(options.codec, Codec):
        raise ConfigError("Options.codec is required and must implement encode and decode")
    if options.gen_store is not None and not isinstance(
        options.gen_store, GenStore | AsyncGenStore
    ):
        raise ConfigError(
            "Options.gen_store must implement snapshot, snapshot_many, current, "
            "current_many, advance and close (or, for the asyncio API, be an AsyncGenStore)"
        )
    ttl_seconds("Options.default_ttl", options.default_ttl)
    ttl_seconds("Options.batch_ttl", options.batch_ttl)
    try:
        BatchReadSeed(options.batch_read_seed)
        BatchWriteSeed(options.batch_write_seed)
    except ValueError as exc:
        raise ConfigError(f"Options: {exc}") from None
    if BatchReadSeed(options.batch_read_seed) is BatchReadSeed.IF_MISSING and not isinstance(
        options.provider, AddProvider
    ):
        raise ConfigError(
            'batch_read_seed="if_missing" needs a provider with add() (store only if absent); '
            f"{type(options.provider).__name__} has none"
        )
    for name, part, kind in (
        ("key_reader", options.key_reader, KeyReader),
        ("key_writer", options.key_writer, KeyWriter),
        ("key_invalidator", options.key_invalidator, KeyInvalidator),
    ):
        if part is not None and not isinstance(part, kind):
            raise ConfigError(f"Options.{name} does not implement {kind.__name__}")
    mutators = (options.key_reader, options.key_writer, options.key_invalidator)
    if any(m is not None for m in mutators) and options.gen_store is None:
        raise ConfigError(
            "key_reader/key_writer/key_invalidator work on a shared version store: "
            "set Options.gen_store to the store they use"
        )
    for name, fn in (
        ("compute_set_cost", options.compute_set_cost),
        ("read_guard", options.read_guard),
        ("batch_read_guard", options.batch_read_guard),
    ):
        if fn is not None and not callable(fn):
            raise ConfigError(f"Options.{name} must be callable, got {fn!r}")
    if options.compute_set_cost is not None and isinstance(options.provider, LocalStore):
        raise ConfigError(
            "Options.compute_set_cost does not apply to a LocalStore, which charges each "
            "record its size in bytes (bound it with LocalStore(max_bytes=...))"
        )
