"""uvloop's error events reach a stream transport without a syscall per read (issue 11, S6.3).

uvloop runs the reader once for a socket error event and then drops it; the transport used to
ask ``getsockopt(SO_ERROR)`` after every read to catch an error that read left pending. The
loop's ``ErrorWatch`` (one epoll of ours, see ``wsasend._errorwatch``) now says when a socket had
an error event; only then do reads check. These tests hold it to that, and to the project's
fd-reuse rule: a transport whose socket went behind its back never drops the watch of the
newer socket that got the same descriptor number. Every test runs on both loops; on asyncio
there is no watch and the same behaviour comes from the selector.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import socket
import struct
import threading
from typing import Any

import pytest
import uvloop

import wsasend
from tests.helpers import run_threads
from wsasend import WSAError, WSAErrorCode, WSATransport, _errorwatch

from .util import GUARD, Pong, Recorder, on_uvloop, until, wrap


def _reset(peer: socket.socket) -> None:
    """Close ``peer`` with a reset (SO_LINGER 0): the other end gets an RST, not a FIN."""
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()


def _tcp_pair(lsock: socket.socket) -> tuple[socket.socket, socket.socket]:
    ours = socket.create_connection(lsock.getsockname()[:2])
    peer, _ = lsock.accept()
    return ours, peer


class _CountingTransport(WSATransport):
    """Counts ``_check_reset``, the ``getsockopt(SO_ERROR)`` after a read."""

    checks = 0

    def _check_reset(self, sock: socket.socket) -> None:
        _CountingTransport.checks += 1
        super()._check_reset(sock)


async def _spin(until: object, rounds: int = 200) -> None:
    """Let the loop run until ``until()`` is true (a bounded number of iterations)."""
    for _ in range(rounds):
        if until():  # type: ignore[operator]
            return
        await asyncio.sleep(0)


async def _watched(lsock: socket.socket) -> tuple[WSATransport, Recorder, socket.socket]:
    """A transport on a new connection to ``lsock``, its protocol told and its reader (and
    watch) registered; and the connection's other end."""
    ours, peer = _tcp_pair(lsock)
    proto = Recorder()
    transport = WSATransport(ours, proto)
    await proto.made
    await asyncio.sleep(0)
    return transport, proto, peer


async def _expect_x_then_reset(proto: Recorder) -> None:
    assert await proto.wait_data(1) == b"x"
    exc = await proto.wait_lost()
    assert isinstance(exc, WSAError)
    assert exc.winerror == WSAErrorCode.WSAECONNRESET
    proto.check()


async def test_request_response_reads_make_no_error_check_until_an_error_event() -> None:
    """100 request/response rounds: no ``SO_ERROR`` check (there was one per read on uvloop,
    100 here, before the watch). Then data and a reset: the data, then WSAECONNRESET."""
    with socket.create_server(("127.0.0.1", 0)) as lsock:
        ours, peer = _tcp_pair(lsock)
        proto = Recorder()
        _CountingTransport.checks = 0
        transport = _CountingTransport(ours, proto)
        with peer:
            await proto.made
            for i in range(100):
                peer.sendall(b"ping")
                await proto.wait_data(4 * (i + 1))
                assert await transport.send(b"pong") == 4
                assert peer.recv(4) == b"pong"
            assert _CountingTransport.checks == 0
            assert not transport._error_seen
            proto.data.clear()
            peer.send(b"x")
            _reset(peer)
            await _expect_x_then_reset(proto)
        # On uvloop the watch reported the error event; asyncio has no watch.
        assert transport._error_seen is on_uvloop()


async def test_a_reset_while_reading_is_paused_is_reported_after_resume() -> None:
    """The error event comes while the transport is paused (its reader is not registered):
    the watch's report waits for ``resume_reading``, whose reader then checks. Without the
    saved report uvloop read b"x" on resume, dropped its reader, and ``connection_lost``
    never came."""
    with socket.create_server(("127.0.0.1", 0)) as lsock:
        ours, peer = _tcp_pair(lsock)
        proto = Recorder()
        transport = WSATransport(ours, proto)
        await proto.made
        await asyncio.sleep(0)  # reading starts
        transport.pause_reading()
        peer.send(b"x")
        _reset(peer)
        if on_uvloop():
            await _spin(lambda: transport._error_seen)
            assert transport._error_seen  # reported while paused
        else:
            await _spin(lambda: False, 20)
        assert proto.data == b""
        transport.resume_reading()
        await _expect_x_then_reset(proto)


