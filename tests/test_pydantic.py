"""Tests for cascache.pydantic: PydanticCodec over pydantic v2 models and TypeAdapters."""

from __future__ import annotations

import enum
import importlib
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic.alias_generators import to_camel
from typing_extensions import TypedDict  # pydantic's requirement before Python 3.12

import cascache
from cascache.codec import Codec
from cascache.errors import CodecError
from cascache.pydantic import PydanticCodec


class Plan(enum.Enum):
    FREE = "free"
    PRO = "pro"


class Account(pydantic.BaseModel):
    id: UUID
    email: str
    age: int
    active: bool = True
    created: datetime
    balance: Decimal
    plan: Plan
    birthday: date | None = None
    tags: list[str] = []
    children: list[Account] = []


class Positive(pydantic.BaseModel):
    n: int

    @pydantic.field_validator("n")
    @classmethod
    def must_be_positive(cls, n: int) -> int:
        if n <= 0:
            raise ValueError("n must be positive")
        return n


class SpecialAccount(Account):
    nickname: str = ""


@dataclass
class Point:
    x: int
    y: float = 0.0


class Patch(TypedDict, total=False):
    name: str
    when: datetime


class Opaque:
    """A class pydantic knows nothing about."""


def sample_account() -> Account:
    return Account(
        id=UUID(int=42),
        email="ada@example.com",
        age=36,
        created=datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2))),
        balance=Decimal("-1234.5600"),
        plan=Plan.PRO,
        birthday=date(1815, 12, 10),
        tags=["vip"],
        children=[
            Account(
                id=UUID(int=1),
                email="b@example.com",
                age=1,
                created=datetime(2020, 1, 1),
                balance=Decimal("0E-3"),
                plan=Plan.FREE,
            )
        ],
    )


def test_a_model_round_trips_exactly() -> None:
    codec = PydanticCodec(Account)
    account = sample_account()
    data = codec.encode(account)
    assert data == account.model_dump_json().encode()
    decoded = codec.decode(data)
    assert decoded == account
    assert decoded.created.utcoffset() == timedelta(hours=2)
    assert decoded.children[0].created.tzinfo is None
    assert str(decoded.balance) == "-1234.5600"
    assert decoded.children[0].balance.as_tuple() == Decimal("0E-3").as_tuple()
    assert decoded.plan is Plan.PRO


def test_other_types_go_through_a_type_adapter() -> None:
    maybe = PydanticCodec(Account | None)
    assert maybe.decode(maybe.encode(None)) is None
    assert maybe.decode(maybe.encode(sample_account())) == sample_account()
    points = PydanticCodec(list[Point])
    assert points.decode(points.encode([Point(1, 2.5), Point(3)])) == [Point(1, 2.5), Point(3)]
    patch = PydanticCodec(Patch)
    value: Patch = {"when": datetime(2024, 1, 1, tzinfo=UTC)}
    assert patch.decode(patch.encode(value)) == value


def test_it_satisfies_the_codec_protocol_and_has_a_repr() -> None:
    codec = PydanticCodec(Account)
    assert isinstance(codec, Codec)
    assert repr(codec) == "PydanticCodec(Account)"
    assert repr(PydanticCodec(list[Point] | None)) == "PydanticCodec(list[Point] | None)"
    assert codec.type_ is Account


def test_a_type_pydantic_cannot_handle_is_refused_at_construction() -> None:
    with pytest.raises(TypeError, match="PydanticCodec cannot handle Opaque: Unable to generate"):
        PydanticCodec(Opaque)
    with pytest.raises(TypeError) as info:
        PydanticCodec(list[Opaque])
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (Point(1), "cannot encode Point value: at $: expected Account"),
        ({"id": 1}, "cannot encode dict value: at $: expected Account"),
        (None, "cannot encode NoneType value"),
    ],
)
def test_a_value_of_another_type_fails_to_encode(value: object, fragment: str) -> None:
    with pytest.raises(CodecError, match=r"PydanticCodec\[Account\]") as info:
        PydanticCodec(Account).encode(value)  # type: ignore[arg-type]
    assert fragment in str(info.value)


