"""On uvloop a stream transport reads through the loop's ErrorWatch, not a reader of the loop's.

uvloop's ``add_reader`` and ``remove_reader`` cost seven system calls a connection (issue 11,
workload HC); the watch's epoll, where every stream transport of the loop is registered anyway,
reports data as well (``EPOLLIN``, level-triggered, while the transport reads; errors only,
one-shot, while it does not). These tests read the registrations the kernel holds
(``/proc/self/fdinfo`` of the watch's epoll) and hold the design to what a loop's reader gives:
a transport waiting for data is kept alive by its loop, pausing stops the reports, data that
arrived meanwhile is read on resume, and the fd-reuse rule: the descriptor stays open while it
is registered. Every test runs on both loops; asyncio has no watch, and the same behaviour
comes from its selector.
"""

from __future__ import annotations

import asyncio
import gc
import os
import select
import socket
import struct

import pytest

import wsasend
from wsasend import WSATransport, _errorwatch, _transport

from .util import GUARD, Pong, Recorder, on_uvloop, spin, wrap


def _registrations(watch: _errorwatch.ErrorWatch) -> dict[int, int]:
    """Descriptor number -> event mask of every registration in the watch's epoll (the
    kernel's own list: ``tfd: N events: HEX ...`` lines of ``/proc/self/fdinfo``)."""
    found: dict[int, int] = {}
    with open(f"/proc/self/fdinfo/{watch._fd}") as info:
        for line in info:
            if line.startswith("tfd:"):
                fields = line.split()
                found[int(fields[1])] = int(fields[3], 16)
    return found


async def test_reading_is_a_data_registration_in_the_watch_and_pausing_makes_it_errors_only() -> None:
    """While the transport reads, its socket is registered for data (EPOLLIN); paused, for
    errors only (one-shot, no event asked for), and data sent meanwhile waits in the kernel
    until ``resume_reading``, then arrives whole."""
    ours, peer = socket.socketpair()
    with peer:
        transport, proto = await wrap(ours)
        fd = ours.fileno()
        watch = transport._error_watch
        if on_uvloop():
            assert watch is not None
            assert _registrations(watch)[fd] & select.EPOLLIN
        else:
            assert watch is None  # (asyncio: the selector reads)
        transport.pause_reading()
        if watch is not None:
            mask = _registrations(watch)[fd]
            assert not mask & select.EPOLLIN and mask & select.EPOLLONESHOT
        peer.sendall(b"while paused")
        await spin()
        assert proto.data == b""
        transport.resume_reading()
        if watch is not None:
            assert _registrations(watch)[fd] & select.EPOLLIN
        async with asyncio.timeout(GUARD):
            assert await proto.wait_data(12) == b"while paused"
        peer.sendall(b"!")
        async with asyncio.timeout(GUARD):
            assert await proto.wait_data(13) == b"while paused!"
        transport.close()
        await proto.wait_lost()
        proto.check()


