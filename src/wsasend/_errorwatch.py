"""Read a uvloop loop's stream transports through one epoll of ours, errors included.

uvloop (libuv's poll handle) reports a socket error (``POLLERR``: a TCP reset, an AF_UNIX peer
that closed with data unread) as an *error event*: it runs the reader once and then closes its
handle for the descriptor for good. When data arrived before the error, that one read returns
the data and the error stays pending with nobody left to notice (issue 10: a server leaked the
connection). The reader cannot tell an error event from a readable one, so the transport used
to ask ``getsockopt(SO_ERROR)`` after every read on uvloop: one system call per request, about
3% of a keep-alive HTTP request's CPU (issue 11). And each ``add_reader`` makes a poll handle
whose set-up and removal cost seven system calls (libuv tests the descriptor with an epoll add
and delete, sets it non-blocking again, and deletes it from the epoll twice more at the end):
with a connection per request, about a third of what the stock transport makes (issue 11,
workload HC).

Theory of operation
-------------------
Each uvloop loop gets one epoll instance of ours (an :class:`ErrorWatch`), created with its
first stream transport and watched with ``loop.add_reader``. Every stream transport of that loop
registers its socket in it (one ``epoll_ctl``; its close drops it with the descriptor, no call):

- while it reads, for ``EPOLLIN``, level-triggered, as a loop's reader (:meth:`ErrorWatch.reading`;
  the loop itself never sees the socket); epoll adds EPOLLERR and EPOLLHUP whatever the mask,
  and a read after them meets the error in order, after the data;
- while it does not (paused, at EOF), for nothing and ``EPOLLONESHOT``: the instance turns
  readable only when the socket has an error (or has shut down both ways), reported once, so
  a socket whose condition persists cannot make the loop spin. Pausing and resuming change the
  mask (one ``epoll_ctl`` each, against uvloop's three and four).

The watch's reader (one ``epoll_wait`` per wake-up of the loop, shared by the sockets ready
then) maps each reported descriptor to the transport registered for it and calls its
``_watch_event``. A transport that could not be registered (the loop ending, a descriptor
replaced) reads through the loop as before, and checks ``SO_ERROR`` after each read.

Ownership (the fd-reuse rule of the project): a registration is keyed by the descriptor
number, which the kernel reuses the moment a socket is closed. While a transport is registered
here it holds its socket's descriptor open, as uvloop does for a socket it watches (its
``_io_refs``: a ``close()`` behind the transport's back waits for the transport's own), so the
number cannot pass to another socket under the registration. The watch maps a number to the
transport that registered it last, and :meth:`ErrorWatch.discard` and
:meth:`ErrorWatch.reading` act on the kernel's registration only when the caller is still that
transport, so a transport whose socket was detached behind its back never changes the
registration of a newer socket that got the same number. A report for a number whose owner
changed (a registration the kernel kept for a file still open elsewhere) reaches the current
owner: a spurious read and ``SO_ERROR`` check of its own socket, which is always sound.

Reading transports are held by the loop's reader of the watch (see ``_ready_of``), as a loop
holds its readers' callbacks: a transport waiting for data is never collected, and one whose
loop was closed can be.

Loop and process lifetime: the watch closes its epoll when its last transport lets go of it,
unless a server of ours serves on the loop (a descriptor of ours never outlives our transports
and servers; a transport collected unclosed lets go through its weak reference's callback, the
reader then removed in the loop's thread). A serving :class:`~wsasend.WSAServer` pins its loop's
watch (:func:`pin`) until it closes: with one client at a time every connection was the loop's
last, and making and dropping the epoll and its loop reader cost a third of the server's CPU a
connection (issue 11, ``ab -c 1``). The watch also closes when the loop's
``shutdown_asyncgens`` runs (``asyncio.run``, ``uvloop.run``: transports left unclosed; the
watcher of that is the loop's, made once, see ``_LoopWatches``), or when the loop drops its
reader (a bare ``loop.close()``); the transports still registered then let their descriptors go
and read through the loop. A forked child closes the inherited instances without touching
their registrations (the parent's, shared).
Compiled (SPEC S10): ``add``, ``discard`` and the reader run for every connection of a server
(issue 11, workload HC).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import select
import weakref
from collections.abc import AsyncGenerator
from typing import Final, Protocol, cast, final

from ._loopwatch import watch as watch_loop_end
from ._sockutil import IOVSEND_MODULE

__all__ = ["ErrorWatch", "current_watch", "error_watch", "pin", "unpin"]

# No event asked for: EPOLLERR and EPOLLHUP are reported whatever the mask; one report each.
_MASK: Final = select.EPOLLONESHOT
# The compiled build's poll and dispatch in one C call (_iovsend.c's watch_poll), else None.
_IOV_WATCH_POLL: Final = None if IOVSEND_MODULE is None else IOVSEND_MODULE.watch_poll
# A reading owner's registration (see ErrorWatch.reading): data, level-triggered; errors too.
_READ_MASK: Final = select.EPOLLIN
# The compiled build's epoll_ctl(2) on the watch's instance (_iovsend.c), else None: the same
# call as the epoll object's register / unregister / modify, without their method lookup and
# argument parsing (~500 instructions each, twice a connection: issue 11, workload HC).
_IOV_EPOLL_CTL: Final = None if IOVSEND_MODULE is None else IOVSEND_MODULE.epoll_ctl
_CTL_ADD: Final = 1  # (EPOLL_CTL_ADD, EPOLL_CTL_DEL, EPOLL_CTL_MOD: Linux's values)
_CTL_DEL: Final = 2
_CTL_MOD: Final = 3


class _Watched(Protocol):
    def _watch_event(self, events: int) -> None: ...
    def _watch_gone(self, rearm: bool) -> None: ...


def _ready_of(watch: ErrorWatch, readers: dict[int, _Watched]) -> None:
    """The loop's reader of a watch's epoll: ``functools.partial(_ready_of, watch, readers)``.

    ``readers`` (descriptor number -> the transport reading through the watch) is held here
    only, as a loop holds the callbacks of its readers: a transport that waits for data must
    not be collected (the collector took live server connections whose only other references
    were their protocols'), and one whose loop was closed must be (the loop drops this
    partial then, and with it the transports; the watch holds the partial weakly).
    """
    del readers  # (only held)
    watch._ready()


def _unread(readers: dict[int, _Watched], fd: int) -> bool:
    """``readers.pop(fd, None) is not None``: compiled, ``dict.pop`` is a generic method call,
    ~500 instructions against ~150 for the test and the ``del`` (issue 11, workload HC: twice
    a connection, when its transport stops reading and when it closes)."""
    if fd in readers:
        del readers[fd]
        return True
    return False


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
        reader = functools.partial(_ready_of, self, {})
        # (A weak reference: see _ready_of. The loop drops its reader when it closes, or when
        # _retire removes it; the watch then ends with it, see _ReaderGone.)
        self._reader: weakref.ReferenceType[functools.partial[None]] = weakref.ref(reader, _ReaderGone(self))
        loop.add_reader(self._fd, reader)

    def add(self, fd: int, owner: _Watched, reading: bool = False) -> bool:
        """Watch ``fd`` for ``owner`` (its socket's descriptor, open and the owner's now), and
        with ``reading`` tell it of data too (see :meth:`reading`).

        False when it cannot be watched (the loop is ending or closed, or the descriptor is no
        socket any more): the owner then reads through the loop and checks after every read,
        as before the watch.
        """
        epoll = self._epoll
        readers = self._readers()
        if epoll is None or readers is None:
            return False
        mask = _READ_MASK if reading else _MASK
        try:
            self._ctl(epoll, _CTL_ADD, fd, mask)
        except FileExistsError:
            # This very file is registered already (a second transport on the socket after the
            # first let it go without discard): arm it again for the new owner.
            self._ctl(epoll, _CTL_MOD, fd, mask)
        except OSError:
            # EBADF, EPERM: closed or replaced behind the owner's back. A watch made for this
            # owner alone goes again at once (no descriptor of ours without a transport), unless
            # a server pins it.
            loop = self._loopref()
            if not self._owners and loop is not None:
                self._retire_unless_pinned(loop)
            return False
        # A number reused while an older owner is still listed (its socket closed behind its
        # back) simply changes hands: the kernel keys registrations by file too, so the old
        # file's registration (gone with the file, or reported once to the new owner) and this
        # one do not clash, and the old owner's discard now leaves this one alone.
        self._owners[fd] = weakref.ref(owner, _Collected(self, fd))
        if reading:
            readers[fd] = owner
        else:
            _unread(readers, fd)
        return True

    def reading(self, fd: int, owner: _Watched, on: bool) -> bool:
        """Tell ``owner`` (watched) of data on ``fd`` from now on (``on``), or of errors only.

        A reading owner's registration asks for ``EPOLLIN``, level-triggered: the watch's
        reader calls its ``_watch_event`` whenever the socket is readable, as a loop calls a
        reader, and the loop itself never sees the socket (issue 11: uvloop's ``add_reader``
        and ``remove_reader`` cost seven system calls a connection, and one pair a pause).
        Otherwise the registration is ``EPOLLONESHOT`` with no event asked for: errors only,
        reported once. False when ``owner`` no longer holds the number here, or the watch is
        ending: nothing was changed, and a reading owner must read through its loop.
        """
        ref = self._owners.get(fd)
        epoll = self._epoll
        readers = self._readers()
        if ref is None or ref() is not owner or epoll is None or readers is None:
            return False
        try:
            self._ctl(epoll, _CTL_MOD, fd, _READ_MASK if on else _MASK)
        except OSError:
            return False  # (the owner's descriptor is gone: nothing is registered for it)
        if on:
            readers[fd] = owner
        else:
            _unread(readers, fd)
        return True

    def discard(self, fd: int, owner: _Watched, closing: bool = False) -> None:
        """Stop watching ``fd`` for ``owner``; nothing when another transport has the number now.

        ``closing``: the owner closes the descriptor right after this call. The kernel drops a
        registration with its file, so no ``epoll_ctl`` is made for it (one system call less a
        connection, issue 11); were the file still open elsewhere (a duplicate, a forked
        child's), its one report would reach the number's next owner as described under
        "Ownership", or nobody. Not so a reading registration (level-triggered: the loop would
        spin on data nobody reads): that one is always removed.
        """
        ref = self._owners.get(fd)
        if ref is None or ref() is not owner:
            return
        if self._drop(fd, closing):
            # The loop's last watched transport is gone: so is the epoll (no descriptor of ours
            # outlives our transports; the next transport makes a new watch), unless a server
            # of ours serves on the loop (see pin).
            loop = self._loopref()
            if loop is not None:
                self._retire_unless_pinned(loop)

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

    def _drop(self, fd: int, closing: bool = False) -> bool:
        """Forget ``fd`` (listed) and unregister it, unless its owner closes it now and it is
        registered for errors only (see discard); True when it was the last one."""
        del self._owners[fd]
        readers = self._readers()
        reading = readers is not None and _unread(readers, fd)
        epoll = self._epoll
        if epoll is None:
            return False
        if reading or not closing:
            # (Not contextlib.suppress: a context manager object a connection, for an error
            # that is rare. OSError: closed already, or the number is someone else's now.)
            try:  # noqa: SIM105
                self._ctl(epoll, _CTL_DEL, fd, 0)
            except OSError:
                pass
        return not self._owners

    def _ctl(self, epoll: select.epoll, op: int, fd: int, mask: int) -> None:
        """``epoll_ctl(2)`` of ``op`` for ``fd`` on this watch's instance ``epoll`` (open):
        compiled, in C (see _IOV_EPOLL_CTL), else the epoll object's ``register``, ``modify``
        or ``unregister``. Raises their OSError."""
        if _IOV_EPOLL_CTL is not None:
            _IOV_EPOLL_CTL(self._fd, op, fd, mask)
        elif op == _CTL_ADD:
            epoll.register(fd, mask)
        elif op == _CTL_MOD:
            epoll.modify(fd, mask)
        else:
            epoll.unregister(fd)

    def _retire_if_unused(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._owners and self._epoll is not None:
            self._retire_unless_pinned(loop)

    def _retire_unless_pinned(self, loop: asyncio.AbstractEventLoop) -> None:
        """Close the watch, which has no transport left, unless it is its loop's watch of the
        moment and a server pins it (see :func:`pin`)."""
        record = _record_of(loop)
        if record is not None and record.pins and record.watch is self:
            return
        self._retire(loop)

    def _readers(self) -> dict[int, _Watched] | None:
        """The reading owners, held by the loop's reader (see _ready_of); None once it is gone."""
        reader = self._reader()
        return None if reader is None else cast("dict[int, _Watched]", reader.args[1])

    def _ready(self) -> None:
        epoll = self._epoll
        if epoll is None:
            return
        if _IOV_WATCH_POLL is not None:
            _IOV_WATCH_POLL(self._fd, self._owners)  # (the loop below, in C: see _iovsend.c)
            return
        for fd, events in epoll.poll(0):
            ref = self._owners.get(fd)
            owner = None if ref is None else ref()
            if owner is not None:
                owner._watch_event(events)

    def _retire(self, loop: asyncio.AbstractEventLoop) -> None:
        record = _record_of(loop)
        if record is not None and record.watch is self:
            record.watch = None
        if not loop.is_closed():
            loop.remove_reader(self._fd)
        self.close()

    def _reader_gone(self) -> None:
        # The loop dropped the watch's reader (closed bare, without shutdown_asyncgens, or
        # _retire removed it): nothing reports this epoll any more, so the watch ends.
        loop = self._loopref()
        record = None if loop is None else _record_of(loop)
        if record is not None and record.watch is self:
            record.watch = None
        self.close()

    def close(self, rearm: bool = True) -> None:
        """Close the epoll instance; later calls and reports do nothing. Each transport still
        watched is told (``_watch_gone``: it reads through its loop from then on, with
        ``rearm``, and lets the socket's descriptor go)."""
        epoll, self._epoll = self._epoll, None
        owners = list(self._owners.values())
        self._owners.clear()
        readers = self._readers()
        if readers is not None:
            readers.clear()
        if epoll is not None:
            epoll.close()
        for ref in owners:
            owner = ref()
            if owner is not None:
                owner._watch_gone(rearm)


@final
class _ReaderGone:
    """The weak-reference callback of a watch's reader (see _ready_of): the watch ends."""

    __slots__ = ("watch",)

    def __init__(self, watch: ErrorWatch) -> None:
        self.watch = watch

    def __call__(self, ref: object) -> None:
        self.watch._reader_gone()


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

    __slots__ = ("end_watcher", "loopref", "pins", "watch")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loopref = weakref.ref(loop)
        self.watch: ErrorWatch | None = None
        # Servers of ours serving on the loop (see pin): while there are any, the watch of the
        # moment stays when its last transport goes.
        self.pins = 0
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


def pin(loop: asyncio.AbstractEventLoop) -> object:
    """Keep ``loop``'s watch between its transports until :func:`unpin` (a server of ours
    serving on ``loop``, a uvloop loop, in its thread); the token to hand to ``unpin``.

    The watch itself is made by the loop's first watched transport, as ever: a pin only keeps it
    when the loop's last transport goes, so that a server whose clients come one at a time does
    not make and close an epoll, and register and remove its loop reader, for every connection.
    The loop's end (``shutdown_asyncgens``, a bare ``close()``) still closes it. Pins are
    counted: the watch goes when the last one is let go and no transport is watched.
    """
    record = _record_made(loop)
    record.pins += 1
    return record


def unpin(token: object, loop: asyncio.AbstractEventLoop) -> None:
    """Let go of a :func:`pin` of ``loop`` (in its thread): with the last one, a watch that no
    transport uses any more closes now. A pin made before a ``fork()`` is a record the child
    no longer lists: letting it go there changes nothing of the child's."""
    if not isinstance(token, _LoopWatches) or token.pins <= 0:
        return
    token.pins -= 1
    watch = token.watch
    if watch is not None:
        watch._retire_if_unused(loop)  # (closes it unless a transport, or another pin, holds it)


def _record_of(loop: asyncio.AbstractEventLoop) -> _LoopWatches | None:
    last = _LAST.record
    if last is not None and last.loopref() is loop:
        return last
    return _WATCHES.get(loop)


def _record_made(loop: asyncio.AbstractEventLoop) -> _LoopWatches:
    """``loop``'s record, made (and listed) if it has none yet."""
    record = _record_of(loop)
    if record is None:
        record = _WATCHES[loop] = _LoopWatches(loop)
    return record


def error_watch(loop: asyncio.AbstractEventLoop) -> ErrorWatch:
    """The :class:`ErrorWatch` of ``loop`` (a uvloop loop, running, in its thread), made once."""
    record = _LAST.record = _record_made(loop)
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
            watch.close(False)  # (only our descriptor closes: nothing is unregistered, scheduled)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