async def test_a_transport_whose_socket_was_detached_never_drops_the_new_owners_watch() -> None:
    """Transport A's socket is detached behind its back and its descriptor closed; a new
    socket gets the same number and transport B. A's close must leave B's registration in the
    watch (the number is B's now). Before the owner check, A's close removed B's: B never
    heard of its reset (uvloop: the wait for ``connection_lost`` timed out)."""
    with socket.create_server(("127.0.0.1", 0)) as lsock:
        a_sock, a_peer = _tcp_pair(lsock)
        a_proto = Recorder()
        a = WSATransport(a_sock, a_proto)
        await a_proto.made
        await asyncio.sleep(0)  # A reads: it is in the watch (uvloop)
        a.pause_reading()  # the loop's own reader for the number goes (not ours to test here)
        number = a_sock.fileno()
        os.close(a_sock.detach())  # behind A's back: the number is free
        b_sock, b_peer = _tcp_pair(lsock)
        try:
            if b_sock.fileno() != number:
                b_sock, spare = socket.socket(fileno=os.dup2(b_sock.fileno(), number)), b_sock
                spare.close()
            assert b_sock.fileno() == number
            b_proto = Recorder()
            b = WSATransport(b_sock, b_proto)
            await b_proto.made
            await asyncio.sleep(0)  # B reads: the number is B's in the watch
            a.abort()
            await a_proto.wait_lost()
            assert b_sock.fileno() == number  # A's close did not close B's socket either
            b_peer.send(b"x")
            _reset(b_peer)
            await _expect_x_then_reset(b_proto)
            assert b.is_closing()
        finally:
            a_peer.close()
            b_peer.close()


async def test_the_watch_goes_with_the_last_transport_of_its_loop() -> None:
    """No descriptor of ours outlives our transports: the loop's watch (its epoll) closes when
    the last watched transport closes, and the next transport makes a new one."""
    if not on_uvloop():
        assert asyncio.get_running_loop() not in _errorwatch._WATCHES  # asyncio: no watch, ever
        return
    loop = asyncio.get_running_loop()
    with socket.create_server(("127.0.0.1", 0)) as lsock:
        pairs = [_tcp_pair(lsock) for _ in range(3)]
        try:
            made = []
            for ours, _peer in pairs[:2]:
                proto = Recorder()
                made.append((WSATransport(ours, proto), proto))
                await proto.made
            await asyncio.sleep(0)
            watch = _errorwatch.current_watch(loop)
            assert watch is not None
            assert [t._error_watch for t, _ in made] == [watch, watch]
            for index, (transport, proto) in enumerate(made):
                transport.close()
                await proto.wait_lost()
                assert (watch._epoll is None) == (index == 1)  # open until the last one goes
            assert _errorwatch.current_watch(loop) is None
            proto = Recorder()
            third = WSATransport(pairs[2][0], proto)
            await proto.made
            await asyncio.sleep(0)
            assert third._error_watch is _errorwatch.current_watch(loop) is not watch
            third.close()
            await proto.wait_lost()
        finally:
            for _ours, peer in pairs:
                peer.close()


async def test_a_transport_collected_unclosed_lets_its_watch_go() -> None:
    """An unclosed transport taken by the collector (it warns ResourceWarning and closes its
    socket) cannot discard its registration: its entry goes with it all the same, and with the
    loop's last entry the watch and its epoll, as when the last transport closes."""
    if not on_uvloop():
        assert asyncio.get_running_loop() not in _errorwatch._WATCHES  # asyncio: no watch, ever
        return
    loop = asyncio.get_running_loop()
    ours, peer = socket.socketpair()
    try:
        proto = Recorder()
        transport = WSATransport(ours, proto)
        await proto.made
        await asyncio.sleep(0)
        watch = _errorwatch.current_watch(loop)
        assert watch is not None
        assert list(watch._owners) == [ours.fileno()]
        transport.pause_reading()  # (the loop's reader no longer holds it)
        del transport, proto
        with pytest.warns(ResourceWarning, match="unclosed transport"):
            gc.collect()
        assert ours.fileno() == -1  # its __del__ closed the socket
        assert not watch._owners
        await _spin(lambda: watch._epoll is None)
        assert watch._epoll is None
        assert _errorwatch.current_watch(loop) is None
    finally:
        peer.close()


