"""WSATransport's asyncio contract on both loops (SPEC S6, S7; issue 4's acceptance points).

Callback grammar, write after close, write_eof deferral, close vs abort, peer reset,
BufferedProtocol, protocol errors, extra info, set_protocol, reading pause, repr, ResourceWarning.
Real sockets throughout; the Recorder protocol checks the grammar on every callback.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import struct
import weakref
from collections.abc import Callable
from typing import Any

import pytest

import wsasend
from tests.helpers import SMALL_BUF, pattern, tcp_pair
from wsasend import CompletedSend, WSAError, WSAErrorCode, WSATransport
from wsasend._transport import TransportState

from .util import GUARD, Recorder, drain_peer, fill, until, wrap


def _assert_completed_before_lost(proto: Recorder) -> None:
    kinds = proto.kinds()
    assert kinds.count("lost") == 1 and kinds[-1] == "lost"


# -- grammar ------------------------------------------------------------------------------------


async def test_WSATransport_grammar_peer_eof_closes() -> None:
    ours, peer = tcp_pair()
    with peer:
        transport, proto = await wrap(ours)
        assert proto.kinds() == ["made"]  # create/connect returns after connection_made ran
        assert transport.is_reading() and not transport.is_closing()
        peer.sendall(b"abc")
        await proto.wait_data(3)
        peer.sendall(b"defg")
        peer.shutdown(socket.SHUT_WR)
        # eof_received returns None: the transport closes itself and reports connection_lost(None).
        assert await proto.wait_lost() is None
        assert bytes(proto.data) == b"abcdefg"
        kinds = proto.kinds()
        assert kinds[0] == "made" and set(kinds[1:-2]) == {"data"} and kinds[-2:] == ["eof", "lost"]
        assert transport.is_closing() and transport.state is TransportState.CLOSED
        assert await drain_peer(peer) == b""
        proto.check()


async def test_WSATransport_grammar_eof_keep_open() -> None:
    ours, peer = tcp_pair()
    with peer:
        transport, proto = await wrap(ours, lambda: Recorder(keep_open=True))
        peer.shutdown(socket.SHUT_WR)
        await asyncio.wait_for(proto.eof, GUARD)
        # Kept open: no more reading, but writing goes on until we close.
        assert not transport.is_closing() and not transport.is_reading()
        transport.resume_reading()  # a no-op after EOF: no second eof_received
        transport.write(b"still here")
        transport.close()
        assert await drain_peer(peer) == b"still here"
        assert await proto.wait_lost() is None
        assert proto.kinds() == ["made", "eof", "completed", "lost"]
        proto.check()


async def test_WSATransport_connection_lost_once_whatever_the_calls() -> None:
    ours, peer = socket.socketpair()
    with peer:
        transport, proto = await wrap(ours)
        transport.write(pattern(1 << 20))  # pending on a socketpair nobody reads
        transport.write_eof()
        transport.close()
        transport.close()
        transport.write_eof()
        transport.abort()
        transport.abort()
        transport.close()
        assert await proto.wait_lost() is None
        await asyncio.sleep(0.01)
        assert proto.kinds().count("lost") == 1
        proto.check()


async def test_WSATransport_connection_made_raising(loop_errors: list[dict[str, Any]]) -> None:
    class Broken(Recorder):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            raise ValueError("boom")

    ours, peer = socket.socketpair()
    with peer:
        transport, proto = await wrap(ours, Broken)
        exc = await proto.wait_lost()
        assert isinstance(exc, ValueError)
        assert [c["exception"] for c in loop_errors] == [exc]
        assert "connection_made" in loop_errors[0]["message"]
        assert transport.is_closing()
        proto.check()


async def test_WSATransport_protocol_errors_go_to_the_handler(loop_errors: list[dict[str, Any]]) -> None:
    class Broken(Recorder):
        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            raise KeyError("bad data")

    ours, peer = socket.socketpair()
    with peer:
        transport, proto = await wrap(ours, Broken)
        big = transport.send(pattern(2 << 20))  # still pending when the protocol fails
        peer.sendall(b"x")
        exc = await proto.wait_lost()
        assert isinstance(exc, KeyError)
        assert len(loop_errors) == 1 and loop_errors[0]["exception"] is exc
        assert loop_errors[0]["transport"] is transport
        # The failure aborted the pending send, with its exact count (S6.1).
        with pytest.raises(WSAError) as info:
            await big
        assert info.value.winerror == WSAErrorCode.WSA_OPERATION_ABORTED
        received = await drain_peer(peer)
        assert big.transferred == len(received) < big.nbytes
        assert received == pattern(2 << 20)[: big.transferred]
        proto.check()


async def test_WSATransport_send_completed_errors_do_not_break_the_stream(loop_errors: list[dict[str, Any]]) -> None:
    class Picky(Recorder):
        def send_completed(self, overlapped: CompletedSend) -> None:
            super().send_completed(overlapped)
            if overlapped.nbytes == 2:
                raise RuntimeError("I dislike two")

    ours, peer = socket.socketpair()
    with peer:
        transport, proto = await wrap(ours, Picky)
        for n in (1, 2, 3):
            transport.write(b"x" * n)
        transport.close()
        assert await drain_peer(peer) == b"x" * 6
        assert await proto.wait_lost() is None
        assert [ov.nbytes for ov in proto.completed] == [1, 2, 3]
        assert [str(c["exception"]) for c in loop_errors] == ["I dislike two"]
        proto.check()


async def test_a_WSAProtocol_subclass_may_call_the_base_send_completed() -> None:
    """S7.2, S10: cooperative protocols call ``super().send_completed(ov)``. The compiled build
    raised ``TypeError: wsasend._transport.WSAProtocol object expected`` there (a class mypyc
    kept non-native still had compiled methods that refuse a subclass's ``self``); the loop's
    exception handler got it and the subclass's own code never ran (adversarial pass)."""

    class Counting(wsasend.WSAProtocol):
        def __init__(self) -> None:
            self.sizes: list[int] = []

        def send_completed(self, overlapped: CompletedSend) -> None:
            super().send_completed(overlapped)
            self.sizes.append(overlapped.transferred)

    ours, peer = socket.socketpair()
    with peer:
        transport, proto = await wsasend.connect_accepted_socket(Counting, ours)
        transport.send([b"abc"])
        transport.write(b"de")
        await until(lambda: len(proto.sizes) == 2)
        assert proto.sizes == [3, 2]
        transport.close()
        assert await drain_peer(peer) == b"abcde"


async def test_WSATransport_connection_lost_raising(loop_errors: list[dict[str, Any]]) -> None:
    class Broken(Recorder):
        def connection_lost(self, exc: BaseException | None) -> None:
            super().connection_lost(exc)
            raise OSError("in connection_lost")

    ours, peer = socket.socketpair()
    with peer:
        transport, proto = await wrap(ours, Broken)
        transport.close()
        await proto.wait_lost()
        await until(lambda: ours.fileno() == -1)
        assert [str(c["exception"]) for c in loop_errors] == ["in connection_lost"]


# -- sending after close, write_eof ---------------------------------------------------------------


async def test_WSATransport_write_after_close(caplog: pytest.LogCaptureFixture) -> None:
    ours, peer = tcp_pair()
    with peer:
        transport, proto = await wrap(ours)
        transport.write(b"before")
        transport.close()
        assert transport.is_closing()
        # S6.2: a new send() fails WSAESHUTDOWN at once and nothing is sent. write() and
        # writelines() are asyncio's API and behave as asyncio's transports do (S9.1): the data
        # is dropped silently, and a warning is logged once such writes pile up.
        with pytest.raises(WSAError) as info:
            transport.send(b"after")
        assert info.value.winerror == WSAErrorCode.WSAESHUTDOWN
        transport.write(b"after")
        transport.writelines([b"after"])
        assert await proto.wait_lost() is None
        # Still refused (send) or dropped (write) once the transport is fully closed.
        with pytest.raises(WSAError) as info:
            transport.send(b"later")
        assert info.value.winerror == WSAErrorCode.WSAESHUTDOWN
        with caplog.at_level(logging.WARNING, logger="wsasend"):
            for _ in range(5):
                transport.write(b"later")
        assert [r.levelno for r in caplog.records] == [logging.WARNING]
        assert await drain_peer(peer) == b"before"
        proto.check()


async def test_WSATransport_write_after_close_queues_while_sends_are_pending() -> None:
    """asyncio's transports queue a write() made after close() while their buffer still drains
    (asyncio's TLS layer relies on it: its close_notify is written then); ours too (S9.1).

    Before the fix the late write raised WSAESHUTDOWN, and CPython's
    test_ssl.test_remote_shutdown_receives_trailing_data hung (the close_notify was lost): 1/1.
    """
    ours, peer = socket.socketpair()
    with peer:
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUF)
        transport, proto = await wrap(ours)
        payload = pattern(4 << 20)
        transport.write(payload)
        assert transport.get_write_buffer_size() > 0  # still pending: the peer has not read
        transport.close()
        transport.write(b"tail")  # queued behind the payload, as asyncio queues it
        transport.writelines([b"-", b"end"])
        with pytest.raises(WSAError) as info:
            transport.send(b"never")  # our own send() keeps S6.2's refusal
        assert info.value.winerror == WSAErrorCode.WSAESHUTDOWN
        assert await drain_peer(peer) == payload + b"tail-end"
        assert await proto.wait_lost() is None
        proto.check()


async def test_WSATransport_write_eof_waits_for_queued_sends() -> None:
    ours, peer = socket.socketpair()
    with peer:
        transport, proto = await wrap(ours)
        assert transport.can_write_eof()
        payload = pattern(3 << 20)
        ovs = [transport.send(memoryview(payload)[i << 20 : (i + 1) << 20]) for i in range(3)]
        assert all(ov.pending for ov in ovs)
        transport.write_eof()
        assert transport.state is TransportState.EOF_PENDING and not transport.is_closing()
        # New sends fail at once (S6.2) ...
        with pytest.raises(WSAError) as info:
            transport.send(b"late")
        assert info.value.winerror == WSAErrorCode.WSAESHUTDOWN
        for method, data in ((transport.write, b"late"), (transport.writelines, [b"la", b"te"])):
            with pytest.raises(WSAError) as info:
                method(data)  # type: ignore[arg-type]
            assert info.value.winerror == WSAErrorCode.WSAESHUTDOWN
            # ... and asyncio's own RuntimeError, for code written for its transports (S9.1).
            assert isinstance(info.value, RuntimeError)
        with pytest.raises(WSAError) as info:
            wsasend.wsa_send(ours, b"late")  # the same engine refuses wsa_send too
        assert info.value.winerror == WSAErrorCode.WSAESHUTDOWN
        # ... but the shutdown waits: the peer reads every queued byte, THEN its EOF.
        assert await drain_peer(peer) == payload
        assert [await ov for ov in ovs] == [1 << 20] * 3
        await until(lambda: transport.state is TransportState.WRITE_SHUT)
        # Reading goes on after our EOF.
        peer.sendall(b"reply")
        assert await proto.wait_data(5) == b"reply"
        transport.close()
        # Still asyncio's RuntimeError after the close (it was dropped silently; pass A).
        with pytest.raises(RuntimeError):
            transport.write(b"after write_eof and close")
        assert await proto.wait_lost() is None
        with pytest.raises(RuntimeError):
            transport.writelines([b"after connection_lost"])
        assert proto.completed_overlapped() == ovs
        proto.check()


async def test_WSATransport_write_eof_tcp_marks_shutdown() -> None:
    ours, peer = tcp_pair()
    with peer:
        transport, proto = await wrap(ours)
        transport.write(b"bye")
        transport.write_eof()
        assert await drain_peer(peer) == b"bye"
        await until(lambda: transport.state is TransportState.WRITE_SHUT)
        assert wsasend._sockutil.is_marked_shutdown(ours)  # S3.3: later EPIPE reads WSAESHUTDOWN
        transport.close()
        assert await proto.wait_lost() is None


# -- close vs abort, reset ------------------------------------------------------------------------


async def test_WSATransport_close_flushes_then_reports() -> None:
    ours, peer = tcp_pair(bufsize=SMALL_BUF)
    with peer:
        transport, proto = await wrap(ours)
        chunks = [pattern(300_000, i) for i in range(4)]
        ovs = [transport.send(c) for c in chunks]
        transport.close()
        assert not transport.is_reading()
        data = await drain_peer(peer)
        assert data == b"".join(chunks)
        assert await proto.wait_lost() is None
        assert [ov.transferred for ov in ovs] == [300_000] * 4 and all(ov.error == 0 for ov in ovs)
        # Every send_completed came before connection_lost.
        assert [k for k in proto.kinds() if k not in ("pause", "resume")] == ["made"] + ["completed"] * 4 + ["lost"]
        proto.check()


