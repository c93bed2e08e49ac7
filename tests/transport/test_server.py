"""create_server / WSAServer and create_connection's arguments (SPEC S7.3), on both loops."""

from __future__ import annotations

import asyncio
import errno
import gc
import os
import socket
import tempfile
import weakref
from typing import Any

import pytest

import wsasend
from tests.helpers import read_exactly
from wsasend import MSG_PARTIAL, WSAError, WSAErrorCode, WSAServer, WSATransport

from .util import GUARD, Recorder, drain_peer, until


class Accepted(Recorder):
    """Server-side Recorder that registers itself, so the test can reach each connection."""

    registry: list[Accepted]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.registry.append(self)


def _factory() -> tuple[list[Accepted], Any]:
    registry: list[Accepted] = []

    def make() -> Accepted:
        proto = Accepted()
        proto.registry = registry
        return proto

    return registry, make


async def _client(port: int, family: int = socket.AF_INET) -> socket.socket:
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (host, port)), GUARD)
    return sock


async def test_WSAServer_context_manager_accepts_transports() -> None:
    registry, factory = _factory()
    async with await wsasend.create_server(factory, "127.0.0.1", 0) as server:
        assert isinstance(server, WSAServer) and server.is_serving()
        assert server.get_loop() is asyncio.get_running_loop()
        (listener,) = server.sockets
        port = listener.getsockname()[1]
        assert f"{port}" in repr(server)
        clients = [await _client(port) for _ in range(3)]
        await until(lambda: len(registry) == 3)
        by_peer = {proto.transport.get_extra_info("peername"): proto for proto in registry if proto.transport}
        for client in clients:
            proto = by_peer[client.getsockname()]
            assert isinstance(proto.transport, WSATransport)
            proto.transport.write(b"hi " + str(client.getsockname()[1]).encode())
            client.shutdown(socket.SHUT_WR)  # the server's transport sees EOF and closes
            assert await drain_peer(client) == b"hi " + str(client.getsockname()[1]).encode()
            client.close()
        for proto in registry:
            assert await proto.wait_lost() is None
            proto.check()
    # __aexit__ closed the server and waited for its connections.
    assert server.sockets == () and not server.is_serving() and listener.fileno() == -1


async def test_WSAServer_serve_forever_and_wait_closed() -> None:
    registry, factory = _factory()
    server = await wsasend.create_server(factory, "127.0.0.1", 0, start_serving=False)
    assert not server.is_serving()
    port = server.sockets[0].getsockname()[1]
    task = asyncio.ensure_future(server.serve_forever())
    await asyncio.sleep(0)
    assert server.is_serving()
    with pytest.raises(RuntimeError, match="already being awaited"):
        await server.serve_forever()
    client = await _client(port)
    await until(lambda: len(registry) == 1)
    task.cancel()
    # serve_forever closes the server, then waits for the open connection (Python 3.12 semantics).
    await until(lambda: not server.sockets)
    for _ in range(5):
        await asyncio.sleep(0)
    assert not task.done()
    registry[0].transport.close()  # type: ignore[union-attr]
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, GUARD)
    await asyncio.wait_for(server.wait_closed(), GUARD)  # returns at once now
    with pytest.raises(RuntimeError, match="closed"):
        await server.serve_forever()
    client.close()


async def test_WSAServer_counts_its_connections_and_wait_closed_waits_for_the_last() -> None:
    # The transports update their server's ServerConnections themselves (issue 11): the count
    # and the weak references follow every connection made and lost, and wait_closed() returns
    # only once the server is closed AND its last connection is gone, whichever comes last.
    registry, factory = _factory()
    server = await wsasend.create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    clients = [await _client(port) for _ in range(3)]
    await until(lambda: len(registry) == 3)
    assert server._connections.count == 3
    assert {ref() for ref in server._connections.refs} == {p.transport for p in registry}
    assert "connections=3" in repr(server)
    registry[0].transport.close()  # type: ignore[union-attr]
    await until(lambda: server._connections.count == 2)
    assert registry[0].transport not in {ref() for ref in server._connections.refs}
    server.close()
    waiter = asyncio.ensure_future(server.wait_closed())
    registry[1].transport.abort()  # type: ignore[union-attr]
    await until(lambda: server._connections.count == 1)
    for _ in range(5):
        await asyncio.sleep(0)
    assert not waiter.done()  # one connection is still open
    registry[2].transport.close()  # type: ignore[union-attr]
    await asyncio.wait_for(waiter, GUARD)
    assert server._connections.count == 0 and not server._connections.refs
    for client in clients:
        client.close()


