"""``wsa_send``'s last-engine shortcut never sends through an engine that is not the socket's own.

Consecutive sends on one socket skip the registry's dict lookup: ``wsa_send`` remembers the
engine it used last (``_api._LastEngine``, issue 11) and trusts it only while that engine is
still the socket's current engine and the socket's id matches. These tests hold the cases where
a remembered engine would be the wrong one: a new socket that took a dead socket's address (its
id), the same socket moving between loops, sends interleaved over several sockets, and a loop
that ended. Each send must go through ``find_engine(sock)``, the engine of the socket it names
(SPEC S5.10, S5.11), and every byte must reach that socket's peer in order. Real sockets, both
loops.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

import wsasend
from tests.conftest import LOOP_FACTORIES
from tests.helpers import read_exactly
from wsasend import _engine, closesocket, set_max_pending, wsa_send
from wsasend._api import find_engine
from wsasend._engine import SendEngine

GUARD = 30.0
KINDS = sorted(LOOP_FACTORIES)
T = TypeVar("T")


def _engine_of(ov: wsasend.WSAOverlapped) -> SendEngine:
    engine = ov._engine
    assert engine is not None
    return engine


def _run_on(kind: str, main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """``main()`` on a new loop of ``kind``, closed afterwards (a bare close, no Runner: the
    tests look at what the sends did, not at what a loop's end does)."""
    loop = LOOP_FACTORIES[kind]()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


def _pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    a.setblocking(False)
    for s in (a, b):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    return a, b


async def _finish(
    pairs: list[tuple[socket.socket, socket.socket]], expected: list[bytearray], ovs: list[wsasend.WSAOverlapped]
) -> None:
    """Each peer reads exactly its own stream; every send completes whole."""
    reads = [read_exactly(b, len(exp)) for (_, b), exp in zip(pairs, expected, strict=True)]
    got = await asyncio.wait_for(asyncio.gather(*reads), GUARD)
    assert [bytes(g) for g in got] == [bytes(e) for e in expected]
    for ov in ovs:
        assert await asyncio.wait_for(ov, GUARD) == ov.nbytes


def _close(pairs: list[tuple[socket.socket, socket.socket]]) -> None:
    for a, b in pairs:
        closesocket(a)
        b.close()


@pytest.mark.parametrize("kind", KINDS)
def test_a_socket_that_takes_a_dead_sockets_id_gets_its_own_engine(kind: str) -> None:
    """The dead socket's engine had ``max_pending=1``: sent through it, the new socket's second
    pending send would fail with WSAEWOULDBLOCK, and its sends would be another engine's."""

    async def main() -> int:
        reused = 0
        for _ in range(20):
            a1, b1 = _pair()
            set_max_pending(a1, 1)
            assert await asyncio.wait_for(wsa_send(a1, [b"old"]), GUARD) == 3
            old = _engine_of(wsa_send(a1, [b"!"]))  # (compiled engines take no weakref)
            # The next pair's descriptors, made now, so that the one socket object made right
            # after a1 dies is the first allocation of its size: CPython gives it a1's memory,
            # and so a1's id, nearly every time.
            x, y = socket.socketpair()
            fd_a, fd_b = x.detach(), y.detach()
            key = id(a1)
            a1.close()
            b1.close()
            del a1
            a2 = socket.socket(fileno=fd_a)
            b2 = socket.socket(fileno=fd_b)
            try:
                if id(a2) != key:
                    continue
                reused += 1
                a2.setblocking(False)
                for s in (a2, b2):
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
                big = bytes(range(256)) * (4 * 1024)  # 1 MiB: pends behind the 64 KiB buffers
                ov1 = wsa_send(a2, [big])
                ov2 = wsa_send(a2, [b"tail"])  # a second outstanding send: max_pending is 65536 here
                for ov in (ov1, ov2):
                    engine = _engine_of(ov)
                    assert engine is find_engine(a2)
                    assert engine._sockref() is a2
                    assert engine is not old
                got = await asyncio.wait_for(read_exactly(b2, len(big) + 4), GUARD)
                assert got == big + b"tail"
                assert await asyncio.wait_for(ov1, GUARD) == len(big)
                assert await asyncio.wait_for(ov2, GUARD) == 4
            finally:
                closesocket(a2)
                b2.close()
        return reused

    reused = _run_on(kind, main)
    # The test means something only if the address was taken again at least once.
    assert reused >= 1


@pytest.mark.parametrize("kind", KINDS)
def test_sends_interleaved_over_sockets_each_use_their_sockets_engine(kind: str) -> None:
    """Three sockets in turn, posted back to back: each send's engine is its socket's, and each
    peer reads its own patterned stream, complete and in order."""

    async def main() -> None:
        pairs = [_pair() for _ in range(3)]
        try:
            expected = [bytearray() for _ in pairs]
            ovs: list[wsasend.WSAOverlapped] = []
            for i in range(600):
                k = (i * 7) % 3 if i % 5 else i % 3  # runs of one socket, then switches
                a = pairs[k][0]
                chunk = bytes([k, i % 251]) * 40
                ov = wsa_send(a, [chunk, b"|"])
                assert _engine_of(ov) is find_engine(a)
                expected[k] += chunk + b"|"
                ovs.append(ov)
            await _finish(pairs, expected, ovs)
        finally:
            _close(pairs)

    _run_on(kind, main)


@pytest.mark.parametrize("first", KINDS)
@pytest.mark.parametrize("second", KINDS)
def test_a_socket_moving_between_loops_sends_through_the_current_engine(first: str, second: str) -> None:
    """One thread runs loop 1, then loop 2, then loop 1 again, sending on one socket each time:
    every send goes through the socket's current engine, on the loop running now."""
    a, b = _pair()
    loops = [LOOP_FACTORIES[first](), LOOP_FACTORIES[second]()]
    try:
        sent = bytearray()
        for turn, loop in enumerate([loops[0], loops[1], loops[0], loops[1]]):

            async def send(turn: int = turn) -> None:
                for i in range(3):
                    data = b"%d.%d;" % (turn, i)
                    ov = wsa_send(a, [data])
                    engine = _engine_of(ov)
                    assert engine is find_engine(a)
                    assert engine.loop is asyncio.get_running_loop()
                    assert await asyncio.wait_for(ov, GUARD) == len(data)
                    sent.extend(data)

            loop.run_until_complete(send())
        assert b.recv(4096) == bytes(sent)
    finally:
        for loop in loops:
            loop.close()
        a.close()
        b.close()


@pytest.mark.parametrize("kind", KINDS)
def test_an_ended_loop_is_not_kept_alive_by_the_remembered_engine(kind: str) -> None:
    """``asyncio.run``'s end (shutdown_asyncgens) lets go of the last engine it used, so the
    loop can be collected although no later send replaced it (S5.12)."""
    a, b = _pair()
    try:
        holder: list[weakref.ref[asyncio.AbstractEventLoop]] = []

        async def send() -> int:
            holder.append(weakref.ref(asyncio.get_running_loop()))
            return await wsa_send(a, [b"ping"])

        with asyncio.Runner(loop_factory=LOOP_FACTORIES[kind]) as runner:
            assert runner.run(send()) == 4
        gc.collect()
        assert holder[0]() is None
        assert b.recv(16) == b"ping"
    finally:
        a.close()
        b.close()


def test_marked_closed_answers_as_getattr() -> None:
    """``_engine.marked_closed`` (the compiled build reads the slot in C) answers as
    ``getattr(sock, "_closed", False)`` for sockets open, closed, detached, never initialised,
    of a subclass, and for other objects."""

    class Sub(socket.socket):
        pass

    class Odd:
        _closed = 1

    class Raising:
        @property
        def _closed(self) -> bool:
            raise ValueError("boom")

    cases: list[Any] = []
    s = socket.socket()
    cases.append(s)
    closed = socket.socket()
    closed.close()
    cases.append(closed)
    detached = socket.socket()
    socket.socket(fileno=detached.detach()).close()
    cases.append(detached)
    cases.append(socket.socket.__new__(socket.socket))  # __init__ never ran: no _closed slot
    sub = Sub()
    cases.append(sub)
    sub_closed = Sub()
    sub_closed.close()
    cases.append(sub_closed)
    cases += [Odd(), object()]
    try:
        answers = [_engine.marked_closed(c) for c in cases]
        assert answers == [bool(getattr(c, "_closed", False)) for c in cases]
        assert answers == [False, True, True, False, False, True, True, False]
        with pytest.raises(ValueError, match="boom"):
            _engine.marked_closed(Raising())
    finally:
        s.close()
        sub.close()


def test_threads_each_with_its_loop_and_sockets_never_share_an_engine() -> None:
    """Four threads, each running its own loop (both kinds) and sending on two sockets of its
    own, all writing the one remembered engine at once: every send goes through its socket's
    engine on the thread's loop, and every stream arrives whole and in order."""
    errors: list[BaseException] = []
    kinds = [KINDS[i % len(KINDS)] for i in range(4)]

    def worker(kind: str, tag: int) -> None:
        async def main() -> None:
            pairs = [_pair() for _ in range(2)]
            try:
                expected = [bytearray() for _ in pairs]
                ovs: list[wsasend.WSAOverlapped] = []
                for i in range(1500):
                    k = (i // 3) % 2
                    a = pairs[k][0]
                    data = b"%d:%d:%d;" % (tag, k, i)
                    ov = wsa_send(a, [data])
                    engine = _engine_of(ov)
                    assert engine is find_engine(a)
                    assert engine.loop is asyncio.get_running_loop()
                    expected[k] += data
                    ovs.append(ov)
                    if i % 100 == 99:
                        await asyncio.sleep(0)  # let the other threads' loops interleave
                await _finish(pairs, expected, ovs)
            finally:
                _close(pairs)

        try:
            _run_on(kind, main)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(kind, tag)) for tag, kind in enumerate(kinds)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(GUARD * 2)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors
