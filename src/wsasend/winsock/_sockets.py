"""Sockets and the send calls of the facade (SPEC S8.2, S8.3, S8.7).

Every send here is an ordinary ``wsa_send`` (overlapped) or ``wsa_send_sync`` (nonoverlapped):
the facade adds no send logic of its own (SPEC S8).
"""

# Winsock's own spellings on purpose: SPEC S8 and STYLE "Winsock spellings only where the thing
# *is* Winsock".
# ruff: noqa: N802, N803, N815

from __future__ import annotations

import asyncio
import ctypes
import errno
import socket
import threading
from collections.abc import Callable
from typing import Any

import attrs

from .._api import closesocket as _closesocket
from .._api import engine_for, find_engine, shut_to_claims, wsa_send
from .._buffers import WSABUF
from .._dest import Destination, destination
from .._errors import WSAError, WSAErrorCode, errno_to_wsa
from .._overlapped import CompletionRoutine, WSAOverlapped
from .._sockutil import MSG_PARTIAL, check_socket, connect_in_progress, is_known_connected, mark_shutdown
from .._sync import send_sync
from . import _startup as _st
from ._events import _check_event
from ._ports import _PortRoutine, is_port_routine, routine_for
from ._select import forget as forget_selection
from ._select import mark_receive_shut, rearm_write
from ._startup import (
    _KNOWN,
    _MADE,
    _NONOVERLAPPED,
    _SHUT_SEND,
    _SOCKET_FLAGS,
    INVALID_SOCKET,
    SD_BOTH,
    SD_RECEIVE,
    SD_SEND,
    SOCKET_ERROR,
    WSA_FLAG_OVERLAPPED,
    _fail,
    _ok,
    _Provider,
    _run_on_engine_loop,
    _started,
    _state,
    _ThreadState,
)

# -- sockets (S8.2) -------------------------------------------------------------------------------


def WSASocket(
    af: int,
    type: int,
    proto: int,
    info: object = None,
    group: int = 0,
    flags: int = WSA_FLAG_OVERLAPPED,
) -> socket.socket | None:
    """Make a socket (Winsock's WSASocket; SPEC S8.2). Blocking, like every new Winsock socket.

    Args:
        af, type, proto: as for :class:`socket.socket` (``socket.AF_INET``, ...).
        info: ``lpProtocolInfo``; only None is supported.
        group: reserved; only 0 is supported.
        flags: ``WSA_FLAG_OVERLAPPED`` makes the socket usable for overlapped sends; without it,
            a ``WSASend`` with an overlapped or a completion routine fails WSAEINVAL.
            ``WSA_FLAG_NO_HANDLE_INHERIT`` is accepted (Python sockets are never inherited).

    Returns:
        The socket, or ``INVALID_SOCKET`` (None) with the code in ``WSAGetLastError()``:
        WSANOTINITIALISED, WSAEINVAL (bad info, group or flags), or the socket call's error.
    """
    if _started() is None:
        _fail(WSAErrorCode.WSANOTINITIALISED)
        return INVALID_SOCKET
    if info is not None or group != 0 or not isinstance(flags, int) or flags & ~_SOCKET_FLAGS:
        _fail(WSAErrorCode.WSAEINVAL)
        return INVALID_SOCKET
    try:
        sock = socket.socket(af, type, proto)
    except OSError as exc:
        _fail(errno_to_wsa(exc.errno))
        return INVALID_SOCKET
    with _st._REGISTRY_LOCK:
        _MADE.add(sock)
        if not flags & WSA_FLAG_OVERLAPPED:
            _NONOVERLAPPED.add(sock)
    _ok()
    return sock


def socket_(af: int, type: int, protocol: int) -> socket.socket | None:
    """Make a socket (Winsock's ``socket``; exported as ``wsasend.winsock.socket``; S8.2).

    ``WSASocket(af, type, protocol, None, 0, WSA_FLAG_OVERLAPPED)``: Winsock's ``socket``
    makes overlapped-capable sockets, and the last ``WSACleanup`` closes them too.

    Returns:
        The socket, or ``INVALID_SOCKET`` (None) with the code in ``WSAGetLastError()``.
    """
    return WSASocket(af, type, protocol, None, 0, WSA_FLAG_OVERLAPPED)


