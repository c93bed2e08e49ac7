"""TLS over WSATransport (SPEC S9.2): asyncio's record layer on top, ciphertext through the engine.

Each test checks the bytes end to end against a real TLS peer: Python's ``ssl`` module (in a
thread, blocking), ``openssl s_client``, or our own client. The certificate is self-signed and
made at test time (tests/transport/tls_support.py).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest

import wsasend
from tests.frameworks.support import run_checked
from tests.helpers import pattern
from tests.transport.tls_support import HOSTNAME, certificate, client_context, server_context

GUARD = 60.0


def wsa_transport_below(transport: asyncio.BaseTransport) -> wsasend.WSATransport:
    """The WSATransport that carries a TLS app transport's ciphertext (asyncio's sslproto)."""
    below = transport._ssl_protocol._transport  # type: ignore[attr-defined]
    assert isinstance(below, wsasend.WSATransport), below
    return below


def sized_echo(
    seen: list[wsasend.WSATransport],
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    """A handler that reads an 8-byte length, then that many bytes, and sends them back."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(wsa_transport_below(writer.transport))
        size = int.from_bytes(await reader.readexactly(8), "big")
        data = await reader.readexactly(size)
        for start in range(0, size, 100_000):  # many writes: their records keep their order
            writer.write(data[start : start + 100_000])
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    return handle


def python_ssl_client(port: int, payload: bytes, out: list[bytes]) -> None:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=GUARD) as raw,
        client_context().wrap_socket(raw, server_hostname=HOSTNAME) as tls,
    ):
        tls.sendall(len(payload).to_bytes(8, "big") + payload)
        received = bytearray()
        while chunk := tls.recv(1 << 20):  # to the server's close_notify
            received += chunk
        out.append(bytes(received))


async def test_tls_server_echoes_to_python_ssl_client() -> None:
    seen: list[wsasend.WSATransport] = []
    server = await wsasend.start_server(sized_echo(seen), "127.0.0.1", 0, ssl=server_context())
    port = server.sockets[0].getsockname()[1]
    payload = pattern(3 << 20)
    out: list[bytes] = []
    thread = threading.Thread(target=python_ssl_client, args=(port, payload, out))
    thread.start()
    await asyncio.wait_for(asyncio.to_thread(thread.join), GUARD)
    assert out == [payload]
    assert len(seen) == 1
    server.close()
    await asyncio.wait_for(server.wait_closed(), GUARD)


async def test_tls_client_and_server_both_wsasend() -> None:
    seen: list[wsasend.WSATransport] = []
    server = await wsasend.start_server(sized_echo(seen), "127.0.0.1", 0, ssl=server_context())
    port = server.sockets[0].getsockname()[1]
    reader, writer = await wsasend.open_connection(
        "127.0.0.1", port, ssl=client_context(), server_hostname=HOSTNAME, ssl_handshake_timeout=GUARD
    )
    below = wsa_transport_below(writer.transport)
    payload = pattern(2 << 20, 7)
    writer.write(len(payload).to_bytes(8, "big"))
    for start in range(0, len(payload), 4096):
        writer.write(payload[start : start + 4096])
    await writer.drain()
    assert await asyncio.wait_for(reader.readexactly(len(payload)), GUARD) == payload
    assert await reader.read() == b""  # the server's close_notify, then EOF
    writer.close()
    await writer.wait_closed()
    assert below.is_closing()
    assert len(seen) == 1
    server.close()
    await asyncio.wait_for(server.wait_closed(), GUARD)


