"""Typed errors. Every error raised by an operation names the operation and the key."""

from __future__ import annotations

from collections.abc import Sequence


class CascacheError(Exception):
    """Base class of every error cascache raises on purpose."""


class ConfigError(CascacheError, ValueError):
    """The cache or one of its parts was configured wrongly; raised at construction."""


class CodecError(CascacheError):
    """A codec could not encode or decode a value."""


class WireError(CascacheError):
    """Stored bytes are not a well-formed cascache frame (corrupt or foreign data)."""


class ReplyError(CascacheError):
    """A store broke its interface: its reply does not match what was asked.

    For example a ``get_many`` that returns fewer results than keys. The cache treats it
    like any other failure of that store: a read of values raises ``OpError`` (with this
    as its cause), a read of fences fails closed, and nothing is served from the reply.
    """


class ReplicationError(CascacheError):
    """Fewer replicas than required acknowledged a write before the timeout.

    The write *was* applied on the primary; it may be lost if a replica that lacks it is
    promoted, so an invalidate that raises this must be retried.
    """


class _KeyedError(CascacheError):
    """An error of one operation on one key or a batch of keys: sets ``op``, ``keys`` and
    ``key`` the same way for every such error, and starts the message with the call."""

    def __init__(self, op: str, key: str | Sequence[str], detail: str) -> None:
        self.op = op
        # The key as given (one str, or the batch's keys), to rebuild the error from.
        self._given: str | tuple[str, ...] = key if isinstance(key, str) else tuple(key)
        self.keys: tuple[str, ...] = (key,) if isinstance(key, str) else tuple(key)
        self.key = key if isinstance(key, str) else describe_keys(self.keys)
        named = _quoted(key) if isinstance(key, str) else self.key
        super().__init__(f"cascache {op}({named}){detail}")


class OpError(_KeyedError):
    """An operation failed because a store failed.

    Attributes:
        op: the public operation that failed, for example ``"get"``.
        keys: every logical key the operation was asked for, in order.
        key: the logical key; for a batch operation, a bounded text naming the first keys
            and how many more there are (:func:`describe_keys`), the same text as in the
            message.
        cause: the underlying exception (also chained as ``__cause__``).
    """

    def __init__(self, op: str, key: str | Sequence[str], cause: BaseException) -> None:
        super().__init__(op, key, f" failed: {describe_error(cause)}")
        self.cause = cause
        self.__cause__ = cause

    def __reduce__(self) -> tuple[object, ...]:
        # Exceptions pickle as ``type(*args)``, and args is the message alone: without
        # this, an error raised in a process pool's worker breaks the pool.
        return type(self), (self.op, self._given, self.cause), self.__dict__


class EncodeError(OpError):
    """The codec refused a value the cache was asked to store: nothing was written.

    An :class:`OpError` (code that catches those keeps working) whose ``cause`` is the
    codec's error, so a fill can tell a value its codec cannot store from a store that
    failed.
    """


class ClosedError(_KeyedError):
    """An operation was called on a cache after ``close()``.

    Attributes:
        op: the operation that was refused.
        keys: the logical keys it was given, in order.
        key: the logical key, or for a batch a bounded text as in :class:`OpError`.
    """

    def __init__(self, op: str, key: str | Sequence[str]) -> None:
        super().__init__(op, key, ": the cache is closed")

    def __reduce__(self) -> tuple[object, ...]:
        return type(self), (self.op, self._given), self.__dict__


class InvalidateError(CascacheError):
    """``invalidate`` could not advance the key's version, so older snapshots may still win.

    The caller must treat the invalidation as not done (retry it). ``delete_error`` is set
    when the value delete failed too; a delete failure alone is not an error because the
    advanced version already makes the old entry unservable.

    Attributes:
        op: ``"invalidate"``.
        key: the logical key; ``keys`` is ``(key,)``.
        cause: the advance failure (also ``advance_error`` and ``__cause__``).
        delete_error: the delete failure, or ``None``.
    """

    def __init__(
        self,
        key: str,
        advance_error: BaseException,
        delete_error: BaseException | None = None,
    ) -> None:
        detail = f"advance failed: {describe_error(advance_error)}"
        if delete_error is not None:
            detail += f"; delete failed: {describe_error(delete_error)}"
        super().__init__(f"cascache invalidate({_quoted(key)}) failed: {detail}")
        self.op = "invalidate"
        self.key = key
        self.keys: tuple[str, ...] = (key,)
        self.cause = advance_error
        self.advance_error = advance_error
        self.delete_error = delete_error
        self.__cause__ = advance_error

    def __reduce__(self) -> tuple[object, ...]:
        return type(self), (self.key, self.advance_error, self.delete_error), self.__dict__


SHOWN_KEYS = 3
"""How many keys of a batch an error message or a hook event names before "and N more"."""
SHOWN_CHARS = 60
"""How many characters of one key's ``repr`` a message shows (keys can be kilobytes)."""


def describe_keys(keys: Sequence[str]) -> str:
    """A bounded, unambiguous text for the keys of a batch operation: the ``repr`` of the
    first :data:`SHOWN_KEYS` (each cut to :data:`SHOWN_CHARS`) and how many more there
    are, for example ``'a', 'b,c', 'd' and 97 more``. Quoting keeps a comma inside a key
    apart from the commas between keys."""
    shown = ", ".join(_quoted(key) for key in keys[:SHOWN_KEYS])
    more = len(keys) - SHOWN_KEYS
    return f"{shown} and {more} more" if more > 0 else shown


def describe_error(error: BaseException) -> str:
    """``Type: message`` of an exception, with its message as the library wrote it.

    ``repr`` is not used: some exceptions (redis-py's connection errors) build their text
    in ``__str__`` and show none of it in ``repr``.
    """
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _quoted(key: str) -> str:
    text = repr(key)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 4] + "...'"
