"""Data and a TCP reset that arrive before the transport reads (SPEC S6.3, S7.1; issue 10).

uvloop (libuv's poll handle) reports the pending error as an error event: it calls the reader
once, then closes its handle for the descriptor for good. The reader got the data; nothing ever
told the transport of the reset, so ``connection_lost`` never came and a server leaked the
connection (a ``StreamReader``'s second ``read()`` hung). On asyncio the reader runs again and
its ``recv`` raises ECONNRESET.

Before the fix every uvloop variant failed (the second read timed out), 3/3, deterministic;
the asyncio variants passed.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import struct
import threading
from typing import cast

import pytest

import wsasend
from tests.helpers import tcp_pair
from wsasend import WSAError, WSAErrorCode, WSATransport
from wsasend._connect import make_transport

GUARD = 10.0


def _reset(peer: socket.socket) -> None:
    """Close ``peer`` with a reset (SO_LINGER 0): the other end gets an RST, not a FIN."""
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()


async def _second_read_fails(reader: asyncio.StreamReader) -> None:
    assert await asyncio.wait_for(reader.read(100), GUARD) == b"x"
    with pytest.raises(WSAError) as caught:
        await asyncio.wait_for(reader.read(100), GUARD)
    assert caught.value.winerror == WSAErrorCode.WSAECONNRESET


async def test_data_then_reset_before_the_client_reads_ends_the_connection() -> None:
    """Client side (``open_connection``): b"x" and the reset are queued before the first read."""
    with socket.create_server(("127.0.0.1", 0)) as lsock:
        reader, writer = await wsasend.open_connection(*lsock.getsockname()[:2])
        peer, _ = lsock.accept()
        peer.send(b"x")
        _reset(peer)  # no await since the connection was made: the reader has not run yet
        try:
            await _second_read_fails(reader)
            assert writer.transport.is_closing()
        finally:
            writer.close()


async def test_data_then_reset_before_the_server_reads_ends_the_connection() -> None:
    """Server side (``start_server``): once the server's transport exists (in the connection
    callback, before its reader ran) the client sends b"x" and resets; the handler's second
    read ends with WSAECONNRESET (the transport's ``connection_lost`` ran)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[BaseException | None] = loop.create_future()
    peers: list[socket.socket] = []
    tasks: list[asyncio.Task[None]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            # The reader's exception comes from the protocol's connection_lost(exc).
            await _second_read_fails(reader)
            assert writer.transport.is_closing()
        except BaseException as exc:
            done.set_result(exc)
            raise
        else:
            done.set_result(None)

    def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers[0].send(b"x")
        _reset(peers[0])  # inside connection_made: the server's reader has not run yet
        tasks.append(loop.create_task(handle(reader, writer)))

    server = await wsasend.start_server(connected, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        peers.append(socket.create_connection(("127.0.0.1", port)))
        assert await asyncio.wait_for(done, GUARD + GUARD + 5) is None
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class _Buffered(asyncio.BufferedProtocol):
    def __init__(self) -> None:
        self.buf = bytearray(65536)
        self.data = bytearray()
        self.lost: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    def get_buffer(self, sizehint: int) -> bytearray:
        return self.buf

    def buffer_updated(self, nbytes: int) -> None:
        self.data += self.buf[:nbytes]

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self.lost.done():  # (the finally's abort() of a failed run calls it too)
            self.lost.set_result(exc)


async def test_data_then_reset_reaches_a_buffered_protocol() -> None:
    """The same through ``asyncio.BufferedProtocol`` (``recv_into``): the data, then
    ``connection_lost(WSAECONNRESET)``."""
    with socket.create_server(("127.0.0.1", 0)) as lsock:
        transport, protocol = await wsasend.create_connection(_Buffered, *lsock.getsockname()[:2])
        peer, _ = lsock.accept()
        peer.send(b"x")
        _reset(peer)
        try:
            exc = await asyncio.wait_for(protocol.lost, GUARD)
            assert protocol.data == b"x"
            assert isinstance(exc, WSAError)
            assert exc.winerror == WSAErrorCode.WSAECONNRESET
        finally:
            transport.abort()


class _Datagrams(asyncio.Protocol):
    """A connected datagram transport delivers each message through data_received."""

    def __init__(self) -> None:
        self.data: list[bytes] = []
        self.got = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.data.append(data)
        if not self.got.done():
            self.got.set_result(None)


async def test_a_udp_transport_still_receives_after_a_port_unreachable() -> None:
    """S3.3: an ICMP port-unreachable does not end a connected UDP transport, and it keeps
    receiving. uvloop reported it as an error event and closed its reader handle: before the
    fix the datagram sent afterwards never arrived on uvloop (1/1, deterministic)."""
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as gone:
        gone.bind(("127.0.0.1", 0))
        address = gone.getsockname()
    ours = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ours.connect(address)
    made, proto = await make_transport(ours, _Datagrams, loop=loop)
    transport = cast(WSATransport, made)  # without ssl it returns the WSATransport itself
    try:
        for _ in range(3):
            assert await transport.send(b"anyone?") == 7
            for _ in range(10):
                await asyncio.sleep(0)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as back:
            back.bind(address)
            back.sendto(b"hello", ours.getsockname())
            await asyncio.wait_for(proto.got, GUARD)
        assert proto.data == [b"hello"]
        assert not transport.is_closing()
    finally:
        transport.close()


async def test_a_reset_behind_a_reply_while_sends_are_queued_reports_ECONNRESET() -> None:
    """S6.3: the peer reads a little of a large write, replies and closes with the rest unread
    (Linux resets the connection). ``connection_lost`` gets WSAECONNRESET with errno
    ECONNRESET, as both stock transports report it. On uvloop the read that took the reset
    (with the reply) ran before the queued send met its EPIPE, and the connection ended with
    errno EPIPE (adversarial pass, 5 of 5 runs)."""
    ours, theirs = tcp_pair()
    loop = asyncio.get_running_loop()
    lost: asyncio.Future[BaseException | None] = loop.create_future()

    class Protocol(asyncio.Protocol):
        def connection_lost(self, exc: BaseException | None) -> None:
            lost.set_result(exc)

    def peer() -> None:
        theirs.recv(1000)
        theirs.sendall(b"413 reply")
        theirs.close()  # with unread data: a reset

    transport, _ = await wsasend.connect_accepted_socket(Protocol, ours)
    thread = threading.Thread(target=peer, daemon=True)
    thread.start()
    transport.write(b"R" * 20_000_000)
    exc = await asyncio.wait_for(lost, GUARD)
    thread.join(GUARD)
    assert isinstance(exc, WSAError) and exc.winerror is WSAErrorCode.WSAECONNRESET, repr(exc)
    assert exc.errno == errno.ECONNRESET, repr(exc)
