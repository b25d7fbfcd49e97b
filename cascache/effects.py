"""Effects: the one unit of interaction between the protocol core and a store.

Every public operation is written once, as a generator that yields :class:`Effect`
objects and is sent back their results (or has their exceptions thrown into it). One
effect is one atomic interaction with one store: a provider get/set/add/delete, a version
snapshot/advance, one Redis command, pipeline or Lua script, or the caller's own load
from the source of truth.

Drivers decide *when* an effect runs. :func:`drive` runs each one at once (the sync API);
:func:`adrive` runs each one at once and awaits what it returns (the asyncio API);
:class:`Process` runs one effect per :meth:`Process.step`, so a test can interleave any
number of operations in an order it chooses, without threads or sleeps, and inject a
failure or an ambiguous outcome into any single effect.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Awaitable, Callable, Generator
from typing import Any, Generic, TypeVar, cast

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
T = TypeVar("T")


class Effect(Generic[R_co]):
    """One atomic interaction with one store, not yet performed.

    Attributes:
        target: which store it touches: ``"values"``, ``"versions"``, ``"redis"``
            (one server-side step over both), ``"source"`` (the caller's loader) or
            ``"flight"`` (waiting for another caller's load of the key to land).
        op: the store operation, for example ``"get"`` or ``"advance"``.
        keys: the storage keys it touches (for traces and fault injection).
        run: performs it and returns its result.

    Built with ``keys`` either as a tuple or as a function returning it: storage names
    are derived from a key by hashing, which an in-process store reading by key never
    needs, so a single-key effect names its keys only when someone looks.

    A plain slotted class rather than a frozen dataclass: every operation builds one per
    store interaction, and a frozen dataclass's constructor costs three times as much.
    Nothing changes an effect after it is built.
    """

    __slots__ = ("_keys", "op", "ready", "run", "target")

    def __init__(
        self,
        target: str,
        op: str,
        keys: tuple[str, ...] | Callable[[], tuple[str, ...]],
        run: Callable[[], R_co],
        ready: Callable[[], bool] | None = None,
    ) -> None:
        self.target = target
        self.op = op
        self._keys = keys
        self.run = run
        self.ready = ready
        """For an effect that waits on another operation (a coalesced caller waiting for
        a flight): whether it can complete now. A stepping driver must not perform it
        before; ``None``: always."""

    @property
    def keys(self) -> tuple[str, ...]:
        """The storage keys it touches."""
        keys = self._keys
        return keys if isinstance(keys, tuple) else keys()

    def __repr__(self) -> str:
        return f"Effect(target={self.target!r}, op={self.op!r}, keys={self.keys!r})"


Step = Generator[Effect[object], object, T]
"""A protocol operation in progress: yields effects, finally returns ``T``."""


def perform(effect: Effect[R]) -> Generator[Effect[object], object, R]:
    """Yield one effect from a protocol generator and return its typed result."""
    # Typed by annotation rather than ``cast``: every effect comes through here, and a
    # cast is a function call at run time. (An effect of ``R`` is an effect of object.)
    result: Any = yield effect
    typed: R = result
    return typed


class _Stopped(Exception):
    """Carries a ``StopIteration`` that an effect raised (a loader, say) through the
    protocol's generators, where PEP 479 would turn it into ``RuntimeError``."""

    def __init__(self, stop: StopIteration) -> None:
        super().__init__(stop)
        self.stop = stop


def _carried(exc: Exception) -> Exception:
    return _Stopped(exc) if isinstance(exc, StopIteration) else exc


def _uncarried(exc: BaseException) -> BaseException:
    return exc.stop if isinstance(exc, _Stopped) else exc


def drive(step: Step[T]) -> T:
    """Run a protocol operation to completion, performing every effect immediately."""
    try:
        effect = next(step)
        while True:
            try:
                result = effect.run()
            except Exception as exc:
                effect = step.throw(_carried(exc))
            except BaseException as exc:
                # KeyboardInterrupt in a loader, say: into the operation too, as ``adrive``
                # does, so its cleanup (landing a flight) runs now, not whenever the
                # generator is collected. No handler in the protocol catches it.
                effect = step.throw(exc)
            else:
                effect = step.send(result)
    except StopIteration as stop:
        # Annotated, not cast: a cast is a call on every operation's path.
        value: T = stop.value
        return value
    except _Stopped as carried:
        # The effect's own exception, as the caller would have seen it without us.
        raise carried.stop from None


async def adrive(step: Step[T]) -> T:
    """:func:`drive` for asyncio: run each effect at once and await what it returns when
    that is awaitable (an async store's call, a coroutine loader), one effect at a time.

    Cancellation is a fault like any other, with the outcome of the effect in flight
    unknown: ``CancelledError`` is thrown into the operation at that effect, as the
    model's ``cancel`` fault does, and propagates to the caller.
    """
    try:
        effect = next(step)
        while True:
            try:
                result = effect.run()
                if inspect.isawaitable(result):
                    result = await result
            except Exception as exc:
                effect = step.throw(_carried(exc))
            except BaseException as exc:
                # CancelledError (or KeyboardInterrupt) goes into the operation exactly as
                # the model's cancel fault throws it; no handler in the protocol catches
                # it, so it comes straight back out and nothing after this effect runs.
                effect = step.throw(exc)
            else:
                effect = step.send(result)
    except StopIteration as stop:
        value: T = stop.value
        return value
    except _Stopped as carried:
        raise carried.stop from None


class Process(Generic[T]):
    """An operation driven one effect at a time, for interleaving tests and the model.

    ``pending`` is the effect :meth:`step` will perform next (``None`` once done). After
    the operation finishes, ``done`` is true and either ``result`` or ``error`` is set.

    ``step(late=True)`` performs the pending effect but keeps its reply on the way: the
    operation runs on only at the next :meth:`step`, so other operations can take effect
    between an effect and the code after it (a slow reply, or a loader that returns a
    while after reading the source). ``replying`` says a reply is on its way.

    ``settle``: completes what an effect returns when that is awaitable (an asyncio
    store's call), for example an event loop's ``run_until_complete``, so an asyncio
    store's effects are stepped one at a time like any other.
    """

    def __init__(
        self, step: Step[T], settle: Callable[[Awaitable[object]], object] | None = None
    ) -> None:
        self._step = step
        self._settle = settle
        self.pending: Effect[object] | None = None
        self.done = False
        self.error: BaseException | None = None
        self._result: T | None = None
        self._reply: tuple[object, bool] | None = None
        self._advance(lambda: next(self._step))

    @property
    def replying(self) -> bool:
        """Whether ``pending`` has been performed and its reply not yet handed over."""
        return self._reply is not None

    @property
    def result(self) -> T:
        """The operation's return value; raises if it failed or is still running."""
        if not self.done:
            raise RuntimeError("the operation is still running")
        if self.error is not None:
            raise self.error
        return cast(T, self._result)

    def step(
        self, fail: BaseException | None = None, applied: bool = False, late: bool = False
    ) -> object:
        """Perform the pending effect, run the operation up to its next effect, and return
        what the operation was handed: the effect's result or the exception it saw.

        With ``fail``, the operation sees ``fail`` raised by the effect instead of its
        result; ``applied`` says whether the effect took place anyway (an ambiguous
        outcome, like a timeout after the server applied the command).

        With ``late``, the effect is performed now and its result (or exception) is
        returned, but the operation is handed it only at the next ``step``, which performs
        nothing (with ``fail``, that step hands over ``fail`` instead: the reply was lost).
        """
        effect = self.pending
        if effect is None:
            raise RuntimeError("the operation has no pending effect")
        reply = self._reply
        if reply is not None:
            if late:
                raise RuntimeError("the pending effect was performed; its reply is on its way")
            self._reply = None
            return self._hand(*reply) if fail is None else self._throw(fail)
        if fail is None:
            try:
                result = self._perform(effect)
            except Exception as exc:
                if late:
                    self._reply = (exc, True)
                    return exc
                return self._hand(exc, True)
            if late:
                self._reply = (result, False)
                return result
            return self._hand(result, False)
        if late:
            raise ValueError("a failed effect has no reply to hand over late")
        if applied:
            # The caller sees ``fail`` either way; whatever the effect raised is lost, as a
            # reply lost on the wire would be.
            with contextlib.suppress(Exception):
                self._perform(effect)
        return self._throw(fail)

    def _hand(self, reply: object, raised: bool) -> object:
        """Resume the operation with the effect's result, or its exception if ``raised``."""
        if raised:
            assert isinstance(reply, Exception)
            self._advance(lambda: self._step.throw(_carried(reply)))
        else:
            self._advance(lambda: self._step.send(reply))
        return reply

    def _throw(self, fail: BaseException) -> BaseException:
        """Resume the operation with ``fail`` raised where its reply was awaited."""
        self._advance(lambda: self._step.throw(fail))
        return fail

    def _perform(self, effect: Effect[object]) -> object:
        result = effect.run()
        if self._settle is not None and inspect.isawaitable(result):
            return self._settle(result)
        return result

    def _advance(self, resume: Callable[[], Effect[object]]) -> None:
        try:
            self.pending = resume()
        except StopIteration as stop:
            self.pending = None
            self.done = True
            self._result = stop.value
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            # Exception, or a CancelledError thrown in by ``step`` (cancellation is a
            # fault the model injects): either way the operation ended with it.
            self.pending = None
            self.done = True
            self.error = _uncarried(exc)
