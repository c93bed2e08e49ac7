"""I/O completion ports of the facade (SPEC S8.7; issue 13).

Theory of operation
-------------------
A port is a queue of completion packets ``(error, bytes, key, overlapped)`` under one lock,
which any number of threads wait on. A socket associated with a port (``CreateIoCompletionPort``)
has its overlapped sends posted with a :class:`_PortRoutine` as their completion routine: the
engine calls it through ``loop.call_soon`` on its loop when the send completes (S5.3), in the
order the sends completed on that socket, and it appends one packet. So a packet is queued
exactly once per send that started, and ``popleft`` under the lock hands each packet to exactly
one waiting thread. No send logic lives here (S8): the engine completes, the port only queues.

The routine slot is how the port is fed, so a caller's own completion routine on an associated
socket is WSAEINVAL, which is also Windows' rule.
"""

# Winsock's own spellings on purpose: SPEC S8 and STYLE "Winsock spellings only where the thing
# *is* Winsock".
# ruff: noqa: N802, N803, N815

from __future__ import annotations

import socket
import threading
import time
import weakref
from collections import deque
from typing import Any, Final

import attrs

from .._errors import WSAError, WSAErrorCode
from .._overlapped import WSAEvent, WSAOverlapped
from . import _startup as _st
from ._startup import INFINITE, _fail, _ok, _started, _state

__all__ = [
    "ERROR_ABANDONED_WAIT_0",
    "ERROR_INVALID_HANDLE",
    "ERROR_INVALID_PARAMETER",
    "ERROR_NOT_FOUND",
    "FILE_SKIP_COMPLETION_PORT_ON_SUCCESS",
    "FILE_SKIP_SET_EVENT_ON_HANDLE",
    "INVALID_HANDLE_VALUE",
    "OVERLAPPED_ENTRY",
    "WAIT_TIMEOUT",
    "CloseHandle",
    "CompletionPort",
    "CreateIoCompletionPort",
    "GetQueuedCompletionStatus",
    "GetQueuedCompletionStatusEx",
    "PostQueuedCompletionStatus",
    "SetFileCompletionNotificationModes",
]

#: winerror.h values the port calls report through the last error.
ERROR_INVALID_HANDLE: Final = 6
ERROR_INVALID_PARAMETER: Final = 87
ERROR_ABANDONED_WAIT_0: Final = 735
ERROR_NOT_FOUND: Final = 1168
#: GetQueuedCompletionStatus's time-out code (winerror.h WAIT_TIMEOUT).
WAIT_TIMEOUT: Final = 258
#: ``CreateIoCompletionPort``'s "no file": make a port only (C's INVALID_HANDLE_VALUE).
INVALID_HANDLE_VALUE: Final = None
#: SetFileCompletionNotificationModes flags (winbase.h).
FILE_SKIP_COMPLETION_PORT_ON_SUCCESS: Final = 0x1
FILE_SKIP_SET_EVENT_ON_HANDLE: Final = 0x2
_MODE_FLAGS: Final = FILE_SKIP_COMPLETION_PORT_ON_SUCCESS | FILE_SKIP_SET_EVENT_ON_HANDLE

_Packet = tuple[int, int, int, Any]  # (error, bytes, key, overlapped)


@attrs.frozen
class OVERLAPPED_ENTRY:  # noqa: N801 - Win32's name
    """One packet of ``GetQueuedCompletionStatusEx`` (Win32's OVERLAPPED_ENTRY)."""

    lpCompletionKey: int
    lpOverlapped: Any
    #: The send's status: 0 or its error code (Win32 keeps an NTSTATUS in ``Internal``).
    Internal: int
    dwNumberOfBytesTransferred: int


