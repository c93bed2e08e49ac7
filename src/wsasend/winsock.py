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

*Events* are :class:`wsasend.WSAEvent` (manual reset). ``WSAWaitForMultipleEvents`` does not
poll: it registers a listener on each event that wakes the waiting thread, the same wake-up
the APC queue uses, so one wait covers both.

*State.* The last error and the APC queue are per thread (``threading.local``); the reference
count, the provider and the socket registries are process-wide, under one lock.
"""

# Winsock's own spellings (WSASend, lpBuffers, wVersion) on purpose: SPEC S8 and STYLE
# "Winsock spellings only where the thing *is* Winsock".
# ruff: noqa: N802, N803, N815

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import ctypes.wintypes
import socket
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import attrs

from ._api import closesocket as _closesocket
from ._api import find_engine, wsa_send
from ._buffers import WSABUF
from ._engine import SendEngine
from ._errors import WSAError, WSAErrorCode, errno_to_wsa
from ._overlapped import CompletionRoutine, WSAEvent, WSAOverlapped
from ._sockutil import MSG_DONTROUTE, MSG_OOB, MSG_PARTIAL, check_socket, mark_shutdown
from ._sync import wsa_send_sync

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

# -- constants (values from winsock2.h / winbase.h, SPEC S8.4) ------------------------------------

#: Winsock's failure return of most calls.
SOCKET_ERROR = -1
#: What ``WSASocket`` returns on failure (C's ``INVALID_SOCKET``, ~0; here no socket at all).
INVALID_SOCKET = None
#: What ``WSACreateEvent`` returns on failure (C's ``WSA_INVALID_EVENT``, NULL).
WSA_INVALID_EVENT = None
#: ``WSASocket`` flag: the socket may be used for overlapped I/O.
WSA_FLAG_OVERLAPPED = 0x01
#: ``WSASocket`` flag: the handle is not inherited. Python sockets never are, so it is accepted.
WSA_FLAG_NO_HANDLE_INHERIT = 0x80
#: ``shutdown`` directions.
SD_RECEIVE = 0
SD_SEND = 1
SD_BOTH = 2
#: ``WSAWaitForMultipleEvents`` results.
WSA_WAIT_EVENT_0 = 0
WSA_WAIT_IO_COMPLETION = 0xC0
WAIT_IO_COMPLETION = 0xC0
WSA_WAIT_TIMEOUT = 0x102
WSA_WAIT_FAILED = 0xFFFFFFFF
#: "Wait forever" for ``WSAWaitForMultipleEvents`` and ``SleepEx``.
WSA_INFINITE = 0xFFFFFFFF
INFINITE = 0xFFFFFFFF
#: Most events one ``WSAWaitForMultipleEvents`` takes (MAXIMUM_WAIT_OBJECTS).
WSA_MAXIMUM_WAIT_EVENTS = 64

#: The highest Winsock version we claim (2.2, as a WORD: minor in the high byte).
_HIGH_VERSION = 0x0202
# Flags WSASocket accepts.
_SOCKET_FLAGS = WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT
# How long cleanup and cross-thread hand-offs wait for a loop before giving up on it. Arbitrary,
# and only a hang guard: a live loop answers in microseconds.
_HANDOFF_TIMEOUT = 10.0

#: Winsock's types, by their Winsock names.
DWORD = ctypes.wintypes.DWORD
WSAOVERLAPPED = WSAOverlapped
WSAEVENT = WSAEvent

WSA_INVALID_HANDLE = WSAErrorCode.WSA_INVALID_HANDLE
WSA_INVALID_PARAMETER = WSAErrorCode.WSA_INVALID_PARAMETER
WSA_IO_INCOMPLETE = WSAErrorCode.WSA_IO_INCOMPLETE
WSA_IO_PENDING = WSAErrorCode.WSA_IO_PENDING
WSA_OPERATION_ABORTED = WSAErrorCode.WSA_OPERATION_ABORTED
WSAEACCES = WSAErrorCode.WSAEACCES
WSAEBADF = WSAErrorCode.WSAEBADF
WSAECONNABORTED = WSAErrorCode.WSAECONNABORTED
WSAECONNREFUSED = WSAErrorCode.WSAECONNREFUSED
WSAECONNRESET = WSAErrorCode.WSAECONNRESET
WSAEFAULT = WSAErrorCode.WSAEFAULT
WSAEHOSTUNREACH = WSAErrorCode.WSAEHOSTUNREACH
WSAEINPROGRESS = WSAErrorCode.WSAEINPROGRESS
WSAEINTR = WSAErrorCode.WSAEINTR
WSAEINVAL = WSAErrorCode.WSAEINVAL
WSAEISCONN = WSAErrorCode.WSAEISCONN
WSAEMSGSIZE = WSAErrorCode.WSAEMSGSIZE
WSAENETDOWN = WSAErrorCode.WSAENETDOWN
WSAENETRESET = WSAErrorCode.WSAENETRESET
WSAENETUNREACH = WSAErrorCode.WSAENETUNREACH
WSAENOBUFS = WSAErrorCode.WSAENOBUFS
WSAENOTCONN = WSAErrorCode.WSAENOTCONN
WSAENOTSOCK = WSAErrorCode.WSAENOTSOCK
WSAEOPNOTSUPP = WSAErrorCode.WSAEOPNOTSUPP
WSAESHUTDOWN = WSAErrorCode.WSAESHUTDOWN
WSAETIMEDOUT = WSAErrorCode.WSAETIMEDOUT
WSAEWOULDBLOCK = WSAErrorCode.WSAEWOULDBLOCK
WSANOTINITIALISED = WSAErrorCode.WSANOTINITIALISED

_T = TypeVar("_T")


@attrs.frozen
class WSAData:
    """What ``WSAStartup`` tells about the implementation (Winsock's ``WSADATA``)."""

    #: The version the caller should use: the lower of the requested one and ours.
    wVersion: int
    #: The highest version we support (2.2).
    wHighVersion: int
    szDescription: str = "wsasend.winsock on Linux"
    szSystemStatus: str = "Running"
    #: Ignored since Winsock 2 (always 0), kept for ported code that prints them.
    iMaxSockets: int = 0
    iMaxUdpDg: int = 0


# -- per-thread state: last error and the APC queue -----------------------------------------------

_Apc = tuple[CompletionRoutine, tuple[int, int, WSAOverlapped, int]]


class _ThreadState:
    """One thread's last error, its queue of completion routines (APCs) and its wake-up."""

    __slots__ = ("__weakref__", "apcs", "in_apc", "last_error", "wake")

    def __init__(self) -> None:
        self.last_error = 0
        # Appended by the provider thread, popped by the owner; deque append/popleft are atomic.
        self.apcs: deque[_Apc] = deque()
        # Set by every queued APC and by every event a wait of this thread listens to. Only the
        # owner waits on it, and it clears it before every look, so a stale set is harmless.
        self.wake = threading.Event()
        # True while this thread runs completion routines: an alertable wait inside one of them
        # does not run more (Winsock: "completion routines will not be nested").
        self.in_apc = False

    def queue_apc(self, routine: CompletionRoutine, args: tuple[int, int, WSAOverlapped, int]) -> None:
        self.apcs.append((routine, args))
        self.wake.set()

    def run_apcs(self) -> bool:
        """Run every queued routine, in queue order; True when at least one ran.

        Routines queued while we run (a routine that posted again) run too, after the one that
        queued them returned: Winsock delivers APCs until the queue is empty. If a routine
        raises, the exception leaves the wait that ran it and the rest stay queued.
        """
        if self.in_apc or not self.apcs:
            return False
        self.in_apc = True
        try:
            while True:
                try:
                    routine, args = self.apcs.popleft()
                except IndexError:
                    return True
                routine(*args)
        finally:
            self.in_apc = False


_TLS = threading.local()


def _state() -> _ThreadState:
    try:
        state: _ThreadState = _TLS.state
    except AttributeError:
        state = _TLS.state = _ThreadState()
    return state


def _fail(code: int) -> int:
    """Set this thread's last error and return SOCKET_ERROR, as every failing call does."""
    _state().last_error = int(code)
    return SOCKET_ERROR


def WSAGetLastError() -> int:
    """This thread's last error code (Winsock's WSAGetLastError). Works before WSAStartup too.

    Returns:
        The code the last failing call of this module set in this thread (a
        :class:`~wsasend.WSAErrorCode` when it is one of ours), or what ``WSASetLastError`` set.
    """
    code = _state().last_error
    try:
        return WSAErrorCode(code)
    except ValueError:
        return code


def WSASetLastError(iError: int) -> None:
    """Set this thread's last error code (Winsock's WSASetLastError). Works before WSAStartup."""
    _state().last_error = int(iError)


# -- the provider: a loop thread for threads that have no loop ------------------------------------


def _default_loop_factory() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is installed where the tests run
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


#: Makes the provider's loop. uvloop when installed (SPEC S8.1); the tests swap it to run the
#: provider on both loops.
_provider_loop_factory: Callable[[], asyncio.AbstractEventLoop] = _default_loop_factory


class _Provider:
    """A daemon thread running an event loop, on which threads without a loop post sends."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._lock = threading.Lock()
        # Calls handed to the loop and not answered yet: failed if the loop stops first.
        self._calls: set[concurrent.futures.Future[Any]] = set()
        self._closing = False
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._run, name="wsasend-provider", daemon=True)

    def start(self) -> None:
        self.thread.start()
        self._ready.wait()

    def _run(self) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        loop.call_soon(self._ready.set)
        try:
            loop.run_forever()
        finally:
            with self._lock:
                self._closing = True
                calls = list(self._calls)
            for fut in calls:
                with contextlib.suppress(concurrent.futures.InvalidStateError):
                    fut.set_exception(
                        WSAError(WSAErrorCode.WSANOTINITIALISED, detail="WSACleanup stopped the provider")
                    )
            loop.close()
            asyncio.set_event_loop(None)

    def call(self, fn: Callable[[], _T]) -> _T:
        """Run ``fn`` on the provider's loop and return its result (or raise its exception).

        Raises:
            WSAError: WSANOTINITIALISED when the provider is stopping or stopped.
        """
        if threading.current_thread() is self.thread:
            return fn()
        fut: concurrent.futures.Future[_T] = concurrent.futures.Future()

        def run() -> None:
            try:
                result = fn()
            except BaseException as exc:
                fut.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
            else:
                fut.set_result(result)

        with self._lock:
            if self._closing:
                raise WSAError(WSAErrorCode.WSANOTINITIALISED, detail="WSACleanup is stopping the provider")
            try:
                self.loop.call_soon_threadsafe(run)
            except RuntimeError:  # the loop is closed
                raise WSAError(WSAErrorCode.WSANOTINITIALISED, detail="the provider is stopped") from None
            self._calls.add(fut)
        try:
            return fut.result()
        finally:
            with self._lock:
                self._calls.discard(fut)

    def stop(self) -> None:
        """Abort the pending sends of the provider's sockets, then stop and join its thread."""
        with self._lock:
            self._closing = True

        async def shutdown() -> None:
            for sock in _known_sockets():
                engine = find_engine(sock)
                if engine is not None and engine.loop is self.loop:
                    engine.abort(WSAErrorCode.WSA_OPERATION_ABORTED)
            # abort() schedules the routine wrappers with call_soon; let them run (they only
            # queue APCs) before the loop stops, or the routines of the aborted sends are lost.
            await asyncio.sleep(0)
            await asyncio.sleep(0)

        with contextlib.suppress(RuntimeError, concurrent.futures.TimeoutError):
            asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(_HANDOFF_TIMEOUT)
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(_HANDOFF_TIMEOUT)


# Process-wide state, under _LOCK: the WSAStartup reference count and the provider it started.
_LOCK = threading.Lock()
_refcount = 0
_provider: _Provider | None = None
# Sockets this module posted overlapped sends on (their engines are aborted by the last cleanup).
_KNOWN: weakref.WeakSet[socket.socket] = weakref.WeakSet()
# Sockets made by WSASocket without WSA_FLAG_OVERLAPPED: overlapped sends on them are WSAEINVAL.
_NONOVERLAPPED: weakref.WeakSet[socket.socket] = weakref.WeakSet()
# Sockets whose sending direction shutdown() closed: new sends fail WSAESHUTDOWN at once.
_SHUT_SEND: weakref.WeakSet[socket.socket] = weakref.WeakSet()
# Events WSACloseEvent closed: any later use is WSA_INVALID_HANDLE.
_CLOSED_EVENTS: weakref.WeakSet[WSAEvent] = weakref.WeakSet()
_REGISTRY_LOCK = threading.Lock()


def _known_sockets() -> list[socket.socket]:
    with _REGISTRY_LOCK:
        return list(_KNOWN)


def _run_on_engine_loop(engine: SendEngine, fn: Callable[[], object]) -> None:
    """Run ``fn`` in the thread of ``engine``'s loop (engines are not thread-safe) and wait for it."""
    loop = engine.loop
    if loop.is_closed():
        return
    provider = _provider
    if provider is not None and loop is provider.loop and not engine.in_loop_thread():
        provider.call(fn)
        return
    if engine.in_loop_thread() or not loop.is_running():
        fn()
        return
    done = threading.Event()

    def run() -> None:
        try:
            fn()
        finally:
            done.set()

    try:
        loop.call_soon_threadsafe(run)
    except RuntimeError:  # closed in the meantime
        return
    done.wait(_HANDOFF_TIMEOUT)


# -- startup and cleanup (S8.1) -------------------------------------------------------------------


def WSAStartup(wVersionRequested: int = _HIGH_VERSION) -> WSAData:
    """Initialise the facade; start the provider thread on the first call (SPEC S8.1).

    Reference-counted like Winsock's: every successful call needs one ``WSACleanup``. Mirrors
    ``WSAStartup(MAKEWORD(2, 2), &wsaData)``, returning the ``WSADATA`` instead of filling one.

    Args:
        wVersionRequested: the highest version the caller can use, as a WORD (major version in
            the low byte): ``0x0202`` is 2.2. Any version from 1.0 up is accepted.

    Returns:
        A :class:`WSAData` whose ``wVersion`` is the lower of the requested version and 2.2.

    Raises:
        WSAError: WSAEINVAL for a version below 1.0 (Winsock's WSAVERNOTSUPPORTED; WSAStartup
            reports its errors directly, not through WSAGetLastError, and so do we).
    """
    global _refcount, _provider
    if not isinstance(wVersionRequested, int) or not 0 <= wVersionRequested <= 0xFFFF:
        raise WSAError(WSAErrorCode.WSAEINVAL, detail=f"version {wVersionRequested!r} is not a WORD")
    major, minor = wVersionRequested & 0xFF, wVersionRequested >> 8
    if major < 1:
        raise WSAError(WSAErrorCode.WSAEINVAL, detail=f"Winsock version {major}.{minor} is not supported")
    version = wVersionRequested if (major, minor) < (2, 2) else _HIGH_VERSION
    with _LOCK:
        if _refcount == 0:
            provider = _Provider(_provider_loop_factory())
            provider.start()
            _provider = provider
        _refcount += 1
    return WSAData(wVersion=version, wHighVersion=_HIGH_VERSION)


def WSACleanup() -> int:
    """Undo one ``WSAStartup``; the last one aborts pending sends and stops the provider (S8.1).

    The last cleanup fails every pending overlapped send posted through this module with
    WSA_OPERATION_ABORTED and its exact ``transferred`` (events are set; completion routines
    are queued to their threads and run in their next alertable wait, which works after cleanup
    too), then stops the provider thread. Sends posted on a loop of yours are aborted on that
    loop, like ``closesocket`` does (S6.1): Winsock cancels every pending call of the process.

    Returns:
        0, or SOCKET_ERROR with WSANOTINITIALISED when there is no startup left to undo.
    """
    global _refcount, _provider
    with _LOCK:
        if _refcount == 0:
            return _fail(WSAErrorCode.WSANOTINITIALISED)
        _refcount -= 1
        if _refcount:
            return 0
        provider, _provider = _provider, None
    assert provider is not None
    for sock in _known_sockets():
        engine = find_engine(sock)
        if engine is None or engine.loop is provider.loop or engine.is_idle():
            continue
        with contextlib.suppress(RuntimeError):
            _run_on_engine_loop(engine, engine.abort)
    provider.stop()
    return 0


def _started() -> _Provider | None:
    return _provider


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
        with _REGISTRY_LOCK:
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
        with _REGISTRY_LOCK:
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
    with _REGISTRY_LOCK:
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


# -- events and waits (S8.4, S8.6) ----------------------------------------------------------------


def _check_event(event: object) -> WSAEvent:
    if not isinstance(event, WSAEvent) or event in _CLOSED_EVENTS:
        raise WSAError(WSAErrorCode.WSA_INVALID_HANDLE, detail=f"{event!r} is not an open event")
    return event


def WSACreateEvent() -> WSAEvent | None:
    """A new manual-reset event, not signalled (Winsock's WSACreateEvent).

    Returns:
        The :class:`~wsasend.WSAEvent`, or WSA_INVALID_EVENT (None) with WSANOTINITIALISED.
    """
    if _started() is None:
        _fail(WSAErrorCode.WSANOTINITIALISED)
        return WSA_INVALID_EVENT
    return WSAEvent()


def _event_call(event: object, action: Callable[[WSAEvent], object]) -> bool:
    if _started() is None:
        _fail(WSAErrorCode.WSANOTINITIALISED)
        return False
    try:
        action(_check_event(event))
    except WSAError as exc:
        _fail(exc.winerror)
        return False
    return True


def WSASetEvent(hEvent: WSAEvent) -> bool:
    """Signal the event (Winsock's WSASetEvent). False with WSA_INVALID_HANDLE for a bad one."""
    return _event_call(hEvent, WSAEvent.set)


def WSAResetEvent(hEvent: WSAEvent) -> bool:
    """Clear the event (Winsock's WSAResetEvent). False with WSA_INVALID_HANDLE for a bad one."""
    return _event_call(hEvent, WSAEvent.reset)


def WSACloseEvent(hEvent: WSAEvent) -> bool:
    """Close the event: any later use of it is WSA_INVALID_HANDLE (Winsock's WSACloseEvent)."""

    def close(event: WSAEvent) -> None:
        with _REGISTRY_LOCK:
            _CLOSED_EVENTS.add(event)

    return _event_call(hEvent, close)


def _timeout_seconds(ms: object) -> float | None:
    if not isinstance(ms, int) or isinstance(ms, bool) or ms < 0:
        raise WSAError(WSAErrorCode.WSA_INVALID_PARAMETER, detail=f"timeout {ms!r} ms")
    return None if ms >= WSA_INFINITE else ms / 1000.0


def _wait(events: list[WSAEvent], wait_all: bool, timeout: float | None, alertable: bool) -> int:
    """The wait of WSAWaitForMultipleEvents and SleepEx: events, APCs and time-out, no polling.

    Order of checks, as Windows' kernel does them: a satisfied wait wins over queued routines,
    and queued routines win over the time-out.
    """
    state = _state()
    alertable = alertable and not state.in_apc
    wake = state.wake
    listener = wake.set
    for event in events:
        event._add_listener(listener)
    try:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wake.clear()  # before looking: a set() from now on ends the wait below
            if events:
                if wait_all:
                    if all(event.is_set() for event in events):
                        return WSA_WAIT_EVENT_0
                else:
                    for index, event in enumerate(events):
                        if event.is_set():
                            return WSA_WAIT_EVENT_0 + index
            if alertable and state.run_apcs():
                return WSA_WAIT_IO_COMPLETION
            if deadline is None:
                wake.wait()
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    return WSA_WAIT_TIMEOUT
                wake.wait(left)
    finally:
        for event in events:
            event._remove_listener(listener)


def WSAWaitForMultipleEvents(events: Iterable[WSAEvent], wait_all: bool, timeout_ms: int, alertable: bool) -> int:
    """Wait for one or all of ``events``, a time-out, or (alertable) completion routines (S8.4, S8.6).

    Mirrors Winsock's ``WSAWaitForMultipleEvents(cEvents, lphEvents, fWaitAll, dwTimeout,
    fAlertable)``, the count being the list's length. Blocks this thread: inside a running loop,
    await the overlapped or ``event.wait_async()`` instead.

    Args:
        events: 1 to ``WSA_MAXIMUM_WAIT_EVENTS`` (64) open events.
        wait_all: wait until every event is signalled at once, rather than any one.
        timeout_ms: milliseconds, or ``WSA_INFINITE``; 0 only looks.
        alertable: run this thread's queued completion routines, if any, and return.

    Returns:
        ``WSA_WAIT_EVENT_0 + i`` for the lowest signalled event ``i`` (``WSA_WAIT_EVENT_0``
        when ``wait_all``), ``WSA_WAIT_IO_COMPLETION`` after running completion routines,
        ``WSA_WAIT_TIMEOUT``, or ``WSA_WAIT_FAILED`` with ``WSAGetLastError()``:
        WSANOTINITIALISED, WSA_INVALID_PARAMETER (no events, more than 64, bad time-out),
        WSA_INVALID_HANDLE (an entry that is not an open event).
    """
    if _started() is None:
        _fail(WSAErrorCode.WSANOTINITIALISED)
        return WSA_WAIT_FAILED
    try:
        try:
            evs = list(events)
        except TypeError:
            raise WSAError(WSAErrorCode.WSA_INVALID_PARAMETER, detail="events is not a list") from None
        if not 1 <= len(evs) <= WSA_MAXIMUM_WAIT_EVENTS:
            raise WSAError(
                WSAErrorCode.WSA_INVALID_PARAMETER,
                detail=f"{len(evs)} events (1 to {WSA_MAXIMUM_WAIT_EVENTS} allowed)",
            )
        checked = [_check_event(event) for event in evs]
        timeout = _timeout_seconds(timeout_ms)
    except WSAError as exc:
        _fail(exc.winerror)
        return WSA_WAIT_FAILED
    return _wait(checked, bool(wait_all), timeout, bool(alertable))


def SleepEx(dwMilliseconds: int, bAlertable: bool) -> int:
    """Sleep; alertable, run this thread's queued completion routines and wake (Win32 SleepEx).

    A kernel32 function rather than a Winsock one, so it works without ``WSAStartup`` (the
    routines of sends aborted by the last ``WSACleanup`` still need a wait to run in).

    Args:
        dwMilliseconds: how long, or ``INFINITE``.
        bAlertable: return early once completion routines queued to this thread have run.
            Inside a completion routine, a wait is never alertable (no nesting, S5.3).

    Returns:
        0 when the time ran out, ``WAIT_IO_COMPLETION`` (0xC0) after running routines.

    Raises:
        WSAError: WSA_INVALID_PARAMETER for a negative or non-int time.
    """
    timeout = _timeout_seconds(dwMilliseconds)
    if not bAlertable:
        if timeout is None:
            threading.Event().wait()
        else:
            time.sleep(timeout)
        return 0
    result = _wait([], False, timeout, True)
    return WAIT_IO_COMPLETION if result == WSA_WAIT_IO_COMPLETION else 0
