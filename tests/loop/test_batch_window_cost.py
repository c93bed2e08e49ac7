"""The batch window costs no loop callback per send (SPEC S5.1, S5.4; issue 11 item 2).

An immediate completion opens a batch window so that sends posted back to back in the same
loop iteration are coalesced (S5.4). Closing it used to take one ``call_soon`` per engine per
window: a server answering 50 connections in one iteration paid 50 loop callbacks. Now every
engine of a loop shares one tick per iteration, and a window opened while a ``WSATransport``
delivers received data closes when that callback returns, with no loop callback at all.

The structural tests count the callbacks the package schedules, on an asyncio loop subclass
that records ``call_soon`` (uvloop's methods cannot be wrapped); the behavioural tests run on
both loops. Before the change, ``test_windows_of_one_loop_close_in_one_shared_callback`` failed
on both loops (the marker saw the third send still queued) and the counting tests counted 20
callbacks (one per engine) and one per request.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from contextvars import Context
from typing import Any, TypeVarTuple

import wsasend
from tests.helpers import read_exactly
from wsasend import WSAOverlapped, wsa_send

_Ts = TypeVarTuple("_Ts")

GUARD = 30.0


class CountingLoop(asyncio.SelectorEventLoop):
    """A real asyncio loop that records which callbacks of the wsasend package it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.ours: list[str] = []

    def call_soon(
        self, callback: Callable[[*_Ts], object], *args: *_Ts, context: Context | None = None
    ) -> asyncio.Handle:
        owner = getattr(callback, "__self__", None)
        if owner is not None and type(owner).__module__.startswith("wsasend._engine"):
            self.ours.append(getattr(callback, "__qualname__", repr(callback)))
        return super().call_soon(callback, *args, context=context)


def _run(coro_fn: Callable[[CountingLoop], Any]) -> Any:
    loop = CountingLoop()
    try:
        return loop.run_until_complete(asyncio.wait_for(coro_fn(loop), GUARD))
    finally:
        loop.close()


async def test_windows_of_one_loop_close_in_one_shared_callback() -> None:
    """Two engines' windows opened in one iteration close in the one tick scheduled by the first:
    a callback scheduled between them already sees the second engine's queued send flushed."""
    loop = asyncio.get_running_loop()
    a1, b1 = socket.socketpair()
    a2, b2 = socket.socketpair()
    try:
        seen: list[tuple[bool, bool]] = []
        second: WSAOverlapped  # read by the callback below, which runs after both are bound
        third: WSAOverlapped
        first = wsa_send(a1, [b"1"])
        assert first.completed_immediately
        loop.call_soon(lambda: seen.append((second.pending, third.pending)))
        second = wsa_send(a2, [b"2"])
        third = wsa_send(a2, [b"3"])
        assert second.completed_immediately and third.pending  # queued behind a2's window (S5.4)
        await asyncio.sleep(0)
        assert seen == [(False, False)]
        assert await read_exactly(b1, 1) == b"1"
        assert await read_exactly(b2, 2) == b"23"
    finally:
        for s in (a1, b1, a2, b2):
            s.close()


def test_isolated_sends_on_many_sockets_cost_one_loop_callback() -> None:
    """20 sockets, one send each in one iteration: one callback for all windows, not 20."""

    async def main(loop: CountingLoop) -> None:
        pairs = [socket.socketpair() for _ in range(20)]
        try:
            done = loop.create_future()

            def burst() -> None:
                for a, _ in pairs:
                    assert wsa_send(a, [b"x", b"y"]).completed_immediately
                done.set_result(None)

            loop.call_soon(burst)
            await done
            before = len(loop.ours)
            await asyncio.sleep(0)
            assert len(loop.ours) == before
            assert loop.ours == ["_BatchTick.run"]
            for _, b in pairs:
                assert await read_exactly(b, 2) == b"xy"
        finally:
            for a, b in pairs:
                a.close()
                b.close()

    _run(main)


class _Echo(asyncio.Protocol):
    """Answers every chunk with three sends: header, body, trailer (request/response)."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.first_immediate: list[bool] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        ovs = [self.transport.send([b"<"]), self.transport.send([data]), self.transport.send([b">"])]
        self.first_immediate.append(ovs[0].completed_immediately)
        self.transport.write(b"|")


def test_request_response_over_a_transport_schedules_no_engine_callback() -> None:
    """A WSATransport server answering requests schedules no batch-window callback at all:
    the window its replies open closes when data_received returns."""

    async def main(loop: CountingLoop) -> None:
        a, b = socket.socketpair()
        b.setblocking(False)
        transport, proto = await wsasend.connect_accepted_socket(_Echo, a)
        try:
            await asyncio.sleep(0)
            loop.ours.clear()
            for i in range(20):
                req = b"req%02d" % i
                await loop.sock_sendall(b, req)
                assert await read_exactly(b, 8) == b"<" + req + b">|"
            assert loop.ours == []
            assert all(proto.first_immediate)
        finally:
            transport.close()
            b.close()

    _run(main)


class _CountingSocket(socket.socket):
    calls = 0

    def sendmsg(self, *args: Any) -> int:
        self.calls += 1
        return super().sendmsg(*args)


async def test_sends_of_one_data_received_are_coalesced_and_flushed_on_return() -> None:
    """S5.4 still holds inside a transport callback: the first reply goes at once (S5.1), the
    rest go together in one sendmsg when data_received returns, before any later callback."""
    loop = asyncio.get_running_loop()
    raw, b = socket.socketpair()
    a = _CountingSocket(fileno=raw.detach())
    transport, proto = await wsasend.connect_accepted_socket(_Echo, a)
    try:
        await asyncio.sleep(0)
        a.calls = 0
        b.sendall(b"ping")
        async with asyncio.timeout(GUARD):
            assert await read_exactly(b, 7) == b"<ping>|"
        assert a.calls == 2  # "<" at once, then "ping", ">" and "|" in one sendmsg
        assert proto.first_immediate == [True]
        assert transport.get_write_buffer_size() == 0
        assert loop.is_running()
    finally:
        transport.close()
        b.close()
