"""Wrong reports and leaks of issue 10: items 11, 14, 16 and the WSAEINVAL messages.

- Item 11 (SPEC S7.2): ``send_completed`` reports the send that completed, even when its
  overlapped was posted again before the call ran (the classic Winsock pattern: repost from the
  completion routine with the same overlapped).
- Item 14 (S5.9): a cancelled ``WSAEvent.wait_async()`` leaves the event's waiter list.
- Item 16 (S5, S8.6): an overlapped posted through the facade (on the provider's loop) can be
  awaited from any other loop, on both loops as provider and as awaiter.
- The WSAEINVAL of ``cancel()`` from another thread and of ``wait()`` in the loop's thread say
  the real reason first, not the seed's bind/overlapped-flag text.

Each of them failed on the commit issue 10 was filed against (rates in each test's docstring).
"""

from __future__ import annotations

import asyncio
import gc
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import LOOP_FACTORIES
from tests.helpers import fill_socket, read_exactly
from tests.transport.util import drain_peer, wrap
from tests.winsock.conftest import provider  # noqa: F401 - the facade's provider fixture, both loops
from wsasend import CompletedSend, WSAError, WSAErrorCode, WSAEvent, WSAOverlapped, winsock, wsa_send

# Hang guard only.
GUARD = 30.0


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    try:
        yield a, b
    finally:
        a.close()
        b.close()


# -- item 11: send_completed reports what completed ----------------------------------------------


async def test_send_completed_reports_each_send_when_the_routine_reposts_the_same_overlapped() -> None:
    """The classic Winsock pattern: the completion routine posts the next send with the same
    overlapped. Every send_completed must report its own send (error 0, its own size).

    Before the fix send_completed received the live overlapped, read after the reposts: every
    report said the last send's 29 bytes (failed 2/2 loops, every run)."""
    ours, peer = socket.socketpair()
    sizes = [10 + i for i in range(20)]
    with peer:
        transport, proto = await wrap(ours)
        ov = WSAOverlapped()
        posted: list[int] = []

        def routine(error: int, transferred: int, overlapped: WSAOverlapped, flags: int) -> None:
            assert (error, transferred, flags) == (0, posted[-1], 0)
            if len(posted) < len(sizes):
                post()

        def post() -> None:
            n = sizes[len(posted)]
            posted.append(n)
            transport.send([b"x" * n], overlapped=ov, completion_routine=routine)

        post()
        await asyncio.wait_for(_until(lambda: len(proto.completed) == len(sizes)), GUARD)
        transport.close()
        assert await drain_peer(peer) == b"".join(b"x" * n for n in sizes)
        await proto.wait_lost()
    reports = proto.completed
    assert [c.transferred for c in reports] == sizes
    assert [(c.pending, c.error, c.exception) for c in reports] == [(False, 0, None)] * len(sizes)
    assert all(isinstance(c, CompletedSend) for c in reports)
    assert [c.nbytes for c in reports] == sizes
    assert [c.result() for c in reports] == sizes
    assert all(c.overlapped is ov and c.done() and c.flags == 0 for c in reports)
    assert all(c.completion_routine is routine for c in reports)
    proto.check()


async def test_send_completed_reports_a_failed_send_after_the_overlapped_was_reused(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """A send aborted with an exact count, its overlapped reposted on another socket before
    send_completed runs: the report is still the abort (failed before the fix: it read the new
    send's pending state, 2/2 loops)."""
    ours, peer = socket.socketpair()
    other, other_peer = pair
    with peer:
        transport, proto = await wrap(ours)
        fill_socket(ours)
        ov = WSAOverlapped()
        transport.send([b"y" * 100_000], overlapped=ov)
        assert ov.pending
        transport.abort()  # completes ov at once: WSA_OPERATION_ABORTED, 0 bytes taken
        assert not ov.pending and ov.error == WSAErrorCode.WSA_OPERATION_ABORTED
        wsa_send(other, [b"again"], overlapped=ov)  # reused before send_completed ran
        await proto.wait_lost()
        assert await read_exactly(other_peer, 5) == b"again"
    [report] = proto.completed
    assert report.error == WSAErrorCode.WSA_OPERATION_ABORTED and report.transferred == 0
    assert not report.pending
    assert report.overlapped is ov
    assert isinstance(report.exception, WSAError) and report.exception.bytes_sent == 0
    with pytest.raises(WSAError) as info:
        report.result()
    assert info.value is report.exception
    assert "WSA_OPERATION_ABORTED" in repr(report)


async def _until(predicate: Any) -> None:
    while not predicate():
        await asyncio.sleep(0.001)


# -- item 14: a cancelled wait_async leaves the waiter list -------------------------------------


async def test_WSAEvent_cancelled_wait_async_leaves_no_waiter() -> None:
    """10,000 cancelled waits, then 200 wait_for time-outs: the waiter list ends empty, and the
    event still wakes a live waiter. Before the fix every cancelled wait stayed in the list
    (10,200 entries left, 2/2 loops)."""
    ev = WSAEvent()
    for _ in range(10_000):
        task = asyncio.ensure_future(ev.wait_async())
        await asyncio.sleep(0)  # it is suspended in the list now
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    for _ in range(200):
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ev.wait_async(), 0.0001)
    assert len(ev._async_waiters) == 0
    live = asyncio.ensure_future(ev.wait_async())
    await asyncio.sleep(0)
    assert len(ev._async_waiters) == 1
    ev.set()
    assert await asyncio.wait_for(live, GUARD) is True
    assert len(ev._async_waiters) == 0


