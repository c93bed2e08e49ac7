"""The facade called from inside a running event loop (SPEC S8.6, last sentence).

There, ``WSASend`` posts on the running loop rather than the provider, and completion routines
run through that loop's ``call_soon`` (S5.3), not through alertable waits. Each test runs on
the asyncio loop and on uvloop (tests/conftest.py) and fails if the loop's exception handler
fired.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest

from tests.helpers import fill_socket, pattern, read_exactly
from wsasend import winsock
from wsasend.winsock import (
    DWORD,
    SD_SEND,
    SOCKET_ERROR,
    WSA_IO_INCOMPLETE,
    WSA_IO_PENDING,
    WSA_OPERATION_ABORTED,
    WSAEINVAL,
    WSAESHUTDOWN,
    WSAEWOULDBLOCK,
    WSAOVERLAPPED,
    SleepEx,
    WSACleanup,
    WSACreateEvent,
    WSAGetLastError,
    WSAGetOverlappedResult,
    WSASend,
    shutdown,
)

from ._support import Routines

pytestmark = pytest.mark.usefixtures("started")


@pytest.fixture
def stuffed() -> Iterator[tuple[socket.socket, socket.socket, int]]:
    a, b = socket.socketpair()
    filled = fill_socket(a)
    yield a, b, filled
    a.close()
    b.close()


async def test_in_loop_routine_runs_through_call_soon_in_the_loop() -> None:
    """Inside a loop the caller's own routine goes to the engine (no APC wrapper), and runs
    through call_soon on this loop's thread: never inside WSASend, without any SleepEx."""
    a, b = socket.socketpair()
    try:
        routine = Routines()
        ov = WSAOVERLAPPED()
        sent = DWORD()
        assert WSASend(a, [b"in", b"loop"], 2, sent, 0, ov, routine) == 0
        assert sent.value == 6
        assert ov.completion_routine is routine  # posted here, not through the provider
        assert routine.calls == []  # not inside the call
        await asyncio.sleep(0)
        assert routine.calls == [(0, 6, ov, 0)]
        assert routine.threads == [threading.get_ident()]
        assert await read_exactly(b, 6) == b"inloop"
    finally:
        a.close()
        b.close()


async def test_in_loop_pending_send_is_awaited(stuffed: tuple[socket.socket, socket.socket, int]) -> None:
    """A pending in-loop send completes on this loop while it runs; the overlapped can be
    awaited, its event awaited, and WSAGetOverlappedResult polled (S5.1, S5.8, S8.5)."""
    a, b, filled = stuffed
    ov = WSAOVERLAPPED()
    ov.hEvent = WSACreateEvent()
    sent = DWORD(3)
    assert WSASend(a, [pattern(100_000)], 1, sent, 0, ov, None) == SOCKET_ERROR
    assert WSAGetLastError() == WSA_IO_PENDING
    assert sent.value == 3
    assert WSAGetOverlappedResult(a, ov, DWORD(), False, DWORD()) is False
    assert WSAGetLastError() == WSA_IO_INCOMPLETE
    reading = asyncio.ensure_future(read_exactly(b, filled + 100_000))
    assert await asyncio.wait_for(ov.hEvent.wait_async(), 30) is True
    assert await ov == 100_000
    assert (await reading)[filled:] == pattern(100_000)
    cb = DWORD()
    assert WSAGetOverlappedResult(a, ov, cb, False, DWORD()) is True
    assert cb.value == 100_000


async def test_in_loop_fwait_would_block_the_loop(stuffed: tuple[socket.socket, socket.socket, int]) -> None:
    """WSAGetOverlappedResult(fWait=True) in the thread of the loop that must complete the send
    would hang it: WSAEINVAL instead (S5.8)."""
    a, b, filled = stuffed
    ov = WSAOVERLAPPED()
    assert WSASend(a, [b"x" * 1000], 1, None, 0, ov, None) == SOCKET_ERROR
    assert WSAGetOverlappedResult(a, ov, DWORD(), True, DWORD()) is False
    assert WSAGetLastError() == WSAEINVAL
    assert (await read_exactly(b, filled + 1000))[filled:] == b"x" * 1000
    assert await ov == 1000


