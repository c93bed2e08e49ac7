"""Runs: plain sends posted back to back share one queue entry, and still complete one by one.

``wsa_send(sock, [bytes, ...])`` and ``WSATransport.send`` posted behind a queued send join it
(``SendQueue.join_tail``, issue 11: no list of its own to capture, gather and free). None of it
may show: each send completes on its own, in posting order, with its own count (S5.3, S6.4); a
send can be withdrawn while none of its bytes went (S5.7); S5.6 counts sends, not entries; a
send's buffers are let go once its bytes are sent (S2). Real sockets, both loops (conftest).
"""

from __future__ import annotations

import asyncio
import socket
import sys

import pytest

import wsasend
from tests.helpers import pattern, read_exactly, tcp_pair
from wsasend import WSAError, WSAErrorCode, set_max_pending, wsa_send
from wsasend._api import find_engine
from wsasend._engine import SendEngine
from wsasend._queue import RUN_BUFS, SendRun

GUARD = 60.0  # hang guard only


def _runs(engine: SendEngine) -> list[SendRun]:
    return [entry for entry in engine._ops if isinstance(entry, SendRun)]


def _member(run: SendRun, index: int) -> wsasend.WSAOverlapped:
    member = run._members[index]
    assert isinstance(member, wsasend.WSAOverlapped)
    return member


def _engine(sock: socket.socket) -> SendEngine:
    engine = find_engine(sock)
    assert engine is not None
    return engine


def _post_stalled(count: int) -> tuple[socket.socket, socket.socket, list[list[bytes]], list[wsasend.WSAOverlapped]]:
    """A TCP pair whose reader does not read yet, and ``count`` sends of 1-3 patterned buffers
    (sizes vary) posted on it back to back: most of them wait, joined into runs."""
    a, b = tcp_pair(bufsize=64 * 1024)
    a.setblocking(False)
    b.setblocking(False)
    sends = [
        [pattern(100 + (i * 37) % 900, seed=i), pattern(1 + i % 7, seed=i + 1)][: 1 + i % 2]
        + ([pattern(64, seed=i + 2)] if i % 3 == 0 else [])
        for i in range(count)
    ]
    ovs = [wsa_send(a, bufs) for bufs in sends]
    return a, b, sends, ovs


async def test_sends_joined_into_runs_complete_one_by_one_in_posting_order() -> None:
    a, b, sends, ovs = _post_stalled(3000)
    with a, b:
        engine = _engine(a)
        runs = _runs(engine)
        assert runs, "sends posted back to back behind a full socket join runs"
        assert any(len(run._members) > 2 for run in runs)
        assert all(len(run._bufs) <= RUN_BUFS for run in runs)
        pending = [ov for ov in ovs if ov.pending]
        assert len(engine._queue) == engine.pending_count() == len(pending) > len(engine._ops)
        expected = b"".join(b"".join(bufs) for bufs in sends)
        got = bytearray()
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(GUARD):
            while len(got) < len(expected):
                got += await loop.sock_recv(b, 7919)  # small reads: runs finish a piece at a time
                await asyncio.sleep(0)
                done = [not ov.pending for ov in ovs]
                # Completions are a prefix of posting order: never a later send before an earlier.
                assert done == sorted(done, reverse=True)
                for ov, bufs in zip(ovs, sends, strict=True):
                    if ov.pending:
                        assert ov.transferred == 0
                        continue
                    assert ov.error == 0 and ov.transferred == ov.nbytes == sum(map(len, bufs))
            assert bytes(got) == expected
            assert [await ov for ov in ovs] == [sum(map(len, bufs)) for bufs in sends]
        assert not engine._ops and len(engine._queue) == 0