@pytest.mark.parametrize("after_close", [False, True])
async def test_WSATransport_abort_fails_pending_with_exact_counts(after_close: bool) -> None:
    ours, peer = socket.socketpair()
    with peer:
        transport, proto = await wrap(ours)
        prefill = fill(ours)
        chunks = [pattern(200_000, i) for i in range(5)]
        routine_calls: list[tuple[int, int]] = []
        ovs = [transport.send(c, completion_routine=lambda e, n, ov, f: routine_calls.append((e, n))) for c in chunks]
        # Let the kernel take part of the queue (the head is partly consumed).
        peer.setblocking(False)
        got = bytearray()
        loop = asyncio.get_running_loop()
        while len(got) < prefill + 250_000:
            got += await asyncio.wait_for(loop.sock_recv(peer, 65536), GUARD)
        await until(lambda: transport.get_write_buffer_size() < 1_000_000)
        if after_close:
            transport.close()
        transport.abort()
        assert transport.is_closing()
        assert await proto.wait_lost() is None
        got += await drain_peer(peer)
        # S6.1: each pending send completed WSA_OPERATION_ABORTED with exactly what the kernel took.
        assert sum(ov.transferred for ov in ovs) == len(got) - prefill
        assert bytes(got[prefill:]) == b"".join(chunks)[: len(got) - prefill]
        aborted = [ov for ov in ovs if ov.error]
        assert aborted and all(ov.error == WSAErrorCode.WSA_OPERATION_ABORTED for ov in aborted)
        assert all(ov.transferred == ov.nbytes for ov in ovs if not ov.error)
        assert routine_calls == [(ov.error, ov.transferred) for ov in ovs]
        assert proto.completed_overlapped() == ovs
        _assert_completed_before_lost(proto)
        proto.check()


@pytest.mark.parametrize("reading", [True, False])
async def test_WSATransport_peer_reset_fails_every_pending_send(reading: bool) -> None:
    ours, peer = tcp_pair(bufsize=SMALL_BUF)
    transport, proto = await wrap(ours)
    if not reading:
        transport.pause_reading()  # then the send path is the one that meets the reset
    chunks = [pattern(400_000, i) for i in range(6)]
    ovs = [transport.send(c) for c in chunks]
    await until(lambda: transport.get_write_buffer_size() < 2_300_000)  # some bytes went out
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()  # RST
    exc = await proto.wait_lost()
    # S6.3: connection_lost exactly once, with the WSAError; every pending send failed first.
    assert isinstance(exc, WSAError) and exc.winerror == WSAErrorCode.WSAECONNRESET
    assert proto.completed_overlapped() == ovs
    _assert_completed_before_lost(proto)
    failed = [ov for ov in ovs if ov.error]
    assert failed and all(ov.error == WSAErrorCode.WSAECONNRESET for ov in failed)
    first = ovs.index(failed[0])
    assert all(ov.error == 0 and ov.transferred == ov.nbytes for ov in ovs[:first])
    assert 0 <= failed[0].transferred < failed[0].nbytes
    assert all(ov.transferred == 0 for ov in failed[1:])  # only the head can be partly consumed
    for ov in failed:
        assert isinstance(ov.exception, WSAError) and ov.exception.bytes_sent == ov.transferred
    # Afterwards: send() says what happened; write() is dropped as asyncio drops it.
    with pytest.raises(WSAError) as info:
        transport.send(b"x")
    assert info.value.winerror == WSAErrorCode.WSAECONNRESET
    transport.write(b"x")
    proto.check()


# -- reading ----------------------------------------------------------------------------------------


class Buffered(asyncio.BufferedProtocol):
    def __init__(self, size: int) -> None:
        self.buf = bytearray(size)
        self.data = bytearray()
        self.calls: list[str] = []
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.calls.append("made")

    def get_buffer(self, sizehint: int) -> memoryview:
        return memoryview(self.buf)

    def buffer_updated(self, nbytes: int) -> None:
        self.data += self.buf[:nbytes]

    def eof_received(self) -> None:
        self.calls.append("eof")

    def connection_lost(self, exc: BaseException | None) -> None:
        self.calls.append("lost")
        self.lost.set_result(exc)


