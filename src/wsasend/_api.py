"""Public entry points for overlapped sends: ``wsa_send``, ``closesocket`` and the engine registry."""

from __future__ import annotations

import asyncio
import atexit
import functools
import os
import socket
import threading
import weakref
from collections.abc import AsyncGenerator
from typing import Final, final

from ._dest import destination
from ._engine import (
    _NATIVE,
    _RLOCK_ACQUIRE,
    _RLOCK_RELEASE,
    OWNERSHIP,
    ZERO,
    SendEngine,
    SocketSlot,
    _BatchTick,
    _running_loop,
    abandon,
    closed_loops_with_windows,
    mark_cut,
    notify_locked,
    take_stranded,
    ticked_engines,
)
from ._errors import WSAError, WSAErrorCode
from ._loopwatch import watch
from ._overlapped import CompletionRoutine, WSAOverlapped
from ._sockutil import check_socket

__all__ = ["closesocket", "engine_for", "find_engine", "set_max_pending", "slot_for", "wsa_send"]

# The current engine of each socket, keyed by id(sock): the hot path's one dict lookup. An
# engine belongs to one loop; a socket that moves to another loop gets a new engine, which
# replaces the old one here (the old one is dropped unless something else holds it, S5.10).
_ENGINES: Final[dict[object, SendEngine]] = {}
# Each socket's registry slot: its owner (S5.11), current engine and send bound. One weak
# reference per socket (made with the slot, its callback _forget) drops both entries when the socket dies,
# before its id can be reused, so the registry never keeps a socket alive, and it holds no
# engine or loop: only the latest engine, in the slot, is kept (issue 10 items 13, 15).
_SLOTS: Final[dict[object, SocketSlot]] = {}


class _LastEngine:
    """The engine the last ``wsa_send`` used; ``engine`` is None when there is none to trust.

    Consecutive sends on one socket (the posted workloads, a task streaming replies) skip the
    registry's dict lookup: boxing ``id(sock)``, hashing it and probing cost ~450 instructions
    a send compiled, a tenth of a posted datagram (issue 11). The cached engine is used only
    while ``engine._current`` (it is still ``_ENGINES[engine._key]``: set and cleared with every
    change of that entry, under the registry lock) and ``engine._key == id(sock)``. A current
    engine's socket is alive (its death runs ``_forget``, which clears the flag first), so an
    equal id is the same socket, never a new one that took a dead socket's address. The check
    of the loop follows as for a dict hit. One attribute holds the engine, so a thread reads
    it whole in the pure build too; a write that loses a race only costs the next send a miss.
    """

    __slots__ = ("engine",)

    def __init__(self) -> None:
        self.engine: SendEngine | None = None


_LAST: Final = _LastEngine()


def _set_current(key: object, engine: SendEngine | None) -> None:
    """Make ``engine`` the current engine of socket ``key`` (None: remove it). Under _LOCK.

    The registry's keys, ``id(sock)``, are typed ``object`` here and in its other functions:
    compiled, an ``int`` is a native integer, boxed into a new int object for every dict
    operation (ids are large), ten times for a server's connection (issue 11, workload HC)."""
    # (get and del, not pop: compiled, ``dict.pop`` is a generic method call, ~900 instructions
    # against ~250; _set_current runs at least twice for every connection of a server.)
    old = _ENGINES.get(key)
    if old is not None:
        del _ENGINES[key]
        old._current = False
    if engine is not None:
        _ENGINES[key] = engine
        engine._current = True
    last = _LAST.engine
    if last is not None and last._key == key:
        _LAST.engine = None  # (not needed for soundness: releases the old engine at once)


# Loops whose end (shutdown_asyncgens) we watch, each with its watcher async generator (S5.12).
_WATCHED: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncGenerator[None, None]] = weakref.WeakKeyDictionary()

_get_running_loop: Final = asyncio.get_running_loop
# The registry lock (reentrant: see slot_for), also the lock of every ownership change (S5.11).
_LOCK = OWNERSHIP.lock


