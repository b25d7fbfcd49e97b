"""Wire format: the bytes a cache entry is stored as.

Every entry is a frame that starts with a magic prefix and a format version, so foreign or
truncated bytes are recognised, never misread. Decoding is strict: every length is
bounds-checked and trailing bytes are an error.

Single frame::

    b"CASC" | format (1 byte) | kind 0x01 | fence (16) | payload length (u32) | payload |
    CRC-32 of everything before it (u32)

Batch frame::

    b"CASC" | format (1 byte) | kind 0x02 | member count (u32) |
    count x ( key length (u32) | key (UTF-8) | fence (16) | payload length (u32) | payload ) |
    CRC-32 of everything before it (u32)

The checksum is there because a flipped byte inside a payload can still parse (a digit in
JSON changes into another digit): without it, corrupted bytes would be served as a value.
It is the CRC-32 of ``zlib.crc32``, computed by zlib-ng when the ``fast`` extra is
installed (the same value, faster).

The fence in a frame is the version the writer *observed* before reading the source of
truth; a reader serves the payload only while that fence is still the key's current one.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final, NamedTuple

try:
    # The ``fast`` extra: zlib-ng's CRC-32 gives the same checksums as ``zlib``'s (a test
    # compares them) in a quarter of the time, and every read of a hit and every write
    # checksums a whole frame.
    from zlib_ng.zlib_ng import crc32
except ImportError:
    from zlib import crc32

from cascache.errors import WireError
from cascache.fence import FENCE_SIZE, Version

MAGIC: Final = b"CASC"
FORMAT: Final = 1
KIND_SINGLE: Final = 0x01
KIND_BATCH: Final = 0x02

_HEADER = struct.Struct(">4sBB")
_U32 = struct.Struct(">I")
_SINGLE = struct.Struct(">6s16sI")
"""Everything before a single frame's payload: header, fence, payload length."""
_SINGLE_HEAD = _HEADER.pack(MAGIC, FORMAT, KIND_SINGLE)
_BATCH_HEAD = _HEADER.pack(MAGIC, FORMAT, KIND_BATCH)
_MEMBER_MIN = 4 + FENCE_SIZE + 4
"""The fewest bytes a batch member takes: key length, fence, payload length."""


class Member(NamedTuple):
    """One member of a batch frame: its key, stamped fence and encoded value.

    A named tuple rather than a frozen dataclass: ``get_many`` builds one per member on
    every batch hit, and a frozen dataclass's constructor costs twice as much.
    """

    key: str
    fence: Version
    payload: bytes


def _sealed(body: bytes) -> bytes:
    return body + _U32.pack(crc32(body))


def encode_single(fence: Version, payload: bytes) -> bytes:
    """The single-entry frame for ``payload`` stamped with ``fence``."""
    return _sealed(
        b"".join(
            (
                _HEADER.pack(MAGIC, FORMAT, KIND_SINGLE),
                fence.to_bytes(),
                _U32.pack(len(payload)),
                payload,
            )
        )
    )


def encode_batch(members: Sequence[Member]) -> bytes:
    """The batch frame holding ``members`` in the given order."""
    parts = [_HEADER.pack(MAGIC, FORMAT, KIND_BATCH), _U32.pack(len(members))]
    for member in members:
        raw_key = member.key.encode()
        parts += (
            _U32.pack(len(raw_key)),
            raw_key,
            member.fence.to_bytes(),
            _U32.pack(len(member.payload)),
            member.payload,
        )
    return _sealed(b"".join(parts))


class _Reader:
    """Bounds-checked reads over a frame body whose checksum has been verified."""

    __slots__ = ("_data", "_end", "_pos")

    def __init__(self, data: bytes) -> None:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise WireError(f"a frame is bytes, got {type(data).__name__}")
        view = memoryview(data)
        if len(view) < _HEADER.size + 4:
            raise WireError(f"truncated frame: {len(view)} bytes")
        end = len(view) - 4
        (crc,) = _U32.unpack_from(view, end)
        if crc32(view[:end]) != crc:
            raise WireError("checksum mismatch: the stored bytes are corrupt")
        self._data = view
        self._end = end
        self._pos = 0

    def take(self, n: int, what: str) -> bytes:
        end = self._pos + n
        if end > self._end:
            raise WireError(f"truncated frame: {what} needs {n} bytes at offset {self._pos}")
        chunk = self._data[self._pos : end].tobytes()
        self._pos = end
        return chunk

    def u32(self, what: str) -> int:
        if self._pos + 4 > self._end:
            raise WireError(f"truncated frame: {what} needs 4 bytes at offset {self._pos}")
        (value,) = _U32.unpack_from(self._data, self._pos)
        self._pos += 4
        return int(value)

    def header(self, kind: int) -> None:
        magic, fmt, got = _HEADER.unpack_from(self._data, 0)
        self._pos = _HEADER.size
        if magic != MAGIC:
            raise WireError(f"not a cascache frame (magic {magic!r})")
        if fmt != FORMAT:
            raise WireError(f"unsupported frame format {fmt}")
        if got != kind:
            raise WireError(f"expected frame kind {kind}, found {got}")

    def finish(self) -> None:
        if self._pos != self._end:
            raise WireError(f"{self._end - self._pos} trailing bytes after the frame")


