"""The compiled build's C socket calls (``wsasend._iovsend``, issue 11): the socket methods' contract.

The engine sends a list of buffers on a plain socket with ``sendmsg`` instead of
``socket.sendmsg`` (which parses every buffer of the list with its argument parser), and
WSATransport's stream reader uses ``recv`` and ``so_error`` instead of ``socket.recv`` and
``socket.getsockopt``. ``sendmsg`` must be
the same system call to the byte: the buffers gathered in order and not copied (S2.1), a partial
count when the kernel takes part (S5.4's accounting rests on it), ``IOV_MAX`` enforced by the
kernel (S2.3), and the same ``OSError`` subclasses, so the engine's error mapping (S6) holds.
It must also leave nothing behind: no reference or buffer export kept after a call, whether it
succeeded or failed, and nothing sent when an item is not a buffer. ``recv`` must return what
``socket.recv`` would, never block (even on a blocking descriptor: a timeout set behind the
transport's back must not stall the loop), and ``so_error`` must read and clear the pending
error. Real sockets throughout.

The first group calls the helper directly and runs on the compiled build only (the pure build
has no helper, and test_build checks that each build has exactly what it should). The last test
goes through ``wsa_send`` on both loops, on whichever build runs.
"""

from __future__ import annotations

import array
import asyncio
import errno
import gc
import hashlib
import os
import random
import select
import socket
import struct
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import wsasend
from tests.conftest import LOOP_FACTORIES
from tests.helpers import drain_ready, pattern, read_exactly, recv_exactly, recv_to_eof, run_threads, tcp_pair
from wsasend import WSAErrorCode, _engine
from wsasend._api import find_engine
from wsasend._queue import RUN_BUFS, SendRun

GUARD = 30.0
FLAGS = socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL
SENDMSG: Callable[[socket.socket, list[Any], int], int] | None = _engine._IOV_SENDMSG
RECV: Callable[[socket.socket, int], bytes] | None = _engine._IOV_RECV
SO_ERROR: Callable[[socket.socket], int] | None = _engine._IOV_SO_ERROR
SENDMSG_PARTS: Callable[[socket.socket, list[list[Any]], int], int] | None = _engine._IOV_SENDMSG_PARTS

needs_helper = pytest.mark.skipif(SENDMSG is None, reason="plain-Python build: the engine uses socket.sendmsg")


Send = Callable[[socket.socket, list[Any], int], int]


def _counting(rest: Send) -> Send:
    """``sendmsg_rest`` as a count of the bytes sent, so one contract test covers both."""

    def send(sock: socket.socket, buffers: list[Any], flags: int) -> int:
        left = rest(sock, buffers, flags)
        assert left >= 0
        return sum(memoryview(buf).nbytes for buf in buffers) - left

    return send


def _in_parts(parts_send: Callable[[socket.socket, list[list[Any]], int], int]) -> Send:
    """``sendmsg_parts`` given the buffers cut into lists of 0, 1, 2, 3... buffers (an empty
    list first: the queue hands over an empty send's list too), so every contract test of a
    flat list also covers the lists a coalesced batch is made of."""

    def send(sock: socket.socket, buffers: list[Any], flags: int) -> int:
        parts: list[list[Any]] = []
        start = size = 0
        while start < len(buffers) or not parts:
            parts.append(buffers[start : start + size])
            start += size
            size += 1
        return parts_send(sock, parts, flags)

    return send


@pytest.fixture(params=["sendmsg", "sendmsg_rest", "sendmsg_parts"])
def helper(request: pytest.FixtureRequest) -> Send:
    """Each spelling of the C sendmsg: the count sent, or what is left (0 when all went), or
    the count sent of buffers handed over as several lists."""
    assert SENDMSG is not None and _engine._IOV_SENDMSG_REST is not None and SENDMSG_PARTS is not None
    if request.param == "sendmsg_parts":
        return _in_parts(SENDMSG_PARTS)
    return SENDMSG if request.param == "sendmsg" else _counting(_engine._IOV_SENDMSG_REST)


def test_the_compiled_engine_has_the_helpers_and_the_pure_one_does_not() -> None:
    assert (SENDMSG is not None) == (RECV is not None) == (SO_ERROR is not None) == wsasend.compiled
    assert (_engine._IOV_SENDMSG_REST is not None) == (SENDMSG_PARTS is not None) == wsasend.compiled


@needs_helper
def test_gathers_every_kind_of_buffer_in_order(helper: Send) -> None:
    a, b = socket.socketpair()
    with a, b:
        whole = pattern(5000, seed=3)
        bufs: list[Any] = [
            whole[:10],
            memoryview(whole)[10:1000],  # a consumed prefix skipped, as the engine slices heads
            bytearray(whole[1000:1500]),
            array.array("B", whole[1500:1501]),
            b"",
            whole[1501:],
        ]
        assert helper(a, bufs, FLAGS) == len(whole)
        assert b.recv(len(whole) + 1) == whole


