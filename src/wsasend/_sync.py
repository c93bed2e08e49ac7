"""Nonoverlapped WSASend: ``wsa_send_sync`` (SPEC S4).

Blocking sockets block until every byte is consumed (retrying short writes); nonblocking stream
sockets report partial consumption; message sockets are all-or-nothing. MSG_PARTIAL pieces on
message sockets are copied here (the one documented copy, S4.5) and sent as one message by the
first send without the flag.
"""

from __future__ import annotations

import contextlib
import errno
import select
import socket
import struct
import threading
import time
import weakref
from typing import Final

from ._buffers import IOV_MAX, Buffer, gather_for_message, normalize, split_last_byte
from ._dest import Destination
from ._engine import (
    CUT_DETAIL,
    OWNERSHIP,
    SYNC_PIECES_HELD,
    SendEngine,
    SocketSlot,
    _drop_closed_waiters,
    abandon,
    notify_locked,
    take_from,
)
from ._errors import WSAError, WSAErrorCode
from ._sockutil import (
    LINUX_NOSIGNAL,
    LINUX_OOB,
    LINUX_SEND_FLAGS,
    check_socket,
    check_stream_state,
    error_for,
    is_message_socket,
    max_message_size,
    message_limit_to,
    translate_flags,
)

__all__ = ["interrupt_blocking_send", "wsa_send_sync"]

# Sockets with a blocking wsa_send_sync in progress (S3.4 WSAEINPROGRESS), and those that
# closesocket() interrupted under it (WSAEINTR).
# struct timeval (SO_SNDTIMEO): two C longs.
_TIMEVAL = struct.Struct("@ll")
# Sockets whose per-socket lock a blocking send holds (see send_sync), and how often a send
# that waits for a nonblocking one's attempt looks again whether a blocking one took over.
_BLOCKING_SENDS: weakref.WeakSet[socket.socket] = weakref.WeakSet()
_LOCK_POLL: Final = 0.001
# How long a blocking send waits for the socket before it looks again for an owner (or an
# engine in line) whose loop was closed bare: nothing wakes it for that (S5.12).
_WAIT_SLICE: Final = 0.25
# How long a blocking send whose descriptor is nonblocking under it (another socket object on
# it set O_NONBLOCK) waits for POLLOUT before it tries again, instead of spinning on EAGAIN.
_EAGAIN_WAIT: Final = 0.25
_IN_PROGRESS: weakref.WeakKeyDictionary[socket.socket, threading.Lock] = weakref.WeakKeyDictionary()
_INTERRUPTED: weakref.WeakSet[socket.socket] = weakref.WeakSet()
_REGISTRY_LOCK = threading.Lock()
# MSG_PARTIAL pieces of the message being assembled on each message socket (S4.5).
_PARTIAL: weakref.WeakKeyDictionary[socket.socket, bytearray] = weakref.WeakKeyDictionary()


def take_held_pieces(sock: socket.socket) -> bytearray | None:
    """The nonoverlapped MSG_PARTIAL pieces held for ``sock``, handed over to its engine's
    next overlapped send on the message (S4.4); None if there are none. The buffer itself, no
    longer held here: its copy (S4.5) stays the only one."""
    with _REGISTRY_LOCK:  # (against a piece held for another socket from another thread)
        pending = _PARTIAL.pop(sock, None)
        if not _PARTIAL:
            SYNC_PIECES_HELD[0] = 0  # (other exits and collected sockets leave it high)
    return pending or None


def _lock_for(sock: socket.socket) -> threading.Lock:
    with _REGISTRY_LOCK:
        lock = _IN_PROGRESS.get(sock)
        if lock is None:
            lock = _IN_PROGRESS[sock] = threading.Lock()
        return lock


