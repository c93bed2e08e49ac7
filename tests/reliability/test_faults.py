"""Issue 7, item 2: real faults on this machine, against a peer in another process.

Each test posts pattern bytes (``peer.py sink`` checks every byte it reads against the pattern),
breaks something for real, and then checks the issue's four promises:

- no hang: every send completes (the waits are hang guards, never timing assertions);
- exact counts (SPEC S6.4): the consumed bytes form a prefix of the posted stream, each failed
  send's ``bytes_sent`` equals its ``transferred``, and the sum of ``transferred`` equals what the
  kernel accepted (counted by :class:`LedgerSocket` from the real ``sendmsg`` return values);
- the peer read an exact prefix of the stream, and where the fault leaves the kernel's buffered
  bytes deliverable (zero window, closesocket, close behind our back) it read *all* of them:
  received == sum of ``transferred``. Where the fault destroys buffered bytes (a reset, a killed
  peer) the peer can only have read a prefix of them, and we check that;
- no leaked fds (``/proc/self/fd``) and no writer left on the loop.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable

import pytest

from wsasend import WSAError, WSAErrorCode, WSAOverlapped, closesocket, wsa_send
from wsasend._api import find_engine

from ._support import (
    FdLedger,
    LedgerSocket,
    PeerProcess,
    assert_no_writer,
    check_exact,
    pattern_window,
    settle,
)

# Socket buffers small enough that sends pend, big enough that data still flows fast on loopback.
BUF = 64 * 1024
# Hang guard for any one wait (not a timing assertion).
GUARD = 60.0


class Stream:
    """Posts the sink's pattern through ``wsa_send`` and remembers every send, in posting order."""

    def __init__(self, sock: LedgerSocket) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.offset = 0
        self.ops: list[tuple[WSAOverlapped, int]] = []

    def post(self, size: int, pieces: int = 1, **kwargs: object) -> WSAOverlapped:
        """One send of ``size`` pattern bytes split over ``pieces`` buffers."""
        bufs: list[memoryview] = []
        step = max(1, size // pieces)
        pos = 0
        while pos < size:
            n = min(step, size - pos) if len(bufs) < pieces - 1 else size - pos
            bufs.append(pattern_window(self.offset + pos, n))
            pos += n
        ov = wsa_send(self.sock, bufs, **kwargs)  # type: ignore[arg-type]
        self.offset += size
        self.ops.append((ov, size))
        return ov

    def post_many(self, count: int, *, base: int = 1, spread: int = 8192) -> None:
        for i in range(count):
            self.post(base + (i * 7919) % spread, pieces=1 + i % 3)

    def pending(self) -> int:
        return sum(1 for ov, _ in self.ops if ov.pending)


async def _connect(peer: PeerProcess, host: str = "127.0.0.1") -> LedgerSocket:
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BUF)
    raw.setblocking(False)
    loop = asyncio.get_running_loop()
    await asyncio.wait_for(loop.sock_connect(raw, (host, peer.port)), GUARD)
    return LedgerSocket.wrap(raw)


