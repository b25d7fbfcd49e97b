"""Effects and their drivers: ``drive`` (run at once) and ``Process`` (one effect per step)."""

from __future__ import annotations

import pytest

from cascache.effects import Effect, Process, Step, drive, perform


class Boom(Exception):
    pass


class Store:
    """A tiny store whose every operation is logged, so tests see what actually ran."""

    def __init__(self) -> None:
        self.data: dict[str, int] = {}
        self.log: list[str] = []

    def put(self, key: str, value: int) -> Effect[None]:
        def run() -> None:
            self.log.append(f"put {key}={value}")
            self.data[key] = value

        return Effect("values", "put", (key,), run)

    def get(self, key: str) -> Effect[int | None]:
        def run() -> int | None:
            self.log.append(f"get {key}")
            return self.data.get(key)

        return Effect("values", "get", (key,), run)

    def broken(self, key: str) -> Effect[int]:
        def run() -> int:
            self.log.append(f"broken {key}")
            raise Boom(key)

        return Effect("values", "broken", (key,), run)


def copy(store: Store, src: str, dst: str) -> Step[int | None]:
    """get src, put dst, return the value copied."""
    value = yield from perform(store.get(src))
    if value is not None:
        yield from perform(store.put(dst, value))
    return value


def tolerant(store: Store) -> Step[str]:
    """Catches a failing effect and carries on."""
    try:
        yield from perform(store.broken("x"))
    except Boom as exc:
        yield from perform(store.put("recovered", 1))
        return f"caught {exc}"
    return "no error"


def no_effects() -> Step[int]:
    return 42
    yield  # pragma: no cover - makes this a generator


def fails_at_once() -> Step[int]:
    raise Boom("before any effect")
    yield  # pragma: no cover


# -- drive ------------------------------------------------------------------------------------


def test_drive_runs_effects_in_order_and_returns() -> None:
    store = Store()
    store.data["a"] = 7
    assert drive(copy(store, "a", "b")) == 7
    assert store.log == ["get a", "put b=7"]
    assert store.data["b"] == 7


def test_drive_sends_results_back() -> None:
    store = Store()
    assert drive(copy(store, "missing", "b")) is None
    assert store.log == ["get missing"]
    assert "b" not in store.data


def test_drive_throws_effect_errors_into_the_operation() -> None:
    store = Store()
    assert drive(tolerant(store)) == "caught x"
    assert store.log == ["broken x", "put recovered=1"]


def test_drive_propagates_uncaught_errors() -> None:
    store = Store()

    def op() -> Step[int]:
        yield from perform(store.broken("y"))
        yield from perform(store.put("never", 1))
        return 1

    with pytest.raises(Boom, match="y"):
        drive(op())
    assert store.log == ["broken y"]


def test_drive_without_effects() -> None:
    assert drive(no_effects()) == 42
    with pytest.raises(Boom):
        drive(fails_at_once())


def test_effect_fields() -> None:
    store = Store()
    effect = store.get("k")
    assert (effect.target, effect.op, effect.keys) == ("values", "get", ("k",))
    assert repr(effect) == "Effect(target='values', op='get', keys=('k',))"
    assert effect.run() is None and store.log == ["get k"]


# -- Process ----------------------------------------------------------------------------------


def test_process_runs_nothing_until_stepped() -> None:
    store = Store()
    store.data["a"] = 3
    process = Process(copy(store, "a", "b"))
    assert store.log == []
    assert not process.done
    assert process.pending is not None
    assert (process.pending.op, process.pending.keys) == ("get", ("a",))


def test_process_steps_one_effect_at_a_time() -> None:
    store = Store()
    store.data["a"] = 3
    process = Process(copy(store, "a", "b"))
    assert process.step() == 3
    assert store.log == ["get a"]
    assert process.pending is not None
    assert process.pending.op == "put"
    assert not process.done
    assert process.step() is None
    assert store.log == ["get a", "put b=3"]
    assert process.done
    assert process.pending is None
    assert process.error is None
    assert process.result == 3


def test_interleaving_two_processes() -> None:
    store = Store()
    store.data["a"] = 1
    first = Process(copy(store, "a", "b"))
    second = Process(copy(store, "b", "c"))
    first.step()  # get a
    second.step()  # get b: not there yet
    first.step()  # put b
    assert second.done
    assert second.result is None
    assert first.result == 1
    assert store.log == ["get a", "get b", "put b=1"]


def test_step_fail_not_applied() -> None:
    store = Store()
    store.data["a"] = 5
    process = Process(copy(store, "a", "b"))
    process.step()
    boom = Boom("timeout")
    assert process.step(fail=boom) is boom
    assert store.log == ["get a"]  # the put never happened
    assert "b" not in store.data
    assert process.done
    assert process.error is boom
    with pytest.raises(Boom, match="timeout"):
        process.result  # noqa: B018


def test_step_fail_applied() -> None:
    store = Store()
    store.data["a"] = 5
    process = Process(copy(store, "a", "b"))
    process.step()
    boom = Boom("reply lost")
    assert process.step(fail=boom, applied=True) is boom
    # The side effect happened, but the operation saw the error.
    assert store.log == ["get a", "put b=5"]
    assert store.data["b"] == 5
    assert process.error is boom


def test_step_fail_can_be_caught_by_the_operation() -> None:
    store = Store()
    process = Process(tolerant(store))
    boom = Boom("injected")
    process.step(fail=boom)
    assert store.log == []  # the broken effect was not run at all
    process.step()
    assert process.result == "caught injected"
    assert store.log == ["put recovered=1"]


