"""Issue 7, item 2 through the transport (S7): the same real faults, seen by a ``WSATransport``.

Skipped as a whole when ``wsasend`` has no ``WSATransport`` yet. Checks, beyond those of
``test_faults.py``: ``connection_lost`` is called exactly once, with the ``WSAError`` of a reset
(S6.3) or ``None`` after a graceful close (S6.2), and the transport's sends keep S6.4.
"""

from __future__ import annotations

import asyncio

import pytest

import wsasend
from wsasend import WSAError, WSAErrorCode, WSAOverlapped

from ._support import FdLedger, LedgerSocket, PeerProcess, check_exact, pattern_window, settle
from .test_faults import GUARD, _connect, _sink, _until

pytestmark = pytest.mark.skipif(not hasattr(wsasend, "WSATransport"), reason="no WSATransport in wsasend yet")


class Recorder(asyncio.Protocol):
    def __init__(self) -> None:
        self.lost: list[BaseException | None] = []
        self.made = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.made += 1

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost.append(exc)


class TransportStream:
    """Posts the sink's pattern through ``transport.send`` (S7.1) and remembers every send."""

    def __init__(self, transport: object, sock: LedgerSocket) -> None:
        self.transport = transport
        self.sock = sock
        self.offset = 0
        self.ops: list[tuple[WSAOverlapped, int]] = []

    def post_many(self, count: int, spread: int = 8192) -> None:
        for i in range(count):
            size = 1 + (i * 7919) % spread
            half = size // 2
            bufs = [pattern_window(self.offset, half), pattern_window(self.offset + half, size - half)]
            ov = self.transport.send(bufs)  # type: ignore[attr-defined]
            self.offset += size
            self.ops.append((ov, size))

    def pending(self) -> int:
        return sum(1 for ov, _ in self.ops if ov.pending)


async def _open(peer: PeerProcess) -> tuple[TransportStream, Recorder]:
    sock = await _connect(peer)
    transport, protocol = await wsasend.create_connection(Recorder, sock=sock)
    assert isinstance(protocol, Recorder) and protocol.made == 1
    return TransportStream(transport, sock), protocol


async def test_transport_peer_reset_fails_sends_exactly_and_loses_connection_once() -> None:
    fds = FdLedger()
    peer = _sink()
    try:
        stream, protocol = await _open(peer)
        stream.post_many(1500)
        got = await peer.command(f"read {1 << 20}", GUARD)
        assert got["ok"]
        got = await peer.command("reset", GUARD)
        await settle(stream.ops, GUARD)
        total = check_exact(stream.ops)
        assert total == stream.sock.accepted
        assert {ov.error for ov, _ in stream.ops if ov.error} == {WSAErrorCode.WSAECONNRESET}
        await _until(lambda: bool(protocol.lost), "connection_lost never came")
        await asyncio.sleep(0.05)
        assert len(protocol.lost) == 1  # exactly once (S7.2)
        exc = protocol.lost[0]
        assert isinstance(exc, WSAError) and exc.winerror == WSAErrorCode.WSAECONNRESET  # S6.3
        assert got["ok"] and got["received"] <= total
        with pytest.raises(WSAError):
            stream.transport.send(b"late")  # type: ignore[attr-defined]
    finally:
        peer.close()
    stream = None  # type: ignore[assignment]
    fds.assert_no_leak()


async def test_transport_close_flushes_10000_queued_sends_then_eof() -> None:
    """S6.2: close() behind a zero window flushes every queued send, then the peer sees EOF."""
    fds = FdLedger()
    peer = _sink()
    try:
        stream, protocol = await _open(peer)
        stream.post_many(10_000, spread=2048)
        await asyncio.sleep(0.2)
        assert stream.pending() > 9000
        stream.transport.close()  # type: ignore[attr-defined]
        with pytest.raises(WSAError) as info:
            stream.transport.send(b"after close")  # type: ignore[attr-defined]
        assert info.value.winerror == WSAErrorCode.WSAESHUTDOWN
        peer.send("drain")
        await settle(stream.ops, GUARD)
        total = check_exact(stream.ops)
        assert total == stream.offset == stream.sock.accepted
        got = await peer.line(GUARD)
        assert got == {"received": total, "ok": True, "eof": True, "error": ""}
        await _until(lambda: bool(protocol.lost), "connection_lost never came")
        await asyncio.sleep(0.05)
        assert protocol.lost == [None]
    finally:
        peer.close()
    stream = None  # type: ignore[assignment]
    fds.assert_no_leak()


async def test_transport_abort_with_sends_pending() -> None:
    """S6.1: abort() completes pending sends aborted, exact counts; the peer gets exactly those."""
    fds = FdLedger()
    peer = _sink()
    try:
        stream, protocol = await _open(peer)
        stream.post_many(600)
        await _until(lambda: stream.pending() > 100, "sends never pended")
        stream.transport.abort()  # type: ignore[attr-defined]
        await settle(stream.ops, GUARD)
        total = check_exact(stream.ops)
        assert total == stream.sock.accepted
        assert {ov.error for ov, _ in stream.ops if ov.error} == {WSAErrorCode.WSA_OPERATION_ABORTED}
        got = await peer.command("drain", GUARD)
        assert got == {"received": total, "ok": True, "eof": True, "error": ""}
        await _until(lambda: bool(protocol.lost), "connection_lost never came")
        await asyncio.sleep(0.05)
        assert len(protocol.lost) == 1
    finally:
        peer.close()
    stream = None  # type: ignore[assignment]
    fds.assert_no_leak()