def interrupt_blocking_send(sock: socket.socket) -> None:
    """Wake a blocking ``wsa_send_sync`` on ``sock`` in another thread (closesocket, S3.4).

    Closing a descriptor does not wake a thread blocked in ``sendmsg`` on Linux; shutting the
    socket down does, and the woken send then reports WSAEINTR ("The socket was closed").
    """
    lock = _IN_PROGRESS.get(sock)
    if lock is not None and lock.locked():
        _INTERRUPTED.add(sock)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _claim(sock: socket.socket, deadline: float | None) -> SocketSlot:
    """Make this thread's send the socket's owner (SYNC, S5.11); never jump the queue (S4.2).

    An owning engine that is idle lets go at once. One with sends pending makes this call
    refuse (WSAEWOULDBLOCK: nonblocking socket, or the loop's own thread, which must never
    block) or wait until the engine has sent them and lets go (the engine wakes us through
    ``OWNERSHIP.changed``; no polling). Engines whose sends wait for the socket go first.
    """
    from ._api import slot_for

    slot = slot_for(sock)
    nonblocking = sock.gettimeout() == 0.0
    dead: list[SendEngine] = []
    try:
        waited = False
        with OWNERSHIP.lock:
            while True:
                if slot.closing or sock in _INTERRUPTED or sock.fileno() < 0:  # closesocket() (S6.1)
                    if not waited:
                        # A new send on a socket being (or already) closed: WSAENOTSOCK, as
                        # every other send there; WSAEINTR is for a send the close woke.
                        raise WSAError(
                            WSAErrorCode.WSAENOTSOCK, errno=errno.EBADF, detail="the socket is closed or being closed"
                        )
                    raise WSAError(WSAErrorCode.WSAEINTR, detail="the socket was closed", bytes_sent=0)
                if slot.cut:
                    # (S5.12: a loop's end cut the stream; see SocketSlot.cut)
                    raise WSAError(
                        WSAErrorCode.WSAECONNABORTED, errno=errno.ECONNABORTED, detail=CUT_DETAIL, bytes_sent=0
                    )
                if slot.send_shut and (slot.owner is not None or slot.waiting):
                    # shutdown(SD_SEND) or write_eof() while overlapped sends drain (S6.2): a
                    # new send fails at once, as on Windows, not after waiting for the drain.
                    raise WSAError(
                        WSAErrorCode.WSAESHUTDOWN, detail="sends on this socket were shut down", bytes_sent=0
                    )
                owner = slot.owner
                for engine in (owner, slot.engine, *slot.waiting):
                    if engine is not None and engine.waits_for_an_end():
                        # Overlapped MSG_PARTIAL pieces wait for the send that ends them (S4.4),
                        # which only a send posted to that engine can be: going first would
                        # jump them (a cork run's bytes after ours), and waiting for the engine
                        # to let go would wait for ever (this send may be the one meant to end
                        # them).
                        raise WSAError(
                            WSAErrorCode.WSAEWOULDBLOCK,
                            detail="overlapped MSG_PARTIAL pieces wait for their end on this socket: "
                            "end them with an overlapped send (S4.2, S4.4)",
                        )
                if slot.waiting:
                    _drop_closed_waiters(slot, dead)
                if not slot.waiting and (owner is None or take_from(owner, dead)):
                    slot.sync_owner = threading.get_ident()
                    return slot
                if slot.cut:
                    continue  # (take_from found the cut: see above)
                busy = owner if owner is not None else slot.waiting[0]
                if nonblocking or busy.in_loop_thread():
                    raise WSAError(WSAErrorCode.WSAEWOULDBLOCK, detail="overlapped sends are pending on this socket")
                if owner is not None:
                    owner._release_wanted = True
                    with contextlib.suppress(RuntimeError):  # closed: the next take_from drops it
                        owner.loop.call_soon_threadsafe(owner._release_if_idle)
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise WSAError(WSAErrorCode.WSAETIMEDOUT, detail="timed out waiting for pending overlapped sends")
                # Engines waiting in line go first (never jump the queue), then let go to us:
                # an engine that takes the socket while a thread waits lets go once idle
                # (SendEngine._claim). Without it, the first of them (or another loop's engine
                # that took the socket from an owner we had asked) claimed it, sent, went idle
                # and kept it, and this thread waited for ever (adversarial passes).
                slot.sync_waiting += 1
                waited = True
                try:
                    # In slices: a loop closed bare while we wait wakes nobody; the next look
                    # (take_from, _drop_closed_waiters) sees it and frees the socket (S5.12; it
                    # waited for ever, adversarial pass).
                    OWNERSHIP.changed.wait(_WAIT_SLICE if remaining is None else min(remaining, _WAIT_SLICE))
                finally:
                    slot.sync_waiting -= 1
    finally:
        abandon(dead, None, False)  # (in the caller's sync send: see abandon)


