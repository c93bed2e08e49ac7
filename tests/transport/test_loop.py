"""wsasend's loop (SPEC S9.1): the base loop with connection methods that hand out WSATransports.

Each test runs on both flavours (asyncio's selector loop and uvloop's) through ``wsasend.run``.
"""

from __future__ import annotations

import asyncio
import io
import os
import socket
import tempfile
from pathlib import Path

import pytest

import wsasend
from tests.frameworks.support import BASES, run_checked
from tests.helpers import pattern

GUARD = 60.0


async def upper(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    assert isinstance(writer.transport, wsasend.WSATransport)
    writer.write((await reader.readline()).upper())
    await writer.drain()
    writer.close()


@pytest.mark.parametrize("base", BASES)
def test_loop_unix_stream_helpers_give_wsatransports(base: str) -> None:
    async def main() -> None:
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "sock")
            server = await asyncio.start_unix_server(upper, path)
            assert Path(path).exists()
            reader, writer = await asyncio.open_unix_connection(path)
            assert isinstance(writer.transport, wsasend.WSATransport)
            writer.write(b"over unix\n")
            assert await asyncio.wait_for(reader.readline(), GUARD) == b"OVER UNIX\n"
            writer.close()
            await writer.wait_closed()
            server.close()
            await asyncio.wait_for(server.wait_closed(), GUARD)
            assert not Path(path).exists()  # cleanup_socket (asyncio 3.13's default)
            with socket.socket(socket.AF_UNIX) as sock, pytest.raises(ValueError, match="path and sock"):
                await asyncio.get_running_loop().create_unix_server(asyncio.Protocol, path, sock=sock)

    run_checked(main(), base)


@pytest.mark.parametrize("base", BASES)
def test_loop_connection_methods_take_every_stock_keyword(base: str) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        # keep_alive (3.13) and all_errors (3.12) are stock keywords the 3.11 stubs lack: the
        # test passes them on purpose, and wsasend's loop takes them on every version.
        server = await loop.create_server(  # type: ignore[call-overload]
            lambda: asyncio.StreamReaderProtocol(asyncio.StreamReader(), upper),
            "127.0.0.1",
            0,
            backlog=10,
            reuse_address=True,
            reuse_port=True,
            keep_alive=True,
            ssl=None,
            ssl_handshake_timeout=None,
            ssl_shutdown_timeout=None,
            start_serving=False,
        )
        assert not server.is_serving()
        assert isinstance(server.sockets[0], asyncio.trsock.TransportSocket)
        await server.start_serving()
        port = server.sockets[0].getsockname()[1]
        for extra in ({}, {"happy_eyeballs_delay": 0.25}, {"interleave": 2}):
            reader = asyncio.StreamReader()
            transport, _ = await loop.create_connection(  # type: ignore[call-overload]
                lambda r=reader: asyncio.StreamReaderProtocol(r),
                "127.0.0.1",
                port,
                ssl=None,
                server_hostname=None,
                ssl_handshake_timeout=None,
                ssl_shutdown_timeout=None,
                all_errors=False,
                **extra,
            )
            assert isinstance(transport, wsasend.WSATransport)
            transport.write(b"kw\n")
            assert await asyncio.wait_for(reader.readline(), GUARD) == b"KW\n"
            transport.close()
        ours, theirs = socket.socketpair()
        with theirs:
            transport, _ = await loop.connect_accepted_socket(
                asyncio.Protocol, ours, ssl=None, ssl_handshake_timeout=None, ssl_shutdown_timeout=None
            )
            assert isinstance(transport, wsasend.WSATransport)
            transport.close()
        server.close()
        await asyncio.wait_for(server.wait_closed(), GUARD)

    run_checked(main(), base)


