"""Codecs: how a cache turns values into the bytes a provider stores, and back.

A codec is any object with ``encode(value) -> bytes`` and ``decode(bytes) -> value``
(:class:`Codec`). Every failure either way is a :class:`~cascache.errors.CodecError`, so the
cache can treat an undecodable entry as a miss instead of crashing a read. Nothing here
uses pickle: stored bytes are data, never code, so a poisoned store cannot run anything.

Built-in codecs:

* :class:`JsonCodec` stores compact UTF-8 JSON (``allow_nan=False``).
* :class:`BytesCodec` stores ``bytes`` as they are; :class:`StrCodec` stores UTF-8 text.
* :class:`LimitedCodec` wraps another codec and refuses payloads over a size limit.

How ``JsonCodec`` round-trips dataclasses
-----------------------------------------

``JsonCodec(User)`` reads ``User``'s field types once, at construction, with
:func:`typing.get_type_hints` (so string annotations and ``from __future__ import
annotations`` work, provided the names resolve in the dataclass's module). ``encode``
writes a dataclass as a JSON object holding its ``init`` fields by name, recursively;
``decode`` parses the JSON and rebuilds the value by calling the dataclass's constructor
with those fields, recursing through the declared field types. Supported field types:

* ``str``, ``int``, ``float`` (an ``int`` is accepted and stored as a float), ``bool``,
  ``None``;
* nested dataclasses, including recursive ones;
* ``list[X]``, ``tuple[X, ...]``, ``tuple[X, Y]`` (stored as a JSON array),
  ``dict[str, X]``;
* unions such as ``X | None`` or ``Optional[X]`` (each arm is tried in order, ``int``
  before ``float``);
* ``Any``, ``object``, bare ``list`` and ``dict``: plain JSON values, checked as below.

Anything else (sets, bytes, enums, generic dataclasses...) is a ``TypeError`` at
construction rather than a surprise at the first write. The codec is strict both ways, so
what comes back equals what went in: ``encode`` checks each value against its declared
type (an instance of a *subclass* of the dataclass is refused, as its extra fields would
be lost), and ``decode`` rejects missing required fields, unknown fields and values of the
wrong JSON type. A field missing from stored data takes its default, if it has one.

Without a type, ``JsonCodec()`` round-trips plain JSON values: ``dict`` with ``str`` keys,
``list``, ``str``, ``int``, finite ``float``, ``bool`` and ``None``. Values JSON would
change silently are refused instead: a ``tuple`` (it would come back as a list) and a
dict with non-``str`` keys (they would come back as strings).
"""

from __future__ import annotations

import dataclasses
import json
import json.scanner
import math
import types
from collections.abc import Sequence
from typing import (
    Any,
    Generic,
    NoReturn,
    Protocol,
    TypeVar,
    Union,
    cast,
    get_args,
    get_origin,
    get_type_hints,
    runtime_checkable,
)

from cascache.errors import CodecError

V = TypeVar("V")


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
    if isinstance(tp, type) and not get_args(tp):
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


