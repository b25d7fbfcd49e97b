"""Stampede benchmark: how many times the loader runs for a thundering herd.

Two scenarios, each counting loader calls (the database queries a cache exists to save):

* **cold herd**: N concurrent requests (N = 10, 100) for one key that is not cached, as
  threads (sync API) and as tasks (asyncio API); the loader takes ``--load-ms`` (a
  database query). Ideal: 1 load per herd.
* **hot key under writes**: readers (8 threads, or 50 tasks) read one hot key through
  the cache for ``--seconds``, while a writer changes the source and invalidates every
  ``--write-ms``. Ideal: about one load per invalidation window ("windows" below is the
  number of invalidates that returned).

Contenders: a plain cache-aside (check a dict, else load and store: what the issue found,
one load per request), cascache with coalescing off (``coalesce=False``, the behaviour
before coalescing), cascache (on a ``LocalStore``, and on Redis with
``cascache.redis.new`` / ``cascache.redis.aio.new`` against a server this script starts
on a free port, never 6379), and the peers that protect against stampedes, where
installed (the ``bench`` extra): dogpile.cache's ``get_or_create`` (threads), cashews'
``@cache(lock=True)`` and aiocache's ``@cached`` (tasks), each on its in-memory backend.
The peers do not check freshness: their numbers are loads only.

Run: ``.venv/bin/python bench/herd.py`` (about 40 s). Never fails on timing: it reports.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import redis  # noqa: E402
import redis.asyncio  # noqa: E402

import cascache  # noqa: E402
import cascache.aio  # noqa: E402
import cascache.redis  # noqa: E402
import cascache.redis.aio  # noqa: E402
from cascache.aio import AsyncCAS  # noqa: E402
from model.servers import RedisServer  # noqa: E402

HERDS = (10, 100)
READER_THREADS = 8
READER_TASKS = 50


@dataclass
class Counter:
    """Loader calls, thread-safe."""

    calls: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def hit(self) -> None:
        with self._lock:
            self.calls += 1


@dataclass
class Row:
    scenario: str
    contender: str
    loads: int
    per: str


# -- contenders -----------------------------------------------------------------------

SyncGet = Callable[[str, Callable[[], object]], object]
"""get_or_load(key, loader) of a sync contender."""
AsyncGet = Callable[[str, Callable[[], Awaitable[object]]], Awaitable[object]]


def local(coalesce: bool) -> cascache.CAS[Any]:
    return cascache.new(
        cascache.Options(
            namespace="herd",
            provider=cascache.LocalStore(),
            codec=cascache.JsonCodec(),
            coalesce=coalesce,
        )
    )


def plain_dict() -> tuple[SyncGet, Callable[[str], None]]:
    store: dict[str, object] = {}

    def get(key: str, loader: Callable[[], object]) -> object:
        if key in store:
            return store[key]
        value = loader()
        store[key] = value
        return value

    def drop(key: str) -> None:
        store.pop(key, None)

    return get, drop


def sync_contenders(port: int) -> dict[str, Callable[[], tuple[SyncGet, Callable[[str], None]]]]:
    def cascache_of(make: Callable[[], cascache.CAS[Any]]) -> Any:
        def build() -> tuple[SyncGet, Callable[[str], None]]:
            cache = make()
            return (lambda k, f: cache.get_or_load(k, f)), cache.invalidate

        return build

    def on_redis() -> cascache.CAS[Any]:
        client = redis.Redis(port=port)
        client.flushall()
        return cascache.redis.new(
            cascache.redis.Options(
                namespace="herd", client=client, codec=cascache.JsonCodec(), close_client=True
            )
        )

    contenders: dict[str, Callable[[], tuple[SyncGet, Callable[[str], None]]]] = {
        "plain cache-aside (dict)": plain_dict,
        "cascache, coalesce=False": cascache_of(lambda: local(False)),
        "cascache LocalStore": cascache_of(lambda: local(True)),
        "cascache.redis.new": cascache_of(on_redis),
    }
    try:
        from dogpile.cache import make_region

        def dogpile() -> tuple[SyncGet, Callable[[str], None]]:
            region: Any = make_region().configure("dogpile.cache.memory")
            return (lambda k, f: region.get_or_create(k, f)), region.delete

        contenders["dogpile.cache get_or_create"] = dogpile
    except ImportError:
        pass
    return contenders


def async_contenders(port: int) -> dict[str, Callable[[], Awaitable[tuple[AsyncGet, Any]]]]:
    async def cascache_local(coalesce: bool) -> tuple[AsyncGet, Any]:
        cache: AsyncCAS[Any] = cascache.aio.new(
            cascache.Options(
                namespace="herd",
                provider=cascache.LocalStore(),
                codec=cascache.JsonCodec(),
                coalesce=coalesce,
            )
        )
        return cache.get_or_load, cache.invalidate

    async def cascache_redis() -> tuple[AsyncGet, Any]:
        client = redis.asyncio.Redis(port=port)
        await client.flushall()
        cache: AsyncCAS[Any] = await cascache.redis.aio.new(
            cascache.redis.aio.Options(
                namespace="herd", client=client, codec=cascache.JsonCodec(), close_client=True
            )
        )
        return cache.get_or_load, cache.invalidate

    async def plain() -> tuple[AsyncGet, Any]:
        store: dict[str, object] = {}

        async def get(key: str, loader: Callable[[], Awaitable[object]]) -> object:
            if key in store:
                return store[key]
            value = await loader()
            store[key] = value
            return value

        async def drop(key: str) -> None:
            store.pop(key, None)

        return get, drop

    contenders: dict[str, Callable[[], Awaitable[tuple[AsyncGet, Any]]]] = {
        "plain cache-aside (dict)": plain,
        "cascache.aio, coalesce=False": lambda: cascache_local(False),
        "cascache.aio LocalStore": lambda: cascache_local(True),
        "cascache.redis.aio.new": cascache_redis,
    }
    try:
        from cashews import Cache

        async def cashews_locked() -> tuple[AsyncGet, Any]:
            cache = Cache()
            cache.setup("mem://")
            loaders: dict[str, Callable[[], Awaitable[object]]] = {}

            @cache(ttl=300, key="herd:{key}", lock=True)
            async def load(key: str) -> object:
                return await loaders[key]()

            async def get(key: str, loader: Callable[[], Awaitable[object]]) -> object:
                loaders[key] = loader
                return await load(key)

            async def drop(key: str) -> None:
                await cache.delete(f"herd:{key}")

            return get, drop

        contenders["cashews @cache(lock=True)"] = cashews_locked
    except ImportError:
        pass
    try:
        from aiocache import cached  # type: ignore[import-untyped]

        async def aiocache_cached() -> tuple[AsyncGet, Any]:
            loaders: dict[str, Callable[[], Awaitable[object]]] = {}
            decorator = cached(ttl=300, key_builder=lambda f, key: f"herd:{key}")

            @decorator  # type: ignore[untyped-decorator]
            async def load(key: str) -> object:
                return await loaders[key]()

            async def get(key: str, loader: Callable[[], Awaitable[object]]) -> object:
                loaders[key] = loader
                return await load(key)

            async def drop(key: str) -> None:
                await decorator.cache.delete(f"herd:{key}")

            return get, drop

        contenders["aiocache @cached"] = aiocache_cached
    except ImportError:
        pass
    return contenders


# -- scenarios --------------------------------------------------------------------------


def cold_threads(build: Callable[[], tuple[SyncGet, Any]], herd: int, load_s: float) -> int:
    get, _ = build()
    loads = Counter()
    start = threading.Barrier(herd)

    def loader() -> object:
        loads.hit()
        time.sleep(load_s)
        return {"row": 1}

    def request() -> None:
        start.wait()
        get("k", loader)

    threads = [threading.Thread(target=request) for _ in range(herd)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return loads.calls


async def cold_tasks(
    build: Callable[[], Awaitable[tuple[AsyncGet, Any]]], herd: int, load_s: float
) -> int:
    get, _ = await build()
    loads = Counter()

    async def loader() -> object:
        loads.hit()
        await asyncio.sleep(load_s)
        return {"row": 1}

    await asyncio.gather(*(get("k", loader) for _ in range(herd)))
    return loads.calls


def hot_threads(
    build: Callable[[], tuple[SyncGet, Callable[[str], None]]],
    seconds: float,
    write_s: float,
    load_s: float,
) -> tuple[int, int]:
    get, invalidate = build()
    loads = Counter()
    db = {"hot": 0}
    stop = threading.Event()

    def loader() -> object:
        loads.hit()
        value = db["hot"]
        time.sleep(load_s)
        return {"v": value}

    def reader() -> None:
        while not stop.is_set():
            get("hot", loader)

    windows = 0
    readers = [threading.Thread(target=reader) for _ in range(READER_THREADS)]
    for thread in readers:
        thread.start()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(write_s)
        db["hot"] += 1
        invalidate("hot")
        windows += 1
    stop.set()
    for thread in readers:
        thread.join()
    return loads.calls, windows


async def hot_tasks(
    build: Callable[[], Awaitable[tuple[AsyncGet, Any]]],
    seconds: float,
    write_s: float,
    load_s: float,
) -> tuple[int, int]:
    get, invalidate = await build()
    loads = Counter()
    db = {"hot": 0}
    stop = asyncio.Event()

    async def loader() -> object:
        loads.hit()
        value = db["hot"]
        await asyncio.sleep(load_s)
        return {"v": value}

    async def reader() -> None:
        while not stop.is_set():
            await get("hot", loader)
            await asyncio.sleep(0)

    windows = 0
    readers = [asyncio.create_task(reader()) for _ in range(READER_TASKS)]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await asyncio.sleep(write_s)
        db["hot"] += 1
        await invalidate("hot")
        windows += 1
    stop.set()
    await asyncio.gather(*readers)
    return loads.calls, windows


# -- main ---------------------------------------------------------------------------------


def run(args: argparse.Namespace, port: int) -> list[Row]:
    load_s, write_s = args.load_ms / 1000, args.write_ms / 1000
    rows: list[Row] = []
    for name, build in sync_contenders(port).items():
        for herd in HERDS:
            n = cold_threads(build, herd, load_s)
            rows.append(Row(f"cold herd, {herd} threads", name, n, f"{n / herd:.2f}/request"))
    for name, abuild in async_contenders(port).items():
        for herd in HERDS:
            n = asyncio.run(cold_tasks(abuild, herd, load_s))
            rows.append(Row(f"cold herd, {herd} tasks", name, n, f"{n / herd:.2f}/request"))
    for name, build in sync_contenders(port).items():
        n, windows = hot_threads(build, args.seconds, write_s, load_s)
        rows.append(
            Row(
                f"hot key, {READER_THREADS} threads, a write every {args.write_ms:g} ms",
                name,
                n,
                f"{n / max(1, windows):.2f}/window ({windows} windows)",
            )
        )
    for name, abuild in async_contenders(port).items():
        n, windows = asyncio.run(hot_tasks(abuild, args.seconds, write_s, load_s))
        rows.append(
            Row(
                f"hot key, {READER_TASKS} tasks, a write every {args.write_ms:g} ms",
                name,
                n,
                f"{n / max(1, windows):.2f}/window ({windows} windows)",
            )
        )
    return rows


def markdown(rows: list[Row], args: argparse.Namespace) -> str:
    lines = ["| scenario | contender | loader calls | per |", "|---|---|---:|---|"]
    lines += [f"| {r.scenario} | {r.contender} | {r.loads:,} | {r.per} |" for r in rows]
    lines.append("")
    lines.append(
        f"loader: {args.load_ms:g} ms; hot key: {args.seconds:g} s per contender; "
        f"python {sys.version.split()[0]}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--load-ms", type=float, default=20.0, help="loader time (20)")
    parser.add_argument("--write-ms", type=float, default=50.0, help="hot-key write period")
    parser.add_argument("--seconds", type=float, default=2.0, help="hot-key run per contender")
    args = parser.parse_args(argv)
    try:
        with RedisServer() as server:
            rows = run(args, server.port)
    except (redis.RedisError, OSError) as exc:
        print(f"herd: cannot run: {exc}", file=sys.stderr)
        return 2
    print(markdown(rows, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