async def test_WSAServer_start_serving_later() -> None:
    registry, factory = _factory()
    server = await wsasend.create_server(factory, "127.0.0.1", 0, start_serving=False)
    port = server.sockets[0].getsockname()[1]
    probe = socket.socket()
    probe.setblocking(False)
    with pytest.raises(ConnectionRefusedError):  # bound, not listening yet (asyncio's behaviour)
        await asyncio.get_running_loop().sock_connect(probe, ("127.0.0.1", port))
    probe.close()
    await server.start_serving()
    assert server.is_serving()
    client = await _client(port)
    await until(lambda: len(registry) == 1)
    server.close_clients()
    assert await drain_peer(client) == b""
    client.close()
    server.close()
    await asyncio.wait_for(server.wait_closed(), GUARD)


async def test_WSAServer_abort_clients_fails_pending_sends() -> None:
    registry, factory = _factory()
    server = await wsasend.create_server(factory, "127.0.0.1", 0)
    client = await _client(server.sockets[0].getsockname()[1])
    await until(lambda: len(registry) == 1)
    transport = registry[0].transport
    assert transport is not None
    ov = transport.send(b"z" * (32 << 20))  # far more than the socket buffers hold
    assert ov.pending
    server.close()
    waiter = asyncio.ensure_future(server.wait_closed())
    await asyncio.sleep(0)
    assert not waiter.done()  # a connection is still open
    server.abort_clients()
    with pytest.raises(WSAError) as info:
        await asyncio.wait_for(ov, GUARD)
    assert info.value.winerror == WSAErrorCode.WSA_OPERATION_ABORTED
    assert 0 < ov.transferred < ov.nbytes
    await asyncio.wait_for(waiter, GUARD)
    received = await drain_peer(client)
    assert len(received) == ov.transferred  # exact, S6.1
    client.close()


@pytest.mark.parametrize("kind", [socket.SOCK_STREAM, socket.SOCK_SEQPACKET])
async def test_WSAServer_unix_sock(kind: int) -> None:
    registry, factory = _factory()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "server.sock")
        listener = socket.socket(socket.AF_UNIX, kind)
        listener.bind(path)
        server = await wsasend.create_server(factory, sock=listener, max_pending_sends=7, partial_messages="cork")
        client = socket.socket(socket.AF_UNIX, kind)
        client.connect(path)
        await until(lambda: len(registry) == 1)
        transport = registry[0].transport
        assert transport is not None
        assert wsasend._api.find_engine(transport.get_extra_info("socket")).max_pending == 7  # type: ignore[union-attr]
        # MSG_PARTIAL: pieces of one record (seqpacket), or corked bytes (stream, "cork").
        ovs = [transport.send(b"one ", MSG_PARTIAL), transport.send(b"record")]
        assert [await ov for ov in ovs] == [4, 6]
        client.setblocking(False)
        loop = asyncio.get_running_loop()
        first = await asyncio.wait_for(loop.sock_recv(client, 100), GUARD)
        if kind == socket.SOCK_STREAM:
            first += await read_exactly(client, 10 - len(first))
        assert first == b"one record"
        client.send(b"ping")
        await registry[0].wait_data(4)
        client.close()
        assert await registry[0].wait_lost() is None
        server.close()
        await asyncio.wait_for(server.wait_closed(), GUARD)
        assert listener.fileno() == -1


async def test_WSAServer_protocol_factory_error(loop_errors: list[dict[str, Any]]) -> None:
    def factory() -> asyncio.Protocol:
        raise LookupError("no protocol today")

    server = await wsasend.create_server(factory, "127.0.0.1", 0)
    client = await _client(server.sockets[0].getsockname()[1])
    assert await drain_peer(client) == b""  # the connection was closed
    client.close()
    assert [str(c["exception"]) for c in loop_errors] == ["no protocol today"]
    assert loop_errors[0]["message"] == "Error on transport creation for incoming connection"
    server.close()
    await asyncio.wait_for(server.wait_closed(), GUARD)


async def test_create_server_hosts_and_errors() -> None:
    server = await wsasend.create_server(Recorder, ["127.0.0.1", "::1"], 0)
    assert sorted(s.family for s in server.sockets) == [socket.AF_INET, socket.AF_INET6]
    taken = server.sockets[0].getsockname()
    with pytest.raises(OSError) as info:
        await wsasend.create_server(Recorder, taken[0], taken[1])
    assert info.value.errno == errno.EADDRINUSE and "error while attempting to bind" in str(info.value)
    server.close()
    await server.wait_closed()
    with socket.socket() as sock:
        with pytest.raises(ValueError):
            await wsasend.create_server(Recorder, "127.0.0.1", 0, sock=sock)
        with pytest.raises(TypeError):  # asyncio's: a server needs an SSLContext, not True
            await wsasend.create_server(Recorder, "127.0.0.1", 0, ssl=True)
    with pytest.raises(ValueError):
        await wsasend.create_server(Recorder)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, pytest.raises(ValueError):
        await wsasend.create_server(Recorder, sock=udp)


