"""Hooks: fan-out, swallowed hook errors, and the levels LoggingHooks logs at."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from typing import Any

import pytest

import cascache
from cascache import Hooks, JsonCodec, LoggingHooks, MemoryProvider, Options, fan_out
from cascache.hooks import call_hook

ADVANCE = RuntimeError("advance")
DELETE = RuntimeError("delete")

EVENTS: list[tuple[str, tuple[Any, ...]]] = [
    ("self_healed", ("get", "k", "stale version")),
    ("batch_rejected", (["a", "b"], "members not servable: a")),
    ("provider_set_rejected", ("k", True)),
    ("version_snapshot_error", ("set_if_version", "k", ADVANCE)),
    ("version_advance_error", ("k", ADVANCE)),
    ("invalidate_outage", ("k", ADVANCE, DELETE)),
    ("cleanup_error", ("invalidate", "k", DELETE)),
    ("local_versions_with_batch", ("ns",)),
    ("persistence_risk", ("ns", "takes RDB snapshots")),
]
"""One call of every hook event."""


def emit(hooks: Hooks) -> None:
    for name, args in EVENTS:
        getattr(hooks, name)(*args)


class Recorder(Hooks):
    """Appends ``(tag, event, args)`` to a shared log for every event."""

    def __init__(self, tag: str, log: list[tuple[str, str, tuple[Any, ...]]]) -> None:
        self.tag = tag
        self.log = log

    def _record(self, event: str, *args: Any) -> None:
        self.log.append((self.tag, event, args))

    def self_healed(self, op: str, key: str, reason: str) -> None:
        self._record("self_healed", op, key, reason)

    def batch_rejected(self, keys: Sequence[str], reason: str) -> None:
        self._record("batch_rejected", keys, reason)

    def provider_set_rejected(self, key: str, batch: bool) -> None:
        self._record("provider_set_rejected", key, batch)

    def version_snapshot_error(self, op: str, key: str, error: BaseException) -> None:
        self._record("version_snapshot_error", op, key, error)

    def version_advance_error(self, key: str, error: BaseException) -> None:
        self._record("version_advance_error", key, error)

    def invalidate_outage(
        self, key: str, advance_error: BaseException, delete_error: BaseException | None
    ) -> None:
        self._record("invalidate_outage", key, advance_error, delete_error)

    def cleanup_error(self, op: str, key: str, error: BaseException) -> None:
        self._record("cleanup_error", op, key, error)

    def local_versions_with_batch(self, namespace: str) -> None:
        self._record("local_versions_with_batch", namespace)

    def persistence_risk(self, namespace: str, detail: str) -> None:
        self._record("persistence_risk", namespace, detail)


class Raising(Hooks):
    """Every event raises."""

    def __getattribute__(self, name: str) -> Any:
        if name.startswith("_"):
            return object.__getattribute__(self, name)

        def boom(*args: Any) -> None:
            raise RuntimeError(f"hook {name} broke")

        return boom


def public_events() -> set[str]:
    return {
        name
        for name, _ in inspect.getmembers(Hooks, inspect.isfunction)
        if not name.startswith("_")
    }


def test_events_cover_every_hook() -> None:
    assert {name for name, _ in EVENTS} == public_events()


def test_base_hooks_are_no_ops() -> None:
    emit(Hooks())


def test_fan_out_forwards_every_event_in_order() -> None:
    log: list[tuple[str, str, tuple[Any, ...]]] = []
    emit(fan_out(Recorder("first", log), Recorder("second", log)))
    expected = [(tag, name, args) for name, args in EVENTS for tag in ("first", "second")]
    assert log == expected


def test_fan_out_of_nothing_and_nested() -> None:
    emit(fan_out())
    log: list[tuple[str, str, tuple[Any, ...]]] = []
    emit(fan_out(fan_out(Recorder("inner", log)), Recorder("outer", log)))
    assert [tag for tag, _, _ in log] == ["inner", "outer"] * len(EVENTS)


def test_a_raising_hook_is_swallowed_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    log: list[tuple[str, str, tuple[Any, ...]]] = []
    hooks = fan_out(Raising(), Recorder("after", log))
    with caplog.at_level(logging.ERROR, logger="cascache"):
        emit(hooks)
    # Every event still reached the hook after the broken one.
    assert [name for _, name, _ in log] == [name for name, _ in EVENTS]
    errors = [r for r in caplog.records if r.name == "cascache" and r.levelno == logging.ERROR]
    assert len(errors) == len(EVENTS)
    assert all("raised; ignored" in r.getMessage() for r in errors)
    assert all(r.exc_info is not None for r in errors)


def test_call_hook_swallows(caplog: pytest.LogCaptureFixture) -> None:
    def broken(*args: object) -> None:
        raise ValueError(args)

    with caplog.at_level(logging.ERROR, logger="cascache"):
        call_hook(broken, 1, 2)
    assert "raised; ignored" in caplog.text
    calls: list[tuple[object, ...]] = []
    call_hook(lambda *args: calls.append(args), "a", 1)
    assert calls == [("a", 1)]


def test_a_raising_hook_never_breaks_a_read() -> None:
    cache: cascache.CAS[Any] = cascache.new(
        Options(namespace="ns", provider=MemoryProvider(), codec=JsonCodec(), hooks=Raising())
    )
    ck = cache.core.keys.single("k")
    assert cache.core.provider.set(ck.value, b"corrupt", 7, None)
    assert cache.get("k") is None
    assert cache.core.provider.get(ck.value) is None


EXPECTED_LEVELS = {
    "self_healed": None,  # the configured level
    "batch_rejected": None,
    "provider_set_rejected": None,
    "local_versions_with_batch": None,
    "version_snapshot_error": logging.WARNING,
    "version_advance_error": logging.WARNING,
    "cleanup_error": logging.WARNING,
    "invalidate_outage": logging.ERROR,
    "persistence_risk": logging.WARNING,
}


@pytest.mark.parametrize("level", [logging.DEBUG, logging.INFO])
def test_logging_hooks_levels(caplog: pytest.LogCaptureFixture, level: int) -> None:
    assert set(EXPECTED_LEVELS) == public_events()
    hooks = LoggingHooks() if level == logging.DEBUG else LoggingHooks(level=level)
    for name, args in EVENTS:
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="cascache"):
            getattr(hooks, name)(*args)
        records = [r for r in caplog.records if r.name == "cascache"]
        assert len(records) == 1, name
        expected = EXPECTED_LEVELS[name]
        assert records[0].levelno == (level if expected is None else expected), name


def test_logging_hooks_messages(caplog: pytest.LogCaptureFixture) -> None:
    hooks = LoggingHooks()
    with caplog.at_level(logging.DEBUG, logger="cascache"):
        emit(hooks)
    text = caplog.text
    assert "get('k'): dropped entry: stale version" in text
    assert "batch ['a', 'b'] rejected" in text
    assert "batch entry 'k': value store declined" in text
    assert "invalidate('k') failed: advance RuntimeError('advance'), delete RuntimeError" in text
    assert "namespace 'ns'" in text
    assert "Redis persistence risk: takes RDB snapshots" in text


def test_logging_hooks_custom_logger(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("myapp.cache")
    hooks = LoggingHooks(logger=logger, level=logging.INFO)
    assert hooks.logger is logger
    with caplog.at_level(logging.INFO, logger="myapp.cache"):
        hooks.self_healed("get", "k", "reason")
        hooks.invalidate_outage("k", ADVANCE, None)
    assert [(r.name, r.levelno) for r in caplog.records] == [
        ("myapp.cache", logging.INFO),
        ("myapp.cache", logging.ERROR),
    ]
    assert "delete None" in caplog.records[1].getMessage()


def test_debug_events_are_silent_at_info(caplog: pytest.LogCaptureFixture) -> None:
    hooks = LoggingHooks()
    with caplog.at_level(logging.INFO, logger="cascache"):
        hooks.self_healed("get", "k", "stale version")
        hooks.cleanup_error("get", "k", DELETE)
    assert [r.levelno for r in caplog.records if r.name == "cascache"] == [logging.WARNING]
