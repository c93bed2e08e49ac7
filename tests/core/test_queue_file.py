"""File sends in the pure queue (SPEC S9.3, S5.4, S5.7, S6.4): no loop, no socket.

A file send is a send with no buffers and flags of its own; the engine reports its progress
with ``head_file_sent``. The queue must never coalesce across it, must keep its progress as
the head's consumed count (so ``fail`` and ``withdraw`` stay exact), and must keep its
invariants (``check()``) at every step.
"""

from __future__ import annotations

from wsasend._engine import _FILE_OP
from wsasend._queue import PendingSend, SendCompletion, SendQueue

FILE = _FILE_OP  # the engine's flags for a file send


def _send(data: bytes) -> PendingSend:
    op = PendingSend()
    op._load([data], len(data))
    return op


def _file(nbytes: int) -> PendingSend:
    op = PendingSend()
    op._load([], nbytes, FILE)
    return op


def test_SendQueue_file_send_is_never_coalesced_and_keeps_order() -> None:
    q: SendQueue[PendingSend] = SendQueue()
    a, f, b = _send(b"aaaa"), _file(1000), _send(b"bb")
    for op in (a, f, b):
        q.submit(op)
    q.check()
    iov, flags = q.next_batch()
    assert (iov, flags) == ([b"aaaa"], 0)  # stops before the file
    assert q.bytes_sent(4) == [a]
    assert q.next_batch() == ([], FILE)  # the file at the head: nothing for sendmsg
    assert q.head_file_sent(600) == []
    q.check()
    assert q.unsent_bytes == 400 + 2 and q.head_consumed == 600 and q.is_started(f)
    assert q.withdraw(f) is None  # started: it must finish (S5.7)
    assert q.head_file_sent(400) == [f]
    assert q.head_consumed == 0
    assert q.next_batch() == ([b"bb"], 0)
    assert q.bytes_sent(2) == [b]
    q.check()
    assert not q and q.unsent_bytes == 0


def test_SendQueue_fail_gives_a_started_file_its_exact_count() -> None:
    q: SendQueue[PendingSend] = SendQueue()
    f, b = _file(1000), _send(b"bb")
    q.submit(f)
    q.submit(b)
    q.head_file_sent(123)
    assert q.fail() == [SendCompletion(f, 123), SendCompletion(b, 0)]
    q.check()
    assert q.unsent_bytes == 0


def test_SendQueue_fail_head_fails_the_file_alone() -> None:
    q: SendQueue[PendingSend] = SendQueue()
    f, b = _file(1000), _send(b"bb")
    q.submit(f)
    q.submit(b)
    q.head_file_sent(10)
    assert q.fail_head() == SendCompletion(f, 10)
    q.check()
    assert q.unsent_bytes == 2 and q.head_consumed == 0
    assert q.next_batch() == ([b"bb"], 0)


def test_SendQueue_file_ended_early_completes_with_what_it_sent() -> None:
    q: SendQueue[PendingSend] = SendQueue()
    f = _file(1000)
    q.submit(f)
    q.head_file_sent(300)
    assert q.head_file_ended() is f
    assert f._nbytes == 300
    q.check()
    assert not q and q.unsent_bytes == 0


def test_SendQueue_unstarted_file_can_be_withdrawn() -> None:
    q: SendQueue[PendingSend] = SendQueue()
    a, f = _send(b"a"), _file(50)
    q.submit(a)
    q.submit(f)
    assert q.withdraw(f) == [f]
    q.check()
    assert q.unsent_bytes == 1
