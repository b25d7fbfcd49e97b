"""Timing machinery shared by the benchmarks: interleaved latency blocks, thread runs, heap.

Nothing here knows about cascache or Redis; ``bench/redis_ops.py`` builds the contenders.

* :func:`measure` times contenders per call (``time.perf_counter_ns``) in blocks of
  ``block`` calls, in an order that changes every round (every permutation of three
  contenders over six rounds), with cyclic GC paused, so drift hits every contender alike.
* :func:`run_threads` runs one contender's step function on N threads for a fixed time.
* :func:`heap_growth` is the traced-memory (``tracemalloc``) growth of building a
  structure, measured with GC collected at both ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import gc
import io
import math
import pstats
import threading
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field


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
class AsyncContender(Contender):
    """A contender whose operation is a coroutine (``acall(i)``): each block runs as one
    coroutine on ``loop`` and times every ``await acall(i)`` exactly as :class:`Contender`
    times a call, so the event loop's cost of starting a block stays outside the timing.
    ``call(i)`` (round-trip counting, profiles) runs one call to completion on the loop.
    """

    acall: Callable[[int], Awaitable[object]] | None = None
    loop: asyncio.AbstractEventLoop | None = None

    def run_block(self, n: int, record: bool) -> None:
        assert self.loop is not None
        if self.prepare is not None:
            self.prepare(n)
        self.loop.run_until_complete(self._block(n, record))

    async def _block(self, n: int, record: bool) -> None:
        acall = self.acall
        assert acall is not None
        clock = time.perf_counter_ns
        samples = self.samples
        for i in range(n):
            start = clock()
            await acall(i)
            elapsed = clock() - start
            if record:
                samples.append(elapsed)


def awaited(
    loop: asyncio.AbstractEventLoop, label: str, acall: Callable[[int], Awaitable[object]]
) -> AsyncContender:
    """An :class:`AsyncContender` for ``acall`` on ``loop``."""
    return AsyncContender(
        label, lambda i: loop.run_until_complete(_settle(acall(i))), acall=acall, loop=loop
    )


async def _settle(pending: Awaitable[object]) -> object:
    return await pending


@dataclass(frozen=True)
class Stats:
    """Median and p90 of per-call samples, in µs, less a fixed per-call overhead."""

    median_us: float
    p90_us: float
    samples: int

    @classmethod
    def of(cls, samples_ns: Sequence[int], overhead_ns: float = 0.0) -> Stats:
        ordered = sorted(samples_ns)
        n = len(ordered)
        if n == 0:
            return cls(math.nan, math.nan, 0)
        mid = n // 2
        median = ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2
        p90 = ordered[min(n - 1, math.ceil(0.9 * n) - 1)]
        return cls((median - overhead_ns) / 1000, (p90 - overhead_ns) / 1000, n)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic GC pauses inside timed blocks (collected before, instead)."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def round_order(contenders: Sequence[Contender], r: int) -> list[Contender]:
    """Round ``r``'s order: rotated every two rounds and reversed every other round, so no
    contender always runs first or always follows the same neighbour."""
    k = len(contenders)
    shift = (r // 2) % k
    order = [*contenders[shift:], *contenders[:shift]]
    if r % 2:
        order.reverse()
    return order


def measure(contenders: Sequence[Contender], iterations: int, block: int, warmup: int) -> None:
    """Warm each contender up, then record ``iterations`` calls of each, interleaved."""
    for contender in contenders:
        for _ in range(max(1, warmup // block)):
            contender.run_block(block, record=False)
    rounds = max(1, math.ceil(iterations / block))
    with gc_paused():
        for r in range(rounds):
            n = min(block, iterations - r * block)
            for contender in round_order(contenders, r):
                contender.run_block(n, record=True)


def call_overhead_ns(calls: int = 20_000, block: int = 100) -> float:
    """Median cost of timing a call that does nothing (clock pair plus one Python call)."""
    null = Contender("null", lambda i: None)
    measure([null], calls, block, warmup=block)
    return Stats.of(null.samples).median_us * 1000


def profile(contender: Contender, calls: int, block: int, strip: str) -> str:
    """cProfile of ``contender``'s calls (not its ``prepare``), top functions by own time."""
    profiler = cProfile.Profile()
    done = 0
    while done < calls:
        n = min(block, calls - done)
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
    site = text.find("ncalls")
    return text[site:].replace(strip, "") if site >= 0 else text


# -- throughput -----------------------------------------------------------------------


@dataclass(frozen=True)
class ThroughputRun:
    """One timed run: operations completed by all threads, loader calls, wall time."""

    ops: int
    loads: int
    seconds: float

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else math.nan


Step = Callable[[], int]
"""One operation of a thread's mix; returns how many times it called the loader."""


def run_threads(make_step: Callable[[int], Step], threads: int, duration: float) -> ThroughputRun:
    """Run ``make_step(t)()`` in a loop on each of ``threads`` threads for ``duration`` s.

    Every thread builds its step before a common barrier; the clock starts when all are
    released and stops when the last thread has finished the operation it was in when the
    time was up, and every completed operation counts (so the count and the time agree).
    An exception in any thread is raised here after all have stopped.
    """
    stop = [False]
    barrier = threading.Barrier(threads + 1)
    counts = [(0, 0)] * threads
    errors: list[BaseException] = []

    def body(t: int) -> None:
        try:
            step = make_step(t)
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()
            return
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            return
        ops = loads = 0
        try:
            while not stop[0]:
                loads += step()
                ops += 1
        except BaseException as exc:
            errors.append(exc)
            stop[0] = True
        counts[t] = (ops, loads)

    workers = [
        threading.Thread(target=body, args=(t,), name=f"bench-{t}", daemon=True)
        for t in range(threads)
    ]
    for worker in workers:
        worker.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        barrier.wait()
    started = time.perf_counter()
    deadline = started + duration
    while not stop[0] and (left := deadline - time.perf_counter()) > 0:
        time.sleep(min(left, 0.05))
    stop[0] = True
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return ThroughputRun(
        ops=sum(ops for ops, _ in counts), loads=sum(n for _, n in counts), seconds=elapsed
    )


# -- heap -----------------------------------------------------------------------------


def heap_growth(build: Callable[[], object]) -> tuple[int, object]:
    """Traced-memory growth of ``build()`` (bytes) and what it built, kept alive.

    Only allocations made after tracing starts are counted, so objects the caller built
    beforehand and keeps (keys, values) are not, even when the structure refers to them;
    whatever the structure allocates and keeps (its own copies, entries, indexes) is.
    Cyclic garbage is collected before both readings.
    """
    gc.collect()
    tracemalloc.start()
    try:
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        built = build()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return after - before, built