async def test_create_connection_arguments() -> None:
    registry, factory = _factory()
    server = await wsasend.create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport, proto = await wsasend.create_connection(Recorder, "127.0.0.1", port, local_addr=("127.0.0.1", 0))
    assert isinstance(transport, WSATransport) and isinstance(proto, Recorder)
    assert transport.get_extra_info("peername") == ("127.0.0.1", port)
    assert transport.get_extra_info("sockname")[0] == "127.0.0.1"
    sock = transport.get_extra_info("socket")
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1  # as asyncio sets it
    assert sock.gettimeout() == 0.0  # the transport owns the socket: nonblocking, as in asyncio
    transport.close()
    await proto.wait_lost()
    # A refused connection raises what loop.create_connection raises.
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        closed_port = free.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):
        await wsasend.create_connection(Recorder, "127.0.0.1", closed_port)
    with pytest.raises(ExceptionGroup) as group:
        await wsasend.create_connection(Recorder, "127.0.0.1", closed_port, all_errors=True)
    assert all(isinstance(e, ConnectionRefusedError) for e in group.value.exceptions)
    with socket.socket() as sock, pytest.raises(ValueError):
        await wsasend.create_connection(Recorder, "127.0.0.1", port, sock=sock)
    with pytest.raises(ValueError):
        await wsasend.create_connection(Recorder)
    with pytest.raises(ValueError):  # asyncio's check: server_hostname needs ssl
        await wsasend.create_connection(Recorder, "127.0.0.1", port, server_hostname="x")
    # A protocol factory that fails leaves no socket behind (ours are closed).
    with pytest.raises(ZeroDivisionError):
        await wsasend.create_connection(lambda: 1 // 0, "127.0.0.1", port)  # type: ignore[type-var]  # raises, on purpose
    await until(lambda: len(registry) == 2)
    for accepted in registry[1:]:
        assert await accepted.wait_lost() is None  # it saw our close
    server.close_clients()
    server.close()
    await asyncio.wait_for(server.wait_closed(), GUARD)


async def test_connect_accepted_socket_validation() -> None:
    with socket.socket() as sock, pytest.raises(ValueError):  # asyncio's check: the timeout needs ssl
        await wsasend.connect_accepted_socket(Recorder, sock, ssl_handshake_timeout=1.0)
    with pytest.raises(WSAError) as info:
        await wsasend.connect_accepted_socket(Recorder, "not a socket")  # type: ignore[call-overload]  # on purpose
    assert info.value.winerror == WSAErrorCode.WSAENOTSOCK


def _link_local() -> str | None:
    """A link-local IPv6 address of this machine with its zone (``fe80::...%eth0``), or None."""
    try:
        with open("/proc/net/if_inet6") as table:
            rows = [line.split() for line in table]
    except OSError:
        return None
    for row in rows:
        if len(row) == 6 and row[3] == "20" and row[0].startswith("fe80"):  # scope 0x20: link
            packed = bytes.fromhex(row[0])
            return f"{socket.inet_ntop(socket.AF_INET6, packed)}%{row[5]}"
    return None


@pytest.mark.skipif(_link_local() is None, reason="no link-local IPv6 address here")
async def test_a_scoped_link_local_host_serves_and_connects() -> None:
    # uvloop's loop.getaddrinfo drops the scope id, and a link-local address without one is
    # EINVAL at bind() and connect(); uvloop's own create_server/create_connection take it.
    host = _link_local()
    assert host is not None
    server = await wsasend.create_server(Recorder, host, 0)
    try:
        address = server.sockets[0].getsockname()
        assert address[3] == socket.if_nametoindex(host.split("%")[1])
        transport, proto = await wsasend.create_connection(Recorder, host, address[1])
        assert transport.get_extra_info("peername")[3] == address[3]
        assert await transport.send(b"scoped") == 6
        transport.close()
        await proto.wait_lost()
    finally:
        server.close()
        await server.wait_closed()


class _Echo(asyncio.Protocol):
    """A plain server protocol that keeps its transport, as most do (the classic cycle)."""

    def __init__(self, lost: list[asyncio.Future[None]]) -> None:
        self.transport: asyncio.BaseTransport | None = None
        self.lost = asyncio.get_running_loop().create_future()
        lost.append(self.lost)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert isinstance(self.transport, WSATransport)
        self.transport.send([b"re: ", data])  # (the socket gets an engine, a slot, a queue)
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set_result(None)


async def test_a_connection_leaves_no_cycle_behind() -> None:
    """Issue 11 (workload HC): a finished connection is freed by reference counting alone.

    The transport held its protocol after ``connection_lost`` (the protocol holds the
    transport), and a socket's engine and registry slot named each other after the socket died:
    a cycle per connection, for the cyclic collector, which a server making a connection per
    request then ran every few dozen connections. Here the collector is off: the transports,
    protocols and engines of 20 connections must go without it.
    """
    from wsasend._engine import SendEngine, SocketSlot

    def count(kind: type) -> int:
        return sum(type(o) is kind for o in gc.get_objects())

    lost: list[asyncio.Future[None]] = []
    refs: list[weakref.ReferenceType[Any]] = []
    gc.collect()
    gc.disable()
    try:
        engines, slots = count(SendEngine), count(SocketSlot)
        server = await wsasend.create_server(lambda: _Echo(lost), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        for i in range(20):
            client = await _client(port)
            await asyncio.get_running_loop().sock_sendall(client, b"%d" % i)
            assert await drain_peer(client) == b"re: %d" % i
            client.close()
        await asyncio.wait_for(asyncio.gather(*lost), GUARD)
        server.close()
        await server.wait_closed()
        assert len(lost) == 20
        refs = [weakref.ref(fut) for fut in lost]
        del lost[:]
        for _ in range(5):
            await asyncio.sleep(0)  # (the loop lets go of the last callbacks' handles)
        # The futures are held only by their protocols, the protocols by their transports.
        assert [ref() for ref in refs] == [None] * 20
        assert (count(SendEngine), count(SocketSlot)) == (engines, slots)
    finally:
        gc.enable()


@pytest.mark.parametrize("options", [{}, {"max_pending_sends": 5}], ids=["default", "options"])
@pytest.mark.parametrize(
    ("family", "kind"),
    [
        (socket.AF_INET, socket.SOCK_STREAM),
        (socket.AF_INET6, socket.SOCK_STREAM),
        (socket.AF_UNIX, socket.SOCK_STREAM),
        (socket.AF_UNIX, socket.SOCK_SEQPACKET),
    ],
)
async def test_a_connection_socket_is_nonblocking_with_one_system_call_less(
    monkeypatch: pytest.MonkeyPatch, family: int, kind: int, options: dict[str, Any]
) -> None:
    """Issue 11 (a connection per request): the compiled build's accept makes the connection
    non-blocking itself (accept4's SOCK_NONBLOCK), so a server's transport with the default
    options does not call ``setblocking(False)`` (an ioctl) on it again. Whichever way it went,
    the transport's socket is non-blocking, its timeout 0 and its ``type`` the listener's,
    without the flag; with options, or without the C accept (plain-Python build), the transport
    sets it as before."""
    calls: list[socket.socket] = []
    real = socket.socket.setblocking

    def counting(self: socket.socket, flag: bool) -> None:
        calls.append(self)
        real(self, flag)

    monkeypatch.setattr(socket.socket, "setblocking", counting)
    registry, factory = _factory()
    with tempfile.TemporaryDirectory() as tmp:
        if family == socket.AF_UNIX:
            path = os.path.join(tmp, "s")
            listener = socket.socket(family, kind)
            listener.bind(path)
            server = await wsasend.create_server(factory, sock=listener, **options)
            client = socket.socket(family, kind)
            client.connect(path)
        else:
            host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
            server = await wsasend.create_server(factory, host, 0, family=family, **options)
            client = await _client(server.sockets[0].getsockname()[1], family)
        try:
            await until(lambda: len(registry) == 1)
            transport = registry[0].transport
            assert transport is not None
            sock = transport.get_extra_info("socket")
            assert sock.gettimeout() == 0.0
            assert not os.get_blocking(sock.fileno())
            assert sock.type == kind and sock.family == family
            c_accept = wsasend._server._IOV_ACCEPT is not None
            assert (sock in calls) is (bool(options) or not c_accept)
            # It works as a non-blocking connection: a reply, then the peer's bytes.
            assert await transport.send([b"hel", b"lo"]) == 5
            client.settimeout(GUARD)
            assert client.recv(100) == b"hello"
            client.sendall(b"ping")
            await registry[0].wait_data(4)
        finally:
            client.close()
            server.close()
            await asyncio.wait_for(server.wait_closed(), GUARD)