@needs_helper
def test_every_kind_of_buffer_past_the_stack_keeps_its_own_bytes(helper: Send) -> None:
    """Past ON_STACK (64) buffers the iovecs, the held bytes and the other objects' exports
    share one allocation, each array after the one before (issue 11): 600 buffers of four
    kinds, each a different pattern, arrive exact and leave no export or reference behind."""
    a, b = socket.socketpair()
    with a, b:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        bufs: list[Any] = []
        for i in range(150):
            bufs += [
                pattern(5, seed=4 * i),
                memoryview(pattern(300, seed=4 * i + 1))[7:],
                bytearray(pattern(11, seed=4 * i + 2)),
                array.array("B", pattern(3, seed=4 * i + 3)),
            ]
        refs = [sys.getrefcount(x) for x in bufs]
        whole = b"".join(bytes(x) for x in bufs)
        assert helper(a, bufs, FLAGS) == len(whole)
        assert recv_exactly(b, len(whole)) == whole
        assert [sys.getrefcount(x) for x in bufs] == refs
        for x in bufs[2::4]:
            x.extend(b"!")  # every export released (a held one refuses a resize)


@needs_helper
def test_more_buffers_than_fit_on_the_stack_and_the_kernel_limit(helper: Send) -> None:
    a, b = socket.socketpair()
    with a, b:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        bufs = [pattern(3, seed=i) for i in range(1024)]  # IOV_MAX: the heap path
        assert helper(a, bufs, FLAGS) == 3 * 1024
        assert b.recv(1 << 20) == b"".join(bufs)
        with pytest.raises(OSError) as info:
            helper(a, [*bufs, b"x"], FLAGS)
        assert info.value.errno == errno.EMSGSIZE
        with pytest.raises(BlockingIOError):
            b.recv(10, socket.MSG_DONTWAIT)  # nothing of the refused call went out


@needs_helper
def test_a_partial_send_counts_exactly_what_went_and_a_full_socket_blocks(helper: Send) -> None:
    a, b = tcp_pair(bufsize=64 * 1024)
    with a, b:
        whole = pattern(1 << 20, seed=5)
        bufs = [whole[i : i + 4096] for i in range(0, len(whole), 4096)]
        n = helper(a, bufs, FLAGS)
        assert 0 < n < len(whole)
        # Go on from the count, as the engine does (a memoryview of the partly sent buffer's
        # tail, then the untouched ones), until the socket is full: the stream is exact.
        sent = n
        with pytest.raises(BlockingIOError):
            for _ in range(1000):
                index, off = divmod(sent, 4096)
                sent += helper(a, [memoryview(bufs[index])[off:], *bufs[index + 1 :]], FLAGS)
        assert sent < len(whole)
        a.shutdown(socket.SHUT_WR)
        assert recv_to_eof(b) == whole[:sent]


@needs_helper
def test_errors_are_socket_sendmsgs_errors(helper: Send) -> None:
    a, b = socket.socketpair()
    with a:
        b.close()
        with pytest.raises(BrokenPipeError):  # MSG_NOSIGNAL: EPIPE, no signal
            helper(a, [b"x", b"y"], FLAGS)
    with pytest.raises(OSError) as info:
        helper(a, [b"x"], FLAGS)  # a closed socket object's descriptor is -1
    assert info.value.errno == errno.EBADF and a.fileno() == -1


@needs_helper
@pytest.mark.parametrize("count", [3, 200])  # on the stack, on the heap
def test_a_bad_item_sends_nothing_and_keeps_nothing(helper: Send, count: int) -> None:
    a, b = socket.socketpair()
    with a, b:
        held = [pattern(7, seed=i) for i in range(count)]
        locked = bytearray(b"z" * 9)
        refs = [sys.getrefcount(x) for x in held]
        for bad in (12, "text", memoryview(b"abcdef")[::2]):
            with pytest.raises((TypeError, BufferError)):
                helper(a, [*held, locked, bad, b"tail"], FLAGS)
        with pytest.raises(BlockingIOError):
            b.recv(10, socket.MSG_DONTWAIT)
        assert [sys.getrefcount(x) for x in held] == refs
        locked.extend(b"!")  # no buffer export left behind (a held export refuses a resize)
        assert helper(a, [*held, locked], FLAGS) == 7 * count + 10
        assert [sys.getrefcount(x) for x in held] == refs


