"""``cached``: a function's results kept in a cache, read through the safe path.

A decorated call is ``cache.get_or_load(key, lambda: function(*args, **kwargs), ttl)``,
so it inherits the whole guarantee (DESIGN §3): the value is stored only under the
version snapshotted before the function ran, and after ``decorated.invalidate(*args)``
returns no later call serves a result computed before it. Nothing here decides
freshness.

Keys come from the arguments: by default the function's qualified name and its bound
arguments, each a ``str``, ``int``, ``float``, ``bool``, ``None`` or enum member (types
whose ``repr`` is stable and says what they are); anything else needs an explicit
``key=`` function taking the same arguments. ``invalidate`` takes the same arguments as
the function and builds the same key.

Default keys are typed, like ``functools.lru_cache(typed=True)``: ``f(42)`` and
``f(42.0)``, or ``f(Category.BOOKS)`` (a ``StrEnum``) and ``f("books")``, are different
keys, so ``f.invalidate("books")`` does not reach ``f(Category.BOOKS)``. Invalidate with
arguments of the types the calls use, or give ``key=`` a function that normalises them.
"""

from __future__ import annotations

import enum
import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Generic, ParamSpec, TypeVar, cast, overload

from cascache.aio import AsyncCAS
from cascache.cache import CAS
from cascache.options import TTL, ttl_seconds

P = ParamSpec("P")
R = TypeVar("R")

__all__ = ["AsyncCached", "Cached", "cached"]

_PLAIN = (str, int, float, bool, type(None), enum.Enum)
"""Argument types the default key spells with ``repr``."""


class _Keys(Generic[P]):
    """How a decorated function's arguments become a cache key."""

    def __init__(self, function: Callable[..., object], key: Callable[P, str] | None) -> None:
        self._name = f"{function.__module__}.{function.__qualname__}"
        self._signature = inspect.signature(function)
        self._key = key

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> str:
        if self._key is not None:
            built = self._key(*args, **kwargs)
            if not isinstance(built, str):
                raise TypeError(
                    f"cascache.cached({self._name}): key= must return a str, got "
                    f"{type(built).__name__}"
                )
            return built
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        parts = []
        for name, value in bound.arguments.items():
            kind = self._signature.parameters[name].kind
            if kind is inspect.Parameter.VAR_POSITIONAL:
                items = [self._plain(name, item) for item in value]
                parts.append(f"*{name}=({', '.join(items)})")
            elif kind is inspect.Parameter.VAR_KEYWORD:
                # Sorted: the order keyword arguments were passed in is not part of the call.
                named = [f"{k}={self._plain(name, v)}" for k, v in sorted(value.items())]
                parts.append(f"**{name}=({', '.join(named)})")
            else:
                parts.append(f"{name}={self._plain(name, value)}")
        return f"{self._name}({', '.join(parts)})"

    def _plain(self, name: str, value: object) -> str:
        if not isinstance(value, _PLAIN):
            raise TypeError(
                f"cascache.cached({self._name}): argument {name!r} holds a "
                f"{type(value).__name__}, which the default key does not spell; pass "
                "key= (a function of the same arguments returning a str)"
            )
        return repr(value)


class _Wrapper(Generic[P]):
    """What both kinds of decorated function keep: the key builder, the TTL, and the
    wrapped function's name and docs."""

    def __init__(
        self, function: Callable[P, object], key: Callable[P, str] | None, ttl: TTL | None
    ) -> None:
        self.key = _Keys[P](function, key)
        """Builds the cache key of a call from its arguments."""
        self._ttl = ttl
        # Both subclasses are callable; the base alone is not, which typeshed asks for.
        functools.update_wrapper(cast(Callable[..., object], self), function)