async def test_a_connection_waiting_for_data_is_kept_by_its_loop_through_a_collection() -> None:
    """A server's connection whose transport and protocol refer only to each other, waiting for
    its first request: the collector must not take it (a loop holds its readers; reading
    through the watch, the watch's reader holds it: without that, clients saw resets)."""
    server = await wsasend.create_server(Pong, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await spin()
        gc.collect()
        writer.write(b"ping")
        async with asyncio.timeout(GUARD):
            assert await reader.readexactly(4) == b"pong"
        writer.close()
        await writer.wait_closed()


async def test_a_close_behind_the_transports_back_keeps_the_descriptor_until_the_transport_closes() -> None:
    """The fd-reuse rule for reading through the watch: registered by number, so the number
    must stay the socket's while it is registered. ``close()`` behind the transport's back
    waits for the transport's own (as uvloop's readers make it wait on main); no new socket
    gets the number meanwhile; the transport's close then closes it."""
    ours, peer = socket.socketpair()
    with peer:
        transport, proto = await wrap(ours)
        fd = ours.fileno()
        ours.close()  # behind the transport's back
        if on_uvloop():
            os.fstat(fd)  # (still open: raises EBADF otherwise)
            with socket.socket() as newcomer:
                assert newcomer.fileno() != fd
            transport.close()
            await proto.wait_lost()
        else:
            assert ours.fileno() == -1  # asyncio's selector holds nothing open
            transport.close()
            await proto.wait_lost()
        assert ours.fileno() == -1
        proto.check()


@pytest.mark.parametrize("how", ["close", "abort"])
async def test_no_data_registration_outlives_the_transport_with_a_duplicate_of_the_socket_open(how: str) -> None:
    """At close the kernel drops a registration with its file, unless the file is still open
    elsewhere (a ``dup``, a forked child's copy): a data registration left behind would report
    the data nobody reads again and again (a spinning loop). So none is left for data; an
    errors-only one may stay (one-shot: reported once at most)."""
    keeper_sock, keeper_peer = socket.socketpair()  # (keeps the loop's watch alive throughout)
    ours, peer = socket.socketpair()
    with keeper_peer, peer:
        keeper, keeper_proto = await wrap(keeper_sock)
        transport, proto = await wrap(ours)
        fd = ours.fileno()
        duplicate = os.dup(fd)
        try:
            watch = transport._error_watch
            if how == "close":
                transport.close()
            else:
                transport.abort()
            await proto.wait_lost()
            peer.sendall(b"nobody reads this")
            await spin()
            if watch is not None:
                left = _registrations(watch)
                assert fd not in left or not left[fd] & select.EPOLLIN
                assert _registrations(watch)[keeper_sock.fileno()] & select.EPOLLIN
            assert os.read(duplicate, 100) == b"nobody reads this"  # (still there, unread)
        finally:
            os.close(duplicate)
        keeper.close()
        await keeper_proto.wait_lost()
        proto.check()
        keeper_proto.check()


async def test_a_socket_that_polls_hup_forever_after_eof_is_not_left_registered_for_data() -> None:
    """An AF_UNIX socket whose peer closed polls EPOLLHUP for good, and a level-triggered
    registration for data would report it on every loop iteration. The transport reads the EOF,
    stops reading (its protocol keeps the connection open, half-closed) and the registration is
    errors-only and one-shot, reported once at most; the transport still writes."""
    ours, peer = socket.socketpair()
    proto = Recorder(keep_open=True)
    transport = WSATransport(ours, proto)
    await proto.made
    peer.shutdown(socket.SHUT_WR)
    async with asyncio.timeout(GUARD):
        await proto.eof
    await spin()
    watch = transport._error_watch
    if watch is not None:
        assert not _registrations(watch)[ours.fileno()] & select.EPOLLIN
    transport.write(b"still open")
    async with asyncio.timeout(GUARD):
        await transport.send(b"!")
    peer.setblocking(True)
    assert peer.recv(100) == b"still open!"
    peer.close()
    await spin()
    if watch is not None:
        assert not _registrations(watch)[ours.fileno()] & select.EPOLLIN
    transport.close()
    await proto.wait_lost()
    proto.check()


async def test_a_long_lived_connection_moves_to_a_reader_of_the_loops_and_still_sees_a_reset() -> None:
    """After ``_WATCH_READS`` reads a uvloop transport reads through the loop (its registration
    in the watch errors-only again: a single client's keep-alive requests paid the watch's
    ``epoll_wait`` each); data, pausing and a reset behind data work as before."""
    with socket.create_server(("127.0.0.1", 0)) as lsock:
        ours = socket.create_connection(lsock.getsockname()[:2])
        peer, _ = lsock.accept()
    with peer:
        transport, proto = await wrap(ours)
        fd = ours.fileno()
        expected = b""
        for i in range(_transport._WATCH_READS + 3):
            chunk = b"request %d;" % i
            peer.sendall(chunk)
            expected += chunk
            async with asyncio.timeout(GUARD):
                assert await proto.wait_data(len(expected)) == expected
        watch = transport._error_watch
        if on_uvloop():
            assert watch is not None and transport._watch_reads < 0
            mask = _registrations(watch)[fd]
            assert not mask & select.EPOLLIN and mask & select.EPOLLONESHOT
        transport.pause_reading()
        peer.sendall(b"late")
        await spin()
        assert proto.data == expected
        transport.resume_reading()
        expected += b"late"
        async with asyncio.timeout(GUARD):
            assert await proto.wait_data(len(expected)) == expected
        peer.sendall(b"x")
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    async with asyncio.timeout(GUARD):
        exc = await proto.wait_lost()
    assert proto.data == expected + b"x"
    assert isinstance(exc, wsasend.WSAError) and exc.winerror == wsasend.WSAErrorCode.WSAECONNRESET
    proto.check()


async def test_a_watch_that_ends_under_reading_transports_hands_them_to_the_loop() -> None:
    """The loop's ``shutdown_asyncgens`` (``asyncio.run``'s end) closes the watch while the loop
    still runs: its reading transports let their descriptors go and read through the loop from
    then on, so data sent afterwards still arrives."""
    loop = asyncio.get_running_loop()
    ours, peer = socket.socketpair()
    with peer:
        transport, proto = await wrap(ours)
        watch = transport._error_watch
        await loop.shutdown_asyncgens()
        await spin()
        if watch is not None:
            assert watch._epoll is None and transport._watch_reads < 0 and transport._error_watch is None
        peer.sendall(b"after the watch")
        async with asyncio.timeout(GUARD):
            assert await proto.wait_data(15) == b"after the watch"
        transport.close()
        await proto.wait_lost()
        assert ours.fileno() == -1
        proto.check()
