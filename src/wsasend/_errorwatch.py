"""Tell a uvloop transport that its socket has an error pending, without a syscall per read.

uvloop (libuv's poll handle) reports a socket error (``POLLERR``: a TCP reset, an AF_UNIX peer
that closed with data unread) as an *error event*: it runs the reader once and then closes its
handle for the descriptor for good. When data arrived before the error, that one read returns
the data and the error stays pending with nobody left to notice (issue 10: a server leaked the
connection). The reader cannot tell an error event from a readable one, so the transport used
to ask ``getsockopt(SO_ERROR)`` after every read on uvloop: one system call per request, about
3% of a keep-alive HTTP request's CPU (issue 11).

Theory of operation
-------------------
Each uvloop loop gets one epoll instance of ours (an :class:`ErrorWatch`), created with its
first stream transport and watched with ``loop.add_reader``. Every stream transport of that loop
registers its socket in it with no event asked for and ``EPOLLONESHOT``: epoll always reports
EPOLLERR and EPOLLHUP, so the instance turns readable exactly when one of the sockets has an
error (or has shut down both ways), and one-shot reports each socket once, so a socket whose
condition persists cannot make the loop spin. The watch's reader maps each reported descriptor
to the transport registered for it and calls its ``_error_event``, which reads once more (data
first, then the error, in order) and from then on checks ``SO_ERROR`` after each read, as every
read used to (the transport may be paused, and uvloop will drop its reader again at the next
error event). Cost: two ``epoll_ctl`` calls per connection, none per read; one ``epoll_wait``
per error.

Ownership (the fd-reuse rule of the project): a registration is keyed by the descriptor
number, which the kernel reuses the moment a socket is closed. The watch maps a number to the
transport that registered it last, and :meth:`ErrorWatch.discard` removes the kernel's
registration only when the caller is still that transport, so a transport whose socket was
closed (or detached) behind its back never removes the registration of a newer socket that got
the same number. A report for a number whose owner changed (a registration the kernel kept for
a file still open elsewhere) reaches the current owner: a spurious read and ``SO_ERROR`` check
of its own socket, which is always sound.

Loop and process lifetime: the watch closes its epoll when its last transport lets go of it (a
descriptor of ours never outlives our transports; a transport collected unclosed lets go through
its weak reference's callback, the reader then removed in the loop's thread), when the loop's
``shutdown_asyncgens`` runs (``asyncio.run``, ``uvloop.run``: transports left unclosed; the
watcher of that is the loop's, made once, see ``_LoopWatches``), or with the loop object
otherwise; a forked child closes the inherited instances without touching
their registrations (the parent's, shared).
Compiled (SPEC S10): nothing here runs per read, but ``add`` and ``discard`` run for every
connection of a server (issue 11, workload HC).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import weakref
from collections.abc import AsyncGenerator
from typing import Final, Protocol, final

from ._loopwatch import watch as watch_loop_end

__all__ = ["ErrorWatch", "current_watch", "error_watch"]

# No event asked for: EPOLLERR and EPOLLHUP are reported whatever the mask; one report each.
_MASK: Final = select.EPOLLONESHOT


class _Watched(Protocol):
    def _error_event(self) -> None: ...


@final
class _Collected:
    """An owner's weak-reference callback: ``watch._collected(fd, ref)`` once it is collected.

    One object a registration, where a lambda over ``self`` and ``fd`` was two compiled (the
    function and its scope: issue 11, workload HC, objects made and freed a connection). It holds
    the watch, as the lambda did: the loop through the watch's dict ends, freed by reference
    counts, when the entry is dropped (_drop).
    """

    __slots__ = ("fd", "watch")

    def __init__(self, watch: ErrorWatch, fd: int) -> None:
        self.watch = watch
        self.fd = fd

    def __call__(self, ref: weakref.ReferenceType[_Watched]) -> None:
        self.watch._collected(self.fd, ref)


class ErrorWatch:
    """One loop's epoll of sockets whose error events its transports must not miss."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._epoll: select.epoll | None = select.epoll()
        self._fd = self._epoll.fileno()
        # Descriptor number -> the transport that registered it last (see "Ownership"), weakly:
        # an unclosed transport must still be collected (and warn).
        self._owners: dict[int, weakref.ReferenceType[_Watched]] = {}
        # The loop weakly: a watch lives in its loop's record, in a WeakKeyDictionary keyed by
        # the loop. (The loop's end closes it through the record's watcher, _LoopWatches.)
        self._loopref = weakref.ref(loop)
        loop.add_reader(self._fd, self._ready)

    def add(self, fd: int, owner: _Watched) -> bool:
        """Watch ``fd`` for ``owner`` (its socket's descriptor, open and the owner's now).

        False when it cannot be watched (the loop is ending, or the descriptor is no socket
        any more): the owner then checks after every read, as before the watch.
        """
        epoll = self._epoll
        if epoll is None:
            return False
        try:
            epoll.register(fd, _MASK)
        except FileExistsError:
            # This very file is registered already (a second transport on the socket after the
            # first let it go without discard): arm it again for the new owner.
            epoll.modify(fd, _MASK)
        except OSError:
            # EBADF, EPERM: closed or replaced behind the owner's back. A watch made for this
            # owner alone goes again at once (no descriptor of ours without a transport).
            loop = self._loopref()
            if not self._owners and loop is not None:
                self._retire(loop)
            return False
        # A number reused while an older owner is still listed (its socket closed behind its
        # back) simply changes hands: the kernel keys registrations by file too, so the old
        # file's registration (gone with the file, or reported once to the new owner) and this
        # one do not clash, and the old owner's discard now leaves this one alone.
        self._owners[fd] = weakref.ref(owner, _Collected(self, fd))
        return True

    def discard(self, fd: int, owner: _Watched, closing: bool = False) -> None:
        """Stop watching ``fd`` for ``owner``; nothing when another transport has the number now.

        ``closing``: the owner closes the descriptor right after this call. The kernel drops a
        registration with its file, so no ``epoll_ctl`` is made for it (one system call less a
        connection, issue 11); were the file still open elsewhere (a duplicate), its one report
        would reach the number's next owner as described under "Ownership", or nobody.
        """
        ref = self._owners.get(fd)
        if ref is None or ref() is not owner:
            return
        if self._drop(fd, not closing):
            # The loop's last watched transport is gone: so is the epoll (no descriptor of ours
            # outlives our transports; the next transport makes a new watch).
            loop = self._loopref()
            if loop is not None:
                self._retire(loop)

    def _collected(self, fd: int, ref: weakref.ReferenceType[_Watched]) -> None:
        # An owner collected without being closed (its __del__ warned and closed its socket):
        # it can discard nothing, so its entry goes here, and with the last one the watch. Any
        # thread may collect it: the loop's reader is removed in the loop's thread.
        if self._owners.get(fd) is not ref or not self._drop(fd):
            return
        loop = self._loopref()
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # closed in the meantime: it went with the loop
                loop.call_soon_threadsafe(self._retire_if_unused, loop)

    def _drop(self, fd: int, unregister: bool = True) -> bool:
        """Forget ``fd`` (listed) and unregister it; True when it was the last one."""
        del self._owners[fd]
        epoll = self._epoll
        if epoll is None:
            return False
        if unregister:
            # (Not contextlib.suppress: a context manager object a connection, for an error
            # that is rare. OSError: closed already, or the number is someone else's now.)
            try:  # noqa: SIM105
                epoll.unregister(fd)
            except OSError:
                pass
        return not self._owners

    def _retire_if_unused(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._owners and self._epoll is not None:
            self._retire(loop)

    def _ready(self) -> None:
        epoll = self._epoll
        if epoll is None:
            return
        for fd, _events in epoll.poll(0):
            ref = self._owners.get(fd)
            owner = None if ref is None else ref()
            if owner is not None:
                owner._error_event()

    def _retire(self, loop: asyncio.AbstractEventLoop) -> None:
        record = _record_of(loop)
        if record is not None and record.watch is self:
            record.watch = None
        if not loop.is_closed():
            loop.remove_reader(self._fd)
        self.close()

    def close(self) -> None:
        """Close the epoll instance; later calls and reports do nothing."""
        epoll, self._epoll = self._epoll, None
        self._owners.clear()
        if epoll is not None:
            epoll.close()


class _LoopWatches:
    """One loop's record: its watch of the moment (None between its transports) and the watcher
    of its end (``shutdown_asyncgens`` closes the watch then), made once per loop.

    A watch goes with its loop's last transport; a server whose connections all end (one
    client at a time: every connection) made a new watch, and a new loop-end watcher, at its
    next connection. The watcher is an async generator passed through the loop's ``firstiter``
    hook (~16,000 instructions, and as much again to drop it and the record's dict entry),
    so it is the loop's, not the watch's (issue 11: 147k instructions a connection with ``ab
    -c 1`` on uvloop). It holds the loop weakly, and calls a module function, not this record:
    nothing here keeps a loop or a record alive.
    """

    __slots__ = ("end_watcher", "loopref", "watch")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loopref = weakref.ref(loop)
        self.watch: ErrorWatch | None = None
        # None until made (outside a running loop: then the watch goes with the loop object).
        self.end_watcher: AsyncGenerator[None, None] | None = None


def _loop_ended(loop: asyncio.AbstractEventLoop) -> None:
    """The loop's ``shutdown_asyncgens``: close its watch of the moment; a loop run again gets a
    new end watcher with its next watch."""
    record = _record_of(loop)
    if record is None:
        return
    record.end_watcher = None
    watch = record.watch
    if watch is not None:
        watch._retire(loop)


_WATCHES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopWatches] = weakref.WeakKeyDictionary()


