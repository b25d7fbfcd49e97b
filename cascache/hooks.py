"""Hooks: how the cache reports what it handled quietly on the caller's behalf.

Nothing reported here is an error the caller must act on: each event is a miss, a
skipped write or a cleanup that the protocol already handled safely. Subclass
:class:`Hooks` and override the events you care about; combine several with
:func:`fan_out`; :class:`LoggingHooks` writes every event to a stdlib logger.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence


class Hooks:
    """No-op base class of every hook; override only the events you need.

    Hooks run inline on the calling thread. An exception raised by a hook is swallowed
    (and logged on the ``cascache`` logger) so observability can never break a read.

    ``key`` is the logical key; for an event of a batch operation it is a bounded text
    naming the first keys and how many more there are (``errors.describe_keys``).
    """

    def self_healed(self, op: str, key: str, reason: str) -> None:
        """A single entry was dropped: corrupt bytes, a stale fence or a read guard said no."""

    def batch_rejected(self, keys: Sequence[str], reason: str) -> None:
        """A batch entry was not served whole and was dropped; members fell back to singles."""

    def provider_set_rejected(self, key: str, batch: bool) -> None:
        """The value store declined a write (admission policy, size); nothing was stored."""

    def version_snapshot_error(self, op: str, key: str, error: BaseException) -> None:
        """Reading or creating a fence failed; the read missed or the write was skipped."""

    def version_advance_error(self, key: str, error: BaseException) -> None:
        """Advancing a fence failed during ``invalidate``; the invalidate raises."""

    def invalidate_outage(
        self, key: str, advance_error: BaseException, delete_error: BaseException | None
    ) -> None:
        """``invalidate`` failed as a whole: older snapshots may still win until a retry."""

    def cleanup_error(self, op: str, key: str, error: BaseException) -> None:
        """Deleting an entry that is already unservable failed; harmless, logged for ops."""

    def local_versions_with_batch(self, namespace: str) -> None:
        """Batch operations run on an in-process version store: freshness is per process."""

    def persistence_risk(self, namespace: str, detail: str) -> None:
        """``cascache.redis.new`` found (or could not rule out) a Redis persistence setting
        under which a restart can bring back fences that acknowledged invalidates replaced
        (``cascache.redis.persistence``); ``detail`` says which and what to change."""


class _FanOut(Hooks):
    def __init__(self, hooks: Sequence[Hooks]) -> None:
        self._hooks = tuple(hooks)

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
    """One hook that forwards every event to each of ``hooks`` in order."""
    return _FanOut(hooks)


class LoggingHooks(Hooks):
    """Writes every event to a stdlib logger (default: the ``cascache`` logger).

    Outages (a failed invalidate) log at ERROR, version-store trouble and cleanup failures
    at WARNING, everything else at ``level`` (default DEBUG).
    """

    def __init__(self, logger: logging.Logger | None = None, level: int = logging.DEBUG) -> None:
        self.logger = logger if logger is not None else logging.getLogger("cascache")
        self.level = level

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


_log = logging.getLogger("cascache")


def call_hook(event: Callable[..., None], *args: object) -> None:
    """Run one hook event, swallowing (and logging) anything it raises."""
    try:
        event(*args)
    except Exception:
        _log.exception("cascache hook %r raised; ignored", event)
