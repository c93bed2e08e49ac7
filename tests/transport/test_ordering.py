"""Issue 3's ordering and byte-exactness test, through WSATransport (SPEC S5.4, S6.4, S7.1-S7.2).

Several tasks post over 500 sends of mixed shapes (0 to 40 buffers, 0 B to 70 KB) through
``send`` (some with completion routines, some awaited), ``write`` and ``writelines``, to a peer
with small socket buffers. The received stream must be the sends in call order, whole; the
protocol's ``send_completed`` calls must come in posting order with exact counts, each after
its send's completion routine.
"""

from __future__ import annotations

import array
import asyncio
import random
import socket
from typing import Any

import pytest

from tests.helpers import SMALL_BUF, pattern, read_exactly, tcp_pair
from wsasend import CompletedSend, WSAOverlapped

from .util import GUARD, Recorder, wrap

TASKS = 4
SENDS_PER_TASK = 150  # 600 calls in all, over 500 of them posting bytes or empty sends
MAX_BUFFERS = 40
MAX_SEND = 70 * 1024


def _shape(rng: random.Random, seed: int) -> list[Any]:
    """One send's buffers: 0..40 pieces of one patterned block of 0..70 KB, mixed types."""
    count = rng.randint(0, MAX_BUFFERS)
    size = rng.choice([0, rng.randint(1, 100), rng.randint(1, MAX_SEND)])
    if count == 0:
        return []
    data = pattern(size, seed)
    cuts = sorted(rng.randint(0, size) for _ in range(count - 1))
    pieces: list[Any] = []
    for lo, hi in zip([0, *cuts], [*cuts, size], strict=True):
        piece = data[lo:hi]
        kind = rng.randrange(4)
        if kind == 1:
            pieces.append(bytearray(piece))
        elif kind == 2:
            pieces.append(memoryview(piece))
        elif kind == 3 and len(piece) % 4 == 0:
            pieces.append(array.array("i", piece))  # counted in bytes, not items (gh-135862)
        else:
            pieces.append(piece)
    return pieces


def _nbytes(buffers: list[Any]) -> int:
    return sum(memoryview(b).nbytes for b in buffers)


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_UNIX])
async def test_WSATransport_ordering_mixed_send_write_writelines(family: int) -> None:
    if family == socket.AF_UNIX:
        ours, peer = socket.socketpair()
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUF)
    else:
        ours, peer = tcp_pair(bufsize=SMALL_BUF)
    rng = random.Random(4242 + family)
    # Posting order, as the calls happen: (expected bytes, the overlapped for send() or None).
    posted: list[tuple[bytes, WSAOverlapped | None]] = []
    trace: list[tuple[str, WSAOverlapped]] = []  # routine and send_completed calls, in order

    class Tracing(Recorder):
        def send_completed(self, overlapped: CompletedSend) -> None:
            super().send_completed(overlapped)
            trace.append(("completed", overlapped.overlapped))

    def routine(error: int, transferred: int, ov: WSAOverlapped, flags: int) -> None:
        assert (error, transferred, flags) == (0, ov.nbytes, 0)
        trace.append(("routine", ov))

    with peer:
        transport, proto = await wrap(ours, Tracing)
        transport.set_write_buffer_limits(high=1 << 30)  # this test is about order, not pausing

        async def producer(task: int) -> None:
            for i in range(SENDS_PER_TASK):
                bufs = _shape(rng, seed=task * 1000 + i)
                expected = b"".join(bytes(memoryview(b).cast("B")) for b in bufs)
                how = rng.randrange(5)
                if how == 0 and len(bufs) == 1:
                    transport.write(bufs[0])
                    if expected:
                        posted.append((expected, None))
                elif how == 1:
                    transport.writelines(bufs)
                    if expected:
                        posted.append((expected, None))
                else:
                    ov = transport.send(bufs, completion_routine=routine if how == 2 else None)
                    posted.append((expected, ov))
                    if how == 3:
                        assert await asyncio.wait_for(ov, GUARD) == len(expected)
                if rng.random() < 0.3:
                    await asyncio.sleep(0)

        total_guess = TASKS * SENDS_PER_TASK * MAX_SEND  # the reader stops at EOF, not at this
        reader = asyncio.ensure_future(read_exactly(peer, total_guess))
        await asyncio.wait_for(asyncio.gather(*(producer(t) for t in range(TASKS))), 4 * GUARD)
        transport.close()
        await proto.wait_lost()
        received = await asyncio.wait_for(reader, GUARD)

    expected_stream = b"".join(data for data, _ in posted)
    assert len(posted) >= 500  # empty write()/writelines() post nothing, as in asyncio
    assert len(received) == len(expected_stream)
    assert received == expected_stream  # whole, in call order, nothing twice or skipped
    # send_completed: every posted send once, in posting order, exact counts.
    assert len(proto.completed) == len(posted)
    for ov, (data, sent) in zip(proto.completed, posted, strict=True):
        assert ov.error == 0 and ov.transferred == ov.nbytes == len(data)
        if sent is not None:
            assert ov.overlapped is sent
    assert sum(ov.transferred for ov in proto.completed) == len(received)
    # Each routine ran before its send's send_completed, and routines ran in posting order.
    with_routine = [ov for _, ov in posted if ov is not None and ov.completion_routine is not None]
    assert [ov for kind, ov in trace if kind == "routine"] == with_routine
    seen: set[int] = set()
    for kind, ov in trace:
        if kind == "routine":
            seen.add(id(ov))
        elif ov.completion_routine is not None:
            assert id(ov) in seen
    proto.check()


async def test_writelines_captures_the_list_when_called() -> None:
    """S2.1 through ``writelines``: the caller's list is captured at the call (its bytes are
    not copied), so emptying or refilling it afterwards changes nothing on the wire, whether
    the write went out at once or had to wait behind a full socket buffer."""
    ours, peer = tcp_pair(bufsize=SMALL_BUF)
    with peer:
        transport, proto = await wrap(ours)
        expected = bytearray()
        lines: list[bytes] = []
        for seed in range(300):  # 300 x 3 KB against a 64 KiB buffer: most wait
            block = pattern(3000, seed)
            lines[:] = [block[:1000], block[1000:2500], block[2500:]]
            transport.writelines(lines)
            expected += block
            lines[:] = [b"!" * 3000]  # what a reused list holds next: never sent
            lines.clear()
        assert transport.get_write_buffer_size() > 0  # some writes did wait
        assert await asyncio.wait_for(read_exactly(peer, len(expected)), GUARD) == bytes(expected)
        transport.close()
        await proto.wait_lost()
        proto.check()
