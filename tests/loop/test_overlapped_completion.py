"""Overlapped completion on both loops: immediate vs pending, routines, events, reuse (SPEC S5.1-S5.9).

Every test here runs twice, on the default asyncio loop and on uvloop (tests/conftest.py), and
fails if the loop's exception handler fired, unless the test takes ``loop_errors`` and checks it.
Real sockets throughout: an AF_UNIX socketpair whose peer does not read is the deterministic way
to make a send pend (nothing moves until the test reads).
"""

from __future__ import annotations

import asyncio
import gc
import socket
import sys
import threading
import weakref
from collections.abc import Callable, Generator, Iterator
from typing import Any, cast

import pytest

from tests.helpers import fill_socket, pattern, read_exactly, udp_pair
from wsasend import (
    MSG_PARTIAL,
    WSAError,
    WSAErrorCode,
    WSAEvent,
    WSAOverlapped,
    set_max_pending,
    wsa_send,
)
from wsasend._sockutil import IOVSEND_MODULE

# Hang guard only: nothing here should take more than a fraction of it.
GUARD = 30.0

Record = tuple[int, int, WSAOverlapped, int]


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def full_pair() -> tuple[socket.socket, socket.socket, int]:
    """A socketpair whose sending side is full: ``(a, b, bytes already queued in it)``."""
    a, b = socket.socketpair()
    return a, b, fill_socket(a)


async def drain_and_check(b: socket.socket, filled: int, expected: bytes) -> None:
    """Read the filler, then exactly ``expected``; and check nothing more follows right now."""
    got = await read_exactly(b, filled + len(expected))
    assert got[filled:] == expected
    with pytest.raises(BlockingIOError):
        b.recv(1)


# -- S5.1: immediate vs pending ------------------------------------------------------------------