@needs_helper
@pytest.mark.parametrize("name", ["sendmsg", "sendmsg_rest"])
def test_bad_arguments_are_type_errors(name: str) -> None:
    a, b = socket.socketpair()
    with a, b:
        untyped: Any = _engine._IOV_SENDMSG if name == "sendmsg" else _engine._IOV_SENDMSG_REST
        with pytest.raises(TypeError):
            untyped(a, (b"x",), FLAGS)  # a list only: the engine always passes one
        with pytest.raises(TypeError, match=name):
            untyped(a, [b"x"])
        with pytest.raises(TypeError):
            untyped(a.fileno(), [b"x"], FLAGS)  # a socket object only: it reads its descriptor
        with pytest.raises(OverflowError):
            untyped(a, [b"x"], 1 << 40)
        with pytest.raises(BlockingIOError):
            b.recv(10, socket.MSG_DONTWAIT)


@needs_helper
def test_sendmsg_parts_takes_a_list_of_lists_only_and_sends_nothing_otherwise() -> None:
    a, b = socket.socketpair()
    with a, b:
        untyped: Any = SENDMSG_PARTS
        for parts in ([(b"x",)], ([b"x"],), [[b"x"], b"y"], [[b"x"], None]):
            with pytest.raises(TypeError):
                untyped(a, parts, FLAGS)  # lists only, as the queue hands over
        with pytest.raises(TypeError, match="sendmsg_parts"):
            untyped(a, [[b"x"]])
        with pytest.raises(TypeError):
            untyped(a.fileno(), [[b"x"]], FLAGS)
        with pytest.raises(OverflowError):
            untyped(a, [[b"x"]], 1 << 40)
        with pytest.raises(BlockingIOError):
            b.recv(10, socket.MSG_DONTWAIT)
        assert untyped(a, [], FLAGS) == 0 and untyped(a, [[], []], FLAGS) == 0  # nothing, no error


@needs_helper
def test_sendmsg_parts_reports_what_a_partial_write_took_when_the_socket_then_fills() -> None:
    """``sendmsg_parts`` goes on after a partial write until a call takes nothing (issue 11):
    that last call's EAGAIN is not raised, the count of what went is returned, and the socket
    is then full (the engine waits for writability on that word, with no second gathering)."""
    assert SENDMSG_PARTS is not None
    a, b = socket.socketpair()
    with a, b:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        whole = pattern(1 << 20, seed=11)  # (768 buffers: under IOV_MAX)
        parts = [[whole[i : i + 1000], b"", whole[i + 1000 : i + 4096]] for i in range(0, len(whole), 4096)]
        n = SENDMSG_PARTS(a, parts, FLAGS)
        assert 0 < n < len(whole)
        with pytest.raises(BlockingIOError):
            a.send(b"x", FLAGS)  # full: the count came back only once nothing more fitted
        a.shutdown(socket.SHUT_WR)
        assert recv_to_eof(b) == whole[:n]


# A reader in another process: it makes room while a call runs (a thread of this process
# rarely does: the sender holds the GIL across small calls), so a call's next sendmsg often
# takes more after a partial one. It prints the length and SHA-256 of what it read.
_READER = """
import hashlib, os, sys
fd = int(sys.argv[1]); h = hashlib.sha256(); n = 0
while chunk := os.read(fd, 1 << 20):
    h.update(chunk); n += len(chunk)
print(n, h.hexdigest())
"""


def _reader_process(sock: socket.socket) -> subprocess.Popen[str]:
    """The reader of ``_READER`` on ``sock``, which is closed here (the process has its copy)."""
    reader = subprocess.Popen(
        [sys.executable, "-c", _READER, str(sock.fileno())], pass_fds=[sock.fileno()], stdout=subprocess.PIPE, text=True
    )
    sock.close()
    return reader


def _lowat_pair() -> tuple[socket.socket, socket.socket]:
    """A loopback TCP pair whose sender's single ``sendmsg`` stops early, with room left.

    ``TCP_NOTSENT_LOWAT`` (16 KiB) makes the kernel end a call once that much is queued but
    not yet transmitted; on loopback the call's own push transmits it, so the next call finds
    room again (while the receiver's window lasts: a larger receive buffer asked for): a
    partial write that the same ``sendmsg_parts`` call goes on from, every time, at a cut
    that falls where the buffer sizes put it (about 98 KiB into a MiB here).
    """
    a, b = tcp_pair()
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    a.setsockopt(socket.IPPROTO_TCP, getattr(socket, "TCP_NOTSENT_LOWAT", 25), 16 * 1024)
    return a, b


def test_a_plain_sendmsg_on_the_lowat_pair_is_partial() -> None:
    """The premise of the tests on that pair: one ``socket.sendmsg`` there takes part of a MiB."""
    a, b = _lowat_pair()
    with a, b:
        whole = pattern(1 << 20, seed=4)
        n = a.sendmsg([whole[i : i + 5000] for i in range(0, len(whole), 5000)], [], FLAGS)
        assert 0 < n < len(whole)


