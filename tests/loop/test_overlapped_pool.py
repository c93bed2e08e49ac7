"""The compiled build reuses completed overlappeds that nobody refers to any more (issue 11).

A bare ``wsa_send`` whose result is dropped makes an overlapped that only the engine's queue
holds; once it completes, ``SendEngine._complete`` hands the ones only its ``done`` list refers
to (``_iovsend.spare``: exact type, reference count 1) to ``_engine._OV_POOL``, and the next
sends take them instead of allocating (making and freeing one was ~500 user-space instructions
of a send behind a slow reader). None of it may show: a reused overlapped is what a new one is
(S5.3, S5.8, S5.9), one that anybody holds (a caller, its event, a routine, an awaiting task, a
waiting thread, S5.5's reuse) is never taken, the pool holds no reference to anything (no
engine, socket, buffer or event kept alive) and is bounded, and the byte stream is exact. The
plain-Python build and a free-threaded one have no pool. Real sockets, both loops (conftest).
"""

from __future__ import annotations

import asyncio
import gc
import socket
import subprocess
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any, cast

import pytest

import wsasend
from tests.conftest import LOOP_FACTORIES
from tests.helpers import overlapped_as_new, pattern, read_exactly, run_threads, tcp_pair
from wsasend import WSAOverlapped, closesocket, wsa_send
from wsasend import _engine as engine_module

GUARD = 60.0  # hang guard only
POOLED = engine_module._IOV_SPARE is not None


def _payloads(count: int, seed: int) -> list[list[bytes]]:
    """``count`` sends of one or two patterned buffers of varying sizes: no two alike."""
    return [
        [pattern(200 + (i * 61) % 1500, seed=seed + i)] + ([pattern(1 + i % 13, seed=seed + i + 7)] if i % 2 else [])
        for i in range(count)
    ]


class _Context:
    """A hEvent context value (S5.3), weakly referenceable."""


def _in_pool(ov: WSAOverlapped) -> bool:
    return any(item is ov for item in engine_module._OV_POOL)


async def _post_dropped_and_read(a: socket.socket, b: socket.socket, sends: list[list[bytes]]) -> None:
    """Post every send with its result dropped (all but the last), read the byte stream back
    exactly, await the last send."""
    last = None
    for bufs in sends:
        last = wsa_send(a, bufs)
    assert last is not None
    expected = b"".join(b"".join(bufs) for bufs in sends)
    async with asyncio.timeout(GUARD):
        assert await read_exactly(b, len(expected)) == expected
        assert await last == sum(map(len, sends[-1]))


def test_only_the_compiled_build_with_the_gil_pools() -> None:
    if not engine_module._NATIVE or engine_module._iovsend_module is None:
        assert engine_module._IOV_SPARE is None
    if not POOLED:
        # (nothing to take, nothing put: _stream_overlapped always makes a new one)
        assert engine_module._OV_POOL == []


async def test_dropped_sends_are_reused_and_the_stream_stays_exact() -> None:
    a, b = tcp_pair(bufsize=64 * 1024)
    with a, b:
        a.setblocking(False)
        b.setblocking(False)
        for cycle in range(3):
            # Behind a reader that has not read yet: most sends wait, then complete in bulk.
            await _post_dropped_and_read(a, b, _payloads(1500, seed=cycle * 10_000))
            if POOLED:
                assert engine_module._OV_POOL, "completed sends nobody holds go to the pool"
                assert len(engine_module._OV_POOL) <= engine_module._OV_POOL_MAX
                assert all(overlapped_as_new(ov) for ov in engine_module._OV_POOL)
            else:
                assert engine_module._OV_POOL == []
        # The next send takes the pool's last overlapped, and it behaves as a new one would.
        taken = engine_module._OV_POOL[-1] if POOLED else None
        sends = _payloads(300, seed=99_000)
        ovs = [wsa_send(a, bufs) for bufs in sends]
        if POOLED:
            assert ovs[0] is taken
        expected = b"".join(b"".join(bufs) for bufs in sends)
        for ov, bufs in zip(ovs, sends, strict=True):
            assert ov.nbytes == sum(map(len, bufs))
            assert ov.error == 0 and ov.exception is None
            assert ov.completion_routine is None and ov.hEvent is None
            if ov.pending:
                assert ov.transferred == 0
                assert not ov.event.is_set()  # made now, reset: the send is pending
        async with asyncio.timeout(GUARD):
            assert await read_exactly(b, len(expected)) == expected
            for ov, bufs in zip(ovs, sends, strict=True):
                assert await ov == sum(map(len, bufs))
        for ov, bufs in zip(ovs, sends, strict=True):
            assert not ov.pending and ov.done()
            assert ov.transferred == ov.result() == sum(map(len, bufs))
            assert ov.event.is_set()
            assert not _in_pool(ov)  # (held here: never reused)


