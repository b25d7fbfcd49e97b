"""The values operations return: hits, write outcomes and versioned batch items."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

from cascache.fence import Version

V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class Hit(Generic[V]):
    """A cache hit. ``get`` returns ``None`` on a miss, so a cached ``None`` is ``Hit(None)``."""

    value: V


_new_object = object.__new__
_set_hit_value: Callable[[object, object], None] = vars(Hit)["value"].__set__


def new_hit(value: V) -> Hit[V]:
    """``Hit(value)``, built for the read path: the same object, equal to and pickled like
    one the constructor makes, without the frozen dataclass's ``__init__`` (it sets the
    field through ``object.__setattr__``, which doubles what building a hit costs, on
    every hit). The field's slot descriptor sets it directly."""
    made: Hit[V] = _new_object(Hit)
    _set_hit_value(made, value)
    return made


class WriteOutcome(StrEnum):
    """What a conditional write did."""

    STORED = "stored"
    """The observed version was current and the value store took the entry."""
    VERSION_MISMATCH = "version_mismatch"
    """The key was invalidated (or its version lost) after the snapshot: nothing stored."""
    SNAPSHOT_ERROR = "snapshot_error"
    """The version store could not be read, so the write was skipped (fail closed)."""
    PROVIDER_REJECTED = "provider_rejected"
    """The version matched but the value store declined the entry."""
    DISABLED = "disabled"
    """The cache is disabled."""


@dataclass(frozen=True, slots=True)
class WriteResult:
    """The result of ``set_if_version``."""

    outcome: WriteOutcome

    @property
    def stored(self) -> bool:
        """Whether the entry was stored."""
        return self.outcome is WriteOutcome.STORED


@dataclass(frozen=True, slots=True)
class BatchWriteResult:
    """The result of ``set_if_versions``.

    Attributes:
        outcome: ``STORED`` when the batch entry was written (or, without batching, when
            every single entry was); otherwise why not.
        seeded_singles: how many single-key entries the call wrote.
    """

    outcome: WriteOutcome
    seeded_singles: int = 0

    @property
    def stored(self) -> bool:
        """Whether the batch was stored."""
        return self.outcome is WriteOutcome.STORED


@dataclass(frozen=True, slots=True)
class VersionedValue(Generic[V]):
    """One item of ``set_if_versions``: a value loaded after ``version`` was snapshotted."""

    key: str
    value: V
    version: Version
