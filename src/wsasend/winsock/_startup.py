"""Startup, cleanup, the provider thread, per-thread state and constants (SPEC S8.1, S8.4).

Everything the other modules of the facade share lives here: Winsock's constants and error
names, the per-thread last error and APC queue, the ``WSAStartup`` reference count and the
provider thread it starts, and the registries of sockets the facade knows about.
"""

# Winsock's own spellings on purpose: SPEC S8 and STYLE "Winsock spellings only where the thing
# *is* Winsock".
# ruff: noqa: N802, N803, N815

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import ctypes.wintypes
import functools
import os
import socket
import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, Final, TypeVar

import attrs

from .._api import abort_for_close, find_engine
from .._api import closesocket as _closesocket
from .._engine import SendEngine
from .._errors import WSAError, WSAErrorCode
from .._overlapped import CompletionRoutine, WSAEvent, WSAOverlapped

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
WSAEAFNOSUPPORT = WSAErrorCode.WSAEAFNOSUPPORT
WSAEADDRNOTAVAIL = WSAErrorCode.WSAEADDRNOTAVAIL
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


def _ok() -> None:
    """A successful call sets this thread's last error to 0, as Windows does (issue 13 item 1)."""
    _state().last_error = 0


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


def _uvloop_factory() -> asyncio.AbstractEventLoop:
    import uvloop

    return uvloop.new_event_loop()


def _default_loop_factory() -> asyncio.AbstractEventLoop:
    try:
        return _uvloop_factory()
    except ImportError:  # pragma: no cover - uvloop is installed where the tests run
        return asyncio.new_event_loop()


#: The provider loops one may ask for by name (``WSAStartup(loop=...)``, ``set_provider_loop``).
_LOOP_FACTORIES: Final[dict[str, Callable[[], asyncio.AbstractEventLoop]]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": _uvloop_factory,
}

#: Makes the provider's loop: uvloop when installed (SPEC S8.1), unless
#: :func:`set_provider_loop` or ``WSAStartup(loop=...)`` chose another.
_provider_loop_factory: Callable[[], asyncio.AbstractEventLoop] = _default_loop_factory


def _factory_for(loop: object) -> Callable[[], asyncio.AbstractEventLoop]:
    if loop is None:
        return _default_loop_factory
    if isinstance(loop, str) and loop in _LOOP_FACTORIES:
        return _LOOP_FACTORIES[loop]
    if callable(loop) and not isinstance(loop, str):
        factory: Callable[[], asyncio.AbstractEventLoop] = loop
        return factory
    raise WSAError(WSAErrorCode.WSAEINVAL, detail=f"loop={loop!r}: 'asyncio', 'uvloop', None or a loop factory")


def set_provider_loop(loop: object) -> None:
    """Choose the event loop the provider thread runs from the next first ``WSAStartup`` (S8.1).

    Not a Winsock call. A provider already running keeps its loop until the last ``WSACleanup``.

    Args:
        loop: ``"asyncio"`` (the default asyncio loop), ``"uvloop"``, ``None`` (uvloop when
            installed, else asyncio: the default) or a callable that makes a new event loop.

    Raises:
        WSAError: WSAEINVAL for anything else.
    """
    global _provider_loop_factory
    _provider_loop_factory = _factory_for(loop)


def provider_loop() -> asyncio.AbstractEventLoop | None:
    """The provider thread's event loop while the facade is started, else None (S8.1).

    Not a Winsock call: for tests and diagnostics (e.g. to see which loop kind is running).
    """
    provider = _provider
    return None if provider is None else provider.loop


