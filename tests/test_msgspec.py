"""Tests for cascache.msgspec: MsgspecCodec over msgspec's JSON and MessagePack."""

from __future__ import annotations

import enum
import importlib
import sys
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Literal, TypedDict
from uuid import UUID

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

import cascache
from cascache.codec import Codec
from cascache.errors import CodecError
from cascache.msgspec import MsgspecCodec

FORMATS: list[Literal["json", "msgpack"]] = ["json", "msgpack"]


class Plan(enum.Enum):
    FREE = "free"
    PRO = "pro"


class Account(msgspec.Struct):
    id: UUID
    email: str
    created: datetime
    balance: Decimal
    plan: Plan
    birthday: date | None = None
    tags: list[str] = []
    children: list[Account] = []


@dataclass
class Point:
    x: int
    y: float = 0.0
    label: str | None = None
    history: list[int] = field(default_factory=list)


@dataclass
class Unsupported:
    n: int
    z: complex | None = None


class Opaque:
    """A class msgspec knows nothing about."""


def sample_account() -> Account:
    return Account(
        id=UUID(int=42),
        email="ada@example.com",
        created=datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC),
        balance=Decimal("-1234.5600"),
        plan=Plan.PRO,
        birthday=date(1815, 12, 10),
        tags=["vip"],
        children=[
            Account(UUID(int=1), "b@example.com", datetime(2020, 1, 1), Decimal("0E-3"), Plan.FREE)
        ],
    )


@pytest.mark.parametrize("format", FORMATS)
def test_a_struct_round_trips_exactly(format: Literal["json", "msgpack"]) -> None:
    codec = MsgspecCodec(Account, format=format)
    account = sample_account()
    decoded = codec.decode(codec.encode(account))
    assert decoded == account
    assert str(decoded.balance) == "-1234.5600"
    assert decoded.children[0].created.tzinfo is None
    assert decoded.children[0].balance.as_tuple() == Decimal("0E-3").as_tuple()
    assert decoded.plan is Plan.PRO


def test_json_is_msgspecs_json_and_keeps_the_offset() -> None:
    codec = MsgspecCodec(datetime)
    value = datetime(2024, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    assert codec.encode(value) == b'"2024-01-01T12:00:00+02:00"'
    assert codec.decode(codec.encode(value)).utcoffset() == timedelta(hours=2)


def test_msgpack_keeps_the_instant_of_an_aware_datetime_in_utc() -> None:
    codec = MsgspecCodec(datetime, format="msgpack")
    value = datetime(2024, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    decoded = codec.decode(codec.encode(value))
    assert decoded == value
    assert decoded.utcoffset() == timedelta(0)


@pytest.mark.parametrize("format", FORMATS)
def test_dataclasses_and_unions_with_none_round_trip(format: Literal["json", "msgpack"]) -> None:
    codec = MsgspecCodec(Point | None, format=format)
    for value in (Point(1, 2.5, "a", [1, 2]), Point(0), None):
        assert codec.decode(codec.encode(value)) == value


class Patch(TypedDict, total=False):
    name: str
    when: datetime


@pytest.mark.parametrize("format", FORMATS)
def test_a_typed_dict_at_the_top_level_takes_plain_dicts(
    format: Literal["json", "msgpack"],
) -> None:
    codec = MsgspecCodec(Patch, format=format)
    value: Patch = {"name": "a", "when": datetime(2024, 1, 1)}
    assert codec.decode(codec.encode(value)) == value


def test_msgpack_keeps_non_finite_floats() -> None:
    codec = MsgspecCodec(float, format="msgpack")
    assert codec.decode(codec.encode(float("inf"))) == float("inf")


def test_json_writes_a_nan_as_null_which_then_fails_to_decode_as_a_float() -> None:
    codec = MsgspecCodec(float)
    with pytest.raises(CodecError, match="Expected `float`, got `null`"):
        codec.decode(codec.encode(float("nan")))


def test_it_satisfies_the_codec_protocol_and_has_a_repr() -> None:
    codec = MsgspecCodec(Account, format="msgpack")
    assert isinstance(codec, Codec)
    assert repr(codec) == "MsgspecCodec(Account, format='msgpack')"
    assert (
        repr(MsgspecCodec(list[Point] | None)) == "MsgspecCodec(list[Point] | None, format='json')"
    )
    assert codec.type_ is Account
    assert codec.format == "msgpack"


@pytest.mark.parametrize(
    ("type_", "fragment"),
    [
        (Unsupported, "the type of Unsupported.z (complex)"),
        (list[Opaque], "list[Opaque][item] (Opaque)"),
        (dict[str, Opaque], "dict[str, Opaque][value] (Opaque)"),
    ],
)
def test_a_type_msgspec_needs_a_hook_for_is_refused_at_construction(
    type_: Any, fragment: str
) -> None:
    with pytest.raises(TypeError, match="MsgspecCodec cannot handle") as info:
        MsgspecCodec(type_)
    assert fragment in str(info.value)


def test_an_invalid_type_or_format_is_refused_at_construction() -> None:
    with pytest.raises(TypeError, match=r"MsgspecCodec cannot handle Literal\[1.5\]"):
        MsgspecCodec(Literal[1.5])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="more than one array-like"):
        MsgspecCodec(list[int] | tuple[int, ...])
    with pytest.raises(ValueError, match="'json' or 'msgpack'"):
        MsgspecCodec(int, format="yaml")  # type: ignore[arg-type]


@pytest.mark.parametrize("format", FORMATS)
@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (Point(1), "expected Account"),
        ({"id": 1}, "cannot encode dict value: at $: expected Account"),
        (None, "cannot encode NoneType value"),
    ],
)
def test_a_value_of_another_type_fails_to_encode(
    format: Literal["json", "msgpack"], value: object, fragment: str
) -> None:
    with pytest.raises(CodecError, match=f"MsgspecCodec\\[Account, {format}\\]") as info:
        MsgspecCodec(Account, format=format).encode(value)  # type: ignore[arg-type]
    assert fragment in str(info.value)


