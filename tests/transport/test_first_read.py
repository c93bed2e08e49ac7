"""A stream transport's first read takes what asyncio's and uvloop's take (SPEC S7.1).

The transport reads 64 KiB at a time while reads are small (``SMALL_READ``: below glibc's mmap
threshold); asyncio and uvloop read up to 256 KiB. A request larger than 64 KiB, answered with
``write()`` and ``close()`` in the first ``data_received``, left the rest unread in the kernel,
and a close with unread data sends a reset: the client got ECONNRESET where both stock
transports end the connection with a FIN after the reply. Before the fix the first test failed
on both loops (a 65,536-byte first chunk, then the reset), every run.

Each case runs the same protocol on the loop's own transport and on WSATransport: the stock
transport is the reference.
"""

from __future__ import annotations

import array
import asyncio
import errno
import fcntl
import socket
import struct
import termios
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import wsasend
from wsasend import WSAError, WSAErrorCode

from .util import GUARD

REQUEST = 100_000  # above the 64 KiB first read, below the stock transports' 256 KiB
REPLY = b"HTTP/1.1 413 Content Too Large\r\ncontent-length: 0\r\n\r\n"

Connect = Callable[[Callable[[], asyncio.Protocol], socket.socket], Awaitable[Any]]


async def _stock(factory: Callable[[], asyncio.Protocol], sock: socket.socket) -> Any:
    return await asyncio.get_running_loop().connect_accepted_socket(factory, sock)


async def _wsa(factory: Callable[[], asyncio.Protocol], sock: socket.socket) -> Any:
    return await wsasend.connect_accepted_socket(factory, sock)


TRANSPORTS = pytest.mark.parametrize("connect", [_stock, _wsa], ids=["stock", "wsasend"])


def _queued(sock: socket.socket) -> int:
    """Bytes waiting in ``sock``'s receive queue (FIONREAD)."""
    out = array.array("i", [0])
    fcntl.ioctl(sock.fileno(), termios.FIONREAD, out)
    return out[0]