def closesocket(s: socket.socket) -> int:
    """Abort the socket's pending sends and close it (Winsock's closesocket; SPEC S6.1, S8.2).

    Every pending send completes with WSA_OPERATION_ABORTED (events set, routines queued to
    their threads); a blocking ``WSASend`` in another thread fails with WSAEINTR.

    Returns:
        0, or SOCKET_ERROR: WSANOTINITIALISED, WSAENOTSOCK (closed already, or not a socket).
    """
    if _started() is None:
        return _fail(WSAErrorCode.WSANOTINITIALISED)
    try:
        if isinstance(s, socket.socket):
            forget_selection(s)
        _closesocket(s)
    except WSAError as exc:
        return _fail(exc.winerror)
    _ok()
    return 0


def shutdown(s: socket.socket, how: int) -> int:
    """Disable sends, receives or both on a socket (Winsock's shutdown; SPEC S8.2).

    ``SD_SEND`` and ``SD_BOTH``: every ``WSASend`` from now on fails WSAESHUTDOWN at once (and
    so does ``wsa_send`` on the socket), while the sends already queued go out first: the
    socket's sending direction is shut down when its queue has drained, so the peer reads every
    queued byte and then end-of-stream. This call does not wait for that. Note that a
    ``closesocket`` before the queue drained aborts the rest (S6.1), as on Windows.
    ``SD_RECEIVE``, and the receiving half of ``SD_BOTH``, shut the receiving direction down
    at once.

    Windows' rules, which Linux does not share (issue 13 items 2-4): on a listening socket, or a
    connection-oriented socket that is not connected, every ``how`` fails WSAENOTCONN and
    changes nothing (Linux would mark the receiving side shut, or stop the listener); on an
    unconnected datagram socket ``SD_SEND`` and ``SD_RECEIVE`` succeed, and later sends fail
    WSAESHUTDOWN.

    Returns:
        0, or SOCKET_ERROR: WSANOTINITIALISED, WSAENOTSOCK, WSAEINVAL (``how`` is none of
        SD_RECEIVE, SD_SEND, SD_BOTH), WSAENOTCONN (not connected, or listening).
    """
    if _started() is None:
        return _fail(WSAErrorCode.WSANOTINITIALISED)
    try:
        sock = check_socket(s)
        if how not in (SD_RECEIVE, SD_SEND, SD_BOTH) or isinstance(how, bool):
            raise WSAError(WSAErrorCode.WSAEINVAL, detail=f"how={how!r}")
        datagram = sock.type == socket.SOCK_DGRAM
        connected = True
        try:
            sock.getpeername()
        except OSError:
            connected = False
        if not datagram:
            if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                raise WSAError(WSAErrorCode.WSAENOTCONN, detail="a listening socket has no connection to shut down")
            if not connected:
                raise WSAError(WSAErrorCode.WSAENOTCONN, detail="the socket is not connected")
        if how != SD_SEND:
            # SD_RECEIVE, and SD_BOTH's receiving half: at once, whatever is queued to send
            # (SD_BOTH deferred both halves behind the drain: reads went on; adversarial pass).
            mark_receive_shut(sock)  # (first: the EPOLLRDHUP it raises is ours, not the peer's)
            try:
                sock.shutdown(socket.SHUT_RD)
            except OSError as exc:
                # An unconnected datagram socket: Linux applies it and says ENOTCONN; Windows
                # says nothing (issue 13 item 4).
                if not (datagram and exc.errno == errno.ENOTCONN):
                    raise
            if how == SD_RECEIVE:
                _ok()
                return 0
        linux_how = socket.SHUT_WR if how == SD_SEND else socket.SHUT_RDWR
        with _st._REGISTRY_LOCK:
            _SHUT_SEND.add(sock)
        shut_to_claims(sock)  # wsa_send on another loop, wsa_send_sync: WSAESHUTDOWN too
        outcome: list[BaseException | None] = []

        def shut() -> None:
            # Mark first, so that an EPIPE after this point reads as WSAESHUTDOWN (S3.3).
            mark_shutdown(sock)
            try:
                if sock.fileno() >= 0:
                    sock.shutdown(linux_how)
            except OSError as exc:
                outcome.append(None if datagram and exc.errno == errno.ENOTCONN else exc)
            else:
                outcome.append(None)

        engine = find_engine(sock)
        if engine is None or engine.loop.is_closed():
            shut()
        else:
            _run_on_engine_loop(engine, lambda: engine.drain_then(shut))
        if outcome and outcome[0] is not None:
            raise outcome[0]
    except WSAError as exc:
        return _fail(exc.winerror)
    except OSError as exc:
        return _fail(errno_to_wsa(exc.errno))
    _ok()
    return 0


