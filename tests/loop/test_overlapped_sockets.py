"""Overlapped sends on every socket kind of SPEC S5.10, with flags (S4.1, S4.4) and odd buffers (S2).

Both loops. Stream kinds check the byte stream; message kinds check message boundaries. The
forced-partial-write tests use a socket subclass whose ``sendmsg`` passes only a few bytes at a
time to the real kernel (the situation in which CPython gh-135862 lost bytes of multi-byte and
multi-dimensional buffers).
"""

from __future__ import annotations

import array
import asyncio
import fcntl
import itertools
import os
import random
import select
import socket
from typing import Any

import pytest

from tests.helpers import SMALL_BUF, fill_messages, fill_socket, pattern, read_exactly, tcp_pair, udp_pair
from wsasend import (
    MSG_DONTROUTE,
    MSG_OOB,
    MSG_PARTIAL,
    WSAError,
    WSAErrorCode,
    WSAOverlapped,
    max_message_size,
    wsa_send,
)

# Hang guard only.
GUARD = 30.0


def _has_ipv6() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not _has_ipv6(), reason="no IPv6 loopback here")

STREAM_KINDS = [
    pytest.param("tcp4", id="tcp4"),
    pytest.param("tcp6", id="tcp6", marks=needs_ipv6),
    pytest.param("unix", id="unix-stream"),
]
MESSAGE_KINDS = [
    pytest.param("udp4", id="udp4"),
    pytest.param("udp6", id="udp6", marks=needs_ipv6),
    pytest.param("unix-dgram", id="unix-dgram"),
    pytest.param("seqpacket", id="seqpacket"),
]


def stream_pair(kind: str) -> tuple[socket.socket, socket.socket]:
    if kind == "unix":
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUF)
        return a, b
    return tcp_pair(socket.AF_INET6 if kind == "tcp6" else socket.AF_INET, bufsize=SMALL_BUF)


def message_pair(kind: str) -> tuple[socket.socket, socket.socket]:
    """``(sender, receiver)``, connected; the receiver is nonblocking."""
    if kind == "udp4":
        tx, rx = udp_pair(socket.AF_INET)
    elif kind == "udp6":
        tx, rx = udp_pair(socket.AF_INET6)
    elif kind == "unix-dgram":
        tx, rx = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    else:
        tx, rx = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    rx.setblocking(False)
    return tx, rx


async def recv_messages(rx: socket.socket, count: int, bufsize: int = 1 << 17) -> list[bytes]:
    loop = asyncio.get_running_loop()
    out = []
    for _ in range(count):
        out.append(await loop.sock_recv(rx, bufsize))
    return out


# -- S5.10: stream kinds -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", STREAM_KINDS)
async def test_wsa_send_stream_kinds_keep_order_through_pending_sends(kind: str) -> None:
    a, b = stream_pair(kind)
    try:
        payloads: list[list[bytes | bytearray | memoryview | array.array[int]]] = [
            [b"hdr0:", pattern(200_000, 1), b":end0"],
            [bytearray(pattern(10, 2))],
            [],
            [memoryview(pattern(300_000, 3)), array.array("i", range(1000))],
            [b"last"],
        ]
        expected = b"".join(b"".join(bytes(x) for x in p) for p in payloads)
        ovs = [wsa_send(a, p) for p in payloads]
        async with asyncio.timeout(GUARD):
            got = await read_exactly(b, len(expected))
            counts = [await ov for ov in ovs]
        assert got == expected
        assert counts == [sum(memoryview(x).nbytes for x in p) for p in payloads]
        assert counts[3] == 300_000 + 4000  # an array('i') counts bytes, not items
    finally:
        a.close()
        b.close()


# -- S5.10 and S4.3: message kinds ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", MESSAGE_KINDS)
async def test_wsa_send_message_kinds_one_send_is_one_message(kind: str) -> None:
    tx, rx = message_pair(kind)
    try:
        messages: list[list[bytes | bytearray | memoryview | array.array[int]]] = [
            [b"one:", bytearray(b"two:"), memoryview(b"three")],
            [],  # S2.4: an empty send on a message socket is one empty message
            [pattern(3000, 4)],
            [array.array("i", [1, 2, 3])],
            [b"x" * 100, b"", b"y" * 200],
        ]
        ovs = [wsa_send(tx, m) for m in messages]
        async with asyncio.timeout(GUARD):
            got = await recv_messages(rx, len(messages))
            counts = [await ov for ov in ovs]
        assert got == [b"".join(bytes(x) for x in m) for m in messages]
        assert counts == [len(g) for g in got]
        assert counts[3] == 12
    finally:
        tx.close()
        rx.close()