async def test_an_overlapped_anybody_holds_is_never_reused() -> None:
    loop = asyncio.get_running_loop()
    a, b = tcp_pair(bufsize=64 * 1024)
    with a, b:
        a.setblocking(False)
        b.setblocking(False)
        engine_module._OV_POOL.clear()  # (room for this test's sends: see contexts)
        sends = _payloads(1200, seed=5)
        routine_calls: list[tuple[int, int, WSAOverlapped, bool]] = []

        def routine(error: int, transferred: int, ov: WSAOverlapped, flags: int) -> None:
            routine_calls.append((error, transferred, ov, _in_pool(ov)))

        class Mine(WSAOverlapped):
            pass

        held: list[WSAOverlapped] = []  # kept by the caller
        events: list[wsasend.WSAEvent] = []  # the overlapped dropped: its event refers to it
        routines: list[WSAOverlapped] = []
        awaited: list[asyncio.Task[int]] = []
        reposted = WSAOverlapped()  # the caller's own, reused once complete (S5.5)
        thread_waited: list[WSAOverlapped] = []
        contexts: list[weakref.ref[_Context]] = []
        timed: list[WSAOverlapped] = []
        for i, bufs in enumerate(sends):
            kind = i % 8
            if kind == 0:
                held.append(wsa_send(a, bufs))
            elif kind == 1:
                ov = wsa_send(a, bufs)
                assert not ov.event.is_set()
                events.append(ov.event)
                del ov
            elif kind == 2:
                routines.append(wsa_send(a, bufs, completion_routine=routine))
            elif kind == 3:
                awaited.append(asyncio.ensure_future(wsa_send(a, bufs)))
            elif kind == 4 and not thread_waited:
                thread_waited.append(wsa_send(a, bufs))
            elif kind == 5:
                wsa_send(a, bufs, overlapped=Mine())  # dropped, but not the exact type
            elif kind == 6:
                # The caller's own overlapped, dropped once posted, its hEvent a context value
                # (not an event: a WSAEvent refers back to its send): it may be pooled, but
                # without the value in it.
                context = _Context()
                contexts.append(weakref.ref(context))
                wsa_send(a, bufs, overlapped=WSAOverlapped(context))
                del context
            elif i % 16 == 7:
                # Waited for by this thread, in vain (it is pending), then dropped: only the
                # queue holds it, and its thread event must not stay in it in the pool.
                timed.append(wsa_send(a, bufs))
            else:
                wsa_send(a, bufs)  # dropped: may go to the pool
        timed_out: list[bool] = []
        briefly = threading.Thread(target=lambda: timed_out.extend(not ov.wait(0.001) for ov in timed if ov.pending))
        briefly.start()
        briefly.join(GUARD)
        timed.clear()
        waiter_result: list[bool] = []
        waiter = threading.Thread(target=lambda: waiter_result.append(thread_waited[0].wait(GUARD)))
        waiter.start()
        expected = b"".join(b"".join(bufs) for bufs in sends)
        async with asyncio.timeout(GUARD):
            assert await read_exactly(b, len(expected)) == expected
            results = await asyncio.gather(*awaited)
        await loop.run_in_executor(None, waiter.join, GUARD)
        assert waiter_result == [True]
        await asyncio.sleep(0)  # (the routines' call_soon)
        sizes = [sum(map(len, bufs)) for bufs in sends]
        assert any(timed_out)
        assert results == [sizes[i] for i in range(len(sends)) if i % 8 == 3]
        # Each routine saw its own send, complete and not pooled, as it was posted.
        assert [(error, n, ov) for error, n, ov, _ in routine_calls] == [(0, ov.nbytes, ov) for ov in routines]
        assert not any(pooled for *_, pooled in routine_calls)
        # More dropped sends take from the pool: a held overlapped taken now would change.
        await _post_dropped_and_read(a, b, _payloads(1200, seed=50_000))
        watched = [ev._source for ev in events if ev._source is not None]
        assert len(watched) == len(events)
        for ov in [*held, *routines, *thread_waited, *watched]:
            assert not _in_pool(ov)
            assert not ov.pending and ov.transferred == ov.result() == ov.nbytes
        for i, ov in enumerate(held):
            assert ov.nbytes == sizes[i * 8]
        assert all(ov.completion_routine is routine for ov in routines)
        assert thread_waited[0].event.is_set()
        assert all(ev.is_set() for ev in events)
        # Nothing holds the contexts: not the pool either.
        assert [ref() for ref in contexts] == [None] * len(contexts)
        assert [ov.nbytes for ov in watched] == [sizes[i] for i in range(len(sends)) if i % 8 == 1]
        # What the pool holds holds nothing (the contexts' overlappeds were among them), and no
        # subclass's overlapped is there, though nobody held them (an interpreted class may
        # carry a __dict__ or weak references of its own).
        assert all(overlapped_as_new(item) for item in engine_module._OV_POOL)
        # The caller's own overlapped, reposted once complete, still works as S5.5 says.
        reposted_bufs = [pattern(4096, seed=77)]
        ov = wsa_send(a, reposted_bufs, overlapped=reposted)
        assert ov is reposted
        async with asyncio.timeout(GUARD):
            assert await read_exactly(b, 4096) == reposted_bufs[0]
            assert await ov == 4096
        ov = wsa_send(a, reposted_bufs, overlapped=reposted)
        async with asyncio.timeout(GUARD):
            assert await read_exactly(b, 4096) == reposted_bufs[0]
            assert await ov == 4096
        assert not _in_pool(reposted)