class _NoOwner:
    def _watch_event(self, events: int) -> None:
        raise AssertionError("never reported")

    def _watch_gone(self, rearm: bool) -> None:
        raise AssertionError("never registered")


async def test_a_descriptor_that_cannot_be_watched_is_refused_and_leaves_nothing_open() -> None:
    """``ErrorWatch.add`` of a descriptor epoll refuses (a regular file here, as a number
    that stopped being a socket would be): False, so the transport checks each read as before
    the watch, and a watch made for it alone closes again at once."""
    if not on_uvloop():
        return  # (asyncio transports make no watch)
    loop = asyncio.get_running_loop()
    assert _errorwatch.current_watch(loop) is None
    with open(__file__, "rb") as regular:
        watch = _errorwatch.error_watch(loop)
        assert watch.add(regular.fileno(), _NoOwner()) is False
    assert watch._epoll is None and _errorwatch.current_watch(loop) is None


def _closed_by_the_loops_end(kept: list[object]) -> None:
    """After ``uvloop.run``: ``kept`` is ``[peer, transport, its watch]``, the transport left
    open; the loop's end closed its watch's epoll (and the transport let go of it). Then its
    socket is closed and it is collected (it warns "unclosed transport")."""
    peer, transport, watch = kept
    assert isinstance(transport, WSATransport) and isinstance(watch, _errorwatch.ErrorWatch)
    assert watch._epoll is None and transport._error_watch is None  # the loop's end closed it
    assert not any(record.watch is watch for record in _errorwatch._WATCHES.values())
    transport.get_extra_info("socket").close()  # (the loop is closed: no transport.close())
    kept.clear()
    del transport, watch
    with pytest.warns(ResourceWarning, match="unclosed transport"):
        gc.collect()
    assert isinstance(peer, socket.socket)
    peer.close()


def test_the_watch_closes_its_epoll_when_the_loop_ends() -> None:
    """A transport left open when ``uvloop.run`` ends: the loop's ``shutdown_asyncgens`` closes
    the watch's epoll then, not whenever the loop object is collected."""
    kept: list[object] = []

    async def main() -> None:
        with socket.create_server(("127.0.0.1", 0)) as lsock:
            ours, peer = _tcp_pair(lsock)
            kept.append(peer)
            proto = Recorder()
            transport = WSATransport(ours, proto)
            await proto.made
            await asyncio.sleep(0)
            assert transport._error_watch is not None and transport._error_watch._epoll is not None
            kept.extend([transport, transport._error_watch])

    uvloop.run(main())
    _closed_by_the_loops_end(kept)


def test_a_loop_watches_its_end_once_and_its_end_closes_a_later_watch() -> None:
    """A watch made again after the loop's transports all went (a server's next client, with
    one client at a time) uses the loop's one end watcher (issue 11: one per watch cost each
    such connection ~30,000 instructions), and the loop's end still closes the watch of the
    moment, not only the first one."""
    kept: list[object] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        with socket.create_server(("127.0.0.1", 0)) as lsock:
            first, proto, peer = await _watched(lsock)
            record = _errorwatch._WATCHES[loop]
            watcher = record.end_watcher
            first_watch = first._error_watch
            assert watcher is not None and first_watch is not None and record.watch is first_watch
            first.close()
            await proto.wait_lost()
            peer.close()
            assert first_watch._epoll is None and record.watch is None  # (with its last transport)
            second, proto, peer = await _watched(lsock)
            assert second._error_watch is record.watch
            assert record.watch is not None and record.watch is not first_watch
            assert record.end_watcher is watcher  # the loop's, not the watch's
            kept.extend([peer, second, second._error_watch])

    uvloop.run(main())
    _closed_by_the_loops_end(kept)


