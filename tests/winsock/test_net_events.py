"""Auto-reset events, WSAEventSelect/WSAEnumNetworkEvents and WSASendMsg (SPEC S8.7).

Expectations from Wine's ws2_32 tests (``dlls/ws2_32/tests/sock.c``, run against Windows):
test_events and test_write_events (FD_WRITE when connected and again after WSAEWOULDBLOCK,
FD_CLOSE on the peer's close or reset), test_WSASendMsg. The provider runs on asyncio and uvloop.
"""

from __future__ import annotations

import select
import socket
import struct
import threading

import pytest

from tests.helpers import fill_socket
from wsasend import WSAEvent
from wsasend.winsock import (
    DWORD,
    FD_CLOSE,
    FD_CLOSE_BIT,
    FD_WRITE,
    FD_WRITE_BIT,
    SD_RECEIVE,
    SOCKET_ERROR,
    WSA_WAIT_EVENT_0,
    WSA_WAIT_TIMEOUT,
    WSABUF,
    WSAECONNRESET,
    WSAEFAULT,
    WSAEINVAL,
    WSAEOPNOTSUPP,
    WSAEWOULDBLOCK,
    WSAMSG,
    WSANETWORKEVENTS,
    WSAOVERLAPPED,
    CreateEvent,
    SetEvent,
    WSACloseEvent,
    WSACreateEvent,
    WSAEnumNetworkEvents,
    WSAEventSelect,
    WSAGetLastError,
    WSASendMsg,
    WSAWaitForMultipleEvents,
    send,
    shutdown,
)

from ._support import GUARD, GUARD_MS

pytestmark = pytest.mark.usefixtures("provider")


def test_auto_reset_event_wakes_exactly_one_waiter_per_set() -> None:
    """test_events: an auto-reset event is reset by the wait it satisfies; a manual one is not.

    Four threads wait on one auto-reset event; each SetEvent releases exactly one of them."""
    manual = WSACreateEvent()
    assert manual is not None
    assert SetEvent(manual)
    assert WSAWaitForMultipleEvents([manual], False, 0, False) == WSA_WAIT_EVENT_0
    assert WSAWaitForMultipleEvents([manual], False, 0, False) == WSA_WAIT_EVENT_0  # still set
    auto = CreateEvent(None, False, True, None)
    assert auto is not None
    assert WSAWaitForMultipleEvents([auto], False, 0, False) == WSA_WAIT_EVENT_0
    assert WSAWaitForMultipleEvents([auto], False, 0, False) == WSA_WAIT_TIMEOUT  # consumed
    woken: list[int] = []
    lock = threading.Lock()

    def waiter() -> None:
        if WSAWaitForMultipleEvents([auto], False, GUARD_MS, False) == WSA_WAIT_EVENT_0:
            with lock:
                woken.append(1)

    threads = [threading.Thread(target=waiter) for _ in range(4)]
    for t in threads:
        t.start()
    for n in range(1, 5):
        assert SetEvent(auto)
        # Wait (bounded) until the one release happened before the next set.
        for _ in range(int(GUARD * 100)):
            if len(woken) == n or not auto.is_set():
                break
            threading.Event().wait(0.01)
    for t in threads:
        t.join(GUARD)
    assert len(woken) == 4 and not auto.is_set()
    assert WSACloseEvent(auto) and WSACloseEvent(manual)


def test_auto_reset_event_as_an_overlapped_hevent() -> None:
    """The engine signals an auto-reset hEvent like any other; the wait consumes it."""
    a, b = socket.socketpair()
    with a, b:
        ov = WSAOVERLAPPED()
        ov.hEvent = CreateEvent(None, False, False, None)
        from wsasend.winsock import WSASend

        assert WSASend(a, [WSABUF(2, b"hi")], 1, DWORD(), 0, ov) == 0
        assert WSAWaitForMultipleEvents([ov.hEvent], True, GUARD_MS, False) == WSA_WAIT_EVENT_0
        assert not ov.hEvent.is_set()


def _wait_events(sock: socket.socket, event: WSAEvent) -> WSANETWORKEVENTS:
    assert WSAWaitForMultipleEvents([event], False, GUARD_MS, False) == WSA_WAIT_EVENT_0
    events = WSANETWORKEVENTS()
    assert WSAEnumNetworkEvents(sock, event, events) == 0
    return events


def test_event_select_fd_write_on_connect_and_after_wouldblock_then_fd_close() -> None:
    """test_write_events: FD_WRITE once connected; not again until a send failed WSAEWOULDBLOCK
    and room came back; FD_CLOSE with error 0 when the peer closes."""
    server = socket.create_server(("127.0.0.1", 0))
    s = socket.socket()
    with server, s:
        event = WSACreateEvent()
        assert event is not None
        assert WSAEventSelect(s, event, FD_WRITE | FD_CLOSE) == 0
        assert s.gettimeout() == 0.0  # WSAEventSelect makes the socket nonblocking
        s.connect_ex(server.getsockname())
        events = _wait_events(s, event)
        assert events.lNetworkEvents == FD_WRITE and events.iErrorCode[FD_WRITE_BIT] == 0
        assert not event.is_set()  # WSAEnumNetworkEvents reset it
        conn, _ = server.accept()
        with conn:
            assert send(s, b"x", 1, 0) == 1
            assert WSAWaitForMultipleEvents([event], False, 0, False) == WSA_WAIT_TIMEOUT  # not re-enabled
            fill_socket(s)
            assert send(s, b"y", 1, 0) == SOCKET_ERROR and WSAGetLastError() == WSAEWOULDBLOCK
            conn.setblocking(False)
            drained = 0
            while True:  # read until FD_WRITE comes back (the sender's buffer emptied)
                try:
                    drained += len(conn.recv(1 << 20))
                except BlockingIOError:
                    if WSAWaitForMultipleEvents([event], False, 10, False) == WSA_WAIT_EVENT_0:
                        break
            events = _wait_events(s, event)
            assert events.lNetworkEvents == FD_WRITE and drained > 0
        # conn closed: the peer's orderly close
        events = _wait_events(s, event)
        assert events.lNetworkEvents == FD_CLOSE and events.iErrorCode[FD_CLOSE_BIT] == 0
        assert WSAEventSelect(s, None, 0) == 0


