"""Sockets and the send calls of the facade (SPEC S8.2, S8.3, S8.7).

Every send here is an ordinary ``wsa_send`` (overlapped) or ``wsa_send_sync`` (nonoverlapped):
the facade adds no send logic of its own (SPEC S8).
"""

# Winsock's own spellings on purpose: SPEC S8 and STYLE "Winsock spellings only where the thing
# *is* Winsock".
# ruff: noqa: N802, N803

from __future__ import annotations

import asyncio
import ctypes
import socket
from typing import Any

from .._api import closesocket as _closesocket
from .._api import find_engine, wsa_send
from .._buffers import WSABUF
from .._errors import WSAError, WSAErrorCode, errno_to_wsa
from .._overlapped import CompletionRoutine, WSAOverlapped
from .._sockutil import check_socket, mark_shutdown
from .._sync import wsa_send_sync
from . import _startup as _st
from ._startup import (
    _KNOWN,
    _NONOVERLAPPED,
    _SHUT_SEND,
    _SOCKET_FLAGS,
    INVALID_SOCKET,
    SD_BOTH,
    SD_RECEIVE,
    SD_SEND,
    WSA_FLAG_OVERLAPPED,
    _fail,
    _Provider,
    _run_on_engine_loop,
    _started,
    _state,
    _ThreadState,
)

# -- sockets (S8.2) -------------------------------------------------------------------------------


def WSASocket(
    af: int,
    type: int,
    proto: int,
    info: object = None,
    group: int = 0,
    flags: int = WSA_FLAG_OVERLAPPED,
) -> socket.socket | None:
    """Make a socket (Winsock's WSASocket; SPEC S8.2). Blocking, like every new Winsock socket.

    Args:
        af, type, proto: as for :class:`socket.socket` (``socket.AF_INET``, ...).
        info: ``lpProtocolInfo``; only None is supported.
        group: reserved; only 0 is supported.
        flags: ``WSA_FLAG_OVERLAPPED`` makes the socket usable for overlapped sends; without it,
            a ``WSASend`` with an overlapped or a completion routine fails WSAEINVAL.
            ``WSA_FLAG_NO_HANDLE_INHERIT`` is accepted (Python sockets are never inherited).

    Returns:
        The socket, or ``INVALID_SOCKET`` (None) with the code in ``WSAGetLastError()``:
        WSANOTINITIALISED, WSAEINVAL (bad info, group or flags), or the socket call's error.
    """
    if _started() is None:
        _fail(WSAErrorCode.WSANOTINITIALISED)
        return INVALID_SOCKET
    if info is not None or group != 0 or not isinstance(flags, int) or flags & ~_SOCKET_FLAGS:
        _fail(WSAErrorCode.WSAEINVAL)
        return INVALID_SOCKET
    try:
        sock = socket.socket(af, type, proto)
    except OSError as exc:
        _fail(errno_to_wsa(exc.errno))
        return INVALID_SOCKET
    if not flags & WSA_FLAG_OVERLAPPED:
        with _st._REGISTRY_LOCK:
            _NONOVERLAPPED.add(sock)
    return sock


def closesocket(s: socket.socket) -> int:
    """Abort the socket's pending sends and close it (Winsock's closesocket; SPEC S6.1, S8.2).

    Every pending send completes with WSA_OPERATION_ABORTED (events set, routines queued to
    their threads); a blocking ``WSASend`` in another thread fails with WSAEINTR.

    Returns:
        0, or SOCKET_ERROR: WSANOTINITIALISED, WSAENOTSOCK (closed already, or not a socket).
    """
    if _started() is None:
        return _fail(WSAErrorCode.WSANOTINITIALISED)
    try:
        _closesocket(s)
    except WSAError as exc:
        return _fail(exc.winerror)
    return 0


