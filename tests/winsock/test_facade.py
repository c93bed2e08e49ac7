"""The facade's own surface: startup/cleanup, sockets, events, waits, out-parameters (SPEC S8).

The seed's sentences are in ``test_conformance.py``; this module covers the rest of S8: the
Winsock calls around WSASend and their argument checks.
"""

from __future__ import annotations

import ctypes
import socket
import threading
from collections.abc import Callable, Iterator

import pytest

import wsasend
from tests.conftest import LOOP_FACTORIES
from tests.helpers import fill_socket, pattern
from wsasend import winsock
from wsasend.winsock import (
    DWORD,
    SD_BOTH,
    SD_RECEIVE,
    SD_SEND,
    SOCKET_ERROR,
    WAIT_IO_COMPLETION,
    WSA_FLAG_NO_HANDLE_INHERIT,
    WSA_INFINITE,
    WSA_INVALID_HANDLE,
    WSA_INVALID_PARAMETER,
    WSA_IO_PENDING,
    WSA_MAXIMUM_WAIT_EVENTS,
    WSA_WAIT_EVENT_0,
    WSA_WAIT_FAILED,
    WSA_WAIT_IO_COMPLETION,
    WSA_WAIT_TIMEOUT,
    WSABUF,
    WSAEFAULT,
    WSAEINVAL,
    WSAENOTCONN,
    WSAENOTSOCK,
    WSAESHUTDOWN,
    WSANOTINITIALISED,
    WSAOVERLAPPED,
    SleepEx,
    WSACleanup,
    WSACloseEvent,
    WSACreateEvent,
    WSAGetLastError,
    WSAGetOverlappedResult,
    WSAResetEvent,
    WSASend,
    WSASetEvent,
    WSASetLastError,
    WSASocket,
    WSAStartup,
    WSAWaitForMultipleEvents,
    closesocket,
    shutdown,
)

from ._support import GUARD, GUARD_MS, Reader, Routines, recv_all, recv_available, recv_exactly, settle


def _provider_alive() -> bool:
    return any(t.name == "wsasend-provider" and t.is_alive() for t in threading.enumerate())


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


# -- startup and cleanup ----------------------------------------------------------------------


@pytest.mark.usefixtures("not_started")
def test_startup_is_reference_counted() -> None:
    """S8.1: every WSAStartup needs its WSACleanup; the provider lives from the first to the last."""
    assert not _provider_alive()
    data = WSAStartup(0x0202)
    assert (data.wVersion, data.wHighVersion) == (0x0202, 0x0202)
    assert _provider_alive()
    assert WSAStartup(0x0101).wVersion == 0x0101  # an older version is granted as asked
    assert WSAStartup(0x0303).wVersion == 0x0202  # a newer one is lowered to ours
    assert WSACleanup() == 0
    assert WSACleanup() == 0
    assert _provider_alive()
    assert WSACreateEvent() is not None  # still initialised
    assert WSACleanup() == 0
    assert not _provider_alive()
    assert WSACleanup() == SOCKET_ERROR
    assert WSAGetLastError() == WSANOTINITIALISED
    # And again from the start: a new provider.
    WSAStartup()
    assert _provider_alive()


@pytest.mark.usefixtures("not_started")
def test_startup_refuses_versions_below_1_0() -> None:
    with pytest.raises(wsasend.WSAError) as info:
        WSAStartup(0x0100)  # 0.1
    assert info.value.winerror == WSAEINVAL
    assert not _provider_alive()


