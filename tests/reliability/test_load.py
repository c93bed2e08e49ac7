"""Issue 7, item 1: many connections, many sends, several posting tasks each, checked byte-exact.

A server in another process (``peer.py frames``) parses every stream as sequence-numbered frames,
checks each frame against what the client must have built, checks that every posting task's
frames arrive in that task's order, and hashes each whole stream. The client hashes what it
posted, in posting order, at the moment it posts (SPEC S5.4: posting order is wire order), so
equal digests mean every stream arrived byte-exact: nothing lost, repeated, reordered or
interleaved. Every send's ``transferred`` is checked too (S6.4).

Size: ``WSASEND_FULL=1`` runs the issue's 500 connections x 2,000 sends on each loop; CI runs
``CI_CONNS`` x ``CI_SENDS`` (see docs/reliability.md for the timings behind that choice).
"""

from __future__ import annotations

import array
import asyncio
import gc
import hashlib
import socket
import struct
from typing import Any

from wsasend import WSABUF, WSAOverlapped, closesocket, wsa_send
from wsasend._api import _ENGINES

from . import peer
from ._support import FULL, FdLedger, PeerProcess, assert_no_writer

# The size, and the one CI affords on both loops within its time budget (arbitrary,
# measured: see docs/reliability.md).
FULL_CONNS, FULL_SENDS = 500, 2000
CI_CONNS, CI_SENDS = 500, 500
TASKS = 4
# Hang guard for the whole run (not a timing assertion).
TIMEOUT = 1200.0 if FULL else 110.0

_POOL2 = memoryview(peer.make_pool() + peer.make_pool()[: peer.MAX_PAYLOAD])


def _frame_buffers(conn: int, task: int, seq: int) -> tuple[object, list[Any]]:
    """One frame in one of eight buffer shapes; returns (what to post, the bytes in wire order)."""
    off, length = peer.frame_payload_span(conn, task, seq)
    header = peer.HEADER.pack(length, conn, task, seq)
    payload = _POOL2[off : off + length]
    shape = (seq * 7 + task) % 8
    if shape == 0:
        bufs: object = [header, payload]
        wire: list[Any] = [header, payload]
    elif shape == 1:
        whole = header + bytes(payload)
        bufs, wire = [whole], [whole]
    elif shape == 2:
        third = length // 3
        parts = [header[:5], header[5:], payload[:third], payload[third : 2 * third], payload[2 * third :]]
        bufs, wire = parts, parts
    elif shape == 3:
        # A WSABUF shorter than its buffer: only ``len`` bytes go out (S8.3).
        longer = _POOL2[off : off + length + 5]
        bufs = [bytearray(header), WSABUF(length, longer)]
        wire = [header, payload]
    elif shape == 4:
        bufs = [b"", header, bytearray(), payload, memoryview(b"")]
        wire = [header, payload]
    elif shape == 5:
        bufs = (array.array("B", header), memoryview(bytes(payload)))
        wire = [header, payload]
    elif shape == 6:
        whole = header + bytes(payload)
        bufs, wire = whole, [whole]  # a bare bytes-like object is one buffer (S1)
    else:
        step = 1 + seq % 16
        pieces = [header] + [payload[i : i + step] for i in range(0, min(length, 40 * step), step)]
        if length > 40 * step:
            pieces.append(payload[40 * step :])
        bufs, wire = tuple(pieces), pieces
    return bufs, wire