def _forget(key: object, _ref: object = None) -> None:
    """The socket ``key`` died: drop its registry entries (its slot's weak reference calls this)."""
    lock = _LOCK
    _RLOCK_ACQUIRE(lock)  # (see _RLOCK_ACQUIRE)
    try:
        _set_current(key, None)
        slot = _SLOTS.get(key)  # (get and del: see _set_current)
        if slot is not None:
            del _SLOTS[key]
            # Nothing can reach the slot through the registry any more (a new socket at the same
            # address gets a new one), and its socket is gone, so no engine can send or claim
            # through it. The engines that still hold it keep their ``_slot``; the slot lets go of
            # them, so that an engine and its slot, which name each other, are freed by their
            # reference counts instead of waiting for the cyclic collector (issue 11: a
            # connection per request left a cycle per connection).
            slot.engine = None
            slot.owner = None
            slot.transport_engine = None
            slot.waiting.clear()
    finally:
        _RLOCK_RELEASE(lock)


@final
class _Forget:
    """A slot's weak-reference callback: ``_forget(key)`` once the socket ``key`` dies.

    Compiled, one native object a socket in place of ``functools.partial(_forget, key)``, which
    made three (the partial, its argument tuple and an empty keyword dict: ~800 instructions of
    every new connection of a server, and three more objects for the cyclic collector's
    generation count, issue 11 workload HC). It holds the int only: no cycle with the slot.
    """

    __slots__ = ("key",)

    def __init__(self, key: object) -> None:
        self.key = key  # (the boxed id: see _set_current)

    def __call__(self, _ref: object) -> None:
        _forget(self.key)


def slot_for(sock: socket.socket) -> SocketSlot:
    """The registry slot of ``sock``, made (with its one finalizer) on first use. Internal."""
    key: object = id(sock)  # (boxed once: see _set_current)
    lock = _LOCK
    _RLOCK_ACQUIRE(lock)  # (see _RLOCK_ACQUIRE)
    try:
        slot = _SLOTS.get(key)
        if slot is None:
            slot = _SLOTS[key] = SocketSlot()
            # The reentrant lock matters here: the collector may run while we allocate, and a
            # collected socket's callback (_forget) takes the lock again in this thread.
            # A weak reference with a callback, kept by the slot (so alive exactly while the
            # socket is registered), rather than a ``weakref.finalize``: the same call at the
            # same moment, made without finalize's interpreted bookkeeping (issue 11: ~10,000
            # instructions of every new connection of a server).
            # (The pure build keeps the partial: there a class's interpreted __init__ costs
            # more than the partial's C constructor.)
            slot.sockref = weakref.ref(sock, _Forget(key) if _NATIVE else functools.partial(_forget, key))
        return slot
    finally:
        _RLOCK_RELEASE(lock)


def shut_to_claims(sock: socket.socket) -> None:
    """``shutdown(SD_SEND)`` or a transport's ``write_eof()`` was called on ``sock``. Internal.

    What is queued drains (S6.2), and from now on a send that would have to claim the socket
    (another loop's, or a thread's ``wsa_send_sync``) fails WSAESHUTDOWN at once instead of
    WSAEINPROGRESS or a wait behind the drain (see ``SocketSlot.send_shut``).
    """
    slot = slot_for(sock)
    with OWNERSHIP.lock:
        slot.send_shut = True
        if slot.sync_waiting:
            OWNERSHIP.changed.notify_all()


def find_engine(sock: socket.socket) -> SendEngine | None:
    """The engine of ``sock`` if it has one (on any loop)."""
    engine = _ENGINES.get(id(sock))
    if engine is not None and engine._sockref() is sock:
        return engine
    return None


