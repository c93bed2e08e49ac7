"""Socket facts and error classification shared by the nonoverlapped and overlapped paths.

Everything here asks the kernel about a socket, never sends on it.
"""

from __future__ import annotations

import _socket
import errno
import select
import socket
import sys
import weakref
from collections.abc import Callable
from typing import Any, Final

from ._compat import is_extension_file
from ._errors import WSAError, WSAErrorCode, errno_to_wsa

__all__ = [
    "LINUX_SEND_FLAGS",
    "MSG_DONTROUTE",
    "MSG_OOB",
    "MSG_PARTIAL",
    "DGRAM",
    "INET",
    "INET6",
    "IOVSEND_MODULE",
    "STREAM",
    "SocketInfo",
    "UNIX",
    "classify",
    "accepted_socket",
    "check_socket",
    "close_socket",
    "connect_in_progress",
    "descriptor",
    "io_refs_add",
    "is_closed",
    "is_known_connected",
    "is_marked_shutdown",
    "is_message_kind",
    "is_message_socket",
    "mark_connected",
    "mark_shutdown",
    "max_message_size",
    "message_limit_to",
    "tcp_state",
    "translate_flags",
]

#: Winsock's flag values (winsock2.h). MSG_OOB and MSG_DONTROUTE happen to equal Linux's.
MSG_OOB = 0x1
MSG_DONTROUTE = 0x4
MSG_PARTIAL = 0x8000
_KNOWN_FLAGS = MSG_OOB | MSG_DONTROUTE | MSG_PARTIAL

#: Added to every sendmsg we make: never block (the caller's blocking mode stays theirs, S5.10)
#: and never raise SIGPIPE (Python ignores it by default, an embedding application may not).
LINUX_SEND_FLAGS: Final = int(socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL)
# Linux's values as plain ints: or-ing socket.MsgFlag members runs IntFlag.__or__ in Python,
# which showed up in the hot path's profile.
LINUX_OOB: Final = int(socket.MSG_OOB)
_LINUX_DONTROUTE = int(socket.MSG_DONTROUTE)
LINUX_NOSIGNAL = int(socket.MSG_NOSIGNAL)

# Largest UDP payloads: 65535 - 8 (UDP header) - 20 (IPv4 header); IPv6's header is not counted
# in its payload length, so 65535 - 8.
_UDP4_MAX = 65507
_UDP6_MAX = 65527
_V4_MAPPED_PREFIX: Final = bytes(10) + b"\xff\xff"
# A stream socket has no message size; this stands for "unbounded" (Winsock reports 0xFFFFFFFF
# for SO_MAX_MSG_SIZE of stream sockets, and we go one better than a DWORD).
_STREAM_MAX = 2**63 - 1
# A raw socket's packet: 65535 bytes of IP datagram; over IPv4 the kernel's header takes 20 of
# them unless the caller writes it (IP_HDRINCL). IPv6's header is not counted; an AF_PACKET
# frame is bounded by its link, which the kernel checks (EMSGSIZE: WSAEMSGSIZE, nothing sent).
_RAW_MAX = 65535
_IPV4_HEADER = 20
# Linux's unix_dgram_sendmsg refuses len > sk_sndbuf - 32 (measured: 212960 of 212992 passes).
_UNIX_DGRAM_OVERHEAD = 32
# ... and, whatever the send buffer, cannot allocate a datagram larger than one kmalloc'd linear
# part (KMALLOC_MAX_SIZE, 4 MiB, less 320 for skb_shared_info) plus MAX_SKB_FRAGS (17) pages:
# beyond that it fails ENOBUFS, not EMSGSIZE. Measured on 6.18 x86-64 with SO_SNDBUF at 8 MiB:
# 4263616 passes, 4263617 is ENOBUFS. Kernels built with more frags or larger pages take more.
_UNIX_DGRAM_ALLOC_MAX = 4 * 1024 * 1024 - 320 + 17 * 4096