# -- out-parameters -------------------------------------------------------------------------------

# ctypes integer type codes: an out-parameter must be an integer ctypes object.
_INT_CODES = frozenset("bBhHiIlLqQ")
_DWORD_SIZE = 4  # Windows' DWORD: 32 bits


def _out_param(obj: object, *, may_be_none: bool) -> Any:
    """The ctypes integer an out-parameter writes to, or None; WSAEFAULT for anything else.

    Accepts a ``DWORD`` (any ctypes integer) or a ``ctypes.pointer`` to one, the two shapes
    ported code has; ``None`` only where Winsock allows NULL.
    """
    if obj is None:
        if may_be_none:
            return None
        raise WSAError(WSAErrorCode.WSAEFAULT, detail="the out-parameter is None")
    target: object = obj
    if isinstance(obj, ctypes._Pointer):
        try:
            target = obj.contents
        except ValueError:  # a NULL pointer
            raise WSAError(WSAErrorCode.WSAEFAULT, detail="the out-parameter is a NULL pointer") from None
    if isinstance(target, ctypes._SimpleCData) and getattr(target, "_type_", "") in _INT_CODES:
        if ctypes.sizeof(target) < _DWORD_SIZE:
            # Windows: a DWORD not wholly inside the caller's memory is WSAEFAULT. A narrower
            # integer took the count wrapped (300 bytes read as 44) with success (adversarial pass).
            raise WSAError(
                WSAErrorCode.WSAEFAULT,
                detail=f"the out-parameter ({type(target).__name__}) is narrower than a DWORD (4 bytes)",
            )
        return target
    raise WSAError(WSAErrorCode.WSAEFAULT, detail=f"the out-parameter must be a DWORD, not {type(obj).__name__}")


def _capture(buffers: object, count: object) -> list[Any]:
    """The first ``count`` entries of ``lpBuffers``, in a list of our own (the array is transient)."""
    if isinstance(buffers, WSABUF):
        items: list[Any] = [buffers]
    elif isinstance(buffers, (list, tuple)):
        items = list(buffers)
    else:
        raise WSAError(
            WSAErrorCode.WSAEFAULT, detail=f"lpBuffers must be a list of WSABUF, not {type(buffers).__name__}"
        )
    if not isinstance(count, int) or isinstance(count, bool) or count < 0 or count > len(items):
        raise WSAError(
            WSAErrorCode.WSAEFAULT, detail=f"dwBufferCount={count!r} but lpBuffers holds {len(items)} entries"
        )
    del items[count:]
    return items


# -- WSASend (S8.3) -------------------------------------------------------------------------------


def _queue_in_thread(state: _ThreadState, routine: CompletionRoutine) -> CompletionRoutine:
    """A routine for the engine that queues ``routine`` to the posting thread's APC queue."""

    def queued(error: int, transferred: int, overlapped: WSAOverlapped, flags: int) -> None:
        state.queue_apc(routine, (error, transferred, overlapped, flags))

    return queued


def _post(
    provider: _Provider,
    sock: socket.socket,
    bufs: list[Any],
    flags: int,
    overlapped: WSAOverlapped | None,
    routine: CompletionRoutine | None,
    dest: Destination | None,
) -> tuple[bool, int]:
    """Post one overlapped send; ``(completed immediately, count)``. Raises as ``wsa_send``.

    ``dest``: a datagram's own destination and control data (S8.7), posted through the same
    engine as every send (``SendEngine.post``'s general path).
    """
    port_routine = routine_for(sock)
    if port_routine is not None and routine is not None:
        # Windows: a completion routine on a socket associated with a port is WSAEINVAL.
        raise WSAError(WSAErrorCode.WSAEINVAL, detail="a completion routine on a port-associated socket")
    if not is_known_connected(sock) and connect_in_progress(sock):
        # Issue 13 item 5: Windows fails a send during a nonblocking connect WSAENOTCONN at the
        # call; Linux would take it (EAGAIN) and the engine would queue it. One getsockopt per
        # send only until the socket is seen connected (then a set lookup).
        raise WSAError(WSAErrorCode.WSAENOTCONN, detail="the connect is still in progress")
    with _st._REGISTRY_LOCK:
        _KNOWN.add(sock)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        # Inside a running loop: that loop, and the caller's routine as is (call_soon, S5.3).
        ov = _post_on_loop(sock, bufs, flags, overlapped, port_routine if port_routine else routine, dest)
        return ov.completed_immediately, ov.transferred
    if port_routine is not None:
        routine = port_routine
    elif routine is not None:
        if not callable(routine):
            raise WSAError(WSAErrorCode.WSAEFAULT, detail="lpCompletionRoutine is not callable")
        routine = _queue_in_thread(_state(), routine)

    def post() -> tuple[bool, int]:
        # On the provider's loop. Read the outcome here: once we return, the send may complete
        # (on this thread) before the caller looks at the overlapped.
        ov = _post_on_loop(sock, bufs, flags, overlapped, routine, dest)
        return ov.completed_immediately, ov.transferred

    return provider.call(post)


