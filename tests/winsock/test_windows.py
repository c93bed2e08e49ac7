"""What Windows does, where Linux differs: issue 13's divergences 1-7 (SPEC S8.1-S8.3).

Windows' behaviour is recorded in Wine's ws2_32 conformance tests (``dlls/ws2_32/tests/sock.c``,
which run against real Windows); each test names the Wine test function its expectation comes
from. Thread tests run with the provider on asyncio and on uvloop (the ``provider`` fixture);
the ``test_in_loop_*`` ones call the facade inside a running loop, on both loops.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from tests.helpers import fill_socket
from wsasend import WSAError, WSAErrorCode, wsa_send, wsa_send_sync
from wsasend.winsock import (
    DWORD,
    SD_BOTH,
    SD_RECEIVE,
    SD_SEND,
    SOCKET_ERROR,
    WSA_IO_PENDING,
    WSA_OPERATION_ABORTED,
    WSABUF,
    WSAECONNRESET,
    WSAENOTCONN,
    WSAENOTSOCK,
    WSAESHUTDOWN,
    WSAOVERLAPPED,
    WSACleanup,
    WSACreateEvent,
    WSAGetLastError,
    WSAGetOverlappedResult,
    WSASend,
    WSASetLastError,
    WSASocket,
    WSAStartup,
    shutdown,
)

from ._support import GUARD, recv_exactly

# Every test here failed on the code before issue 13 (measured: 18/18 on one run, 10/10 runs).

pytestmark = pytest.mark.usefixtures("provider")


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    server = socket.create_server(("127.0.0.1", 0))
    yield server
    server.close()


def _connected(server: socket.socket) -> tuple[socket.socket, socket.socket]:
    client = socket.create_connection(server.getsockname(), timeout=GUARD)
    client.settimeout(None)
    conn, _ = server.accept()
    return client, conn


# -- 1. a successful send sets the last error to 0 ------------------------------------------------


def test_d1_successful_wsasend_sets_last_error_zero() -> None:
    """Wine test_WSASendTo: WSASetLastError(12345); a successful send; WSAGetLastError() == 0.

    Failed before the fix: the last error stayed 12345 on every kind of success.
    """
    a, b = socket.socketpair()
    with a, b:
        WSASetLastError(12345)
        assert WSASend(a, [WSABUF(2, b"hi")], 1, DWORD(), 0) == 0  # nonoverlapped
        assert WSAGetLastError() == 0
        WSASetLastError(12345)
        assert WSASend(a, [WSABUF(2, b"hi")], 1, DWORD(), 0, WSAOVERLAPPED()) == 0  # immediate
        assert WSAGetLastError() == 0
        assert recv_exactly(b, 4) == b"hihi"
        # A pending send: WSA_IO_PENDING, then WSAGetOverlappedResult's success clears it (it
        # stayed WSA_IO_PENDING at f89ed74).
        ov = WSAOVERLAPPED()
        big = b"p" * (8 << 20)
        assert WSASend(a, [WSABUF(len(big), big)], 1, None, 0, ov) == SOCKET_ERROR
        assert WSAGetLastError() == WSA_IO_PENDING
        reader = threading.Thread(target=recv_exactly, args=(b, len(big)))
        reader.start()
        n, flags = DWORD(), DWORD()
        assert WSAGetOverlappedResult(a, ov, n, True, flags) and n.value == len(big)
        assert WSAGetLastError() == 0
        reader.join()


# -- 2, 3. shutdown on sockets that have no connection ---------------------------------------------


def test_d2_shutdown_receive_unconnected_is_enotconn_and_changes_nothing(listener: socket.socket) -> None:
    """Wine test_shutdown: shutdown of an unconnected stream socket is WSAENOTCONN, any ``how``.

    And it changes nothing: after a connect and shutdown(SD_SEND) the peer's bytes still arrive
    (before the fix Linux had marked the receive side shut, and the peer's data made it reset
    the connection: recv saw nothing, the peer ECONNRESET).
    """
    s = socket.socket()
    with s:
        for how in (SD_RECEIVE, SD_SEND, SD_BOTH):
            assert shutdown(s, how) == SOCKET_ERROR
            assert WSAGetLastError() == WSAENOTCONN
        s.connect(listener.getsockname())
        conn, _ = listener.accept()
        with conn:
            assert shutdown(s, SD_SEND) == 0
            conn.sendall(b"still open")
            assert recv_exactly(s, 10) == b"still open"
            conn.settimeout(GUARD)
            assert conn.recv(1) == b""  # and our FIN arrived


def test_d3_shutdown_on_a_listening_socket_is_enotconn_and_it_still_listens(listener: socket.socket) -> None:
    """Wine test_shutdown: shutdown on a listening socket fails WSAENOTCONN, for every ``how``.

    Before the fix SD_RECEIVE returned 0 and the listener stopped accepting.
    """
    for how in (SD_RECEIVE, SD_SEND, SD_BOTH):
        assert shutdown(listener, how) == SOCKET_ERROR
        assert WSAGetLastError() == WSAENOTCONN
    client, conn = _connected(listener)  # still accepts
    client.close()
    conn.close()


# -- 4. shutdown on an unconnected UDP socket --------------------------------------------------------


def test_d4_shutdown_on_unconnected_udp_succeeds_and_sends_then_fail_eshutdown() -> None:
    """Wine test_shutdown: on an unconnected UDP socket SD_SEND and SD_RECEIVE return 0, and a
    later send fails WSAESHUTDOWN (before the fix: SOCKET_ERROR with WSAENOTCONN)."""
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u2 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with peer, u, u2:
        assert shutdown(u2, SD_RECEIVE) == 0
        assert shutdown(u, SD_SEND) == 0
        assert WSASend(u, [WSABUF(1, b"x")], 1, DWORD(), 0) == SOCKET_ERROR
        assert WSAGetLastError() == WSAESHUTDOWN
        u.connect(peer.getsockname())
        assert WSASend(u, [WSABUF(1, b"x")], 1, DWORD(), 0, WSAOVERLAPPED()) == SOCKET_ERROR
        assert WSAGetLastError() == WSAESHUTDOWN
        with pytest.raises(WSAError) as info:
            wsa_send_sync(u, [b"x"])  # the Pythonic path agrees (S3.3)
        assert info.value.winerror == WSAErrorCode.WSAESHUTDOWN


# -- 5. a send during a nonblocking connect --------------------------------------------------------


@contextlib.contextmanager
def _connecting() -> Iterator[socket.socket]:
    """A TCP socket whose nonblocking connect stays in SYN_SENT: the listener's accept queue is
    full (backlog 0 holds one connection), so its SYNs are dropped until the test ends."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    held: list[socket.socket] = []
    try:
        for _ in range(8):  # arbitrary bound: one or two fill the queue
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(server.getsockname())
            held.append(s)
            info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
            if info[0] == 2:  # TCP_SYN_SENT
                break
        else:
            pytest.fail("no connect stayed in SYN_SENT")
        yield held[-1]
    finally:
        for s in held:
            s.close()
        server.close()