# Sockets whose sending direction was shut down through this package (S3.3): EPIPE on them is
# WSAESHUTDOWN, not a reset.
_SHUT_WR: weakref.WeakSet[socket.socket] = weakref.WeakSet()

# Sockets known to have been connected (issue 13 item 6): an accepted socket that was reset
# before it sent anything has no peer name and no sent segments any more, yet a send on it is
# WSAECONNRESET, not WSAENOTCONN. Filled when a socket is first seen with a peer and on resets.
#
# A set of weak references, each dropped by its own callback as its socket dies: a WeakSet's
# methods are Python code, ~2,500 instructions of every connection a server accepted (the add,
# then the removal; issue 11, workload HC), where these are C calls. Alive, a reference hashes
# and compares as its socket does, so ``weakref.ref(sock) in _CONNECTED`` finds it, and a second
# add of a live socket adds nothing; dead, it keeps its hash and compares by identity, so the
# callback removes exactly that reference, before the socket's address can be reused.
_CONNECTED: set[weakref.ReferenceType[socket.socket]] = set()
_FORGET_CONNECTED: Final = _CONNECTED.discard

# TCP states from include/net/tcp_states.h, read from the first byte of TCP_INFO.
_TCP_SYN_SENT = 2
# ESTABLISHED, FIN_WAIT1, FIN_WAIT2, TIME_WAIT, CLOSE_WAIT, LAST_ACK, CLOSING: had a peer.
_TCP_CONNECTED_STATES = frozenset({1, 4, 5, 6, 8, 9, 11})
_TCP_CLOSE = 7
_TCP_LOCAL_SHUTDOWN = frozenset({4, 5, 6, 9, 11})  # FIN_WAIT1, FIN_WAIT2, TIME_WAIT, LAST_ACK, CLOSING


_MESSAGE_TYPES: Final = frozenset({int(socket.SOCK_DGRAM), int(socket.SOCK_SEQPACKET), int(socket.SOCK_RAW)})

# The socket module's constants that a new connection compares with, as plain ints: Final, so
# the compiled code reads a C global instead of looking each up in the socket module's dict
# (issue 11, workload HC). Compare them with sock_type() and sock_family().
STREAM: Final = int(socket.SOCK_STREAM)
DGRAM: Final = int(socket.SOCK_DGRAM)
INET: Final = int(socket.AF_INET)
INET6: Final = int(socket.AF_INET6)
UNIX: Final = int(socket.AF_UNIX)

# The C socket's own ``type`` and ``family`` members: plain ints. ``socket.socket`` overrides
# both with properties that convert the int to a SocketKind / AddressFamily enum member on
# every read, ~7,000 instructions each on Python 3.11: a new connection read them ~10 times
# (issue 11: an HTTP server without keep-alive spent 268k instructions a connection against
# the stock uvloop server's 36k). The members hold the same values (without SOCK_NONBLOCK and
# SOCK_CLOEXEC, as the properties).
_RAW_TYPE: Final[Any] = _socket.socket.__dict__["type"]
_RAW_FAMILY: Final[Any] = _socket.socket.__dict__["family"]


def _load_iovsend() -> Any:
    """The compiled build's C socket calls (``_iovsend.c``), else None. The one place that
    decides whether they are used (the engine's sends and reads, and the readers below)."""
    if not is_extension_file(__file__):
        return None  # plain Python: the socket methods, as ever (a stray .so is not ours to use)
    try:
        from . import _iovsend
    except ImportError:
        return None
    # The functions read the descriptor from CPython's socket object right before each system
    # call, as socket.sendmsg does (see _iovsend.c): check that layout on a real socket, open
    # and closed.
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        ok = _iovsend.descriptor(probe) == probe.fileno() >= 0
    finally:
        probe.close()
    if not ok or _iovsend.descriptor(probe) != -1:
        return None
    # marked_closed reads socket.socket's _closed slot directly: check it answers as getattr.
    fresh = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        ok = _iovsend.marked_closed(fresh) is False and _iovsend.marked_closed(probe) is True
    finally:
        fresh.close()
    return _iovsend if ok else None


