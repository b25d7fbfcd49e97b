"""Hooks: fan-out, swallowed hook errors, the levels LoggingHooks logs at, and every event
fired where it should be, on every topology, sync and asyncio."""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import fakeredis
import pytest
import redis
import redis.asyncio
import redis.asyncio.cluster

import cascache
import cascache.aio
import cascache.redis
import cascache.redis.aio
from cascache import (
    Hooks,
    JsonCodec,
    LoggingHooks,
    MemoryProvider,
    Options,
    WriteOutcome,
    fan_out,
)
from cascache.aio import AsyncCAS
from cascache.hooks import TRAFFIC_EVENTS, call_hook, handler
from model.servers import RedisCluster, RedisServer

if TYPE_CHECKING:
    from tests.conftest import Topology

ADVANCE = RuntimeError("advance")
DELETE = RuntimeError("delete")

EVENTS: list[tuple[str, tuple[Any, ...]]] = [
    ("hit", ("get", "k")),
    ("miss", ("get_many", "k")),
    ("load", ("get_or_load", ("k",), 0.25)),
    ("write", ("set_if_version", "k", WriteOutcome.VERSION_MISMATCH)),
    ("invalidate", ("k",)),
    ("self_healed", ("get", "k", "stale version")),
    ("batch_rejected", (["a", "b"], "members not servable: a")),
    ("provider_set_rejected", ("k", True)),
    ("version_snapshot_error", ("set_if_version", "k", ADVANCE)),
    ("version_advance_error", ("k", ADVANCE)),
    ("invalidate_outage", ("k", ADVANCE, DELETE)),
    ("read_error", ("get_or_load", "k", ADVANCE)),
    ("store_error", ("get_or_load", "k", ADVANCE)),
    ("codec_error", ("get_or_load", "k", ADVANCE)),
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

    def hit(self, op: str, key: str) -> None:
        self._record("hit", op, key)

    def miss(self, op: str, key: str) -> None:
        self._record("miss", op, key)

    def load(self, op: str, keys: Sequence[str], seconds: float) -> None:
        self._record("load", op, keys, seconds)

    def write(self, op: str, key: str, outcome: WriteOutcome) -> None:
        self._record("write", op, key, outcome)

    def invalidate(self, key: str) -> None:
        self._record("invalidate", key)

    def read_error(self, op: str, key: str, error: BaseException) -> None:
        self._record("read_error", op, key, error)

    def store_error(self, op: str, key: str, error: BaseException) -> None:
        self._record("store_error", op, key, error)

    def codec_error(self, op: str, key: str, error: BaseException) -> None:
        self._record("codec_error", op, key, error)

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


@pytest.mark.parametrize(
    ("member", "fragment"),
    [
        (cascache.Counters, "argument 2 must be an instance, got the class Counters"),
        (None, "argument 2 must be a cascache.Hooks (subclass it), got NoneType"),
        ("x", "argument 2 must be a cascache.Hooks (subclass it), got str"),
    ],
)
def test_fan_out_refuses_what_is_not_a_hook(member: object, fragment: str) -> None:
    # Accepted before: every event then failed (and was only logged), or new() crashed.
    with pytest.raises(cascache.ConfigError, match=re.escape(fragment)):
        fan_out(Hooks(), member)  # type: ignore[arg-type]


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
    "hit": None,  # the configured level
    "miss": None,
    "load": None,
    "write": None,
    "invalidate": None,
    "self_healed": None,
    "batch_rejected": None,
    "provider_set_rejected": None,
    "local_versions_with_batch": None,
    "version_snapshot_error": logging.WARNING,
    "version_advance_error": logging.WARNING,
    "cleanup_error": logging.WARNING,
    "read_error": logging.WARNING,
    "store_error": logging.WARNING,
    "codec_error": logging.WARNING,
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
    assert "get('k'): hit" in text
    assert "get_many('k'): miss" in text
    assert "get_or_load('k'): loaded in 0.250000 s" in text
    assert "set_if_version('k'): version_mismatch" in text
    assert "invalidate('k'): done" in text
    # Each failure by its name: only a failed delete is a cleanup failure.
    assert "get_or_load('k'): cache read failed, served from the loader" in text
    assert "get_or_load('k'): cache write failed, not stored" in text
    assert "get_or_load('k'): the codec refused the loaded value, not stored" in text
    assert text.count("cleanup delete failed") == 1
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="cascache"):
        hooks.load("get_many_or_load", ("a", "b"), 0.5)
    assert "get_many_or_load(\"'a', 'b'\"): loaded in 0.500000 s" in caplog.text


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