async def test_the_pool_keeps_no_socket_or_engine_alive() -> None:
    a, b = tcp_pair(bufsize=64 * 1024)
    a.setblocking(False)
    b.setblocking(False)
    sends = _payloads(1500, seed=123)
    await _post_dropped_and_read(a, b, sends)
    assert wsasend._api.find_engine(a) is not None
    dead_socket = weakref.ref(a)  # (the engine is not weakly referenceable compiled; it holds this)
    closesocket(a)
    b.close()
    del a
    await asyncio.sleep(0)
    gc.collect()
    assert dead_socket() is None
    if POOLED:
        assert engine_module._OV_POOL
        assert all(overlapped_as_new(ov) for ov in engine_module._OV_POOL)


async def test_the_pool_is_bounded() -> None:
    a, b = tcp_pair(bufsize=64 * 1024)
    with a, b:
        a.setblocking(False)
        b.setblocking(False)
        engine_module._OV_POOL.clear()
        # More sends than the pool holds, all complete and dropped in a few flushes.
        await _post_dropped_and_read(a, b, _payloads(engine_module._OV_POOL_MAX * 3, seed=7))
        assert len(engine_module._OV_POOL) <= engine_module._OV_POOL_MAX
        if POOLED:
            assert len(engine_module._OV_POOL) > engine_module._OV_POOL_MAX // 2


@pytest.mark.skipif(not POOLED, reason="the compiled build's pool (_iovsend.spare)")
def test_spare_takes_only_the_exact_type_with_no_other_reference() -> None:
    spare = engine_module._IOV_SPARE
    assert spare is not None

    class Mine(WSAOverlapped):
        pass

    free = [WSAOverlapped() for _ in range(5)]
    held = WSAOverlapped()
    objs: list[object] = [free[0], held, Mine(), free[1], free[1], object(), free[2], free[3], free[4]]
    del free[:]
    out = spare(objs, WSAOverlapped, 10)
    # objs[3] and objs[4] are the same object, twice in the list: not free.
    assert [objs.index(x) for x in out] == [0, 6, 7, 8]
    assert spare(objs, WSAOverlapped, 2) == []  # (each now also in ``out``)
    del out
    assert [objs.index(x) for x in spare(objs, WSAOverlapped, 2)] == [0, 6]
    assert spare(objs, WSAOverlapped, 0) == []
    with pytest.raises(TypeError):
        spare(cast(Any, tuple(objs)), WSAOverlapped, 1)