#: The compiled build's ``_iovsend`` module when its calls answer as the socket's own, else None.
IOVSEND_MODULE: Final[Any] = _load_iovsend()


def _member_readers(module: Any) -> tuple[Any, Any]:
    """``module``'s C readers of those two members (``_iovsend.sock_type`` and ``sock_family``:
    the descriptor's own get function, without the call through its method wrapper, ~870
    instructions a read from compiled code), if they answer as the descriptors do; else
    ``(None, None)`` (plain Python: the descriptors' ``__get__``)."""
    if module is None:
        return None, None
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        ok = module.sock_type(probe) == _RAW_TYPE.__get__(probe) and module.sock_family(probe) == _RAW_FAMILY.__get__(
            probe
        )
    except RuntimeError:  # (the members were not found at its import)
        ok = False
    finally:
        probe.close()
    return (module.sock_type, module.sock_family) if ok else (None, None)


_IOV_SOCK_TYPE, _IOV_SOCK_FAMILY = _member_readers(IOVSEND_MODULE)
# The C readers of the descriptor and of the ``_closed`` slot, whether close() or detach() was
# called on the socket object (both checked by _load_iovsend; the engine's hot paths read the
# slot with it too, see _engine.marked_closed).
_IOV_DESCRIPTOR: Final[Any] = None if IOVSEND_MODULE is None else IOVSEND_MODULE.descriptor
_IOV_MARKED_CLOSED: Final[Callable[[object], bool] | None] = (
    None if IOVSEND_MODULE is None else IOVSEND_MODULE.marked_closed
)
# socket.socket's ``_io_refs`` and ``_closed`` slots written in C (see _iovsend.io_refs_add).
_IOV_IO_REFS_ADD: Final[Any] = None if IOVSEND_MODULE is None else IOVSEND_MODULE.io_refs_add
_IOV_SET_SLOTS: Final[Any] = None if IOVSEND_MODULE is None else IOVSEND_MODULE.set_slots
_SOCK_TYPE: Final[Any] = _IOV_SOCK_TYPE if _IOV_SOCK_TYPE is not None else _RAW_TYPE.__get__
_SOCK_FAMILY: Final[Any] = _IOV_SOCK_FAMILY if _IOV_SOCK_FAMILY is not None else _RAW_FAMILY.__get__


def sock_type(sock: socket.socket) -> int:
    """``sock.type`` as a plain int, without the enum conversion (see _RAW_TYPE)."""
    kind: int = _SOCK_TYPE(sock)
    return kind


def sock_family(sock: socket.socket) -> int:
    """``sock.family`` as a plain int, without the enum conversion (see _RAW_TYPE)."""
    family: int = _SOCK_FAMILY(sock)
    return family


def is_message_socket(sock: socket.socket) -> bool:
    """True for SOCK_DGRAM, SOCK_SEQPACKET and SOCK_RAW (one send is one message, S4.3).

    (SOCK_RAW took the stream path: back-to-back sends were coalesced into one packet, and
    their destinations ignored; adversarial pass.)
    """
    return is_message_kind(sock_type(sock))


def is_message_kind(kind: int) -> bool:
    """:func:`is_message_socket` for a socket type already read (``sock_type``)."""
    return kind in _MESSAGE_TYPES


