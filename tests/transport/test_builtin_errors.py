"""Pythonic errors (SPEC S3.2, issue 12 section 4): asyncio code's own ``except`` clauses catch ours.

Each WSAError is also the builtin exception asyncio code catches for its cause, so a program
written for asyncio's transports and streams handles a wsasend failure unchanged, while
``except WSAError`` / ``except OSError`` and ``.winerror``/``.errno``/``.bytes_sent`` keep
working. Real sockets, both loops; the per-code table itself is in tests/core/test_errors.py.
"""

from __future__ import annotations

import asyncio
import errno
import select
import socket
import struct
import threading
from collections.abc import Callable

import pytest

import wsasend
from tests.helpers import fill_socket, pattern, tcp_pair
from tests.transport.util import GUARD, drain_peer, wrap
from wsasend import WSAError, WSAErrorCode, closesocket, wsa_send, wsa_send_sync


def _reset(sock: socket.socket) -> None:
    """Close ``sock`` so that the kernel sends RST (SO_LINGER 0), as a crashed peer does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _is_reset(exc: BaseException) -> None:
    """Caught as ConnectionResetError, and still the package's WSAError with its fields."""
    assert isinstance(exc, ConnectionResetError) and isinstance(exc, WSAError) and isinstance(exc, OSError)
    assert exc.winerror is WSAErrorCode.WSAECONNRESET
    assert exc.errno is not None, "the kernel's errno is kept"


async def _stream_pair() -> tuple[asyncio.StreamReader, asyncio.StreamWriter, socket.socket]:
    server_sock, peer = tcp_pair()
    reader = asyncio.StreamReader()
    protocol = asyncio.StreamReaderProtocol(reader)
    transport, _ = await wsasend.connect_accepted_socket(lambda: protocol, server_sock)
    writer = asyncio.StreamWriter(transport, protocol, reader, asyncio.get_running_loop())
    return reader, writer, peer


async def _until_closing(writer: asyncio.StreamWriter) -> None:
    async def poll() -> None:
        while not writer.transport.is_closing():
            await asyncio.sleep(0.001)

    await asyncio.wait_for(poll(), GUARD)


async def test_except_ConnectionResetError_catches_a_reset_from_StreamReader_read() -> None:
    reader, writer, peer = await _stream_pair()
    peer.send(b"hello")
    assert await asyncio.wait_for(reader.readexactly(5), GUARD) == b"hello"
    # The reset comes after the data was read. (Data and reset arriving together is another
    # matter on uvloop: it calls a reader once more on POLLERR, then drops it.)
    _reset(peer)
    caught = None
    try:
        while await asyncio.wait_for(reader.read(100), GUARD):
            pass
    except ConnectionResetError as exc:
        caught = exc
    assert caught is not None, "the reset was not raised"
    _is_reset(caught)
    writer.close()
    with pytest.raises(ConnectionResetError):
        await writer.wait_closed()


async def test_except_ConnectionResetError_catches_a_reset_from_StreamWriter_drain() -> None:
    reader, writer, peer = await _stream_pair()
    _reset(peer)
    await _until_closing(writer)  # the transport saw the reset on its read side
    with pytest.raises(ConnectionResetError) as info:
        writer.write(b"after the reset")
        await asyncio.wait_for(writer.drain(), GUARD)
    _is_reset(info.value)
    del reader


async def test_except_ConnectionResetError_catches_a_reset_from_wait_closed() -> None:
    _reader, writer, peer = await _stream_pair()
    _reset(peer)
    await _until_closing(writer)
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), GUARD)
    except ConnectionResetError as exc:
        _is_reset(exc)
    else:
        pytest.fail("wait_closed() did not raise the reset")