def engine_for(sock: socket.socket, loop: asyncio.AbstractEventLoop, peer: bool = False) -> SendEngine:
    """The engine of ``sock`` on ``loop``, made on first use.

    ``peer``: the caller has just seen the socket connected (a new engine then skips its own
    ``getpeername``; see SocketInfo).

    Raises:
        WSAError: WSAENOTSOCK for a closed socket or a non-socket; WSAEINPROGRESS when the
            socket still has sends pending on another (open) loop.
    """
    key: object = id(sock)  # (boxed once: see _set_current)
    engine = _ENGINES.get(key)
    if engine is not None and engine.loop is loop and engine._sockref() is sock:
        return engine
    check_socket(sock)
    slot = slot_for(sock)
    lock = _LOCK
    _RLOCK_ACQUIRE(lock)  # (see _RLOCK_ACQUIRE)
    try:
        engine = _ENGINES.get(key)
        if engine is not None and engine._sockref() is sock and engine.loop is loop:
            return engine
        # This loop's engine may still own the socket (or wait for it) after another loop's
        # engine became the current one: it is this loop's engine again, with its queue.
        for known in (slot.owner, *slot.waiting):
            if known is not None and known.loop is loop and known._sockref() is sock:
                slot.engine = known
                _set_current(key, known)
                return known
        # Another loop's current engine with sends pending: a first answer for the common
        # case; the real test is the claim at the first send (S5.11).
        if (
            engine is not None
            and engine._sockref() is sock
            and not engine.loop.is_closed()
            and (engine._ops or engine._writer is not None)
        ):
            if slot.send_shut:
                raise WSAError(WSAErrorCode.WSAESHUTDOWN, detail="sends on this socket were shut down")
            raise WSAError(WSAErrorCode.WSAEINPROGRESS, detail="the socket has sends pending on another event loop")
        engine = SendEngine(loop, sock, max_pending=slot.max_pending, slot=slot, peer=peer)
        slot.engine = engine
        _set_current(key, engine)
    finally:
        _RLOCK_RELEASE(lock)
    _watch_loop(loop, engine._tick)
    return engine


def _watch_loop(loop: asyncio.AbstractEventLoop, tick: _BatchTick) -> None:
    """Have ``loop``'s ``shutdown_asyncgens`` abort its pending sends (S5.12; docs/overlapped.md).

    Loops closed without ``shutdown_asyncgens`` are caught by a thread waiting on one of their
    sends (``abandon_closed_loop``), by a look at one of their sends' status, at the socket's
    next claim (``take_from`` sees the closed loop), and here, when the next loop starts
    sending: whatever a bare-closed loop left queued is aborted then (see ``_sweep_closed``).

    ``tick``: the loop's batch tick, which records that the loop is watched (``watched``), so
    that a new engine need not ask ``_WATCHED``, a WeakKeyDictionary (Python code, ~1,000
    instructions of every connection a server accepts; issue 11, workload HC).
    """
    if tick.watched:
        return
    if loop in _WATCHED:
        tick.watched = True
        return
    watcher = watch(loop, _loop_ending)
    if watcher is not None:
        _WATCHED[loop] = watcher
        tick.watched = True
    # Soon, not here: its ResourceWarnings are about other sockets, and under ``-W error`` one
    # would otherwise fail this caller's send (it goes to the loop's exception handler then).
    if not loop.is_closed():
        loop.call_soon(_sweep_closed)


def _sweep_closed() -> None:
    """Abort the sends of every loop that was closed with a bare ``loop.close()`` (S5.12).

    Nothing else may ever look at them: such a loop's engines keep their sockets and their
    descriptor duplicates open, so a socket the caller closed with a plain ``close()`` would
    stay connected (the peer never sees the close) and the sends' buffers stay held until the
    process ends. Run once per new loop (the "loop per job" pattern: each job's loop clears
    what the last one left); O(sockets with an engine). Safe from any thread: a closed loop
    runs nothing, and ``_loop_ending`` takes each queue once under the registry lock.
    """
    with _LOCK:
        slots = _SLOTS.copy().values()  # (a copy: see _loop_ending)
        closed = {
            id(engine.loop): engine.loop
            for slot in slots
            for engine in (slot.owner, slot.engine, *slot.waiting)
            if engine is not None and engine.loop.is_closed()
        }
    for old in closed_loops_with_windows():  # (engines no slot holds any more: take_stranded)
        closed.setdefault(id(old), old)
    for old in closed.values():
        _loop_ending(old)


