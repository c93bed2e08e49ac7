"""Shared machinery of the reliability tests: peer processes, fd and writer ledgers, S6.4 checks."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wsasend import WSAError, WSAErrorCode, WSAOverlapped, wsa_send
from wsasend._api import find_engine

from . import peer

PEER = Path(__file__).with_name("peer.py")

#: True when the full sizes of issue 7 are wanted (``WSASEND_FULL=1``); CI runs smaller ones.
FULL = os.environ.get("WSASEND_FULL", "") not in ("", "0")


async def wsa_send_when_free(sock: socket.socket, buffers: list[bytes]) -> WSAOverlapped:
    """``wsa_send``, retried while another loop's engine holds the socket (WSAEINPROGRESS,
    S5.11) after 1 ms, as a Winsock client retrying would: a retry at once spins the loop's
    thread, holds the GIL, and starves the threads it waits for (the stress-mix hang, stop 31).
    Any other error is the test's failure."""
    while True:
        try:
            return wsa_send(sock, buffers)
        except WSAError as exc:
            assert exc.winerror == WSAErrorCode.WSAEINPROGRESS, exc
            await asyncio.sleep(0.001)


# The sink's pattern, doubled (see peer.pattern_pool): any window up to the period is one slice.
_PATTERN = memoryview(peer.pattern_pool())


def pattern_window(offset: int, n: int) -> memoryview:
    """Bytes ``offset .. offset+n`` of the sink's stream pattern, zero-copy (n <= the period)."""
    start = offset % peer.PATTERN_PERIOD
    return _PATTERN[start : start + n]


def pattern_bytes(offset: int, n: int) -> bytes:
    out = bytearray()
    while n:
        take = min(n, peer.PATTERN_PERIOD)
        out += pattern_window(offset, take)
        offset += take
        n -= take
    return bytes(out)


