"""The per-(loop, socket) send engine: the one place that calls ``sendmsg`` for overlapped sends.

Theory of operation
-------------------
Every overlapped send on a socket goes through one :class:`SendEngine`, shared by
``wsa_send``, ``WSATransport`` and the ``winsock`` facade, so posting order is wire order
whoever posts (SPEC S5.4). The ordering rules live in the pure :class:`~._queue.SendQueue`;
this module makes the syscalls and turns the queue's answers into completions.

The hot path is built for coalescing (SPEC S5.4, issue 6):

1. A post on an idle engine tries the kernel at once (S5.1). If every byte goes, the send is
   complete before ``wsa_send`` returns, and a *batch window* opens. Sends posted while the
   window is open are only queued, so that sends posted back to back in one loop iteration go
   out together in one ``sendmsg`` of up to IOV_MAX buffers. The window costs no loop callback
   of its own (S5.1, issue 11): every engine of a loop that opened one in this iteration is
   closed by one shared ``call_soon`` per loop iteration (:class:`_BatchTick`), and a window
   opened while a ``WSATransport`` delivers received data (``_held``, ``release``) is closed
   when that callback returns, with no loop callback at all.
2. The queue is flushed when the window closes, when the socket becomes writable (one
   ``add_writer``, registered only after EAGAIN and removed when the queue drains), or right
   away when someone awaits a send that is only waiting for the window (``flush_for``), so an
   ``await wsa_send(...)`` per send never waits a loop iteration for nothing.
3. Completions are resolved in bulk inside the flush: fields set, events set, futures resolved
   only for sends somebody awaits (a future is made lazily in ``__await__``), routines
   scheduled with ``call_soon`` one by one (never nested, never inside ``wsa_send``, S5.3).

Faults (SPEC S6): an error fails the head send with its exact consumed count and every queued
send with 0, in order. A socket closed behind our back is noticed by a watchdog timer that runs
only while something is pending: while a writer is registered (a closed descriptor never
becomes writable), and while MSG_PARTIAL pieces wait for the end of their message (S6.1:
"within one second" holds for them too).

Ownership (SPEC S5.11, S5.12)
-----------------------------
One socket, one owner at a time. Each socket has a :class:`SocketSlot` in the registry
(``_api``) whose owner is one of:

- FREE: nobody; the next claimant takes it.
- ENGINE(e): engine ``e`` (one loop). Only an owning engine calls ``sendmsg`` on the socket:
  its fast paths run between ``_sending = True`` and ``_sending = False`` and test ``_owned``
  in between, and its flushes test ``_owned`` first.
- SYNC(thread): a blocking ``wsa_send_sync`` in progress in that thread.

Every change of owner happens under ``OWNERSHIP.lock``. Who may move it:

- FREE -> ENGINE(e): ``e`` itself, in its loop's thread (``_claim``), at its first send, or
  when woken because the owner let go (``_retry_claim``).
- FREE -> SYNC(t): ``wsa_send_sync`` in thread ``t``; SYNC(t) -> FREE: the same call, when it
  returns, waking every waiter (threads on ``OWNERSHIP.changed``; engines through
  ``call_soon_threadsafe``). Overlapped sends posted meanwhile are queued, pending (S4.2).
- ENGINE(e) -> FREE or -> another claimant: the claimant (any thread), only when ``e`` is
  provably not about to send: ``take_from`` clears ``e._owned`` and then looks at
  ``e._sending``, ``e``'s queue and writer; if any is set it puts ``_owned`` back and the
  claimant gets WSAEINPROGRESS (another loop, S5.10), WSAEWOULDBLOCK (a nonblocking or
  in-loop sync send, S4.2), or waits (a blocking sync send in another thread: it sets
  ``_release_wanted`` and ``e`` lets go in its own thread when it next becomes idle,
  ``_release_if_idle``). Under the GIL this store-then-load handshake (``e`` stores
  ``_sending`` then loads ``_owned``; the claimant stores ``_owned`` then loads ``_sending``)
  means one of the two always sees the other, with no lock on the owner's per-send path.
- ENGINE(e) -> FREE when ``e``'s loop ends: by the loop's ``shutdown_asyncgens``
  (``asyncio.run``, ``asyncio.Runner``, ``uvloop.run``); after a bare ``loop.close()`` (no hook
  runs) by a thread blocked on one of ``e``'s sends (``ov.wait()``, ``WSAEvent.wait()``: they
  wait in slices and look at ``loop.is_closed()``, ``_overlapped._wait_watching``), by another
  loop awaiting one (a timer while it awaits, ``_overlapped._watch_closed``), or by whoever
  next claims the socket. ``e``'s pending sends are aborted (WSA_OPERATION_ABORTED,
  exact counts) with one ResourceWarning: :func:`abandon` takes each queue under the lock, so
  it runs once from whichever thread gets there first (a closed loop runs nothing else).
- Everything -> FREE in a forked child (``_api._reset_after_fork``).

File sends (SPEC S9.3, ``post_file``)
-------------------------------------
One more entry in the same queue, with no buffers; when
it reaches the head the flush sends it with ``os.sendfile`` instead of ``sendmsg``.

Descriptors (SPEC S5.11, issue 10)
----------------------------------
A descriptor *number* is not a socket: after a plain ``sock.close()`` (or ``detach()``, or a
close in another thread) the kernel hands the number to the next socket opened, at once. The
loop keys registrations by number, so an engine that registered the caller's number and later
removed "its" writer would remove the new socket's; a ``socket.socket(fileno=fd)`` alias kept
for a socket with a timeout would write into the new socket. So:

- The engine holds its *own duplicate* of the descriptor (``os.dup``) while it needs one, and
  only then: while a writer is registered, and while a socket with a timeout is being sent
  through (such a socket polls before each ``sendmsg``, so it is sent through a timeout-free
  socket object on the duplicate). The loop registration is made and removed on the
  duplicate's number, which cannot be reused while we hold it. An idle engine holds nothing:
  the duplicate is closed when the writer goes, or at the end of the loop iteration (the batch
  window) for a send that completed at once. Cost: one ``dup`` + ``close`` per activation
  (EAGAIN to drained), next to the two ``epoll_ctl`` the writer costs anyway; none per send on
  a socket without a timeout, one per loop iteration with sends on a socket with one.
- Whether the caller's socket is still open is read from its object (``_closed``, set by
  ``close()`` and ``detach()`` before the descriptor goes; no syscall): before every post
  (S5.2: WSAENOTSOCK at the call, also on uvloop, which keeps the descriptor open after
  ``close()`` while another task waits in ``sock_recv``), before every batch of a flush, and
  by the watchdog. Once it is closed no byte goes out through any object: pending sends abort
  (WSA_OPERATION_ABORTED, exact counts), the registration is removed by the number the engine
  registered (never by asking the socket object, whose ``fileno()`` is -1 by then), and the
  duplicate is closed before anyone hears of the abort.
- The price of the duplicate: after a plain ``close()`` with sends pending, the connection
  stays open until the watchdog aborts them (its next tick, a quarter second at most, unless
  a writable event or a post notices first; S6.1 allows one second), and only
  then does the peer see the close. ``closesocket`` and ``transport.abort()`` abort first, so
  the peer sees their close at once. After ``detach()`` the descriptor belongs to someone
  else: the pending sends abort the same way, and the descriptor is left open and unregistered.
- A sendmsg on the caller's own object can still race a close in another thread inside
  CPython (it reads the number without the GIL): that is CPython's race for any socket shared
  between threads, and no longer widened by anything of ours.

MSG_OOB (SPEC S4.1): Linux marks urgent the last byte each ``sendmsg`` *takes*. A send with the
flag therefore goes out as every byte but its last without the flag, then its last byte alone
with it, on every path (fast path, flush, ``wsa_send_sync``), so a short call can never put the
mark anywhere but on the send's last byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import sys
import threading
import traceback
import types
import warnings
import weakref
from collections.abc import Callable
from itertools import chain
from typing import Any, Final

from ._buffers import IOV_MAX, gather_for_message, normalize, split_last_byte
from ._compat import is_extension_file
from ._dest import Destination
from ._errors import WSAError, WSAErrorCode
from ._overlapped import CompletionRoutine, WSAEvent, WSAOverlapped, signals_event
from ._queue import BATCH_BYTES, HELD_OP, RUN_BUFS, RUN_BYTES, SendCompletion, SendQueue, SendRun
from ._sockutil import (  # _IOV_MARKED_CLOSED: close() or detach() called (see marked_closed)
    _IOV_MARKED_CLOSED,
    INET,
    INET6,
    IOVSEND_MODULE,
    LINUX_OOB,
    LINUX_SEND_FLAGS,
    SocketInfo,
    accepted_socket,
    check_connected,
    check_stream_state,
    classify,
    close_socket,
    is_closed,
    is_message_kind,
    max_message_size,
    message_limit_to,
    sock_family,
    sock_type,
    translate_flags,
)

__all__ = ["DEFAULT_MAX_PENDING", "ZERO", "FileOverlapped", "SendEngine"]

#: Default bound on outstanding overlapped sends per socket (SPEC S5.6). Arbitrary, but large:
#: big enough that nobody meets it by accident, small enough to stop a runaway producer.
DEFAULT_MAX_PENDING = 65536

# How often the watchdog looks for a socket closed behind our back (SPEC S6.1 wants "within one
# second"; a quarter second leaves room on a loaded machine).
_WATCHDOG_INTERVAL = 0.25
# The retry pauses of a datagram to a full AF_UNIX receiver (see _retry_unix_later).
_UNIX_BACKOFF_MIN: Final = 0.001
_UNIX_BACKOFF_MAX: Final = 0.05
# _take_dup's answer when the process has no descriptor to spare (not a closed socket).
_NO_DESCRIPTOR: Final = -2
# [n]: how many message sockets may hold nonoverlapped MSG_PARTIAL pieces (S4.5, _sync's
# _PARTIAL; an upper bound, never below the truth). While it is 0 the overlapped message paths
# skip the look-up; otherwise a message socket's overlapped send first takes its held pieces.
SYNC_PIECES_HELD: Final[list[int]] = [0]

_EMPTY: Final[list[Any]] = []
# LINUX_SEND_FLAGS as the int object the C sendmsg takes: compiled, an int constant is a C
# integer and would be made into a new int object on every call (it is above the small-int
# cache; callgrind: ~60 instructions a send).
_SEND_FLAGS_OBJECT: Final[Any] = LINUX_SEND_FLAGS
# flags == 0 as a plain int: "flags is ZERO" is the hot path's one-op test for it (CPython keeps
# one 0 object; any other zero, such as an IntFlag or a False, takes the general path, which is
# right for them too).
ZERO: Final = 0
# Smallest byte cap of an adaptive batch (see _flush). Arbitrary: a 64 KiB socket buffer's worth.
_MIN_BATCH_CAP: Final = 64 * 1024
# Most system calls one flush of a stream makes before it lets the loop run (see _flush): a
# reader as fast as the sender never lets sendmsg meet EAGAIN, and the flush sent a whole queue
# (64 MiB, 1 GiB...) in one callback while every other connection of the loop waited. libuv's
# stream write stops after 32 writes for the same reason ("prevent loop starvation").
_CALLS_PER_FLUSH: Final = 32
# Makes a WSAOverlapped without running __init__ (post_list sets every field itself). Not
# object.__new__, which a compiled (mypyc) class refuses (SPEC S10).
_new_overlapped: Final = WSAOverlapped.__new__
# True when this module is the compiled extension (SPEC S10). Compiled, ``WSAOverlapped()`` is a
# native allocation and a native __init__ (a few field stores): callgrind counted about 600
# instructions per send less than calling __new__ through Python. Interpreted it is the other
# way round (__init__ is a Python frame), so _stream_overlapped picks by build.
_NATIVE: Final = is_extension_file(__file__)
_get_ident: Final = threading.get_ident
# (Final: compiled, ``asyncio.BaseEventLoop`` is two attribute lookups at every new engine.)
_BASE_EVENT_LOOP: Final = asyncio.BaseEventLoop
_get_asyncgen_hooks: Final = sys.get_asyncgen_hooks
# asyncio's own "running loop of this thread" (None when none), the C version. Since Python 3.12
# it reads the thread state and nothing else; 3.11's makes a getpid() syscall per call (its fork
# check), which is what runs_here() works around there.
_running_loop: Final = asyncio.events._get_running_loop
_RUNNING_LOOP_IS_CHEAP: Final = sys.version_info >= (3, 12)
# post_list's one-buffer fast path sends with send() on exactly this type (see there).
_PLAIN_SOCKET: Final = socket.socket
# A batch's lists as one iterable of their buffers (see _flush, MSG_OOB).
_chain: Final = chain.from_iterable


# The compiled build's C socket calls (``_iovsend.c``), else None (see _sockutil).
_iovsend_module: Final = IOVSEND_MODULE

if _NATIVE:
    # Compiled on Python 3.11, mypyc gave SendQueue (it extends typing.Generic) a weak reference
    # list that its dealloc never clears: a weak reference outliving a queue crashed the
    # interpreter when used. Nothing references a queue weakly, so it refuses them, as it does
    # on 3.12+ (_iovsend.c's no_weakrefs; tests/core/test_queue_weakref.py). Done here, not in
    # _queue, which imports no I/O module (tests/core/test_purity.py).
    from . import _iovsend

    _iovsend.no_weakrefs(SendQueue)
# sendmsg(2) of a list of buffers on a descriptor, without socket.sendmsg's per-buffer argument
# parsing (issue 11: ~500 instructions a buffer, a third of a posted 4x32 B send). The same
# system call with the same iovecs and flags: no byte is copied (S2.1), and its errors are the
# OSErrors socket.sendmsg raises. Used on an exact socket.socket only (like the send() path:
# a subclass that overrides sendmsg still sees every send), on the compiled build only. It takes
# the socket object and reads its descriptor right before the syscall, as socket.sendmsg does:
# -1 (EBADF) once another thread closed it, never a number a new socket took (S5.11).
_IOV_SENDMSG: Final[Callable[[socket.socket, list[Any], int], int] | None] = (
    None if _iovsend_module is None else _iovsend_module.sendmsg
)
# The same call, returning the bytes it did NOT send (see _iovsend.c: 0 when all went, an int
# CPython keeps, where a count above 256 is an int object made and freed per call, ~170
# instructions of a keep-alive reply or a posted datagram). None in the plain-Python build.
_IOV_SENDMSG_REST: Final[Callable[[socket.socket, list[Any], int], int] | None] = (
    None if _iovsend_module is None else _iovsend_module.sendmsg_rest
)
# The same call for a batch handed over as the lists it is made of (SendQueue.next_parts): the
# flush's gathering without a joined list (see _iovsend.c). None in the plain-Python build.
_IOV_SENDMSG_PARTS: Final[Callable[[socket.socket, list[list[Any]], int], int] | None] = (
    None if _iovsend_module is None else _iovsend_module.sendmsg_parts
)
# recv(2) with MSG_DONTWAIT and getsockopt(SO_ERROR), for WSATransport's stream reader (same
# rules: exact socket.socket, compiled build; see _transport._read_stream).
_IOV_RECV: Final[Callable[[socket.socket, int], bytes] | None] = (
    None if _iovsend_module is None else _iovsend_module.recv
)
_IOV_SO_ERROR: Final[Callable[[socket.socket], int] | None] = (
    None if _iovsend_module is None else _iovsend_module.so_error
)
# ``sock.getsockname()`` answered from a one-entry cache per address family (see _iovsend.c):
# for a transport's "sockname" (exact socket.socket, compiled build).
_IOV_SOCKNAME: Final[Callable[[socket.socket], Any] | None] = (
    None if _iovsend_module is None else _iovsend_module.sockname
)
# setsockopt(IPPROTO_TCP, TCP_NODELAY, 1) without socket.setsockopt's argument parsing (see
# _iovsend.c): for a new transport's TCP socket (exact socket.socket, compiled build).
_IOV_TCP_NODELAY: Final[Callable[[socket.socket], None] | None] = (
    None if _iovsend_module is None else _iovsend_module.tcp_nodelay
)
# A queued send's private copy of a list of bytes, untracked by the garbage collector (see
# _iovsend.c: such a list cannot be in a cycle; 10,000 of them queued behind a slow reader made
# the collector's passes a sixth of a send's cost). None in the plain-Python build.
_IOV_BYTES_LIST_COPY: Final[Callable[[list[Any]], list[Any]] | None] = (
    None if _iovsend_module is None else _iovsend_module.bytes_list_copy
)
# A queued overlapped off the collector's lists, and back on (see _iovsend.c's gc_untrack: the
# engine tracks every one it untracked again in _complete or _fail_ops, the only two ways out of
# its queue). None in the plain-Python build, which has no way to untrack an object.
_IOV_GC_UNTRACK: Final[Callable[..., None] | None] = None if _iovsend_module is None else _iovsend_module.gc_untrack
# The same for every object of a list (a run's sends, see post_list).
_IOV_GC_UNTRACK_ALL: Final[Callable[[list[Any]], None] | None] = (
    None if _iovsend_module is None else _iovsend_module.gc_untrack_all
)
_IOV_GC_TRACK_ALL: Final[Callable[[list[Any]], None] | None] = (
    None if _iovsend_module is None else _iovsend_module.gc_track_all
)
# Completed overlappeds nobody refers to any more, reused by _stream_overlapped (compiled, with
# the GIL): see _complete and _iovsend.c's spare. Making and freeing one was ~500 user-space
# instructions of a send queued behind a slow reader (callgrind, issue 11), a fifth of it. At
# most _OV_POOL_MAX are kept (~170 bytes each with the collector's header, ~170 KiB in all),
# across every engine of the process, and none on a free-threaded build (no spare); what
# sits in the pool holds no reference to anything (see _spare), so it keeps no engine, socket,
# buffer or event alive.
_IOV_SPARE: Final[Callable[[list[Any], type, int], list[Any]] | None] = (
    None if _iovsend_module is None or not _NATIVE else getattr(_iovsend_module, "spare", None)
)
_OV_POOL: Final[list[WSAOverlapped]] = []
_OV_POOL_MAX: Final = 1024


def marked_closed(sock: object) -> bool:
    """``bool(getattr(sock, "_closed", False))``: ``close()`` or ``detach()`` was called on the
    object (S5.11; the descriptor may stay open a while, see ``_sockutil.is_closed``). Compiled,
    read straight from the slot: the getattr cost ~210 instructions a send (issue 11). The hot
    paths (post_list, post_message_list, the flush loops) spell the same test inline, since an
    interpreted call costs a frame (pure W4 posted: +4% through this function)."""
    if _IOV_MARKED_CLOSED is not None:
        return _IOV_MARKED_CLOSED(sock)
    return bool(getattr(sock, "_closed", False))


# Queue depth from which post_list captures lists untracked, and untracks the overlapped too:
# below it the collector's passes over the few objects alive cost less than the calls (~150
# instructions a send, W3 posted with 64 in flight; callgrind, issue 11), above it they cost
# more (~300 saved at 10,000 for the lists, ~490 more for the overlapped, whose own promotions
# brought full collections sooner).
_UNTRACK_DEPTH: Final = 256
# Python 3.11: ``sys.get_asyncgen_hooks().firstiter.__self__ is obj`` without the hooks tuple
# (see runs_here and _iovsend.c); None in the plain-Python build and on 3.12+.
_FIRSTITER_SELF_IS: Final[Callable[[object], bool] | None] = (
    None if _iovsend_module is None else getattr(_iovsend_module, "firstiter_self_is", None)
)


def _stream_overlapped(engine: SendEngine, bufs: list[Any], nbytes: int, done: bool) -> WSAOverlapped:
    """A stream send with no flags, routine or event, every field set once: pending, or (with
    ``done``) completed immediately with every byte transferred and its buffers released."""
    if _NATIVE:
        # The native __init__ has already stored no error, routine, waiter or events: each
        # store again costs a decref and an incref (issue 11: ~50 instructions a send). One
        # from the pool holds the same (_spare); its other fields are set below, as a new one's.
        # (Compiled, nothing runs between the test and the pop: no other thread can empty it.)
        ov = _OV_POOL.pop() if _OV_POOL else WSAOverlapped()
    else:
        ov = _new_overlapped(WSAOverlapped)
        ov._error = 0
        ov._exc = None
        ov._routine = None
        ov._waiter = None
        ov._tevent = None
        ov._event = None
    ov._bufs = _EMPTY if done else bufs
    ov._nbytes = nbytes
    ov._flags = 0
    ov._more = False
    ov._pending = not done
    ov._completed_immediately = done
    ov._transferred = nbytes if done else 0
    ov._engine = engine
    return ov


def _spare(spare: list[WSAOverlapped]) -> None:
    """Into the pool (see _OV_POOL): completed sends that only their ``done`` list refers to.

    Each gets back what ``WSAOverlapped.__init__`` stores and ``_stream_overlapped`` does not
    (it sets the rest at every take), so a reused one is what a new one would be, and it drops
    every reference it held (its engine, a done waiter), so the pool keeps nothing alive.
    """
    for ov in spare:
        ov._engine = None
        # (Tested before each store: a store costs an incref and a decref, and a bare send's
        # fields are almost always as new already. _complete left _bufs empty.)
        if ov._event is not None:
            ov._event = None
        if ov._error:
            ov._error = 0
        if ov._exc is not None:
            ov._exc = None
        if ov._routine is not None:
            ov._routine = None
        if ov._waiter is not None:
            ov._waiter = None
        if ov._tevent is not None:
            ov._tevent = None
        if ov._dest is not None:
            ov._dest = None
    _OV_POOL.extend(spare)


# What post_list(keep=False) returns for a send nobody sees complete (see there): a fresh
# overlapped that is never posted, awaited or handed out.
_UNSEEN: Final = WSAOverlapped()


class SocketSlot:
    """The registry's entry for one socket: its current engine and its owner (SPEC S5.11).

    Internal; every field is read and written under ``OWNERSHIP.lock``. ``owner`` is the
    engine that owns the socket (ENGINE), ``sync_owner`` the thread ident of a blocking
    ``wsa_send_sync`` that does (SYNC); both empty is FREE. ``waiting`` holds engines with
    sends queued that wait for the socket; ``sync_waiting`` counts the threads whose blocking
    sends wait for it. ``closing`` is set for good by ``closesocket`` before it aborts
    anything: from then on nobody can claim the socket (S6.1). ``send_shut`` is set for good by
    ``shutdown(SD_SEND)`` and ``write_eof()`` when they are called: the sends already queued
    drain, and every new claim fails WSAESHUTDOWN (S6.2). ``cut`` is set for good when a loop's
    end aborted a stream send of which the kernel had taken a part (S5.12): the stream carries
    a truncated send, so no byte may follow it, as after closesocket's cut (S6.1): every claim
    fails WSAECONNABORTED, and sends waiting for the socket are aborted with it.
    """

    def __init__(self, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        self.engine: SendEngine | None = None
        self.owner: SendEngine | None = None
        self.sync_owner = 0
        self.waiting: list[SendEngine] = []
        self.sync_waiting = 0
        self.max_pending = max_pending
        self.closing = False
        self.send_shut = False
        self.cut = False
        #: The engine of a transport living on the socket (closesocket ends the transport).
        self.transport_engine: SendEngine | None = None
        #: The registry's weak reference to the socket, whose callback forgets the socket when
        #: it dies (set by ``_api.slot_for``; the slot keeps it alive while it is registered).
        self.sockref: weakref.ReferenceType[socket.socket] | None = None


def _new_rlock() -> Any:
    """The registry's reentrant lock: ``_iovsend.rlock()`` compiled, ``threading.RLock()`` else.

    The same lock, methods and Condition support; the compiled one's ``acquire()`` with no
    argument skips the argument parsing threading's does on every call (~430 instructions on
    Python 3.11, seven round trips a server's connection: issue 11, workload HC; see
    _iovsend.c).
    """
    # (getattr: a free-threaded build's module has none, see _iovsend.c)
    make = None if _iovsend_module is None else getattr(_iovsend_module, "rlock", None)
    if make is not None:
        return make()
    return threading.RLock()


class Ownership:
    """The registry's lock and the condition that wakes threads waiting for a socket."""

    def __init__(self) -> None:
        self.lock = _new_rlock()
        self.changed = threading.Condition(self.lock)

    def reset(self) -> None:
        """In a forked child: fresh primitives (another thread may have held them at fork)."""
        self.lock = _new_rlock()
        self.changed = threading.Condition(self.lock)