async def test_in_loop_nonoverlapped_never_jumps_the_queue(stuffed: tuple[socket.socket, socket.socket, int]) -> None:
    """A nonoverlapped WSASend in the loop's own thread while overlapped sends are pending is
    WSAEWOULDBLOCK: it may not block the loop, nor overtake the queue (S4.2)."""
    a, b, filled = stuffed
    ov = WSAOVERLAPPED()
    assert WSASend(a, [b"first"], 1, None, 0, ov, None) == SOCKET_ERROR
    assert WSASend(a, [b"second"], 1, DWORD(), 0, None, None) == SOCKET_ERROR
    assert WSAGetLastError() == WSAEWOULDBLOCK
    assert (await read_exactly(b, filled + 5))[filled:] == b"first"
    assert await ov == 5


async def test_in_loop_shutdown_waits_for_queued_sends(stuffed: tuple[socket.socket, socket.socket, int]) -> None:
    """shutdown(SD_SEND) with sends queued: new sends fail WSAESHUTDOWN at once (on both APIs),
    the queued ones go out, then the peer sees end-of-stream (S8.2, S6.2)."""
    a, b, filled = stuffed
    queued = [WSAOVERLAPPED() for _ in range(3)]
    for i, ov in enumerate(queued):
        assert WSASend(a, [pattern(30_000, seed=i)], 1, None, 0, ov, None) == SOCKET_ERROR
    assert shutdown(a, SD_SEND) == 0
    assert WSASend(a, [b"late"], 1, None, 0, WSAOVERLAPPED(), None) == SOCKET_ERROR
    assert WSAGetLastError() == WSAESHUTDOWN
    from wsasend import WSAError, wsa_send

    with pytest.raises(WSAError) as info:
        wsa_send(a, [b"late"])
    assert info.value.winerror == WSAESHUTDOWN
    expected = b"".join(pattern(30_000, seed=i) for i in range(3))
    data = await read_exactly(b, filled + len(expected) + 1)  # + 1: stops at end-of-stream
    assert data[filled:] == expected
    assert [await ov for ov in queued] == [30_000] * 3


async def test_in_loop_cleanup_aborts_sends_on_this_loop(stuffed: tuple[socket.socket, socket.socket, int]) -> None:
    """The last WSACleanup aborts in-loop sends too (Winsock cancels every pending call of the
    process), through this loop: routines run by call_soon, awaiting raises (S8.1, S6.1)."""
    a, _, _ = stuffed
    routine = Routines()
    ov = WSAOVERLAPPED()
    assert WSASend(a, [b"doomed"], 1, None, 0, ov, routine) == SOCKET_ERROR
    assert WSACleanup() == 0
    assert not ov.pending and ov.error == WSA_OPERATION_ABORTED
    await asyncio.sleep(0)
    assert routine.calls == [(WSA_OPERATION_ABORTED, 0, ov, 0)]
    assert SleepEx(0, True) == 0  # nothing was queued for an alertable wait


async def test_in_loop_and_thread_posts_share_one_order(stuffed: tuple[socket.socket, socket.socket, int]) -> None:
    """A thread without a loop posting on a socket whose sends are pending on this loop is
    refused (WSAEINPROGRESS: the engine belongs to this loop until idle), never interleaved;
    once idle, the thread's send goes through the provider (S5.10)."""
    a, b, filled = stuffed
    ov = WSAOVERLAPPED()
    assert WSASend(a, [b"loop"], 1, None, 0, ov, None) == SOCKET_ERROR

    def from_thread() -> tuple[int, int]:
        r = WSASend(a, [b"thread"], 1, None, 0, WSAOVERLAPPED(), None)
        return r, WSAGetLastError()

    assert await asyncio.to_thread(from_thread) == (SOCKET_ERROR, winsock.WSAEINPROGRESS)
    assert (await read_exactly(b, filled + 4))[filled:] == b"loop"
    assert await ov == 4
    r, _ = await asyncio.to_thread(from_thread)
    assert r == 0
    assert await read_exactly(b, 6) == b"thread"