@pytest.mark.parametrize("kind", ["unix-dgram", "seqpacket"])
async def test_wsa_send_message_kinds_pending_until_the_receiver_reads(kind: str) -> None:
    tx, rx = message_pair(kind)
    try:
        filler = fill_messages(tx)
        routine_order: list[int] = []
        ovs = [
            wsa_send(
                tx,
                [f"msg{i}:".encode(), pattern(500 + i, i)],
                overlapped=WSAOverlapped(event=i),
                completion_routine=lambda e, n, ov, f: routine_order.append(ov.hEvent),
            )
            for i in range(20)
        ]
        assert all(ov.pending for ov in ovs)
        async with asyncio.timeout(GUARD):
            got = await recv_messages(rx, filler + 20)
            counts = [await ov for ov in ovs]
            await asyncio.sleep(0)
        assert got[:filler] == [b"f" * 1000] * filler
        assert got[filler:] == [f"msg{i}:".encode() + pattern(500 + i, i) for i in range(20)]
        assert counts == [len(m) for m in got[filler:]]
        assert routine_order == list(range(20))
    finally:
        tx.close()
        rx.close()


@pytest.mark.parametrize("kind", MESSAGE_KINDS)
async def test_wsa_send_message_too_large_is_WSAEMSGSIZE_nothing_sent(kind: str) -> None:
    tx, rx = message_pair(kind)
    try:
        limit = max_message_size(tx)
        with pytest.raises(WSAError) as info:
            wsa_send(tx, [b"a", bytes(limit)])
        assert info.value.winerror == WSAErrorCode.WSAEMSGSIZE
        assert info.value.bytes_sent == 0
        # Exactly the limit goes, as one message.
        ov = wsa_send(tx, [bytes(limit - 1), b"z"], completion_routine=None)
        async with asyncio.timeout(GUARD):
            got = await recv_messages(rx, 1, bufsize=limit + 100)
            assert await ov == limit
        assert len(got[0]) == limit and got[0].endswith(b"z")
    finally:
        tx.close()
        rx.close()


@needs_ipv6
async def test_an_ipv4_mapped_peer_limits_a_message_to_ipv4s_size_at_the_call() -> None:
    """S4.3 and S5.2: an IPv6 UDP socket connected to ``::ffff:127.0.0.1`` sends IPv4, so a
    message of 65508 bytes is refused by the send that ends it (WSAEMSGSIZE from the call, its
    queued MSG_PARTIAL piece failing with it), and 65507 go as one datagram. Before, the check
    allowed IPv6's 65527: the message was accepted, pending, and failed later as a completion
    when the kernel refused it."""
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.setblocking(False)
    tx = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        tx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        tx.connect(("::ffff:127.0.0.1", rx.getsockname()[1]))
        piece = wsa_send(tx, [bytes(60000)], MSG_PARTIAL)
        assert piece.pending
        with pytest.raises(WSAError) as info:
            wsa_send(tx, [bytes(5508)])
        assert info.value.winerror == WSAErrorCode.WSAEMSGSIZE and info.value.bytes_sent == 0
        assert (piece.pending, piece.error, piece.transferred) == (False, WSAErrorCode.WSAEMSGSIZE, 0)
        piece = wsa_send(tx, [b"p" * 60000], MSG_PARTIAL)
        ov = wsa_send(tx, [b"q" * 5507])
        async with asyncio.timeout(GUARD):
            got = await recv_messages(rx, 1, bufsize=70000)
            assert await ov == 5507 and await piece == 60000
        assert got == [b"p" * 60000 + b"q" * 5507]
    finally:
        tx.close()
        rx.close()


# -- S4.4: MSG_PARTIAL on message sockets ---------------------------------------------------------------