# -- which events a cache calls at all (``handler``) --------------------------------------


class OnlyHits(Hooks):
    def __init__(self) -> None:
        self.hits: list[tuple[str, str]] = []

    def hit(self, op: str, key: str) -> None:
        self.hits.append((op, key))


def test_handler_is_none_for_an_event_left_alone() -> None:
    for event in TRAFFIC_EVENTS:
        assert handler(Hooks(), event) is None
        assert handler(LoggingHooks(), event) is not None
    only = OnlyHits()
    assert handler(only, "hit") == only.hit
    assert handler(only, "miss") is None
    # Through fan_out: nobody, one member (called directly), or the fan-out itself.
    assert handler(fan_out(Hooks(), fan_out(Hooks())), "hit") is None
    assert handler(fan_out(Hooks(), only), "hit") == only.hit
    both = fan_out(only, OnlyHits())
    assert handler(both, "hit") == both.hit
    assert handler(both, "miss") is None
    # A hook that answers attribute lookups itself may handle anything.
    assert handler(Raising(), "hit") is not None


def test_the_default_hooks_leave_every_traffic_event_unresolved() -> None:
    cache: cascache.CAS[Any] = cascache.new(
        Options(namespace="ns", provider=cascache.LocalStore(), codec=JsonCodec())
    )
    core = cache.core
    resolved = [core.on_hit, core.on_miss, core.on_load, core.on_write, core.on_invalidate]
    assert resolved == [None] * 5


def test_replacing_the_hooks_resolves_again() -> None:
    cache: cascache.CAS[Any] = cascache.new(
        Options(namespace="ns", provider=cascache.LocalStore(), codec=JsonCodec())
    )
    only = OnlyHits()
    cache.get_or_load("k", lambda: 1)
    cache.core.hooks = fan_out(cache.core.hooks, only)  # as the model does
    assert cache.core.hooks is not None and cache.core.on_miss is None
    assert cache.get("k") == cascache.Hit(1)
    assert only.hits == [("get", "k")]


def test_a_raising_traffic_hook_never_breaks_a_hit(caplog: pytest.LogCaptureFixture) -> None:
    cache: cascache.CAS[Any] = cascache.new(
        Options(namespace="ns", provider=MemoryProvider(), codec=JsonCodec(), hooks=Raising())
    )
    with caplog.at_level(logging.ERROR, logger="cascache"):
        assert cache.get_or_load("k", lambda: 1) == 1
        assert cache.get("k") == cascache.Hit(1)
        assert cache.get_many_or_load(["a", "b"], lambda keys: dict.fromkeys(keys, 2)) == {
            "a": 2,
            "b": 2,
        }
        cache.invalidate("k")
    raised = {str(r.exc_info[1]) for r in caplog.records if r.exc_info is not None}
    assert {f"hook {event} broke" for event in TRAFFIC_EVENTS} <= raised


# -- the events, fired by the real operations on every topology -----------------------------

TRAFFIC = frozenset(TRAFFIC_EVENTS)
SV = WriteOutcome.STORED


def traffic(log: list[tuple[str, str, tuple[Any, ...]]]) -> list[tuple[str, tuple[Any, ...]]]:
    """The traffic events of ``log``, with each load's duration checked and dropped."""
    events = []
    for _, event, args in log:
        if event not in TRAFFIC:
            continue
        if event == "load":
            op, keys, seconds = args
            assert isinstance(seconds, float) and seconds >= 0.0
            args = (op, tuple(keys))
        events.append((event, args))
    return events


EXPECTED_TRAFFIC: list[tuple[str, tuple[Any, ...]]] = [
    # get: nothing there
    ("miss", ("get", "k")),
    # get_or_load: a miss, one load, a stored write
    ("miss", ("get_or_load", "k")),
    ("load", ("get_or_load", ("k",))),
    ("write", ("set_if_version", "k", SV)),
    # get, get_or_load: hits
    ("hit", ("get", "k")),
    ("hit", ("get_or_load", "k")),
    # invalidate, then a write under the old snapshot
    ("invalidate", ("k",)),
    ("write", ("set_if_version", "k", WriteOutcome.VERSION_MISMATCH)),
    # get_many: one event per key
    ("miss", ("get_many", "a")),
    ("miss", ("get_many", "b")),
    # get_many_or_load: a miss per key, one load of both, a write per key
    ("miss", ("get_many_or_load", "a")),
    ("miss", ("get_many_or_load", "b")),
    ("load", ("get_many_or_load", ("a", "b"))),
    ("write", ("set_if_versions", "a", SV)),
    ("write", ("set_if_versions", "b", SV)),
    # get_many: hits, one per key
    ("hit", ("get_many", "a")),
    ("hit", ("get_many", "b")),
]

