"""The wire format: strict round trips, and every malformed frame is a ``WireError``."""

from __future__ import annotations

import contextlib
import importlib.util
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cascache import wire
from cascache.errors import WireError
from cascache.fence import FENCE_SIZE, Version
from cascache.wire import (
    FORMAT,
    KIND_BATCH,
    KIND_SINGLE,
    MAGIC,
    Member,
    _read_batch,
    decode_batch,
    decode_single,
    encode_batch,
    encode_single,
    split_single,
)

fences = st.binary(min_size=FENCE_SIZE, max_size=FENCE_SIZE).map(Version)
payloads = st.binary(max_size=200)
members = st.builds(Member, st.text(max_size=20), fences, payloads)

FENCE = Version(bytes(range(16)))
OTHER = Version(bytes(range(16, 32)))


def seal(body: bytes) -> bytes:
    """A frame body with a correct CRC, so tests reach the checks behind the checksum."""
    return body + struct.pack(">I", zlib.crc32(body))


def u32(n: int) -> bytes:
    return struct.pack(">I", n)


def header(kind: int, magic: bytes = MAGIC, fmt: int = FORMAT) -> bytes:
    return magic + bytes([fmt, kind])


SINGLE = encode_single(FENCE, b'{"price": 10}')
BATCH = encode_batch([Member("a", FENCE, b"1"), Member("bé", OTHER, b"")])


# -- round trips ------------------------------------------------------------------------------


@given(fences, payloads)
def test_single_round_trip(fence: Version, payload: bytes) -> None:
    assert decode_single(encode_single(fence, payload)) == (fence, payload)


@given(st.lists(members, max_size=8))
def test_batch_round_trip(batch: list[Member]) -> None:
    assert decode_batch(encode_batch(batch)) == batch


def test_single_layout() -> None:
    frame = encode_single(FENCE, b"ab")
    body = header(KIND_SINGLE) + FENCE.to_bytes() + u32(2) + b"ab"
    assert frame == seal(body)
    assert frame.startswith(b"CASC\x01\x01")


def test_batch_layout() -> None:
    frame = encode_batch([Member("k", FENCE, b"v")])
    body = header(KIND_BATCH) + u32(1) + u32(1) + b"k" + FENCE.to_bytes() + u32(1) + b"v"
    assert frame == seal(body)


def test_decode_accepts_bytes_like() -> None:
    assert decode_single(bytearray(SINGLE)) == decode_single(SINGLE)  # type: ignore[arg-type]
    assert decode_single(memoryview(SINGLE)) == decode_single(SINGLE)  # type: ignore[arg-type]
    assert decode_batch(bytearray(BATCH)) == decode_batch(BATCH)  # type: ignore[arg-type]


@pytest.mark.parametrize("data", ["CASC", None, 12, [1, 2]])
def test_decode_refuses_non_bytes(data: object) -> None:
    with pytest.raises(WireError, match="a frame is bytes"):
        decode_single(data)  # type: ignore[arg-type]
    with pytest.raises(WireError, match="a frame is bytes"):
        decode_batch(data)  # type: ignore[arg-type]


# -- corruption ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "decode"), [(SINGLE, decode_single), (BATCH, decode_batch)], ids=["single", "batch"]
)
def test_every_truncation_is_refused(frame: bytes, decode: Callable[[bytes], object]) -> None:
    for end in range(len(frame)):
        with pytest.raises(WireError):
            decode(frame[:end])


@pytest.mark.parametrize(
    ("frame", "decode"), [(SINGLE, decode_single), (BATCH, decode_batch)], ids=["single", "batch"]
)
def test_every_single_bit_flip_is_refused(frame: bytes, decode: Callable[[bytes], object]) -> None:
    for i in range(len(frame)):
        for bit in range(8):
            flipped = bytearray(frame)
            flipped[i] ^= 1 << bit
            with pytest.raises(WireError):
                decode(bytes(flipped))


def test_a_flipped_digit_that_still_parses_is_caught_by_the_checksum() -> None:
    frame = bytearray(SINGLE)
    i = frame.index(b"10")
    frame[i] = ord("9")  # still valid JSON, a different price
    with pytest.raises(WireError, match="checksum"):
        decode_single(bytes(frame))


@given(fences, payloads)
def test_split_single_gives_the_stored_fence_bytes(fence: Version, payload: bytes) -> None:
    assert split_single(encode_single(fence, payload)) == (fence.to_bytes(), payload)


