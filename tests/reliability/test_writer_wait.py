"""A send the kernel takes only in part, and its wait for writability (SPEC S5.1, S5.11, S5.12).

The engine registers a writer on its own duplicate of the descriptor when the kernel takes a
send only in part, flushes the rest when the socket becomes writable, and lets go of both when
the queue drains. On both loops: sends awaited one by one, each waiting, arrive exactly and
leave no writer or duplicate behind; a flush that raises is reported to the loop's exception
handler while the other sockets waiting at the same time complete, and the socket that raised
is flushed again; a loop that ends with a send waiting leaves no descriptor of ours. (Issue 11
tried waiting in uvloop's error watch instead; see docs/benchmarks.md for why it was left.)
The waits are hang guards, never timing assertions.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import LOOP_FACTORIES
from tests.helpers import pattern, recv_exactly, recv_to_eof, tcp_pair
from wsasend import WSAErrorCode, WSAOverlapped, wsa_send
from wsasend._api import find_engine

from ._support import FdLedger, assert_no_writer, awaited

GUARD = 30.0
BUF = 64 * 1024  # each side's buffer: a 256 KiB send is always taken in part
ROUNDS = 40


async def test_sends_taken_in_part_and_awaited_arrive_exactly_and_leave_nothing_registered() -> None:
    """Each 256 KiB send (two buffers) is taken in part and waits for the socket; awaited one
    by one, the peer gets every byte in order, and after each ``await`` no writer is registered
    (in the engine or the loop) and no duplicate of the descriptor is held."""
    loop = asyncio.get_running_loop()
    a, b = tcp_pair(bufsize=BUF)
    payloads = [pattern(256 * 1024, seed=i) for i in range(ROUNDS)]
    expected = b"".join(payloads)
    try:
        a.setblocking(False)
        reader = loop.run_in_executor(None, recv_exactly, b, len(expected), GUARD)
        waited = 0
        for payload in payloads:
            ov = wsa_send(a, [payload[:100_000], payload[100_000:]])
            if ov.pending:
                waited += 1
                engine = find_engine(a)
                assert engine is not None and engine._writer is not None and engine._dup is not None
            assert await awaited(ov, GUARD) == len(payload)
            assert_no_writer(loop, a, a.fileno())
        assert waited == ROUNDS, "a send was taken whole: the test would prove less"
        async with asyncio.timeout(GUARD):
            assert await reader == expected
    finally:
        a.close()
        b.close()


class _Raising(socket.socket):
    """A real socket whose ``sendmsg`` raises RuntimeError once while ``boom`` is set."""

    boom = False

    def sendmsg(self, buffers: Any, ancdata: Any = (), flags: int = 0, address: Any = None) -> int:
        if self.boom:
            self.boom = False
            raise RuntimeError("boom")
        return super().sendmsg(buffers, ancdata, flags)


async def test_a_flush_that_raises_is_reported_and_the_other_waits_still_complete() -> None:
    """Two sockets wait at once; when they become writable, one's flush raises (a socket class
    whose ``sendmsg`` raises: the only way to make the engine's flush raise). The loop's
    exception handler hears of it, the other socket's send completes, and the one that raised
    is flushed again and completes too: nothing is lost or sent twice."""
    loop = asyncio.get_running_loop()
    plain_a, b1 = tcp_pair(bufsize=BUF)
    a1 = _Raising(plain_a.family, plain_a.type, plain_a.proto, fileno=plain_a.detach())
    a2, b2 = tcp_pair(bufsize=BUF)
    seen: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    try:
        for sock in (a1, a2):
            sock.setblocking(False)
        one, two = pattern(1 << 20, seed=8), pattern(1 << 20, seed=9)
        ov1, ov2 = wsa_send(a1, [one]), wsa_send(a2, [two])
        assert ov1.pending and ov2.pending
        a1.boom = True
        readers = [loop.run_in_executor(None, recv_exactly, b, len(p), GUARD) for b, p in ((b1, one), (b2, two))]
        assert await awaited(ov2, GUARD) == len(two)
        assert await awaited(ov1, GUARD) == len(one)
        async with asyncio.timeout(GUARD):
            assert await asyncio.gather(*readers) == [one, two]
        assert not a1.boom, "the flush never ran while boom was set"
        errors = [c.get("exception") for c in seen]
        assert any(isinstance(e, RuntimeError) and str(e) == "boom" for e in errors), seen
    finally:
        loop.set_exception_handler(None)
        for sock in (a1, b1, a2, b2):
            sock.close()


@pytest.mark.parametrize("name", sorted(LOOP_FACTORIES))
def test_a_loop_that_ends_with_a_send_waiting_leaves_no_descriptor_of_ours(name: str) -> None:
    """The loop ends (``asyncio.Runner``, as ``asyncio.run`` and ``uvloop.run``) while a send
    waits for writability: the send is aborted with its exact count (S5.12), the engine's
    duplicate is closed, and the peer then sees exactly the bytes counted, and the close."""
    factory: Callable[[], asyncio.AbstractEventLoop] = LOOP_FACTORIES[name]
    a, b = tcp_pair(bufsize=BUF)
    ledger = FdLedger()
    ovs: list[WSAOverlapped] = []

    async def post() -> None:
        a.setblocking(False)
        ovs.append(wsa_send(a, [pattern(4 << 20, seed=4)]))
        assert ovs[0].pending

    try:
        warns = pytest.warns(ResourceWarning, match=r"1 overlapped send\(s\) pending")
        with warns, asyncio.Runner(loop_factory=factory) as runner:
            runner.run(post())
        ledger.assert_no_leak()
        assert ovs[0].error == WSAErrorCode.WSA_OPERATION_ABORTED
        a.close()
        assert len(recv_to_eof(b, GUARD)) == ovs[0].transferred
    finally:
        a.close()
        b.close()
