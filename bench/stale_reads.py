"""Stale reads under concurrent writes: naive cache-aside on redis-py against cascache.

The headline benchmark. A real database (a PostgreSQL server this script starts itself,
or SQLite if that is impossible) holds ``--keys`` rows ``(k, v)``. For each contender,
for ``--seconds``, on fresh rows and a fresh cache namespace:

* ``--readers`` threads read random keys through the cache (read-through: on a miss the
  loader SELECTs the row on the thread's own connection, in its own transaction);
* ``--writers`` threads run ``UPDATE kv SET v = v + 1 ... RETURNING v`` (committed when
  it returns) on random keys, then invalidate the cache key (``DEL`` for the naive
  contender, ``cache.invalidate`` for cascache).

Contenders, all on the same database and the same Redis server (also started here, on a
free loopback port, never 6379):

* ``naive redis-py``: ``GET``; on a miss ``SELECT`` then ``SET ... EX ttl``; writer
  ``UPDATE``, commit, ``DEL``. The classic cache-aside race: a reader misses, SELECTs
  the old row, a writer commits and deletes, the reader SETs the old row back, and every
  read serves it until the next write of that key.
* ``cascache local``: ``cascache.new`` on a ``LocalStore``, shared by the threads.
* ``cascache shared-versions``: values in a ``MemoryProvider``, versions in Redis
  (``cascache.redis.new_gen_store``).
* ``cascache redis``: ``cascache.redis.new``, values and versions in Redis.

What counts as a stale read (the contract cascache claims, measured exactly): a writer,
once its invalidate (or ``DEL``) has *returned*, records ``(key, committed value,
completion time)``; a reader records ``(key, time its read began, value returned)``. A
read is stale if its value is smaller than the value of some write to that key whose
invalidate completed before the read began. Values of a key only grow (``v = v + 1``
serialises on the row lock), so after the run the check is, per key: sort the writes by
completion time, take the running maximum of their values, and compare each read with
the maximum over the writes that completed strictly before it began (a bisection).
Both sides timestamp with ``time.monotonic`` (one system-wide clock), and record by
appending a tuple to a list owned by their thread, so recording takes no lock.

``--load-delay-ms`` sleeps inside the loader after the SELECT, identically for every
contender, to widen the race window; it is 0 by default and always reported.

Numbers are reported, never asserted: the exit status is 0 unless the benchmark cannot
run at all (2). Run from the repository root::

    .venv/bin/python bench/stale_reads.py                 # 10 s per contender
    .venv/bin/python bench/stale_reads.py --seconds 3     # quick
    .venv/bin/python bench/stale_reads.py --json
"""

from __future__ import annotations

import argparse
import atexit
import bisect
import contextlib
import json
import os
import pwd
import random
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol, cast

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    # Run as ``python bench/stale_reads.py``: make ``cascache`` and ``model`` importable.
    sys.path.insert(0, str(REPO_ROOT))

import redis  # noqa: E402

import cascache  # noqa: E402
import cascache.redis  # noqa: E402
from model.servers import RedisServer, ServerStartError, find_server_binary, free_port  # noqa: E402

if TYPE_CHECKING:
    import psycopg

SYSTEM_POSTGRES_PORT = 5432
"""The machine's own PostgreSQL may live here; the benchmark never connects to it."""
PG_USER = "bench"
PG_START_ATTEMPTS = 3
"""A port found free can be taken before the server binds it: retry on a fresh one."""
PG_TIMEOUT = 30
JOIN_TIMEOUT = 30.0
"""How long to wait for a worker to finish its current operation after the stop."""
CONTENDERS = ("naive redis-py", "cascache local", "cascache shared-versions", "cascache redis")


class CannotRun(RuntimeError):
    """The benchmark cannot run at all (exit status 2)."""


class DatabaseStartError(RuntimeError):
    """PostgreSQL could not be started; the benchmark falls back to SQLite."""


# --------------------------------------------------------------------------- database


class Connection(Protocol):
    """One thread's connection. Each method is one committed transaction."""

    def read(self, key: str) -> int: ...

    def increment(self, key: str) -> int:
        """``v = v + 1`` for ``key``, committed; returns the committed value."""
        ...

    def close(self) -> None: ...