@pytest.mark.parametrize("kind", ["stream", "seqpacket"])
async def test_WSATransport_buffered_protocol(kind: str) -> None:
    if kind == "stream":
        ours, peer = tcp_pair(bufsize=SMALL_BUF)
        payload = pattern(1_000_000)
    else:
        ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        payload = b"".join(pattern(700, i) for i in range(20))
    with peer:
        _, proto = await wrap(ours, lambda: Buffered(1000 if kind == "stream" else 4096))
        assert isinstance(proto, Buffered)
        if kind == "stream":
            await asyncio.get_running_loop().sock_sendall(peer, payload)
        else:
            for i in range(20):
                peer.send(payload[i * 700 : (i + 1) * 700])
        peer.shutdown(socket.SHUT_WR)
        assert await asyncio.wait_for(proto.lost, GUARD) is None
        assert proto.data == payload
        assert proto.calls == ["made", "eof", "lost"]


async def test_WSATransport_buffered_protocol_bad_buffer(loop_errors: list[dict[str, Any]]) -> None:
    class Empty(Buffered):
        def get_buffer(self, sizehint: int) -> memoryview:
            return memoryview(b"")

    ours, peer = socket.socketpair()
    with peer:
        _, proto = await wrap(ours, lambda: Empty(0))
        peer.sendall(b"data")
        exc = await asyncio.wait_for(proto.lost, GUARD)
        assert isinstance(exc, RuntimeError) and "empty buffer" in str(exc)
        assert [c["exception"] for c in loop_errors] == [exc]


async def test_WSATransport_pause_and_resume_reading() -> None:
    ours, peer = socket.socketpair()
    with peer:
        transport, proto = await wrap(ours)
        transport.pause_reading()
        transport.pause_reading()  # no-op
        assert not transport.is_reading()
        peer.sendall(b"held")
        for _ in range(20):
            await asyncio.sleep(0)
        assert proto.data == b""  # nothing is delivered while paused
        transport.resume_reading()
        transport.resume_reading()  # no-op
        assert transport.is_reading()
        assert await proto.wait_data(4) == b"held"
        transport.close()
        assert not transport.is_reading()
        transport.resume_reading()  # no-op once closing
        assert not transport.is_reading()
        await proto.wait_lost()
        proto.check()


