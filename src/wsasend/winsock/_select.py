"""``WSAEventSelect`` and ``WSAEnumNetworkEvents`` for the send side: FD_WRITE, FD_CLOSE (S8.7).

Theory of operation
-------------------
Each selected socket gets an epoll instance of its own, edge-triggered on EPOLLOUT and
EPOLLRDHUP (EPOLLERR and EPOLLHUP are always reported), whose descriptor the provider's loop
watches with ``add_reader``. Edge-triggered on purpose: an unconnected TCP socket polls as
EPOLLHUP forever, and level-triggering would spin the provider. When the epoll reports:

- EPOLLOUT on a socket with a peer (or a datagram socket), and FD_WRITE enabled: FD_WRITE is
  recorded and the event set; FD_WRITE is then disabled until a send fails WSAEWOULDBLOCK,
  which re-arms it (``rearm_write``: an ``epoll.modify``, which re-checks readiness at once,
  so room that is already back is not missed). That is Windows' re-enabling rule.
- EPOLLRDHUP/EPOLLHUP/EPOLLERR on a socket that had a peer: FD_CLOSE, once, with error 0 for
  the peer's orderly close and WSAECONNRESET when EPOLLERR says the connection was reset.

Recorded events and their error codes stay until ``WSAEnumNetworkEvents`` reads (and clears)
them, which also resets the event it is given, as Windows does.
"""

# Winsock's own spellings on purpose: SPEC S8 and STYLE "Winsock spellings only where the thing
# *is* Winsock".
# ruff: noqa: N802, N803, N815

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import threading
import weakref
from typing import Final

import attrs

from .._errors import WSAError, WSAErrorCode
from .._overlapped import WSAEvent
from .._sockutil import check_socket, is_known_connected, mark_connected, tcp_state
from . import _startup as _st
from ._startup import _fail, _ok, _Provider, _started

__all__ = [
    "FD_CLOSE",
    "FD_CLOSE_BIT",
    "FD_MAX_EVENTS",
    "FD_WRITE",
    "FD_WRITE_BIT",
    "WSANETWORKEVENTS",
    "WSAEnumNetworkEvents",
    "WSAEventSelect",
]

#: Network event bits (winsock2.h).
FD_WRITE_BIT: Final = 1
FD_WRITE: Final = 1 << FD_WRITE_BIT
FD_CLOSE_BIT: Final = 5
FD_CLOSE: Final = 1 << FD_CLOSE_BIT
FD_MAX_EVENTS: Final = 10
_SUPPORTED: Final = FD_WRITE | FD_CLOSE
_EPOLL_MASK: Final = select.EPOLLOUT | select.EPOLLRDHUP | select.EPOLLET


@attrs.define(eq=False)
class WSANETWORKEVENTS:
    """What ``WSAEnumNetworkEvents`` writes (Winsock's WSANETWORKEVENTS)."""

    lNetworkEvents: int = 0
    #: Per event bit (``FD_WRITE_BIT``, ``FD_CLOSE_BIT``): its error code, 0 for none.
    iErrorCode: list[int] = attrs.Factory(lambda: [0] * FD_MAX_EVENTS)


class _Selection:
    """One socket's WSAEventSelect: its epoll, its event, what was recorded."""

    __slots__ = ("close_done", "epoll", "errors", "event", "lock", "loop", "mask", "recorded", "sockref", "write_armed")

    def __init__(self, sock: socket.socket, event: WSAEvent, mask: int) -> None:
        self.sockref = weakref.ref(sock)
        self.event = event
        self.mask = mask
        self.lock = threading.Lock()
        self.recorded = 0
        self.errors = [0] * FD_MAX_EVENTS
        self.write_armed = True
        self.close_done = False
        self.epoll = select.epoll()
        self.loop: asyncio.AbstractEventLoop | None = None

    def on_ready(self) -> None:
        """The epoll is readable (provider thread): record FD_WRITE / FD_CLOSE."""
        try:
            ready = self.epoll.poll(0)
        except (OSError, ValueError):
            return
        sock = self.sockref()
        if sock is None or sock.fileno() < 0:
            return
        bits = 0
        for _fd, mask in ready:
            bits |= mask
        signal = False
        with self.lock:
            had_peer = _had_peer(sock)
            if bits & select.EPOLLOUT and self.mask & FD_WRITE and self.write_armed and had_peer:
                self.write_armed = False
                self.recorded |= FD_WRITE
                self.errors[FD_WRITE_BIT] = 0
                signal = True
            closed = bits & (select.EPOLLRDHUP | select.EPOLLERR) and sock.type != socket.SOCK_DGRAM
            if closed and not bits & select.EPOLLERR and sock in _RECEIVE_SHUT:
                closed = _peer_closed(sock, bits)
            if closed and self.mask & FD_CLOSE and not self.close_done and had_peer:
                self.close_done = True
                self.recorded |= FD_CLOSE
                self.errors[FD_CLOSE_BIT] = int(WSAErrorCode.WSAECONNRESET) if bits & select.EPOLLERR else 0
                signal = True
        if signal:
            self.event.set()

    def rearm_write(self) -> None:
        """A send failed WSAEWOULDBLOCK: FD_WRITE is recorded again once there is room."""
        with self.lock:
            if self.write_armed or not self.mask & FD_WRITE:
                return
            self.write_armed = True
        sock = self.sockref()
        if sock is not None and sock.fileno() >= 0:
            with contextlib.suppress(OSError, ValueError):
                self.epoll.modify(sock.fileno(), _EPOLL_MASK)  # re-checks readiness now