@needs_helper
@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.lists(st.integers(0, 65_536), max_size=6), min_size=20, max_size=100),
    as_views=st.booleans(),
)
def test_sendmsg_parts_goes_on_from_each_cut_byte_exact_while_a_reader_drains(
    sizes: list[list[int]], as_views: bool
) -> None:
    """On the pair of :func:`_lowat_pair` every sendmsg stops early with room left, so each
    ``sendmsg_parts`` call goes on from where the last system call was cut, inside a buffer or
    between two (empty buffers and empty lists included), while a reader process drains the
    other end: whatever each call reports, the stream is exactly the buffers in order,
    nothing twice, nothing skipped (S2.1, S5.4). (A build whose continuation did not move into
    a cut buffer sent its start again and failed this test every time.)"""
    assert SENDMSG_PARTS is not None
    total = sum(map(sum, sizes))
    whole = pattern(total, seed=total & 0xFF)
    parts: list[list[Any]] = []
    at = 0
    for part in sizes:
        bufs: list[Any] = []
        for size in part:
            chunk = whole[at : at + size]
            bufs.append(memoryview(chunk) if as_views else chunk)
            at += size
        parts.append(bufs)
    a, b = _lowat_pair()
    with a, b:
        reader = _reader_process(b)
        try:
            sent = 0
            deadline = time.monotonic() + GUARD
            while sent < total:
                assert time.monotonic() < deadline, "hang guard"
                try:
                    n = SENDMSG_PARTS(a, _rest_of(parts, sent), FLAGS)
                except BlockingIOError:
                    select.select([], [a], [], 1.0)
                    continue
                assert 0 < n <= total - sent
                sent += n
            a.shutdown(socket.SHUT_WR)
            out, _ = reader.communicate(timeout=GUARD)
        finally:
            reader.kill()
            reader.wait()
    assert out.split() == [str(total), hashlib.sha256(whole).hexdigest()]


def _rest_of(parts: list[list[Any]], sent: int) -> list[list[Any]]:
    """``parts`` without their first ``sent`` bytes, as the queue hands a partly sent head over
    (a memoryview of the cut buffer's tail, then the lists untouched)."""
    out: list[list[Any]] = []
    for bufs in parts:
        if sent <= 0:
            out.append(bufs)
            continue
        kept: list[Any] = []
        for buf in bufs:
            size = memoryview(buf).nbytes
            if sent >= size:
                sent -= size
            elif sent:
                kept.append(memoryview(buf)[sent:])
                sent = 0
            else:
                kept.append(buf)
        out.append(kept)
    return out


@needs_helper
@pytest.mark.skipif(sys.version_info < (3, 12), reason="a Python class exports a buffer from 3.12 (PEP 688)")
@pytest.mark.parametrize("change", ["grow", "shrink"])
@pytest.mark.parametrize("name", ["sendmsg", "sendmsg_rest", "sendmsg_parts"])
def test_a_list_changed_by_a_buffer_export_is_refused_and_nothing_is_sent_or_kept(name: str, change: str) -> None:
    """A buffer export can run Python code: a list changed under the gathering is an error,
    never a read past its end, and nothing is sent or kept. The exporting object is the
    list's own item, which the change may drop: the call holds it for the export (without,
    the shrink crashed the interpreter on 3.12 and 3.13: CPython's export used the object
    after its method returned)."""
    target: list[Any] = [b"head"]

    class Meddling:
        def __buffer__(self, flags: int) -> memoryview:
            if change == "grow":
                target.extend([b"more"] * 100)
            else:
                target.clear()
            return memoryview(b"meddled")

    tail = pattern(11, seed=9)
    target += [Meddling(), b"next", tail]
    refs = sys.getrefcount(tail) - (change == "shrink")  # (the clear drops the list's reference)
    call: Any = getattr(_engine, "_IOV_" + name.upper())
    a, b = socket.socketpair()
    with a, b:
        with pytest.raises(RuntimeError, match=name):
            call(a, [[b"first"], target] if name == "sendmsg_parts" else target, FLAGS)
        with pytest.raises(BlockingIOError):
            b.recv(10, socket.MSG_DONTWAIT)
        assert sys.getrefcount(tail) == refs


