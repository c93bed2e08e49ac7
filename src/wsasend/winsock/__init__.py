"""``wsasend.winsock``: the Winsock-shaped facade, for code ported from C and for conformance (SPEC S8).

The functions here keep Winsock's names, argument order, return values and out-parameters:
``WSASend`` returns 0 or ``SOCKET_ERROR`` and the code is read with ``WSAGetLastError()``;
counts are written into ``ctypes.wintypes.DWORD`` objects. They work from plain threads, with
no asyncio in sight, and from inside a running event loop.

Theory of operation
-------------------
This module adds no send logic of its own. Every overlapped ``WSASend`` is an ordinary
``wsa_send`` on some event loop, so it shares the socket's one ordered engine with the
Pythonic API (SPEC S5.4); every nonoverlapped one is ``wsa_send_sync`` (S4).

*Which loop.* Called from inside a running loop, ``WSASend`` posts on that loop and hands the
caller's completion routine straight to the engine, which runs it through ``loop.call_soon``
(S5.3). Called from a thread with no running loop, it hands the post to the *provider*: a
daemon thread running its own loop (uvloop when installed), started by the first
``WSAStartup`` and stopped by the last ``WSACleanup``. The calling thread waits for the post's
outcome (a round trip through ``call_soon_threadsafe``), not for the send: an immediate
completion returns 0 with the count written, a pending send returns ``SOCKET_ERROR`` with
WSA_IO_PENDING, and a send that could not start returns its code.

*Completion routines of threads* (S8.6). Winsock runs a completion routine as an APC in the
thread that posted it, and only while that thread sits in an alertable wait. We do the same:
the engine gets a small wrapper instead of the caller's routine, and the wrapper (run on the
provider's loop) only appends ``(routine, args)`` to the posting thread's APC queue and wakes
that thread. ``SleepEx(ms, True)`` and ``WSAWaitForMultipleEvents(..., alertable=True)`` run
every queued routine, in order, then return ``WAIT_IO_COMPLETION``. A routine that waits
alertably itself does not run routines (they are never nested), and a routine that posts
again gets its new routine queued behind it, not run inside it.

*Events* are :class:`wsasend.WSAEvent` (manual reset, or auto-reset from ``CreateEvent``).
``WSAWaitForMultipleEvents`` does not poll: it registers a listener on each event that wakes
the waiting thread, the same wake-up the APC queue uses, so one wait covers both.

*Completion ports* (S8.7) are fed through the same routine slot: a port-associated socket's
sends get a routine that queues a packet, so the engine's completion order is the port's.

*State.* The last error and the APC queue are per thread (``threading.local``); the reference
count, the provider and the socket registries are process-wide, under one lock. A forked
child forgets all of it (``os.register_at_fork``) and starts afresh with its own WSAStartup.

*Layout.* ``_startup`` (constants, per-thread state, provider, WSAStartup/WSACleanup, fork),
``_sockets`` (WSASocket, shutdown and every send call, cancellation), ``_events`` (events and
alertable waits), ``_ports`` (completion ports), ``_select`` (WSAEventSelect).
"""

# Winsock's own spellings on purpose: SPEC S8 and STYLE "Winsock spellings only where the thing
# *is* Winsock".

from __future__ import annotations

from typing import Any

from .._buffers import WSABUF
from .._sockutil import MSG_DONTROUTE, MSG_OOB, MSG_PARTIAL
from . import _startup
from ._events import (
    CreateEvent,
    ResetEvent,
    SetEvent,
    SleepEx,
    WSACloseEvent,
    WSACreateEvent,
    WSAResetEvent,
    WSASetEvent,
    WSAWaitForMultipleEvents,
)
from ._ports import (
    ERROR_ABANDONED_WAIT_0,
    ERROR_INVALID_HANDLE,
    ERROR_INVALID_PARAMETER,
    ERROR_NOT_FOUND,
    FILE_SKIP_COMPLETION_PORT_ON_SUCCESS,
    FILE_SKIP_SET_EVENT_ON_HANDLE,
    INVALID_HANDLE_VALUE,
    OVERLAPPED_ENTRY,
    WAIT_TIMEOUT,
    CloseHandle,
    CompletionPort,
    CreateIoCompletionPort,
    GetQueuedCompletionStatus,
    GetQueuedCompletionStatusEx,
    PostQueuedCompletionStatus,
    SetFileCompletionNotificationModes,
)
from ._select import (
    FD_CLOSE,
    FD_CLOSE_BIT,
    FD_MAX_EVENTS,
    FD_WRITE,
    FD_WRITE_BIT,
    WSANETWORKEVENTS,
    WSAEnumNetworkEvents,
    WSAEventSelect,
)
from ._sockets import (
    WSAMSG,
    CancelIo,
    CancelIoEx,
    WSAGetOverlappedResult,
    WSASend,
    WSASendDisconnect,
    WSASendMsg,
    WSASendTo,
    WSASocket,
    closesocket,
    send,
    sendto,
    shutdown,
)
from ._sockets import socket_ as socket
from ._startup import (
    DWORD,
    INFINITE,
    INVALID_SOCKET,
    SD_BOTH,
    SD_RECEIVE,
    SD_SEND,
    SOCKET_ERROR,
    WAIT_IO_COMPLETION,
    WSA_FLAG_NO_HANDLE_INHERIT,
    WSA_FLAG_OVERLAPPED,
    WSA_INFINITE,
    WSA_INVALID_EVENT,
    WSA_INVALID_HANDLE,
    WSA_INVALID_PARAMETER,
    WSA_IO_INCOMPLETE,
    WSA_IO_PENDING,
    WSA_MAXIMUM_WAIT_EVENTS,
    WSA_OPERATION_ABORTED,
    WSA_WAIT_EVENT_0,
    WSA_WAIT_FAILED,
    WSA_WAIT_IO_COMPLETION,
    WSA_WAIT_TIMEOUT,
    WSAEACCES,
    WSAEADDRNOTAVAIL,
    WSAEAFNOSUPPORT,
    WSAEBADF,
    WSAECONNABORTED,
    WSAECONNREFUSED,
    WSAECONNRESET,
    WSAEFAULT,
    WSAEHOSTUNREACH,
    WSAEINPROGRESS,
    WSAEINTR,
    WSAEINVAL,
    WSAEISCONN,
    WSAEMSGSIZE,
    WSAENETDOWN,
    WSAENETRESET,
    WSAENETUNREACH,
    WSAENOBUFS,
    WSAENOTCONN,
    WSAENOTSOCK,
    WSAEOPNOTSUPP,
    WSAESHUTDOWN,
    WSAETIMEDOUT,
    WSAEVENT,
    WSAEWOULDBLOCK,
    WSANOTINITIALISED,
    WSAOVERLAPPED,
    WSACleanup,
    WSAData,
    WSAGetLastError,
    WSASetLastError,
    WSAStartup,
    provider_loop,
    set_provider_loop,
)
from ._startup import (
    _state as _state,
)