def test_step_fail_applied_swallows_the_effects_own_error() -> None:
    store = Store()
    process = Process(tolerant(store))
    injected = Boom("injected")
    process.step(fail=injected, applied=True)
    process.step()
    assert process.result == "caught injected"
    assert store.log == ["broken x", "put recovered=1"]


def test_step_returns_the_effects_own_error() -> None:
    store = Store()
    process = Process(tolerant(store))
    seen = process.step()
    assert isinstance(seen, Boom)
    assert str(seen) == "x"
    process.step()
    assert process.result == "caught x"


def test_a_late_reply_is_handed_over_at_the_next_step() -> None:
    store = Store()
    store.data["a"] = 3
    process = Process(copy(store, "a", "b"))
    assert not process.replying
    assert process.step(late=True) == 3
    # Performed, and the operation has not run on: its effect is still the pending one.
    assert store.log == ["get a"]
    assert process.replying
    assert process.pending is not None and process.pending.op == "get"
    store.data["a"] = 4  # what happens meanwhile does not change the reply on its way
    assert process.step() == 3
    assert store.log == ["get a"]  # handing over the reply performs nothing
    assert not process.replying
    assert process.pending is not None and process.pending.op == "put"
    process.step()
    assert process.result == 3
    assert store.log == ["get a", "put b=3"]


def test_a_late_error_is_thrown_into_the_operation_at_the_next_step() -> None:
    store = Store()
    process = Process(tolerant(store))
    seen = process.step(late=True)
    assert isinstance(seen, Boom) and process.replying
    assert store.log == ["broken x"]
    assert process.step() is seen
    process.step()
    assert process.result == "caught x"
    assert store.log == ["broken x", "put recovered=1"]


def test_a_late_reply_can_be_lost() -> None:
    store = Store()
    store.data["a"] = 5
    process = Process(copy(store, "a", "b"))
    process.step()
    process.step(late=True)
    assert store.data["b"] == 5
    boom = Boom("reply lost")
    assert process.step(fail=boom) is boom
    assert process.error is boom
    assert store.log == ["get a", "put b=5"]  # performed once, and not again


def test_a_reply_on_its_way_cannot_be_performed_again_or_failed_late() -> None:
    process = Process(copy(Store(), "a", "b"))
    process.step(late=True)
    with pytest.raises(RuntimeError, match="reply is on its way"):
        process.step(late=True)
    other = Process(copy(Store(), "a", "b"))
    with pytest.raises(ValueError, match="no reply to hand over late"):
        other.step(fail=Boom("x"), late=True)


def test_result_while_running_raises() -> None:
    process = Process(copy(Store(), "a", "b"))
    with pytest.raises(RuntimeError, match="still running"):
        process.result  # noqa: B018


def test_stepping_a_done_process_raises() -> None:
    process = Process(copy(Store(), "a", "b"))
    process.step()
    assert process.done
    with pytest.raises(RuntimeError, match="no pending effect"):
        process.step()
    with pytest.raises(RuntimeError, match="no pending effect"):
        process.step(fail=Boom("x"))


def test_process_without_effects() -> None:
    process = Process(no_effects())
    assert process.done
    assert process.result == 42
    failed = Process(fails_at_once())
    assert failed.done
    assert isinstance(failed.error, Boom)
    with pytest.raises(Boom):
        failed.result  # noqa: B018


def test_drive_and_process_agree() -> None:
    driven = Store()
    driven.data["a"] = 9
    stepped = Store()
    stepped.data["a"] = 9
    result = drive(copy(driven, "a", "b"))
    process = Process(copy(stepped, "a", "b"))
    while not process.done:
        process.step()
    assert process.result == result
    assert stepped.log == driven.log
    assert stepped.data == driven.data


def test_effect_keys_may_be_named_only_when_looked_at() -> None:
    asked: list[int] = []

    def keys() -> tuple[str, ...]:
        asked.append(1)
        return ("v", "g")

    effect = Effect("redis", "read", keys, lambda: None)
    assert asked == []
    assert effect.keys == ("v", "g") and len(asked) == 1
    assert repr(effect) == "Effect(target='redis', op='read', keys=('v', 'g'))"


def test_a_cancellation_thrown_in_by_step_ends_the_operation_with_it() -> None:
    import asyncio

    def op() -> Step[str]:
        try:
            yield Effect("values", "get", ("k",), lambda: None)
        except Exception:  # the protocol's handlers never see a cancellation
            return "handled"
        return "not reached"

    process = Process(op())
    seen = process.step(asyncio.CancelledError("cancelled"), applied=True)
    assert isinstance(seen, asyncio.CancelledError)
    assert process.done and isinstance(process.error, asyncio.CancelledError)
    with pytest.raises(asyncio.CancelledError):
        _ = process.result


def test_process_settles_awaitable_effects_one_at_a_time() -> None:
    import asyncio

    loop = asyncio.new_event_loop()
    ran: list[str] = []

    async def call(name: str) -> str:
        await asyncio.sleep(0)
        ran.append(name)
        return name.upper()

    def op() -> Step[list[object]]:
        first = yield Effect("values", "get", ("a",), lambda: call("a"))
        second = yield Effect("values", "get", ("b",), lambda: call("b"))
        return [first, second]

    try:
        process = Process(op(), loop.run_until_complete)
        assert process.step() == "A" and ran == ["a"]
        # Applied, reply lost: the call completes, the operation sees the failure.
        seen = process.step(Boom("lost"), applied=True)
        assert isinstance(seen, Boom) and ran == ["a", "b"] and process.done
    finally:
        loop.close()