def _post_on_loop(
    sock: socket.socket,
    bufs: list[Any],
    flags: int,
    overlapped: WSAOverlapped | None,
    routine: CompletionRoutine | None,
    dest: Destination | None,
) -> WSAOverlapped:
    """``wsa_send`` on the running loop; with a destination, the engine's general path."""
    if dest is None:
        ov = wsa_send(sock, bufs, flags, overlapped=overlapped, completion_routine=routine)
    else:
        ov = engine_for(sock, asyncio.get_running_loop()).post(sock, bufs, flags, overlapped, routine, dest)
    if isinstance(routine, _PortRoutine):
        routine.posted(ov)  # (its call is scheduled, not run: it runs after this callback)
    return ov


def _send(
    s: object,
    lpBuffers: object,
    dwBufferCount: object,
    lpNumberOfBytesSent: Any,
    dwFlags: int,
    lpOverlapped: WSAOverlapped | None,
    lpCompletionRoutine: CompletionRoutine | None,
    *,
    message: bool = False,
    dest: Destination | None = None,
) -> int:
    """The one send path of WSASend, send, WSASendTo and WSASendMsg (S8.3, S8.7).

    ``dest``: a datagram's own destination and control data, checked already.
    """
    provider = _started()
    if provider is None:
        return _fail(WSAErrorCode.WSANOTINITIALISED)
    overlapped = lpOverlapped is not None or lpCompletionRoutine is not None
    try:
        sock = check_socket(s)
        if message and sock.type == socket.SOCK_STREAM:
            # Windows: WSASendMsg is for datagram and raw sockets only (Wine's test_WSASendMsg).
            raise WSAError(WSAErrorCode.WSAEINVAL, detail="WSASendMsg on a stream socket")
        bufs = _capture(lpBuffers, dwBufferCount)
        out = _out_param(lpNumberOfBytesSent, may_be_none=overlapped)
        if sock in _SHUT_SEND:
            raise WSAError(WSAErrorCode.WSAESHUTDOWN, detail="shutdown() disabled sends on this socket")
        if not overlapped:
            try:
                n = send_sync(sock, bufs, dwFlags, dest)
            except WSAError as exc:
                if (
                    exc.winerror == WSAErrorCode.WSAEWOULDBLOCK
                    and not exc.bytes_sent
                    and not is_known_connected(sock)
                    and connect_in_progress(sock)
                ):
                    # Issue 13 item 5: EAGAIN with nothing taken during a connect is WSAENOTCONN.
                    raise WSAError(WSAErrorCode.WSAENOTCONN, detail="the connect is still in progress") from exc
                if exc.winerror == WSAErrorCode.WSAEWOULDBLOCK:
                    rearm_write(sock)  # Windows re-enables FD_WRITE after a WSAEWOULDBLOCK
                raise
            out.value = n
            _ok()
            return 0
        if sock in _NONOVERLAPPED:
            raise WSAError(WSAErrorCode.WSAEINVAL, detail="the socket was made without WSA_FLAG_OVERLAPPED")
        if lpCompletionRoutine is None and isinstance(lpOverlapped, WSAOverlapped) and lpOverlapped.hEvent is not None:
            # Such a send completes only through its hEvent: an open event, or None (one is made
            # for it). A closed event or a context value is WSA_INVALID_HANDLE, nothing sent, as
            # Windows' I/O manager refuses it (it was taken and sent, unobservable; pass C).
            _check_event(lpOverlapped.hEvent)
        immediate, n = _post(provider, sock, bufs, dwFlags, lpOverlapped, lpCompletionRoutine, dest)
    except WSAError as exc:
        return _fail(exc.winerror)
    if not immediate:
        return _fail(WSAErrorCode.WSA_IO_PENDING)
    if out is not None:
        out.value = n
    _ok()
    return 0


