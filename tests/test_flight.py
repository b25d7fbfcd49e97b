"""Tests for coalescing (cascache.flight and get_or_load's joining rule), with threads and
with tasks: one load for a herd of cold requests, and never a stale value handed on."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import fakeredis
import pytest

import cascache
import cascache.aio
import cascache.redis
import cascache.redis.aio
from cascache import Hooks, JsonCodec, LocalStore, OpError, Options, WriteOutcome
from cascache.aio import AsyncCAS
from cascache.batch import Core
from cascache.effects import Process
from cascache.flight import Flight
from model.zoo import JoinAny

CoreFactory = Callable[[Options[Any]], Core[Any]]
T = TypeVar("T")


def _sync(core: CoreFactory = Core, **extra: Any) -> cascache.CAS[Any]:
    return cascache.CAS(
        core(Options(namespace="f", provider=LocalStore(), codec=JsonCodec(), **extra))
    )


# --- threads ---------------------------------------------------------------------------


class Herd:
    """Threads of a herd, each blocked either in the loader (a leader, until released) or
    waiting for a flight: once every one is blocked, every join has happened."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, size: int) -> None:
        self.size = size
        self.blocked: set[int] = set()
        self.lock = threading.Lock()
        self.release = threading.Event()
        waiting = Flight.wait

        def counted(flight: Flight) -> Flight:
            self.block()
            return waiting(flight)

        monkeypatch.setattr(Flight, "wait", counted)

    def block(self) -> None:
        with self.lock:
            self.blocked.add(threading.get_ident())

    def in_loader(self) -> None:
        self.block()
        assert self.release.wait(10)

    def release_when_all_blocked(self) -> None:
        deadline = time.monotonic() + 10
        while len(self.blocked) < self.size:
            assert time.monotonic() < deadline, f"only {len(self.blocked)} blocked"
            time.sleep(0.001)
        self.release.set()


@pytest.mark.parametrize("size", [10, 50])
def test_a_herd_of_cold_requests_makes_one_load(monkeypatch: pytest.MonkeyPatch, size: int) -> None:
    cache = _sync()
    herd = Herd(monkeypatch, size)
    loads = 0
    results: list[object] = []

    def loader() -> str:
        nonlocal loads
        loads += 1
        herd.in_loader()
        return "row"

    threads = [
        threading.Thread(daemon=True, target=lambda: results.append(cache.get_or_load("k", loader)))
        for _ in range(size)
    ]
    for thread in threads:
        thread.start()
    herd.release_when_all_blocked()
    for thread in threads:
        thread.join(10)
    assert results == ["row"] * size
    assert loads == 1


