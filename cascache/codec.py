"""Codecs: how a cache turns values into the bytes a provider stores, and back.

A codec is any object with ``encode(value) -> bytes`` and ``decode(bytes) -> value``
(:class:`Codec`). Every failure either way is a :class:`~cascache.errors.CodecError`, so the
cache can treat an undecodable entry as a miss instead of crashing a read. Nothing here
uses pickle: stored bytes are data, never code, so a poisoned store cannot run anything.

Built-in codecs:

* :class:`JsonCodec` stores compact UTF-8 JSON (``allow_nan=False``), of plain JSON values or
  of a declared type (dataclasses and the types a database row holds, below).
* :class:`BytesCodec` stores ``bytes`` as they are; :class:`StrCodec` stores UTF-8 text.
* :class:`LimitedCodec` wraps another codec and refuses payloads over a size limit.

Optional codecs, each behind an extra: ``cascache.msgspec.MsgspecCodec`` (JSON or
MessagePack, for ``msgspec.Struct`` and dataclass types; ``pip install
'cascache[msgspec]'``) and ``cascache.pydantic.PydanticCodec`` (pydantic v2 models;
``pip install 'cascache[pydantic]'``).

How ``JsonCodec`` round-trips typed values
------------------------------------------

``JsonCodec(User)`` reads ``User``'s field types once, at construction, with
:func:`typing.get_type_hints` (so string annotations and ``from __future__ import
annotations`` work, provided the names resolve in the dataclass's module). ``encode``
writes a dataclass as a JSON object holding its ``init`` fields by name, recursively;
``decode`` parses the JSON and rebuilds the value by calling the dataclass's constructor
with those fields, recursing through the declared field types. The type given may be any
supported type, not only a dataclass: ``JsonCodec(User | None)`` (so a cached ``None``
records that the row does not exist), ``JsonCodec(list[User])``, ``JsonCodec(int)``.
Supported types:

* ``str``, ``int``, ``float`` (an ``int`` is accepted and stored as a float), ``bool``,
  ``None``;
* ``datetime``, ``date`` and ``time``, as ISO 8601 strings (``datetime.isoformat``), with
  their microseconds. A naive value comes back naive and an aware one aware, with the
  same UTC offset, and one field may hold both (each string says which it is). Any
  ``tzinfo`` is accepted if it gives the value an offset; it comes back as a fixed
  ``datetime.timezone`` of that offset (``timezone.utc`` for UTC): the same instant, but
  not the zone's rules or name, and not ``fold``. So a ``ZoneInfo`` datetime inside a DST
  fold or gap compares unequal to what comes back, as Python defines ``==`` between
  zones there. A ``time`` whose tzinfo gives no offset (a ``ZoneInfo`` time) is refused, and
  so is an offset with a fraction of a second (``fromisoformat`` would drop it);
* ``uuid.UUID``, as its canonical lowercase hyphenated string;
* ``decimal.Decimal``, as the JSON string ``str(value)``, which keeps sign, digits and
  exponent exactly (``Decimal("1.50")`` stays ``1.50``, ``Decimal("-0")`` stays
  negative). ``NaN``, ``sNaN`` (with their payloads) and the infinities round-trip too,
  as a PostgreSQL ``numeric`` can hold them (a NaN, as always, is not ``==`` to itself);
* enums, including ``IntEnum``, ``StrEnum`` and ``Flag``, stored by value. Every member's
  value must be a JSON scalar (``str``, ``int``, finite ``float``, ``bool``, ``None``)
  or the type is refused; decoding a value that is no member's (for a ``Flag``, no
  combination's) is a ``CodecError``;
* nested dataclasses, including recursive ones;
* ``TypedDict`` types (plain ``dict`` values), with ``total=False``, ``Required`` and
  ``NotRequired``: a missing required key or an undeclared key is an error both ways;
* ``list[X]``, ``tuple[X, ...]``, ``tuple[X, Y]`` (stored as a JSON array),
  ``dict[str, X]``; ``Annotated[X, ...]`` is ``X``;
* unions such as ``X | None`` or ``Optional[X]``, see below;
* ``Any``, ``object``, bare ``list`` and ``dict``: plain JSON values, checked as below.

Anything else (sets, bytes, generic dataclasses, an enum with a tuple value...) is a
``TypeError`` at construction, naming the field, rather than a surprise at the first
write. The codec is strict both ways, so what comes back equals what went in: ``encode``
checks each value against its declared type (exactly: an instance of a *subclass* of a
dataclass, of ``datetime`` in a ``date`` field, of ``Decimal``, is refused, as it would
come back as something else), and ``decode`` rejects missing required fields, unknown
fields, values of the wrong JSON type, and strings that are not exactly what ``encode``
writes (``"2024-01-01T00:00:00Z"`` is refused: this codec writes ``+00:00``).

Unions
~~~~~~

Arms are tried in the order declared (``int`` always before ``float``), and the first that
fits wins. A union in which two arms could decode the same JSON is ambiguous, as what
came back would depend on that order rather than on what went in, so it is refused at
construction: ``str | datetime`` (``"2024-01-01T00:00:00"`` is both), ``str | UUID``,
``Color | str`` when a ``Color`` value is a string, ``int | IntEnum``, two dataclasses
(or a dataclass and a ``dict``), two list types. These unions are fine: ``X | None`` for
any ``X``; ``int | float`` (a float is always written with a fraction or an
exponent); any mix of ``datetime``, ``date``, ``time``, ``UUID`` and ``Decimal`` (their
canonical strings never coincide); an enum with any arm that accepts none of its values;
and arms of different JSON kinds (``int | str | list[X] | User``).

Without a type, ``JsonCodec()`` round-trips plain JSON values (:data:`JsonValue`):
``dict`` with ``str`` keys, ``list``, ``str``, ``int``, finite ``float``, ``bool`` and
``None``. Values JSON would change silently are refused instead: a ``tuple`` (it would
come back as a list) and a dict with non-``str`` keys (they would come back as strings).

Type checkers see ``JsonCodec()`` as a ``JsonCodec[JsonValue]``, ``JsonCodec(User)`` as a
``JsonCodec[User]`` and ``JsonCodec(User | None)`` as a ``JsonCodec[User | None]`` (mypy
and pyright both, through PEP 747's ``TypeForm``), so ``cascache.new`` builds a ``CAS``
of that type with no annotation at the call site.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import json
import json.scanner
import math
import types
import uuid
from collections.abc import Callable, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from typing import (
    TYPE_CHECKING,
    Annotated,
    Any,
    Generic,
    NoReturn,
    NotRequired,
    Protocol,
    Required,
    TypeAlias,
    TypeVar,
    Union,
    cast,
    get_args,
    get_origin,
    get_type_hints,
    is_typeddict,
    overload,
    runtime_checkable,
)

from cascache.errors import CodecError

if TYPE_CHECKING:
    # Only type checkers read these (typeshed ships typing_extensions), so the library
    # still needs nothing at run time. TypeForm (PEP 747) is what lets ``JsonCodec(User |
    # None)`` infer ``JsonCodec[User | None]``: a union is a ``types.UnionType`` object,
    # not a ``type[V]``. The TypeVar default (PEP 696) is what makes ``JsonCodec()`` a
    # ``JsonCodec[JsonValue]`` while ``x: JsonCodec[object] = JsonCodec()`` still checks.
    from typing_extensions import TypeForm
    from typing_extensions import TypeVar as _DefaultTypeVar

V = TypeVar("V")

JsonValue: TypeAlias = Union[  # noqa: UP007 - the | spelling cannot hold the string parts
    bool, int, float, str, list["JsonValue"], dict[str, "JsonValue"], None
]
"""A plain JSON value: what ``JsonCodec()`` (no type) encodes and decodes."""

if TYPE_CHECKING:
    J = _DefaultTypeVar("J", default=JsonValue)
else:
    J = TypeVar("J")


@runtime_checkable
class Codec(Protocol[V]):
    """Turns values of type ``V`` into bytes and back.

    Implementations raise :class:`~cascache.errors.CodecError` for every value they cannot
    encode and for every payload they cannot decode, and must be safe to call from threads.
    """

    def encode(self, value: V) -> bytes:
        """The bytes that represent ``value``."""
        ...

    def decode(self, data: bytes) -> V:
        """The value that ``data`` (from :meth:`encode`) represents."""
        ...


def _as_bytes(codec: str, data: object) -> bytes:
    # Providers hand back bytes, but a client library may give a bytearray or memoryview;
    # accept those, and refuse anything else with a CodecError rather than a TypeError.
    if isinstance(data, bytes):
        return data
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    raise CodecError(f"{codec}: decode takes bytes, got {type(data).__name__}")


def _exact_classes(tp: object) -> tuple[type, ...] | None:
    """The classes a top-level value of ``tp`` must be an instance of exactly, when ``tp``
    is a class or a union of classes (``User | None``) whose values are their instances;
    ``None`` for any other type (a ``TypedDict``'s values are plain dicts)."""
    arms = get_args(tp) if get_origin(tp) in (Union, types.UnionType) else (tp,)
    if all(isinstance(arm, type) and not _is_typeddict(arm) for arm in arms):
        return cast("tuple[type, ...]", arms)
    return None


def _check_class(codec: str, classes: tuple[type, ...] | None, value: object) -> None:
    # msgspec and pydantic write a subclass instance as its base class, so it would come
    # back as the base class: refuse it before encoding.
    if classes is not None and type(value) not in classes:
        expected = " or ".join("None" if c is type(None) else c.__name__ for c in classes)
        raise CodecError(
            f"{codec}: cannot encode {type(value).__name__} value: at $: expected {expected}"
        )


class BytesCodec:
    """The identity codec for ``bytes`` values: what you store is what is kept."""

    def encode(self, value: bytes) -> bytes:
        """``value`` itself; anything but ``bytes`` (even a bytearray) is a ``CodecError``."""
        if not isinstance(value, bytes):
            raise CodecError(f"BytesCodec: can only encode bytes, got {type(value).__name__}")
        return value

    def decode(self, data: bytes) -> bytes:
        """``data`` as ``bytes``."""
        return _as_bytes("BytesCodec", data)

    def __repr__(self) -> str:
        return "BytesCodec()"


class StrCodec:
    """Stores ``str`` values as UTF-8."""

    def encode(self, value: str) -> bytes:
        """The UTF-8 bytes of ``value``; a non-str or a lone surrogate is a ``CodecError``."""
        if not isinstance(value, str):
            raise CodecError(f"StrCodec: can only encode str, got {type(value).__name__}")
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise CodecError(f"StrCodec: cannot encode as UTF-8: {exc}") from exc

    def decode(self, data: bytes) -> str:
        """The text in ``data``; bytes that are not valid UTF-8 are a ``CodecError``."""
        raw = _as_bytes("StrCodec", data)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CodecError(f"StrCodec: data is not valid UTF-8: {exc}") from exc

    def __repr__(self) -> str:
        return "StrCodec()"


class LimitedCodec(Generic[V]):
    """Wraps a codec and refuses any payload larger than ``max_bytes``, both ways.

    The decode check runs before the inner codec sees the data, so an oversized (or
    hostile) entry costs a length check, not a parse.
    """

    def __init__(self, inner: Codec[V], max_bytes: int) -> None:
        if not isinstance(inner, Codec):
            raise TypeError(f"LimitedCodec inner must be a Codec, got {inner!r}")
        if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 1:
            raise ValueError(f"LimitedCodec max_bytes must be an int >= 1, got {max_bytes!r}")
        self._inner = inner
        self._max_bytes = max_bytes

    @property
    def inner(self) -> Codec[V]:
        """The wrapped codec."""
        return self._inner

    @property
    def max_bytes(self) -> int:
        """The largest payload, in bytes, this codec produces or accepts."""
        return self._max_bytes

    def encode(self, value: V) -> bytes:
        """The inner codec's bytes, or a ``CodecError`` if they exceed ``max_bytes``."""
        data = self._inner.encode(value)
        if len(data) > self._max_bytes:
            raise CodecError(
                f"LimitedCodec: encoded value is {len(data)} bytes, "
                f"over the limit of {self._max_bytes}"
            )
        return data

    def decode(self, data: bytes) -> V:
        """The inner codec's value, or a ``CodecError`` if ``data`` exceeds ``max_bytes``."""
        raw = _as_bytes("LimitedCodec", data)
        if len(raw) > self._max_bytes:
            raise CodecError(
                f"LimitedCodec: data is {len(raw)} bytes, over the limit of {self._max_bytes}"
            )
        return self._inner.decode(raw)

    def __repr__(self) -> str:
        return f"LimitedCodec({self._inner!r}, max_bytes={self._max_bytes})"


# --- JSON -------------------------------------------------------------------------------


class _Mismatch(Exception):
    """A value does not fit its type; ``path`` collects segments as it propagates up."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.path: list[str] = []

    def where(self) -> str:
        return "$" + "".join(reversed(self.path))


def _fail(message: str) -> NoReturn:
    raise _Mismatch(message)


def _kind(value: object) -> str:
    """How a decoded JSON value is described in messages (JSON names, not Python's)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _type_name(tp: object) -> str:
    """``tp`` as it would be written in an annotation, without module prefixes."""
    if tp is None or tp is type(None):
        return "None"
    if tp is Ellipsis:
        return "..."
    origin = get_origin(tp)
    args = get_args(tp)
    if origin is Union or origin is types.UnionType:
        return " | ".join(_type_name(arm) for arm in args)
    if origin is Annotated:
        return _type_name(args[0])
    if origin is not None and args:
        return f"{_type_name(origin)}[{', '.join(_type_name(arg) for arg in args)}]"
    if isinstance(tp, type):
        return tp.__name__
    return repr(tp).replace("typing.", "")


def _enter(value: object, active: set[int]) -> None:
    # Only containers on the current path are tracked, so a value shared by two branches
    # is fine; a container that contains itself would otherwise recurse until the stack
    # overflows.
    if id(value) in active:
        _fail("the value contains a reference cycle")
    active.add(id(value))


_LEAVES: frozenset[type] = frozenset({str, int, bool, type(None)})
"""Exact types whose values are always plain JSON: members of a container that have one
of these types are accepted without a call (most of a row's fields)."""


def _check_plain(value: object, active: set[int] | None) -> None:
    """Raise ``_Mismatch`` unless ``value`` is plain JSON that ``json`` round-trips exactly.

    ``active``: the containers on the current path, to name a reference cycle. ``None``
    skips that bookkeeping (every encode pays it, and a container is seldom cyclic): a
    cycle then recurses until ``RecursionError``, and the caller checks again with a set
    to name it (:func:`_check_plain_value`).
    """
    # Containers first, and their plain members (most of a row's fields) skipped in the
    # loop without a call: this runs on every encode.
    if isinstance(value, list):
        if active is not None:
            _enter(value, active)
        for index, item in enumerate(value):
            kind = type(item)
            if kind in _LEAVES or (kind is float and math.isfinite(item)):
                continue
            try:
                _check_plain(item, active)
            except _Mismatch as exc:
                exc.path.append(f"[{index}]")
                raise
        if active is not None:
            active.discard(id(value))
        return
    if isinstance(value, dict):
        if active is not None:
            _enter(value, active)
        for key, item in value.items():
            if not isinstance(key, str):
                _fail(
                    f"dict key {key!r} has type {type(key).__name__}; JSON object keys "
                    "are str, so it would come back as a string"
                )
            kind = type(item)
            if kind in _LEAVES or (kind is float and math.isfinite(item)):
                continue
            try:
                _check_plain(item, active)
            except _Mismatch as exc:
                exc.path.append(f"[{key!r}]")
                raise
        if active is not None:
            active.discard(id(value))
        return
    if value is None or isinstance(value, str | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            _fail(f"{value!r} is not a JSON number")
        return
    if isinstance(value, tuple):
        _fail("a tuple is not a JSON value (it would come back as a list); use a list")
    _fail(f"type {type(value).__name__} is not a JSON value")


def _check_plain_value(value: object) -> None:
    """:func:`_check_plain` of a whole value: without the cycle bookkeeping, and again
    with it only if that recursed too deep (a cycle is then named as one; a value nested
    too deeply raises ``RecursionError`` again)."""
    try:
        _check_plain(value, None)
    except RecursionError:
        _check_plain(value, set())


_NULL, _BOOLEAN, _INTEGER, _FRACTION, _STRING, _ARRAY, _OBJECT = (
    "null",
    "a boolean",
    "an integer",
    "a number with a fraction or exponent",
    "a string",
    "an array",
    "an object",
)
_ANY_KIND = frozenset({_NULL, _BOOLEAN, _INTEGER, _FRACTION, _STRING, _ARRAY, _OBJECT})


def _json_kind(value: object) -> str:
    """Which of the kinds above a decoded JSON value is."""
    if value is None:
        return _NULL
    if isinstance(value, bool):
        return _BOOLEAN
    if isinstance(value, int):
        return _INTEGER
    if isinstance(value, float):
        return _FRACTION
    if isinstance(value, str):
        return _STRING
    return _ARRAY if isinstance(value, list) else _OBJECT


class _Node:
    """Converts one declared type between Python values and plain JSON values."""

    kinds: frozenset[str] = _ANY_KIND
    """The JSON kinds ``decode`` may accept; two arms of a union must not share one
    (see ``_ambiguity``), or the data could come back as the wrong arm."""
    formatted = False
    """``decode`` accepts only the canonical text of one type, which no other formatted
    node's canonical text can equal (datetime, date, time, UUID, Decimal)."""

    def accepts(self, data: object) -> bool:
        """Whether ``decode`` takes ``data`` (for the union check, at construction)."""
        try:
            self.decode(data)
        except _Mismatch:
            return False
        return True

    def encode(self, value: object, active: set[int]) -> object:
        raise NotImplementedError

    def decode(self, data: object) -> object:
        raise NotImplementedError


class _PlainNode(_Node):
    def __init__(self, container: type | None = None) -> None:
        # ``container`` narrows the plain value to a bare ``list`` or ``dict``.
        self._container = container
        if container is not None:
            self.kinds = frozenset({_ARRAY if container is list else _OBJECT})

    def encode(self, value: object, active: set[int]) -> object:
        if self._container is not None and not isinstance(value, self._container):
            _fail(f"expected {self._container.__name__}, got {type(value).__name__}")
        _check_plain(value, active)
        return value

    def decode(self, data: object) -> object:
        if self._container is not None and not isinstance(data, self._container):
            _fail(f"expected {self._container.__name__}, got {_kind(data)}")
        return data


class _NoneNode(_Node):
    kinds = frozenset({_NULL})

    def encode(self, value: object, active: set[int]) -> object:
        if value is not None:
            _fail(f"expected None, got {type(value).__name__}")
        return None

    def decode(self, data: object) -> object:
        if data is not None:
            _fail(f"expected null, got {_kind(data)}")
        return None


class _StrNode(_Node):
    kinds = frozenset({_STRING})

    def encode(self, value: object, active: set[int]) -> object:
        if not isinstance(value, str):
            _fail(f"expected str, got {type(value).__name__}")
        return value

    def decode(self, data: object) -> object:
        if not isinstance(data, str):
            _fail(f"expected a string, got {_kind(data)}")
        return data


class _BoolNode(_Node):
    kinds = frozenset({_BOOLEAN})

    def encode(self, value: object, active: set[int]) -> object:
        if not isinstance(value, bool):
            _fail(f"expected bool, got {type(value).__name__}")
        return value

    def decode(self, data: object) -> object:
        if not isinstance(data, bool):
            _fail(f"expected a boolean, got {_kind(data)}")
        return data


class _IntNode(_Node):
    kinds = frozenset({_INTEGER})

    # bool is a subclass of int, but True stored in an int field would come back as True,
    # not 1, only by accident of JSON; refuse it so the declared type is what returns.
    def encode(self, value: object, active: set[int]) -> object:
        if not isinstance(value, int) or isinstance(value, bool):
            _fail(f"expected int, got {type(value).__name__}")
        return value

    def decode(self, data: object) -> object:
        if not isinstance(data, int) or isinstance(data, bool):
            _fail(f"expected an integer, got {_kind(data)}")
        return data


class _FloatNode(_Node):
    kinds = frozenset({_INTEGER, _FRACTION})

    def encode(self, value: object, active: set[int]) -> object:
        if isinstance(value, bool) or not isinstance(value, int | float):
            _fail(f"expected float, got {type(value).__name__}")
        # An int is stored as a float so that it decodes as the declared type.
        return self._finite(value)

    def decode(self, data: object) -> object:
        if isinstance(data, bool) or not isinstance(data, int | float):
            _fail(f"expected a number, got {_kind(data)}")
        return self._finite(data)

    @staticmethod
    def _finite(number: int | float) -> float:
        try:
            result = float(number)
        except OverflowError:
            _fail(f"the integer {number} is too large for a float")
        if type(number) is not float and result != number:
            # Past 2**53 a float has no room for every integer: it would come back rounded.
            _fail(f"the integer {number} has no exact float (it would come back as {result!r})")
        if not math.isfinite(result):
            _fail(f"{result!r} is not a JSON number")
        return result


class _ListNode(_Node):
    kinds = frozenset({_ARRAY})

    def __init__(self, item: _Node) -> None:
        self._item = item

    def encode(self, value: object, active: set[int]) -> object:
        if not isinstance(value, list):
            _fail(f"expected list, got {type(value).__name__}")
        _enter(value, active)
        out = _encode_items([self._item] * len(value), value, active)
        active.discard(id(value))
        return out

    def decode(self, data: object) -> object:
        if not isinstance(data, list):
            _fail(f"expected an array, got {_kind(data)}")
        return _decode_items([self._item] * len(data), data)


class _TupleNode(_Node):
    kinds = frozenset({_ARRAY})

    def __init__(self, items: list[_Node] | None, rest: _Node | None) -> None:
        # Either a fixed shape (``items``) or ``tuple[X, ...]`` (``rest``).
        self._items = items
        self._rest = rest

    def _nodes(self, length: int) -> list[_Node]:
        if self._items is None:
            assert self._rest is not None
            return [self._rest] * length
        if length != len(self._items):
            _fail(f"expected {len(self._items)} items, got {length}")
        return self._items

    def encode(self, value: object, active: set[int]) -> object:
        if not isinstance(value, tuple):
            _fail(f"expected tuple, got {type(value).__name__}")
        _enter(value, active)
        out = _encode_items(self._nodes(len(value)), value, active)
        active.discard(id(value))
        return out

    def decode(self, data: object) -> object:
        if not isinstance(data, list):
            _fail(f"expected an array, got {_kind(data)}")
        return tuple(_decode_items(self._nodes(len(data)), data))


def _encode_items(nodes: list[_Node], values: Sequence[object], active: set[int]) -> list[object]:
    out: list[object] = []
    for index, (node, item) in enumerate(zip(nodes, values, strict=True)):
        try:
            out.append(node.encode(item, active))
        except _Mismatch as exc:
            exc.path.append(f"[{index}]")
            raise
    return out


def _decode_items(nodes: list[_Node], values: list[object]) -> list[object]:
    out: list[object] = []
    for index, (node, item) in enumerate(zip(nodes, values, strict=True)):
        try:
            out.append(node.decode(item))
        except _Mismatch as exc:
            exc.path.append(f"[{index}]")
            raise
    return out


class _DictNode(_Node):
    kinds = frozenset({_OBJECT})

    def __init__(self, item: _Node) -> None:
        self._item = item

    def encode(self, value: object, active: set[int]) -> object:
        if not isinstance(value, dict):
            _fail(f"expected dict, got {type(value).__name__}")
        _enter(value, active)
        out: dict[str, object] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                _fail(f"dict key {key!r} has type {type(key).__name__}, expected str")
            try:
                out[key] = self._item.encode(item, active)
            except _Mismatch as exc:
                exc.path.append(f"[{key!r}]")
                raise
        active.discard(id(value))
        return out

    def decode(self, data: object) -> object:
        if not isinstance(data, dict):
            _fail(f"expected an object, got {_kind(data)}")
        out: dict[str, object] = {}
        for key, item in data.items():
            try:
                out[key] = self._item.decode(item)
            except _Mismatch as exc:
                exc.path.append(f"[{key!r}]")
                raise
        return out


class _UnionNode(_Node):
    def __init__(self, name: str, arms: list[_Node]) -> None:
        self._name = name
        self._arms = arms
        self.kinds = frozenset().union(*(arm.kinds for arm in arms))

    def encode(self, value: object, active: set[int]) -> object:
        for arm in self._arms:
            try:
                return arm.encode(value, active)
            except _Mismatch:
                continue
        _fail(f"expected {self._name}, got {type(value).__name__}")

    def decode(self, data: object) -> object:
        for arm in self._arms:
            try:
                return arm.decode(data)
            except _Mismatch:
                continue
        _fail(f"expected {self._name}, got {_kind(data)}")


class _RecordNode(_Node):
    """A type written as a JSON object with a fixed set of named fields, each required or
    not: a dataclass, or a TypedDict (whose fields are keys).

    Subclasses say how a value's fields are read (``encode``) and how a value is built
    from the decoded ones (``_build``); the checks on an object's names are shared.
    """

    kinds = frozenset({_OBJECT})
    field_word = "field"
    """What messages call a field."""
    missing_first = False
    """Whether ``decode`` looks for missing fields before decoding any (so that it
    reports the same problem as ``encode`` would); otherwise it reports the first
    problem in field order."""

    def __init__(self, cls: type) -> None:
        self._cls = cls
        # Filled in after construction so the type can refer to itself.
        self._fields: list[tuple[str, _Node, bool]] = []
        self._names: frozenset[str] = frozenset()

    def set_fields(self, fields: list[tuple[str, _Node, bool]]) -> None:
        self._fields = fields
        self._names = frozenset(name for name, _, _ in fields)

    @staticmethod
    def _segment(name: str) -> str:
        # A TypedDict key need not be an identifier.
        return f".{name}" if name.isidentifier() else f"[{name!r}]"

    @staticmethod
    def _show(name: object) -> str:
        return str(name)

    def _check_unknown(self, present: dict[Any, object]) -> None:
        unknown = present.keys() - self._names
        if unknown:
            shown = ", ".join(sorted(map(self._show, unknown)))
            _fail(f"unexpected {self.field_word}(s) for {self._cls.__name__}: {shown}")

    def _check_missing(self, present: dict[Any, object]) -> None:
        for name, _, required in self._fields:
            if required and name not in present:
                self._missing(name)

    def _missing(self, name: str) -> NoReturn:
        _fail(f"missing {self.field_word} {name!r} of {self._cls.__name__}")

    def decode(self, data: object) -> object:
        if not isinstance(data, dict):
            _fail(f"expected an object for {self._cls.__name__}, got {_kind(data)}")
        self._check_unknown(data)
        if self.missing_first:
            self._check_missing(data)
        values: dict[str, object] = {}
        for name, node, required in self._fields:
            if name in data:
                try:
                    values[name] = node.decode(data[name])
                except _Mismatch as exc:
                    exc.path.append(self._segment(name))
                    raise
            elif required:
                self._missing(name)
        return self._build(values)

    def _build(self, values: dict[str, object]) -> object:
        raise NotImplementedError


class _DataclassNode(_RecordNode):
    """A dataclass, written as an object of its ``init`` fields."""

    def encode(self, value: object, active: set[int]) -> object:
        # Exact type: a subclass instance would lose its own fields and come back as the
        # base class.
        if type(value) is not self._cls:
            _fail(f"expected {self._cls.__name__}, got {type(value).__name__}")
        _enter(value, active)
        out: dict[str, object] = {}
        for name, node, _ in self._fields:
            try:
                out[name] = node.encode(getattr(value, name), active)
            except _Mismatch as exc:
                exc.path.append(self._segment(name))
                raise
        active.discard(id(value))
        return out

    def _build(self, values: dict[str, object]) -> object:
        try:
            return self._cls(**values)
        except Exception as exc:
            # A __post_init__ that validates is telling us the data does not fit the type.
            _fail(f"{self._cls.__name__}(...) raised {exc!r}")


def _short(text: str) -> str:
    """``text`` quoted for a message, cut so a hostile payload cannot flood a log."""
    shown = repr(text)
    return shown if len(shown) <= 60 else shown[:56] + "...'"


def _offset_problem(value: datetime | time) -> str | None:
    """Why ``value``'s UTC offset would not come back from its ISO text, if it would not."""
    if value.tzinfo is None:
        return None
    offset = value.utcoffset()
    if offset is None:
        # A tzinfo that gives no offset (a ZoneInfo on a bare time) is written without
        # one, and the value would come back naive.
        return (
            f"its tzinfo {value.tzinfo!r} gives no UTC offset, so it would come back "
            "naive; use a datetime, or a fixed offset (datetime.timezone)"
        )
    if offset.microseconds:
        # isoformat writes the fraction, but fromisoformat (3.11) drops it.
        return f"its UTC offset {offset} has a fraction of a second, which would be lost"
    return None


class _TextNode(_Node):
    """A value stored as the one canonical string of its type: ``encode`` writes
    ``format(value)`` and ``decode`` accepts only a string that ``parse`` reads and
    ``format`` writes back unchanged, so each string has exactly one meaning."""

    kinds = frozenset({_STRING})
    formatted = True

    def __init__(
        self,
        cls: type,
        format: Callable[[Any], str],
        parse: Callable[[str], object],
        check: Callable[[Any], str | None] | None = None,
    ) -> None:
        self._cls = cls
        self._format = format
        self._parse = parse
        self._check = check

    def encode(self, value: object, active: set[int]) -> object:
        # Exact type: a date field given a datetime (a subclass) would be written as a
        # datetime and then refused on decode; a subclass's own behaviour would be lost.
        if type(value) is not self._cls:
            _fail(f"expected {self._cls.__name__}, got {type(value).__name__}")
        if self._check is not None:
            problem = self._check(value)
            if problem is not None:
                _fail(problem)
        return self._format(value)

    def decode(self, data: object) -> object:
        name = self._cls.__name__
        if not isinstance(data, str):
            _fail(f"expected a string holding a {name}, got {_kind(data)}")
        try:
            value = self._parse(data)
            canonical = self._format(value) == data
        except (ValueError, ArithmeticError):
            canonical = False
        if not canonical:
            _fail(f"{_short(data)} is not a {name} as this codec writes it")
        return value


def _text_node(tp: type) -> _TextNode | None:
    """The node of a type stored as text, or ``None`` if ``tp`` is not one."""
    if tp is datetime:
        return _TextNode(datetime, datetime.isoformat, datetime.fromisoformat, _offset_problem)
    if tp is date:
        return _TextNode(date, date.isoformat, date.fromisoformat)
    if tp is time:
        return _TextNode(time, time.isoformat, time.fromisoformat, _offset_problem)
    if tp is uuid.UUID:
        return _TextNode(uuid.UUID, str, uuid.UUID)
    if tp is Decimal:
        # str(Decimal) is exact: sign, digits and exponent all survive, for NaN, sNaN
        # (with their payloads) and the infinities too, which a PostgreSQL numeric can
        # hold. Decimal(text) ignores the context's precision, so nothing is rounded.
        return _TextNode(Decimal, str, Decimal)
    return None


_SCALARS: tuple[type, ...] = (str, int, float, bool, type(None))


class _EnumNode(_Node):
    """An enum member, stored as its value (which must be a JSON scalar)."""

    def __init__(self, cls: type[enum.Enum], where: str) -> None:
        self._cls = cls
        # Keyed by (type, value) so that the JSON values 1, 1.0 and true, equal in Python,
        # stay different members' values.
        self._members: dict[tuple[type, object], enum.Enum] = {}
        for member in cls:  # the canonical members: aliases share their value
            value = member.value
            if type(value) not in _SCALARS or (
                isinstance(value, float) and not math.isfinite(value)
            ):
                raise TypeError(
                    f"JsonCodec: {where} is the enum {cls.__name__}, whose member "
                    f"{member.name} has the value {value!r}; an enum is stored by value, "
                    "so every value must be a str, int, finite float, bool or None"
                )
            self._members[(type(value), value)] = member
        self.values: list[object] = [value for _, value in self._members]
        # A Flag's combinations are members too, but not listed: any int may be one.
        self.flag = issubclass(cls, enum.Flag)
        self.kinds = frozenset({_INTEGER} if self.flag else map(_json_kind, self.values))

    def encode(self, value: object, active: set[int]) -> object:
        if type(value) is not self._cls:
            _fail(f"expected {self._cls.__name__}, got {type(value).__name__}")
        return value.value

    def decode(self, data: object) -> object:
        # An array or object is never a member, and is unhashable: look up scalars only.
        member = self._members.get((type(data), data)) if type(data) in _SCALARS else None
        if member is not None:
            return member
        if self.flag and type(data) is int:
            try:
                combined = self._cls(data)
            except ValueError:
                pass
            else:
                if combined.value == data:
                    return combined
        shown = _short(data) if isinstance(data, str) else _kind(data)
        _fail(f"{shown} is not a value of {self._cls.__name__}")


class _TypedDictNode(_RecordNode):
    """A ``TypedDict``: a plain ``dict`` with declared keys, required or not."""

    field_word = "key"
    missing_first = True

    @staticmethod
    def _show(name: object) -> str:
        # A dict being encoded may hold keys of any type, str or not.
        return repr(name)

    def encode(self, value: object, active: set[int]) -> object:
        if not isinstance(value, dict):
            _fail(f"expected a dict for {self._cls.__name__}, got {type(value).__name__}")
        self._check_unknown(value)
        self._check_missing(value)
        _enter(value, active)
        out: dict[str, object] = {}
        for key, node, _ in self._fields:
            if key in value:
                try:
                    out[key] = node.encode(value[key], active)
                except _Mismatch as exc:
                    exc.path.append(self._segment(key))
                    raise
        active.discard(id(value))
        return out

    def _build(self, values: dict[str, object]) -> object:
        return values


def _is_typeddict(tp: object) -> bool:
    """Whether ``tp`` is a TypedDict class, from ``typing`` or ``typing_extensions`` (whose
    classes ``typing.is_typeddict`` does not recognise before Python 3.12)."""
    return is_typeddict(tp) or (isinstance(tp, type) and hasattr(tp, "__required_keys__"))


def _ambiguity(a: _Node, b: _Node) -> str | None:
    """What JSON both union arms ``a`` and ``b`` would decode, or ``None`` if nothing can
    be read as either (so every decoded value comes back as the arm it was written from)."""
    for first, other in ((a, b), (b, a)):
        if isinstance(first, _EnumNode) and not first.flag:
            # Precise: an enum decodes only its own values.
            for value in first.values:
                if other.accepts(value):
                    return f"the JSON value {json.dumps(value)}"
            return None
    common = a.kinds & b.kinds
    if not common:
        return None
    if {type(a), type(b)} == {_IntNode, _FloatNode}:
        return None  # int is tried first, and a float is always written with a fraction
    if a.formatted and b.formatted:
        return None  # canonical texts of different types never coincide
    if common == {_NULL} and {type(a), type(b)} == {_NoneNode, _PlainNode}:
        return None  # both read null as None
    return " or ".join(sorted(common))


def _compile(tp: object, where: str, memo: dict[object, _Node]) -> _Node:
    """Build the converter for ``tp``; ``where`` names it in construction errors."""
    if tp is Any or tp is object:
        return _PlainNode()
    if tp is None or tp is type(None):
        return _NoneNode()
    if tp is bool:
        return _BoolNode()
    if tp is int:
        return _IntNode()
    if tp is float:
        return _FloatNode()
    if tp is str:
        return _StrNode()
    if tp is list or tp is dict:
        return _PlainNode(cast(type, tp))
    if tp is tuple:
        return _TupleNode(None, _PlainNode())
    if isinstance(tp, type):
        text = _text_node(tp)
        if text is not None:
            return text
        if issubclass(tp, enum.Enum):
            return _EnumNode(tp, where)
        if dataclasses.is_dataclass(tp):
            return _compile_dataclass(tp, memo)
        if _is_typeddict(tp):
            return _compile_typeddict(tp, memo)
    origin = get_origin(tp)
    args = get_args(tp)
    if origin is Annotated:
        return _compile(args[0], where, memo)
    if origin is list and len(args) == 1:
        return _ListNode(_compile(args[0], f"{where}[item]", memo))
    if origin is dict and len(args) == 2:
        if args[0] is not str:
            raise TypeError(
                f"JsonCodec: {where} is {_type_name(tp)}, but JSON object keys are str; "
                "use dict[str, ...]"
            )
        return _DictNode(_compile(args[1], f"{where}[value]", memo))
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return _TupleNode(None, _compile(args[0], f"{where}[item]", memo))
        return _TupleNode(
            [_compile(arg, f"{where}[{i}]", memo) for i, arg in enumerate(args)], None
        )
    if origin is Union or origin is types.UnionType:
        return _compile_union(tp, args, where, memo)
    raise TypeError(
        f"JsonCodec cannot handle {where} of type {_type_name(tp)}; supported: str, int, "
        "float, bool, None, datetime, date, time, UUID, Decimal, enums, dataclasses, "
        "TypedDicts, list[X], tuple[X, ...], dict[str, X], unions, Any"
    )


def _compile_union(
    tp: object, args: tuple[object, ...], where: str, memo: dict[object, _Node]
) -> _UnionNode:
    # int before float, so that 3 comes back as 3 and 3.0 as 3.0 whatever the order
    # the union was written in (the float arm would accept and convert both).
    ordered = sorted(args, key=lambda arm: 0 if arm is int else 1)
    arms = [_compile(arm, where, memo) for arm in ordered]
    # Arms are tried in order, so two arms that read the same JSON would make what comes
    # back depend on that order, not on what went in (str | datetime: "2024-01-01T00:00:00"
    # is both). Refuse the union here rather than return the wrong arm later.
    for i, a in enumerate(arms):
        for j in range(i + 1, len(arms)):
            overlap = _ambiguity(a, arms[j])
            if overlap is not None:
                raise TypeError(
                    f"JsonCodec: {where} is {_type_name(tp)}, an ambiguous union: its "
                    f"arms {_type_name(ordered[i])} and {_type_name(ordered[j])} both "
                    f"decode {overlap}, so a value could come back as the wrong one; "
                    "use a dataclass with one field per arm, or a single type"
                )
    return _UnionNode(_type_name(tp), arms)


def _compile_dataclass(cls: type, memo: dict[object, _Node]) -> _Node:
    node = memo.get(cls)
    if node is not None:
        return node
    dataclass_node = _DataclassNode(cls)
    memo[cls] = dataclass_node
    hints = _hints(cls, include_extras=False)
    fields: list[tuple[str, _Node, bool]] = []
    for field in dataclasses.fields(cls):
        if not field.init:
            # Not a constructor argument, so the constructor recomputes it on decode.
            continue
        required = (
            field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        )
        where = f"field {cls.__name__}.{field.name}"
        fields.append((field.name, _compile(hints[field.name], where, memo), required))
    _check_rebuildable(cls, {name for name, _, _ in fields})
    dataclass_node.set_fields(fields)
    return dataclass_node


def _check_rebuildable(cls: type, stored: set[str]) -> None:
    """Refuse a dataclass whose constructor takes an argument no stored field holds (an
    ``InitVar``, or a hand-written ``__init__``): decode could not pass it, so no entry
    would ever come back."""
    try:
        parameters = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return
    extra = [
        p.name
        for p in parameters
        if p.name not in stored and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if extra:
        raise TypeError(
            f"JsonCodec: dataclass {cls.__name__} takes {', '.join(extra)} in its "
            "constructor but stores no field of that name (an InitVar?), so a stored value "
            "could not be rebuilt; make it a field"
        )


def _compile_typeddict(cls: type, memo: dict[object, _Node]) -> _Node:
    node = memo.get(cls)
    if node is not None:
        return node
    typeddict_node = _TypedDictNode(cls)
    memo[cls] = typeddict_node
    # With the extras kept, Required/NotRequired are visible even where the class body's
    # annotations were strings: Python 3.11 then misses them in __required_keys__, which
    # reflects only the totality of the class that declared each key.
    hints = _hints(cls, include_extras=True)
    required_keys = cast(frozenset[str], getattr(cls, "__required_keys__", frozenset()))
    keys: list[tuple[str, _Node, bool]] = []
    for key, hint in hints.items():
        required = key in required_keys
        while get_origin(hint) in (Required, NotRequired, Annotated):
            if get_origin(hint) is Required:
                required = True
            elif get_origin(hint) is NotRequired:
                required = False
            hint = get_args(hint)[0]
        where = f"key {cls.__name__}[{key!r}]"
        keys.append((key, _compile(hint, where, memo), required))
    typeddict_node.set_fields(keys)
    return typeddict_node


def _hints(cls: type, include_extras: bool) -> dict[str, Any]:
    try:
        return get_type_hints(cls, include_extras=include_extras)
    except Exception as exc:
        raise TypeError(
            f"JsonCodec: cannot resolve the type hints of {cls.__name__}: {exc!r} "
            "(are the annotated names importable from its module?)"
        ) from exc


def _reject_constant(name: str) -> NoReturn:
    # json.loads accepts NaN and Infinity by default; encode never writes them
    # (allow_nan=False), so data containing them is not ours.
    raise ValueError(f"{name} is not valid JSON")


_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False)
"""One encoder for every ``JsonCodec``, for the reason given for ``_DECODER``."""


def _compact_json() -> Callable[[object], str]:
    """``_ENCODER.encode``, with json's C encoder built once rather than on every call
    (``JSONEncoder.encode`` builds it per call, about a third of encoding a small row).

    Built without json's own cycle check (its ``markers`` are per call): every value is
    checked for cycles before it is encoded, and the C encoder would still stop a cycle
    with ``RecursionError``. Without the C accelerator, ``_ENCODER.encode`` itself.
    """
    try:
        from _json import make_encoder
    except ImportError:  # pragma: no cover - CPython always has it
        return _ENCODER.encode
    encoder = make_encoder(
        None, _ENCODER.default, json.encoder.encode_basestring, None, ":", ",", False, False, False
    )

    def encode(value: object) -> str:
        return "".join(encoder(value, 0))

    return encode


_TO_JSON = _compact_json()
"""Compact JSON text of a value, exactly as ``_ENCODER.encode`` writes it."""

_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
"""One decoder for every ``JsonCodec``: ``json.loads`` with any keyword argument builds a
new ``JSONDecoder`` per call (about 3 us, more than decoding a small row)."""
# typeshed types the scanner's context as a scanner (its TODO); a decoder is what it reads.
_SCAN = json.scanner.make_scanner(_DECODER)  # type: ignore[arg-type]
"""The scanner ``_DECODER`` itself parses with (the C one where CPython has it)."""


def _parse_json(text: str) -> Any:
    """``_DECODER.decode(text)``, with the common case (a document that starts at the first
    character and ends at the last, as every payload this codec writes does) parsed by the
    scanner directly: ``decode`` matches whitespace with a regular expression at both ends,
    which costs as much as parsing a small row. Anything else (surrounding whitespace,
    trailing data, no value at all) goes to ``decode``, so the result, and every error
    message, is exactly what ``decode`` gives."""
    try:
        plain, end = _SCAN(text, 0)
    except StopIteration:
        return _DECODER.decode(text)
    if end != len(text):
        return _DECODER.decode(text)
    return plain


_PLAIN: Any = object()
"""The default of ``JsonCodec``'s ``type_``: no type, plain JSON values. (``None`` is a
type of its own there: ``JsonCodec(None)`` holds only ``None``.)"""


class JsonCodec(Generic[J]):
    """Stores values as compact UTF-8 JSON; with a type, round-trips values of that type.

    ``JsonCodec()`` handles plain JSON values (a ``JsonCodec[JsonValue]``);
    ``JsonCodec(User)`` handles ``User`` instances, ``JsonCodec(User | None)`` also
    ``None``, ``JsonCodec(list[User])`` lists of them (see the module docstring for the
    supported types). An unsupported or ambiguous type is a ``TypeError`` here, at
    construction, naming the field.
    """

    @overload
    def __init__(self) -> None: ...

    @overload
    def __init__(self, type_: TypeForm[J]) -> None: ...

    def __init__(self, type_: object = _PLAIN) -> None:
        self._plain = type_ is _PLAIN
        self._type = None if self._plain else type_
        self._node: _Node | None = None
        if not self._plain:
            self._node = _compile(type_, _type_name(type_), {})
        self._name = "JsonCodec" if self._plain else f"JsonCodec[{_type_name(type_)}]"

    @property
    def type_(self) -> TypeForm[J] | None:
        """The type this codec decodes to, or ``None`` for plain JSON values (and for
        ``JsonCodec(None)``, whose values are ``None``)."""
        return cast("TypeForm[J] | None", self._type)

    def encode(self, value: J) -> bytes:
        """Compact UTF-8 JSON for ``value``; a value that does not fit is a ``CodecError``."""
        try:
            if self._node is None:
                _check_plain_value(value)
                plain: object = value
            else:
                plain = self._node.encode(value, set())
            return _TO_JSON(plain).encode("utf-8")
        except _Mismatch as exc:
            raise CodecError(
                f"{self._name}: cannot encode {type(value).__name__} value: "
                f"at {exc.where()}: {exc.message}"
            ) from None
        except UnicodeEncodeError as exc:
            raise CodecError(
                f"{self._name}: cannot encode {type(value).__name__} value: "
                f"a string is not valid Unicode (lone surrogate?): {exc}"
            ) from exc
        except (ValueError, TypeError, RecursionError) as exc:
            # The checks above leave little for json to refuse, but an integer past
            # Python's digit limit, or nesting past the recursion limit, still can.
            raise CodecError(
                f"{self._name}: cannot encode {type(value).__name__} value: {exc!r}"
            ) from exc

    def decode(self, data: bytes) -> J:
        """The value in ``data``; invalid JSON, or JSON that does not fit, is a ``CodecError``."""
        raw = data if type(data) is bytes else _as_bytes(self._name, data)
        try:
            # Decode the text explicitly: json.loads would also guess UTF-16 and UTF-32.
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CodecError(f"{self._name}: data is not valid UTF-8: {exc}") from exc
        try:
            plain = _parse_json(text)
        except (ValueError, RecursionError) as exc:
            raise CodecError(f"{self._name}: data is not valid JSON: {exc}") from exc
        if self._node is None:
            # Typed by annotation, not ``cast`` (a call at run time, on every hit's path).
            value: J = plain
            return value
        try:
            return cast(J, self._node.decode(plain))
        except _Mismatch as exc:
            raise CodecError(
                f"{self._name}: data does not fit {_type_name(self._type)}: "
                f"at {exc.where()}: {exc.message}"
            ) from None
        except RecursionError as exc:
            raise CodecError(f"{self._name}: data is nested too deeply: {exc!r}") from exc

    def __repr__(self) -> str:
        return "JsonCodec()" if self._plain else f"JsonCodec({_type_name(self._type)})"