def _release_if_ours(sock: socket.socket) -> None:
    """SYNC -> FREE if this thread's send holds the socket: wake the threads and engines
    waiting for it (S5.11). Called with the socket's send lock held, so no other thread's
    blocking send can hold it meanwhile (S3.4)."""
    from ._api import slot_for

    slot = slot_for(sock)
    dead: list[SendEngine] = []
    with OWNERSHIP.lock:
        if slot.sync_owner != threading.get_ident():
            return
        slot.sync_owner = 0
        notify_locked(slot, dead)
    abandon(dead, None, False)


def _reset_after_fork() -> None:
    """In a forked child (called by ``_api._reset_after_fork``): no send is in progress there."""
    global _IN_PROGRESS, _REGISTRY_LOCK, _PARTIAL
    _IN_PROGRESS = weakref.WeakKeyDictionary()
    _REGISTRY_LOCK = threading.Lock()
    _INTERRUPTED.clear()
    _BLOCKING_SENDS.clear()
    # The parent's nonoverlapped MSG_PARTIAL pieces are the parent's: kept, the child's next
    # message on the socket went out with them in front (adversarial pass).
    _PARTIAL = weakref.WeakKeyDictionary()
    SYNC_PIECES_HELD[0] = 0


def wsa_send_sync(sock: socket.socket, buffers: object, flags: int = 0) -> int:
    """Send now, with WSASend's nonoverlapped semantics; return the bytes consumed (SPEC S4).

    - Blocking socket: blocks until every byte is consumed. With a timeout (``settimeout``),
      the timeout bounds the whole call and running out raises WSAETIMEDOUT whose
      ``bytes_sent`` says how far it got.
    - Nonblocking stream socket: one attempt; returns what the kernel took, possibly less than
      offered (use :func:`remaining` for the rest); WSAEWOULDBLOCK only when it took nothing.
    - Message socket: one message, all or nothing; WSAEMSGSIZE before any syscall when it is
      larger than :func:`max_message_size`. With MSG_PARTIAL the buffers are copied and held
      until a send without the flag sends the whole message; a piece returns its own length.

    Raises:
        WSAError: with ``bytes_sent`` set to what the kernel consumed before the failure. Codes:
            WSAEFAULT, WSAEOPNOTSUPP, WSAEMSGSIZE, WSAEWOULDBLOCK, WSAETIMEDOUT, WSAESHUTDOWN,
            WSAECONNRESET, WSAENOTCONN, WSAENOTSOCK, WSAEACCES, WSAEINTR, WSAEINPROGRESS, and
            the errno table of S3.3.
    """
    return send_sync(sock, buffers, flags, None)


