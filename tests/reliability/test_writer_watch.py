"""An engine's wait for writability through the loop's error watch (uvloop; issue 11, SPEC S5.11).

A send the kernel takes only in part waits for the socket to become writable. On uvloop the
engine used to register a writer of the loop's for that (``add_writer`` on its own duplicate of
the descriptor) and remove it when the send had gone: a poll handle made and closed a wait, ~8
system calls and ~12,000 instructions (W1: one 1 MiB send in five, awaited). It now waits in
the loop's ``ErrorWatch``, the epoll its transports read through: one ``EPOLL_CTL_ADD`` (or
``MOD``) of the duplicate, one-shot, and no call at all when the wait ends after its report.

What must hold, on both loops (on asyncio the loop's own writer still does the work, and no
watch is ever made): the bytes arrive exactly and in order; after ``await`` nothing is
registered and no duplicate is held; the one-shot registration that a reported wait leaves in
the kernel never reports to the socket that takes its descriptor number next (the fd-reuse
rule); the watch the engine pinned goes an interval after its last wait, and at once with
``closesocket``; a flush that raises in the watch's dispatch is reported and the other waits of
that wake-up still complete; a loop that ends with a send waiting leaves no descriptor of ours.
The waits below are hang guards, never timing assertions.
"""

from __future__ import annotations

import asyncio
import select
import socket
from collections.abc import Callable
from typing import Any

import pytest

import wsasend
from tests.conftest import LOOP_FACTORIES
from tests.helpers import pattern, recv_exactly, recv_to_eof, tcp_pair
from wsasend import WSAErrorCode, WSAOverlapped, WSATransport, _errorwatch, wsa_send
from wsasend._api import find_engine
from wsasend._engine import SendEngine

from ..transport.util import Recorder, on_uvloop
from ._support import FdLedger

GUARD = 30.0
BUF = 64 * 1024  # each side's buffer: a 256 KiB send is always taken in part
ROUNDS = 40


def _engine(sock: socket.socket) -> SendEngine:
    engine = find_engine(sock)
    assert engine is not None
    return engine


def _epoll_entries(epfd: int) -> list[tuple[int, int]]:
    """``(target descriptor, event mask)`` of each registration in epoll ``epfd`` (its fdinfo)."""
    entries = []
    with open(f"/proc/self/fdinfo/{epfd}") as info:
        for line in info:
            if line.startswith("tfd:"):
                fields = line.split()
                entries.append((int(fields[1]), int(fields[3], 16)))
    return entries


def _socketpair_on(fd: int) -> tuple[socket.socket, socket.socket]:
    """A socketpair one of whose ends has descriptor number ``fd`` (free now), that end first."""
    extras: list[socket.socket] = []
    try:
        for _ in range(64):
            c, d = socket.socketpair()
            if c.fileno() == fd:
                return c, d
            if d.fileno() == fd:
                return d, c
            extras += [c, d]
        raise AssertionError(f"descriptor {fd} was never reused: it is still open")
    finally:
        for s in extras:
            s.close()


async def _await(ov: WSAOverlapped) -> int:
    async with asyncio.timeout(GUARD):
        return await ov


async def test_sends_taken_in_part_and_awaited_arrive_exactly_and_leave_nothing_registered() -> None:
    """Each 256 KiB send (two buffers) is taken in part and waits; awaited one by one, the peer
    gets every byte in order, and after each ``await`` the wait is over (nothing in the watch,
    no duplicate held). On uvloop every wait is in the loop's watch, and the waits after the
    first arm the registration the previous one left (one ``EPOLL_CTL_MOD``)."""
    loop = asyncio.get_running_loop()
    a, b = tcp_pair(bufsize=BUF)
    payloads = [pattern(256 * 1024, seed=i) for i in range(ROUNDS)]
    expected = b"".join(payloads)
    try:
        a.setblocking(False)
        reader = loop.run_in_executor(None, recv_exactly, b, len(expected), GUARD)
        waited = rearmed = 0
        for payload in payloads:
            engine = find_engine(a)
            stale = -1 if engine is None else engine._wstale
            ov = wsa_send(a, [payload[:100_000], payload[100_000:]])
            engine = _engine(a)
            if ov.pending:
                waited += 1
                watch = _errorwatch.current_watch(loop)
                if on_uvloop():
                    assert watch is not None and engine._wwatch is watch
                    wait = engine._wwait
                    assert wait is not None and watch._writers == {engine._dup_fd: wait}
                    rearmed += engine._dup_fd == stale
                else:
                    assert watch is None and engine._wwatch is None and engine._wwait is None
            assert await _await(ov) == len(payload)
            assert engine._writer is None and engine._wwait is None and engine._dup is None
            watch = _errorwatch.current_watch(loop)
            assert watch is None or not watch._writers
        assert waited == ROUNDS, "a send was taken whole: the test would prove less"
        if on_uvloop():
            assert rearmed > 0, "no wait armed the registration the previous one left"
        async with asyncio.timeout(GUARD):
            assert await reader == expected
    finally:
        a.close()
        b.close()