@pytest.mark.parametrize("kind", MESSAGE_KINDS)
async def test_MSG_PARTIAL_pieces_pend_and_complete_together_as_one_message(kind: str) -> None:
    tx, rx = message_pair(kind)
    try:
        records: list[tuple[int, int, Any]] = []

        def routine(error: int, transferred: int, ov: WSAOverlapped, flags: int) -> None:
            records.append((error, transferred, ov.hEvent))

        pieces = [[b"alpha,"], [bytearray(b"beta,"), memoryview(b"gamma,")], [], [pattern(1000, 9)]]
        ovs = [
            wsa_send(tx, p, MSG_PARTIAL, overlapped=WSAOverlapped(event=i), completion_routine=routine)
            for i, p in enumerate(pieces)
        ]
        # S4.4: pieces stay pending until the final piece; nothing is on the wire yet.
        assert all(ov.pending for ov in ovs)
        with pytest.raises(BlockingIOError):
            rx.recv(65536)
        final = wsa_send(tx, [b";end"], overlapped=WSAOverlapped(event="final"), completion_routine=routine)
        assert final.pending  # completes together with its pieces, never inside the call
        async with asyncio.timeout(GUARD):
            got = await recv_messages(rx, 1)
            assert await final == 4
        assert not any(ov.pending for ov in ovs)
        await asyncio.sleep(0)
        expected = b"alpha,beta,gamma," + pattern(1000, 9) + b";end"
        assert got == [expected]  # ONE datagram/record
        assert [ov.transferred for ov in ovs] == [6, 11, 0, 1000]  # each its own count
        assert records == [(0, 6, 0), (0, 11, 1), (0, 0, 2), (0, 1000, 3), (0, 4, "final")]
        # And a normal message after it is its own.
        assert await wsa_send(tx, b"after") == 5
        async with asyncio.timeout(GUARD):
            assert await recv_messages(rx, 1) == [b"after"]
    finally:
        tx.close()
        rx.close()


@pytest.mark.parametrize("kind", MESSAGE_KINDS)
async def test_MSG_PARTIAL_message_too_large_fails_every_piece_nothing_sent(kind: str) -> None:
    tx, rx = message_pair(kind)
    try:
        limit = max_message_size(tx)
        records: list[tuple[int, int]] = []
        half = limit // 2 + 1
        p1 = wsa_send(tx, bytes(half), MSG_PARTIAL, completion_routine=lambda e, n, ov, f: records.append((e, n)))
        p2 = wsa_send(tx, b"middle", MSG_PARTIAL)
        with pytest.raises(WSAError) as info:
            wsa_send(tx, bytes(half))  # the final piece makes the message too large
        code = WSAErrorCode.WSAEMSGSIZE
        assert info.value.winerror == code
        for ov in (p1, p2):
            assert not ov.pending and ov.error == code and ov.transferred == 0
            with pytest.raises(WSAError) as info:
                await ov
            assert info.value.winerror == code
        await asyncio.sleep(0)
        assert records == [(int(code), 0)]
        # Nothing was transmitted: the next message is the first the receiver sees.
        assert await wsa_send(tx, b"sentinel") == 8
        async with asyncio.timeout(GUARD):
            assert await recv_messages(rx, 1, bufsize=limit + 100) == [b"sentinel"]
        with pytest.raises(BlockingIOError):
            rx.recv(65536)
    finally:
        tx.close()
        rx.close()


@pytest.mark.parametrize("kind", ["udp4", "seqpacket"])
async def test_MSG_PARTIAL_pieces_are_held_not_copied(kind: str) -> None:
    """S2.1/S4.4: an overlapped piece is held by reference until the message goes (no copy)."""
    tx, rx = message_pair(kind)
    try:
        piece = bytearray(b"before")
        first = wsa_send(tx, piece, MSG_PARTIAL)
        piece[:] = b"AFTER!"  # same length: allowed by bytearray even while exported
        await wsa_send(tx, b"|tail")
        assert first.transferred == 6
        async with asyncio.timeout(GUARD):
            assert await recv_messages(rx, 1) == [b"AFTER!|tail"]
    finally:
        tx.close()
        rx.close()


async def test_MSG_PARTIAL_on_a_stream_socket_is_WSAEOPNOTSUPP() -> None:
    a, b = socket.socketpair()
    try:
        with pytest.raises(WSAError) as info:
            wsa_send(a, b"piece", MSG_PARTIAL)
        assert info.value.winerror == WSAErrorCode.WSAEOPNOTSUPP
        b.setblocking(False)
        with pytest.raises(BlockingIOError):
            b.recv(10)
    finally:
        a.close()
        b.close()


