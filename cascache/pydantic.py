"""A codec for pydantic v2 models (and any type a pydantic ``TypeAdapter`` takes).

Install with ``pip install 'cascache[pydantic]'``. ``PydanticCodec(User)`` stores a
``BaseModel`` as the JSON pydantic writes for it (``TypeAdapter.dump_json``, the same bytes
as ``model_dump_json``) and validates it back with ``validate_json``. Other types work
through the same adapter: ``PydanticCodec(User | None)``, ``PydanticCodec(list[User])``,
a dataclass, a ``TypedDict``.

Strictness both ways, so what comes back is what went in:

* ``decode`` validates with ``strict=True``: nothing is coerced (``"42"`` is not an
  ``int``, ``1`` is not a ``bool``), while the strings JSON needs for ``datetime``,
  ``UUID``, ``Decimal`` and the like are still read. The model's own validators run.
* ``encode`` serializes with ``warnings="error"``: a field holding a value of the wrong
  type (assigned after validation) is a ``CodecError`` instead of a warning and an entry
  that would not decode. The top-level value must have exactly the declared class, when
  the type is a class or a union of classes (``User | None``): a subclass instance would
  come back as the base class.
* Fields are written under their aliases (``by_alias=True``), the names ``validate_json``
  reads, so a model with ``Field(alias=...)`` or an ``alias_generator`` round-trips.
* pydantic writes a ``SecretStr``, ``SecretBytes`` or ``Secret`` as ``"**********"``, and
  leaves out a field declared ``Field(exclude=True)``. For a type that holds either,
  ``encode`` validates what it wrote and refuses (``CodecError``) a value that would not
  come back equal, rather than cache the mask in place of the secret or the default in
  place of the field; a ``field_serializer`` that writes the secret makes such a model
  cacheable.

pydantic's JSON keeps a ``datetime``'s offset (UTC is written ``Z``) and a ``Decimal``'s
digits (as a string). It writes a NaN or infinite float as ``null`` by default, which then
fails to decode; a model that holds them can set ``ser_json_inf_nan="constants"``.

Every failure either way is a :class:`~cascache.errors.CodecError` naming the codec and,
for data that does not fit, the path of the first problem (``at $.items[0]``); so is
anything else a model's own validator raises while decoding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, TypeVar

try:
    import pydantic
    import pydantic_core
except ImportError as exc:  # pragma: no cover - the tests hide the library to reach it
    raise ImportError(
        "cascache.pydantic needs pydantic v2, which is not installed: "
        "pip install 'cascache[pydantic]'"
    ) from exc

from cascache.codec import _as_bytes, _check_class, _exact_classes, _type_name
from cascache.errors import CodecError

if TYPE_CHECKING:
    from typing_extensions import TypeForm

__all__ = ["PydanticCodec"]

V = TypeVar("V")


def _where(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as a path: ``('items', 0, 'name')`` is ``$.items[0].name``."""
    return "$" + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)


_SECRETS: tuple[type, ...] = tuple(
    cls
    for cls in (getattr(pydantic, name, None) for name in ("SecretStr", "SecretBytes", "Secret"))
    if isinstance(cls, type)
)
"""The types pydantic writes as a mask instead of their value."""


def _lossy(schema: object, seen: set[int]) -> bool:
    """Whether a pydantic core schema may write less than a value holds: it refers to one
    of :data:`_SECRETS`, or leaves a field out (``Field(exclude=True)``)."""
    if id(schema) in seen:
        return False
    seen.add(id(schema))
    if isinstance(schema, type):
        return issubclass(schema, _SECRETS)
    if isinstance(schema, dict):
        if schema.get("serialization_exclude") is True:
            return True
        return any(_lossy(item, seen) for item in schema.values())
    if isinstance(schema, list | tuple):
        return any(_lossy(item, seen) for item in schema)
    return False


class PydanticCodec(Generic[V]):
    """Stores values of type ``V`` (a pydantic ``BaseModel``, or anything a
    ``TypeAdapter`` takes) as pydantic's JSON, validated strictly on the way back.

    Type checkers infer ``PydanticCodec[User]`` from ``PydanticCodec(User)`` and
    ``PydanticCodec[User | None]`` from ``PydanticCodec(User | None)``. A type pydantic
    cannot build a schema for is a ``TypeError`` here, at construction.
    """

    def __init__(self, type_: TypeForm[V]) -> None:
        name = _type_name(type_)
        try:
            self._adapter: pydantic.TypeAdapter[V] = pydantic.TypeAdapter(type_)
        except pydantic.PydanticUserError as exc:  # a schema it cannot build, and kin
            # The first line says what; the rest is pydantic's advice on writing schemas.
            reason = str(exc).splitlines()[0]
            raise TypeError(f"PydanticCodec cannot handle {name}: {reason}") from exc
        self._type = type_
        self._name = f"PydanticCodec[{name}]"
        self._classes = _exact_classes(type_)
        self._lossy = _lossy(self._adapter.core_schema, set())

    @property
    def type_(self) -> TypeForm[V]:
        """The type this codec decodes to."""
        return self._type

    def encode(self, value: V) -> bytes:
        """pydantic's JSON for ``value``; a value that does not fit is a ``CodecError``."""
        _check_class(self._name, self._classes, value)
        try:
            data = self._adapter.dump_json(value, warnings="error", by_alias=True)
        except (pydantic_core.PydanticSerializationError, ValueError, RecursionError) as exc:
            # pydantic's text spans lines (a header, then one line per warning).
            detail = " ".join(str(exc).split())
            raise CodecError(
                f"{self._name}: cannot encode {type(value).__name__} value: {detail}"
            ) from exc
        if self._lossy and not self._comes_back(data, value):
            raise CodecError(
                f"{self._name}: cannot encode {type(value).__name__} value: it would not "
                "come back equal; pydantic writes a secret field as '**********' unless a "
                "field_serializer writes the secret itself, and leaves out a field with "
                "exclude=True"
            )
        return data

    def _comes_back(self, data: bytes, value: V) -> bool:
        """Whether ``data`` decodes to a value equal to ``value``."""
        try:
            return bool(self._adapter.validate_json(data, strict=True) == value)
        except Exception:
            return False

    def decode(self, data: bytes) -> V:
        """The value in ``data``, validated strictly; a misfit is a ``CodecError``."""
        raw = data if type(data) is bytes else _as_bytes(self._name, data)
        try:
            return self._adapter.validate_json(raw, strict=True)
        except pydantic.ValidationError as exc:
            errors = exc.errors(include_url=False)
            first = errors[0]
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            what = (
                "data is not valid JSON"
                if first["type"] == "json_invalid"
                else f"data does not fit {_type_name(self._type)}"
            )
            raise CodecError(
                f"{self._name}: {what}: at {_where(first['loc'])}: {first['msg']}{more}"
            ) from exc
        except RecursionError as exc:
            raise CodecError(f"{self._name}: data is nested too deeply: {exc!r}") from exc
        except Exception as exc:
            # A model validator that raises something pydantic does not turn into a
            # ValidationError (an IndexError, say): the entry does not decode all the same.
            raise CodecError(f"{self._name}: validating the data raised {exc!r}") from exc

    def __repr__(self) -> str:
        return f"PydanticCodec({_type_name(self._type)})"