#: Sockets whose receiving direction ``shutdown(SD_RECEIVE or SD_BOTH)`` shut down here.
_RECEIVE_SHUT: weakref.WeakSet[socket.socket] = weakref.WeakSet()

# TCP states (include/net/tcp_states.h) in which the peer has sent its FIN, or is gone.
_TCP_PEER_CLOSED: Final = frozenset({6, 7, 8, 9, 11})  # TIME_WAIT, CLOSE, CLOSE_WAIT, LAST_ACK, CLOSING


def mark_receive_shut(sock: socket.socket) -> None:
    """``shutdown`` shut ``sock``'s receiving direction: its EPOLLRDHUP is no longer the peer's."""
    _RECEIVE_SHUT.add(sock)


def _peer_closed(sock: socket.socket, bits: int) -> bool:
    """EPOLLRDHUP on a socket we shut for receiving: did the peer close too (FD_CLOSE)?

    Linux raises EPOLLRDHUP for our own ``SHUT_RD`` as for the peer's FIN; Windows records
    FD_CLOSE only for the peer's close (the local shutdown's FD_CLOSE hid a later reset: it is
    recorded once; adversarial pass). TCP says which by its state; an AF_UNIX peer that closes
    shuts both directions of ours, which is EPOLLHUP (its half-close alone cannot be told from
    ours). A reset is EPOLLERR, decided before this.
    """
    if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM:
        state = tcp_state(sock)
        return state is None or state[0] in _TCP_PEER_CLOSED
    return bool(bits & select.EPOLLHUP)


def _had_peer(sock: socket.socket) -> bool:
    if sock.type == socket.SOCK_DGRAM or is_known_connected(sock):
        return True
    try:
        sock.getpeername()
    except OSError:
        return False
    mark_connected(sock)
    return True


# Selections by socket (they die with it; WSAEventSelect(s, None, 0) or closesocket end them).
_SELECTIONS: weakref.WeakKeyDictionary[socket.socket, _Selection] = weakref.WeakKeyDictionary()


def _teardown(sel: _Selection, provider: _Provider | None = None) -> None:
    """Stop watching (in the provider's thread, where its loop registrations live)."""

    def stop() -> None:
        loop = sel.loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(OSError, ValueError):
                loop.remove_reader(sel.epoll.fileno())
        sel.epoll.close()

    provider = provider or _st._provider
    if provider is None:
        sel.epoll.close()
        return
    try:
        provider.call(stop)
    except WSAError:
        sel.epoll.close()


def forget(sock: socket.socket) -> None:
    """``closesocket``: end the socket's selection before its descriptor goes."""
    with _st._REGISTRY_LOCK:
        sel = _SELECTIONS.pop(sock, None)
    if sel is not None:
        _teardown(sel)