def test_d5_send_during_nonblocking_connect_is_enotconn() -> None:
    """Wine test_send / test_write_events: a send before the connect completed is WSAENOTCONN.

    Before the fix: WSAEWOULDBLOCK for the nonoverlapped send, and the overlapped one was queued
    (WSA_IO_PENDING) on a socket that might never connect.
    """
    with _connecting() as s:
        assert WSASend(s, [WSABUF(1, b"x")], 1, DWORD(), 0) == SOCKET_ERROR
        assert WSAGetLastError() == WSAENOTCONN
        ov = WSAOVERLAPPED()
        ov.hEvent = WSACreateEvent()
        assert WSASend(s, [WSABUF(1, b"x")], 1, DWORD(), 0, ov) == SOCKET_ERROR
        assert WSAGetLastError() == WSAENOTCONN
        assert not ov.pending and not ov.hEvent.is_set()  # did not start: no completion (r6)


# -- 6. every send after an early reset is WSAECONNRESET --------------------------------------------


def _reset_by_peer(listener: socket.socket) -> socket.socket:
    client, conn = _connected(listener)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()  # RST
    poller = select.poll()
    poller.register(conn, select.POLLERR | select.POLLHUP)
    assert poller.poll(GUARD * 1000), "the reset did not arrive"
    return conn


def test_d6_every_send_after_a_reset_on_an_accepted_socket_is_econnreset(listener: socket.socket) -> None:
    """Wine test_send (reset peers): after a reset every send is WSAECONNRESET.

    The accepted socket never sent anything, so Linux's second error (EPIPE) looked like "never
    connected". Failed before the fix: the second send said WSAENOTCONN (10/10 runs, both loops).
    """
    conn = _reset_by_peer(listener)
    with conn:
        for _ in range(3):
            assert WSASend(conn, [WSABUF(1, b"x")], 1, DWORD(), 0) == SOCKET_ERROR
            assert WSAGetLastError() == WSAECONNRESET
        assert WSASend(conn, [WSABUF(1, b"x")], 1, DWORD(), 0, WSAOVERLAPPED()) == SOCKET_ERROR
        assert WSAGetLastError() == WSAECONNRESET


