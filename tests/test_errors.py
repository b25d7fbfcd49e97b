"""Tests for cascache.errors: what every typed error carries, and that it survives pickling."""

from __future__ import annotations

import copy
import pickle
from concurrent.futures import ProcessPoolExecutor

import pytest

import cascache
from cascache.errors import CascacheError, ClosedError, EncodeError, InvalidateError, OpError

ERRORS: list[CascacheError] = [
    OpError("get", "k", ConnectionError("down")),
    OpError("get_many", ["a", "b", "c", "d"], TimeoutError("slow")),
    EncodeError("set_if_version", "k", cascache.CodecError("bad")),
    ClosedError("get", "k"),
    ClosedError("get_many", ("a", "b")),
    InvalidateError("k", ConnectionError("down")),
    InvalidateError("k", ConnectionError("down"), TimeoutError("slow")),
]


def _fields(error: BaseException) -> tuple[object, ...]:
    return (
        type(error),
        str(error),
        getattr(error, "op", None),
        getattr(error, "key", None),
        getattr(error, "keys", None),
        repr(getattr(error, "cause", None)),
        repr(getattr(error, "delete_error", None)),
        repr(error.__cause__),
    )


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: f"{type(e).__name__}:{e}")
def test_every_keyed_error_survives_pickling_and_copying(error: CascacheError) -> None:
    # Exceptions pickle as type(*args), and their args were the message alone: an error
    # raised in a process pool's worker broke the pool instead of reaching the caller.
    for clone in (pickle.loads(pickle.dumps(error)), copy.copy(error), copy.deepcopy(error)):
        assert _fields(clone) == _fields(error)


def _closed_get() -> None:
    cache = cascache.new(
        cascache.Options(namespace="p", provider=cascache.LocalStore(), codec=cascache.StrCodec())
    )
    cache.close()
    cache.get("k")


def test_an_error_raised_in_a_process_pool_reaches_the_caller() -> None:
    with (
        ProcessPoolExecutor(max_workers=1) as pool,
        pytest.raises(ClosedError, match=r"cascache get\('k'\): the cache is closed"),
    ):
        pool.submit(_closed_get).result(timeout=60)
