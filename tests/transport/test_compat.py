"""The "one call switches" promise (SPEC S7, issue 4): asyncio programs pass unchanged on wsasend's functions.

Each test body is written against the loop's API (``loop.create_server`` /
``loop.create_connection``, ``asyncio.start_server`` / ``asyncio.open_connection``) and is run
twice, once with asyncio's functions and once with wsasend's; only the assertion on the
transport's type knows which.
"""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import Callable
from typing import Any

import pytest

import wsasend
from tests.helpers import pattern

from .util import GUARD

Pair = tuple[Callable[..., Any], Callable[..., Any]]

PROTOCOL_APIS: dict[str, Callable[[asyncio.AbstractEventLoop], Pair]] = {
    "loop": lambda loop: (loop.create_server, loop.create_connection),
    "wsasend": lambda loop: (wsasend.create_server, wsasend.create_connection),
}
STREAM_APIS: dict[str, Pair] = {
    "asyncio": (asyncio.start_server, asyncio.open_connection),
    "wsasend": (wsasend.start_server, wsasend.open_connection),
}


# -- the line-echo program, written for asyncio ----------------------------------------------------


class LineEchoServer(asyncio.Protocol):
    """Echoes each line back upper-cased; closes when the client has finished sending."""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport  # uvloop's transports are not asyncio.Transport subclasses
        self.pending = b""

    def data_received(self, data: bytes) -> None:
        self.pending += data
        *lines, self.pending = self.pending.split(b"\n")
        if lines:
            self.transport.writelines([line.upper() + b"\n" for line in lines])

    def eof_received(self) -> None:
        return None  # close (after the echoes have gone out)


class LineClient(asyncio.Protocol):
    def __init__(self, lines: list[bytes], done: asyncio.Future[list[str]]) -> None:
        self.lines = lines
        self.done = done
        self.received = b""
        self.events: list[str] = []

    def connection_made(self, transport: Any) -> None:
        self.events.append("made")
        self.transport = transport
        for line in self.lines:
            transport.write(line + b"\n")
        transport.write_eof()

    def data_received(self, data: bytes) -> None:
        self.events.append("data")
        self.received += data

    def eof_received(self) -> None:
        self.events.append("eof")

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append("lost")
        if exc is None:
            self.done.set_result(self.events)
        else:
            self.done.set_exception(exc)


@pytest.mark.parametrize("api", sorted(PROTOCOL_APIS))
async def test_line_echo_switches_with_one_call(api: str) -> None:
    loop = asyncio.get_running_loop()
    create_server, create_connection = PROTOCOL_APIS[api](loop)
    rng = random.Random(7)
    workloads = [
        [pattern(rng.randint(0, 20_000), c * 100 + i).replace(b"\n", b"-") for i in range(300)] for c in range(3)
    ]

    server = await create_server(LineEchoServer, "127.0.0.1", 0)
    async with server:
        host, port = server.sockets[0].getsockname()[:2]
        clients = []
        for lines in workloads:
            done: asyncio.Future[list[str]] = loop.create_future()
            transport, client = await create_connection(
                lambda lines=lines, done=done: LineClient(lines, done), host, port
            )
            assert transport.get_extra_info("peername") == (host, port)
            clients.append((transport, client, done))
        for transport, client, done in clients:
            events = await asyncio.wait_for(done, GUARD)
            assert client.received == b"".join(line.upper() + b"\n" for line in client.lines)
            assert events[0] == "made" and events[-2:] == ["eof", "lost"] and events.count("lost") == 1
            assert transport.is_closing()
            if api == "wsasend":
                assert isinstance(transport, wsasend.WSATransport)
        server.close()
        await asyncio.wait_for(server.wait_closed(), GUARD)
    assert not server.sockets and not server.is_serving()


# -- the streams program ------------------------------------------------------------------------------


@pytest.mark.parametrize("api", sorted(STREAM_APIS))
async def test_streams_round_trip(api: str) -> None:
    start_server, open_connection = STREAM_APIS[api]
    served: list[Any] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served.append(writer.transport)
        while line := await reader.readline():
            writer.write(line[:-1][::-1] + b"\n")
            await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await start_server(handle, "127.0.0.1", 0, limit=1 << 20)
    async with server:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await open_connection("127.0.0.1", port, limit=1 << 20)
        lines = [pattern(n, n).replace(b"\n", b"") for n in (1, 10, 1000, 100_000, 300_000, 5)]
        for line in lines:
            writer.write(line + b"\n")
            await writer.drain()
        assert writer.can_write_eof()
        writer.write_eof()
        echoed = await asyncio.wait_for(reader.read(), GUARD)
        assert echoed == b"".join(line[::-1] + b"\n" for line in lines)
        assert reader.at_eof()
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), GUARD)
        if api == "wsasend":
            assert isinstance(writer.transport, wsasend.WSATransport)
            assert all(isinstance(t, wsasend.WSATransport) for t in served)
        server.close()
        await asyncio.wait_for(server.wait_closed(), GUARD)


async def test_streams_over_unix_socketpair() -> None:
    ours, theirs = socket.socketpair()
    reader, writer = await wsasend.open_connection(sock=ours)
    peer_reader, peer_writer = await wsasend.open_connection(sock=theirs)
    writer.write(b"hello\n")
    writer.writelines([b"wor", b"ld\n"])
    await writer.drain()
    assert await asyncio.wait_for(peer_reader.readline(), GUARD) == b"hello\n"
    assert await asyncio.wait_for(peer_reader.readline(), GUARD) == b"world\n"
    # The overlapped API is one attribute away.
    transport = writer.transport
    assert isinstance(transport, wsasend.WSATransport)
    assert await transport.send([b"zero", b"-copy\n"]) == 10
    assert await asyncio.wait_for(peer_reader.readline(), GUARD) == b"zero-copy\n"
    peer_writer.write(b"back\n")
    assert await asyncio.wait_for(reader.readline(), GUARD) == b"back\n"
    writer.close()
    await asyncio.wait_for(writer.wait_closed(), GUARD)
    assert await asyncio.wait_for(peer_reader.read(), GUARD) == b""
    peer_writer.close()
    await asyncio.wait_for(peer_writer.wait_closed(), GUARD)


async def test_streams_reset_reaches_the_reader() -> None:
    # The peer is gone: drain() fails as asyncio's does, and the reader holds the WSAError that
    # connection_lost got (an OSError; its winerror says what happened).
    ours, theirs = socket.socketpair()
    reader, writer = await wsasend.open_connection(sock=ours)
    theirs.close()
    writer.write(b"x" * 100)
    with pytest.raises(OSError):  # asyncio raises the error connection_lost got
        await asyncio.wait_for(writer.drain(), GUARD)
    exc = reader.exception()
    assert isinstance(exc, wsasend.WSAError) and exc.winerror == wsasend.WSAErrorCode.WSAECONNRESET
    writer.write(b"dropped")  # after the loss, writes are dropped as asyncio drops them
    writer.close()
    with pytest.raises(wsasend.WSAError):
        await asyncio.wait_for(writer.wait_closed(), GUARD)