def is_closed(sock: socket.socket) -> bool:
    """True once the socket object was closed or detached (SPEC S5.2, S5.11).

    ``fileno()`` alone is not enough: while uvloop holds the socket object for a reader or a
    writer (another task in ``loop.sock_recv``, say), ``close()`` only sets ``_closed`` and the
    descriptor stays open until uvloop lets go. ``close()`` and ``detach()`` set ``_closed``
    before the descriptor goes; ``fileno() < 0`` covers a bare ``_socket.socket`` close.
    """
    if _IOV_MARKED_CLOSED is not None and type(sock) is _PLAIN_SOCKET:
        # (Compiled: the slot and the descriptor read in C, without the attribute lookup and
        # the method call, ~400 instructions of every connection a server closes; issue 11.)
        closed: bool = _IOV_MARKED_CLOSED(sock)
        if closed:
            return True
        fd: int = _IOV_DESCRIPTOR(sock)
        return fd < 0
    return bool(getattr(sock, "_closed", False)) or sock.fileno() < 0


def descriptor(sock: socket.socket) -> int:
    """``sock.fileno()``; compiled, for a plain ``socket.socket``, read from the object in C (see
    ``_load_iovsend``, which checked that it answers as ``fileno()``): a method call less, ~170
    instructions, each of the three times a transport asks (issue 11, workload HC)."""
    if _IOV_DESCRIPTOR is not None and type(sock) is _PLAIN_SOCKET:
        fd: int = _IOV_DESCRIPTOR(sock)
        return fd
    return sock.fileno()


_PLAIN_SOCKET: Final = socket.socket
# socket.socket's two halves: the C type's constructor and initializer (what the class's
# interpreted __init__ calls), and the C close (what its interpreted close() ends in).
_SOCKET_NEW: Final[Any] = _socket.socket.__new__
_SOCKET_INIT: Final[Any] = _socket.socket.__init__
_SOCKET_CLOSE: Final[Any] = _socket.socket.close


def accepted_socket(family: int, kind: int, proto: int, fd: int) -> socket.socket:
    """``socket.socket(family, kind, proto, fileno=fd)`` for a descriptor just accepted.

    The same object, made without the class's interpreted ``__init__`` (a Python frame called
    with a keyword: ~3,000 instructions of every new connection of a server, issue 11 workload
    HC): the C initializer, then the two attributes that ``__init__`` sets after it (the same
    on Python 3.11 to 3.13). Raises what the constructor raises (OSError for a descriptor that
    is no socket); the caller closes ``fd`` then. ``kind | SOCK_NONBLOCK``, for a descriptor
    that is non-blocking already, gives the object timeout 0 without an ioctl, as
    ``socket.socket`` does (its ``type`` is ``kind`` without the flag either way).
    """
    sock: socket.socket = _SOCKET_NEW(_PLAIN_SOCKET)
    _SOCKET_INIT(sock, family, kind, proto, fd)
    _set_slots(sock, 0, False)
    return sock


def _set_slots(sock: socket.socket, io_refs: int | None, closed: bool | None) -> None:
    """``sock._io_refs = io_refs`` and ``sock._closed = closed``, each unless None (socket.py's
    own slots, not in typeshed); compiled, written in C (see io_refs_add)."""
    if _IOV_SET_SLOTS is not None:
        _IOV_SET_SLOTS(sock, io_refs, closed)
        return
    if io_refs is not None:
        setattr(sock, "_io_refs", io_refs)  # noqa: B010
    if closed is not None:
        setattr(sock, "_closed", closed)  # noqa: B010


def io_refs_add(sock: socket.socket, delta: int, default: int) -> int:
    """``sock._io_refs = getattr(sock, "_io_refs", default) + delta`` and the new value (with a
    ``delta`` of 0, only read). The count a ``close()`` waits for (``makefile()`` objects; a
    transport's hold while the ErrorWatch has the descriptor). Compiled, the slot is read and
    written in C (~1,000 instructions of every connection a server accepts, issue 11)."""
    if _IOV_IO_REFS_ADD is not None:
        count: int = _IOV_IO_REFS_ADD(sock, delta, default)
        return count
    count = getattr(sock, "_io_refs", default) + delta
    if delta:
        setattr(sock, "_io_refs", count)  # noqa: B010
    return count


