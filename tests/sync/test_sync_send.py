"""``wsa_send_sync``: WSASend's nonoverlapped semantics on real sockets of every kind (SPEC S4, S3).

Every socket kind of S5.10: TCP over IPv4 and IPv6, AF_UNIX stream, datagram and seqpacket, and
connected UDP over IPv4 and IPv6. Each claim is checked from the peer's side: what arrived, and
that nothing else did. A scripted socket appears only for the errnos Linux will not produce on
demand (ENOBUFS, ENOMEM, ENETDOWN, ENETRESET, ECONNABORTED). No test asserts a duration; the
timeouts here are hang guards, except the one socket timeout whose expiry is the behaviour under
test (WSAETIMEDOUT). The few ``async`` tests (S4.2: a nonoverlapped send never jumps the queue
of overlapped ones) run on asyncio and on uvloop.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import os
import select
import signal
import socket
import struct
import threading
import tracemalloc
import zlib
from array import array
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import wsasend
from tests.conftest import LOOP_FACTORIES
from tests.helpers import (
    SMALL_BUF,
    fill_socket,
    pattern,
    read_exactly,
    readable_now,
    recv_to_eof,
    tcp_pair,
    udp_pair,
)
from tests.transport.util import until
from wsasend import (
    MSG_DONTROUTE,
    MSG_OOB,
    MSG_PARTIAL,
    WSABUF,
    WSAError,
    WSAErrorCode,
    closesocket,
    connect_accepted_socket,
    max_message_size,
    remaining,
    wsa_send,
    wsa_send_sync,
)
from wsasend._buffers import IOV_MAX
from wsasend._sockutil import mark_shutdown

STREAM_KINDS = ["tcp4", "tcp6", "unix_stream"]
MESSAGE_KINDS = ["udp4", "udp6", "unix_dgram", "unix_seqpacket"]
ALL_KINDS = STREAM_KINDS + MESSAGE_KINDS
#: Hang guard for threads and blocking reads. Arbitrary, far above anything a pass needs.
GUARD = 30.0

Code = WSAErrorCode


# -- sockets ------------------------------------------------------------------------------------


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    """Every socket a test makes goes in here and is closed at the end."""
    made: list[socket.socket] = []
    yield made
    for s in made:
        s.close()


def make_pair(kind: str, made: list[socket.socket], *, small: bool = False) -> tuple[socket.socket, socket.socket]:
    """A connected (sender, receiver) pair of ``kind``; ``small`` gives 64 KiB buffers."""
    if kind in ("tcp4", "tcp6"):
        tx, rx = tcp_pair(socket.AF_INET if kind == "tcp4" else socket.AF_INET6, SMALL_BUF if small else None)
    elif kind in ("udp4", "udp6"):
        tx, rx = udp_pair(socket.AF_INET if kind == "udp4" else socket.AF_INET6)
    else:
        kinds = {"unix_stream": socket.SOCK_STREAM, "unix_dgram": socket.SOCK_DGRAM}
        tx, rx = socket.socketpair(socket.AF_UNIX, kinds.get(kind, socket.SOCK_SEQPACKET))
        if small:
            tx.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUF)
            rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUF)
    made += [tx, rx]
    return tx, rx


#: (family, type) of each kind, for sockets made without a peer.
KIND_ADDRESSING = {
    "tcp4": (socket.AF_INET, socket.SOCK_STREAM),
    "tcp6": (socket.AF_INET6, socket.SOCK_STREAM),
    "unix_stream": (socket.AF_UNIX, socket.SOCK_STREAM),
    "udp4": (socket.AF_INET, socket.SOCK_DGRAM),
    "udp6": (socket.AF_INET6, socket.SOCK_DGRAM),
    "unix_dgram": (socket.AF_UNIX, socket.SOCK_DGRAM),
    "unix_seqpacket": (socket.AF_UNIX, socket.SOCK_SEQPACKET),
}


def read_to_eof(rx: socket.socket) -> bytes:
    """Everything the peer can read until the sender's close (blocking, with a hang guard)."""
    return recv_to_eof(rx, GUARD)


def nothing_waiting(rx: socket.socket) -> bool:
    """True when the receiver has nothing queued (a nonblocking peek finds nothing)."""
    try:
        data = rx.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK)
    except BlockingIOError:
        return True
    # A stream's b"" is EOF (no data); a message socket's b"" is an empty datagram (data).
    return rx.type == socket.SOCK_STREAM and data == b""


def datagrams(rx: socket.socket) -> list[bytes]:
    """Every datagram waiting at the receiver, without blocking."""
    out = []
    while True:
        try:
            out.append(rx.recv(1 << 23, socket.MSG_DONTWAIT))
        except BlockingIOError:
            return out


class Reader(threading.Thread):
    """Reads ``rx`` to EOF in a thread, into memory or just counting with a CRC."""

    def __init__(self, rx: socket.socket, *, keep: bool = True) -> None:
        super().__init__(daemon=True)
        self.rx = rx
        self.keep = keep
        self.data = bytearray()
        self.count = 0
        self.crc = 0
        self.buf = bytearray(1 << 20)  # made here: the zero-copy test traces the thread too
        self.error: BaseException | None = None

    def run(self) -> None:
        view = memoryview(self.buf)
        try:
            self.rx.settimeout(GUARD)
            while True:
                n = self.rx.recv_into(view)
                if not n:
                    return
                self.count += n
                if self.keep:
                    self.data += view[:n]
                else:
                    self.crc = zlib.crc32(view[:n], self.crc)
        except BaseException as exc:  # pragma: no cover - reported by finish()
            self.error = exc

    def finish(self) -> None:
        self.join(GUARD)
        assert not self.is_alive(), "reader hung"
        assert self.error is None, self.error


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run ``fn`` in a thread; the dict gets "result" or "error"."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def wait_readable(rx: socket.socket) -> None:
    assert select.select([rx], [], [], GUARD)[0], "the peer never saw data"


class SpySocket(socket.socket):
    """A real socket that records every ``sendmsg``: (buffers offered, bytes offered, bytes taken)."""

    calls: list[tuple[int, int, int]]
    attempts: int

    def sendmsg(self, buffers: Any, *args: Any) -> int:
        buffers = list(buffers)
        if not hasattr(self, "calls"):
            self.calls, self.attempts = [], 0
        self.attempts += 1
        n = super().sendmsg(buffers, *args)
        self.calls.append((len(buffers), sum(memoryview(b).nbytes for b in buffers), n))
        return n


def spy_on(sock: socket.socket, made: list[socket.socket]) -> SpySocket:
    timeout = sock.gettimeout()
    spy = SpySocket(fileno=sock.detach())
    spy.settimeout(timeout)
    spy.calls, spy.attempts = [], 0
    made.append(spy)
    return spy