# -- S2.3: more than IOV_MAX buffers ------------------------------------------------------------------


@pytest.mark.parametrize("queued", [False, True], ids=["idle", "behind-a-pending-send"])
async def test_wsa_send_more_than_1024_buffers_tcp(queued: bool) -> None:
    a, b = tcp_pair(bufsize=SMALL_BUF)
    try:
        rng = random.Random(1024)
        blob = pattern(1 << 16, 3)
        bufs: list[Any] = []
        for i in range(3000):
            start, size = rng.randrange(0, 60_000), rng.choice([1, 7, 64, 500, 4000])
            bufs.append(blob[start : start + size] if i % 2 else memoryview(blob)[start : start + size])
        expected = b"".join(bytes(x) for x in bufs)
        head = pattern(500_000, 1) if queued else b""
        ov_head = wsa_send(a, head)
        ov = wsa_send(a, bufs)
        tail = wsa_send(a, [b"tail"] * 1500)  # and a list of > IOV_MAX bytes objects
        async with asyncio.timeout(GUARD):
            got = await read_exactly(b, len(head) + len(expected) + 6000)
            assert await ov_head == len(head)
            assert await ov == len(expected)
            assert await tail == 6000
        assert got == head + expected + b"tail" * 1500
    finally:
        a.close()
        b.close()


async def test_more_than_1024_buffers_the_kernel_takes_go_within_the_call() -> None:
    """S5.1, S2.3: 1,500 buffers into an AF_UNIX socket with room for them but more than a
    quarter of its buffer in use (so it reports no POLLOUT): the first 1,024 went in the call,
    the rest waited for a writable event that never came until the peer read (adversarial
    pass, build differential). Now the kernel is tried on while it takes everything offered:
    the send is done when the call returns, and the bytes are whole and in order."""
    a, b = socket.socketpair()
    try:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 256 * 1024)
        head = pattern(200_000, 5)  # > a quarter of the doubled 256 KiB: POLLOUT is off
        assert await wsa_send(a, [head]) == len(head)
        assert not select.select([], [a], [], 0)[1], "the socket still reports writable here"
        bufs = [pattern(7, i) for i in range(1500)]
        ov = wsa_send(a, bufs)
        assert not ov.pending and ov.transferred == 7 * 1500
        async with asyncio.timeout(GUARD):
            got = await read_exactly(b, len(head) + 7 * 1500)
        assert got == head + b"".join(bufs)
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("kind", MESSAGE_KINDS)
async def test_wsa_send_more_than_1024_buffers_is_still_one_message(kind: str) -> None:
    tx, rx = message_pair(kind)
    try:
        bufs = [pattern(20, i) for i in range(2000)]
        pieces = [[pattern(3, i) for i in range(700)], [pattern(2, i) for i in range(700)]]
        ov = wsa_send(tx, bufs)
        p1 = wsa_send(tx, pieces[0], MSG_PARTIAL)
        final = wsa_send(tx, pieces[1])
        async with asyncio.timeout(GUARD):
            got = await recv_messages(rx, 2)
            assert await ov == 40_000
            assert await final == 1400 and await p1 == 2100
        assert got == [b"".join(bufs), b"".join(pieces[0]) + b"".join(pieces[1])]
    finally:
        tx.close()
        rx.close()


# -- S4.1: MSG_OOB and MSG_DONTROUTE pass through in queue order ------------------------------------


class FlagRecordingSocket(socket.socket):
    """A real socket that records ``(bytes the kernel took, flags)`` for every sendmsg."""

    calls: list[tuple[bytes, int]]

    def sendmsg(self, buffers: Any, ancdata: Any = (), flags: int = 0, address: Any = None) -> int:
        n = super().sendmsg(buffers, ancdata, flags)
        data = b"".join(bytes(x) for x in buffers)[:n]
        self.calls.append((data, int(flags)))
        return n


def tcp_pair_flag_recording() -> tuple[FlagRecordingSocket, socket.socket]:
    a, b = tcp_pair(bufsize=SMALL_BUF)
    rec = FlagRecordingSocket(fileno=a.detach())
    rec.calls = []
    return rec, b