def test_event_select_fd_close_reports_a_reset() -> None:
    """test_write_events (reset peer): FD_CLOSE with WSAECONNRESET."""
    server = socket.create_server(("127.0.0.1", 0))
    with server:
        client = socket.create_connection(server.getsockname(), timeout=GUARD)
        conn, _ = server.accept()
        with conn:
            event = WSACreateEvent()
            assert event is not None
            assert WSAEventSelect(conn, event, FD_CLOSE) == 0
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()
            events = _wait_events(conn, event)
            assert events.lNetworkEvents == FD_CLOSE
            assert events.iErrorCode[FD_CLOSE_BIT] == WSAECONNRESET
        with socket.socket() as other:
            assert WSAEventSelect(other, event, 0x01) == SOCKET_ERROR  # FD_READ: not ours
            assert WSAGetLastError() == WSAEINVAL


# A wait for an event that must not come: long enough for the provider thread to have seen
# the epoll (it runs at once); a slow machine can only make the old code pass, never this fail.
_QUIET_MS = 300


@pytest.mark.parametrize("peer_ends", ["reset", "close"])
def test_event_select_fd_close_is_the_peers_not_a_local_receive_shutdown(peer_ends: str) -> None:
    """FD_CLOSE is recorded once, when the peer closes or resets (S8.7). Our own
    ``shutdown(SD_RECEIVE)`` is neither: Linux raises EPOLLRDHUP for it as for a peer's FIN,
    and FD_CLOSE came with error 0 at once, so the peer's reset later was never reported
    (adversarial pass)."""
    server = socket.create_server(("127.0.0.1", 0))
    with server:
        client = socket.create_connection(server.getsockname(), timeout=GUARD)
        conn, _ = server.accept()
        with conn, client:
            event = WSACreateEvent()
            assert event is not None
            assert WSAEventSelect(conn, event, FD_CLOSE) == 0
            assert shutdown(conn, SD_RECEIVE) == 0
            assert WSAWaitForMultipleEvents([event], False, _QUIET_MS, False) == WSA_WAIT_TIMEOUT
            if peer_ends == "reset":
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()
            events = _wait_events(conn, event)
            assert events.lNetworkEvents == FD_CLOSE
            expected = WSAECONNRESET if peer_ends == "reset" else 0
            assert events.iErrorCode[FD_CLOSE_BIT] == expected


def test_event_select_fd_close_after_a_local_receive_shutdown_on_af_unix() -> None:
    """The same on an AF_UNIX stream: no FD_CLOSE for our ``shutdown(SD_RECEIVE)``, FD_CLOSE
    (error 0) when the peer closes."""
    a, b = socket.socketpair()
    with a:
        event = WSACreateEvent()
        assert event is not None
        assert WSAEventSelect(a, event, FD_CLOSE) == 0
        assert shutdown(a, SD_RECEIVE) == 0
        assert WSAWaitForMultipleEvents([event], False, _QUIET_MS, False) == WSA_WAIT_TIMEOUT
        b.close()
        events = _wait_events(a, event)
        assert events.lNetworkEvents == FD_CLOSE and events.iErrorCode[FD_CLOSE_BIT] == 0


def test_wsasendmsg_on_datagram_and_stream_sockets() -> None:
    """test_WSASendMsg: a stream socket is WSAEINVAL; a NULL message WSAEFAULT; a connected UDP
    socket sends the message's buffers as one datagram (overlapped or not)."""
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    a, b = socket.socketpair()
    with peer, u, a, b:
        peer.bind(("127.0.0.1", 0))
        u.connect(peer.getsockname())
        msg = WSAMSG(None, 0, [WSABUF(3, b"one"), WSABUF(3, b"two")], 2, None, 0)
        sent = DWORD()
        assert WSASendMsg(u, msg, 0, sent) == 0 and sent.value == 6
        assert WSASendMsg(u, msg, 0, None, WSAOVERLAPPED()) in (0, SOCKET_ERROR)
        peer.settimeout(GUARD)
        assert peer.recv(100) == b"onetwo" and peer.recv(100) == b"onetwo"
        assert WSASendMsg(a, msg, 0, DWORD()) == SOCKET_ERROR and WSAGetLastError() == WSAEINVAL
        assert WSASendMsg(u, None, 0, DWORD()) == SOCKET_ERROR and WSAGetLastError() == WSAEFAULT
        control = WSAMSG(None, 0, [WSABUF(1, b"x")], 1, WSABUF(4, b"ctrl"), 0)
        assert WSASendMsg(u, control, 0, DWORD()) == SOCKET_ERROR and WSAGetLastError() == WSAEOPNOTSUPP
        assert not select.select([peer], [], [], 0)[0]  # none of the refused ones went out