class _Conn:
    def __init__(self, conn_id: int, sock: socket.socket) -> None:
        self.id = conn_id
        self.sock = sock
        self.fd = sock.fileno()
        self.digest = hashlib.blake2b(digest_size=16)
        self.posted = 0
        self.transferred = 0
        self.routine_calls = 0

    def post(self, bufs: object, wire: list[Any], **kwargs: Any) -> WSAOverlapped:
        ov = wsa_send(self.sock, bufs, **kwargs)
        # Posting order is wire order (S5.4), so the digest is updated right after the post.
        for chunk in wire:
            self.digest.update(chunk)
            self.posted += len(chunk)
        return ov

    def account(self, ovs: list[tuple[WSAOverlapped, int]]) -> None:
        for ov, nbytes in ovs:
            assert not ov.pending
            assert ov.error == 0, ov
            assert ov.transferred == nbytes, (ov.transferred, nbytes)
            self.transferred += ov.transferred
        ovs.clear()

    async def run_task(self, task: int, sends: int) -> None:
        outstanding: list[tuple[WSAOverlapped, int]] = []
        # Each task completes its sends its own way (all of S5.3's ways are exercised).
        mode = task % 4

        def routine(error: int, transferred: int, ov: WSAOverlapped, flags: int) -> None:
            assert error == 0 and flags == 0
            self.routine_calls += 1

        for seq in range(sends):
            bufs, wire = _frame_buffers(self.id, task, seq)
            nbytes = sum(len(memoryview(w)) for w in wire)
            if mode == 0:
                ov = self.post(bufs, wire)
                assert await ov == nbytes
            elif mode == 1:
                ov = self.post(bufs, wire)
                if seq % 64 == 63:
                    await ov
            elif mode == 2:
                ov = self.post(bufs, wire, completion_routine=routine)
                if seq % 32 == 31:
                    while ov.pending:
                        await asyncio.sleep(0)
            else:
                ov = self.post(bufs, wire)
                if seq % 48 == 47:
                    await ov.event.wait_async()
            outstanding.append((ov, nbytes))
            if len(outstanding) >= 256:
                await outstanding[-1][0]
            if not outstanding[-1][0].pending:
                # Completions come in posting order (S5.4): the last one done means all are.
                self.account(outstanding)
            if seq % 97 == 0:
                await asyncio.sleep(0)
        for ov, _ in outstanding:
            if ov.pending:
                await ov
        self.account(outstanding)


async def _open_conns(port: int, count: int) -> list[_Conn]:
    conns = []
    for i in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        # Mixed socket modes (S5.10): blocking, nonblocking, and with a timeout.
        if i % 3 == 0:
            sock.setblocking(False)
        elif i % 3 == 2:
            sock.settimeout(30.0)
        conns.append(_Conn(i, sock))
    return conns


async def _run_load(port: int, server: PeerProcess, conns_n: int, per_task: int) -> int:
    loop = asyncio.get_running_loop()
    conns = await _open_conns(port, conns_n)

    async def one(conn: _Conn) -> None:
        hello = struct.pack("!I", conn.id)
        ov = conn.post([peer.HELLO, hello], [peer.HELLO, hello])
        await ov
        conn.transferred += ov.transferred
        await asyncio.gather(*(conn.run_task(t, per_task) for t in range(TASKS)))
        assert conn.transferred == conn.posted
        assert_no_writer(loop, conn.sock, conn.fd)
        closesocket(conn.sock)  # nothing pending: a plain close, the peer sees EOF

    await asyncio.wait_for(asyncio.gather(*(one(c) for c in conns)), TIMEOUT)
    report = await server.line(TIMEOUT)
    assert "error" not in report, report
    by_id = {r["conn"]: r for r in report["conns"]}
    assert sorted(by_id) == list(range(conns_n))
    for conn in conns:
        got = by_id[conn.id]
        assert got["errors"] == [], (conn.id, got["errors"])
        assert got["bytes"] == conn.posted == conn.transferred, (conn.id, got["bytes"], conn.posted)
        assert got["digest"] == conn.digest.hexdigest(), conn.id
        assert got["frames"] == TASKS * per_task
        assert got["tasks"] == {str(t): per_task for t in range(TASKS)}
        assert conn.routine_calls == per_task  # task 2 of each connection used routines
    return sum(c.posted for c in conns)


async def test_load_many_connections_byte_exact() -> None:
    """Issue 7.1: every connection's stream arrives byte-exact, every send completes exactly."""
    conns_n, sends_n = (FULL_CONNS, FULL_SENDS) if FULL else (CI_CONNS, CI_SENDS)
    per_task = sends_n // TASKS
    fds = FdLedger()
    loop = asyncio.get_running_loop()
    server = PeerProcess("frames", "--conns", str(conns_n), "--timeout", str(TIMEOUT))
    try:
        total = await _run_load(server.port, server, conns_n, per_task)
    finally:
        server.close()
    assert total > conns_n * sends_n * peer.HEADER.size  # every frame has at least its header
    gc.collect()
    assert not [e for e in _ENGINES.values() if e.loop is loop], "engines left registered after close"
    fds.assert_no_leak()