@needs_helper
def test_recv_returns_what_is_there_and_never_blocks() -> None:
    assert RECV is not None
    a, b = socket.socketpair()
    with a, b:
        b.setblocking(True)  # a blocking descriptor: MSG_DONTWAIT still returns at once
        with pytest.raises(BlockingIOError):
            RECV(b, 100)
        payload = pattern(5000, seed=9)
        a.sendall(payload)
        assert RECV(b, 1000) == payload[:1000]
        assert RECV(b, 100_000) == payload[1000:]
        a.send(b"tail")
        assert RECV(b, 0) == b""  # as socket.recv(0)
        a.shutdown(socket.SHUT_WR)
        assert RECV(b, 10) == b"tail"
        assert RECV(b, 10) == b""  # end of stream
        with pytest.raises(ValueError):
            RECV(b, -1)
        with pytest.raises(TypeError):
            RECV(b, "10")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            RECV(b.fileno(), 10)  # type: ignore[arg-type]
    with pytest.raises(OSError) as info:
        RECV(b, 10)  # a closed socket object's descriptor is -1
    assert info.value.errno == errno.EBADF


# recv reads up to 64 KiB into one static buffer and copies out what it read (_iovsend.c,
# READ_SCRATCH); larger reads go straight into the bytes object.
SCRATCH = 64 * 1024


@needs_helper
@pytest.mark.parametrize("size", [1, 100, SCRATCH - 1, SCRATCH, SCRATCH + 1, 4 * SCRATCH])
def test_recv_on_either_side_of_the_static_buffer_returns_exact_fresh_bytes(size: int) -> None:
    assert RECV is not None
    a, b = socket.socketpair()
    with a, b:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        first, second = pattern(size, seed=1), pattern(size, seed=2)
        a.sendall(first)
        got = RECV(b, size)
        assert got == first  # AF_UNIX stream: all of it is there, one read takes it whole
        assert type(got) is bytes and len(got) == size
        a.sendall(second)
        again = RECV(b, size)
        # A later read never shows through an earlier result (the static buffer is copied out).
        assert again == second
        assert got == first


@needs_helper
def test_recv_from_many_threads_at_once_never_mixes_their_data() -> None:
    """Every thread reads its own socket through the one static buffer: each read must hold it
    from the recv to the copy (the GIL is kept across both). Each thread's stream is a pattern
    of its own, checked byte for byte. Released around the recv, the buffer was shared by
    concurrent reads and this failed at once (checked while writing the test)."""
    assert RECV is not None
    threads, rounds, chunk = 4, 300, 8192
    errors: list[str] = []
    start = threading.Barrier(threads)

    def worker(index: int) -> None:
        a, b = socket.socketpair()
        with a, b:
            b.setblocking(True)  # recv never blocks anyway (MSG_DONTWAIT)
            start.wait(GUARD)
            for r in range(rounds):
                want = pattern(chunk, seed=index * 1000 + r)
                a.sendall(want)
                got = b""
                while len(got) < chunk:
                    try:
                        got += RECV(b, chunk - len(got))
                    except BlockingIOError:
                        time.sleep(0)
                if got != want:
                    errors.append(f"thread {index} round {r}: data of another read")
                    return

    run_threads([threading.Thread(target=worker, args=(i,)) for i in range(threads)], GUARD)
    assert errors == []


@needs_helper
def test_recv_of_nothing_and_an_index_size_answer_as_socket_recv() -> None:
    """``recv(sock, 0)`` is ``b""`` without a system call, as ``socket.recv(0)``, whatever the
    socket's state (it raised ENOTCONN, EAGAIN or EBADF: review, stop 51); a size may be any
    object with ``__index__``, as ``socket.recv`` takes."""
    assert RECV is not None

    class Size:
        def __index__(self) -> int:
            return 3

    unconnected = socket.socket()
    unbound = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed = socket.socket()
    closed.close()
    with unconnected, unbound:
        for sock in (unconnected, unbound, closed):
            assert RECV(sock, 0) == sock.recv(0) == b""
    a, b = socket.socketpair()
    with a, b:
        a.send(b"abcdef")
        assert RECV(b, cast(Any, Size())) == b"abc"
        assert b.recv(cast(Any, Size())) == b"def"


@needs_helper
def test_recv_raises_a_reset_as_socket_recv_does() -> None:
    assert RECV is not None
    a, b = tcp_pair()
    with a, b:
        b.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        b.close()
        with pytest.raises(ConnectionResetError):
            for _ in range(1000):  # until the RST has arrived (loopback: at once)
                try:
                    RECV(a, 10)
                except BlockingIOError:
                    time.sleep(0.001)


@needs_helper
def test_so_error_reads_and_clears_the_pending_error() -> None:
    assert SO_ERROR is not None
    a, b = tcp_pair()
    with a, b:
        assert SO_ERROR(a) == 0
        b.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        b.close()
        for _ in range(1000):
            err = SO_ERROR(a)
            if err:
                break
            time.sleep(0.001)
        assert err == errno.ECONNRESET
        assert SO_ERROR(a) == 0  # taken by the first call, as getsockopt does
    with pytest.raises(OSError) as info:
        SO_ERROR(a)  # closed: its descriptor is -1
    assert info.value.errno == errno.EBADF


