"""Executable specification: the race of DESIGN §1, step by step, on every topology.

Each scenario drives the production protocol one effect at a time with
:class:`cascache.effects.Process`, in the exact order the prose describes, and states
what must happen. Read it top to bottom; run it with ``pytest specs``.
"""

from __future__ import annotations

from collections.abc import Iterator

import fakeredis
import pytest

import cascache
import cascache.redis
from cascache.effects import Process

Cache = cascache.CAS[str]


@pytest.fixture(params=["local", "local-store", "shared-versions", "redis"])
def two_nodes(request: pytest.FixtureRequest) -> Iterator[tuple[Cache, Cache]]:
    """Two cache nodes that share whatever their topology shares."""
    kind = request.param
    if kind == "local-store":
        # One process, one LocalStore: each key's entry and version in one record.
        store = cascache.LocalStore()
        nodes = [
            cascache.new(
                cascache.Options(namespace="spec", provider=store, codec=cascache.StrCodec())
            )
            for _ in range(2)
        ]
    elif kind == "local":
        # One process: both "nodes" share the in-process stores.
        provider, gens = cascache.MemoryProvider(), cascache.LocalGenStore()
        nodes = [
            cascache.new(
                cascache.Options(
                    namespace="spec", provider=provider, codec=cascache.StrCodec(), gen_store=gens
                )
            )
            for _ in range(2)
        ]
    else:
        client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
        if kind == "shared-versions":
            nodes = [
                cascache.new(
                    cascache.Options(
                        namespace="spec",
                        provider=cascache.MemoryProvider(),
                        codec=cascache.StrCodec(),
                        gen_store=cascache.redis.new_gen_store(client),
                    )
                )
                for _ in range(2)
            ]
        else:
            nodes = [
                cascache.redis.new(
                    cascache.redis.Options(
                        namespace="spec", client=client, codec=cascache.StrCodec()
                    )
                )
                for _ in range(2)
            ]
    yield nodes[0], nodes[1]
    for node in nodes:
        node.close()


def test_a_late_filler_cannot_put_the_old_row_back(two_nodes: tuple[Cache, Cache]) -> None:
    reader, writer = two_nodes
    database = {"user:42": "old name"}

    # 1. Reader R misses and snapshots the version *before* reading the source of truth.
    assert reader.get("user:42") is None
    version = reader.snapshot_version("user:42")
    loaded = database["user:42"]

    # 2. Writer W updates the source of truth, then invalidates (on another node).
    database["user:42"] = "new name"
    writer.invalidate("user:42")

    # 3. R finishes late and tries to store the old row: rejected.
    result = reader.set_if_version("user:42", loaded, version)
    assert result.outcome is cascache.WriteOutcome.VERSION_MISMATCH
    assert reader.get("user:42") is None and writer.get("user:42") is None

    # 4. The next fill stores the new row; no node ever serves the old one again.
    assert reader.get_or_load("user:42", lambda: database["user:42"]) == "new name"
    assert reader.get("user:42") == cascache.Hit("new name")
    assert writer.get("user:42") in (None, cascache.Hit("new name"))


@pytest.mark.parametrize("position", range(4))
def test_an_invalidate_anywhere_in_the_write_still_wins(
    two_nodes: tuple[Cache, Cache], position: int
) -> None:
    """However the write's effects interleave with an invalidate, the old value loses.

    The generic write checks, then writes (two effects); the Redis write is one script.
    The invalidate runs after ``position`` effects of the write (or after it finished).
    """
    reader, writer = two_nodes
    version = reader.snapshot_version("k")
    fill = Process(reader.core.set_if_version("k", "old", version, None))
    for _ in range(position):
        if not fill.done:
            fill.step()
    writer.invalidate("k")
    while not fill.done:
        fill.step()
    # Whatever the write reported, nothing written under the old version is served.
    assert reader.get("k") is None and writer.get("k") is None


def test_a_batch_member_is_judged_alone(two_nodes: tuple[Cache, Cache]) -> None:
    reader, writer = two_nodes
    versions = reader.snapshot_versions(["a", "b"])
    items = [cascache.VersionedValue(k, f"{k}-v1", versions[k]) for k in ("a", "b")]
    assert reader.set_if_versions(items).stored

    writer.invalidate("b")

    values, missing = reader.get_many(["a", "b"])
    assert values == {"a": "a-v1"} and missing == ["b"]


def _step_until_waiting(process: Process[str]) -> None:
    """Step ``process`` until it waits on a flight (or is done)."""
    while not process.done:
        pending = process.pending
        if pending is not None and pending.target == "flight":
            return
        process.step()


def test_a_joined_load_is_handed_on_only_with_proof(two_nodes: tuple[Cache, Cache]) -> None:
    """Coalescing (DESIGN §3.9): concurrent misses of a key in one cache share one load,
    but a caller that joined a load returns its value only with proof, taken after it
    joined, that the load's fence was still current. Here the proof fails, so the caller
    loads for itself."""
    reader, writer = two_nodes
    database = {"user:42": "old name"}

    # 1. Leader L misses, takes the fence, leads the key's flight and reads the source.
    leader = Process(reader.core.get_or_load("user:42", lambda: database["user:42"], None))
    while leader.pending is not None and leader.pending.target != "source":
        leader.step()
    leader.step()  # L has loaded "old name" and is about to store it

    # 2. The source changes and the invalidate returns (on the other node).
    database["user:42"] = "new name"
    writer.invalidate("user:42")

    # 3. Follower F starts after that, misses, and meets L's flight: it must wait.
    follower = Process(reader.core.get_or_load("user:42", lambda: database["user:42"], None))
    _step_until_waiting(follower)
    assert follower.pending is not None and follower.pending.op == "wait"
    assert follower.pending.ready is not None and not follower.pending.ready()

    # 4. L's conditional store loses (the fence moved), and its flight lands.
    while not leader.done:
        leader.step()
    assert leader.result == "old name"  # L itself may return what it loaded

    # 5. F has no proof (the store did not store; the fence is not the flight's): it
    #    loads for itself and returns the new row, never the joined old one.
    while not follower.done:
        follower.step()
    assert follower.result == "new name"
    assert reader.get("user:42") in (None, cascache.Hit("new name"))


def test_a_joined_load_with_proof_saves_the_load(two_nodes: tuple[Cache, Cache]) -> None:
    """The same join with nothing in between: L's store is issued after F joined and
    stores, which proves the fence current after the join; F returns L's value and the
    source is read once."""
    reader, _ = two_nodes
    reads: list[str] = []

    def load() -> str:
        reads.append("user:42")
        return "row"

    leader = Process(reader.core.get_or_load("user:42", load, None))
    while leader.pending is not None and leader.pending.target != "source":
        leader.step()
    follower = Process(reader.core.get_or_load("user:42", load, None))
    _step_until_waiting(follower)
    while not leader.done:
        leader.step()
    while not follower.done:
        follower.step()
    assert leader.result == follower.result == "row"
    assert reads == ["user:42"]
