"""Public entry points for overlapped sends: ``wsa_send``, ``closesocket`` and the engine registry."""

from __future__ import annotations

import asyncio
import socket
import threading
import weakref

from ._engine import DEFAULT_MAX_PENDING, ZERO, SendEngine
from ._errors import WSAError, WSAErrorCode
from ._overlapped import CompletionRoutine, WSAOverlapped
from ._sockutil import check_socket

__all__ = ["closesocket", "engine_for", "find_engine", "set_max_pending", "wsa_send"]

# One engine per socket, keyed by id(sock). The entry is removed by a weakref callback when
# the socket object dies (before its id can be reused), so the registry never keeps a socket
# alive. An engine belongs to one loop; a socket that moves to another loop gets a new engine
# once the old one is idle (S5.10).
_ENGINES: dict[int, SendEngine] = {}
# Per-socket bound set through set_max_pending before an engine exists.
_MAX_PENDING: dict[int, int] = {}
# Reentrant on purpose: engine_for allocates while holding it, the garbage collector may run
# there, and a collected socket's finalizer (_forget) takes it again in the same thread.
_LOCK = threading.RLock()
_get_running_loop = asyncio.get_running_loop


def _forget(key: int, engine: SendEngine) -> None:
    with _LOCK:
        if _ENGINES.get(key) is engine:
            del _ENGINES[key]
        _MAX_PENDING.pop(key, None)


def find_engine(sock: socket.socket) -> SendEngine | None:
    """The engine of ``sock`` if it has one (on any loop)."""
    engine = _ENGINES.get(id(sock))
    if engine is not None and engine._sockref() is sock:
        return engine
    return None


def engine_for(sock: socket.socket, loop: asyncio.AbstractEventLoop) -> SendEngine:
    """The engine of ``sock`` on ``loop``, made on first use.

    Raises:
        WSAError: WSAENOTSOCK for a closed socket or a non-socket; WSAEINPROGRESS when the
            socket still has sends pending on another loop.
    """
    key = id(sock)
    engine = _ENGINES.get(key)
    if engine is not None and engine.loop is loop and engine._sockref() is sock:
        return engine
    check_socket(sock)
    with _LOCK:
        engine = _ENGINES.get(key)
        if engine is not None and engine._sockref() is sock:
            if engine.loop is loop:
                return engine
            if not engine.is_idle():
                raise WSAError(WSAErrorCode.WSAEINPROGRESS, detail="the socket has sends pending on another event loop")
        engine = SendEngine(loop, sock, max_pending=_MAX_PENDING.get(key, DEFAULT_MAX_PENDING))
        _ENGINES[key] = engine
        weakref.finalize(sock, _forget, key, engine)
        return engine


def set_max_pending(sock: socket.socket, max_pending: object) -> None:
    """Set the bound on outstanding overlapped sends for ``sock`` (SPEC S5.6; default 65536).

    Raises:
        WSAError: WSAEINVAL for a bound below 1; WSAENOTSOCK for a closed socket.
    """
    check_socket(sock)
    if not isinstance(max_pending, int) or max_pending < 1:
        raise WSAError(WSAErrorCode.WSAEINVAL, detail=f"max_pending must be a positive int, not {max_pending!r}")
    _MAX_PENDING[id(sock)] = max_pending
    engine = find_engine(sock)
    if engine is not None:
        engine.max_pending = max_pending
    else:
        weakref.finalize(sock, _MAX_PENDING.pop, id(sock), None)


def wsa_send(
    sock: socket.socket,
    buffers: object,
    flags: object = 0,
    *,
    overlapped: object = None,
    completion_routine: CompletionRoutine | None = None,
) -> WSAOverlapped:
    """Post an overlapped send on the running loop; return its :class:`WSAOverlapped` (SPEC S5).

    ``n = await wsa_send(sock, [header, body])`` gives the bytes the kernel consumed (all of
    them) or raises :class:`WSAError`. The send is posted when the call is made, not when it is
    awaited: sends are written in call order, whichever task calls, and a send that is never
    awaited still goes out. The buffers are not copied: leave them alone until it completes.

    Args:
        sock: a connected socket of any kind of S5.10; its blocking mode and timeout are left
            as they are.
        buffers: bytes-like objects or ``WSABUF``\\ s (or one bytes-like object), captured now.
        flags: ``MSG_OOB``, ``MSG_DONTROUTE``, ``MSG_PARTIAL`` (Winsock values, S4.1).
        overlapped: a completed (or new) :class:`WSAOverlapped` to reuse, else one is made.
            ``flags`` and ``overlapped`` are typed ``object`` so that a wrong type is reported
            by this function as a :class:`WSAError`, in the compiled build too (S10).
        completion_routine: ``routine(error, transferred, overlapped, flags)``, called through
            ``loop.call_soon`` after completion (never inside this call, never nested for the
            socket); with a routine the overlapped's event is not set (S5.3).

    Returns:
        The overlapped: ``completed_immediately`` when the kernel took everything in this call,
        else ``pending`` (Winsock's WSA_IO_PENDING).

    Raises:
        WSAError: for a send that could not start (S5.2): nothing of it was sent and no
            completion follows. WSAEFAULT (bad buffer), WSAEOPNOTSUPP (flags), WSAEMSGSIZE,
            WSAESHUTDOWN, WSAENOTCONN, WSAENOTSOCK, WSAECONNRESET, WSAEWOULDBLOCK (too many
            outstanding sends, S5.6), WSAEINVAL (the overlapped is still pending, S5.5).
        RuntimeError: when no event loop is running in this thread.
    """
    loop = _get_running_loop()
    # id(sock) cannot name a dead socket here: the registry entry is dropped by a weakref
    # callback when the socket dies, before its id can be reused.
    engine = _ENGINES.get(id(sock))
    if engine is None or engine.loop is not loop:
        engine = engine_for(sock, loop)
    if engine.hot and flags is ZERO and overlapped is None and completion_routine is None and type(buffers) is list:
        return engine.post_list(sock, buffers)
    return engine.post(sock, buffers, flags, overlapped, completion_routine)


def closesocket(sock: socket.socket) -> None:
    """Abort the socket's pending sends and close it (SPEC S6.1; Winsock's closesocket).

    Every pending send completes with WSA_OPERATION_ABORTED and its exact ``transferred``;
    routines and events fire as usual, on the engine's loop. The loop's registrations are
    removed before the descriptor is closed, so the peer sees the close. A blocking
    ``wsa_send_sync`` in another thread is woken and fails with WSAEINTR.

    Raises:
        WSAError: WSAENOTSOCK when the socket is already closed or is not a socket.
    """
    check_socket(sock)
    engine = find_engine(sock)
    if engine is not None:
        if engine.in_loop_thread() or engine.loop.is_closed() or not engine.loop.is_running():
            engine.abort()
        else:
            done = threading.Event()

            def _abort() -> None:
                try:
                    engine.abort()
                finally:
                    done.set()

            engine.loop.call_soon_threadsafe(_abort)
            done.wait(5.0)
    from ._sync import interrupt_blocking_send

    interrupt_blocking_send(sock)
    sock.close()