def WSASend(
    s: socket.socket,
    lpBuffers: object,
    dwBufferCount: int,
    lpNumberOfBytesSent: Any,
    dwFlags: int,
    lpOverlapped: WSAOverlapped | None = None,
    lpCompletionRoutine: CompletionRoutine | None = None,
) -> int:
    """Send the first ``dwBufferCount`` buffers of ``lpBuffers`` on ``s`` (Winsock's WSASend; S8.3).

    With ``lpOverlapped`` or ``lpCompletionRoutine`` the send is overlapped (SPEC S5): it is
    posted on the running loop, or from a thread with no running loop on the provider's, and
    completes through the overlapped's ``hEvent``, ``WSAGetOverlappedResult``, the routine, or
    (on a socket associated with one) a completion port packet. With neither it is
    nonoverlapped and follows the socket's blocking mode, as ``send`` does (S4). The buffers
    are not copied on the overlapped path: leave them alone until the send completes. The list
    itself is captured before this call returns, so it may be reused.

    Args:
        s: a connected socket (from ``WSASocket`` or any Python socket).
        lpBuffers: a list of :class:`WSABUF` (or of bytes-like objects), or one ``WSABUF``.
        dwBufferCount: how many entries of ``lpBuffers`` to send.
        lpNumberOfBytesSent: a ``DWORD`` set to the count when the send completes in this call;
            left alone when it is pending. May be None only for an overlapped send.
        dwFlags: ``MSG_OOB``, ``MSG_DONTROUTE``, ``MSG_PARTIAL`` (S4.1, S4.4).
        lpOverlapped: a :class:`WSAOVERLAPPED` not used by another pending send (S5.5).
        lpCompletionRoutine: ``routine(dwError, cbTransferred, lpOverlapped, dwFlags)``. Posted
            from a thread, it runs in that thread during its next alertable wait (``SleepEx``,
            ``WSAWaitForMultipleEvents(..., alertable=True)``); posted inside a running loop, it
            runs through ``loop.call_soon``. With a routine, ``hEvent`` is not signalled. On a
            socket associated with a completion port a routine is WSAEINVAL (as on Windows).

    Returns:
        0 when the send completed in this call (``lpNumberOfBytesSent`` holds the count, and
        ``WSAGetLastError()`` is 0, as on Windows); else SOCKET_ERROR with
        ``WSAGetLastError()`` == WSA_IO_PENDING for a send that will complete later, or any
        other code for one that did not start (no completion of any kind follows). A send
        while a nonblocking connect is in progress is WSAENOTCONN (Windows' code).
    """
    return _send(s, lpBuffers, dwBufferCount, lpNumberOfBytesSent, dwFlags, lpOverlapped, lpCompletionRoutine)


def _one_buffer(buf: object, len: int, call: Callable[[list[WSABUF], ctypes.c_uint32], int]) -> int:
    """``send``/``sendto``: the first ``len`` bytes of ``buf`` as one nonoverlapped WSASend(To)
    call; the bytes sent, or SOCKET_ERROR (WSAEFAULT when ``len`` is outside ``buf``)."""
    if _started() is None:
        return _fail(WSAErrorCode.WSANOTINITIALISED)
    try:
        wsabuf = WSABUF(len, buf)
    except (WSAError, TypeError, ValueError):
        return _fail(WSAErrorCode.WSAEFAULT)
    count = ctypes.c_uint32(0)
    if call([wsabuf], count) == SOCKET_ERROR:
        return SOCKET_ERROR
    return int(count.value)


def send(s: socket.socket, buf: object, len: int, flags: int) -> int:
    """Send the first ``len`` bytes of ``buf`` (Winsock's send; SPEC S8.7).

    A nonoverlapped ``WSASend`` of one buffer: it follows the socket's blocking mode (a
    nonblocking stream send may take only part of it: the CE 5.0 reading, S8.7).

    Returns:
        The bytes sent, or SOCKET_ERROR with ``WSAGetLastError()`` as for ``WSASend``
        (WSAEFAULT when ``len`` is outside ``buf``).
    """
    return _one_buffer(buf, len, lambda bufs, count: _send(s, bufs, 1, count, flags, None, None))