def shutdown(s: socket.socket, how: int) -> int:
    """Disable sends, receives or both on a socket (Winsock's shutdown; SPEC S8.2).

    ``SD_SEND`` and ``SD_BOTH``: every ``WSASend`` from now on fails WSAESHUTDOWN at once (and
    so does ``wsa_send`` on the socket), while the sends already queued go out first: the
    socket's sending direction is shut down when its queue has drained, so the peer reads every
    queued byte and then end-of-stream. This call does not wait for that. Note that a
    ``closesocket`` before the queue drained aborts the rest (S6.1), as on Windows.
    ``SD_RECEIVE`` shuts the receiving direction down at once.

    Returns:
        0, or SOCKET_ERROR: WSANOTINITIALISED, WSAENOTSOCK, WSAEINVAL (``how`` is none of
        SD_RECEIVE, SD_SEND, SD_BOTH), WSAENOTCONN (not connected).
    """
    if _started() is None:
        return _fail(WSAErrorCode.WSANOTINITIALISED)
    try:
        sock = check_socket(s)
        if how not in (SD_RECEIVE, SD_SEND, SD_BOTH) or isinstance(how, bool):
            raise WSAError(WSAErrorCode.WSAEINVAL, detail=f"how={how!r}")
        if how == SD_RECEIVE:
            sock.shutdown(socket.SHUT_RD)
            return 0
        sock.getpeername()  # WSAENOTCONN now, rather than silently when the queue drains
        linux_how = socket.SHUT_WR if how == SD_SEND else socket.SHUT_RDWR
        with _st._REGISTRY_LOCK:
            _SHUT_SEND.add(sock)
        outcome: list[BaseException | None] = []

        def shut() -> None:
            # Mark first, so that an EPIPE after this point reads as WSAESHUTDOWN (S3.3).
            mark_shutdown(sock)
            try:
                if sock.fileno() >= 0:
                    sock.shutdown(linux_how)
            except OSError as exc:
                outcome.append(exc)
            else:
                outcome.append(None)

        engine = find_engine(sock)
        if engine is None or engine.loop.is_closed():
            shut()
        else:
            _run_on_engine_loop(engine, lambda: engine.drain_then(shut))
        if outcome and outcome[0] is not None:
            raise outcome[0]
    except WSAError as exc:
        return _fail(exc.winerror)
    except OSError as exc:
        return _fail(errno_to_wsa(exc.errno))
    return 0


# -- out-parameters -------------------------------------------------------------------------------

# ctypes integer type codes: an out-parameter must be an integer ctypes object.
_INT_CODES = frozenset("bBhHiIlLqQ")


def _out_param(obj: object, *, may_be_none: bool) -> Any:
    """The ctypes integer an out-parameter writes to, or None; WSAEFAULT for anything else.

    Accepts a ``DWORD`` (any ctypes integer) or a ``ctypes.pointer`` to one, the two shapes
    ported code has; ``None`` only where Winsock allows NULL.
    """
    if obj is None:
        if may_be_none:
            return None
        raise WSAError(WSAErrorCode.WSAEFAULT, detail="the out-parameter is None")
    target: object = obj
    if isinstance(obj, ctypes._Pointer):
        try:
            target = obj.contents
        except ValueError:  # a NULL pointer
            raise WSAError(WSAErrorCode.WSAEFAULT, detail="the out-parameter is a NULL pointer") from None
    if isinstance(target, ctypes._SimpleCData) and getattr(target, "_type_", "") in _INT_CODES:
        return target
    raise WSAError(WSAErrorCode.WSAEFAULT, detail=f"the out-parameter must be a DWORD, not {type(obj).__name__}")


def _capture(buffers: object, count: object) -> list[Any]:
    """The first ``count`` entries of ``lpBuffers``, in a list of our own (the array is transient)."""
    if isinstance(buffers, WSABUF):
        items: list[Any] = [buffers]
    elif isinstance(buffers, (list, tuple)):
        items = list(buffers)
    else:
        raise WSAError(
            WSAErrorCode.WSAEFAULT, detail=f"lpBuffers must be a list of WSABUF, not {type(buffers).__name__}"
        )
    if not isinstance(count, int) or isinstance(count, bool) or count < 0 or count > len(items):
        raise WSAError(
            WSAErrorCode.WSAEFAULT, detail=f"dwBufferCount={count!r} but lpBuffers holds {len(items)} entries"
        )
    del items[count:]
    return items


