"""Hooks: what the cache did on the caller's behalf, reported as it happens.

Two kinds of event reach a hook. *Traffic* events say what an operation did with the
cache: a hit, a miss, a load of the source, a conditional write and its outcome, an
invalidate. *Anomaly* events say what went wrong and was handled safely: an entry
dropped, a write declined, a store that failed while the operation carried on (a read
that fell back to the source, a loaded value left unstored, a value the codec refused, a
cleanup delete that failed). Errors an operation raises are the caller's to handle and
are not reported here.

Subclass :class:`Hooks` and override the events you care about; combine several with
:func:`fan_out`; :class:`LoggingHooks` writes every event to a stdlib logger;
:class:`cascache.Counters` counts them. The adapters ``cascache.prometheus`` and
``cascache.otel`` export them as metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Final

from cascache.errors import ConfigError, describe_keys
from cascache.results import WriteOutcome

TRAFFIC_EVENTS: Final = ("hit", "miss", "load", "write", "invalidate")
"""The events a cache resolves once, when it is built (:func:`handler`): they fire on
every operation, so a hook that leaves one alone must cost nothing there."""


class Hooks:
    """No-op base class of every hook; override only the events you need.

    Hooks run inline on the calling thread, so keep them cheap: the traffic events fire
    on every operation. An exception raised by a hook is swallowed (and logged on the
    ``cascache`` logger) so observability can never break a read.

    ``op`` is the public operation that fired the event (``"get"``, ``"get_or_load"``,
    ``"get_many"``, ``"get_many_or_load"``, ``"set_if_version"``, ``"set_if_versions"``,
    ``"snapshot_version"``, ``"snapshot_versions"``, ``"invalidate"``). ``key`` is the
    logical key; for an event about a batch as a whole it is a bounded text naming the
    first keys and how many more there are (``errors.describe_keys``).

    A cache decides once, when it is built (and whenever ``core.hooks`` is replaced),
    which traffic events (``hit``, ``miss``, ``load``, ``write``, ``invalidate``) this
    hook overrides; the others cost nothing on the hot path. Override them in the class,
    not by assigning to an instance after the cache is built.
    """

    # -- traffic ------------------------------------------------------------------------

    def hit(self, op: str, key: str) -> None:
        """``key`` was served from the cache by ``op`` (``get``, ``get_or_load``,
        ``get_many``, ``get_many_or_load``): once per key served, so a ``get_many`` of
        *n* keys fires *n* ``hit``/``miss`` events in all. A ``get_or_load`` that waited
        for another caller's load of the same key and was handed its value reports only
        its own first read (a miss) and no load."""

    def miss(self, op: str, key: str) -> None:
        """``op`` (as for :meth:`hit`) did not serve ``key`` from the cache: nothing
        stored, an entry that did not validate (also reported by :meth:`self_healed`), a
        disabled cache, or, in ``get_or_load``/``get_many_or_load``, a read that failed
        (also reported by :meth:`read_error`). Once per key not served."""

    def load(self, op: str, keys: Sequence[str], seconds: float) -> None:
        """The loader of ``op`` (``get_or_load``: one key; ``get_many_or_load``: the keys
        it was asked for, in one call) returned after ``seconds`` (``time.perf_counter``
        around the call; under asyncio, until its awaitable completed). A loader that
        raises fires nothing: its exception reaches the caller."""

    def write(self, op: str, key: str, outcome: WriteOutcome) -> None:
        """A conditional write of ``key`` finished with ``outcome``: ``op`` is
        ``set_if_version`` (also the store of a ``get_or_load``) or ``set_if_versions``
        (also the store of a ``get_many_or_load``). Once per key: every member of a batch
        entry is reported with the batch's outcome (without batching, each key with its
        own). Seeding single entries after a batch is not reported here. A write that
        raises fires nothing (in a fill, :meth:`store_error` or :meth:`codec_error` say
        why the value was not stored)."""

    def invalidate(self, key: str) -> None:
        """``invalidate(key)`` succeeded: the key's fence moved on (a failed one is
        reported by :meth:`invalidate_outage`)."""

    # -- anomalies ----------------------------------------------------------------------

    def self_healed(self, op: str, key: str, reason: str) -> None:
        """A single entry was dropped: corrupt bytes, a stale fence or a read guard said no."""

    def batch_rejected(self, keys: Sequence[str], reason: str) -> None:
        """A batch entry was not served whole and was dropped; members fell back to singles."""

    def provider_set_rejected(self, key: str, batch: bool) -> None:
        """The value store declined a write (admission policy, size); nothing was stored."""

    def version_snapshot_error(self, op: str, key: str, error: BaseException) -> None:
        """Reading or creating a fence failed; the read missed or the write was skipped."""

    def version_advance_error(self, key: str, error: BaseException) -> None:
        """Advancing a fence failed during ``invalidate``; the invalidate raises (and
        :meth:`invalidate_outage` follows)."""

    def invalidate_outage(
        self, key: str, advance_error: BaseException, delete_error: BaseException | None
    ) -> None:
        """``invalidate`` failed as a whole: older snapshots may still win until a retry."""

    def read_error(self, op: str, key: str, error: BaseException) -> None:
        """Reading the cache failed in ``op`` (``get_or_load``, ``get_many_or_load``): the
        value store (or, with ``cascache.redis.new``, Redis) could not be read, or a read
        guard raised. ``error`` is the ``OpError``. The keys count as misses and come from
        the loader."""

    def store_error(self, op: str, key: str, error: BaseException) -> None:
        """A write the cache made on the caller's behalf failed and nothing was raised:
        the store of a loaded value in ``get_or_load``/``get_many_or_load`` (the value is
        returned unstored), or seeding a single entry from a batch (``get_many``,
        ``set_if_versions``). ``error`` is the ``OpError`` (or ``ClosedError``). A failed
        snapshot is reported once, by :meth:`version_snapshot_error`."""

    def codec_error(self, op: str, key: str, error: BaseException) -> None:
        """The codec refused to encode a value ``op`` loaded (``get_or_load``,
        ``get_many_or_load``): the value is returned, not stored. ``error`` is the
        ``OpError``; its ``cause`` is what the codec raised."""

    def cleanup_error(self, op: str, key: str, error: BaseException) -> None:
        """Deleting an entry that is already unservable failed (a dropped entry, a
        rejected batch entry, or the delete of an ``invalidate`` whose advance succeeded);
        harmless, logged for ops."""

    def local_versions_with_batch(self, namespace: str) -> None:
        """Batch operations run on an in-process version store: freshness is per process."""

    def persistence_risk(self, namespace: str, detail: str) -> None:
        """``cascache.redis.new`` found (or could not rule out) a Redis persistence setting
        under which a restart can bring back fences that acknowledged invalidates replaced
        (``cascache.redis.persistence``); ``detail`` says which and what to change."""


class FailuresByKind(Hooks):
    """A hook that counts every failure the cache absorbed by one method, :meth:`failed`,
    with the failure's kind: the base of the metrics adapters, whose error counters are
    one metric labelled by kind."""

    def failed(self, op: str, kind: str) -> None:
        """An absorbed failure of ``kind`` during ``op``: ``version`` (the version store),
        ``invalidate`` (an invalidate that raised), ``read``, ``store``, ``codec`` or
        ``cleanup`` (the events of the same names)."""

    def version_snapshot_error(self, op: str, key: str, error: BaseException) -> None:
        """Reported as ``failed(op, "version")``."""
        self.failed(op, "version")

    def invalidate_outage(
        self, key: str, advance_error: BaseException, delete_error: BaseException | None
    ) -> None:
        """Reported as ``failed("invalidate", "invalidate")``."""
        self.failed("invalidate", "invalidate")

    def read_error(self, op: str, key: str, error: BaseException) -> None:
        """Reported as ``failed(op, "read")``."""
        self.failed(op, "read")

    def store_error(self, op: str, key: str, error: BaseException) -> None:
        """Reported as ``failed(op, "store")``."""
        self.failed(op, "store")

    def codec_error(self, op: str, key: str, error: BaseException) -> None:
        """Reported as ``failed(op, "codec")``."""
        self.failed(op, "codec")

    def cleanup_error(self, op: str, key: str, error: BaseException) -> None:
        """Reported as ``failed(op, "cleanup")``."""
        self.failed(op, "cleanup")


class _FanOut(Hooks):
    def __init__(self, hooks: Sequence[Hooks]) -> None:
        self._hooks = tuple(hooks)

    def hit(self, op: str, key: str) -> None:
        for hook in self._hooks:
            call_hook(hook.hit, op, key)

    def miss(self, op: str, key: str) -> None:
        for hook in self._hooks:
            call_hook(hook.miss, op, key)

    def load(self, op: str, keys: Sequence[str], seconds: float) -> None:
        for hook in self._hooks:
            call_hook(hook.load, op, keys, seconds)

    def write(self, op: str, key: str, outcome: WriteOutcome) -> None:
        for hook in self._hooks:
            call_hook(hook.write, op, key, outcome)

    def invalidate(self, key: str) -> None:
        for hook in self._hooks:
            call_hook(hook.invalidate, key)

    def self_healed(self, op: str, key: str, reason: str) -> None:
        for hook in self._hooks:
            call_hook(hook.self_healed, op, key, reason)

    def batch_rejected(self, keys: Sequence[str], reason: str) -> None:
        for hook in self._hooks:
            call_hook(hook.batch_rejected, keys, reason)

    def provider_set_rejected(self, key: str, batch: bool) -> None:
        for hook in self._hooks:
            call_hook(hook.provider_set_rejected, key, batch)

    def version_snapshot_error(self, op: str, key: str, error: BaseException) -> None:
        for hook in self._hooks:
            call_hook(hook.version_snapshot_error, op, key, error)

    def version_advance_error(self, key: str, error: BaseException) -> None:
        for hook in self._hooks:
            call_hook(hook.version_advance_error, key, error)

    def invalidate_outage(
        self, key: str, advance_error: BaseException, delete_error: BaseException | None
    ) -> None:
        for hook in self._hooks:
            call_hook(hook.invalidate_outage, key, advance_error, delete_error)

    def read_error(self, op: str, key: str, error: BaseException) -> None:
        for hook in self._hooks:
            call_hook(hook.read_error, op, key, error)

    def store_error(self, op: str, key: str, error: BaseException) -> None:
        for hook in self._hooks:
            call_hook(hook.store_error, op, key, error)

    def codec_error(self, op: str, key: str, error: BaseException) -> None:
        for hook in self._hooks:
            call_hook(hook.codec_error, op, key, error)

    def cleanup_error(self, op: str, key: str, error: BaseException) -> None:
        for hook in self._hooks:
            call_hook(hook.cleanup_error, op, key, error)

    def local_versions_with_batch(self, namespace: str) -> None:
        for hook in self._hooks:
            call_hook(hook.local_versions_with_batch, namespace)

    def persistence_risk(self, namespace: str, detail: str) -> None:
        for hook in self._hooks:
            call_hook(hook.persistence_risk, namespace, detail)


def fan_out(*hooks: Hooks) -> Hooks:
    """One hook that forwards every event to each of ``hooks`` in order.

    Raises ``ConfigError`` naming the first argument that is not a :class:`Hooks`
    instance (a class given for its instance, say), as ``Options.hooks`` would.
    """
    for position, hook in enumerate(hooks, 1):
        check_hooks(f"fan_out argument {position}", hook)
    return _FanOut(hooks)


def check_hooks(what: str, hooks: object) -> None:
    """Raise ``ConfigError`` naming ``what`` unless ``hooks`` is a :class:`Hooks` instance
    (a class given for its instance is named as such)."""
    if isinstance(hooks, Hooks):
        return
    if isinstance(hooks, type) and issubclass(hooks, Hooks):
        raise ConfigError(
            f"{what} must be an instance, got the class {hooks.__name__}: write {hooks.__name__}()"
        )
    raise ConfigError(f"{what} must be a cascache.Hooks (subclass it), got {type(hooks).__name__}")


def handler(hooks: Hooks, event: str) -> Callable[..., None] | None:
    """What to call for ``event`` on ``hooks``, or ``None`` when calling it would do
    nothing: the event is :class:`Hooks`' own no-op. Through a :func:`fan_out`, ``None``
    when no member handles it, and the one member's method when only one does.

    A cache resolves its traffic events (:data:`TRAFFIC_EVENTS`) with this once, so a
    hook that does not override ``hit`` adds only a ``None`` check to a cache hit.
    """
    if isinstance(hooks, _FanOut):
        handling = [hook for hook in hooks._hooks if handler(hook, event) is not None]
        if not handling:
            return None
        if len(handling) == 1:
            return handler(handling[0], event)
        method: Callable[..., None] = getattr(hooks, event)
        return method
    kind = type(hooks)
    overridden = (
        getattr(kind, event, None) is not getattr(Hooks, event)
        # A hook that answers attribute lookups itself (or set the event on the
        # instance) may handle anything: keep calling it.
        or kind.__getattribute__ is not object.__getattribute__
        or event in getattr(hooks, "__dict__", ())
    )
    if not overridden:
        return None
    bound: Callable[..., None] = getattr(hooks, event)
    return bound


class LoggingHooks(Hooks):
    """Writes every event to a stdlib logger (default: the ``cascache`` logger).

    Outages (a failed invalidate) log at ERROR; store trouble (a failed read, write,
    snapshot or cleanup delete) and values the codec refused at WARNING; everything
    else, including the traffic events (hit, miss, load, write, invalidate), at
    ``level`` (default DEBUG). The traffic events fire on every operation: below
    ``level``, each still costs the logger's level check.
    """

    def __init__(self, logger: logging.Logger | None = None, level: int = logging.DEBUG) -> None:
        self.logger = logger if logger is not None else logging.getLogger("cascache")
        self.level = level

    def hit(self, op: str, key: str) -> None:
        self.logger.log(self.level, "cascache %s(%r): hit", op, key)

    def miss(self, op: str, key: str) -> None:
        self.logger.log(self.level, "cascache %s(%r): miss", op, key)

    def load(self, op: str, keys: Sequence[str], seconds: float) -> None:
        self.logger.log(
            self.level, "cascache %s(%r): loaded in %.6f s", op, describe(keys), seconds
        )

    def write(self, op: str, key: str, outcome: WriteOutcome) -> None:
        self.logger.log(self.level, "cascache %s(%r): %s", op, key, outcome.value)

    def invalidate(self, key: str) -> None:
        self.logger.log(self.level, "cascache invalidate(%r): done", key)

    def self_healed(self, op: str, key: str, reason: str) -> None:
        self.logger.log(self.level, "cascache %s(%r): dropped entry: %s", op, key, reason)

    def batch_rejected(self, keys: Sequence[str], reason: str) -> None:
        self.logger.log(self.level, "cascache batch %r rejected: %s", list(keys), reason)

    def provider_set_rejected(self, key: str, batch: bool) -> None:
        kind = "batch entry" if batch else "entry"
        self.logger.log(self.level, "cascache %s %r: value store declined the write", kind, key)

    def version_snapshot_error(self, op: str, key: str, error: BaseException) -> None:
        self.logger.warning("cascache %s(%r): version store error: %r", op, key, error)

    def version_advance_error(self, key: str, error: BaseException) -> None:
        self.logger.warning("cascache invalidate(%r): advancing the version failed: %r", key, error)

    def invalidate_outage(
        self, key: str, advance_error: BaseException, delete_error: BaseException | None
    ) -> None:
        self.logger.error(
            "cascache invalidate(%r) failed: advance %r, delete %r",
            key,
            advance_error,
            delete_error,
        )

    def read_error(self, op: str, key: str, error: BaseException) -> None:
        self.logger.warning(
            "cascache %s(%r): cache read failed, served from the loader: %r", op, key, error
        )

    def store_error(self, op: str, key: str, error: BaseException) -> None:
        self.logger.warning("cascache %s(%r): cache write failed, not stored: %r", op, key, error)

    def codec_error(self, op: str, key: str, error: BaseException) -> None:
        self.logger.warning(
            "cascache %s(%r): the codec refused the loaded value, not stored: %r", op, key, error
        )

    def cleanup_error(self, op: str, key: str, error: BaseException) -> None:
        self.logger.warning("cascache %s(%r): cleanup delete failed: %r", op, key, error)

    def local_versions_with_batch(self, namespace: str) -> None:
        self.logger.log(
            self.level,
            "cascache namespace %r: batch operations on an in-process version store",
            namespace,
        )

    def persistence_risk(self, namespace: str, detail: str) -> None:
        self.logger.warning("cascache namespace %r: Redis persistence risk: %s", namespace, detail)


def describe(keys: Sequence[str]) -> str:
    """The keys of a ``load`` event as one bounded text: the key itself for one key."""
    return keys[0] if len(keys) == 1 else describe_keys(keys)


_log = logging.getLogger("cascache")


def call_hook(event: Callable[..., None], *args: object) -> None:
    """Run one hook event, swallowing (and logging) anything it raises."""
    try:
        event(*args)
    except Exception:
        hook_raised(event)


def hook_raised(event: Callable[..., None]) -> None:
    """Log the exception a hook event just raised (call inside ``except``): what
    :func:`call_hook` does, for the hot path that calls an event inline instead."""
    _log.exception("cascache hook %r raised; ignored", event)
