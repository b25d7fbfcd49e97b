"""Whether a restart of the Redis server could bring old fences back.

A server that persists with RDB snapshots (a default ``redis.conf``) or with an
append-only file synced once a second restarts with the state of a moment *before* its
last acknowledged writes. If one of those was an invalidate, the fence it replaced is
current again, and every entry stamped with it (in Redis, or in a node's memory on
shared-versions) is served as fresh: a stale read after a successful invalidate. The
guarantee needs one of (``specs/assumptions.md``):

* no persistence on the cache's server (``save ""`` and ``appendonly no``): a restart
  loses everything, which only causes misses;
* ``appendonly yes`` with ``appendfsync always``: every acknowledged write is on disk.

``cascache.redis.new`` reads these settings once (``CONFIG GET``) and reports anything
else through ``Hooks.persistence_risk``; a server that refuses ``CONFIG GET`` (managed
services often do) is reported as unknown, and the cache is built all the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster

from cascache.errors import describe_error
from cascache.hooks import Hooks, call_hook
from cascache.redis.scripts import AsyncClient, Client

SETTINGS = ("save", "appendonly", "appendfsync")
"""The ``CONFIG GET`` parameters the check reads."""


def persistence_risk(client: Client) -> str | None:
    """Why a restart of this server (each primary, on a cluster) could resurrect fences
    that acknowledged invalidates replaced; ``None`` if its settings are safe.

    Raises ``redis.RedisError`` if the settings cannot be read.
    """
    if isinstance(client, redis.cluster.RedisCluster):
        primaries = client.get_primaries()  # type: ignore[no-untyped-call]
        nodes = [client.get_redis_connection(node) for node in primaries]
    else:
        nodes = [client]
    for node in nodes:
        # One round trip per node: Redis before 7.0 takes one parameter per CONFIG GET.
        pipe = node.pipeline(transaction=False)
        for name in SETTINGS:
            pipe.config_get(name)
        risk = _risk_of(pipe.execute(), node.connection_pool.connection_kwargs)
        if risk is not None:
            return risk
    return None


async def persistence_risk_async(client: AsyncClient) -> str | None:
    """:func:`persistence_risk` on an asyncio client."""
    if isinstance(client, redis.asyncio.cluster.RedisCluster):
        await client.initialize()
        for node in client.get_primaries():
            # Three round trips per primary, once per cache: node-targeted commands do not
            # pipeline on the asyncio cluster client.
            replies = [await client.config_get(name, target_nodes=node) for name in SETTINGS]
            risk = _risk_of(replies, {"host": node.host, "port": node.port})
            if risk is not None:
                return risk
        return None
    pipe = client.pipeline(transaction=False)
    for name in SETTINGS:
        pipe.config_get(name)
    return _risk_of(await pipe.execute(), client.connection_pool.connection_kwargs)


def _risk_of(replies: Sequence[Mapping[Any, object]], where: Mapping[str, object]) -> str | None:
    """The risk in one server's ``CONFIG GET`` replies (``where``: its connection kwargs)."""
    config: dict[str, str] = {}
    for reply in replies:
        for key, value in reply.items():
            config[_text(key)] = _text(value)
    at = f"{where.get('host', '?')}:{where.get('port', '?')}"
    if config.get("appendonly") == "yes":
        if config.get("appendfsync") != "always":
            return (
                f"{at} has appendonly yes with appendfsync "
                f"{config.get('appendfsync')!r}: a restart can lose the last "
                "acknowledged invalidates (use appendfsync always, or no persistence)"
            )
    elif config.get("save", "").strip():
        return (
            f"{at} takes RDB snapshots (save {config['save']!r}): a restart loads a "
            'snapshot older than the last acknowledged invalidates (set save "" on the '
            "cache's server, or appendonly yes with appendfsync always)"
        )
    return None


def check_persistence(client: Client, hooks: Hooks, namespace: str) -> None:
    """Report a risky (or unreadable) persistence setting to ``hooks.persistence_risk``."""
    try:
        risk = persistence_risk(client)
    except Exception as exc:
        risk = unreadable(exc)
    if risk is not None:
        call_hook(hooks.persistence_risk, namespace, risk)


async def check_persistence_async(client: AsyncClient, hooks: Hooks, namespace: str) -> None:
    """:func:`check_persistence` on an asyncio client."""
    try:
        risk = await persistence_risk_async(client)
    except Exception as exc:
        risk = unreadable(exc)
    if risk is not None:
        call_hook(hooks.persistence_risk, namespace, risk)


def unreadable(exc: Exception) -> str:
    """The risk reported when the settings could not be read."""
    return (
        f"could not read the persistence settings ({describe_error(exc)}); make sure "
        "the server does not persist with RDB snapshots or appendfsync everysec "
        "(specs/assumptions.md)"
    )


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