class CompletionPort:
    """An I/O completion port (Win32's completion port HANDLE); made by ``CreateIoCompletionPort``."""

    __slots__ = ("__weakref__", "_closed", "_cond", "_packets", "_wakes", "concurrency")

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self._cond = threading.Condition(threading.Lock())
        # Invariant: every packet is in here until exactly one thread pops it.
        self._packets: deque[_Packet] = deque()
        # Wake-ups of threads in alertable waits on this port (their APC wake events).
        self._wakes: list[threading.Event] = []
        self._closed = False

    def queue(self, packet: _Packet) -> None:
        """Queue one packet and wake one waiter (any thread)."""
        with self._cond:
            if self._closed:
                return  # Windows drops completions for a closed port
            self._packets.append(packet)
            self._cond.notify()
            wakes = list(self._wakes)
        for wake in wakes:
            wake.set()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._packets.clear()
            self._cond.notify_all()
            wakes = list(self._wakes)
        for wake in wakes:
            wake.set()

    @property
    def closed(self) -> bool:
        return self._closed

    def take(self, count: int, timeout: float | None, alertable: bool) -> list[_Packet] | int:
        """Up to ``count`` packets (at least one), or an int: WAIT_TIMEOUT, the abandon code,
        or -1 after running this thread's completion routines (alertable)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        state = _state()
        alertable = alertable and not state.in_apc
        if not alertable:
            with self._cond:
                while True:
                    got = self._pop(count)
                    if got is not None:
                        return got
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return WAIT_TIMEOUT
                    self._cond.wait(left)
        wake = state.wake
        with self._cond:
            self._wakes.append(wake)
        try:
            while True:
                wake.clear()
                with self._cond:
                    got = self._pop(count)
                if got is not None:
                    return got
                if state.run_apcs():
                    return -1
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return WAIT_TIMEOUT
                wake.wait(left)
        finally:
            with self._cond:
                self._wakes.remove(wake)

    def _pop(self, count: int) -> list[_Packet] | int | None:
        if self._closed:
            return ERROR_ABANDONED_WAIT_0
        packets = self._packets
        if not packets:
            return None
        return [packets.popleft() for _ in range(min(count, len(packets)))]

    def __repr__(self) -> str:
        return f"<CompletionPort {'closed' if self._closed else f'{len(self._packets)} packets'}>"


class _Association:
    """A socket's port, key and notification modes."""

    __slots__ = ("key", "modes", "port")

    def __init__(self, port: CompletionPort | None, key: int, modes: int) -> None:
        self.port = port
        self.key = key
        self.modes = modes


# Sockets' associations (keyed on the socket; dies with it).
_ASSOCIATIONS: weakref.WeakKeyDictionary[socket.socket, _Association] = weakref.WeakKeyDictionary()


class _PortRoutine:
    """The completion routine an associated socket's sends get: it queues the packet (S5.3).

    One per send. ``signals_event``: the engine sets the overlapped's ``hEvent`` when the send
    completes, as Windows signals it beside the packet, and resets it when the send is posted
    (see ``SendEngine._complete`` and ``WSAOverlapped._reset_for_post``): this routine runs
    later (``call_soon``), when a reposted overlapped's event already belongs to its next send.
    ``immediate`` is read off the send as it is posted (:meth:`posted`), for the same reason:
    the overlapped's own ``completed_immediately`` may be the next send's by the time this runs
    (skip mode queued a packet for a send ``WSASend`` had reported done; adversarial pass).
    """

    __slots__ = ("assoc", "immediate")

    signals_event = True

    def __init__(self, assoc: _Association) -> None:
        self.assoc = assoc
        self.immediate = False

    def posted(self, ov: WSAOverlapped) -> None:
        """In the loop's thread, right after the post: before this routine can run."""
        self.immediate = ov.completed_immediately

    def __call__(self, error: int, transferred: int, ov: WSAOverlapped, flags: int) -> None:
        assoc = self.assoc
        if error == 0 and self.immediate and assoc.modes & FILE_SKIP_COMPLETION_PORT_ON_SUCCESS:
            return  # the caller learnt of it from WSASend's 0: no packet (Windows' skip mode)
        port = assoc.port
        if port is not None:
            port.queue((int(error), transferred, assoc.key, ov))


def routine_for(sock: socket.socket) -> _PortRoutine | None:
    """The port routine for a send on ``sock``, or None when it has no port."""
    assoc = _ASSOCIATIONS.get(sock)
    if assoc is None or assoc.port is None:
        return None
    return _PortRoutine(assoc)


def is_port_routine(routine: object) -> bool:
    return isinstance(routine, _PortRoutine)


def _check_port(port: object) -> CompletionPort:
    if not isinstance(port, CompletionPort) or port.closed:
        raise WSAError(WSAErrorCode.WSA_INVALID_HANDLE, detail=f"{port!r} is not an open completion port")
    return port