def _loop_ending(loop: asyncio.AbstractEventLoop, raising: bool = True) -> None:
    """``loop`` is ending: abort its engines' pending sends, free their sockets (S5.12).

    ``raising``: as ``abandon``'s (False from a user's call, True from a loop's callback).
    """
    dead: list[SendEngine] = []
    with _LOCK:
        # A copy, made without allocating per item: a socket's finalizer (_forget) may run at
        # any allocation of this thread, here too (the lock is reentrant), and drop its slot;
        # list(_SLOTS.items()) made a tuple per item and so could meet that mid-way.
        for key, slot in _SLOTS.copy().items():
            engines: list[SendEngine] = []
            if slot.owner is not None and slot.owner.loop is loop:
                engines.append(slot.owner)
                slot.owner._owned = False
                slot.owner = None
            for engine in slot.waiting:
                if engine.loop is loop:
                    engines.append(engine)
            slot.waiting = [e for e in slot.waiting if e.loop is not loop]
            current = slot.engine
            if current is not None and current.loop is loop:
                if current not in engines:
                    engines.append(current)
                slot.engine = None  # S5.12 / issue 10 item 15: nothing keeps the loop alive
                if _ENGINES.get(key) is current:
                    _set_current(key, None)
            if engines:
                for engine in engines:
                    if engine._ops or engine._writer is not None:
                        dead.append(engine)
                        mark_cut(engine)  # (before the waiters hear: see mark_cut)
                notify_locked(slot, dead)
        last = _LAST.engine
        if last is not None and last.loop is loop:
            _LAST.engine = None  # nothing keeps the loop alive (a stale write may have left it)
        for engine in take_stranded(loop):  # (a closed loop's tick that never ran)
            if (engine._ops or engine._writer is not None) and engine not in dead:
                dead.append(engine)
                mark_cut(engine)
    abandon(dead, None, raising)


def abandon_closed_loop(engine: SendEngine) -> None:
    """``engine``'s loop is closed and a thread waits on one of its sends: abort (S5.12).

    A loop closed with a bare ``loop.close()`` ran no ``shutdown_asyncgens``; a waiting thread
    calls this instead (``_overlapped._wait_watching``), and it does what the hook would have
    done: abort the loop's pending sends, warn once per socket, free the sockets. Idempotent
    (see ``abandon``). An engine no longer in the registry is aborted alone.
    """
    _loop_ending(engine.loop, False)  # (a user's wait or look: see abandon)
    if engine._ops:
        abandon([engine], None, False)


def _reset_after_fork() -> None:
    """In a forked child: no inherited engine or owner (S5.12, issue 10 item 10).

    Registered with ``os.register_at_fork(after_in_child=...)`` at import; the sockets keep
    their slots (and their one finalizer each), emptied, so an inherited socket is usable from
    a fresh loop in the child. The dropped engines end their queued sends aborted there and
    never send again (see ``SendEngine.forget_after_fork``).
    """
    global _LOCK
    OWNERSHIP.reset()
    _LOCK = OWNERSHIP.lock
    for slot in _SLOTS.copy().values():  # (a copy: see _loop_ending)
        for engine in (slot.owner, slot.engine, *slot.waiting):
            if engine is not None:
                engine.forget_after_fork()
        slot.owner = None
        slot.engine = None
        slot.sync_owner = 0
        slot.waiting = []
    for engine in _ENGINES.values():
        engine._current = False
        engine.forget_after_fork()
    _ENGINES.clear()
    _LAST.engine = None
    _WATCHED.clear()
    from ._sync import _reset_after_fork as reset_sync

    reset_sync()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _let_go_at_exit() -> None:
    """At interpreter exit, before the modules are torn down: engines let go of the transports
    they hold strongly (``SendEngine._keep``) for a batch tick or an owner that will never
    come, as after a loop closed bare. Held into the interpreter's last collection, such a
    transport crashed the compiled build (a segfault in ``finalize_modules``' collection,
    after one write on a transport whose loop was closed bare; adversarial pass)."""
    with _LOCK:
        engines = [*_ENGINES.values(), *ticked_engines()]
        for slot in _SLOTS.values():
            engines += [e for e in (slot.owner, slot.transport_engine, *slot.waiting) if e is not None]
    for engine in engines:
        engine._keep = None


