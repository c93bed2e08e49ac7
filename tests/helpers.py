"""Shared test helpers: socket makers, readers, patterned payloads."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterable, Iterator

from wsasend import WSAOverlapped

#: Socket buffer size that makes sends pend while data still moves fast on loopback (field
#: notes: 4 KiB crawls at ~50 KB/s on these machines).
SMALL_BUF = 64 * 1024


def pattern(n: int, seed: int = 0) -> bytes:
    """``n`` bytes of a position-dependent pattern, so any loss, repeat or swap shows."""
    block = bytes((i * 7 + seed) & 0xFF for i in range(256))
    reps = n // 256 + 1
    return (block * reps)[:n]


def tcp_pair(family: int = socket.AF_INET, bufsize: int | None = None) -> tuple[socket.socket, socket.socket]:
    """A connected TCP pair on loopback (``family`` AF_INET or AF_INET6)."""
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    with socket.socket(family, socket.SOCK_STREAM) as listener:
        listener.bind((host, 0))
        listener.listen(1)
        client = socket.socket(family, socket.SOCK_STREAM)
        if bufsize:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, bufsize)
        client.connect(listener.getsockname()[:2])
        server, _ = listener.accept()
    if bufsize:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, bufsize)
    return client, server


def udp_pair(family: int = socket.AF_INET) -> tuple[socket.socket, socket.socket]:
    """A connected UDP sender and its bound receiver on loopback."""
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    rx = socket.socket(family, socket.SOCK_DGRAM)
    rx.bind((host, 0))
    tx = socket.socket(family, socket.SOCK_DGRAM)
    tx.connect(rx.getsockname()[:2])
    return tx, rx


def fill_socket(sock: socket.socket) -> int:
    """Write into a nonblocking view of ``sock`` until the kernel refuses; return bytes written."""
    chunk = b"\0" * 65536
    total = 0
    while True:
        try:
            total += sock.send(chunk, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return total


def fill_messages(tx: socket.socket) -> int:
    """Send 1000-byte messages on an AF_UNIX datagram/seqpacket sender, bypassing wsasend,
    until the kernel refuses; return how many."""
    count = 0
    while True:
        try:
            tx.send(b"f" * 1000, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return count
        count += 1


def readable_now(sock: socket.socket) -> bytes:
    """Everything ``sock`` can read now, without waiting (the socket's mode is left alone)."""
    out = bytearray()
    while True:
        try:
            chunk = sock.recv(1 << 20, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return bytes(out)
        if not chunk:
            return bytes(out)
        out += chunk


def drain_ready(sock: socket.socket) -> int:
    """Read (and drop) what ``sock`` has now, without waiting (it is made nonblocking); return
    the byte count. Stops at EOF too."""
    sock.setblocking(False)
    total = 0
    while True:
        try:
            data = sock.recv(1 << 20)
        except BlockingIOError:
            return total
        if not data:
            return total
        total += len(data)


async def read_exactly(sock: socket.socket, n: int) -> bytes:
    """Read ``n`` bytes from ``sock`` on the running loop (the socket is made nonblocking)."""
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    out = bytearray()
    while len(out) < n:
        data = await loop.sock_recv(sock, min(1 << 20, n - len(out)))
        if not data:
            break
        out += data
    return bytes(out)


def recv_exactly(sock: socket.socket, n: int, guard: float = 30.0) -> bytes:
    """Read ``n`` bytes in this thread (blocking, with a hang guard); fewer at end of stream."""
    sock.settimeout(guard)
    got = bytearray()
    while len(got) < n:
        chunk = sock.recv(min(1 << 20, n - len(got)))
        if not chunk:
            break
        got += chunk
    return bytes(got)


def recv_to_eof(sock: socket.socket, guard: float = 30.0) -> bytes:
    """Everything readable until the peer's close (blocking; ``guard`` seconds as a hang guard)."""
    sock.settimeout(guard)
    out = bytearray()
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            return bytes(out)
        out += chunk


def every_split(total: int) -> Iterator[int]:
    """Every byte count a kernel could consume of ``total`` bytes: 0..total."""
    return iter(range(total + 1))


def run_threads(threads: Iterable[threading.Thread], guard: float) -> None:
    """Start every thread, join each with the hang guard ``guard``, and fail if any still runs."""
    pool = list(threads)
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(guard)
    assert not any(thread.is_alive() for thread in pool)


def overlapped_as_new(ov: WSAOverlapped) -> bool:
    """True when ``ov`` is an exact ``WSAOverlapped`` holding what a new one holds before any
    post, in the fields a post does not set: what the compiled build's pool of reusable
    overlappeds (``_engine._OV_POOL``) must keep, so that it holds nothing alive."""
    return (
        type(ov) is WSAOverlapped
        and ov._event is None
        and ov._error == 0
        and ov._exc is None
        and ov._routine is None
        and ov._waiter is None
        and ov._tevent is None
        and ov._dest is None
        and ov._engine is None
        and not ov._bufs
    )