def CreateIoCompletionPort(
    FileHandle: object, ExistingCompletionPort: object, CompletionKey: int, NumberOfConcurrentThreads: int
) -> CompletionPort | None:
    """Make a port, associate a socket with a port, or both (Win32's CreateIoCompletionPort; S8.7).

    Args:
        FileHandle: a socket, or ``INVALID_HANDLE_VALUE`` (None) to only make a port.
        ExistingCompletionPort: the port to associate with, or None for a new one.
        CompletionKey: the key every packet of this socket carries.
        NumberOfConcurrentThreads: kept for ported code (0 = as many as processors); every
            waiting thread is served, the number is not enforced.

    Returns:
        The port, or None with the last error: WSANOTINITIALISED, ERROR_INVALID_HANDLE (6) for
        a closed or bad port or socket, ERROR_INVALID_PARAMETER (87) for a socket already
        associated with a port (Windows allows one association per handle) or a bad key.
    """
    if _started() is None:
        _fail(WSAErrorCode.WSANOTINITIALISED)
        return None
    if not isinstance(CompletionKey, int) or not isinstance(NumberOfConcurrentThreads, int):
        _fail(ERROR_INVALID_PARAMETER)
        return None
    if ExistingCompletionPort is not None and (
        not isinstance(ExistingCompletionPort, CompletionPort) or ExistingCompletionPort.closed
    ):
        _fail(ERROR_INVALID_HANDLE)
        return None
    if FileHandle is not None and (not isinstance(FileHandle, socket.socket) or FileHandle.fileno() < 0):
        _fail(ERROR_INVALID_HANDLE)
        return None
    with _st._REGISTRY_LOCK:
        if FileHandle is not None:
            assoc = _ASSOCIATIONS.get(FileHandle)
            if assoc is not None and assoc.port is not None:
                _state().last_error = ERROR_INVALID_PARAMETER
                return None
        port = (
            ExistingCompletionPort if ExistingCompletionPort is not None else CompletionPort(NumberOfConcurrentThreads)
        )
        assert isinstance(port, CompletionPort)
        if FileHandle is not None:
            if assoc is None:
                _ASSOCIATIONS[FileHandle] = _Association(port, CompletionKey, 0)
            else:
                assoc.port, assoc.key = port, CompletionKey
    _ok()
    return port


def SetFileCompletionNotificationModes(FileHandle: object, Flags: int) -> bool:
    """Set a socket's completion modes (Win32's SetFileCompletionNotificationModes; S8.7).

    ``FILE_SKIP_COMPLETION_PORT_ON_SUCCESS``: a send that completes inside ``WSASend`` (which
    returns 0) queues no packet; pending and failed sends still do.
    ``FILE_SKIP_SET_EVENT_ON_HANDLE`` is accepted (a socket handle is never signalled here).

    Returns:
        True, or False with ERROR_INVALID_HANDLE (not an open socket) or
        ERROR_INVALID_PARAMETER (unknown flags).
    """
    if not isinstance(FileHandle, socket.socket) or FileHandle.fileno() < 0:
        _state().last_error = ERROR_INVALID_HANDLE
        return False
    if not isinstance(Flags, int) or isinstance(Flags, bool) or Flags & ~_MODE_FLAGS or Flags < 0:
        _state().last_error = ERROR_INVALID_PARAMETER
        return False
    with _st._REGISTRY_LOCK:
        assoc = _ASSOCIATIONS.get(FileHandle)
        if assoc is None:
            _ASSOCIATIONS[FileHandle] = _Association(None, 0, Flags)
        else:
            assoc.modes = Flags
    _ok()
    return True


def _timeout(ms: object) -> float | None:
    if not isinstance(ms, int) or isinstance(ms, bool) or ms < 0:
        raise WSAError(WSAErrorCode.WSA_INVALID_PARAMETER, detail=f"timeout {ms!r} ms")
    return None if ms >= INFINITE else ms / 1000.0


