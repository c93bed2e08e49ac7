"""I/O completion ports and cancellation in the facade (SPEC S8.7; issue 13).

Expectations from Wine's ws2_32 tests (``dlls/ws2_32/tests/sock.c``, run against Windows):
test_completion_port and test_iocp. Every test runs with the provider on asyncio and uvloop.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import threading
import time
from typing import Any

import pytest

from tests.helpers import fill_socket
from wsasend.winsock import (
    DWORD,
    ERROR_ABANDONED_WAIT_0,
    ERROR_INVALID_HANDLE,
    ERROR_INVALID_PARAMETER,
    ERROR_NOT_FOUND,
    FILE_SKIP_COMPLETION_PORT_ON_SUCCESS,
    SOCKET_ERROR,
    WAIT_IO_COMPLETION,
    WAIT_TIMEOUT,
    WSA_IO_PENDING,
    WSA_OPERATION_ABORTED,
    WSA_WAIT_EVENT_0,
    WSA_WAIT_TIMEOUT,
    WSABUF,
    WSAEINVAL,
    WSAOVERLAPPED,
    CancelIo,
    CancelIoEx,
    CloseHandle,
    CreateIoCompletionPort,
    GetQueuedCompletionStatus,
    GetQueuedCompletionStatusEx,
    PostQueuedCompletionStatus,
    SetFileCompletionNotificationModes,
    WSACreateEvent,
    WSAGetLastError,
    WSAGetOverlappedResult,
    WSASend,
    WSAWaitForMultipleEvents,
    closesocket,
)

from ._support import GUARD, GUARD_MS, recv_exactly

pytestmark = pytest.mark.usefixtures("provider")


def _port_for(sock: socket.socket, key: int) -> Any:
    port = CreateIoCompletionPort(None, None, 0, 0)
    assert port is not None
    assert CreateIoCompletionPort(sock, port, key, 0) is port
    return port


def test_port_immediate_and_pending_sends_each_queue_one_packet() -> None:
    """test_completion_port: a send on an associated socket queues a packet with its key, bytes
    and overlapped, whether it completed in WSASend (returned 0) or later (WSA_IO_PENDING)."""
    a, b = socket.socketpair()
    with a, b:
        port = _port_for(a, 7)
        ov1 = WSAOVERLAPPED()
        assert WSASend(a, [WSABUF(3, b"one")], 1, DWORD(), 0, ov1) == 0
        assert GetQueuedCompletionStatus(port, GUARD_MS) == (True, 3, 7, ov1)
        filled = fill_socket(a)
        ov2 = WSAOVERLAPPED()
        assert WSASend(a, [WSABUF(5, b"two!!")], 1, DWORD(), 0, ov2) == SOCKET_ERROR
        assert WSAGetLastError() == WSA_IO_PENDING
        assert GetQueuedCompletionStatus(port, 0) == (False, 0, 0, None)  # nothing yet
        assert WSAGetLastError() == WAIT_TIMEOUT
        assert len(recv_exactly(b, 3 + filled + 5)) == 3 + filled + 5
        assert GetQueuedCompletionStatus(port, GUARD_MS) == (True, 5, 7, ov2)
        # WSAGetOverlappedResult(fWait) still works: the port's routine is not the caller's.
        n, flags = DWORD(), DWORD()
        assert WSAGetOverlappedResult(a, ov2, n, True, flags) and n.value == 5
        assert CloseHandle(port)


def test_port_skip_on_success_queues_nothing_for_an_immediate_completion() -> None:
    """test_completion_port (FILE_SKIP_COMPLETION_PORT_ON_SUCCESS): WSASend returned 0, so no
    packet; a pending send still queues one."""
    a, b = socket.socketpair()
    with a, b:
        port = _port_for(a, 1)
        assert SetFileCompletionNotificationModes(a, FILE_SKIP_COMPLETION_PORT_ON_SUCCESS)
        assert WSASend(a, [WSABUF(2, b"hi")], 1, DWORD(), 0, WSAOVERLAPPED()) == 0
        filled = fill_socket(a)
        ov = WSAOVERLAPPED()
        assert WSASend(a, [WSABUF(2, b"yo")], 1, DWORD(), 0, ov) == SOCKET_ERROR
        recv_exactly(b, 2 + filled + 2)
        assert GetQueuedCompletionStatus(port, GUARD_MS) == (True, 2, 1, ov)  # the only packet
        assert GetQueuedCompletionStatus(port, 0)[0] is False and WSAGetLastError() == WAIT_TIMEOUT
        assert not SetFileCompletionNotificationModes(a, 0x100) and WSAGetLastError() == ERROR_INVALID_PARAMETER


def test_port_reused_overlapped_has_its_event_reset_while_the_next_send_pends() -> None:
    """S8.7, S5.8: on a port-associated socket the overlapped's hEvent is signalled at
    completion (beside the packet) and reset when the overlapped is posted again, as without a
    port. It stayed set: a wait on it returned at once while the new send was pending, and the
    result that followed said WSA_IO_INCOMPLETE (adversarial pass)."""
    a, b = socket.socketpair()
    with a, b:
        port = _port_for(a, 4)
        ov = WSAOVERLAPPED()
        ov.hEvent = WSACreateEvent()
        assert WSASend(a, [WSABUF(3, b"abc")], 1, DWORD(), 0, ov) == 0
        assert GetQueuedCompletionStatus(port, GUARD_MS) == (True, 3, 4, ov)
        assert ov.hEvent.is_set()
        assert recv_exactly(b, 3) == b"abc"
        filled = fill_socket(a)
        assert WSASend(a, [WSABUF(5, b"again")], 1, DWORD(), 0, ov) == SOCKET_ERROR
        assert WSAGetLastError() == WSA_IO_PENDING
        assert WSAWaitForMultipleEvents([ov.hEvent], False, 0, False) == WSA_WAIT_TIMEOUT
        assert len(recv_exactly(b, filled + 5)) == filled + 5
        assert WSAWaitForMultipleEvents([ov.hEvent], False, GUARD_MS, False) == WSA_WAIT_EVENT_0
        assert GetQueuedCompletionStatus(port, GUARD_MS) == (True, 5, 4, ov)


async def test_port_skip_on_success_in_a_loop_queues_nothing_for_a_reused_immediate_send() -> None:
    """FILE_SKIP_COMPLETION_PORT_ON_SUCCESS inside a running loop: a send WSASend reported done
    (0) queues no packet even when its overlapped is reused at once, and its late routine does
    not signal the next send's event. The routine read the reused overlapped's state: it
    queued a packet for the done send (an IOCP server completed it twice), and set the event
    of the send still pending (adversarial pass)."""
    a, b = socket.socketpair()
    with a, b:
        port = _port_for(a, 7)
        assert SetFileCompletionNotificationModes(a, FILE_SKIP_COMPLETION_PORT_ON_SUCCESS)
        ov = WSAOVERLAPPED()
        ov.hEvent = WSACreateEvent()
        assert WSASend(a, [WSABUF(3, b"two")], 1, DWORD(), 0, ov) == 0
        filled = fill_socket(a)
        assert WSASend(a, [WSABUF(5, b"three")], 1, DWORD(), 0, ov) == SOCKET_ERROR  # reused at once
        assert WSAGetLastError() == WSA_IO_PENDING
        await asyncio.sleep(0)  # the first send's routine runs now
        await asyncio.sleep(0)
        assert not ov.hEvent.is_set()  # the pending send's event
        assert GetQueuedCompletionStatus(port, 0) == (False, 0, 0, None)  # no packet for "two"
        data = await asyncio.to_thread(recv_exactly, b, 3 + filled + 5)
        assert data[:3] == b"two" and data[-5:] == b"three"
        async with asyncio.timeout(GUARD):
            while not ov.hEvent.is_set():
                await asyncio.sleep(0.001)
        assert GetQueuedCompletionStatus(port, GUARD_MS) == (True, 5, 7, ov)  # the only packet
        assert GetQueuedCompletionStatus(port, 0)[0] is False


def test_port_completion_routine_on_an_associated_socket_is_einval() -> None:
    """test_completion_port: an overlapped send with a completion routine on a socket
    associated with a port fails WSAEINVAL and queues nothing."""
    a, b = socket.socketpair()
    with a, b:
        port = _port_for(a, 1)
        assert WSASend(a, [WSABUF(1, b"x")], 1, DWORD(), 0, WSAOVERLAPPED(), lambda *args: None) == SOCKET_ERROR
        assert WSAGetLastError() == WSAEINVAL
        assert GetQueuedCompletionStatus(port, 0) == (False, 0, 0, None)


def test_port_aborted_send_is_a_failed_packet_with_its_exact_count() -> None:
    """test_completion_port: closesocket with a send pending: FALSE with the overlapped set, the
    last error ERROR_OPERATION_ABORTED (our WSA_OPERATION_ABORTED, 995) and its count."""
    a, b = socket.socketpair()
    with b:
        port = _port_for(a, 9)
        filled = fill_socket(a)
        ov = WSAOVERLAPPED()
        assert WSASend(a, [WSABUF(10, bytes(10))], 1, DWORD(), 0, ov) == SOCKET_ERROR
        assert closesocket(a) == 0
        assert GetQueuedCompletionStatus(port, GUARD_MS) == (False, 0, 9, ov)
        assert WSAGetLastError() == WSA_OPERATION_ABORTED
        assert filled > 0


def test_port_posted_packets_ex_and_close() -> None:
    """test_iocp: PostQueuedCompletionStatus packets come back as posted, GetQueuedCompletionStatusEx
    takes several at once, a closed port is an invalid handle and wakes its waiters."""
    port = CreateIoCompletionPort(None, None, 0, 0)
    marker = object()
    for i in range(3):
        assert PostQueuedCompletionStatus(port, i, 100 + i, marker)
    ok, entries = GetQueuedCompletionStatusEx(port, 2, GUARD_MS, False)
    assert ok and [(e.lpCompletionKey, e.dwNumberOfBytesTransferred) for e in entries] == [(100, 0), (101, 1)]
    assert GetQueuedCompletionStatus(port, GUARD_MS) == (True, 2, 102, marker)
    woke: list[tuple[bool, int]] = []

    def waiter() -> None:
        result = GetQueuedCompletionStatus(port, GUARD_MS)
        woke.append((result[0], WSAGetLastError()))

    thread = threading.Thread(target=waiter)
    thread.start()
    assert CloseHandle(port)
    thread.join(GUARD)
    # Either the waiter was in the wait (abandoned) or came after the close (invalid handle).
    assert woke in ([(False, ERROR_ABANDONED_WAIT_0)], [(False, ERROR_INVALID_HANDLE)])
    assert not PostQueuedCompletionStatus(port, 0, 0, None) and WSAGetLastError() == ERROR_INVALID_HANDLE
    assert not CloseHandle(port) and WSAGetLastError() == ERROR_INVALID_HANDLE


def test_port_alertable_ex_wait_runs_this_threads_completion_routines() -> None:
    """test_iocp (alertable GetQueuedCompletionStatusEx): with no packet but a completion
    routine queued to this thread, the wait runs it and fails with WAIT_IO_COMPLETION."""
    port = CreateIoCompletionPort(None, None, 0, 0)
    a, b = socket.socketpair()  # not associated: its sends use completion routines
    with a, b:
        ran: list[int] = []
        assert WSASend(a, [WSABUF(3, b"apc")], 1, DWORD(), 0, WSAOVERLAPPED(), lambda e, n, ov, f: ran.append(n)) == 0
        assert GetQueuedCompletionStatusEx(port, 4, GUARD_MS, True) == (False, [])
        assert WSAGetLastError() == WAIT_IO_COMPLETION and ran == [3]
        assert PostQueuedCompletionStatus(port, 1, 2, None)
        ok, entries = GetQueuedCompletionStatusEx(port, 4, GUARD_MS, True)
        assert ok and [(e.lpCompletionKey, e.dwNumberOfBytesTransferred) for e in entries] == [(2, 1)]
    CloseHandle(port)


def test_port_a_socket_joins_one_port_only() -> None:
    """Windows allows one association per handle: a second is ERROR_INVALID_PARAMETER."""
    a, b = socket.socketpair()
    with a, b:
        _port_for(a, 1)
        other = CreateIoCompletionPort(None, None, 0, 0)
        assert CreateIoCompletionPort(a, other, 2, 0) is None
        assert WSAGetLastError() == ERROR_INVALID_PARAMETER


def test_cancel_io_ex_from_another_thread_withdraws_an_unstarted_send() -> None:
    """CancelIoEx from any thread: the unstarted send completes WSA_OPERATION_ABORTED with 0
    bytes (its packet says so); a partly sent one is not found (ERROR_NOT_FOUND, 1168) and
    completes whole; nothing left to cancel is ERROR_NOT_FOUND too."""
    a, b = socket.socketpair()
    with a, b:
        port = _port_for(a, 3)
        filled = fill_socket(a)
        filled -= len(recv_exactly(b, min(filled, 100_000)))  # room for part of the next send
        started_ov, queued_ov = WSAOVERLAPPED(), WSAOVERLAPPED()
        big = bytes(200_000)
        assert WSASend(a, [WSABUF(len(big), big)], 1, DWORD(), 0, started_ov) == SOCKET_ERROR
        assert WSASend(a, [WSABUF(4, b"late")], 1, DWORD(), 0, queued_ov) == SOCKET_ERROR
        results: list[tuple[bool, int]] = []

        def cancel() -> None:
            results.append((CancelIoEx(a, queued_ov), WSAGetLastError()))
            results.append((CancelIoEx(a, started_ov), WSAGetLastError()))

        thread = threading.Thread(target=cancel)
        thread.start()
        thread.join(GUARD)
        assert results == [(True, 0), (False, ERROR_NOT_FOUND)]
        assert GetQueuedCompletionStatus(port, GUARD_MS) == (False, 0, 3, queued_ov)
        assert WSAGetLastError() == WSA_OPERATION_ABORTED
        assert len(recv_exactly(b, filled + len(big))) == filled + len(big)
        assert GetQueuedCompletionStatus(port, GUARD_MS) == (True, len(big), 3, started_ov)
        assert not CancelIo(a) and WSAGetLastError() == ERROR_NOT_FOUND


@pytest.mark.timeout(300)
def test_port_8_threads_4_sockets_20000_sends_exactly_once_in_order() -> None:
    """Issue 13's thread test: 8 threads on one port, 4 sockets, 20,000 overlapped sends.

    Every completion is delivered exactly once, with its exact byte count; each thread sees
    each socket's sends in posting order (they complete in that order, S5.4, and the port is
    FIFO); the receivers get every byte in order.
    """
    sockets, peers = zip(*(socket.socketpair() for _ in range(4)), strict=True)
    port = CreateIoCompletionPort(None, None, 0, 0)
    for key, sock in enumerate(sockets):
        assert CreateIoCompletionPort(sock, port, key, 8) is port
    total = 20_000
    # Send i goes on socket i % 4 and carries (i % 13) + 1 bytes of (i % 251): arbitrary sizes.
    plan = [(i % 4, bytes([i % 251]) * ((i % 13) + 1)) for i in range(total)]
    expected = [b"".join(data for key, data in plan if key == k) for k in range(4)]
    seq_of: dict[int, tuple[int, int]] = {}
    per_thread: list[list[tuple[int, int, int, int]]] = [[] for _ in range(8)]
    received = [bytearray() for _ in range(4)]

    def worker(index: int) -> None:
        out = per_thread[index]
        while True:
            ok, n, key, ov = GetQueuedCompletionStatus(port, GUARD_MS)
            assert ok, WSAGetLastError()
            if key == -1:
                return
            out.append((key, seq_of[id(ov)][1], n, len(plan[seq_of[id(ov)][0]][1])))

    def reader(k: int) -> None:
        peers[k].settimeout(GUARD)
        while len(received[k]) < len(expected[k]):
            chunk = peers[k].recv(1 << 16)
            assert chunk
            received[k] += chunk

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    readers = [threading.Thread(target=reader, args=(k,)) for k in range(4)]
    for t in workers + readers:
        t.start()
    ovs = []
    per_key_seq = [0, 0, 0, 0]
    for i, (key, data) in enumerate(plan):
        ov = WSAOVERLAPPED()
        ovs.append(ov)  # alive until the end: id() stays unique
        seq_of[id(ov)] = (i, per_key_seq[key])
        per_key_seq[key] += 1
        rc = WSASend(sockets[key], [WSABUF(len(data), data)], 1, DWORD(), 0, ov)
        assert rc == 0 or WSAGetLastError() == WSA_IO_PENDING
    for t in readers:
        t.join(GUARD * 4)
    for ov in ovs:
        assert ov.wait(GUARD)
    # ov.wait() wakes when the send completes; its packet reaches the port through the engine's
    # call_soon (S5.3) a moment later. The stop packets must queue behind every real one.
    deadline = time.monotonic() + GUARD
    while sum(map(len, per_thread)) < total and time.monotonic() < deadline:
        time.sleep(0.01)
    for _ in workers:
        assert PostQueuedCompletionStatus(port, 0, -1, None)
    for t in workers:
        t.join(GUARD)
    assert not any(t.is_alive() for t in workers + readers)
    delivered = collections.Counter((key, seq) for got in per_thread for key, seq, _n, _size in got)
    assert len(delivered) == total and set(delivered.values()) == {1}  # exactly once each
    for got in per_thread:
        assert all(n == size for _key, _seq, n, size in got)  # exact byte counts
        for k in range(4):
            seqs = [seq for key, seq, _n, _size in got if key == k]
            assert seqs == sorted(seqs)  # per-socket order, as this thread saw it
    assert [bytes(r) for r in received] == expected
    for sock, peer in zip(sockets, peers, strict=True):
        sock.close()
        peer.close()
    CloseHandle(port)