def test_a_forked_child_drops_the_inherited_watch_and_the_parent_keeps_its_own() -> None:
    """Fork while a uvloop transport is watched: the child closes its copy of the epoll and
    never unregisters (the instance is shared with the parent), and the parent's transport
    still learns of its reset afterwards."""

    async def main() -> None:
        with socket.create_server(("127.0.0.1", 0)) as lsock:
            ours, peer = _tcp_pair(lsock)
            proto = Recorder()
            transport = WSATransport(ours, proto)
            await proto.made
            await asyncio.sleep(0)
            watch = transport._error_watch
            assert watch is not None
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child
                ok = not _errorwatch._WATCHES and watch._epoll is None
                os._exit(0 if ok else 1)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
            assert watch._epoll is not None
            peer.send(b"x")
            _reset(peer)
            await asyncio.wait_for(_expect_x_then_reset(proto), GUARD)

    uvloop.run(main())


def test_loops_in_four_threads_each_watch_their_own_transports() -> None:
    """Four threads, a uvloop loop each, 16 connections per loop, half of them reset behind
    data, in rounds: every reset reaches its own transport (data first) and every other
    connection keeps echoing; each loop's watch closes with its last transport. The watches
    are per loop and touched only in their loop's thread: a report dispatched on the wrong
    loop, or a registration dropped by another loop's transport, hangs a thread here."""
    errors: list[BaseException] = []
    watches: list[_errorwatch.ErrorWatch] = []

    async def main() -> None:
        with socket.create_server(("127.0.0.1", 0), backlog=64) as lsock:
            for _round in range(5):
                pairs = [_tcp_pair(lsock) for _ in range(16)]
                made = []
                for ours, _peer in pairs:
                    proto = Recorder()
                    made.append((WSATransport(ours, proto), proto))
                    await proto.made
                await asyncio.sleep(0)
                watch = made[0][0]._error_watch
                assert watch is not None and all(t._error_watch is watch for t, _ in made)
                watches.append(watch)
                for index, (_made, (_ours, peer)) in enumerate(zip(made, pairs, strict=True)):
                    if index % 2:
                        peer.send(b"x")
                        _reset(peer)
                    else:
                        peer.sendall(b"ping")
                for index, ((transport, proto), (_ours, peer)) in enumerate(zip(made, pairs, strict=True)):
                    if index % 2:
                        await _expect_x_then_reset(proto)
                    else:
                        assert await proto.wait_data(4) == b"ping"
                        assert await transport.send(b"pong") == 4
                        assert peer.recv(4) == b"pong"
                        transport.close()
                        await proto.wait_lost()
                        peer.close()
                assert watch._epoll is None

    def run() -> None:
        try:
            uvloop.run(asyncio.wait_for(main(), GUARD))
        except BaseException as exc:
            errors.append(exc)

    run_threads([threading.Thread(target=run) for _ in range(4)], GUARD + 10)
    assert errors == []
    assert len(watches) == 20 and all(watch._epoll is None for watch in watches)


# -- a serving server keeps its loop's watch between its connections (issue 11, ab -c 1) ---------


def _epolls() -> int:
    """How many epoll instances this process has open (the loop's own, and any watch's)."""
    count = 0
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # (the listing's own descriptor, closed by now)
            count += os.readlink(f"/proc/self/fd/{name}") == "anon_inode:[eventpoll]"
    return count


async def _one_client(port: int) -> None:
    """A connection to the server: ping, pong, close, and the server's side seen closed."""
    async with asyncio.timeout(GUARD):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"ping")
        assert await reader.readexactly(4) == b"pong"
        writer.close()
        await writer.wait_closed()


async def _server_side_gone(server: wsasend.WSAServer) -> None:
    await until(lambda: server._connections.count == 0)