class Database(Protocol):
    label: str
    """What the report calls this database (engine, version, how it runs)."""

    def connect(self) -> Connection: ...

    def create_rows(self, keys: Sequence[str]) -> None: ...

    def close(self) -> None: ...


class PgConnection:
    def __init__(self, conninfo: str) -> None:
        import psycopg

        # autocommit: every statement is its own transaction, committed before the
        # server answers. So a SELECT reads the latest committed row, and when
        # UPDATE ... RETURNING returns, the new value is committed and visible to all.
        self._conn: psycopg.Connection[tuple[Any, ...]] = psycopg.connect(conninfo, autocommit=True)

    def read(self, key: str) -> int:
        row = self._conn.execute("SELECT v FROM kv WHERE k = %s", (key,)).fetchone()
        if row is None:
            raise LookupError(key)
        return int(row[0])

    def increment(self, key: str) -> int:
        row = self._conn.execute(
            "UPDATE kv SET v = v + 1 WHERE k = %s RETURNING v", (key,)
        ).fetchone()
        if row is None:
            raise LookupError(key)
        return int(row[0])

    def close(self) -> None:
        self._conn.close()


class PostgresServer:
    """A throwaway PostgreSQL cluster in a temporary directory, on a free loopback port.

    ``initdb`` refuses to run as root, so as root every server command runs as
    ``nobody`` (``setpriv``, else ``runuser``) in a directory handed over to that user.
    The server listens only on 127.0.0.1 and keeps its Unix socket in that directory,
    so it shares nothing with a system PostgreSQL. ``stop`` is idempotent and also
    registered with ``atexit``.
    """

    def __init__(self) -> None:
        self.tmpdir: Path | None = None
        self.port = 0
        self.version = "?"
        self.commands: list[str] = []
        self._prefix: list[str] = []
        self._env: dict[str, str] = {}
        self._pid: int | None = None
        self._running = False

    @property
    def data(self) -> Path:
        assert self.tmpdir is not None
        return self.tmpdir / "data"

    @property
    def conninfo(self) -> str:
        return f"host=127.0.0.1 port={self.port} user={PG_USER} dbname=postgres connect_timeout=10"

    def start(self) -> PostgresServer:
        initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
        if initdb is None or pg_ctl is None:
            raise DatabaseStartError("initdb/pg_ctl not found on PATH")
        atexit.register(self.stop)
        self.tmpdir = Path(tempfile.mkdtemp(prefix="cascache-bench-pg-"))
        self._prefix = self._unprivileged()
        # PG* variables (PGDATA, PGPORT, PGHOST...) would point the tools elsewhere.
        self._env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        self._env["HOME"] = str(self.tmpdir)
        initdb_args = ["-D", str(self.data), "-U", PG_USER, "--auth=trust", "--no-sync"]
        self._run([initdb, *initdb_args, "-E", "UTF8", "--locale=C"])
        errors: list[str] = []
        for _ in range(PG_START_ATTEMPTS):
            port = free_port()
            if port == SYSTEM_POSTGRES_PORT:
                continue
            # fsync=off: a throwaway cluster; commit visibility, which is what the race
            # is about, does not depend on it, and the run should not measure the disk.
            server_opts = (
                f"-c listen_addresses=127.0.0.1 -p {port} "
                f"-c unix_socket_directories={self.tmpdir} -c fsync=off"
            )
            cmd = [pg_ctl, "-D", str(self.data), "-l", str(self.tmpdir / "server.log")]
            cmd += ["-w", "-t", str(PG_TIMEOUT), "-o", server_opts, "start"]
            try:
                self._run(cmd)
            except DatabaseStartError as exc:
                errors.append(f"{exc}\n{self.log_tail()}")
                continue
            self.port = port
            self._running = True
            self._pid = self._read_pid()
            break
        else:
            raise DatabaseStartError("pg_ctl start failed:\n" + "\n".join(errors))
        import psycopg

        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            self.version = str(row[0]) if row else "?"
            conn.execute("CREATE TABLE kv (k text PRIMARY KEY, v bigint NOT NULL)")
        return self

    def _unprivileged(self) -> list[str]:
        """The command prefix that drops root (empty when not root)."""
        assert self.tmpdir is not None
        if os.geteuid() != 0:
            return []
        nobody = pwd.getpwnam("nobody")
        os.chown(self.tmpdir, nobody.pw_uid, nobody.pw_gid)
        setpriv = shutil.which("setpriv")
        if setpriv is not None:
            return [
                setpriv,
                f"--reuid={nobody.pw_uid}",
                f"--regid={nobody.pw_gid}",
                "--clear-groups",
            ]
        runuser = shutil.which("runuser")
        if runuser is not None:
            return [runuser, "-u", "nobody", "--"]
        raise DatabaseStartError("running as root and neither setpriv nor runuser is available")

    def _run(self, args: list[str], timeout: float = PG_TIMEOUT + 15) -> None:
        cmd = self._prefix + args
        self.commands.append(shlex.join(cmd))
        try:
            # A new session: Ctrl-C in the terminal reaches this script, which then stops
            # the server itself, rather than the postmaster directly. It also makes the
            # command the leader of its own process group (see below).
            proc = subprocess.Popen(
                cmd,
                cwd=self.tmpdir,
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
        except OSError as exc:
            raise DatabaseStartError(f"{cmd[len(self._prefix)]}: {exc}") from exc
        try:
            output, _ = proc.communicate(timeout=timeout)
        except BaseException as exc:
            # Interrupted or timed out: kill the command's whole group, not just the
            # command. initdb runs a bootstrap backend that would otherwise go on
            # writing into the directory stop() is about to remove. (pg_ctl's
            # postmaster runs in a session of its own; stop() handles it.)
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            if isinstance(exc, subprocess.TimeoutExpired):
                raise DatabaseStartError(f"{' '.join(cmd)}: {exc}") from exc
            raise
        if proc.returncode != 0:
            raise DatabaseStartError(f"{' '.join(cmd)} exited with {proc.returncode}:\n{output}")

    def _read_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def log_tail(self, lines: int = 15) -> str:
        if self.tmpdir is None:
            return ""
        try:
            text = (self.tmpdir / "server.log").read_text(errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Stop the server (fast shutdown, else SIGQUIT to our postmaster) and clean up."""
        # Also when start() was interrupted after pg_ctl launched the postmaster: its
        # postmaster.pid in our data directory says a server of ours may be running.
        if self._running or (self.tmpdir is not None and (self.data / "postmaster.pid").exists()):
            self._running = False
            self._pid = self._pid or self._read_pid()
            pg_ctl = shutil.which("pg_ctl") or "pg_ctl"
            try:
                self._run([pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop"])
            except DatabaseStartError:
                # Only the pid this script's own cluster wrote: never anything by name.
                if self._pid is not None:
                    with contextlib.suppress(OSError):
                        os.kill(self._pid, signal.SIGQUIT)
                    deadline = time.monotonic() + 10
                    while time.monotonic() < deadline and _alive(self._pid):
                        time.sleep(0.1)
        if self.tmpdir is not None:
            # A killed process of ours may still finish a last write: retry briefly.
            for _ in range(20):
                shutil.rmtree(self.tmpdir, ignore_errors=True)
                if not self.tmpdir.exists():
                    break
                time.sleep(0.05)
            self.tmpdir = None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


class PostgresDatabase:
    def __init__(self, server: PostgresServer) -> None:
        self.server = server
        self.label = f"PostgreSQL {server.version} (own server, 127.0.0.1:{server.port}, fsync=off)"

    def connect(self) -> Connection:
        return PgConnection(self.server.conninfo)

    def create_rows(self, keys: Sequence[str]) -> None:
        import psycopg

        with psycopg.connect(self.server.conninfo, autocommit=True) as conn:
            conn.cursor().executemany(
                "INSERT INTO kv (k, v) VALUES (%s, 0)", [(key,) for key in keys]
            )

    def close(self) -> None:
        self.server.stop()


class SqliteConnection:
    def __init__(self, path: Path) -> None:
        # isolation_level=None: no implicit transactions; each statement outside an
        # explicit BEGIN is its own transaction. check_same_thread=False only because the
        # connection is opened by the main thread; exactly one worker thread then uses it.
        self._conn = sqlite3.connect(
            path, timeout=30.0, isolation_level=None, check_same_thread=False
        )

    def read(self, key: str) -> int:
        row = self._conn.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
        if row is None:
            raise LookupError(key)
        return int(row[0])

    def increment(self, key: str) -> int:
        # BEGIN IMMEDIATE takes the write lock up front, so the value read back is the
        # one this transaction committed (works without RETURNING, SQLite < 3.35).
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._conn.execute("UPDATE kv SET v = v + 1 WHERE k = ?", (key,))
            row = self._conn.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
            self._conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            raise
        if row is None:
            raise LookupError(key)
        return int(row[0])

    def close(self) -> None:
        self._conn.close()


class SqliteDatabase:
    def __init__(self, reason: str) -> None:
        self.tmpdir: Path | None = Path(tempfile.mkdtemp(prefix="cascache-bench-sqlite-"))
        atexit.register(self.close)
        self.path = self.tmpdir / "bench.db"
        self.label = f"SQLite FALLBACK {sqlite3.sqlite_version} (temp file, WAL) [{reason}]"
        with contextlib.closing(sqlite3.connect(self.path, isolation_level=None)) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v INTEGER NOT NULL)")

    def connect(self) -> Connection:
        assert self.tmpdir is not None
        return SqliteConnection(self.path)

    def create_rows(self, keys: Sequence[str]) -> None:
        with contextlib.closing(sqlite3.connect(self.path, isolation_level=None)) as conn:
            conn.executemany("INSERT INTO kv (k, v) VALUES (?, 0)", [(key,) for key in keys])

    def close(self) -> None:
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None


def open_database(choice: str) -> tuple[Database, PostgresServer | None]:
    """PostgreSQL if it can be started (and ``choice`` allows it), else SQLite."""
    reason = "--db sqlite"
    if choice != "sqlite":
        server = PostgresServer()
        try:
            try:
                import psycopg  # noqa: F401
            except ImportError as exc:
                raise DatabaseStartError(f"psycopg not installed ({exc})") from exc
            server.start()
            return PostgresDatabase(server), server
        except BaseException as exc:
            server.stop()
            if not isinstance(exc, Exception):  # Ctrl-C / SIGTERM while starting
                raise
            server.stop()
            if choice == "postgres":
                raise CannotRun(f"cannot start PostgreSQL: {exc}") from exc
            reason = "PostgreSQL could not be started: " + str(exc).splitlines()[0]
            print(f"stale_reads: {reason}; falling back to SQLite", file=sys.stderr)
    return SqliteDatabase(reason), None


# --------------------------------------------------------------------------- contenders


class Contender(Protocol):
    name: str

    def read(self, key: str, load: Callable[[], int]) -> tuple[int, bool]:
        """The value for ``key`` and whether it came from the cache (no load)."""
        ...

    def invalidate(self, key: str) -> None: ...

    def close(self) -> None: ...


class NaiveContender:
    """Cache-aside as commonly written: GET, else SELECT and SET; writers DEL."""

    def __init__(self, client: redis.Redis, prefix: str, ttl: int) -> None:
        self.name = "naive redis-py"
        self._client = client
        self._prefix = prefix
        self._ttl = ttl

    def read(self, key: str, load: Callable[[], int]) -> tuple[int, bool]:
        name = self._prefix + key
        raw = cast(bytes | None, self._client.get(name))
        if raw is not None:
            return int(raw), True
        value = load()
        self._client.set(name, value, ex=self._ttl)
        return value, False

    def invalidate(self, key: str) -> None:
        self._client.delete(self._prefix + key)

    def close(self) -> None:
        self._client.close()


class CascacheContender:
    """Any cascache topology: ``get_or_load``; writers ``invalidate``."""

    def __init__(self, name: str, cache: cascache.CAS[int], client: redis.Redis | None) -> None:
        self.name = name
        self._cache = cache
        self._client = client

    def read(self, key: str, load: Callable[[], int]) -> tuple[int, bool]:
        loaded = False

        def loader() -> int:
            nonlocal loaded
            loaded = True
            return load()

        value = self._cache.get_or_load(key, loader)
        return value, not loaded

    def invalidate(self, key: str) -> None:
        self._cache.invalidate(key)

    def close(self) -> None:
        self._cache.close()
        if self._client is not None:
            # The caches here never own the client (close_client=False): close it once.
            self._client.close()


def make_contender(name: str, url: str, namespace: str, ttl: int) -> Contender:
    codec: cascache.JsonCodec[int] = cascache.JsonCodec()
    if name == "naive redis-py":
        return NaiveContender(redis.Redis.from_url(url), namespace + ":", ttl)
    if name == "cascache local":
        local = cascache.new(
            cascache.Options(
                namespace=namespace,
                provider=cascache.LocalStore(),
                codec=codec,
                default_ttl=ttl,
            )
        )
        return CascacheContender(name, local, None)
    client = redis.Redis.from_url(url)
    if name == "cascache shared-versions":
        shared = cascache.new(
            cascache.Options(
                namespace=namespace,
                provider=cascache.MemoryProvider(),
                codec=codec,
                default_ttl=ttl,
                gen_store=cascache.redis.new_gen_store(client),
            )
        )
        return CascacheContender(name, shared, client)
    if name == "cascache redis":
        remote = cascache.redis.new(
            cascache.redis.Options(namespace=namespace, client=client, codec=codec, default_ttl=ttl)
        )
        return CascacheContender(name, remote, client)
    client.close()
    raise ValueError(f"unknown contender {name!r}")


# --------------------------------------------------------------------------- workload


@dataclass
class ThreadLog:
    """What one worker recorded; owned by that thread alone until it is joined."""

    reads: list[tuple[int, float, int]] = field(default_factory=list)
    """(key index, monotonic time the read began, value returned)."""
    writes: list[tuple[int, float, int]] = field(default_factory=list)
    """(key index, monotonic time the invalidate returned, committed value)."""
    hits: int = 0
    errors: int = 0
    unchecked: int = 0
    """Committed writes whose invalidate raised: outside the guarantee, so not checked."""
    first_error: str | None = None

    def error(self, exc: BaseException) -> None:
        self.errors += 1
        if self.first_error is None:
            self.first_error = f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class Result:
    contender: str
    seconds: float
    reads: int
    writes: int
    hits: int
    stale: int
    max_lag: int
    errors: int
    unchecked: int
    first_error: str | None

    @property
    def ops_per_s(self) -> float:
        return (self.reads + self.writes) / self.seconds if self.seconds > 0 else 0.0

    @property
    def hit_rate(self) -> float:
        return self.hits / self.reads if self.reads else 0.0

    @property
    def stale_per_10s(self) -> float:
        return self.stale * 10.0 / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "contender": self.contender,
            "seconds": round(self.seconds, 3),
            "stale_reads": self.stale,
            "stale_per_10s": round(self.stale_per_10s, 1),
            "max_versions_behind": self.max_lag,
            "reads": self.reads,
            "writes": self.writes,
            "ops_per_s": round(self.ops_per_s, 1),
            "hit_rate": round(self.hit_rate, 4),
            "errors": self.errors,
            "writes_not_checked": self.unchecked,
            "first_error": self.first_error,
        }


def count_stale(
    reads: Sequence[tuple[int, float, int]], writes: Sequence[tuple[int, float, int]], keys: int
) -> tuple[int, int]:
    """(stale reads, most versions a read lagged behind), exactly as the docstring says."""
    times: list[list[float]] = [[] for _ in range(keys)]
    newest: list[list[int]] = [[] for _ in range(keys)]
    # Completion order need not match value order (writer A commits 5, writer B commits 6
    # and finishes its invalidate first), hence the running maximum.
    for index, done, value in sorted(writes, key=lambda w: w[1]):
        times[index].append(done)
        prev = newest[index][-1] if newest[index] else value
        newest[index].append(max(prev, value))
    stale = max_lag = 0
    for index, began, value in reads:
        # Writes whose invalidate completed strictly before the read began.
        completed = bisect.bisect_left(times[index], began)
        if completed and value < newest[index][completed - 1]:
            stale += 1
            max_lag = max(max_lag, newest[index][completed - 1] - value)
    return stale, max_lag


def reader(
    contender: Contender,
    conn: Connection,
    keys: Sequence[str],
    load_delay: float,
    start: threading.Barrier,
    stop: threading.Event,
    log: ThreadLog,
) -> None:
    rng = random.Random()
    append = log.reads.append
    with contextlib.suppress(threading.BrokenBarrierError):
        start.wait()
        while not stop.is_set():
            index = rng.randrange(len(keys))
            key = keys[index]

            def load(key: str = key) -> int:
                value = conn.read(key)
                if load_delay:
                    time.sleep(load_delay)
                return value

            began = time.monotonic()
            try:
                value, hit = contender.read(key, load)
            except Exception as exc:
                log.error(exc)
                continue
            append((index, began, value))
            log.hits += hit


def writer(
    contender: Contender,
    conn: Connection,
    keys: Sequence[str],
    pause: float,
    start: threading.Barrier,
    stop: threading.Event,
    log: ThreadLog,
) -> None:
    rng = random.Random()
    append = log.writes.append
    with contextlib.suppress(threading.BrokenBarrierError):
        start.wait()
        while not stop.is_set():
            index = rng.randrange(len(keys))
            try:
                value = conn.increment(keys[index])
            except Exception as exc:
                log.error(exc)
                continue
            try:
                contender.invalidate(keys[index])
            except Exception as exc:
                # A write whose invalidate failed is not recorded: the contract covers
                # only invalidates that returned (and cascache's caller would retry). It
                # is counted, so a run that checked fewer writes than it made says so.
                log.unchecked += 1
                log.error(exc)
                continue
            append((index, time.monotonic(), value))
            if pause:
                time.sleep(pause)


def run_contender(
    name: str, db: Database, url: str, args: argparse.Namespace, run_id: str
) -> Result:
    namespace = f"stale-{run_id}-{name.replace(' ', '-')}"
    keys = [f"{namespace}:{i}" for i in range(args.keys)]
    db.create_rows(keys)
    contender = make_contender(name, url, namespace, args.ttl)
    conns: list[Connection] = []
    threads: list[threading.Thread] = []
    logs: list[ThreadLog] = []
    stop = threading.Event()
    start = threading.Barrier(args.readers + args.writers + 1, timeout=60)
    try:
        # Connections are opened before the clock starts, one per thread.
        for role in ["r"] * args.readers + ["w"] * args.writers:
            conn = db.connect()
            conns.append(conn)
            log = ThreadLog()
            logs.append(log)
            target = reader if role == "r" else writer
            delay = args.load_delay_ms / 1000 if role == "r" else args.write_pause_ms / 1000
            threads.append(
                threading.Thread(
                    target=target,
                    args=(contender, conn, keys, delay, start, stop, log),
                    name=f"{name}-{role}{len(threads)}",
                    daemon=True,  # never keeps a Ctrl-C'd process alive
                )
            )
        for thread in threads:
            thread.start()
        start.wait()
        began = time.monotonic()
        try:
            stop.wait(args.seconds)
        finally:
            stop.set()
            start.abort()  # releases a thread still at the barrier, if any
            for thread in threads:
                thread.join(JOIN_TIMEOUT)
        elapsed = time.monotonic() - began
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            contender.close()
        for conn in conns:
            with contextlib.suppress(Exception):
                conn.close()
    reads = [r for log in logs for r in log.reads]
    writes = [w for log in logs for w in log.writes]
    stale, max_lag = count_stale(reads, writes, args.keys)
    first_error = next((log.first_error for log in logs if log.first_error), None)
    return Result(
        contender=name,
        seconds=elapsed,
        reads=len(reads),
        writes=len(writes),
        hits=sum(log.hits for log in logs),
        stale=stale,
        max_lag=max_lag,
        errors=sum(log.errors for log in logs),
        unchecked=sum(log.unchecked for log in logs),
        first_error=first_error,
    )


# --------------------------------------------------------------------------- report


def redis_version(url: str) -> str:
    with contextlib.closing(redis.Redis.from_url(url)) as client:
        info = client.info("server")
    return str(info.get("redis_version", "?"))


def print_table(results: Sequence[Result], setup: str) -> None:
    print(setup)
    print()
    print(
        "| contender | stale reads | stale / 10 s | max versions behind | reads | writes "
        "| ops/s | hit rate | errors | writes not checked |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r.contender} | {r.stale} | {r.stale_per_10s:.1f} | {r.max_lag} | {r.reads} "
            f"| {r.writes} | {r.ops_per_s:.0f} | {r.hit_rate:.1%} | {r.errors} "
            f"| {r.unchecked} |"
        )
    for r in results:
        if r.first_error:
            print(f"\n{r.contender}: first error: {r.first_error}")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=positive, default=10.0, help="per contender")
    parser.add_argument("--keys", type=positive_int, default=10)
    parser.add_argument("--readers", type=positive_int, default=8)
    parser.add_argument("--writers", type=positive_int, default=2)
    parser.add_argument(
        "--load-delay-ms",
        type=non_negative,
        default=0.0,
        help="sleep in the loader after the SELECT (every contender alike)",
    )
    parser.add_argument(
        "--write-pause-ms",
        type=non_negative,
        default=0.0,
        help="sleep after each write + invalidate (every contender alike)",
    )
    parser.add_argument("--ttl", type=positive_int, default=300, help="cache TTL, seconds")
    parser.add_argument(
        "--db",
        choices=("auto", "postgres", "sqlite"),
        default="auto",
        help="auto: PostgreSQL, else SQLite",
    )
    parser.add_argument(
        "--contenders",
        default=",".join(CONTENDERS),
        help="comma-separated subset of: " + ", ".join(CONTENDERS),
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="print the server commands to stderr"
    )
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.contenders.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONTENDERS]
    if unknown or not names:
        parser.error(f"unknown contenders {unknown}; choose from {', '.join(CONTENDERS)}")
    args.contenders = names
    return args


def _terminate(signum: int, frame: FrameType | None) -> None:
    # SIGTERM unwinds like Ctrl-C, so the finally blocks stop the servers.
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    if find_server_binary() is None:
        print("stale_reads: no redis-server/valkey-server found", file=sys.stderr)
        return 2
    db: Database | None = None
    pg: PostgresServer | None = None
    server = RedisServer()
    atexit.register(server.stop)
    try:
        db, pg = open_database(args.db)
        if args.verbose and pg is not None:
            print("PostgreSQL started with:", *pg.commands, sep="\n  ", file=sys.stderr)
        server.start()
        url = server.url
        redis_ver = redis_version(url)
        setup = (
            f"Database: {db.label}. Redis {redis_ver} (own server, "
            f"127.0.0.1:{server.port}). {args.readers} readers, {args.writers} writers, "
            f"{args.keys} keys, {args.seconds:g} s per contender, load delay "
            f"{args.load_delay_ms:g} ms, write pause {args.write_pause_ms:g} ms, TTL {args.ttl} s."
        )
        run_id = uuid.uuid4().hex[:8]
        results: list[Result] = []
        for name in args.contenders:
            results.append(run_contender(name, db, url, args, run_id))
            print(f"stale_reads: {name} done", file=sys.stderr, flush=True)
    except (CannotRun, ServerStartError) as exc:
        print(f"stale_reads: cannot run: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stale_reads: interrupted", file=sys.stderr)
        return 130
    finally:
        server.stop()
        if db is not None:
            db.close()
        if pg is not None:
            pg.stop()
    if args.json:
        report = {
            "database": setup.split(". Redis ", 1)[0].removeprefix("Database: "),
            "sqlite_fallback": pg is None,
            "postgres_commands": pg.commands if pg is not None else [],
            "redis": redis_ver,
            "readers": args.readers,
            "writers": args.writers,
            "keys": args.keys,
            "seconds": args.seconds,
            "load_delay_ms": args.load_delay_ms,
            "write_pause_ms": args.write_pause_ms,
            "ttl": args.ttl,
            "results": [r.as_dict() for r in results],
        }
        print(json.dumps(report, indent=2))
    else:
        print_table(results, setup)
    return 0


if __name__ == "__main__":
    sys.exit(main())
