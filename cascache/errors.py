"""Typed errors. Every error raised by an operation names the operation and the key."""

from __future__ import annotations


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


class OpError(CascacheError):
    """An operation failed because a store failed.

    Attributes:
        op: the public operation that failed, for example ``"get"``.
        key: the logical key (for batch operations, the keys joined by ``","``).
        cause: the underlying exception (also chained as ``__cause__``).
    """

    def __init__(self, op: str, key: str, cause: BaseException) -> None:
        super().__init__(f"cascache {op}({key!r}) failed: {cause!r}")
        self.op = op
        self.key = key
        self.cause = cause
        self.__cause__ = cause


class InvalidateError(CascacheError):
    """``invalidate`` could not advance the key's version, so older snapshots may still win.

    The caller must treat the invalidation as not done (retry it). ``delete_error`` is set
    when the value delete failed too; a delete failure alone is not an error because the
    advanced version already makes the old entry unservable.
    """

    def __init__(
        self,
        key: str,
        advance_error: BaseException,
        delete_error: BaseException | None = None,
    ) -> None:
        detail = f"advance failed: {advance_error!r}"
        if delete_error is not None:
            detail += f"; delete failed: {delete_error!r}"
        super().__init__(f"cascache invalidate({key!r}) failed: {detail}")
        self.op = "invalidate"
        self.key = key
        self.advance_error = advance_error
        self.delete_error = delete_error
        self.__cause__ = advance_error
