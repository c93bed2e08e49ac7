"""Conformance: the seed (WSASend, Windows CE 5.0), sentence by sentence, through ``wsasend.winsock``.

Each test names the seed sentence it checks in its docstring (quoted) and the SPEC section
that says how we read it; ``docs/conformance.md`` lists them in the seed's order. Tests are
named ``test_<section><n>_<what>``: p = parameters, r = return values, e = the error table,
k = remarks, f = dwFlags, o = overlapped socket I/O.

Every test runs twice, with the provider thread on an asyncio loop and on uvloop (the
``provider`` fixture), from the test's own thread, which has no event loop: the C-port case.
Sentences about a running loop are in ``test_in_loop.py``. Real sockets throughout; a scripted
socket only for the errnos Linux will not produce on demand (e02, e07, e08, e16).
"""

from __future__ import annotations

import ctypes
import errno
import gc
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from tests.helpers import SMALL_BUF, fill_socket, pattern, tcp_pair, udp_pair
from wsasend import WSAError, max_message_size, set_max_pending, winsock
from wsasend.winsock import (
    DWORD,
    MSG_DONTROUTE,
    MSG_OOB,
    MSG_PARTIAL,
    SD_BOTH,
    SD_SEND,
    SOCKET_ERROR,
    WAIT_IO_COMPLETION,
    WSA_FLAG_OVERLAPPED,
    WSA_INFINITE,
    WSA_IO_INCOMPLETE,
    WSA_IO_PENDING,
    WSA_OPERATION_ABORTED,
    WSA_WAIT_EVENT_0,
    WSA_WAIT_IO_COMPLETION,
    WSABUF,
    WSAEACCES,
    WSAECONNABORTED,
    WSAECONNRESET,
    WSAEFAULT,
    WSAEINPROGRESS,
    WSAEINTR,
    WSAEINVAL,
    WSAEMSGSIZE,
    WSAENETDOWN,
    WSAENETRESET,
    WSAENOBUFS,
    WSAENOTCONN,
    WSAENOTSOCK,
    WSAEOPNOTSUPP,
    WSAESHUTDOWN,
    WSAEWOULDBLOCK,
    WSANOTINITIALISED,
    WSAOVERLAPPED,
    SleepEx,
    WSACleanup,
    WSACreateEvent,
    WSAGetLastError,
    WSAGetOverlappedResult,
    WSASend,
    WSASocket,
    WSAStartup,
    WSAWaitForMultipleEvents,
    closesocket,
    shutdown,
)

from ._support import (
    GUARD,
    GUARD_MS,
    Reader,
    Routines,
    recv_all,
    recv_available,
    recv_exactly,
    scripted_pair,
    settle,
    stuffed_pair,
)

pytestmark = pytest.mark.usefixtures("provider")


@pytest.fixture
def closer() -> Iterator[Callable[..., None]]:
    """Register sockets to close after the test (an unclosed socket is a ResourceWarning)."""
    socks: list[socket.socket] = []
    yield lambda *new: socks.extend(new)
    for sock in socks:
        sock.close()


@pytest.fixture
def stuffed(closer: Callable[..., None]) -> tuple[socket.socket, socket.socket, int]:
    a, b, filled = stuffed_pair()
    closer(a, b)
    return a, b, filled


@pytest.fixture
def pair(closer: Callable[..., None]) -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    closer(a, b)
    return a, b


def wsasocket_pair(flags: int, closer: Callable[..., None]) -> tuple[socket.socket, socket.socket]:
    """A TCP loopback connection whose sending end was made by WSASocket with ``flags``."""
    listener = socket.create_server(("127.0.0.1", 0))
    s = WSASocket(socket.AF_INET, socket.SOCK_STREAM, 0, None, 0, flags)
    assert s is not None
    closer(listener, s)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUF)
    s.connect(listener.getsockname())
    peer, _ = listener.accept()
    closer(peer)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUF)
    return s, peer


def overlapped_with_event() -> WSAOVERLAPPED:
    ov = WSAOVERLAPPED()
    ov.hEvent = WSACreateEvent()
    return ov


def fails_with(result: int, code: int) -> bool:
    return result == SOCKET_ERROR and WSAGetLastError() == code


def post_pending(
    sock: socket.socket,
    data: object,
    ov: WSAOVERLAPPED | None = None,
    routine: Callable[[int, int, WSAOVERLAPPED, int], object] | None = None,
) -> WSAOVERLAPPED:
    """Post an overlapped send that must pend; return its overlapped."""
    ov = ov if ov is not None else overlapped_with_event()
    sent = DWORD(777)
    assert fails_with(WSASend(sock, [data], 1, sent, 0, ov, routine), WSA_IO_PENDING)
    assert sent.value == 777
    return ov


# -- parameters -------------------------------------------------------------------------------


def test_p1_s_must_be_a_connected_socket(closer: Callable[..., None]) -> None:
    """s: "Descriptor identifying a connected socket." (S3.3, S3.4: WSAENOTCONN, WSAENOTSOCK)"""
    s = WSASocket(socket.AF_INET, socket.SOCK_STREAM, 0)
    assert s is not None
    closer(s)
    sent = DWORD()
    assert fails_with(WSASend(s, [b"x"], 1, sent, 0, None, None), WSAENOTCONN)
    assert fails_with(WSASend(s, [b"x"], 1, None, 0, WSAOVERLAPPED(), None), WSAENOTCONN)
    assert fails_with(WSASend(object(), [b"x"], 1, sent, 0, None, None), WSAENOTSOCK)  # type: ignore[arg-type]


def test_p2_wsabuf_is_a_buffer_and_its_length(pair: tuple[socket.socket, socket.socket]) -> None:
    """lpBuffers: "Each WSABUF structure contains a pointer to a buffer and the length of the buffer." (S2)"""
    a, b = pair
    sent = DWORD()
    bufs = [WSABUF(3, b"abcdef"), WSABUF(0, b"zzz"), WSABUF(2, bytearray(b"gh!")), WSABUF(4, memoryview(b"ijkl"))]
    assert WSASend(a, bufs, len(bufs), sent, 0, None, None) == 0
    assert sent.value == 9
    assert recv_exactly(b, 9) == b"abcghijkl"
    # A length outside its buffer is not "totally contained in a valid part of the address space".
    assert fails_with(WSASend(a, [WSABUF(7, b"abc")], 1, sent, 0, None, None), WSAEFAULT)
    assert fails_with(WSASend(a, [WSABUF(-1, b"abc")], 1, sent, 0, WSAOVERLAPPED(), None), WSAEFAULT)
    assert recv_available(b) == b""


def test_p2_array_must_remain_valid_for_the_send(stuffed: tuple[socket.socket, socket.socket, int]) -> None:
    """lpBuffers: "This array must remain valid for the duration of the send operation." (S2.1)

    The buffers are not copied: while the send is pending the package holds them, so a
    bytearray cannot be resized under it; once it completed, they are released.
    """
    a, b, filled = stuffed
    payload = bytearray(pattern(100_000))
    ov = post_pending(a, payload)
    with pytest.raises(BufferError):
        payload.extend(b"more")
    assert recv_exactly(b, filled + 100_000)[filled:] == pattern(100_000)
    settle(ov)
    payload.extend(b"more")  # released with the completion
    assert ov.transferred == 100_000


def test_p3_buffer_count_selects_the_buffers(pair: tuple[socket.socket, socket.socket]) -> None:
    """dwBufferCount: "Number of WSABUF structures in the lpBuffers array." (S8.3)"""
    a, b = pair
    sent = DWORD()
    bufs = [WSABUF(1, b"a"), WSABUF(1, b"b"), WSABUF(1, b"c")]
    assert WSASend(a, bufs, 2, sent, 0, None, None) == 0
    assert sent.value == 2
    assert recv_exactly(b, 2) == b"ab"
    # More than the array holds is a fault, and nothing is sent.
    assert fails_with(WSASend(a, bufs, 4, sent, 0, None, None), WSAEFAULT)
    assert fails_with(WSASend(a, bufs, 4, None, 0, WSAOVERLAPPED(), None), WSAEFAULT)
    assert sent.value == 2
    assert recv_available(b) == b""


