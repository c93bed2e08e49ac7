"""The per-(loop, socket) send engine: the one place that calls ``sendmsg`` for overlapped sends.

Theory of operation
-------------------
Every overlapped send on a socket goes through one :class:`SendEngine`, shared by
``wsa_send``, ``WSATransport`` and the ``winsock`` facade, so posting order is wire order
whoever posts (SPEC S5.4). The ordering rules live in the pure :class:`~._queue.SendQueue`;
this module makes the syscalls and turns the queue's answers into completions.

The hot path is built for coalescing (SPEC S5.4, issue 6):

1. A post on an idle engine tries the kernel at once (S5.1). If every byte goes, the send is
   complete before ``wsa_send`` returns, and a *batch window* opens: one ``loop.call_soon``
   (per loop iteration, not per send) that closes it. Sends posted while the window is open
   are only queued, so that sends posted back to back in one loop iteration go out together
   in one ``sendmsg`` of up to IOV_MAX buffers.
2. The queue is flushed when the window closes, when the socket becomes writable (one
   ``add_writer``, registered only after EAGAIN and removed when the queue drains), or right
   away when someone awaits a send that is only waiting for the window (``flush_for``), so an
   ``await wsa_send(...)`` per send never waits a loop iteration for nothing.
3. Completions are resolved in bulk inside the flush: fields set, events set, futures resolved
   only for sends somebody awaits (a future is made lazily in ``__await__``), routines
   scheduled with ``call_soon`` one by one (never nested, never inside ``wsa_send``, S5.3).

Faults (SPEC S6): an error fails the head send with its exact consumed count and every queued
send with 0, in order. A socket closed behind our back is noticed by a watchdog timer that runs
only while a writer is registered (an fd closed under ``add_writer`` never becomes writable,
and uvloop's ``add_writer`` even keeps the descriptor open until it is removed).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import threading
import weakref
from collections.abc import Callable
from typing import Any

from ._buffers import IOV_MAX, gather_for_message, normalize
from ._errors import WSAError, WSAErrorCode
from ._overlapped import CompletionRoutine, WSAEvent, WSAOverlapped
from ._queue import BATCH_BYTES, SendCompletion, SendQueue
from ._sockutil import (
    LINUX_OOB,
    LINUX_SEND_FLAGS,
    SocketInfo,
    classify,
    is_closed,
    is_message_socket,
    max_message_size,
    translate_flags,
)

__all__ = ["DEFAULT_MAX_PENDING", "ZERO", "SendEngine"]

#: Default bound on outstanding overlapped sends per socket (SPEC S5.6). Arbitrary, but large:
#: big enough that nobody meets it by accident, small enough to stop a runaway producer.
DEFAULT_MAX_PENDING = 65536

# How often the watchdog looks for a socket closed behind our back (SPEC S6.1 wants "within one
# second"; a quarter second leaves room on a loaded machine).
_WATCHDOG_INTERVAL = 0.25

_EMPTY: list[Any] = []
# flags == 0 as a plain int: "flags is ZERO" is the hot path's one-op test for it (CPython keeps
# one 0 object; any other zero, such as an IntFlag or a False, takes the general path, which is
# right for them too).
ZERO = 0
# Smallest byte cap of an adaptive batch (see _flush). Arbitrary: a 64 KiB socket buffer's worth.
_MIN_BATCH_CAP = 64 * 1024
# Makes a WSAOverlapped without running __init__ (post_list sets every field itself). Not
# object.__new__, which a compiled (mypyc) class refuses (SPEC S10).
_new_overlapped = WSAOverlapped.__new__


def _stream_overlapped(engine: SendEngine, bufs: list[Any], nbytes: int, done: bool) -> WSAOverlapped:
    """A stream send with no flags, routine or event, every field set once: pending, or (with
    ``done``) completed immediately with every byte transferred and its buffers released."""
    ov = _new_overlapped(WSAOverlapped)
    ov._bufs = _EMPTY if done else bufs
    ov._nbytes = nbytes
    ov._flags = 0
    ov._more = False
    ov._pending = not done
    ov._completed_immediately = done
    ov._transferred = nbytes if done else 0
    ov._error = 0
    ov._exc = None
    ov._routine = None
    ov._waiter = None
    ov._tevent = None
    ov._event = None
    ov._engine = engine
    return ov


# Engine states. OPEN accepts posts; DRAINING refuses them (WSAESHUTDOWN) and runs its
# on-drained callback when the queue empties; CLOSED refuses them and has nothing queued.
_OPEN = 0
_DRAINING = 1
_CLOSED = 2


class SendEngine:
    """Ordered, coalescing overlapped sends for one socket on one loop. Internal.

    Hooks for ``WSATransport``: ``on_complete(ops)`` after every bulk completion,
    ``on_error(exc)`` after a fatal send error failed the queue.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, sock: socket.socket, *, max_pending: int = DEFAULT_MAX_PENDING
    ) -> None:
        self.loop = loop
        self._sockref = weakref.ref(sock)
        self._info = SocketInfo(sock)
        self.message_mode = is_message_socket(sock)
        self._udp_max = (
            max_message_size(sock) if self.message_mode and sock.family in (socket.AF_INET, socket.AF_INET6) else 0
        )
        self._queue: SendQueue[WSAOverlapped] = SendQueue(message_mode=self.message_mode, solo_flags=LINUX_OOB)
        # The queue's deque, read (never changed) here for C-speed emptiness tests on the hot path.
        self._ops = self._queue._ops
        # True while post_list() may take a stream send without the general checks: a stream
        # socket whose engine is open. Kept in sync by _set_state().
        self.hot = not self.message_mode
        self.max_pending = max_pending
        self.cork = False
        self._state = _OPEN
        self._writer: socket.socket | None = None  # the socket object registered with add_writer
        # The batch window (see the theory of operation): while _batch_open, posts are only
        # queued; _batch_scheduled says a call_soon(_close_batch) is already on the loop, so
        # reopening the window in the same iteration costs nothing.
        self._batch_open = False
        self._batch_scheduled = False
        # Most bytes the next stream batch gathers (halved to what the kernel takes, doubled
        # back while it takes everything; see _flush).
        self._batch_cap = BATCH_BYTES
        self._watchdog: asyncio.TimerHandle | None = None
        self._owner_thread = threading.get_ident()
        self._alias: socket.socket | None = None
        self._alias_fd = -1
        self.on_complete: Callable[[list[WSAOverlapped]], object] | None = None
        self.on_error: Callable[[WSAError], object] | None = None
        self._on_drained: Callable[[], object] | None = None

    # -- inspection ---------------------------------------------------------------------------

    @property
    def sock(self) -> socket.socket | None:
        return self._sockref()

    def in_loop_thread(self) -> bool:
        return threading.get_ident() == self._owner_thread

    def pending_count(self) -> int:
        return len(self._queue)

    def unsent_bytes(self) -> int:
        return self._queue.unsent_bytes

    def is_idle(self) -> bool:
        return not self._queue and self._writer is None

    def accepting(self) -> bool:
        return self._state == _OPEN

    def _tx(self, sock: socket.socket) -> socket.socket:
        """The socket object to call sendmsg on: ``sock``, or a timeout-free alias of it.

        A Python socket with a timeout polls before each ``sendmsg`` (and would block the loop
        for up to that timeout), so for such a socket we send through a second socket object on
        the same descriptor that has none. The caller's object is never changed (S5.10).
        """
        timeout = sock.gettimeout()
        if timeout is None or timeout == 0.0:
            return sock
        fd = sock.fileno()
        if fd < 0:  # closed behind our back: sendmsg on it fails EBADF, which post() reports (S5.2)
            return sock
        alias = self._alias
        if alias is None or self._alias_fd != fd:
            if alias is not None:
                alias.detach()
            alias = socket.socket(sock.family, sock.type, sock.proto, fileno=fd)
            if alias.gettimeout() is not None:  # socket.setdefaulttimeout() was used
                alias.setblocking(False)  # the fd is already O_NONBLOCK: Python's timeouts need it
            self._alias = alias
            self._alias_fd = fd
            # Detached when the socket goes (not the engine: a compiled SendEngine takes no
            # weak reference, SPEC S10); until then it is only an object on the same fd.
            weakref.finalize(sock, alias.detach)
        return alias

    # -- posting ------------------------------------------------------------------------------

    def post(
        self,
        sock: socket.socket,
        buffers: object,
        flags: object = 0,
        overlapped: object = None,
        routine: CompletionRoutine | None = None,
    ) -> WSAOverlapped:
        """Post one overlapped send (SPEC S5). See :func:`wsasend.wsa_send`."""
        bufs, nbytes = normalize(buffers)
        if flags or type(flags) is not int:  # None, False, 0.0: WSAEINVAL like any non-int (S4.1)
            osflags, more = translate_flags(flags, sock, cork=self.cork)
        else:
            osflags, more = 0, False
        if self._state != _OPEN:
            raise WSAError(
                WSAErrorCode.WSAESHUTDOWN if self._state == _DRAINING else WSAErrorCode.WSAENOTSOCK,
                detail="the socket is shutting down" if self._state == _DRAINING else "the socket is closed",
            )
        if is_closed(sock):
            # S5.2: closed behind our back (plain sock.close()). Earlier sends may still sit in
            # the queue until the watchdog aborts them; this one must fail at the call.
            raise WSAError(WSAErrorCode.WSAENOTSOCK, errno=errno.EBADF, detail="the socket is closed")
        queue = self._queue
        if len(queue) >= self.max_pending:
            raise WSAError(
                WSAErrorCode.WSAEWOULDBLOCK,
                detail=f"{len(queue)} overlapped sends outstanding (max_pending={self.max_pending})",
            )
        if overlapped is None:
            ov = WSAOverlapped()
        else:
            if type(overlapped) is not WSAOverlapped and not isinstance(overlapped, WSAOverlapped):
                raise WSAError(
                    WSAErrorCode.WSAEFAULT,
                    detail=f"overlapped must be a WSAOverlapped, not {type(overlapped).__name__}",
                )
            if overlapped._pending:
                raise WSAError(WSAErrorCode.WSAEINVAL, detail="this WSAOverlapped is still pending (S5.5)")
            ov = overlapped
        if routine is not None and not callable(routine):
            raise WSAError(WSAErrorCode.WSAEFAULT, detail="completion_routine is not callable")
        if self.message_mode:
            return self._post_message(sock, ov, bufs, nbytes, osflags, more, routine)
        ov._reset_for_post(routine, self)
        ov._load(bufs, nbytes, osflags)
        if queue or self._batch_open:
            queue.submit(ov)
            if self._writer is None and not self._batch_open:
                self._open_batch()
            return ov
        # Fast path (S5.1): nothing queued and no batch open, so try the kernel at once.
        if nbytes:
            try:
                # S2.3: at most IOV_MAX buffers per sendmsg (more is EMSGSIZE); the writer sends the
                # rest, and only the sendmsg with the last byte carries MSG_OOB (its urgent mark).
                if len(bufs) <= IOV_MAX:
                    n = self._tx(sock).sendmsg(bufs, _EMPTY, osflags | LINUX_SEND_FLAGS)
                else:
                    n = self._tx(sock).sendmsg(bufs[:IOV_MAX], _EMPTY, (osflags & ~LINUX_OOB) | LINUX_SEND_FLAGS)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError as exc:
                ov._pending = False
                ov._engine = None  # S5.2: it never started; its event must not read as set later
                raise self._error(sock, exc, 0) from exc
            if n < nbytes:
                queue.submit(ov)
                if n:
                    queue.bytes_sent(n)
                self._add_writer(sock)
                return ov
        self._complete_immediately(ov, nbytes)
        return ov

    def _post_message(
        self,
        sock: socket.socket,
        ov: WSAOverlapped,
        bufs: list[Any],
        nbytes: int,
        osflags: int,
        more: bool,
        routine: CompletionRoutine | None,
    ) -> WSAOverlapped:
        queue = self._queue
        total = queue.open_message_bytes + nbytes
        # UDP's limit is a constant, read once; AF_UNIX's follows SO_SNDBUF, so it is read per
        # message (issue 6 profile: the per-post lookup was a third of a datagram post's cost).
        limit = self._udp_max or max_message_size(sock)
        if not more and total > limit:
            # S4.4: the whole message is refused; its earlier pieces fail with it.
            pieces = queue.drop_open_message()
            err = WSAError(WSAErrorCode.WSAEMSGSIZE, detail=f"message of {total} bytes > {limit}")
            self._fail_ops([SendCompletion(p, 0) for p in pieces], WSAErrorCode.WSAEMSGSIZE, None)
            raise err
        ov._reset_for_post(routine, self)
        ov._load(bufs, nbytes, osflags, more)
        # No batch window for messages: each is its own sendmsg anyway, so queueing one behind
        # a window would only add work (issue 6: datagrams posted back to back ran at 0.5x raw).
        if more or queue:
            queue.submit(ov)
            if not more and self._writer is None and not self._batch_open:
                self._open_batch()
            return ov
        iov = gather_for_message(bufs)
        tx = self._tx(sock)
        for attempt in range(2):
            try:
                tx.sendmsg(iov, _EMPTY, osflags | LINUX_SEND_FLAGS)
            except (BlockingIOError, InterruptedError):
                queue.submit(ov)
                self._add_writer(sock)
                return ov
            except OSError as exc:
                if exc.errno == errno.ECONNREFUSED and attempt == 0:
                    # S3.3: a stale ICMP port-unreachable on a connected UDP socket consumed the
                    # error; Windows retries once, and so do we.
                    continue
                ov._pending = False
                ov._engine = None  # S5.2: it never started; its event must not read as set later
                raise self._error(sock, exc, 0) from exc
            break
        self._complete_immediately(ov, nbytes)
        return ov

    def post_list(self, sock: socket.socket, buffers: list[Any]) -> WSAOverlapped:
        """``post(sock, buffers)`` for the commonest call: a list, no flags, overlapped or routine.

        Only used while ``self.hot``. Falls back to :meth:`post` for anything that is not a
        list of ``bytes`` or that meets a limit, so every rule of ``post`` still holds; what it
        saves is the calls and checks that cannot fail for such a send, and it makes the
        overlapped only once the outcome is known so each field is set once (measured: about
        half the per-send cost of ``post``).
        """
        total = 0
        for buf in buffers:
            if type(buf) is not bytes:
                return self.post(sock, buffers)
            total += len(buf)
        ops = self._ops
        if ops or self._batch_open:
            # (_closed alone: close() and detach() both set it, and this is the hot path.)
            if len(ops) >= self.max_pending or getattr(sock, "_closed", False):
                return self.post(sock, buffers)  # it raises: S5.6 bound, or closed (S5.2)
            # S2.1: the list is captured now; the bytes are not copied.
            ov = _stream_overlapped(self, buffers.copy(), total, False)
            self._queue.submit(ov)
            if self._writer is None and not self._batch_open:
                self._open_batch()
            return ov
        if total:
            tx = self._tx(sock) if sock.gettimeout() else sock
            try:
                # S2.3: at most IOV_MAX buffers per sendmsg; the writer sends the rest. (A plain
                # send() for one buffer measured ~10% cheaper, within this machine's noise: we
                # keep one syscall for every path, which also keeps sendmsg the one to script.)
                n = tx.sendmsg(buffers if len(buffers) <= IOV_MAX else buffers[:IOV_MAX], _EMPTY, LINUX_SEND_FLAGS)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError as exc:
                raise self._error(sock, exc, 0) from exc  # S5.2: no overlapped was made
            if n < total:
                ov = _stream_overlapped(self, buffers.copy(), total, False)
                self._queue.submit(ov)
                if n:
                    self._queue.bytes_sent(n)
                self._add_writer(sock)
                return ov
        elif is_closed(sock):  # no syscall tells: post() raises (S5.2)
            return self.post(sock, buffers)
        # Completed immediately (S5.1): no routine, no event, nothing to wake.
        ov = _stream_overlapped(self, buffers, total, True)
        if self.on_complete is not None:
            self.on_complete([ov])
        self._open_batch()
        return ov

    def _complete_immediately(self, ov: WSAOverlapped, n: int) -> None:
        ov._pending = False
        ov._completed_immediately = True
        ov._transferred = n
        ov._bufs = _EMPTY
        self._signal(ov, 0, n, None, True)
        if self.on_complete is not None:
            self.on_complete([ov])
        if not self.message_mode:
            self._open_batch()

    def _open_batch(self) -> None:
        self._batch_open = True
        if not self._batch_scheduled:
            self._batch_scheduled = True
            self.loop.call_soon(self._close_batch)

    def end_window(self) -> None:
        """The poster awaited a send that was already complete: it sends one at a time.

        Closing the batch window lets its next send try the kernel at once (S5.1) instead of
        waiting in the queue for a flush; the scheduled ``_close_batch`` stays, and reopening
        the window later in this iteration schedules nothing new.
        """
        self._batch_open = False

    def _close_batch(self) -> None:
        self._batch_open = False
        self._batch_scheduled = False
        if self._queue and self._writer is None:
            sock = self._sockref()
            if sock is None:  # pragma: no cover - the loop's handle keeps it alive
                self._abort_all(WSAErrorCode.WSA_OPERATION_ABORTED)
                return
            self._flush(sock)

    def flush_for(self, ov: WSAOverlapped) -> None:
        """Someone awaits ``ov``: if it only waits for the batch window, flush now."""
        if self._batch_open and self._writer is None and self._queue and self.in_loop_thread():
            sock = self._sockref()
            if sock is not None:
                self._flush(sock)

    # -- flushing -----------------------------------------------------------------------------

    def _flush(self, sock: socket.socket) -> None:
        queue = self._queue
        if self.message_mode:
            self._flush_messages(sock)
            return
        if is_closed(sock):
            self._abort_all(WSAErrorCode.WSA_OPERATION_ABORTED)
            return
        tx = self._tx(sock)
        sendmsg = tx.sendmsg
        while queue:
            iov, flags = queue.next_batch(self._batch_cap)
            if flags & LINUX_OOB and not queue.last_batch_ends_op:
                flags &= ~LINUX_OOB  # the urgent mark goes with the send's last byte only
            if iov:
                try:
                    n = sendmsg(iov, _EMPTY, flags | LINUX_SEND_FLAGS)
                except (BlockingIOError, InterruptedError):
                    self._add_writer(sock)
                    return
                except OSError as exc:
                    self._fatal(sock, exc)
                    return
                # Size the next batch by what the kernel takes: gathering far more than the
                # socket buffer has room for only redoes the gathering on every writable event
                # (issue 6: per-send cost grew with queue depth until batches were capped).
                if n < queue.last_batch_bytes:
                    self._batch_cap = n * 2 if n > _MIN_BATCH_CAP else _MIN_BATCH_CAP
                elif self._batch_cap < BATCH_BYTES:
                    self._batch_cap *= 2
                done = queue.bytes_sent(n)
            else:
                done = queue.bytes_sent(0)
            if done:
                self._complete(done)
        self._drained()

    def _flush_messages(self, sock: socket.socket) -> None:
        queue = self._queue
        if is_closed(sock):
            self._abort_all(WSAErrorCode.WSA_OPERATION_ABORTED)
            return
        tx = self._tx(sock)
        retried = False
        while queue.sendable():
            iov, flags = queue.next_batch()
            try:
                n = tx.sendmsg(iov, _EMPTY, flags | LINUX_SEND_FLAGS)
            except (BlockingIOError, InterruptedError):
                self._add_writer(sock)
                return
            except OSError as exc:
                if exc.errno == errno.ECONNREFUSED and not retried:
                    retried = True  # S3.3: a stale ICMP error; Windows retries the send once
                    continue
                if exc.errno in (errno.EMSGSIZE, errno.ECONNREFUSED):
                    # The kernel refused this one message (its size limit moved under us, or
                    # the peer's port is still unreachable): fail it alone, the socket is fine.
                    retried = False
                    code = WSAErrorCode.WSAEMSGSIZE if exc.errno == errno.EMSGSIZE else WSAErrorCode.WSAECONNREFUSED
                    ops = queue.bytes_sent(0)
                    self._fail_ops([SendCompletion(op, 0) for op in ops], code, exc)
                    continue
                self._fatal(sock, exc)
                return
            retried = False
            done = queue.bytes_sent(n)
            self._complete(done)
        self._drained()

    def _drained(self) -> None:
        """Nothing sendable is left: drop the writer, run the on-drained callback."""
        if self._writer is not None:
            self._remove_writer()
        if not self._queue and self._on_drained is not None:
            callback, self._on_drained = self._on_drained, None
            callback()

    def _complete(self, done: list[WSAOverlapped]) -> None:
        """Complete whole sends in bulk, in posting order (SPEC S5.3)."""
        call_soon = self.loop.call_soon
        for ov in done:
            n = ov._nbytes
            ov._transferred = n
            ov._pending = False
            ov._bufs = _EMPTY  # S2: the caller's memory is released as soon as it is sent
            routine = ov._routine
            if routine is not None:
                call_soon(routine, 0, n, ov, 0)
            else:
                ev = ov._event
                if ev is not None and type(ev) is WSAEvent:
                    ev.set()
            waiter = ov._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(n)
            tev = ov._tevent
            if tev is not None:
                tev.set()
        if self.on_complete is not None:
            self.on_complete(done)

    def _fail_ops(self, comps: list[SendCompletion], code: WSAErrorCode, cause: BaseException | None) -> None:
        """Complete sends with an error, each with its own consumed count (SPEC S6.4)."""
        if not comps:
            return
        # A closed loop (closesocket after asyncio.run returned) can run nothing any more: the
        # sends still get their status, count and event, but no routine or future callback.
        live = not self.loop.is_closed()
        done: list[WSAOverlapped] = []
        for comp in comps:
            ov = comp.op
            assert isinstance(ov, WSAOverlapped)
            exc = WSAError(code, errno=getattr(cause, "errno", None), bytes_sent=comp.bytes_sent)
            if cause is not None:
                exc.__cause__ = cause
            ov._transferred = comp.bytes_sent
            ov._error = code
            ov._exc = exc
            ov._pending = False
            ov._bufs = _EMPTY
            self._signal(ov, int(code), comp.bytes_sent, exc, live)
            done.append(ov)
        if self.on_complete is not None:
            self.on_complete(done)

    def _signal(self, ov: WSAOverlapped, error: int, n: int, exc: WSAError | None, live: bool) -> None:
        """Tell of one finished send (S5.3): its routine, else its event; its awaiter; a thread.

        The bulk success path (_complete) does the same inline for speed; keep them in step.
        ``live`` is False once the loop is closed: nothing can be scheduled on it any more.
        """
        routine = ov._routine
        if routine is not None:
            if live:
                self.loop.call_soon(routine, error, n, ov, 0)
        else:
            ev = ov._event
            if ev is not None and type(ev) is WSAEvent:
                ev.set()
        waiter = ov._waiter
        if live and waiter is not None and not waiter.done():
            if exc is None:
                waiter.set_result(n)
            else:
                waiter.set_exception(exc)
        tev = ov._tevent
        if tev is not None:
            tev.set()

    def _error(self, sock: socket.socket, exc: OSError, bytes_sent: int) -> WSAError:
        if exc.errno == errno.EBADF or is_closed(sock):
            code = WSAErrorCode.WSAENOTSOCK
        else:
            code = classify(sock, exc, self._info)
        err = WSAError(code, errno=exc.errno, bytes_sent=bytes_sent)
        err.__cause__ = exc
        return err

    def _fatal(self, sock: socket.socket, exc: OSError) -> None:
        """A send error: fail the head (with its consumed bytes) and every queued send (S6.3)."""
        closed = is_closed(sock) or exc.errno == errno.EBADF
        code = WSAErrorCode.WSA_OPERATION_ABORTED if closed else classify(sock, exc, self._info)
        self._remove_writer()
        head_consumed = self._queue.head_consumed
        comps = self._queue.fail()
        self._fail_ops(comps, code, exc)
        if self.on_error is not None:
            err = WSAError(code, errno=exc.errno, bytes_sent=head_consumed)
            err.__cause__ = exc
            self.on_error(err)
        self._drained()

    # -- writer and watchdog --------------------------------------------------------------------

    def _add_writer(self, sock: socket.socket) -> None:
        if self._writer is None:
            self._writer = sock
            # uvloop's add_writer (libuv's uv_poll_init) sets O_NONBLOCK on the descriptor. We
            # never need it (every sendmsg says MSG_DONTWAIT), and a blocking socket must stay
            # blocking for its other users (S5.10), so its mode is put back at once.
            fd = sock.fileno()
            blocking = sock.gettimeout() is None and os.get_blocking(fd)
            self.loop.add_writer(sock, self._on_writable)
            if blocking and not os.get_blocking(fd):
                os.set_blocking(fd, True)
            if self._watchdog is None:
                self._watchdog = self.loop.call_later(_WATCHDOG_INTERVAL, self._watch)

    def _remove_writer(self) -> None:
        sock = self._writer
        if sock is not None:
            self._writer = None
            # The fd may be gone already (closed behind our back); a closed loop has no
            # registrations left to remove.
            if not self.loop.is_closed():
                with contextlib.suppress(OSError, ValueError):
                    self.loop.remove_writer(sock)
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def _on_writable(self) -> None:
        sock = self._writer
        if sock is None:
            return
        self._flush(sock)

    def _watch(self) -> None:
        self._watchdog = None
        sock = self._writer
        if sock is None:
            return
        if is_closed(sock):
            # S6.1: closed behind our back. uvloop keeps the fd open until the writer goes.
            self._abort_all(WSAErrorCode.WSA_OPERATION_ABORTED)
            return
        self._watchdog = self.loop.call_later(_WATCHDOG_INTERVAL, self._watch)

    # -- cancel, abort, shutdown ---------------------------------------------------------------

    def withdraw(self, ov: WSAOverlapped) -> bool:
        """S5.7: remove ``ov`` if none of its bytes went out; it completes aborted, 0 bytes."""
        if not self.in_loop_thread():
            raise WSAError(WSAErrorCode.WSAEINVAL, detail="cancel() from outside the loop's thread")
        removed = self._queue.withdraw(ov)
        if removed is None:
            return False
        if not removed:
            return False
        self._fail_ops([SendCompletion(op, 0) for op in removed], WSAErrorCode.WSA_OPERATION_ABORTED, None)
        if not self._queue:
            self._drained()
        return True

    def _abort_all(self, code: WSAErrorCode) -> None:
        self._remove_writer()
        comps = self._queue.fail()
        self._fail_ops(comps, code, None)

    def _set_state(self, state: int) -> None:
        self._state = state
        self.hot = state == _OPEN and not self.message_mode

    def abort(self, code: WSAErrorCode = WSAErrorCode.WSA_OPERATION_ABORTED) -> None:
        """Fail every pending send with ``code`` (exact counts) and refuse new ones (S6.1)."""
        self._set_state(_CLOSED)
        self._on_drained = None
        self._abort_all(code)

    def drain_then(self, callback: Callable[[], object]) -> None:
        """Refuse new sends (WSAESHUTDOWN) and call ``callback`` once the queue is empty (S6.2).

        An unfinished MSG_PARTIAL message (S4.4) can never be ended once new sends are refused,
        so its pieces fail now with WSA_OPERATION_ABORTED rather than hold the drain forever.
        """
        if self._state == _OPEN:
            self._set_state(_DRAINING)
        if self.message_mode and self._queue.has_open_message():
            pieces = self._queue.drop_open_message()
            self._fail_ops([SendCompletion(p, 0) for p in pieces], WSAErrorCode.WSA_OPERATION_ABORTED, None)
        self._on_drained = callback
        if not self._queue and self._writer is None:
            self._on_drained = None
            callback()
        elif self._writer is None and not self._batch_open:
            self._open_batch()
