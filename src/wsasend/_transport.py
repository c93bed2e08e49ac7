"""WSATransport and WSAProtocol: asyncio's Transport/Protocol pair over the send engine (SPEC S7).

Theory of operation
-------------------
A :class:`WSATransport` owns one connected socket and adds nothing to the send path: every
``write``, ``writelines`` and ``send`` is one ``SendEngine.post`` on the socket's engine, the
very call ``wsa_send`` makes, so the three are ordered among themselves and with any
``wsa_send`` on the same socket (SPEC S5.4), zero-copy (S2.1), and coalesced by the engine.
The transport only

- listens to the engine: ``on_complete`` (completed sends, in posting order) feeds
  ``send_completed`` and the resume side of flow control; ``on_error`` (a fatal send error that
  already failed every queued send with exact counts) ends the connection;
- asks the engine to drain: ``drain_then`` refuses new sends at once (WSAESHUTDOWN) and calls
  back when the queue is empty, which is when ``write_eof`` shuts the sending side down and
  ``close`` reports ``connection_lost`` (S6.2); ``abort`` is ``engine.abort()`` (S6.1);
- reads, with ``loop.add_reader`` and ``recv`` / ``recv_into`` (``asyncio.BufferedProtocol``).

Lifecycle: one ``(state, event) -> state`` table, :data:`TRANSITIONS` (STYLE rule 2). The
transport's methods look up their event; a pair that maps a state to itself is a no-op (a
second ``close()``, ``write_eof()`` after ``close()``...). A pair missing from the table is a
bug in this module: it is reported to the loop's exception handler and the transport fails.

Callbacks follow asyncio's contract (``Lib/asyncio/selector_events.py``): ``connection_made``,
then data/EOF, then ``connection_lost`` exactly once, all through ``loop.call_soon``;
``pause_writing`` is the one synchronous callback, called inside the ``write`` that crossed the
high-water mark. ``send_completed`` and ``resume_writing`` are scheduled with ``call_soon`` from
the engine's flush, after the completion routines the flush scheduled (S5.3, S7.2), so a
protocol is never re-entered from inside one of its own calls into the transport.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import enum
import errno
import functools
import logging
import math
import mmap
import os
import select
import socket
import ssl as ssl_module
import sys
import types
import warnings
import weakref
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any, Final, Literal, final

from . import _sendfile
from ._api import engine_for, set_max_pending, shut_to_claims
from ._buffers import normalize
from ._compat import is_extension_file, mypyc_attr
from ._engine import _IOV_RECV, _IOV_SO_ERROR, _IOV_SOCKNAME, _IOV_TCP_NODELAY, _PLAIN_SOCKET, ZERO, SendEngine
from ._errors import WriteAfterEOFError, WSAError, WSAErrorCode
from ._errorwatch import ErrorWatch, error_watch
from ._overlapped import CompletedSend, CompletionRoutine, WSAOverlapped
from ._protocol import WSAProtocol
from ._sendfile import fatal_for_connection
from ._sockutil import (
    DGRAM,
    INET,
    INET6,
    STREAM,
    UNIX,
    check_socket,
    close_socket,
    descriptor,
    io_refs_add,
    is_message_kind,
    mark_shutdown,
)

__all__ = [
    "TRANSITIONS",
    "TransportEvent",
    "ServerConnections",
    "TransportState",
    "WSAProtocol",
    "WSATransport",
]

logger = logging.getLogger("wsasend")

#: Bytes asked of one ``recv`` on a stream socket: asyncio's ``_SelectorTransport.max_size``.
MAX_READ: Final = 256 * 1024
#: Bytes one message read can take on an AF_UNIX datagram or seqpacket socket: twice the largest
#: datagram Linux 6.x on x86-64 can allocate (4263616, see _sockutil), a margin for kernels
#: with more frags or larger pages. Address space only (an anonymous mapping, see _read_message).
MESSAGE_READ_MAX = 8 * 1024 * 1024
#: ... and on a UDP socket: the largest UDP payload (65535 less the 8-byte header) fits.
UDP_READ_MAX = 64 * 1024
#: What a stream read asks for until reads fill it (then up to MAX_READ, and back when they
#: are small again). Issue 11: ``recv(256 KiB)`` makes a bytes object above glibc's mmap
#: threshold (128 KiB), so every read of a small request paid mmap + mremap + munmap and page
#: faults (strace: 3 syscalls per request; uvloop's own transport reads into a reused buffer).
SMALL_READ: Final = 64 * 1024
# SMALL_READ as the int object the compiled build's recv takes (as _engine's _SEND_FLAGS_OBJECT):
# compiled, an int is a C integer made into a new int object at every call (callgrind: about
# 80 instructions of a keep-alive request, with its deallocation).
_SMALL_READ_OBJECT: Final[Any] = SMALL_READ
#: asyncio's default high-water mark (``transports._FlowControlMixin``); low defaults to high // 4.
DEFAULT_HIGH_WATER: Final = 64 * 1024
# asyncio's constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES: after this many writes on a lost
# connection, say so in the log (the writes themselves are dropped, as asyncio drops them).
_LOG_THRESHOLD_FOR_CONNLOST_WRITES = 5
# asyncio's streams._DEFAULT_LIMIT (64 KiB), for open_connection / start_server.
STREAM_LIMIT = 2**16

PartialMessages = Literal["reject", "cork"]
#: What ``ssl=`` takes, as on asyncio's loop methods: a context, True (a default context) or None.
SSLArg = ssl_module.SSLContext | bool | None


# -- the lifecycle table (pure) -----------------------------------------------------------------


class TransportState(enum.Enum):
    """Where a :class:`WSATransport` is in its life. Reading is tracked apart (see ``_ReadState``)."""

    #: Sending and receiving.
    OPEN = enum.auto()
    #: ``write_eof()`` was called: new sends fail WSAESHUTDOWN, queued ones drain, then SHUT_WR.
    EOF_PENDING = enum.auto()
    #: The sending direction is shut down; receiving goes on.
    WRITE_SHUT = enum.auto()
    #: ``close()`` was called: queued sends drain, then ``connection_lost(None)``.
    CLOSING = enum.auto()
    #: ``connection_lost`` is scheduled (drained close, ``abort()``, or a fatal error).
    LOST = enum.auto()
    #: ``connection_lost`` was called and the socket is closed. Terminal.
    CLOSED = enum.auto()

    # Members are singletons compared by identity, so the identity hash is a sound one, in C:
    # enum.Enum's own __hash__ is Python code (hash(self._name_)), and the lifecycle table and
    # the state sets hash a member at almost every step (issue 11: ~9,000 instructions of a
    # server's new connection went to it).
    __hash__ = object.__hash__


class TransportEvent(enum.Enum):
    """What can happen to a transport: four public calls/faults and two internal steps."""

    __hash__ = object.__hash__  # (see TransportState)

    WRITE_EOF = enum.auto()
    CLOSE = enum.auto()
    ABORT = enum.auto()
    #: A send or receive error, or a protocol callback that raised.
    FATAL = enum.auto()
    #: The engine's queue drained after ``drain_then`` (internal).
    DRAINED = enum.auto()
    #: ``connection_lost`` ran (internal).
    LOST_CALLED = enum.auto()


_S = TransportState
_E = TransportEvent

#: ``(state, event) -> state``. A pair that maps a state to itself is a no-op (asyncio ignores
#: a second ``close()``, a ``write_eof()`` after ``close()``, an ``abort()`` after the connection
#: was lost...). Every public event is defined in every state; the internal ones only where they
#: can happen, so a missing pair means this module has a bug.
TRANSITIONS: dict[tuple[TransportState, TransportEvent], TransportState] = {
    (_S.OPEN, _E.WRITE_EOF): _S.EOF_PENDING,
    (_S.OPEN, _E.CLOSE): _S.CLOSING,
    (_S.OPEN, _E.ABORT): _S.LOST,
    (_S.OPEN, _E.FATAL): _S.LOST,
    (_S.EOF_PENDING, _E.WRITE_EOF): _S.EOF_PENDING,
    (_S.EOF_PENDING, _E.CLOSE): _S.CLOSING,
    (_S.EOF_PENDING, _E.ABORT): _S.LOST,
    (_S.EOF_PENDING, _E.FATAL): _S.LOST,
    (_S.EOF_PENDING, _E.DRAINED): _S.WRITE_SHUT,
    (_S.WRITE_SHUT, _E.WRITE_EOF): _S.WRITE_SHUT,
    (_S.WRITE_SHUT, _E.CLOSE): _S.CLOSING,
    (_S.WRITE_SHUT, _E.ABORT): _S.LOST,
    (_S.WRITE_SHUT, _E.FATAL): _S.LOST,
    (_S.CLOSING, _E.WRITE_EOF): _S.CLOSING,
    (_S.CLOSING, _E.CLOSE): _S.CLOSING,
    (_S.CLOSING, _E.ABORT): _S.LOST,
    (_S.CLOSING, _E.FATAL): _S.LOST,
    (_S.CLOSING, _E.DRAINED): _S.LOST,
    (_S.LOST, _E.WRITE_EOF): _S.LOST,
    (_S.LOST, _E.CLOSE): _S.LOST,
    (_S.LOST, _E.ABORT): _S.LOST,
    (_S.LOST, _E.FATAL): _S.LOST,
    (_S.LOST, _E.LOST_CALLED): _S.CLOSED,
    (_S.CLOSED, _E.WRITE_EOF): _S.CLOSED,
    (_S.CLOSED, _E.CLOSE): _S.CLOSED,
    (_S.CLOSED, _E.ABORT): _S.CLOSED,
    (_S.CLOSED, _E.FATAL): _S.CLOSED,
}


# TRANSITIONS by state, then event, for _step: two lookups of one object each, where the pair's
# key was a tuple made, hashed and freed at every step (issue 11, workload HC: three steps a
# connection, ~1,500 instructions together). The same table.
def _by_state(
    table: dict[tuple[TransportState, TransportEvent], TransportState],
) -> dict[TransportState, dict[TransportEvent, TransportState]]:
    by_state: dict[TransportState, dict[TransportEvent, TransportState]] = {}
    for (state, event), new in table.items():
        by_state.setdefault(state, {})[event] = new
    return by_state


_NEXT: Final = _by_state(TRANSITIONS)

# The states and events as constants (compiled, ``TransportState.CLOSING`` is an attribute
# lookup on the enum class at every use: a transport's close ran ten of them, issue 11).
_OPEN: Final = TransportState.OPEN
_EOF_PENDING: Final = TransportState.EOF_PENDING
_CLOSING: Final = TransportState.CLOSING
_LOST: Final = TransportState.LOST
_CLOSED: Final = TransportState.CLOSED
_EV_WRITE_EOF: Final = TransportEvent.WRITE_EOF
_EV_CLOSE: Final = TransportEvent.CLOSE
_EV_ABORT: Final = TransportEvent.ABORT
_EV_FATAL: Final = TransportEvent.FATAL
_EV_DRAINED: Final = TransportEvent.DRAINED
_EV_LOST_CALLED: Final = TransportEvent.LOST_CALLED
# Compiled on Python 3.11: WSATransport.__init__ makes the instance dict at once (see there).
_MAKE_DICT: Final = sys.version_info < (3, 12) and is_extension_file(__file__)
# A stream socket's scratch area: none, one shared empty list (a list a connection less to make
# and free, issue 11 workload HC). Nothing adds to it; a message socket gets a list of its own.
_NO_SCRATCH: Final[list[mmap.mmap]] = []
# Read by the stream reader per callback: Final, so compiled code does not look them up in the
# socket module's dict each time.
_SOL_SOCKET: Final = socket.SOL_SOCKET
_SO_ERROR: Final = socket.SO_ERROR
# Read per connection (as above).
_EPOLL_ERROR: Final = select.EPOLLERR | select.EPOLLHUP
# Reads through the error watch after which a uvloop transport reads through a reader of the
# loop's instead (see _watch_event): uvloop's add_reader/remove_reader cost ~7 system calls and
# ~13k instructions once, the watch ~1 us a read with a single client (its epoll_wait per
# wake-up of the loop, and the dispatch), so a connection this long-lived is cheaper there.
_WATCH_READS: Final = 16
_IPPROTO_TCP: Final = int(socket.IPPROTO_TCP)
_TCP_NODELAY: Final = int(socket.TCP_NODELAY)
# States in which the transport still reads (asyncio stops reading at close()).
_READABLE: Final = frozenset({_S.OPEN, _S.EOF_PENDING, _S.WRITE_SHUT})
# States in which write()/writelines() drop their data as asyncio's transports do (CLOSING
# only once the queue drained: before that they queue, as asyncio's do).
_DROPS_WRITES: Final = frozenset({_S.CLOSING, _S.LOST, _S.CLOSED})


class _ReadState(enum.Enum):
    __hash__ = object.__hash__  # (see TransportState)

    ACTIVE = enum.auto()  # reading, or will read once connection_made has run
    PAUSED = enum.auto()  # pause_reading()
    EOF = enum.auto()  # the peer's EOF was delivered; nothing more to read
    FAILED = enum.auto()  # a read error is taken; what the kernel held is delivered, then the error
    DRAIN_PAUSED = enum.auto()  # pause_reading() during FAILED's delivery (_drain_before_reset)


# -- the protocol ---------------------------------------------------------------------------------


# (WSAProtocol lives in _protocol, a module the compiled build leaves interpreted: see there.)
_BASE_SEND_COMPLETED: Final = WSAProtocol.send_completed


def _wants_completions_general(protocol: object) -> bool:
    """Whether ``protocol`` has a ``send_completed`` to call (WSAProtocol's own does nothing)."""
    if getattr(type(protocol), "send_completed", None) is _BASE_SEND_COMPLETED:
        return False
    return callable(getattr(protocol, "send_completed", None))


# _wants_completions' reading of a protocol class: its ``send_completed`` function (perhaps
# WSAProtocol's), None for none, or _GENERAL when only getattr can tell. At most _CLASSES_KEPT classes
# (a program that makes protocol classes on the fly does not grow it for ever).
_CLASS_SEND_COMPLETED: Final[dict[type, object]] = {}
# The builtin getattr, called as a function. Compiled, ``getattr(x, name, default)`` is mypyc's,
# which builds and catches an AttributeError when ``name`` is missing (~1,700 instructions on
# 3.11); the builtin asks the object's lookup not to make one.
_LOOKUP: Final[Callable[[object, str, object], object]] = builtins.getattr
_CALLABLE: Final[Callable[[object], bool]] = builtins.callable  # (compiled: not looked up by name)
_CLASSES_KEPT: Final = 256
_GENERAL: Final = object()


def _wants_completions(protocol: object) -> bool:
    """:func:`_wants_completions_general`, read from the class's dicts (and the instance's own
    attribute through the builtin getattr) where that gives the same answer.

    A plain protocol has no ``send_completed``: each of the general version's two failed
    ``getattr`` calls built an AttributeError, ~3,500 instructions on Python 3.11, paid by
    every new connection (issue 11: an HTTP server without keep-alive). The class's part is
    read once per class, as a transport reads ``data_received`` once per protocol (a
    ``send_completed`` added to a class later is not seen by that class's new connections; set
    it on the instance, or before the first connection). Anything the dicts cannot answer the
    same way (a class with ``__getattr__`` or ``__getattribute__``, a ``send_completed`` that is
    not a plain function, an instance without a dict) goes the general way.
    """
    cls = type(protocol)
    attr = _CLASS_SEND_COMPLETED.get(cls, _GENERAL)
    if attr is _GENERAL and cls not in _CLASS_SEND_COMPLETED:
        attr = _class_send_completed(cls)
        if len(_CLASS_SEND_COMPLETED) >= _CLASSES_KEPT:
            _CLASS_SEND_COMPLETED.clear()
        _CLASS_SEND_COMPLETED[cls] = attr
    if attr is _GENERAL:
        return _wants_completions_general(protocol)
    if attr is _BASE_SEND_COMPLETED:
        return False  # (WSAProtocol's no-op is the class's: an instance's own is not looked at)
    # The instance's own ``send_completed`` wins over the class's: asked of the builtin getattr
    # (see _LOOKUP), not read from ``protocol.__dict__``. Reading ``__dict__`` makes the
    # instance's dict, and from then on Python 3.11 and 3.12 cannot specialize the protocol's own
    # attribute reads and writes (``self._buf`` in its data_received went the generic way:
    # callgrind, ~1,000 instructions of a keep-alive request on uvloop, issue 11; attribute
    # access 3.5x slower in a micro-benchmark).
    return _CALLABLE(_LOOKUP(protocol, "send_completed", None))


def _class_send_completed(cls: type) -> object:
    """See _CLASS_SEND_COMPLETED."""
    mro = cls.__mro__
    for klass in mro:
        names = klass.__dict__
        if klass is not object and ("__getattr__" in names or "__getattribute__" in names):
            return _GENERAL
    if cls.__dictoffset__ == 0:
        return _GENERAL
    for klass in mro:
        names = klass.__dict__
        if "send_completed" in names:
            attr = names["send_completed"]
            if type(attr) is not types.FunctionType:
                return _GENERAL
            return attr
    return None


# (A Final: compiled, ``asyncio.BufferedProtocol`` is a lookup in the module's dict at each use.)
_BUFFERED_PROTOCOL: Final = asyncio.BufferedProtocol
# (Likewise: compiled, ``weakref.ReferenceType`` is an attribute lookup on the module at each use,
# ~250 instructions of every connection a server closes; issue 11, HC1.)
_WEAKREF_TYPE: Final = weakref.ReferenceType

# What the transport holds instead of its protocol once connection_lost has run: a protocol that
# does nothing (see _call_connection_lost).
_LOST_PROTOCOL: Final = asyncio.Protocol()


def _data_received_of(protocol: object, data: bytes) -> None:
    """``protocol.data_received(data)``, looked up now (for a protocol that had none when set)."""
    protocol.data_received(data)  # type: ignore[attr-defined]


# -- the transport ----------------------------------------------------------------------------------


# drops_reader_on_error's answers by loop class (a walk of the class's MRO with string splits
# was ~1,000 instructions of every new connection; issue 11). Bounded: a program has few loop
# classes, and past the bound the answer is simply not kept.
_DROPS_READER_BY_CLASS: Final[dict[type, bool]] = {}


def drops_reader_on_error(loop: asyncio.AbstractEventLoop) -> bool:
    """True for a loop whose reader registration ends at a socket error event: uvloop's."""
    cls = type(loop)
    known = _DROPS_READER_BY_CLASS.get(cls)
    if known is None:
        known = any(klass.__module__.split(".", 1)[0] == "uvloop" for klass in cls.__mro__)
        if len(_DROPS_READER_BY_CLASS) < _CLASSES_KEPT:
            _DROPS_READER_BY_CLASS[cls] = known
    return known


def _transport_of(engine: SendEngine) -> WSATransport | None:
    """The transport whose hooks ``engine`` calls, if it is still alive (``engine.keeper``)."""
    keeper = engine.keeper
    transport = keeper() if keeper is not None else None
    return transport if isinstance(transport, WSATransport) else None


# The engine's hooks of every transport (see SendEngine): module functions given the engine,
# rather than three closures over the transport's weak reference made per transport (issue 11,
# workload HC: the closures and their shared cell were four objects made and freed, and counted
# by the cyclic collector, a connection).
def _engine_completed(engine: SendEngine, ops: list[WSAOverlapped]) -> None:
    transport = _transport_of(engine)
    if transport is not None:
        transport._on_sends_completed(ops)


def _engine_failed(engine: SendEngine, exc: WSAError) -> None:
    transport = _transport_of(engine)
    if transport is not None:
        transport._fatal_error(exc, "Fatal write error on WSATransport")


def _engine_progressed(engine: SendEngine) -> None:
    transport = _transport_of(engine)
    if transport is not None:
        transport._on_progress()


# Compiled in the compiled build (SPEC S10; see buildsupport's COMPILED_MODULES); tests and users
# may still subclass it.
@mypyc_attr(allow_interpreted_subclasses=True)
class WSATransport(asyncio.Transport):
    """An :class:`asyncio.Transport` whose sends are overlapped WSASends (SPEC S7.1).

    Made by :func:`create_connection`, :func:`connect_accepted_socket` and the servers of
    :func:`create_server`; construct one yourself only around a connected socket you own, inside
    a running loop. The transport takes the socket over (it makes it nonblocking, as asyncio does)
    and closes it when ``connection_lost`` has run.

    Args:
        sock: a connected socket of a kind of S5.10: TCP over IPv4/IPv6, AF_UNIX stream,
            connected UDP, AF_UNIX datagram, SOCK_SEQPACKET.
        protocol: an ``asyncio.Protocol`` or ``asyncio.BufferedProtocol``; with a
            ``send_completed`` method (see :class:`WSAProtocol`) it is told of every completed send.
        loop: the loop; the running one by default.
        max_pending_sends: the bound on outstanding sends of S5.6 (default 65536, or what
            ``set_max_pending`` set for the socket). Past it every ``send``/``write`` raises
            WSAEWOULDBLOCK.
        partial_messages: ``"reject"`` (MSG_PARTIAL on a stream socket is WSAEOPNOTSUPP) or
            ``"cork"`` (the pieces wait, pending, for the next send without it, S4.4). Message
            sockets always assemble pieces.
        extra: more ``get_extra_info`` entries (a ``peername`` here wins over the socket's).

    Raises:
        WSAError: WSAENOTSOCK for a closed socket or a non-socket; WSAENOTCONN for a socket with
            no peer; WSAEINVAL for a bad ``max_pending_sends``; WSAEINPROGRESS when the socket
            still has sends pending on another loop.
        ValueError: for a bad ``partial_messages``.
        RuntimeError: when the socket already has a live transport.
    """

    # Class defaults so that __del__ and __repr__ work even if __init__ failed half-way.
    _sock: socket.socket | None = None
    _sock_fd = -1
    _state = TransportState.CLOSED
    _engine: SendEngine | None = None
    # Native sendfiles in progress: write()/writelines() refuse meanwhile, as asyncio's (S9.3).
    _sendfiles = 0
    #: asyncio's ``loop.start_tls`` (and ours) take transports that declare this (S9.2).
    _start_tls_compatible = True
    # The largest read (a subclass may lower it). A class default, not set in __init__: an
    # interpreted transport (the pure build) keeps at most 29 attributes in its
    # instance dict before CPython stops sharing its keys and every attribute read becomes a
    # dict lookup (see SendEngine's __slots__); the transport is at that limit.
    _max_read = MAX_READ
    # True once close() handed the drain to the engine (which then refuses every new send).
    _close_draining = False
    # The error _check_reset took (an errno), reported once the data before it is delivered;
    # and whether a _drain_before_reset call waits in the loop. Class defaults too (see above).
    _reset_err = 0
    _drain_scheduled = False
    # The protocol's data_received, as set_protocol found it (set there, in __init__ too).
    _data_received: Callable[[bytes], object]
    # get_extra_info's mapping, as our own attribute rather than asyncio.BaseTransport's
    # ``__slots__ = ('_extra',)`` member, which is never written. When compiled (SPEC S10), this
    # class lays its fields out right after the object header, where that slot would
    # be: writing the slot (as BaseTransport.__init__ does) would overwrite the first of them.
    _extra: dict[Any, Any]

    def __init__(
        self,
        sock: socket.socket,
        protocol: asyncio.BaseProtocol,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        max_pending_sends: object = None,
        partial_messages: object = "reject",
        extra: Mapping[str, Any] | None = None,
        _waiter: asyncio.Future[None] | None = None,
        _server: Any = None,
        _nonblocking: bool = False,
    ) -> None:
        # (max_pending_sends and partial_messages typed object: a wrong value is our WSAError or
        # ValueError below in the compiled build too, not mypyc's TypeError; S10.)
        if partial_messages not in ("reject", "cork"):
            raise ValueError(f"partial_messages must be 'reject' or 'cork', not {partial_messages!r}")
        if not _nonblocking:
            check_socket(sock)  # (a server's new socket is one, and open: engine_for checks again)
        if loop is None:
            loop = asyncio.get_running_loop()
        peername: Any = None
        if _server is not None and type(extra) is dict and extra.get("peername"):
            # A server's connection with the address accept() gave: the peer's, and the socket
            # had one (no getpeername, a system call and an address object less a connection;
            # asyncio's transport takes accept()'s address too; issue 11, workload HC).
            peer = True
        else:
            try:
                peername = sock.getpeername()
            except OSError as exc:
                # A socket a server accepted was connected: getpeername() fails only because the
                # peer already reset it. asyncio's transport ignores that (peername is accept()'s
                # address, or None) and its first read reports the reset; so does ours (see
                # docs/transport.md, "A server"). Any other socket must have a peer.
                if _server is None:
                    raise WSAError(
                        WSAErrorCode.WSAENOTCONN, errno=exc.errno, detail="a transport needs a connected socket"
                    ) from exc
            peer = peername is not None
        engine = engine_for(sock, loop, peer)
        if engine.on_complete is not None or engine.on_error is not None:
            raise RuntimeError(f"socket {sock!r} is already used by a transport")
        if max_pending_sends is not None:
            set_max_pending(sock, max_pending_sends)
        # The transport owns the socket from here on, as asyncio's transports do. (Not again
        # for a server's connection that its accept made non-blocking a moment ago, nobody else
        # holding it yet: _nonblocking, see WSAServer._accept_ready.)
        if not _nonblocking:
            sock.setblocking(False)
        # (Plain ints, as _sockutil.sock_type reads them, read once by the engine's SocketInfo
        # for this very socket: two reads less a connection, ~400 instructions; issue 11, HC.)
        info_of_engine = engine._info
        kind = info_of_engine.type
        family = info_of_engine.family
        if kind == STREAM and family in (INET, INET6):
            # asyncio's _set_nodelay: small writes go out without waiting for an ACK. Cork pieces
            # (partial_messages="cork", S4.4) still wait where the caller asks for it.
            # (The compiled build's C call for a plain socket: a subclass's own setsockopt, if
            # it has one, is still the one called.)
            if _IOV_TCP_NODELAY is not None and type(sock) is _PLAIN_SOCKET:
                _IOV_TCP_NODELAY(sock)
            else:
                sock.setsockopt(_IPPROTO_TCP, _TCP_NODELAY, 1)
        # (A server's ``extra`` is a dict it made for this connection alone: kept, not copied.)
        info: dict[str, Any] = extra if _server is not None and type(extra) is dict else dict(extra) if extra else {}
        info["socket"] = sock
        # (The compiled build's getsockname answers a server's connections, which mostly share
        # one local address, with the tuple it made for the first: see _iovsend.sockname.)
        if _IOV_SOCKNAME is not None and type(sock) is _PLAIN_SOCKET:
            info["sockname"] = _IOV_SOCKNAME(sock)
        else:
            info["sockname"] = sock.getsockname()
        info.setdefault("peername", peername)
        # Not super().__init__(info): see _extra above.
        self._extra = info
        if _MAKE_DICT:
            # Compiled, this class keeps an instance ``__dict__`` (its base is a Python class),
            # made on first use. Until it exists, Python 3.11 cannot specialize a method call on
            # the transport in the protocol's code (``transport.send(...)`` stays a generic
            # LOAD_METHOD, the method looked up afresh on every call); made here, empty, it becomes
            # LOAD_METHOD_WITH_DICT (issue 11: the HTTP server's reply, one call per request).
            # (Measured: 3.13 specializes it without the dict, and would not with one; 3.12 does
            # not either way, its specialization of a managed dict needs inline values.)
            getattr(self, "__dict__")  # noqa: B009 (mypyc: a plain attribute lookup, by name)

        self._loop = loop
        self._sock = sock
        self._sock_fd = descriptor(sock)
        self._engine = engine
        self._message_mode = is_message_kind(kind)
        self._is_dgram = kind == DGRAM
        # Message sockets: one recv is one message, and a message cut short is lost, so each is
        # read into a scratch area as large as any message the kernel can carry (issue 10 item
        # 12). An anonymous mapping costs address space only: pages are touched as messages
        # fill them and given back after a large one (see _read_message).
        # (Held as recvmsg_into's one-item list, made once: empty for a stream socket.)
        self._scratch_iov: list[mmap.mmap] = _NO_SCRATCH  # (never changed: see _NO_SCRATCH)
        if self._message_mode:
            size = MESSAGE_READ_MAX if family == UNIX else UDP_READ_MAX
            self._scratch_iov = [mmap.mmap(-1, size)]
        # The size of the next stream read (see SMALL_READ and _read_stream).
        self._read_size = min(SMALL_READ, self._max_read)
        # The loop drops its reader after an error event (uvloop; see _check_reset).
        self._drops_reader = drops_reader_on_error(loop)
        # uvloop, stream sockets: the loop's ErrorWatch while the socket is registered in it
        # (and its descriptor held open, see _start_reading), and whether it reported an error
        # event (from then on each read checks SO_ERROR).
        self._error_watch: ErrorWatch | None = None
        self._error_seen = False
        # Reads through that watch so far, or -1 while the transport reads through a reader of
        # the loop's (see _watch_event). (One attribute for both: past 29 attributes the
        # interpreted class's instances stop sharing their dict's keys, see test_hot_read_write.)
        self._watch_reads = -1
        self._partial_messages: PartialMessages = "cork" if partial_messages == "cork" else "reject"
        if partial_messages == "cork":
            engine.cork = True

        # Invariant: _state only changes through _step() (the TRANSITIONS table).
        self._state = _OPEN
        # The exception connection_lost gets (None after close()/abort()); set when LOST.
        self._lost_exc: BaseException | None = None
        self._conn_lost_writes = 0
        # Reading. Invariant: _reader_registered == the loop has our reader for the socket.
        self._read_state = _ReadState.ACTIVE
        self._read_started = False
        self._reader_registered = False
        # Flow control, as asyncio's _FlowControlMixin. Invariant: high >= low >= 0.
        self._high_water = DEFAULT_HIGH_WATER
        self._low_water = DEFAULT_HIGH_WATER // 4
        self._protocol_paused = False
        self._resume_scheduled = False

        self._protocol: asyncio.BaseProtocol = protocol
        self._protocol_connected = False
        self._buffered = False
        self._completions_wanted = False
        self.set_protocol(protocol)

        # The engine keeps only a weak reference to us, so an unclosed transport can still be
        # collected (and warn) while the engine lives on in the registry: its hooks are module
        # functions that find us through it (see _engine_completed).
        engine.keeper = weakref.ref(self)  # held strongly only while sends wait (see SendEngine.keeper)
        engine.on_complete = _engine_completed
        engine.on_error = _engine_failed
        engine.mark_transport()  # (closesocket finds it there, S6.1)
        # Through the weak reference too: a bound method, given while the protocol was paused
        # for writing, kept a paused, unclosed transport from being collected. Always set (an
        # attribute more to hold it would cost the interpreted transport its shared key table,
        # see test_hot_read_write); _on_progress does nothing unless the protocol is paused, and
        # the engine calls it only after a sendmsg that completed no send.
        engine.on_progress = _engine_progressed

        self._server = _server
        if _server is not None:
            connections: ServerConnections = _server._connections
            connections.attach(self)  # (WSAServer._attach(self), called directly)

        # connection_made, then reading (asyncio's order), in one callback rather than asyncio's
        # two back-to-back ones: nothing can run between those either (issue 11, workload HC).
        # (The class's function and the transport, not a bound method: compiled, making and
        # freeing that cost ~500 instructions; likewise for connection_lost. Issue 11, HC.)
        loop.call_soon(_connection_made, self)
        if _waiter is not None:
            loop.call_soon(_set_result_unless_cancelled, _waiter)

    # -- introspection --------------------------------------------------------------------------

    def __repr__(self) -> str:
        info = [type(self).__name__, f"fd={self._sock_fd}", f"state={self._state.name}"]
        if self._state in _READABLE:
            if self._reader_registered:
                info.append("read=polling")
            elif getattr(self, "_read_state", None) is _ReadState.EOF:
                info.append("read=eof")
            else:
                info.append("read=paused" if getattr(self, "_read_state", None) is _ReadState.PAUSED else "read=idle")
        engine = self._engine
        if engine is not None and self._state is not _CLOSED:
            info.append(f"sends={engine.pending_count()} bufsize={engine.unsent_bytes()}")
        return "<{}>".format(" ".join(info))

    def __del__(self) -> None:
        sock = self._sock
        if sock is not None:
            warnings.warn(f"unclosed transport {self!r}", ResourceWarning, stacklevel=1, source=self)
            # Only the descriptor: the loop may be closed or in another thread. If sends were
            # still pending, the engine's watchdog fails them (S6.1). (The watch drops its
            # registration with the descriptor, and its entry through its weak reference.)
            self._release_io(sock)
            sock.close()
            # As asyncio's (3.12+): a server's wait_closed() no longer waits for this one.
            with contextlib.suppress(RuntimeError):  # (its loop closed: nobody waits there)
                self._leave_server()

    def get_extra_info(self, name: object, default: Any = None) -> Any:
        """As asyncio's: ``socket``, ``sockname``, ``peername`` and the ``extra`` given.

        ``name`` is typed ``object``: as asyncio's, any other key gives ``default``, in the
        compiled build too (S10; a ``str`` annotation is a TypeError there).
        """
        return self._extra.get(name, default)

    def get_protocol(self) -> asyncio.BaseProtocol | None:  # type: ignore[override]
        """The protocol; None once ``connection_lost`` has been called, as asyncio's and
        uvloop's transports say (S9.1)."""
        if self._state is _CLOSED:
            return None
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        """Switch protocols; reading and ``send_completed`` go to the new one from now on.

        The protocol's ``data_received`` is looked up here, once, as uvloop's transports do
        (issue 11: a lookup per read cost about 150 instructions of a keep-alive request): a
        protocol that rebinds ``data_received`` on itself later is read through the method it
        had when it was set. Call ``set_protocol`` again to switch methods.
        """
        self._protocol = protocol
        self._buffered = isinstance(protocol, _BUFFERED_PROTOCOL)
        received = getattr(protocol, "data_received", None)
        # A protocol with none: each read looks it up, and fails, as asyncio's.
        self._data_received = received if received is not None else functools.partial(_data_received_of, protocol)
        self._completions_wanted = _wants_completions(protocol)
        self._protocol_connected = True
        engine = self._engine
        if engine is not None:
            # Issue 11: without send_completed, a send that completed immediately has nothing
            # to tell the transport (no bytes queued: no resume, no drain), so the engine skips
            # the hook for it, a call and a list per request saved.
            engine.notify_immediate = self._completions_wanted

    def is_closing(self) -> bool:
        """True once ``close()`` or ``abort()`` was called or the connection was lost."""
        return self._state in (_CLOSING, _LOST, _CLOSED)

    @property
    def state(self) -> TransportState:
        """The lifecycle state (see :data:`TRANSITIONS`)."""
        return self._state

    def _step(self, event: TransportEvent) -> bool:
        """Apply ``event``: True when the state changed (the caller acts), False for a no-op."""
        old = self._state
        new = _NEXT[old].get(event)  # (TRANSITIONS.get((old, event)); every state has events)
        if new is None:
            # A bug in this module. FATAL is defined in every state, so this cannot recurse.
            err = RuntimeError(f"WSATransport: no transition for {old.name} on {event.name}")
            self._fatal_error(err, "WSATransport internal error")
            return False
        self._state = new
        return new is not old

    # -- sending -----------------------------------------------------------------------------------

    def _refusal(self) -> WSAError:
        """The error for a send that the transport's state refuses (S5.2, S6.2, S6.3)."""
        exc = self._lost_exc
        if exc is None:
            # "You closed it" (STYLE rule 6): close(), abort() or write_eof().
            return WSAError(WSAErrorCode.WSAESHUTDOWN, detail=f"the transport is {self._state.name.lower()}")
        code = exc.winerror if isinstance(exc, WSAError) else WSAErrorCode.WSAECONNABORTED
        return WSAError(code, detail="the connection was lost")

    def send(
        self,
        buffers: object,
        flags: object = 0,
        *,
        overlapped: object = None,
        completion_routine: CompletionRoutine | None = None,
    ) -> WSAOverlapped:
        """Post an overlapped send on the transport's socket (SPEC S5, S7.1): ``wsa_send`` for it.

        ``flags`` and ``overlapped`` are typed ``object``, as ``wsa_send``'s, so that a wrong
        type is this method's WSAError (WSAEINVAL, WSAEFAULT) in the compiled build too (S10).

        Ordered with ``write``/``writelines`` and every other send on the socket; zero-copy
        (leave the buffers alone until it completes). ``n = await transport.send(bufs)`` gives
        the bytes consumed. The protocol's ``send_completed`` is told when it completes.

        Returns:
            The :class:`WSAOverlapped` (``completed_immediately`` or ``pending``).

        Raises:
            WSAError: for a send that could not start (S5.2); nothing was sent, no completion
                follows. WSAESHUTDOWN after ``write_eof()``, ``close()`` or ``abort()``; the
                connection's error after it was lost (WSAECONNRESET...); WSAEWOULDBLOCK past
                ``max_pending_sends``; WSAEFAULT, WSAEOPNOTSUPP, WSAEMSGSIZE, WSAEINVAL as for
                ``wsa_send``. When the kernel reports the connection gone, the transport also
                ends with ``connection_lost`` of that error.
        """
        if self._state is not _OPEN:
            raise self._refusal()
        engine = self._engine
        assert engine is not None and self._sock is not None
        try:
            # The very dispatch of wsa_send: the engine's fast path for a plain list, else post().
            if flags is ZERO and overlapped is None and completion_routine is None and type(buffers) is list:
                if engine.hot:
                    ov = engine.post_list(self._sock, buffers)
                elif engine.hot_messages:
                    ov = engine.post_message_list(self._sock, buffers)
                else:
                    ov = engine.post(self._sock, buffers, flags, overlapped, completion_routine)
            else:
                ov = engine.post(self._sock, buffers, flags, overlapped, completion_routine)
        except WSAError as exc:
            if fatal_for_connection(exc):
                self._fatal_error(exc, "Fatal write error on WSATransport")
            raise
        if engine._ops and not self._protocol_paused and engine.unsent_bytes() > self._high_water:
            self._over_high_water(engine)  # (once paused, nothing more to do: see _over_high_water)
        return ov

    def write(self, data: bytes | bytearray | memoryview[Any]) -> None:
        """Queue ``data`` (any C-contiguous bytes-like object) behind earlier sends; zero-copy.

        Unlike asyncio, the bytes are not copied: do not modify a mutable buffer until it is sent
        (``get_write_buffer_size()`` back to 0, or the protocol's ``send_completed``).

        Raises:
            TypeError: ``data`` is not bytes-like.
            WSAError: WSAESHUTDOWN after ``write_eof()`` (an error that is also asyncio's
                RuntimeError there); WSAEWOULDBLOCK past
                ``max_pending_sends``; WSAEMSGSIZE for a message too large on a message socket.
                After the connection was lost to an error, writes are dropped as asyncio drops
                them: the protocol hears of it through ``connection_lost``.
        """
        if type(data) is bytes and self._state is _OPEN and not self._sendfiles:
            # The commonest call (issue 11): a bytes object on an open stream transport.
            engine = self._engine
            if data and engine is not None and (engine.hot or engine.hot_messages):
                self._post_list([data], engine)
                return
        if type(data) is not bytes:
            try:
                view = memoryview(data)
            except TypeError:
                raise TypeError(f"data argument must be a bytes-like object, not {type(data).__name__!r}") from None
            if not view.c_contiguous:
                raise TypeError("data argument must be a C-contiguous bytes-like object")
            empty = not view.nbytes
        else:
            empty = not data
        self._post_write(data, empty)

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview[Any]]) -> None:
        """Queue the buffers as ONE gathered send (one message on a message socket); zero-copy.

        Raises:
            TypeError: an item is not C-contiguous bytes-like.
            WSAError: as :meth:`write`.
        """
        # A list goes on as it is: the engine captures (copies) it only if the send has to wait,
        # as for send() (S2.1; issue 11: the copy was ~200 instructions of a request).
        data = list_of_data if type(list_of_data) is list else list(list_of_data)
        engine = self._engine
        if self._state is _OPEN and not self._sendfiles and engine is not None and (engine.hot or engine.hot_messages):
            # A list of bytes goes to the engine's fast path as it is (issue 11: normalising it
            # into memoryviews made writelines 1.2x the CPU of send per request).
            total = 0
            for buf in data:
                if type(buf) is not bytes:
                    break
                total += len(buf)
            else:
                if total:
                    self._post_list(data, engine)
                return
        try:
            bufs, total = normalize(data)
        except WSAError as exc:
            # In asyncio's own words (its write() says the same), with ours as the cause (S3.2).
            raise TypeError(_bad_data_message(data)) from exc
        self._post_write(bufs, not total)

    def _post_list(self, data: list[Any], engine: SendEngine) -> None:
        """``write``/``writelines`` of a non-empty list of bytes on an open transport."""
        sock = self._sock
        assert sock is not None
        try:
            if engine.hot:
                engine.post_list(sock, data, False)
            else:
                engine.post_message_list(sock, data)
        except WSAError as exc:
            if fatal_for_connection(exc):
                # asyncio's write(): the error goes to connection_lost, not to the caller.
                self._fatal_error(exc, "Fatal write error on WSATransport")
                return
            raise
        if engine._ops and not self._protocol_paused and engine.unsent_bytes() > self._high_water:
            self._over_high_water(engine)  # (once paused, nothing more to do: see _over_high_water)

    def _post_write(self, data: object, empty: bool) -> None:
        if self._sendfiles:
            # asyncio's: a bare write would go around the file being sent (S9.3). One attribute
            # test per write is the cost.
            raise RuntimeError("unable to write; sendfile is in progress")
        engine = self._engine
        if engine is not None and engine._slot.send_shut:
            # write_eof() was called (it marks the socket, see shut_to_claims): asyncio's
            # RuntimeError, and our WSAESHUTDOWN (S6.2), in one exception; still after a close()
            # or a lost connection (asyncio checks its EOF first; we dropped the write there).
            raise WriteAfterEOFError(WSAErrorCode.WSAESHUTDOWN, reason="Cannot call write() after write_eof()")
        if self._state is not _OPEN and (self._state is not _CLOSING or self._close_draining):
            if self._state in _DROPS_WRITES:
                # asyncio's write() after close()/abort() or a lost connection: the data is
                # dropped, and a warning is logged once such writes pile up (S9.1). send()
                # still raises WSAESHUTDOWN: it is ours, with Winsock's contract (S6.2).
                self._conn_lost_writes += 1
                if self._conn_lost_writes == _LOG_THRESHOLD_FOR_CONNLOST_WRITES:
                    logger.warning("%r: write() after the transport was closed or lost: dropped", self)
                return
            raise self._refusal()
        if empty:
            return
        engine = self._engine
        assert engine is not None and self._sock is not None
        try:
            if engine.hot and type(data) is bytes:
                engine.post_list(self._sock, [data], False)
            else:
                engine.post(self._sock, data, 0, None, None)
        except WSAError as exc:
            if fatal_for_connection(exc):
                # asyncio's write(): the error goes to connection_lost, not to the caller.
                self._fatal_error(exc, "Fatal write error on WSATransport")
                return
            raise
        if engine._ops and not self._protocol_paused and engine.unsent_bytes() > self._high_water:
            self._over_high_water(engine)  # (once paused, nothing more to do: see _over_high_water)

    def can_write_eof(self) -> bool:
        """True for stream and SOCK_SEQPACKET sockets; a datagram socket has no EOF to send."""
        return not self._is_dgram

    def write_eof(self) -> None:
        """Shut the sending direction down once every queued send has gone (SPEC S6.2).

        New sends fail WSAESHUTDOWN at once; the ``shutdown(SHUT_WR)`` itself happens after the
        queue drains, so the peer reads every byte before its EOF. Reading goes on.

        Raises:
            NotImplementedError: on a datagram socket (``can_write_eof()`` is False).
        """
        if self._is_dgram:
            raise NotImplementedError("a datagram socket cannot send an EOF")
        if not self._step(_EV_WRITE_EOF):
            return
        assert self._engine is not None and self._sock is not None
        shut_to_claims(self._sock)  # another loop's or thread's send: WSAESHUTDOWN from now on
        self._engine.drain_then(self._eof_drained)

    def _eof_drained(self) -> None:
        if self._state is not _EOF_PENDING or not self._step(_EV_DRAINED):
            return
        sock = self._sock
        assert sock is not None
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            self._fatal_error(WSAError.from_oserror(exc), "shutdown(SHUT_WR) failed")
            return
        # S3.3: from now on EPIPE on this socket is our shutdown, not a reset.
        mark_shutdown(sock)

    # -- sendfile (SPEC S9.3) -----------------------------------------------------------------------

    def sendfile(
        self, file: Any, offset: object = 0, count: object = None, *, fallback: object = True
    ) -> Coroutine[Any, Any, int]:
        """Send ``count`` bytes of ``file`` from ``offset`` (to its end by default); the bytes sent.

        ``loop.sendfile(transport, ...)`` for a WSATransport (SPEC S9.3), with TransmitFile's
        semantics: the file is one more overlapped send in the socket's queue, after every send
        posted before it and before every send posted after it, sent by ``os.sendfile`` (no copy
        into user space). A file that cannot go that way (no descriptor, not a regular file:
        a pipe, ``io.BytesIO``) is read and sent in chunks instead, unless ``fallback=False``.
        As with asyncio, the file position is left after the last byte sent, and while the
        native send runs ``write()``/``writelines()`` raise RuntimeError; ``send()`` and
        ``wsa_send`` are accepted and go out after the file.

        Cancelled, it follows S5.7: what had not started is withdrawn; a file send (or fallback
        block) that had started goes out whole in the background, and the position counts it,
        so that it says what the peer gets. A native file send that then ends short (the
        connection fails) moves the position back to after its last byte sent when it ends,
        unless the position was moved or the file closed since.

        A coroutine, as asyncio's: ``await transport.sendfile(f)``. It is plain Python in every
        build (see :mod:`wsasend._sendfile`), and checks its arguments when it runs, as asyncio's.

        Raises:
            RuntimeError: the transport is closing, or is a datagram transport.
            ValueError, TypeError: a text-mode file, a bad ``offset`` or ``count`` (as asyncio).
            asyncio.SendfileNotAvailableError: ``fallback=False`` and the file cannot go natively.
            WSAError: the send failed; ``bytes_sent`` is how many of the file's bytes the kernel
                consumed (exact, S6.4).
        """
        return _sendfile.sendfile(self, file, offset, count, bool(fallback))

    def _sendfile_native(self, file: Any, offset: object, count: object) -> Coroutine[Any, Any, int]:
        """The native half of :meth:`sendfile` (what ``loop._sendfile_native`` is to asyncio).

        A wsasend loop's ``_sendfile_native(transport, ...)`` calls this, and its
        ``_sendfile_fallback(transport, ...)`` calls :meth:`_sendfile_fallback`, so that
        ``loop.sendfile`` keeps asyncio's structure (and its tests' patch points).

        Raises:
            asyncio.SendfileNotAvailableError: the file cannot go by ``os.sendfile``.
            RuntimeError: a datagram transport (asyncio: "sendfile is not supported").
        """
        return _sendfile.native(self, file, offset, count)

    def _sendfile_fallback(self, file: Any, offset: object, count: object) -> Coroutine[Any, Any, int]:
        """Read and send ``file`` in chunks, each one send in the queue (asyncio's fallback)."""
        return _sendfile.fallback(self, file, offset, count)

    # -- flow control (asyncio's _FlowControlMixin, to the letter) ---------------------------------------

    def get_write_buffer_size(self) -> int:
        """Bytes posted and not yet consumed by the kernel. O(1)."""
        engine = self._engine
        return engine.unsent_bytes() if engine is not None else 0

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self._low_water, self._high_water)

    def set_write_buffer_limits(self, high: object = None, low: object = None) -> None:
        """asyncio's water marks: pause when the buffer is above ``high``, resume at ``low`` or below.

        ``high`` defaults to 64 KiB (or ``4 * low``), ``low`` to ``high // 4``; ``high=0`` forces
        ``low=0`` and pauses whenever the buffer is non-empty. Numbers of bytes, as asyncio's
        (which takes a float too; a float is rounded down here). Typed ``object`` so that a
        wrong type gets the same TypeError in both builds (S10).

        Raises:
            TypeError: a limit that is not a number (int or float) or None.
            ValueError: unless ``high >= low >= 0``.
        """
        hi = _water_mark("high", high)
        lo = _water_mark("low", low)
        if hi is None:
            hi = DEFAULT_HIGH_WATER if lo is None else 4 * lo
        if lo is None:
            lo = hi // 4
        if not hi >= lo >= 0:
            raise ValueError(f"high ({hi!r}) must be >= low ({lo!r}) must be >= 0")
        self._high_water = hi
        self._low_water = lo
        engine = self._engine
        if engine is not None and engine._ops and engine.unsent_bytes() > hi:
            self._over_high_water(engine)  # (the window first: see _over_high_water)
        else:
            self._maybe_pause_protocol()

    def _over_high_water(self, engine: SendEngine) -> None:
        """A send took the buffer above the high-water mark: what only waits for the batch
        window goes to the kernel now, and the protocol pauses for what the kernel left.

        asyncio's ``write()`` hands its bytes to the kernel at once, so its buffer holds only
        what the kernel refused; counting the window paused (and soon resumed) a protocol
        whose bytes the kernel had room for, and showed code that checks the buffer size
        bytes that were never offered (adversarial pass against asyncio's transport).
        """
        engine.flush_window()
        if engine.unsent_bytes() > self._high_water:
            self._maybe_pause_protocol()

    def _maybe_pause_protocol(self) -> None:
        if self.get_write_buffer_size() <= self._high_water:
            return
        if not self._protocol_paused:
            self._protocol_paused = True
            try:
                self._protocol.pause_writing()
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._loop.call_exception_handler(
                    {
                        "message": "protocol.pause_writing() failed",
                        "exception": exc,
                        "transport": self,
                        "protocol": self._protocol,
                    }
                )

    def _maybe_resume_protocol(self) -> None:
        self._resume_scheduled = False
        if self._state in (_LOST, _CLOSED):
            return
        if self._protocol_paused and self.get_write_buffer_size() <= self._low_water:
            self._protocol_paused = False
            try:
                self._protocol.resume_writing()
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._loop.call_exception_handler(
                    {
                        "message": "protocol.resume_writing() failed",
                        "exception": exc,
                        "transport": self,
                        "protocol": self._protocol,
                    }
                )

    # -- completions (engine hooks) ----------------------------------------------------------------

    def _on_progress(self) -> None:
        """Engine hook: the kernel took bytes of a send that has not completed; acts only while
        the protocol is paused. asyncio checks the low-water mark after each send, not at completions:
        a send of many joined writes (or one large write) would otherwise keep the protocol
        paused until it completed (S7.1)."""
        if (
            self._protocol_paused
            and not self._resume_scheduled
            and self._state is not _CLOSED
            and self.get_write_buffer_size() <= self._low_water
        ):
            self._resume_scheduled = True
            self._loop.call_soon(self._maybe_resume_protocol)

    def _on_sends_completed(self, ops: list[WSAOverlapped]) -> None:
        """Engine hook, inside its flush: schedule ``send_completed`` and the resume check."""
        if self._state is _CLOSED:
            return
        call_soon = self._loop.call_soon
        if self._completions_wanted:
            # Scheduled after the routines this flush scheduled (S5.3 then S7.2); one handle per
            # batch keeps that order across the several sendmsg calls of one flush. The state is
            # read NOW, while it is this send's: by the time the handle runs, a routine (or the
            # task that awaited it) may have posted the same overlapped again (issue 10 item 11).
            call_soon(self._deliver_completions, [CompletedSend(ov) for ov in ops])
        if self._protocol_paused and not self._resume_scheduled:
            self._resume_scheduled = True
            call_soon(self._maybe_resume_protocol)
        if self._state is _CLOSING and not self._close_draining:
            call_soon(self._close_when_idle)  # after resume_writing, which may write more (S9.1)

    def _deliver_completions(self, ops: list[CompletedSend]) -> None:
        if self._state is _CLOSED:
            return
        callback = getattr(self._protocol, "send_completed", None)
        if callback is None:
            return
        for ov in ops:
            try:
                callback(ov)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                # Like a completion routine's failure: reported, and the stream goes on.
                self._loop.call_exception_handler(
                    {
                        "message": "protocol.send_completed() failed",
                        "exception": exc,
                        "transport": self,
                        "protocol": self._protocol,
                    }
                )

    # -- reading -------------------------------------------------------------------------------------

    def is_reading(self) -> bool:
        """True while the transport delivers received data (not paused, closing or at EOF)."""
        read_state = self._read_state
        return self._state in _READABLE and (read_state is _ReadState.ACTIVE or read_state is _ReadState.FAILED)

    def pause_reading(self) -> None:
        """Stop delivering received data until :meth:`resume_reading`. No-op when not reading.

        Also while the data that came before a reset is being delivered (uvloop, see
        :meth:`_drain_before_reset`): the rest, and the reset, wait for :meth:`resume_reading`,
        as they do on asyncio, whose paused transport reads nothing.
        """
        if not self.is_reading():
            return
        if self._read_state is _ReadState.FAILED:
            self._read_state = _ReadState.DRAIN_PAUSED
            return
        self._read_state = _ReadState.PAUSED
        self._update_reader()

    def resume_reading(self) -> None:
        """Deliver received data again after :meth:`pause_reading`. No-op when not paused."""
        if self._state not in _READABLE:
            return
        if self._read_state is _ReadState.DRAIN_PAUSED:
            self._read_state = _ReadState.FAILED
            self._schedule_drain()
            return
        if self._read_state is not _ReadState.PAUSED:
            return
        self._read_state = _ReadState.ACTIVE
        self._update_reader()

    def _start_reading(self) -> None:
        self._read_started = True
        sock = self._sock
        if self._drops_reader and not self._message_mode and self._state in _READABLE and sock is not None:
            # uvloop: read through the loop's ErrorWatch (see ErrorWatch.reading), which also
            # reports error events without a syscall per read (see _check_reset). A socket
            # closed or detached behind our back since (its number may be another socket's
            # now) is not watched: it reads through the loop and checks each time.
            watch = None
            if descriptor(sock) == self._sock_fd:
                try:
                    watch = error_watch(self._loop)
                except OSError:
                    # No descriptor for the loop's first watch (EMFILE, ENFILE) or no memory:
                    # this connection reads through the loop and checks each time, as below.
                    # (It raised out of connection_made's callback: the protocol was told of a
                    # connection that then never read nor ended; review, stop 51.)
                    watch = None
            want = self._read_state is _ReadState.ACTIVE and self._registrations_ours()
            if watch is not None and watch.add(self._sock_fd, self, want):
                self._error_watch = watch
                self._watch_reads = 0
                self._reader_registered = want
                # The descriptor stays open while it is registered here, as uvloop keeps the
                # descriptor of a socket it watches (a close() behind our back waits for
                # ours): its number cannot pass to another socket, and another transport,
                # under our registration (the fd-reuse rule, docs/reliability.md).
                io_refs_add(sock, 1, 0)
            else:
                self._error_seen = True
        self._update_reader()

    def _watch_event(self, events: int) -> None:
        """uvloop: the ErrorWatch reports the socket (see ErrorWatch.reading).

        Reading through the watch, that is data or an error (EPOLLERR/EPOLLHUP); otherwise an
        error event only. uvloop may have run its reader once for such an event and dropped
        it, or may be about to: read once more now (the data first, then the error, as the
        next ``recv`` has them) and check ``SO_ERROR`` after every read from now on. While
        reading is paused the flag waits for ``resume_reading``, whose registration meets the
        error again.
        """
        reads = self._watch_reads
        if events & _EPOLL_ERROR or reads < 0:
            self._error_seen = True
        if self._reader_registered:
            self._read_stream()  # (stream sockets only are watched; it serves both protocol kinds)
            if reads >= 0 and self._watch_reads >= 0:
                self._watch_reads = reads = reads + 1
                if reads == _WATCH_READS:
                    self._read_through_loop()

    def _read_through_loop(self) -> None:
        """uvloop: a long-lived connection (``_WATCH_READS`` reads) reads through a reader of
        the loop's from now on, as before the watch read (issue 11: keep-alive with one client
        paid ~5% more CPU a request through the watch; a connection per request never gets
        here). Its registration in the watch becomes errors-only, as before the watch read."""
        watch = self._error_watch
        if not self._reader_registered or watch is None or not watch.reading(self._sock_fd, self, False):
            return
        self._watch_reads = -1
        self._reader_registered = False
        self._update_reader()

    def _watch_gone(self, rearm: bool) -> None:
        """The ErrorWatch ended under us (its loop's end or bare close, a fork: see
        ErrorWatch.close): let the descriptor go, and read through the loop from now on (with
        ``rearm``, from its next iteration: the loop may be closing now), checking each time."""
        self._error_seen = True
        self._release_io(self._sock)
        if self._watch_reads >= 0:
            self._watch_reads = -1
            if self._reader_registered:
                self._reader_registered = False
                if rearm and not self._loop.is_closed():
                    with contextlib.suppress(RuntimeError):
                        self._loop.call_soon(self._update_reader)

    def _leave_watch(self, sock: socket.socket | None, closing: bool = False) -> None:
        """Out of the ErrorWatch: its registration dropped (see ErrorWatch.discard for
        ``closing``), then the descriptor's hold given back (see _release_io)."""
        watch = self._error_watch
        if watch is not None:
            watch.discard(self._sock_fd, self, closing)
            self._release_io(sock)

    def _release_io(self, sock: socket.socket | None) -> None:
        """Give back the hold on the descriptor taken in _start_reading (nothing is closed), and
        with it the watch (its registration goes with the descriptor, or was dropped first)."""
        if self._error_watch is not None:
            self._error_watch = None
            if sock is not None:
                io_refs_add(sock, -1, 1)

    def _update_reader(self) -> None:
        """Make the loop's reader registration match what the state wants."""
        want = self._read_started and self._read_state is _ReadState.ACTIVE and self._state in _READABLE
        if want == self._reader_registered:
            return
        sock = self._sock
        if sock is None:  # pragma: no cover - the state is CLOSED then and want is False
            return
        watch = self._error_watch
        if self._watch_reads >= 0 and watch is not None and self._registrations_ours():
            if watch.reading(self._sock_fd, self, want):
                self._reader_registered = want
                return
            # The watch is ending (its loop's end), or the number is no longer ours there: from
            # now on the loop's reader, as before the watch, and a check after every read.
            self._watch_reads = -1
            self._error_seen = True
            if not want:
                self._reader_registered = False
                return
        if want:
            self._loop.add_reader(
                self._reader_target(sock, True), self._read_ready if self._message_mode else self._read_stream
            )
            self._reader_registered = True
        else:
            self._reader_registered = False
            if self._registrations_ours():
                self._loop.remove_reader(self._reader_target(sock))

    def _reader_target(self, sock: socket.socket, adding: bool = False) -> Any:
        """What the reader is registered with: the socket object on uvloop, its number elsewhere.

        uvloop holds a socket object it is given open while registered (its descriptor cannot
        be closed and reused under the registration: the fd-reuse rule). asyncio's selector
        loop keys registrations by number either way, and given an object that is not
        registered it formats the object into its KeyError: ``repr(sock)``, a ``getsockname``
        and a ``getpeername`` system call and ~10,000 instructions, twice per ``add_reader``
        (issue 11: every new connection, every ``resume_reading``). Its own transports pass the
        number. ``adding``: a socket closed or detached behind our back (its number may be
        another socket's now) is given as the object, which asyncio refuses to register, as
        before. So on asyncio a registration is always by our number, and so is its removal:
        the key at that number is ours unless a newer socket took the number and registered
        it, which asyncio makes an update of our key; then the object found the same key.
        """
        if self._drops_reader or (adding and sock.fileno() != self._sock_fd):
            return sock
        return self._sock_fd

    def _registrations_ours(self) -> bool:
        """False in a forked child for a transport made in the parent (S5.12).

        The child's copy of the loop shares the parent's epoll instance: removing the reader
        there removed the parent's, whose transport then never read again. The registration is
        left to the parent; the child's transport only forgets it.
        """
        engine = self._engine
        return engine is None or not engine._inherited

    def _read_stream(self) -> None:
        """The reader of a stream socket: ``_read_ready`` + ``_read_data`` in one frame for a
        plain Protocol (issue 11: the request/response hot path, one recv per callback as
        asyncio's ``_read_ready__data_received``)."""
        if not self._reader_registered:
            return  # a late callback after pause/close
        if self._buffered:
            self._read_ready()  # a BufferedProtocol (set_protocol may switch kinds)
            return
        sock = self._sock
        assert sock is not None
        size = self._read_size
        try:
            # The compiled build's recv(2) (issue 11: socket.recv parses an argument tuple per
            # call). MSG_DONTWAIT: a timeout someone set on the socket since cannot block the
            # loop. It reads the descriptor from the socket object right before the syscall,
            # as socket.recv does (S5.11; see _iovsend.c).
            recv = _IOV_RECV if type(sock) is _PLAIN_SOCKET else None
            data = sock.recv(size) if recv is None else recv(sock, _SMALL_READ_OBJECT if size == SMALL_READ else size)
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._read_error(exc)
            return
        n = len(data)
        if not n:
            self._on_eof()
            return
        late_error: BaseException | None = None
        if n == size:
            if size < self._max_read:
                self._read_size = min(size * 2, self._max_read)  # bulk: fewer, larger reads
                # The read filled: what else the kernel holds, up to the max_read asyncio and
                # uvloop read at once, goes in the same data_received (one copy, only for a
                # read that filled). A protocol that answers and closes in its first
                # data_received otherwise left unread data in the kernel, and the close sent
                # the peer a reset (a 100 KB request answered with write() and close(): the
                # client saw ECONNRESET, where both stock transports end it with a FIN).
                try:
                    rest = self._max_read - n
                    more = sock.recv(rest) if recv is None else recv(sock, rest)
                except (BlockingIOError, InterruptedError):
                    more = b""
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    more = b""
                    late_error = exc  # reported after the data it followed, as a next read would
                    if isinstance(exc, OSError) and exc.errno:
                        self._reset_err = exc.errno  # (taken now: a send's EPIPE meanwhile is this)
                if more:
                    data += more
        elif size > SMALL_READ and n < SMALL_READ:
            self._read_size = SMALL_READ  # small again: stay below the mmap threshold
        # See _read_ready: the engine's batch window closes when data_received returns.
        engine = self._engine
        assert engine is not None
        engine._held = True
        try:
            self._data_received(data)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.data_received() call failed.")
        finally:
            engine._held = False
            if engine._batch_open:
                if engine._ops:
                    engine.release()
                else:
                    engine._batch_open = False
        if late_error is not None:
            # (As a next read's error: after the tasks this data wakes have run, so a
            # StreamReader gives its buffered data before it raises. A transport closed
            # meanwhile reads no more, and reports nothing, as asyncio's.)
            if self._state in _READABLE:
                if isinstance(late_error, OSError) and late_error.errno:
                    self._fail_after_data(late_error.errno)
                else:
                    self._read_error(late_error)
            return
        if self._error_seen and self._reader_registered:
            self._check_reset(sock)

    def _read_ready(self) -> None:
        if not self._reader_registered:
            return  # a late callback after pause/close
        # Sends the protocol posts while it handles the data are coalesced by the engine's
        # batch window as ever (S5.4), and the window closes when this callback returns, not
        # in a loop callback of its own (S5.1, issue 11: request/response costs no call_soon).
        engine = self._engine
        assert engine is not None
        engine._held = True
        try:
            if self._buffered:
                self._read_buffered()
            else:
                self._read_data()
        finally:
            engine._held = False
            if engine._batch_open:
                if engine._ops:
                    engine.release()
                else:
                    engine._batch_open = False
        if self._error_seen and self._reader_registered and not self._message_mode:
            sock = self._sock
            assert sock is not None
            self._check_reset(sock)

    def _check_reset(self, sock: socket.socket) -> None:
        """After a stream read on uvloop: end the connection on an error the read left pending.

        uvloop (libuv's poll handle) reports a pending socket error (``POLLERR``: a TCP reset, an
        AF_UNIX peer that closed with data unread) as an error event: it runs the reader once,
        then closes its handle for the descriptor for good. When data arrived before the reset,
        that one read returns the data and the error stays pending, so without this check
        ``connection_lost`` never came (a server leaked the connection). ``SO_ERROR`` takes the
        error, which is then reported as the next ``recv`` would have (S6.3: WSAECONNRESET), one
        loop callback later as on asyncio: a task woken by the data runs first (a StreamReader
        holding an exception raises it before its buffered data).

        The read callback cannot tell an error event from a readable one, so this check ran after
        every read on uvloop: one ``getsockopt`` per request (issue 11, ~3% of a keep-alive HTTP
        request). Now the loop's :class:`~wsasend._errorwatch.ErrorWatch` says when the socket
        has an error event (``_error_event``), and only from then on does each read check (asyncio
        needs none: its level-triggered selector calls the reader again and ``recv`` raises the
        error). Once the error is taken, the data the kernel still holds is read and delivered,
        one read per loop callback, and the reset reported after it (:meth:`_drain_before_reset`),
        as asyncio's and stock uvloop's transports deliver it: reported at once, everything past
        the first read was lost (a client that posts a request and closes without reading the
        reply: the end of its request; adversarial pass).
        """
        try:
            if _IOV_SO_ERROR is not None and type(sock) is _PLAIN_SOCKET:
                err = _IOV_SO_ERROR(sock)  # (as _IOV_RECV in _read_stream)
            else:
                err = sock.getsockopt(_SOL_SOCKET, _SO_ERROR)
        except OSError:
            return  # closed under us: the engine's watchdog and close paths report that
        if err:
            # uvloop's reader is gone (it may still hold this iteration's event for the socket):
            # no registration from now on; the drain reads by itself, then reports.
            self._fail_after_data(err)

    def _fail_after_data(self, err: int) -> None:
        """A read took the socket's error ``err`` after data the protocol has now been given:
        what the kernel still holds is read, and the error reported after it, one loop callback
        later (see :meth:`_drain_before_reset`); after ``resume_reading()`` if paused."""
        paused = self._read_state is _ReadState.PAUSED
        self._read_state = _ReadState.DRAIN_PAUSED if paused else _ReadState.FAILED
        self._reset_err = err
        self._update_reader()
        if not paused:
            self._schedule_drain()

    def _schedule_drain(self) -> None:
        if not self._drain_scheduled:
            self._drain_scheduled = True
            self._loop.call_soon(self._drain_before_reset)

    def _drain_before_reset(self) -> None:
        """Read what arrived before a reset _check_reset took, then report the reset (S6.3).

        One read per call: data for the protocol, then this again one callback later, so the
        tasks it wakes run in between; EAGAIN or the end of stream (the error is taken, so the
        kernel says EOF after the data) ends it with the reset's error, as the next ``recv``
        would have raised it. A ``pause_reading()`` stops it until ``resume_reading()`` (it
        was not honoured: a paused protocol kept getting data, up to all the kernel held).
        """
        self._drain_scheduled = False
        sock = self._sock
        if sock is None or self._state not in _READABLE:
            return  # closed or lost meanwhile: that was reported
        if self._read_state is not _ReadState.FAILED:
            return  # paused: resume_reading() calls again
        engine = self._engine
        assert engine is not None
        nbytes = 0
        engine._held = True
        try:
            if self._buffered:
                protocol = self._protocol
                assert isinstance(protocol, asyncio.BufferedProtocol)
                buf = protocol.get_buffer(-1)
                nbytes = sock.recv_into(buf)
                if nbytes:
                    protocol.buffer_updated(nbytes)
            else:
                data = sock.recv(self._max_read)
                nbytes = len(data)
                if nbytes:
                    self._data_received(data)
        except (BlockingIOError, InterruptedError):
            nbytes = 0
        except (SystemExit, KeyboardInterrupt):
            raise
        except OSError as exc:
            self._read_error(exc)
            return
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.data_received() call failed.")
            return
        finally:
            engine.release()  # (the hold's window: flushed now, as _read_ready does inline)
        if nbytes:
            self._schedule_drain()
            return
        err = self._reset_err
        self._read_error(OSError(err, os.strerror(err)))

    def _read_data(self) -> None:
        sock = self._sock
        assert sock is not None
        try:
            if self._message_mode:
                data = self._read_message(sock)
                if data is None:
                    return
            else:
                data = sock.recv(self._max_read)
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._read_error(exc)
            return
        if not data:
            if self._is_dgram:
                return  # an empty datagram: data_received never gets empty data
            self._on_eof()
            return
        try:
            self._data_received(data)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.data_received() call failed.")

    def _read_message(self, sock: socket.socket) -> bytes | None:
        """One whole message from the scratch area (None: truncated, the transport is failing).

        One ``recvmsg_into`` and a copy of the message's own bytes: no syscall more than a
        plain ``recv`` for the common small datagram, and cheaper than allocating a buffer of
        the largest size for each one (measured ~4x on a 100-byte AF_UNIX datagram).
        """
        iov = self._scratch_iov
        scratch = iov[0]
        nbytes, _, msg_flags, _ = sock.recvmsg_into(iov)
        if msg_flags & socket.MSG_TRUNC:
            self._truncated()
            return None
        data = scratch[:nbytes]
        if nbytes > MAX_READ:
            self._release_scratch()
        return data

    def _release_scratch(self) -> None:
        # A large message left its pages resident: give them back (zero-filled on next touch).
        iov = self._scratch_iov
        if iov and hasattr(mmap, "MADV_DONTNEED"):
            iov[0].madvise(mmap.MADV_DONTNEED)

    def _read_buffered(self) -> None:
        protocol = self._protocol
        assert isinstance(protocol, asyncio.BufferedProtocol)
        sock = self._sock
        assert sock is not None
        try:
            buf = protocol.get_buffer(-1)
            if not len(buf):  # type: ignore[arg-type]
                raise RuntimeError("get_buffer() returned an empty buffer")
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.get_buffer() call failed.")
            return
        try:
            if self._message_mode:
                # The protocol's buffer first (zero-copy), then the scratch area for the rest of
                # a message longer than it: still one syscall, and nothing is ever cut.
                nbytes, _, msg_flags, _ = sock.recvmsg_into([buf, self._scratch_iov[0]])
                if msg_flags & socket.MSG_TRUNC:
                    self._truncated()
                    return
                if nbytes > len(buf):  # type: ignore[arg-type]
                    room = memoryview(buf).nbytes
                    if nbytes > room:
                        self._buffered_long_message(protocol, buf, room, nbytes)
                        return
            else:
                nbytes = sock.recv_into(buf)
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._read_error(exc)
            return
        if not nbytes:
            if self._is_dgram:
                return
            self._on_eof()
            return
        try:
            protocol.buffer_updated(nbytes)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.buffer_updated() call failed.")

    def _buffered_long_message(self, protocol: asyncio.BufferedProtocol, buf: Any, room: int, nbytes: int) -> None:
        """A message longer than the protocol's buffer: its head is in ``buf``, the rest in the
        scratch area. Deliver it whole, in order, through as many ``get_buffer(remaining)`` /
        ``buffer_updated`` rounds as the protocol's buffers need (one when it offers enough)."""
        data = bytes(memoryview(buf).cast("B")[:room]) + self._scratch_iov[0][: nbytes - room]
        if nbytes > MAX_READ:
            self._release_scratch()
        offset = 0
        try:
            while offset < nbytes and self._state in _READABLE:
                view = memoryview(protocol.get_buffer(nbytes - offset)).cast("B")
                if not view.nbytes:
                    raise RuntimeError("get_buffer() returned an empty buffer")
                take = min(view.nbytes, nbytes - offset)
                view[:take] = data[offset : offset + take]
                offset += take
                protocol.buffer_updated(take)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.get_buffer() or buffer_updated() call failed.")

    def _truncated(self) -> None:
        # A message longer than the receive buffer lost its tail: say so rather than deliver it.
        self._fatal_error(
            WSAError(WSAErrorCode.WSAEMSGSIZE, detail="a received message was larger than the receive buffer"),
            "Fatal read error on WSATransport",
        )

    def _read_error(self, exc: BaseException) -> None:
        if isinstance(exc, OSError):
            if self._is_dgram and exc.errno == errno.ECONNREFUSED:
                # S3.3: an ICMP port-unreachable from an earlier datagram; the socket is fine.
                # uvloop got it as an error event and closes its reader handle once this call
                # returns: register the reader again after that, or the transport goes deaf.
                if self._drops_reader:
                    self._loop.call_soon(self._rearm_reader)
                return
            exc = WSAError.from_oserror(exc)
        self._fatal_error(exc, "Fatal read error on WSATransport")

    def _rearm_reader(self) -> None:
        """uvloop: a new reader registration for one its error event closed (see _read_error)."""
        sock = self._sock
        if self._reader_registered and sock is not None and self._watch_reads < 0 and self._registrations_ours():
            self._loop.remove_reader(sock)
            self._loop.add_reader(sock, self._read_ready if self._message_mode else self._read_stream)

    def _on_eof(self) -> None:
        self._read_state = _ReadState.EOF
        self._update_reader()
        try:
            keep_open = self._protocol.eof_received()  # type: ignore[attr-defined]
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.eof_received() call failed.")
            return
        if not keep_open:
            self.close()

    # -- closing ---------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop reading, let every queued send go out, then ``connection_lost(None)`` (S6.2).

        New ``send()`` calls fail WSAESHUTDOWN at once. ``write()``/``writelines()`` behave as
        asyncio's (S9.1): while sends are still queued they queue behind them (a TLS layer
        writes its close_notify then), once the queue is empty they are dropped. A send error
        while draining ends the connection with ``connection_lost`` of that error instead.
        """
        was_open = self._state is _OPEN
        if not self._step(_EV_CLOSE):
            return
        self._update_reader()
        engine = self._engine
        assert engine is not None
        if was_open and not self._message_mode:
            engine.release_held()  # S4.4: cork pieces go out at a graceful close
            # The batch window goes to the kernel now, as stock write() sent it at once (S9.1):
            # a close() right before loop.stop() lost what waited for the loop's next tick.
            engine.flush_window()
            if self._close_draining or self._state is not _CLOSING:
                return  # (a send error in the flush ended the connection)
            if engine.pending_count():
                return  # _on_sends_completed -> _close_when_idle drains once the queue is empty
        self._drain_to_close(engine)

    def _close_when_idle(self) -> None:
        """After a completion in CLOSING (and the resume_writing it caused): drain if idle."""
        engine = self._engine
        if self._state is not _CLOSING or self._close_draining or engine is None:
            return
        if engine.pending_count():
            return
        self._drain_to_close(engine)

    def _drain_to_close(self, engine: SendEngine) -> None:
        """Hand the drain to the engine, then ``_close_drained``: at once when nothing is
        queued (no bound method made for the engine to call: issue 11, workload HC)."""
        self._close_draining = True
        if engine.drained_now():
            self._close_drained()
        else:
            engine.drain_then(self._close_drained)

    def _close_drained(self) -> None:
        if self._state is not _CLOSING:
            return
        if self._protocol_paused:
            # asyncio resumes a paused protocol as its buffer drains, before connection_lost;
            # after write_eof(), close() drained here and the resume, scheduled, found the
            # connection lost (adversarial pass).
            self._maybe_resume_protocol()
        if not self._step(_EV_DRAINED):
            return
        # The last byte is out and the socket closes after connection_lost: nobody else may
        # send on it in between (another loop's post on get_extra_info("socket") went out).
        assert self._engine is not None
        self._engine.close_to_claims()
        self._loop.call_soon(_call_connection_lost, self, None)

    def _socket_closing(self) -> None:
        """``closesocket()`` on this transport's socket, in the loop's thread (S6.1): end as
        ``abort()`` does, and let go of every loop registration for the socket now, since the
        descriptor is closed as soon as this returns (its number may be a new socket's then).
        Before, the transport was never told: no ``connection_lost``, and its reader stayed
        registered for the number, where asyncio's selector then ignored the next socket
        given that number, and uvloop kept the descriptor open (adversarial pass)."""
        if self._step(_EV_ABORT):
            self._lose(None, WSAErrorCode.WSA_OPERATION_ABORTED)  # (removes the reader)
        self._leave_watch(self._sock)  # (so that the close is not left waiting for our hold)

    def abort(self) -> None:
        """Close now: pending sends complete with WSA_OPERATION_ABORTED and their exact
        ``transferred`` (S6.1), then ``connection_lost(None)``."""
        if not self._step(_EV_ABORT):
            return
        self._lose(None, WSAErrorCode.WSA_OPERATION_ABORTED)

    def _fatal_error(self, exc: BaseException, message: str) -> None:
        """End the connection with ``exc`` (asyncio's ``_fatal_error``): pending sends fail
        (with exc's code for a WSAError, else WSA_OPERATION_ABORTED), then ``connection_lost(exc)``.
        """
        if not self._step(_EV_FATAL):
            return
        if self._reset_err == errno.ECONNRESET and isinstance(exc, WSAError) and exc.errno == errno.EPIPE:
            # A read took the peer's reset (_check_reset on uvloop, or the read on after a full
            # one) and a send then met its EPIPE: the connection ends with the reset, errno
            # ECONNRESET, as both stock transports report it (it ended with errno EPIPE, from
            # the window's flush or a write's own sendmsg; adversarial passes).
            exc = WSAError(exc.winerror, errno=errno.ECONNRESET, bytes_sent=exc.bytes_sent, detail="reset by the peer")
        if not isinstance(exc, OSError) or isinstance(exc, RuntimeError):
            # A protocol callback raised (or this module has a bug): that is worth a report.
            # Socket errors are the peer's doing and go to connection_lost only, as in asyncio.
            # (WriteAfterEOFError is both: a write() after write_eof() is the caller's bug.)
            self._loop.call_exception_handler(
                {"message": message, "exception": exc, "transport": self, "protocol": self._protocol}
            )
        elif self._loop.get_debug():
            logger.debug("%r: %s", self, message, exc_info=True)
        code = exc.winerror if isinstance(exc, WSAError) else WSAErrorCode.WSA_OPERATION_ABORTED
        self._lose(exc, code)

    def _force_close(self, exc: BaseException | None) -> None:
        """asyncio's private transport hook, called by ``asyncio.sslproto`` on a TLS failure:
        end the connection with ``exc`` (no report: the TLS layer made it) (S9.2)."""
        if not self._step(_EV_ABORT if exc is None else _EV_FATAL):
            return
        code = exc.winerror if isinstance(exc, WSAError) else WSAErrorCode.WSA_OPERATION_ABORTED
        self._lose(exc, code)

    def _lose(self, exc: BaseException | None, code: WSAErrorCode) -> None:
        # The state is LOST already (ABORT or FATAL).
        self._lost_exc = exc
        self._update_reader()
        engine = self._engine
        assert engine is not None
        # What the batch window holds goes to the kernel first, as stock write() sent it at
        # once (S9.1: a 400 reply's headers, written after its status line and before abort()
        # or a callback that raised, were lost). After a socket error the flush fails at once
        # and its sends end with the kernel's error, as they would have at their own send.
        engine.flush_window()
        engine.close_to_claims()  # (the socket closes after connection_lost)
        # Every pending send completes now, in order, with exact counts; their send_completed
        # calls are scheduled by this very call, so they run before connection_lost.
        engine.abort(code)
        self._loop.call_soon(_call_connection_lost, self, exc)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        try:
            if self._protocol_connected:
                # asyncio hands over whatever ended the connection, BaseException included.
                self._protocol.connection_lost(exc)  # type: ignore[arg-type]
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as cb_exc:
            self._loop.call_exception_handler(
                {
                    "message": "protocol.connection_lost() failed",
                    "exception": cb_exc,
                    "transport": self,
                    "protocol": self._protocol,
                }
            )
        finally:
            self._step(_EV_LOST_CALLED)
            self._close_socket()
            # Let go of the protocol, as asyncio's and uvloop's transports do: a protocol keeps its
            # transport (``self.transport = transport``), and the cycle would otherwise wait for the
            # cyclic collector, which a server making a connection per request then runs every few
            # dozen connections (issue 11, workload HC). get_protocol() says None from here on;
            # set_protocol() still takes a new one.
            self._protocol = _LOST_PROTOCOL
            self._data_received = _LOST_PROTOCOL.data_received

    def _close_socket(self) -> None:
        """Drop every loop registration for the socket, then close it (S6.1: the peer sees it)."""
        sock, self._sock = self._sock, None
        if self._reader_registered and sock is not None:
            self._reader_registered = False
            if self._watch_reads < 0 and self._registrations_ours():
                self._loop.remove_reader(self._reader_target(sock))
        # (Only while the number is still ours there; the descriptor closes just below when
        # the socket still has it, see ErrorWatch.discard.)
        self._leave_watch(sock, sock is not None and descriptor(sock) == self._sock_fd)
        engine = self._engine
        keeper = None
        if engine is not None:
            # (The socket is closing already: _lose or _close_drained, which scheduled this.)
            engine.abort()  # nothing is queued by now; this removes the writer and its watchdog
            engine.on_complete = None
            engine.on_error = None
            engine.on_progress = None
            keeper, engine.keeper = engine.keeper, None
            engine.unmark_transport()
        if sock is not None:
            close_socket(sock)  # (sock.close())
            if engine is not None:
                engine.wake_after_close()
        self._leave_server(keeper)

    def _leave_server(self, ref: Callable[[], object] | None = None) -> None:
        """No longer one of its server's connections: ``WSAServer._detach(self)``, with the
        server's compiled part called directly (see ServerConnections; ``ref`` as there)."""
        server, self._server = self._server, None
        if server is not None:
            connections: ServerConnections = server._connections
            if connections.detach(self, ref):
                server._wakeup()

    def _connection_made(self) -> None:
        """The protocol's ``connection_made``, then the reader (see __init__)."""
        if self._state is not _CLOSED:  # (closed before the loop ran: neither)
            try:
                self._protocol.connection_made(self)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal error: protocol.connection_made() call failed.")
        self._start_reading()


if is_extension_file(__file__):
    # Compiled: weak references to a transport, as to asyncio's and to the plain-Python class
    # (S10). mypyc's class alone either has none (Python 3.12+) or leaves them pointing at
    # freed memory (3.11). The engine, the ErrorWatch and the servers hold transports weakly.
    from . import _iovsend

    _iovsend.support_weakrefs(WSATransport)


@final
class ServerConnections:
    """A server's open connections: how many, and each one weakly (``WSAServer._connections``).

    The server is plain Python; this part of it, which every connection updates twice (when its
    transport is made and when it closes), is compiled with the transport, which calls it
    directly (issue 11, workload HC: the server's interpreted ``_attach`` and ``_detach`` cost
    ~5,000 instructions of every connection). A transport collected unclosed still leaves
    ``refs``: each weak reference's callback is the set's own ``discard`` (a live reference is
    found by a new one; see ``_sockutil._CONNECTED`` for why a dead one removes only itself).
    """

    __slots__ = ("_discard", "closed", "count", "refs")

    def __init__(self) -> None:
        self.count = 0
        self.refs: set[weakref.ReferenceType[WSATransport]] = set()
        # The references' callback, bound once (a bound method made per connection otherwise).
        self._discard: Callable[[weakref.ReferenceType[WSATransport]], None] = self.refs.discard
        # Set by the server's close(): from then on the last connection to go wakes wait_closed().
        self.closed = False

    def attach(self, transport: WSATransport) -> None:
        """``transport`` is one of the server's connections from now on."""
        self.count += 1
        self.refs.add(weakref.ref(transport, self._discard))

    def detach(self, transport: WSATransport, ref: Callable[[], object] | None = None) -> bool:
        """``transport`` is not any more; True when it was the last one of a closed server.

        ``ref``: a live weak reference to ``transport`` the caller has (its engine's keeper), which
        finds the set's own as a new one would, without making one (issue 11, workload HC).
        """
        self.count -= 1
        self.refs.discard(ref if isinstance(ref, _WEAKREF_TYPE) else weakref.ref(transport))
        return self.count == 0 and self.closed


def accepted_transport(
    sock: socket.socket,
    protocol: asyncio.BaseProtocol,
    loop: asyncio.AbstractEventLoop,
    extra: dict[str, Any] | None,
    server: Any,
    nonblocking: bool = False,
) -> WSATransport:
    """``WSATransport(sock, protocol, loop=loop, extra=extra, _server=server)``: a server's new
    connection with the default options (``_server.WSAServer._accept_connection``).
    ``nonblocking``: the server's accept made ``sock`` non-blocking (accept4's SOCK_NONBLOCK,
    the socket object's timeout 0), so the transport does not set it again.

    Why a function (issue 11, a connection per request): the server's call of the class, with
    keywords, went through the general argument parser of the class's ``__init__`` (a format
    string parsed and each keyword looked up: ~5,900 instructions a connection, callgrind);
    this call is positional, and compiled, the class is constructed here without any parsing.
    """
    return WSATransport(sock, protocol, loop=loop, extra=extra, _server=server, _nonblocking=nonblocking)


def _water_mark(name: str, value: object) -> int | None:
    """A ``set_write_buffer_limits`` argument as bytes: None, or an int (a finite float is
    rounded down, as asyncio, which keeps floats, compares them)."""
    if value is None:
        return None
    if isinstance(value, int):
        return int(value)  # (a bool or another int subclass as a plain int)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{name} ({value!r}) must be a finite number of bytes")
        return math.floor(value)
    raise TypeError(f"{name} must be a number of bytes or None, not {type(value).__name__!r}")


def _bad_data_message(items: list[Any]) -> str:
    """asyncio's TypeError message for the first item of ``items`` that is not a usable buffer."""
    for item in items:
        try:
            view = memoryview(item)
        except (TypeError, ValueError):
            return f"data argument must be a bytes-like object, not {type(item).__name__!r}"
        if not view.c_contiguous:
            return "data argument must be a C-contiguous bytes-like object"
    return "data argument must be bytes-like objects"


def _connection_made(transport: WSATransport) -> None:
    """``transport._connection_made()``, for ``loop.call_soon`` (see ``WSATransport.__init__``)."""
    transport._connection_made()


def _call_connection_lost(transport: WSATransport, exc: BaseException | None) -> None:
    """``transport._call_connection_lost(exc)``, for ``loop.call_soon`` (as above)."""
    transport._call_connection_lost(exc)


def _set_result_unless_cancelled(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled():
        fut.set_result(None)