@pytest.mark.parametrize("format", FORMATS)
def test_values_msgspec_cannot_encode_are_codec_errors(format: Literal["json", "msgpack"]) -> None:
    codec = MsgspecCodec(Any, format=format)
    with pytest.raises(CodecError, match="Opaque"):
        codec.encode(Opaque())
    with pytest.raises(CodecError, match="cannot encode str value"):
        codec.encode("\ud800")
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(CodecError, match="cannot encode list value"):
        codec.encode(loop)


def test_an_int_past_64_bits_is_a_codec_error_in_msgpack() -> None:
    with pytest.raises(CodecError, match="MsgspecCodec"):
        MsgspecCodec(int, format="msgpack").encode(2**64)


def test_a_field_of_the_wrong_type_is_written_but_fails_to_decode() -> None:
    """msgspec does not check fields on encode: a value that does not fit is a miss."""
    codec = MsgspecCodec(Account)
    account = sample_account()
    account.email = 5  # type: ignore[assignment]
    with pytest.raises(CodecError, match=r"Expected `str`, got `int` - at `\$.email`"):
        codec.decode(codec.encode(account))


def test_a_field_of_another_type_that_fits_comes_back_converted_as_documented() -> None:
    """The module docstring's list of conversions: what a field of another type that
    still fits the declared one comes back as."""

    class Row(msgspec.Struct):
        name: str
        tags: list[str]
        score: float

    row = Row(name=UUID(int=1), tags=("a",), score=2**53 + 1)  # type: ignore[arg-type]
    for format in ("json", "msgpack"):
        back = MsgspecCodec(Row, format=format).decode(MsgspecCodec(Row, format=format).encode(row))
        assert back == Row(name=str(UUID(int=1)), tags=["a"], score=float(2**53))


def test_a_post_init_raising_anything_else_is_a_codec_error_too() -> None:
    class Rules(msgspec.Struct):
        items: list[int]

        def __post_init__(self) -> None:
            self.items[0]  # IndexError on an empty list, which msgspec lets through

    with pytest.raises(CodecError, match=r"building the value raised IndexError"):
        MsgspecCodec(Rules).decode(b'{"items":[]}')