@pytest.mark.usefixtures("not_started")
def test_every_call_before_startup_is_wsanotinitialised(pair: tuple[socket.socket, socket.socket]) -> None:
    """S8.1: every call but WSAGetLastError/WSASetLastError (and kernel32's SleepEx) fails with
    WSANOTINITIALISED, each with its own failure value."""
    a, b = pair
    event = wsasend.WSAEvent()
    calls: dict[str, tuple[Callable[[], object], object]] = {
        "WSASend": (lambda: WSASend(a, [b"x"], 1, DWORD(), 0, None, None), SOCKET_ERROR),
        "WSASend overlapped": (lambda: WSASend(a, [b"x"], 1, None, 0, WSAOVERLAPPED(), None), SOCKET_ERROR),
        "WSASocket": (lambda: WSASocket(socket.AF_INET, socket.SOCK_STREAM, 0), None),
        "closesocket": (lambda: closesocket(a), SOCKET_ERROR),
        "shutdown": (lambda: shutdown(a, SD_SEND), SOCKET_ERROR),
        "WSACreateEvent": (WSACreateEvent, None),
        "WSASetEvent": (lambda: WSASetEvent(event), False),
        "WSAResetEvent": (lambda: WSAResetEvent(event), False),
        "WSACloseEvent": (lambda: WSACloseEvent(event), False),
        "WSAWaitForMultipleEvents": (lambda: WSAWaitForMultipleEvents([event], False, 0, False), WSA_WAIT_FAILED),
        "WSAGetOverlappedResult": (
            lambda: WSAGetOverlappedResult(a, WSAOVERLAPPED(), DWORD(), False, DWORD()),
            False,
        ),
        "WSACleanup": (WSACleanup, SOCKET_ERROR),
    }
    for name, (call, failure) in calls.items():
        WSASetLastError(0)
        assert call() == failure, name
        assert WSAGetLastError() == WSANOTINITIALISED, name
    assert not event.is_set()
    assert a.fileno() >= 0  # closesocket did not close it
    assert recv_available(b) == b""
    WSASetLastError(1234)
    assert WSAGetLastError() == 1234
    assert SleepEx(0, True) == 0


@pytest.mark.usefixtures("provider")
def test_last_error_is_per_thread(pair: tuple[socket.socket, socket.socket]) -> None:
    a, _ = pair
    WSASetLastError(0)
    assert WSASend(a, [b"x"], 2, DWORD(), 0, None, None) == SOCKET_ERROR
    assert WSAGetLastError() == WSAEFAULT

    def elsewhere() -> tuple[int, int]:
        before = WSAGetLastError()
        WSASend(a, [b"x"], 1, None, 0, None, None)
        return before, WSAGetLastError()

    box: list[tuple[int, int]] = []
    thread = threading.Thread(target=lambda: box.append(elsewhere()))
    thread.start()
    thread.join(GUARD)
    assert box == [(0, WSAEFAULT)]
    WSASetLastError(WSAENOTSOCK)
    assert WSAGetLastError() == WSAENOTSOCK


# -- sockets ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("provider")
def test_wsasocket_arguments() -> None:
    """S8.2: WSASocket makes a blocking socket; bad info, group or flags are WSAEINVAL; the
    socket call's own error is translated (S3.3)."""
    s = WSASocket(
        socket.AF_INET6, socket.SOCK_DGRAM, 0, None, 0, winsock.WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT
    )
    assert s is not None
    try:
        assert (s.family, s.type, s.gettimeout()) == (socket.AF_INET6, socket.SOCK_DGRAM, None)
        assert not s.get_inheritable()
    finally:
        s.close()
    for kwargs in ({"info": b"protocol info"}, {"group": 1}, {"flags": 0x2}, {"flags": "overlapped"}):
        WSASetLastError(0)
        assert WSASocket(socket.AF_INET, socket.SOCK_STREAM, 0, **kwargs) is winsock.INVALID_SOCKET, kwargs
        assert WSAGetLastError() == WSAEINVAL
    assert WSASocket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_UDP) is None
    assert WSAGetLastError() != 0


@pytest.mark.usefixtures("provider")
def test_plain_python_sockets_are_overlapped_capable(pair: tuple[socket.socket, socket.socket]) -> None:
    """S8.2: sockets made by ``socket.socket`` work with overlapped sends, like Winsock's socket()."""
    a, b = pair
    ov = WSAOVERLAPPED()
    assert WSASend(a, [b"plain"], 1, DWORD(), 0, ov, None) == 0
    assert recv_exactly(b, 5) == b"plain"


