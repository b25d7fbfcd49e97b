"""cascache: a compare-and-swap cache that never serves a stale value after a successful invalidate.

Read path: ``get`` -> on a miss ``snapshot_version`` -> load the source -> ``set_if_version``
(or ``get_or_load``). Write path: write the source, then ``invalidate``.
"""

from cascache.cache import CAS, new
from cascache.codec import BytesCodec, Codec, JsonCodec, JsonValue, LimitedCodec, StrCodec
from cascache.counters import Counters, CounterSnapshot
from cascache.decorator import cached
from cascache.errors import (
    CascacheError,
    ClosedError,
    CodecError,
    ConfigError,
    EncodeError,
    InvalidateError,
    OpError,
    ReplicationError,
    ReplyError,
    WireError,
)
from cascache.fence import Version
from cascache.genstore import AsyncGenStore, GenStore, LocalGenStore
from cascache.hooks import Hooks, LoggingHooks, fan_out
from cascache.local import LocalStore
from cascache.memory import MemoryProvider
from cascache.mutator import (
    AsyncKeyInvalidator,
    AsyncKeyReader,
    AsyncKeyWriter,
    KeyInvalidator,
    KeyReader,
    KeyWriter,
)
from cascache.options import TTL, BatchReadSeed, BatchWriteSeed, Options
from cascache.provider import AddProvider, AsyncProvider, ManyProvider, Provider
from cascache.results import BatchWriteResult, Hit, VersionedValue, WriteOutcome, WriteResult

__all__ = [
    "CAS",
    "TTL",
    "AddProvider",
    "AsyncGenStore",
    "AsyncKeyInvalidator",
    "AsyncKeyReader",
    "AsyncKeyWriter",
    "AsyncProvider",
    "BatchReadSeed",
    "BatchWriteResult",
    "BatchWriteSeed",
    "BytesCodec",
    "CascacheError",
    "ClosedError",
    "Codec",
    "CodecError",
    "ConfigError",
    "CounterSnapshot",
    "Counters",
    "EncodeError",
    "GenStore",
    "Hit",
    "Hooks",
    "InvalidateError",
    "JsonCodec",
    "JsonValue",
    "KeyInvalidator",
    "KeyReader",
    "KeyWriter",
    "LimitedCodec",
    "LocalGenStore",
    "LocalStore",
    "LoggingHooks",
    "ManyProvider",
    "MemoryProvider",
    "OpError",
    "Options",
    "Provider",
    "ReplicationError",
    "ReplyError",
    "StrCodec",
    "Version",
    "VersionedValue",
    "WireError",
    "WriteOutcome",
    "WriteResult",
    "cached",
    "fan_out",
    "new",
]