def _check_plain(value: object, active: set[int]) -> None:
    """Raise ``_Mismatch`` unless ``value`` is plain JSON that ``json`` round-trips exactly."""
    if value is None or isinstance(value, str | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            _fail(f"{value!r} is not a JSON number")
        return
    if isinstance(value, list):
        _enter(value, active)
        for index, item in enumerate(value):
            if type(item) in _LEAVES:
                continue
            try:
                _check_plain(item, active)
            except _Mismatch as exc:
                exc.path.append(f"[{index}]")
                raise
        active.discard(id(value))
        return
    if isinstance(value, dict):
        _enter(value, active)
        for key, item in value.items():
            if not isinstance(key, str):
                _fail(
                    f"dict key {key!r} has type {type(key).__name__}; JSON object keys "
                    "are str, so it would come back as a string"
                )
            if type(item) in _LEAVES:
                continue
            try:
                _check_plain(item, active)
            except _Mismatch as exc:
                exc.path.append(f"[{key!r}]")
                raise
        active.discard(id(value))
        return
    if isinstance(value, tuple):
        _fail("a tuple is not a JSON value (it would come back as a list); use a list")
    _fail(f"type {type(value).__name__} is not a JSON value")


class _Node:
    """Converts one declared type between Python values and plain JSON values."""

    def encode(self, value: object, active: set[int]) -> object:
        raise NotImplementedError

    def decode(self, data: object) -> object:
        raise NotImplementedError


class _PlainNode(_Node):
    def __init__(self, container: type | None = None) -> None:
        # ``container`` narrows the plain value to a bare ``list`` or ``dict``.
        self._container = container

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
    def encode(self, value: object, active: set[int]) -> object:
        if value is not None:
            _fail(f"expected None, got {type(value).__name__}")
        return None

    def decode(self, data: object) -> object:
        if data is not None:
            _fail(f"expected null, got {_kind(data)}")
        return None


class _StrNode(_Node):
    def encode(self, value: object, active: set[int]) -> object:
        if not isinstance(value, str):
            _fail(f"expected str, got {type(value).__name__}")
        return value

    def decode(self, data: object) -> object:
        if not isinstance(data, str):
            _fail(f"expected a string, got {_kind(data)}")
        return data


class _BoolNode(_Node):
    def encode(self, value: object, active: set[int]) -> object:
        if not isinstance(value, bool):
            _fail(f"expected bool, got {type(value).__name__}")
        return value

    def decode(self, data: object) -> object:
        if not isinstance(data, bool):
            _fail(f"expected a boolean, got {_kind(data)}")
        return data


class _IntNode(_Node):
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
        if not math.isfinite(result):
            _fail(f"{result!r} is not a JSON number")
        return result


class _ListNode(_Node):
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


class _DataclassNode(_Node):
    def __init__(self, cls: type) -> None:
        self._cls = cls
        # Filled in after construction so a dataclass can refer to itself.
        self._fields: list[tuple[str, _Node, bool]] = []
        self._names: frozenset[str] = frozenset()

    def set_fields(self, fields: list[tuple[str, _Node, bool]]) -> None:
        self._fields = fields
        self._names = frozenset(name for name, _, _ in fields)

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
                exc.path.append(f".{name}")
                raise
        active.discard(id(value))
        return out

    def decode(self, data: object) -> object:
        if not isinstance(data, dict):
            _fail(f"expected an object for {self._cls.__name__}, got {_kind(data)}")
        unknown = sorted(set(data) - self._names)
        if unknown:
            _fail(f"unexpected field(s) for {self._cls.__name__}: {', '.join(unknown)}")
        kwargs: dict[str, object] = {}
        for name, node, required in self._fields:
            if name in data:
                try:
                    kwargs[name] = node.decode(data[name])
                except _Mismatch as exc:
                    exc.path.append(f".{name}")
                    raise
            elif required:
                _fail(f"missing field {name!r} of {self._cls.__name__}")
        try:
            return self._cls(**kwargs)
        except Exception as exc:
            # A __post_init__ that validates is telling us the data does not fit the type.
            _fail(f"{self._cls.__name__}(...) raised {exc!r}")


def _compile(tp: object, where: str, memo: dict[type, _DataclassNode]) -> _Node:
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
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _compile_dataclass(tp, memo)
    origin = get_origin(tp)
    args = get_args(tp)
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
        # int before float, so that 3 comes back as 3 and 3.0 as 3.0 whatever the order
        # the union was written in (the float arm would accept and convert both).
        ordered = sorted(args, key=lambda arm: 0 if arm is int else 1)
        arms = [_compile(arm, where, memo) for arm in ordered]
        return _UnionNode(_type_name(tp), arms)
    raise TypeError(
        f"JsonCodec cannot handle {where} of type {_type_name(tp)}; supported: str, int, "
        "float, bool, None, dataclasses, list[X], tuple[X, ...], dict[str, X], unions, Any"
    )


def _compile_dataclass(cls: type, memo: dict[type, _DataclassNode]) -> _DataclassNode:
    node = memo.get(cls)
    if node is not None:
        return node
    node = _DataclassNode(cls)
    memo[cls] = node
    try:
        hints = get_type_hints(cls)
    except Exception as exc:
        raise TypeError(
            f"JsonCodec: cannot resolve the type hints of {cls.__name__}: {exc!r} "
            "(are the annotated names importable from its module?)"
        ) from exc
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
    node.set_fields(fields)
    return node


def _reject_constant(name: str) -> NoReturn:
    # json.loads accepts NaN and Infinity by default; encode never writes them
    # (allow_nan=False), so data containing them is not ours.
    raise ValueError(f"{name} is not valid JSON")


_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False)
"""One encoder for every ``JsonCodec``, for the reason given for ``_DECODER``."""
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
"""One decoder for every ``JsonCodec``: ``json.loads`` with any keyword argument builds a
new ``JSONDecoder`` per call (about 3 us, more than decoding a small row)."""
# typeshed types the scanner's context as a scanner (its TODO); a decoder is what it reads.
_SCAN = json.scanner.make_scanner(_DECODER)  # type: ignore[arg-type]
"""The scanner ``_DECODER`` itself parses with (the C one where CPython has it)."""


def _parse_json(text: str) -> object:
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


class JsonCodec(Generic[V]):
    """Stores values as compact UTF-8 JSON; with a dataclass type, round-trips dataclasses.

    ``JsonCodec()`` handles plain JSON values; ``JsonCodec(User)`` handles ``User``
    instances (see the module docstring for the supported field types). An unsupported
    type is a ``TypeError`` here, at construction.
    """

    def __init__(self, type_: type[V] | None = None) -> None:
        self._type = type_
        self._node: _Node | None = None
        if type_ is not None:
            self._node = _compile(type_, _type_name(type_), {})
        self._name = "JsonCodec" if type_ is None else f"JsonCodec[{_type_name(type_)}]"

    @property
    def type_(self) -> type[V] | None:
        """The type this codec decodes to, or ``None`` for plain JSON values."""
        return self._type

    def encode(self, value: V) -> bytes:
        """Compact UTF-8 JSON for ``value``; a value that does not fit is a ``CodecError``."""
        try:
            if self._node is None:
                _check_plain(value, set())
                plain: object = value
            else:
                plain = self._node.encode(value, set())
            return _ENCODER.encode(plain).encode("utf-8")
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

    def decode(self, data: bytes) -> V:
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
            return cast(V, plain)
        try:
            return cast(V, self._node.decode(plain))
        except _Mismatch as exc:
            raise CodecError(
                f"{self._name}: data does not fit {_type_name(self._type)}: "
                f"at {exc.where()}: {exc.message}"
            ) from None
        except RecursionError as exc:
            raise CodecError(f"{self._name}: data is nested too deeply: {exc!r}") from exc

    def __repr__(self) -> str:
        return "JsonCodec()" if self._type is None else f"JsonCodec({_type_name(self._type)})"