def GetQueuedCompletionStatus(CompletionPort: object, dwMilliseconds: int) -> tuple[bool, int, int, Any]:
    """Wait for one completion packet (Win32's GetQueuedCompletionStatus; S8.7).

    Returns ``(ok, bytes, key, overlapped)`` where C has the return value and three
    out-parameters. Many threads may wait on one port; each packet goes to exactly one.

    Returns:
        ``(True, n, key, ov)`` for a successful send (or a posted packet); ``(False, n, key,
        ov)`` for a failed send, the last error its code (e.g. WSA_OPERATION_ABORTED,
        WSAECONNRESET) and ``n`` its exact count; ``(False, 0, 0, None)`` with WAIT_TIMEOUT
        (258) when the time ran out, ERROR_ABANDONED_WAIT_0 (735) when the port was closed,
        ERROR_INVALID_HANDLE (6) for a bad port, WSA_INVALID_PARAMETER for a bad time-out.
    """
    _, entries = _get(CompletionPort, 1, dwMilliseconds, False)
    if not entries:
        return False, 0, 0, None
    entry = entries[0]
    if entry.Internal:
        _state().last_error = entry.Internal
        return False, entry.dwNumberOfBytesTransferred, entry.lpCompletionKey, entry.lpOverlapped
    _ok()
    return True, entry.dwNumberOfBytesTransferred, entry.lpCompletionKey, entry.lpOverlapped


def GetQueuedCompletionStatusEx(
    CompletionPort: object, ulCount: int, dwMilliseconds: int, fAlertable: bool
) -> tuple[bool, list[OVERLAPPED_ENTRY]]:
    """Wait for up to ``ulCount`` packets at once (Win32's GetQueuedCompletionStatusEx; S8.7).

    Returns:
        ``(True, entries)`` with 1 to ``ulCount`` entries (a failed send's entry carries its
        code in ``Internal``); ``(False, [])`` with the last error WAIT_TIMEOUT,
        WAIT_IO_COMPLETION (0xC0, alertable: this thread's completion routines ran),
        ERROR_ABANDONED_WAIT_0, ERROR_INVALID_HANDLE or ERROR_INVALID_PARAMETER (``ulCount`` < 1).
    """
    if not isinstance(ulCount, int) or ulCount < 1:
        _state().last_error = ERROR_INVALID_PARAMETER
        return False, []
    return _get(CompletionPort, ulCount, dwMilliseconds, bool(fAlertable))


def _get(port: object, count: int, ms: object, alertable: bool) -> tuple[bool, list[OVERLAPPED_ENTRY]]:
    if not isinstance(port, CompletionPort) or port.closed:
        _state().last_error = ERROR_INVALID_HANDLE
        return False, []
    try:
        timeout = _timeout(ms)
    except WSAError as exc:
        _fail(exc.winerror)
        return False, []
    got = port.take(count, timeout, alertable)
    if isinstance(got, int):
        _state().last_error = _st.WAIT_IO_COMPLETION if got == -1 else got
        return False, []
    _ok()
    return True, [OVERLAPPED_ENTRY(key, ov, error, n) for error, n, key, ov in got]


def PostQueuedCompletionStatus(
    CompletionPort: object, dwNumberOfBytesTransferred: int, dwCompletionKey: int, lpOverlapped: object
) -> bool:
    """Queue a packet of your own, e.g. to tell workers to stop (Win32's PostQueuedCompletionStatus).

    Returns:
        True, or False with ERROR_INVALID_HANDLE (not an open port) or
        ERROR_INVALID_PARAMETER (a count or key that is not an int).
    """
    if not isinstance(CompletionPort, CompletionPort_) or CompletionPort.closed:
        _state().last_error = ERROR_INVALID_HANDLE
        return False
    if not isinstance(dwNumberOfBytesTransferred, int) or not isinstance(dwCompletionKey, int):
        _state().last_error = ERROR_INVALID_PARAMETER
        return False
    CompletionPort.queue((0, dwNumberOfBytesTransferred, dwCompletionKey, lpOverlapped))
    _ok()
    return True


CompletionPort_ = CompletionPort


def CloseHandle(hObject: object) -> bool:
    """Close a completion port or an event (Win32's CloseHandle).

    A closed port drops its queued packets, wakes every waiter (ERROR_ABANDONED_WAIT_0) and
    drops later completions of its sockets; a closed event is WSACloseEvent's.

    Returns:
        True, or False with ERROR_INVALID_HANDLE.
    """
    if isinstance(hObject, CompletionPort) and not hObject.closed:
        hObject.close()
        _ok()
        return True
    if isinstance(hObject, WSAEvent):
        from ._events import WSACloseEvent

        return WSACloseEvent(hObject)
    _state().last_error = ERROR_INVALID_HANDLE
    return False


def _forget_after_fork() -> None:
    _ASSOCIATIONS.clear()


_st._FORK_HOOKS.append(_forget_after_fork)
