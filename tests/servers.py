"""Test helpers around Redis: the servers (from ``model.servers``) and a round-trip counter.

Every server here is started by the test session on a free loopback port and stopped
when it is done, so tests may FLUSHALL it freely. Port 6379 is never used.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import redis
from redis.asyncio.connection import AbstractConnection as AsyncConnection
from redis.connection import AbstractConnection

from model.servers import RedisCluster, RedisServer, ServerStartError, find_server_binary

__all__ = [
    "CommandLog",
    "RedisCluster",
    "RedisServer",
    "ServerStartError",
    "command_name",
    "count_round_trips",
    "find_server_binary",
    "parse_requests",
    "primaries",
    "warm_up",
]


def warm_up(client: redis.Redis | redis.cluster.RedisCluster) -> None:
    """Open the client's connections (every node's, on a cluster) before counting.

    A connection's first use sends handshake commands (HELLO, CLIENT SETINFO); after
    this, :func:`count_round_trips` sees only the commands under test.
    """
    if isinstance(client, redis.cluster.RedisCluster):
        client.ping(target_nodes=redis.cluster.RedisCluster.ALL_NODES)
    else:
        client.ping()


def primaries(client: redis.Redis | redis.cluster.RedisCluster) -> int:
    """How many primaries serve ``client``: the most round trips a fan-out may take."""
    if isinstance(client, redis.cluster.RedisCluster):
        return len(client.get_primaries())  # type: ignore[no-untyped-call]
    return 1


def parse_requests(packed: object) -> list[tuple[bytes, ...]]:
    """The commands in a packed RESP request (one, or several pipelined), as raw args."""
    if isinstance(packed, bytes | bytearray | memoryview):
        data = bytes(packed)
    elif isinstance(packed, str):
        data = packed.encode()
    else:
        data = b"".join(bytes(chunk) for chunk in cast(list[bytes], packed))
    commands: list[tuple[bytes, ...]] = []
    pos = 0
    while pos < len(data):
        # Each command is "*<n>\r\n" followed by n bulk strings "$<len>\r\n<bytes>\r\n".
        if data[pos : pos + 1] != b"*":
            raise ValueError(f"unexpected RESP request at {pos}: {data[pos : pos + 20]!r}")
        eol = data.index(b"\r\n", pos)
        count = int(data[pos + 1 : eol])
        pos = eol + 2
        parts: list[bytes] = []
        for _ in range(count):
            eol = data.index(b"\r\n", pos)
            length = int(data[pos + 1 : eol])
            start = eol + 2
            parts.append(data[start : start + length])
            pos = start + length + 2
        commands.append(tuple(parts))
    return commands


_TWO_WORD = frozenset({"SCRIPT", "CLUSTER", "CLIENT", "CONFIG", "COMMAND"})


def command_name(args: Sequence[bytes]) -> str:
    """A command's name, upper case; two words for containers ("SCRIPT LOAD")."""
    if not args:
        return ""
    name = args[0].decode().upper()
    if name in _TWO_WORD and len(args) > 1:
        name = f"{name} {args[1].decode().upper()}"
    return name


@dataclass
class CommandLog:
    """What the clients sent while :func:`count_round_trips` was active.

    Attributes:
        requests: one entry per write of a request batch to a connection (one round
            trip), listing the commands in that batch in order, as raw arguments.
    """

    requests: list[list[tuple[bytes, ...]]] = field(default_factory=list)

    @property
    def round_trips(self) -> int:
        """How many request batches were sent."""
        return len(self.requests)

    @property
    def trips(self) -> list[list[str]]:
        """The command names of each round trip."""
        return [[command_name(args) for args in batch] for batch in self.requests]

    @property
    def commands(self) -> list[tuple[bytes, ...]]:
        """Every command sent, flattened, in order."""
        return [args for batch in self.requests for args in batch]

    @property
    def names(self) -> list[str]:
        """Every command name sent, flattened, in order."""
        return [command_name(args) for args in self.commands]

    def clear(self) -> None:
        """Forget what was recorded so far."""
        self.requests.clear()


@contextlib.contextmanager
def count_round_trips() -> Iterator[CommandLog]:
    """Record every request batch any redis-py connection sends inside the block.

    redis-py sends a single command, a whole pipeline, and each per-node part of a cluster
    pipeline with one ``send_packed_command`` call and then reads the replies, so one
    call is one round trip. fakeredis connections inherit the same method, so the count
    means the same on every backend. The patch is process-wide (fine for tests: xdist
    workers are processes). Connect handshakes count too: call :func:`warm_up` first.
    """
    log = CommandLog()
    original = AbstractConnection.send_packed_command
    original_async = AsyncConnection.send_packed_command

    def recording(self: AbstractConnection, command: object, check_health: bool = True) -> None:
        log.requests.append(parse_requests(command))
        original(self, command, check_health)  # type: ignore[no-untyped-call]

    async def recording_async(
        self: AsyncConnection, command: Any, check_health: bool = True
    ) -> None:
        log.requests.append(parse_requests(command))
        await original_async(self, command, check_health)

    AbstractConnection.send_packed_command = recording  # type: ignore[method-assign]
    AsyncConnection.send_packed_command = recording_async  # type: ignore[method-assign]
    try:
        yield log
    finally:
        AbstractConnection.send_packed_command = original  # type: ignore[method-assign]
        AsyncConnection.send_packed_command = original_async  # type: ignore[method-assign]