def test_without_coalescing_every_cold_request_loads() -> None:
    cache = _sync(coalesce=False)
    assert cache.core.flights is None
    loads = 0
    start = threading.Barrier(8)

    def loader() -> str:
        nonlocal loads
        loads += 1
        time.sleep(0.05)
        return "row"

    def request() -> None:
        start.wait()
        cache.get_or_load("k", loader)

    threads = [threading.Thread(daemon=True, target=request) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert loads == 8
    assert cache.get_many_or_load(["a", "b"], lambda keys: {k: "v" + k for k in keys}) == {
        "a": "va",
        "b": "vb",
    }


def _stale_race_with_threads(monkeypatch: pytest.MonkeyPatch, core: CoreFactory) -> object:
    """The issue's scenario: a slow load of v0 is in the air; the source is written and
    the invalidate returns; a request that starts after that meets the flight. Returns
    what that request got."""
    cache = _sync(core)
    herd = Herd(monkeypatch, 2)  # the leader in its loader, the follower on the flight
    db = {"k": "v0"}
    loading = threading.Event()

    def slow() -> str:
        value = db["k"]  # read before the write below
        loading.set()
        herd.in_loader()
        return value

    leader = threading.Thread(daemon=True, target=lambda: cache.get_or_load("k", slow))
    leader.start()
    assert loading.wait(5)
    db["k"] = "v1"
    cache.invalidate("k")
    got: list[object] = []
    follower = threading.Thread(
        daemon=True, target=lambda: got.append(cache.get_or_load("k", lambda: db["k"]))
    )
    follower.start()
    herd.release_when_all_blocked()
    leader.join(5)
    follower.join(5)
    return got[0]


def test_a_request_after_an_invalidate_is_never_handed_an_older_flight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert _stale_race_with_threads(monkeypatch, Core) == "v1"


def test_joining_without_proof_hands_out_the_stale_value(monkeypatch: pytest.MonkeyPatch) -> None:
    # The same scenario with the naive rule (bug zoo #13): the test above can fail.
    assert _stale_race_with_threads(monkeypatch, JoinAny) == "v0"


# --- the proof rule, one effect at a time ---------------------------------------------------
#
# A follower returns the flight's value only with proof that the flight's fence was
# current after it joined (``SingleCore.follow``): the leader's store issued after the
# join and stored; else a proof read that serves an entry, or that delivers the flight's
# fence. Each proof is taken here on its own, with the effects the follower makes.


class Traffic(Hooks):
    """Records the hit, miss, load and read_error events."""

    def __init__(self) -> None:
        self.events: list[tuple[object, ...]] = []

    def hit(self, op: str, key: str) -> None:
        self.events.append(("hit", op, key))

    def miss(self, op: str, key: str) -> None:
        self.events.append(("miss", op, key))

    def load(self, op: str, keys: Any, seconds: float) -> None:
        self.events.append(("load", op, tuple(keys)))

    def read_error(self, op: str, key: str, error: BaseException) -> None:
        self.events.append(("read_error", op, key, error))

    def hits_and_misses(self) -> list[tuple[object, ...]]:
        return [e for e in self.events if e[0] in ("hit", "miss")]


ONE_MISS_EACH = [("miss", "get_or_load", "k"), ("miss", "get_or_load", "k")]
"""The leader's and the follower's first reads; a proof read reports neither."""


@pytest.fixture(params=["local-store", "redis"])
def stepped(request: pytest.FixtureRequest) -> tuple[cascache.CAS[Any], Traffic]:
    """A cache whose single read is one effect (a key reader), and its traffic."""
    traffic = Traffic()
    if request.param == "local-store":
        options: Options[Any] = Options(
            namespace="f", provider=LocalStore(), codec=JsonCodec(), hooks=traffic
        )
    else:
        client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
        options = dataclasses.replace(
            cascache.redis.cache_options(
                cascache.redis.Options(namespace="f", client=client, codec=JsonCodec())
            ),
            hooks=traffic,
        )
    return cascache.CAS(Core(options)), traffic


def _loads(tag: str = "row") -> tuple[Callable[[], str], list[str]]:
    """A loader returning ``row-1``, ``row-2``, ... and the list of what it returned."""
    done: list[str] = []

    def load() -> str:
        done.append(f"{tag}-{len(done) + 1}")
        return done[-1]

    return load, done


def _until(process: Process[Any], target: str) -> list[str]:
    """Step ``process`` until its pending effect touches ``target`` (or it is done);
    return the effects it performed, as ``target.op``."""
    made: list[str] = []
    while process.pending is not None and process.pending.target != target:
        made.append(f"{process.pending.target}.{process.pending.op}")
        process.step()
    return made


def _finish(process: Process[Any]) -> list[str]:
    made = _until(process, "no such target")
    assert process.done
    return made


def _fill(cache: cascache.CAS[Any], load: Callable[[], str], batch: bool = False) -> Process[Any]:
    """A ``get_or_load`` of ``k``, or (``batch``) a ``get_many_or_load`` of it alone."""
    if batch:
        return Process(cache.core.get_many_or_load(["k"], lambda keys: {"k": load()}, None))
    return Process(cache.core.get_or_load("k", load, None))


def _value(process: Process[Any], batch: bool) -> object:
    """What a :func:`_fill` returned for ``k``."""
    return process.result["k"] if batch else process.result


KINDS = pytest.mark.parametrize("batch", [False, True], ids=["get_or_load", "get_many_or_load"])
"""Coalescing's proofs hold for either kind of leader or follower (``get_many_or_load``
follows ``get_or_load``'s rule key by key)."""


def _waiting_follower(
    cache: cascache.CAS[Any], load: Callable[[], str], batch: bool = False
) -> Process[Any]:
    """A request for the key that missed, joined the flight in the air and waits on it."""
    follower = _fill(cache, load, batch)
    _until(follower, "flight")
    assert follower.pending is not None, "the request did not join the flight"
    return follower


def _leader_past_its_load(cache: cascache.CAS[Any], load: Callable[[], str]) -> Process[Any]:
    """A leader that has loaded and issued its conditional store (its next effect)."""
    leader = _fill(cache, load)
    _until(leader, "source")
    leader.step()
    assert leader.pending is not None and leader.pending.target != "source"
    return leader


def _proof_read_hands_on_the_load(
    leader: Process[Any], follower: Process[Any], loaded: list[str]
) -> None:
    """Finish both: the follower waits, makes one proof read, and returns the one load."""
    _finish(leader)
    made = _finish(follower)
    assert made[0] == "flight.wait" and len(made) == 2, made
    assert follower.result == "row-1" and loaded == ["row-1"]


@KINDS
def test_a_store_issued_after_the_join_is_proof_without_another_read(
    stepped: tuple[cascache.CAS[Any], Traffic], batch: bool
) -> None:
    cache, _ = stepped
    load, loaded = _loads()
    leader = _fill(cache, load, batch)
    _until(leader, "source")  # the leader leads the flight and is about to load
    follower = _waiting_follower(cache, load)
    _finish(leader)
    # The wait is the follower's last effect: the leader's store proves the fence.
    assert _finish(follower) == ["flight.wait"]
    assert follower.result == _value(leader, batch) == "row-1" and loaded == ["row-1"]


def test_a_proof_read_that_serves_the_entry_hands_it_on(
    stepped: tuple[cascache.CAS[Any], Traffic],
) -> None:
    # The leader's store was issued before the follower joined: that store proves
    # nothing to it, so the follower reads again, and the entry the read serves is proof.
    cache, traffic = stepped
    load, loaded = _loads()
    leader = _leader_past_its_load(cache, load)
    follower = _waiting_follower(cache, load)
    _proof_read_hands_on_the_load(leader, follower, loaded)
    assert traffic.hits_and_misses() == ONE_MISS_EACH


@KINDS
def test_a_proof_read_that_delivers_the_flights_fence_hands_on_the_load(
    stepped: tuple[cascache.CAS[Any], Traffic], batch: bool
) -> None:
    # The leader's store failed, so nothing is stored, but the fence it loaded under is
    # still current when the follower reads again: the loaded value is fresh.
    cache, _ = stepped
    load, loaded = _loads()
    leader = _fill(cache, load, batch)
    _until(leader, "source")
    follower = _waiting_follower(cache, load)
    leader.step()  # the load
    leader.step(fail=ConnectionError("store down"))  # the store's first effect
    _proof_read_hands_on_the_load(leader, follower, loaded)
    assert cache.get("k") is None


@KINDS
def test_a_failed_proof_read_is_reported_and_the_follower_loads_alone(
    stepped: tuple[cascache.CAS[Any], Traffic], batch: bool
) -> None:
    # A batch follower loads the key in its own second loader call, and its proof read's
    # failure names the batch operation.
    cache, traffic = stepped
    load, loaded = _loads()
    leader = _leader_past_its_load(cache, load)
    follower = _waiting_follower(cache, load, batch)
    _finish(leader)
    follower.step()  # the wait
    follower.step(fail=ConnectionError("read down"))  # the proof read
    _finish(follower)
    assert _value(follower, batch) == "row-2" and loaded == ["row-1", "row-2"]
    errors = [e for e in traffic.events if e[0] == "read_error"]
    assert len(errors) == 1
    _, op, key, error = errors[0]
    name = "get_many_or_load" if batch else "get_or_load"
    assert (op, key) == (name, "k")
    assert isinstance(error, OpError) and (error.op, error.key) == (name, "k")
    assert isinstance(error.cause, ConnectionError)
    # One miss each for the first reads (the follower's in its own name); none for the
    # proof read.
    assert traffic.hits_and_misses() == [ONE_MISS_EACH[0], ("miss", name, "k")]


def test_a_batch_followers_own_load_is_stored_with_the_callers_ttl() -> None:
    # The keys a get_many_or_load could not prove are loaded in its second loader call
    # and stored as its first would have been: under the caller's TTL.
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    cache = cascache.CAS(
        Core(
            cascache.redis.cache_options(
                cascache.redis.Options(namespace="f", client=client, codec=JsonCodec())
            )
        )
    )
    load, loaded = _loads()
    leader = _leader_past_its_load(cache, load)
    follower = Process(cache.core.get_many_or_load(["k"], lambda keys: {"k": load()}, 30.0))
    _until(follower, "flight")
    _finish(leader)
    follower.step()  # the wait
    follower.step(fail=ConnectionError("read down"))  # the proof read
    _finish(follower)
    assert follower.result == {"k": "row-2"} and loaded == ["row-1", "row-2"]
    assert 0 < client.pttl(cache.core.keys.single("k").value) <= 30_000


def test_a_follower_that_joins_after_the_store_landed_its_write_still_needs_proof(
    stepped: tuple[cascache.CAS[Any], Traffic],
) -> None:
    # The window between the leader's store taking effect and its flight landing: there,
    # an invalidate can complete and a new request can still join. That request started
    # after the invalidate, so the flight's stored value is stale to it, and the store
    # (issued before it joined) proves nothing. The write hook runs in that window.
    cache, _ = stepped
    database = {"k": "old"}
    late: list[Process[Any]] = []

    class InTheWindow(Hooks):
        def write(self, op: str, key: str, outcome: WriteOutcome) -> None:
            if outcome is WriteOutcome.STORED and not late:
                database["k"] = "new"
                cache.invalidate("k")
                late.append(_waiting_follower(cache, lambda: database["k"]))

    cache.core.hooks = InTheWindow()
    leader = Process(cache.core.get_or_load("k", lambda: database["k"], None))
    _finish(leader)
    assert leader.result == "old" and len(late) == 1
    _finish(late[0])
    assert late[0].result == "new"
    assert cache.get("k") in (None, cascache.Hit("new"))


@pytest.mark.parametrize("leader_op", ["get_or_load", "get_many_or_load"])
def test_a_store_that_lost_proves_nothing_to_a_follower_that_joined_before_it(
    stepped: tuple[cascache.CAS[Any], Traffic], leader_op: str
) -> None:
    # The race of DESIGN §1 with a follower: the leader reads the old row; the row is
    # written and invalidated; a new request joins the flight; the leader's store, issued
    # after that join, loses to the invalidate. The flight reports not stored, so the
    # follower must prove the fence itself, fail, and load the new row. The write and the
    # join happen inside the loader (the join on another thread: the loader's own thread
    # calling back in would load alone).
    cache, _ = stepped
    database = {"k": "old"}
    late: list[Process[Any]] = []

    def write_and_join() -> None:
        database["k"] = "new"
        cache.invalidate("k")
        joiner = threading.Thread(
            target=lambda: late.append(_waiting_follower(cache, lambda: database["k"])),
            daemon=True,
        )
        joiner.start()
        joiner.join(5)

    def load_one() -> str:
        value = database["k"]
        write_and_join()
        return value

    def load_many(keys: list[str]) -> dict[str, str]:
        values = {key: database[key] for key in keys}
        write_and_join()
        return values

    if leader_op == "get_or_load":
        leader = Process(cache.core.get_or_load("k", load_one, None))
    else:
        leader = Process(cache.core.get_many_or_load(["k"], load_many, None))
    _finish(leader)
    assert leader.result in ("old", {"k": "old"}) and len(late) == 1
    _finish(late[0])
    assert late[0].result == "new"
    assert cache.get("k") in (None, cascache.Hit("new"))


def test_a_loader_that_calls_back_in_for_its_key_loads_alone() -> None:
    cache = _sync()

    def outer() -> str:
        return "outer+" + cache.get_or_load("k", lambda: "inner")

    assert cache.get_or_load("k", outer) == "outer+inner"


def _in_thread(call: Callable[[], object]) -> list[object]:
    """Run ``call`` in a thread and wait at most 10 s: a hang fails the test, not the run."""
    out: list[object] = []
    thread = threading.Thread(target=lambda: out.append(call()), daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "the call hung"
    return out


def test_a_batch_loader_that_calls_back_in_for_one_of_its_keys_loads_alone() -> None:
    cache = _sync()

    def loader(keys: list[str]) -> dict[str, str]:
        # Waiting for the batch's own flight of "a" would never end.
        return {k: cache.get_or_load(k, lambda k=k: "v" + k) for k in keys}

    assert _in_thread(lambda: cache.get_many_or_load(["a", "b"], loader)) == [
        {"a": "va", "b": "vb"}
    ]


class Abort(BaseException):
    """A ``KeyboardInterrupt`` stand-in that pytest does not treat as one."""


@pytest.mark.parametrize("batch", [False, True], ids=["get_or_load", "get_many_or_load"])
def test_a_leader_interrupted_by_a_base_exception_lands_its_flight(batch: bool) -> None:
    cache = _sync()

    def interrupted() -> Any:
        raise Abort

    kept: list[BaseException] = []  # as a REPL keeps sys.last_value: the generator lives
    try:
        if batch:
            cache.get_many_or_load(["k"], lambda keys: interrupted())
        else:
            cache.get_or_load("k", interrupted)
    except Abort as exc:
        kept.append(exc)
    assert len(kept) == 1
    assert len(cache.core.flights or ()) == 0
    assert _in_thread(lambda: cache.get_or_load("k", lambda: "fresh")) == ["fresh"]


def test_a_failed_leader_leaves_its_followers_to_load() -> None:
    cache = _sync()
    loading = threading.Event()
    release = threading.Event()
    errors: list[BaseException] = []

    def failing() -> str:
        loading.set()
        release.wait(5)
        raise LookupError("source down")

    def lead() -> None:
        try:
            cache.get_or_load("k", failing)
        except LookupError as exc:
            errors.append(exc)

    leader = threading.Thread(daemon=True, target=lead)
    leader.start()
    loading.wait(5)
    got: list[object] = []
    follower = threading.Thread(
        daemon=True, target=lambda: got.append(cache.get_or_load("k", lambda: "ok"))
    )
    follower.start()
    time.sleep(0.05)
    release.set()
    leader.join(5)
    follower.join(5)
    assert len(errors) == 1 and got == ["ok"]
    assert len(cache.core.flights or ()) == 0


# --- tasks ------------------------------------------------------------------------------


def _run(scenario: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` bounded at 10 s: a task left waiting on a flight fails the test
    instead of hanging the run."""
    return asyncio.run(asyncio.wait_for(scenario, 10))


def _local_async() -> AsyncCAS[Any]:
    return cascache.aio.new(Options(namespace="f", provider=LocalStore(), codec=JsonCodec()))


def _redis_async() -> AsyncCAS[Any]:
    client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    return cascache.aio.new(
        cascache.redis.aio.cache_options(
            cascache.redis.aio.Options(
                namespace="f", client=client, codec=JsonCodec(), close_client=True
            )
        )
    )


@pytest.mark.parametrize("make", [_local_async, _redis_async], ids=["local-store", "redis"])
@pytest.mark.parametrize("herd", [10, 100])
def test_a_herd_of_cold_tasks_makes_one_load(make: Callable[[], AsyncCAS[Any]], herd: int) -> None:
    loads = 0

    async def loader() -> str:
        nonlocal loads
        loads += 1
        await asyncio.sleep(0.01)
        return "row"

    async def scenario() -> list[str]:
        cache = make()
        try:
            return await asyncio.gather(*(cache.get_or_load("k", loader) for _ in range(herd)))
        finally:
            await cache.aclose()

    assert _run(scenario()) == ["row"] * herd
    assert loads == 1


@pytest.mark.parametrize(("core", "expected"), [(Core, "v1"), (JoinAny, "v0")])
def test_a_task_after_an_invalidate_is_never_handed_an_older_flight(
    core: CoreFactory, expected: str
) -> None:
    db = {"k": "v0"}

    async def scenario() -> object:
        cache = AsyncCAS(core(Options(namespace="f", provider=LocalStore(), codec=JsonCodec())))
        loading, release = asyncio.Event(), asyncio.Event()

        async def slow() -> str:
            value = db["k"]
            loading.set()
            await release.wait()
            return value

        leader = asyncio.create_task(cache.get_or_load("k", slow))
        await loading.wait()
        db["k"] = "v1"
        await cache.invalidate("k")
        follower = asyncio.create_task(cache.get_or_load("k", lambda: db["k"]))
        for _ in range(5):
            await asyncio.sleep(0)  # the follower reaches the flight and waits
        release.set()
        await leader
        return await follower

    assert _run(scenario()) == expected


def test_a_cancelled_leader_task_leaves_its_followers_to_load() -> None:
    async def scenario() -> object:
        cache = _local_async()
        loading = asyncio.Event()

        async def forever() -> str:
            loading.set()
            await asyncio.sleep(60)
            return "never"

        leader = asyncio.create_task(cache.get_or_load("k", forever))
        await loading.wait()
        follower = asyncio.create_task(cache.get_or_load("k", lambda: "mine"))
        for _ in range(5):
            await asyncio.sleep(0)
        leader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leader
        return await follower

    assert _run(scenario()) == "mine"


def test_an_async_loader_that_calls_back_in_for_its_key_loads_alone() -> None:
    async def scenario() -> str:
        cache = _local_async()

        async def outer() -> str:
            return "outer+" + await cache.get_or_load("k", lambda: "inner")

        return await cache.get_or_load("k", outer)

    assert _run(scenario()) == "outer+inner"


def test_an_async_batch_loader_that_calls_back_in_for_one_of_its_keys_loads_alone() -> None:
    async def scenario() -> dict[str, str]:
        cache = _local_async()

        async def outer(keys: list[str]) -> dict[str, str]:
            # Waiting for this task's own flight of "a" would never end.
            return {k: "outer+" + await cache.get_or_load(k, lambda k=k: "v" + k) for k in keys}

        return await cache.get_many_or_load(["a", "b"], outer)

    assert _run(scenario()) == {"a": "outer+va", "b": "outer+vb"}


def test_followers_on_other_event_loops_are_woken() -> None:
    """One cache shared by threads that each run their own event loop: the leader's
    thread wakes each follower through the follower's own loop."""
    cache = _local_async()
    loading, release = threading.Event(), threading.Event()

    async def slow() -> str:
        loading.set()
        await asyncio.to_thread(release.wait, 10)
        return "v"

    results: dict[str, object] = {}

    def run(name: str, loader: Callable[[], Any]) -> threading.Thread:
        def body() -> None:
            results[name] = asyncio.run(cache.get_or_load("k", loader))

        thread = threading.Thread(target=body, daemon=True)
        thread.start()
        return thread

    leader = run("leader", slow)
    assert loading.wait(10)
    followers = [run(name, lambda: "own") for name in ("b", "c")]
    deadline = time.monotonic() + 10
    while cache.core.flights is not None and time.monotonic() < deadline:
        flight = cache.core.flights._flights.get("k")
        if flight is not None and len(flight._waiters or ()) == 2:
            break
        time.sleep(0.01)
    release.set()
    for thread in (leader, *followers):
        thread.join(10)
        assert not thread.is_alive(), "a follower on another loop was never woken"
    assert results == {"leader": "v", "b": "v", "c": "v"}


@KINDS
def test_an_awaited_loader_that_gives_a_coroutine_is_named_as_such(batch: bool) -> None:
    async def fetch() -> str:
        return "v"

    async def forgot_await(*keys: Any) -> Any:
        return fetch()

    async def scenario() -> None:
        cache = _local_async()
        name = "get_many_or_load('k')" if batch else "get_or_load('k')"
        with pytest.raises(
            TypeError, match=re.escape(f"cascache {name}: awaiting the loader gave coroutine")
        ):
            if batch:
                await cache.get_many_or_load(["k"], forgot_await)
            else:
                await cache.get_or_load("k", forgot_await)

    _run(scenario())


# --- get_many_or_load ----------------------------------------------------------------------


def test_overlapping_batch_fills_load_each_key_once(monkeypatch: pytest.MonkeyPatch) -> None:
    cache = _sync()
    batches = [["a", "b"], ["b", "c"], ["a", "c"], ["a", "b", "c"], ["c"], ["b"]]
    herd = Herd(monkeypatch, len(batches))
    loaded: list[str] = []

    def loader(keys: list[str]) -> dict[str, str]:
        with herd.lock:
            loaded.extend(keys)
        herd.in_loader()
        return {k: k.upper() for k in keys}

    results: list[dict[str, Any]] = []
    threads = [
        threading.Thread(
            daemon=True,
            target=lambda keys=keys: results.append(cache.get_many_or_load(keys, loader)),
        )
        for keys in batches
    ]
    for thread in threads:
        thread.start()
    herd.release_when_all_blocked()
    for thread in threads:
        thread.join(10)
    assert sorted(loaded) == ["a", "b", "c"], "each key loaded once"
    assert sorted(sorted(r.items()) for r in results) == sorted(
        sorted({k: k.upper() for k in keys}.items()) for keys in batches
    )


@pytest.mark.parametrize(("core", "expected"), [(Core, "v1"), (JoinAny, "v0")])
def test_a_batch_after_an_invalidate_is_never_handed_an_older_flight(
    core: CoreFactory, expected: str
) -> None:
    db = {"k": "v0", "j": "j0"}

    async def scenario() -> object:
        cache = AsyncCAS(core(Options(namespace="f", provider=LocalStore(), codec=JsonCodec())))
        loading, release = asyncio.Event(), asyncio.Event()

        async def slow() -> str:
            value = db["k"]
            loading.set()
            await release.wait()
            return value

        leader = asyncio.create_task(cache.get_or_load("k", slow))
        await loading.wait()
        db["k"] = "v1"
        await cache.invalidate("k")
        follower = asyncio.create_task(
            cache.get_many_or_load(["k", "j"], lambda keys: {k: db[k] for k in keys})
        )
        for _ in range(5):
            await asyncio.sleep(0)  # the batch loads j, then waits for k's flight
        release.set()
        await leader
        got = await follower
        assert got["j"] == "j0"
        return got["k"]

    assert _run(scenario()) == expected