def WSAEventSelect(s: socket.socket, hEventObject: WSAEvent | None, lNetworkEvents: int) -> int:
    """Have FD_WRITE and FD_CLOSE signal an event (Winsock's WSAEventSelect; SPEC S8.7).

    As on Windows the socket is made nonblocking. FD_WRITE is recorded when the socket can send
    (at once if it is connected and has room, else when its connect completes) and again only
    after a send failed WSAEWOULDBLOCK and room came back; FD_CLOSE when the peer closed
    (error 0) or reset (WSAECONNRESET) the connection. ``lNetworkEvents`` 0 ends the selection.

    Returns:
        0, or SOCKET_ERROR: WSANOTINITIALISED, WSAENOTSOCK, WSA_INVALID_HANDLE (not an event),
        WSAEINVAL (bits other than FD_WRITE | FD_CLOSE: the receive side is not ours).
    """
    from ._events import _check_event

    if _started() is None:
        return _fail(WSAErrorCode.WSANOTINITIALISED)
    try:
        sock = check_socket(s)
        if not isinstance(lNetworkEvents, int) or lNetworkEvents & ~_SUPPORTED or lNetworkEvents < 0:
            raise WSAError(WSAErrorCode.WSAEINVAL, detail=f"lNetworkEvents={lNetworkEvents!r}")
        with _st._REGISTRY_LOCK:
            old = _SELECTIONS.pop(sock, None)
        if old is not None:
            _teardown(old)
        if not lNetworkEvents:
            _ok()
            return 0
        event = _check_event(hEventObject)
        _had_peer(sock)  # remember a peer now: after a reset getpeername no longer tells
        sock.setblocking(False)
        sel = _Selection(sock, event, lNetworkEvents)
        fd = sock.fileno()

        def start() -> None:
            provider = _st._provider
            assert provider is not None
            sel.loop = provider.loop
            provider.loop.add_reader(sel.epoll.fileno(), sel.on_ready)
            sel.epoll.register(fd, _EPOLL_MASK)  # an edge now if it is ready already

        provider = _st._provider
        if provider is None:
            raise WSAError(WSAErrorCode.WSANOTINITIALISED)
        with _st._REGISTRY_LOCK:
            _SELECTIONS[sock] = sel
        provider.call(start)
    except WSAError as exc:
        return _fail(exc.winerror)
    _ok()
    return 0


def WSAEnumNetworkEvents(s: socket.socket, hEventObject: WSAEvent | None, lpNetworkEvents: object) -> int:
    """Read and clear the recorded network events (Winsock's WSAEnumNetworkEvents; SPEC S8.7).

    Args:
        hEventObject: if given, reset too (atomically with the read, as Windows does).
        lpNetworkEvents: a :class:`WSANETWORKEVENTS` to fill.

    Returns:
        0, or SOCKET_ERROR: WSANOTINITIALISED, WSAENOTSOCK, WSAEFAULT (not a WSANETWORKEVENTS),
        WSA_INVALID_HANDLE (a bad event).
    """
    from ._events import _check_event

    if _started() is None:
        return _fail(WSAErrorCode.WSANOTINITIALISED)
    try:
        sock = check_socket(s)
        if not isinstance(lpNetworkEvents, WSANETWORKEVENTS):
            raise WSAError(WSAErrorCode.WSAEFAULT, detail="lpNetworkEvents is not a WSANETWORKEVENTS")
        event = None if hEventObject is None else _check_event(hEventObject)
    except WSAError as exc:
        return _fail(exc.winerror)
    sel = _SELECTIONS.get(sock)
    recorded, errors = 0, [0] * FD_MAX_EVENTS
    if sel is not None:
        with sel.lock:
            recorded, errors = sel.recorded, list(sel.errors)
            sel.recorded = 0
            sel.errors = [0] * FD_MAX_EVENTS
            if event is not None:
                event.reset()
    elif event is not None:
        event.reset()
    lpNetworkEvents.lNetworkEvents = recorded
    lpNetworkEvents.iErrorCode = errors
    _ok()
    return 0


def rearm_write(sock: socket.socket) -> None:
    """Called when a send on ``sock`` failed WSAEWOULDBLOCK (Windows re-enables FD_WRITE)."""
    sel = _SELECTIONS.get(sock)
    if sel is not None:
        sel.rearm_write()


def _cleanup(provider: _Provider) -> None:
    with _st._REGISTRY_LOCK:
        selections = list(_SELECTIONS.values())
        _SELECTIONS.clear()
    for sel in selections:
        _teardown(sel, provider)


def _after_fork() -> None:
    for sel in list(_SELECTIONS.values()):
        with contextlib.suppress(OSError):
            sel.epoll.close()
    _SELECTIONS.clear()


_st._CLEANUP_HOOKS.append(_cleanup)
_st._FORK_HOOKS.append(_after_fork)