def test_p4_bytes_sent_is_written_on_immediate_completion(pair: tuple[socket.socket, socket.socket]) -> None:
    """lpNumberOfBytesSent: "[out] Pointer to the number of bytes sent by this call if the I/O
    operation completes immediately." (S8.3)"""
    a, b = pair
    sent = DWORD(12345)
    assert WSASend(a, [b"hello", b" world"], 2, sent, 0, overlapped_with_event(), None) == 0
    assert sent.value == 11
    sent.value = 0
    assert WSASend(a, [b"again"], 1, sent, 0, None, None) == 0
    assert sent.value == 5
    # Nonoverlapped, the count has nowhere else to go: None is a fault.
    assert fails_with(WSASend(a, [b"x"], 1, None, 0, None, None), WSAEFAULT)
    assert recv_exactly(b, 16) == b"hello worldagain"
    assert recv_available(b) == b""


def test_p6_overlapped_on_a_nonoverlapped_socket_is_einval(closer: Callable[..., None]) -> None:
    """lpOverlapped: "This parameter is ignored for nonoverlapped sockets." and the table's
    WSAEINVAL: "the socket is not created with the overlapped flag." (S8.3 chooses the table)"""
    s, peer = wsasocket_pair(0, closer)
    sent = DWORD()
    assert fails_with(WSASend(s, [b"x"], 1, sent, 0, overlapped_with_event(), None), WSAEINVAL)
    assert fails_with(WSASend(s, [b"x"], 1, sent, 0, None, Routines()), WSAEINVAL)
    # Without them, the same socket sends as a nonoverlapped one.
    assert WSASend(s, [b"ok"], 1, sent, 0, None, None) == 0
    assert sent.value == 2
    assert recv_exactly(peer, 2) == b"ok"


def test_p7_completion_routine_is_called_when_the_send_completed(
    stuffed: tuple[socket.socket, socket.socket, int],
) -> None:
    """lpCompletionRoutine: "Pointer to the completion routine called when the send operation
    has been completed." (S5.3, S8.6)"""
    a, b, filled = stuffed
    routine = Routines()
    ov = post_pending(a, pattern(50_000), WSAOVERLAPPED(), routine)
    assert SleepEx(0, True) == 0  # not completed: nothing to run
    assert routine.calls == []
    recv_exactly(b, filled + 50_000)
    settle(ov)
    assert SleepEx(GUARD_MS, True) == WAIT_IO_COMPLETION
    assert routine.calls == [(0, 50_000, ov, 0)]


# -- return values ----------------------------------------------------------------------------


def test_r1_immediate_completion_returns_zero(pair: tuple[socket.socket, socket.socket]) -> None:
    """ "If no error occurs and the send operation has completed immediately, this function
    returns zero." (S5.1)"""
    a, b = pair
    sent = DWORD()
    ov = overlapped_with_event()
    assert WSASend(a, [b"now"], 1, sent, 0, ov, None) == 0
    assert ov.completed_immediately
    assert recv_exactly(b, 3) == b"now"


def test_r2_immediate_completion_updates_the_overlapped_and_signals(pair: tuple[socket.socket, socket.socket]) -> None:
    """ "The overlapped structures are updated with the receive results, and the associated
    event is signalled." (S5.1, S5.3)"""
    a, b = pair
    ov = overlapped_with_event()
    assert WSASend(a, [b"12", b"345"], 2, DWORD(), 0, ov, None) == 0
    assert ov.hEvent.is_set()
    cb, flags = DWORD(), DWORD(9)
    assert WSAGetOverlappedResult(a, ov, cb, False, flags) is True
    assert (cb.value, flags.value) == (5, 0)
    assert recv_exactly(b, 5) == b"12345"


def test_r3_ce_does_not_signal_but_we_do(pair: tuple[socket.socket, socket.socket]) -> None:
    """ "In Windows CE, the completion object will not be signalled." The seed contradicts its
    previous sentence; S5.3 follows desktop Winsock: an immediate completion signals the event
    and queues the routine too, so code waiting on either never misses an immediate completion."""
    a, b = pair
    ov = overlapped_with_event()
    assert WSASend(a, [b"a"], 1, DWORD(), 0, ov, None) == 0
    assert WSAWaitForMultipleEvents([ov.hEvent], False, 0, False) == WSA_WAIT_EVENT_0
    routine = Routines()
    assert WSASend(a, [b"b"], 1, DWORD(), 0, WSAOVERLAPPED(), routine) == 0
    assert SleepEx(GUARD_MS, True) == WAIT_IO_COMPLETION
    assert [c[:2] for c in routine.calls] == [(0, 1)]
    assert recv_exactly(b, 2) == b"ab"


def test_r4_errors_return_socket_error_and_set_the_last_error(pair: tuple[socket.socket, socket.socket]) -> None:
    """ "If an error occurs, a value of SOCKET_ERROR is returned, and a specific error code can
    be retrieved by calling WSAGetLastError." (S8.3)"""
    a, _ = pair
    assert WSASend(a, [b"x"], 1, DWORD(), 0x40000, None, None) == SOCKET_ERROR
    assert WSAGetLastError() == WSAEOPNOTSUPP
    assert WSASend(a, [b"x"], 5, DWORD(), 0, None, None) == SOCKET_ERROR
    assert WSAGetLastError() == WSAEFAULT


def test_r5_io_pending_means_initiated_and_completed_later(stuffed: tuple[socket.socket, socket.socket, int]) -> None:
    """ "The error code WSA_IO_PENDING indicates that the overlapped operation has been
    successfully initiated and that completion will be indicated at a later time." (S5.1)"""
    a, b, filled = stuffed
    ov = post_pending(a, pattern(70_000))
    assert ov.pending and not ov.hEvent.is_set()
    assert recv_exactly(b, filled + 70_000)[filled:] == pattern(70_000)
    assert WSAWaitForMultipleEvents([ov.hEvent], False, GUARD_MS, False) == WSA_WAIT_EVENT_0
    cb = DWORD()
    assert WSAGetOverlappedResult(a, ov, cb, False, DWORD()) is True
    assert cb.value == 70_000


def test_r6_other_errors_mean_no_completion_indication(closer: Callable[..., None]) -> None:
    """ "Any other error code indicates that the overlapped operation was not successfully
    initiated and no completion indication will occur." (S5.2)"""
    tx, rx = udp_pair()
    closer(tx, rx)
    ov, routine = overlapped_with_event(), Routines()
    too_big = b"\0" * (max_message_size(tx) + 1)
    assert fails_with(WSASend(tx, [too_big], 1, None, 0, ov, None), WSAEMSGSIZE)
    assert fails_with(WSASend(tx, [too_big], 1, None, 0, WSAOVERLAPPED(), routine), WSAEMSGSIZE)
    assert fails_with(WSASend(tx, [object()], 1, None, 0, ov, None), WSAEFAULT)
    # A later successful send on the socket runs its own routine and nothing else.
    other = Routines()
    assert WSASend(tx, [b"ok"], 1, DWORD(), 0, WSAOVERLAPPED(), other) == 0
    assert SleepEx(GUARD_MS, True) == WAIT_IO_COMPLETION
    assert [c[:2] for c in other.calls] == [(0, 2)]
    assert routine.calls == []
    assert not ov.hEvent.is_set() and not ov.pending
    rx.settimeout(GUARD)
    assert rx.recv(65536) == b"ok"  # nothing of the failed sends went out


# -- the error table --------------------------------------------------------------------------


def test_e01_wsanotinitialised(pair: tuple[socket.socket, socket.socket]) -> None:
    """WSANOTINITIALISED: "A successful WSAStartup call must occur before using this function." (S8.1)"""
    a, b = pair
    assert WSACleanup() == 0
    assert fails_with(WSASend(a, [b"x"], 1, DWORD(), 0, None, None), WSANOTINITIALISED)
    assert fails_with(WSASend(a, [b"x"], 1, None, 0, WSAOVERLAPPED(), None), WSANOTINITIALISED)
    assert recv_available(b) == b""
    WSAStartup(0x0202)
    assert WSASend(a, [b"x"], 1, DWORD(), 0, None, None) == 0