def test_a_subclass_instance_fails_to_encode() -> None:
    special = SpecialAccount(**sample_account().model_dump(), nickname="a")
    with pytest.raises(
        CodecError, match=r"cannot encode SpecialAccount value: at \$: expected Account"
    ):
        PydanticCodec(Account).encode(special)


def test_a_field_assigned_the_wrong_type_fails_to_encode() -> None:
    account = sample_account()
    account.plan = "pro"  # type: ignore[assignment]
    with pytest.raises(
        CodecError, match=r"PydanticCodec\[Account\]: cannot encode Account"
    ) as info:
        PydanticCodec(Account).encode(account)
    assert "field_name='plan'" in str(info.value)
    assert "\n" not in str(info.value)


def test_values_pydantic_cannot_encode_are_codec_errors() -> None:
    codec = PydanticCodec(Any)
    with pytest.raises(CodecError, match=r"PydanticCodec\[Any\]: cannot encode Opaque value"):
        codec.encode(Opaque())
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(CodecError, match="cannot encode list value"):
        codec.encode(loop)


VALID = (
    b'{"id":"00000000-0000-0000-0000-00000000002a","email":"a","age":1,'
    b'"created":"2024-01-01T00:00:00","balance":"1","plan":"pro"'
)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"{", "data is not valid JSON: at $: Invalid JSON"),
        (b"", "data is not valid JSON"),
        (b"[]", "data does not fit Account: at $: Input should be an object"),
        (VALID + b',"age":"1"}', "at $.age: Input should be a valid integer"),
        (VALID + b',"age":1.0}', "at $.age: Input should be a valid integer"),
        (VALID + b',"active":1}', "at $.active: Input should be a valid boolean"),
        (VALID + b',"active":"true"}', "at $.active: Input should be a valid boolean"),
        (VALID + b',"plan":"gold"}', "at $.plan: Input should be 'free' or 'pro'"),
        (VALID + b',"tags":["a",1]}', "at $.tags[1]: Input should be a valid string"),
        (VALID + b',"balance":"1.5x"}', "at $.balance: Input should be a valid decimal"),
        (VALID + b',"children":[{}]}', "at $.children[0].id: Field required (and "),
        (b'{"email":"a"}', "Field required (and 4 more)"),
    ],
)
def test_json_that_does_not_fit_is_a_codec_error(data: bytes, fragment: str) -> None:
    with pytest.raises(CodecError, match=r"PydanticCodec\[Account\]") as info:
        PydanticCodec(Account).decode(data)
    assert fragment in str(info.value)


def test_the_valid_prefix_above_is_valid() -> None:
    assert PydanticCodec(Account).decode(VALID + b"}").age == 1


def test_a_failing_validator_is_a_codec_error() -> None:
    with pytest.raises(CodecError, match=r"at \$\.n: Value error, n must be positive"):
        PydanticCodec(Positive).decode(b'{"n":0}')


def test_a_validator_raising_anything_else_is_a_codec_error_too() -> None:
    class Order(pydantic.BaseModel):
        items: list[int]

        @pydantic.model_validator(mode="after")
        def has_a_first_item(self) -> Order:
            self.items[0]  # IndexError on an empty list, which pydantic lets through
            return self

    with pytest.raises(CodecError, match=r"validating the data raised IndexError"):
        PydanticCodec(Order).decode(b'{"items":[]}')


def test_a_subclass_instance_fails_to_encode_under_a_union_of_classes() -> None:
    special = SpecialAccount(**sample_account().model_dump(), nickname="a")
    codec = PydanticCodec(Account | None)
    with pytest.raises(CodecError, match=r"at \$: expected Account or None"):
        codec.encode(special)
    assert codec.decode(codec.encode(None)) is None
    assert codec.decode(codec.encode(sample_account())) == sample_account()


