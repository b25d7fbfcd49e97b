"""Cache configuration and its validation. Bad configuration fails at construction."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Generic, TypeVar

from cascache.codec import Codec
from cascache.errors import ConfigError
from cascache.genstore import AsyncGenStore, GenStore
from cascache.hooks import Hooks, check_hooks
from cascache.keys import canonical_namespace
from cascache.local import LocalStore
from cascache.mutator import KeyInvalidator, KeyReader, KeyWriter
from cascache.provider import AsyncProvider, Provider

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
        hooks: receives events: traffic (hit, miss, load, write, invalidate) and what the
            cache handled quietly (self-heal, rejected writes, store trouble); see
            :class:`~cascache.hooks.Hooks`.
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


_BUILDERS: dict[str, tuple[str, str]] = {
    "cascache.options.Options": ("cascache.Options", "cascache.new(options)"),
    "cascache.aio.AsyncOptions": ("cascache.aio.AsyncOptions", "cascache.aio.new(options)"),
    "cascache.redis.Options": ("cascache.redis.Options", "cascache.redis.new(options)"),
    "cascache.redis.aio.Options": (
        "cascache.redis.aio.Options",
        "await cascache.redis.aio.new(options)",
    ),
}
"""Each options class, by where it is defined: its public name and the call that takes it
(by name, so that this module need not import the Redis front ends)."""


def check_bools(owner: str, options: object, names: Sequence[str]) -> None:
    """Raise ``ConfigError`` unless each of ``names`` on ``options`` is a bool (a truthy
    string would pass for ``True``); ``owner``, if given, starts the message."""
    for name in names:
        value = getattr(options, name)
        if not isinstance(value, bool):
            prefix = f"{owner}: " if owner else ""
            raise ConfigError(f"{prefix}Options.{name} must be True or False, got {value!r}")


def wrong_options(builder: str, wanted: str, options: object) -> ConfigError:
    """The error for ``builder`` given something other than its ``wanted`` options: another
    front end's options name the call that takes them, so the fix is in the message."""
    if isinstance(options, type):
        return ConfigError(
            f"{builder} takes a {wanted} instance, got the class {options.__name__}: "
            f"write {wanted}(namespace=..., ...)"
        )
    kind = type(options)
    known = _BUILDERS.get(f"{kind.__module__}.{kind.__qualname__}")
    if known is not None:
        name, call = known
        return ConfigError(f"{builder} takes a {wanted}, got a {name}: call {call} instead")
    return ConfigError(f"{builder} takes a {wanted}, got {kind.__name__}")


def _not_a_store(name: str, part: object) -> str | None:
    """Why ``part``, given as ``Options.<name>``, is a common mistake rather than a store."""
    if any(kind.__module__.split(".")[0] == "redis" for kind in type(part).__mro__):
        # A redis-py client has get, set and delete, so the store protocols alone would
        # take it; its replies are not what a store returns.
        return (
            f"Options.{name} is a redis-py client, not a store: for values and versions "
            "in Redis call cascache.redis.new(cascache.redis.Options(client=client, "
            "namespace=..., codec=...)); for values in process and versions in Redis use "
            "provider=cascache.LocalStore(), gen_store=cascache.redis.new_gen_store(client)"
        )
    return None


def _codec_hint(codec: object) -> str:
    """What to write instead of ``codec``, which is not a codec instance."""
    if isinstance(codec, type):
        if hasattr(codec, "encode") and hasattr(codec, "decode"):
            return f"got the class {codec.__name__}: write {codec.__name__}(...)"
        return (
            f"got the class {codec.__name__}, which is a value type, not a codec: to store "
            f"{codec.__name__} values write codec=cascache.JsonCodec({codec.__name__})"
        )
    return (
        f"got {type(codec).__name__} {codec!r:.40}: for JSON values write "
        "codec=cascache.JsonCodec(), for a dataclass codec=cascache.JsonCodec(YourType)"
    )


def validate(options: Options[V]) -> None:
    """Raise ``ConfigError`` naming the first thing wrong with ``options``."""
    if not isinstance(options, Options):
        raise wrong_options("cascache.new", "cascache.Options", options)
    try:
        canonical_namespace(options.namespace)
    except ValueError as exc:
        raise ConfigError(f"Options.{exc}") from None
    for name in (STORES[0], "codec", *STORES[1:]):  # provider first, as before
        part = getattr(options, name)
        # A runtime-checkable protocol accepts a codec class itself; only instances work.
        if (
            name == "codec"
            and part is not None
            and (isinstance(part, type) or not isinstance(part, Codec))
        ):
            raise ConfigError(f"Options.codec must be a codec instance, {_codec_hint(part)}")
        if isinstance(part, type):
            raise ConfigError(
                f"Options.{name} must be an instance, got the class {part.__name__}: "
                f"write {part.__name__}(...)"
            )
        mistake = _not_a_store(name, part)
        if mistake is not None:
            raise ConfigError(mistake)
    check_bools("", options, ("disabled", "disable_batch", "coalesce"))
    if options.hooks is not None:
        check_hooks("Options.hooks", options.hooks)
    if options.provider is None or not isinstance(options.provider, Provider | AsyncProvider):
        raise ConfigError(
            "Options.provider is required and must implement get, set, delete and close "
            "(or, for the asyncio API, be an AsyncProvider)"
        )
    if options.codec is None:
        raise ConfigError(
            "Options.codec is required: cascache.JsonCodec() for JSON values, "
            "cascache.JsonCodec(YourType) for a dataclass"
        )
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
    # ``add`` by name: an asyncio provider's is a coroutine, which AddProvider (a sync
    # Provider) cannot describe.
    if BatchReadSeed(options.batch_read_seed) is BatchReadSeed.IF_MISSING and not callable(
        getattr(options.provider, "add", None)
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
    for name, part in zip(("key_reader", "key_writer", "key_invalidator"), mutators, strict=True):
        if isinstance(part, LocalStore) and part is not options.gen_store:
            # Its fences are its own: reads and writes checked against another store's
            # would never see its invalidates (or it theirs).
            raise ConfigError(
                f"Options.{name} is a LocalStore, which keeps its own versions: "
                "Options.gen_store must be that same store"
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