@pytest.mark.parametrize(
    ("err", "code"),
    [
        (errno.ENETDOWN, WSAENETDOWN),
        (errno.ENETRESET, WSAENETRESET),
        (errno.ENOBUFS, WSAENOBUFS),
        (errno.ECONNABORTED, WSAECONNABORTED),
    ],
    ids=["E02-WSAENETDOWN", "E07-WSAENETRESET", "E08-WSAENOBUFS", "E16-WSAECONNABORTED"],
)
def test_e02_e07_e08_e16_network_failures(err: int, code: int, closer: Callable[..., None]) -> None:
    """WSAENETDOWN "The network subsystem has failed.", WSAENETRESET "... broken due to
    keep-alive activity ... while the operation was in progress.", WSAENOBUFS "... buffer
    deadlock.", WSAECONNABORTED "The virtual circuit was terminated ...". Linux will not produce
    these on demand, so a scripted socket raises the errno (S3.3 table)."""
    a, b = scripted_pair([OSError(err, "scripted"), OSError(err, "scripted")])
    closer(a, b)
    assert fails_with(WSASend(a, [b"x"], 1, DWORD(), 0, None, None), code)
    assert fails_with(WSASend(a, [b"x"], 1, None, 0, WSAOVERLAPPED(), None), code)
    # "while the operation was in progress": a pending send fails with it at completion.
    a.script = [BlockingIOError(), OSError(err, "scripted")]
    ov = post_pending(a, b"in progress")
    cb = DWORD(5)
    assert WSAGetOverlappedResult(a, ov, cb, True, DWORD()) is False
    assert WSAGetLastError() == code
    assert cb.value == 0
    assert recv_available(b) == b""


def test_e03_wsaeacces_broadcast_without_so_broadcast(closer: Callable[..., None]) -> None:
    """WSAEACCES: "The requested address is a broadcast address, but the appropriate flag was
    not set." (S3.4) Linux checks SO_BROADCAST when it routes a datagram, which a connected
    socket does on every send under SO_DONTROUTE."""
    s = WSASocket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    assert s is not None
    closer(s)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    s.connect(("127.255.255.255", 9))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_DONTROUTE, 1)
    assert fails_with(WSASend(s, [b"x"], 1, DWORD(), 0, None, None), WSAEACCES)
    assert fails_with(WSASend(s, [b"x"], 1, None, 0, WSAOVERLAPPED(), None), WSAEACCES)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    assert WSASend(s, [b"x"], 1, DWORD(), 0, None, None) == 0  # with the flag set, it goes


def _wait_blocked_in_send(sock: socket.socket) -> None:
    """Wait (hang guard only) until another thread's nonoverlapped send holds the socket."""
    from wsasend import _sync

    deadline = time.monotonic() + GUARD
    while True:
        lock = _sync._IN_PROGRESS.get(sock)
        if lock is not None and lock.locked():
            return
        assert time.monotonic() < deadline, "the blocking send never started"
        time.sleep(0.001)


def test_e04_wsaeintr_socket_closed_under_a_blocking_send(stuffed: tuple[socket.socket, socket.socket, int]) -> None:
    """WSAEINTR: "The socket was closed." A blocking send in one thread, closesocket in another (S3.4)."""
    a, _, _ = stuffed
    results: list[tuple[int, int]] = []

    def blocked() -> None:
        r = WSASend(a, [b"\1" * 1_000_000], 1, DWORD(), 0, None, None)
        results.append((r, WSAGetLastError()))

    thread = threading.Thread(target=blocked)
    thread.start()
    _wait_blocked_in_send(a)
    assert closesocket(a) == 0
    thread.join(GUARD)
    assert results == [(SOCKET_ERROR, WSAEINTR)]


def test_e05_wsaeinprogress_a_blocking_call_is_in_progress(stuffed: tuple[socket.socket, socket.socket, int]) -> None:
    """WSAEINPROGRESS: "A blocking Winsock call is in progress ..." (S3.4)"""
    a, b, filled = stuffed
    results: list[tuple[int, int]] = []

    def blocked() -> None:
        sent = DWORD()
        r = WSASend(a, [pattern(300_000)], 1, sent, 0, None, None)
        results.append((r, sent.value))

    thread = threading.Thread(target=blocked)
    thread.start()
    _wait_blocked_in_send(a)  # nobody reads, so it stays blocked until we do
    assert fails_with(WSASend(a, [b"x"], 1, DWORD(), 0, None, None), WSAEINPROGRESS)
    data = recv_exactly(b, filled + 300_000)
    thread.join(GUARD)
    assert results == [(0, 300_000)]
    assert data[filled:] == pattern(300_000)  # the refused call sent nothing
    assert recv_available(b) == b""


def test_e06_wsaefault_for_each_argument(pair: tuple[socket.socket, socket.socket]) -> None:
    """WSAEFAULT: "The lpBuffers, lpNumberOfBytesSent, lpOverlapped, or lpCompletionRoutine
    argument is not totally contained in a valid part of the user address space." (S2.2, S8.3)"""
    a, b = pair
    sent = DWORD(3)
    cases: list[tuple[str, Callable[[], int]]] = [
        ("lpBuffers: not a list", lambda: WSASend(a, "text", 1, sent, 0, None, None)),
        ("lpBuffers: not bytes-like", lambda: WSASend(a, [b"ok", 42], 2, sent, 0, None, None)),
        ("lpBuffers: not contiguous", lambda: WSASend(a, [memoryview(b"abcd")[::2]], 1, sent, 0, None, None)),
        ("lpNumberOfBytesSent: None", lambda: WSASend(a, [b"x"], 1, None, 0, None, None)),
        ("lpNumberOfBytesSent: an int", lambda: WSASend(a, [b"x"], 1, 0, 0, None, None)),
        ("lpNumberOfBytesSent: NULL", lambda: WSASend(a, [b"x"], 1, ctypes.POINTER(DWORD)(), 0, None, None)),
        ("lpOverlapped: not one", lambda: WSASend(a, [b"x"], 1, sent, 0, object(), None)),  # type: ignore[arg-type]
        ("lpCompletionRoutine: not callable", lambda: WSASend(a, [b"x"], 1, sent, 0, WSAOVERLAPPED(), 7)),  # type: ignore[arg-type]
    ]
    for what, call in cases:
        assert fails_with(call(), WSAEFAULT), what
    assert sent.value == 3
    assert recv_available(b) == b""  # nothing of any of them was sent


def test_e09_wsaenotconn(closer: Callable[..., None]) -> None:
    """WSAENOTCONN: "The socket is not connected." (S3.3: ENOTCONN, EDESTADDRREQ)"""
    tcp = WSASocket(socket.AF_INET, socket.SOCK_STREAM, 0)
    udp = WSASocket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    assert tcp is not None and udp is not None
    closer(tcp, udp)
    for s in (tcp, udp):
        assert fails_with(WSASend(s, [b"x"], 1, DWORD(), 0, None, None), WSAENOTCONN)
        assert fails_with(WSASend(s, [b"x"], 1, None, 0, overlapped_with_event(), None), WSAENOTCONN)


def test_e10_wsaenotsock(pair: tuple[socket.socket, socket.socket]) -> None:
    """WSAENOTSOCK: "The descriptor is not a socket." (S3.4: a closed socket, or not a socket)"""
    a, _ = pair
    assert closesocket(a) == 0
    assert fails_with(WSASend(a, [b"x"], 1, DWORD(), 0, None, None), WSAENOTSOCK)
    assert fails_with(WSASend(a, [b"x"], 1, None, 0, WSAOVERLAPPED(), None), WSAENOTSOCK)
    with open(__file__, "rb") as not_a_socket:
        assert fails_with(WSASend(not_a_socket, [b"x"], 1, DWORD(), 0, None, None), WSAENOTSOCK)  # type: ignore[arg-type]