def close_socket(sock: socket.socket) -> None:
    """``sock.close()``; for a plain ``socket.socket`` with no ``makefile()`` object open, its
    two interpreted steps done here (``_closed`` set, then the C close: ~1,500 instructions
    of every connection a transport closes, issue 11 workload HC). Anything else (a subclass,
    open ``makefile()`` objects, which keep the descriptor until they close) gets its own
    ``close()``."""
    if type(sock) is _PLAIN_SOCKET and io_refs_add(sock, 0, 1) == 0:
        _set_slots(sock, None, True)
        _SOCKET_CLOSE(sock)
    else:
        sock.close()


def check_socket(sock: object) -> socket.socket:
    """The socket itself, or WSAENOTSOCK for a closed socket or something that is not one."""
    if not isinstance(sock, _PLAIN_SOCKET):  # (socket.socket, without its two lookups compiled)
        raise WSAError(WSAErrorCode.WSAENOTSOCK, detail=f"{type(sock).__name__} is not a socket")
    if is_closed(sock):
        raise WSAError(WSAErrorCode.WSAENOTSOCK, errno=errno.EBADF, detail="the socket is closed")
    if type(sock) is _PLAIN_SOCKET:
        return sock  # (not an SSLSocket: skip the look below, twice for each new connection)
    ssl = sys.modules.get("ssl")  # only if someone imported it: never import ssl for this check
    if ssl is not None and isinstance(sock, ssl.SSLSocket):
        # Raw bytes would corrupt its TLS stream, and SSLSocket.sendmsg raises NotImplementedError.
        raise WSAError(WSAErrorCode.WSAEOPNOTSUPP, detail="an ssl.SSLSocket: send through TLS, not WSASend")
    return sock


def max_message_size(sock: socket.socket) -> int:
    """The largest message one send may carry: Winsock's ``SO_MAX_MSG_SIZE`` (SPEC S1, S4.3).

    UDP: 65507 over IPv4, 65527 over IPv6, and 65507 on an IPv6 socket connected to an
    IPv4-mapped peer (``::ffff:a.b.c.d``: the kernel sends IPv4 there; the peer is read when
    asked, and an engine reads it once, at its first send). AF_UNIX datagram and seqpacket: what the kernel
    accepts at the socket's current send buffer (``SO_SNDBUF`` - 32 on Linux, and never more
    than the 4263616 bytes one datagram can be allocated with). Raw sockets: 65515 over IPv4
    (65535 with ``IP_HDRINCL``), 65535 otherwise. Stream sockets: a very large int (they have
    no message size).

    Raises:
        WSAError: WSAENOTSOCK for a closed socket or a non-socket.
    """
    check_socket(sock)
    if not is_message_socket(sock):
        return _STREAM_MAX
    if sock.type == socket.SOCK_RAW:
        if sock.family == socket.AF_INET and not sock.getsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL):
            return _RAW_MAX - _IPV4_HEADER
        return _RAW_MAX
    if sock.family == socket.AF_INET:
        return _UDP4_MAX
    if sock.family == socket.AF_INET6:
        try:
            peer = sock.getpeername()
        except OSError:  # not connected: each datagram's own destination decides
            return _UDP6_MAX
        return message_limit_to(sock, peer)
    sndbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
    return max(min(sndbuf - _UNIX_DGRAM_OVERHEAD, _UNIX_DGRAM_ALLOC_MAX), 0)


def message_limit_to(sock: socket.socket, address: Any) -> int:
    """The largest message ``sock`` can send to ``address`` (a checked destination, S8.7).

    An IPv6 socket sends to an IPv4-mapped address as IPv4, with IPv4's limit: 65527 passed
    our check and the kernel refused it (EMSGSIZE) at the ``sendmsg``, for a queued send as a
    completion error instead of WSAEMSGSIZE from the call (S5.2). Any other family's limit
    does not depend on the destination: :func:`max_message_size`.
    """
    if sock.family != socket.AF_INET6 or sock.type == socket.SOCK_RAW:
        return _UDP4_MAX if sock.family == socket.AF_INET and sock.type != socket.SOCK_RAW else max_message_size(sock)
    try:
        packed = socket.inet_pton(socket.AF_INET6, str(address[0]).partition("%")[0])
    except (OSError, ValueError, IndexError, TypeError):
        return _UDP6_MAX
    return _UDP4_MAX if packed[:12] == _V4_MAPPED_PREFIX else _UDP6_MAX