OWNERSHIP: Final = Ownership()

# The registry lock's own methods, called as functions (``_RLOCK_ACQUIRE(lock)``, then
# ``_RLOCK_RELEASE(lock)`` in a ``finally``) where a connection's set-up and close take the lock
# (issue 11, workload HC: seven round trips a connection). Compiled, ``with lock:`` looked
# ``__enter__`` and ``__exit__`` up as bound methods and passed ``__exit__`` a tuple of three
# Nones: ~1,300 instructions a round trip, against ~650 for these two calls with threading's
# RLock (most of it ``acquire``'s own argument parsing) and ~200 with the compiled build's
# (``__enter__``: its acquire without arguments; see _new_rlock). The same lock, the same calls.
_RLOCK_ACQUIRE: Final = type(OWNERSHIP.lock).__enter__
_RLOCK_RELEASE: Final = type(OWNERSHIP.lock).release


def take_from(owner: SendEngine, dead: list[SendEngine]) -> bool:
    """Under ``OWNERSHIP.lock``: revoke ``owner``'s ownership if it is provably idle (S5.11).

    True when the socket is FREE now. An owner whose loop is closed can never send again: it is
    dropped, and if it had sends pending it is appended to ``dead`` (to :func:`abandon` once the
    lock is released).
    """
    slot = owner._slot
    if owner.loop.is_closed():
        owner._owned = False
        slot.owner = None
        if owner._ops or owner._writer is not None:
            dead.append(owner)
            mark_cut(owner)
        return not slot.cut
    owner._owned = False  # store, then load _sending: see the theory of operation
    # An open batch window is not idle for another thread: the owner's loop may be queueing
    # into it right now (S5.4). From the owner's own thread nothing can be (the window is only
    # written there), and its next post claims again (see post_list). Nor from a loop that is
    # not running: a stock asyncio loop stopped in the iteration that opened the window never
    # ran its tick, and the window stayed open, empty, for as long as the loop stayed stopped:
    # a blocking send from another thread waited all that time, another loop's send was
    # WSAEINPROGRESS (adversarial pass). Sends its thread posts later find the socket taken
    # (post_list, _flush) and claim it again.
    if (
        owner._sending
        or owner._ops
        or owner._writer is not None
        or (owner._batch_open and not owner.in_loop_thread() and owner.loop.is_running())
    ):
        owner._owned = True
        return False
    slot.owner = None
    return True


#: What a send on a socket whose stream a loop's end cut says (see ``SocketSlot.cut``).
CUT_DETAIL: Final = (
    "a send on this socket was cut short when its event loop ended (S5.12): "
    "no byte may follow it on the stream; close the socket"
)


def mark_cut(engine: SendEngine) -> None:
    """Under ``OWNERSHIP.lock``: ``engine``'s loop ended and its sends are about to be aborted
    (S5.12); if the kernel took part of its head send, nothing may follow on the stream (see
    ``SocketSlot.cut``). Before the abort: the socket is freed in the same locked step, and a
    thread or engine waiting for it sent its bytes right after the truncated send (adversarial
    pass: a blocking send's 1,000 bytes after 8,064 of a 300,000-byte frame)."""
    if engine._queue.head_consumed > 0:
        engine._slot.cut = True


def _drop_closed_waiters(slot: SocketSlot, dead: list[SendEngine]) -> None:
    """Under ``OWNERSHIP.lock``: engines in line whose loop is closed can never send (S5.12):
    out of the line, and to ``dead`` (abandoned once the lock is released) if they hold sends."""
    for engine in [e for e in slot.waiting if e.loop.is_closed()]:
        slot.waiting.remove(engine)
        if engine._ops:
            dead.append(engine)


def notify_locked(slot: SocketSlot, dead: list[SendEngine]) -> None:
    """Under ``OWNERSHIP.lock``: the owner let go; wake waiting threads and engines."""
    OWNERSHIP.changed.notify_all()
    for engine in slot.waiting:
        try:
            engine.loop.call_soon_threadsafe(engine._retry_claim)
        except RuntimeError:  # its loop is closed: its sends can never go
            dead.append(engine)
    for engine in dead:
        if engine in slot.waiting:
            slot.waiting.remove(engine)