@given(st.lists(members, max_size=5), st.data())
def test_the_batch_fast_path_agrees_with_the_checked_reader(
    batch: list[Member], data: st.DataObject
) -> None:
    """decode_batch walks a well-formed frame with plain offsets; whatever it accepts, the
    bounds-checked reader must decode the same, and what it rejects the reader names."""
    frame = bytearray(encode_batch(batch))
    if frame and data.draw(st.booleans()):
        # Change a byte and re-seal, so the checks behind the checksum are reached.
        at = data.draw(st.integers(0, len(frame) - 5))
        frame[at] ^= data.draw(st.integers(1, 255))
        frame = bytearray(seal(bytes(frame[:-4])))
    try:
        expected: object = _read_batch(bytes(frame))
    except WireError as exc:
        expected = str(exc)
    try:
        got: object = decode_batch(bytes(frame))
    except WireError as exc:
        got = str(exc)
    assert got == expected


@given(st.binary(max_size=120))
def test_arbitrary_bytes_raise_only_wire_error(data: bytes) -> None:
    for decode in (decode_single, decode_batch):
        with contextlib.suppress(WireError):
            decode(data)


@given(st.binary(max_size=60))
def test_arbitrary_sealed_bodies_raise_only_wire_error(body: bytes) -> None:
    for prefix in (header(KIND_SINGLE), header(KIND_BATCH)):
        for decode in (decode_single, decode_batch):
            with contextlib.suppress(WireError):
                decode(seal(prefix + body))


def test_trailing_bytes_are_refused() -> None:
    with pytest.raises(WireError):
        decode_single(SINGLE + b"\0")
    single_body = SINGLE[:-4]
    with pytest.raises(WireError, match="1 trailing bytes"):
        decode_single(seal(single_body + b"x"))
    with pytest.raises(WireError, match="3 trailing bytes"):
        decode_batch(seal(BATCH[:-4] + b"xyz"))


def test_wrong_kind_is_refused() -> None:
    with pytest.raises(WireError, match="expected frame kind 1, found 2"):
        decode_single(BATCH)
    with pytest.raises(WireError, match="expected frame kind 2, found 1"):
        decode_batch(SINGLE)
    with pytest.raises(WireError, match="found 7"):
        decode_single(seal(header(7) + SINGLE[6:-4]))


def test_wrong_magic_is_refused() -> None:
    with pytest.raises(WireError, match="not a cascache frame"):
        decode_single(seal(header(KIND_SINGLE, magic=b"CASD") + SINGLE[6:-4]))
    with pytest.raises(WireError, match="not a cascache frame"):
        decode_batch(seal(header(KIND_BATCH, magic=b"\0\0\0\0") + BATCH[6:-4]))


@pytest.mark.parametrize("fmt", [0, 2, 255])
def test_wrong_format_is_refused(fmt: int) -> None:
    with pytest.raises(WireError, match=f"unsupported frame format {fmt}"):
        decode_single(seal(header(KIND_SINGLE, fmt=fmt) + SINGLE[6:-4]))


@pytest.mark.parametrize("count", [2**32 - 1, 2**31, 10_000, 3])
def test_huge_member_counts_are_refused(count: int) -> None:
    body = header(KIND_BATCH) + u32(count) + u32(1) + b"k" + FENCE.to_bytes() + u32(0)
    with pytest.raises(WireError, match=r"does not fit|truncated"):
        decode_batch(seal(body))


def test_huge_lengths_are_refused() -> None:
    with pytest.raises(WireError, match="truncated frame: payload"):
        decode_single(seal(header(KIND_SINGLE) + FENCE.to_bytes() + u32(2**32 - 1) + b"x"))
    body = header(KIND_BATCH) + u32(1) + u32(2**32 - 1) + b"k" + b"\0" * 24
    with pytest.raises(WireError, match="truncated frame: key"):
        decode_batch(seal(body))


def test_short_fence_is_refused() -> None:
    with pytest.raises(WireError, match="fence"):
        decode_single(seal(header(KIND_SINGLE) + b"\0" * 10))


def test_non_utf8_member_key_is_refused() -> None:
    body = header(KIND_BATCH) + u32(1) + u32(1) + b"\xff" + FENCE.to_bytes() + u32(0)
    with pytest.raises(WireError, match="UTF-8"):
        decode_batch(seal(body))


def test_empty_batch() -> None:
    assert decode_batch(encode_batch([])) == []