def translate_flags(flags: object, sock: socket.socket, *, cork: bool = False) -> tuple[int, bool]:
    """Winsock ``dwFlags`` -> ``(Linux sendmsg flags, is a MSG_PARTIAL piece)`` (SPEC S4.1, S4.4).

    Args:
        cork: the transport option ``partial_messages="cork"``: on a stream socket MSG_PARTIAL
            is a piece the engine holds until a send without it, instead of WSAEOPNOTSUPP.
            (Not Linux's MSG_MORE, a hint that holds nothing: AF_UNIX streams ignore it, TCP
            sends the piece alone after about 200 ms, and a zero-byte send cannot end it.)

    Raises:
        WSAError: WSAEINVAL when ``flags`` is not an int; WSAEOPNOTSUPP for an unknown bit,
            MSG_OOB on a message socket, or MSG_PARTIAL on a stream socket without ``cork``.
    """
    if not isinstance(flags, int) or isinstance(flags, bool):
        raise WSAError(
            WSAErrorCode.WSAEINVAL, reason=f"flags must be an int, not {type(flags).__name__!r}", type_error=True
        )
    if flags & ~_KNOWN_FLAGS or flags < 0:
        raise WSAError(WSAErrorCode.WSAEOPNOTSUPP, detail=f"unsupported flag bits {flags & ~_KNOWN_FLAGS:#x}")
    message = is_message_socket(sock)
    out = 0
    if flags & MSG_OOB:
        if message:
            raise WSAError(WSAErrorCode.WSAEOPNOTSUPP, detail="MSG_OOB needs a stream socket")
        out |= LINUX_OOB
    if flags & MSG_DONTROUTE:
        out |= _LINUX_DONTROUTE
    more = False
    if flags & MSG_PARTIAL:
        if message or cork:
            more = True
        else:
            raise WSAError(
                WSAErrorCode.WSAEOPNOTSUPP,
                detail="MSG_PARTIAL on a stream socket (use a transport with partial_messages='cork')",
            )
    return out, more


def mark_shutdown(sock: socket.socket) -> None:
    """Remember that this package shut the socket's sending direction down (S3.3)."""
    _SHUT_WR.add(sock)


def is_marked_shutdown(sock: socket.socket) -> bool:
    """True when :func:`mark_shutdown` was called for this socket."""
    return sock in _SHUT_WR


# struct tcp_info (include/uapi/linux/tcp.h): tcpi_state is byte 0, tcpi_segs_out the u32 at 136,
# tcpi_segs_in the u32 at 140.
_TCPI_SEGS_OUT = 136
_TCPI_SEGS_IN = 140


def tcp_state(sock: socket.socket) -> tuple[int, int] | None:
    """``(tcpi_state, segments sent + received)``, or None where TCP_INFO cannot be read.

    A socket that never had a peer has exchanged no segment at all; an accepted socket that was
    reset before it sent anything has sent none but received at least the reset.
    """
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCPI_SEGS_IN + 4)
    except OSError:
        return None
    if len(info) < _TCPI_SEGS_IN + 4:
        return info[0], 1
    segs_out = int.from_bytes(info[_TCPI_SEGS_OUT : _TCPI_SEGS_OUT + 4], "little")
    segs_in = int.from_bytes(info[_TCPI_SEGS_IN : _TCPI_SEGS_IN + 4], "little")
    return info[0], segs_out + segs_in


def mark_connected(sock: socket.socket) -> None:
    """Remember that ``sock`` had a peer (issue 13 item 6): a later EPIPE is a reset."""
    _CONNECTED.add(weakref.ref(sock, _FORGET_CONNECTED))