@pytest.mark.usefixtures("provider")
def test_closesocket(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    assert closesocket(a) == 0
    assert a.fileno() == -1
    assert recv_all(b) == b""  # the peer sees the close
    assert closesocket(a) == SOCKET_ERROR
    assert WSAGetLastError() == WSAENOTSOCK
    assert closesocket("not a socket") == SOCKET_ERROR  # type: ignore[arg-type]
    assert WSAGetLastError() == WSAENOTSOCK


@pytest.mark.usefixtures("provider")
def test_shutdown_send_waits_for_queued_sends() -> None:
    """S8.2: shutdown(SD_SEND) with sends queued: new sends fail WSAESHUTDOWN at once, the
    queued ones still go out, then the peer sees end-of-stream."""
    a, b = socket.socketpair()
    try:
        filled = fill_socket(a)
        queued = []
        for i in range(3):
            ov = WSAOVERLAPPED()
            assert WSASend(a, [pattern(40_000, seed=i)], 1, None, 0, ov, None) == SOCKET_ERROR
            queued.append(ov)
        assert shutdown(a, SD_SEND) == 0
        assert WSASend(a, [b"late"], 1, None, 0, WSAOVERLAPPED(), None) == SOCKET_ERROR
        assert WSAGetLastError() == WSAESHUTDOWN
        assert WSASend(a, [b"late"], 1, DWORD(), 0, None, None) == SOCKET_ERROR
        assert WSAGetLastError() == WSAESHUTDOWN
        data = recv_all(b)  # returns at end-of-stream only
        assert data[filled:] == b"".join(pattern(40_000, seed=i) for i in range(3))
        for ov in queued:
            cb = DWORD()
            assert WSAGetOverlappedResult(a, ov, cb, True, DWORD()) is True
            assert cb.value == 40_000
    finally:
        a.close()
        b.close()


def test_shutdown_send_refuses_other_loops_and_threads_while_it_drains(provider: str) -> None:
    """S8.2, S6.2: after shutdown(SD_SEND), ``wsa_send`` from another loop and a blocking
    ``wsa_send_sync`` fail WSAESHUTDOWN at once, with nothing of them sent, while the sends
    queued before it still drain; they said WSAEINPROGRESS, or waited (here: timed out), for
    as long as the drain took (adversarial pass)."""
    a, b = socket.socketpair()
    try:
        a.setblocking(False)
        filled = fill_socket(a)
        queued = WSAOVERLAPPED()
        assert WSASend(a, [pattern(40_000)], 1, None, 0, queued, None) == SOCKET_ERROR
        assert shutdown(a, SD_SEND) == 0

        async def from_another_loop() -> int:
            return await wsasend.wsa_send(a, [b"late"])

        loop = LOOP_FACTORIES[provider]()
        try:
            with pytest.raises(wsasend.WSAError) as info:
                loop.run_until_complete(from_another_loop())
        finally:
            loop.close()
        assert info.value.winerror == wsasend.WSAErrorCode.WSAESHUTDOWN
        assert info.value.bytes_sent == 0
        a.settimeout(2.0)  # (the drain waits for the reader below: the old code timed out)
        with pytest.raises(wsasend.WSAError) as info:
            wsasend.wsa_send_sync(a, [b"late too"])
        assert info.value.winerror == wsasend.WSAErrorCode.WSAESHUTDOWN
        assert info.value.bytes_sent == 0
        data = recv_all(b)  # returns at end-of-stream only
        assert data[filled:] == pattern(40_000)  # the queued send, and nothing late
        cb = DWORD()
        assert WSAGetOverlappedResult(a, queued, cb, True, DWORD()) is True
        assert cb.value == 40_000
    finally:
        a.close()
        b.close()


@pytest.mark.usefixtures("provider")
def test_shutdown_both_with_sends_queued_stops_receiving_at_once() -> None:
    """S8.2: ``shutdown(SD_BOTH)`` with sends queued shuts the receiving direction at once (as
    on an idle socket, and as Windows does); only the sending half waits for the queue. Both
    halves waited: the peer could still send to us (adversarial pass)."""
    a, b = socket.socketpair()
    try:
        filled = fill_socket(a)
        queued = WSAOVERLAPPED()
        assert WSASend(a, [pattern(40_000)], 1, None, 0, queued, None) == SOCKET_ERROR
        assert shutdown(a, SD_BOTH) == 0
        with pytest.raises(BrokenPipeError):  # AF_UNIX: our receiving side is shut
            b.send(b"to a socket that no longer receives")
        assert a.recv(100) == b""  # end of stream at once, nothing pending
        data = recv_all(b)  # the queued send still goes out, then end-of-stream
        assert data[filled:] == pattern(40_000)
    finally:
        a.close()
        b.close()


@pytest.mark.usefixtures("provider")
def test_shutdown_directions(pair: tuple[socket.socket, socket.socket]) -> None:
    """SD_RECEIVE leaves sending alone; SD_BOTH ends the stream; a bad ``how`` is WSAEINVAL."""
    a, b = pair
    for how in (3, -1, True, "SD_SEND"):
        assert shutdown(a, how) == SOCKET_ERROR, how  # type: ignore[arg-type]
        assert WSAGetLastError() == WSAEINVAL
    assert shutdown(a, SD_RECEIVE) == 0
    assert WSASend(a, [b"still"], 1, DWORD(), 0, None, None) == 0
    assert shutdown(a, SD_BOTH) == 0
    assert recv_all(b) == b"still"
    assert shutdown(object(), SD_SEND) == SOCKET_ERROR  # type: ignore[arg-type]
    assert WSAGetLastError() == WSAENOTSOCK


@pytest.mark.usefixtures("provider")
def test_shutdown_unconnected_is_wsaenotconn() -> None:
    s = WSASocket(socket.AF_INET, socket.SOCK_STREAM, 0)
    assert s is not None
    try:
        assert shutdown(s, SD_SEND) == SOCKET_ERROR
        assert WSAGetLastError() == WSAENOTCONN
    finally:
        s.close()


# -- WSASend's arguments ------------------------------------------------------------------------


@pytest.mark.usefixtures("provider")
def test_out_parameter_shapes(pair: tuple[socket.socket, socket.socket]) -> None:
    """Out-parameters: a DWORD, any ctypes integer at least as wide, or a ctypes pointer to one (S8)."""
    a, b = pair
    dword = DWORD()
    assert WSASend(a, [b"ab"], 1, ctypes.pointer(dword), 0, None, None) == 0
    assert dword.value == 2
    u32 = ctypes.c_uint32()
    assert WSASend(a, [b"cde"], 1, u32, 0, None, None) == 0
    assert u32.value == 3
    # Narrower than a DWORD: WSAEFAULT, and nothing sent. They took the count wrapped (a
    # 300-byte send read as 44) with success (adversarial pass).
    narrow = (ctypes.c_uint8(), ctypes.c_int8(), ctypes.c_uint16(), ctypes.c_int16())
    for bad in (0, [0], ctypes.c_double(), ctypes.create_string_buffer(4), *narrow, ctypes.pointer(ctypes.c_uint8())):
        assert WSASend(a, [b"x"], 1, bad, 0, None, None) == SOCKET_ERROR
        assert WSAGetLastError() == WSAEFAULT
    assert recv_exactly(b, 5) == b"abcde"
    assert recv_available(b) == b""


@pytest.mark.usefixtures("provider")
def test_buffer_array_shapes(pair: tuple[socket.socket, socket.socket]) -> None:
    """lpBuffers: a list or tuple of WSABUFs or bytes-like objects, or one WSABUF; zero buffers
    complete with 0 bytes (S2.4)."""
    a, b = pair
    sent = DWORD(9)
    assert WSASend(a, WSABUF(2, b"one"), 1, sent, 0, None, None) == 0
    assert WSASend(a, (b"t", bytearray(b"w"), memoryview(b"o")), 3, sent, 0, None, None) == 0
    assert WSASend(a, [], 0, sent, 0, None, None) == 0
    assert sent.value == 0
    assert WSASend(a, [b"ignored"], 0, None, 0, WSAOVERLAPPED(), None) == 0
    for bad_count in (-1, 1.0, True, None):
        assert WSASend(a, [b"x"], bad_count, sent, 0, None, None) == SOCKET_ERROR  # type: ignore[arg-type]
        assert WSAGetLastError() == WSAEFAULT
    assert recv_exactly(b, 5) == b"ontwo"
    assert recv_available(b) == b""


@pytest.mark.usefixtures("provider")
def test_routine_without_an_overlapped(pair: tuple[socket.socket, socket.socket]) -> None:
    """A completion routine alone makes the send overlapped (the seed: "unless both ... are
    NULL"); the routine gets the overlapped the package made for it."""
    a, b = pair
    routine = Routines()
    sent = DWORD()
    assert WSASend(a, [b"solo"], 1, sent, 0, None, routine) == 0
    assert SleepEx(GUARD_MS, True) == WAIT_IO_COMPLETION
    [(error, transferred, ov, flags)] = routine.calls
    assert (error, transferred, flags) == (0, 4, 0)
    assert isinstance(ov, WSAOVERLAPPED) and ov.transferred == 4
    assert recv_exactly(b, 4) == b"solo"


@pytest.mark.usefixtures("provider")
def test_routine_exception_leaves_the_wait_and_keeps_the_rest(pair: tuple[socket.socket, socket.socket]) -> None:
    """A routine that raises: the exception leaves the alertable wait that ran it; the routines
    behind it stay queued for the next wait."""
    a, _ = pair
    ran: list[int] = []

    def bad(error: int, transferred: int, ov: WSAOVERLAPPED, flags: int) -> None:
        raise RuntimeError("routine failed")

    def good(error: int, transferred: int, ov: WSAOVERLAPPED, flags: int) -> None:
        ran.append(transferred)

    first, second = WSAOVERLAPPED(), WSAOVERLAPPED()
    assert WSASend(a, [b"1"], 1, None, 0, first, bad) == 0
    assert WSASend(a, [b"22"], 1, None, 0, second, good) in (0, SOCKET_ERROR)
    settle(first, second)
    with pytest.raises(RuntimeError, match="routine failed"):
        SleepEx(GUARD_MS, True)
    assert ran == []
    assert SleepEx(GUARD_MS, True) == WAIT_IO_COMPLETION
    assert ran == [2]


# -- events and waits -------------------------------------------------------------------------


@pytest.mark.usefixtures("provider")
def test_event_calls() -> None:
    """S8.4: WSACreateEvent makes a manual-reset event, not signalled; set/reset; a closed event
    or a non-event is WSA_INVALID_HANDLE."""
    event = WSACreateEvent()
    assert isinstance(event, wsasend.WSAEvent) and not event.is_set()
    assert WSASetEvent(event) is True
    assert WSAWaitForMultipleEvents([event], False, 0, False) == WSA_WAIT_EVENT_0
    assert WSAWaitForMultipleEvents([event], False, 0, False) == WSA_WAIT_EVENT_0  # manual reset
    assert WSAResetEvent(event) is True
    assert WSAWaitForMultipleEvents([event], False, 0, False) == WSA_WAIT_TIMEOUT
    assert WSACloseEvent(event) is True
    for call in (WSASetEvent, WSAResetEvent, WSACloseEvent):
        assert call(event) is False
        assert WSAGetLastError() == WSA_INVALID_HANDLE
    assert WSAWaitForMultipleEvents([event], False, 0, False) == WSA_WAIT_FAILED
    assert WSAGetLastError() == WSA_INVALID_HANDLE
    assert WSASetEvent("event") is False  # type: ignore[arg-type]
    assert WSAGetLastError() == WSA_INVALID_HANDLE


@pytest.mark.usefixtures("provider")
def test_an_overlapped_send_through_a_closed_or_non_event_hevent_is_refused(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """S8.4: an overlapped send without a routine completes through its hEvent; a closed event
    or a context value there is WSA_INVALID_HANDLE at the call and nothing is sent (Windows'
    I/O manager refuses the handle). Both were taken and sent, with no way to see them
    complete (adversarial pass). With a routine, hEvent is the caller's to use."""
    a, b = pair
    closed = WSACreateEvent()
    assert closed is not None and WSACloseEvent(closed)
    for bad in (closed, 5, "context"):
        ov = WSAOVERLAPPED()
        ov.hEvent = bad
        assert WSASend(a, [b"never"], 1, None, 0, ov, None) == SOCKET_ERROR
        assert WSAGetLastError() == WSA_INVALID_HANDLE
        assert not ov.pending
    ran: list[int] = []
    ov = WSAOVERLAPPED()
    ov.hEvent = "context"
    assert WSASend(a, [b"ok"], 1, None, 0, ov, lambda err, n, o, f: ran.append(n)) in (0, SOCKET_ERROR)
    assert SleepEx(GUARD_MS, True) == WAIT_IO_COMPLETION and ran == [2]
    assert recv_exactly(b, 2) == b"ok"
    assert recv_available(b) == b""  # nothing of the refused ones


def _new_events(count: int) -> list[wsasend.WSAEvent]:
    """``count`` calls of WSACreateEvent, started: each gives an event, not WSA_INVALID_EVENT (None)."""
    events: list[wsasend.WSAEvent] = []
    for _ in range(count):
        event = WSACreateEvent()
        assert event is not None
        events.append(event)
    return events


@pytest.mark.usefixtures("provider")
def test_wait_for_multiple_events_arguments() -> None:
    """S8.4: 1 to 64 events; more, or none, is WSA_INVALID_PARAMETER; so is a bad time-out."""
    events = _new_events(WSA_MAXIMUM_WAIT_EVENTS + 1)
    assert WSAWaitForMultipleEvents(events, False, 0, False) == WSA_WAIT_FAILED
    assert WSAGetLastError() == WSA_INVALID_PARAMETER
    assert WSAWaitForMultipleEvents(events[:64], False, 0, False) == WSA_WAIT_TIMEOUT
    assert WSAWaitForMultipleEvents([], False, 0, True) == WSA_WAIT_FAILED
    assert WSAGetLastError() == WSA_INVALID_PARAMETER
    for bad in (-1, 0.5, None):
        assert WSAWaitForMultipleEvents(events[:1], False, bad, False) == WSA_WAIT_FAILED  # type: ignore[arg-type]
        assert WSAGetLastError() == WSA_INVALID_PARAMETER
    assert WSAWaitForMultipleEvents(42, False, 0, False) == WSA_WAIT_FAILED  # type: ignore[arg-type]
    assert WSAGetLastError() == WSA_INVALID_PARAMETER
    assert WSAWaitForMultipleEvents([events[0], "x"], False, 0, False) == WSA_WAIT_FAILED  # type: ignore[list-item]
    assert WSAGetLastError() == WSA_INVALID_HANDLE


@pytest.mark.usefixtures("provider")
def test_wait_all_refuses_one_event_twice() -> None:
    """As Win32's wait for all: the same object twice is ERROR_INVALID_PARAMETER, signalled or
    not, and the wait consumes no signal; a wait for any takes duplicates."""
    a, b = _new_events(2)
    assert WSAWaitForMultipleEvents([a, b, a], True, 0, False) == WSA_WAIT_FAILED
    assert WSAGetLastError() == WSA_INVALID_PARAMETER
    WSASetEvent(a)
    WSASetEvent(b)
    assert WSAWaitForMultipleEvents([a, a], True, 0, False) == WSA_WAIT_FAILED
    assert WSAGetLastError() == WSA_INVALID_PARAMETER
    assert WSAWaitForMultipleEvents([b, a, a], False, 0, False) == WSA_WAIT_EVENT_0
    assert WSAWaitForMultipleEvents([a, b], True, 0, False) == WSA_WAIT_EVENT_0


@pytest.mark.usefixtures("provider")
def test_wait_reports_the_lowest_signalled_event() -> None:
    events = _new_events(64)
    WSASetEvent(events[63])
    WSASetEvent(events[17])
    assert WSAWaitForMultipleEvents(events, False, 0, False) == WSA_WAIT_EVENT_0 + 17
    assert WSAWaitForMultipleEvents(events, True, 0, False) == WSA_WAIT_TIMEOUT
    for event in events:
        WSASetEvent(event)
    assert WSAWaitForMultipleEvents(events, True, 0, False) == WSA_WAIT_EVENT_0


@pytest.mark.usefixtures("provider")
def test_a_signalled_event_wins_over_queued_routines(pair: tuple[socket.socket, socket.socket]) -> None:
    """As in Windows' kernel: a satisfied wait returns its event; the queued routines wait for
    the next alertable wait that is not satisfied at once."""
    a, _ = pair
    routine = Routines()
    ov = WSAOVERLAPPED()
    assert WSASend(a, [b"r"], 1, None, 0, ov, routine) == 0
    settle(ov)
    ready = WSACreateEvent()
    assert ready is not None
    WSASetEvent(ready)
    assert WSAWaitForMultipleEvents([ready], False, GUARD_MS, True) == WSA_WAIT_EVENT_0
    assert routine.calls == []
    WSAResetEvent(ready)
    assert WSAWaitForMultipleEvents([ready], False, GUARD_MS, True) == WSA_WAIT_IO_COMPLETION
    assert len(routine.calls) == 1


@pytest.mark.usefixtures("provider")
def test_sleepex() -> None:
    assert SleepEx(0, False) == 0
    assert SleepEx(1, True) == 0  # nothing queued: the time runs out
    with pytest.raises(wsasend.WSAError) as info:
        SleepEx(-5, True)
    assert info.value.winerror == WSA_INVALID_PARAMETER
    # An INFINITE alertable sleep ends when a routine is queued to this thread.
    a, b = socket.socketpair()
    try:
        filled = fill_socket(a)
        routine = Routines()
        assert WSASend(a, [b"wake"], 1, None, 0, WSAOVERLAPPED(), routine) == SOCKET_ERROR
        assert WSAGetLastError() == WSA_IO_PENDING
        reader = Reader(b, filled + 4)
        assert SleepEx(WSA_INFINITE, True) == WAIT_IO_COMPLETION
        assert [c[:2] for c in routine.calls] == [(0, 4)]
        assert reader.join()[filled:] == b"wake"
    finally:
        a.close()
        b.close()


@pytest.mark.usefixtures("provider")
def test_get_overlapped_result_arguments(pair: tuple[socket.socket, socket.socket]) -> None:
    """S8.5: lpcbTransfer and lpdwFlags must be DWORDs, the overlapped an overlapped, s a socket;
    a never-posted overlapped reads as 0 bytes, success."""
    a, _ = pair
    ov = WSAOVERLAPPED()
    cases: list[tuple[Callable[[], bool], int]] = [
        (lambda: WSAGetOverlappedResult(a, ov, None, False, DWORD()), WSAEFAULT),
        (lambda: WSAGetOverlappedResult(a, ov, DWORD(), False, None), WSAEFAULT),
        (lambda: WSAGetOverlappedResult(a, "ov", DWORD(), False, DWORD()), WSAEFAULT),  # type: ignore[arg-type]  # bad
        (lambda: WSAGetOverlappedResult(42, ov, DWORD(), False, DWORD()), WSAENOTSOCK),  # type: ignore[arg-type]  # bad
    ]
    for call, code in cases:
        assert call() is False
        assert WSAGetLastError() == code
    cb = DWORD(8)
    assert WSAGetOverlappedResult(a, ov, ctypes.pointer(cb), True, DWORD()) is True
    assert cb.value == 0


def test_public_names() -> None:
    """S8.4's values, and every name in ``__all__`` exists."""
    assert (winsock.SOCKET_ERROR, winsock.WSA_WAIT_EVENT_0, winsock.WSA_WAIT_IO_COMPLETION) == (-1, 0, 0xC0)
    assert (winsock.WAIT_IO_COMPLETION, winsock.WSA_WAIT_TIMEOUT, winsock.WSA_INFINITE) == (0xC0, 0x102, 0xFFFFFFFF)
    assert (winsock.WSA_FLAG_OVERLAPPED, winsock.WSA_MAXIMUM_WAIT_EVENTS) == (0x01, 64)
    assert (SD_RECEIVE, SD_SEND, SD_BOTH) == (0, 1, 2)
    assert winsock.WSAOVERLAPPED is wsasend.WSAOverlapped
    assert winsock.WSABUF is wsasend.WSABUF
    assert winsock.DWORD is ctypes.wintypes.DWORD
    for name in winsock.__all__:
        assert hasattr(winsock, name), name
    assert "winsock" not in wsasend.__all__  # S1: the facade lives in its own module