__all__ = [
    "DWORD",
    "INFINITE",
    "INVALID_SOCKET",
    "MSG_DONTROUTE",
    "MSG_OOB",
    "MSG_PARTIAL",
    "SD_BOTH",
    "SD_RECEIVE",
    "SD_SEND",
    "SOCKET_ERROR",
    "WAIT_IO_COMPLETION",
    "WSABUF",
    "WSAData",
    "WSAEVENT",
    "WSAOVERLAPPED",
    "WSA_FLAG_NO_HANDLE_INHERIT",
    "WSA_FLAG_OVERLAPPED",
    "WSA_INFINITE",
    "WSA_INVALID_EVENT",
    "WSA_MAXIMUM_WAIT_EVENTS",
    "WSA_WAIT_EVENT_0",
    "WSA_WAIT_FAILED",
    "WSA_WAIT_IO_COMPLETION",
    "WSA_WAIT_TIMEOUT",
    "SleepEx",
    "WSACleanup",
    "WSACloseEvent",
    "WSACreateEvent",
    "WSAGetLastError",
    "WSAGetOverlappedResult",
    "WSAResetEvent",
    "WSASend",
    "WSASetEvent",
    "WSASetLastError",
    "WSASocket",
    "WSAStartup",
    "WSAWaitForMultipleEvents",
    "closesocket",
    "shutdown",
    # Beyond the seed (S8.7): more send calls, cancellation, completion ports.
    "socket",
    "send",
    "sendto",
    "WSASendTo",
    "WSASendMsg",
    "WSAMSG",
    "WSASendDisconnect",
    "CreateEvent",
    "SetEvent",
    "ResetEvent",
    "WSAEventSelect",
    "WSAEnumNetworkEvents",
    "WSANETWORKEVENTS",
    "FD_WRITE",
    "FD_WRITE_BIT",
    "FD_CLOSE",
    "FD_CLOSE_BIT",
    "FD_MAX_EVENTS",
    "CancelIo",
    "CancelIoEx",
    "CloseHandle",
    "CompletionPort",
    "CreateIoCompletionPort",
    "GetQueuedCompletionStatus",
    "GetQueuedCompletionStatusEx",
    "OVERLAPPED_ENTRY",
    "PostQueuedCompletionStatus",
    "SetFileCompletionNotificationModes",
    "ERROR_ABANDONED_WAIT_0",
    "ERROR_INVALID_HANDLE",
    "ERROR_INVALID_PARAMETER",
    "ERROR_NOT_FOUND",
    "FILE_SKIP_COMPLETION_PORT_ON_SUCCESS",
    "FILE_SKIP_SET_EVENT_ON_HANDLE",
    "INVALID_HANDLE_VALUE",
    "WAIT_TIMEOUT",
    # Not Winsock: the provider thread's loop (S8.1).
    "provider_loop",
    "set_provider_loop",
    # Error codes, under their Winsock names (winerror.h / winsock2.h), for ported code.
    "WSA_INVALID_HANDLE",
    "WSA_INVALID_PARAMETER",
    "WSA_IO_INCOMPLETE",
    "WSA_IO_PENDING",
    "WSA_OPERATION_ABORTED",
    "WSAEACCES",
    "WSAEBADF",
    "WSAECONNABORTED",
    "WSAECONNREFUSED",
    "WSAECONNRESET",
    "WSAEFAULT",
    "WSAEHOSTUNREACH",
    "WSAEINPROGRESS",
    "WSAEINTR",
    "WSAEINVAL",
    "WSAEAFNOSUPPORT",
    "WSAEADDRNOTAVAIL",
    "WSAEISCONN",
    "WSAEMSGSIZE",
    "WSAENETDOWN",
    "WSAENETRESET",
    "WSAENETUNREACH",
    "WSAENOBUFS",
    "WSAENOTCONN",
    "WSAENOTSOCK",
    "WSAEOPNOTSUPP",
    "WSAESHUTDOWN",
    "WSAETIMEDOUT",
    "WSAEWOULDBLOCK",
    "WSANOTINITIALISED",
]


def __getattr__(name: str) -> Any:
    # The provider changes with WSAStartup/WSACleanup: read it live (tests use it for barriers).
    if name == "_provider":
        return _startup._provider
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
