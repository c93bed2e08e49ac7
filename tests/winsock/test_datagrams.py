"""Per-send destinations and control data on datagram sockets (SPEC S8.7, issue 13).

``sendto``, ``WSASendTo`` and ``WSASendMsg`` on unconnected UDP and AF_UNIX datagram sockets:
implicit bind, several destinations from one socket (nonoverlapped, overlapped with events,
completion routines and completion ports), posting order across destinations, control data
(SCM_RIGHTS, IP_PKTINFO) and the error codes. Windows' expectations come from Wine's ws2_32
tests (``dlls/ws2_32/tests/sock.c``): test_WSASendTo, test_sendto, test_WSASendMsg, named in
each test. Every test runs with the provider on asyncio and on uvloop (the ``provider``
fixture); the in-loop test on both loops through tests/conftest.py.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import os
import select
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from wsasend import WSAError, WSAErrorCode, WSAEvent, WSAOverlapped, wsa_send
from wsasend.winsock import (
    DWORD,
    MSG_PARTIAL,
    SOCKET_ERROR,
    WAIT_IO_COMPLETION,
    WSA_IO_PENDING,
    WSABUF,
    WSAEADDRNOTAVAIL,
    WSAEAFNOSUPPORT,
    WSAEFAULT,
    WSAEINVAL,
    WSAEISCONN,
    WSAEMSGSIZE,
    WSAEOPNOTSUPP,
    WSAMSG,
    WSAOVERLAPPED,
    CloseHandle,
    CreateIoCompletionPort,
    GetQueuedCompletionStatus,
    SleepEx,
    WSACreateEvent,
    WSAGetLastError,
    WSAGetOverlappedResult,
    WSASendMsg,
    WSASendTo,
    WSASetLastError,
    sendto,
)
from wsasend.winsock import socket as ws_socket

from ._support import GUARD, GUARD_MS, Routines

# sizeof(SOCKADDR_IN), sizeof(SOCKADDR_IN6), sizeof(sockaddr_un) as Winsock callers pass them.
V4, V6, UNIX = 16, 28, 110
# Linux's IP_PKTINFO (the socket module names it only from Python 3.14).
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)


def _udp_peer(family: int = socket.AF_INET) -> socket.socket:
    peer = socket.socket(family, socket.SOCK_DGRAM)
    peer.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
    peer.settimeout(GUARD)
    return peer


def _ipv6_available() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.fixture
def peers() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = _udp_peer(), _udp_peer()
    yield a, b
    a.close()
    b.close()


@pytest.mark.usefixtures("provider")
def test_sendto_two_peers_from_an_unbound_udp_socket_binds_it(peers: tuple[socket.socket, socket.socket]) -> None:
    """test_sendto and test_WSASendTo: an unbound UDP socket has no name (port 0); sendto binds
    it implicitly; two different unconnected peers each get their datagram, from that port;
    success sets the last error to 0."""
    a, b = peers
    u = ws_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    assert u is not None
    with u:
        assert u.getsockname()[1] == 0
        WSASetLastError(12345)
        assert sendto(u, b"to-a", 4, 0, a.getsockname(), V4) == 4
        assert WSAGetLastError() == 0
        port = u.getsockname()[1]
        assert port != 0  # the implicit bind
        sent = DWORD()
        assert WSASendTo(u, [WSABUF(2, b"to"), WSABUF(2, b"-b")], 2, sent, 0, b.getsockname(), V4) == 0
        assert sent.value == 4 and WSAGetLastError() == 0
        assert a.recvfrom(100) == (b"to-a", ("127.0.0.1", port))
        assert b.recvfrom(100) == (b"to-b", ("127.0.0.1", port))
        assert u.getsockname()[1] == port  # one bind, kept


@pytest.mark.usefixtures("provider")
def test_wsasendto_overlapped_to_two_peers_event_routine_and_port(peers: tuple[socket.socket, socket.socket]) -> None:
    """test_WSASendTo (overlapped): an unbound socket, overlapped sends to two peers completed
    through hEvent and WSAGetOverlappedResult, through a completion routine (alertable wait),
    and through a completion port; every datagram reaches its own peer."""
    a, b = peers
    u = ws_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    assert u is not None
    with u:
        event = WSACreateEvent()
        ov1, ov2 = WSAOVERLAPPED(event), WSAOVERLAPPED()
        for ov, peer, data in ((ov1, a, b"e-a"), (ov2, b, b"e-b")):
            rc = WSASendTo(u, [WSABUF(3, data)], 1, None, 0, peer.getsockname(), V4, ov)
            assert rc == 0 or WSAGetLastError() == WSA_IO_PENDING
            n, flags = DWORD(), DWORD()
            assert WSAGetOverlappedResult(u, ov, n, True, flags) and n.value == 3
        assert u.getsockname()[1] != 0
        routine = Routines()
        for peer, data in ((a, b"r-a"), (b, b"r-b")):
            rc = WSASendTo(u, [WSABUF(3, data)], 1, None, 0, peer.getsockname(), V4, WSAOVERLAPPED(), routine)
            assert rc == 0 or WSAGetLastError() == WSA_IO_PENDING
        while len(routine.calls) < 2:
            assert SleepEx(GUARD_MS, True) == WAIT_IO_COMPLETION
        assert [(err, n) for err, n, _, _ in routine.calls] == [(0, 3), (0, 3)]
        assert set(routine.threads) == {threading.get_ident()}
        assert a.recv(100) == b"e-a" and b.recv(100) == b"e-b"
        assert a.recv(100) == b"r-a" and b.recv(100) == b"r-b"
    v = ws_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    assert v is not None
    with v:
        port = CreateIoCompletionPort(None, None, 0, 0)
        assert CreateIoCompletionPort(v, port, 9, 0) is port
        ovs = [WSAOVERLAPPED(), WSAOVERLAPPED()]
        for ov, peer in zip(ovs, (a, b), strict=True):
            rc = WSASendTo(v, [WSABUF(4, b"port")], 1, None, 0, peer.getsockname(), V4, ov)
            assert rc == 0 or WSAGetLastError() == WSA_IO_PENDING
        assert [GetQueuedCompletionStatus(port, GUARD_MS) for _ in ovs] == [(True, 4, 9, ov) for ov in ovs]
        source = ("127.0.0.1", v.getsockname()[1])
        assert a.recvfrom(100) == (b"port", source) and b.recvfrom(100) == (b"port", source)
        assert CloseHandle(port)


@pytest.mark.usefixtures("provider")
def test_datagrams_to_different_destinations_keep_posting_order(tmp_path: Path) -> None:
    """test_WSASendTo (S5.4 with S8.7): overlapped datagrams to two AF_UNIX receivers, posted
    while the sender's buffer is full, are queued in one queue and sent in posting order, each
    to its own destination. (An AF_UNIX datagram stays charged to the sender until it is read,
    so a small SO_SNDBUF makes the sends pend deterministically.)"""
    paths = [str(tmp_path / "a"), str(tmp_path / "b")]
    receivers = []
    for path in paths:
        r = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        r.bind(path)
        r.settimeout(GUARD)
        receivers.append(r)
    u = ws_socket(socket.AF_UNIX, socket.SOCK_DGRAM, 0)
    assert u is not None
    try:
        u.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        posted: list[tuple[int, bytes, WSAOverlapped]] = []
        pending = 0
        i = 0
        while pending < 4:  # fill the buffer, then queue four more
            to = i % 2
            data = b"%03d" % i + bytes(1500)
            ov = WSAOVERLAPPED()
            rc = WSASendTo(u, [WSABUF(len(data), data)], 1, None, 0, paths[to], UNIX, ov)
            if rc == SOCKET_ERROR:
                assert WSAGetLastError() == WSA_IO_PENDING
                pending += 1
            posted.append((to, data, ov))
            i += 1
            assert i < 40, "the sends never pended"
        # Read both receivers as datagrams arrive (the queue's head may be for either).
        got: list[list[bytes]] = [[], []]
        while sum(map(len, got)) < len(posted):
            ready, _, _ = select.select(receivers, [], [], GUARD)
            assert ready, "the queued datagrams never arrived"
            for r in ready:
                got[receivers.index(r)].append(r.recv(4096))
        for to in (0, 1):
            assert got[to] == [data for t, data, _ in posted if t == to]
        for _, data, ov in posted:
            n, flags = DWORD(), DWORD()
            assert WSAGetOverlappedResult(u, ov, n, True, flags) and n.value == len(data)
    finally:
        u.close()
        for r in receivers:
            r.close()


@pytest.mark.usefixtures("provider")
def test_a_queued_datagram_to_a_missing_destination_fails_alone(tmp_path: Path) -> None:
    """test_WSASendTo (S6.4 with S8.7): a queued datagram whose destination the kernel refuses
    when its turn comes (an AF_UNIX path nobody has bound) fails alone, with 0 bytes; the
    datagrams queued before and after it go out, and the socket stays usable."""
    path = str(tmp_path / "rx")
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx.bind(path)
    rx.settimeout(GUARD)
    u = ws_socket(socket.AF_UNIX, socket.SOCK_DGRAM, 0)
    assert u is not None
    try:
        u.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        sent: list[bytes] = []
        while True:  # fill the sender's buffer: the next send pends
            data = b"%03d" % len(sent) + bytes(1500)
            ov = WSAOVERLAPPED()
            rc = WSASendTo(u, [WSABUF(len(data), data)], 1, None, 0, path, UNIX, ov)
            sent.append(data)
            if rc == SOCKET_ERROR:
                assert WSAGetLastError() == WSA_IO_PENDING
                break
            assert len(sent) < 40, "the sends never pended"
        lost = WSAOVERLAPPED()
        rc = WSASendTo(u, [WSABUF(4, b"lost")], 1, None, 0, str(tmp_path / "nobody"), UNIX, lost)
        assert rc == SOCKET_ERROR and WSAGetLastError() == WSA_IO_PENDING
        after = WSAOVERLAPPED()
        assert WSASendTo(u, [WSABUF(5, b"after")], 1, None, 0, path, UNIX, after) == SOCKET_ERROR
        assert WSAGetLastError() == WSA_IO_PENDING
        got = [rx.recv(4096) for _ in range(len(sent) + 1)]
        assert got == [*sent, b"after"]
        n, flags = DWORD(), DWORD()
        assert not WSAGetOverlappedResult(u, lost, n, True, flags) and n.value == 0
        assert WSAGetLastError() not in (0, WSA_IO_PENDING)
        assert WSAGetOverlappedResult(u, after, n, True, flags) and n.value == 5
    finally:
        u.close()
        rx.close()


@pytest.mark.usefixtures("provider")
def test_wsasendmsg_name_and_scm_rights_over_af_unix(tmp_path: Path) -> None:
    """test_WSASendMsg: a message with a destination and control data, from an unconnected
    AF_UNIX datagram socket, nonoverlapped and overlapped: the receiver gets the bytes and a
    working descriptor (SCM_RIGHTS); the overlapped is reused for a send without either."""
    path = str(tmp_path / "rx")
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx.bind(path)
    rx.settimeout(GUARD)
    u = ws_socket(socket.AF_UNIX, socket.SOCK_DGRAM, 0)
    assert u is not None
    r, w = os.pipe()
    try:
        os.write(w, b"through the fd")
        rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [r]).tobytes())]
        msg = WSAMSG(path, UNIX, [WSABUF(3, b"one"), WSABUF(3, b"two")], 2, rights, 0)
        sent = DWORD()
        assert WSASendMsg(u, msg, 0, sent) == 0 and sent.value == 6
        data, fds, _, _ = socket.recv_fds(rx, 100, 4)
        assert data == b"onetwo" and len(fds) == 1
        assert os.read(fds[0], 100) == b"through the fd"
        os.close(fds[0])
        ov = WSAOVERLAPPED()
        os.write(w, b"again")
        # The documented spelling, as socket.sendmsg takes it: an array, not its bytes (it
        # was WSAEINVAL; adversarial pass).
        as_array = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [r]))]
        rc = WSASendMsg(u, WSAMSG(path, UNIX, [WSABUF(2, b"ov")], 1, as_array, 0), 0, None, ov)
        assert rc == 0 or WSAGetLastError() == WSA_IO_PENDING
        n, flags = DWORD(), DWORD()
        assert WSAGetOverlappedResult(u, ov, n, True, flags) and n.value == 2
        data, fds, _, _ = socket.recv_fds(rx, 100, 4)
        assert data == b"ov" and len(fds) == 1 and os.read(fds[0], 100) == b"again"
        os.close(fds[0])
        assert ov._dest is None  # nothing of the caller's is kept once sent
        # The overlapped, reused for a message without destination or control data: it must
        # not go to the last one's address (the socket is unconnected: the kernel refuses it).
        assert WSASendMsg(u, WSAMSG(None, 0, [WSABUF(1, b"x")], 1, None, 0), 0, None, ov) == SOCKET_ERROR
        assert WSAGetLastError() != WSA_IO_PENDING
        assert not select.select([rx], [], [], 0)[0]
    finally:
        os.close(r)
        os.close(w)
        u.close()
        rx.close()


@pytest.mark.usefixtures("provider")
def test_wsasendmsg_ip_pktinfo_and_bad_control_data(peers: tuple[socket.socket, socket.socket]) -> None:
    """test_WSASendMsg: control data on UDP (IP_PKTINFO choosing the source address) goes with
    the datagram; control data that is not (level, type, data) triples is WSAEINVAL, a raw
    control buffer WSAEOPNOTSUPP, and nothing is sent for either."""
    a, _ = peers
    u = ws_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    assert u is not None
    with u:
        pktinfo = struct.pack("=i4s4s", 0, socket.inet_aton("127.0.0.1"), bytes(4))
        control = [(socket.IPPROTO_IP, IP_PKTINFO, pktinfo)]
        sent = DWORD()
        assert WSASendMsg(u, WSAMSG(a.getsockname(), V4, [WSABUF(3, b"pkt")], 1, control, 0), 0, sent) == 0
        assert a.recvfrom(100) == (b"pkt", ("127.0.0.1", u.getsockname()[1]))
        for bad in ([(1, 2)], [("x", 1, b"")], [(0, 8, 12)], 42):
            msg = WSAMSG(a.getsockname(), V4, [WSABUF(1, b"x")], 1, bad, 0)
            assert WSASendMsg(u, msg, 0, DWORD()) == SOCKET_ERROR and WSAGetLastError() == WSAEINVAL, bad
        raw = WSAMSG(a.getsockname(), V4, [WSABUF(1, b"x")], 1, WSABUF(4, b"ctrl"), 0)
        assert WSASendMsg(u, raw, 0, DWORD()) == SOCKET_ERROR and WSAGetLastError() == WSAEOPNOTSUPP
        # Control data on a MSG_PARTIAL piece: WSAEINVAL, nothing held (it was dropped while
        # the piece said it was sent; adversarial pass). The ending send may carry it.
        piece = WSAMSG(a.getsockname(), V4, [WSABUF(1, b"x")], 1, control, 0)
        assert WSASendMsg(u, piece, MSG_PARTIAL, DWORD()) == SOCKET_ERROR and WSAGetLastError() == WSAEINVAL
        assert not select.select([a], [], [], 0)[0]
        sent = DWORD()
        assert WSASendMsg(u, WSAMSG(a.getsockname(), V4, [WSABUF(2, b"p1")], 1, None, 0), MSG_PARTIAL, sent) == 0
        ending = WSAMSG(a.getsockname(), V4, [WSABUF(2, b"p2")], 1, control, 0)
        assert WSASendMsg(u, ending, 0, sent) == 0
        assert a.recvfrom(100) == (b"p1p2", ("127.0.0.1", u.getsockname()[1]))


@pytest.mark.usefixtures("provider")
def test_wsasendto_destination_errors(peers: tuple[socket.socket, socket.socket]) -> None:
    """test_WSASendTo and test_sendto: WSAEFAULT for an address length too small or something
    that is not an address, WSAEAFNOSUPPORT for another family's address, WSAEADDRNOTAVAIL for
    ADDR_ANY (Linux would deliver 0.0.0.0:port to this host's socket on that port), WSAEMSGSIZE
    over the UDP limit, WSAEISCONN for another destination on a connected UDP socket (its own
    peer is fine); nothing is sent for any of them."""
    a, b = peers
    u = ws_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    assert u is not None
    with u:
        to = a.getsockname()
        cases: list[tuple[object, object, int]] = [
            (to, V4 - 1, WSAEFAULT),
            (to, None, WSAEFAULT),
            (("127.0.0.1",), V4, WSAEFAULT),
            (("127.0.0.1", 70000), V4, WSAEFAULT),
            (("localhost", to[1]), V4, WSAEFAULT),  # a name, not an address
            (b"junk", V4, WSAEFAULT),
            (("::1", to[1]), V6, WSAEAFNOSUPPORT),
            (("::1", to[1], 0, 0), V6, WSAEAFNOSUPPORT),
            ("/tmp/a-path", UNIX, WSAEFAULT),
            (("0.0.0.0", to[1]), V4, WSAEADDRNOTAVAIL),
        ]
        for address, length, code in cases:
            assert sendto(u, b"x", 1, 0, address, length) == SOCKET_ERROR, address  # type: ignore[arg-type]
            assert WSAGetLastError() == code, address
        big = bytes(70000)
        assert WSASendTo(u, [WSABUF(len(big), big)], 1, DWORD(), 0, to, V4) == SOCKET_ERROR
        assert WSAGetLastError() == WSAEMSGSIZE
        ov = WSAOVERLAPPED()
        assert WSASendTo(u, [WSABUF(len(big), big)], 1, None, 0, to, V4, ov) == SOCKET_ERROR
        assert WSAGetLastError() == WSAEMSGSIZE
        assert not select.select([a], [], [], 0)[0]
        u.connect(a.getsockname())
        assert sendto(u, b"other", 5, 0, b.getsockname(), V4) == SOCKET_ERROR
        assert WSAGetLastError() == WSAEISCONN
        assert sendto(u, b"peer", 4, 0, a.getsockname(), V4) == 4
        assert a.recv(100) == b"peer"
        assert not select.select([b], [], [], 0)[0]


@pytest.mark.usefixtures("provider")
@pytest.mark.skipif(not _ipv6_available(), reason="no IPv6 loopback")
def test_sendto_ipv6_two_peers_implicit_bind() -> None:
    """test_WSASendTo over IPv6: an unbound AF_INET6 UDP socket sends to two ::1 peers
    (nonoverlapped and overlapped), is bound by the first send; an IPv4 literal is
    WSAEAFNOSUPPORT, a short address length WSAEFAULT, and the unspecified address (``::``,
    or IPv4's mapped into IPv6) WSAEADDRNOTAVAIL, with nothing sent."""
    a, b = _udp_peer(socket.AF_INET6), _udp_peer(socket.AF_INET6)
    u = ws_socket(socket.AF_INET6, socket.SOCK_DGRAM, 0)
    assert u is not None
    with a, b, u:
        assert sendto(u, b"six", 3, 0, a.getsockname(), V6) == 3
        port = u.getsockname()[1]
        assert port != 0
        ov = WSAOVERLAPPED()
        rc = WSASendTo(u, [WSABUF(4, b"six!")], 1, None, 0, b.getsockname()[:2], V6, ov)
        assert rc == 0 or WSAGetLastError() == WSA_IO_PENDING
        n, flags = DWORD(), DWORD()
        assert WSAGetOverlappedResult(u, ov, n, True, flags) and n.value == 4
        data, src = a.recvfrom(100)
        assert data == b"six" and src[:2] == ("::1", port)
        data, src = b.recvfrom(100)
        assert data == b"six!" and src[:2] == ("::1", port)
        assert sendto(u, b"x", 1, 0, ("127.0.0.1", a.getsockname()[1]), V6) == SOCKET_ERROR
        assert WSAGetLastError() == WSAEAFNOSUPPORT
        assert sendto(u, b"x", 1, 0, a.getsockname(), V4) == SOCKET_ERROR
        assert WSAGetLastError() == WSAEFAULT
        for host in ("::", "::ffff:0.0.0.0", "::%1"):
            WSASetLastError(0)
            assert sendto(u, b"any", 3, 0, (host, a.getsockname()[1]), V6) == SOCKET_ERROR, host
            assert WSAGetLastError() == WSAEADDRNOTAVAIL, host
        assert not select.select([a, b], [], [], 0)[0]


@pytest.mark.usefixtures("started")
async def test_in_loop_wsasendto_and_wsasendmsg_to_two_peers() -> None:
    """test_WSASendTo and test_WSASendMsg inside a running loop (S8.6): the sends go to this
    loop's engine; routines run through call_soon; two peers, implicit bind, order kept."""
    a, b = _udp_peer(), _udp_peer()
    a.setblocking(False)
    b.setblocking(False)
    u = ws_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    assert u is not None
    loop = asyncio.get_running_loop()
    try:
        routine = Routines()
        for i in range(6):
            peer = (a, b)[i % 2]
            data = b"m%d" % i
            if i % 3 == 2:
                msg = WSAMSG(peer.getsockname(), V4, [WSABUF(2, data)], 1, None, 0)
                rc = WSASendMsg(u, msg, 0, None, WSAOVERLAPPED(), routine)
            else:
                rc = WSASendTo(u, [WSABUF(2, data)], 1, None, 0, peer.getsockname(), V4, WSAOVERLAPPED(), routine)
            assert rc == 0 or WSAGetLastError() == WSA_IO_PENDING
        assert u.getsockname()[1] != 0
        while len(routine.calls) < 6:
            await asyncio.sleep(0)
        assert [(err, n) for err, n, _, _ in routine.calls] == [(0, 2)] * 6
        assert set(routine.threads) == {threading.get_ident()}
        got_a = [await loop.sock_recv(a, 100) for _ in range(3)]
        got_b = [await loop.sock_recv(b, 100) for _ in range(3)]
        assert got_a == [b"m0", b"m2", b"m4"] and got_b == [b"m1", b"m3", b"m5"]
    finally:
        u.close()
        a.close()
        b.close()


@pytest.mark.usefixtures("started")
async def test_a_socketpairs_datagram_socket_refuses_another_destination(tmp_path: Path) -> None:
    """S8.7: an AF_UNIX datagram socket connected to an unnamed peer (a socketpair's;
    ``getpeername()`` says "") is connected: another destination is WSAEISCONN on every API,
    and nothing reaches the socket it names. It was read as unconnected, and both datagrams
    went to the other socket (adversarial pass)."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    other = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "other")
    with a, b, other:
        other.bind(path)
        other.setblocking(False)
        b.setblocking(False)
        with pytest.raises(WSAError) as info:
            wsa_send(a, [b"stray"], address=path)
        assert info.value.winerror == WSAEISCONN and info.value.bytes_sent == 0
        count = DWORD()
        assert WSASendTo(a, [WSABUF(6, b"stray2")], 1, count, 0, path, len(path), None, None) == SOCKET_ERROR
        assert WSAGetLastError() == WSAEISCONN
        assert await wsa_send(a, [b"own"]) == 3  # its own peer, as ever
        assert b.recv(10) == b"own"
        assert not select.select([other, b], [], [], 0)[0]  # nothing went astray


async def test_wsa_send_address_to_two_peers_and_its_codes(tmp_path: Path) -> None:
    """The Pythonic spelling of test_WSASendTo (S8.7): ``wsa_send(..., address=)`` on an
    unbound UDP socket binds it and reaches two peers; queued AF_UNIX datagrams to two
    receivers keep posting order; a bad address raises WSAError with Windows' code and sends
    nothing; a connected UDP socket takes its own peer only (WSAEISCONN)."""
    a, b = _udp_peer(), _udp_peer()
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with a, b, u:
        assert await wsa_send(u, [b"py", b"-a"], address=a.getsockname()) == 4
        assert u.getsockname()[1] != 0
        assert await wsa_send(u, b"py-b", address=b.getsockname()) == 4
        assert await asyncio.to_thread(a.recvfrom, 100) == (b"py-a", ("127.0.0.1", u.getsockname()[1]))
        assert await asyncio.to_thread(b.recvfrom, 100) == (b"py-b", ("127.0.0.1", u.getsockname()[1]))
        bad = [
            (("::1", 9), WSAEAFNOSUPPORT),
            ("nowhere", WSAEFAULT),
            (("127.0.0.1", -1), WSAEFAULT),
            (("0.0.0.0", a.getsockname()[1]), WSAEADDRNOTAVAIL),  # ADDR_ANY (Linux: this host)
        ]
        for address, code in bad:
            with pytest.raises(WSAError) as info:
                wsa_send(u, [b"x"], address=address)
            assert info.value.winerror == code and info.value.bytes_sent == 0
        with pytest.raises(WSAError) as info:
            wsa_send(u, [bytes(70000)], address=a.getsockname())
        assert info.value.winerror == WSAEMSGSIZE
        u.connect(a.getsockname())
        with pytest.raises(WSAError) as info:
            wsa_send(u, [b"x"], address=b.getsockname())
        assert info.value.winerror == WSAEISCONN
        assert await wsa_send(u, [b"own"], address=a.getsockname()) == 3
        assert await asyncio.to_thread(a.recv, 100) == b"own"
        assert not select.select([a, b], [], [], 0)[0]
    paths = [str(tmp_path / "a"), str(tmp_path / "b")]
    receivers = [socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) for _ in paths]
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        for r, path in zip(receivers, paths, strict=True):
            r.bind(path)
            r.setblocking(False)
        sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        ovs = [wsa_send(sender, [b"%03d" % i, bytes(1500)], address=paths[i % 2]) for i in range(12)]
        assert any(ov.pending for ov in ovs)  # the buffer filled: the rest were queued
        got: list[list[bytes]] = [[], []]
        deadline = asyncio.get_running_loop().time() + GUARD
        while sum(map(len, got)) < len(ovs):
            assert asyncio.get_running_loop().time() < deadline, "the queued datagrams never arrived"
            for k, r in enumerate(receivers):
                with contextlib.suppress(BlockingIOError):
                    got[k].append(r.recv(4096)[:3])
            await asyncio.sleep(0)
        assert got == [[b"%03d" % i for i in range(k, 12, 2)] for k in (0, 1)]
        assert [await ov for ov in ovs] == [1503] * 12
    finally:
        sender.close()
        for r in receivers:
            r.close()


@pytest.mark.skipif(not _ipv6_available(), reason="no IPv6 loopback")
async def test_ipv6_flowinfo_and_scope_id_out_of_range_are_wsaefault_at_the_call() -> None:
    """sockaddr_in6 holds 20 bits of flowinfo and 32 of scope_id. Out of range, the address
    passed the check and socket.sendmsg raised a raw OverflowError (flowinfo) or truncated the
    value (scope_id); with a MSG_PARTIAL piece queued, the flush then failed, both sends stayed
    pending for ever and every later send raised OverflowError (at bad3034)."""
    r = _udp_peer(socket.AF_INET6)
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    with r, s:
        port = r.getsockname()[1]
        piece = wsa_send(s, b"piece-", MSG_PARTIAL, address=("::1", port))
        for address in (("::1", port, 1 << 20, 0), ("::1", port, 0, 1 << 32), ("::1", port, 1 << 40)):
            with pytest.raises(WSAError) as info:
                wsa_send(s, b"bad", address=address)
            assert info.value.winerror == WSAEFAULT and info.value.bytes_sent == 0
            assert not isinstance(info.value, TypeError)  # a value out of range, not a type
        assert piece.pending
        assert await wsa_send(s, b"end", address=("::1", port, (1 << 20) - 1, 0)) == 3
        assert await piece == 6
        assert await asyncio.to_thread(r.recv, 100) == b"piece-end"
        assert not select.select([r], [], [], 0)[0]  # nothing of the refused sends went


async def test_arguments_of_the_wrong_type_are_also_type_errors(peers: tuple[socket.socket, socket.socket]) -> None:
    """S3.2: a WSAEFAULT raised because an argument has the wrong Python type is also a
    TypeError, for every argument (the overlapped, the routine and the address were not, at
    bad3034). Nothing is sent."""
    a, _ = peers
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with u:
        wrong: list[dict[str, Any]] = [
            {"overlapped": object()},
            {"overlapped": WSAEvent()},
            {"completion_routine": 5},
            {"address": 5},
            {"address": True},
            {"address": ("127.0.0.1", "9")},
            {"address": ()},
        ]
        for kwargs in wrong:
            with pytest.raises(WSAError) as info:
                wsa_send(u, [b"x"], **kwargs)
            assert info.value.winerror == WSAEFAULT and isinstance(info.value, TypeError), kwargs
        with pytest.raises(WSAError) as info:
            wsa_send(u, [b"x"], address=("127.0.0.1", 70000))
        assert info.value.winerror == WSAEFAULT and not isinstance(info.value, TypeError)
        assert not select.select([a], [], [], 0)[0]


async def test_ending_a_queued_message_with_nowhere_to_go_raises_wsaenotconn(
    peers: tuple[socket.socket, socket.socket],
) -> None:
    """S5.2: on an unconnected datagram socket a send with no address is WSAENOTCONN from the
    call, also when it ends MSG_PARTIAL pieces queued before it (at bad3034 it was pending,
    then completed with WSAENOTCONN). The pieces wait for an ending send that has one."""
    a, _ = peers
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with u:
        piece = wsa_send(u, b"P1-", MSG_PARTIAL, address=a.getsockname())
        with pytest.raises(WSAError) as info:
            wsa_send(u, b"F", completion_routine=lambda *args: None)
        assert info.value.winerror == WSAErrorCode.WSAENOTCONN and info.value.bytes_sent == 0
        assert piece.pending
        assert await wsa_send(u, b"F2", address=a.getsockname()) == 2
        assert await piece == 3
        assert await asyncio.to_thread(a.recv, 100) == b"P1-F2"
        u2 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with u2:
            u2.connect(a.getsockname())  # connected: its peer is the destination, asked once
            piece = wsa_send(u2, b"P-", MSG_PARTIAL)
            assert await wsa_send(u2, b"E") == 1 and await piece == 2
            assert await asyncio.to_thread(a.recv, 100) == b"P-E"


async def test_overlapped_error_is_a_wsaerrorcode_in_both_builds() -> None:
    """S5.3: ``ov.error`` is 0 or a WSAErrorCode (S10: in both builds). Compiled, the field is a
    C int, and the property gave a plain int (at bad3034)."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with a, b:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        ovs = [wsa_send(a, bytes(1000)) for _ in range(20)]
        assert ovs[-1].pending and ovs[-1].cancel()
        assert ovs[-1].error is WSAErrorCode.WSA_OPERATION_ABORTED
        assert ovs[-1].error.name == "WSA_OPERATION_ABORTED"
        with pytest.raises(WSAError):
            await ovs[-1]
        b.setblocking(False)
        done = [ov for ov in ovs[:-1] if not ov.pending]
        assert done and all(ov.error == 0 and type(ov.error) is int for ov in done)


@pytest.mark.usefixtures("provider")
def test_msg_partial_message_goes_to_the_destination_of_its_ending_send(
    peers: tuple[socket.socket, socket.socket],
) -> None:
    """test_WSASendTo with S4.4's MSG_PARTIAL: the pieces of a message assembled on an unbound
    UDP socket leave as one datagram, to the destination of the send that ends the message,
    nonoverlapped and overlapped."""
    a, b = peers
    u = ws_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    assert u is not None
    with u:
        sent = DWORD()
        assert WSASendTo(u, [WSABUF(3, b"one")], 1, sent, MSG_PARTIAL, None, 0) == 0 and sent.value == 3
        assert WSASendTo(u, [WSABUF(3, b"two")], 1, sent, 0, a.getsockname(), V4) == 0 and sent.value == 3
        assert a.recv(100) == b"onetwo"
        first, last = WSAOVERLAPPED(), WSAOVERLAPPED()
        rc = WSASendTo(u, [WSABUF(3, b"thr")], 1, None, MSG_PARTIAL, a.getsockname(), V4, first)
        assert rc == 0 or WSAGetLastError() == WSA_IO_PENDING
        rc = WSASendTo(u, [WSABUF(2, b"ee")], 1, None, 0, b.getsockname(), V4, last)
        assert rc == 0 or WSAGetLastError() == WSA_IO_PENDING
        n, flags = DWORD(), DWORD()
        assert WSAGetOverlappedResult(u, last, n, True, flags) and n.value == 2
        assert b.recv(100) == b"three"
        assert not select.select([a], [], [], 0)[0]