def is_known_connected(sock: socket.socket) -> bool:
    """True once ``sock`` was seen with a peer (:func:`mark_connected`; ``SocketInfo`` marks a
    socket that is not TCP, see there)."""
    return weakref.ref(sock) in _CONNECTED


def connect_in_progress(sock: socket.socket) -> bool:
    """True for a TCP socket whose nonblocking connect has not completed (SYN_SENT).

    Windows fails a send on such a socket WSAENOTCONN, where Linux says EAGAIN (issue 13
    item 5). One getsockopt: call it only after a send took nothing with EAGAIN.
    """
    if sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    tcp = tcp_state(sock)
    if tcp is None:
        return False
    if tcp[0] == _TCP_SYN_SENT:
        return True
    if tcp[0] in _TCP_CONNECTED_STATES:
        mark_connected(sock)  # past the handshake: no need to look again
    return False


class SocketInfo:
    """What the error classifier needs to know about a socket, read once per engine."""

    __slots__ = ("family", "is_tcp", "type", "was_connected")

    def __init__(self, sock: socket.socket, peer: bool = False) -> None:
        """``peer``: the caller has just seen the socket connected (its ``getpeername`` worked)."""
        self.family = family = sock_family(sock)
        self.type = kind = sock_type(sock)
        self.is_tcp = kind == STREAM and family in (INET, INET6)
        if not peer:
            try:
                sock.getpeername()
            except OSError:
                self.was_connected = is_known_connected(sock)
                return
        self.was_connected = True
        if not self.is_tcp:
            # (A TCP socket needs no mark: a later classify without this info reads TCP_INFO,
            # whose segment counts are never 0 for a socket that had a peer, see tcp_state.
            # Marking cost ~800 instructions of every connection a server accepts, issue 11.)
            mark_connected(sock)


def classify(sock: socket.socket, exc: OSError, info: SocketInfo | None = None) -> WSAErrorCode:
    """The Winsock code for an error ``sendmsg`` raised on ``sock`` (SPEC S3.3).

    EPIPE is the hard one: Linux says it after a local shutdown, after a reset, and on a TCP
    socket that was never connected. We say WSAESHUTDOWN when this package shut the socket down
    or TCP_INFO shows a local FIN (FIN_WAIT1/2, TIME_WAIT, LAST_ACK, CLOSING), WSAENOTCONN when
    the socket never had a peer (TCP: it never sent a segment), and WSAECONNRESET otherwise. A shutdown made behind the
    package's back on a non-TCP socket therefore reads as WSAECONNRESET (documented in README).
    """
    err = exc.errno
    if err == errno.ECONNRESET:
        mark_connected(sock)  # a reset needs a peer: a later EPIPE is a reset too (item 6)
    elif err == errno.EPIPE:
        if sock in _SHUT_WR:
            return WSAErrorCode.WSAESHUTDOWN
        if info is None:
            info = SocketInfo(sock)
        if info.is_tcp:
            tcp = tcp_state(sock)
            if tcp is not None and tcp[0] in _TCP_LOCAL_SHUTDOWN:
                return WSAErrorCode.WSAESHUTDOWN
            # A TCP socket that never exchanged a segment never had a peer: "not connected". One
            # that did and now sits in CLOSE was reset (getpeername fails after a reset too),
            # and so was one we saw connected (SocketInfo, an earlier ECONNRESET; item 6).
            if not info.was_connected and not is_known_connected(sock) and (tcp is None or tcp[1] == 0):
                return WSAErrorCode.WSAENOTCONN
        elif not info.was_connected and not is_known_connected(sock):
            return WSAErrorCode.WSAENOTCONN
        return WSAErrorCode.WSAECONNRESET
    if err == errno.EBADF and is_closed(sock):
        return WSAErrorCode.WSAENOTSOCK
    return errno_to_wsa(err)


