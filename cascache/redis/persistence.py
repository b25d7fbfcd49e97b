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

import redis
import redis.cluster

from cascache.errors import describe_error
from cascache.hooks import Hooks, call_hook
from cascache.redis.scripts import Client

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
        config: dict[str, str] = {}
        for reply in pipe.execute():
            for key, value in reply.items():
                config[_text(key)] = _text(value)
        where = f"{node.connection_pool.connection_kwargs.get('host', '?')}:" + str(
            node.connection_pool.connection_kwargs.get("port", "?")
        )
        if config.get("appendonly") == "yes":
            if config.get("appendfsync") != "always":
                return (
                    f"{where} has appendonly yes with appendfsync "
                    f"{config.get('appendfsync')!r}: a restart can lose the last "
                    "acknowledged invalidates (use appendfsync always, or no persistence)"
                )
        elif config.get("save", "").strip():
            return (
                f"{where} takes RDB snapshots (save {config['save']!r}): a restart loads a "
                'snapshot older than the last acknowledged invalidates (set save "" on the '
                "cache's server, or appendonly yes with appendfsync always)"
            )
    return None


def check_persistence(client: Client, hooks: Hooks, namespace: str) -> None:
    """Report a risky (or unreadable) persistence setting to ``hooks.persistence_risk``."""
    try:
        risk = persistence_risk(client)
    except Exception as exc:
        risk = (
            f"could not read the persistence settings ({describe_error(exc)}); make sure "
            "the server does not persist with RDB snapshots or appendfsync everysec "
            "(specs/assumptions.md)"
        )
    if risk is not None:
        call_hook(hooks.persistence_risk, namespace, risk)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