class Cached(_Wrapper[P], Generic[P, R]):
    """A function whose results live in a :class:`cascache.CAS` (see :func:`cached`)."""

    def __init__(
        self,
        function: Callable[P, R],
        cache: CAS[R],
        key: Callable[P, str] | None,
        ttl: TTL | None,
    ) -> None:
        super().__init__(function, key, ttl)
        self.__wrapped__ = function
        self.cache = cache
        """The cache the results live in."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """The cached result of ``function(*args, **kwargs)``, or a fresh one, stored."""
        function = self.__wrapped__
        return self.cache.get_or_load(
            self.key(*args, **kwargs), lambda: function(*args, **kwargs), self._ttl
        )

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Invalidate the result for these arguments; call it after the source changed.
        Raises ``InvalidateError`` if the version could not be advanced: retry then."""
        self.cache.invalidate(self.key(*args, **kwargs))


class AsyncCached(_Wrapper[P], Generic[P, R]):
    """A coroutine function whose results live in a :class:`cascache.aio.AsyncCAS` (see
    :func:`cached`)."""

    def __init__(
        self,
        function: Callable[P, Awaitable[R]],
        cache: AsyncCAS[R],
        key: Callable[P, str] | None,
        ttl: TTL | None,
    ) -> None:
        super().__init__(function, key, ttl)
        self.__wrapped__ = function
        self.cache = cache
        """The cache the results live in."""

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """The cached result of ``await function(*args, **kwargs)``, or a fresh one, stored."""
        function = self.__wrapped__
        return await self.cache.get_or_load(
            self.key(*args, **kwargs), lambda: function(*args, **kwargs), self._ttl
        )

    async def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Invalidate the result for these arguments; await it after the source changed."""
        await self.cache.invalidate(self.key(*args, **kwargs))


@overload
def cached(
    cache: AsyncCAS[R], *, key: Callable[P, str] | None = None, ttl: TTL | None = None
) -> Callable[[Callable[P, Awaitable[R]]], AsyncCached[P, R]]: ...


@overload
def cached(
    cache: CAS[R], *, key: Callable[P, str] | None = None, ttl: TTL | None = None
) -> Callable[[Callable[P, R]], Cached[P, R]]: ...


def cached(
    cache: CAS[R] | AsyncCAS[R],
    *,
    key: Callable[P, str] | None = None,
    ttl: TTL | None = None,
) -> (
    Callable[[Callable[P, R]], Cached[P, R]]
    | Callable[[Callable[P, Awaitable[R]]], AsyncCached[P, R]]
):
    """Cache a function's results in ``cache``, read through ``get_or_load``.

    ``@cached(cache)`` on a plain function (``cache`` a :class:`cascache.CAS`), or on an
    ``async def`` (``cache`` a :class:`cascache.aio.AsyncCAS`). The decorated function
    keeps its signature for type checkers, and gains ``invalidate(*args, **kwargs)``
    (a coroutine on the asyncio side) and ``key(*args, **kwargs)``.

    Args:
        cache: where the results live; its codec must encode the function's results.
        key: builds the cache key from the call's arguments (default: the function's
            qualified name and its bound arguments, see the module doc).
        ttl: lifetime of each result (default: the cache's ``default_ttl``); a TTL the
            cache would refuse is a ``ConfigError`` here, not at the first call.
    """
    ttl_seconds("cascache.cached ttl", ttl)
    if isinstance(cache, AsyncCAS):
        async_cache = cache

        def decorate_async(function: Callable[P, Awaitable[R]]) -> AsyncCached[P, R]:
            if not inspect.iscoroutinefunction(function):
                raise TypeError(
                    f"cascache.cached: {function.__qualname__} is not a coroutine function; "
                    "an AsyncCAS caches async def functions (use a CAS for a plain one)"
                )
            return AsyncCached(function, async_cache, key, ttl)

        return decorate_async
    if not isinstance(cache, CAS):
        raise TypeError(f"cascache.cached takes a CAS or an AsyncCAS, got {type(cache).__name__}")
    sync_cache = cache

    def decorate(function: Callable[P, R]) -> Cached[P, R]:
        if inspect.iscoroutinefunction(function):
            raise TypeError(
                f"cascache.cached: {function.__qualname__} is a coroutine function; cache it "
                "in an AsyncCAS (cascache.aio), whose get_or_load awaits it"
            )
        return Cached(function, sync_cache, key, ttl)

    return decorate