async def test_except_ConnectionResetError_catches_a_reset_from_await_ov() -> None:
    ours, peer = tcp_pair(bufsize=65536)
    with ours:
        fill_socket(ours)
        ov = wsa_send(ours, [pattern(1 << 20)])
        assert ov.pending
        _reset(peer)
        try:
            await asyncio.wait_for(ov, GUARD)
        except ConnectionResetError as exc:
            _is_reset(exc)
            assert isinstance(exc, WSAError)  # as _is_reset checked; narrows it for the fields
            assert exc is ov.exception and exc.bytes_sent == ov.transferred
        else:
            pytest.fail("the pending send did not fail")
        # Caught the other way too: the one class to catch, and OSError.
        with pytest.raises(WSAError):
            ov.result()
        with pytest.raises(OSError):
            ov.result()


async def test_except_ConnectionAbortedError_catches_an_abort_from_await_ov() -> None:
    ours, peer = socket.socketpair()
    with peer:
        fill_socket(ours)
        ov = wsa_send(ours, [b"z" * 100_000])
        closesocket(ours)
        with pytest.raises(ConnectionAbortedError) as info:
            await asyncio.wait_for(ov, GUARD)
        assert isinstance(info.value, WSAError)
        assert info.value.winerror is WSAErrorCode.WSA_OPERATION_ABORTED and info.value.bytes_sent == 0


async def test_except_BrokenPipeError_catches_a_send_after_close() -> None:
    ours, peer = socket.socketpair()
    with peer:
        transport, proto = await wrap(ours)
        transport.close()
        with pytest.raises(BrokenPipeError) as info:
            transport.send([b"late"])
        assert isinstance(info.value, WSAError)
        assert info.value.winerror is WSAErrorCode.WSAESHUTDOWN and info.value.bytes_sent == 0
        assert await drain_peer(peer) == b""
        await proto.wait_lost()


@pytest.mark.parametrize("transport_kind", ["stock", "wsasend"])
async def test_except_BrokenPipeError_catches_a_write_after_the_peer_went_away(transport_kind: str) -> None:
    """A write after the peer closed (an AF_UNIX peer: EPIPE at once) ends the connection with
    what asyncio's and uvloop's transports give: a BrokenPipeError. Ours is WSAECONNRESET (the
    Winsock code, S3.2) and was only a ConnectionResetError: ``except BrokenPipeError`` written
    for asyncio missed it (adversarial pass). Now it is both, errno EPIPE kept."""
    loop = asyncio.get_running_loop()
    ours, peer = socket.socketpair()
    lost: asyncio.Future[BaseException | None] = loop.create_future()

    class Protocol(asyncio.Protocol):
        def connection_lost(self, exc: BaseException | None) -> None:
            lost.set_result(exc)

    if transport_kind == "stock":
        transport, _ = await loop.connect_accepted_socket(Protocol, ours)
    else:
        transport, _ = await wsasend.connect_accepted_socket(Protocol, ours)
    peer.close()
    transport.write(b"after the peer went away")
    exc = await asyncio.wait_for(lost, GUARD)
    assert isinstance(exc, BrokenPipeError) and exc.errno == errno.EPIPE, repr(exc)
    if transport_kind == "wsasend":
        assert isinstance(exc, WSAError) and isinstance(exc, ConnectionResetError)
        assert exc.winerror is WSAErrorCode.WSAECONNRESET and exc.bytes_sent == 0


def test_except_BlockingIOError_and_TimeoutError_catch_sync_sends() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        fill_socket(a)
        with pytest.raises(BlockingIOError) as info:
            wsa_send_sync(a, [b"full"])
        assert isinstance(info.value, WSAError)
        assert info.value.winerror is WSAErrorCode.WSAEWOULDBLOCK and info.value.bytes_sent == 0
        a.settimeout(0.05)
        with pytest.raises(TimeoutError) as info2:
            wsa_send_sync(a, [b"still full"])
        assert isinstance(info2.value, WSAError)
        assert info2.value.winerror is WSAErrorCode.WSAETIMEDOUT and info2.value.bytes_sent == 0