async def test_a_serving_server_keeps_the_watch_between_clients_that_come_one_at_a_time() -> None:
    """With one client at a time, every connection was its loop's last watched transport, and
    the watch's epoll and loop reader were made and closed for each (a third of the server's
    CPU a connection on uvloop, issue 11). A serving server pins the watch: the same one serves
    every connection, and ``close()`` of the server lets it go, its epoll closed."""
    loop = asyncio.get_running_loop()
    before = _epolls()
    server = await wsasend.create_server(Pong, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    watches = []
    for _ in range(5):
        await _one_client(port)
        await _server_side_gone(server)
        watches.append(_errorwatch.current_watch(loop))
    if not on_uvloop():
        assert watches == [None] * 5 and loop not in _errorwatch._WATCHES  # asyncio: no watch, ever
    else:
        watch = watches[0]
        assert watch is not None and watch._epoll is not None
        assert watches == [watch] * 5 and not watch._owners  # one watch, no transport left in it
        assert _epolls() == before + 1
    server.close()
    await server.wait_closed()
    assert _errorwatch.current_watch(loop) is None
    if on_uvloop():
        assert watches[0] is not None and watches[0]._epoll is None
    assert _epolls() == before


async def test_a_server_closed_while_a_connection_is_open_leaves_the_watch_to_it() -> None:
    """``close()`` of a server leaves its open connections open (asyncio's rule): the watch
    stays while one of them does, and goes with it."""
    loop = asyncio.get_running_loop()
    before = _epolls()
    server = await wsasend.create_server(Pong, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with asyncio.timeout(GUARD):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"ping")
        assert await reader.readexactly(4) == b"pong"
    server.close()
    watch = _errorwatch.current_watch(loop)
    if on_uvloop():
        assert watch is not None and watch._epoll is not None and len(watch._owners) == 1
    else:
        assert watch is None
    writer.write(b"ping")  # (the connection still answers)
    async with asyncio.timeout(GUARD):
        assert await reader.readexactly(4) == b"pong"
    writer.close()
    await writer.wait_closed()
    async with asyncio.timeout(GUARD):
        await server.wait_closed()  # (returns once its last connection is gone)
    assert _errorwatch.current_watch(loop) is None
    if watch is not None:
        assert watch._epoll is None
    assert _epolls() == before


async def test_two_servers_keep_the_watch_until_both_are_closed() -> None:
    """Pins are counted: the watch stays while either server serves."""
    loop = asyncio.get_running_loop()
    before = _epolls()
    first = await wsasend.create_server(Pong, "127.0.0.1", 0)
    second = await wsasend.create_server(Pong, "127.0.0.1", 0)
    await _one_client(first.sockets[0].getsockname()[1])
    await _server_side_gone(first)
    watch = _errorwatch.current_watch(loop)
    assert (watch is not None) == on_uvloop()
    first.close()
    await first.wait_closed()
    assert _errorwatch.current_watch(loop) is watch  # the second server still pins it
    await _one_client(second.sockets[0].getsockname()[1])
    await _server_side_gone(second)
    assert _errorwatch.current_watch(loop) is watch
    first.close()  # (a second close lets go of nothing more)
    assert _errorwatch.current_watch(loop) is watch
    second.close()
    await second.wait_closed()
    assert _errorwatch.current_watch(loop) is None
    if watch is not None:
        assert watch._epoll is None
    assert _epolls() == before


async def test_a_server_that_is_not_serving_pins_nothing() -> None:
    """``start_serving=False``: no pin until it serves, and none after a close without serving;
    a watched transport's watch still goes with it."""
    loop = asyncio.get_running_loop()
    server = await wsasend.create_server(Pong, "127.0.0.1", 0, start_serving=False)
    assert server._watch_pin is None
    ours, peer = socket.socketpair()
    with peer:
        transport, proto = await wrap(ours)
        watch = _errorwatch.current_watch(loop)
        assert (watch is not None) == on_uvloop()
        transport.close()
        await proto.wait_lost()
        assert _errorwatch.current_watch(loop) is None  # nobody pins it
    await server.start_serving()
    assert (server._watch_pin is not None) == on_uvloop()
    server.close()
    assert server._watch_pin is None
    await server.wait_closed()


@pytest.mark.parametrize("runner", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])
def test_a_server_left_serving_lets_the_watch_go_when_the_loop_ends(runner: Any) -> None:
    """A server never closed: the loop's end (``shutdown_asyncgens``) still closes the watch it
    pinned, and no epoll of ours is left open."""
    before = _epolls()
    kept: list[Any] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await wsasend.create_server(Pong, "127.0.0.1", 0)
        await _one_client(server.sockets[0].getsockname()[1])
        await _server_side_gone(server)
        kept.extend([server, _errorwatch.current_watch(loop)])

    runner(main())
    server, watch = kept
    if runner is uvloop.run:
        assert isinstance(watch, _errorwatch.ErrorWatch) and watch._epoll is None
    else:
        assert watch is None
    assert _epolls() == before
    server.close()  # (after the loop's end: the listening socket closes, nothing else happens)
    assert _epolls() == before