async def test_a_write_after_write_eof_in_a_callback_is_reported_as_asyncio_reports_it(
    loop_errors: list[dict[str, Any]],
) -> None:
    """S9.1: a protocol that writes after its own ``write_eof()`` has a bug. asyncio's and
    uvloop's transports raise RuntimeError there, report it to the loop's exception handler and
    end the connection with it; ours raised a plain WSAESHUTDOWN (a BrokenPipeError), which
    read as the peer's doing: no report, and ``connection_lost`` got a broken pipe (note 28)."""
    ours, peer = socket.socketpair()
    lost: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    class EchoThenEOF(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            assert isinstance(self.transport, asyncio.WriteTransport)
            self.transport.write(data)
            self.transport.write_eof()
            self.transport.write(b"one more")  # the bug

        def connection_lost(self, exc: Exception | None) -> None:
            lost.set_result(exc)

    with peer:
        await wrap(ours, EchoThenEOF)
        peer.sendall(b"ping")
        async with asyncio.timeout(GUARD):
            exc = await lost
        assert isinstance(exc, RuntimeError) and isinstance(exc, WSAError)
        assert exc.winerror == WSAErrorCode.WSAESHUTDOWN
        assert [call["exception"] for call in loop_errors] == [exc]
        assert "data_received" in loop_errors[0]["message"]


async def test_WSATransport_set_protocol() -> None:
    ours, peer = socket.socketpair()
    with peer:
        transport, first = await wrap(ours)
        second = Recorder()
        second.connection_made(transport)
        transport.set_protocol(second)
        assert transport.get_protocol() is second
        peer.sendall(b"to second")
        await second.wait_data(9)
        transport.write(b"w")
        transport.close()
        await second.wait_lost()
        assert first.data == b"" and first.completed == [] and not first.lost.done()
        assert [ov.nbytes for ov in second.completed] == [1]
        # As asyncio's and uvloop's: no protocol once connection_lost was called (S9.1).
        assert transport.get_protocol() is None


# -- the rest of the Transport surface ---------------------------------------------------------------


async def test_WSATransport_extra_info_and_repr() -> None:
    ours, peer = tcp_pair(socket.AF_INET6)
    with peer:
        transport, proto = await wrap(ours)
        assert transport.get_extra_info("socket") is ours
        assert transport.get_extra_info("sockname") == ours.getsockname()
        assert transport.get_extra_info("peername") == peer.getsockname()
        assert transport.get_extra_info("nope", 42) == 42
        fill(ours)
        transport.write(b"a" * 1000)
        transport.writelines([b"b" * 500, b"c" * 500])
        text = repr(transport)
        assert f"fd={ours.fileno()}" in text and "state=OPEN" in text and "read=polling" in text
        assert "sends=2" in text and "bufsize=2000" in text
        transport.abort()
        await proto.wait_lost()
        assert "state=CLOSED" in repr(transport)


async def test_WSATransport_write_type_errors() -> None:
    ours, peer = socket.socketpair()
    with peer:
        transport, proto = await wrap(ours)
        for bad in ("text", [b"a list"], 42, memoryview(b"abcdef")[::2]):
            with pytest.raises(TypeError):
                transport.write(bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            transport.writelines([b"ok", "text"])  # type: ignore[list-item]
        transport.write(b"")
        transport.writelines([])
        transport.close()
        assert await drain_peer(peer) == b""
        await proto.wait_lost()
        assert proto.completed == []  # empty writes post nothing, as asyncio's do


async def test_WSATransport_needs_a_connected_socket_of_its_own() -> None:
    with socket.socket() as unconnected, pytest.raises(WSAError) as info:
        await wrap(unconnected)
    assert info.value.winerror == WSAErrorCode.WSAENOTCONN
    closed = socket.socket()
    closed.close()
    with pytest.raises(WSAError) as info:
        await wrap(closed)
    assert info.value.winerror == WSAErrorCode.WSAENOTSOCK
    ours, peer = socket.socketpair()
    with peer:
        transport, proto = await wrap(ours)
        with pytest.raises(RuntimeError, match="already used"):
            WSATransport(ours, Recorder())
        transport.close()
        await proto.wait_lost()


async def test_WSATransport_dropped_while_paused_for_writing_lives_until_its_sends_end() -> None:
    """As above with the protocol paused for writing, a send queued: the engine's hook for the
    low-water mark held the transport strongly, so it was never collected. While its sends
    wait for the socket it lives, as asyncio's (its writer registration holds it; collected
    then, the socket was closed under the sends); once they end (here the peer goes, the
    send fails and the transport ends itself) nothing holds it any more."""
    ours, peer = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    transport, proto = await wrap(ours)
    transport.pause_reading()
    transport.write(b"x" * (8 << 20))
    assert transport.get_write_buffer_size() > 64 * 1024
    assert proto.paused  # (the case this test is about)
    await asyncio.sleep(0)
    ref = weakref.ref(transport)
    lost = proto.lost
    del transport, proto
    gc.collect()
    assert ref() is not None and ours.fileno() != -1  # its sends still wait
    peer.close()
    assert isinstance(await asyncio.wait_for(lost, GUARD), ConnectionError)

    def collected() -> bool:
        gc.collect()
        return ref() is None

    await until(collected)
    assert ours.fileno() == -1


async def test_WSATransport_unclosed_warns() -> None:
    ours, peer = socket.socketpair()
    with peer:
        transport, proto = await wrap(ours)
        transport.pause_reading()  # the loop holds no callback of ours any more
        await asyncio.sleep(0)
        del transport, proto
        with pytest.warns(ResourceWarning, match="unclosed transport <WSATransport"):
            gc.collect()
        assert ours.fileno() == -1  # the descriptor was closed with it
        peer.setblocking(False)
        assert await asyncio.wait_for(asyncio.get_running_loop().sock_recv(peer, 10), GUARD) == b""


def _reset_protocol(
    kind: str, got: Callable[[bytes | bytearray], object], lost: asyncio.Future[BaseException | None]
) -> Callable[[], asyncio.BaseProtocol]:
    """A plain or a buffered (16 KiB buffer) protocol class giving its data to ``got`` and its
    ``connection_lost`` argument to ``lost``."""

    class Plain(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            got(data)

        def connection_lost(self, exc: BaseException | None) -> None:
            lost.set_result(exc)

    class Buffered(asyncio.BufferedProtocol):
        def __init__(self) -> None:
            self.buf = bytearray(16384)

        def get_buffer(self, sizehint: int) -> bytearray:
            return self.buf

        def buffer_updated(self, nbytes: int) -> None:
            got(self.buf[:nbytes])

        def connection_lost(self, exc: BaseException | None) -> None:
            lost.set_result(exc)

    return Plain if kind == "plain" else Buffered


async def _data_then_reset(transport: asyncio.Transport, theirs: socket.socket, payload: bytes) -> None:
    """With reading paused: the peer sends ``payload`` and closes without reading our
    greeting (Linux resets the connection); then reading resumes."""
    transport.pause_reading()
    transport.write(b"a greeting the peer never reads\n")
    await until(lambda: transport.get_write_buffer_size() == 0)

    def peer() -> None:
        theirs.sendall(payload)
        theirs.close()  # our greeting unread: a reset

    await asyncio.get_running_loop().run_in_executor(None, peer)
    transport.resume_reading()


@pytest.mark.parametrize("protocol_kind", ["plain", "buffered"])
async def test_data_that_arrived_before_a_reset_is_all_delivered_first(protocol_kind: str) -> None:
    """S6.3, S7.2: the peer sends 100,000 bytes and closes without reading our greeting (Linux
    resets the connection), while reading is paused. On resume every byte the kernel holds is
    delivered, then ``connection_lost(WSAECONNRESET)``, as asyncio's and uvloop's transports
    do. The uvloop flavour delivered one read (64 KiB, or one ``get_buffer``) and lost the rest
    (adversarial pass, every run)."""
    ours, theirs = tcp_pair()
    payload = pattern(100_000)
    loop = asyncio.get_running_loop()
    lost: asyncio.Future[BaseException | None] = loop.create_future()
    received = bytearray()
    transport, _ = await wrap(ours, _reset_protocol(protocol_kind, received.extend, lost))
    await _data_then_reset(transport, theirs, payload)
    async with asyncio.timeout(GUARD):
        exc = await lost
    assert isinstance(exc, WSAError) and exc.winerror == WSAErrorCode.WSAECONNRESET
    assert bytes(received) == payload


@pytest.mark.parametrize("protocol_kind", ["plain", "buffered"])
async def test_a_pause_during_the_data_before_a_reset_holds_the_rest_and_the_reset(protocol_kind: str) -> None:
    """S7.2: as above, and the protocol pauses reading on the second data it gets (on uvloop,
    the first read of what the kernel held when the reset was taken). Nothing more comes, not
    even the reset, until it resumes; then the rest and the reset, as asyncio's paused
    transport (which reads nothing) gives them. The uvloop flavour's delivery of what came
    before the reset ignored the pause: the rest and the reset came while paused (stop 32).
    400,000 bytes: more than the first read takes (up to 256 KiB, as asyncio's), so the second
    data comes from what the kernel still held after the first."""
    ours, theirs = tcp_pair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)  # (the whole payload held)
    payload = pattern(400_000)
    loop = asyncio.get_running_loop()
    lost: asyncio.Future[BaseException | None] = loop.create_future()
    received = bytearray()
    holder: list[asyncio.Transport] = []
    chunks: list[int] = []

    def got(data: bytes | bytearray) -> None:
        chunks.append(len(data))
        if len(chunks) == 2:
            holder[0].pause_reading()
        received.extend(data)

    transport, _ = await wrap(ours, _reset_protocol(protocol_kind, got, lost))
    holder.append(transport)
    await _data_then_reset(transport, theirs, payload)
    await until(lambda: len(chunks) >= 2 or lost.done())
    first = len(received)
    assert len(chunks) == 2 and not transport.is_reading(), (chunks, lost)
    for _ in range(50):  # loop iterations, each of which delivered one more read before
        await asyncio.sleep(0)
    assert len(received) == first and not lost.done(), "data or the reset came while paused"
    transport.resume_reading()
    async with asyncio.timeout(GUARD):
        exc = await lost
    assert isinstance(exc, WSAError) and exc.winerror == WSAErrorCode.WSAECONNRESET
    assert bytes(received) == payload