def test_e11_wsaeopnotsupp(closer: Callable[..., None]) -> None:
    """WSAEOPNOTSUPP: "MSG_OOB was specified, but the socket is not stream style ..., MSG_PARTIAL
    is not supported, or the socket is unidirectional ..." (S4.1, S4.4). Linux has no
    send-disabled-by-design sockets, so the last clause has no trigger here (docs/conformance.md)."""
    tx, rx = udp_pair()
    a, b = socket.socketpair()
    closer(tx, rx, a, b)
    assert fails_with(WSASend(tx, [b"x"], 1, DWORD(), MSG_OOB, None, None), WSAEOPNOTSUPP)
    assert fails_with(WSASend(tx, [b"x"], 1, None, MSG_OOB, WSAOVERLAPPED(), None), WSAEOPNOTSUPP)
    assert fails_with(WSASend(a, [b"x"], 1, DWORD(), MSG_PARTIAL, None, None), WSAEOPNOTSUPP)
    assert fails_with(WSASend(a, [b"x"], 1, None, MSG_PARTIAL, WSAOVERLAPPED(), None), WSAEOPNOTSUPP)
    assert fails_with(WSASend(a, [b"x"], 1, DWORD(), 0x20, None, None), WSAEOPNOTSUPP)  # an unknown flag
    assert recv_available(b) == b""
    rx.setblocking(False)
    with pytest.raises(BlockingIOError):
        rx.recv(10)


@pytest.mark.parametrize("how", [SD_SEND, SD_BOTH], ids=["SD_SEND", "SD_BOTH"])
def test_e12_wsaeshutdown(how: int, pair: tuple[socket.socket, socket.socket]) -> None:
    """WSAESHUTDOWN: "It is not possible to call WSASend on a socket after shutdown has been
    invoked with how set to SD_SEND or SD_BOTH." (S3.3, S8.2)"""
    a, b = pair
    assert shutdown(a, how) == 0
    assert fails_with(WSASend(a, [b"x"], 1, DWORD(), 0, None, None), WSAESHUTDOWN)
    assert fails_with(WSASend(a, [b"x"], 1, None, 0, overlapped_with_event(), None), WSAESHUTDOWN)
    assert recv_all(b) == b""


def test_e13_wsaewouldblock_overlapped_too_many_outstanding(
    stuffed: tuple[socket.socket, socket.socket, int],
) -> None:
    """WSAEWOULDBLOCK: "For overlapped sockets, there are too many outstanding overlapped I/O
    requests." (S5.6; the bound is set low here with ``wsasend.set_max_pending``)"""
    a, b, filled = stuffed
    set_max_pending(a, 2)
    first, second = post_pending(a, b"1" * 10), post_pending(a, b"2" * 10)
    third = overlapped_with_event()
    assert fails_with(WSASend(a, [b"3" * 10], 1, None, 0, third, None), WSAEWOULDBLOCK)
    assert recv_exactly(b, filled + 20)[filled:] == b"1" * 10 + b"2" * 10
    settle(first, second)
    assert not third.hEvent.is_set()
    assert WSASend(a, [b"3" * 10], 1, DWORD(), 0, third, None) == 0  # room again
    assert recv_exactly(b, 10) == b"3" * 10


def test_e13_wsaewouldblock_nonoverlapped_nonblocking(stuffed: tuple[socket.socket, socket.socket, int]) -> None:
    """WSAEWOULDBLOCK: "For nonoverlapped sockets, the socket is marked as nonblocking and the
    send operation cannot be completed immediately." (S4.2)"""
    a, b, filled = stuffed
    a.setblocking(False)
    sent = DWORD(4)
    assert fails_with(WSASend(a, [b"x" * 100], 1, sent, 0, None, None), WSAEWOULDBLOCK)
    assert sent.value == 4
    assert len(recv_exactly(b, filled)) == filled
    assert recv_available(b) == b""


def test_e14_wsaemsgsize(closer: Callable[..., None]) -> None:
    """WSAEMSGSIZE: "The socket is message-oriented, and the message is larger than the maximum
    supported by the underlying transport." (S4.3)"""
    tx, rx = udp_pair()
    closer(tx, rx)
    limit = max_message_size(tx)
    half = b"\0" * (limit // 2 + 1)
    assert fails_with(WSASend(tx, [half, half], 2, DWORD(), 0, None, None), WSAEMSGSIZE)
    assert fails_with(WSASend(tx, [half, half], 2, None, 0, overlapped_with_event(), None), WSAEMSGSIZE)
    assert WSASend(tx, [b"small"], 1, DWORD(), 0, None, None) == 0
    rx.settimeout(GUARD)
    assert rx.recv(65536) == b"small"


def test_e15_wsaeinval(closer: Callable[..., None]) -> None:
    """WSAEINVAL: "The socket has not been bound with bind (Windows Sockets) or the socket is not
    created with the overlapped flag." The second clause: S8.3. The first: a send on a socket
    with no address and no peer is WSAENOTCONN on Linux (it binds on demand), see e09; what we
    report as WSAEINVAL besides is a bad ``how``, flags that are not an int, and S5.5."""
    s = WSASocket(socket.AF_UNIX, socket.SOCK_STREAM, 0, None, 0, 0)
    a, b = socket.socketpair()
    assert s is not None
    closer(s, a, b)
    assert fails_with(WSASend(s, [b"x"], 1, None, 0, WSAOVERLAPPED(), None), WSAEINVAL)
    assert fails_with(WSASend(a, [b"x"], 1, DWORD(), "0", None, None), WSAEINVAL)  # type: ignore[arg-type]
    assert fails_with(shutdown(a, 3), WSAEINVAL)
    assert recv_available(b) == b""


def test_e17_wsaeconnreset(closer: Callable[..., None]) -> None:
    """WSAECONNRESET: "The virtual circuit was reset by the remote side." (S3.3, S6.3)"""
    client, server = tcp_pair()
    closer(client, server)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")  # l_onoff=1, l_linger=0
    server.close()  # RST
    deadline = time.monotonic() + GUARD
    while WSASend(client, [b"x"], 1, DWORD(), 0, None, None) == 0:  # until the RST has landed
        assert time.monotonic() < deadline
        time.sleep(0.001)
    assert WSAGetLastError() == WSAECONNRESET
    assert fails_with(WSASend(client, [b"x"], 1, None, 0, WSAOVERLAPPED(), None), WSAECONNRESET)


def test_e17_wsaeconnreset_fails_a_pending_send(closer: Callable[..., None]) -> None:
    """WSAECONNRESET on a send in progress: it completes with the code and its exact count (S6.3)."""
    client, server = tcp_pair(bufsize=SMALL_BUF)
    closer(client, server)
    filled = fill_socket(client)
    ov = post_pending(client, pattern(200_000))
    server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
    server.close()
    cb = DWORD(99)
    assert WSAGetOverlappedResult(client, ov, cb, True, DWORD()) is False
    assert WSAGetLastError() == WSAECONNRESET
    assert cb.value == ov.transferred < 200_000
    assert filled > 0


def test_e18_wsa_io_pending(stuffed: tuple[socket.socket, socket.socket, int]) -> None:
    """WSA_IO_PENDING: "An overlapped operation was successfully initiated and completion will
    be indicated at a later time." (S5.1)"""
    a, b, filled = stuffed
    sent = DWORD(1)
    ov = overlapped_with_event()
    assert WSASend(a, [b"later"], 1, sent, 0, ov, None) == SOCKET_ERROR
    assert WSAGetLastError() == WSA_IO_PENDING
    assert sent.value == 1
    assert recv_exactly(b, filled + 5)[filled:] == b"later"
    assert WSAGetOverlappedResult(a, ov, sent, True, DWORD()) is True
    assert sent.value == 5


def test_e19_wsa_operation_aborted(stuffed: tuple[socket.socket, socket.socket, int]) -> None:
    """WSA_OPERATION_ABORTED: "The overlapped operation has been canceled due to the closure of
    the socket." (S6.1)"""
    a, _, _ = stuffed
    ov, routine = overlapped_with_event(), Routines()
    post_pending(a, b"never", ov)
    ov2 = post_pending(a, b"never either", WSAOVERLAPPED(), routine)
    assert closesocket(a) == 0
    assert ov.hEvent.is_set()
    cb = DWORD(7)
    assert WSAGetOverlappedResult(a, ov, cb, False, DWORD()) is False
    assert WSAGetLastError() == WSA_OPERATION_ABORTED
    assert cb.value == 0
    settle(ov2)
    assert SleepEx(GUARD_MS, True) == WAIT_IO_COMPLETION
    assert routine.calls == [(WSA_OPERATION_ABORTED, 0, ov2, 0)]


# -- remarks ----------------------------------------------------------------------------------


def test_k1_overlapped_send_operations(stuffed: tuple[socket.socket, socket.socket, int]) -> None:
    """ "It can be used in conjunction with overlapped sockets to perform overlapped send
    operations." The call returns while the send is still in progress (S5)."""
    a, b, filled = stuffed
    ovs = [post_pending(a, pattern(30_000, seed=i)) for i in range(3)]
    assert all(ov.pending for ov in ovs)
    data = recv_exactly(b, filled + 90_000)[filled:]
    assert data == b"".join(pattern(30_000, seed=i) for i in range(3))
    assert WSAWaitForMultipleEvents([ov.hEvent for ov in ovs], True, GUARD_MS, False) == WSA_WAIT_EVENT_0


def test_k2_scatter_gather(pair: tuple[socket.socket, socket.socket]) -> None:
    """ "It allows multiple send buffers to be specified making it applicable to the
    scatter/gather type of I/O." Any number of buffers, even past IOV_MAX (S2.3)."""
    a, b = pair
    bufs = [WSABUF(3, pattern(3, seed=i)) for i in range(2500)]
    expected = b"".join(buf.buf for buf in bufs)
    reader = Reader(b, len(expected))
    sent = DWORD()
    assert WSASend(a, bufs, len(bufs), sent, 0, None, None) == 0
    assert sent.value == len(expected)
    ov = overlapped_with_event()
    r = WSASend(a, bufs, len(bufs), None, 0, ov, None)
    assert r == 0 or WSAGetLastError() == WSA_IO_PENDING
    assert reader.join() == expected
    assert recv_exactly(b, len(expected)) == expected
    assert WSAGetOverlappedResult(a, ov, sent, True, DWORD()) is True
    assert sent.value == len(expected)


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6], ids=["v4", "v6"])
def test_k3_connected_datagram_socket(family: int, closer: Callable[..., None]) -> None:
    """ "It can also be used, however, on connectionless sockets that have a stipulated default
    peer address established through the connect ... function." One send, one datagram (S4.3)."""
    tx, rx = udp_pair(family)
    closer(tx, rx)
    rx.settimeout(GUARD)
    sent = DWORD()
    assert WSASend(tx, [b"one ", WSABUF(3, b"two!"), b" three"], 3, sent, 0, None, None) == 0
    assert sent.value == 13
    assert rx.recv(65536) == b"one two three"
    ov = overlapped_with_event()
    assert WSASend(tx, [b"a", b"b"], 2, sent, 0, ov, None) == 0
    assert rx.recv(65536) == b"ab"