def send_sync(sock: socket.socket, buffers: object, flags: object, dest: Destination | None) -> int:
    """:func:`wsa_send_sync`, with a message's own destination and control data (S8.7).

    Internal (the facade's ``sendto``, ``WSASendTo`` and ``WSASendMsg``): ``dest`` is
    ``(address or None, ancdata)`` as checked by :mod:`._dest`, or None. A stream socket
    ignores the address (Windows' ``sendto`` rule) and refuses control data (WSAEINVAL).
    """
    check_socket(sock)
    bufs, nbytes = normalize(buffers)
    osflags, more = translate_flags(flags, sock)
    timeout = sock.gettimeout()
    if timeout is None:
        timeout = _send_timeout(sock)
    deadline = None if not timeout else time.monotonic() + timeout
    lock = _lock_for(sock)
    # One send at a time per socket. While a blocking send holds the lock (for as long as it
    # blocks), another send is WSAEINPROGRESS (S3.4), whatever its own mode: a nonblocking one
    # must never wait (the loop's thread), and the socket may have become nonblocking since
    # (WSAEventSelect). A nonblocking send holds it for one attempt, so the next one waits for
    # that: threads sending on one nonblocking socket, as an event-select server does, met
    # WSAEINPROGRESS, which Winsock 2 never gives there.
    if not lock.acquire(blocking=False):
        while True:
            if sock in _BLOCKING_SENDS:
                raise WSAError(
                    WSAErrorCode.WSAEINPROGRESS, detail="another thread's blocking send is in progress on this socket"
                )
            if lock.acquire(timeout=_LOCK_POLL):
                break
    # The lock is released by the `finally` below, entered at once: a KeyboardInterrupt in
    # the marking of the blocking send (WeakSet.add is Python code) left the lock held, and
    # every later send on the socket met WSAEINPROGRESS or waited for ever.
    # Likewise the socket: released below if this thread holds it, whether or not `_claim`
    # got to return (an interrupt in its last steps left the socket claimed for good).
    blocking_send = False
    try:
        if timeout != 0.0:
            blocking_send = True
            _BLOCKING_SENDS.add(sock)
        _claim(sock, deadline)
        if is_message_socket(sock):
            return _send_message(sock, bufs, nbytes, osflags, more, timeout, deadline, dest)
        if dest is not None and dest[1]:
            raise WSAError(WSAErrorCode.WSAEINVAL, detail="control data on a stream socket")
        if not nbytes:
            check_stream_state(sock)  # S2.4: a zero-byte send checks the socket's state too
        return _send_stream(sock, bufs, nbytes, osflags, timeout, deadline)
    finally:
        _release_if_ours(sock)
        if blocking_send:
            _BLOCKING_SENDS.discard(sock)
        lock.release()
        _INTERRUPTED.discard(sock)


def _send_timeout(sock: socket.socket) -> float | None:
    """The socket's SO_SNDTIMEO in seconds, None when unset (S4.2: it bounds the call as a
    ``settimeout`` does; ignored, a blocking send looped on its EAGAIN for ever)."""
    try:
        sec, usec = _TIMEVAL.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _TIMEVAL.size))
    except OSError:
        return None
    return sec + usec / 1e6 if sec or usec else None


def _fail(sock: socket.socket, exc: OSError, sent: int) -> WSAError:
    if sock in _INTERRUPTED:
        err = WSAError(WSAErrorCode.WSAEINTR, errno=exc.errno, bytes_sent=sent)
        err.__cause__ = exc
        return err
    return error_for(sock, exc, sent)


def _poll_writable(sock: socket.socket, deadline: float) -> bool:
    """Wait until ``sock`` is writable or ``deadline`` passes (False then).

    A socket closed by another thread meanwhile (descriptor -1) counts as writable: the send
    that follows fails as a send on a closed socket does, with our error and its count (S3.4).
    Polling -1 raised ValueError out of ``wsa_send_sync`` (adversarial pass).
    """
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return False
    fd = sock.fileno()
    if fd < 0:
        return True
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return bool(poller.poll(remaining * 1000.0))