async def test_a_reported_wait_left_in_the_kernel_never_reaches_the_socket_that_takes_its_number() -> None:
    """A wait that ended after its report leaves its one-shot registration in the watch's epoll,
    disarmed (no ``epoll_ctl`` for it): it names the engine's duplicate's number, closed now.
    A new socket takes that number and a transport reads it through the same watch: the
    transport gets exactly its peer's bytes, the engine's next waits (on another number now)
    complete, and both streams arrive exact. Then the number is free again and the engine's
    waits go on."""
    loop = asyncio.get_running_loop()
    a, b = tcp_pair(bufsize=BUF)
    first, second, third = (pattern(1 << 20, seed=s) for s in (1, 2, 3))
    c = d = None
    try:
        a.setblocking(False)
        reader = loop.run_in_executor(None, recv_exactly, b, 3 << 20, GUARD)
        ov = wsa_send(a, [first])
        assert ov.pending
        engine = _engine(a)
        number = engine._dup_fd
        assert await _await(ov) == len(first)
        watch = _errorwatch.current_watch(loop)
        if on_uvloop():
            assert watch is not None and engine._wstale == number
            # Left in the kernel for the closed duplicate's number, disarmed (no EPOLLOUT).
            left = [mask for tfd, mask in _epoll_entries(watch._fd) if tfd == number]
            assert left and not left[0] & select.EPOLLOUT, left
        else:
            assert watch is None
        c, d = _socketpair_on(number)
        proto = Recorder()
        transport = WSATransport(c, proto)
        await proto.made
        d.sendall(b"to the new socket")
        assert await proto.wait_data(len(b"to the new socket")) == b"to the new socket"
        ov = wsa_send(a, [second])
        assert ov.pending and engine._dup_fd != number  # (the number is c's now)
        assert await _await(ov) == len(second)
        d.sendall(b" and more")
        assert await proto.wait_data(len(b"to the new socket and more")) == b"to the new socket and more"
        transport.close()
        await proto.wait_lost()
        proto.check()
        d.close()
        ov = wsa_send(a, [third])
        assert ov.pending
        assert await _await(ov) == len(third)
        async with asyncio.timeout(GUARD):
            assert await reader == first + second + third
    finally:
        for sock in (a, b, c, d):
            if sock is not None:
                sock.close()


async def test_the_watch_goes_an_interval_after_the_last_wait_and_at_once_with_closesocket() -> None:
    """A plain socket's engine pins the loop's watch across its waits (a watch made and closed
    per wait would cost more than the loop's writer did); its watchdog lets go of it once an
    interval passes without a wait, and ``closesocket`` at once: no descriptor of ours (the
    epoll) outlives the engines that wait through it."""
    loop = asyncio.get_running_loop()
    for ending in ("idle", "closesocket"):
        a, b = tcp_pair(bufsize=BUF)
        try:
            a.setblocking(False)
            payload = pattern(1 << 20, seed=5)
            reader = loop.run_in_executor(None, recv_exactly, b, len(payload), GUARD)
            ov = wsa_send(a, [payload])
            assert ov.pending
            assert await _await(ov) == len(payload)
            async with asyncio.timeout(GUARD):
                assert await reader == payload
            watch = _errorwatch.current_watch(loop)
            if not on_uvloop():
                assert watch is None and loop not in _errorwatch._WATCHES  # asyncio: never a watch
                continue
            assert watch is not None and watch._pins == 1 and watch._epoll is not None
            if ending == "closesocket":
                wsasend.closesocket(a)
                assert watch._epoll is None and _errorwatch.current_watch(loop) is None
                continue
            async with asyncio.timeout(GUARD):
                while watch._epoll is not None:
                    await asyncio.sleep(0.05)
            assert _errorwatch.current_watch(loop) is None
            assert _engine(a)._wwatch is None
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
    whose ``sendmsg`` raises, the only way to make the engine's flush raise). The loop's
    exception handler hears of it, as of a loop writer's callback that raises; the other
    socket's send completes; and the one that raised is tried again and completes too (on
    uvloop the one-shot registration is armed again, as the loop's writer calls again)."""
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
        assert await _await(ov2) == len(two)
        assert await _await(ov1) == len(one)
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
    waits for writability: the send is aborted with its exact count (S5.12), and neither the
    engine's duplicate nor the watch's epoll is left open."""
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