@needs_helper
def test_bytes_list_copy_is_an_untracked_copy_of_the_same_bytes() -> None:
    """A queued send's captured list (S2.1): equal, a new list, the very same bytes objects
    (nothing copied), and untracked by the collector only when every item is bytes."""
    copy_list = _engine._IOV_BYTES_LIST_COPY
    assert copy_list is not None
    items = [b"head", b"", bytes(100_000), b"tail"]
    copied = copy_list(items)
    assert copied == items and copied is not items
    assert all(a is b for a, b in zip(copied, items, strict=True))
    assert not gc.is_tracked(copied)
    items.append(b"later")  # the caller's list is the caller's: the copy does not change
    assert len(copied) == 4
    for mixed in ([b"x", bytearray(b"y")], [memoryview(b"x")], [b"x", [b"a list"]]):
        kept = copy_list(mixed)
        assert kept == mixed and gc.is_tracked(kept)  # anything else may refer back: tracked
    assert copy_list([]) == []
    with pytest.raises(TypeError):
        copy_list((b"a", b"b"))  # type: ignore[arg-type]


@needs_helper
def test_gc_untrack_and_gc_track_all_take_objects_off_the_collectors_lists_and_back() -> None:
    """The engine's pair for deep queues: ``gc_untrack`` takes one object off (a second call, or
    an object the collector never tracks, is a no-op); ``gc_track_all`` puts a list's objects
    back, leaving tracked and untrackable ones as they are."""
    untrack, track_all = _engine._IOV_GC_UNTRACK, _engine._IOV_GC_TRACK_ALL
    assert untrack is not None and track_all is not None
    ov, other = wsasend.WSAOverlapped(), [b"a list"]
    assert gc.is_tracked(ov) and gc.is_tracked(other)
    untrack(ov)
    untrack(ov)
    untrack(12345)  # an int is never tracked
    assert not gc.is_tracked(ov) and gc.is_tracked(other)
    track_all([ov, other, b"bytes", 7])
    assert gc.is_tracked(ov) and gc.is_tracked(other)
    with pytest.raises(TypeError):
        track_all((ov,))  # type: ignore[arg-type]


def _post_deep(
    a: socket.socket, b: socket.socket
) -> tuple[list[bytes], list[wsasend.WSAOverlapped], list[tuple[bool, bool, bool | None, bool]]]:
    """Post ``2 * _UNTRACK_DEPTH + 200`` sends of 1,000 bytes (two buffers each) on ``a``, whose
    peer ``b`` does not read yet (both made nonblocking): the payloads, the sends, and for each
    one still pending once all are posted, in order:

    - whether its captured list is to be untracked (made while at least ``_UNTRACK_DEPTH``
      sends were queued, or a run's, which is always: see post_list), and whether it was right
      after the post;
    - whether its overlapped is to be untracked, and whether it is: so it must be when the send
      was posted at least ``_UNTRACK_DEPTH`` deep and the entry it is in (its own, or the run it
      joined) is not the queue's last, which later sends may still join (post_list untracks an
      entry's overlappeds at once when the next send starts a new one); None (either way) when
      the send was posted within a run's reach of that depth, since the depth that counts is
      the one when its entry is complete; and it must not be when posted shallower.

    A run's list is its first send's: shallow and tracked until a second send joins it."""
    a.setblocking(False)
    b.setblocking(False)
    count = 2 * _engine._UNTRACK_DEPTH + 200
    payload = [pattern(1000, seed) for seed in range(count)]
    ops = []
    posted: list[tuple[wsasend.WSAOverlapped, tuple[bool, bool], int]] = []
    made_deep: dict[int, bool] = {}  # id of a captured list -> made deep (all stay alive here)
    # A run takes at most RUN_BUFS buffers: the queue grows by at most this many sends between
    # a send's post and its entry's completion.
    reach = RUN_BUFS // 2
    for p in payload:
        engine = find_engine(a)
        depth = 0 if engine is None else len(engine._ops) + engine._queue._extra
        op = wsasend.wsa_send(a, [p[:500], p[500:]])
        ops.append(op)
        if op.pending:
            engine = find_engine(a)
            assert engine is not None
            entry = engine._ops[-1]  # the send's own entry, or the run it joined
            captured = entry._bufs
            list_deep = made_deep.setdefault(id(captured), depth >= _engine._UNTRACK_DEPTH)
            lists = (list_deep or isinstance(entry, SendRun), not gc.is_tracked(captured))
            posted.append((op, lists, depth))
    last_members = _last_entry(a)
    seen = []
    for op, (list_deep, list_untracked), depth in posted:
        if not op.pending:
            continue
        # (by membership: the entry a send was posted as may have become a run's first member)
        if any(member is op for member in last_members) or depth < _engine._UNTRACK_DEPTH - reach:
            ov_deep: bool | None = False
        elif depth >= _engine._UNTRACK_DEPTH:
            ov_deep = True
        else:
            ov_deep = None
        seen.append((list_deep, list_untracked, ov_deep, not gc.is_tracked(op)))
    return payload, ops, seen