class _Provider:
    """A daemon thread running an event loop, on which threads without a loop post sends."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._lock = threading.Lock()
        # Calls handed to the loop and not answered yet: failed if the loop stops first.
        self._calls: set[concurrent.futures.Future[Any]] = set()
        self._closing = False
        # Set by the loop's thread once stop()'s abort pass went through every socket.
        self._aborted = False
        # The abort passes that have started and not finished (their tasks).
        self._passes: set[asyncio.Task[None]] = set()
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
            if self._closing and not self._aborted:
                # stop() asked for the abort pass and it did not run (the loop was busy past
                # stop()'s wait, or the pass failed part way): run it now, in this thread, while
                # the loop can still run the routine wrappers. Without it the loop closed with
                # the sends pending, and a blocking send waiting for the socket took it over
                # the closed loop and went out after the cut bytes (S6.1, S8.1).
                with contextlib.suppress(Exception):
                    loop.run_until_complete(self._shutdown())
            if self._passes:
                # A pass the loop stopped in the middle of (it had aborted, and waited for the
                # routine wrappers): it ends now, or its task is destroyed pending.
                with contextlib.suppress(Exception):
                    loop.run_until_complete(asyncio.wait(set(self._passes)))
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

    async def _shutdown(self) -> None:
        """In the loop's thread: abort the pending sends of every socket on this loop (S8.1)."""
        loop = self.loop
        task = asyncio.current_task()
        if task is not None:
            self._passes.add(task)
        try:
            await self._abort_pass(loop)
        finally:
            if task is not None:
                self._passes.discard(task)

    async def _abort_pass(self, loop: asyncio.AbstractEventLoop) -> None:
        for sock in _known_sockets():
            engine = find_engine(sock)
            if engine is not None and engine.loop is loop:
                try:
                    if not engine.is_idle():
                        # A send is cut: nothing may follow it (see WSACleanup below).
                        engine.close_to_claims()
                    engine.abort(WSAErrorCode.WSA_OPERATION_ABORTED)
                    engine.wake_after_close()
                except Exception as exc:  # one socket's failure does not spare the others
                    loop.call_exception_handler(
                        {"message": "wsasend: WSACleanup could not abort a socket's sends", "exception": exc}
                    )
        self._aborted = True
        # abort() schedules the routine wrappers with call_soon; let them run (they only
        # queue APCs) before the loop stops, or the routines of the aborted sends are lost.
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    def stop(self) -> None:
        """Abort the pending sends of the provider's sockets, then stop and join its thread.

        The abort pass runs on the loop; if the loop does not get to it within
        ``_HANDOFF_TIMEOUT``, the loop's thread runs it once its loop has stopped (``_run``).
        """
        with self._lock:
            self._closing = True
        with contextlib.suppress(RuntimeError, concurrent.futures.TimeoutError):
            asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(_HANDOFF_TIMEOUT)
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
# Sockets WSASocket made: the last WSACleanup closes them, as Windows does (issue 13 item 7).
_MADE: weakref.WeakSet[socket.socket] = weakref.WeakSet()
_REGISTRY_LOCK = threading.Lock()
# Called by the last WSACleanup before the provider stops (completion ports wake their waiters)
# and in a forked child (the ports and selects of the parent are gone). Filled by the modules.
_CLEANUP_HOOKS: list[Callable[[_Provider], object]] = []
_FORK_HOOKS: list[Callable[[], object]] = []


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


def WSAStartup(wVersionRequested: int = _HIGH_VERSION, *, loop: object = None) -> WSAData:
    """Initialise the facade; start the provider thread on the first call (SPEC S8.1).

    Reference-counted like Winsock's: every successful call needs one ``WSACleanup``. Mirrors
    ``WSAStartup(MAKEWORD(2, 2), &wsaData)``, returning the ``WSADATA`` instead of filling one.

    Args:
        wVersionRequested: the highest version the caller can use, as a WORD (major version in
            the low byte): ``0x0202`` is 2.2. Any version from 1.0 up is accepted.
        loop: not Winsock's: the provider thread's event loop, ``"asyncio"`` or ``"uvloop"``
            (or a loop factory), as :func:`set_provider_loop` takes it. Only the call that
            starts the provider uses it; None keeps the module setting (uvloop when installed).

    Returns:
        A :class:`WSAData` whose ``wVersion`` is the lower of the requested version and 2.2.

    Raises:
        WSAError: WSAEINVAL for a version below 1.0 (Winsock's WSAVERNOTSUPPORTED; WSAStartup
            reports its errors directly, not through WSAGetLastError, and so do we), or a
            ``loop`` that names no loop.
    """
    global _refcount, _provider
    if not isinstance(wVersionRequested, int) or not 0 <= wVersionRequested <= 0xFFFF:
        raise WSAError(WSAErrorCode.WSAEINVAL, detail=f"version {wVersionRequested!r} is not a WORD")
    major, minor = wVersionRequested & 0xFF, wVersionRequested >> 8
    if major < 1:
        raise WSAError(WSAErrorCode.WSAEINVAL, detail=f"Winsock version {major}.{minor} is not supported")
    factory = _provider_loop_factory if loop is None else _factory_for(loop)
    version = wVersionRequested if (major, minor) < (2, 2) else _HIGH_VERSION
    with _LOCK:
        if _refcount == 0:
            try:
                new_loop = factory()
            except ImportError as exc:  # loop="uvloop" where uvloop is not installed
                raise WSAError(WSAErrorCode.WSAEINVAL, detail=f"the provider's loop cannot be made: {exc}") from exc
            provider = _Provider(new_loop)
            provider.start()
            _provider = provider
        _refcount += 1
    return WSAData(wVersion=version, wHighVersion=_HIGH_VERSION)