def test_k4_overlapped_socket_with_neither_is_nonoverlapped(closer: Callable[..., None]) -> None:
    """ "For overlapped sockets (created using WSASocket with the WSA_FLAG_OVERLAPPED flag),
    sending information uses overlapped I/O unless both lpOverlapped and lpCompletionRoutine are
    NULL. In that case, the socket is treated as a nonoverlapped socket." Also: "If both
    lpOverlapped and lpCompletionRoutine are NULL, the socket in this function will be treated
    as a nonoverlapped socket." (S4.2)"""
    s, peer = wsasocket_pair(WSA_FLAG_OVERLAPPED, closer)
    filled = fill_socket(s)
    reader = Reader(peer, filled + 500_000)
    sent = DWORD()
    # The buffer is full, yet the call neither pends nor fails: it blocks until it is done.
    assert WSASend(s, [pattern(500_000)], 1, sent, 0, None, None) == 0
    assert sent.value == 500_000
    assert reader.join()[filled:] == pattern(500_000)


def test_k5_completion_when_the_buffers_have_been_consumed(stuffed: tuple[socket.socket, socket.socket, int]) -> None:
    """ "A completion indication will occur, invoking the completion of a routine or setting of
    an event object, when the supplied buffers have been consumed by the transport." (S5.3)"""
    a, b, filled = stuffed
    routine = Routines()
    ov_event = post_pending(a, pattern(40_000, seed=1))
    ov_routine = post_pending(a, pattern(40_000, seed=2), WSAOVERLAPPED(), routine)
    # Nothing consumed yet: no indication of either kind.
    assert not ov_event.hEvent.is_set()
    assert SleepEx(0, True) == 0
    assert routine.calls == []
    data = recv_exactly(b, filled + 80_000)[filled:]
    assert data == pattern(40_000, seed=1) + pattern(40_000, seed=2)
    assert WSAWaitForMultipleEvents([ov_event.hEvent], False, GUARD_MS, False) == WSA_WAIT_EVENT_0
    settle(ov_routine)
    assert SleepEx(GUARD_MS, True) == WAIT_IO_COMPLETION
    assert routine.calls == [(0, 40_000, ov_routine, 0)]


def test_k6_final_status_through_the_routine_or_get_overlapped_result(
    stuffed: tuple[socket.socket, socket.socket, int],
) -> None:
    """ "If the operation does not complete immediately, the final completion status is
    retrieved through the completion routine or WSAGetOverlappedResult." (S5.3, S8.5)"""
    a, b, filled = stuffed
    routine = Routines()
    ov1 = post_pending(a, b"one")
    ov2 = post_pending(a, b"two!", WSAOVERLAPPED(), routine)
    recv_exactly(b, filled + 7)
    cb, flags = DWORD(), DWORD(1)
    assert WSAGetOverlappedResult(a, ov1, cb, True, flags) is True
    assert (cb.value, flags.value) == (3, 0)
    settle(ov2)
    assert SleepEx(GUARD_MS, True) == WAIT_IO_COMPLETION
    assert routine.calls == [(0, 4, ov2, 0)]
    # The routine's send can be polled too (without waiting).
    assert WSAGetOverlappedResult(a, ov2, cb, False, flags) is True
    assert cb.value == 4


def test_k7_nonoverlapped_socket_has_send_semantics(closer: Callable[..., None]) -> None:
    """ "For nonoverlapped sockets, the last two parameters (lpOverlapped and
    lpCompletionRoutine) are ignored and WSASend adopts the same blocking semantics as send." (S4.2)"""
    s, peer = wsasocket_pair(0, closer)
    filled = fill_socket(s)
    reader = Reader(peer, filled + 300_000)
    sent = DWORD()
    assert WSASend(s, [pattern(100_000), pattern(200_000, 5)], 2, sent, 0, None, None) == 0
    assert sent.value == 300_000
    assert reader.join()[filled:] == pattern(100_000) + pattern(200_000, 5)


def test_k8_nonoverlapped_data_is_copied(pair: tuple[socket.socket, socket.socket]) -> None:
    """ "Data is copied from the supplied buffers into the transport's buffer." Once a
    nonoverlapped WSASend returned, the caller may reuse its buffer (S4.2)."""
    a, b = pair
    buf = bytearray(b"first")
    assert WSASend(a, [buf], 1, DWORD(), 0, None, None) == 0
    buf[:] = b"XXXXX"
    buf.extend(b"resizable again")
    assert recv_exactly(b, 5) == b"first"


def test_k9_nonblocking_stream_consumes_part(pair: tuple[socket.socket, socket.socket]) -> None:
    """ "If the socket is nonblocking and stream-oriented, and there is not sufficient space in
    the transport's buffer, WSASend will return with only part of the application's buffers
    having been consumed." (S4.2)"""
    a, b = pair
    a.setblocking(False)
    payload = [pattern(1_000_000, seed=3), pattern(1_000_000, seed=4)]
    sent = DWORD()
    assert WSASend(a, payload, 2, sent, 0, None, None) == 0
    assert 0 < sent.value < 2_000_000
    assert recv_exactly(b, sent.value) == (payload[0] + payload[1])[: sent.value]
    assert recv_available(b) == b""


def test_k10_blocking_socket_blocks_until_all_consumed(pair: tuple[socket.socket, socket.socket]) -> None:
    """ "Given the same buffer situation and a blocking socket, WSASend will block until all of
    the application's buffer contents have been consumed." (S4.2)"""
    a, b = pair
    payload = [pattern(1_000_000, seed=3), pattern(1_000_000, seed=4)]
    reader = Reader(b, 2_000_000)
    sent = DWORD()
    assert WSASend(a, payload, 2, sent, 0, None, None) == 0
    assert sent.value == 2_000_000
    assert reader.join() == payload[0] + payload[1]


