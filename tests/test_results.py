"""The result types: a hit built on the read path is a ``Hit`` in every respect."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest

from cascache.results import Hit, new_hit


@pytest.mark.parametrize("value", [None, 0, "row", [1, 2], {"a": {"b": 1}}])
def test_new_hit_is_the_hit_the_constructor_makes(value: object) -> None:
    made = new_hit(value)
    assert type(made) is Hit
    assert made == Hit(value) and made.value is value
    assert repr(made) == repr(Hit(value))
    assert pickle.loads(pickle.dumps(made)) == made
    assert copy.copy(made) == made and copy.deepcopy(made) == made
    assert dataclasses.asdict(made) == {"value": value}
    match made:
        case Hit(value=seen):
            assert seen is value


def test_new_hit_is_frozen_and_hashes_like_a_hit() -> None:
    made = new_hit("row")
    assert hash(made) == hash(Hit("row"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.value = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del made.value  # type: ignore[misc]