EXPECTED_COUNTS = cascache.CounterSnapshot(
    hits=4, misses=6, loads=2, loaded_keys=3, stored=3, mismatches=1, invalidates=1
)
"""What :class:`cascache.Counters` makes of ``EXPECTED_TRAFFIC``."""


class AsAsync:
    """The sync API behind awaitable methods, so one scenario drives both front ends."""

    def __init__(self, cache: cascache.CAS[Any]) -> None:
        self.cache = cache

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self.cache, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return method(*args, **kwargs)

        return call


async def traffic_scenario(cache: Any) -> None:
    """Every traffic event once or more, in the order of ``EXPECTED_TRAFFIC``."""
    assert await cache.get("k") is None
    assert await cache.get_or_load("k", lambda: 1) == 1
    assert await cache.get("k") == cascache.Hit(1)
    assert await cache.get_or_load("k", lambda: 2) == 1
    old = await cache.snapshot_version("k")
    await cache.invalidate("k")
    assert not (await cache.set_if_version("k", 3, old)).stored
    assert await cache.get_many(["a", "b"]) == ({}, ["a", "b"])
    loaded = await cache.get_many_or_load(["a", "b"], lambda keys: {k: k for k in keys})
    assert loaded == {"a": "a", "b": "b"}
    assert await cache.get_many(["a", "b"]) == ({"a": "a", "b": "b"}, [])


def recording() -> tuple[Hooks, list[tuple[str, str, tuple[Any, ...]]], cascache.Counters]:
    """A recorder and a counter behind one fan-out, as a service would combine them."""
    log: list[tuple[str, str, tuple[Any, ...]]] = []
    counters = cascache.Counters()
    return fan_out(Recorder("r", log), counters), log, counters


def test_traffic_events_on_every_topology(topology: Topology) -> None:
    hooks, log, counters = recording()
    cache = topology(hooks=hooks)
    asyncio.run(traffic_scenario(AsAsync(cache)))
    assert traffic(log) == EXPECTED_TRAFFIC
    assert counters.snapshot() == replace(EXPECTED_COUNTS, load_seconds=snapshot_seconds(counters))
    assert counters.snapshot().hit_rate == 0.4
    assert [name for _, name, _ in log if name.endswith("_error")] == []


def snapshot_seconds(counters: cascache.Counters) -> float:
    seconds = counters.snapshot().load_seconds
    assert seconds >= 0.0
    return seconds


ASYNC_TOPOLOGIES = {
    "local": ("local", None),
    "local-store": ("local-store", None),
    "shared-versions-fake": ("shared-versions", "fake"),
    "shared-versions-real": ("shared-versions", "real"),
    "shared-versions-cluster": ("shared-versions", "cluster"),
    "redis-fake": ("redis", "fake"),
    "redis-real": ("redis", "real"),
    "redis-cluster": ("redis", "cluster"),
}

AsyncBuild = Callable[[Hooks], Awaitable[AsyncCAS[Any]]]


@pytest.fixture(params=list(ASYNC_TOPOLOGIES))
def async_topology(request: pytest.FixtureRequest) -> AsyncBuild:
    """Builds an asyncio cache of each topology (called inside the event loop), in a fresh
    namespace; fakeredis, the session's server and its cluster as in the sync suite."""
    kind, backend = ASYNC_TOPOLOGIES[request.param]
    connect: Callable[[], Any] | None = None
    if backend == "fake":
        server = fakeredis.FakeServer()
        connect = lambda: fakeredis.FakeAsyncRedis(server=server)  # noqa: E731
    elif backend == "real":
        real: RedisServer = request.getfixturevalue("redis_server")
        connect = lambda: redis.asyncio.Redis(port=real.port)  # noqa: E731
    elif backend == "cluster":
        nodes: RedisCluster = request.getfixturevalue("redis_cluster_nodes")
        host, port = nodes.startup_nodes[0].host, nodes.startup_nodes[0].port
        connect = lambda: redis.asyncio.cluster.RedisCluster(host=host, port=port)  # noqa: E731

    async def build(hooks: Hooks) -> AsyncCAS[Any]:
        namespace = f"hooks-{uuid.uuid4().hex[:8]}"
        if kind == "redis":
            assert connect is not None
            return await cascache.redis.aio.new(
                cascache.redis.aio.Options(
                    namespace=namespace,
                    client=connect(),
                    codec=JsonCodec(),
                    hooks=hooks,
                    check_persistence=False,
                    close_client=True,
                )
            )
        if kind == "shared-versions":
            assert connect is not None
            return cascache.aio.new(
                cascache.aio.AsyncOptions(
                    namespace=namespace,
                    provider=MemoryProvider(),
                    gen_store=cascache.redis.aio.new_gen_store(connect(), close_client=True),
                    codec=JsonCodec(),
                    hooks=hooks,
                )
            )
        provider = cascache.LocalStore() if kind == "local-store" else MemoryProvider()
        return cascache.aio.new(
            Options(namespace=namespace, provider=provider, codec=JsonCodec(), hooks=hooks)
        )

    return build