def WSASendTo(
    s: socket.socket,
    lpBuffers: object,
    dwBufferCount: int,
    lpNumberOfBytesSent: Any,
    dwFlags: int,
    lpTo: object,
    iTolen: int,
    lpOverlapped: WSAOverlapped | None = None,
    lpCompletionRoutine: CompletionRoutine | None = None,
) -> int:
    """``WSASend`` to a destination (Winsock's WSASendTo; SPEC S8.7).

    On an unconnected datagram socket (UDP, AF_UNIX) each send names its own destination, and
    sends to different destinations keep their posting order (they share the socket's queue).
    An unbound UDP socket is bound to an ephemeral port by its first send, as on Windows
    (``getsockname`` has a port after it). On a connected datagram socket the destination must
    be None or the peer; another one is WSAEISCONN. On a connection-oriented socket the
    destination is ignored, as Windows does. Overlapped sends, routines and ports as ``WSASend``.

    Args:
        lpTo: the destination, as Python spells a ``sockaddr``: ``(host, port)`` (IPv4 literal),
            ``(host, port[, flowinfo[, scope_id]])`` (IPv6 literal), or a path (AF_UNIX).
            Hosts must be numeric (no name lookup). None sends to the connected peer.
        iTolen: the ``sockaddr``'s size in bytes: at least 16 (AF_INET), 28 (AF_INET6), 3
            (AF_UNIX).

    Returns:
        As ``WSASend``; also WSAEFAULT (a destination that is not an address, or ``iTolen`` too
        small), WSAEAFNOSUPPORT (an address of another family), WSAEADDRNOTAVAIL (ADDR_ANY),
        WSAEISCONN (a connected datagram socket and another destination), WSAEMSGSIZE (over the
        limit; nothing is sent).
    """
    if _started() is None:
        return _fail(WSAErrorCode.WSANOTINITIALISED)
    try:
        sock = check_socket(s)
        if sock in _SHUT_SEND:
            raise WSAError(WSAErrorCode.WSAESHUTDOWN, detail="shutdown() disabled sends on this socket")
        dest = destination(sock, lpTo, iTolen, None)
    except WSAError as exc:
        return _fail(exc.winerror)
    return _send(
        sock, lpBuffers, dwBufferCount, lpNumberOfBytesSent, dwFlags, lpOverlapped, lpCompletionRoutine, dest=dest
    )


def sendto(s: socket.socket, buf: object, len: int, flags: int, to: object, tolen: int) -> int:
    """``send`` to a destination (Winsock's sendto; SPEC S8.7): see ``WSASendTo``.

    Returns:
        The bytes sent, or SOCKET_ERROR with ``WSAGetLastError()`` (codes as ``WSASendTo``).
    """
    return _one_buffer(buf, len, lambda bufs, count: WSASendTo(s, bufs, 1, count, flags, to, tolen))


@attrs.define(eq=False)
class WSAMSG:
    """Winsock's ``WSAMSG`` for ``WSASendMsg``: destination, buffers, control data, flags."""

    #: The destination address (as ``WSASendTo``'s ``lpTo``), or None for the connected peer.
    name: object = None
    #: The address's size in bytes (as ``WSASendTo``'s ``iTolen``).
    namelen: int = 0
    #: The buffers: a list of :class:`WSABUF` (or bytes-like objects).
    lpBuffers: object = attrs.Factory(list)
    dwBufferCount: int = 0
    #: Control (ancillary) data: None, an empty ``WSABUF``, or a list of ``(level, type, data)``
    #: triples with Linux's values, as :meth:`socket.socket.sendmsg` takes them (e.g.
    #: ``[(socket.SOL_SOCKET, socket.SCM_RIGHTS, array("i", [fd]))]``). A raw ``WSACMSGHDR``
    #: buffer is not decoded (WSAEOPNOTSUPP; see docs/winsock.md).
    Control: object = None
    dwFlags: int = 0