def _assert_untracked_only_when_deep(seen: list[tuple[bool | None, bool]]) -> None:
    """``(deep, untracked)`` per pending send: untracked exactly when deep, in the compiled build
    (None: either)."""
    deep = [flag for expected, flag in seen if expected is True]
    shallow = [flag for expected, flag in seen if expected is False]
    assert deep and shallow  # ~1 MB against a 64 KiB buffer: the queue got deep
    assert all(flag is wsasend.compiled for flag in deep)
    assert not any(shallow)


def _last_entry(sock: socket.socket) -> list[Any]:
    """The sends of the last entry of ``sock``'s queue (a run's, or the one send), which later
    sends may still join, so their overlappeds are still on the collector's lists."""
    engine = find_engine(sock)
    assert engine is not None
    last = engine._ops[-1]
    return list(last._members) if isinstance(last, SendRun) else [last]


def _last_closed(ops: list[wsasend.WSAOverlapped], sock: socket.socket) -> int:
    """The index in ``ops`` of the last send not in the queue's last entry (see _last_entry)."""
    first = _last_entry(sock)[0]
    return next(i for i, op in enumerate(ops) if op is first) - 1


def _on_each_loop(main: Callable[[], Any]) -> None:
    """Run the coroutine function ``main`` once on each loop of the suite."""
    for factory in LOOP_FACTORIES.values():
        loop = factory()
        try:
            loop.run_until_complete(main())
        finally:
            loop.close()


def test_a_deep_queues_captured_lists_are_left_out_of_the_collectors_passes() -> None:
    """Through ``wsa_send``: once ``_UNTRACK_DEPTH`` sends wait, the compiled build captures
    each further list of bytes untracked by the collector (10,000 of them queued made its
    passes a sixth of a send's cost); shallower ones stay tracked (the call would cost more
    than it saves). The bytes still arrive exact and in order once the queue drains."""

    async def main() -> None:
        a, b = tcp_pair(bufsize=64 * 1024)
        with a, b:
            payload, ops, seen = _post_deep(a, b)
            _assert_untracked_only_when_deep([(deep, lists) for deep, lists, _, _ in seen])
            got = await asyncio.wait_for(read_exactly(b, 1000 * len(payload)), GUARD)
            assert got == b"".join(payload)
            assert [await op for op in ops] == [1000] * len(ops)

    _on_each_loop(main)


@pytest.mark.parametrize("way_out", ["completed", "cancelled", "aborted"])
def test_a_deep_queues_overlappeds_leave_the_collector_while_queued_and_come_back(way_out: str) -> None:
    """Through ``wsa_send``: once ``_UNTRACK_DEPTH`` sends wait, the compiled build also takes
    each further overlapped off the collector's lists while it is queued (with 10,000 queued the
    collector's passes were a tenth of a send's cost), and every way out of the queue puts it
    back: completion, withdrawal (``cancel()``) and failure (``closesocket``). An overlapped
    CAN be in a cycle (its event points back at it): one made while it was off the lists, and
    dropped by its poster, is collected once the send is over, not leaked."""

    async def main() -> None:
        a, b = tcp_pair(bufsize=64 * 1024)
        with a, b:
            payload, ops, seen = _post_deep(a, b)
            _assert_untracked_only_when_deep([(deep, overlapped) for _, _, deep, overlapped in seen])
            # A cycle through a queued overlapped (one whose entry is complete, so off the
            # collector's lists in the compiled build): its event refers back to it. The
            # event's weak reference tells whether the cycle was collected.
            index = _last_closed(ops, a)
            cyclic = ops.pop(index)
            event = weakref.ref(cyclic.event)
            assert cyclic.pending
            assert gc.is_tracked(cyclic) is not wsasend.compiled
            if way_out == "cancelled":
                assert cyclic.cancel()  # none of its bytes went: withdrawn (S5.7)
                assert cyclic.error == WSAErrorCode.WSA_OPERATION_ABORTED and gc.is_tracked(cyclic)
                expected = b"".join(payload[:index] + payload[index + 1 :])
            else:
                expected = b"".join(payload)
            del cyclic
            if way_out == "aborted":
                waiting = [op for op in ops if op.pending]
                wsasend.closesocket(a)
                assert waiting and all(op.error == WSAErrorCode.WSA_OPERATION_ABORTED for op in waiting)
                assert not any(op.pending for op in ops)
            else:
                got = await asyncio.wait_for(read_exactly(b, len(expected)), GUARD)
                assert got == expected
                assert [await op for op in ops] == [1000] * len(ops)
            assert all(gc.is_tracked(op) for op in ops)
        gc.collect()
        assert event() is None

    _on_each_loop(main)


