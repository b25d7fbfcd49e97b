"""Coalescing: concurrent misses of one key in one cache share one load (DESIGN §3.9).

A ``get_or_load`` that misses, holding the fence it will store under, either *leads* a
flight (it loads and stores, as without coalescing) or *joins* the flight already in the
air for the key, waits for it to land, and returns its value **only with proof**, taken
after it joined, that the fence the flight loaded under was still current then:

* the flight's conditional store was issued after the caller joined and reported stored
  (the store's atomic check saw the fence current after the join), or
* a read made after the flight landed serves an entry, or delivers that same fence.

Why that is enough: an ``invalidate`` that returned before the caller started had
advanced the fence before the caller joined, and fences are never reused, so after the
join the flight's fence can be current only if the flight snapshotted it after that
advance, and loaded after that. Without proof the caller loads for itself. Joining any
flight in the air, with no proof, is the stale-set race again, one level up (bug zoo #13).

This module keeps the flights of one cache and decides nothing about freshness: the
joining rule and the proof are in :meth:`cascache.core.SingleCore.get_or_load`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading

from cascache.fence import Version

__all__ = ["Flight", "Flights"]


class Flight:
    """One load in the air for one key, and, once it has landed, what it did.

    Attributes:
        fence: the fence the leader loads under (read or snapshotted before its load).
        issued: the tick at which the leader issued its conditional store (``None``
            before); compared with a follower's join tick.
        loaded: the leader's load returned ``value``.
        stored: the leader's conditional store reported stored.
        landed: the leader is done (stored or not, failed or cancelled).
    """

    __slots__ = (
        "_event",
        "_lock",
        "_waiters",
        "fence",
        "issued",
        "landed",
        "loaded",
        "loading_thread",
        "stored",
        "task",
        "value",
    )

    def __init__(
        self, fence: Version, task: asyncio.Task[object] | None, lock: threading.Lock
    ) -> None:
        self.fence = fence
        self.issued: int | None = None
        self.loaded = False
        self.stored = False
        self.landed = False
        self.value: object = None
        self.task = task
        """The asyncio task leading the flight, if any (a nested call from its loader must
        not wait for itself)."""
        self.loading_thread: int | None = None
        """The thread running the leader's loader right now, if any (the same, for
        threads)."""
        # The flights' lock orders landing against a follower starting to wait; the
        # events are made only when someone waits (most flights have no follower).
        self._lock = lock
        self._event: threading.Event | None = None
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] | None = None

    def is_landed(self) -> bool:
        """Whether the flight has landed (a follower's wait can complete)."""
        return self.landed

    def wait(self) -> Flight:
        """Block the calling thread until the flight lands; return it."""
        with self._lock:
            if self.landed:
                return self
            if self._event is None:
                self._event = threading.Event()
            event = self._event
        event.wait()
        return self

    async def wait_async(self) -> Flight:
        """Await, on the running event loop, until the flight lands; return it.

        Each follower waits on a future of its own loop: one cache may serve several
        event loops (one per thread), and a leader on another loop's thread must wake
        each one through its own loop.
        """
        loop = asyncio.get_running_loop()
        with self._lock:
            if self.landed:
                return self
            waiter: asyncio.Future[None] = loop.create_future()
            if self._waiters is None:
                self._waiters = []
            self._waiters.append((loop, waiter))
        await waiter
        return self

    def _wake(self) -> None:
        """Wake every follower (called once the flight is marked landed)."""
        if self._event is not None:
            self._event.set()
        for loop, waiter in self._waiters or ():
            # A loop already closed has nobody left to wake.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, waiter)

    def __repr__(self) -> str:
        if not self.landed:
            return f"Flight(in the air, fence {self.fence})"
        outcome = "stored" if self.stored else "not stored"
        what = f"loaded {self.value!r}" if self.loaded else "no value"
        return f"Flight(landed, fence {self.fence}, {what}, {outcome}, issued at {self.issued})"


class Flights:
    """The flights in the air in one cache, by key; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[str, Flight] = {}
        self._ticks = itertools.count(1)

    def join(
        self, key: str, fence: Version, task: asyncio.Task[object] | None = None
    ) -> tuple[Flight | None, int | None]:
        """Join the flight in the air for ``key``, or lead a new one under ``fence``.

        ``task``: the calling asyncio task (``None`` for a thread). Returns ``(flight,
        tick)`` for a follower (the tick it joined at), ``(flight, None)`` for a new
        leader, and ``(None, None)`` when the caller is the leader's own loader calling
        back in (waiting for itself would never end): it loads alone.
        """
        lock = self._lock
        with lock:
            flight = self._flights.get(key)
            if flight is None:
                flight = self._flights[key] = Flight(fence, task, lock)
                return flight, None
            if flight.loading_thread == threading.get_ident() or (
                task is not None and flight.task is task
            ):
                return None, None
            return flight, next(self._ticks)

    def issue(self, flight: Flight) -> None:
        """Record that the leader is about to issue its conditional store."""
        # ``next`` on an ``itertools.count`` is atomic: ticks stay unique and increasing.
        flight.issued = next(self._ticks)

    def land(self, key: str, flight: Flight) -> None:
        """Take the flight out of the air (later misses lead a new one) and wake its
        followers."""
        with self._lock:
            if self._flights.get(key) is flight:
                del self._flights[key]
            # Under the lock: a follower either sees it landed or has made its event.
            flight.landed = True
        flight._wake()

    def in_air(self, key: str) -> bool:
        """Whether a flight for ``key`` is in the air."""
        return key in self._flights

    def __len__(self) -> int:
        return len(self._flights)


def _settle(waiter: asyncio.Future[None]) -> None:
    """Complete a follower's wait, unless the follower was cancelled meanwhile."""
    if not waiter.done():
        waiter.set_result(None)


def current_task() -> asyncio.Task[object] | None:
    """The running asyncio task, or ``None`` outside an event loop."""
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running event loop: a thread of the sync API, or the model
        return None