# -- 7. the last WSACleanup closes the facade's sockets ----------------------------------------------


def test_d7_last_cleanup_closes_the_sockets_wsasocket_made(listener: socket.socket) -> None:
    """Wine test_WSACleanup (Windows deallocates the process's sockets): later calls on them are
    WSAENOTSOCK, and their pending sends complete WSA_OPERATION_ABORTED with exact counts.

    Before the fix the socket stayed open and the send after cleanup went out.
    """
    s = WSASocket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    assert s is not None
    plain, conn0 = _connected(listener)
    s.connect(listener.getsockname())
    conn, _ = listener.accept()
    with conn, plain, conn0:
        filled = fill_socket(s)
        ov = WSAOVERLAPPED()
        ov.hEvent = WSACreateEvent()
        body = bytes(100_000)
        assert WSASend(s, [WSABUF(len(body), body)], 1, DWORD(), 0, ov) == SOCKET_ERROR
        assert WSAGetLastError() == WSA_IO_PENDING
        assert WSACleanup() == 0
        assert ov.hEvent.is_set() and ov.error == WSA_OPERATION_ABORTED
        assert s.fileno() == -1
        WSAStartup(0x0202)
        assert WSASend(s, [WSABUF(1, b"x")], 1, DWORD(), 0) == SOCKET_ERROR
        assert WSAGetLastError() == WSAENOTSOCK
        # The count is exact: the peer read every byte the kernel took, and no more.
        got = 0
        conn.settimeout(GUARD)
        while chunk := conn.recv(1 << 20):
            got += len(chunk)
        assert got == filled + ov.transferred
        # A plain Python socket is not the facade's: it stays open.
        assert WSASend(plain, [WSABUF(1, b"y")], 1, DWORD(), 0) == 0
        assert recv_exactly(conn0, 1) == b"y"


# -- the same, called inside a running loop ------------------------------------------------------


@pytest.mark.usefixtures("started")
async def test_in_loop_d1_d5_d6(listener: socket.socket) -> None:
    """Items 1, 5 and 6 when the facade posts on the running loop (both loops)."""
    a, b = socket.socketpair()
    with a, b:
        WSASetLastError(12345)
        assert WSASend(a, [WSABUF(2, b"ok")], 1, DWORD(), 0, WSAOVERLAPPED()) == 0
        assert WSAGetLastError() == 0
    with _connecting() as s:
        assert WSASend(s, [WSABUF(1, b"x")], 1, DWORD(), 0, WSAOVERLAPPED()) == SOCKET_ERROR
        assert WSAGetLastError() == WSAENOTCONN
    conn = _reset_by_peer(listener)
    with conn:
        for _ in range(2):
            with pytest.raises(WSAError) as info:
                await wsa_send(conn, [b"x"])
            assert info.value.winerror == WSAErrorCode.WSAECONNRESET


@pytest.mark.usefixtures("started")
async def test_in_loop_d2_d3_d4_d7(listener: socket.socket) -> None:
    """Items 2, 3, 4 and 7 called from inside a running loop (both loops): the same rules."""
    lone = socket.socket()
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with lone, u:
        assert shutdown(lone, SD_RECEIVE) == SOCKET_ERROR and WSAGetLastError() == WSAENOTCONN
        assert shutdown(listener, SD_BOTH) == SOCKET_ERROR and WSAGetLastError() == WSAENOTCONN
        assert shutdown(u, SD_SEND) == 0
        assert WSASend(u, [WSABUF(1, b"x")], 1, DWORD(), 0, WSAOVERLAPPED()) == SOCKET_ERROR
        assert WSAGetLastError() == WSAESHUTDOWN
    s = WSASocket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    assert s is not None
    s.connect(listener.getsockname())
    conn, _ = listener.accept()
    with conn:
        fill_socket(s)
        ov = WSAOVERLAPPED()
        assert WSASend(s, [WSABUF(10, bytes(10))], 1, DWORD(), 0, ov) == SOCKET_ERROR
        assert WSAGetLastError() == WSA_IO_PENDING
        while WSACleanup() == 0:
            pass
        assert ov.error == WSA_OPERATION_ABORTED and s.fileno() == -1
        with pytest.raises(WSAError) as info:
            await ov
        assert info.value.winerror == WSAErrorCode.WSA_OPERATION_ABORTED
        WSAStartup(0x0202)
        assert WSASend(s, [WSABUF(1, b"x")], 1, DWORD(), 0) == SOCKET_ERROR
        assert WSAGetLastError() == WSAENOTSOCK