@pytest.mark.parametrize("base", BASES)
def test_loop_sendfile_fallback_takes_a_write_between_two_blocks(base: str) -> None:
    """asyncio's fallback takes a bare ``write()`` while it runs (only its native path refuses
    one); so does ours, and the bytes go out between two blocks, never inside one (S9.3, S5.4).
    Refused at 4a832f9, whereas ``WSATransport.sendfile`` took it: the two paths now agree."""
    blob = pattern(3 << 20, 8)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        ours, peer = socket.socketpair()
        for sock in (ours, peer):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        with peer:
            transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
            assert isinstance(transport, wsasend.WSATransport)
            task = asyncio.ensure_future(loop.sendfile(transport, io.BytesIO(blob)))
            while not transport.get_write_buffer_size():  # the first block is posted
                await asyncio.sleep(0)
            transport.write(b"<<between>>")
            received = bytearray()
            peer.setblocking(False)
            while len(received) < len(blob) + 11:
                received += await asyncio.wait_for(loop.sock_recv(peer, 1 << 20), GUARD)
            assert await task == len(blob)
            at = bytes(received).index(b"<<between>>")
            assert at > 0 and at % (256 * 1024) == 0  # after a whole block
            assert bytes(received[:at]) + bytes(received[at + 11 :]) == blob
            transport.close()

    run_checked(main(), base)


@pytest.mark.parametrize("base", BASES)
def test_loop_sendfile_is_ordered_with_writes(base: str, tmp_path: Path) -> None:
    """``loop.sendfile`` on a WSATransport: in order between writes, offset/count, file position (S9.3)."""
    blob = pattern(3 << 20, 4)
    (tmp_path / "f").write_bytes(blob)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        ours, peer = socket.socketpair()
        with peer, open(tmp_path / "f", "rb") as file:
            transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
            assert isinstance(transport, wsasend.WSATransport)
            transport.write(b"<")
            task = asyncio.ensure_future(loop.sendfile(transport, file, 1000, 2_000_000))
            await asyncio.sleep(0)
            with pytest.raises(RuntimeError, match="sendfile is in progress"):
                transport.write(b"not now")  # as asyncio refuses it
            received = bytearray()
            peer.setblocking(False)
            while len(received) < 1 + 2_000_000:
                received += await asyncio.wait_for(loop.sock_recv(peer, 1 << 20), GUARD)
            assert await task == 2_000_000
            assert file.tell() == 1000 + 2_000_000
            transport.write(b">")
            with pytest.raises(asyncio.SendfileNotAvailableError):  # no descriptor: no native path
                await loop.sendfile(transport, io.BytesIO(b"x"), fallback=False)
            with pytest.raises(ValueError, match="count"):
                await loop.sendfile(transport, file, 0, 0)
            transport.close()
            while chunk := await asyncio.wait_for(loop.sock_recv(peer, 1 << 20), GUARD):
                received += chunk
            assert bytes(received) == b"<" + blob[1000:2_001_000] + b">"

    run_checked(main(), base)


@pytest.mark.parametrize("base", BASES)
def test_policy_install_and_run(base: str) -> None:
    async def kind() -> type[asyncio.AbstractEventLoop]:
        return type(asyncio.get_running_loop())

    loop_type = wsasend.run(kind(), base=base)  # type: ignore[arg-type]
    assert issubclass(loop_type, wsasend.WSAEventLoop if base == "asyncio" else asyncio.AbstractEventLoop)
    assert loop_type.create_server is wsasend.WSAEventLoop.create_server
    old = asyncio.get_event_loop_policy()
    try:
        wsasend.install(base)  # type: ignore[arg-type]
        assert asyncio.run(kind()) is loop_type
        loop = asyncio.new_event_loop()
        assert type(loop) is loop_type
        loop.close()
    finally:
        asyncio.set_event_loop_policy(old)
    factory = wsasend.new_event_loop if base == "asyncio" else wsasend.new_uvloop_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        assert runner.run(kind()) is loop_type


def test_new_event_loop_rejects_an_unknown_base() -> None:
    with pytest.raises(ValueError, match="base"):
        wsasend.new_event_loop("trio")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="base"):
        wsasend.EventLoopPolicy("trio")  # type: ignore[arg-type]
