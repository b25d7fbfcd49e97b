"""Version fences: 16 opaque bytes, equality only."""

from __future__ import annotations

import operator
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