class PeerProcess:
    """A peer program (``peer.py``) in its own process, talked to through stdin/stdout lines.

    A thread reads its stdout into a queue so that the test's loop never blocks on it.
    """

    def __init__(self, *args: str, netns: str | None = None) -> None:
        cmd = [sys.executable, str(PEER), *args]
        if netns is not None:
            cmd = ["ip", "netns", "exec", netns, *cmd]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1, close_fds=True
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.hello = self.line_sync(30.0)
        self.port: int = self.hello["port"]
        self.pid: int = self.hello["pid"]

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def line_sync(self, timeout: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"peer said nothing for {timeout} s") from None
        if line is None:
            raise AssertionError(f"peer exited (rc={self.proc.poll()}) without an answer")
        out: dict[str, Any] = json.loads(line)
        return out

    async def line(self, timeout: float = 60.0) -> dict[str, Any]:
        """The peer's next JSON line, waited for without blocking the loop."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                if time.monotonic() > deadline:
                    raise AssertionError(f"peer said nothing for {timeout} s") from None
                await asyncio.sleep(0.005)
                continue
            if line is None:
                raise AssertionError(f"peer exited (rc={self.proc.poll()}) without an answer")
            out: dict[str, Any] = json.loads(line)
            return out

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    async def command(self, command: str, timeout: float = 60.0) -> dict[str, Any]:
        self.send(command)
        return await self.line(timeout)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def close(self) -> None:
        """Reap the process and close our ends of its pipes (they are fds of this process)."""
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        for pipe in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError, ValueError):
                if pipe is not None:
                    pipe.close()
        self._reader.join(10)


def open_fds() -> set[int]:
    return {int(name) for name in os.listdir("/proc/self/fd")}


class FdLedger:
    """The fds open when made; :meth:`assert_no_leak` fails on any opened since and not closed.

    The listing itself opens one fd (for /proc/self/fd), which is closed again before it returns,
    so two listings agree when nothing leaked.
    """

    def __init__(self) -> None:
        gc.collect()
        self.before = open_fds()

    def assert_no_leak(self) -> None:
        deadline = time.monotonic() + 5.0
        while True:
            gc.collect()
            leaked = open_fds() - self.before
            if not leaked or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        details = {fd: _describe_fd(fd) for fd in sorted(leaked)}
        assert not leaked, f"fds leaked: {details}"


def _describe_fd(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return "?"


def assert_no_writer(loop: asyncio.AbstractEventLoop, sock: socket.socket, fd: int) -> None:
    """The socket has no writer left, in the engine and in the loop (call before closing it).

    ``loop.remove_writer`` is public API and returns whether a writer was registered.
    """
    engine = find_engine(sock)
    if engine is not None:
        assert engine._writer is None, "the engine still holds a writer"
        assert engine._dup is None, "an idle engine still holds its duplicate of the descriptor"
    if fd >= 0:
        assert not loop.remove_writer(fd), "the loop still had a writer registered for the socket"


class LedgerSocket(socket.socket):
    """A real socket that counts what the kernel accepted: ``sendmsg`` is the real one, observed.

    Used to check S6.4 against the kernel's own answers: the sum of ``transferred`` over the
    completed sends must equal ``accepted``.
    """

    accepted: int

    @classmethod
    def wrap(cls, sock: socket.socket) -> LedgerSocket:
        timeout = sock.gettimeout()
        out = cls(sock.family, sock.type, sock.proto, fileno=sock.detach())
        out.settimeout(timeout)
        out.accepted = 0
        return out

    def sendmsg(self, buffers: Any, ancdata: Any = (), flags: int = 0, address: Any = None) -> int:
        if address is None:
            n = super().sendmsg(buffers, ancdata, flags)
        else:  # pragma: no cover - the tests use connected sockets
            n = super().sendmsg(buffers, ancdata, flags, address)
        self.accepted += n
        return n


def check_exact(ops: Sequence[tuple[WSAOverlapped, int]]) -> int:
    """Check S6.4 for one socket's sends, in posting order; return the sum of ``transferred``.

    Every send is complete. The consumed bytes form a prefix of the posted stream: whole sends,
    then at most one send cut short, then sends of which nothing was consumed. A failed send's
    ``WSAError.bytes_sent`` equals its ``transferred``; a successful one transferred everything.
    """
    total = 0
    cut = False
    for index, (ov, nbytes) in enumerate(ops):
        assert not ov.pending, f"send {index} still pending"
        assert ov.nbytes == nbytes, (index, ov.nbytes, nbytes)
        if ov.error == 0:
            assert ov.transferred == nbytes, (index, ov.transferred, nbytes)
            assert not cut, f"send {index} succeeded after an earlier send was cut short"
        else:
            exc = ov.exception
            assert isinstance(exc, WSAError)
            assert exc.winerror == ov.error
            assert exc.bytes_sent == ov.transferred, (index, exc.bytes_sent, ov.transferred)
            assert 0 <= ov.transferred <= nbytes
            assert ov.transferred < nbytes or nbytes == 0, f"send {index} failed with every byte consumed"
            if cut:
                assert ov.transferred == 0, f"send {index} consumed bytes after a send was cut short"
            if ov.transferred < nbytes:
                cut = True
        total += ov.transferred
    return total


async def settle(ops: Sequence[tuple[WSAOverlapped, int]], timeout: float = 30.0) -> None:
    """Let the loop run until every send of ``ops`` completed (``timeout`` is only a hang guard)."""
    deadline = time.monotonic() + timeout
    while any(ov.pending for ov, _ in ops):
        assert time.monotonic() < deadline, f"a send is still pending after {timeout} s: hang"
        await asyncio.sleep(0.01)


async def awaited(ov: WSAOverlapped, timeout: float = 30.0) -> int:
    """``await ov`` (its count), with ``timeout`` as a hang guard only."""
    async with asyncio.timeout(timeout):
        return await ov


def tcp_pair_bufs(bufsize: int) -> tuple[socket.socket, socket.socket]:
    """A loopback TCP pair whose sender SO_SNDBUF and receiver SO_RCVBUF are ``bufsize``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, bufsize)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, bufsize)
        client.connect(listener.getsockname())
        server, _ = listener.accept()
    return client, server


__all__ = [
    "FULL",
    "FdLedger",
    "LedgerSocket",
    "PeerProcess",
    "assert_no_writer",
    "check_exact",
    "open_fds",
    "pattern_bytes",
    "pattern_window",
    "settle",
    "tcp_pair_bufs",
]