# -- WSASend (S8.3) -------------------------------------------------------------------------------


def _queue_in_thread(state: _ThreadState, routine: CompletionRoutine) -> CompletionRoutine:
    """A routine for the engine that queues ``routine`` to the posting thread's APC queue."""

    def queued(error: int, transferred: int, overlapped: WSAOverlapped, flags: int) -> None:
        state.queue_apc(routine, (error, transferred, overlapped, flags))

    return queued


def _post(
    provider: _Provider,
    sock: socket.socket,
    bufs: list[Any],
    flags: int,
    overlapped: WSAOverlapped | None,
    routine: CompletionRoutine | None,
) -> tuple[bool, int]:
    """Post one overlapped send; ``(completed immediately, count)``. Raises as ``wsa_send``."""
    with _st._REGISTRY_LOCK:
        _KNOWN.add(sock)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        # Inside a running loop: that loop, and the caller's routine as is (call_soon, S5.3).
        ov = wsa_send(sock, bufs, flags, overlapped=overlapped, completion_routine=routine)
        return ov.completed_immediately, ov.transferred
    if routine is not None:
        if not callable(routine):
            raise WSAError(WSAErrorCode.WSAEFAULT, detail="lpCompletionRoutine is not callable")
        routine = _queue_in_thread(_state(), routine)

    def post() -> tuple[bool, int]:
        # On the provider's loop. Read the outcome here: once we return, the send may complete
        # (on this thread) before the caller looks at the overlapped.
        ov = wsa_send(sock, bufs, flags, overlapped=overlapped, completion_routine=routine)
        return ov.completed_immediately, ov.transferred

    return provider.call(post)


def WSASend(
    s: socket.socket,
    lpBuffers: object,
    dwBufferCount: int,
    lpNumberOfBytesSent: Any,
    dwFlags: int,
    lpOverlapped: WSAOverlapped | None = None,
    lpCompletionRoutine: CompletionRoutine | None = None,
) -> int:
    """Send the first ``dwBufferCount`` buffers of ``lpBuffers`` on ``s`` (Winsock's WSASend; S8.3).

    With ``lpOverlapped`` or ``lpCompletionRoutine`` the send is overlapped (SPEC S5): it is
    posted on the running loop, or from a thread with no running loop on the provider's, and
    completes through the overlapped's ``hEvent``, ``WSAGetOverlappedResult`` or the routine.
    With neither it is nonoverlapped and follows the socket's blocking mode, as ``send`` does
    (S4). The buffers are not copied on the overlapped path: leave them alone until the send
    completes. The list itself is captured before this call returns, so it may be reused.

    Args:
        s: a connected socket (from ``WSASocket`` or any Python socket).
        lpBuffers: a list of :class:`WSABUF` (or of bytes-like objects), or one ``WSABUF``.
        dwBufferCount: how many entries of ``lpBuffers`` to send.
        lpNumberOfBytesSent: a ``DWORD`` set to the count when the send completes in this call;
            left alone when it is pending. May be None only for an overlapped send.
        dwFlags: ``MSG_OOB``, ``MSG_DONTROUTE``, ``MSG_PARTIAL`` (S4.1, S4.4).
        lpOverlapped: a :class:`WSAOVERLAPPED` not used by another pending send (S5.5).
        lpCompletionRoutine: ``routine(dwError, cbTransferred, lpOverlapped, dwFlags)``. Posted
            from a thread, it runs in that thread during its next alertable wait (``SleepEx``,
            ``WSAWaitForMultipleEvents(..., alertable=True)``); posted inside a running loop, it
            runs through ``loop.call_soon``. With a routine, ``hEvent`` is not signalled.

    Returns:
        0 when the send completed in this call (``lpNumberOfBytesSent`` holds the count); else
        SOCKET_ERROR with ``WSAGetLastError()`` == WSA_IO_PENDING for a send that will complete
        later, or any other code for one that did not start (no completion of any kind follows).
    """
    provider = _started()
    if provider is None:
        return _fail(WSAErrorCode.WSANOTINITIALISED)
    overlapped = lpOverlapped is not None or lpCompletionRoutine is not None
    try:
        sock = check_socket(s)
        bufs = _capture(lpBuffers, dwBufferCount)
        out = _out_param(lpNumberOfBytesSent, may_be_none=overlapped)
        if sock in _SHUT_SEND:
            raise WSAError(WSAErrorCode.WSAESHUTDOWN, detail="shutdown() disabled sends on this socket")
        if not overlapped:
            n = wsa_send_sync(sock, bufs, dwFlags)
            out.value = n
            return 0
        if sock in _NONOVERLAPPED:
            raise WSAError(WSAErrorCode.WSAEINVAL, detail="the socket was made without WSA_FLAG_OVERLAPPED")
        immediate, n = _post(provider, sock, bufs, dwFlags, lpOverlapped, lpCompletionRoutine)
    except WSAError as exc:
        return _fail(exc.winerror)
    if not immediate:
        return _fail(WSAErrorCode.WSA_IO_PENDING)
    if out is not None:
        out.value = n
    return 0