def WSASendMsg(
    Handle: socket.socket,
    lpMsg: object,
    dwFlags: int,
    lpNumberOfBytesSent: Any,
    lpOverlapped: WSAOverlapped | None = None,
    lpCompletionRoutine: CompletionRoutine | None = None,
) -> int:
    """Send one message described by a :class:`WSAMSG` (Winsock's WSASendMsg; SPEC S8.7).

    Overlapped and completion routines work as for ``WSASend``. Windows allows it only on
    datagram and raw sockets: a stream socket is WSAEINVAL. The destination (``name``,
    ``namelen``) follows ``WSASendTo``'s rules, implicit bind included; the control data goes
    with the datagram as ``sendmsg`` ancillary data (``IP_PKTINFO``, ``SCM_RIGHTS`` on AF_UNIX,
    ...), and any error the kernel finds in it is the send's error.

    Returns:
        As ``WSASendTo``; also WSAEFAULT for an ``lpMsg`` that is not a WSAMSG, WSAEINVAL on a
        stream socket, for control data that is not a list of ``(level, type, data)``, and for
        control data on a ``MSG_PARTIAL`` piece (the message's control data is the ending
        send's, as its destination is), WSAEOPNOTSUPP for a raw (non-empty ``WSABUF``)
        control buffer.
    """
    if _started() is None:
        return _fail(WSAErrorCode.WSANOTINITIALISED)
    if not isinstance(lpMsg, WSAMSG):
        return _fail(WSAErrorCode.WSAEFAULT)
    control = lpMsg.Control
    if isinstance(control, (WSABUF, bytes, bytearray, memoryview)):
        if control.len if isinstance(control, WSABUF) else len(control):
            return _fail(WSAErrorCode.WSAEOPNOTSUPP)
        control = None
    try:
        sock = check_socket(Handle)
        if sock.type == socket.SOCK_STREAM:
            raise WSAError(WSAErrorCode.WSAEINVAL, detail="WSASendMsg on a stream socket")
        if sock in _SHUT_SEND:
            raise WSAError(WSAErrorCode.WSAESHUTDOWN, detail="shutdown() disabled sends on this socket")
        dest = destination(sock, lpMsg.name, lpMsg.namelen, control)
        if dest is not None and dest[1] and type(dwFlags) is int and dwFlags & MSG_PARTIAL:
            # The message goes out with the ending send's destination and control data; a
            # piece's were dropped while the piece reported success (adversarial pass).
            raise WSAError(
                WSAErrorCode.WSAEINVAL,
                detail="control data on a MSG_PARTIAL piece: give it to the send that ends the message",
            )
    except WSAError as exc:
        return _fail(exc.winerror)
    return _send(
        sock,
        lpMsg.lpBuffers,
        lpMsg.dwBufferCount,
        lpNumberOfBytesSent,
        dwFlags,
        lpOverlapped,
        lpCompletionRoutine,
        message=True,
        dest=dest,
    )


def WSASendDisconnect(s: socket.socket, lpOutboundDisconnectData: object) -> int:
    """Start a graceful close of the sending direction (Winsock's WSASendDisconnect; S8.7).

    ``shutdown(s, SD_SEND)`` with optional disconnect data, which TCP cannot carry: data there
    is WSAEOPNOTSUPP, as on Windows.

    Returns:
        0, or SOCKET_ERROR: as ``shutdown``; WSAEOPNOTSUPP for disconnect data.
    """
    if _started() is None:
        return _fail(WSAErrorCode.WSANOTINITIALISED)
    if lpOutboundDisconnectData is not None:
        data = lpOutboundDisconnectData
        length = getattr(data, "len", None)
        if length is None or length:
            return _fail(WSAErrorCode.WSAEOPNOTSUPP)
    return shutdown(s, SD_SEND)


# -- cancellation (S8.7) ---------------------------------------------------------------------------


def _withdraw(sock: socket.socket, overlapped: WSAOverlapped | None) -> int:
    """Withdraw the socket's matching sends in the engine loop's thread; how many were."""
    engine = find_engine(sock)
    if engine is None or engine.loop.is_closed():
        return 0
    found: list[int] = [0]

    def run() -> None:
        # SendEngine.withdraw's rule (S5.7): only a send none of whose bytes went out.
        targets = [overlapped] if overlapped is not None else [op for op in list(engine._ops)]
        for ov in targets:
            if isinstance(ov, WSAOverlapped) and ov.pending and ov._engine is engine and engine.withdraw(ov):
                found[0] += 1

    if engine.in_loop_thread() or not engine.loop.is_running():
        run()
        return found[0]
    done = threading.Event()

    def hop() -> None:
        try:
            run()
        finally:
            done.set()

    try:
        engine.loop.call_soon_threadsafe(hop)
    except RuntimeError:
        return 0
    done.wait(_st._HANDOFF_TIMEOUT)
    return found[0]


