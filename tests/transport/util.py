"""Helpers for the transport tests: a protocol that records and checks asyncio's call grammar."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import uvloop

import wsasend
from wsasend import CompletedSend, WSAOverlapped, WSAProtocol, WSATransport

#: Hang guard for waits in these tests (never a timing assertion).
GUARD = 20.0


class Recorder(WSAProtocol):
    """Records every callback and checks asyncio's grammar as it goes (SPEC S7.2).

    Grammar: ``connection_made`` once, first; then ``data_received``* and at most one
    ``eof_received`` (no data after it); ``send_completed``, ``pause_writing`` and
    ``resume_writing`` only between made and lost; ``connection_lost`` exactly once, last.
    A broken rule is appended to ``violations`` (asserted empty by :meth:`check`).
    """

    def __init__(self, *, keep_open: bool = False) -> None:
        loop = asyncio.get_running_loop()
        self.events: list[tuple[str, Any]] = []
        self.violations: list[str] = []
        self.data = bytearray()
        # What send_completed received: snapshots (S7.2), in call order.
        self.completed: list[CompletedSend] = []
        self.transport: WSATransport | None = None
        self.made = loop.create_future()
        self.eof = loop.create_future()
        self.lost: asyncio.Future[BaseException | None] = loop.create_future()
        self.keep_open = keep_open
        self.paused = False
        self.pause_sizes: list[int] = []
        self.resume_sizes: list[int] = []
        self._data_waiters: list[tuple[int, asyncio.Future[None]]] = []

    # -- grammar ------------------------------------------------------------------------------

    def _expect_live(self, what: str) -> None:
        if not self.made.done():
            self.violations.append(f"{what} before connection_made")
        if self.lost.done():
            self.violations.append(f"{what} after connection_lost")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.made.done():
            self.violations.append("connection_made twice")
            return
        assert isinstance(transport, WSATransport)
        self.transport = transport
        self.events.append(("made", None))
        self.made.set_result(None)

    def data_received(self, data: bytes) -> None:
        self._expect_live("data_received")
        if self.eof.done():
            self.violations.append("data_received after eof_received")
        if not data:
            self.violations.append("data_received with empty data")
        self.events.append(("data", len(data)))
        self.data += data
        self._wake()

    def eof_received(self) -> bool | None:
        self._expect_live("eof_received")
        if self.eof.done():
            self.violations.append("eof_received twice")
        else:
            self.eof.set_result(None)
        self.events.append(("eof", None))
        return self.keep_open

    def send_completed(self, overlapped: CompletedSend) -> None:
        self._expect_live("send_completed")
        if not isinstance(overlapped, CompletedSend):
            self.violations.append(f"send_completed got a {type(overlapped).__name__}, not a CompletedSend")
        if overlapped.pending:
            self.violations.append("send_completed for a pending send")
        self.events.append(("completed", overlapped))
        self.completed.append(overlapped)

    def pause_writing(self) -> None:
        self._expect_live("pause_writing")
        if self.paused:
            self.violations.append("pause_writing twice")
        self.paused = True
        assert self.transport is not None
        self.pause_sizes.append(self.transport.get_write_buffer_size())
        self.events.append(("pause", None))

    def resume_writing(self) -> None:
        self._expect_live("resume_writing")
        if not self.paused:
            self.violations.append("resume_writing without pause_writing")
        self.paused = False
        assert self.transport is not None
        self.resume_sizes.append(self.transport.get_write_buffer_size())
        self.events.append(("resume", None))

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self.made.done():
            self.violations.append("connection_lost before connection_made")
        if self.lost.done():
            self.violations.append("connection_lost twice")
            return
        self.events.append(("lost", exc))
        self.lost.set_result(exc)
        self._wake()

    # -- helpers ----------------------------------------------------------------------------------

    def _wake(self) -> None:
        keep = []
        for n, fut in self._data_waiters:
            if (len(self.data) >= n or self.lost.done()) and not fut.done():
                fut.set_result(None)
            elif not fut.done():
                keep.append((n, fut))
        self._data_waiters = keep

    async def wait_data(self, n: int) -> bytes:
        """Wait until ``n`` bytes arrived (or the connection was lost)."""
        if len(self.data) < n and not self.lost.done():
            fut = asyncio.get_running_loop().create_future()
            self._data_waiters.append((n, fut))
            await asyncio.wait_for(fut, GUARD)
        return bytes(self.data)

    async def wait_lost(self) -> BaseException | None:
        return await asyncio.wait_for(asyncio.shield(self.lost), GUARD)

    def check(self) -> None:
        assert self.violations == []

    def completed_overlapped(self) -> list[WSAOverlapped]:
        """The overlapped each send_completed was about, in call order (for identity checks)."""
        return [c.overlapped for c in self.completed]

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.events]


class Pong(asyncio.Protocol):
    """Answers ``ping`` with ``pong`` (anything else with ``?``); it and its transport refer to
    each other, nothing else refers to either (a server's connection: the loop's reader, or the
    error watch's, is what keeps it)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert isinstance(self.transport, asyncio.Transport)
        self.transport.write(b"pong" if data == b"ping" else b"?")


async def wrap(sock: socket.socket, factory: Callable[[], Any] = Recorder, **options: Any) -> tuple[WSATransport, Any]:
    """``connect_accepted_socket`` with a Recorder (or ``factory``), typed for the tests."""
    transport, protocol = await wsasend.connect_accepted_socket(factory, sock, **options)
    assert isinstance(transport, WSATransport)
    return transport, protocol


def on_uvloop() -> bool:
    """True when the running loop is uvloop's."""
    return isinstance(asyncio.get_running_loop(), uvloop.Loop)


async def spin(rounds: int = 20) -> None:
    """Let the loop run its callbacks, batch windows, writers and readers for a while."""
    for _ in range(rounds):
        await asyncio.sleep(0)


async def until(predicate: Callable[[], bool], guard: float = GUARD) -> None:
    """Yield to the loop until ``predicate()`` holds (hang guard only, never a timing check)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + guard
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached before the hang guard")
        await asyncio.sleep(0.001)


async def drain_peer(sock: socket.socket, *, bufsize: int = 1 << 20) -> bytes:
    """Read ``sock`` until EOF on the running loop; return everything."""
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    out = bytearray()
    while True:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, bufsize), GUARD)
        if not chunk:
            return bytes(out)
        out += chunk


def fill(sock: socket.socket) -> int:
    """Fill ``sock``'s send path (its buffer and the peer's receive buffer): bytes written."""
    chunk = b"\0" * 65536
    total = 0
    while True:
        try:
            total += sock.send(chunk, socket.MSG_DONTWAIT)
        except BlockingIOError:
            break
    # The kernel may take a few more bytes once a pending segment is acknowledged (TCP).
    small = b"\0" * 1024
    while True:
        try:
            total += sock.send(small, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return total