def abandon(engines: list[SendEngine], warn_on: asyncio.AbstractEventLoop | None = None, raising: bool = True) -> None:
    """Abort the pending sends of engines whose loop ended (S5.12), with a ResourceWarning.

    Any thread may call it (a waiter of a loop closed with a bare ``loop.close()`` does, see
    ``_overlapped._wait_watching``): each queue is taken under ``OWNERSHIP.lock``, so when two
    callers race over one engine one of them aborts it (and warns), the other finds it empty.
    The warnings come after every abort, and never fail a user's call: that call (a send that
    took the socket over, a sync send, a look at a send's status) is not what they are about.
    From a callback of a loop (the default, ``raising``) a warning that the filters make an
    error is raised there, and the loop's exception handler gets it. With ``warn_on`` (a
    running loop, from its own thread) they are given in a callback of that loop. With
    ``raising=False`` (a user's call in any thread, no loop to give them to) such an error goes
    to ``sys.unraisablehook``, as CPython reports a ResourceWarning it cannot raise (one from a
    ``__del__``); before, ``wsa_send_sync`` raised it after it had claimed the socket, and the
    socket stayed claimed by that thread for good.
    """
    aborted: list[tuple[socket.socket | None, int]] = []
    for engine in engines:
        comps: list[SendCompletion] = []
        with OWNERSHIP.lock:  # (no `continue` in here: mypyc cannot compile it in a with)
            count = len(engine._queue)
            if count:
                engine._remove_writer()
                comps = engine._queue.fail()
        if not count:
            continue
        engine._fail_ops(comps, WSAErrorCode.WSA_OPERATION_ABORTED, None)
        aborted.append((engine._sockref(), count))
    if aborted and warn_on is not None and not warn_on.is_closed():
        warn_on.call_soon(_warn_abandoned, aborted, True)
    else:
        _warn_abandoned(aborted, raising)


def _warn_abandoned(aborted: list[tuple[socket.socket | None, int]], raising: bool) -> None:
    for sock, count in aborted:
        # (A socket the caller dropped with its sends pending is gone by now: say so, not None.)
        where = repr(sock) if sock is not None else "a socket since garbage-collected"
        try:
            warnings.warn(
                f"event loop ended with {count} overlapped send(s) pending on {where}: aborted (S5.12)",
                ResourceWarning,
                stacklevel=3,
            )
        except ResourceWarning as exc:
            if raising:
                raise
            _unraisable(exc, "Exception ignored in wsasend (pending sends of an ended event loop)")


def _unraisable(exc: BaseException, message: str) -> None:
    """Report ``exc`` as CPython reports an exception it cannot raise: ``sys.unraisablehook``.

    CPython's own hook takes only its own argument type, which Python code cannot make, so
    with that hook in place this prints what it prints; another hook (pytest's, a user's) is
    called with an object that has the documented attributes.
    """
    hook = sys.unraisablehook
    if hook is sys.__unraisablehook__:
        print(f"{message}:", file=sys.stderr)
        traceback.print_exception(exc, file=sys.stderr)
        return
    args = types.SimpleNamespace(
        exc_type=type(exc), exc_value=exc, exc_traceback=exc.__traceback__, err_msg=message, object=None
    )
    hook(args)


# The queue flags of a file send (SPEC S9.3): a value no sendmsg flag combination has, so the
# queue never coalesces a file send with another and the flush can tell it at the head.
_FILE_OP: Final = 1 << 40
# The queue-flags mark of a message with its own destination or control data (S8.7): above
# every sendmsg flag, stripped before the call; the flush then reads the message's ``_dest``.
_DEST_OP: Final = 1 << 41
# errnos of a sendmsg to a message's own destination that are that destination's fault: they
# fail that message alone (S8.7).
_DEST_ERRNOS: Final = frozenset(
    {
        errno.EACCES,
        errno.EPERM,
        errno.ENETUNREACH,
        errno.EHOSTUNREACH,
        errno.EINVAL,
        errno.EADDRNOTAVAIL,
        errno.EAFNOSUPPORT,
        errno.ENOENT,
        errno.ECONNREFUSED,
    }
)
# Most bytes one os.sendfile call is asked for: Linux moves at most 0x7ffff000 per call anyway.
_SENDFILE_MAX: Final = 0x7FFFF000
# errnos of os.sendfile that are the file's fault (a file that cannot be sent that way, a read
# error), not the socket's: they fail the file send alone (SPEC S9.3).
_FILE_ERRNOS: Final = frozenset({errno.EINVAL, errno.ESPIPE, errno.EIO, errno.EOVERFLOW, errno.ENOSYS})


class FileOverlapped(WSAOverlapped):
    """An overlapped file send (TransmitFile's semantics, SPEC S9.3): ``nbytes`` bytes of a
    file from ``offset``, sent by ``os.sendfile`` when it reaches the head of the queue.

    Made by :meth:`SendEngine.post_file`; awaiting it gives the bytes consumed. A file found
    shorter than ``nbytes`` at send time completes with what it had.
    """

    __slots__ = ("_file", "_file_fd", "_offset")

    def __init__(self, file: object, fd: int, offset: int) -> None:
        super().__init__()
        self._file = file  # kept alive until the send completes
        # The engine's own duplicate of the file's descriptor (see post_file), -1 once released.
        self._file_fd = fd
        self._offset = offset

    def _release_file(self) -> None:
        """The send ended: let go of the file and close the duplicate (once)."""
        self._file = None
        fd = self._file_fd
        if fd >= 0:
            self._file_fd = -1
            os.close(fd)


# Engine states. OPEN accepts posts; DRAINING refuses them (WSAESHUTDOWN) and runs its
# on-drained callback when the queue empties; CLOSED refuses them and has nothing queued.
# (Final: compiled, a module global that is not is a dict lookup at every use, issue 11.)
_OPEN: Final = 0
_DRAINING: Final = 1
_CLOSED: Final = 2