def _send_stream(
    sock: socket.socket, bufs: list[Buffer], nbytes: int, osflags: int, timeout: float | None, deadline: float | None
) -> int:
    total = 0
    index = 0  # first buffer not wholly sent
    offset = 0  # bytes of bufs[index] already sent
    nonblocking = timeout == 0.0
    while total < nbytes:
        head = bufs[index]
        iov: list[Buffer] = [memoryview(head)[offset:] if offset else head]
        iov.extend(bufs[index + 1 : index + IOV_MAX])
        # MSG_OOB's urgent mark belongs with the send's last byte (S4.1), and Linux puts it on
        # the last byte each sendmsg *takes*: so the flag goes only on a call that carries that
        # byte alone; every byte before it goes without (a short call cannot misplace the mark).
        flags = osflags
        if osflags & LINUX_OOB and (index + IOV_MAX < len(bufs) or nbytes - total > 1):
            flags = osflags & ~LINUX_OOB
            if index + IOV_MAX >= len(bufs):
                iov = split_last_byte(iov)[0]
        try:
            if deadline is not None:
                if not _poll_writable(sock, deadline):
                    raise WSAError(WSAErrorCode.WSAETIMEDOUT, errno=errno.ETIMEDOUT, bytes_sent=total)
                n = sock.sendmsg(iov, [], flags | LINUX_SEND_FLAGS)
            elif nonblocking:
                n = sock.sendmsg(iov, [], flags | LINUX_SEND_FLAGS)
            else:
                n = sock.sendmsg(iov, [], flags | LINUX_NOSIGNAL)
        except (BlockingIOError, InterruptedError) as exc:
            if nonblocking:
                if total:
                    return total
                raise WSAError(WSAErrorCode.WSAEWOULDBLOCK, errno=exc.errno, bytes_sent=0) from exc
            if deadline is None and isinstance(exc, BlockingIOError):
                _poll_writable(sock, time.monotonic() + _EAGAIN_WAIT)  # (see _EAGAIN_WAIT)
            continue
        except WSAError:
            raise
        except OSError as exc:
            raise _fail(sock, exc, total) from exc
        total += n
        if nonblocking and n < sum(map(len, iov)):
            return total  # one attempt (S4.2): the kernel took less than it was offered
        # Walk the buffers forward by n bytes (each is a bytes or a "B" memoryview: len = bytes).
        n += offset
        while index < len(bufs) and n >= len(bufs[index]):
            n -= len(bufs[index])
            index += 1
        offset = n
    return total


def _send_message(
    sock: socket.socket,
    bufs: list[Buffer],
    nbytes: int,
    osflags: int,
    more: bool,
    timeout: float | None,
    deadline: float | None,
    dest: Destination | None = None,
) -> int:
    # S8.7: the destination and control data go with the message's last piece (the send that
    # ends it); the earlier pieces' are not kept.
    address, ancdata = dest if dest is not None else (None, [])
    if more:
        # S4.5: the one copy the package makes; the caller's buffer is only borrowed.
        pending = _PARTIAL.get(sock)
        if pending is None:
            with _REGISTRY_LOCK:
                pending = _PARTIAL[sock] = bytearray()
                SYNC_PIECES_HELD[0] += 1  # (see take_held_pieces)
        for buf in bufs:
            pending += buf
        return nbytes
    pending = _PARTIAL.get(sock)
    message: list[Buffer] = bufs
    total = nbytes
    if pending:
        message = [memoryview(pending), *bufs]
        total += len(pending)
    # (An IPv4-mapped destination has IPv4's limit.)
    limit = max_message_size(sock) if address is None else message_limit_to(sock, address)
    if total > limit:
        _PARTIAL.pop(sock, None)
        raise WSAError(WSAErrorCode.WSAEMSGSIZE, detail=f"message of {total} bytes > {limit}")
    iov = gather_for_message(message)
    retried = False
    while True:
        try:
            if deadline is not None:
                if not _poll_writable(sock, deadline):
                    raise WSAError(WSAErrorCode.WSAETIMEDOUT, errno=errno.ETIMEDOUT, bytes_sent=0)
                sock.sendmsg(iov, ancdata, osflags | LINUX_SEND_FLAGS, address)
            elif timeout == 0.0:
                sock.sendmsg(iov, ancdata, osflags | LINUX_SEND_FLAGS, address)
            else:
                sock.sendmsg(iov, ancdata, osflags | LINUX_NOSIGNAL, address)
        except (BlockingIOError, InterruptedError) as exc:
            if timeout == 0.0:
                raise WSAError(WSAErrorCode.WSAEWOULDBLOCK, errno=exc.errno, bytes_sent=0) from exc
            if deadline is None and isinstance(exc, BlockingIOError):
                _poll_writable(sock, time.monotonic() + _EAGAIN_WAIT)  # (see _EAGAIN_WAIT)
            continue
        except WSAError:
            raise
        except OSError as exc:
            if exc.errno == errno.ECONNREFUSED and not retried:
                retried = True  # S3.3: a stale ICMP port-unreachable; Windows retries once
                continue
            if exc.errno == errno.EMSGSIZE:
                _PARTIAL.pop(sock, None)
            raise _fail(sock, exc, 0) from exc
        break
    _PARTIAL.pop(sock, None)
    return nbytes