class _LastRecord:
    """The record ``error_watch`` used last (a server's connections all ask for the same)."""

    def __init__(self) -> None:
        self.record: _LoopWatches | None = None


# (WeakKeyDictionary.get is interpreted: ~2,000 instructions of every new connection, issue 11.
# The record holds its loop weakly, so this keeps no loop alive; it is used only while that
# reference gives the same loop, and a dead loop's gives None.)
_LAST: Final = _LastRecord()


def _record_of(loop: asyncio.AbstractEventLoop) -> _LoopWatches | None:
    last = _LAST.record
    if last is not None and last.loopref() is loop:
        return last
    return _WATCHES.get(loop)


def error_watch(loop: asyncio.AbstractEventLoop) -> ErrorWatch:
    """The :class:`ErrorWatch` of ``loop`` (a uvloop loop, running, in its thread), made once."""
    record = _record_of(loop)
    if record is None:
        record = _WATCHES[loop] = _LoopWatches(loop)
    _LAST.record = record
    watch = record.watch
    if watch is None or watch._epoll is None:
        if record.end_watcher is None:
            record.end_watcher = watch_loop_end(loop, _loop_ended)
        watch = record.watch = ErrorWatch(loop)
    return watch


def current_watch(loop: asyncio.AbstractEventLoop) -> ErrorWatch | None:
    """The loop's watch of the moment, or None (no transport of the loop is watched now)."""
    record = _record_of(loop)
    return None if record is None else record.watch


def _reset_after_fork() -> None:
    # The child shares the parent's epoll instances (and so their registrations): close our
    # descriptors for them and never unregister anything there.
    records = list(_WATCHES.values())
    _WATCHES.clear()
    _LAST.record = None
    for record in records:
        watch, record.watch = record.watch, None
        if watch is not None:
            watch.close()  # (close() only closes our descriptor: nothing is unregistered)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