_SPARE_UNDER_A_COLLECTION = """
import gc, sys
from wsasend import WSAOverlapped, _engine
spare = _engine._IOV_SPARE
kept, armed, fired = [], [False], [0]
def hook(phase, info):
    if phase == "stop" and armed[0]:
        fired[0] += 1
        kept.append(gc.get_objects())  # a reference to every tracked object, mid-call
gc.callbacks.append(hook)
inside = 0
for _ in range(50):
    objs = [WSAOverlapped() for _ in range(9)]
    drain = [[] for _ in range(100)]  # (the list free list emptied: spare allocates its list)
    gc.set_threshold(1)
    before = fired[0]
    armed[0] = True
    out = spare(objs, WSAOverlapped, 100)
    armed[0] = False
    gc.set_threshold(700)
    inside += fired[0] != before
    assert len(out) <= len(objs) and len({id(x) for x in out}) == len(out), out
    assert all(any(x is o for o in objs) and type(x) is WSAOverlapped for x in out), out
    kept.clear()
    del out, drain
print("inside", inside)
"""


@pytest.mark.skipif(not POOLED, reason="the compiled build's pool (_iovsend.spare)")
def test_spare_survives_a_collection_that_takes_references_while_it_runs() -> None:
    """``spare`` allocates its result list, and on Python 3.11 allocating a tracked object may
    run a collection right there: ``gc.callbacks`` and finalizers (Python code, other threads)
    can take references to objects it is deciding about. It once counted before the allocation
    and took after it, and then read past the end of the list (review, stop 51: a crash every
    run of this script). Run in a child, so that a crash is a failure and not the end of the
    test run; on 3.11 the collection must land inside the call, or the test proves nothing."""
    child = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", _SPARE_UNDER_A_COLLECTION],
        capture_output=True,
        text=True,
        timeout=GUARD,
        check=False,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    inside = int(child.stdout.split()[-1])
    if sys.version_info < (3, 12):
        assert inside > 0, "no collection ran inside spare(): the case was not reached"


@pytest.mark.parametrize("factory", list(LOOP_FACTORIES.values()), ids=list(LOOP_FACTORIES))
def test_loops_in_threads_share_the_pool_without_a_send_sharing_an_overlapped(
    factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    """Four threads, each its own loop and connection, post dropped sends behind a reader that
    has not read yet and then read them back, over and over: they take from and give to the one
    pool at once. An overlapped taken twice would be two live sends with one count and one set
    of buffers: streams out of order or short, a last send's count wrong, a hang (the guard)."""
    failures: list[BaseException] = []
    held_counts: list[int] = []

    async def one(seed: int) -> None:
        a, b = tcp_pair(bufsize=64 * 1024)
        with a, b:
            a.setblocking(False)
            b.setblocking(False)
            for cycle in range(8):
                sends = _payloads(700, seed=seed * 100_000 + cycle * 1_000)
                # Every seventh send held: a send still held must never have been handed out
                # again (its own count, unchanged, at the end).
                held = [(wsa_send(a, bufs), bufs if i % 7 == 0 else None) for i, bufs in enumerate(sends)]
                kept = [(ov, bufs) for ov, bufs in held if bufs is not None]
                last = held[-1][0]
                del held
                expected = b"".join(b"".join(bufs) for bufs in sends)
                async with asyncio.timeout(GUARD):
                    assert await read_exactly(b, len(expected)) == expected
                    assert await last == sum(map(len, sends[-1]))
                for ov, bufs in kept:
                    assert not ov.pending and ov.transferred == ov.nbytes == sum(map(len, bufs))
                held_counts.append(len(kept))

    def run(seed: int) -> None:
        loop = factory()
        try:
            loop.run_until_complete(one(seed))
        except BaseException as exc:  # (reported by the main thread)
            failures.append(exc)
        finally:
            loop.close()

    run_threads([threading.Thread(target=run, args=(seed,)) for seed in range(4)], GUARD * 2)
    assert failures == []
    assert len(held_counts) == 4 * 8
    assert len(engine_module._OV_POOL) <= engine_module._OV_POOL_MAX
    assert all(overlapped_as_new(ov) for ov in engine_module._OV_POOL)
