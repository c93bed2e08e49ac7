"""Zero-copy and lifetimes on the overlapped path, on both loops (SPEC S2.1, S1 registry, S5).

No payload byte is copied (tracemalloc), the caller's buffers are held exactly while their
send is pending and released when it completes, and neither the engine registry nor completed
sends keep sockets or overlappeds alive.
"""

from __future__ import annotations

import array
import asyncio
import gc
import hashlib
import socket
import tracemalloc
import weakref

import pytest

from tests.helpers import fill_socket, overlapped_as_new, read_exactly
from wsasend import WSAOverlapped, closesocket, wsa_send
from wsasend._engine import _OV_POOL

# Hang guard only.
GUARD = 60.0

PAYLOAD = 48 * 1024 * 1024  # large enough that any copy stands out against everything else
# Allocation allowed while sending it: asyncio's handles and futures, our overlapped objects
# (measured: ~300 KB peak). Arbitrary, but 1/48 of the payload: a copy of a slice of it shows.
ALLOWANCE = 1024 * 1024


async def _read_hashing(sock: socket.socket, total: int, view: memoryview) -> str:
    """Read ``total`` bytes into ``view``, reused (no allocation per read), and hash them."""
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    digest = hashlib.sha256()
    got = 0
    while got < total:
        n = await loop.sock_recv_into(sock, view[: total - got])
        assert n, "EOF before everything arrived"
        digest.update(view[:n])
        got += n
    return digest.hexdigest()


async def test_wsa_send_large_memoryview_is_not_copied() -> None:
    a, b = socket.socketpair()
    try:
        source = bytearray(PAYLOAD)
        for i in range(0, PAYLOAD, 4096):
            source[i : i + 8] = i.to_bytes(8, "little")
        whole = memoryview(source)
        slices = [whole[i : i + 65536] for i in range(0, PAYLOAD, 65536)]  # 768 views, gathered
        expected = hashlib.sha256(whole).hexdigest()
        scratch = memoryview(bytearray(1 << 20))  # the reader's buffer, made before tracing
        gc.collect()
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            first = wsa_send(a, whole)
            second = wsa_send(a, slices)
            async with asyncio.timeout(GUARD):
                got_first = await _read_hashing(b, PAYLOAD, scratch)
                got_second = await _read_hashing(b, PAYLOAD, scratch)
                assert await first == PAYLOAD and await second == PAYLOAD
            peak = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
        assert got_first == expected and got_second == expected
        assert first.pending is False and not first.completed_immediately  # it really queued
        assert peak < ALLOWANCE, f"{peak} bytes allocated while sending {2 * PAYLOAD}"
    finally:
        a.close()
        b.close()


async def test_buffers_are_held_while_pending_and_released_on_completion() -> None:
    a, b = socket.socketpair()
    try:
        filled = fill_socket(a)
        held = bytearray(b"held until sent")
        withdrawn = bytearray(b"withdrawn")
        ov = wsa_send(a, [held])
        ov_w = wsa_send(a, withdrawn)
        # S2.1: no copy: the send holds the caller's memory (a resize would move it).
        with pytest.raises(BufferError):
            held.extend(b"!")
        with pytest.raises(BufferError):
            withdrawn.extend(b"!")
        assert ov_w.cancel() is True
        withdrawn.extend(b"!")  # released as soon as the send completed (aborted)
        async with asyncio.timeout(GUARD):
            got = await read_exactly(b, filled + 15)
            assert await ov == 15
        assert got[filled:] == b"held until sent"
        held.extend(b"!")  # released on completion
        assert held.endswith(b"sent!")
    finally:
        a.close()
        b.close()


async def test_buffers_released_when_closesocket_aborts() -> None:
    a, b = socket.socketpair()
    try:
        fill_socket(a)
        data = bytearray(1000)
        ov = wsa_send(a, [b"x", data])
        with pytest.raises(BufferError):
            data.extend(b"!")
        closesocket(a)
        assert ov.error and not ov.pending
        data.extend(b"!")
    finally:
        b.close()


def _live_overlappeds() -> int:
    # Counted through the collector, not weakref.ref: the compiled build's WSAOverlapped takes
    # no weak references (SPEC S10), and it is a GC-tracked object in both builds. Those the
    # compiled build keeps for reuse (_engine._OV_POOL, bounded) are not counted: they hold
    # nothing (checked here; tests/loop/test_overlapped_pool.py tests the pool itself).
    pooled = {id(ov) for ov in _OV_POOL}
    assert all(overlapped_as_new(ov) for ov in _OV_POOL)
    return sum(type(o) is WSAOverlapped and id(o) not in pooled for o in gc.get_objects())


async def test_completed_sends_and_closed_sockets_are_not_kept_alive() -> None:
    a, b = socket.socketpair()
    gc.collect()
    live_before = _live_overlappeds()
    arrays: list[weakref.ref[array.array[int]]] = []
    filled = fill_socket(a)
    for i in range(500):
        payload = array.array("i", [i] * 10)
        arrays.append(weakref.ref(payload))
        wsa_send(a, [payload, b"|"])
        del payload
    last = wsa_send(a, b"end")
    async with asyncio.timeout(GUARD):
        await read_exactly(b, filled + 500 * 41 + 3)
        assert await last == 3
    del last
    gc.collect()
    assert _live_overlappeds() <= live_before, "completed overlappeds are still referenced"
    assert all(r() is None for r in arrays), "sent buffers are still referenced"
    # The registry does not keep the socket alive either (after it was closed behind our back
    # with a send pending, too).
    fill_socket(a)
    pending = wsa_send(a, b"never")
    sock_ref = weakref.ref(a)
    a.close()
    async with asyncio.timeout(GUARD):
        with pytest.raises(OSError):
            await pending
    del a, pending
    gc.collect()
    assert sock_ref() is None
    b.close()
