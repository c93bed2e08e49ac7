"""Cancel, close and faults on both loops (SPEC S5.2, S5.7, S6.1, S6.3, S6.4).

The exact-count tests compare the ``transferred`` of every send with what the kernel really
accepted: either the bytes the peer reads (when the data survives) or the sum of what
``sendmsg`` returned, recorded by a socket subclass (when a reset throws the data away). Time
limits are hang guards only.
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import struct
import threading
from collections.abc import Sequence
from typing import Any

import pytest

from tests.helpers import SMALL_BUF, fill_socket, pattern, read_exactly
from wsasend import (
    MSG_OOB,
    MSG_PARTIAL,
    WSAError,
    WSAErrorCode,
    WSAEvent,
    WSAOverlapped,
    closesocket,
    wsa_send,
)

# Hang guard only.
GUARD = 30.0
ABORTED = WSAErrorCode.WSA_OPERATION_ABORTED


class RecordingSocket(socket.socket):
    """A real socket that remembers what each ``sendmsg`` returned (the bytes the kernel took)."""

    accepted: list[int]

    def sendmsg(self, buffers: Any, ancdata: Any = (), flags: int = 0, address: Any = None) -> int:
        n = super().sendmsg(buffers, ancdata, flags)
        self.accepted.append(n)
        return n


def recording(sock: socket.socket) -> RecordingSocket:
    """The same descriptor as ``sock`` (which is detached), in a RecordingSocket."""
    rec = RecordingSocket(fileno=sock.detach())
    rec.accepted = []
    return rec


def tcp_pair_recording(bufsize: int = SMALL_BUF) -> tuple[RecordingSocket, socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, bufsize)
        client.connect(listener.getsockname())
        server, _ = listener.accept()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, bufsize)
    return recording(client), server


def stream_pair(kind: str) -> tuple[socket.socket, socket.socket]:
    """A connected stream pair with ~64 KiB buffers: sends pend while data still flows."""
    if kind == "unix":
        a, b = socket.socketpair()
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUF)
        return a, b
    from tests.helpers import tcp_pair

    return tcp_pair(socket.AF_INET, bufsize=SMALL_BUF)


async def read_to_eof(sock: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    out = bytearray()
    while True:
        data = await loop.sock_recv(sock, 1 << 20)
        if not data:
            return bytes(out)
        out += data


async def outcome(ov: WSAOverlapped) -> tuple[int, int]:
    """``(error, transferred)`` of a send once it completed, checking await agrees with the fields."""
    try:
        n = await ov
    except WSAError as exc:
        assert exc.winerror == ov.error
        assert exc.bytes_sent == ov.transferred
        return int(exc.winerror), ov.transferred
    assert n == ov.transferred and ov.error == 0
    return 0, n


def check_prefix_accounting(payloads: Sequence[bytes], ovs: Sequence[WSAOverlapped], received: bytes) -> None:
    """S6.4: whole sends, then at most one partial, then none; the peer got exactly that prefix."""
    stream = b"".join(payloads)
    total = sum(ov.transferred for ov in ovs)
    assert received == stream[:total]
    seen_short = False
    for payload, ov in zip(payloads, ovs, strict=True):
        if seen_short:
            assert ov.transferred == 0, "a send after a partly sent one moved bytes"
        elif ov.transferred < len(payload):
            seen_short = True
        if ov.transferred == len(payload) and len(payload):
            assert ov.error == 0
        else:
            assert ov.error == ABORTED


# -- S5.7: cancel -------------------------------------------------------------------------------------


async def test_WSAOverlapped_cancel_before_any_byte_went_out() -> None:
    a, b = socket.socketpair()
    try:
        filled = fill_socket(a)
        pa, pb, pc = pattern(3000, 1), pattern(4000, 2), pattern(5000, 3)
        ev = WSAEvent()
        routine_calls: list[tuple[int, int]] = []
        ova = wsa_send(a, pa)
        ovb = wsa_send(a, pb, overlapped=WSAOverlapped(event=ev))
        ovc = wsa_send(a, pc, completion_routine=lambda e, n, ov, f: routine_calls.append((e, n)))
        assert ova.pending and ovb.pending and ovc.pending
        # The head has not started either (the socket was full): all three can be withdrawn.
        assert ovb.cancel() is True
        assert not ovb.pending and ovb.error == ABORTED and ovb.transferred == 0
        assert ev.is_set()
        assert ovb.cancel() is False  # already completed
        assert await outcome(ovb) == (ABORTED, 0)
        assert ova.cancel() is True
        assert await outcome(ova) == (ABORTED, 0)
        async with asyncio.timeout(GUARD):
            got = await read_exactly(b, filled + len(pc))
            assert await outcome(ovc) == (0, len(pc))
        assert got[filled:] == pc  # only the send that was not withdrawn
        await asyncio.sleep(0)
        assert routine_calls == [(0, len(pc))]
        with pytest.raises(BlockingIOError):
            b.recv(1)
    finally:
        a.close()
        b.close()


async def test_WSAOverlapped_cancel_after_partial_progress_lets_it_finish() -> None:
    a, b = socket.socketpair()
    try:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUF)
        big, after, last = pattern(1_500_000, 4), pattern(70_000, 5), pattern(10, 6)
        ov_big = wsa_send(a, [big[:1], memoryview(big)[1:]])
        assert ov_big.pending  # partly taken at once, the rest waits
        ov_after = wsa_send(a, after)
        ov_last = wsa_send(a, last)
        # S5.7: started: cutting it short would corrupt the stream, so it finishes.
        assert ov_big.cancel() is False
        assert ov_big.pending
        assert ov_after.cancel() is True  # not started: withdrawn
        async with asyncio.timeout(GUARD):
            got = await read_exactly(b, len(big) + len(last))
            assert await outcome(ov_big) == (0, len(big))
            assert await outcome(ov_last) == (0, len(last))
        assert await outcome(ov_after) == (ABORTED, 0)
        assert got == big + last
    finally:
        a.close()
        b.close()


async def test_cancelling_the_awaiting_task_withdraws_a_send_not_started() -> None:
    a, b = socket.socketpair()
    try:
        filled = fill_socket(a)
        ov = wsa_send(a, b"WITHDRAWN")
        task = asyncio.ensure_future(_await(ov))
        await asyncio.sleep(0)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not ov.pending and ov.error == ABORTED and ov.transferred == 0
        kept = wsa_send(a, b"kept")
        async with asyncio.timeout(GUARD):
            got = await read_exactly(b, filled + 4)
            assert await kept == 4
        assert got[filled:] == b"kept"
    finally:
        a.close()
        b.close()


async def test_cancelling_the_awaiting_task_lets_a_started_send_finish() -> None:
    a, b = socket.socketpair()
    try:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUF)
        big = pattern(1_000_000, 8)
        ov = wsa_send(a, big)
        assert ov.pending
        nxt = wsa_send(a, b"next")
        task = asyncio.ensure_future(_await(ov))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert ov.pending  # S5.7: it goes on in the background
        async with asyncio.timeout(GUARD):
            got = await read_exactly(b, len(big) + 4)
            assert await ov == len(big)
            assert await nxt == 4
        assert got == big + b"next"  # the stream stayed whole
    finally:
        a.close()
        b.close()


async def _await(ov: WSAOverlapped) -> int:
    return await ov


async def test_WSAOverlapped_cancel_from_another_thread_is_refused() -> None:
    a, b = socket.socketpair()
    try:
        filled = fill_socket(a)
        ov = wsa_send(a, b"stays")
        with pytest.raises(WSAError) as info:
            await asyncio.to_thread(ov.cancel)
        assert info.value.winerror == WSAErrorCode.WSAEINVAL
        async with asyncio.timeout(GUARD):
            got = await read_exactly(b, filled + 5)
            assert await ov == 5
        assert got[filled:] == b"stays"
    finally:
        a.close()
        b.close()


# -- S6.1: closesocket -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["tcp", "unix"])
async def test_closesocket_aborts_pending_sends_with_exact_transferred(kind: str) -> None:
    a, b = stream_pair(kind)
    try:
        payloads = [pattern(300_000, seed=i) for i in range(6)]
        records: list[tuple[int, int, WSAOverlapped]] = []
        events = [WSAEvent() for _ in range(3)]
        ovs = [
            wsa_send(a, p, overlapped=WSAOverlapped(event=events[i]))
            if i < 3
            else wsa_send(a, p, completion_routine=lambda e, n, ov, f: records.append((e, n, ov)))
            for i, p in enumerate(payloads)
        ]
        b.setblocking(False)
        loop = asyncio.get_running_loop()
        received = bytearray()
        async with asyncio.timeout(GUARD):
            # Let a good part (but not all) of it through, then close under the pending sends.
            while len(received) < 700_000:
                received += await loop.sock_recv(b, 65536)
            closesocket(a)
            assert a.fileno() == -1
            results = [await outcome(ov) for ov in ovs]
            received += await read_to_eof(b)  # the peer sees the close: our writer was removed first
        assert all(not ov.pending for ov in ovs)
        check_prefix_accounting(payloads, ovs, bytes(received))
        assert sum(n for _, n in results) == len(received)
        assert any(err == ABORTED for err, _ in results)
        assert results[0] == (0, len(payloads[0]))
        assert all(ev.is_set() for ev in events)
        await asyncio.sleep(0)
        assert [(e, n) for e, n, _ in records] == [results[i] for i in range(3, 6)]
        assert [ov for _, _, ov in records] == ovs[3:]
        # After closesocket, a send fails at the call (S5.2).
        with pytest.raises(WSAError) as info:
            wsa_send(a, b"late")
        assert info.value.winerror == WSAErrorCode.WSAENOTSOCK
        with pytest.raises(WSAError):
            closesocket(a)
    finally:
        a.close()
        b.close()


async def test_closesocket_from_another_thread_aborts_on_the_loop() -> None:
    a, b = socket.socketpair()
    try:
        filled = fill_socket(a)
        routine_threads: list[int] = []
        ovs = [
            wsa_send(a, b"one", completion_routine=lambda e, n, ov, f: routine_threads.append(threading.get_ident())),
            wsa_send(a, b"two"),
        ]
        await asyncio.to_thread(closesocket, a)
        assert a.fileno() == -1
        async with asyncio.timeout(GUARD):
            assert [await outcome(ov) for ov in ovs] == [(ABORTED, 0), (ABORTED, 0)]
            await asyncio.sleep(0)
            received = await read_to_eof(b)
        assert routine_threads == [threading.get_ident()]  # routines run on the engine's loop
        assert len(received) == filled
    finally:
        b.close()


async def test_closesocket_idle_and_with_only_completed_sends() -> None:
    a, b = socket.socketpair()
    try:
        ov = wsa_send(a, b"done")
        assert ov.completed_immediately
        closesocket(a)
        assert await outcome(ov) == (0, 4)
        assert await read_to_eof(b) == b"done"
    finally:
        b.close()


# -- S6.1: closed behind our back ---------------------------------------------------------------------


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("kind", ["tcp", "unix"])
async def test_plain_close_behind_our_back_aborts_pending_sends(kind: str) -> None:
    loop = asyncio.get_running_loop()
    await asyncio.sleep(0)  # let the loop make whatever descriptors it makes lazily
    gc.collect()  # and let garbage of earlier tests close its descriptors now, not during this test
    before = open_fds()
    a, b = stream_pair(kind)
    payloads = [pattern(400_000, seed=i) for i in range(4)]
    ovs = [wsa_send(a, p) for p in payloads]
    assert all(ov.pending for ov in ovs)
    fd = a.fileno()
    a.close()  # not closesocket(): the package is not told
    try:
        async with asyncio.timeout(GUARD):  # S6.1 says within ~1 s; the guard only stops a hang
            results = [await outcome(ov) for ov in ovs]
            received = await read_to_eof(b)  # EOF: the descriptor really went away
    finally:
        b.close()
    assert all(err in (0, ABORTED) for err, _ in results)
    assert any(err == ABORTED for err, _ in results)
    check_prefix_accounting(payloads, ovs, received)
    # No writer is left behind for the old descriptor number, and no descriptor leaked.
    assert not loop.remove_writer(fd)
    assert open_fds() == before
    with pytest.raises(WSAError) as info:
        wsa_send(a, b"late")
    assert info.value.winerror == WSAErrorCode.WSAENOTSOCK


async def test_send_posted_after_plain_close_fails_at_the_call() -> None:
    """S5.2: WSAENOTSOCK from the call itself, even while earlier sends are still queued."""
    a, b = socket.socketpair()
    try:
        fill_socket(a)
        first = wsa_send(a, b"queued")
        assert first.pending
        a.close()
        calls: list[int] = []
        with pytest.raises(WSAError) as info:
            wsa_send(a, [b"after", b"close"])
        assert info.value.winerror == WSAErrorCode.WSAENOTSOCK
        with pytest.raises(WSAError) as info:
            wsa_send(a, b"after close", completion_routine=lambda *args: calls.append(1))
        assert info.value.winerror == WSAErrorCode.WSAENOTSOCK
        async with asyncio.timeout(GUARD):
            assert await outcome(first) == (ABORTED, 0)
        await asyncio.sleep(0)
        assert calls == []
    finally:
        b.close()


# -- S6.3: peer reset --------------------------------------------------------------------------------


async def test_peer_reset_fails_head_and_queued_with_WSAECONNRESET_exact_counts() -> None:
    a, b = tcp_pair_recording()
    try:
        head, second, third = pattern(3_000_000, 1), pattern(100_000, 2), pattern(10, 3)
        ov_head = wsa_send(a, [head])
        assert ov_head.pending
        ov_second = wsa_send(a, second)
        ov_third = wsa_send(a, [third, b"", third])
        # The head gets partly consumed: at once as a rule, or by the writer when a loaded
        # kernel refused the very first sendmsg (EAGAIN, seen once in a full run).
        async with asyncio.timeout(GUARD):
            while sum(a.accepted) == 0:
                await asyncio.sleep(0.01)
        assert ov_head.pending
        # A reset: SO_LINGER with a zero timeout makes close() send RST instead of FIN.
        b.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        b.close()
        async with asyncio.timeout(GUARD):
            results = [await outcome(ov) for ov in (ov_head, ov_second, ov_third)]
        reset = WSAErrorCode.WSAECONNRESET
        assert [err for err, _ in results] == [reset, reset, reset]
        # The head keeps exactly the bytes the kernel took from it; the queued ones took none.
        assert ov_head.transferred == sum(a.accepted)
        assert 0 < ov_head.transferred < len(head)
        assert ov_second.transferred == ov_third.transferred == 0
        exc = ov_head.exception
        assert exc is not None and exc.bytes_sent == ov_head.transferred
        assert isinstance(exc.__cause__, OSError)
        # Later sends fail at the call.
        with pytest.raises(WSAError) as info:
            wsa_send(a, b"after reset")
        assert info.value.winerror in (reset, WSAErrorCode.WSAENOTCONN)
    finally:
        a.close()
        b.close()


async def test_peer_close_on_unix_stream_fails_queue_with_WSAECONNRESET() -> None:
    s1, b = socket.socketpair()
    a = recording(s1)
    try:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUF)
        records: list[tuple[int, int]] = []
        head = pattern(2_000_000, 5)
        ovs = [
            wsa_send(a, head, completion_routine=lambda e, n, ov, f: records.append((e, n))),
            wsa_send(a, b"queued", completion_routine=lambda e, n, ov, f: records.append((e, n))),
        ]
        taken = sum(a.accepted)
        assert 0 < taken < len(head)
        b.close()
        async with asyncio.timeout(GUARD):
            results = [await outcome(ov) for ov in ovs]
            await asyncio.sleep(0)
        reset = int(WSAErrorCode.WSAECONNRESET)
        assert results == [(reset, sum(a.accepted)), (reset, 0)]
        assert records == results
    finally:
        a.close()


# -- S5.2: errors that stop a send from starting --------------------------------------------------------


async def test_send_that_cannot_start_raises_and_leaves_the_queue_alone() -> None:
    a, b = socket.socketpair()
    try:
        filled = fill_socket(a)
        first = wsa_send(a, b"first;")
        calls: list[int] = []

        def routine(*args: object) -> None:
            calls.append(1)

        bad_calls: list[tuple[object, int, WSAErrorCode]] = [
            ([b"ok", "not bytes"], 0, WSAErrorCode.WSAEFAULT),
            ([memoryview(bytearray(b"abcdef"))[::2]], 0, WSAErrorCode.WSAEFAULT),
            (b"bad flag", 0x2, WSAErrorCode.WSAEOPNOTSUPP),
            (b"partial on a stream", MSG_PARTIAL, WSAErrorCode.WSAEOPNOTSUPP),
            (b"x", -1, WSAErrorCode.WSAEOPNOTSUPP),
        ]
        for buffers, flags, code in bad_calls:
            with pytest.raises(WSAError) as info:
                wsa_send(a, buffers, flags, completion_routine=routine)
            assert info.value.winerror == code, (buffers, flags)
            assert info.value.bytes_sent == 0
        with pytest.raises(WSAError) as info:
            wsa_send(a, b"x", completion_routine="not callable")  # type: ignore[arg-type]
        assert info.value.winerror == WSAErrorCode.WSAEFAULT
        with pytest.raises(WSAError) as info:
            wsa_send(a, b"x", overlapped="not an overlapped")
        assert info.value.winerror == WSAErrorCode.WSAEFAULT
        last = wsa_send(a, b"last")
        async with asyncio.timeout(GUARD):
            got = await read_exactly(b, filled + 10)
            assert await first == 6 and await last == 4
        assert got[filled:] == b"first;last"
        await asyncio.sleep(0)
        assert calls == []
        with pytest.raises(BlockingIOError):
            b.recv(1)
    finally:
        a.close()
        b.close()


async def test_MSG_OOB_on_a_datagram_socket_is_WSAEOPNOTSUPP() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        with pytest.raises(WSAError) as info:
            wsa_send(a, b"urgent", MSG_OOB)
        assert info.value.winerror == WSAErrorCode.WSAEOPNOTSUPP
        b.setblocking(False)
        with pytest.raises(BlockingIOError):
            b.recv(100)
    finally:
        a.close()
        b.close()


async def test_wsa_send_on_a_non_socket_or_without_a_loop() -> None:
    with pytest.raises(WSAError) as info:
        wsa_send(object(), b"x")  # type: ignore[arg-type]
    assert info.value.winerror == WSAErrorCode.WSAENOTSOCK
    a, b = socket.socketpair()
    try:
        # Outside a running loop (a plain thread): RuntimeError, as asyncio's own APIs say.
        with pytest.raises(RuntimeError):
            await asyncio.to_thread(wsa_send, a, b"x")
    finally:
        a.close()
        b.close()