class _BatchTick:
    """The batch windows of one loop: one ``call_soon`` per loop iteration closes them all.

    Issue 11: with one ``call_soon`` per engine per window, a server answering 50 connections
    in one iteration paid 50 loop callbacks; now it pays one, whatever the number of engines.
    Holds no reference to the loop (it is the value of a weak-keyed map of loops); the engines
    in ``engines`` hold it only until the tick runs. One per loop and process (a forked child
    makes new ones), it also records whether ``_api._watch_loop`` watches the loop's end.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.engines: list[SendEngine] = []
        self.scheduled = False
        # Weakly, as said above: what _tick_for's shortcut compares with (see there).
        self.loopref = weakref.ref(loop)
        # True once the loop is in _api._WATCHED (set there).
        self.watched = False

    def add(self, engine: SendEngine) -> bool:
        """Close ``engine``'s window at the loop's next tick; False (nothing recorded) when
        the loop is not running: a window there would hold sends until the loop runs again,
        and lose them if it is closed instead. asyncio's ``write()`` outside a running loop
        (a program's first lines before ``run_until_complete``, its last ones after the loop
        stopped) hands each write to the kernel at once (adversarial pass: only the first of
        three such writes went out, and none after it if the loop was then closed)."""
        loop = engine.loop
        if not loop.is_running():  # (also a closed loop, whose call_soon would raise)
            # (Asked with a tick scheduled too: one a loop stopped before running holds for
            # as long as it stays stopped; adversarial pass. Once per engine and iteration.)
            return False
        if not self.scheduled:
            loop.call_soon(self.run)
            self.scheduled = True
        self.engines.append(engine)
        return True

    def run(self) -> None:
        self.scheduled = False
        engines = self.engines
        self.engines = []
        for engine in engines:
            try:
                engine._close_batch()
            except Exception as exc:  # pragma: no cover - _flush reports its own errors
                # One engine's failure must not leave the others' windows open for good.
                engine.loop.call_exception_handler(
                    {"message": "wsasend: closing a batch window failed", "exception": exc}
                )


_TICKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _BatchTick] = weakref.WeakKeyDictionary()
_TICKS_LOCK = threading.Lock()


class _LastTick:
    """The tick ``_tick_for`` gave last; ``tick`` None when there is none to trust.

    A new engine (a server's new connection) asked ``_TICKS`` for its loop's tick: a
    WeakKeyDictionary, whose ``get`` is Python code that makes a weak reference to look up
    (~1,500 instructions a connection, issue 11, workload HC). Consecutive engines are mostly
    made on one loop: the last tick is used when its own weak reference still gives this loop
    (a dead loop's gives None, so a new loop at a reused address never matches). One
    attribute, read and written whole: a thread that loses a race only misses the shortcut.
    """

    __slots__ = ("tick",)

    def __init__(self) -> None:
        self.tick: _BatchTick | None = None


_LAST_TICK: Final = _LastTick()


def _ticks_after_fork() -> None:
    """In a forked child: no tick of the parent's, and a fresh lock (another thread of the
    parent may have held it at the fork: the child's first send on a new loop then waited
    for it for ever, adversarial pass)."""
    global _TICKS_LOCK
    _TICKS.clear()
    _LAST_TICK.tick = None
    _TICKS_LOCK = threading.Lock()


# S5.12: a forked child inherits no engine, so no tick either (a fresh one is made on demand).
os.register_at_fork(after_in_child=_ticks_after_fork)


def ticked_engines() -> list[SendEngine]:
    """Every engine waiting for a batch tick, on any loop (``_api._let_go_at_exit``)."""
    return [engine for tick in list(_TICKS.values()) for engine in tick.engines]


def closed_loops_with_windows() -> list[asyncio.AbstractEventLoop]:
    """The closed loops whose batch tick still holds engines (see :func:`take_stranded`)."""
    with _TICKS_LOCK:  # (insertions take it; a copy, as another thread may add meanwhile)
        ticks = list(_TICKS.items())
    return [loop for loop, tick in ticks if tick.engines and loop.is_closed()]


def take_stranded(loop: asyncio.AbstractEventLoop) -> list[SendEngine]:
    """The engines whose batch window ``loop``, now closed, never closed: taken off its tick.

    A loop stopped in the iteration that posted sends and then closed with a bare ``close()``
    never runs the tick's ``call_soon``: the tick kept its engines, each engine its loop, and
    the loop, the key of the weak-keyed ``_TICKS``, so never died: engines, queued buffers and
    descriptor duplicates for good (review, stop 51). Empty for a loop still open."""
    if not loop.is_closed():
        return []
    tick = _TICKS.get(loop)
    if tick is None or not tick.engines:
        return []
    engines = tick.engines
    tick.engines = []
    tick.scheduled = False
    for engine in engines:
        # What the tick's run would have done first (_close_batch), without its flush on a
        # closed loop. An engine whose bytes all went (a write in the callback that stopped the
        # loop) has nothing to abort, and its hold on the transport kept the socket, so its
        # registry slot, so the engine, for good: the peer never saw the close (review, stop 51).
        engine._off_tick()
        if engine._writer is None and not engine._queue and engine._dup is not None:
            engine._release_dup()
    return engines


def flush_windows(loop: asyncio.AbstractEventLoop) -> None:
    """Close ``loop``'s open batch windows now: its ``run_forever`` returned (S5.1, S9.1).

    A window closes at the loop's next tick; a loop stopped in the iteration that opened it
    (``loop.stop()``, a ``SystemExit`` out of a callback) runs no tick, and what it held never
    left, where asyncio's ``write()`` had handed it to the kernel (adversarial pass: the last
    lines of a program lost, and its transport, held by the window, never closed).
    """
    tick = _TICKS.get(loop)
    if tick is not None and tick.scheduled and not loop.is_closed():
        tick.run()


def _tick_for(loop: asyncio.AbstractEventLoop) -> _BatchTick:
    last = _LAST_TICK.tick
    if last is not None and last.loopref() is loop:
        return last
    tick = _TICKS.get(loop)
    if tick is None:
        with _TICKS_LOCK:
            tick = _TICKS.get(loop)
            if tick is None:
                tick = _TICKS[loop] = _BatchTick(loop)
    _LAST_TICK.tick = tick
    return tick


class SendEngine:
    """Ordered, coalescing overlapped sends for one socket on one loop. Internal.

    Hooks for ``WSATransport``: ``on_complete(engine, ops)`` after every bulk completion,
    ``on_error(engine, exc)`` after a fatal send error failed the queue, ``on_progress(engine)``
    (see there). Each is given the engine, so that one module-level function serves every
    transport (it finds its transport through ``keeper``) instead of three closures made per
    connection (issue 11, workload HC: four objects made and freed a connection).
    """

    # Slots, not a __dict__: interpreted (the pure build), an instance with more than 30
    # attributes outgrows CPython's shared-key dict and every attribute read becomes a dict
    # lookup (pure W4 posted: +5% of instructions with 34; issue 11). Compiled, mypyc lays the
    # attributes out as a C struct either way.
    __slots__ = (
        "_batch_cap",
        "_batch_open",
        "_batch_scheduled",
        "_current",
        "_dup",
        "_dup_check_scheduled",
        "_dup_fd",
        "_dup_retry",
        "_held",
        "_info",
        "_inherited",
        "_keep",
        "_key",
        "_loop_records_thread",
        "_merge_seq",
        "_merge_tail",
        "_on_drained",
        "_ops",
        "_owned",
        "_owner_thread",
        "_peer_known",
        "_queue",
        "_release_wanted",
        "_sending",
        "_slot",
        "_sockref",
        "_state",
        "_tick",
        "_udp_max",
        "_unix_backoff",
        "_untracked",
        "_watchdog",
        "_writer",
        "cork",
        "hot",
        "hot_messages",
        "keeper",
        "loop",
        "max_pending",
        "message_mode",
        "notify_immediate",
        "on_complete",
        "on_error",
        "on_progress",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        *,
        max_pending: int = DEFAULT_MAX_PENDING,
        slot: SocketSlot | None = None,
        peer: bool = False,
    ) -> None:
        self.loop = loop
        # Ownership (S5.11, see the theory of operation): the socket's registry slot; whether
        # this engine owns the socket; True while a fast path may be about to call sendmsg;
        # and whether a waiting thread asked this engine to let go once idle.
        self._slot = slot if slot is not None else SocketSlot(max_pending)
        self._owned = False
        self._sending = False
        self._release_wanted = False
        # The slot's weak reference to the socket when it has one (the registry's, whose
        # callback forgets the slot as the socket dies): a second one per socket was an object
        # more made and freed a connection (issue 11, workload HC). Either only reads the socket.
        ref = self._slot.sockref
        self._sockref = ref if ref is not None and ref() is sock else weakref.ref(sock)
        # The registry's key for the socket (its id) and whether this engine is the socket's
        # current engine there: True exactly while _api._ENGINES[self._key] is self (kept by
        # _api under the registry lock). wsa_send trusts its last-engine shortcut only then.
        self._key = id(sock)
        self._current = False
        self._info = info = SocketInfo(sock, peer)
        self.message_mode = is_message_kind(info.type)
        self._udp_max = max_message_size(sock) if self.message_mode and info.family in (INET, INET6) else 0
        self._queue: SendQueue[WSAOverlapped] = SendQueue(message_mode=self.message_mode, solo_flags=LINUX_OOB)
        # Datagram sockets: True once getpeername() found a peer (see _post_message).
        self._peer_known = False
        # The last send queued by a transport's write()/writelines(), which later ones may join
        # while it is still the queue's tail (see post_list).
        self._merge_tail: WSAOverlapped | None = None
        self._merge_seq = 0  # the queue's ``submitted`` when _merge_tail was submitted
        # The queue's deque, read (never changed) here for C-speed emptiness tests on the hot path.
        self._ops = self._queue._ops
        # True while post_list() may take a stream send without the general checks: a stream
        # socket whose engine is open. Kept in sync by _set_state().
        self.hot = not self.message_mode
        # The same for post_message_list() on a message socket (issue 11 item 4).
        self.hot_messages = self.message_mode
        self.max_pending = max_pending
        self.cork = False
        self._state = _OPEN
        # True in a forked child for an engine made in the parent (see forget_after_fork).
        self._inherited = False
        # A transport's weak reference to itself. While sends wait, the transport is held
        # strongly, as asyncio's writer registration holds its transport: by the writer
        # registration (see _add_writer), and, while they wait for the batch window's tick or
        # for the socket's owner, by ``_keep`` (released when that tick comes, or they go).
        self.keeper: Callable[[], object] | None = None
        self._keep: object = None
        self._writer: socket.socket | None = None  # the socket object registered with add_writer
        # The batch window (see the theory of operation): while _batch_open, posts are only
        # queued; _batch_scheduled says a call_soon(_close_batch) is already on the loop, so
        # reopening the window in the same iteration costs nothing.
        self._batch_open = False
        self._batch_scheduled = False
        # The loop's shared tick that closes the windows of this iteration (see _BatchTick).
        self._tick = _tick_for(loop)
        # True while a transport delivers received data: a window opened now is closed by
        # release() when that callback returns, not by the tick.
        self._held = False
        # Whether on_complete hears of sends that completed immediately (S5.1). A transport
        # that needs no send_completed turns it off: such a send has nothing more to report
        # (its bytes are gone, so it can neither resume a paused protocol nor drain a close).
        self.notify_immediate = True
        # Most bytes the next stream batch gathers (halved to what the kernel takes, doubled
        # back while it takes everything; see _flush).
        self._batch_cap = BATCH_BYTES
        # Whether post_list ever untracked an overlapped (see _IOV_GC_UNTRACK).
        self._untracked = False
        self._watchdog: asyncio.TimerHandle | None = None
        self._owner_thread = _get_ident()
        # How runs_here() tells that self.loop runs in the calling thread (see there).
        self._loop_records_thread = isinstance(loop, _BASE_EVENT_LOOP)
        # The engine's own duplicate of the socket's descriptor (see "Descriptors" above): held
        # only while a writer is registered or a socket with a timeout is being sent through.
        self._dup: socket.socket | None = None
        self._dup_fd = -1
        self._dup_check_scheduled = False
        # Set while queued sends wait for a descriptor to duplicate (see _add_writer: EMFILE).
        # (A flag, not the handle: the handle holds the transport, and the engine, which the
        # registry keeps, would keep both after a bare loop.close(); the loop drops it then.)
        self._dup_retry = False
        # The pause before an unconnected AF_UNIX datagram send that met a full receiver is
        # tried again (see _retry_unix_later); 0 once one went through.
        self._unix_backoff = 0.0
        self.on_complete: Callable[[SendEngine, list[WSAOverlapped]], object] | None = None
        # Called when a sendmsg took bytes but completed no send (a transport sets it, to check
        # the low-water mark while its protocol is paused, as asyncio does after each send).
        self.on_progress: Callable[[SendEngine], object] | None = None
        self.on_error: Callable[[SendEngine, WSAError], object] | None = None
        self._on_drained: Callable[[], object] | None = None

    # -- inspection ---------------------------------------------------------------------------

    @property
    def sock(self) -> socket.socket | None:
        return self._sockref()

    def in_loop_thread(self) -> bool:
        return _get_ident() == self._owner_thread

    def runs_here(self) -> bool:
        """True when ``self.loop`` is running in the calling thread: it is then the thread's
        running loop, which ``wsa_send`` would get from ``asyncio.get_running_loop()``.

        Why not ask asyncio: on Python 3.11 ``get_running_loop()`` makes a ``getpid()`` system
        call on every call (its fork check; 3.12+ do not), about 0.2 us here, 15% of a posted
        send (issue 11). False means "ask asyncio", never "no loop", so a False where True was
        possible only costs that call. True must never be wrong, and is not:

        - an asyncio loop (``BaseEventLoop``) sets ``_thread_id`` to the running thread's
          ident in ``run_forever`` before it becomes the running loop, and back to None as it
          stops; a thread runs at most one loop at a time;
        - uvloop keeps no such attribute, but its ``run_forever``, like asyncio's, installs
          its own bound methods as the thread's async-generator hooks while it runs and
          restores the previous hooks when it stops (``sys.get_asyncgen_hooks`` is per thread);
          if anything else replaced them, the answer is only False (the compiled build reads
          the hook in C, ``_iovsend.firstiter_self_is``: the hooks tuple and its lookups cost
          about 900 instructions a send). The compiled build asks the hook first on both
          loops, and an asyncio loop's thread id only when the hook is not the loop's;
        - in a child process after ``fork()`` the engines are gone (``_api._reset_after_fork``),
          so nothing here is asked about a loop inherited from the parent.

        From Python 3.12 on, asyncio's own answer costs no syscall and is as cheap as either
        check above, so it is asked directly.
        """
        loop = self.loop
        if _RUNNING_LOOP_IS_CHEAP:
            return _running_loop() is loop
        if _FIRSTITER_SELF_IS is not None:
            # (the hooks' test in C, without the hooks tuple; asyncio's run_forever installs its
            # hooks too, and this costs a fifth of the thread test below: callgrind, a send
            # behind a slow reader on asyncio, ~700 instructions -> ~140, issue 11)
            if _FIRSTITER_SELF_IS(loop):
                return True
            if not self._loop_records_thread:
                return False
        elif not self._loop_records_thread:
            return getattr(_get_asyncgen_hooks().firstiter, "__self__", None) is loop
        # (the hooks were replaced while the loop runs, or the pure build: asyncio's thread id)
        return getattr(loop, "_thread_id", None) == _get_ident()

    def waits_for_an_end(self) -> bool:
        """True when MSG_PARTIAL pieces at the tail wait for a send that ends them (S4.4: an
        open message, or held cork pieces): this engine cannot become idle by itself."""
        queue = self._queue
        return queue.has_open_message() if self.message_mode else queue.held > 0

    def pending_count(self) -> int:
        return len(self._queue)

    def unsent_bytes(self) -> int:
        return self._queue.unsent_bytes

    def is_idle(self) -> bool:
        return not self._queue and self._writer is None

    def accepting(self) -> bool:
        return self._state == _OPEN

    # -- ownership (S5.11; see the theory of operation) ---------------------------------------

    def _claim(self, queued: bool) -> bool:
        """In the loop's thread: make this engine the socket's owner; True when it is.

        False when a sync send owns the socket, or (``queued``: this engine already accepted
        sends that must go out) another engine is busy with it: this engine then waits, and is
        woken by ``_retry_claim`` when the owner lets go.

        A socket that ``closesocket`` is closing is never claimed (S6.1): sends queued here
        are aborted now, with none of their bytes sent. ``closesocket`` aborts the owner's
        sends and lets the socket go before it closes the descriptor; claimed in between, the
        socket carried this engine's bytes after the owner's cut send (a stress run).

        Raises:
            WSAError: WSAEINPROGRESS when another loop's engine is busy with the socket and
                nothing is queued here (S5.10); WSAENOTSOCK when nothing is queued here and
                the socket is being closed.
        """
        if self._inherited:
            return False  # S5.12: the parent's engine never sends in a forked child
        dead: list[SendEngine] = []
        closing = cut = False
        with OWNERSHIP.lock:
            if self._owned:
                return True
            slot = self._slot
            owner = slot.owner
            closing = slot.closing
            if slot.waiting:
                _drop_closed_waiters(slot, dead)
            # Engines waiting in line go first: a newcomer that took a free or idle socket
            # ahead of them left them waiting for ever once posts stopped (their retry comes
            # only when an owner lets go; adversarial pass, 4 loops on one socket).
            owned = (
                not closing
                and not slot.cut
                and slot.sync_owner == 0
                and (not slot.waiting or self in slot.waiting)
                and (owner is None or owner is self or take_from(owner, dead))
            )
            cut = slot.cut  # (after take_from, which may have found the cut)
            if owned:
                slot.owner = self
                self._owned = True
                if self in slot.waiting:
                    slot.waiting.remove(self)
                if slot.sync_waiting:
                    # A thread waits for the socket: let go once idle. Taken from an idle
                    # owner the thread had asked (its flag stayed behind with it), the socket
                    # was kept by this engine and the thread waited for ever (adversarial pass).
                    self._release_wanted = True
            elif closing:
                if self in slot.waiting:
                    slot.waiting.remove(self)
                if not queued:
                    # (errno EBADF, as a socket closed behind our back: for a transport's
                    # write() the connection is gone, connection_lost, not an exception.)
                    raise WSAError(
                        WSAErrorCode.WSAENOTSOCK,
                        errno=errno.EBADF,
                        detail="the socket is closed or being closed (closesocket, its transport, WSACleanup)",
                    )
            elif cut:
                if self in slot.waiting:
                    slot.waiting.remove(self)
                if not queued:
                    raise WSAError(WSAErrorCode.WSAECONNABORTED, errno=errno.ECONNABORTED, detail=CUT_DETAIL)
            elif not queued and slot.send_shut:
                # Another engine drains what was queued before shutdown(SD_SEND) or
                # write_eof(): a new send is refused as Windows refuses it, not "in progress".
                raise WSAError(WSAErrorCode.WSAESHUTDOWN, detail="sends on this socket were shut down")
            elif slot.sync_owner == 0 and not queued and self.keeper is None:
                # (A transport's engine waits in line instead: asyncio's write() never raises
                # for a busy socket, and WSAEINPROGRESS out of write() ended the application's
                # writer; adversarial pass.)
                raise WSAError(WSAErrorCode.WSAEINPROGRESS, detail="the socket has sends pending on another event loop")
            else:
                if owner is not None and slot.sync_owner == 0:
                    owner._release_wanted = True
                if self not in slot.waiting:
                    slot.waiting.append(self)
                if self.keeper is not None:
                    # Sends wait for the owner, with no registration or tick to hold the
                    # transport (see _open_batch): a first write behind a thread's blocking
                    # send was collected with its transport, the socket closed under the thread.
                    self._keep = self.keeper()
        abandon(dead, self.loop)  # (its warnings soon, not in the caller's send: see abandon)
        if closing:
            self.abort()
        elif cut and not owned:
            self._abort_all(WSAErrorCode.WSAECONNABORTED)  # (see SocketSlot.cut)
        return owned

    def _claim_for_pieces(self, queue: SendQueue[WSAOverlapped]) -> None:
        """A MSG_PARTIAL piece (S4.4) claims the socket when nothing here has yet (S5.11).

        Held pieces never claimed it before: another loop's engine that owned the socket, idle,
        kept it, sent a send posted after the pieces ahead of them, and made itself the
        socket's current engine, so this loop's next send went to a new engine of its own and
        out alone, the pieces held for ever (adversarial pass). Claimed, the pieces keep the
        socket until their run ends; another loop's post meanwhile is WSAEINPROGRESS (S5.10),
        and behind a blocking sync send the engine waits in line for it.

        Raises:
            WSAError: WSAEINPROGRESS when another loop's engine is busy with the socket.
        """
        if not (self._owned or queue):
            self._claim(False)

    def mark_transport(self) -> None:
        """A transport lives on this engine: the slot names it for ``closesocket`` (S6.1).

        A free socket is claimed here too (S5.11), as the transport's first send would claim it:
        a transport's engine is almost always its socket's only sender, and its first send then
        takes the fast path (issue 11: a server's first reply on a connection went through
        ``post`` to claim, ~6,000 instructions more). Owning an idle socket takes nothing from
        anyone: any other claimant takes it from an idle owner (``take_from``), as ever.
        """
        lock = OWNERSHIP.lock
        _RLOCK_ACQUIRE(lock)  # (see _RLOCK_ACQUIRE)
        try:
            slot = self._slot
            slot.transport_engine = self
            if (
                slot.owner is None
                and slot.sync_owner == 0
                and not slot.sync_waiting
                and not slot.waiting
                and not slot.closing
                and not slot.send_shut
                and not slot.cut
                and not self._inherited
            ):
                slot.owner = self
                self._owned = True
        finally:
            _RLOCK_RELEASE(lock)

    def unmark_transport(self) -> None:
        lock = OWNERSHIP.lock
        _RLOCK_ACQUIRE(lock)  # (see _RLOCK_ACQUIRE)
        try:
            if self._slot.transport_engine is self:
                self._slot.transport_engine = None
        finally:
            _RLOCK_RELEASE(lock)

    def close_to_claims(self) -> None:
        """The socket is about to be closed (a transport's abort or close): from now on nobody
        may claim it (S6.1, see ``SocketSlot.closing``). The abort that follows lets the socket
        go, and a thread sending on the transport's socket took it and sent after the cut
        write, in the iteration before the transport closed the descriptor."""
        lock = OWNERSHIP.lock
        _RLOCK_ACQUIRE(lock)  # (see _RLOCK_ACQUIRE)
        try:
            self._slot.closing = True
        finally:
            _RLOCK_RELEASE(lock)

    def wake_after_close(self) -> None:
        """The descriptor is closed: threads waiting for the socket wake and fail (S4.2)."""
        lock = OWNERSHIP.lock
        _RLOCK_ACQUIRE(lock)  # (see _RLOCK_ACQUIRE)
        try:
            if self._slot.sync_waiting:
                OWNERSHIP.changed.notify_all()
        finally:
            _RLOCK_RELEASE(lock)

    def _retry_claim(self) -> None:
        """The owner let go (called soon on this loop): claim the socket and send what waits."""
        if self._owned or self.loop.is_closed():
            return
        if not self._ops:
            # Its sends were cancelled while it waited: out of the line, or a blocking send
            # behind it waited for ever (a sync send needs the line empty; adversarial pass).
            dead: list[SendEngine] = []
            with OWNERSHIP.lock:
                slot = self._slot
                if self in slot.waiting:
                    slot.waiting.remove(self)
                    if slot.owner is None and slot.sync_owner == 0:
                        notify_locked(slot, dead)
                    else:
                        OWNERSHIP.changed.notify_all()
            abandon(dead, self.loop)
            return
        if self._claim(True) and self._writer is None:
            sock = self._sockref()
            if sock is not None:
                self._flush(sock)

    def _release_if_idle(self) -> None:
        """In the loop's thread: let the socket go if a waiter asked and nothing is pending."""
        if self._release_wanted and self._owned and not self._ops and self._writer is None and not self._sending:
            dead: list[SendEngine] = []
            with OWNERSHIP.lock:
                self._owned = False
                self._release_wanted = False
                slot = self._slot
                if slot.owner is self:
                    slot.owner = None
                notify_locked(slot, dead)
            abandon(dead)

    def _tx(self, sock: socket.socket) -> socket.socket:
        """The socket object to call sendmsg on: ``sock``, or the engine's timeout-free dup.

        A Python socket with a timeout polls before each ``sendmsg`` (and would block the loop
        for up to that timeout), so for such a socket we send through a socket object on our
        own duplicate of its descriptor, which has none (S5.10: the caller's object is never
        changed). A duplicate, not an alias of the same number: a number can be closed by
        another thread and handed to a new socket at any moment, a duplicate we hold cannot
        (S5.11). A socket already closed is returned as is: its ``sendmsg`` fails EBADF, which
        the caller reports (S5.2).
        """
        held = self._dup
        if held is not None and type(sock) is _PLAIN_SOCKET:
            # Held while a writer is registered: the caller's number may have been closed
            # behind our back (os.close) and handed to a new socket, which then received the
            # queued bytes, counted as sent (adversarial pass); our duplicate is still the
            # connection's. (Not for a subclass: one that overrides sendmsg, a user's wrapper
            # or a test's scripted socket, sees every send.)
            return held
        timeout = sock.gettimeout()
        if timeout is None or timeout == 0.0:
            return sock
        if self._take_dup(sock) < 0:
            return sock
        dup = self._dup
        assert dup is not None
        if not self._dup_check_scheduled:
            # Released when the engine is idle again: one dup per burst, not per send.
            self._dup_check_scheduled = True
            self.loop.call_soon(self._dup_check)
        return dup

    def _take_dup(self, sock: socket.socket) -> int:
        """Duplicate ``sock``'s descriptor for the engine; its number, -1 if ``sock`` is
        closed, or ``_NO_DESCRIPTOR`` if the process has none to spare (EMFILE, ENFILE)."""
        fd = sock.fileno()
        if fd < 0 or marked_closed(sock):
            return -1
        try:
            dup_fd = os.dup(fd)
        except OSError as exc:
            return -1 if exc.errno == errno.EBADF else _NO_DESCRIPTOR
        if sock.fileno() != fd:
            # Closed by another thread meanwhile, and ``fd`` maybe already reused: what we
            # duplicated may be someone else's socket. (A socket object never reopens, so an
            # unchanged number means ``fd`` was ``sock``'s all along.)
            os.close(dup_fd)
            return -1
        blocking = socket.getdefaulttimeout() is not None and os.get_blocking(dup_fd)
        # (The C socket's ints, as the server's accept: no enum built per property read; and
        # socket.socket(..., fileno=dup_fd) made without its interpreted __init__, ~3,000
        # instructions of each partly taken send's writer cycle, issue 11, W1 awaited.)
        dup = accepted_socket(sock_family(sock), sock_type(sock), sock.proto, dup_fd)
        if dup.gettimeout() is not None:  # socket.setdefaulttimeout() was used
            dup.setblocking(False)  # a timeout would make the dup poll; 0 never does
        if blocking:
            # That set O_NONBLOCK on the open file, which the caller's descriptor shares: put
            # the caller's mode back (S5.10; every sendmsg of ours says MSG_DONTWAIT anyway).
            os.set_blocking(dup_fd, True)
        self._dup = dup
        self._dup_fd = dup_fd
        return dup_fd

    def _release_dup(self) -> None:
        """Close the engine's duplicate (never while it is registered with the loop)."""
        dup = self._dup
        if dup is not None:
            self._dup = None
            self._dup_fd = -1
            close_socket(dup)  # (dup.close() without its interpreted steps: ours, no makefile)

    def _dup_check(self) -> None:
        self._dup_check_scheduled = False
        if self._writer is None and not self._batch_scheduled:
            self._release_dup()

    # -- posting ------------------------------------------------------------------------------

    def post(
        self,
        sock: socket.socket,
        buffers: object,
        flags: object = 0,
        overlapped: object = None,
        routine: CompletionRoutine | None = None,
        dest: Destination | None = None,
    ) -> WSAOverlapped:
        """Post one overlapped send (SPEC S5). See :func:`wsasend.wsa_send`.

        ``dest``: on a message socket, this message's own destination and control data
        (``(address or None, ancdata)``, already checked by :mod:`._dest`; S8.7), handed to
        its ``sendmsg``. Only the general path carries one (``post_list`` and
        ``post_message_list`` never do). A stream socket ignores the address (Windows'
        ``sendto`` rule) and refuses control data (WSAEINVAL, Windows' ``WSASendMsg`` rule).
        """
        # S5.11: while _sending is set, nobody takes the socket from this engine (it may be
        # about to call sendmsg); its fast paths test _owned after setting it.
        self._sending = True
        try:
            return self._post(sock, buffers, flags, overlapped, routine, dest)
        finally:
            self._sending = False

    def _post(
        self,
        sock: socket.socket,
        buffers: object,
        flags: object,
        overlapped: object,
        routine: CompletionRoutine | None,
        dest: Destination | None = None,
    ) -> WSAOverlapped:
        bufs, nbytes = normalize(buffers)
        if flags or type(flags) is not int:  # None, False, 0.0: WSAEINVAL like any non-int (S4.1)
            osflags, more = translate_flags(flags, sock, cork=self.cork)
        else:
            osflags, more = 0, False
        if self._state != _OPEN:
            raise self._refusal()
        if is_closed(sock):
            # S5.2: closed behind our back (plain sock.close()). Earlier sends may still sit in
            # the queue until the watchdog aborts them; this one must fail at the call.
            raise WSAError(WSAErrorCode.WSAENOTSOCK, errno=errno.EBADF, detail="the socket is closed")
        if not nbytes and not self.message_mode:
            check_stream_state(sock)  # S2.4: a zero-byte send checks the socket's state too
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
                    reason=f"overlapped must be a WSAOverlapped, not {type(overlapped).__name__}",
                    type_error=True,  # S3.2
                )
            if overlapped._pending:
                raise WSAError(WSAErrorCode.WSAEINVAL, detail="this WSAOverlapped is still pending (S5.5)")
            ov = overlapped
        if routine is not None and not callable(routine):
            raise WSAError(WSAErrorCode.WSAEFAULT, reason="completion_routine is not callable", type_error=True)
        if self.message_mode:
            return self._post_message(sock, ov, bufs, nbytes, osflags, more, routine, dest)
        if dest is not None and dest[1]:
            raise WSAError(WSAErrorCode.WSAEINVAL, detail="control data on a stream socket")
        if more:
            # S4.4, partial_messages="cork": the piece waits in the queue, uncopied, until a
            # send without MSG_PARTIAL (or a graceful close) lets it go with what follows.
            # It claims the socket as any send does (S5.10, S5.11): unclaimed, another loop's
            # idle owner sent a later send ahead of the run (see _claim_for_pieces).
            self._claim_for_pieces(queue)
            ov._reset_for_post(routine, self)
            ov._load(bufs, nbytes, osflags | HELD_OP)
            queue.submit(ov)
            self._watch_soon()
            return ov
        if not (queue or self._owned or self._claim(False)):
            # S4.2: a blocking sync send owns the socket; this send waits behind it, pending.
            ov._reset_for_post(routine, self)
            ov._load(bufs, nbytes, osflags)
            queue.submit(ov)
            return ov
        ov._reset_for_post(routine, self)
        ov._load(bufs, nbytes, osflags)
        if not queue and self._batch_open and not self._held and not self.loop.is_running():
            self._batch_open = False  # (a stopped loop's window: see post_list)
        if queue or self._batch_open:
            queue.submit(ov)
            if self._writer is None and not self._batch_open:
                self._open_batch()
            return ov
        # Fast path (S5.1): nothing queued and no batch open, so try the kernel at once.
        if nbytes:
            tx = self._tx(sock)
            n = 0
            try:
                # S2.3: at most IOV_MAX buffers per sendmsg (more is EMSGSIZE); the writer sends the
                # rest. S4.1: MSG_OOB goes only on a sendmsg of the send's last byte alone, since
                # Linux marks urgent the last byte a call *takes* (a short call would misplace it).
                if len(bufs) > IOV_MAX:
                    n = tx.sendmsg(bufs[:IOV_MAX], _EMPTY, (osflags & ~LINUX_OOB) | LINUX_SEND_FLAGS)
                elif osflags & LINUX_OOB and nbytes > 1:
                    head, last = split_last_byte(bufs)
                    n = tx.sendmsg(head, _EMPTY, (osflags & ~LINUX_OOB) | LINUX_SEND_FLAGS)
                    if n == nbytes - 1:
                        n += tx.sendmsg(last, _EMPTY, osflags | LINUX_SEND_FLAGS)
                else:
                    n = tx.sendmsg(bufs, _EMPTY, osflags | LINUX_SEND_FLAGS)
            except (BlockingIOError, InterruptedError):
                pass
            except OSError as exc:
                if n:  # the MSG_OOB byte's own call failed after the rest went: it started
                    queue.submit(ov)
                    queue.bytes_sent(n)
                    self._fatal(sock, exc)
                    return ov
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

    def _refusal(self) -> WSAError:
        """The error of a send posted to an engine that is not open."""
        if self._state == _DRAINING:
            return WSAError(WSAErrorCode.WSAESHUTDOWN, detail="the socket is shutting down")
        if self._inherited:
            return WSAError(
                WSAErrorCode.WSAENOTSOCK,
                detail="this transport or engine belongs to the parent process (fork): make a new one here",
            )
        return WSAError(WSAErrorCode.WSAENOTSOCK, detail="the socket is closed")

    def _take_sync_pieces(self, sock: socket.socket) -> None:
        """S4.4: pieces collect per socket, in order, whichever call made them. Nonoverlapped
        ``MSG_PARTIAL`` pieces held for ``sock`` (copied, S4.5) become the first piece of the
        message this send continues or ends, as an overlapped piece nobody is told of (the
        message completes or fails whole, and its sends say so). They were left out of it and
        glued to the next nonoverlapped message, after bytes posted later (adversarial run)."""
        from ._sync import take_held_pieces  # (_sync imports this module)

        held = take_held_pieces(sock)
        if held is None:
            return
        piece = WSAOverlapped()
        piece._reset_for_post(None, self)
        piece._load([memoryview(held)], len(held), 0, True)
        self._queue.submit(piece)

    def _post_message(
        self,
        sock: socket.socket,
        ov: WSAOverlapped,
        bufs: list[Any],
        nbytes: int,
        osflags: int,
        more: bool,
        routine: CompletionRoutine | None,
        dest: Destination | None = None,
    ) -> WSAOverlapped:
        if SYNC_PIECES_HELD[0]:
            self._take_sync_pieces(sock)
        queue = self._queue
        total = queue.open_message_bytes + nbytes
        # UDP's limit is a constant, read once; AF_UNIX's follows SO_SNDBUF, so it is read per
        # message (issue 6 profile: the per-post lookup was a third of a datagram post's cost).
        if dest is not None and dest[0] is not None:
            limit = message_limit_to(sock, dest[0])  # (an IPv4-mapped destination: IPv4's)
        else:
            limit = self._udp_max or max_message_size(sock)
        if not more and total > limit:
            # S4.4: the whole message is refused; its earlier pieces fail with it.
            pieces = queue.drop_open_message()
            err = WSAError(WSAErrorCode.WSAEMSGSIZE, detail=f"message of {total} bytes > {limit}")
            self._fail_ops([SendCompletion(p, 0) for p in pieces], WSAErrorCode.WSAEMSGSIZE, None)
            raise err
        nowhere = dest is None or dest[0] is None
        if not more and queue and nowhere and not self._peer_known and self._info.type == socket.SOCK_DGRAM:
            # S5.2: a datagram with nowhere to go (an unconnected socket, no address) is
            # WSAENOTCONN from the call, as it is when nothing is queued (the kernel's own
            # check then); queued, the kernel would only say so at its sendmsg, as a completion.
            # A connected socket is asked once (a connection is kept: a datagram socket is
            # only disconnected by a connect() to AF_UNSPEC, whose queued sends then fail).
            check_connected(sock)
            self._peer_known = True
        if more:
            self._claim_for_pieces(queue)
        # Not owned: a blocking sync send owns the socket; this one waits behind it (S4.2).
        waits = not (more or queue or self._owned or self._claim(False))
        ov._reset_for_post(routine, self)
        if dest is not None:
            # S8.7: the message keeps its destination; the mark in its queue flags tells the
            # flush to look for it (a message is one sendmsg, so it is never merged with
            # another: a MSG_PARTIAL run goes where its ending piece says).
            ov._dest = dest
            ov._load(bufs, nbytes, osflags | _DEST_OP, more)
            address, ancdata = dest
        else:
            ov._load(bufs, nbytes, osflags, more)
            address, ancdata = None, _EMPTY
        # No batch window for messages: each is its own sendmsg anyway, so queueing one behind
        # a window would only add work (issue 6: datagrams posted back to back ran at 0.5x raw).
        if more or queue or waits:
            queue.submit(ov)
            if not more and not waits and self._writer is None and not self._batch_open:
                self._open_batch()
            else:
                self._watch_soon()
            return ov
        iov = gather_for_message(bufs)
        tx = self._tx(sock)
        for attempt in range(2):
            try:
                tx.sendmsg(iov, ancdata, osflags | LINUX_SEND_FLAGS, address)
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
                ov._dest = None
                raise self._error(sock, exc, 0) from exc
            break
        ov._dest = None
        self._complete_immediately(ov, nbytes)
        return ov

    def post_list(self, sock: socket.socket, buffers: list[Any], keep: bool = True) -> WSAOverlapped:
        """``post(sock, buffers)`` for the commonest call: a list, no flags, overlapped or routine.

        Only used while ``self.hot``. Falls back to :meth:`post` for anything that is not a
        list of ``bytes`` or that meets a limit, so every rule of ``post`` still holds; what it
        saves is the calls and checks that cannot fail for such a send, and it makes the
        overlapped only once the outcome is known so each field is set once (measured: about
        half the per-send cost of ``post``).

        ``keep=False`` is for a caller that drops the result (the transport's ``write`` and
        ``writelines``): a send that completes immediately, with no ``on_complete`` to tell,
        then makes no overlapped at all and the result is a shared placeholder (issue 11:
        making and freeing it was about 400 instructions of a keep-alive request).
        """
        total = 0
        for buf in buffers:
            if type(buf) is not bytes:
                return self.post(sock, buffers)
            total += len(buf)
        if not total or (
            _IOV_MARKED_CLOSED(sock) if _IOV_MARKED_CLOSED is not None else getattr(sock, "_closed", False)
        ):
            # post() raises or checks: S2.4, a zero-byte send's socket state; S5.2, a closed
            # socket (_closed: close() and detach() both set it; not left to EBADF, since uvloop
            # keeps the descriptor open after close() while a task waits in sock_recv()).
            return self.post(sock, buffers)
        depth = len(self._ops)
        if not depth and self._batch_open and not self._held and not self.loop.is_running():
            # A window whose tick a stopped loop has not run (a callback that stopped the loop
            # after a send): it holds nothing yet, and would hold this send until the loop runs
            # again, or lose it to a close. Closed: the send tries the kernel, as asyncio's
            # write() outside a running loop does. (Asked once a window, at its first queued
            # send; adversarial pass.)
            self._batch_open = False
        # (An open window is ours to queue into only while we own the socket: an idle owner's
        # socket may have been taken or let go with its window open, and sends queued there
        # then, by an engine neither owner nor waiting, went out after a second engine of the
        # same loop had sent later ones: S5.4 broken, adversarial pass.)
        if depth or (self._batch_open and self._owned):
            if not keep and depth and not self.notify_immediate:
                # A transport's write()/writelines() behind another write(): nobody sees either
                # send (no overlapped returned, no send_completed), so the bytes join the queued
                # one, up to IOV_MAX buffers (S2.1: captured, not copied). S5.6 bounds the
                # overlapped sends outstanding; a write is not one, and "write many, then
                # drain" code wrote 65,536 small writes in one loop iteration and met
                # WSAEWOULDBLOCK, which asyncio never raises.
                tail = self._merge_tail
                if (
                    tail is not None
                    and self._merge_seq == self._queue.submitted
                    and self._ops[-1] is tail
                    and len(tail._bufs) < IOV_MAX
                ):
                    self._queue.extend_tail(tail, buffers, total)
                    return tail
            queue = self._queue
            depth += queue._extra  # (the sends of the runs: S5.6 counts sends, not entries)
            if depth >= self.max_pending:
                return self.post(sock, buffers)  # it raises WSAEWOULDBLOCK (S5.6)
            run = queue.join_tail_entry
            if keep and run is not None and run._nbytes < RUN_BYTES and len(run._bufs) + len(buffers) <= RUN_BUFS:
                # Behind the send (or run) post_list queued last: one run (see
                # SendQueue.join_tail; issue 11, a slow reader: no list of its own to make,
                # gather and free, no deque entry). Still one overlapped, completed on its own.
                # (Its overlapped is taken off the collector's lists with the run's others, in
                # one call, once the run is complete: see below.)
                ov = _stream_overlapped(self, _EMPTY, total, False)
                queue.join_tail(ov, buffers, total)  # S2.1: the list's items are captured
                entry = queue.join_tail_entry
                if entry is not run and _IOV_GC_UNTRACK is not None and isinstance(entry, SendRun):
                    # A new run: it and its two lists off the collector's lists while queued,
                    # as a deep queue's overlappeds are (callgrind, 10,000 queued: the passes
                    # over tracked runs cost ~100 instructions a send). Only the queue refers to
                    # them, and they leave it to be freed; track_queued puts them back for an
                    # engine dropped with its queue (a forked child's).
                    _IOV_GC_UNTRACK(entry, entry._members, entry._bufs)
                    self._untracked = True
                self._merge_tail = None
                if self._writer is None and not self._batch_open:
                    self._open_batch()
                return ov
            if run is not None and depth >= _UNTRACK_DEPTH and _IOV_GC_UNTRACK is not None:
                # The send or run post_list queued last is joined no more: its overlappeds off
                # the collector's lists while they wait in a deep queue, a run's all in one call
                # (one call a send cost ~100 instructions of a send behind a slow reader,
                # callgrind, issue 11). Tracked again on their way out (_complete, _fail_ops). A
                # run still open when the queue drains is never untracked: it is not deep then.
                if type(run) is SendRun and _IOV_GC_UNTRACK_ALL is not None:
                    _IOV_GC_UNTRACK_ALL(run._members)
                else:
                    _IOV_GC_UNTRACK(run)
                self._untracked = True
            # S2.1: the list is captured now; the bytes are not copied.
            if _IOV_BYTES_LIST_COPY is None or depth < _UNTRACK_DEPTH:
                ov = _stream_overlapped(self, buffers.copy(), total, False)
            else:
                ov = _stream_overlapped(self, _IOV_BYTES_LIST_COPY(buffers), total, False)
                if not keep and _IOV_GC_UNTRACK is not None:
                    # (A write is never joined, see above: off the lists now.)
                    _IOV_GC_UNTRACK(ov)  # tracked again on its way out (_complete, _fail_ops)
                    self._untracked = True
            queue.submit(ov)
            if keep:
                # A send the caller holds may be joined by the next (see above); a write may not
                # (later writes join it instead, as its buffers: cheaper still).
                queue.join_tail_entry = ov
            # Joinable only if it is a write nobody is told of (a protocol with send_completed
            # is told its count), and only while it is the last send submitted: the same object
            # at the tail may be an overlapped a protocol got back and reposted (S5.5).
            self._merge_tail = None if keep or self.notify_immediate else ov
            self._merge_seq = queue.submitted
            if self._writer is None and not self._batch_open:
                self._open_batch()
            return ov
        # S5.11: set _sending, then test _owned (see the theory of operation); cleared only
        # once a partly sent op is in the queue, so nobody takes the socket in between.
        self._sending = True
        if not self._owned:
            self._sending = False
            return self.post(sock, buffers)  # claims the socket, or waits, or raises
        try:
            # S2.3: at most IOV_MAX buffers per sendmsg; the writer sends the rest.
            iov = buffers if len(buffers) <= IOV_MAX else buffers[:IOV_MAX]
            if _IOV_SENDMSG_REST is not None and type(sock) is _PLAIN_SOCKET and iov is buffers:
                # The compiled build's sendmsg (see _IOV_SENDMSG): MSG_DONTWAIT on the
                # descriptor, so a socket timeout never polls and needs no dup (see _tx).
                n = total - _IOV_SENDMSG_REST(sock, iov, _SEND_FLAGS_OBJECT)
            elif _IOV_SENDMSG is not None and type(sock) is _PLAIN_SOCKET:
                n = _IOV_SENDMSG(sock, iov, _SEND_FLAGS_OBJECT)  # (the first IOV_MAX of more buffers)
            else:
                tx = self._tx(sock) if sock.gettimeout() else sock
                if len(buffers) == 1 and type(tx) is _PLAIN_SOCKET:
                    # A lone buffer (write(bytes), a one-buffer send): send(2) is sendmsg(2)
                    # with one iovec, minus the msghdr and iovec set-up, in the kernel and in
                    # CPython's sendmsg(): measured 0.6-0.9 us less per call on loopback TCP
                    # (issue 11, W4 and request/response). Only on a plain socket: a subclass
                    # that overrides sendmsg (a test's scripted socket, a user's wrapper) still
                    # sees every send. (The compiled build's sendmsg above costs the same.)
                    n = tx.send(buffers[0], LINUX_SEND_FLAGS)
                else:
                    n = tx.sendmsg(iov, _EMPTY, LINUX_SEND_FLAGS)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as exc:
            self._sending = False
            raise self._error(sock, exc, 0) from exc  # S5.2: no overlapped was made
        except BaseException:
            # A KeyboardInterrupt from the signal check of an interrupted sendmsg: left set,
            # _sending kept every other thread and loop from the socket for good (S5.11).
            self._sending = False
            raise
        if n < total:
            ov = _stream_overlapped(self, buffers.copy(), total, False)  # S2.1 (the queue was empty)
            self._queue.submit(ov)
            self._merge_tail = None if keep or self.notify_immediate else ov  # (as above)
            self._merge_seq = self._queue.submitted
            if keep:
                self._queue.join_tail_entry = ov  # (as above)
            if n:
                self._queue.bytes_sent(n)
            # The op is queued now, which keeps the socket ours (take_from): cleared before
            # the registration, so an error there cannot leave it set.
            self._sending = False
            if len(buffers) > IOV_MAX and n and n == sum(map(len, buffers[:IOV_MAX])):
                # More than IOV_MAX buffers, and the kernel took all of the first sendmsg's: the
                # rest goes on now, not at the next writable event, which an AF_UNIX socket more
                # than a quarter full never reports although it takes more (the send waited for
                # the peer to read; adversarial pass). The flush registers the writer if needed.
                self._flush(sock)
                return ov
            self._add_writer(sock)
            return ov
        self._sending = False
        # Completed immediately (S5.1): no routine, no event, nothing to wake.
        on_complete = self.on_complete if self.notify_immediate else None
        if keep or on_complete is not None:
            ov = _stream_overlapped(self, buffers, total, True)
            if on_complete is not None:
                on_complete(self, [ov])
        else:
            ov = _UNSEEN
        # The batch window (see _open_batch), inline: this is the request/response hot path.
        self._batch_open = True
        if not self._batch_scheduled and not self._held:
            if self._tick.add(self):
                self._batch_scheduled = True
                if self.keeper is not None:
                    self._keep = self.keeper()  # (see _open_batch)
            else:
                self._batch_open = False  # a loop that is not running: no window (see add)
                if self._release_wanted:
                    self._release_if_idle()  # (as the window's close would, see _close_batch)
        return ov

    def post_message_list(self, sock: socket.socket, buffers: list[Any]) -> WSAOverlapped:
        """``post(sock, buffers)`` on a message socket for the commonest call: a list of
        ``bytes``, no flags, overlapped or routine (issue 11 item 4: datagrams at 0.6x
        ``DatagramTransport.sendto``, the general path's checks and copies per message).

        Only used while ``self.hot_messages``. Anything else (a non-bytes buffer, a message
        over the size limit of S4.3, a closed socket, sends already queued, a MSG_PARTIAL
        message being assembled, a stale ICMP error to retry) goes through :meth:`post`,
        which enforces every rule; so S4.3's WSAEMSGSIZE and S5.2's errors are raised there,
        and nothing is sent. One message is one ``sendmsg``, as ever (S5.2: no window here).
        """
        total = 0
        for buf in buffers:
            if type(buf) is not bytes:
                return self.post(sock, buffers)
            total += len(buf)
        # UDP's limit is a constant; AF_UNIX's follows SO_SNDBUF (see _post_message).
        if (
            self._ops
            or SYNC_PIECES_HELD[0]
            or total > (self._udp_max or max_message_size(sock))
            or (_IOV_MARKED_CLOSED(sock) if _IOV_MARKED_CLOSED is not None else getattr(sock, "_closed", False))
        ):
            return self.post(sock, buffers)
        # S5.11: set _sending, then test _owned (see the theory of operation), as post_list.
        self._sending = True
        if not self._owned:
            self._sending = False
            return self.post(sock, buffers)  # claims the socket, or waits, or raises
        try:
            iov = buffers if len(buffers) <= IOV_MAX else gather_for_message(buffers)
            if _IOV_SENDMSG_REST is not None and type(sock) is _PLAIN_SOCKET:
                _IOV_SENDMSG_REST(sock, iov, _SEND_FLAGS_OBJECT)  # (as in post_list; all or nothing)
            else:
                tx = self._tx(sock) if sock.gettimeout() else sock
                tx.sendmsg(iov, _EMPTY, LINUX_SEND_FLAGS)
        except (BlockingIOError, InterruptedError):
            ov = _stream_overlapped(self, buffers.copy(), total, False)  # S2.1: the list is captured
            self._queue.submit(ov)
            self._add_writer(sock)
            return ov
        except OSError as exc:
            if exc.errno == errno.ECONNREFUSED:
                self._sending = False
                return self.post(sock, buffers)  # S3.3: nothing was sent; post() retries once
            raise self._error(sock, exc, 0) from exc  # S5.2: no overlapped was made
        finally:
            self._sending = False
        # Completed immediately (S5.1): no routine, no event, nothing to wake. (The overlapped
        # of a stream send has exactly the fields of a whole, flag-free message.)
        ov = _stream_overlapped(self, buffers, total, True)
        if self.on_complete is not None and self.notify_immediate:
            self.on_complete(self, [ov])
        return ov

    def post_file(self, sock: socket.socket, file: object, fd: int, offset: int, nbytes: int) -> FileOverlapped:
        """Post ``nbytes`` of the file open on ``fd`` from ``offset`` as one overlapped send.

        TransmitFile's semantics (SPEC S9.3): it takes its place in the socket's queue, so its
        bytes follow every send posted before it and precede every send posted after it; they
        go by ``os.sendfile`` (no copy into user space) when it reaches the head. It completes
        with the bytes consumed, or fails with the exact count (S6.4): a socket error fails it
        and everything queued behind it, as any send's would; an error of the file itself
        (``_FILE_ERRNOS``) fails it alone. ``file`` is kept alive until it completes.

        Raises:
            WSAError: as :meth:`post` (WSAESHUTDOWN, WSAENOTSOCK, WSAEWOULDBLOCK past the bound);
                WSAEOPNOTSUPP on a message socket (a file is a byte stream); WSAEINVAL for a
                negative offset or count.
        """
        if self.message_mode:
            raise WSAError(WSAErrorCode.WSAEOPNOTSUPP, detail="a file can only be sent on a stream socket")
        if offset < 0 or nbytes < 0:
            raise WSAError(WSAErrorCode.WSAEINVAL, detail=f"offset {offset} and count {nbytes} must be >= 0")
        if self._state != _OPEN:
            raise self._refusal()
        if is_closed(sock):
            raise WSAError(WSAErrorCode.WSAENOTSOCK, errno=errno.EBADF, detail="the socket is closed")
        if len(self._queue) >= self.max_pending:
            raise WSAError(
                WSAErrorCode.WSAEWOULDBLOCK,
                detail=f"{len(self._queue)} overlapped sends outstanding (max_pending={self.max_pending})",
            )
        # Sent through our own duplicate of the descriptor, as the socket is (S5.11): a caller
        # that closes the file while the send is queued or finishing in the background (a
        # cancelled sendfile, S5.7) would otherwise have us read whatever file took the number
        # next and send its bytes to the peer. The duplicate shares the file's offset, which
        # os.sendfile with an explicit offset never moves.
        try:
            dup_fd = os.dup(fd)
        except OSError as exc:
            raise WSAError(
                WSAErrorCode.WSAENOBUFS, errno=exc.errno, detail=f"no descriptor for the file: {exc}"
            ) from exc
        if not (self._owned or self._queue):
            try:
                self._claim(False)  # (queued sends wait as owner or in line, never neither: S5.4)
            except WSAError:
                os.close(dup_fd)
                raise
        ov = FileOverlapped(file, dup_fd, offset)
        ov._reset_for_post(None, self)
        ov._load([], nbytes, _FILE_OP)
        self._queue.submit(ov)
        if self._writer is None and not self._batch_open:
            self._open_batch()
        return ov

    def _flush_file(self, sock: socket.socket, ov: FileOverlapped) -> list[WSAOverlapped] | None:
        """Send the head file send's bytes with ``os.sendfile``.

        Returns the sends it completed (``[ov]``, or ``[]`` after a file error failed it alone),
        or None when the flush must stop (the socket is full: a writer is registered; or a
        socket error failed the queue).
        """
        queue = self._queue
        out_fd = sock.fileno()
        # os.sendfile takes no MSG_DONTWAIT: a blocking socket is made nonblocking for the call
        # and put back (S5.10), two fcntl per file flush rather than a blocked loop.
        blocking = sock.gettimeout() is None and os.get_blocking(out_fd)
        if blocking:
            os.set_blocking(out_fd, False)
        try:
            calls = 0
            while True:
                consumed = queue.head_consumed
                left = ov._nbytes - consumed
                if left <= 0:
                    ov._release_file()
                    return queue.head_file_sent(0)
                if calls == _CALLS_PER_FLUSH:  # the loop's turn, as in _flush
                    self._add_writer(sock)
                    return None
                calls += 1
                try:
                    n = os.sendfile(out_fd, ov._file_fd, ov._offset + consumed, min(left, _SENDFILE_MAX))
                except (BlockingIOError, InterruptedError):
                    self._add_writer(sock)
                    return None
                except OSError as exc:
                    if exc.errno in _FILE_ERRNOS or (exc.errno == errno.EBADF and not is_closed(sock)):
                        ov._release_file()
                        comp = queue.fail_head()
                        self._fail_ops([comp], WSAErrorCode.WSAEINVAL, exc)
                        return []
                    self._fatal(sock, exc)
                    return None
                if n == 0:  # end of file: the file is shorter than when it was posted
                    ov._release_file()
                    return [queue.head_file_ended()]
                done = queue.head_file_sent(n)
                if done:
                    ov._release_file()
                    return done
        finally:
            if blocking:
                os.set_blocking(out_fd, True)

    def _complete_immediately(self, ov: WSAOverlapped, n: int) -> None:
        ov._pending = False
        ov._completed_immediately = True
        ov._transferred = n
        ov._bufs = _EMPTY
        self._signal(ov, 0, n, None, True)
        if self.on_complete is not None and self.notify_immediate:
            self.on_complete(self, [ov])
        if not self.message_mode:
            self._open_batch()
        elif self._release_wanted:
            # No batch window for messages, whose close would let go: a thread or engine that
            # asked for the socket while this one was busy waited for ever (adversarial pass).
            self._release_if_idle()

    def _open_batch(self) -> None:
        """Open the batch window (S5.4): posts are queued until it closes, then flushed together.

        No loop callback per window: the engine joins its loop's tick (one ``call_soon`` per
        loop iteration for every engine of the loop), or, while a transport callback holds it
        (``_held``), waits for ``release()``.
        """
        self._batch_open = True
        if not self._batch_scheduled and not self._held:
            if not self._tick.add(self):
                # A loop that is not running (see _BatchTick.add): no window, what was queued
                # for it goes now; a writer registered meanwhile sends the rest once it runs.
                self._batch_open = False
                if self._ops and self._writer is None:
                    sock = self._sockref()
                    if sock is not None:
                        self._flush(sock)
                if self._release_wanted:
                    self._release_if_idle()  # (what the window's close does, see _close_batch)
                return
            self._batch_scheduled = True
            if self.keeper is not None:
                # Held until the tick: a transport closed, or dropped, with writes in the
                # window was collected before it came, its bytes lost (see _add_writer).
                self._keep = self.keeper()

    def release(self) -> None:
        """A transport callback that held the engine returned: close the window, flush its queue.

        ``WSATransport`` sets ``_held`` while it delivers received data; sends posted inside
        that callback are coalesced as ever (the first goes at once, S5.1; the rest are queued,
        S5.4), and this flushes them when the callback returns, without a loop callback: the
        request/response case of issue 11.
        """
        self._held = False
        if self._batch_open:
            self._batch_open = False
            if self._ops and self._writer is None:
                sock = self._sockref()
                if sock is not None:
                    self._flush(sock)

    def end_window(self) -> None:
        """The poster awaited a send that was already complete: it sends one at a time.

        Closing the batch window lets its next send try the kernel at once (S5.1) instead of
        waiting in the queue for a flush; the engine stays on its loop's tick, and reopening
        the window later in this iteration schedules nothing new.
        """
        self._batch_open = False

    def _off_tick(self) -> object:
        """The tick's end of the window: closed, off the tick, and the transport held for it
        (see _open_batch) no longer held here; returned, for the caller to hold if it must."""
        self._batch_open = False
        self._batch_scheduled = False
        owner = self._keep
        self._keep = None
        return owner

    def _close_batch(self) -> None:
        # The transport held for the window is held by this frame through the flush, and after
        # it by its writer registration, or here again while sendable sends wait with none (for
        # the socket's owner or a descriptor): released before the flush, a transport nobody
        # else held was freed at once and its __del__ closed the socket under the flush
        # (adversarial pass: a response cut short).
        owner = self._off_tick()
        if self._queue and self._writer is None:
            sock = self._sockref()
            if sock is None:  # pragma: no cover - the loop's handle keeps it alive
                self._abort_all(WSAErrorCode.WSA_OPERATION_ABORTED)
                return
            self._flush(sock)
        # (Outside the block above, and without reading self._keep back: mypy narrows both to
        # None across the flush, and the compiled build then raised TypeError when it had set
        # them. If the flush's owner wait set _keep, it holds this same transport.)
        if self._writer is None and owner is not None and self._queue.sendable():
            self._keep = owner
        if self._dup is not None and self._writer is None:
            self._release_dup()  # idle again: no duplicate held (see "Descriptors")
        if self._release_wanted:
            self._release_if_idle()

    def flush_for(self, ov: WSAOverlapped) -> None:
        """Someone awaits ``ov``: if it only waits for the batch window, flush now."""
        self.flush_window()

    def flush_window(self) -> None:
        """Send what waits in the batch window now, without waiting for the loop's tick (S5.4).

        For an awaited send, and for a transport's ``close()``/``abort()``: stock asyncio's
        ``write()`` hands its bytes to the kernel at once, so an ``abort()`` after two writes
        sends both, and so does a ``close()`` right before ``loop.stop()``; waiting for the tick
        lost the second write (adversarial pass against asyncio's transport).
        """
        if self._batch_open and self._writer is None and self._queue and self.in_loop_thread():
            sock = self._sockref()
            if sock is not None:
                self._flush(sock)

    # -- flushing -----------------------------------------------------------------------------

    def _flush(self, sock: socket.socket) -> None:
        if not (self._owned or self._claim(True)):
            return  # S5.11: waiting for the socket's owner to let go; _retry_claim flushes
        queue = self._queue
        if self.message_mode:
            self._flush_messages(sock)
            return
        if is_closed(sock):
            self._abort_all(WSAErrorCode.WSA_OPERATION_ABORTED)
            return
        tx = self._tx(sock)
        sendmsg = tx.sendmsg
        # (see _IOV_SENDMSG: compiled, on a plain socket, the batch goes as the lists it is made
        # of, see next_parts; otherwise joined, to the socket's own sendmsg)
        iov_sendmsg = _IOV_SENDMSG_PARTS if type(tx) is _PLAIN_SOCKET else None
        calls = 0
        while queue:
            if _IOV_MARKED_CLOSED(sock) if _IOV_MARKED_CLOSED is not None else getattr(sock, "_closed", False):
                # Closed between two batches (another thread, or a completion routine): not
                # one more byte goes out through any object (S5.11), the rest aborts (S6.1).
                self._abort_all(WSAErrorCode.WSA_OPERATION_ABORTED)
                return
            if calls == _CALLS_PER_FLUSH:
                # The loop's turn (see _CALLS_PER_FLUSH): the writer calls again at once if the
                # socket is still writable. Order and counts are the queue's, unchanged.
                self._add_writer(sock)
                return
            calls += 1
            # (the batch's lists, or its buffers: see iov_sendmsg)
            if iov_sendmsg is not None:
                batch, flags = queue.next_parts(self._batch_cap)
            else:
                batch, flags = queue.next_batch(self._batch_cap)
            want = queue.last_batch_bytes
            if flags & LINUX_OOB:
                # S4.1: the urgent mark goes with the send's last byte only, on a call that
                # carries nothing else (Linux marks the last byte a call takes).
                if not queue.last_batch_ends_op:
                    flags &= ~LINUX_OOB
                    want = 0  # (an IOV_MAX cut: the batch is not the whole remainder)
                elif want > 1:
                    if iov_sendmsg is not None:
                        batch = [split_last_byte(list(_chain(batch)))[0]]
                    else:
                        batch = split_last_byte(batch)[0]
                    flags &= ~LINUX_OOB
                    want -= 1
            full = False  # (the kernel's buffer is full: see below)
            if queue.last_batch_buffers:
                try:
                    if iov_sendmsg is not None:
                        n = iov_sendmsg(tx, batch, flags | LINUX_SEND_FLAGS)
                    else:
                        n = sendmsg(batch, _EMPTY, flags | LINUX_SEND_FLAGS)
                except (BlockingIOError, InterruptedError):
                    self._add_writer(sock)
                    return
                except OSError as exc:
                    self._fatal(sock, exc)
                    return
                # Size the next batch by what the kernel takes: gathering far more than the
                # socket buffer has room for only redoes the gathering on every writable event
                # (issue 6: per-send cost grew with queue depth until batches were capped).
                # An eighth more than it took: what it takes moves with the reader (and when
                # it takes a whole batch the cap doubles), and the unsent rest of a batch is
                # gathered again (issue 11, a send behind a slow reader on uvloop, callgrind:
                # 2x cost ~340 instructions more than 1.5x, 1.5x ~220 more than 1.125x, each
                # with as many sendmsg calls).
                partial = n < want
                if partial:
                    self._batch_cap = n + (n >> 3) if n > _MIN_BATCH_CAP else _MIN_BATCH_CAP
                elif self._batch_cap < BATCH_BYTES:
                    self._batch_cap *= 2
                done = queue.bytes_sent(n)
                if not done and self.on_progress is not None:
                    self.on_progress(self)
                # The compiled sendmsg_parts sends the rest of a partial write itself until
                # a call takes nothing: the kernel's buffer is then full, and another call now
                # would only gather the rest again to meet EAGAIN, an exception made and
                # caught (~40% of the flush's cost a send behind a slow reader on a
                # socketpair, callgrind, issue 11), so the flush waits for writability. (Not
                # after one partial sendmsg: on loopback TCP the next call often takes more,
                # as the reader frees room, and waiting for the loop's next turn instead cost
                # 10-35% more CPU a send behind a slow reader.)
                full = partial and iov_sendmsg is not None
            elif flags == HELD_OP:  # only held pieces are left (S4.4): they wait, no writer
                self._watch_soon()
                break
            elif flags == _FILE_OP:  # a file send at the head (S9.3): never reached by buffers
                head = self._ops[0]
                assert isinstance(head, FileOverlapped)
                file_done = self._flush_file(sock, head)
                if file_done is None:
                    return
                done = file_done
            else:
                done = queue.bytes_sent(0)
            if done:
                self._complete(done)
            if full and queue:
                self._add_writer(sock)
                return
        self._drained()

    def _flush_messages(self, sock: socket.socket) -> None:
        queue = self._queue
        if is_closed(sock):
            self._abort_all(WSAErrorCode.WSA_OPERATION_ABORTED)
            return
        tx = self._tx(sock)
        retried = False
        while queue.sendable():
            if (
                _IOV_MARKED_CLOSED(sock) if _IOV_MARKED_CLOSED is not None else getattr(sock, "_closed", False)
            ):  # as in _flush (S5.11, S6.1)
                self._abort_all(WSAErrorCode.WSA_OPERATION_ABORTED)
                return
            iov, flags = queue.next_batch()
            address: Any = None
            ancdata: list[Any] = _EMPTY
            if flags & _DEST_OP:  # S8.7: the message's own destination (see _post_message)
                flags &= ~_DEST_OP
                last = self._ops[queue._batch_ops - 1]
                assert isinstance(last, WSAOverlapped)  # (message mode: no runs)
                if last._dest is not None:
                    address, ancdata = last._dest
            try:
                n = tx.sendmsg(iov, ancdata, flags | LINUX_SEND_FLAGS, address)
            except (BlockingIOError, InterruptedError):
                if address is not None and self._info.family == socket.AF_UNIX:
                    self._retry_unix_later(sock)
                    return
                self._add_writer(sock)
                return
            except OSError as exc:
                if exc.errno == errno.ECONNREFUSED and not retried:
                    retried = True  # S3.3: a stale ICMP error; Windows retries the send once
                    continue
                if address is not None and exc.errno in _DEST_ERRNOS:
                    # S8.7: this destination cannot be reached (or may not be sent to): the
                    # message fails alone, as WSASendTo's would; the socket and the messages
                    # queued for other destinations are fine.
                    retried = False
                    ops = queue.bytes_sent(0)
                    for op in ops:
                        op._dest = None
                    self._fail_ops([SendCompletion(op, 0) for op in ops], classify(sock, exc, self._info), exc)
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
            self._unix_backoff = 0.0
            done = queue.bytes_sent(n)
            if address is not None or ancdata:
                for op in done:
                    op._dest = None  # S2: nothing of the caller's is kept once it is sent
            self._complete(done)
        self._drained()

    def _drained(self) -> None:
        """Nothing sendable is left: drop the writer, run the on-drained callback."""
        self._keep = None
        if self._writer is not None:
            self._remove_writer()
        if not self._queue and self._on_drained is not None:
            callback, self._on_drained = self._on_drained, None
            callback()
        if self._release_wanted:
            self._release_if_idle()

    def forget_after_fork(self) -> None:
        """In a forked child: this engine is the parent's, and the child keeps none of it (S5.12).

        The queued sends are the parent's to finish: here they end aborted, with the bytes the
        kernel had consumed at the fork (``ov.pending`` False, awaiting raises
        WSA_OPERATION_ABORTED); the engine refuses new sends and never sends again (a child
        that awaited a send inherited in the batch window flushed it a second time), and the
        engine's own duplicates of the socket's and files' descriptors are closed here (they
        kept the connection open after both processes closed the socket).

        Runs inside ``os.fork()`` (``os.register_at_fork``), so it takes no lock (another thread
        of the parent may have held it), runs no user code (routines, events and the
        transport's hooks are not called: a task that already awaits a send is woken through
        its future), and touches no loop registration: the child's copy of the loop shares the
        parent's epoll instance, and removing a registration there removed the parent's (its
        sends then never finished).
        """
        self._inherited = True
        self._set_state(_CLOSED)
        self._owned = False
        self._sending = False
        self._writer = None  # the parent's registration: left alone (see above)
        self._keep = None
        self._batch_open = False
        self._on_drained = None
        self.on_complete = None
        self.on_progress = None
        self.on_error = None
        self.track_queued()
        self._merge_tail = None
        for comp in self._queue.fail():
            ov = comp.op
            assert isinstance(ov, WSAOverlapped)
            if isinstance(ov, FileOverlapped):
                ov._release_file()
            code = WSAErrorCode.WSA_OPERATION_ABORTED
            exc = WSAError(code, detail="the send belongs to the parent process (fork)", bytes_sent=comp.bytes_sent)
            ov._transferred = comp.bytes_sent
            ov._error = code
            ov._exc = exc
            ov._pending = False
            ov._bufs = _EMPTY
            ov._dest = None
            waiter = ov._waiter
            # Only a future of this engine's loop (call_soon, in memory); awaiters on other
            # loops (_Waiters) are woken with call_soon_threadsafe, whose self-pipe the child
            # shares with the parent.
            if waiter is not None and waiter.get_loop() is self.loop and not waiter.done():
                with contextlib.suppress(RuntimeError):  # (a loop of another thread, in debug mode)
                    waiter.set_exception(exc)
        self._release_dup()  # the child's copy: the parent's registration of its own is untouched

    def track_queued(self) -> None:
        """Put every queued send back on the garbage collector's lists (see _IOV_GC_UNTRACK).

        For a forked child (``_api._reset_after_fork``): it drops its inherited engines, whose
        queues never empty there through ``_complete`` or ``_fail_ops``; an untracked send left
        in one would keep a cycle through it (its event) from ever being collected.
        """
        if self._untracked and _IOV_GC_TRACK_ALL is not None:
            _IOV_GC_TRACK_ALL(self._queue.sends())
            runs: list[object] = []
            for entry in self._ops:
                if isinstance(entry, SendRun):
                    runs += [entry, entry._members, entry._bufs]
            _IOV_GC_TRACK_ALL(runs)

    def _complete(self, done: list[WSAOverlapped]) -> None:
        """Complete whole sends in bulk, in posting order (SPEC S5.3)."""
        if self._untracked and _IOV_GC_TRACK_ALL is not None:
            _IOV_GC_TRACK_ALL(done)  # (see post_list: back on the collector's lists first)
        call_soon = self.loop.call_soon
        for ov in done:
            n = ov._nbytes
            ov._transferred = n
            ov._pending = False
            ov._bufs = _EMPTY  # S2: the caller's memory is released as soon as it is sent
            routine = ov._routine
            if routine is not None:
                call_soon(routine, 0, n, ov, 0)
                if signals_event(routine):
                    ev = ov._event
                    if ev is not None and type(ev) is WSAEvent:
                        ev.set()
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
            self.on_complete(self, done)
        elif _IOV_SPARE is not None:
            # Bare wsa_send: the sends nobody holds (no caller, event, routine or waiter: the
            # list is their only reference) go to the pool, up to its size.
            room = _OV_POOL_MAX - len(_OV_POOL)
            if room > 0:
                _spare(_IOV_SPARE(done, WSAOverlapped, room))

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
            if isinstance(ov, FileOverlapped):
                ov._release_file()
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
        # (See post_list.) Before anything here can drop them: comps and done still hold them.
        if self._untracked and _IOV_GC_TRACK_ALL is not None:
            _IOV_GC_TRACK_ALL(done)
        # Not for a closed loop: the hook (the transport's) schedules on it, which raised
        # RuntimeError into whichever loop's callback was aborting these sends (the sweep of a
        # bare-closed loop, _api._sweep_closed), stopping that sweep half-way.
        if self.on_complete is not None and live:
            self.on_complete(self, done)

    def _signal(self, ov: WSAOverlapped, error: int, n: int, exc: WSAError | None, live: bool) -> None:
        """Tell of one finished send (S5.3): its routine, else its event; its awaiter; a thread.

        The bulk success path (_complete) does the same inline for speed; keep them in step.
        ``live`` is False once the loop is closed: nothing can be scheduled on it any more.
        """
        routine = ov._routine
        if routine is not None and live:
            self.loop.call_soon(routine, error, n, ov, 0)
        if routine is None or signals_event(routine):
            ev = ov._event
            if ev is not None and type(ev) is WSAEvent:
                ev.set()
        waiter = ov._waiter
        # A closed loop can resolve no future of its own; awaiters on other loops (_Waiters, whose
        # get_loop() is None) are still woken, through their own loops (issue 10 item 16).
        if waiter is not None and (live or waiter.get_loop() is not self.loop) and not waiter.done():
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
            self.on_error(self, err)
        self._drained()

    # -- writer and watchdog --------------------------------------------------------------------

    def _add_writer(self, sock: socket.socket) -> None:
        """Wait for the socket to become writable: register the engine's *duplicate* (S5.11).

        The loop keys registrations by descriptor number, and a plain ``close()`` frees the
        caller's number for the next socket at once; the duplicate's number stays ours until
        we remove the registration and close it ourselves (see "Descriptors").
        """
        if self._writer is None:
            # The registration holds this engine, and the transport too (an argument of its
            # callback): only weakly referenced by the engine, a transport closed (or paused for
            # reading) with sends waiting was collected with its protocol's cycle, and its
            # __del__ closed the socket under them: the rest of the response was lost,
            # connection_lost never came and Server.wait_closed() hung (adversarial pass, both
            # loops). Held by the registration, not by the engine (which the registry keeps), a
            # loop closed with the registration in place lets it go, as asyncio's does.
            owner = self.keeper() if self.keeper is not None else None
            fd = self._dup_fd
            if fd < 0:
                fd = self._take_dup(sock)
                if fd == _NO_DESCRIPTOR:
                    # Out of descriptors (an accept flood, a low RLIMIT_NOFILE): nothing is
                    # wrong with the socket, so its sends wait, as asyncio's buffer would, and
                    # the flush is tried again each watchdog interval (registering the caller's
                    # own number instead would break S5.11). Aborting them here lost the rest
                    # of a response without a word to anyone (adversarial test, aiohttp).
                    if not self._dup_retry:
                        self._dup_retry = True
                        self.loop.call_later(_WATCHDOG_INTERVAL, self._retry_flush, sock, owner)
                    return
                if fd < 0:
                    # Closed behind our back since the sendmsg that met a full buffer (S6.1).
                    self._abort_all(WSAErrorCode.WSA_OPERATION_ABORTED)
                    return
            self._writer = sock
            # uvloop's add_writer (libuv's uv_poll_init) sets O_NONBLOCK on the descriptor, and
            # so on the open file the caller's descriptor shares. We never need it (every
            # sendmsg says MSG_DONTWAIT), and a blocking socket must stay blocking for its
            # other users (S5.10), so its mode is put back at once.
            blocking = sock.gettimeout() is None and os.get_blocking(fd)
            self.loop.add_writer(fd, self._on_writable, owner)
            if blocking and not os.get_blocking(fd):
                os.set_blocking(fd, True)
            self._watch_soon()

    def _retry_unix_later(self, sock: socket.socket) -> None:
        """An AF_UNIX datagram to a named receiver met its full queue (EAGAIN): try again after
        a pause, 1 ms doubling to 50 ms, instead of waiting for the socket to be writable.

        An unconnected AF_UNIX datagram socket polls writable whatever its destinations hold
        (Linux checks only a connected peer's queue), so the writer woke at once, every loop
        iteration, for as long as the receiver stayed full: a busy loop (adversarial pass).
        """
        if self._writer is not None:
            self._remove_writer()
        if self._dup_retry:
            return
        self._dup_retry = True
        backoff = self._unix_backoff
        backoff = self._unix_backoff = min(backoff * 2, _UNIX_BACKOFF_MAX) if backoff else _UNIX_BACKOFF_MIN
        owner = self.keeper() if self.keeper is not None else None
        self.loop.call_later(backoff, self._retry_flush, sock, owner)

    def _retry_flush(self, sock: socket.socket, owner: object = None) -> None:
        """A descriptor may be free again: flush (it sends, registers, or waits once more).

        ``owner``: the transport, held meanwhile (see _add_writer, _on_writable).
        """
        del owner
        self._dup_retry = False
        if self._writer is None and self._queue:
            self._flush(sock)  # (a socket closed meanwhile aborts there, S6.1)

    def _remove_writer(self) -> None:
        """Remove the registration, by the number the engine registered (never ``fileno()``)."""
        self._keep = None
        if self._writer is not None:
            self._writer = None
            # A closed loop has no registrations left to remove.
            if not self.loop.is_closed():
                self.loop.remove_writer(self._dup_fd)
            if not self._batch_scheduled:
                self._release_dup()  # else _close_batch does, unless the engine is busy again
        if not self._queue and self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def _on_writable(self, owner: object = None) -> None:
        """The writer registration's callback; ``owner``, the transport, is only held by it."""
        # Not a local of this frame: a send error's traceback keeps the frame, and whoever
        # keeps the error (a protocol's connection_lost) would keep the transport alive.
        del owner
        sock = self._writer
        if sock is None:
            return
        self._flush(sock)

    def _watch_soon(self) -> None:
        """S6.1: make sure the watchdog runs while sends wait, registered or not (MSG_PARTIAL
        pieces of an unfinished message or cork run wait with no writer): it aborts them if the
        socket is closed behind our back."""
        if self._watchdog is None:
            self._watchdog = self.loop.call_later(_WATCHDOG_INTERVAL, self._watch)

    def _watch(self) -> None:
        """S6.1: a socket closed (or detached) behind our back aborts what is pending on it.

        Runs every quarter second while sends are pending: while a writer is registered (a
        descriptor that is closed never becomes writable; our duplicate keeps the connection
        open, so the peer sees the close only once we abort), and while MSG_PARTIAL pieces
        wait for the end of their message.
        """
        self._watchdog = None
        if not self._queue:
            return
        sock = self._sockref()
        if sock is None or is_closed(sock):
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
        """Fail every pending send with ``code`` and let go of the socket's descriptor.

        The registration goes first and our duplicate is closed before anyone hears of the
        abort, so the peer sees a close that happened behind our back (S6.1).
        """
        self._remove_writer()
        if self.loop.is_closed():
            # Another thread may be abandoning this engine (S5.12): take the queue once.
            with OWNERSHIP.lock:
                comps = self._queue.fail()
        else:
            comps = self._queue.fail()
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self._release_dup()
        self._fail_ops(comps, code, None)
        if self._release_wanted and not self.loop.is_closed() and self.in_loop_thread():
            self._release_if_idle()

    def _set_state(self, state: int) -> None:
        self._state = state
        self.hot = state == _OPEN and not self.message_mode
        self.hot_messages = state == _OPEN and self.message_mode

    def abort(self, code: WSAErrorCode = WSAErrorCode.WSA_OPERATION_ABORTED) -> None:
        """Fail every pending send with ``code`` (exact counts) and refuse new ones (S6.1)."""
        self._set_state(_CLOSED)
        self._on_drained = None
        self._abort_all(code)

    def release_held(self) -> None:
        """A graceful close or write_eof: held cork pieces (S4.4) go out now.

        A stream has no message to lose, and Linux sends corked bytes at a close too; the
        pieces are sent as if a send without ``MSG_PARTIAL`` had followed them.
        """
        if self._queue.held:
            self._queue.release_held()
            if self._writer is None and not self._batch_open:
                self._open_batch()

    def drained_now(self) -> bool:
        """``drain_then`` for a caller that goes on itself when nothing is left to send: True,
        with new sends refused from now on, when the queue is empty and nothing is being
        written (``drain_then(callback)`` would call ``callback`` at once); else False, and
        nothing changed: call ``drain_then``. (A transport's ``close()`` after its last reply
        passes no bound method then, ~450 instructions a connection; issue 11, workload HC.)
        """
        if self._queue or self._writer is not None:
            return False
        # (An empty queue holds no MSG_PARTIAL piece, open message or held send: drain_then's
        # other steps have nothing to do.)
        if self._state == _OPEN:
            self._set_state(_DRAINING)
        self._on_drained = None
        return True

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
        self._queue.release_held()  # (see release_held)
        self._on_drained = callback
        if self.drained_now():  # (nothing left: it lets go of the callback)
            callback()
        elif self._writer is None:
            if not self._batch_open:
                self._open_batch()
            # The window goes to the kernel now, not at the loop's next tick: a write_eof()
            # (or close()) right before loop.stop() lost it, and the EOF with it, where stock
            # asyncio's write() had sent it at once (adversarial pass).
            self.flush_window()
