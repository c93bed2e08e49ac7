"""A client that connects, then resets before the server accepts it (SPEC S7.3, S9.1, S9.2).

Linux still hands such a connection to ``accept()``, but ``getpeername()`` on it fails
(ENOTCONN). asyncio's and uvloop's servers stay quiet: the protocol gets ``connection_made``
and the first read reports the reset through ``connection_lost`` (with TLS the handshake fails
and the app protocol hears nothing). The loop's exception handler is not called and nothing
warns. These tests check the same of wsasend's servers, plain and TLS, on both loops, through
``wsasend.create_server``/``start_server`` and through ``asyncio.start_server`` on wsasend's
loop.

The reset is deterministic: the client connects (the kernel completes the handshake into the
listening socket's backlog) and closes with SO_LINGER (1, 0) without the test yielding to the
loop, so the server's accept can only run after the RST.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import ssl
import struct
import warnings
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import wsasend
from tests.frameworks.support import run_checked
from tests.transport.tls_support import HOSTNAME, client_context, server_context

from .util import GUARD, Recorder, until


def connect_and_reset(port: int) -> None:
    """Connect to the server and reset the connection, all before the loop can run again."""
    client = socket.create_connection(("127.0.0.1", port), timeout=GUARD)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()  # RST: the connection waits in the accept queue, already reset


@contextmanager
def no_resource_warnings() -> Iterator[None]:
    """Fail if anything collected inside (or at the final ``gc.collect()``) warned unclosed."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        yield
        gc.collect()
    unclosed = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert not unclosed, unclosed


def line_echo(resets: list[BaseException]) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]:
    """A handler that answers one line upper-cased; a reset before it is recorded in ``resets``."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
        except ConnectionResetError as exc:  # the reset connection's first read, as with asyncio
            resets.append(exc)
            writer.close()
            return
        writer.write(line.upper())
        await writer.drain()
        writer.close()

    return handle


async def reset_then_serve(server: wsasend.WSAServer, resets: list[BaseException], tls: bool) -> None:
    """A client resets before accept; the next, normal client still gets its answer. Plain:
    the handler ran and its first read raised the reset. TLS: the handshake failed, so the
    handler never ran (asyncio's TLS servers behave the same). Closes the server."""
    port = server.sockets[0].getsockname()[1]
    connect_and_reset(port)
    if tls:
        await asyncio.sleep(0.05)  # (lets the failed handshake end before the warnings check)
    else:
        await until(lambda: len(resets) == 1)
    await served_after_reset(port, tls)
    assert len(resets) == (0 if tls else 1), resets
    server.close()
    await asyncio.wait_for(server.wait_closed(), GUARD)


async def served_after_reset(port: int, tls: bool) -> None:
    """The next, normal client still gets its answer."""
    context = client_context() if tls else None
    reader, writer = await wsasend.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname=HOSTNAME if tls else None
    )
    writer.write(b"still there?\n")
    assert await asyncio.wait_for(reader.readline(), GUARD) == b"STILL THERE?\n"
    writer.close()
    await writer.wait_closed()


async def test_WSAServer_reset_before_accept_is_the_first_reads_error() -> None:
    """Plain server: the transport is made, and its first read reports the reset, as asyncio's."""
    made: list[Recorder] = []

    def factory() -> Recorder:
        proto = Recorder()
        made.append(proto)
        return proto

    with no_resource_warnings():
        server = await wsasend.create_server(factory, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        connect_and_reset(port)
        await until(lambda: len(made) == 1)
        exc = await asyncio.wait_for(made[0].lost, GUARD)
        assert isinstance(exc, ConnectionResetError), exc
        assert made[0].events[0] == ("made", None)
        made[0].check()
        # The server serves the next client.
        client = socket.create_connection(("127.0.0.1", port), timeout=GUARD)
        await until(lambda: len(made) == 2)
        await asyncio.wait_for(made[1].made, GUARD)
        client.close()
        assert await asyncio.wait_for(made[1].lost, GUARD) is None
        server.close()
        await asyncio.wait_for(server.wait_closed(), GUARD)


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
async def test_start_server_reset_before_accept_is_quiet(tls: bool) -> None:
    """``wsasend.start_server``: no exception-handler call (autouse fixture), no warning."""
    resets: list[BaseException] = []
    with no_resource_warnings():
        server = await wsasend.start_server(line_echo(resets), "127.0.0.1", 0, ssl=server_context() if tls else None)
        await reset_then_serve(server, resets, tls)


def run_on(base: str, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    run_checked(main(), base)  # fails if the loop's exception handler fired


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
@pytest.mark.parametrize("base", ["asyncio", "uvloop"])
def test_asyncio_start_server_on_wsasend_loop_reset_before_accept_is_quiet(base: str, tls: bool) -> None:
    """The stock ``asyncio.start_server`` on wsasend's loop (a WSAServer underneath)."""

    async def main() -> None:
        resets: list[BaseException] = []
        server = await asyncio.start_server(line_echo(resets), "127.0.0.1", 0, ssl=server_context() if tls else None)
        assert isinstance(server, wsasend.WSAServer)
        await reset_then_serve(server, resets, tls)

    with no_resource_warnings():
        run_on(base, main)


async def test_connect_accepted_socket_tls_unconnected_leaves_no_unclosed_transport() -> None:
    """A TLS layer whose WSATransport could not be made is closed: no "unclosed transport"."""
    with no_resource_warnings():
        with socket.socket() as sock:
            with pytest.raises(wsasend.WSAError) as info:
                await wsasend.connect_accepted_socket(asyncio.Protocol, sock, ssl=server_context())
            assert info.value.winerror == wsasend.WSAErrorCode.WSAENOTCONN
            del info
        with socket.socket() as sock, pytest.raises(wsasend.WSAError):
            await wsasend.create_connection(
                asyncio.Protocol, sock=sock, ssl=ssl.create_default_context(), server_hostname=HOSTNAME
            )
