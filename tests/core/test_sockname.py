"""``_iovsend.sockname``: a transport's "sockname", ``getsockname()`` with a cache (issue 11).

A server's connections mostly share one local address, and formatting it cost ~2,900
instructions of every connection. The compiled build answers an AF_INET/AF_INET6 address equal,
byte for byte, to the last one of its family with the tuple made for it. It must answer exactly
what ``getsockname()`` answers, for every kind of socket, whatever was asked before, and fail
as it fails. The transport's own "sockname" is checked through a server on both loops below.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

import wsasend
from wsasend import _engine

SOCKNAME = _engine._IOV_SOCKNAME
needs_helper = pytest.mark.skipif(SOCKNAME is None, reason="plain-Python build: getsockname() itself")


def _sockname(sock: socket.socket) -> Any:
    assert SOCKNAME is not None
    return SOCKNAME(sock)


def _tcp_pair(family: int, host: str) -> tuple[socket.socket, socket.socket, socket.socket]:
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.bind((host, 0))
    listener.listen()
    client = socket.socket(family, socket.SOCK_STREAM)
    client.connect(listener.getsockname()[:2])
    server, _ = listener.accept()
    return listener, client, server


@needs_helper
@pytest.mark.parametrize(("family", "host"), [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_connections_of_one_listener_share_the_answer_and_others_get_their_own(family: int, host: str) -> None:
    one, two = _tcp_pair(family, host), _tcp_pair(family, host)
    extra = one[0].accept  # (a second connection on the first listener)
    client = socket.socket(family, socket.SOCK_STREAM)
    client.connect(one[0].getsockname()[:2])
    server2, _ = extra()
    sockets = [*one, *two, client, server2]
    try:
        # Each socket: exactly what getsockname() says, in any order of asking, twice over.
        for sock in sockets + sockets[::-1]:
            assert _sockname(sock) == sock.getsockname()
            assert type(_sockname(sock)) is tuple
        # The two connections the first listener accepted have its address: one tuple for both.
        first, second = one[2], server2
        assert first.getsockname() == second.getsockname() == one[0].getsockname()
        assert _sockname(first) is _sockname(second)
        # Another listener's connection: its own address, and the first ones' again after it.
        assert _sockname(two[2]) == two[2].getsockname() != first.getsockname()
        assert _sockname(first) == first.getsockname()
    finally:
        for sock in sockets:
            sock.close()


@needs_helper
def test_same_bytes_same_object_different_bytes_different_answer() -> None:
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with a, b:
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        got_a = _sockname(a)
        assert _sockname(a) is got_a == a.getsockname()  # asked twice: the cached tuple
        got_b = _sockname(b)
        assert got_b == b.getsockname() != got_a
        assert _sockname(a) == a.getsockname()  # the cache moved to b's address: a is made again


def _one_of_a_pair() -> socket.socket:
    a, b = socket.socketpair()
    b.close()
    return a


@needs_helper
@pytest.mark.parametrize(
    "make",
    [
        lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM),  # unbound: ''
        lambda: _one_of_a_pair(),  # unnamed
        lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM),  # unbound: ('0.0.0.0', 0)
        lambda: socket.socket(socket.AF_INET6, socket.SOCK_DGRAM),
    ],
    ids=["unix-unbound", "unix-pair", "inet-unbound", "inet6-dgram-unbound"],
)
def test_other_kinds_answer_as_getsockname(make: Any) -> None:
    sock = make()
    with sock:
        assert _sockname(sock) == sock.getsockname()
        assert _sockname(sock) == sock.getsockname()


@needs_helper
def test_an_abstract_unix_address_answers_as_getsockname(tmp_path: Any) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind("\0wsasend-sockname-" + str(id(sock)))
        assert _sockname(sock) == sock.getsockname()
        assert isinstance(_sockname(sock), bytes)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        path = str(tmp_path / "s")
        sock.bind(path)
        assert _sockname(sock) == sock.getsockname() == path


@needs_helper
def test_a_subclass_answers_with_its_own_getsockname_and_is_never_cached() -> None:
    """A subclass may answer ``getsockname()`` its own way: it gets its own answer, whatever the
    cache holds for its address, and a plain socket of the same address never gets the
    subclass's (review, stop 51: the subclass's tuple was cached under the real address)."""

    class Renamed(socket.socket):
        def getsockname(self) -> Any:
            return ("renamed", 1)

    listener, client, server = _tcp_pair(socket.AF_INET, "127.0.0.1")
    other_client = socket.create_connection(listener.getsockname())
    other_server, _ = listener.accept()
    odd = Renamed(fileno=server.detach())  # (the same local address as other_server)
    with listener, client, other_client, other_server, odd:
        assert _sockname(odd) == ("renamed", 1)
        assert _sockname(other_server) == other_server.getsockname() != ("renamed", 1)
        assert _sockname(other_server) == other_server.getsockname()  # (now from the cache)
        assert _sockname(odd) == ("renamed", 1)


@needs_helper
def test_it_fails_as_getsockname_fails() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    _sockname(sock)  # (cached for this address)
    sock.close()
    with pytest.raises(OSError) as caught:
        _sockname(sock)
    with pytest.raises(OSError) as expected:
        sock.getsockname()
    assert caught.value.errno == expected.value.errno
    with pytest.raises(TypeError):
        _sockname(3)  # type: ignore[arg-type]


async def test_a_servers_connections_report_their_own_sockname() -> None:
    """Through a server (both loops, either build): each connection's ``sockname`` extra is
    its socket's address, also after it closed; two servers' connections do not mix."""
    seen: list[tuple[Any, Any]] = []
    done = asyncio.get_running_loop().create_future()

    class Record(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            seen.append((transport.get_extra_info("sockname"), sock.getsockname()))
            transport.close()
            if len(seen) == 6 and not done.done():
                done.set_result(None)

    servers = [await wsasend.create_server(Record, host, 0) for host in ("127.0.0.1", "::1", "127.0.0.1")]
    try:
        clients = []
        for server in servers:
            address = server.sockets[0].getsockname()[:2]
            for _ in range(2):
                client = socket.socket(server.sockets[0].family, socket.SOCK_STREAM)
                client.connect(address)
                clients.append(client)
        await asyncio.wait_for(done, 30)
        assert all(reported == actual for reported, actual in seen)
        assert len({reported for reported, _ in seen}) == 3  # one address per server
        for client in clients:
            client.close()
    finally:
        for server in servers:
            server.close()
            await server.wait_closed()
