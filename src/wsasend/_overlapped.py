"""WSAOverlapped and WSAEvent: the completion side of an overlapped send (SPEC S5.3, S5.8, S5.9).

No socket I/O here. The engine (``_engine.py``) fills these objects in when sends complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Coroutine, Generator
from typing import TYPE_CHECKING, Any, Final, Literal

from . import _awaiting
from ._compat import is_extension_file, mypyc_attr
from ._errors import WSAError, WSAErrorCode
from ._queue import PendingSend
from ._sockutil import IOVSEND_MODULE

if TYPE_CHECKING:
    from ._dest import Destination
    from ._engine import SendEngine

__all__ = ["CompletedSend", "CompletionRoutine", "WSAEvent", "WSAOverlapped"]

#: ``completion_routine(error, transferred, overlapped, flags)`` (SPEC S5.3).
CompletionRoutine = Callable[[int, int, "WSAOverlapped", int], object]


# The plain-Python _awaiting module's functions, bound once: compiled, ``_awaiting.finished`` is
# a module attribute lookup on every await (callgrind: ~270 instructions, 5% of an awaited
# 64 B send; issue 11). A completed send's ``await`` is, in the compiled build, _iovsend.c's
# ``done`` iterator: 3.11's SEND opcode takes its am_send, which returns the count without a
# generator made and run for it (~800 of the ~3,550 user-space instructions of
# ``await wsa_send(...)`` of 4x4 KiB on uvloop, issue 11). 3.12's SEND calls tp_iternext
# instead, which raises StopIteration: one kept instance, reused while nobody else holds it (a
# new one each time cost more than the generator: 4,723 instructions a send against 4,251).
_finished: Final[Callable[[int], Generator[Any, None, int]]] = (
    IOVSEND_MODULE.done if IOVSEND_MODULE is not None else _awaiting.finished
)
_failed: Final = _awaiting.failed
_on_own_loop: Final = _awaiting.on_own_loop

# Whether this module runs compiled (see _engine._NATIVE): the pure build asks asyncio for the
# running loop, as its wsa_send does (an interpreted runs_here() costs more than that C call).
_NATIVE: Final = is_extension_file(__file__)
# How often a thread blocked on a pending send looks whether the send's loop was closed with a
# bare loop.close() (S5.12): nothing else can notice it (see _wait_watching).
_CLOSED_LOOP_POLL: Final = 0.25


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

    __slots__ = ("__weakref__", "_async_waiters", "_flag", "_listeners", "_lock", "_source")

    def __init_subclass__(cls, **kwargs: object) -> None:
        # A handle, as Winsock's WSAEVENT: not a base class. Compiled, the methods refused a
        # subclass's instances (mypyc's TypeError at construction); pure, a send's completion
        # never set one (adversarial pass). Refused alike, at the class statement: hold one.
        raise TypeError("WSAEvent cannot be subclassed: hold one instead (SPEC S5.9)")

    def __init__(self, initial_state: object = False) -> None:
        # (``object``: any true value starts it set, in the compiled build too, where a ``bool``
        # annotation refused the rest with mypyc's TypeError; S10.)
        self._flag = threading.Event()
        self._lock = threading.Lock()
        # Futures of wait_async() callers -> their loop. Invariant: a future is here only while
        # its wait_async() is suspended; set() takes them all, a cancelled wait removes its own.
        self._async_waiters: dict[asyncio.Future[bool], asyncio.AbstractEventLoop] = {}
        # Callables run (in the setting thread) on every set(); WSAWaitForMultipleEvents uses this.
        self._listeners: list[Callable[[], object]] = []
        # The last send posted with this event as its hEvent: wait() watches its loop (S5.12).
        self._source: WSAOverlapped | None = None
        if initial_state:
            self._flag.set()

    def set(self) -> None:
        """Signal the event (WSASetEvent). Thread-safe."""
        self._flag.set()
        with self._lock:
            waiters, self._async_waiters = self._async_waiters, {}
            listeners = list(self._listeners)
        if waiters:
            here = _running_loop()
            for fut, loop in waiters.items():
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
        """True while the event is signalled.

        While the last send posted with this event is pending, a bare ``loop.close()`` of
        its loop is noticed here too (see :attr:`WSAOverlapped.pending`; S5.12).
        """
        if self._flag.is_set():
            return True
        source = self._source
        if source is not None and source._pending:
            source._still_pending()
        return self._flag.is_set()

    def wait(self, timeout: object = None) -> bool:
        """Block this thread until the event is set or ``timeout`` seconds pass.

        ``timeout``: seconds (an int or a float) or None for no limit; anything else is a
        TypeError, in both builds alike (typed ``object`` for that: S10).

        Returns:
            True when the event is set, False on time-out.

        While the last send posted with this event is pending, the wait also watches that
        send's loop: closed with a bare ``loop.close()``, its pending sends are aborted here
        (S5.12), which sets the event.
        """
        seconds = _seconds(timeout)
        source = self._source
        if source is None or not source._pending:
            return self._flag.wait(seconds)
        return _wait_watching(self._flag, seconds, None, self)

    def wait_async(self) -> Coroutine[Any, Any, bool]:
        """Wait on the running loop, without blocking it, until the event is set. Returns True.

        (Returns the coroutine of the plain-Python ``_awaiting`` module, which does the
        waiting: see there why.)
        """
        return _awaiting.event_wait(self, _watch_closed, _CLOSED_LOOP_POLL)

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


def _error_code(error: int) -> WSAErrorCode | Literal[0]:
    """An ``_error`` field as ``error`` gives it: 0, or the :class:`WSAErrorCode` (S5.3).

    Compiled, the int field keeps the number only, and a property typed ``int`` would return a
    plain int: the enum member is made again here, and the union return type keeps it an
    object (S10).
    """
    return WSAErrorCode(error) if error else 0


# Compiled, it still lets Python classes extend it (SPEC S10).
@mypyc_attr(allow_interpreted_subclasses=True)
class WSAOverlapped(PendingSend):
    """One overlapped send: awaitable, with status, byte count and event (SPEC S5; WSAOVERLAPPED).

    ``wsa_send`` makes one for you, or takes yours through ``overlapped=`` (reusable once it
    completed, S5.5). ``await ov`` gives the bytes consumed or raises the :class:`WSAError`,
    from any loop: awaited on a loop other than the one that completes the send (a send posted
    through ``wsasend.winsock.WSASend`` runs on the provider's loop), it is woken through that
    loop's ``call_soon_threadsafe``. Cancelling such a foreign await stops the waiting only: the
    send can be withdrawn (S5.7) only in its own loop's thread.

    Args:
        event: the ``hEvent`` to signal on completion: a :class:`WSAEvent`, or with a completion
            routine anything you like (Winsock ignores ``hEvent`` then, S5.3). ``None`` means an
            event is made on first access of :attr:`event`.

    This is a plain ``__slots__`` class rather than an attrs one on purpose: one is made per send
    on the hot path, and every field it sets there costs time (see ``benchmarks/``). It cannot
    be weakly referenced: a compiled class cannot be, and so that both builds behave alike
    (S10) the plain-Python one has no ``__weakref__`` slot either (keep overlappeds in an
    ordinary set or dict, and drop them once they complete).
    """

    __slots__ = (
        "_completed_immediately",
        "_dest",
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
        # The engine loop's future of whoever awaits this send, or _Waiters when a loop in another
        # thread awaits it too (issue 10 item 16). The engine calls done/set_result/set_exception.
        self._waiter: asyncio.Future[int] | _Waiters | None = None
        self._tevent: threading.Event | None = None
        # A message's own destination and control data (S8.7), read by the engine only when
        # the send's flags carry its _DEST_OP mark; None otherwise. (The hot paths' overlapped
        # never has it set: they never carry a destination.)
        self._dest: Destination | None = None
        self._engine: SendEngine | None = None
        self._nbytes = 0

    # -- status (WSAGetOverlappedResult's view) -----------------------------------------------

    @property
    def pending(self) -> bool:
        """True from a pending post (WSA_IO_PENDING) until completion.

        Like :meth:`done`, :meth:`result` and the event's ``is_set()``, it never reports
        "pending" for ever: asked about a send whose loop was closed with a bare
        ``loop.close()`` (which completes nothing any more), it first aborts that loop's
        pending sends, as a blocking :meth:`wait` does (S5.12).
        """
        return self._pending and self._still_pending()

    @property
    def completed_immediately(self) -> bool:
        """True when the kernel took every byte inside the ``wsa_send`` call (S5.1)."""
        return self._completed_immediately

    @property
    def transferred(self) -> int:
        """Bytes of this send the kernel consumed; set at completion, never while pending.

        Like :attr:`pending`, a look at a send whose loop was closed bare aborts that loop's
        sends first (S5.12), so the count is the exact one at once: read before ``pending``,
        it was 0 for an aborted send the kernel had taken part of (adversarial pass).
        """
        if self._pending:
            self._still_pending()
        return self._transferred

    @property
    def error(self) -> WSAErrorCode | Literal[0]:
        """0 on success, else the :class:`WSAErrorCode` the send completed with (a look at a
        send whose loop was closed bare aborts it first, as :attr:`transferred`)."""
        if self._pending:
            self._still_pending()
        return _error_code(self._error)

    @property
    def exception(self) -> WSAError | None:
        """The :class:`WSAError` of a failed send, else None (as :attr:`error`)."""
        if self._pending:
            self._still_pending()
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
            ev._source = self
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
        if self._pending and self._still_pending():
            raise WSAError(WSAErrorCode.WSA_IO_INCOMPLETE)
        if self._exc is not None:
            raise self._exc
        return self._transferred

    def done(self) -> bool:
        """True once the send completed (or was never posted)."""
        return not (self._pending and self._still_pending())

    def _still_pending(self) -> bool:
        """A pending send's status looked at from outside: False once its loop is closed.

        A loop closed with a bare ``loop.close()`` ran no ``shutdown_asyncgens`` and will never
        complete its sends: a thread that polls (``WSAGetOverlappedResult`` without waiting)
        would spin for ever. The first look after the close aborts that loop's pending sends
        (S5.12; once, whoever looks first: see ``_api.abandon_closed_loop``).
        """
        engine = self._engine
        if engine is not None and engine.loop.is_closed():
            _abandon_closed(engine)
        return self._pending

    def wait(self, timeout: object = None) -> bool:
        """Block this thread until the send completes; True if it did within ``timeout``.

        ``timeout``: seconds (an int or a float) or None for no limit; anything else is a
        TypeError, checked first, whether the send is pending or not (S10: typed ``object``).

        For threads only: the loop that completes the send must keep running, so calling this
        in that loop's own thread while the send is pending raises WSAEINVAL instead of hanging.
        A loop closed with a bare ``loop.close()`` completes nothing any more: the wait notices
        it (within a quarter second) and aborts that loop's pending sends itself (S5.12:
        WSA_OPERATION_ABORTED, exact counts, one ResourceWarning), then returns True.
        """
        seconds = _seconds(timeout)
        if not self._pending:
            return True
        engine = self._engine
        if engine is not None and engine.loop.is_closed():
            _abandon_closed(engine)
        elif engine is not None and engine.in_loop_thread():
            raise WSAError(
                WSAErrorCode.WSAEINVAL,
                reason=(
                    "wait() was called in the thread of the loop that completes this send, and would "
                    "block that loop forever: await the overlapped (or its event's wait_async()) instead"
                ),
            )
        tev = self._tevent
        if tev is None:
            tev = self._tevent = threading.Event()
        if not self._pending:  # completed while we made the event (see _complete_ok)
            return True
        if engine is None:
            return tev.wait(seconds)
        return _wait_watching(tev, seconds, self, None)

    def cancel(self) -> bool:
        """Withdraw the send if none of its bytes reached the kernel (S5.7).

        Returns:
            True when it was withdrawn (it completes with WSA_OPERATION_ABORTED, 0 bytes);
            False when it already completed, or is partly consumed and will finish (cutting it
            short would corrupt the stream).

        Raises:
            WSAError: WSAEINVAL when called outside the thread of the loop the send was posted on
                (the queue belongs to that loop).
        """
        engine = self._engine
        if not self._pending or engine is None:
            return False
        if not engine.in_loop_thread():
            raise WSAError(
                WSAErrorCode.WSAEINVAL,
                reason=(
                    "cancel() was called outside the thread of the loop the send was posted on: call it "
                    "there (loop.call_soon_threadsafe(ov.cancel)), or use winsock.closesocket to abort"
                ),
            )
        return engine.withdraw(self)

    def __await__(self) -> Generator[Any, None, int]:
        # Not a generator itself: the waiting is in the plain-Python _awaiting module (S10).
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
                return _failed(self._exc)
            return _finished(self._transferred)
        assert engine is not None
        # (runs_here: as in wsa_send, the compiled engine tells without asyncio's
        # get_running_loop, a getpid() syscall per call on Python 3.11; interpreted, the method
        # call costs more than asyncio's C function and its syscall.)
        loop = engine.loop if _NATIVE and engine.runs_here() else asyncio.get_running_loop()
        if loop is not engine.loop:
            # Awaited from another loop than the one that completes the send (a facade post runs
            # on the provider's loop): complete through call_soon_threadsafe (issue 10 item 16).
            return self._await_from(loop)
        waiter = self._waiter
        fut: asyncio.Future[int]
        if isinstance(waiter, _Waiters):
            fut = waiter.add(loop)
        elif waiter is None or waiter.cancelled():
            fut = self._waiter = loop.create_future()
        else:
            fut = waiter
        return _on_own_loop(self, fut)

    def _await_from(self, loop: asyncio.AbstractEventLoop) -> Generator[Any, None, int]:
        """Wait on ``loop`` for a send that its engine's loop (in another thread) completes."""
        old = self._waiter
        if isinstance(old, _Waiters):
            waiters = old
        else:
            waiters = _Waiters()
            if old is not None and not old.done():
                waiters.futures.append(old)  # keep the engine loop's own awaiter
        fut = waiters.add(loop)
        # Publish, then look again: the engine marks the send done before it reads _waiter, so
        # either it sees our waiters or we see the send done (the GIL orders the two).
        self._waiter = waiters
        if not self._pending:
            _resolve(fut, self._transferred, self._exc)
        # The engine's loop may end with a bare loop.close(): watch it (S5.12, _watch_closed).
        timer: list[asyncio.TimerHandle] = []
        timer.append(loop.call_later(_CLOSED_LOOP_POLL, _watch_closed, loop, self, None, timer))
        return _awaiting.on_other_loop(fut, waiters, timer)

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
        self._dest = None  # a reused overlapped must not keep (or send to) its last destination
        ev = self._event
        if (routine is None or signals_event(routine)) and isinstance(ev, WSAEvent):
            ev.reset()
            ev._source = self  # its wait() watches this send's loop (S5.12): one store per post