# -- item 16: await a facade-posted overlapped from any loop ----------------------------------------


def _await_in_new_loop(loop_name: str, coro_fn: Any) -> Any:
    loop = LOOP_FACTORIES[loop_name]()
    try:
        return loop.run_until_complete(coro_fn())
    finally:
        loop.close()


@pytest.mark.parametrize("awaiter", sorted(LOOP_FACTORIES))
@pytest.mark.usefixtures("provider")
def test_facade_posted_overlapped_awaited_from_another_loop(awaiter: str) -> None:
    """WSASend from a plain thread posts on the provider's loop; another loop awaits the send.

    Before the fix the await raised asyncio's bare RuntimeError ("got Future attached to a
    different loop") and WSACleanup then logged "Future exception was never retrieved" (4/4
    provider x awaiter loop combinations)."""
    a, b = socket.socketpair()
    try:
        filled = fill_socket(a)
        ov = winsock.WSAOVERLAPPED()
        ov.hEvent = winsock.WSACreateEvent()
        payload = b"p" * 300_000
        assert winsock.WSASend(a, [payload], 1, None, 0, ov, None) == winsock.SOCKET_ERROR
        assert winsock.WSAGetLastError() == winsock.WSA_IO_PENDING
        reader = threading.Thread(target=lambda: b.recv(filled + len(payload), socket.MSG_WAITALL))

        async def main() -> int:
            waiting = asyncio.ensure_future(_await(ov))
            await asyncio.sleep(0)  # suspended in the await now, the send still pending
            assert ov.pending
            reader.start()
            return await asyncio.wait_for(waiting, GUARD)

        assert _await_in_new_loop(awaiter, main) == len(payload)
        reader.join(GUARD)
        assert ov.transferred == len(payload) and ov.error == 0
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("awaiter", sorted(LOOP_FACTORIES))
@pytest.mark.usefixtures("provider")
def test_facade_posted_overlapped_failure_is_raised_in_another_loop(awaiter: str) -> None:
    """The abort of WSACleanup reaches an awaiter on another loop as the send's WSAError, and
    nothing is left unretrieved (before the fix: RuntimeError, then "Future exception was never
    retrieved", 4/4 combinations)."""
    a, b = socket.socketpair()
    try:
        fill_socket(a)
        ov = winsock.WSAOVERLAPPED()
        ov.hEvent = winsock.WSACreateEvent()
        assert winsock.WSASend(a, [b"q" * 100_000], 1, None, 0, ov, None) == winsock.SOCKET_ERROR

        async def main() -> WSAError:
            waiting = asyncio.ensure_future(ov)
            await asyncio.sleep(0)
            await asyncio.get_running_loop().run_in_executor(None, winsock.WSACleanup)
            with pytest.raises(WSAError) as info:
                await asyncio.wait_for(waiting, GUARD)
            return info.value

        err = _await_in_new_loop(awaiter, main)
        assert err.winerror == WSAErrorCode.WSA_OPERATION_ABORTED and err is ov.exception
        assert isinstance(err, ConnectionAbortedError)
        gc.collect()
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("awaiter", sorted(LOOP_FACTORIES))
@pytest.mark.usefixtures("provider")
def test_foreign_loop_await_timeouts_do_not_pile_up(awaiter: str) -> None:
    """Polling a pending facade send with wait_for time-outs from another loop leaves no futures
    behind, and a last await still gets the count."""
    a, b = socket.socketpair()
    try:
        filled = fill_socket(a)
        ov = winsock.WSAOVERLAPPED()
        ov.hEvent = winsock.WSACreateEvent()
        assert winsock.WSASend(a, [b"r" * 1000], 1, None, 0, ov, None) == winsock.SOCKET_ERROR

        async def main() -> int:
            for _ in range(100):
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(_await(ov), 0.0001)
            assert not getattr(ov._waiter, "futures", [])  # every timed-out await left
            loop = asyncio.get_running_loop()
            reading = loop.run_in_executor(None, lambda: b.recv(filled + 1000, socket.MSG_WAITALL))
            n = await asyncio.wait_for(ov, GUARD)
            await reading
            return n

        assert _await_in_new_loop(awaiter, main) == 1000
        assert not getattr(ov._waiter, "futures", [])
    finally:
        a.close()
        b.close()