async def test_tls_echo_with_openssl_s_client() -> None:
    async def upper(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        wsa_transport_below(writer.transport)
        line = await reader.readline()
        writer.write(line.upper())
        await writer.drain()
        writer.close()

    server = await wsasend.start_server(upper, "127.0.0.1", 0, ssl=server_context())
    port = server.sockets[0].getsockname()[1]
    cert, _ = certificate()
    proc = await asyncio.create_subprocess_exec(
        *("openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", HOSTNAME),
        *("-CAfile", str(cert), "-verify_return_error", "-quiet"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(b"hello from s_client\n"), GUARD)
    assert stdout == b"HELLO FROM S_CLIENT\n", stderr
    server.close()
    await asyncio.wait_for(server.wait_closed(), GUARD)


async def test_tls_handshake_failure_fails_that_connection_only() -> None:
    seen: list[wsasend.WSATransport] = []
    server = await wsasend.start_server(sized_echo(seen), "127.0.0.1", 0, ssl=server_context())
    port = server.sockets[0].getsockname()[1]
    untrusting = ssl.create_default_context()  # does not trust our self-signed certificate
    with pytest.raises(ssl.SSLCertVerificationError):
        await wsasend.open_connection("127.0.0.1", port, ssl=untrusting, server_hostname=HOSTNAME)
    # The server goes on serving.
    reader, writer = await wsasend.open_connection("127.0.0.1", port, ssl=client_context())
    writer.write((3).to_bytes(8, "big") + b"abc")
    assert await asyncio.wait_for(reader.readexactly(3), GUARD) == b"abc"
    writer.close()
    await writer.wait_closed()
    server.close()
    await asyncio.wait_for(server.wait_closed(), GUARD)


async def test_tls_keywords_are_checked_as_asyncio_checks_them() -> None:
    with pytest.raises(ValueError, match="server_hostname is only meaningful with ssl"):
        await wsasend.create_connection(asyncio.Protocol, "127.0.0.1", 1, server_hostname="x")
    with pytest.raises(ValueError, match="ssl_shutdown_timeout is only meaningful with ssl"):
        await wsasend.create_connection(asyncio.Protocol, "127.0.0.1", 1, ssl_shutdown_timeout=1.0)
    with socket.socket() as sock, pytest.raises(ValueError, match="server_hostname when using ssl without a host"):
        await wsasend.create_connection(asyncio.Protocol, ssl=True, sock=sock)
    with pytest.raises(TypeError, match="SSLContext"):
        await wsasend.create_server(asyncio.Protocol, "127.0.0.1", 0, ssl=True)
    with pytest.raises(ValueError, match="ssl_handshake_timeout is only meaningful with ssl"):
        await wsasend.create_server(asyncio.Protocol, "127.0.0.1", 0, ssl_handshake_timeout=1.0)


# -- on wsasend's loop: the stock stream helpers with ssl=, and start_tls --------------------------


def run_on(base: str, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    run_checked(main(), base)


@pytest.mark.parametrize("base", ["asyncio", "uvloop"])
def test_tls_stock_stream_helpers_on_wsasend_loop(base: str) -> None:
    async def main() -> None:
        seen: list[wsasend.WSATransport] = []
        # Every keyword explicitly, as asyncio's own tests pass them.
        server = await asyncio.start_server(
            sized_echo(seen),
            "127.0.0.1",
            0,
            ssl=server_context(),
            ssl_handshake_timeout=GUARD,
            ssl_shutdown_timeout=GUARD,
        )
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_context(), server_hostname=HOSTNAME, ssl_handshake_timeout=GUARD
        )
        wsa_transport_below(writer.transport)
        payload = pattern(1 << 20, 3)
        writer.write(len(payload).to_bytes(8, "big") + payload)
        await writer.drain()
        assert await asyncio.wait_for(reader.readexactly(len(payload)), GUARD) == payload
        writer.close()
        await writer.wait_closed()
        assert len(seen) == 1
        server.close()
        await asyncio.wait_for(server.wait_closed(), GUARD)

    run_on(base, main)


@pytest.mark.parametrize("base", ["asyncio", "uvloop"])
def test_start_tls_upgrades_a_wsatransport_both_sides(base: str) -> None:
    """STARTTLS: plain text first, then ``StreamWriter.start_tls`` on both ends (``loop.start_tls``)."""

    async def main() -> None:
        upgraded: list[bool] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            assert isinstance(writer.transport, wsasend.WSATransport)
            assert await reader.readline() == b"STARTTLS\n"
            writer.write(b"GO\n")
            await writer.drain()
            plain = writer.transport
            await writer.start_tls(server_context())
            upgraded.append(wsa_transport_below(writer.transport) is plain)
            line = await reader.readline()
            writer.write(line[::-1])
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        plain = writer.transport
        assert isinstance(plain, wsasend.WSATransport)
        writer.write(b"STARTTLS\n")
        assert await reader.readline() == b"GO\n"
        await writer.start_tls(client_context(), server_hostname=HOSTNAME)
        assert wsa_transport_below(writer.transport) is plain
        assert writer.get_extra_info("ssl_object").version() is not None
        writer.write(b"secret line\n")
        assert await asyncio.wait_for(reader.read(), GUARD) == b"\nenil terces"
        writer.close()
        await writer.wait_closed()
        assert upgraded == [True]
        server.close()
        await asyncio.wait_for(server.wait_closed(), GUARD)

    run_on(base, main)


@pytest.mark.parametrize("base", ["asyncio", "uvloop"])
def test_start_tls_rejects_a_non_context(base: str) -> None:
    async def main() -> None:
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        with pytest.raises(TypeError, match="SSLContext"):
            await asyncio.get_running_loop().start_tls(writer.transport, writer._protocol, object())  # type: ignore[arg-type, attr-defined]
        writer.close()
        await writer.wait_closed()
        server.close()

    run_on(base, main)


# -- TLS needs a stream socket: message sockets are refused as asyncio refuses them ---------------

MESSAGE_KINDS = pytest.mark.parametrize("kind", [socket.SOCK_SEQPACKET, socket.SOCK_DGRAM], ids=["seqpacket", "dgram"])


@MESSAGE_KINDS
async def test_tls_on_a_message_socket_is_refused_before_anything_is_made(kind: int) -> None:
    """``ssl=`` with a SOCK_SEQPACKET or SOCK_DGRAM ``sock``: asyncio's ValueError, socket untouched.

    (Before, the handshake worked and a write whose records outgrew one message ended the
    connection with WSAEMSGSIZE, silently for the writer.)
    """
    ours, theirs = socket.socketpair(socket.AF_UNIX, kind)
    with ours, theirs:
        with pytest.raises(ValueError, match="A Stream Socket was expected"):
            await wsasend.connect_accepted_socket(asyncio.Protocol, ours, ssl=server_context())
        with pytest.raises(ValueError, match="A Stream Socket was expected"):
            await wsasend.create_connection(asyncio.Protocol, sock=ours, ssl=client_context(), server_hostname=HOSTNAME)
        # Nothing was made: the socket is still open, blocking, and free for a plain transport.
        assert ours.fileno() != -1 and ours.getblocking()
        transport, _ = await wsasend.connect_accepted_socket(asyncio.Protocol, ours)
        transport.write(b"plain still works")
        assert await asyncio.to_thread(theirs.recv, 100) == b"plain still works"
        transport.close()
        await asyncio.sleep(0)


async def test_tls_server_on_a_seqpacket_socket_is_refused() -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as listener:
        listener.bind("\0wsasend-tls-seqpacket-" + str(id(listener)))
        with pytest.raises(ValueError, match="A Stream Socket was expected"):
            await wsasend.create_server(asyncio.Protocol, sock=listener, ssl=server_context())
        assert listener.fileno() != -1


@MESSAGE_KINDS
@pytest.mark.parametrize("base", ["asyncio", "uvloop"])
def test_start_tls_on_a_message_socket_transport_is_refused(base: str, kind: int) -> None:
    async def main() -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, kind)
        with theirs:
            transport, protocol = await wsasend.connect_accepted_socket(asyncio.Protocol, ours)
            with pytest.raises(ValueError, match="A Stream Socket was expected"):
                await asyncio.get_running_loop().start_tls(transport, protocol, server_context(), server_side=True)
            # The transport is as it was: still open, still sending in the clear.
            assert not transport.is_closing()
            transport.write(b"still plain")
            assert await asyncio.to_thread(theirs.recv, 100) == b"still plain"
            transport.close()
            await asyncio.sleep(0)

    run_on(base, main)
