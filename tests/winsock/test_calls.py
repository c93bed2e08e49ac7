"""The send calls beyond WSASend, the provider's loop choice, and fork (SPEC S8.1, S8.7).

Expectations from Wine's ws2_32 tests (``dlls/ws2_32/tests/sock.c``, run against Windows):
test_send, test_WSASendTo, test_WSASendMsg, test_shutdown. Thread tests run with the provider
on asyncio and on uvloop.
"""

from __future__ import annotations

import os
import signal
import socket
import warnings

import pytest

from tests.conftest import LOOP_FACTORIES
from wsasend import WSAError, winsock
from wsasend.winsock import (
    DWORD,
    SOCKET_ERROR,
    WSA_IO_PENDING,
    WSABUF,
    WSAEFAULT,
    WSAEISCONN,
    WSAENOTCONN,
    WSAEOPNOTSUPP,
    WSAESHUTDOWN,
    WSANOTINITIALISED,
    WSAOVERLAPPED,
    WSACleanup,
    WSAGetLastError,
    WSASendDisconnect,
    WSASendTo,
    WSASetLastError,
    WSAStartup,
    send,
    sendto,
)

from ._support import GUARD, recv_exactly


@pytest.mark.usefixtures("provider")
def test_send_sends_len_bytes_and_returns_the_count() -> None:
    """test_send: send returns the bytes sent; a length beyond the buffer is WSAEFAULT."""
    a, b = socket.socketpair()
    with a, b:
        WSASetLastError(7)
        assert send(a, b"hello world", 5, 0) == 5
        assert WSAGetLastError() == 0
        assert recv_exactly(b, 5) == b"hello"
        assert send(a, b"abc", 4, 0) == SOCKET_ERROR
        assert WSAGetLastError() == WSAEFAULT


@pytest.mark.usefixtures("provider")
def test_wsasendto_ignores_the_address_on_a_connected_stream_socket() -> None:
    """test_WSASendTo: sendto on a connected TCP socket ignores the destination; success sets
    the last error to 0; a connected UDP socket takes its own peer as destination and refuses
    another (WSAEISCONN)."""
    server = socket.create_server(("127.0.0.1", 0))
    with server:
        client = socket.create_connection(server.getsockname(), timeout=GUARD)
        conn, _ = server.accept()
        with client, conn:
            WSASetLastError(12345)
            assert WSASendTo(client, [WSABUF(3, b"abc")], 1, DWORD(), 0, ("192.0.2.1", 9), 16) == 0
            assert WSAGetLastError() == 0
            assert sendto(client, b"de", 2, 0, ("192.0.2.1", 9), 16) == 2
            assert recv_exactly(conn, 5) == b"abcde"
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with peer, u:
        peer.bind(("127.0.0.1", 0))
        u.connect(peer.getsockname())
        assert WSASendTo(u, [WSABUF(2, b"hi")], 1, DWORD(), 0, peer.getsockname(), 16, WSAOVERLAPPED()) in (0, -1)
        assert WSAGetLastError() in (0, WSA_IO_PENDING)
        peer.settimeout(GUARD)
        assert peer.recv(10) == b"hi"
        # Another destination on a connected datagram socket: WSAEISCONN (test_WSASendTo).
        assert sendto(u, b"x", 1, 0, ("127.0.0.1", 9), 16) == SOCKET_ERROR
        assert WSAGetLastError() == WSAEISCONN


@pytest.mark.usefixtures("provider")
def test_wsasenddisconnect_shuts_the_send_side_and_refuses_data() -> None:
    """test_shutdown (WSASendDisconnect): disconnect data on TCP is WSAEOPNOTSUPP; without it
    the peer reads end-of-stream and later sends are WSAESHUTDOWN; unconnected: WSAENOTCONN."""
    lone = socket.socket()
    server = socket.create_server(("127.0.0.1", 0))
    with server, lone:
        assert WSASendDisconnect(lone, None) == SOCKET_ERROR
        assert WSAGetLastError() == WSAENOTCONN
        client = socket.create_connection(server.getsockname(), timeout=GUARD)
        conn, _ = server.accept()
        with client, conn:
            assert WSASendDisconnect(client, WSABUF(3, b"bye")) == SOCKET_ERROR
            assert WSAGetLastError() == WSAEOPNOTSUPP
            assert WSASendDisconnect(client, None) == 0
            conn.settimeout(GUARD)
            assert conn.recv(1) == b""
            assert send(client, b"x", 1, 0) == SOCKET_ERROR
            assert WSAGetLastError() == WSAESHUTDOWN