def signals_event(routine: object) -> bool:
    """True for a routine after which the engine still signals the send's ``hEvent`` (S5.3):
    a completion port's (``winsock._ports._PortRoutine``), as Windows signals the event of a
    port-associated send beside its packet. An ordinary routine leaves the event alone."""
    return getattr(routine, "signals_event", False) is True


def _abandon_closed(engine: SendEngine) -> None:
    """``engine``'s loop is closed: abort its loop's pending sends from this thread (S5.12)."""
    from ._api import abandon_closed_loop  # _api imports this module

    abandon_closed_loop(engine)


def _seconds(timeout: object) -> float | None:
    """A ``wait`` timeout: None, or seconds as a float (from an int or a float, as
    ``threading.Event.wait`` takes them)."""
    if timeout is None:
        return None
    if isinstance(timeout, (int, float)):
        return float(timeout)
    raise TypeError(f"timeout must be a number of seconds or None, not {type(timeout).__name__!r}")


def _wait_watching(
    flag: threading.Event, timeout: float | None, ov: WSAOverlapped | None, event: WSAEvent | None
) -> bool:
    """``flag.wait(timeout)`` for a thread blocked on a pending send (``ov``'s, or ``event``'s
    latest), that also watches the send's loop (S5.12; docs/overlapped.md, "A loop that ends").

    A loop ended by ``asyncio.run``/``Runner``/``uvloop.run`` aborts its sends itself (its
    ``shutdown_asyncgens``), but one closed with a bare ``loop.close()`` runs no hook at all
    (no public close callback on either loop), and no loop will ever complete its sends. So a
    thread that would sleep on such a send waits in slices of ``_CLOSED_LOOP_POLL`` and, once
    the loop reads closed, aborts the loop's pending sends itself, which sets ``flag`` (and the
    events of every other waiter). That is safe from this thread: a closed loop runs nothing,
    and the abort takes each queue under the registry lock, so it happens once, whoever (a
    second waiter, a new loop's claim, ``closesocket``) gets there first. Costs nothing per
    send, and only four wake-ups a second to a thread that is blocked anyway.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        send = ov if event is None else event._source
        if send is not None and send._pending:
            send._still_pending()  # (aborts the sends of a closed loop)
        if deadline is None:
            step = _CLOSED_LOOP_POLL
        else:
            left = deadline - time.monotonic()
            if left <= 0:
                return flag.is_set()
            step = min(_CLOSED_LOOP_POLL, left)
        if flag.wait(step):
            return True


def _watch_closed(
    loop: asyncio.AbstractEventLoop,
    ov: WSAOverlapped | None,
    event: WSAEvent | None,
    timer: list[asyncio.TimerHandle],
) -> None:
    """The loop-side twin of ``_wait_watching``: a coroutine on ``loop`` awaits a send of
    another loop (``await ov`` there, or ``event.wait_async()``). Every ``_CLOSED_LOOP_POLL``
    it looks whether the send's loop was closed, and if so aborts that loop's pending sends,
    which wakes the awaiter (S5.12). ``timer[0]`` is the next check, which the awaiter cancels
    when it stops waiting.
    """
    send = ov if event is None else event._source
    engine = send._engine if send is not None and send._pending else None
    if engine is None:
        return
    if engine.loop.is_closed():
        _abandon_closed(engine)
        return
    timer[0] = loop.call_later(_CLOSED_LOOP_POLL, _watch_closed, loop, ov, event, timer)


def _resolve(fut: asyncio.Future[int], transferred: int, exc: BaseException | None) -> None:
    if not fut.done():
        if exc is None:
            fut.set_result(transferred)
        else:
            fut.set_exception(exc)


class _Waiters:
    """Futures of several loops awaiting one overlapped, woken thread-safely (issue 10 item 16).

    Stands in ``WSAOverlapped._waiter`` for an asyncio future once a loop other than the
    engine's awaits the send: the engine calls the same ``done``/``set_result``/``set_exception``
    on it, and each future is resolved in its own loop through ``call_soon_threadsafe``. The
    engine's own loop's future, when awaited alone, never meets this class (no extra cost).
    """

    __slots__ = ("futures",)

    def __init__(self) -> None:
        self.futures: list[asyncio.Future[int]] = []

    def add(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[int]:
        fut: asyncio.Future[int] = loop.create_future()
        self.futures.append(fut)
        return fut

    def discard(self, fut: asyncio.Future[int]) -> None:
        with contextlib.suppress(ValueError):
            self.futures.remove(fut)

    def get_loop(self) -> None:
        """No one loop: the engine must wake these even after its own loop closed."""
        return None

    def done(self) -> bool:
        return False

    def set_result(self, transferred: int) -> None:
        self._wake(transferred, None)

    def set_exception(self, exc: BaseException) -> None:
        self._wake(0, exc)

    def _wake(self, transferred: int, exc: BaseException | None) -> None:
        # A copy: an awaiter in another thread may discard its future meanwhile.
        for fut in list(self.futures):
            # A closed loop raises RuntimeError: nobody waits there any more.
            with contextlib.suppress(RuntimeError):
                fut.get_loop().call_soon_threadsafe(_resolve, fut, transferred, exc)


class CompletedSend:
    """One completed send, as it completed: what ``WSAProtocol.send_completed`` receives (S7.2).

    A frozen snapshot taken when the send completed, so it reports that send even when the
    :class:`WSAOverlapped` was reused meanwhile (the classic Winsock pattern reposts from the
    completion routine with the same overlapped, before ``send_completed`` runs). It reads like
    the completed overlapped: ``error``, ``transferred``, ``exception``, ``nbytes``,
    ``completed_immediately``, ``completion_routine``, ``pending`` (always False), ``done()``
    and ``result()``; ``overlapped`` is the object itself (``send()``'s return value, or the one
    ``write()`` made), for matching. Winsock passes the same values to a completion routine as
    ``(dwError, cbTransferred, lpOverlapped, dwFlags)``; ``flags`` is that ``dwFlags`` (0).
    """

    __slots__ = ("_error", "_exc", "_immediately", "_nbytes", "_overlapped", "_routine", "_transferred")

    def __init__(self, overlapped: WSAOverlapped) -> None:
        self._overlapped = overlapped
        self._error = overlapped._error
        self._transferred = overlapped._transferred
        self._exc = overlapped._exc
        self._nbytes = overlapped._nbytes
        self._immediately = overlapped._completed_immediately
        self._routine = overlapped._routine

    @property
    def overlapped(self) -> WSAOverlapped:
        """The overlapped the send was posted with (it may be posting another send by now)."""
        return self._overlapped

    @property
    def error(self) -> WSAErrorCode | Literal[0]:
        """0 on success, else the :class:`WSAErrorCode` the send completed with."""
        return _error_code(self._error)

    @property
    def transferred(self) -> int:
        """Bytes of this send the kernel consumed."""
        return self._transferred

    @property
    def exception(self) -> WSAError | None:
        """The :class:`WSAError` of a failed send, else None."""
        return self._exc

    @property
    def nbytes(self) -> int:
        """Bytes this send posted (the sum of its buffers)."""
        return self._nbytes

    @property
    def completed_immediately(self) -> bool:
        """True when the kernel took every byte inside the call that posted it (S5.1)."""
        return self._immediately

    @property
    def completion_routine(self) -> CompletionRoutine | None:
        """The routine the send was posted with, if any."""
        return self._routine

    @property
    def pending(self) -> bool:
        """Always False: a snapshot is of a completed send."""
        return False

    @property
    def flags(self) -> int:
        """The completion's ``dwFlags``: always 0, as Winsock's for a send."""
        return 0

    def done(self) -> bool:
        """Always True."""
        return True

    def result(self) -> int:
        """``transferred``, or raise the send's :class:`WSAError`."""
        if self._exc is not None:
            raise self._exc
        return self._transferred

    def __repr__(self) -> str:
        if self._error:
            state = f"failed {WSAErrorCode(self._error).name} after {self._transferred} bytes"
        else:
            state = f"done {self._transferred} bytes"
        return f"<CompletedSend {state} of {self._overlapped!r}>"
