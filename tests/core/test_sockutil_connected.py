"""``_sockutil.mark_connected`` / ``is_known_connected``: which sockets had a peer (issue 13 item 6).

Kept as a set of weak references with a callback each (issue 11: a WeakSet's Python methods cost
every accepted connection ~2,500 instructions). What must hold, in both builds: a marked socket
is known while it lives, marking it again adds nothing, its entry goes when it dies, and a new
socket, even one at the dead one's address, is not known.
"""

from __future__ import annotations

import errno
import gc
import socket
import struct

import pytest

from wsasend import WSAErrorCode, _sockutil


def test_a_marked_socket_is_known_once_until_it_dies() -> None:
    before = len(_sockutil._CONNECTED)
    a, b = socket.socketpair()
    try:
        assert not _sockutil.is_known_connected(a)
        _sockutil.mark_connected(a)
        _sockutil.mark_connected(a)  # again: nothing more to keep
        assert _sockutil.is_known_connected(a)
        assert not _sockutil.is_known_connected(b)
        assert len(_sockutil._CONNECTED) == before + 1
    finally:
        a.close()
        b.close()
    del a
    gc.collect()
    assert len(_sockutil._CONNECTED) == before


def test_a_socket_at_a_dead_ones_address_is_not_known() -> None:
    before = len(_sockutil._CONNECTED)
    reused = 0
    for _ in range(200):
        old = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        address = id(old)
        _sockutil.mark_connected(old)
        old.close()
        del old
        new = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            reused += id(new) == address
            assert not _sockutil.is_known_connected(new)
        finally:
            new.close()
    assert len(_sockutil._CONNECTED) == before
    # (CPython's allocator hands the freed object's memory to the next socket of the same size:
    # the check above ran on a reused address, not only on fresh ones.)
    assert reused > 0


def test_socket_info_marks_a_socket_seen_with_a_peer() -> None:
    a, b = socket.socketpair()
    with a, b:
        info = _sockutil.SocketInfo(a)  # (getpeername works: a peer)
        assert info.was_connected
        assert _sockutil.is_known_connected(a)
        told = _sockutil.SocketInfo(b, peer=True)  # (the caller saw the peer)
        assert told.was_connected and _sockutil.is_known_connected(b)
    lone = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with lone:
        assert not _sockutil.SocketInfo(lone).was_connected
        assert not _sockutil.is_known_connected(lone)


def _epipe_after_reset(sock: socket.socket) -> OSError:
    """Send on ``sock``, whose peer reset the connection, until Linux says EPIPE; that error."""
    for _ in range(100):
        try:
            sock.send(b"x")
        except OSError as exc:  # ECONNRESET first (the reset is reported once), then EPIPE
            if exc.errno == errno.EPIPE:
                return exc
    raise AssertionError("no EPIPE after the peer's reset")


@pytest.mark.parametrize(("family", "host"), [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_a_tcp_socket_seen_with_a_peer_needs_no_mark_to_read_as_reset(family: int, host: str) -> None:
    """``SocketInfo(sock, peer=True)`` (a server's new connection) marks no TCP socket: an EPIPE
    it meets after its peer's reset is still WSAECONNRESET to a classify that does not have that
    info (a fresh ``SocketInfo``, whose ``getpeername`` fails after the reset), from TCP_INFO's
    segment counts; a TCP socket that never had a peer stays WSAENOTCONN."""
    with socket.socket(family, socket.SOCK_STREAM) as listener:
        listener.bind((host, 0))
        listener.listen()
        client = socket.create_connection(listener.getsockname()[:2])
        server, _ = listener.accept()
    with client, server:
        told = _sockutil.SocketInfo(server, peer=True)
        assert told.was_connected and told.is_tcp
        assert not _sockutil.is_known_connected(server)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()  # (a reset)
        exc = _epipe_after_reset(server)
        assert not _sockutil.SocketInfo(server).was_connected  # (no peer now, and no mark)
        assert _sockutil.classify(server, exc) == WSAErrorCode.WSAECONNRESET
        assert _sockutil.classify(server, exc, told) == WSAErrorCode.WSAECONNRESET
    with socket.socket(family, socket.SOCK_STREAM) as lone:
        lone_exc = OSError(errno.EPIPE, "Broken pipe")
        assert _sockutil.classify(lone, lone_exc) == WSAErrorCode.WSAENOTCONN