def test_traffic_events_on_every_async_topology(async_topology: AsyncBuild) -> None:
    hooks, log, counters = recording()

    async def scenario() -> None:
        cache = await async_topology(hooks)
        try:
            await traffic_scenario(cache)
        finally:
            await cache.aclose()

    asyncio.run(scenario())
    assert traffic(log) == EXPECTED_TRAFFIC
    assert counters.snapshot() == replace(EXPECTED_COUNTS, load_seconds=snapshot_seconds(counters))


def test_load_time_covers_the_loader_and_its_await(async_topology: AsyncBuild) -> None:
    hooks, log, _ = recording()

    async def slow() -> int:
        await asyncio.sleep(0.02)
        return 1

    async def slow_many(keys: list[str]) -> dict[str, int]:
        await asyncio.sleep(0.02)
        return dict.fromkeys(keys, 1)

    async def scenario() -> None:
        cache = await async_topology(hooks)
        try:
            assert await cache.get_or_load("k", slow) == 1
            assert await cache.get_many_or_load(["a", "b"], slow_many) == {"a": 1, "b": 1}
        finally:
            await cache.aclose()

    asyncio.run(scenario())
    loads = [args for _, event, args in log if event == "load"]
    assert [(op, tuple(keys)) for op, keys, _ in loads] == [
        ("get_or_load", ("k",)),
        ("get_many_or_load", ("a", "b")),
    ]
    assert all(0.015 <= seconds < 5 for _, _, seconds in loads)


def test_load_time_of_a_sync_loader(topology: Topology) -> None:
    hooks, log, counters = recording()
    cache = topology(hooks=hooks)

    def slow() -> int:
        time.sleep(0.02)
        return 1

    assert cache.get_or_load("k", slow) == 1
    [(_, _, seconds)] = [args for _, event, args in log if event == "load"]
    assert 0.015 <= seconds < 5
    assert counters.snapshot().load_seconds == pytest.approx(seconds, abs=1e-6)


def test_a_loader_that_raises_fires_no_load(topology: Topology) -> None:
    hooks, log, _ = recording()
    cache = topology(hooks=hooks)

    def broken() -> int:
        raise LookupError("db down")

    with pytest.raises(LookupError):
        cache.get_or_load("k", broken)
    assert traffic(log) == [("miss", ("get_or_load", "k"))]


# -- the failures, each by its own name -------------------------------------------------------


NOTICES = frozenset({"local_versions_with_batch", "persistence_risk"})
"""Events about the configuration, not about an operation."""


def names(log: list[tuple[str, str, tuple[Any, ...]]]) -> list[str]:
    """The events of ``log`` that operations fired, in order."""
    return [event for _, event, _ in log if event not in NOTICES]


async def codec_scenario(cache: Any) -> None:
    """A loader whose value the codec refuses: returned, reported, not stored."""
    assert await cache.get_or_load("k", lambda: {1, 2}) == {1, 2}
    assert await cache.get_many_or_load(["a", "b"], lambda keys: {key: {3} for key in keys}) == {
        "a": {3},
        "b": {3},
    }
    assert await cache.get("k") is None


def check_codec_reports(log: list[tuple[str, str, tuple[Any, ...]]]) -> None:
    assert names(log) == [
        "miss",
        "load",
        "codec_error",
        "miss",
        "miss",
        "load",
        "codec_error",
        "miss",
    ]
    errors = [args for _, event, args in log if event == "codec_error"]
    assert [(op, key) for op, key, _ in errors] == [
        ("get_or_load", "k"),
        ("get_many_or_load", "'a', 'b'"),
    ]
    for _, _, error in errors:
        assert isinstance(error, cascache.OpError)
        assert isinstance(error.cause, cascache.CodecError)