atexit.register(_let_go_at_exit)


def set_max_pending(sock: socket.socket, max_pending: object) -> None:
    """Set the bound on outstanding overlapped sends for ``sock`` (SPEC S5.6; default 65536).

    Raises:
        WSAError: WSAEINVAL for a bound below 1; WSAENOTSOCK for a closed socket.
    """
    check_socket(sock)
    if not isinstance(max_pending, int) or max_pending < 1:
        raise WSAError(WSAErrorCode.WSAEINVAL, detail=f"max_pending must be a positive int, not {max_pending!r}")
    slot_for(sock).max_pending = max_pending
    engine = find_engine(sock)
    if engine is not None:
        engine.max_pending = max_pending


# What to do instead, for a wsa_send called where no loop runs (issue 12 section 4).
_NO_LOOP = (
    "wsa_send() needs a running event loop in this thread: call it from a coroutine or callback of "
    "the loop that owns the socket. From another thread, post it to that loop with "
    "loop.call_soon_threadsafe(wsa_send, sock, buffers) (or asyncio.run_coroutine_threadsafe), "
    "send blocking with wsa_send_sync(sock, buffers), or use the C-shaped facade "
    "wsasend.winsock.WSASend, which runs its own loop"
)


def _engine_here(sock: socket.socket) -> SendEngine:
    """The engine of ``sock`` on the loop running in this thread, made if need be; remembered
    for the next ``wsa_send`` in the compiled build (see _LastEngine).

    ``id(sock)`` cannot name a dead socket here: the registry entry is dropped by the socket's
    finalizer when it dies, before its id can be reused. ``runs_here``: the engine's loop is
    this thread's running loop, told without asyncio's ``get_running_loop``, a ``getpid()``
    syscall per call on Python 3.11 (see SendEngine.runs_here).

    Raises:
        RuntimeError: no event loop runs in this thread (the message says what to use).
        WSAError: as :func:`engine_for`.
    """
    engine = _ENGINES.get(id(sock))
    if engine is None or (not engine.runs_here() if _NATIVE else engine.loop is not _running_loop()):
        try:
            loop = _get_running_loop()
        except RuntimeError:
            raise RuntimeError(_NO_LOOP) from None
        if engine is None or engine.loop is not loop:
            engine = engine_for(sock, loop)
    if _NATIVE:
        _LAST.engine = engine
    return engine