def test_a_subclass_instance_fails_to_encode_under_a_union_of_classes() -> None:
    @dataclass
    class Base:
        id: int

    @dataclass
    class Sub(Base):
        extra: str = "x"

    for format in ("json", "msgpack"):
        codec = MsgspecCodec(Base | None, format=format)
        with pytest.raises(
            CodecError, match=r"cannot encode Sub value: at \$: expected Base or None"
        ):
            codec.encode(Sub(1))
        assert codec.decode(codec.encode(Base(1))) == Base(1)
        assert codec.decode(codec.encode(None)) is None


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"{", "data is not valid json"),
        (b"", "data is not valid json"),
        (b"[]", "data does not fit Account: Expected `object`, got `array`"),
        (b'{"id":"x"}', "at `$.id`"),
        (b'{"id":"00000000-0000-0000-0000-00000000002a"}', "missing required field `email`"),
        (
            b'{"id":"00000000-0000-0000-0000-00000000002a","email":"a",'
            b'"created":"2024-01-01T00:00:00","balance":"1","plan":"gold"}',
            "Invalid enum value 'gold' - at `$.plan`",
        ),
        (
            b'{"id":"00000000-0000-0000-0000-00000000002a","email":"a",'
            b'"created":"2024-01-01T00:00:00","balance":"1","plan":"pro","tags":[1]}',
            "at `$.tags[0]`",
        ),
    ],
)
def test_json_that_does_not_fit_is_a_codec_error(data: bytes, fragment: str) -> None:
    with pytest.raises(CodecError, match=r"MsgspecCodec\[Account, json\]") as info:
        MsgspecCodec(Account).decode(data)
    assert fragment in str(info.value)


def test_msgpack_that_does_not_fit_is_a_codec_error() -> None:
    codec = MsgspecCodec(Account, format="msgpack")
    with pytest.raises(CodecError, match="data is not valid msgpack"):
        codec.decode(b"\xc1")
    with pytest.raises(CodecError, match="data does not fit Account"):
        codec.decode(msgspec.msgpack.encode([1, 2]))


def test_decode_takes_bytes_like_data_but_nothing_else() -> None:
    codec = MsgspecCodec(list[int])
    assert codec.decode(bytearray(b"[1]")) == [1]  # type: ignore[arg-type]
    assert codec.decode(memoryview(b"[2]")) == [2]  # type: ignore[arg-type]
    with pytest.raises(CodecError, match="decode takes bytes, got str"):
        codec.decode("[1]")  # type: ignore[arg-type]


def test_decoding_is_strict() -> None:
    with pytest.raises(CodecError, match="Expected `int`, got `str`"):
        MsgspecCodec(int).decode(b'"1"')
    with pytest.raises(CodecError, match="Expected `bool`, got `int`"):
        MsgspecCodec(bool).decode(b"1")


def test_importing_without_msgspec_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "msgspec", None)  # None makes the import fail
    monkeypatch.delitem(sys.modules, "cascache.msgspec")
    with pytest.raises(ImportError, match=r"pip install 'cascache\[msgspec\]'"):
        importlib.import_module("cascache.msgspec")


accounts = st.builds(
    Account,
    id=st.uuids(),
    email=st.text(max_size=10),
    created=st.datetimes(timezones=st.none() | st.just(UTC)),
    balance=st.decimals(allow_nan=False),
    plan=st.sampled_from(Plan),
    birthday=st.none() | st.dates(),
    tags=st.lists(st.text(max_size=5), max_size=3),
    children=st.just([]),
)


@pytest.mark.parametrize("format", FORMATS)
@given(account=accounts)
def test_any_account_round_trips(format: Literal["json", "msgpack"], account: Account) -> None:
    codec = MsgspecCodec(Account, format=format)
    decoded = codec.decode(codec.encode(account))
    assert decoded == account
    assert decoded.balance.as_tuple() == account.balance.as_tuple()


@given(st.binary())
def test_arbitrary_bytes_decode_to_an_account_or_a_codec_error(data: bytes) -> None:
    for format in FORMATS:
        try:
            account = MsgspecCodec(Account, format=format).decode(data)
        except CodecError:
            continue
        assert isinstance(account, Account)


@pytest.mark.parametrize("format", FORMATS)
def test_a_cache_of_structs_through_cascache_new(format: Literal["json", "msgpack"]) -> None:
    cache = cascache.new(
        cascache.Options(
            namespace="accounts",
            provider=cascache.LocalStore(max_bytes=1 << 20),
            codec=MsgspecCodec(Account | None, format=format),
        )
    )
    db: dict[str, Account | None] = {"42": sample_account(), "7": None}
    assert cache.get_or_load("42", lambda: db["42"]) == sample_account()
    hit = cache.get("42")
    assert hit is not None and hit.value == sample_account()
    assert cache.get_or_load("7", lambda: db["7"]) is None  # a cached miss
    hit = cache.get("7")
    assert hit is not None and hit.value is None
    cache.invalidate("42")
    assert cache.get("42") is None
    cache.close()
