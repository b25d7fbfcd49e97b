"""How long a cache call takes while Redis is down or frozen, per client configuration.

With redis-py's defaults (5 s socket timeouts, three retries with exponential backoff) a
cache call during an outage blocks for seconds; the README recommends a client that fails
in well under a second, after which ``get_or_load`` answers from the source. This script
measures both, against a server it starts itself on a free loopback port (never 6379):

* ``down``: the server was killed (``SIGKILL``): connections are refused.
* ``paused``: the server is frozen (``SIGSTOP``): connections hang until a timeout.

For each it reports seconds per ``get_or_load`` (the loader's value is returned every
time) and per ``get``, median of ``--calls`` calls. Timing is reported, never asserted.

    .venv/bin/python bench/outage.py            # Markdown table, about a minute
    .venv/bin/python bench/outage.py --calls 5
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    # Run as ``python bench/outage.py``: make ``cascache`` and ``model`` importable.
    sys.path.insert(0, str(REPO_ROOT))

import redis  # noqa: E402
from redis.backoff import NoBackoff  # noqa: E402
from redis.retry import Retry  # noqa: E402

import cascache  # noqa: E402
import cascache.redis  # noqa: E402
from model.servers import RedisServer, ServerStartError  # noqa: E402

CLIENTS: dict[str, Callable[[str], redis.Redis]] = {
    "redis-py defaults": lambda url: redis.Redis.from_url(url),
    "README (0.1 s timeouts, 1 retry, no backoff)": lambda url: redis.Redis.from_url(
        url, socket_timeout=0.1, socket_connect_timeout=0.1, retry=Retry(NoBackoff(), 1)
    ),
}


def seconds_per_call(call: Callable[[], object], calls: int) -> float:
    """Median wall time of ``calls`` calls; an exception counts as the call's end."""
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        with contextlib.suppress(cascache.CascacheError):
            call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(make: Callable[[str], redis.Redis], kind: str, calls: int) -> tuple[float, float]:
    """(get_or_load, get) seconds per call with the server ``kind`` (down or paused)."""
    with RedisServer() as server:
        cache: cascache.CAS[Any] = cascache.redis.new(
            cascache.redis.Options(
                namespace="bench-outage",
                client=make(server.url),
                codec=cascache.JsonCodec(),
                close_client=True,
            )
        )
        cache.get_or_load("k", lambda: 1)
        if kind == "paused":
            server.pause()
        else:
            server.crash()
        try:
            loaded = seconds_per_call(lambda: cache.get_or_load("k", lambda: 2), calls)
            read = seconds_per_call(lambda: cache.get("k"), calls)
        finally:
            if kind == "paused":
                server.resume()
            cache.close()
    return loaded, read


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=3, help="calls per cell (median)")
    args = parser.parse_args(argv)
    print("| client | outage | get_or_load s/call | get s/call |")
    print("|---|---|---:|---:|")
    try:
        for name, make in CLIENTS.items():
            for kind in ("down", "paused"):
                loaded, read = measure(make, kind, args.calls)
                print(f"| {name} | {kind} | {loaded:.3f} | {read:.3f} |", flush=True)
    except ServerStartError as exc:
        print(f"cannot start a server: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