@pytest.mark.parametrize("cut", range(4))
def test_a_frame_cut_inside_a_length_field_names_the_field(cut: int) -> None:
    single = header(KIND_SINGLE) + FENCE.to_bytes() + u32(5)[:cut]
    at = len(header(KIND_SINGLE)) + FENCE_SIZE
    with pytest.raises(
        WireError, match=rf"^truncated frame: payload length needs 4 bytes at offset {at}"
    ):
        decode_single(seal(single))
    first = u32(1) + b"a" + FENCE.to_bytes() + u32(20) + bytes(20)
    batch = header(KIND_BATCH) + u32(2) + first + u32(1)[:cut]
    at = len(header(KIND_BATCH)) + 4 + len(first)
    with pytest.raises(
        WireError, match=rf"^truncated frame: key length needs 4 bytes at offset {at}"
    ):
        decode_batch(seal(batch))
    count = header(KIND_BATCH) + u32(1)[:cut]
    at = len(header(KIND_BATCH))
    with pytest.raises(
        WireError, match=rf"^truncated frame: member count needs 4 bytes at offset {at}"
    ):
        decode_batch(seal(count))


def test_a_cut_fence_or_payload_is_named() -> None:
    short_fence = header(KIND_SINGLE) + FENCE.to_bytes()[:5]
    with pytest.raises(WireError, match=r"^truncated frame: fence needs 16 bytes at offset 6$"):
        decode_single(seal(short_fence))
    short_payload = header(KIND_SINGLE) + FENCE.to_bytes() + u32(9) + b"abc"
    with pytest.raises(WireError, match=r"^truncated frame: payload needs 9 bytes at offset 26$"):
        decode_single(seal(short_payload))
    cut = header(KIND_BATCH) + u32(1) + u32(1) + b"a" + FENCE.to_bytes()[:5]
    with pytest.raises(WireError, match=r"^truncated frame: fence needs 16 bytes at offset 15$"):
        decode_batch(seal(cut))


def test_a_batch_member_cut_in_its_payload_is_named() -> None:
    member = u32(1) + b"a" + FENCE.to_bytes()
    cut_length = header(KIND_BATCH) + u32(1) + member + u32(9)[:2] + bytes(4)
    with pytest.raises(WireError, match=r"^truncated frame: payload length needs 4 bytes at"):
        decode_batch(seal(cut_length[:-4]))
    cut_payload = header(KIND_BATCH) + u32(1) + member + u32(9) + b"abc"
    with pytest.raises(WireError, match=r"^truncated frame: payload needs 9 bytes at offset 35$"):
        decode_batch(seal(cut_payload))


# -- the checksum: zlib-ng's when installed, zlib's otherwise, the same value ----------------


@given(st.binary(max_size=5000), st.integers(0, 64))
def test_the_checksum_in_use_is_zlibs_crc32(data: bytes, cut: int) -> None:
    assert wire.crc32(data) == zlib.crc32(data)
    # The decoders checksum a slice of a memoryview as well as bytes.
    view = memoryview(data)[: max(0, len(data) - cut)]
    assert wire.crc32(view) == zlib.crc32(bytes(view))


def test_the_fast_extra_is_used_when_installed() -> None:
    expected = "zlib_ng" if importlib.util.find_spec("zlib_ng") is not None else "zlib"
    assert wire.crc32.__module__.split(".")[0] == expected


def test_without_the_fast_extra_frames_are_byte_identical() -> None:
    # zlib-ng made unimportable in a fresh interpreter: the stdlib fallback must be taken,
    # and must write and read the very bytes the installed checksum does.
    frames = [SINGLE, BATCH, encode_single(OTHER, bytes(range(256)) * 20)]
    script = (
        "import sys, zlib; sys.modules['zlib_ng'] = None\n"
        "from cascache import wire\n"
        "from cascache.fence import Version\n"
        "assert wire.crc32 is zlib.crc32, wire.crc32\n"
        "single = wire.encode_single(Version(bytes(range(16))), b'{\"price\": 10}')\n"
        "batch = wire.encode_batch([wire.Member('a', Version(bytes(range(16))), b'1'),"
        " wire.Member('b\u00e9', Version(bytes(range(16, 32))), b'')])\n"
        "big = bytes.fromhex(sys.argv[1])\n"
        "wire.decode_single(big)\n"
        "print(single.hex(), batch.hex())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, frames[2].hex()],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [frames[0].hex(), frames[1].hex()]