def WSAGetOverlappedResult(
    s: socket.socket, lpOverlapped: WSAOverlapped, lpcbTransfer: Any, fWait: bool, lpdwFlags: Any
) -> bool:
    """The outcome of an overlapped send (Winsock's WSAGetOverlappedResult; SPEC S8.5).

    Args:
        s: the socket the send was posted on (only checked to be a socket, so that results
            can still be read after ``closesocket``).
        lpOverlapped: the send's overlapped.
        lpcbTransfer: a ``DWORD`` set to the bytes the send transferred (also on failure).
        fWait: wait until the send completes. Not allowed for a send with a completion routine
            (the seed: "may not set fWait to TRUE"), nor in the thread of the loop that would
            have to complete it (that would hang).
        lpdwFlags: a ``DWORD`` set to 0 (no flags are defined).

    Returns:
        True when the send succeeded. False otherwise, with ``WSAGetLastError()``:
        WSA_IO_INCOMPLETE (pending and ``fWait`` false), the send's own error (e.g.
        WSA_OPERATION_ABORTED, WSAECONNRESET), WSAEINVAL (``fWait`` as above), WSAEFAULT (bad
        overlapped or out-parameter), WSAENOTSOCK, WSANOTINITIALISED.
    """
    if _started() is None:
        _fail(WSAErrorCode.WSANOTINITIALISED)
        return False
    try:
        if not isinstance(s, socket.socket):
            raise WSAError(WSAErrorCode.WSAENOTSOCK)
        if not isinstance(lpOverlapped, WSAOverlapped):
            raise WSAError(WSAErrorCode.WSAEFAULT, detail="lpOverlapped is not a WSAOVERLAPPED")
        transfer = _out_param(lpcbTransfer, may_be_none=False)
        flags_out = _out_param(lpdwFlags, may_be_none=False)
        ov = lpOverlapped
        if fWait and ov.completion_routine is not None:
            raise WSAError(WSAErrorCode.WSAEINVAL, detail="fWait with a completion routine")
        if ov.pending:
            if not fWait:
                raise WSAError(WSAErrorCode.WSA_IO_INCOMPLETE)
            # Winsock waits on hEvent; we wait on the operation itself, which completes at the
            # same moment and cannot be fooled by an event the caller shares or resets.
            ov.wait()
    except WSAError as exc:
        _fail(exc.winerror)
        return False
    transfer.value = ov.transferred
    flags_out.value = 0
    if ov.error:
        _fail(ov.error)
        return False
    return True