def test_k11_the_wsabuf_array_is_transient(stuffed: tuple[socket.socket, socket.socket, int]) -> None:
    """ "The array of WSABUF structures pointed to by the lpBuffers parameter is transient. If
    this operation is completed in an overlapped manner, it is the service provider's
    responsibility to capture these WSABUF structures before returning from this call. This
    enables applications to build stack-based WSABUF arrays." (S2.1)"""
    a, b, filled = stuffed
    head, body = b"HEAD", pattern(60_000)
    array = [WSABUF(len(head), head), WSABUF(len(body), body)]
    ov = overlapped_with_event()
    assert fails_with(WSASend(a, array, 2, None, 0, ov, None), WSA_IO_PENDING)
    # The "stack frame" is reused at once: the array and its structures are rewritten.
    array[0].len, array[0].buf = 1, b"!"
    array[1].len = 0
    array.clear()
    array.append(WSABUF(5, b"junk!"))
    assert recv_exactly(b, filled + 60_004)[filled:] == head + body
    assert WSAGetOverlappedResult(a, ov, (cb := DWORD()), True, DWORD()) is True
    assert cb.value == 60_004


def test_k12_maximum_message_size(closer: Callable[..., None]) -> None:
    """ "For message-oriented sockets, care must be taken not to exceed the maximum message size
    of the underlying provider, which can be obtained by getting the value of socket option
    SO_MAX_MSG_SIZE." Our SO_MAX_MSG_SIZE is ``wsasend.max_message_size`` (S1, S4.3)."""
    for family, limit in ((socket.AF_INET, 65507), (socket.AF_INET6, 65527)):
        tx, rx = udp_pair(family)
        closer(tx, rx)
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        assert max_message_size(tx) == limit
        sent = DWORD()
        assert WSASend(tx, [b"\1" * (limit - 10), b"\2" * 10], 2, sent, 0, None, None) == 0
        assert sent.value == limit
        rx.settimeout(GUARD)
        assert len(rx.recv(1 << 17)) == limit
        assert fails_with(WSASend(tx, [b"\1" * (limit + 1)], 1, sent, 0, None, None), WSAEMSGSIZE)


def test_k13_too_long_is_emsgsize_and_nothing_is_transmitted(closer: Callable[..., None]) -> None:
    """ "If the data is too long to pass atomically through the underlying protocol the error
    WSAEMSGSIZE is returned and no data is transmitted." (S4.3, S4.4)"""
    tx, rx = udp_pair()
    closer(tx, rx)
    limit = max_message_size(tx)
    # A MSG_PARTIAL message that grows too long: the final piece fails, and so does every
    # earlier piece of the message; nothing of it is transmitted.
    piece = WSAOVERLAPPED()
    piece.hEvent = WSACreateEvent()
    assert fails_with(WSASend(tx, [b"\0" * (limit - 5)], 1, None, MSG_PARTIAL, piece, None), WSA_IO_PENDING)
    assert fails_with(WSASend(tx, [b"\0" * 10], 1, None, 0, overlapped_with_event(), None), WSAEMSGSIZE)
    assert piece.hEvent.is_set()
    assert WSAGetOverlappedResult(tx, piece, DWORD(), False, DWORD()) is False
    assert WSAGetLastError() == WSAEMSGSIZE
    assert fails_with(WSASend(tx, [b"\0" * (limit + 1)], 1, DWORD(), 0, None, None), WSAEMSGSIZE)
    assert WSASend(tx, [b"next"], 1, DWORD(), 0, None, None) == 0
    rx.settimeout(GUARD)
    assert rx.recv(1 << 17) == b"next"


def test_k14_completion_does_not_mean_delivery(closer: Callable[..., None]) -> None:
    """ "Note The successful completion of a WSASend call does not indicate that the data was
    successfully delivered." A datagram to a port nobody listens on completes all the same (SPEC
    vocabulary: *consumed* never means delivered)."""
    tx, rx = udp_pair()
    closer(tx, rx)
    rx.close()  # nobody will ever receive it
    sent = DWORD()
    assert WSASend(tx, [b"into the void"], 1, sent, 0, None, None) == 0
    assert sent.value == 13
    ov = overlapped_with_event()
    # (The first send's ICMP port-unreachable may be waiting; S3.3 retries past it.)
    assert WSASend(tx, [b"again"], 1, sent, 0, ov, None) == 0
    assert WSAGetOverlappedResult(tx, ov, sent, False, DWORD()) is True
    assert sent.value == 5


# -- dwFlags ----------------------------------------------------------------------------------


def test_f1_flags_modify_the_call(closer: Callable[..., None]) -> None:
    """ "The dwFlags parameter can be used to influence the behavior of the function invocation
    beyond the options specified for the associated socket." MSG_OOB: the last byte is urgent (S4.1)."""
    client, server = tcp_pair()
    closer(client, server)
    assert WSASend(client, [b"norm", b"al!"], 2, DWORD(), MSG_OOB, None, None) == 0
    server.settimeout(GUARD)
    deadline = time.monotonic() + GUARD
    while True:
        try:
            urgent = server.recv(1, socket.MSG_OOB)
            break
        except (BlockingIOError, OSError):  # EINVAL until the urgent data has arrived
            assert time.monotonic() < deadline
            time.sleep(0.001)
    assert urgent == b"!"
    assert recv_exactly(server, 6) == b"normal"


def test_f2_msg_dontroute_is_honoured(closer: Callable[..., None]) -> None:
    """ "MSG_DONTROUTE: The MSG_DONROUTE flag is not supported by the default Windows CE service
    provider." S4.1 goes beyond CE: it is passed to Linux, which honours it (loopback is
    directly reachable, so the send succeeds; for a use that changes the outcome see e03)."""
    client, server = tcp_pair()
    closer(client, server)
    sent = DWORD()
    assert WSASend(client, [b"direct"], 1, sent, MSG_DONTROUTE, None, None) == 0
    assert WSASend(client, [b"!"], 1, None, MSG_DONTROUTE, overlapped_with_event(), None) == 0
    assert recv_exactly(server, 7) == b"direct!"


def test_f3_msg_partial_builds_one_message(closer: Callable[..., None]) -> None:
    """ "MSG_PARTIAL: Specifies that lpBuffers only contains a partial message." On message
    sockets the pieces accumulate, in order, into ONE datagram (S4.4, S4.5)."""
    tx, rx = udp_pair()
    closer(tx, rx)
    rx.settimeout(GUARD)
    sent = DWORD()
    # Nonoverlapped: each piece returns its own length; the datagram leaves with the last.
    assert WSASend(tx, [b"he", b"ad|"], 2, sent, MSG_PARTIAL, None, None) == 0
    assert sent.value == 5
    assert WSASend(tx, [b"body|"], 1, sent, MSG_PARTIAL, None, None) == 0
    assert WSASend(tx, [b"end"], 1, sent, 0, None, None) == 0
    assert rx.recv(65536) == b"head|body|end"
    # Overlapped: the pieces stay pending (not copied) and complete with the final piece.
    p1, p2, last = overlapped_with_event(), overlapped_with_event(), overlapped_with_event()
    assert fails_with(WSASend(tx, [b"A"], 1, None, MSG_PARTIAL, p1, None), WSA_IO_PENDING)
    assert fails_with(WSASend(tx, [b"BB"], 1, None, MSG_PARTIAL, p2, None), WSA_IO_PENDING)
    assert not p1.hEvent.is_set()
    r = WSASend(tx, [b"CCC"], 1, None, 0, last, None)
    assert r == 0 or WSAGetLastError() == WSA_IO_PENDING
    assert rx.recv(65536) == b"ABBCCC"
    events = [p1.hEvent, p2.hEvent, last.hEvent]
    assert WSAWaitForMultipleEvents(events, True, GUARD_MS, False) == WSA_WAIT_EVENT_0
    assert [ov.transferred for ov in (p1, p2, last)] == [1, 2, 3]


def test_f4_msg_partial_unsupported_on_streams(pair: tuple[socket.socket, socket.socket]) -> None:
    """ "Note that the error code WSAEOPNOTSUPP will be returned by transports that do not
    support partial message transmissions." A stream has no messages (S4.4)."""
    a, b = pair
    assert fails_with(WSASend(a, [b"x"], 1, DWORD(), MSG_PARTIAL, None, None), WSAEOPNOTSUPP)
    assert fails_with(WSASend(a, [b"x"], 1, None, MSG_PARTIAL, overlapped_with_event(), None), WSAEOPNOTSUPP)
    assert recv_available(b) == b""