def check_connected(sock: socket.socket) -> None:
    """S2.4, S5.2: WSAENOTCONN for a listening or unconnected socket (WSAENOTSOCK if closed).

    Only sends that make no system call of their own need it (a zero-byte stream send, a
    datagram with nowhere to go queued behind others), so the ``getpeername`` syscall stays
    off the hot path.
    """
    try:
        sock.getpeername()
    except OSError as exc:
        if exc.errno == errno.ENOTCONN:
            raise WSAError(WSAErrorCode.WSAENOTCONN, errno=exc.errno, detail="the socket is not connected") from exc
        if exc.errno == errno.EBADF:
            raise WSAError(WSAErrorCode.WSAENOTSOCK, errno=exc.errno, detail="the socket is closed") from exc
        raise WSAError(WSAErrorCode.WSAENOTCONN, errno=exc.errno, detail=str(exc)) from exc


_ZERO_BYTE_CHECK: Final = "a zero-byte send checks the socket's state (S2.4)"


def check_stream_state(sock: socket.socket) -> None:
    """S2.4: what a zero-byte stream send checks, "as for any send", without sending.

    A send fails on a socket that is not connected (WSAENOTCONN), was reset (WSAECONNRESET) or
    was shut down for sending (WSAESHUTDOWN). A zero-byte send makes no system call that could
    meet them (no ``sendmsg`` on a socket it may not own, S5.11): :func:`check_connected`'s
    ``getpeername``, TCP_INFO's state, a zero-timeout ``poll`` (AF_UNIX) and our record of
    shutdowns tell instead. Before, only ``getpeername`` was asked: after a local
    ``shutdown(SHUT_WR)`` the send completed, after a reset it was WSAENOTCONN (adversarial
    pass, build differential). An AF_UNIX socket shut down for sending behind the package's
    back cannot be told apart (README).
    """
    is_tcp = SocketInfo(sock).is_tcp
    try:
        check_connected(sock)
    except WSAError as exc:
        tcp = tcp_state(sock) if is_tcp and exc.errno == errno.ENOTCONN else None
        if tcp is not None and tcp[0] == _TCP_CLOSE and tcp[1]:
            # (getpeername fails after a reset too: a TCP socket in CLOSE that exchanged
            # segments was reset, as a send's first error says. One still connecting, in
            # SYN_SENT, is not connected: a send there would wait, EAGAIN.)
            raise WSAError(WSAErrorCode.WSAECONNRESET, errno=errno.ECONNRESET, detail=_ZERO_BYTE_CHECK) from exc
        raise
    if sock in _SHUT_WR:
        raise WSAError(WSAErrorCode.WSAESHUTDOWN, errno=errno.EPIPE, detail="sends on this socket were shut down")
    if is_tcp:
        tcp = tcp_state(sock)
        if tcp is not None and tcp[0] in _TCP_LOCAL_SHUTDOWN:
            raise WSAError(WSAErrorCode.WSAESHUTDOWN, errno=errno.EPIPE, detail="sends on this socket were shut down")
    elif sock.family == socket.AF_UNIX:
        # An AF_UNIX stream whose peer is gone (or shut both ways) still has a peer name; poll
        # says POLLHUP, and a send would fail EPIPE: WSAECONNRESET, as a send's EPIPE there.
        poller = select.poll()
        poller.register(sock, select.POLLOUT)
        if any(events & select.POLLHUP for _, events in poller.poll(0)):
            raise WSAError(WSAErrorCode.WSAECONNRESET, errno=errno.EPIPE, detail=_ZERO_BYTE_CHECK)


def error_for(sock: socket.socket, exc: OSError, bytes_sent: int, info: SocketInfo | None = None) -> WSAError:
    """A :class:`WSAError` for ``exc``, classified for ``sock``, chained to it."""
    err = WSAError(classify(sock, exc, info), errno=exc.errno, bytes_sent=bytes_sent)
    err.__cause__ = exc
    return err