async def test_MSG_OOB_and_MSG_DONTROUTE_pass_through_in_queue_order() -> None:
    a, b = tcp_pair_flag_recording()
    try:
        pa, pb, pc, pd = pattern(300_000, 1), b"urgent!", pattern(200_000, 2), pattern(50_000, 3)
        ovs = [
            wsa_send(a, pa),
            wsa_send(a, pb, MSG_OOB),
            wsa_send(a, pc),
            wsa_send(a, [pd[:10], pd[10:]], MSG_DONTROUTE),
        ]
        tail = wsa_send(a, b"tail")
        normal = len(pa) + len(pb) - 1 + len(pc) + len(pd) + 4
        async with asyncio.timeout(GUARD):
            got = await read_exactly(b, normal)
            counts = [await ov for ov in ovs]
            assert await tail == 4
        # Without SO_OOBINLINE the urgent byte (the last of the MSG_OOB send) leaves the stream.
        # That the "!" is missing exactly there shows MSG_OOB went with the last byte of that
        # send and of no other (Linux forgets the urgent byte once the reader passes the mark,
        # so it cannot be read back with recv(MSG_OOB) here).
        assert got == pa + pb[:-1] + pc + pd + b"tail"
        assert counts == [len(pa), len(pb), len(pc), len(pd)]
        # Flags were passed per send and never leaked to neighbours: every sendmsg that carried
        # urgent/dontroute bytes carried only bytes of that send.
        assert b"".join(data for data, _ in a.calls) == pa + pb + pc + pd + b"tail"
        offset = 0
        spans = {"a": (0, len(pa))}
        spans["b"] = (spans["a"][1], spans["a"][1] + len(pb))
        spans["c"] = (spans["b"][1], spans["b"][1] + len(pc))
        spans["d"] = (spans["c"][1], spans["c"][1] + len(pd))
        for data, flags in a.calls:
            start, end = offset, offset + len(data)
            offset = end
            if flags & socket.MSG_OOB:
                assert spans["b"][0] <= start and end <= spans["b"][1]
            if flags & socket.MSG_DONTROUTE:
                assert spans["d"][0] <= start and end <= spans["d"][1]
            if spans["b"][0] <= start < spans["b"][1]:
                # MSG_OOB goes only on the call of b's last byte alone (issue 10 item 5: Linux
                # marks the last byte a call takes, so a short flagged call misplaces the mark).
                assert bool(flags & socket.MSG_OOB) == (start == spans["b"][1] - 1 == end - 1)
            if spans["d"][0] <= start < spans["d"][1]:
                assert flags & socket.MSG_DONTROUTE
            assert flags & socket.MSG_DONTWAIT  # never a blocking call (S5.10)
    finally:
        a.close()
        b.close()


async def test_MSG_DONTROUTE_on_a_datagram_socket() -> None:
    tx, rx = message_pair("udp4")
    try:
        assert await wsa_send(tx, [b"local", b"-only"], MSG_DONTROUTE) == 10
        async with asyncio.timeout(GUARD):
            assert await recv_messages(rx, 1) == [b"local-only"]
    finally:
        tx.close()
        rx.close()


# -- S5.10: blocking sockets and sockets with a timeout -------------------------------------------------


