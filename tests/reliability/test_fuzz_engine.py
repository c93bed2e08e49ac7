"""Issue 7, item 4 (first half): stateful fuzzing of the engine against a scripted kernel.

A Hypothesis ``RuleBasedStateMachine`` posts sends (plain, with routines, with routines that post
more), feeds the scripted kernel random outcomes (partial counts, EAGAIN, EINTR, errors), cancels
sends (``ov.cancel()`` and cancelling the awaiting task, S5.7), and closes the socket (through
``closesocket`` and, rarely, behind the package's back), and after every step checks SPEC S6.4:

- the bytes the scripted kernel accepted are exactly the posted bytes, in posting order, with
  withdrawn and refused sends left out: each completed send contributes its ``transferred``
  bytes, and only the first pending send can have a consumed prefix;
- the sum of ``transferred`` over completed sends, plus that prefix, equals the bytes accepted;
- completions come in posting order (S5.4; a withdrawn send completes at once, out of turn,
  which is the one exception S5.7 makes), and routines are called in that order with the
  send's own error and count (S5.3);
- a refused post (``WSAError`` from ``wsa_send``) put nothing on the wire;
- once nothing is pending, no writer is left.

The scripted socket (:class:`ScriptedSocket`) is a ``socket.socket`` subclass on a real
socketpair descriptor, so the loop's ``add_writer`` watches a real fd; only ``sendmsg`` is
scripted. The loop is driven deterministically: each step runs it for a fixed number of
iterations (``run_until_complete(asyncio.sleep(0))``), never for an amount of time, except the
rare close behind our back, whose detection is the watchdog's timer (S6.1: within one second).
Runs on asyncio and on uvloop (one machine class each).
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import time
from collections import deque
from typing import Any

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tests.conftest import LOOP_FACTORIES
from wsasend import WSAError, WSAErrorCode, WSAOverlapped, closesocket, wsa_send
from wsasend._api import find_engine

from ._support import FULL

# Errors the scripted kernel may raise, with the code each must complete with (S3.3). EPIPE on
# a connected AF_UNIX socket is a reset (the package did not shut it down).
ERRNOS = {
    errno.ECONNRESET: WSAErrorCode.WSAECONNRESET,
    errno.EPIPE: WSAErrorCode.WSAECONNRESET,
    errno.ENOBUFS: WSAErrorCode.WSAENOBUFS,
    errno.ENOMEM: WSAErrorCode.WSAENOBUFS,
    errno.ENETDOWN: WSAErrorCode.WSAENETDOWN,
    errno.ENETRESET: WSAErrorCode.WSAENETRESET,
    errno.ECONNABORTED: WSAErrorCode.WSAECONNABORTED,
    errno.ETIMEDOUT: WSAErrorCode.WSAETIMEDOUT,
    errno.EACCES: WSAErrorCode.WSAEACCES,
}
# Loop iterations per kernel step: enough for a batch window to close, a writer to fire and the
# routines it scheduled to run (arbitrary, generous).
ITERATIONS = 4

outcome = st.one_of(
    st.tuples(st.just("take"), st.integers(1, 200)),
    st.tuples(st.just("take"), st.integers(1, 8)),
    st.just(("eagain", 0)),
    st.just(("eintr", 0)),
    st.tuples(st.just("error"), st.sampled_from(sorted(ERRNOS))),
)


class ScriptedSocket(socket.socket):
    """A real socketpair socket whose ``sendmsg`` answers from a script (issue 7's scripted kernel).

    Each call takes the next outcome: ``("take", k)`` accepts the first ``min(k, offered)`` bytes
    (copied into ``ledger``: what "the kernel" consumed), ``("eagain", _)`` raises
    BlockingIOError, ``("eintr", _)`` InterruptedError, ``("error", e)`` ``OSError(e)``. An empty
    script means the kernel is full (EAGAIN). A closed socket raises EBADF, as a real one does.
    """

    script: deque[tuple[str, int]]
    ledger: bytearray
    calls: int

    @classmethod
    def make(cls) -> tuple[ScriptedSocket, socket.socket]:
        a, b = socket.socketpair()
        sock = cls(a.family, a.type, a.proto, fileno=a.detach())
        sock.script = deque()
        sock.ledger = bytearray()
        sock.calls = 0
        return sock, b

    def sendmsg(self, buffers: Any, ancdata: Any = (), flags: int = 0, address: Any = None) -> int:
        if self.fileno() < 0:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        self.calls += 1
        if not self.script:
            raise BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN))
        kind, arg = self.script.popleft()
        if kind == "eagain":
            raise BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN))
        if kind == "eintr":
            raise InterruptedError(errno.EINTR, os.strerror(errno.EINTR))
        if kind == "error":
            raise OSError(arg, os.strerror(arg))
        left = arg
        for buf in buffers:
            view = memoryview(buf).cast("B")
            take = min(left, view.nbytes)
            self.ledger += view[:take]
            left -= take
            if not left:
                break
        return arg - left


class Op:
    """One posted send as the model sees it."""

    __slots__ = ("data", "index", "ov", "routine_calls", "withdrawn")

    def __init__(self, index: int, ov: WSAOverlapped, data: bytes) -> None:
        self.index = index
        self.ov = ov
        self.data = data
        self.withdrawn = False
        self.routine_calls: list[tuple[int, int, int]] = []


class EngineMachine(RuleBasedStateMachine):
    loop_name = "asyncio"

    def __init__(self) -> None:
        super().__init__()
        self.loop = LOOP_FACTORIES[self.loop_name]()
        self.sock, self.other = ScriptedSocket.make()
        self.closed = False
        self.ops: list[Op] = []
        self.routine_log: list[Op] = []
        self.counter = 0
        self.tasks: list[asyncio.Task[int]] = []

    # -- helpers ------------------------------------------------------------------------------

    def _data(self, sizes: list[int]) -> list[bytes]:
        out = []
        for size in sizes:
            # Unique, position-dependent bytes: any loss, repeat or swap shows in the ledger.
            out.append(bytes((self.counter * 131 + i * 7 + 1) & 0xFF for i in range(size)))
            self.counter += 1
        return out

    def _run(self, iterations: int = ITERATIONS) -> None:
        for _ in range(iterations):
            self.loop.run_until_complete(asyncio.sleep(0))

    def _post(self, bufs: list[bytes], routine_kind: str) -> None:
        """Post now (we are inside the loop), as wsa_send is called: record or check refusal."""
        before = len(self.sock.ledger)
        op_holder: list[Op] = []

        def routine(error: int, transferred: int, ov: WSAOverlapped, flags: int) -> None:
            op = op_holder[0]
            op.routine_calls.append((error, transferred, flags))
            self.routine_log.append(op)
            if routine_kind == "repost":
                # S5.3: a routine may post new sends.
                self._post(self._data([3, 5]), "none")

        try:
            ov = wsa_send(self.sock, bufs, completion_routine=None if routine_kind == "none" else routine)
        except WSAError as exc:
            # S5.2: refused; nothing of it reached the kernel, and no completion follows.
            assert len(self.sock.ledger) == before, "a refused send put bytes on the wire"
            assert exc.bytes_sent == 0
            if self.closed:
                assert exc.winerror == WSAErrorCode.WSAENOTSOCK, exc
            else:
                assert exc.errno in ERRNOS, exc
                assert exc.winerror == ERRNOS[exc.errno]
            return
        assert not self.closed, "a send on a closed socket was accepted (S5.2: WSAENOTSOCK)"
        op = Op(len(self.ops), ov, b"".join(bufs))
        op_holder.append(op)
        self.ops.append(op)
        if ov.completed_immediately:
            assert ov.transferred == len(op.data)

    def _in_loop(self, fn: Any, *args: Any) -> None:
        async def call() -> None:
            fn(*args)

        self.loop.run_until_complete(call())

    def _pick(self, which: int) -> Op | None:
        """An op to cancel: mostly a pending one (the head, often partly sent), sometimes any."""
        pending = [op for op in self.ops if op.ov.pending]
        if pending and which % 3 == 0:
            return pending[0]
        pool = pending if pending and which % 3 == 1 else self.ops
        return pool[(which // 3) % len(pool)] if pool else None

    def _live(self) -> list[Op]:
        return [op for op in self.ops if not op.withdrawn]

    def _note_withdrawn(self) -> None:
        """An op that completed aborted while the socket is open was withdrawn (S5.7)."""
        if self.closed:
            return
        for op in self.ops:
            if not op.withdrawn and not op.ov.pending and op.ov.error == WSAErrorCode.WSA_OPERATION_ABORTED:
                assert op.ov.transferred == 0
                op.withdrawn = True

    # -- rules --------------------------------------------------------------------------------

    @rule(sizes=st.lists(st.integers(0, 48), max_size=5), routine_kind=st.sampled_from(["none", "log", "repost"]))
    def post(self, sizes: list[int], routine_kind: str) -> None:
        self._in_loop(self._post, self._data(sizes), routine_kind)

    @rule(count=st.integers(2, 40), size=st.integers(0, 16))
    def post_burst(self, count: int, size: int) -> None:
        """Many sends in one loop iteration: they coalesce into one sendmsg (S5.4)."""

        def burst() -> None:
            for _ in range(count):
                self._post(self._data([size, size // 2]), "none")

        self._in_loop(burst)

    @rule(outcomes=st.lists(outcome, min_size=1, max_size=6))
    def kernel(self, outcomes: list[tuple[str, int]]) -> None:
        self.sock.script.extend(outcomes)
        self._run()
        self.sock.script.clear()
        self._note_withdrawn()

    @rule(take=st.integers(1, 16))
    def kernel_trickle(self, take: int) -> None:
        """The kernel takes a few bytes, then is full: the head send is left partly sent."""
        self.kernel([("take", take)])

    @rule(which=st.integers(0, 10**6))
    def cancel(self, which: int) -> None:
        op = self._pick(which)
        if op is None:
            return
        pending = op.ov.pending
        started = pending and self._consumed_of(op) > 0
        result = self.loop.run_until_complete(self._call_async(op.ov.cancel))
        self._run(1)
        if not pending or started:
            assert result is False
            assert op.ov.pending == pending
        else:
            assert result is True
            assert not op.ov.pending
            assert op.ov.error == WSAErrorCode.WSA_OPERATION_ABORTED and op.ov.transferred == 0
            op.withdrawn = True

    @rule(which=st.integers(0, 10**6))
    def cancel_awaiting_task(self, which: int) -> None:
        """S5.7 through asyncio: cancel the task awaiting a send."""
        op = self._pick(which)
        if op is None:
            return

        async def waiter() -> int:
            return await op.ov

        task = self.loop.create_task(waiter())
        self._run(1)
        pending = op.ov.pending
        started = pending and self._consumed_of(op) > 0
        task.cancel()
        self._run(2)
        assert task.done()
        if not task.cancelled() and task.exception() is None:
            assert task.result() == op.ov.transferred
        if pending and not started:
            # Withdrawn: none of its bytes had gone out (S5.7).
            assert not op.ov.pending
            assert op.ov.error == WSAErrorCode.WSA_OPERATION_ABORTED and op.ov.transferred == 0
        elif started:
            # It finishes in the background; the stream stays whole (checked by the invariants).
            assert op.ov.pending or op.ov.transferred > 0
        self._note_withdrawn()

    @precondition(lambda self: not self.closed)
    @rule()
    def close(self) -> None:
        """closesocket: every pending send completes aborted with its exact count (S6.1)."""
        pending = [op for op in self.ops if op.ov.pending]
        consumed = {op.index: self._consumed_of(op) for op in pending}
        self.closed = True  # first: routines that run during the close must see it
        self._in_loop(closesocket, self.sock)
        for op in pending:
            assert not op.ov.pending
            assert op.ov.error == WSAErrorCode.WSA_OPERATION_ABORTED
            assert op.ov.transferred == consumed[op.index]
        self._run(2)

    @precondition(lambda self: not self.closed and any(op.ov.pending for op in self.ops))
    @rule(go=st.integers(0, 7))
    def close_behind_our_back(self, go: int) -> None:
        """Rare (1 in 8 draws): ``sock.close()`` with sends pending; the watchdog must notice."""
        if go:
            return
        pending = [op for op in self.ops if op.ov.pending]
        consumed = {op.index: self._consumed_of(op) for op in pending}
        self.closed = True
        self.sock.close()
        deadline = time.monotonic() + 5.0  # S6.1 says one second; this is only a hang guard
        while any(op.ov.pending for op in pending):
            assert time.monotonic() < deadline, "sends still pending after the socket was closed"
            self.loop.run_until_complete(asyncio.sleep(0.02))
        for op in pending:
            assert op.ov.error == WSAErrorCode.WSA_OPERATION_ABORTED
            assert op.ov.transferred == consumed[op.index]

    async def _call_async(self, fn: Any) -> Any:
        return fn()

    # -- the model's arithmetic ---------------------------------------------------------------

    def _consumed_of(self, op: Op) -> int:
        """Bytes of a pending ``op`` the kernel has taken: only the first pending live op has any."""
        live = self._live()
        done_total = sum(o.ov.transferred for o in live if not o.ov.pending)
        first_pending = next((o for o in live if o.ov.pending), None)
        if first_pending is not op:
            return 0
        return len(self.sock.ledger) - done_total

    # -- invariants (after every step) ------------------------------------------------------

    @invariant()
    def accepted_bytes_are_the_posted_bytes_in_order(self) -> None:
        live = self._live()
        expected = bytearray()
        seen_pending = False
        head_prefix = 0
        for op in live:
            ov = op.ov
            if ov.pending:
                if not seen_pending:
                    seen_pending = True
                    head_prefix = len(self.sock.ledger) - len(expected)
                    assert 0 <= head_prefix < max(len(op.data), 1), (head_prefix, len(op.data))
                    expected += op.data[:head_prefix]
                continue
            # S5.4: completions in posting order; nothing completes after a pending live op.
            assert not seen_pending, f"op {op.index} completed while an earlier one is pending"
            if ov.error == 0:
                assert ov.transferred == len(op.data)
            else:
                assert ov.exception is not None and ov.exception.bytes_sent == ov.transferred
                assert ov.transferred < len(op.data) or not op.data
            expected += op.data[: ov.transferred]
        assert bytes(self.sock.ledger) == bytes(expected), "the kernel got other bytes than posted (S6.4)"
        total = sum(op.ov.transferred for op in live if not op.ov.pending)
        assert total + head_prefix == len(self.sock.ledger)

    @invariant()
    def withdrawn_sends_sent_nothing(self) -> None:
        for op in self.ops:
            if op.withdrawn:
                assert op.ov.transferred == 0 and op.ov.error == WSAErrorCode.WSA_OPERATION_ABORTED

    @invariant()
    def routines_in_posting_order_with_their_results(self) -> None:
        in_turn = [op.index for op in self.routine_log if not op.withdrawn]
        assert in_turn == sorted(in_turn), "routines out of posting order (S5.3, S5.4)"
        for op in self.routine_log:
            assert op.routine_calls == [(int(op.ov.error), op.ov.transferred, 0)], "routine called != once"

    @invariant()
    def idle_means_no_writer(self) -> None:
        if self.closed or any(op.ov.pending for op in self.ops):
            return
        engine = find_engine(self.sock)
        if engine is not None:
            assert engine._writer is None, "nothing pending, yet a writer is registered"

    def teardown(self) -> None:
        try:
            if not self.closed:
                self.closed = True  # first: routines that repost during the close must see it
                self._in_loop(closesocket, self.sock)
            self._run(2)
            assert not any(op.ov.pending for op in self.ops)
        finally:
            self.other.close()
            self.sock.close()
            self.loop.close()


class UVLoopEngineMachine(EngineMachine):
    loop_name = "uvloop"


_SETTINGS = settings(max_examples=1000 if FULL else 150, stateful_step_count=40, deadline=None)

TestEngineMachineAsyncio = EngineMachine.TestCase
TestEngineMachineAsyncio.settings = _SETTINGS
TestEngineMachineUvloop = UVLoopEngineMachine.TestCase
TestEngineMachineUvloop.settings = _SETTINGS