def test_a_codec_refusal_in_a_fill_is_a_codec_error(topology: Topology) -> None:
    hooks, log, counters = recording()
    cache = topology(hooks=hooks)
    asyncio.run(codec_scenario(AsAsync(cache)))
    check_codec_reports(log)
    snap = counters.snapshot()
    assert (snap.codec_errors, snap.errors, snap.cleanup_errors, snap.store_errors) == (2, 2, 0, 0)


def test_a_codec_refusal_in_an_async_fill_is_a_codec_error(async_topology: AsyncBuild) -> None:
    hooks, log, counters = recording()

    async def scenario() -> None:
        cache = await async_topology(hooks)
        try:
            await codec_scenario(cache)
        finally:
            await cache.aclose()

    asyncio.run(scenario())
    check_codec_reports(log)
    assert counters.snapshot().codec_errors == 2


def test_a_codec_that_raises_something_else_is_still_a_codec_error() -> None:
    class Picky(cascache.JsonCodec[Any]):
        def encode(self, value: Any) -> bytes:
            if value == "no":
                raise ValueError("not this one")
            return super().encode(value)

    hooks, log, _ = recording()
    cache: cascache.CAS[Any] = cascache.new(
        Options(namespace="ns", provider=MemoryProvider(), codec=Picky(), hooks=hooks)
    )
    assert cache.get_or_load("k", lambda: "no") == "no"
    [(op, key, error)] = [args for _, event, args in log if event == "codec_error"]
    assert (op, key) == ("get_or_load", "k") and isinstance(error.cause, ValueError)


def test_a_store_that_raises_a_codec_error_is_a_store_error() -> None:
    class Odd(MemoryProvider):
        def set(self, key: str, value: bytes, cost: int, ttl: float | None) -> bool:
            raise cascache.CodecError("a store's own failure")

    hooks, log, _ = recording()
    cache: cascache.CAS[Any] = cascache.new(
        Options(namespace="ns", provider=Odd(), codec=JsonCodec(), hooks=hooks)
    )
    assert cache.get_or_load("k", lambda: 1) == 1
    assert [event for event in names(log) if event.endswith("_error")] == ["store_error"]


def outage_events(kind: str) -> list[str]:
    """What one get_or_load during a Redis outage reports, by topology kind."""
    if kind == "redis":
        # The one-server read fails (a miss, from the loader), then the snapshot.
        return ["read_error", "miss", "version_snapshot_error", "load"]
    # Values in process: nothing there, so the fence is never read; the snapshot fails.
    return ["miss", "version_snapshot_error", "load"]


@pytest.mark.parametrize("kind", ["redis", "shared-versions"])
def test_a_redis_outage_in_get_or_load_is_an_outage_not_a_cleanup(kind: str) -> None:
    hooks, log, counters = recording()
    server = fakeredis.FakeServer()
    client = fakeredis.FakeRedis(server=server)
    cache: cascache.CAS[Any]
    if kind == "redis":
        cache = cascache.redis.new(
            cascache.redis.Options(
                namespace="ns", client=client, codec=JsonCodec(), hooks=hooks, close_client=True
            )
        )
    else:
        cache = cascache.new(
            Options(
                namespace="ns",
                provider=MemoryProvider(),
                gen_store=cascache.redis.new_gen_store(client, close_client=True),
                codec=JsonCodec(),
                hooks=hooks,
            )
        )
    server.connected = False
    assert cache.get_or_load("k", lambda: 1) == 1
    assert names(log) == outage_events(kind)
    errors = [(event, args) for _, event, args in log if event.endswith("_error")]
    assert all(args[1] == "k" for _, args in errors)
    assert [args[0] for event, args in errors if event == "read_error"] == (
        ["get_or_load"] if kind == "redis" else []
    )
    snap = counters.snapshot()
    assert (snap.read_errors, snap.version_errors, snap.cleanup_errors) == (
        1 if kind == "redis" else 0,
        1,
        0,
    )
    server.connected = True
    assert cache.get_or_load("k", lambda: 2) == 2  # back: loads and stores again
    assert cache.get("k") == cascache.Hit(2)
    cache.close()


@pytest.mark.parametrize("kind", ["redis", "shared-versions"])
def test_a_redis_outage_in_an_async_get_or_load_is_an_outage(kind: str) -> None:
    hooks, log, _ = recording()
    server = fakeredis.FakeServer()

    async def scenario() -> None:
        client = fakeredis.FakeAsyncRedis(server=server)
        cache: AsyncCAS[Any]
        if kind == "redis":
            cache = await cascache.redis.aio.new(
                cascache.redis.aio.Options(
                    namespace="ns",
                    client=client,
                    codec=JsonCodec(),
                    hooks=hooks,
                    check_persistence=False,
                    close_client=True,
                )
            )
        else:
            cache = cascache.aio.new(
                cascache.aio.AsyncOptions(
                    namespace="ns",
                    provider=MemoryProvider(),
                    gen_store=cascache.redis.aio.new_gen_store(client, close_client=True),
                    codec=JsonCodec(),
                    hooks=hooks,
                )
            )
        server.connected = False
        try:
            assert await cache.get_or_load("k", lambda: 1) == 1
        finally:
            server.connected = True
            await cache.aclose()

    asyncio.run(scenario())
    assert names(log) == outage_events(kind)
    assert "cleanup_error" not in names(log)


def test_a_redis_outage_in_get_many_or_load_is_a_read_error() -> None:
    hooks, log, counters = recording()
    server = fakeredis.FakeServer()
    cache: cascache.CAS[Any] = cascache.redis.new(
        cascache.redis.Options(
            namespace="ns",
            client=fakeredis.FakeRedis(server=server),
            codec=JsonCodec(),
            hooks=hooks,
            close_client=True,
        )
    )
    server.connected = False
    assert cache.get_many_or_load(["a", "b"], lambda keys: dict.fromkeys(keys, 1)) == {
        "a": 1,
        "b": 1,
    }
    assert names(log) == ["read_error", "miss", "miss", "version_snapshot_error", "load"]
    # The read that failed is the batch's: its misses name it.
    assert [args for _, event, args in log if event == "miss"] == [
        ("get_many_or_load", "a"),
        ("get_many_or_load", "b"),
    ]
    snap = counters.snapshot()
    assert (snap.misses, snap.read_errors, snap.version_errors, snap.errors) == (2, 1, 1, 2)
    cache.close()


def test_a_follower_reports_its_miss_once_and_no_load() -> None:
    """A get_or_load that waits for another caller's load and is handed its value: one
    miss for the waiter, one load for the leader, no second hit or miss for the proof."""
    hooks, log, counters = recording()
    cache: cascache.CAS[Any] = cascache.new(
        Options(namespace="ns", provider=MemoryProvider(), codec=JsonCodec(), hooks=hooks)
    )
    started, release = threading.Event(), threading.Event()

    def slow() -> int:
        started.set()
        release.wait(5)
        return 1

    results: list[int] = []
    leader = threading.Thread(
        daemon=True, target=lambda: results.append(cache.get_or_load("k", slow))
    )
    leader.start()
    assert started.wait(5)
    follower = threading.Thread(
        daemon=True, target=lambda: results.append(cache.get_or_load("k", slow))
    )
    follower.start()
    deadline = time.monotonic() + 5
    while len([e for e in traffic(log) if e[0] == "miss"]) < 2 and time.monotonic() < deadline:
        time.sleep(0.001)
    release.set()
    leader.join(5)
    follower.join(5)
    assert results == [1, 1]
    snap = counters.snapshot()
    assert (snap.hits, snap.misses, snap.loads, snap.stored) == (0, 2, 1, 1)


def test_failures_by_kind_maps_every_absorbed_failure_to_one_call() -> None:
    from cascache.hooks import FailuresByKind

    seen: list[tuple[str, str]] = []

    class Recorder(FailuresByKind):
        def failed(self, op: str, kind: str) -> None:
            seen.append((op, kind))

    hook, error = Recorder(), ConnectionError("down")
    hook.version_snapshot_error("get", "k", error)
    hook.invalidate_outage("k", error, None)
    hook.read_error("get_or_load", "k", error)
    hook.store_error("get_or_load", "k", error)
    hook.codec_error("get_or_load", "k", error)
    hook.cleanup_error("get", "k", error)
    assert seen == [
        ("get", "version"),
        ("invalidate", "invalidate"),
        ("get_or_load", "read"),
        ("get_or_load", "store"),
        ("get_or_load", "codec"),
        ("get", "cleanup"),
    ]