@pytest.mark.parametrize("loop_name", sorted(LOOP_FACTORIES))
def test_a_forked_child_puts_an_inherited_deep_queue_back_on_the_collectors_lists(loop_name: str) -> None:
    """S5.12: a forked child drops the engines it inherits, and their queues never empty there
    through a completion or a failure; the sends the parent's queue had off the collector's
    lists must be back on them in the child (else a cycle through one is never collected)."""
    a, b = tcp_pair(bufsize=64 * 1024)
    loop = LOOP_FACTORIES[loop_name]()
    try:

        async def post() -> list[wsasend.WSAOverlapped]:
            _, ops, seen = _post_deep(a, b)
            _assert_untracked_only_when_deep([(deep, overlapped) for _, _, deep, overlapped in seen])
            return ops

        ops = loop.run_until_complete(post())
        assert any(op.pending for op in ops)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            os._exit(0 if all(gc.is_tracked(op) for op in ops) else 2)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        loop.close()
        wsasend.closesocket(a)  # the parent's sends are still pending: abort them here
        b.close()
    assert all(gc.is_tracked(op) for op in ops)


# -- through wsa_send, both loops, either build -------------------------------------------------


@pytest.mark.parametrize("loop_name", sorted(LOOP_FACTORIES))
@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.lists(st.integers(0, 5000), min_size=1, max_size=6), min_size=1, max_size=40))
def test_posted_multi_buffer_sends_through_the_engine_are_byte_exact(loop_name: str, sizes: list[list[int]]) -> None:
    """Back-to-back gathered sends (the immediate path, then the flush path once the 64 KiB
    socket buffer is full) arrive whole and in order, each with its own exact count."""

    async def main() -> None:
        a, b = tcp_pair(bufsize=64 * 1024)
        with a, b:
            a.setblocking(False)
            sends = [[pattern(n, seed=i * 7 + j) for j, n in enumerate(row)] for i, row in enumerate(sizes)]
            total = sum(map(len, (x for row in sends for x in row)))
            reader = asyncio.ensure_future(read_exactly(b, total))
            ovs = [wsasend.wsa_send(a, row) for row in sends]
            counts = [await asyncio.wait_for(ov, GUARD) for ov in ovs]
            assert counts == [sum(map(len, row)) for row in sends]
            assert await asyncio.wait_for(reader, GUARD) == b"".join(x for row in sends for x in row)
            assert drain_ready(b) == 0

    loop = LOOP_FACTORIES[loop_name]()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


@pytest.mark.parametrize("loop_name", sorted(LOOP_FACTORIES))
def test_a_deep_queue_flushed_while_a_reader_process_makes_room_is_byte_exact(loop_name: str) -> None:
    """The flush path with a reader in another process (issue 11): on the pair of
    :func:`_lowat_pair` a batch the kernel takes in parts goes on inside the compiled
    ``sendmsg_parts`` every time, so a flush's count covers several system calls, and the
    queue is advanced by it. 800 posted sends of 1-5 buffers (bytes, empty ones, and
    memoryviews, which stay off the runs): every send completes with its own count and the
    reader gets the stream exactly. (A build whose continuation did not move into a cut
    buffer failed this test every time, on both loops.)"""

    async def main() -> None:
        rng = random.Random(8)
        sends: list[list[Any]] = []
        for i in range(800):
            sizes = [rng.choice((0, 1, 700, 4096, 20_000)) for _ in range(rng.randint(1, 5))]
            row: list[Any] = [pattern(n, seed=i + j) for j, n in enumerate(sizes)]
            if i % 7 == 0:
                row[0] = memoryview(row[0])
            sends.append(row)
        whole = b"".join(bytes(x) for row in sends for x in row)
        a, b = _lowat_pair()
        with a, b:
            a.setblocking(False)
            reader = _reader_process(b)
            try:
                ovs = [wsasend.wsa_send(a, row) for row in sends]
                assert any(ov.pending for ov in ovs)  # queued: the flush path sends them
                counts = [await asyncio.wait_for(ov, GUARD) for ov in ovs]
                a.shutdown(socket.SHUT_WR)
                out, _ = await asyncio.to_thread(reader.communicate, timeout=GUARD)
            finally:
                reader.kill()
                reader.wait()
                wsasend.closesocket(a)
        assert counts == [sum(memoryview(x).nbytes for x in row) for row in sends]
        assert out.split() == [str(len(whole)), hashlib.sha256(whole).hexdigest()]

    loop = LOOP_FACTORIES[loop_name]()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