async def test_a_run_member_is_withdrawn_alone_while_none_of_its_bytes_went() -> None:
    a, b, sends, ovs = _post_stalled(1500)
    with a, b:
        engine = _engine(a)
        run = _runs(engine)[-1]
        first, middle, last = _member(run, 0), _member(run, len(run._members) // 2), _member(run, -1)
        assert middle is not first and middle is not last
        before = len(engine._queue)
        assert middle.cancel() is True  # S5.7: none of its bytes went
        assert middle.error == WSAErrorCode.WSA_OPERATION_ABORTED and middle.transferred == 0
        assert middle.cancel() is False  # (already complete)
        assert len(engine._queue) == before - 1 and middle not in run._members
        assert last.cancel() is True  # the run's tail too
        index = {id(ov): i for i, ov in enumerate(ovs)}
        gone = {index[id(middle)], index[id(last)]}
        expected = b"".join(b"".join(bufs) for i, bufs in enumerate(sends) if i not in gone)
        async with asyncio.timeout(GUARD):
            assert await read_exactly(b, len(expected)) == expected
            for i, ov in enumerate(ovs):
                if i in gone:
                    with pytest.raises(WSAError) as info:
                        await ov
                    assert info.value.winerror == WSAErrorCode.WSA_OPERATION_ABORTED
                    assert info.value.bytes_sent == 0
                else:
                    assert await ov == sum(map(len, sends[i]))


async def test_the_started_member_of_a_run_cannot_be_withdrawn() -> None:
    a, b, sends, _ = _post_stalled(1500)
    with a, b:
        engine = _engine(a)
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(GUARD):
            # Read until the head entry is a run whose first send is partly sent.
            got = bytearray()
            expected = b"".join(b"".join(bufs) for bufs in sends)
            head = None
            while len(got) < len(expected):
                got += await loop.sock_recv(b, 1009)
                await asyncio.sleep(0)
                head = engine._ops[0] if engine._ops else None
                if isinstance(head, SendRun) and engine._queue.head_consumed:
                    break
            assert isinstance(head, SendRun), "a run's first send was partly sent at some point"
            started = _member(head, 0)
            assert started.pending and engine._queue.is_started(started)
            assert started.cancel() is False  # S5.7: cutting it short would corrupt the stream
            got += await read_exactly(b, len(expected) - len(got))
            assert bytes(got) == expected
            assert await started == started.nbytes


@pytest.mark.parametrize("read_first", [0, 1, 150_000])
async def test_closesocket_fails_run_members_with_exact_counts(read_first: int) -> None:
    a, b, sends, ovs = _post_stalled(3000)
    with b:
        loop = asyncio.get_running_loop()
        got = bytearray()
        async with asyncio.timeout(GUARD):
            while len(got) < read_first:
                got += await loop.sock_recv(b, read_first - len(got))
                await asyncio.sleep(0)
        wsasend.closesocket(a)
        counts = [ov.transferred for ov in ovs]
        assert not any(ov.pending for ov in ovs)
        # S6.4: whole sends, at most one cut short, then nothing; S6.1: aborted ones say so.
        cut = next((i for i, ov in enumerate(ovs) if ov.error), len(ovs))
        assert all(counts[i] == ovs[i].nbytes and ovs[i].error == 0 for i in range(cut))
        assert all(ov.error == WSAErrorCode.WSA_OPERATION_ABORTED for ov in ovs[cut:])
        assert all(c == 0 for c in counts[cut + 1 :]) and counts[cut] < ovs[cut].nbytes
        for ov in ovs[cut:]:
            exc = ov.exception
            assert exc is not None and exc.bytes_sent == ov.transferred
        async with asyncio.timeout(GUARD):
            while True:
                data = await loop.sock_recv(b, 1 << 16)
                if not data:
                    break
                got += data
        stream = b"".join(b"".join(bufs) for bufs in sends)
        assert len(got) == sum(counts) and bytes(got) == stream[: len(got)]


async def test_max_pending_counts_the_sends_of_runs() -> None:
    a, b = tcp_pair(bufsize=64 * 1024)
    with a, b:
        a.setblocking(False)
        set_max_pending(a, 300)
        posted = []
        with pytest.raises(WSAError) as info:
            for i in range(100_000):
                posted.append(wsa_send(a, [pattern(1000, seed=i)]))
        assert info.value.winerror == WSAErrorCode.WSAEWOULDBLOCK and info.value.bytes_sent == 0
        engine = _engine(a)
        pending = [ov for ov in posted if ov.pending]
        assert len(pending) == 300 == len(engine._queue) and len(engine._ops) < 300  # runs
        expected = b"".join(pattern(1000, seed=i) for i in range(len(posted)))
        async with asyncio.timeout(GUARD):
            assert await read_exactly(b, len(expected)) == expected  # nothing of the refused one
            assert [await ov for ov in posted] == [1000] * len(posted)


async def test_a_run_members_buffers_are_let_go_once_its_bytes_are_sent() -> None:
    """S2: a send's buffers are not held past its completion, though its run is still queued."""
    a, b = tcp_pair(bufsize=64 * 1024)
    with a, b:
        a.setblocking(False)
        b.setblocking(False)
        payloads = [bytes(pattern(2000, seed=i)) for i in range(2000)]
        base = [sys.getrefcount(payloads[i]) for i in range(len(payloads))]  # (no loop variable holds one)
        ovs = [wsa_send(a, [p]) for p in payloads]
        engine = _engine(a)
        first_of = {id(run): run._members[0] for run in _runs(engine)}  # (runs stay alive here)
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(GUARD):
            seen = 0  # reads after which the head run had some of its sends completed
            total = sum(map(len, payloads))
            got = 0
            while got < total:
                got += len(await loop.sock_recv(b, 3001))
                await asyncio.sleep(0)
                for i in range(len(ovs)):
                    if ovs[i].pending:
                        break
                    refs = sys.getrefcount(payloads[i])  # (outside the assert: pytest's rewrite holds one)
                    assert refs == base[i], "a completed send's buffer is let go"
                head = engine._ops[0] if engine._ops else None
                if isinstance(head, SendRun) and head._members[0] is not first_of.get(id(head), head._members[0]):
                    seen += 1
                del head  # (a run held here, once done, would hold its buffers: the test's, not ours)
            assert seen, "a run was at the head with some of its sends complete"
            for ov in ovs:
                assert await ov == 2000