async def test_WSAOverlapped_completes_immediately_on_idle_socket(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    loop = asyncio.get_running_loop()
    data = [b"head:", bytearray(b"body"), memoryview(b":tail")]
    ov = wsa_send(a, data)
    # S5.1: the kernel took every byte inside the call: completed, with the count, no writer.
    assert ov.completed_immediately
    assert not ov.pending
    assert ov.transferred == 14
    assert ov.error == 0
    assert ov.result() == 14
    assert ov.done()
    assert not loop.remove_writer(a)  # no writer was ever registered for an immediate send
    assert await ov == 14
    assert await read_exactly(b, 14) == b"head:body:tail"


def _returns_at_once(value: int) -> Generator[Any, None, int]:
    """What awaiting a completed send did before issue 11 made it a C iterator: the reference."""
    return value
    yield  # pragma: no cover - makes this a generator


def _steps(make: Callable[[], Generator[Any, Any, int]]) -> list[object]:
    """What each way of driving an awaitable's iterator does, as (outcome, value) records."""
    outcomes: list[object] = []

    def record(step: Callable[[], object]) -> None:
        try:
            outcomes.append(("yielded", step()))
        except StopIteration as stop:
            outcomes.append(("returned", stop.value, stop.args))
        except BaseException as exc:  # (the exception is the outcome compared)
            chain = []
            tb = exc.__traceback__
            while tb is not None:
                chain.append(tb)
                tb = tb.tb_next
            given = any(t is thrown_tb for t in chain)  # throw()'s traceback kept (its third argument)
            outcomes.append(("raised", type(exc), str(exc), type(exc.__cause__), given))

    try:
        raise ValueError("for its traceback")
    except ValueError as caught:
        thrown_tb = caught.__traceback__

    it = make()
    record(lambda: next(it))
    record(lambda: next(it))  # exhausted: StopIteration with no value
    record(lambda: it.send(None))
    it = make()
    record(lambda: it.send(None))
    it = make()
    record(lambda: it.send(1))  # a just-started generator refuses a value
    record(lambda: it.send(None))
    it = make()
    record(lambda: it.throw(KeyError("k")))  # raises what was thrown, then is done
    record(lambda: next(it))
    it = make()
    record(lambda: cast(Any, it).throw(123))  # not an exception: TypeError, and it runs on
    record(lambda: next(it))
    # Bad arguments are TypeErrors that leave it as it was (review, stop 51: the C iterator
    # raised the exception and dropped its value):
    it = make()
    record(lambda: cast(Any, it).throw(KeyError("a"), "separate value"))
    record(lambda: next(it))
    it = make()
    record(lambda: cast(Any, it).throw(KeyError, None, 5))  # not a traceback
    record(lambda: next(it))
    it = make()
    record(lambda: cast(Any, it).throw(KeyError, "v", thrown_tb))
    it = make()
    record(lambda: cast(Any, it).throw(KeyError, (1, 2)))
    # A StopIteration thrown in: PEP 479's RuntimeError on 3.11, where a just-started
    # generator's frame runs to raise it; raised as it is on 3.12+.
    it = make()
    record(lambda: it.throw(StopIteration(5)))
    record(lambda: next(it))
    it = make()
    it.close()
    record(lambda: next(it))
    return outcomes


async def test_await_of_a_completed_send_returns_its_count_as_a_generator_would(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """S5.3: awaiting a send that completed inside ``wsa_send`` gives its count at once, with
    no loop iteration, by ``await``, a Task or ``yield from``; its ``__await__`` iterator steps
    exactly like a generator that returns the count (the compiled build's is C, issue 11)."""
    a, b = pair
    loop = asyncio.get_running_loop()
    ticks = 0

    def tick() -> None:
        nonlocal ticks
        ticks += 1

    loop.call_soon(tick)
    ovs = []
    for n in (1, 300, 10_000):
        # (Awaited one by one: a send posted right after another waits for the batch, S5.1.)
        ov = wsa_send(a, [b"x" * n])
        assert ov.completed_immediately
        assert await ov == n
        ovs.append(ov)
    assert await ovs[0] == 1  # awaited again: the same count
    assert ticks == 0  # no await above suspended
    assert _steps(ovs[1].__await__) == _steps(lambda: _returns_at_once(300))
    if IOVSEND_MODULE is not None:
        # The compiled build awaits a completed send through the C iterator on every version
        # (3.12+ since stop 47: its StopIteration is kept and raised again, see _iovsend.c).
        assert type(ovs[1].__await__()) is type(IOVSEND_MODULE.done(0))
    assert await asyncio.gather(*ovs, asyncio.ensure_future(ovs[2])) == [1, 300, 10_000, 10_000]
    assert ticks == 1
    assert await read_exactly(b, 10_301) == b"x" * 10_301


@pytest.mark.skipif(IOVSEND_MODULE is None, reason="the C iterator is the compiled build's")
@pytest.mark.parametrize("value", [0, 300, 2**70, None, (1, 2), KeyError("v")])
def test_done_iterator_steps_as_a_generator_returning_its_value(value: Any) -> None:
    """``_iovsend.done`` on every Python version (3.11 awaits through its am_send, later ones
    would through its tp_iternext): a tuple or an exception comes back as the value, not as
    StopIteration's arguments, as from a generator."""
    assert _steps(lambda: IOVSEND_MODULE.done(value)) == _steps(lambda: _returns_at_once(value))

    async def await_it() -> object:
        return await _Awaitable(value)

    assert asyncio.run(await_it()) == value


@pytest.mark.skipif(IOVSEND_MODULE is None, reason="the C iterator is the compiled build's")
def test_done_iterator_never_changes_a_stop_iteration_someone_kept() -> None:
    """On Python 3.12+ ``done`` raises one kept StopIteration again while nobody else holds it
    (issue 11: made anew each time it cost more than a generator). One that a caller caught and
    kept, or that went through a frame, keeps its own value and arguments: the next
    iterations raise another, each with theirs."""
    assert IOVSEND_MODULE is not None
    kept: list[StopIteration] = []
    for value in (5, 7, 2**70, (1, 2), 9):
        try:
            next(IOVSEND_MODULE.done(value))
        except StopIteration as stop:
            kept.append(stop)
    assert [(stop.value, stop.args) for stop in kept] == [
        (5, (5,)),
        (7, (7,)),
        (2**70, (2**70,)),
        ((1, 2), ((1, 2),)),
        (9, (9,)),
    ]
    assert len({id(stop) for stop in kept}) == len(kept)
    # Dropped at once (list() takes StopIteration as the end), each step finds the value it
    # was given; a value given before is not seen again.
    for value in range(50):
        assert list(IOVSEND_MODULE.done(value)) == []
        with pytest.raises(StopIteration) as info:
            IOVSEND_MODULE.done(value).send(None)
        assert (info.value.value, info.value.args) == (value, (value,))
        assert info.value.__context__ is None


@pytest.mark.skipif(IOVSEND_MODULE is None, reason="the C iterator is the compiled build's")
def test_a_cycle_through_a_done_iterators_value_is_collected() -> None:
    """A value that refers back to its ``done`` iterator (an object holding it, an exception
    whose traceback's frame holds it) is freed by the collector, as a generator's would be
    (review, stop 51: the iterator was invisible to the collector and such cycles were never
    freed). An int, the value of every ``await`` of a send, needs none of it."""
    assert IOVSEND_MODULE is not None
    done = IOVSEND_MODULE.done

    class Box:
        it: object = None

    box = Box()
    box.it = done(box)
    boxed = weakref.ref(box)
    del box

    class RaisedError(Exception):
        pass

    def failing() -> BaseException:
        it = done(None)
        try:
            raise RaisedError("r")
        except RaisedError as exc:
            it = done(exc)  # the frame's local, in the exception's traceback: a cycle
            assert it is not None
            return exc

    error = failing()
    raised = weakref.ref(error)
    del error
    gc.collect()
    assert boxed() is None
    assert raised() is None
    assert type(done(5)) is not type(done(Box()))  # (an int keeps the collector out of it)


@pytest.mark.skipif(IOVSEND_MODULE is None, reason="the C iterator is the compiled build's")
def test_done_iterator_value_whose_release_steps_another_one() -> None:
    """Raising the kept StopIteration again lets go of the value it carried before; if that
    runs code (a ``__del__``) which steps another ``done``, that one gets its own StopIteration
    and this one still carries its own value."""
    assert IOVSEND_MODULE is not None
    done = IOVSEND_MODULE.done
    inner: list[object] = []

    class Dropped:
        def __del__(self) -> None:
            try:
                next(done(2))
            except StopIteration as stop:
                inner.append((stop.value, stop.args))

    # (list() ends at the StopIteration and drops it: kept, carrying the Dropped instance.)
    assert list(done(Dropped())) == []
    with pytest.raises(StopIteration) as info:
        done(7).send(None)
    assert (info.value.value, info.value.args) == (7, (7,))
    assert inner == [(2, (2,))]


async def test_awaits_of_completed_sends_under_a_tracer_each_return_their_own_count(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """A tracer (a debugger, ``sys.settrace``) sees the StopIteration of each ``await`` of a
    completed send and may keep it: a kept one is never reused for a later await, so each
    keeps its own count, and each await returns its own (S5.3)."""
    a, b = pair
    seen: list[BaseException] = []

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        if event == "exception" and arg[0] is StopIteration:
            seen.append(arg[1])
        return tracer

    async def traced() -> list[int]:
        counts = []
        for n in (1, 2, 3, 4, 5):
            ov = wsa_send(a, [b"t" * n])
            assert ov.completed_immediately
            counts.append(await ov)
            await asyncio.sleep(0)  # (past the batch window: the next send is tried at once)
        return counts

    old = sys.gettrace()
    sys.settrace(tracer)
    try:
        counts = await traced()
    finally:
        sys.settrace(old)
    assert counts == [1, 2, 3, 4, 5]
    stops = [stop for stop in seen if isinstance(stop, StopIteration) and stop.value in counts]
    if IOVSEND_MODULE is not None:
        # (The compiled build's C iterator raises one per await under a tracer, on 3.11 too.)
        assert [stop.value for stop in stops] == [1, 2, 3, 4, 5]
    assert all(stop.args == (stop.value,) for stop in stops)
    assert len({id(stop) for stop in stops}) == len(stops)
    assert await read_exactly(b, 15) == b"t" * 15


class _HandledError(Exception):
    """What the except block of the test below handles."""


async def test_await_of_a_completed_send_in_an_except_block_keeps_nothing_alive(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """An ``await`` of a completed send inside an ``except`` block does not make the exception
    being handled anything's ``__context__``: once the block ends, nothing of ours keeps it
    (the StopIteration that carries the count is kept for reuse on 3.12+, see _iovsend.c)."""
    a, b = pair
    ref: weakref.ref[_HandledError] | None = None
    try:
        raise _HandledError("handled")
    except _HandledError as exc:
        ref = weakref.ref(exc)
        for n in (3, 4):
            ov = wsa_send(a, [b"h" * n])
            assert ov.completed_immediately
            assert await ov == n
            await asyncio.sleep(0)
    gc.collect()
    assert ref is not None and ref() is None
    assert await read_exactly(b, 7) == b"h" * 7


class _Awaitable:
    def __init__(self, value: object) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, None, object]:
        assert IOVSEND_MODULE is not None
        return IOVSEND_MODULE.done(self.value)  # type: ignore[no-any-return]


async def test_WSAOverlapped_pending_until_the_peer_reads() -> None:
    a, b, filled = full_pair()
    loop = asyncio.get_running_loop()
    try:
        payload = pattern(50_000, seed=3)
        ov = wsa_send(a, [payload[:10], payload[10:]])
        # S5.1: WSA_IO_PENDING: pending, not immediate, transferred not updated.
        assert ov.pending
        assert not ov.completed_immediately
        assert ov.transferred == 0
        assert not ov.done()
        # S5.8: WSAGetOverlappedResult without waiting says WSA_IO_INCOMPLETE.
        with pytest.raises(WSAError) as info:
            ov.result()
        assert info.value.winerror == WSAErrorCode.WSA_IO_INCOMPLETE
        assert "pending" in repr(ov)
        reader = asyncio.ensure_future(read_exactly(b, filled + len(payload)))
        async with asyncio.timeout(GUARD):
            n = await ov
            got = await reader
        assert n == len(payload) == ov.transferred == ov.result()
        assert not ov.pending and not ov.completed_immediately and ov.error == 0
        assert got[filled:] == payload
        # The writer was removed when the queue drained (STYLE 9).
        assert not loop.remove_writer(a)
    finally:
        a.close()
        b.close()


async def test_WSAOverlapped_transferred_not_updated_while_partly_consumed() -> None:
    a, b = socket.socketpair()
    try:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        payload = pattern(2_000_000, seed=5)
        ov = wsa_send(a, memoryview(payload))
        # The kernel took part of it at once (the buffer was empty), yet the send is pending and
        # its transferred stays 0 until it completes (S5.1: "not updated").
        assert ov.pending
        assert ov.transferred == 0
        async with asyncio.timeout(GUARD):
            got = await read_exactly(b, len(payload))
            assert await ov == len(payload)
        assert got == payload
    finally:
        a.close()
        b.close()


async def test_WSAOverlapped_zero_byte_send_completes_immediately_when_idle(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, _ = pair
    for bufs in ([], [b""], [b"", bytearray(), memoryview(b"")]):
        ov = wsa_send(a, bufs)
        assert ov.completed_immediately and ov.transferred == 0
        assert await ov == 0
        # An immediate completion opens the batch window until the next loop iteration (see
        # _engine.py); step past it so that the next post finds the engine idle again.
        await asyncio.sleep(0)


# -- S5.3: completion routines ---------------------------------------------------------------------


async def test_completion_routine_called_soon_never_inside_wsa_send(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    loop = asyncio.get_running_loop()
    calls: list[Any] = []

    def routine(error: int, transferred: int, ov: WSAOverlapped, flags: int) -> None:
        calls.append((error, transferred, ov, flags))

    ov = wsa_send(a, [b"abc", b"defg"], completion_routine=routine)
    assert ov.completed_immediately
    assert calls == []  # S5.3: never inside the wsa_send call, even for an immediate completion
    # It was scheduled with call_soon during the call: it runs before a callback scheduled now.
    loop.call_soon(calls.append, "later")
    await asyncio.sleep(0)
    assert calls == [(0, 7, ov, 0), "later"]
    assert ov.completion_routine is routine
    assert await read_exactly(b, 7) == b"abcdefg"


async def test_completion_routine_for_pending_send_gets_exact_count() -> None:
    a, b, filled = full_pair()
    try:
        calls: list[Record] = []
        done = asyncio.Event()

        def routine(error: int, transferred: int, ov: WSAOverlapped, flags: int) -> None:
            calls.append((error, transferred, ov, flags))
            done.set()

        payload = pattern(300_000)
        ov = wsa_send(a, [payload[:1], payload[1:]], completion_routine=routine)
        assert ov.pending
        reader = asyncio.ensure_future(read_exactly(b, filled + len(payload)))
        async with asyncio.timeout(GUARD):
            await done.wait()
            got = await reader
        assert calls == [(0, len(payload), ov, 0)]
        assert got[filled:] == payload
    finally:
        a.close()
        b.close()


async def test_completion_routines_never_nested_and_may_post_new_sends(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """S5.3: a routine may post; the new send's routine runs after it returns, never inside it."""
    a, b = pair
    depth = [0]
    max_depth = [0]
    order: list[int] = []
    finished = asyncio.Event()
    chain = 50

    def routine(error: int, transferred: int, ov: WSAOverlapped, flags: int) -> None:
        depth[0] += 1
        max_depth[0] = max(max_depth[0], depth[0])
        try:
            index = ov.hEvent  # with a routine, hEvent is the caller's context (seed)
            order.append(index)
            assert error == 0 and transferred == len(f"<{index}>")
            if index + 1 < chain:
                nxt = WSAOverlapped(event=index + 1)
                posted = wsa_send(a, f"<{index + 1}>".encode(), overlapped=nxt, completion_routine=routine)
                assert posted is nxt
                assert order[-1] == index  # not called inside the wsa_send made here
            else:
                finished.set()
        finally:
            depth[0] -= 1

    wsa_send(a, b"<0>", overlapped=WSAOverlapped(event=0), completion_routine=routine)
    async with asyncio.timeout(GUARD):
        await finished.wait()
    assert order == list(range(chain))
    assert max_depth[0] == 1
    expected = b"".join(f"<{i}>".encode() for i in range(chain))
    assert await read_exactly(b, len(expected)) == expected


async def test_completion_routine_exception_goes_to_handler_and_queue_keeps_going(
    loop_errors: list[dict[str, Any]],
) -> None:
    a, b, filled = full_pair()
    try:
        calls: list[int] = []
        last = asyncio.Event()

        class BoomError(Exception):
            pass

        def bad(error: int, transferred: int, ov: WSAOverlapped, flags: int) -> None:
            calls.append(transferred)
            raise BoomError("routine failed")

        def good(error: int, transferred: int, ov: WSAOverlapped, flags: int) -> None:
            calls.append(transferred)
            if transferred == 3:
                last.set()

        payloads = [pattern(100_000, 1), pattern(7, 2), pattern(200_000, 3), b"end"]
        ovs = [
            wsa_send(a, payloads[0], completion_routine=bad),
            wsa_send(a, payloads[1], completion_routine=good),
            wsa_send(a, payloads[2], completion_routine=bad),
            wsa_send(a, payloads[3], completion_routine=good),
        ]
        assert all(ov.pending for ov in ovs)
        reader = asyncio.ensure_future(read_exactly(b, filled + sum(map(len, payloads))))
        async with asyncio.timeout(GUARD):
            await last.wait()
            got = await reader
        assert calls == [len(p) for p in payloads]
        assert [ov.transferred for ov in ovs] == [len(p) for p in payloads]
        assert got[filled:] == b"".join(payloads)
        # Both exceptions reached the loop's exception handler, nothing else did.
        excs = [ctx.get("exception") for ctx in loop_errors]
        assert len(excs) == 2 and all(isinstance(e, BoomError) for e in excs), loop_errors
        # And the socket still works afterwards.
        assert await wsa_send(a, b"more") == 4
        assert await read_exactly(b, 4) == b"more"
    finally:
        a.close()
        b.close()


# -- S5.3: events ------------------------------------------------------------------------------------


async def test_event_set_without_routine_not_set_with_one() -> None:
    a, b, filled = full_pair()
    try:
        routine_calls: list[int] = []

        def routine(error: int, transferred: int, ov: WSAOverlapped, flags: int) -> None:
            routine_calls.append(transferred)

        ev_plain, ev_routine = WSAEvent(), WSAEvent()
        ov_plain = wsa_send(a, b"x" * 1000, overlapped=WSAOverlapped(event=ev_plain))
        ov_routine = wsa_send(a, b"y" * 1000, overlapped=WSAOverlapped(event=ev_routine), completion_routine=routine)
        ov_lazy = wsa_send(a, b"z" * 1000)  # no event given: one is made on first access
        assert ov_lazy.event is ov_lazy.event
        assert not ev_plain.is_set() and not ev_routine.is_set() and not ov_lazy.event.is_set()
        reader = asyncio.ensure_future(read_exactly(b, filled + 3000))
        async with asyncio.timeout(GUARD):
            assert await ev_plain.wait_async() is True
            await ov_lazy.event.wait_async()
            await ov_routine
            await asyncio.sleep(0)  # the routine is scheduled with call_soon
            await reader
        assert ev_plain.is_set() and ov_lazy.event.is_set()
        # S5.3 (seed: "the hEvent parameter is ignored"): with a routine the event is not set.
        assert not ev_routine.is_set()
        assert routine_calls == [1000]
        assert ov_plain.transferred == ov_routine.transferred == ov_lazy.transferred == 1000
    finally:
        a.close()
        b.close()


async def test_event_set_on_immediate_completion(pair: tuple[socket.socket, socket.socket]) -> None:
    a, _ = pair
    ev = WSAEvent()
    ov = wsa_send(a, b"now", overlapped=WSAOverlapped(event=ev))
    assert ov.completed_immediately
    assert ev.is_set()  # S5.3: an immediate completion sets the event too
    await asyncio.sleep(0)  # past the batch window, so that the next send is immediate too
    # An event first asked for after an immediate completion is made set.
    again = wsa_send(a, b"again")
    assert again.completed_immediately
    assert again.event.is_set()


async def test_event_made_after_a_pending_send_completed_is_set() -> None:
    """The lazily made event of a send that completed while pending must read as set (S5.3)."""
    a, b, filled = full_pair()
    try:
        ok = wsa_send(a, b"x" * 5000)
        assert ok.pending
        async with asyncio.timeout(GUARD):
            await drain_and_check(b, filled, b"x" * 5000)
            assert await ok == 5000
        assert not ok.completed_immediately
        assert ok.event.is_set()  # first access after completion
        never_posted = WSAOverlapped()
        assert not never_posted.event.is_set()
    finally:
        a.close()
        b.close()


async def test_routine_with_context_hEvent_and_event_property_refuses_it(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, _ = pair
    seen: list[object] = []

    def routine(error: int, transferred: int, ov: WSAOverlapped, flags: int) -> None:
        seen.append(ov.hEvent)

    ov = wsa_send(a, b"ctx", overlapped=WSAOverlapped(event={"conn": 7}), completion_routine=routine)
    await asyncio.sleep(0)
    assert seen == [{"conn": 7}]
    with pytest.raises(WSAError) as info:
        _ = ov.event
    assert info.value.winerror == WSAErrorCode.WSA_INVALID_HANDLE


async def test_WSAEvent_wait_async_and_thread_wait() -> None:
    ev = WSAEvent()
    assert not ev.is_set() and not ev.wait(0)
    loop = asyncio.get_running_loop()
    waiter = asyncio.ensure_future(ev.wait_async())
    in_thread = asyncio.ensure_future(asyncio.to_thread(ev.wait, GUARD))
    await asyncio.sleep(0)
    assert not waiter.done()
    # set() from another thread wakes the loop's waiter and the thread's.
    threading.Thread(target=ev.set).start()
    async with asyncio.timeout(GUARD):
        assert await waiter is True
        assert await in_thread is True
    assert ev.is_set() and ev.wait(0)
    assert await ev.wait_async() is True  # already set: at once
    ev.reset()
    assert not ev.is_set()
    # A waiter that is cancelled leaves nothing behind; a later set() still works.
    waiter = asyncio.ensure_future(ev.wait_async())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    loop.call_soon(ev.set)
    async with asyncio.timeout(GUARD):
        assert await ev.wait_async() is True
    assert WSAEvent(initial_state=True).is_set()
    assert "set" in repr(ev)


# -- S5.8: waiting from threads -------------------------------------------------------------------


async def test_WSAOverlapped_wait_from_a_thread() -> None:
    a, b, filled = full_pair()
    try:
        payload = pattern(400_000, seed=9)
        ov = wsa_send(a, payload)
        assert ov.pending
        # In the loop's own thread wait() would block the loop that must complete it: refused.
        with pytest.raises(WSAError) as info:
            ov.wait(0)
        assert info.value.winerror == WSAErrorCode.WSAEINVAL
        started = threading.Event()

        def thread_wait() -> tuple[bool, bool, int]:
            before = ov.wait(0)  # nobody reads yet: still pending, so False at once
            started.set()
            return before, ov.wait(GUARD), ov.transferred

        waiter = asyncio.ensure_future(asyncio.to_thread(thread_wait))
        async with asyncio.timeout(GUARD):
            await asyncio.to_thread(started.wait, GUARD)
            got = await read_exactly(b, filled + len(payload))
            before, completed, transferred = await waiter
        assert before is False
        assert completed is True
        assert transferred == len(payload)
        assert got[filled:] == payload
        assert ov.wait(0) is True  # completed: True at once, even in the loop's thread
    finally:
        a.close()
        b.close()


# -- S5.5: reuse ---------------------------------------------------------------------------------------


async def test_WSAOverlapped_reuse_while_pending_is_WSAEINVAL_and_sends_nothing() -> None:
    a, b, filled = full_pair()
    try:
        ov = WSAOverlapped()
        first = pattern(5000, seed=1)
        assert wsa_send(a, first, overlapped=ov) is ov
        assert ov.pending
        calls: list[int] = []
        with pytest.raises(WSAError) as info:
            wsa_send(a, b"SHOULD-NOT-APPEAR", overlapped=ov, completion_routine=lambda *args: calls.append(1))
        assert info.value.winerror == WSAErrorCode.WSAEINVAL
        assert ov.pending  # the first send is untouched
        async with asyncio.timeout(GUARD):
            reader = asyncio.ensure_future(drain_and_check(b, filled, first))
            assert await ov == len(first)
            await reader
        await asyncio.sleep(0)
        assert calls == []  # S5.2: no completion indication for a send that did not start
    finally:
        a.close()
        b.close()


async def test_WSAOverlapped_reuse_after_completion_resets_fields() -> None:
    a, b, filled = full_pair()
    try:
        ev = WSAEvent()
        ov = WSAOverlapped(event=ev)
        # First use: pending, then withdrawn: failed with WSA_OPERATION_ABORTED.
        wsa_send(a, b"never", overlapped=ov)
        assert ov.cancel() is True
        assert ov.error == WSAErrorCode.WSA_OPERATION_ABORTED and ev.is_set()
        assert isinstance(ov.exception, WSAError)
        # Second use, still queued behind nothing but a full socket: fields reset, event reset.
        payload = pattern(1000, seed=2)
        assert wsa_send(a, payload, overlapped=ov) is ov
        assert ov.pending and ov.error == 0 and ov.exception is None and ov.transferred == 0
        assert not ov.completed_immediately
        assert not ev.is_set()
        async with asyncio.timeout(GUARD):
            await drain_and_check(b, filled, payload)
            assert await ov == 1000
        assert ev.is_set() and ov.transferred == 1000 and ov.error == 0
        # Third use: immediate this time, with a routine; the routine is the only notice.
        calls: list[Record] = []
        ev.reset()
        wsa_send(a, b"12345", overlapped=ov, completion_routine=lambda *args: calls.append(args))
        assert ov.completed_immediately and ov.transferred == 5 and not ov.pending
        await asyncio.sleep(0)
        assert calls == [(0, 5, ov, 0)]
        assert not ev.is_set()
        # Fourth: no routine again; the routine of the previous post is forgotten.
        wsa_send(a, b"6", overlapped=ov)
        assert ov.completion_routine is None and ev.is_set()
        await asyncio.sleep(0)
        assert len(calls) == 1
        assert await read_exactly(b, 6) == b"123456"
    finally:
        a.close()
        b.close()


# -- S5.6: the bound on outstanding sends ---------------------------------------------------------


async def test_set_max_pending_bounds_outstanding_sends() -> None:
    a, b, filled = full_pair()
    try:
        set_max_pending(a, 4)
        payloads = [pattern(100 + i, seed=i) for i in range(4)]
        ovs = [wsa_send(a, p) for p in payloads]
        assert all(ov.pending for ov in ovs)
        routine_calls: list[int] = []
        with pytest.raises(WSAError) as info:
            wsa_send(a, b"REFUSED", completion_routine=lambda *args: routine_calls.append(1))
        assert info.value.winerror == WSAErrorCode.WSAEWOULDBLOCK
        assert info.value.bytes_sent == 0
        async with asyncio.timeout(GUARD):
            # Nothing of the refused send was queued: the peer gets exactly the four.
            await drain_and_check(b, filled, b"".join(payloads))
            assert [await ov for ov in ovs] == [len(p) for p in payloads]
        assert routine_calls == []
        # Once they completed there is room again.
        assert await wsa_send(a, b"ok") == 2
        assert await read_exactly(b, 2) == b"ok"
        with pytest.raises(WSAError) as info:
            set_max_pending(a, 0)
        assert info.value.winerror == WSAErrorCode.WSAEINVAL
    finally:
        a.close()
        b.close()


async def test_set_max_pending_counts_each_MSG_PARTIAL_piece() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        set_max_pending(a, 3)
        pieces = [wsa_send(a, b"p1", MSG_PARTIAL), wsa_send(a, b"p2", MSG_PARTIAL), wsa_send(a, b"p3", MSG_PARTIAL)]
        assert all(p.pending for p in pieces)
        with pytest.raises(WSAError) as info:
            wsa_send(a, b"end")
        assert info.value.winerror == WSAErrorCode.WSAEWOULDBLOCK
        # The open message is still intact: cancelling one piece withdraws the whole message.
        assert pieces[1].cancel() is True
        assert all(p.error == WSAErrorCode.WSA_OPERATION_ABORTED for p in pieces)
        assert await wsa_send(a, b"whole") == 5
        b.setblocking(False)
        assert b.recv(100) == b"whole"
        with pytest.raises(BlockingIOError):
            b.recv(100)
    finally:
        a.close()
        b.close()


async def test_set_max_pending_before_first_send_applies_to_the_engine() -> None:
    a, b, filled = full_pair()
    try:
        set_max_pending(a, 1)
        first = wsa_send(a, b"1")
        with pytest.raises(WSAError) as info:
            wsa_send(a, b"2")
        assert info.value.winerror == WSAErrorCode.WSAEWOULDBLOCK
        async with asyncio.timeout(GUARD):
            await drain_and_check(b, filled, b"1")
            assert await first == 1
    finally:
        a.close()
        b.close()


# -- awaiting ----------------------------------------------------------------------------------------


async def test_WSAOverlapped_awaited_by_several_tasks(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    fill = fill_socket(a)
    ov = wsa_send(a, pattern(10_000))
    waiters = [asyncio.ensure_future(_await(ov)) for _ in range(3)]
    async with asyncio.timeout(GUARD):
        await read_exactly(b, fill + 10_000)
        assert await asyncio.gather(*waiters) == [10_000] * 3


async def _await(ov: WSAOverlapped) -> int:
    return await ov


async def test_WSAOverlapped_of_a_send_that_failed_to_start_gets_no_completion_indication() -> None:
    """S5.2 (seed: "no completion indication will occur"): neither event nor routine fires."""
    a, b = socket.socketpair()
    b.close()
    try:
        calls: list[Record] = []
        ov = WSAOverlapped()
        with pytest.raises(WSAError) as info:
            wsa_send(a, b"to nobody", overlapped=ov, completion_routine=lambda *args: calls.append(args))
        assert info.value.winerror == WSAErrorCode.WSAECONNRESET
        assert not ov.pending
        ev_ov = WSAOverlapped(event=WSAEvent())
        with pytest.raises(WSAError):
            wsa_send(a, b"to nobody", overlapped=ev_ov)
        await asyncio.sleep(0)
        assert calls == []
        assert not ev_ov.event.is_set()
        plain = WSAOverlapped()
        with pytest.raises(WSAError):
            wsa_send(a, b"to nobody", overlapped=plain)
        assert not plain.event.is_set()  # made after the failure: still not signalled
    finally:
        a.close()


async def test_engine_is_per_loop_a_busy_socket_refuses_another_loop() -> None:
    """One engine per (loop, socket): another loop may take the socket over only once it is idle."""
    a, b, filled = full_pair()
    try:
        first = wsa_send(a, b"on the test's loop;")
        assert first.pending

        def other_loop() -> int:
            async def post() -> int:
                return await wsa_send(a, b"from another loop")

            return asyncio.run(post())

        with pytest.raises(WSAError) as info:
            await asyncio.to_thread(other_loop)
        assert info.value.winerror == WSAErrorCode.WSAEINPROGRESS
        async with asyncio.timeout(GUARD):
            await drain_and_check(b, filled, b"on the test's loop;")
            assert await first == 19
            # Idle now: the other loop gets its own engine and its send goes out.
            assert await asyncio.to_thread(other_loop) == 17
            assert await read_exactly(b, 17) == b"from another loop"
    finally:
        a.close()
        b.close()


async def test_WSAOverlapped_reused_after_a_thread_waited_waits_again() -> None:
    """S5.5/S5.8: a reused overlapped's wait() must not return on the previous use's signal."""
    a, b = socket.socketpair()
    try:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        loop = asyncio.get_running_loop()
        big = bytes(4_000_000)
        ov = wsa_send(a, big)
        assert ov.pending
        # A thread waits while it is pending (so its wake-up signal exists), then it completes.
        waiter = loop.run_in_executor(None, ov.wait, 30.0)
        async with asyncio.timeout(30):
            assert len(await read_exactly(b, len(big))) == len(big)
            assert await waiter
        # Reuse: nothing reads now, so the send stays pending and a short wait times out.
        wsa_send(a, big, overlapped=ov)
        assert ov.pending
        assert await loop.run_in_executor(None, ov.wait, 0.2) is False
        assert ov.pending
        reader = asyncio.ensure_future(read_exactly(b, len(big)))
        async with asyncio.timeout(30):
            assert await loop.run_in_executor(None, ov.wait, 30.0)
            assert len(await reader) == len(big)
        assert ov.transferred == len(big)
    finally:
        a.close()
        b.close()


async def test_awaiting_a_complete_send_closes_the_batch_window() -> None:
    """S5.1 and the batch window: back to back, the second send waits for the window; after an
    await of a complete send it tries the kernel at once; datagram sockets have no window."""
    a, b = socket.socketpair()
    try:
        first, second = wsa_send(a, [b"1"]), wsa_send(a, [b"2"])
        assert first.completed_immediately and second.pending  # queued behind the window
        assert await second == 1  # flushed at once by the await, still in this iteration
        third = wsa_send(a, [b"3"])
        assert third.pending  # the window is still open: `second` was not complete when awaited
        assert await third == 1
        await third  # awaiting a send that is already complete closes the window...
        fourth = wsa_send(a, [b"4"])
        assert fourth.completed_immediately  # ...so the next send tries the kernel at once
        assert await fourth == 1
        fifth = wsa_send(a, [b"5"])
        assert fifth.completed_immediately  # and awaiting the complete `fourth` kept it closed
        assert b.recv(10) == b"12345"
    finally:
        a.close()
        b.close()
    tx, rx = udp_pair()
    try:
        sends = [wsa_send(tx, [b"d", bytes([i])]) for i in range(3)]
        assert all(ov.completed_immediately for ov in sends)  # no window for messages
        assert [rx.recv(10) for _ in sends] == [b"d\x00", b"d\x01", b"d\x02"]
    finally:
        tx.close()
        rx.close()


def test_WSAEvent_is_not_a_base_class() -> None:
    """S5.9: a handle, as Winsock's WSAEVENT. The compiled build refused a subclass's instances
    (mypyc's "WSAEvent object expected" at construction) while the pure build made them, but a
    send's completion never set one (it tested the exact type), so ``wait()`` hung (adversarial
    pass). Both builds now refuse the class statement itself."""
    with pytest.raises(TypeError, match="WSAEvent cannot be subclassed"):

        class Mine(WSAEvent):
            pass