@pytest.mark.usefixtures("provider")
def test_socket_makes_an_overlapped_socket_the_last_cleanup_closes() -> None:
    """Winsock's socket() (test_WSACleanup: the last cleanup deallocates it, like WSASocket's)."""
    s = winsock.socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    assert s is not None and s.type == socket.SOCK_DGRAM
    while WSACleanup() == 0:
        pass
    assert s.fileno() == -1
    WSAStartup(0x0202)


@pytest.mark.usefixtures("not_started")
@pytest.mark.parametrize("kind", ["asyncio", "uvloop"])
def test_provider_loop_is_chosen_publicly(kind: str) -> None:
    """SPEC S8.1: ``WSAStartup(loop=...)`` picks the provider's loop; ``set_provider_loop`` too."""
    WSAStartup(0x0202, loop=kind)
    loop = winsock.provider_loop()
    assert loop is not None
    assert (type(loop).__module__.split(".")[0] == "uvloop") == (kind == "uvloop")
    assert WSACleanup() == 0
    assert winsock.provider_loop() is None
    winsock.set_provider_loop(kind)
    try:
        WSAStartup()
        loop = winsock.provider_loop()
        assert (type(loop).__module__.split(".")[0] == "uvloop") == (kind == "uvloop")
        WSACleanup()
    finally:
        winsock.set_provider_loop(None)
    with pytest.raises(WSAError):
        WSAStartup(0x0202, loop="tokio")


def _child_work(loop_kind: str) -> int:
    """In a forked child: a fresh WSAStartup and an overlapped WSASend; the exit code says."""
    signal.alarm(20)  # hang guard: a child using its parent's dead provider would wait forever
    if winsock.provider_loop() is not None:
        return 3  # the parent's provider leaked into the child
    # No socket: not started, the call must fail before it looks at one.
    if winsock.WSASend(None, [], 0, DWORD(), 0) != SOCKET_ERROR or WSAGetLastError() != WSANOTINITIALISED:  # type: ignore[arg-type]
        return 4  # the parent's startup count leaked into the child
    WSAStartup(0x0202, loop=LOOP_FACTORIES[loop_kind])
    a, b = socket.socketpair()
    ov = WSAOVERLAPPED()
    rc = winsock.WSASend(a, [WSABUF(5, b"child")], 1, DWORD(), 0, ov)
    if rc != 0 and WSAGetLastError() != WSA_IO_PENDING:
        return 5
    if not ov.wait(GUARD) or ov.transferred != 5 or recv_exactly(b, 5) != b"child":
        return 6
    return 0 if WSACleanup() == 0 else 7


@pytest.mark.usefixtures("provider")
@pytest.mark.parametrize("child_loop", ["asyncio", "uvloop"])
def test_forked_child_starts_afresh(child_loop: str) -> None:
    """Issue 10 item 10: after fork the child has no provider and no startup count; its own
    WSAStartup and an overlapped WSASend work. The parent's provider is running (both kinds)."""
    a, b = socket.socketpair()
    with a, b:  # the parent has used its provider, so it has state to (not) inherit
        assert winsock.WSASend(a, [WSABUF(1, b"p")], 1, DWORD(), 0, WSAOVERLAPPED()) in (0, -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "multi-threaded, fork() may deadlock"
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 99
        try:
            code = _child_work(child_loop)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.usefixtures("provider")
def test_wsasendto_bad_destination_is_efault() -> None:
    """test_WSASendTo: a destination that is not an address is WSAEFAULT; nothing is sent."""
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with u:
        assert WSASendTo(u, [WSABUF(1, b"x")], 1, DWORD(), 0, "nowhere", 16) == SOCKET_ERROR
        assert WSAGetLastError() == WSAEFAULT