async def _until(predicate: Callable[[], bool], what: str) -> None:
    for _ in range(int(GUARD / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"hang: {what}")


def _sink(*extra: str) -> PeerProcess:
    return PeerProcess("sink", "--rcvbuf", str(BUF), *extra)


def _finish(stream: Stream, loop: asyncio.AbstractEventLoop) -> int:
    """S6.4 checks once everything completed; returns the sum of ``transferred``."""
    total = check_exact(stream.ops)
    assert total == stream.sock.accepted, (total, stream.sock.accepted)
    assert_no_writer(loop, stream.sock, stream.fd)
    return total


async def test_fault_peer_reset_mid_stream() -> None:
    """Peer resets (SO_LINGER 0) mid-stream: head and queued sends fail WSAECONNRESET, exactly (S6.3)."""
    fds = FdLedger()
    loop = asyncio.get_running_loop()
    peer = _sink()
    try:
        stream = Stream(await _connect(peer))
        stream.post_many(1500)  # ~6 MB: far more than the buffers hold
        assert stream.pending() > 0
        got = await peer.command(f"read {1 << 20}", GUARD)  # let 1 MiB through, then reset
        assert got["ok"] and got["received"] >= 1 << 20
        got = await peer.command("reset", GUARD)
        await settle(stream.ops, GUARD)
        total = _finish(stream, loop)
        failed = [ov for ov, _ in stream.ops if ov.error]
        assert failed, "the reset failed no send"
        assert {ov.error for ov in failed} == {WSAErrorCode.WSAECONNRESET}
        assert got["received"] <= total  # the peer read a prefix of what the kernel took ...
        assert got["ok"]  # ... byte-exact; the rest died with the connection
        # S5.2: after the reset a new send fails at once and leaves no completion behind.
        with pytest.raises(WSAError) as info:
            wsa_send(stream.sock, b"more")
        assert info.value.winerror == WSAErrorCode.WSAECONNRESET
        assert stream.sock.accepted == total
        closesocket(stream.sock)
    finally:
        peer.close()
    del stream  # drop our last reference to the socket before counting fds
    fds.assert_no_leak()


async def test_fault_peer_killed_with_sends_pending() -> None:
    """The peer process is SIGKILLed while sends pend: they fail WSAECONNRESET with exact counts."""
    fds = FdLedger()
    loop = asyncio.get_running_loop()
    peer = _sink()
    try:
        stream = Stream(await _connect(peer))
        stream.post_many(200)
        got = await peer.command("read 300000", GUARD)
        assert got["ok"]
        received = got["received"]
        stream.post_many(1500)
        await _until(lambda: stream.pending() > 100, "sends never pended")  # noqa: F821 - bound; del at the end
        peer.kill()  # the kernel closes its socket with unread data: RST
        await settle(stream.ops, GUARD)
        total = _finish(stream, loop)
        failed = [ov for ov, _ in stream.ops if ov.error]
        assert failed and {ov.error for ov in failed} == {WSAErrorCode.WSAECONNRESET}
        assert received <= total
        closesocket(stream.sock)
    finally:
        peer.close()
    del stream  # drop our last reference to the socket before counting fds
    fds.assert_no_leak()


async def test_fault_zero_window_10000_queued_then_drained() -> None:
    """10,000 sends queue behind a zero window, then all drain, in order, byte-exact (S5.4, S6.4)."""
    fds = FdLedger()
    loop = asyncio.get_running_loop()
    peer = _sink()
    try:
        stream = Stream(await _connect(peer))
        stream.post_many(10_000, spread=2048)
        # The peer reads nothing: its window closes and nearly all of the sends stay queued.
        await asyncio.sleep(0.2)
        engine = find_engine(stream.sock)
        assert engine is not None
        assert stream.pending() > 9000, stream.pending()
        assert engine.pending_count() == stream.pending()
        assert engine.unsent_bytes() > 0
        peer.send("drain")
        await settle(stream.ops, GUARD)
        total = _finish(stream, loop)
        assert total == stream.offset  # every byte of every send
        assert all(ov.error == 0 for ov, _ in stream.ops)
        closesocket(stream.sock)  # the peer's drain ends at our FIN
        got = await peer.line(GUARD)
        assert got == {"received": total, "ok": True, "eof": True, "error": ""}
    finally:
        peer.close()
    del stream, engine  # drop our last references to the socket before counting fds
    fds.assert_no_leak()


@pytest.mark.parametrize("how", ["closesocket", "closesocket-from-thread", "close-behind-our-back"])
async def test_fault_close_with_sends_pending(how: str) -> None:
    """Closing with sends pending aborts them (WSA_OPERATION_ABORTED, exact counts), and the peer
    still receives exactly the bytes the kernel had consumed: received == sum of transferred (S6.1)."""
    fds = FdLedger()
    peer = _sink()
    routine_calls: list[tuple[int, int]] = []

    def routine(error: int, transferred: int, ov: WSAOverlapped, flags: int) -> None:
        routine_calls.append((error, transferred))

    try:
        stream = Stream(await _connect(peer))
        stream.post_many(300)
        for _ in range(300):
            stream.post(3000, pieces=2, completion_routine=routine)
        await _until(lambda: stream.pending() > 100, "sends never pended")  # noqa: F821 - bound; del at the end
        before = stream.pending()
        if how == "closesocket":
            closesocket(stream.sock)
        elif how == "closesocket-from-thread":
            thread = threading.Thread(target=closesocket, args=(stream.sock,))
            thread.start()
            await _until(lambda: not thread.is_alive(), "closesocket from a thread never returned")
            thread.join()
        else:
            stream.sock.close()  # behind the package's back: the watchdog must notice (S6.1)
        await settle(stream.ops, GUARD)
        total = check_exact(stream.ops)
        assert total == stream.sock.accepted
        errors = [ov.error for ov, _ in stream.ops]
        first = next(i for i, e in enumerate(errors) if e)  # sends pended, so some were aborted
        assert set(errors[first:]) == {WSAErrorCode.WSA_OPERATION_ABORTED}  # all after it too
        assert set(errors[:first]) <= {0}
        assert len(errors) - first <= before
        await asyncio.sleep(0)  # routines run through call_soon
        assert [t for _, t in routine_calls] == [ov.transferred for ov, _ in stream.ops[300:]]
        engine = find_engine(stream.sock)
        assert engine is None or engine._writer is None
        got = await peer.command("drain", GUARD)
        assert got == {"received": total, "ok": True, "eof": True, "error": ""}
    finally:
        peer.close()
    del stream  # drop our last reference to the socket before counting fds
    fds.assert_no_leak()