async def _await(ov: WSAOverlapped) -> int:
    return await ov


def _as_future(ov: WSAOverlapped) -> asyncio.Future[int]:
    return asyncio.ensure_future(_await(ov))


async def test_overlapped_awaited_from_a_loop_in_another_thread(pair: tuple[socket.socket, socket.socket]) -> None:
    """A send posted on this loop, awaited both here and from a loop in a thread: both get the
    count (before the fix the thread's await raised RuntimeError, 2/2 loops)."""
    a, b = pair
    filled = fill_socket(a)
    ov = wsa_send(a, [b"s" * 50_000])
    assert ov.pending
    here = asyncio.ensure_future(_await(ov))
    await asyncio.sleep(0)
    results: dict[str, Any] = {}
    ready = threading.Event()

    def thread_main(name: str) -> None:
        async def main() -> int:
            fut = asyncio.ensure_future(_await(ov))
            await asyncio.sleep(0)
            ready.set()
            return await asyncio.wait_for(fut, GUARD)

        try:
            results[name] = _await_in_new_loop(name, main)
        except BaseException as exc:  # reported below
            results[name] = exc

    threads = [threading.Thread(target=thread_main, args=(name,)) for name in sorted(LOOP_FACTORIES)]
    for t in threads:
        t.start()
        await asyncio.get_running_loop().run_in_executor(None, ready.wait, GUARD)
        ready.clear()
    assert await read_exactly(b, filled + 50_000) == b"\0" * filled + b"s" * 50_000
    assert await asyncio.wait_for(here, GUARD) == 50_000
    for t in threads:
        await asyncio.get_running_loop().run_in_executor(None, t.join, GUARD)
    assert results == {name: 50_000 for name in LOOP_FACTORIES}


# -- WSAEINVAL messages say the real reason first --------------------------------------------------


async def test_cancel_from_another_thread_says_why(pair: tuple[socket.socket, socket.socket]) -> None:
    """Before the fix the message began with "The socket has not been bound ..." (2/2 loops)."""
    a, _ = pair
    fill_socket(a)
    ov = wsa_send(a, [b"t" * 1000])
    assert ov.pending
    caught: list[BaseException] = []

    def other() -> None:
        try:
            ov.cancel()
        except BaseException as exc:
            caught.append(exc)

    thread = threading.Thread(target=other)
    thread.start()
    await asyncio.get_running_loop().run_in_executor(None, thread.join, GUARD)
    [err] = caught
    assert isinstance(err, WSAError) and err.winerror is WSAErrorCode.WSAEINVAL
    assert str(err).startswith("[WSAEINVAL 10022] cancel() was called outside the thread of the loop")
    assert "bound" not in str(err)
    assert ov.pending, "nothing was withdrawn"
    assert ov.cancel() is True


async def test_wait_in_the_loop_thread_says_why(pair: tuple[socket.socket, socket.socket]) -> None:
    a, _ = pair
    fill_socket(a)
    ov = wsa_send(a, [b"u" * 1000])
    with pytest.raises(WSAError) as info:
        ov.wait(0)
    assert info.value.winerror is WSAErrorCode.WSAEINVAL
    assert str(info.value).startswith("[WSAEINVAL 10022] wait() was called in the thread of the loop")
    assert "bound" not in str(info.value)
    assert ov.cancel() is True
