"""WSAOverlapped and WSAEvent: the completion side of an overlapped send (SPEC S5.3, S5.8, S5.9).

No socket I/O here. The engine (``_engine.py``) fills these objects in when sends complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from ._compat import mypyc_attr
from ._errors import WSAError, WSAErrorCode
from ._queue import PendingSend

if TYPE_CHECKING:
    from ._engine import SendEngine

__all__ = ["CompletionRoutine", "WSAEvent", "WSAOverlapped"]

#: ``completion_routine(error, transferred, overlapped, flags)`` (SPEC S5.3).
CompletionRoutine = Callable[[int, int, "WSAOverlapped", int], object]


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


# A plain Python class even in the compiled build: callers keep weak references to events
# (winsock's closed-event set), which a compiled class cannot take (SPEC S10). Not per send.
@mypyc_attr(native_class=False)
class WSAEvent:
    """A manual-reset event, for threads and for asyncio alike (SPEC S5.9; Winsock's WSAEVENT).

    ``set()`` may be called from any thread; it wakes blocking :meth:`wait` callers and every
    :meth:`wait_async` waiter, on whatever loop each one waits. It stays set until ``reset()``.
    """

    __slots__ = ("__weakref__", "_async_waiters", "_flag", "_listeners", "_lock")

    def __init__(self, initial_state: bool = False) -> None:
        self._flag = threading.Event()
        self._lock = threading.Lock()
        self._async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[bool]]] = []
        # Callables run (in the setting thread) on every set(); WSAWaitForMultipleEvents uses this.
        self._listeners: list[Callable[[], object]] = []
        if initial_state:
            self._flag.set()

    def set(self) -> None:
        """Signal the event (WSASetEvent). Thread-safe."""
        self._flag.set()
        with self._lock:
            waiters, self._async_waiters = self._async_waiters, []
            listeners = list(self._listeners)
        if waiters:
            here = _running_loop()
            for loop, fut in waiters:
                if loop is here:
                    _wake(fut)
                else:
                    # A closed loop raises RuntimeError: nobody waits there any more.
                    with contextlib.suppress(RuntimeError):
                        loop.call_soon_threadsafe(_wake, fut)
        for listener in listeners:
            listener()

    def reset(self) -> None:
        """Clear the event (WSAResetEvent)."""
        self._flag.clear()

    def is_set(self) -> bool:
        """True while the event is signalled."""
        return self._flag.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block this thread until the event is set or ``timeout`` seconds pass.

        Returns:
            True when the event is set, False on time-out.
        """
        return self._flag.wait(timeout)

    async def wait_async(self) -> bool:
        """Wait on the running loop, without blocking it, until the event is set. Returns True."""
        if self._flag.is_set():
            return True
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()
        with self._lock:
            if self._flag.is_set():
                return True
            self._async_waiters.append((loop, fut))
        try:
            return await fut
        finally:
            if not fut.done():
                with self._lock, contextlib.suppress(ValueError):
                    self._async_waiters.remove((loop, fut))

    def _add_listener(self, listener: Callable[[], object]) -> None:
        with self._lock:
            self._listeners.append(listener)

    def _remove_listener(self, listener: Callable[[], object]) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def __repr__(self) -> str:
        return f"<WSAEvent {'set' if self.is_set() else 'reset'}>"


def _wake(fut: asyncio.Future[bool]) -> None:
    if not fut.done():
        fut.set_result(True)


# Compiled, it still lets Python classes extend it (SPEC S10).
@mypyc_attr(allow_interpreted_subclasses=True)
class WSAOverlapped(PendingSend):
    """One overlapped send: awaitable, with status, byte count and event (SPEC S5; WSAOVERLAPPED).

    ``wsa_send`` makes one for you, or takes yours through ``overlapped=`` (reusable once it
    completed, S5.5). ``await ov`` gives the bytes consumed or raises the :class:`WSAError`.

    Args:
        event: the ``hEvent`` to signal on completion: a :class:`WSAEvent`, or with a completion
            routine anything you like (Winsock ignores ``hEvent`` then, S5.3). ``None`` means an
            event is made on first access of :attr:`event`.

    This is a plain ``__slots__`` class rather than an attrs one on purpose: one is made per send
    on the hot path, and every field it sets there costs time (see ``benchmarks/``).
    """

    __slots__ = (
        "__weakref__",
        "_completed_immediately",
        "_engine",
        "_error",
        "_event",
        "_exc",
        "_pending",
        "_routine",
        "_tevent",
        "_transferred",
        "_waiter",
    )

    def __init__(self, event: Any = None) -> None:
        self._event = event
        self._pending = False
        self._completed_immediately = False
        self._transferred = 0
        self._error: int = 0
        self._exc: WSAError | None = None
        self._routine: CompletionRoutine | None = None
        self._waiter: asyncio.Future[int] | None = None
        self._tevent: threading.Event | None = None
        self._engine: SendEngine | None = None
        self._nbytes = 0

    # -- status (WSAGetOverlappedResult's view) -----------------------------------------------

    @property
    def pending(self) -> bool:
        """True from a pending post (WSA_IO_PENDING) until completion."""
        return self._pending

    @property
    def completed_immediately(self) -> bool:
        """True when the kernel took every byte inside the ``wsa_send`` call (S5.1)."""
        return self._completed_immediately

    @property
    def transferred(self) -> int:
        """Bytes of this send the kernel consumed; set at completion, never while pending."""
        return self._transferred

    @property
    def error(self) -> int:
        """0 on success, else the :class:`WSAErrorCode` the send completed with."""
        return self._error

    @property
    def exception(self) -> WSAError | None:
        """The :class:`WSAError` of a failed send, else None."""
        return self._exc

    @property
    def nbytes(self) -> int:
        """Bytes this send posted (the sum of its buffers)."""
        return self._nbytes

    @property
    def event(self) -> WSAEvent:
        """The event signalled at completion (made on first use when none was given)."""
        ev = self._event
        if ev is None:
            ev = self._event = WSAEvent()
            # Made after the send completed (immediately, later, or with an error): it must read
            # as set, as it would have been had it existed then. A never-posted one stays reset.
            if not self._pending and self._routine is None and self._engine is not None:
                ev.set()
        if not isinstance(ev, WSAEvent):
            raise WSAError(WSAErrorCode.WSA_INVALID_HANDLE, detail="hEvent holds a non-event context value")
        return ev

    @property
    def hEvent(self) -> Any:  # noqa: N802 - Winsock's field name (S8.4)
        """Winsock's ``hEvent``: the event, or with a completion routine any context value."""
        return self._event

    @hEvent.setter
    def hEvent(self, value: Any) -> None:  # noqa: N802
        if self._pending:
            raise WSAError(WSAErrorCode.WSAEINVAL, detail="the operation is pending")
        self._event = value

    @property
    def completion_routine(self) -> CompletionRoutine | None:
        """The routine of the last post, if any."""
        return self._routine

    def result(self) -> int:
        """``transferred``, or raise (S5.8; WSAGetOverlappedResult without waiting).

        Raises:
            WSAError: WSA_IO_INCOMPLETE while pending; the send's own error once it failed.
        """
        if self._pending:
            raise WSAError(WSAErrorCode.WSA_IO_INCOMPLETE)
        if self._exc is not None:
            raise self._exc
        return self._transferred

    def done(self) -> bool:
        """True once the send completed (or was never posted)."""
        return not self._pending

    def wait(self, timeout: float | None = None) -> bool:
        """Block this thread until the send completes; True if it did within ``timeout``.

        For threads only: the loop that completes the send must keep running, so calling this
        in that loop's own thread while the send is pending raises WSAEINVAL instead of hanging.
        """
        if not self._pending:
            return True
        engine = self._engine
        if engine is not None and engine.in_loop_thread():
            raise WSAError(WSAErrorCode.WSAEINVAL, detail="wait() in the loop's own thread would block it; await it")
        tev = self._tevent
        if tev is None:
            tev = self._tevent = threading.Event()
        if not self._pending:  # completed while we made the event (see _complete_ok)
            return True
        return tev.wait(timeout)

    def cancel(self) -> bool:
        """Withdraw the send if none of its bytes reached the kernel (S5.7).

        Returns:
            True when it was withdrawn (it completes with WSA_OPERATION_ABORTED, 0 bytes);
            False when it already completed, or is partly consumed and will finish (cutting it
            short would corrupt the stream).
        """
        if not self._pending or self._engine is None:
            return False
        return self._engine.withdraw(self)

    def __await__(self) -> Generator[Any, None, int]:
        engine = self._engine
        if self._pending:
            if engine is not None:
                engine.flush_for(self)
        elif engine is not None:
            # Awaiting a send that is already complete: the caller sends one at a time, so its
            # next send should try the kernel at once rather than wait for a batch (S5.1).
            engine.end_window()
        if not self._pending:
            if self._exc is not None:
                raise self._exc
            return self._transferred
        assert self._engine is not None
        fut = self._waiter
        if fut is None or fut.cancelled():
            fut = self._waiter = self._engine.loop.create_future()
        try:
            return (yield from fut)
        except asyncio.CancelledError:
            # S5.7: a send none of whose bytes went out is withdrawn; a started one finishes.
            if self._pending:
                self.cancel()
            raise

    def __repr__(self) -> str:
        if self._pending:
            state = "pending"
        elif self._error:
            state = f"failed {WSAErrorCode(self._error).name} after {self._transferred} bytes"
        else:
            state = f"done {self._transferred} bytes" + (" (immediately)" if self._completed_immediately else "")
        return f"<WSAOverlapped {state}>"

    # -- called by the engine -----------------------------------------------------------------

    def _reset_for_post(self, routine: CompletionRoutine | None, engine: SendEngine) -> None:
        self._pending = True
        self._completed_immediately = False
        self._transferred = 0
        self._error = 0
        self._exc = None
        self._routine = routine
        self._engine = engine
        self._waiter = None
        self._tevent = None  # a set one from the last use would let wait() return while pending
        ev = self._event
        if routine is None and isinstance(ev, WSAEvent):
            ev.reset()
