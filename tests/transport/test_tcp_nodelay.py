"""TCP_NODELAY on a transport's TCP socket, as asyncio's transports set it (issue 11).

The compiled build sets it on a plain ``socket.socket`` with ``_iovsend.tcp_nodelay``, one
``setsockopt(2)`` without ``socket.setsockopt``'s argument parsing (~1,000 instructions of
every connection a server accepts). It must leave every socket as ``setsockopt`` leaves it and
fail as it fails; a subclass's own ``setsockopt`` is still the one called. The transport tests
run on both loops (the ``event_loop_policy`` fixture of tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import socket

import pytest

import wsasend
from wsasend import WSATransport, _engine

from .util import Recorder

NODELAY = _engine._IOV_TCP_NODELAY
needs_helper = pytest.mark.skipif(NODELAY is None, reason="plain-Python build: socket.setsockopt itself")


def _tcp_pair(family: int, host: str) -> tuple[socket.socket, socket.socket]:
    with socket.socket(family, socket.SOCK_STREAM) as listener:
        listener.bind((host, 0))
        listener.listen()
        client = socket.create_connection(listener.getsockname()[:2])
        server, _ = listener.accept()
    return client, server


def _nodelay(sock: socket.socket) -> int:
    value: int = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    return value


def _errno_of(call: object, sock: socket.socket) -> int | None:
    try:
        call(sock)  # type: ignore[operator]
    except OSError as exc:
        return exc.errno
    return None


@needs_helper
@pytest.mark.parametrize(("family", "host"), [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_it_sets_what_setsockopt_sets(family: int, host: str) -> None:
    assert NODELAY is not None
    client, server = _tcp_pair(family, host)
    with client, server:
        assert _nodelay(server) == 0  # (Linux's default: the call below is what changes it)
        assert NODELAY(server) is None
        assert _nodelay(server) == 1
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        assert _nodelay(client) == _nodelay(server) == 1
        assert NODELAY(server) is None  # (again: no change, no error)
        assert _nodelay(server) == 1


@needs_helper
def test_it_fails_as_setsockopt_fails() -> None:
    assert NODELAY is not None

    def reference(sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # No TCP under these (EOPNOTSUPP/ENOPROTOOPT, whatever Linux says: the same), and a closed
    # socket (EBADF).
    unix_a, unix_b = socket.socketpair()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed = socket.socket()
    closed.close()
    try:
        for sock in (unix_a, udp, closed):
            expected = _errno_of(reference, sock)
            assert expected is not None
            assert _errno_of(NODELAY, sock) == expected
    finally:
        unix_a.close()
        unix_b.close()
        udp.close()
    for bad in (None, 3, object()):
        with pytest.raises(TypeError):
            NODELAY(bad)  # type: ignore[arg-type]


class _CountingSocket(socket.socket):
    """A socket whose setsockopt calls are recorded (the transport must still call it)."""

    calls: list[tuple[int, int, int]]

    def setsockopt(self, level: int, name: int, value: int) -> None:  # type: ignore[override]
        self.calls.append((level, name, value))
        super().setsockopt(level, name, value)


@pytest.mark.parametrize(("family", "host"), [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
async def test_a_transport_sets_it_on_a_plain_socket_and_through_a_subclass(family: int, host: str) -> None:
    client, server = _tcp_pair(family, host)
    counted = _CountingSocket(family, socket.SOCK_STREAM, fileno=client.detach())
    counted.calls = []
    with server:
        plain_proto, counted_proto = Recorder(), Recorder()
        plain = WSATransport(server, plain_proto)
        sub = WSATransport(counted, counted_proto)
        assert _nodelay(server) == 1
        assert _nodelay(counted) == 1
        assert counted.calls == [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
        # Both still carry bytes both ways.
        sub.write(b"ping")
        assert await plain_proto.wait_data(4) == b"ping"
        plain.write(b"pong")
        assert await counted_proto.wait_data(4) == b"pong"
        plain.close()
        sub.close()
        await plain_proto.wait_lost()
        await counted_proto.wait_lost()


async def test_a_servers_connections_have_it() -> None:
    transports: list[WSATransport] = []

    class Keep(Recorder):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, WSATransport)
            transports.append(transport)
            super().connection_made(transport)

    server = await wsasend.create_server(Keep, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        try:
            for client in clients:
                client.sendall(b"x")
            for _ in range(200):
                if len(transports) == 3:
                    break
                await asyncio.sleep(0.01)
            assert len(transports) == 3
            for transport in transports:
                assert _nodelay(transport.get_extra_info("socket")) == 1
        finally:
            for client in clients:
                client.close()
    finally:
        server.close()
        await server.wait_closed()