def socket_mode(sock: socket.socket) -> tuple[float | None, bool, int]:
    return sock.gettimeout(), sock.getblocking(), fcntl.fcntl(sock.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK


@pytest.mark.parametrize("timeout", [5.0, None], ids=["timeout-5s", "blocking"])
async def test_wsa_send_leaves_blocking_mode_and_timeout_alone_and_never_blocks(timeout: float | None) -> None:
    a, b = tcp_pair(bufsize=SMALL_BUF)
    try:
        fill_socket(a)  # MSG_DONTWAIT, before the timeout is set (a timeout socket polls first)
        a.settimeout(timeout)
        mode = socket_mode(a)
        assert mode[:2] == (timeout, True)
        # The peer is read only by this loop: a send that blocked (or polled for the socket's
        # timeout) could not finish and would raise or hang; the loop has to stay free.
        payloads = [pattern(400_000, 1), [b"x" * 10, pattern(300_000, 2)], b"end"]
        ovs = [wsa_send(a, p) for p in payloads]
        assert ovs[0].pending and ovs[1].pending
        assert socket_mode(a) == mode
        ticks = 0

        async def heartbeat() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        beat = asyncio.ensure_future(heartbeat())
        b.setblocking(False)
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(GUARD):
            while not all(ov.done() for ov in ovs):
                await loop.sock_recv(b, 1 << 20)
            counts = [await ov for ov in ovs]
        beat.cancel()
        with pytest.raises(asyncio.CancelledError):
            await beat
        assert counts == [400_000, 300_010, 3]
        assert ticks > 1  # the loop ran other tasks while the sends were pending
        assert socket_mode(a) == mode  # S5.10: unchanged after the sends, too
    finally:
        a.close()
        b.close()


async def test_wsa_send_on_a_datagram_socket_with_a_timeout() -> None:
    tx, rx = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        filler = fill_messages(tx)
        tx.settimeout(5.0)
        mode = socket_mode(tx)
        ov = wsa_send(tx, b"after the filler")
        assert ov.pending  # S5.10: the loop did not wait out the socket's timeout
        assert socket_mode(tx) == mode
        rx.setblocking(False)
        async with asyncio.timeout(GUARD):
            got = await recv_messages(rx, filler + 1)
            assert await ov == 16
        assert got[-1] == b"after the filler"
        assert socket_mode(tx) == mode
    finally:
        tx.close()
        rx.close()


# -- S2: multi-byte items and multi-dimensional views under forced partial writes ---------------


class TricklingSocket(socket.socket):
    """A real socket whose ``sendmsg`` hands the kernel only a few bytes at a time.

    Every third call pretends the kernel was full (EAGAIN), so the engine has to go back to
    the loop and wait for the writer. The byte counts are odd so that they split multi-byte
    items (an ``array('i')`` element is 4 bytes) and the rows of 2-D views.
    """

    caps: itertools.cycle[int]
    calls: int

    def sendmsg(self, buffers: Any, ancdata: Any = (), flags: int = 0, address: Any = None) -> int:
        self.calls += 1
        if self.calls % 3 == 0:
            raise BlockingIOError
        cap = next(self.caps)
        iov = []
        for buf in buffers:
            view = memoryview(buf).cast("B")
            if view.nbytes >= cap:
                iov.append(view[:cap])
                break
            iov.append(view)
            cap -= view.nbytes
        return super().sendmsg(iov, ancdata, flags)


def trickling_pair() -> tuple[TricklingSocket, socket.socket]:
    a, b = socket.socketpair()
    t = TricklingSocket(fileno=a.detach())
    t.caps = itertools.cycle([1, 3, 5, 7, 11, 13, 17, 2, 6, 1021])
    t.calls = 0
    return t, b


async def test_array_and_2d_memoryview_exact_under_forced_partial_writes() -> None:
    a, b = trickling_pair()
    try:
        ints = array.array("i", range(-500, 500))
        doubles = array.array("d", [i / 7 for i in range(300)])
        grid = memoryview(bytearray(pattern(60 * 37, 5))).cast("B", (60, 37))
        int_grid = memoryview(bytearray(pattern(4 * 12 * 9, 6))).cast("i", (12, 9))
        posts: list[list[Any]] = [[ints], [grid, doubles], [int_grid], [b"end", ints]]
        expected = [b"".join(memoryview(x).tobytes() for x in p) for p in posts]
        ovs = [wsa_send(a, p) for p in posts]
        async with asyncio.timeout(GUARD):
            got = await read_exactly(b, sum(map(len, expected)))
            counts = [await ov for ov in ovs]
        assert got == b"".join(expected)
        # gh-135862: the counts are bytes (nbytes), never items (len()).
        assert counts == [4000, 60 * 37 + 2400, 432, 4003]
        assert a.calls > 100  # the writes really were cut into many small pieces
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("kind", ["udp4", "unix-dgram"])
async def test_array_and_2d_memoryview_as_one_datagram(kind: str) -> None:
    tx, rx = message_pair(kind)
    try:
        ints = array.array("i", range(100))
        grid = memoryview(bytearray(pattern(8 * 5, 7))).cast("B", (8, 5))
        assert await wsa_send(tx, [ints, grid]) == 440
        async with asyncio.timeout(GUARD):
            assert await recv_messages(rx, 1) == [ints.tobytes() + grid.tobytes()]
    finally:
        tx.close()
        rx.close()


async def test_non_contiguous_views_are_WSAEFAULT() -> None:
    a, b = socket.socketpair()
    try:
        grid = memoryview(bytearray(100)).cast("B", (10, 10))
        for bad in (grid[::2], memoryview(array.array("i", range(10)))[::3]):
            with pytest.raises(WSAError) as info:
                wsa_send(a, [b"ok", bad])
            assert info.value.winerror == WSAErrorCode.WSAEFAULT
        b.setblocking(False)
        with pytest.raises(BlockingIOError):
            b.recv(10)
    finally:
        a.close()
        b.close()


def _raw_pair() -> tuple[socket.socket, socket.socket]:
    """Two raw IPv4 sockets of an experimental protocol (RFC 3692's 253) on loopback."""
    try:
        rx = socket.socket(socket.AF_INET, socket.SOCK_RAW, 253)
    except PermissionError:
        pytest.skip("raw sockets need CAP_NET_RAW")
    tx = socket.socket(socket.AF_INET, socket.SOCK_RAW, 253)
    rx.bind(("127.0.0.1", 0))
    rx.setblocking(False)
    return tx, rx


async def _raw_packets(rx: socket.socket, count: int) -> list[bytes]:
    """``count`` packets' payloads (a raw IPv4 socket receives the IP header too: 20 bytes)."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(GUARD):
        return [(await loop.sock_recv(rx, 70000))[20:] for _ in range(count)]


async def test_raw_socket_sends_are_one_packet_each_with_their_destinations() -> None:
    """S4.3, S8.7: a raw socket is message-oriented. Back-to-back sends are one packet each
    (never coalesced), a send may name its destination, and a packet over the limit is
    WSAEMSGSIZE with nothing sent. Raw sockets took the stream path: two sends went out as one
    packet, destinations were ignored (WSAENOTCONN unconnected), and no size was checked
    (adversarial pass)."""
    tx, rx = _raw_pair()
    with tx, rx:
        here = ("127.0.0.1", 0)
        assert max_message_size(tx) == 65535 - 20
        ovs = [wsa_send(tx, [b"first-", b"packet"], address=here), wsa_send(tx, [b"second"], address=here)]
        ovs.append(wsa_send(tx, [b"third"], address=here))
        assert [await ov for ov in ovs] == [12, 6, 5]
        assert await _raw_packets(rx, 3) == [b"first-packet", b"second", b"third"]
        with pytest.raises(WSAError) as info:
            wsa_send(tx, [bytes(65535 - 20 + 1)], address=here)
        assert info.value.winerror == WSAErrorCode.WSAEMSGSIZE and info.value.bytes_sent == 0
        tx.connect(here)
        ovs = [wsa_send(tx, [b"connected-", b"one"]), wsa_send(tx, [b"two"])]
        assert [await ov for ov in ovs] == [13, 3]
        assert await _raw_packets(rx, 2) == [b"connected-one", b"two"]


class _CountingSocket(socket.socket):
    """Counts ``sendmsg`` calls (the engine calls a subclass's own method)."""

    calls = 0

    def sendmsg(self, *args: Any) -> int:
        type(self).calls += 1
        return super().sendmsg(*args)


async def test_datagrams_to_a_full_af_unix_receiver_wait_without_spinning(tmp_path: Any) -> None:
    """S5.1, S8.7: an unconnected AF_UNIX datagram socket polls writable whatever its
    destination's queue holds, so datagrams queued for a full receiver were tried again on
    every loop iteration (a busy loop: half a core, adversarial pass). They now wait with a
    pause between tries, and all arrive in order once the receiver reads. Counted in loop
    iterations, not time: 200 iterations make about 200 tries with the writer, a handful here."""
    path = str(tmp_path / "rx")
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    tx = _CountingSocket(socket.AF_UNIX, socket.SOCK_DGRAM)
    with rx, tx:
        rx.bind(path)
        rx.setblocking(False)
        ovs = [wsa_send(tx, [b"%04d" % i, bytes(1000)], address=path) for i in range(400)]
        assert ovs[-1].pending  # the receiver's queue is full
        _CountingSocket.calls = 0
        for _ in range(200):
            await asyncio.sleep(0)
        assert _CountingSocket.calls < 50, _CountingSocket.calls
        got: list[bytes] = []
        async with asyncio.timeout(GUARD):
            while len(got) < len(ovs):
                try:
                    got.append(rx.recv(2000)[:4])
                except BlockingIOError:
                    await asyncio.sleep(0.001)
            assert [await ov for ov in ovs] == [1004] * len(ovs)
        assert got == [b"%04d" % i for i in range(len(ovs))]