def wsa_send(
    sock: socket.socket,
    buffers: object,
    flags: object = 0,
    *,
    overlapped: object = None,
    completion_routine: CompletionRoutine | None = None,
    address: object = None,
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
        address: on an unconnected datagram socket (UDP, AF_UNIX), this datagram's own
            destination, as ``WSASendTo``'s (S8.7): ``(host, port)`` with an IPv4 literal,
            ``(host, port[, flowinfo[, scope_id]])`` with an IPv6 literal, or an AF_UNIX path.
            An unbound UDP socket is bound by its first send. A connected datagram socket takes
            only its own peer (WSAEISCONN otherwise); a connection-oriented socket ignores it.
            Datagrams to different destinations keep posting order.

    Returns:
        The overlapped: ``completed_immediately`` when the kernel took everything in this call,
        else ``pending`` (Winsock's WSA_IO_PENDING).

    Raises:
        WSAError: for a send that could not start (S5.2): nothing of it was sent and no
            completion follows. WSAEFAULT (bad buffer), WSAEOPNOTSUPP (flags), WSAEMSGSIZE,
            WSAESHUTDOWN, WSAENOTCONN, WSAENOTSOCK, WSAECONNRESET, WSAEWOULDBLOCK (too many
            outstanding sends, S5.6), WSAEINVAL (the overlapped is still pending, S5.5);
            for ``address``: WSAEFAULT (not an address), WSAEAFNOSUPPORT (another family),
            WSAEADDRNOTAVAIL (the unspecified address, 0.0.0.0 or ``::``),
            WSAEISCONN.
        RuntimeError: when no event loop is running in this thread; the message says what to
            use instead (``loop.call_soon_threadsafe``, ``wsa_send_sync``, the winsock facade).
    """
    # Compiled: the last engine used, if it is still the socket's current one and its loop runs
    # here (see _LastEngine). Interpreted, those checks cost more than the registry's lookup
    # (pure W4 posted +4%), so the pure build asks the registry, and asyncio for the loop: the
    # runs_here method call costs more there than asyncio's C function and its getpid() (W4
    # posted, pure: 15,695 user-space instructions a send with runs_here, issue 11).
    if _NATIVE:
        engine = _LAST.engine
        if engine is None or engine._key != id(sock) or not engine._current or not engine.runs_here():
            engine = _engine_here(sock)
    else:
        engine = _ENGINES.get(id(sock))
        if engine is None or engine.loop is not _running_loop():
            engine = _engine_here(sock)
    if address is None:
        if flags is ZERO and overlapped is None and completion_routine is None and type(buffers) is list:
            if engine.hot:
                return engine.post_list(sock, buffers)
            if engine.hot_messages:
                return engine.post_message_list(sock, buffers)
        return engine.post(sock, buffers, flags, overlapped, completion_routine)
    # S8.7: a datagram's own destination, only ever on the general path.
    dest = destination(sock, address, None, None, check_length=False)
    return engine.post(sock, buffers, flags, overlapped, completion_routine, dest)


def abort_for_close(engine: SendEngine) -> None:
    """``closesocket``'s abort of one engine, in its loop's thread. Internal (the last
    ``WSACleanup`` too): a transport on the socket ends as if aborted and lets go of its loop
    registrations before the descriptor closes (S6.1, S7.2). On a closed loop there is
    nothing to tell the transport (no callback can run) and nothing registered: only the
    sends are aborted (a transport left open on a bare-closed loop raised RuntimeError
    from closesocket, adversarial pass)."""
    keeper = engine.keeper
    transport = keeper() if keeper is not None and not engine.loop.is_closed() else None
    socket_closing = getattr(transport, "_socket_closing", None)
    if socket_closing is not None:
        socket_closing()
    engine.abort()


def _abort_on_its_loop(engine: SendEngine) -> None:
    """:func:`abort_for_close` in the thread of the engine's loop (engines are not thread-safe)."""
    if engine.in_loop_thread() or engine.loop.is_closed() or not engine.loop.is_running():
        abort_for_close(engine)
        return
    done = threading.Event()

    def _abort() -> None:
        try:
            abort_for_close(engine)
        finally:
            done.set()

    try:
        engine.loop.call_soon_threadsafe(_abort)
    except RuntimeError:  # closed in the meantime: nothing runs it any more
        abort_for_close(engine)
        return
    done.wait(5.0)


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
    engines: list[SendEngine] = []
    slot = slot_for(sock)
    from ._sync import interrupt_blocking_send

    with _LOCK:
        # A blocking send that owns the socket is woken first: no engine sends meanwhile, and
        # the thread it blocks may be a loop's whose engine is aborted below (closesocket waited
        # 5 s for that loop before waking it; adversarial pass).
        sync_owned = slot.sync_owner != 0
        # Closing from here on: no engine or thread can claim the socket any more (S5.11). An
        # abort below lets the socket go, and a sync send waiting for it, or another loop's
        # engine, took it and sent after the cut send of the engine just aborted (a stress
        # run: the peer's stream was cut into).
        slot.closing = True
        # (The transport's engine: another loop's sends on the socket may have made theirs
        # the current one, and an idle transport engine is neither owner nor waiting.)
        for engine in (find_engine(sock), slot.owner, *slot.waiting, slot.transport_engine):
            if engine is not None and engine not in engines:
                engines.append(engine)
    try:
        if sync_owned:
            interrupt_blocking_send(sock)
        for engine in engines:  # the current engine, and the socket's owner if another (S5.11)
            _abort_on_its_loop(engine)
        interrupt_blocking_send(sock)  # (one that waited for the socket and took it since)
    finally:
        sock.close()
        with _LOCK:  # a wsa_send_sync waiting for the socket (S4.2) wakes and sees it closed
            OWNERSHIP.changed.notify_all()
