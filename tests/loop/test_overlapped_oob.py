"""MSG_OOB's urgent mark belongs with the last byte of its own send (S4.1), however the send is cut.

Linux marks the last byte of each ``sendmsg`` made with MSG_OOB as urgent, so a send of more
than IOV_MAX buffers (several ``sendmsg`` calls) must carry the flag on the last call only, and
two MSG_OOB sends must not be coalesced into one call (that would leave one mark for two sends).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from wsasend import MSG_OOB, wsa_send, wsa_send_sync
from wsasend._queue import PendingSend, SendQueue

from ..helpers import read_exactly, tcp_pair

# Hang guard only.
GUARD = 30.0
OOB = int(socket.MSG_OOB)


class FlagRecordingSocket(socket.socket):
    """A real socket that records the flags and the byte count of every ``sendmsg``."""

    calls: list[tuple[int, int]]

    def sendmsg(self, buffers: Any, ancdata: Any = (), flags: int = 0, address: Any = None) -> int:
        n = super().sendmsg(buffers, ancdata, flags)
        self.calls.append((flags, n))
        return n


def recording_pair() -> tuple[FlagRecordingSocket, socket.socket]:
    a, b = tcp_pair()
    rec = FlagRecordingSocket(fileno=a.detach())
    rec.calls = []
    return rec, b


def _op(nbufs: int, flags: int) -> PendingSend:
    op = PendingSend()
    op._load([b"x"] * nbufs, nbufs, flags)
    return op


def test_SendQueue_solo_flags_are_never_coalesced_and_say_where_the_send_ends() -> None:
    queue: SendQueue[PendingSend] = SendQueue(iov_max=4, solo_flags=OOB)
    first, second, plain = _op(6, OOB), _op(2, OOB), _op(1, 0)
    for op in (first, second, plain):
        queue.submit(op)
    iov, flags = queue.next_batch()
    assert (len(iov), flags, queue.last_batch_ends_op) == (4, OOB, False)  # 4 of 6 buffers
    assert queue.bytes_sent(4) == []
    iov, flags = queue.next_batch()
    assert (len(iov), flags, queue.last_batch_ends_op) == (2, OOB, True)  # the rest, alone
    assert queue.bytes_sent(2) == [first]
    iov, flags = queue.next_batch()
    assert (len(iov), flags, queue.last_batch_ends_op) == (2, OOB, True)  # not joined with plain
    assert queue.bytes_sent(2) == [second]
    queue.check()


async def test_wsa_send_MSG_OOB_marks_only_the_last_sendmsg_of_each_send() -> None:
    a, b = recording_pair()
    try:
        big = [bytes([i % 251]) for i in range(1500)]  # > IOV_MAX buffers: at least two calls
        ovs = [wsa_send(a, big, MSG_OOB), wsa_send(a, [b"y"] * 3, MSG_OOB), wsa_send(a, b"plain")]
        async with asyncio.timeout(GUARD):
            done = [await ov for ov in ovs]
        assert done == [1500, 3, 5]
        oob_calls = [(f & OOB, n) for f, n in a.calls]
        # The big send: every call but the one with its last byte goes without the flag, and
        # that one carries the last byte alone (issue 10 item 5: Linux marks the last byte a
        # call *takes*, so a short call with the flag would misplace the mark).
        big_calls, rest = oob_calls[:-3], oob_calls[-3:]
        assert sum(n for _, n in big_calls) == 1500 and len(big_calls) >= 2
        assert [f for f, _ in big_calls] == [0] * (len(big_calls) - 1) + [OOB]
        assert big_calls[-1] == (OOB, 1)
        # The second OOB send has a mark of its own, on its last byte; the plain send has none.
        assert rest == [(0, 2), (OOB, 1), (0, 5)]
    finally:
        a.close()
        b.close()


async def test_wsa_send_sync_MSG_OOB_marks_only_the_last_sendmsg() -> None:
    a, b = recording_pair()
    try:
        b.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)  # urgent bytes stay in the stream
        reader = asyncio.ensure_future(read_exactly(b, 1500))
        await asyncio.sleep(0)
        big = [bytes([i % 251]) for i in range(1500)]
        assert await asyncio.get_running_loop().run_in_executor(None, wsa_send_sync, a, big, MSG_OOB) == 1500
        async with asyncio.timeout(GUARD):
            data = await reader
        assert data == b"".join(big)
        flags = [f & OOB for f, _ in a.calls]
        assert len(flags) >= 2 and flags == [0] * (len(flags) - 1) + [OOB]
        assert a.calls[-1][1] == 1  # the flagged call carries the last byte alone (issue 10)
    finally:
        a.close()
        b.close()