def test_except_InterruptedError_catches_a_send_closed_under_it() -> None:
    a, b = socket.socketpair()
    with b:
        caught: list[BaseException] = []

        def send() -> None:
            try:
                wsa_send_sync(a, [b"w" * (32 << 20)])  # far more than the buffers hold: it blocks
            except BaseException as exc:
                caught.append(exc)

        thread = threading.Thread(target=send)
        thread.start()
        select.select([b], [], [], GUARD)  # the send has started (and holds the socket) ...
        closesocket(a)  # ... and is blocked: closing it wakes it (S3.4 WSAEINTR)
        thread.join(GUARD)
        [err] = caught
        assert isinstance(err, InterruptedError) and isinstance(err, WSAError)
        assert err.winerror is WSAErrorCode.WSAEINTR and err.bytes_sent > 0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: wsa_send_sync(s, "text"), "buffers must be a bytes-like object or a sequence of them, not 'str'"),
        (lambda s: wsa_send_sync(s, [b"ok", "text"]), "buffer 1 must be a bytes-like object, not 'str'"),
        (lambda s: wsa_send_sync(s, [b"ok"], "1"), "flags must be an int, not 'str'"),  # type: ignore[arg-type]
    ],
)
def test_wrong_python_type_is_also_a_TypeError_with_the_reason_first(
    call: Callable[[socket.socket], object], message: str
) -> None:
    a, b = socket.socketpair()
    with a, b:
        with pytest.raises(TypeError) as info:
            call(a)
        err = info.value
        assert isinstance(err, WSAError) and err.winerror in (WSAErrorCode.WSAEFAULT, WSAErrorCode.WSAEINVAL)
        assert str(err) == f"[{err.winerror.name} {int(err.winerror)}] {message}"
        b.setblocking(False)
        with pytest.raises(BlockingIOError):
            b.recv(10)  # nothing was sent


async def test_wsa_send_wrong_types_are_TypeErrors() -> None:
    a, b = socket.socketpair()
    with a, b:
        with pytest.raises(TypeError):
            wsa_send(a, ["text"])
        with pytest.raises(TypeError):
            wsa_send(a, [b"ok"], "1")
        # A non-contiguous buffer is a WSAEFAULT but not a type error.
        with pytest.raises(WSAError) as info:
            wsa_send(a, [memoryview(b"abcdef")[::2]])
        assert info.value.winerror is WSAErrorCode.WSAEFAULT and not isinstance(info.value, TypeError)


async def test_writelines_of_a_str_reads_like_asyncios_TypeError() -> None:
    ours, peer = socket.socketpair()
    with peer:
        transport, proto = await wrap(ours)
        with pytest.raises(TypeError) as info:
            transport.writelines(["a"])  # type: ignore[list-item]
        assert str(info.value) == "data argument must be a bytes-like object, not 'str'"
        with pytest.raises(TypeError) as info2:
            transport.write("a")  # type: ignore[arg-type]
        assert str(info2.value) == str(info.value), "write() and writelines() say the same"
        transport.close()
        assert await drain_peer(peer) == b""
        await proto.wait_lost()


def test_wsa_send_without_a_running_loop_says_what_to_do() -> None:
    a, b = socket.socketpair()
    with a, b:
        for where in ("main", "thread"):
            caught: list[BaseException] = []

            def call(caught: list[BaseException] = caught) -> None:
                try:
                    wsa_send(a, [b"x"])
                except BaseException as exc:
                    caught.append(exc)

            if where == "main":
                call()
            else:
                thread = threading.Thread(target=call)
                thread.start()
                thread.join(GUARD)
            [err] = caught
            assert type(err) is RuntimeError
            text = str(err)
            for hint in ("running event loop", "call_soon_threadsafe", "wsa_send_sync", "winsock.WSASend"):
                assert hint in text, (where, hint, text)
        b.setblocking(False)
        with pytest.raises(BlockingIOError):
            b.recv(10)  # nothing was sent