# -- overlapped socket I/O --------------------------------------------------------------------


def test_o1_routines_run_in_the_posting_thread_not_a_thread_per_call(
    stuffed: tuple[socket.socket, socket.socket, int],
) -> None:
    """ "Because Windows CE does not support asynchronous procedure calls (APCs), which occur in
    the calling thread, the OS has to spin a thread for each call that specifies a completion
    routine." We do support them: every routine runs in the thread that posted it, and no
    thread is made per call (S8.6)."""
    a, b, filled = stuffed
    threads_before = threading.active_count()
    routine = Routines()
    ovs = [post_pending(a, pattern(1000, seed=i), WSAOVERLAPPED(), routine) for i in range(50)]
    assert threading.active_count() == threads_before
    recv_exactly(b, filled + 50_000)
    settle(*ovs)
    assert SleepEx(GUARD_MS, True) == WAIT_IO_COMPLETION
    assert [call[2] for call in routine.calls] == ovs
    assert set(routine.threads) == {threading.get_ident()}


def test_o2_immediate_overlapped_returns_zero_and_the_count(pair: tuple[socket.socket, socket.socket]) -> None:
    """ "If an overlapped operation completes immediately, WSASend returns a value of zero and
    the lpNumberOfBytesSent parameter is updated with the number of bytes sent." (S5.1)"""
    a, b = pair
    sent = DWORD()
    assert WSASend(a, [b"abc", b"de"], 2, sent, 0, overlapped_with_event(), None) == 0
    assert sent.value == 5
    assert WSASend(a, [b"fgh"], 1, sent, 0, None, Routines()) == 0
    assert sent.value == 3
    assert recv_exactly(b, 8) == b"abcdefgh"


def test_o3_pending_does_not_update_bytes_sent(stuffed: tuple[socket.socket, socket.socket, int]) -> None:
    """ "If the overlapped operation is successfully initiated and will complete later, WSASend
    returns SOCKET_ERROR and indicates error code WSA_IO_PENDING. In this case,
    lpNumberOfBytesSent is not updated." (S5.1, S8.3)"""
    a, b, filled = stuffed
    sent = DWORD(0xABCD)
    ov = overlapped_with_event()
    assert WSASend(a, [b"pending"], 1, sent, 0, ov, None) == SOCKET_ERROR
    assert WSAGetLastError() == WSA_IO_PENDING
    recv_exactly(b, filled + 7)
    assert WSAGetOverlappedResult(a, ov, DWORD(), True, DWORD()) is True
    assert sent.value == 0xABCD  # not even after completion


def test_o4_transferred_through_routine_or_get_overlapped_result(
    stuffed: tuple[socket.socket, socket.socket, int],
) -> None:
    """ "When the overlapped operation completes, the amount of data transferred is indicated
    either through the cbTransferred parameter in the completion routine (if specified) or
    through the lpcbTransfer parameter in WSAGetOverlappedResult." (S5.3)"""
    a, b, filled = stuffed
    routine = Routines()
    by_routine = post_pending(a, pattern(12_345), WSAOVERLAPPED(), routine)
    by_result = post_pending(a, pattern(54_321))
    recv_exactly(b, filled + 12_345 + 54_321)
    cb = DWORD()
    assert WSAGetOverlappedResult(a, by_result, cb, True, DWORD()) is True
    assert cb.value == 54_321
    settle(by_routine)
    assert SleepEx(GUARD_MS, True) == WAIT_IO_COMPLETION
    assert routine.calls[0][1] == 12_345


def test_o5_wsasend_from_a_completion_routine(stuffed: tuple[socket.socket, socket.socket, int]) -> None:
    """ "The WSASend function can be called from within the completion routine of a previous
    WSARecv, WSARecvFrom, WSASend, or WSASendTo function." (S5.3) Each routine posts the next
    send; the new send's routine is queued, not run inside the one that posted it."""
    a, b, filled = stuffed
    depth, max_depth, order = [0], [0], []
    chunks = [pattern(20_000, seed=i) for i in range(5)]

    def routine(error: int, transferred: int, ov: WSAOVERLAPPED, flags: int) -> None:
        depth[0] += 1
        max_depth[0] = max(max_depth[0], depth[0])
        order.append((error, transferred))
        if len(order) < len(chunks):
            r = WSASend(a, [chunks[len(order)]], 1, DWORD(), 0, WSAOVERLAPPED(), routine)
            assert r == 0 or WSAGetLastError() == WSA_IO_PENDING
        depth[0] -= 1

    post_pending(a, chunks[0], WSAOVERLAPPED(), routine)
    reader = Reader(b, filled + 100_000)
    deadline = time.monotonic() + GUARD
    while len(order) < len(chunks):
        assert time.monotonic() < deadline
        SleepEx(GUARD_MS, True)
    assert reader.join()[filled:] == b"".join(chunks)
    assert order == [(0, 20_000)] * 5
    assert max_depth[0] == 1


def test_o6_the_overlapped_stays_valid_for_the_operation(stuffed: tuple[socket.socket, socket.socket, int]) -> None:
    """ "The lpOverlapped parameter must be valid for the duration of the overlapped operation."
    In Python the package keeps it alive (the caller may drop it) and refuses changes to its
    hEvent while it is pending (S5.5)."""
    a, b, filled = stuffed
    routine = Routines()
    post_pending(a, b"kept alive", WSAOVERLAPPED(), routine)  # no reference kept
    gc.collect()
    held = post_pending(a, b"!")
    with pytest.raises(OSError) as info:
        held.hEvent = WSACreateEvent()
    assert isinstance(info.value, WSAError)
    assert info.value.winerror == WSAEINVAL
    recv_exactly(b, filled + 11)
    settle(held)
    assert SleepEx(GUARD_MS, True) == WAIT_IO_COMPLETION
    [(error, transferred, ov, _)] = routine.calls
    assert (error, transferred, ov.transferred) == (0, 10, 10)


def test_o7_each_outstanding_operation_needs_its_own_overlapped(
    stuffed: tuple[socket.socket, socket.socket, int],
) -> None:
    """ "If multiple I/O operations are simultaneously outstanding, each must reference a
    separate WSAOVERLAPPED structure." (S5.5: reusing a pending one is WSAEINVAL, nothing sent;
    a completed one may be reused.)"""
    a, b, filled = stuffed
    ov = post_pending(a, b"first")
    assert fails_with(WSASend(a, [b"second"], 1, None, 0, ov, None), WSAEINVAL)
    assert fails_with(WSASend(a, [b"second"], 1, None, 0, ov, Routines()), WSAEINVAL)
    assert recv_exactly(b, filled + 5)[filled:] == b"first"
    assert WSAGetOverlappedResult(a, ov, DWORD(), True, DWORD()) is True
    sent = DWORD()
    assert WSASend(a, [b"reused"], 1, sent, 0, ov, None) == 0
    assert ov.transferred == sent.value == 6
    assert recv_exactly(b, 6) == b"reused"
    assert recv_available(b) == b""


def test_o8_event_signalled_without_a_routine(stuffed: tuple[socket.socket, socket.socket, int]) -> None:
    """ "If the lpCompletionRoutine parameter is NULL, the hEvent parameter of lpOverlapped is
    signaled when the overlapped operation completes if it contains a valid event object
    handle." (S5.3) Without a valid event there is nothing to signal, and the send still completes."""
    a, b, filled = stuffed
    with_event = post_pending(a, b"evt")
    without = post_pending(a, b"none", WSAOVERLAPPED())
    assert without.hEvent is None
    recv_exactly(b, filled + 7)
    assert WSAWaitForMultipleEvents([with_event.hEvent], False, GUARD_MS, False) == WSA_WAIT_EVENT_0
    assert WSAGetOverlappedResult(a, without, (cb := DWORD()), True, DWORD()) is True
    assert cb.value == 4


def test_o9_get_overlapped_result_polls_or_waits(stuffed: tuple[socket.socket, socket.socket, int]) -> None:
    """ "An application can use WSAGetOverlappedResult to wait or poll on the event object." (S8.5)"""
    a, b, filled = stuffed
    ov = post_pending(a, pattern(80_000))
    cb = DWORD(42)
    assert WSAGetOverlappedResult(a, ov, cb, False, DWORD()) is False
    assert WSAGetLastError() == WSA_IO_INCOMPLETE
    assert cb.value == 42
    reader = Reader(b, filled + 80_000)
    assert WSAGetOverlappedResult(a, ov, cb, True, DWORD()) is True
    assert cb.value == 80_000
    assert reader.join()[filled:] == pattern(80_000)


