"""Helpers for the facade's tests: blocking readers, stuffed socket pairs, a scripted socket."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any

from tests import helpers
from tests.helpers import fill_socket, recv_to_eof
from wsasend import winsock

#: Hang guard only (seconds): nothing here should need more than a fraction of it.
GUARD = 30.0
#: The same guard in milliseconds, for WSAWaitForMultipleEvents and SleepEx.
GUARD_MS = int(GUARD * 1000)


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    """Read ``n`` bytes from a socket in this thread (blocking, with the hang guard)."""
    return helpers.recv_exactly(sock, n, GUARD)


def recv_all(sock: socket.socket) -> bytes:
    """Read until end-of-stream (blocking, with the hang guard)."""
    return recv_to_eof(sock, GUARD)


def recv_available(sock: socket.socket) -> bytes:
    """Whatever is readable right now, without blocking."""
    out = bytearray()
    sock.setblocking(False)  # (with a timeout, Python would poll for it even with MSG_DONTWAIT)
    while True:
        try:
            chunk = sock.recv(1 << 20)
        except BlockingIOError:
            return bytes(out)
        if not chunk:
            return bytes(out)
        out += chunk


def stuffed_pair() -> tuple[socket.socket, socket.socket, int]:
    """An AF_UNIX stream pair whose first end cannot take one more byte until the peer reads.

    Returns ``(sender, receiver, filled)``: the receiver must read ``filled`` zero bytes first.
    This is the deterministic way to make a send pend: nothing moves until the test reads.
    """
    a, b = socket.socketpair()
    return a, b, fill_socket(a)


class Reader:
    """A thread that reads a socket to the end (or ``limit`` bytes) while the test goes on."""

    def __init__(self, sock: socket.socket, limit: int | None = None) -> None:
        self.sock = sock
        self.limit = limit
        self.data = bytearray()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.sock.settimeout(GUARD)
            while self.limit is None or len(self.data) < self.limit:
                want = 1 << 20 if self.limit is None else min(1 << 20, self.limit - len(self.data))
                chunk = self.sock.recv(want)
                if not chunk:
                    return
                self.data += chunk
        except BaseException as exc:
            self.error = exc

    def join(self) -> bytes:
        self.thread.join(GUARD)
        assert not self.thread.is_alive(), "reader hung"
        if self.error is not None:
            raise self.error
        return bytes(self.data)


def run_in_thread(fn: Callable[[], Any]) -> Any:
    """Call ``fn`` in a new thread (which has no event loop) and return its result."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(GUARD)
    assert not thread.is_alive(), "thread hung"
    if "error" in box:
        raise box["error"]
    return box["result"]


class ScriptedSocket(socket.socket):
    """A real, connected socket whose ``sendmsg`` first plays a script.

    Only for the errnos Linux will not produce on demand (ENETDOWN, ENETRESET, ENOBUFS,
    ECONNABORTED): each call pops one step; an exception step is raised, and once the script is
    used up the real ``sendmsg`` runs.
    """

    def __init__(self, fileno: int, script: list[BaseException]) -> None:
        super().__init__(fileno=fileno)
        self.script = list(script)
        self.calls = 0

    def sendmsg(self, *args: Any) -> int:
        self.calls += 1
        if self.script:
            raise self.script.pop(0)
        return super().sendmsg(*args)


def scripted_pair(script: list[BaseException]) -> tuple[ScriptedSocket, socket.socket]:
    a, b = socket.socketpair()
    return ScriptedSocket(a.detach(), script), b


class Routines:
    """A completion routine that records its calls and the thread each ran in."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, winsock.WSAOVERLAPPED, int]] = []
        self.threads: list[int] = []

    def __call__(self, error: int, transferred: int, ov: winsock.WSAOVERLAPPED, flags: int) -> None:
        self.calls.append((error, transferred, ov, flags))
        self.threads.append(threading.get_ident())


def dword(value: int = 0) -> Any:
    return winsock.DWORD(value)


def barrier() -> None:
    """Two round trips through the provider's loop.

    Once a send is seen complete, its completion routine's wrapper has been scheduled on the
    provider's loop in the same callback; after two round trips it has certainly run, so the
    routine sits in the posting thread's queue. (One is not enough: the first round trip may
    land in the same loop iteration as the wrapper, ahead of it.)
    """
    provider = winsock._provider
    assert provider is not None
    provider.call(lambda: None)
    provider.call(lambda: None)


def settle(*ovs: winsock.WSAOVERLAPPED) -> None:
    """Wait until every send completed and its routine (if any) is queued to its thread."""
    for ov in ovs:
        assert ov.wait(GUARD), "send did not complete"
    barrier()