def CancelIoEx(hFile: socket.socket, lpOverlapped: WSAOverlapped | None) -> bool:
    """Cancel a pending send, or all of the socket's (Win32's CancelIoEx; SPEC S8.7), any thread.

    A cancelled send completes with WSA_OPERATION_ABORTED and 0 bytes through its usual
    channel (event, routine, port packet). A send some of whose bytes already went out cannot
    be cut short (the stream would lose its framing, S5.7): it completes normally and does not
    count as found.

    Returns:
        True when at least one send was cancelled; False with ERROR_NOT_FOUND (1168) when none
        matched, ERROR_INVALID_HANDLE (6) for a closed or bad socket, WSANOTINITIALISED.
    """
    from ._ports import ERROR_INVALID_HANDLE, ERROR_NOT_FOUND

    if _started() is None:
        _fail(WSAErrorCode.WSANOTINITIALISED)
        return False
    try:
        sock = check_socket(hFile)
    except WSAError:
        _fail(ERROR_INVALID_HANDLE)
        return False
    if lpOverlapped is not None and not isinstance(lpOverlapped, WSAOverlapped):
        _fail(ERROR_NOT_FOUND)
        return False
    if not _withdraw(sock, lpOverlapped):
        _fail(ERROR_NOT_FOUND)
        return False
    _ok()
    return True


def CancelIo(hFile: socket.socket) -> bool:
    """Cancel the socket's pending sends (Win32's CancelIo; SPEC S8.7).

    Windows limits CancelIo to the calling thread's operations; here it cancels every pending
    send of the socket that has not started, whichever thread posted it (documented).

    Returns:
        As ``CancelIoEx(hFile, None)``.
    """
    return CancelIoEx(hFile, None)


def WSAGetOverlappedResult(
    s: socket.socket, lpOverlapped: WSAOverlapped, lpcbTransfer: Any, fWait: bool, lpdwFlags: Any
) -> bool:
    """The outcome of an overlapped send (Winsock's WSAGetOverlappedResult; SPEC S8.5).

    Args:
        s: the socket the send was posted on (only checked to be a socket, so that results
            can still be read after ``closesocket``).
        lpOverlapped: the send's overlapped.
        lpcbTransfer: a ``DWORD`` set to the bytes the send transferred (also on failure).
        fWait: wait until the send completes. Not allowed for a send with a completion routine
            (the seed: "may not set fWait to TRUE"), nor in the thread of the loop that would
            have to complete it (that would hang).
        lpdwFlags: a ``DWORD`` set to 0 (no flags are defined).

    Returns:
        True when the send succeeded. False otherwise, with ``WSAGetLastError()``:
        WSA_IO_INCOMPLETE (pending and ``fWait`` false), the send's own error (e.g.
        WSA_OPERATION_ABORTED, WSAECONNRESET), WSAEINVAL (``fWait`` as above), WSAEFAULT (bad
        overlapped or out-parameter), WSAENOTSOCK, WSANOTINITIALISED.
    """
    if _started() is None:
        _fail(WSAErrorCode.WSANOTINITIALISED)
        return False
    try:
        if not isinstance(s, socket.socket):
            raise WSAError(WSAErrorCode.WSAENOTSOCK)
        if not isinstance(lpOverlapped, WSAOverlapped):
            raise WSAError(WSAErrorCode.WSAEFAULT, detail="lpOverlapped is not a WSAOVERLAPPED")
        transfer = _out_param(lpcbTransfer, may_be_none=False)
        flags_out = _out_param(lpdwFlags, may_be_none=False)
        ov = lpOverlapped
        if fWait and ov.completion_routine is not None and not is_port_routine(ov.completion_routine):
            raise WSAError(WSAErrorCode.WSAEINVAL, detail="fWait with a completion routine")
        if ov.pending:
            if not fWait:
                raise WSAError(WSAErrorCode.WSA_IO_INCOMPLETE)
            # Winsock waits on hEvent; we wait on the operation itself, which completes at the
            # same moment and cannot be fooled by an event the caller shares or resets.
            ov.wait()
    except WSAError as exc:
        _fail(exc.winerror)
        return False
    transfer.value = ov.transferred
    flags_out.value = 0
    if ov.error:
        _fail(ov.error)
        return False
    _ok()  # (Wine sets the status's code, 0 here: a pending send's WSA_IO_PENDING must go)
    return True