def _pair() -> tuple[socket.socket, socket.socket]:
    """A connected loopback TCP pair (server end, client end), room for 512 KiB in flight."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 512 * 1024)  # (inherited)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 512 * 1024)
        client.connect(listener.getsockname())
        server, _ = listener.accept()
    return server, client


def _send_all_queued(client: socket.socket, server: socket.socket, payload: bytes) -> None:
    """Send ``payload`` and wait (hang guard only) until the server end holds all of it."""
    client.sendall(payload)
    deadline = time.monotonic() + GUARD
    while _queued(server) < len(payload):
        assert time.monotonic() < deadline, "the payload did not arrive before the hang guard"
        time.sleep(0.001)


def _data_then_reset(payload: bytes) -> tuple[socket.socket, Callable[[], None]]:
    """The server end of a pair (nonblocking), and what to call in ``connection_made`` (a
    transport needs a peer when it is made, S7.3): the peer sends ``payload``, which the server
    end then holds whole, and resets."""
    server, client = _pair()
    server.setblocking(False)

    def data_then_reset() -> None:
        _send_all_queued(client, server, payload)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()

    return server, data_then_reset


class AnswerAndClose(asyncio.Protocol):
    """Answers the first data with a reply and closes (a server refusing a large request)."""

    def __init__(self) -> None:
        self.chunks: list[int] = []
        self.lost: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport  # (uvloop's own transports are no asyncio.Transport)

    def data_received(self, data: bytes) -> None:
        self.chunks.append(len(data))
        if len(self.chunks) == 1:
            self.transport.write(REPLY)
            self.transport.close()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost.set_result(exc)


@TRANSPORTS
async def test_a_large_request_answered_and_closed_at_once_ends_with_a_fin(connect: Connect) -> None:
    loop = asyncio.get_running_loop()
    server, client = _pair()
    _send_all_queued(client, server, bytes(range(256)) * (REQUEST // 256) + b"!" * (REQUEST % 256))
    server.setblocking(False)
    client.setblocking(False)
    with client:
        _, protocol = await connect(AnswerAndClose, server)
        assert await asyncio.wait_for(protocol.lost, GUARD) is None
        assert protocol.chunks == [REQUEST]  # the whole request in the first data_received
        got = b""
        while True:
            chunk = await asyncio.wait_for(loop.sock_recv(client, 65536), GUARD)  # no reset
            if not chunk:
                break
            got += chunk
        assert got == REPLY


class Collect(asyncio.Protocol):
    """Collects the data; ``on_made`` runs in connection_made, before the first read."""

    def __init__(self, on_made: Callable[[], None]) -> None:
        self.on_made = on_made
        self.data = bytearray()
        self.lost: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: Any) -> None:
        self.on_made()

    def data_received(self, data: bytes) -> None:
        self.data += data

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost.set_result(exc)


@TRANSPORTS
@pytest.mark.parametrize("size", [65536, REQUEST])
async def test_a_reset_right_after_a_full_read_is_reported_after_the_data(connect: Connect, size: int) -> None:
    """The peer resets after exactly one small read's worth (65,536: the read that fills finds
    the reset on the next ``recv``) or more: every byte is delivered, then the reset (S6.3)."""
    payload = bytes(i % 251 for i in range(size))
    server, data_then_reset = _data_then_reset(payload)
    transport, protocol = await connect(lambda: Collect(data_then_reset), server)
    exc = await asyncio.wait_for(protocol.lost, GUARD)
    assert bytes(protocol.data) == payload
    assert isinstance(exc, ConnectionResetError)
    if isinstance(exc, WSAError):
        assert exc.winerror == WSAErrorCode.WSAECONNRESET
    assert transport.is_closing()


class ReaderProtocol(asyncio.StreamReaderProtocol):
    def __init__(self, reader: asyncio.StreamReader, on_made: Callable[[], None]) -> None:
        super().__init__(reader)
        self.on_made = on_made

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self.on_made()


@TRANSPORTS
async def test_a_stream_reader_gets_the_data_before_the_reset(connect: Connect) -> None:
    """As above through a StreamReader: the reset found by the read after a full one is
    reported a loop callback later, so the task reads the data first (a StreamReader holding
    an exception raises it before its buffered data)."""
    payload = bytes(i % 251 for i in range(65536))
    server, data_then_reset = _data_then_reset(payload)
    reader = asyncio.StreamReader()
    transport, _ = await connect(lambda: ReaderProtocol(reader, data_then_reset), server)
    assert await asyncio.wait_for(reader.readexactly(len(payload)), GUARD) == payload
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(reader.read(1), GUARD)
    transport.close()


class AnswerOnData(Collect):
    """Answers each data with a write (or a write from a loop callback, ``soon``)."""

    def __init__(self, on_made: Callable[[], None], soon: bool) -> None:
        super().__init__(on_made)
        self.soon = soon

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.soon:
            asyncio.get_running_loop().call_soon(self.transport.write, b"reply")
        else:
            self.transport.write(b"reply")


@TRANSPORTS
@pytest.mark.parametrize("soon", [False, True], ids=["in-data_received", "call_soon"])
async def test_a_reset_found_by_the_read_on_ends_with_errno_ECONNRESET(connect: Connect, soon: bool) -> None:
    """The peer sends exactly one small read's worth, then resets; the protocol answers. The
    reset is found by the read on after the full one, and the answer's send meets EPIPE:
    ``connection_lost`` gets errno ECONNRESET, as on the stock transports (it got EPIPE, the
    send's, from the window's flush or the write's own send; adversarial pass)."""
    payload = bytes(i % 251 for i in range(65536))
    server, data_then_reset = _data_then_reset(payload)
    _, protocol = await connect(lambda: AnswerOnData(data_then_reset, soon), server)
    exc = await asyncio.wait_for(protocol.lost, GUARD)
    assert bytes(protocol.data) == payload
    assert isinstance(exc, ConnectionResetError) and exc.errno == errno.ECONNRESET, repr(exc)
