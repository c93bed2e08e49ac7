"""Regression test (issue 7): coalescing must not gather far more bytes than a sendmsg can take.

Found by the 1 GiB memory test: 1 GiB posted as ~4,600 slices of one memoryview took 12 s to
drain (0.6 s as one send), because every ``sendmsg`` was handed up to IOV_MAX buffers, about
1 GiB of views, built and walked in Python, only for the kernel to take ~200 KiB of them.
No time is measured here: the test checks the batch itself, on the pure queue.
"""

from __future__ import annotations

from wsasend._buffers import IOV_MAX
from wsasend._queue import BATCH_BYTES, PendingSend, SendQueue


def _op(bufs: list[bytes | memoryview]) -> PendingSend:
    op = PendingSend()
    op._load(list(bufs), sum(len(b) for b in bufs))
    return op


def test_SendQueue_batch_of_large_sends_stops_at_the_byte_cap() -> None:
    queue: SendQueue[PendingSend] = SendQueue()
    chunk = BATCH_BYTES // 4
    big = memoryview(bytearray(chunk))
    for _ in range(2000):
        queue.submit(_op([big]))
    iov, _ = queue.next_batch()
    gathered = sum(len(b) for b in iov)
    assert BATCH_BYTES <= gathered < BATCH_BYTES + chunk  # the cap, reached by whole sends, no more
    assert len(iov) < IOV_MAX
    # And the accounting after a partial send still walks the right buffers.
    done = queue.bytes_sent(3 * chunk + 5)
    assert len(done) == 3
    assert queue.head_consumed == 5
    queue.check()


def test_SendQueue_small_sends_still_coalesce_to_iov_max() -> None:
    queue: SendQueue[PendingSend] = SendQueue()
    for i in range(3000):
        queue.submit(_op([bytes([i & 0xFF]) * 10]))
    iov, _ = queue.next_batch()
    assert len(iov) == IOV_MAX  # S5.4: small sends go out together, up to IOV_MAX buffers


def test_SendQueue_head_alone_is_not_cut_by_the_cap() -> None:
    queue: SendQueue[PendingSend] = SendQueue()
    queue.submit(_op([bytes(3 * BATCH_BYTES)]))
    queue.submit(_op([b"tail"]))
    iov, _ = queue.next_batch()
    assert sum(len(b) for b in iov) == 3 * BATCH_BYTES  # the head goes as posted; nothing after it
