"""A codec built on msgspec: JSON or MessagePack, typed by ``msgspec.Struct`` or dataclasses.

Install with ``pip install 'cascache[msgspec]'``. ``MsgspecCodec(User)`` encodes with one
reused ``msgspec`` encoder and decodes, validating against ``User``, with one reused
decoder; on a realistic row it is several times faster than :class:`~cascache.JsonCodec`
(``bench/codecs.py``). Every type msgspec supports works: ``msgspec.Struct``, dataclasses,
``TypedDict``, ``datetime``, ``date``, ``time``, ``UUID``, ``Decimal`` (as a string, so
exactly), enums, ``X | None`` and the containers (msgspec's own rules apply, including
for unions). A type msgspec would need an ``enc_hook``/``dec_hook`` for is a
``TypeError`` at construction, naming where it is.

Differences from ``JsonCodec`` worth knowing:

* ``encode`` checks only the top-level type when it is a class or a union of classes
  (exactly: a subclass instance is refused, as it would come back as the base class).
  msgspec does not check field values when it encodes, so a field holding a value of
  another type than declared is written as msgspec writes that value. If the result does
  not fit the declared type, the entry fails to decode: a miss, reported as a
  ``CodecError``. If it does fit, the value comes back converted to the declared type: a
  ``UUID`` in a ``str`` field as its text, a tuple in a ``list`` field as a list, an
  ``int`` in a ``float`` field as a float (rounded past 2**53), a ``float`` in a
  ``Decimal`` field as the ``Decimal`` of its shortest text, and with JSON an ``int``
  dict key as a ``str``. Keep rows true to their annotations (a type checker does), or
  use :class:`~cascache.JsonCodec`, which checks every field when it encodes.
* ``format="json"`` writes a NaN or infinite float as ``null`` (msgspec's choice), which
  decodes as an error, or as ``None`` in a ``float | None`` field; ``format="msgpack"``
  keeps them.
* ``format="msgpack"`` stores an aware ``datetime`` as a MessagePack timestamp, which
  holds the instant but not the offset: it comes back equal, in UTC. The JSON format
  keeps the offset (``+02:00``; UTC as ``Z``).

Every failure either way is a :class:`~cascache.errors.CodecError` naming the codec and,
for data that does not fit, msgspec's description with the path (``at `$.items[0]```);
so is anything else a ``__post_init__`` raises while decoding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, Literal, TypeVar, cast

try:
    import msgspec
except ImportError as exc:  # pragma: no cover - the tests hide the library to reach it
    raise ImportError(
        "cascache.msgspec needs msgspec, which is not installed: pip install 'cascache[msgspec]'"
    ) from exc

from cascache.codec import _as_bytes, _check_class, _exact_classes, _type_name
from cascache.errors import CodecError

if TYPE_CHECKING:
    from typing_extensions import TypeForm

__all__ = ["MsgspecCodec"]

V = TypeVar("V")

Format = Literal["json", "msgpack"]
"""The wire formats of :class:`MsgspecCodec`."""


def _unsupported(info: msgspec.inspect.Type, where: str, seen: set[int]) -> str | None:
    """Where in ``info`` (msgspec's view of a type) a type needs a hook, or ``None``."""
    if id(info) in seen:  # recursive types refer back to a node already walked
        return None
    seen.add(id(info))
    if isinstance(info, msgspec.inspect.CustomType):
        return f"{where} ({info.cls.__name__})"
    fields = getattr(info, "fields", None)
    if fields is not None:
        owner = getattr(info, "cls", None)
        prefix = owner.__name__ if owner is not None else where
        for field in fields:
            found = _unsupported(field.type, f"{prefix}.{field.name}", seen)
            if found is not None:
                return found
    for name in ("item_type", "key_type", "value_type"):
        child = getattr(info, name, None)
        if isinstance(child, msgspec.inspect.Type):
            found = _unsupported(child, f"{where}[{name.removesuffix('_type')}]", seen)
            if found is not None:
                return found
    for name in ("item_types", "types"):
        for child in getattr(info, name, ()):
            found = _unsupported(child, where, seen)
            if found is not None:
                return found
    return None


class MsgspecCodec(Generic[V]):
    """Stores values of type ``V`` as JSON or MessagePack with msgspec.

    ``MsgspecCodec(User)`` or ``MsgspecCodec(User | None, format="msgpack")``; type
    checkers infer ``MsgspecCodec[User]`` and ``MsgspecCodec[User | None]``. One encoder
    and one decoder are built here and reused by every call (msgspec keeps no state
    between calls, so threads may share them).
    """

    def __init__(self, type_: TypeForm[V], format: Format = "json") -> None:
        if format not in ("json", "msgpack"):
            raise ValueError(f"MsgspecCodec format must be 'json' or 'msgpack', got {format!r}")
        name = _type_name(type_)
        try:
            info = msgspec.inspect.type_info(type_)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"MsgspecCodec cannot handle {name}: {exc}") from exc
        where = _unsupported(info, name, set())
        if where is not None:
            raise TypeError(
                f"MsgspecCodec cannot handle {name}: msgspec does not support the type of "
                f"{where} without an enc_hook/dec_hook; use a supported type, or write a "
                "Codec of your own"
            )
        self._type = type_
        self._format: Format = format
        self._name = f"MsgspecCodec[{name}, {format}]"
        self._classes = _exact_classes(type_)
        self._encoder: msgspec.json.Encoder | msgspec.msgpack.Encoder
        self._decoder: msgspec.json.Decoder[V] | msgspec.msgpack.Decoder[V]
        # msgspec's stubs take a type[V]; a TypeForm (a union, say) is what it accepts too.
        decoded = cast("type[V]", type_)
        try:
            if format == "json":
                self._encoder = msgspec.json.Encoder()
                self._decoder = msgspec.json.Decoder(decoded)
            else:
                self._encoder = msgspec.msgpack.Encoder()
                self._decoder = msgspec.msgpack.Decoder(decoded)
        except TypeError as exc:
            # msgspec's own refusals, such as a union of two array types.
            raise TypeError(f"MsgspecCodec cannot handle {name}: {exc}") from exc

    @property
    def type_(self) -> TypeForm[V]:
        """The type this codec decodes to."""
        return self._type

    @property
    def format(self) -> Format:
        """``"json"`` or ``"msgpack"``."""
        return self._format

    def encode(self, value: V) -> bytes:
        """The JSON or MessagePack bytes of ``value``; failures are ``CodecError``."""
        _check_class(self._name, self._classes, value)
        try:
            return self._encoder.encode(value)
        except (msgspec.EncodeError, TypeError, ValueError, OverflowError, RecursionError) as exc:
            # TypeError: a type msgspec cannot encode; the others: a str with a lone
            # surrogate, an int past 64 bits for msgpack, nesting past the recursion limit.
            raise CodecError(
                f"{self._name}: cannot encode {type(value).__name__} value: {exc}"
            ) from exc

    def decode(self, data: bytes) -> V:
        """The value in ``data``, validated against the type; failures are ``CodecError``."""
        raw = data if type(data) is bytes else _as_bytes(self._name, data)
        try:
            return self._decoder.decode(raw)
        except msgspec.ValidationError as exc:
            raise CodecError(
                f"{self._name}: data does not fit {_type_name(self._type)}: {exc}"
            ) from exc
        except (msgspec.DecodeError, RecursionError) as exc:
            raise CodecError(f"{self._name}: data is not valid {self._format}: {exc}") from exc
        except Exception as exc:
            # A ``__post_init__`` raising something msgspec does not turn into a
            # ValidationError (an IndexError, say): the entry does not decode all the same.
            raise CodecError(f"{self._name}: building the value raised {exc!r}") from exc

    def __repr__(self) -> str:
        return f"MsgspecCodec({_type_name(self._type)}, format={self._format!r})"