def test_fields_with_aliases_round_trip() -> None:
    class Camel(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(alias_generator=to_camel)
        user_id: int
        display_name: str = pydantic.Field(alias="shownAs")

    codec = PydanticCodec(Camel)
    value = Camel.model_validate({"userId": 1, "shownAs": "Ada"})
    assert codec.encode(value) == b'{"userId":1,"shownAs":"Ada"}'
    assert codec.decode(codec.encode(value)) == value


def test_a_secret_is_never_cached_as_its_mask() -> None:
    class Integration(pydantic.BaseModel):
        id: int
        api_key: pydantic.SecretStr

    class Revealed(Integration):
        @pydantic.field_serializer("api_key", when_used="json")
        def reveal(self, key: pydantic.SecretStr) -> str:
            return key.get_secret_value()

    with pytest.raises(CodecError, match=r"would not come back equal.*'\*{10}'"):
        PydanticCodec(Integration).encode(Integration(id=1, api_key="sk-1"))  # type: ignore[arg-type]
    codec = PydanticCodec(Revealed)
    value = Revealed(id=1, api_key="sk-1")  # type: ignore[arg-type]
    assert codec.decode(codec.encode(value)).api_key.get_secret_value() == "sk-1"
    cache = cascache.new(
        cascache.Options(
            namespace="secrets", provider=cascache.LocalStore(), codec=PydanticCodec(Integration)
        )
    )
    loaded = cache.get_or_load("1", lambda: Integration(id=1, api_key="sk-1"))  # type: ignore[arg-type]
    assert loaded.api_key.get_secret_value() == "sk-1"
    assert cache.get("1") is None


def test_a_value_with_an_excluded_field_is_cached_only_if_it_comes_back_equal() -> None:
    class Draft(pydantic.BaseModel):
        id: int
        note: str = pydantic.Field(default="", exclude=True)

    codec = PydanticCodec(Draft)
    assert codec.decode(codec.encode(Draft(id=1))) == Draft(id=1)  # the default: equal
    with pytest.raises(CodecError, match="would not come back equal"):
        codec.encode(Draft(id=1, note="lost"))


def test_decode_takes_bytes_like_data_but_nothing_else() -> None:
    codec = PydanticCodec(list[int])
    assert codec.decode(bytearray(b"[1]")) == [1]  # type: ignore[arg-type]
    assert codec.decode(memoryview(b"[2]")) == [2]  # type: ignore[arg-type]
    with pytest.raises(CodecError, match="decode takes bytes, got str"):
        codec.decode("[1]")  # type: ignore[arg-type]


def test_importing_without_pydantic_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pydantic", None)  # None makes the import fail
    monkeypatch.delitem(sys.modules, "cascache.pydantic")
    with pytest.raises(ImportError, match=r"pip install 'cascache\[pydantic\]'"):
        importlib.import_module("cascache.pydantic")


accounts = st.builds(
    Account,
    id=st.uuids(),
    email=st.text(max_size=10),
    age=st.integers(-(2**63), 2**63 - 1),
    active=st.booleans(),
    created=st.datetimes(timezones=st.none() | st.just(UTC)),
    balance=st.decimals(allow_nan=False, allow_infinity=False),
    plan=st.sampled_from(Plan),
    birthday=st.none() | st.dates(),
    tags=st.lists(st.text(max_size=5), max_size=3),
    children=st.just([]),
)


@given(accounts)
def test_any_account_round_trips(account: Account) -> None:
    codec = PydanticCodec(Account)
    decoded = codec.decode(codec.encode(account))
    assert decoded == account
    assert decoded.balance.as_tuple() == account.balance.as_tuple()


@given(st.binary())
def test_arbitrary_bytes_decode_to_an_account_or_a_codec_error(data: bytes) -> None:
    try:
        account = PydanticCodec(Account).decode(data)
    except CodecError:
        return
    assert isinstance(account, Account)


def test_a_cache_of_models_through_cascache_new() -> None:
    cache = cascache.new(
        cascache.Options(
            namespace="accounts",
            provider=cascache.LocalStore(max_bytes=1 << 20),
            codec=PydanticCodec(Account | None),
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