def WSACleanup() -> int:
    """Undo one ``WSAStartup``; the last one closes the facade's sockets and stops the provider.

    The last cleanup (SPEC S8.1), as Windows does it: every socket made by ``WSASocket`` is
    closed (its pending sends complete with WSA_OPERATION_ABORTED and their exact
    ``transferred``; any later call on it is WSAENOTSOCK); every other pending overlapped send
    posted through this module is aborted the same way (events set; completion routines queued
    to their threads, run in their next alertable wait, which works after cleanup too); open
    completion ports wake their waiters; then the provider thread stops. Sends posted on a loop
    of yours are aborted on that loop, like ``closesocket`` does (S6.1). Such a socket (not
    made by ``WSASocket``) stays open, since it is yours, but takes no more sends: its stream
    may have been cut mid-send, so a later send fails (WSAENOTSOCK; a blocking send that was
    waiting behind the aborted ones, WSAEINTR). Close it.

    Returns:
        0, or SOCKET_ERROR with WSANOTINITIALISED when there is no startup left to undo.
    """
    global _refcount, _provider
    with _LOCK:
        if _refcount == 0:
            return _fail(WSAErrorCode.WSANOTINITIALISED)
        _refcount -= 1
        if _refcount:
            _ok()
            return 0
        provider, _provider = _provider, None
    assert provider is not None
    with _REGISTRY_LOCK:
        made = list(_MADE)
        _MADE.clear()
    for sock in made:
        # Windows deallocates the sockets of the process (issue 13 item 7): closesocket aborts
        # the pending sends on the engine's loop (provider or the caller's), then closes.
        with contextlib.suppress(WSAError, OSError, RuntimeError):
            _closesocket(sock)
    for sock in _known_sockets():
        engine = find_engine(sock)
        if engine is None or engine.loop is provider.loop or engine.is_idle():
            continue
        with contextlib.suppress(RuntimeError):
            _run_on_engine_loop(engine, functools.partial(_abort_at_cleanup, engine))
        engine.wake_after_close()
    for hook in list(_CLEANUP_HOOKS):
        hook(provider)
    provider.stop()
    _ok()
    return 0


def _abort_at_cleanup(engine: SendEngine) -> None:
    """In the engine's loop's thread: the last cleanup aborts what is still pending (S8.1).

    Windows deallocates the socket; here it stays open, but the abort may cut its stream, so
    nothing may be sent on it any more: a blocking send waiting behind the aborted sends took
    the socket the abort let go and went out after the cut (adversarial pass). Decided here,
    in the engine's thread: read from the cleanup's thread, a send could complete whole in
    between and the socket was barred with nothing aborted. A transport on it ends as with
    ``closesocket``.
    """
    if engine.is_idle():
        return
    engine.close_to_claims()
    abort_for_close(engine)


def _after_fork_in_child() -> None:
    """A forked child starts with no provider and no startups (issue 10 item 10, S8.1).

    The parent's provider thread does not exist in the child, and its loop (with the parent's
    engines) must not be used there: the child forgets all of it, and its first
    ``WSAStartup`` starts a fresh provider. The engine registry is reset by ``_api``'s own hook.
    """
    global _refcount, _provider, _LOCK, _REGISTRY_LOCK
    _refcount = 0
    _provider = None
    # The locks may have been held by a parent thread at the fork: new ones.
    _LOCK = threading.Lock()
    _REGISTRY_LOCK = threading.Lock()
    _KNOWN.clear()
    _MADE.clear()
    for hook in list(_FORK_HOOKS):
        hook()
    state = _state()
    state.apcs.clear()
    state.in_apc = False


os.register_at_fork(after_in_child=_after_fork_in_child)


def _started() -> _Provider | None:
    return _provider