def gathered(payload: bytes, pieces: int) -> list[Any]:
    """``payload`` as ``pieces`` buffers of mixed kinds (bytes, bytearray, memoryview)."""
    step = max(1, len(payload) // pieces)
    view = memoryview(payload)
    out: list[Any] = []
    for i, start in enumerate(range(0, len(payload), step)):
        chunk = view[start : start + step]
        out.append(bytes(chunk) if i % 3 == 0 else bytearray(chunk) if i % 3 == 1 else chunk)
    return out


# -- blocking sends -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_wsa_send_sync_blocking_sends_everything_gathered(kind: str, sockets: list[socket.socket]) -> None:
    tx, rx = make_pair(kind, sockets)
    ints = array("i", [0x11223344, 0x55667788])
    bufs = [b"head|", bytearray(b"body|"), memoryview(b"xxview|yy")[2:-2], ints, WSABUF(3, b"endIGNORED")]
    want = b"head|body|view|" + ints.tobytes() + b"end"
    assert wsa_send_sync(tx, bufs) == len(want)
    assert tx.gettimeout() is None, "the caller's blocking mode is left alone (S5.10)"
    if kind in STREAM_KINDS:
        tx.shutdown(socket.SHUT_WR)
        assert read_to_eof(rx) == want
    else:
        assert datagrams(rx) == [want], "one send is one message, all its buffers gathered (S4.3)"


@pytest.mark.parametrize("kind", STREAM_KINDS)
def test_wsa_send_sync_blocking_retries_short_writes(kind: str, sockets: list[socket.socket]) -> None:
    # A socket with a timeout is blocking for the caller but sent to with MSG_DONTWAIT after a
    # poll, so the kernel's short writes are real here: they must be retried from the exact byte.
    tx, rx = make_pair(kind, sockets, small=True)
    tx.settimeout(GUARD)
    tx = spy_on(tx, sockets)
    payload = pattern(4 << 20, seed=3)
    reader = Reader(rx)
    reader.start()
    assert wsa_send_sync(tx, gathered(payload, 37)) == len(payload)
    tx.shutdown(socket.SHUT_WR)
    reader.finish()
    assert reader.data == payload, "every byte once, in order, after short writes"
    short = [c for c in tx.calls if c[2] < c[1]]
    assert short, "the kernel took less than offered at least once (else this proves nothing)"
    assert sum(c[2] for c in tx.calls) == len(payload)


@pytest.mark.parametrize("kind", STREAM_KINDS)
def test_wsa_send_sync_blocking_retries_short_writes_after_signals(kind: str, sockets: list[socket.socket]) -> None:
    # A plain blocking socket (no timeout): Linux returns a short count from a blocking sendmsg
    # when a signal interrupts it after some bytes went in. The reader thread signals this thread
    # while it reads, so such short writes happen for real, and each must resume at the exact byte.
    tx, rx = make_pair(kind, sockets, small=True)
    tx = spy_on(tx, sockets)
    assert tx.gettimeout() is None
    payload = pattern(16 << 20, seed=4)
    signals = [0]
    previous = signal.signal(signal.SIGUSR1, lambda *_: signals.__setitem__(0, signals[0] + 1))
    main = threading.get_ident()
    received = bytearray()

    def read_and_poke() -> None:
        rx.settimeout(GUARD)
        while True:
            chunk = rx.recv(SMALL_BUF)
            if not chunk:
                return
            received.extend(chunk)
            signal.pthread_kill(main, signal.SIGUSR1)

    reader, box = in_thread(read_and_poke)
    try:
        assert wsa_send_sync(tx, gathered(payload, 3)) == len(payload)
        tx.shutdown(socket.SHUT_WR)
        reader.join(GUARD)
        assert not reader.is_alive() and "error" not in box, box
    finally:
        # SIGUSR1's default action kills the process: never restore it under a live poker.
        signal.signal(signal.SIGUSR1, signal.SIG_IGN if reader.is_alive() else previous)
    assert received == payload, "every byte once, in order, across interrupted sendmsg calls"
    assert signals[0] > 0
    assert any(taken < offered for _, offered, taken in tx.calls), "no short write happened: proves nothing"


@pytest.mark.parametrize("kind", STREAM_KINDS)
def test_wsa_send_sync_blocking_splits_more_than_iov_max_buffers(kind: str, sockets: list[socket.socket]) -> None:
    tx, rx = make_pair(kind, sockets, small=True)
    tx = spy_on(tx, sockets)
    payload = pattern(3 * IOV_MAX * 100 + 17, seed=5)
    bufs = gathered(payload, 3 * IOV_MAX + 1)
    assert len(bufs) > 3 * IOV_MAX
    reader = Reader(rx)
    reader.start()
    assert wsa_send_sync(tx, bufs) == len(payload)
    tx.shutdown(socket.SHUT_WR)
    reader.finish()
    assert reader.data == payload
    assert len(tx.calls) >= 4 and all(count <= IOV_MAX for count, _, _ in tx.calls), "S2.3: <= IOV_MAX per sendmsg"


@pytest.mark.parametrize("kind", STREAM_KINDS)
def test_wsa_send_sync_timeout_is_WSAETIMEDOUT_with_exact_bytes_sent(kind: str, sockets: list[socket.socket]) -> None:
    tx, rx = make_pair(kind, sockets, small=True)
    tx.settimeout(0.3)  # the expiry is the behaviour under test, not a duration assertion
    payload = pattern(16 << 20, seed=7)
    with pytest.raises(WSAError) as info:
        wsa_send_sync(tx, gathered(payload, 5))
    err = info.value
    assert err.winerror is Code.WSAETIMEDOUT and err.errno == errno.ETIMEDOUT
    assert 0 < err.bytes_sent < len(payload)
    assert tx.gettimeout() == 0.3
    tx.close()
    got = read_to_eof(rx)
    assert len(got) == err.bytes_sent, "bytes_sent is exactly what the peer can read"
    assert got == payload[: err.bytes_sent]


@pytest.mark.parametrize("kind", ["unix_dgram", "unix_seqpacket"])
def test_wsa_send_sync_message_timeout_sends_nothing(kind: str, sockets: list[socket.socket]) -> None:
    tx, rx = make_pair(kind, sockets)
    filled = 0
    while True:  # fill the receiver's queue with datagrams
        try:
            tx.send(b"f" * 100, socket.MSG_DONTWAIT)
        except BlockingIOError:
            break
        filled += 1
    tx.settimeout(0.2)
    with pytest.raises(WSAError) as info:
        wsa_send_sync(tx, [b"never", b"sent"])
    assert info.value.winerror is Code.WSAETIMEDOUT and info.value.bytes_sent == 0
    assert datagrams(rx) == [b"f" * 100] * filled


# -- nonblocking sends --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", STREAM_KINDS)
def test_wsa_send_sync_nonblocking_partial_consumption_is_exact(kind: str, sockets: list[socket.socket]) -> None:
    tx, rx = make_pair(kind, sockets, small=True)
    tx.setblocking(False)
    payload = pattern(8 << 20, seed=11)
    bufs = gathered(payload, 9)
    sent = wsa_send_sync(tx, bufs)
    assert 0 < sent < len(payload), "the seed: only part of the application's buffers consumed"
    assert tx.gettimeout() == 0.0
    tail = remaining(bufs, sent)
    assert b"".join(tail) == payload[sent:], "remaining() is the exact tail"
    owners = {id(b) for b in bufs} | {id(payload)}
    assert all(id(v.obj) in owners for v in tail), "the tail views the caller's own buffers (zero-copy)"
    tx.close()
    got = read_to_eof(rx)
    assert len(got) == sent and got == payload[:sent], "the peer gets exactly the bytes reported"


@pytest.mark.parametrize("kind", STREAM_KINDS)
def test_wsa_send_sync_nonblocking_WSAEWOULDBLOCK_only_when_nothing_consumed(
    kind: str, sockets: list[socket.socket]
) -> None:
    tx, rx = make_pair(kind, sockets, small=True)
    tx.setblocking(False)
    filled = fill_socket(tx)
    taken = []
    # TCP may free a little room as in-flight segments are acknowledged: a send then takes
    # some bytes (a partial, > 0) and the next is refused. Never 0 returned, never a partial raise.
    for _ in range(1000):
        try:
            n = wsa_send_sync(tx, [b"y" * 3000, b"z" * 3000])
        except WSAError as exc:
            assert exc.winerror is Code.WSAEWOULDBLOCK and exc.bytes_sent == 0
            assert exc.errno == errno.EAGAIN
            break
        assert n > 0
        taken.append(n)
    else:  # pragma: no cover
        pytest.fail("the socket never filled")
    tx.close()
    got = read_to_eof(rx)
    assert len(got) == filled + sum(taken), "the refused send put nothing on the wire"


@pytest.mark.parametrize("kind", ["unix_dgram", "unix_seqpacket"])
def test_wsa_send_sync_nonblocking_message_is_all_or_WSAEWOULDBLOCK(kind: str, sockets: list[socket.socket]) -> None:
    tx, rx = make_pair(kind, sockets)
    tx.setblocking(False)
    filled = 0
    while True:
        try:
            wsa_send_sync(tx, [b"fill", bytes([filled % 256])])
        except WSAError as exc:
            assert exc.winerror is Code.WSAEWOULDBLOCK and exc.bytes_sent == 0
            break
        filled += 1
    assert filled > 0
    got = datagrams(rx)
    assert got == [b"fill" + bytes([i % 256]) for i in range(filled)], "whole datagrams only, never a part"
    assert wsa_send_sync(tx, [b"after", b"-drain"]) == 11
    assert datagrams(rx) == [b"after-drain"]


# -- message sockets: size ------------------------------------------------------------------------


def test_max_message_size_values(sockets: list[socket.socket]) -> None:
    udp4, _ = make_pair("udp4", sockets)
    udp6, _ = make_pair("udp6", sockets)
    assert max_message_size(udp4) == 65507
    assert max_message_size(udp6) == 65527
    for kind in ("unix_dgram", "unix_seqpacket"):
        tx, _ = make_pair(kind, sockets)
        for size in (4096, 65536, 200_000):
            tx.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
            sndbuf = tx.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
            assert max_message_size(tx) == sndbuf - 32
    for kind in STREAM_KINDS:
        tx, _ = make_pair(kind, sockets)
        assert max_message_size(tx) >= 2**32, "a stream has no message size"
    closed = socket.socket()
    closed.close()
    with pytest.raises(WSAError) as info:
        max_message_size(closed)
    assert info.value.winerror is Code.WSAENOTSOCK


@pytest.mark.parametrize("kind", ["unix_dgram", "unix_seqpacket"])
@pytest.mark.parametrize("sndbuf", [4096, 65536, 1 << 30])
def test_max_message_size_is_what_the_kernel_accepts(kind: str, sndbuf: int, sockets: list[socket.socket]) -> None:
    # SO_MAX_MSG_SIZE's promise: a message of max_message_size goes, one byte more is refused
    # before any syscall. 1 << 30 asks for the largest send buffer the system allows.
    tx, rx = make_pair(kind, sockets)
    tx.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    limit = max_message_size(tx)
    payload = pattern(limit, seed=13)
    assert wsa_send_sync(tx, [payload[:100], payload[100:]]) == limit
    assert datagrams(rx) == [payload]
    with pytest.raises(WSAError) as info:
        wsa_send_sync(tx, [payload, b"!"])
    assert info.value.winerror is Code.WSAEMSGSIZE
    assert datagrams(rx) == []


@pytest.mark.parametrize("kind", MESSAGE_KINDS)
def test_wsa_send_sync_WSAEMSGSIZE_before_any_syscall(kind: str, sockets: list[socket.socket]) -> None:
    tx, rx = make_pair(kind, sockets)
    if kind.startswith("unix"):
        tx.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    tx = spy_on(tx, sockets)
    limit = max_message_size(tx)
    too_big = [b"a" * (limit // 2), bytearray(b"b" * (limit - limit // 2)), b"!"]
    with pytest.raises(WSAError) as info:
        wsa_send_sync(tx, too_big)
    err = info.value
    assert err.winerror is Code.WSAEMSGSIZE and err.bytes_sent == 0 and err.errno is None
    assert tx.attempts == 0, "checked before any syscall (S4.3)"
    assert datagrams(rx) == [], "no data is transmitted"
    # The limit is exact: one byte less goes, whole.
    assert wsa_send_sync(tx, too_big[:2]) == limit
    assert datagrams(rx) == [b"a" * (limit // 2) + b"b" * (limit - limit // 2)]


@pytest.mark.parametrize("kind", MESSAGE_KINDS)
def test_wsa_send_sync_more_than_iov_max_buffers_is_still_one_datagram(kind: str, sockets: list[socket.socket]) -> None:
    tx, rx = make_pair(kind, sockets)
    bufs = [bytes([i % 251]) * 3 for i in range(IOV_MAX + 300)]
    assert wsa_send_sync(tx, bufs) == 3 * len(bufs)
    assert datagrams(rx) == [b"".join(bufs)], "S2.3: never WSAEMSGSIZE because of the count alone"


# -- flags --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", MESSAGE_KINDS)
def test_wsa_send_sync_MSG_PARTIAL_assembles_one_message(kind: str, sockets: list[socket.socket]) -> None:
    tx, rx = make_pair(kind, sockets)
    first = bytearray(b"he")
    assert wsa_send_sync(tx, [first, memoryview(b"ll")], MSG_PARTIAL) == 4
    first[:] = b"XX"  # the piece was copied: the caller's buffer is only borrowed (S4.5)
    assert datagrams(rx) == [], "a piece is not sent on its own"
    assert wsa_send_sync(tx, b"o ", MSG_PARTIAL) == 2
    assert wsa_send_sync(tx, [b"wor", b"ld"]) == 5, "the final send returns its own length"
    assert datagrams(rx) == [b"hello world"], "pieces, in order, as ONE message (S4.4)"
    assert wsa_send_sync(tx, b"next") == 4
    assert datagrams(rx) == [b"next"], "the message ended: nothing carried over"


@pytest.mark.parametrize("kind", MESSAGE_KINDS)
async def test_nonoverlapped_pieces_end_with_the_next_overlapped_send(kind: str, sockets: list[socket.socket]) -> None:
    """S4.4: pieces collect per socket, in order, whichever call made them. Nonoverlapped
    pieces were held apart from the engine's queue: an overlapped send went out alone and the
    pieces were glued to the next nonoverlapped message, after it."""
    tx, rx = make_pair(kind, sockets)
    tx.setblocking(False)
    assert wsa_send_sync(tx, b"A-", MSG_PARTIAL) == 2
    assert await wsa_send(tx, [b"B"]) == 1, "the overlapped send ends the message, its own count"
    assert wsa_send_sync(tx, b"C") == 1
    assert datagrams(rx) == [b"A-B", b"C"]
    assert wsa_send_sync(tx, b"x", MSG_PARTIAL) == 1
    piece = wsa_send(tx, [b"y"], MSG_PARTIAL)  # an overlapped piece continues the same message
    end = wsa_send(tx, [b"z"])
    assert (await piece, await end) == (1, 1)
    assert datagrams(rx) == [b"xyz"]


@pytest.mark.parametrize("kind", MESSAGE_KINDS)
def test_wsa_send_sync_MSG_PARTIAL_too_large_fails_the_whole_message(kind: str, sockets: list[socket.socket]) -> None:
    tx, rx = make_pair(kind, sockets)
    limit = max_message_size(tx)
    assert wsa_send_sync(tx, b"p" * (limit - 10), MSG_PARTIAL) == limit - 10
    with pytest.raises(WSAError) as info:
        wsa_send_sync(tx, b"q" * 11)
    assert info.value.winerror is Code.WSAEMSGSIZE and info.value.bytes_sent == 0
    assert datagrams(rx) == []
    assert wsa_send_sync(tx, b"fresh") == 5
    assert datagrams(rx) == [b"fresh"], "the refused message's pieces are gone"


@pytest.mark.parametrize(("kind", "total"), [("udp4", 60_000), ("unix_seqpacket", 150_000)])
def test_wsa_send_sync_MSG_PARTIAL_copy_is_the_only_copy(kind: str, total: int, sockets: list[socket.socket]) -> None:
    tx, rx = make_pair(kind, sockets)
    if kind == "unix_seqpacket":
        tx.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 2 * total)
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2 * total)
    payload = pattern(total, seed=17)
    view = memoryview(payload)
    # One big piece (a second copy of it would show), small ones, and a small final piece.
    cuts = [0, total * 16 // 20, total * 17 // 20, total * 18 // 20, total * 19 // 20, total]
    pieces = [view[a:b] for a, b in itertools.pairwise(cuts)]
    wsa_send_sync(tx, b"warm-up")  # first-call allocations (locks, registries) are not the payload's
    assert datagrams(rx) == [b"warm-up"]
    tracemalloc.start()
    try:
        for piece in pieces[:-1]:
            wsa_send_sync(tx, piece, MSG_PARTIAL)
        wsa_send_sync(tx, pieces[-1])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert datagrams(rx) == [payload]
    # The pieces are copied once into the message being assembled (S4.5): the peak holds that
    # copy (>= the pieces, plus bytearray's growth slack), and never a second copy of the big
    # piece or of the whole message (the final send gathers without joining).
    pieces_bytes = total - len(pieces[-1])
    assert pieces_bytes <= peak < pieces_bytes * 1.3, (peak, pieces_bytes)


@pytest.mark.parametrize("kind", STREAM_KINDS)
def test_wsa_send_sync_MSG_PARTIAL_on_stream_is_WSAEOPNOTSUPP(kind: str, sockets: list[socket.socket]) -> None:
    tx, rx = make_pair(kind, sockets)
    with pytest.raises(WSAError) as info:
        wsa_send_sync(tx, b"never", MSG_PARTIAL)
    assert info.value.winerror is Code.WSAEOPNOTSUPP and info.value.bytes_sent == 0
    assert wsa_send_sync(tx, b"marker") == 6
    tx.shutdown(socket.SHUT_WR)
    assert read_to_eof(rx) == b"marker", "nothing of the refused send reached the peer"


@pytest.mark.parametrize("kind", ["tcp4", "tcp6"])
def test_wsa_send_sync_MSG_OOB_on_TCP_sends_urgent_data(kind: str, sockets: list[socket.socket]) -> None:
    tx, rx = make_pair(kind, sockets)
    assert wsa_send_sync(tx, [b"ab", b"!"], MSG_OOB) == 3
    assert select.select([], [], [rx], GUARD)[2], "the peer sees urgent data"
    assert rx.recv(1, socket.MSG_OOB) == b"!", "the last byte is TCP's urgent byte"
    tx.shutdown(socket.SHUT_WR)
    assert read_to_eof(rx) == b"ab"


@pytest.mark.parametrize("kind", MESSAGE_KINDS)
def test_wsa_send_sync_MSG_OOB_on_message_socket_is_WSAEOPNOTSUPP(kind: str, sockets: list[socket.socket]) -> None:
    tx, rx = make_pair(kind, sockets)
    with pytest.raises(WSAError) as info:
        wsa_send_sync(tx, b"urgent?", MSG_OOB)
    assert info.value.winerror is Code.WSAEOPNOTSUPP and info.value.bytes_sent == 0
    assert datagrams(rx) == []


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_wsa_send_sync_MSG_DONTROUTE_passes(kind: str, sockets: list[socket.socket]) -> None:
    tx, rx = make_pair(kind, sockets)
    assert wsa_send_sync(tx, [b"local", b"-only"], MSG_DONTROUTE) == 10
    if kind in STREAM_KINDS:
        tx.shutdown(socket.SHUT_WR)
        assert read_to_eof(rx) == b"local-only"
    else:
        assert datagrams(rx) == [b"local-only"]


@pytest.mark.parametrize("kind", ["tcp4", "unix_stream", "udp6", "unix_seqpacket"])
@pytest.mark.parametrize("flags", [0x2, 0x10, 0x20, 0x10000, MSG_PARTIAL | 0x2, -1, 1 << 40])
def test_wsa_send_sync_unknown_flag_bits_are_WSAEOPNOTSUPP(kind: str, flags: int, sockets: list[socket.socket]) -> None:
    tx, rx = make_pair(kind, sockets)
    tx = spy_on(tx, sockets)
    with pytest.raises(WSAError) as info:
        wsa_send_sync(tx, b"never", flags)
    assert info.value.winerror is Code.WSAEOPNOTSUPP and info.value.bytes_sent == 0
    assert tx.attempts == 0 and nothing_waiting(rx), "nothing is sent (S4.1)"


@pytest.mark.parametrize("flags", [None, "1", 1.0, True])
def test_wsa_send_sync_non_int_flags_are_WSAEINVAL(flags: object, sockets: list[socket.socket]) -> None:
    tx, rx = make_pair("unix_stream", sockets)
    with pytest.raises(WSAError) as info:
        wsa_send_sync(tx, b"never", flags)  # type: ignore[arg-type]
    assert info.value.winerror is Code.WSAEINVAL
    assert nothing_waiting(rx)


@pytest.mark.parametrize("kind", ["tcp6", "unix_stream", "udp4", "unix_dgram"])
def test_wsa_send_sync_bad_buffer_is_WSAEFAULT_and_sends_nothing(kind: str, sockets: list[socket.socket]) -> None:
    tx, rx = make_pair(kind, sockets)
    tx = spy_on(tx, sockets)
    for bad in ([b"good", "text"], [b"good", memoryview(b"abcdef")[::2]], [WSABUF(9, b"short")], None, 7):
        with pytest.raises(WSAError) as info:
            wsa_send_sync(tx, bad)
        assert info.value.winerror is Code.WSAEFAULT and info.value.bytes_sent == 0
    assert tx.attempts == 0 and nothing_waiting(rx), "nothing of that call is sent (S2.2)"


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_wsa_send_sync_zero_bytes(kind: str, sockets: list[socket.socket]) -> None:
    tx, rx = make_pair(kind, sockets)
    assert wsa_send_sync(tx, []) == 0
    assert wsa_send_sync(tx, [b"", bytearray()]) == 0
    if kind in STREAM_KINDS:
        assert nothing_waiting(rx)
    else:
        assert datagrams(rx) == [b"", b""], "a datagram send of nothing is one empty datagram (S2.4)"


# -- errors: shutdown, reset, not connected, not a socket ----------------------------------------


def _wait_for_error(sock: socket.socket) -> None:
    poller = select.poll()
    poller.register(sock, select.POLLERR | select.POLLHUP)
    assert poller.poll(GUARD * 1000), "the reset never arrived"


@pytest.mark.parametrize("kind", ["tcp4", "tcp6"])
@pytest.mark.parametrize("how", [socket.SHUT_WR, socket.SHUT_RDWR])
def test_wsa_send_sync_after_local_shutdown_is_WSAESHUTDOWN(kind: str, how: int, sockets: list[socket.socket]) -> None:
    tx, rx = make_pair(kind, sockets)
    assert wsa_send_sync(tx, b"before") == 6
    tx.shutdown(how)  # behind the package's back: TCP_INFO still tells (S3.3)
    with pytest.raises(WSAError) as info:
        wsa_send_sync(tx, b"after")
    err = info.value
    assert err.winerror is Code.WSAESHUTDOWN and err.errno == errno.EPIPE and err.bytes_sent == 0
    assert isinstance(err.__cause__, OSError)
    assert read_to_eof(rx) == b"before"


@pytest.mark.parametrize("kind", ["tcp4", "tcp6"])
def test_wsa_send_sync_after_peer_reset_is_WSAECONNRESET(kind: str, sockets: list[socket.socket]) -> None:
    tx, rx = make_pair(kind, sockets)
    assert wsa_send_sync(tx, b"hello") == 5
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    rx.close()  # unread data + linger 0: the peer resets the connection
    _wait_for_error(tx)
    with pytest.raises(WSAError) as first:
        wsa_send_sync(tx, b"x")
    assert first.value.winerror is Code.WSAECONNRESET and first.value.errno == errno.ECONNRESET
    # Linux now says EPIPE, as it does after a local shutdown: the state tells them apart.
    with pytest.raises(WSAError) as second:
        wsa_send_sync(tx, b"x")
    assert second.value.winerror is Code.WSAECONNRESET and second.value.errno == errno.EPIPE


@pytest.mark.parametrize("kind", ["unix_stream", "unix_dgram", "unix_seqpacket"])
def test_wsa_send_sync_unix_shutdown_tracked_vs_behind_our_back(kind: str, sockets: list[socket.socket]) -> None:
    # A shutdown made through the package is tracked: WSAESHUTDOWN. One made behind its back on
    # a non-TCP socket cannot be told from a reset (both EPIPE): the S3.3 caveat, WSAECONNRESET.
    tracked, _ = make_pair(kind, sockets)
    tracked.shutdown(socket.SHUT_WR)
    mark_shutdown(tracked)  # what the package's own shutdown paths do (transport, winsock.shutdown)
    with pytest.raises(WSAError) as info:
        wsa_send_sync(tracked, b"x")
    assert info.value.winerror is Code.WSAESHUTDOWN and info.value.errno == errno.EPIPE
    untracked, _ = make_pair(kind, sockets)
    untracked.shutdown(socket.SHUT_WR)
    with pytest.raises(WSAError) as info:
        wsa_send_sync(untracked, b"x")
    assert info.value.winerror is Code.WSAECONNRESET and info.value.errno == errno.EPIPE


@pytest.mark.parametrize(
    ("kind", "code"),
    [("unix_stream", Code.WSAECONNRESET), ("unix_seqpacket", Code.WSAECONNRESET), ("unix_dgram", Code.WSAENOTCONN)],
    ids=["unix_stream-WSAECONNRESET", "unix_seqpacket-WSAECONNRESET", "unix_dgram-WSAENOTCONN"],
)
def test_wsa_send_sync_unix_peer_closed(kind: str, code: WSAErrorCode, sockets: list[socket.socket]) -> None:
    # A connection's peer that went away reset it; a datagram socket's peer that went away
    # leaves it with no peer at all (Linux: ENOTCONN).
    tx, rx = make_pair(kind, sockets)
    rx.close()
    with pytest.raises(WSAError) as info:
        wsa_send_sync(tx, b"x")
    assert info.value.winerror is code and info.value.bytes_sent == 0


@pytest.mark.parametrize("blocking", [True, False], ids=["blocking", "nonblocking"])
@pytest.mark.parametrize("kind", [*ALL_KINDS, "tcp4_listening", "tcp4_bound"])
def test_wsa_send_sync_unconnected_is_WSAENOTCONN(kind: str, blocking: bool, sockets: list[socket.socket]) -> None:
    sock = socket.socket(*KIND_ADDRESSING["tcp4" if kind.startswith("tcp4_") else kind])
    sockets.append(sock)
    if kind.startswith("tcp4_"):
        sock.bind(("127.0.0.1", 0))
        if kind == "tcp4_listening":
            sock.listen(1)
    sock.setblocking(blocking)
    with pytest.raises(WSAError) as info:
        wsa_send_sync(sock, [b"nobody", b"there"])
    assert info.value.winerror is Code.WSAENOTCONN, info.value
    assert info.value.bytes_sent == 0


def test_wsa_send_sync_closed_socket_is_WSAENOTSOCK(sockets: list[socket.socket]) -> None:
    for kind in ALL_KINDS:
        tx, _ = make_pair(kind, sockets)
        tx.close()
        with pytest.raises(WSAError) as info:
            wsa_send_sync(tx, b"x")
        assert info.value.winerror is Code.WSAENOTSOCK and info.value.errno == errno.EBADF, kind
    closed = socket.socket()
    closed.close()
    with pytest.raises(WSAError) as info:
        closesocket(closed)
    assert info.value.winerror is Code.WSAENOTSOCK


@pytest.mark.parametrize("thing", [3, None, "sock", b"bytes"], ids=["int", "None", "str", "bytes"])
def test_wsa_send_sync_non_socket_is_WSAENOTSOCK(thing: object) -> None:
    with pytest.raises(WSAError) as info:
        wsa_send_sync(thing, b"x")  # type: ignore[arg-type]
    assert info.value.winerror is Code.WSAENOTSOCK


def test_wsa_send_sync_descriptor_that_is_not_a_socket_is_WSAENOTSOCK(sockets: list[socket.socket]) -> None:
    # A socket object whose descriptor was replaced by a pipe's: the kernel says ENOTSOCK.
    read_end, write_end = os.pipe()
    try:
        sock = socket.socket()
        sockets.append(sock)
        os.dup2(write_end, sock.fileno())
        with pytest.raises(WSAError) as info:
            wsa_send_sync(sock, b"x")
        assert info.value.winerror is Code.WSAENOTSOCK and info.value.errno == errno.ENOTSOCK
        os.set_blocking(read_end, False)
        with pytest.raises(BlockingIOError):
            os.read(read_end, 1)
    finally:
        os.close(read_end)
        os.close(write_end)


# -- WSAEACCES: broadcast without SO_BROADCAST ---------------------------------------------------


@pytest.mark.parametrize("how", ["SO_DONTROUTE", "MSG_DONTROUTE"])
def test_wsa_send_sync_broadcast_without_SO_BROADCAST_is_WSAEACCES(how: str, sockets: list[socket.socket]) -> None:
    # Linux checks SO_BROADCAST when it looks the route up: at connect() (which refuses a
    # broadcast peer outright) and on each send that bypasses the socket's cached route, as
    # SO_DONTROUTE / MSG_DONTROUTE sends do. 127.255.255.255 is lo's broadcast address.
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sockets.append(rx)
    rx.bind(("0.0.0.0", 0))
    port = rx.getsockname()[1]
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sockets.append(tx)
    tx.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    tx.connect(("127.255.255.255", port))
    tx.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 0)
    flags = 0
    if how == "SO_DONTROUTE":
        tx.setsockopt(socket.SOL_SOCKET, socket.SO_DONTROUTE, 1)
    else:
        flags = MSG_DONTROUTE
    with pytest.raises(WSAError) as info:
        wsa_send_sync(tx, b"to everyone", flags)
    assert info.value.winerror is Code.WSAEACCES and info.value.errno == errno.EACCES
    assert info.value.bytes_sent == 0
    assert datagrams(rx) == []
    # With the flag set the same send goes out (so the refusal above was the flag's doing).
    tx.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    assert wsa_send_sync(tx, b"to everyone", flags) == 11
    rx.settimeout(GUARD)
    assert rx.recv(100) == b"to everyone"


# -- threads: WSAEINTR and WSAEINPROGRESS ---------------------------------------------------------


@pytest.mark.parametrize("kind", ["tcp4", "unix_stream"])
def test_closesocket_interrupts_a_blocking_send_with_WSAEINTR(kind: str, sockets: list[socket.socket]) -> None:
    tx, rx = make_pair(kind, sockets, small=True)
    payload = pattern(32 << 20, seed=19)  # far more than the socket buffers hold: it must block
    thread, box = in_thread(lambda: wsa_send_sync(tx, memoryview(payload)))
    wait_readable(rx)  # the send has started (and holds the socket) ...
    closesocket(tx)  # ... and is blocked: close it from this thread
    thread.join(GUARD)
    assert not thread.is_alive(), "the blocked send was not woken"
    err = box.get("error")
    assert isinstance(err, WSAError), box
    assert err.winerror is Code.WSAEINTR, err
    assert 0 < err.bytes_sent < len(payload)
    got = read_to_eof(rx)
    assert len(got) == err.bytes_sent and got == payload[: err.bytes_sent], "bytes_sent is exact"


@pytest.mark.parametrize("base", list(LOOP_FACTORIES))
def test_closesocket_wakes_a_blocking_send_in_a_loops_thread_before_it_waits_for_that_loop(
    base: str, sockets: list[socket.socket]
) -> None:
    """S3.4, S6.1: the blocked send runs in the thread of the loop whose transport lives on the
    socket. closesocket has that loop end the transport (in its thread, engines not being
    thread-safe) and waited up to 5 s for it before waking the send that blocked that very
    loop; the transport ended only after closesocket had returned (adversarial pass, every
    run). Now the send is woken first: the loop runs the transport's end before closesocket
    returns."""
    tx, rx = make_pair("unix_stream", sockets, small=True)
    payload = pattern(32 << 20, seed=23)
    loop = LOOP_FACTORIES[base]()
    made: list[Any] = []

    async def block_the_loop() -> int:
        transport, _ = await wsasend.connect_accepted_socket(asyncio.Protocol, tx)
        made.append(transport)
        tx.setblocking(True)  # (the transport set it nonblocking, as asyncio's does; S5.10)
        return wsa_send_sync(tx, memoryview(payload))  # (blocks this loop's thread)

    thread, box = in_thread(lambda: loop.run_until_complete(block_the_loop()))
    try:
        wait_readable(rx)  # the send has started (and holds the socket) ...
        closesocket(tx)  # ... and is blocked: close it from this thread
        ended_in_time = made[0].is_closing()
        thread.join(GUARD)
        assert not thread.is_alive(), "the blocked send was not woken"
        assert ended_in_time, "closesocket returned before the loop ended the transport"
        err = box.get("error")
        assert isinstance(err, WSAError) and err.winerror is Code.WSAEINTR, box
        got = read_to_eof(rx)
        assert got == payload[: err.bytes_sent], "bytes_sent is exact"
        loop.run_until_complete(asyncio.sleep(0))  # (the transport's connection_lost)
        assert made[0].get_protocol() is None
    finally:
        loop.close()


@pytest.mark.parametrize("kind", ["tcp4", "unix_stream"])
def test_wsa_send_sync_while_another_threads_send_blocks_is_WSAEINPROGRESS(
    kind: str, sockets: list[socket.socket]
) -> None:
    tx, rx = make_pair(kind, sockets, small=True)
    payload = pattern(4 << 20, seed=23)
    thread, box = in_thread(lambda: wsa_send_sync(tx, gathered(payload, 3)))
    wait_readable(rx)  # the other thread's send is in progress (it cannot fit: it blocks)
    with pytest.raises(WSAError) as info:
        wsa_send_sync(tx, b"INTRUDER")
    assert info.value.winerror is Code.WSAEINPROGRESS and info.value.bytes_sent == 0
    reader = Reader(rx)
    reader.start()
    thread.join(GUARD)
    assert box.get("result") == len(payload), box
    tx.shutdown(socket.SHUT_WR)
    reader.finish()
    assert reader.data == payload, "the refused send did not interleave with the one in progress"


# -- S4.2: a nonoverlapped send never jumps the overlapped queue (both loops) -------------------


async def test_wsa_send_sync_in_the_loop_thread_refuses_while_overlapped_sends_pend(
    sockets: list[socket.socket],
) -> None:
    tx, rx = make_pair("tcp4", sockets, small=True)
    payload = pattern(2 << 20, seed=29)
    ov = wsa_send(tx, memoryview(payload))
    assert ov.pending
    with pytest.raises(WSAError) as info:
        wsa_send_sync(tx, b"JUMP")  # the loop's own thread must never block
    assert info.value.winerror is Code.WSAEWOULDBLOCK and info.value.bytes_sent == 0
    got = await asyncio.wait_for(read_exactly(rx, len(payload)), GUARD)
    assert await ov == len(payload)
    assert got == payload, "nothing of the refused send got in between"
    assert wsa_send_sync(tx, b"after") == 5, "once the queue drained, the nonoverlapped send goes"
    assert await asyncio.wait_for(read_exactly(rx, 5), GUARD) == b"after"


@pytest.mark.parametrize("blocking", [True, False], ids=["blocking", "nonblocking"])
async def test_wsa_send_sync_from_another_thread_waits_its_turn_or_refuses(
    blocking: bool, sockets: list[socket.socket]
) -> None:
    tx, rx = make_pair("unix_stream", sockets, small=True)
    tx.setblocking(blocking)
    payload = pattern(2 << 20, seed=31)
    ov = wsa_send(tx, memoryview(payload))
    assert ov.pending
    other = asyncio.ensure_future(asyncio.to_thread(wsa_send_sync, tx, [b"TA", b"IL"]))
    if blocking:
        # A blocking socket in another thread waits for the pending sends, then goes after them.
        got = await asyncio.wait_for(read_exactly(rx, len(payload) + 4), GUARD)
        assert got == payload + b"TAIL"
        assert await asyncio.wait_for(other, GUARD) == 4
    else:
        with pytest.raises(WSAError) as info:
            await asyncio.wait_for(other, GUARD)
        assert info.value.winerror is Code.WSAEWOULDBLOCK and info.value.bytes_sent == 0
        got = await asyncio.wait_for(read_exactly(rx, len(payload)), GUARD)
        assert got == payload
    assert await ov == len(payload)


# -- errnos Linux will not produce on demand: a scripted socket ----------------------------------


class ScriptedSocket(socket.socket):
    """A real, unconnected AF_UNIX socket whose ``sendmsg`` follows a script, not the kernel.

    Each step is a byte count the "kernel" takes, or an exception it raises. Only for the
    errnos of S3.3 that Linux will not produce on demand.
    """

    script: list[int | BaseException]
    offered: list[bytes]

    def sendmsg(self, buffers: Any, *args: Any) -> int:
        data = b"".join(bytes(b) for b in buffers)
        self.offered.append(data)
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        return min(step, len(data))


def scripted(kind: int, script: list[int | BaseException], made: list[socket.socket]) -> ScriptedSocket:
    sock = ScriptedSocket(socket.AF_UNIX, kind)
    sock.script, sock.offered = list(script), []
    made.append(sock)
    return sock


SCRIPTED_ERRNOS = [
    (errno.ENOBUFS, Code.WSAENOBUFS),
    (errno.ENOMEM, Code.WSAENOBUFS),
    (errno.ENETDOWN, Code.WSAENETDOWN),
    (errno.ENETRESET, Code.WSAENETRESET),
    (errno.ECONNABORTED, Code.WSAECONNABORTED),
]
SCRIPTED_IDS = [f"{code.name}-{errno.errorcode[err]}" for err, code in SCRIPTED_ERRNOS]


@pytest.mark.parametrize(
    ("err", "code"), SCRIPTED_ERRNOS, ids=[c.name + "-" + errno.errorcode[e] for e, c in SCRIPTED_ERRNOS]
)
def test_wsa_send_sync_scripted_errnos_stream(err: int, code: WSAErrorCode, sockets: list[socket.socket]) -> None:
    cause = OSError(err, os.strerror(err))
    sock = scripted(socket.SOCK_STREAM, [3, 4, cause], sockets)
    with pytest.raises(WSAError) as info:
        wsa_send_sync(sock, [b"abcde", b"fghij"])
    exc = info.value
    assert exc.winerror is code and exc.errno == err
    assert exc.bytes_sent == 7, "what the kernel took before the failure, exactly"
    assert exc.__cause__ is cause
    assert sock.offered == [b"abcdefghij", b"defghij", b"hij"], "each retry resumes at the exact byte"


@pytest.mark.parametrize(
    ("err", "code"), SCRIPTED_ERRNOS, ids=[c.name + "-" + errno.errorcode[e] for e, c in SCRIPTED_ERRNOS]
)
def test_wsa_send_sync_scripted_errnos_message(err: int, code: WSAErrorCode, sockets: list[socket.socket]) -> None:
    sock = scripted(socket.SOCK_DGRAM, [OSError(err, os.strerror(err))], sockets)
    with pytest.raises(WSAError) as info:
        wsa_send_sync(sock, [b"one", b"datagram"])
    assert info.value.winerror is code and info.value.errno == err and info.value.bytes_sent == 0


def test_wsa_send_sync_retries_EINTR(sockets: list[socket.socket]) -> None:
    sock = scripted(socket.SOCK_STREAM, [InterruptedError(errno.EINTR, "signal"), 2, 100], sockets)
    assert wsa_send_sync(sock, b"abcdef") == 6, "EINTR is retried, never surfaced (S3.3)"
    assert sock.offered == [b"abcdef", b"abcdef", b"cdef"]


def test_wsa_send_sync_retries_a_stale_ECONNREFUSED_once(sockets: list[socket.socket]) -> None:
    # Real: a connected UDP socket whose peer port is closed gets an ICMP port-unreachable,
    # which Linux reports on the next send. Windows retries once, and so do we (S3.3).
    gone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    gone.bind(("127.0.0.1", 0))
    address = gone.getsockname()
    gone.close()
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sockets.append(tx)
    tx.connect(address)
    poller = select.poll()
    poller.register(tx, select.POLLERR)
    for _ in range(int(GUARD)):  # ICMP may be rate-limited when other tests make much of it
        try:
            tx.send(b"probe")
        except ConnectionRefusedError:
            continue  # the error of an earlier probe: it is consumed, probe again
        if poller.poll(1000):
            break
    else:  # pragma: no cover
        pytest.fail("no ICMP port-unreachable came back")
    tx = spy_on(tx, sockets)
    assert wsa_send_sync(tx, b"second") == 6
    assert tx.attempts == 2, "the first attempt met the stale ECONNREFUSED and was retried"
    refused = scripted(socket.SOCK_DGRAM, [ConnectionRefusedError(errno.ECONNREFUSED, "x")] * 2, sockets)
    with pytest.raises(WSAError) as info:
        wsa_send_sync(refused, b"z")
    assert info.value.winerror is Code.WSAECONNREFUSED and len(refused.offered) == 2, "once, not forever"


# -- zero-copy --------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["one-view", "many-views"])
def test_wsa_send_sync_256_MiB_is_zero_copy(shape: str, sockets: list[socket.socket]) -> None:
    tx, rx = make_pair("unix_stream", sockets)
    size = 256 << 20
    payload = bytearray(size)
    payload[::4096] = bytes(range(256)) * (size // 4096 // 256)  # something to check, cheaply
    crc = zlib.crc32(payload)
    view = memoryview(payload)
    bufs: Any = view if shape == "one-view" else [view[i : i + (1 << 16)] for i in range(0, size, 1 << 16)]
    reader = Reader(rx, keep=False)
    tracemalloc.start()
    try:
        reader.start()
        assert wsa_send_sync(tx, bufs) == size
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    tx.shutdown(socket.SHUT_WR)
    reader.finish()
    assert reader.count == size and reader.crc == crc
    assert peak < 4 << 20, f"peak {peak} bytes: a copy of the payload was made"


@pytest.mark.parametrize("kind", ["unix_seqpacket", "udp4", "cork"])
async def test_a_sync_send_never_jumps_or_waits_for_ever_behind_open_pieces(
    kind: str, sockets: list[socket.socket]
) -> None:
    """S4.2, S4.4: overlapped MSG_PARTIAL pieces wait for the send that ends them, which only
    an overlapped send can be. A blocking wsa_send_sync in another thread went first (its own
    datagram before the message; on a cork stream its bytes before the pieces'), or, when the
    engine owned the socket, waited for it to let go, for ever."""
    if kind == "cork":
        tx, rx = make_pair("unix_stream", sockets)
        transport, _ = await connect_accepted_socket(asyncio.Protocol, tx, partial_messages="cork")
        piece = transport.send(b"piece", MSG_PARTIAL)
    else:
        tx, rx = make_pair(kind, sockets)
        piece = wsa_send(tx, [b"piece"], MSG_PARTIAL)
    assert piece.pending
    tx.setblocking(True)
    with pytest.raises(WSAError) as info:
        await asyncio.wait_for(asyncio.to_thread(wsa_send_sync, tx, b"+sync"), GUARD)
    assert info.value.winerror is Code.WSAEWOULDBLOCK and info.value.bytes_sent == 0
    # The overlapped send that ends them: nothing of the refused send got in.
    tx.setblocking(False)
    end = transport.send(b"+end") if kind == "cork" else wsa_send(tx, [b"+end"])
    assert (await piece, await end) == (5, 4)
    if kind == "cork":
        assert await asyncio.wait_for(read_exactly(rx, 9), GUARD) == b"piece+end"
        transport.close()
    else:
        assert datagrams(rx) == [b"piece+end"]


async def test_a_threads_next_blocking_send_is_woken_after_the_overlapped_send_behind_it(
    sockets: list[socket.socket],
) -> None:
    """S4.2, S5.11: thread T's blocking send owns the socket; an overlapped send queues behind
    it; T's next blocking send must go once that one is out. The engine waiting for the socket
    was never asked to let go again (only an owner was), so it claimed the socket, sent, went
    idle and kept it, and T waited for ever: 9-10 rounds in 10 on each loop and build."""
    from wsasend._api import slot_for

    for round_ in range(10):
        tx, rx = make_pair("unix_stream", sockets, small=True)
        big, middle, tail = pattern(1 << 20, round_), b"<overlapped>", b"<T's second>"
        results: list[int] = []

        def sender(tx: socket.socket = tx, big: bytes = big, tail: bytes = tail, results: list[int] = results) -> None:
            results.append(wsa_send_sync(tx, big))
            results.append(wsa_send_sync(tx, tail))

        thread = threading.Thread(target=sender, daemon=True)
        thread.start()
        slot = slot_for(tx)

        def owned(slot: Any = slot) -> bool:
            return bool(slot.sync_owner)

        await until(owned)  # T owns it, blocked in sendmsg
        ov = wsa_send(tx, [middle])
        assert ov.pending, "queued behind the blocking send (S4.2)"
        got = await asyncio.wait_for(read_exactly(rx, len(big) + len(middle) + len(tail)), GUARD)
        await asyncio.to_thread(thread.join, GUARD)
        assert not thread.is_alive(), f"round {round_}: T's second send never went"
        assert got == big + middle + tail and results == [len(big), len(tail)]
        assert await ov == len(middle)


@pytest.mark.parametrize("kind", ["unix_stream", "tcp4", "unix_seqpacket"])
def test_wsa_send_sync_SO_SNDTIMEO_bounds_the_call(kind: str, sockets: list[socket.socket]) -> None:
    """S4.2: SO_SNDTIMEO bounds a blocking send as settimeout() does, WSAETIMEDOUT with what
    went. It was ignored: the send looped on the kernel's EAGAIN until the peer read."""
    tx, rx = make_pair(kind, sockets, small=True)
    tx.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("@ll", 0, 200_000))
    outcome: list[BaseException | int] = []

    def send() -> None:
        try:
            if kind == "unix_seqpacket":
                while True:  # messages until the buffer is full
                    wsa_send_sync(tx, b"m" * 1000)
            else:
                outcome.append(wsa_send_sync(tx, pattern(16 << 20, 3)))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    thread.join(GUARD)
    assert not thread.is_alive(), "SO_SNDTIMEO did not bound the call"
    (exc,) = outcome
    assert isinstance(exc, WSAError) and exc.winerror is Code.WSAETIMEDOUT
    if kind != "unix_seqpacket":
        assert exc.bytes_sent == len(readable_now(rx)), "bytes_sent is what the peer can read"


@pytest.mark.parametrize("kind", ["unix_dgram", "unix_stream"])
def test_concurrent_nonblocking_sync_sends_are_never_WSAEINPROGRESS(kind: str, sockets: list[socket.socket]) -> None:
    """S3.4: WSAEINPROGRESS is for a *blocking* send in progress in another thread. Threads
    sending on one nonblocking socket (an event-select server) met it on most calls."""
    tx, rx = make_pair(kind, sockets)
    tx.setblocking(False)
    codes: dict[str, int] = {}
    lock = threading.Lock()

    def send() -> None:
        for _ in range(3000):
            try:
                wsa_send_sync(tx, b"0123456789abcdef")
            except WSAError as exc:
                with lock:
                    codes[exc.winerror.name] = codes.get(exc.winerror.name, 0) + 1

    def drain() -> None:
        while any(t.is_alive() for t in senders):
            drain_now(rx)

    senders = [threading.Thread(target=send) for _ in range(4)]
    reader = threading.Thread(target=drain)
    for t in senders:
        t.start()
    reader.start()
    for t in (*senders, reader):
        t.join(GUARD)
    assert "WSAEINPROGRESS" not in codes, codes
    assert set(codes) <= {"WSAEWOULDBLOCK"}, codes


def drain_now(sock: socket.socket) -> None:
    """Read and drop what ``sock`` has now."""
    with contextlib.suppress(BlockingIOError):
        while sock.recv(1 << 16, socket.MSG_DONTWAIT):
            pass


async def test_a_send_never_waits_on_the_socket_lock_behind_a_blocking_send(sockets: list[socket.socket]) -> None:
    """S3.4, S4.2: thread T's blocking send waits for an overlapped send; the socket is made
    nonblocking meanwhile (as WSAEventSelect does); a nonblocking send from the loop's thread
    must answer at once. It waited for T's lock while T waited for the loop: a deadlock."""
    from wsasend._api import slot_for

    tx, rx = make_pair("unix_stream", sockets, small=True)
    big = pattern(1 << 20, 5)
    ov = wsa_send(tx, [big])
    assert ov.pending
    thread = threading.Thread(target=wsa_send_sync, args=(tx, b"T"), daemon=True)
    thread.start()
    slot = slot_for(tx)

    def waiting(slot: Any = slot) -> bool:
        return bool(slot.sync_waiting)

    await until(waiting)  # T holds the socket's lock and waits for the overlapped send
    tx.setblocking(False)
    with pytest.raises(WSAError) as info:
        wsa_send_sync(tx, b"nonblocking")
    assert info.value.winerror is Code.WSAEINPROGRESS and info.value.bytes_sent == 0
    got = await asyncio.wait_for(read_exactly(rx, len(big) + 1), GUARD)
    await asyncio.to_thread(thread.join, GUARD)
    assert got == big + b"T" and not thread.is_alive()


def _mapped_udp_pair(made: list[socket.socket]) -> tuple[socket.socket, socket.socket]:
    """An IPv6 UDP sender connected to an IPv4 receiver through ``::ffff:127.0.0.1``."""
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    made.append(rx)
    rx.bind(("127.0.0.1", 0))
    tx = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    made.append(tx)
    tx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    tx.connect(("::ffff:127.0.0.1", rx.getsockname()[1]))
    return tx, rx


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6 here")
def test_an_ipv4_mapped_peer_has_ipv4s_message_limit(sockets: list[socket.socket]) -> None:
    """S4.3: an IPv6 UDP socket connected to an IPv4-mapped peer sends IPv4 datagrams, whose
    limit is 65507, not IPv6's 65527. One byte more is WSAEMSGSIZE before any syscall, and a
    ``sendto`` to a mapped address from an unconnected IPv6 socket is held to the same limit.
    Before, ``max_message_size`` said 65527 and the kernel refused the extra bytes itself."""
    tx, rx = _mapped_udp_pair(sockets)
    assert max_message_size(tx) == 65507
    payload = pattern(65507, seed=5)
    assert wsa_send_sync(tx, [payload]) == 65507
    assert datagrams(rx) == [payload]
    spy = spy_on(tx, sockets)
    with pytest.raises(WSAError) as info:
        wsa_send_sync(spy, [payload, b"!"])
    assert info.value.winerror is Code.WSAEMSGSIZE and info.value.bytes_sent == 0
    assert spy.attempts == 0, "checked before any syscall (S4.3)"
    # Per destination: the same socket kind, unconnected, sending to the mapped address.
    from wsasend import winsock

    free = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sockets.append(free)
    free.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    assert max_message_size(free) == 65527, "no peer: IPv6's limit"
    to = ("::ffff:127.0.0.1", rx.getsockname()[1], 0, 0)
    free = spy_on(free, sockets)
    big = payload + b"!"
    winsock.WSAStartup()
    try:
        assert winsock.sendto(free, big, len(big), 0, to, 28) == winsock.SOCKET_ERROR
        assert winsock.WSAGetLastError() == Code.WSAEMSGSIZE
        assert free.attempts == 0, "checked before any syscall (S4.3)"
        assert winsock.sendto(free, payload, len(payload), 0, to, 28) == 65507
    finally:
        winsock.WSACleanup()
    assert datagrams(rx) == [payload]


class _ClosedAfterOneWrite(socket.socket):
    """A socket that another thread closes right after the kernel took a write from it."""

    def sendmsg(self, *args: Any) -> int:
        n = super().sendmsg(*args)
        self.close()
        return n


def test_a_send_with_a_timeout_closed_behind_its_back_mid_send_is_a_WSAError(sockets: list[socket.socket]) -> None:
    """S3.4: a blocking send on a socket with a timeout, closed by another thread between two
    of its writes, fails with WSAENOTSOCK and the bytes the kernel took; the peer reads exactly
    those. Before, polling the closed socket's descriptor (-1) raised ValueError (adversarial
    pass: 12 to 30 of 60 rounds with a real closing thread)."""
    a, b = socket.socketpair()
    sockets += [a, b]
    tx = _ClosedAfterOneWrite(fileno=a.detach())
    sockets.append(tx)
    tx.settimeout(GUARD)
    payload = pattern(8 << 20, seed=21)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(recv_to_eof(b, GUARD)), daemon=True)
    reader.start()
    with pytest.raises(WSAError) as info:
        wsa_send_sync(tx, [payload])
    reader.join(GUARD)
    sent = info.value.bytes_sent
    assert info.value.winerror is Code.WSAENOTSOCK
    assert sent is not None and 0 < sent < len(payload)
    assert received == [payload[:sent]]