def decode_single(data: bytes) -> tuple[Version, bytes]:
    """The fence and payload of a single frame; raises ``WireError`` on anything malformed."""
    stamp, payload = split_single(data)
    return Version(stamp), payload


def split_single(data: bytes) -> tuple[bytes, bytes]:
    """:func:`decode_single`, with the fence as the 16 bytes the frame holds (what a read
    compares with :meth:`Version.matches`)."""
    # Every read of a hit comes through here: check a well-formed frame with one unpack
    # of everything before the payload and one checksum, and leave naming what is wrong
    # with a malformed one to the reader. (Slicing before the checksum is cheaper than a
    # memoryview for these sizes.)
    if type(data) is bytes:
        end = len(data) - 4
        if end >= _SINGLE.size:
            head, fence, length = _SINGLE.unpack_from(data)
            if (
                head == _SINGLE_HEAD
                and length == end - _SINGLE.size
                and crc32(data[:end]) == _U32.unpack_from(data, end)[0]
            ):
                return fence, data[_SINGLE.size : end]
    reader = _Reader(data)
    reader.header(KIND_SINGLE)
    fence = reader.take(FENCE_SIZE, "fence")
    payload = reader.take(reader.u32("payload length"), "payload")
    reader.finish()
    return fence, payload


def decode_batch(data: bytes) -> list[Member]:
    """The members of a batch frame; raises ``WireError`` on anything malformed."""
    # As decode_single: a well-formed frame is walked with plain offsets, and anything the
    # walk does not accept is decoded again by the reader, which names what is wrong.
    if type(data) is bytes and len(data) >= len(_BATCH_HEAD) + 8:
        end = len(data) - 4
        if (
            data.startswith(_BATCH_HEAD)
            and crc32(memoryview(data)[:end]) == _U32.unpack_from(data, end)[0]
        ):
            members = _walk_batch(data, end)
            if members is not None:
                return members
    return _read_batch(data)


def _walk_batch(data: bytes, end: int) -> list[Member] | None:
    """The members of a checksummed batch frame, or ``None`` if anything is out of place."""
    unpack = _U32.unpack_from
    (count,) = unpack(data, len(_BATCH_HEAD))
    pos = len(_BATCH_HEAD) + 4
    if count * _MEMBER_MIN > end - pos:
        return None
    members = []
    for _ in range(count):
        (key_len,) = unpack(data, pos)
        fence_at = pos + 4 + key_len
        if fence_at + FENCE_SIZE + 4 > end:
            return None
        payload_at = fence_at + FENCE_SIZE + 4
        (payload_len,) = unpack(data, fence_at + FENCE_SIZE)
        if payload_at + payload_len > end:
            return None
        try:
            key = data[pos + 4 : fence_at].decode()
        except UnicodeDecodeError:
            return None
        fence = Version(data[fence_at : fence_at + FENCE_SIZE])
        pos = payload_at + payload_len
        members.append(Member(key, fence, data[payload_at:pos]))
    return members if pos == end else None


def _read_batch(data: bytes) -> list[Member]:
    reader = _Reader(data)
    reader.header(KIND_BATCH)
    count = reader.u32("member count")
    # Each member takes at least 24 bytes, so a huge count in a short frame is corrupt.
    if count * 24 > len(data):
        raise WireError(f"member count {count} does not fit a {len(data)}-byte frame")
    members = []
    for _ in range(count):
        raw_key = reader.take(reader.u32("key length"), "key")
        try:
            key = raw_key.decode()
        except UnicodeDecodeError as exc:
            raise WireError(f"member key is not UTF-8: {exc}") from None
        fence = Version(reader.take(FENCE_SIZE, "fence"))
        payload = reader.take(reader.u32("payload length"), "payload")
        members.append(Member(key, fence, payload))
    reader.finish()
    return members
