"""Version fences: 16 opaque bytes, equality only."""

from __future__ import annotations

import operator
import os
import threading
from collections.abc import Callable

import pytest

from cascache.fence import FENCE_SIZE, Version, new_fence

RAW = bytes(range(16))


def test_size() -> None:
    assert FENCE_SIZE == 16
    assert len(new_fence().to_bytes()) == 16
    assert Version(RAW).to_bytes() == RAW


def test_equality_and_hash() -> None:
    a = Version(RAW)
    b = Version(bytes(RAW))
    other = Version(bytes(reversed(RAW)))
    assert a == b
    assert (a != b) is False
    assert hash(a) == hash(b)
    assert a != other
    assert len({a, b, other}) == 2
    assert {a: 1}[b] == 1


def test_not_equal_to_other_types() -> None:
    a = Version(RAW)
    assert a != RAW
    assert a != RAW
    assert a != RAW.hex()
    assert a is not None


@pytest.mark.parametrize(
    "compare", [operator.lt, operator.le, operator.gt, operator.ge], ids=["<", "<=", ">", ">="]
)
def test_no_ordering(compare: Callable[[object, object], object]) -> None:
    with pytest.raises(TypeError):
        compare(Version(RAW), new_fence())


def test_cannot_be_sorted() -> None:
    with pytest.raises(TypeError):
        sorted([new_fence(), new_fence()])  # type: ignore[type-var]


def test_repr_is_short() -> None:
    a = Version(RAW)
    assert repr(a) == f"Version({RAW.hex()[:8]})"
    assert a.short() == "00010203"
    assert RAW.hex() not in repr(a)


def test_new_fences_are_distinct() -> None:
    assert len({new_fence() for _ in range(1000)}) == 1000


def test_threads_drawing_fences_at_once_never_share_one() -> None:
    # Fences are drawn from the OS in batches and handed out one by one.
    drawn: list[list[bytes]] = [[] for _ in range(8)]

    def draw(into: list[bytes]) -> None:
        into.extend(new_fence().to_bytes() for _ in range(2000))

    threads = [threading.Thread(target=draw, args=(into,)) for into in drawn]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({raw for into in drawn for raw in into}) == 8 * 2000


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_never_hands_out_its_parents_fences() -> None:
    new_fence()  # the rest of the batch drawn for it waits in this process
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next fences and leave at once
        os.write(write, b"".join(new_fence().to_bytes() for _ in range(8)))
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        child = pipe.read()
    os.waitpid(pid, 0)
    ours = {new_fence().to_bytes() for _ in range(8)}
    theirs = {child[at : at + 16] for at in range(0, len(child), 16)}
    assert len(theirs) == 8 and not ours & theirs


def test_matches_compares_with_a_stored_fence() -> None:
    assert Version(RAW).matches(RAW)
    assert not Version(RAW).matches(bytes(16))
    assert not Version(RAW).matches(RAW[:-1])


def test_from_bytes_accepts_bytes_like() -> None:
    assert Version.from_bytes(bytearray(RAW)) == Version(RAW)  # type: ignore[arg-type]
    assert Version.from_bytes(memoryview(RAW)) == Version(RAW)  # type: ignore[arg-type]


@pytest.mark.parametrize("raw", [b"", b"short", RAW + b"x", bytearray(RAW), RAW.hex(), None, 7])
def test_wrong_size_or_type_is_refused(raw: object) -> None:
    with pytest.raises(ValueError, match="exactly 16 bytes"):
        Version(raw)  # type: ignore[arg-type]


def test_no_attribute_smuggling() -> None:
    a = Version(RAW)
    with pytest.raises(AttributeError):
        a.generation = 1  # type: ignore[attr-defined]