def test_o10_with_a_routine_hevent_is_context(stuffed: tuple[socket.socket, socket.socket, int]) -> None:
    """ "If lpCompletionRoutine is not NULL, the hEvent parameter is ignored and can be used by
    the application to pass context information to the completion routine." (S5.3)"""
    a, b, filled = stuffed
    with_context, with_event = WSAOVERLAPPED(), WSAOVERLAPPED()
    with_context.hEvent = {"request": 7}
    with_event.hEvent = WSACreateEvent()
    seen: list[object] = []

    def routine(error: int, transferred: int, ov: WSAOVERLAPPED, flags: int) -> None:
        seen.append(ov.hEvent)

    post_pending(a, b"ctx", with_context, routine)
    post_pending(a, b"evt", with_event, routine)
    recv_exactly(b, filled + 6)
    settle(with_context, with_event)
    assert SleepEx(GUARD_MS, True) == WAIT_IO_COMPLETION
    assert seen == [{"request": 7}, with_event.hEvent]
    assert not with_event.hEvent.is_set()  # ignored: not signalled


def test_o11_no_fwait_with_a_completion_routine(stuffed: tuple[socket.socket, socket.socket, int]) -> None:
    """ "A caller that passes a non-NULL lpCompletionRoutine parameter and later calls
    WSAGetOverlappedResult for the same overlapped I/O request may not set the fWait parameter
    for that invocation of WSAGetOverlappedResult to TRUE." (S8.5: WSAEINVAL)"""
    a, b, filled = stuffed
    ov = post_pending(a, b"routine", WSAOVERLAPPED(), Routines())
    assert WSAGetOverlappedResult(a, ov, DWORD(), True, DWORD()) is False
    assert WSAGetLastError() == WSAEINVAL
    assert WSAGetOverlappedResult(a, ov, DWORD(), False, DWORD()) is False
    assert WSAGetLastError() == WSA_IO_INCOMPLETE
    recv_exactly(b, filled + 7)
    settle(ov)
    assert WSAGetOverlappedResult(a, ov, (cb := DWORD()), False, DWORD()) is True
    assert cb.value == 7


def test_o12_completion_routines_are_not_nested(stuffed: tuple[socket.socket, socket.socket, int]) -> None:
    """ "The transport providers allow an application to invoke send and receive operations from
    within the context of the socket I/O completion routine and guarantee that, for a given
    socket, I/O completion routines will not be nested." (S5.3, S8.6) An alertable wait inside
    a routine runs nothing, though more routines are queued."""
    a, b, filled = stuffed
    depth, log = [0], []

    def routine(error: int, transferred: int, ov: WSAOVERLAPPED, flags: int) -> None:
        depth[0] += 1
        inner = SleepEx(0, True)
        unset = WSACreateEvent()
        assert unset is not None
        inner_wait = WSAWaitForMultipleEvents([unset], False, 0, True)
        log.append((depth[0], inner, inner_wait, transferred))
        depth[0] -= 1

    ovs = [post_pending(a, b"n" * (i + 1), WSAOVERLAPPED(), routine) for i in range(4)]
    recv_exactly(b, filled + 10)
    settle(*ovs)
    assert SleepEx(GUARD_MS, True) == WAIT_IO_COMPLETION
    assert log == [(1, 0, winsock.WSA_WAIT_TIMEOUT, i + 1) for i in range(4)]


def test_o13_routine_parameters(stuffed: tuple[socket.socket, socket.socket, int]) -> None:
    """ "The dwError parameter specifies the completion status for the overlapped operation as
    indicated by lpOverlapped. The cbTransferred parameter specifies the number of bytes sent.
    Currently there are no flag values defined and dwFlags will be zero." (S5.3)"""
    a, b, filled = stuffed
    routine = Routines()
    ok = post_pending(a, b"12345", WSAOVERLAPPED(), routine)
    recv_exactly(b, filled + 5)
    settle(ok)
    failed = post_pending(a, pattern(500_000), WSAOVERLAPPED(), routine)
    # Let part of it go out, then close: it completes aborted with what was consumed.
    recv_exactly(b, 1000)
    assert closesocket(a) == 0
    settle(failed)
    assert SleepEx(GUARD_MS, True) == WAIT_IO_COMPLETION
    assert routine.calls[0] == (0, 5, ok, 0)
    error, transferred, ov, flags = routine.calls[1]
    assert (error, ov, flags) == (WSA_OPERATION_ABORTED, failed, 0)
    assert transferred == failed.transferred < 500_000


def test_o14_all_waiting_routines_run_before_the_wait_returns(
    stuffed: tuple[socket.socket, socket.socket, int],
) -> None:
    """ "Returning from this function allows invocation of another pending completion routine
    for this socket. All waiting completion routines are called before the alertable thread's
    wait is satisfied with a return code of WSA_IO_COMPLETION." (S8.6)"""
    a, b, filled = stuffed
    routine = Routines()
    ovs = [post_pending(a, b"r" * (i + 1), WSAOVERLAPPED(), routine) for i in range(3)]
    recv_exactly(b, filled + 6)
    settle(*ovs)
    assert SleepEx(GUARD_MS, True) == WAIT_IO_COMPLETION
    assert [call[1] for call in routine.calls] == [1, 2, 3]
    # The same through WSAWaitForMultipleEvents, whose events are never set here.
    filled = fill_socket(a)
    more = [post_pending(a, b"w" * (i + 1), WSAOVERLAPPED(), routine) for i in range(3)]
    recv_exactly(b, filled + 6)
    settle(*more)
    unset = WSACreateEvent()
    assert unset is not None
    assert WSAWaitForMultipleEvents([unset], False, WSA_INFINITE, True) == WSA_WAIT_IO_COMPLETION
    assert [call[1] for call in routine.calls] == [1, 2, 3, 1, 2, 3]
    assert SleepEx(0, True) == 0  # nothing left


def test_o15_buffers_are_sent_in_posting_order(stuffed: tuple[socket.socket, socket.socket, int]) -> None:
    """ "The completion routines can be called in any order, not necessarily in the same order in
    which overlapped operations are completed. However, the posted buffers are guaranteed to be
    sent in the same order they are supplied." (S5.4: bytes in posting order, and routines in
    posting order too, which the seed allows.)"""
    a, b, filled = stuffed
    routine = Routines()
    chunks = [pattern(7_000 + i, seed=i) for i in range(20)]
    ovs = [post_pending(a, chunk, WSAOVERLAPPED(), routine) for chunk in chunks]
    assert recv_exactly(b, filled + sum(map(len, chunks)))[filled:] == b"".join(chunks)
    settle(*ovs)
    assert SleepEx(GUARD_MS, True) == WAIT_IO_COMPLETION
    assert [call[2] for call in routine.calls] == ovs


def test_o16_overlapped_and_nonoverlapped_on_one_socket(stuffed: tuple[socket.socket, socket.socket, int]) -> None:
    """ "Windows CE does not allow overlapped and nonoverlapped operations to be used
    simultaneously on a socket." We allow it without mixing bytes: a nonoverlapped send never
    jumps the overlapped queue; it waits its turn (blocking socket) or is WSAEWOULDBLOCK
    (nonblocking) (S4.2)."""
    a, b, filled = stuffed
    queued = post_pending(a, pattern(50_000, seed=1))
    reader = Reader(b, filled + 60_000)
    sent = DWORD()
    assert WSASend(a, [pattern(10_000, seed=2)], 1, sent, 0, None, None) == 0  # waits its turn
    assert sent.value == 10_000
    assert reader.join()[filled:] == pattern(50_000, seed=1) + pattern(10_000, seed=2)
    assert WSAGetOverlappedResult(a, queued, sent, True, DWORD()) is True
    # Nonblocking: refused while overlapped sends are pending.
    fill_socket(a)
    post_pending(a, b"queued")
    a.setblocking(False)
    assert fails_with(WSASend(a, [b"jump"], 1, sent, 0, None, None), WSAEWOULDBLOCK)
