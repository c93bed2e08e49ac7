"""Per-send destinations and control data of message sockets (SPEC S8.7, issue 13).

``WSASendTo``, ``sendto`` and ``WSASendMsg`` may name a destination per datagram on an
unconnected datagram socket, and ``WSASendMsg`` may carry control data (ancillary data). Both
are checked here once, when the send is posted, so that a bad one is refused at the call with
the code Windows gives and nothing is sent (S5.2); the engine then only hands them to
``sendmsg``.

Forms accepted (the ones :meth:`socket.socket.sendmsg` takes, with numeric hosts only: a name
would need a blocking DNS lookup, and Winsock takes a ``sockaddr``, never a name):

- AF_INET: ``(host, port)`` with ``host`` an IPv4 literal.
- AF_INET6: ``(host, port[, flowinfo[, scope_id]])`` with ``host`` an IPv6 literal (an
  optional ``%scope`` suffix allowed).
- AF_UNIX: a path, ``str`` or bytes-like (a leading NUL names an abstract address).
- Control data: a list of ``(level, type, data)`` triples (``data`` bytes-like), Linux's
  values (``socket.SOL_SOCKET, socket.SCM_RIGHTS``, ``socket.IPPROTO_IP, socket.IP_PKTINFO``).

Codes: WSAEFAULT for something that is not an address of that shape (or a ``namelen`` too small
for the family), WSAEAFNOSUPPORT for an address of another family, WSAEADDRNOTAVAIL for the
unspecified address (0.0.0.0, ``::``, ``::ffff:0.0.0.0``: Windows refuses ADDR_ANY as a
destination, where Linux would deliver to this host), WSAEINVAL for control data that is not a
list of triples, WSAEOPNOTSUPP for a destination on a socket family we cannot check.
"""

from __future__ import annotations

import socket
from typing import Any, Final

from ._errors import WSAError, WSAErrorCode

__all__ = ["Destination", "check_address", "check_ancdata", "destination", "min_address_length"]

#: What a queued message keeps of its destination: ``(address or None, ancdata list)``.
Destination = tuple[Any, list[tuple[int, int, Any]]]

# sizeof(SOCKADDR_IN), sizeof(SOCKADDR_IN6) on Windows; an AF_UNIX address needs at least its
# family and one byte of path.
_MIN_LENGTHS: Final[dict[int, int]] = {socket.AF_INET: 16, socket.AF_INET6: 28, socket.AF_UNIX: 3}
_UNIX_PATH_MAX: Final = 108


def min_address_length(family: int) -> int:
    """The smallest ``tolen``/``namelen`` Windows accepts for an address of ``family``."""
    return _MIN_LENGTHS.get(family, 0)


def _packed(family: int, host: str) -> bytes | None:
    """``host`` as ``family``'s packed address (an IPv6 ``%scope`` suffix allowed), or None
    when it is not a numeric address of that family."""
    try:
        return socket.inet_pton(family, host.split("%", 1)[0] if family == socket.AF_INET6 else host)
    except (OSError, ValueError):
        return None


# The unspecified address as a destination, packed: IPv4's 0.0.0.0, IPv6's ``::`` and the
# IPv4-mapped ``::ffff:0.0.0.0`` (Linux sends to this host for each; Windows says WSAEADDRNOTAVAIL).
_UNSPECIFIED: Final = frozenset({bytes(4), bytes(16), bytes(10) + b"\xff\xff" + bytes(4)})


def _port(value: object) -> int:
    if type(value) is not int:  # (S3.2: a wrong Python type is also a TypeError)
        raise WSAError(WSAErrorCode.WSAEFAULT, reason=f"port {value!r} is not an integer", type_error=True)
    if not 0 <= value <= 0xFFFF:
        raise WSAError(WSAErrorCode.WSAEFAULT, detail=f"port {value!r} is not an integer in 0..65535")
    return value


def check_address(sock: socket.socket, address: object) -> object:
    """The destination ``address`` for ``sock`` in the form ``sendmsg`` takes; raises WSAError.

    Raises:
        WSAError: WSAEFAULT (not an address), WSAEAFNOSUPPORT (another family's address),
            WSAEADDRNOTAVAIL (the unspecified address: 0.0.0.0, ``::``), WSAEOPNOTSUPP (a socket
            family other than AF_INET, AF_INET6, AF_UNIX).
    """
    family = sock.family
    if family == socket.AF_UNIX:
        if isinstance(address, str):
            path = address.encode()
        elif isinstance(address, (bytes, bytearray, memoryview)):
            path = bytes(address)
            address = path
        else:
            raise WSAError(
                WSAErrorCode.WSAEFAULT,
                reason=f"an AF_UNIX address is a path, not {type(address).__name__}",
                type_error=True,
            )
        if not path or len(path) > _UNIX_PATH_MAX or "\0" in path[1:].decode("latin-1"):
            raise WSAError(WSAErrorCode.WSAEFAULT, detail=f"{address!r} is not an AF_UNIX path")
        return address
    if family not in (socket.AF_INET, socket.AF_INET6):
        raise WSAError(WSAErrorCode.WSAEOPNOTSUPP, detail=f"per-send destinations on address family {family!r}")
    if not isinstance(address, tuple) or not address or not isinstance(address[0], str):
        # (S3.2: a wrong Python type is also a TypeError; an empty tuple is one too.)
        raise WSAError(
            WSAErrorCode.WSAEFAULT, reason=f"{address!r} is not an address tuple (host, port, ...)", type_error=True
        )
    host = address[0]
    other = socket.AF_INET if family == socket.AF_INET6 else socket.AF_INET6
    packed = _packed(family, host)
    if packed is None:
        if _packed(other, host) is not None:
            raise WSAError(WSAErrorCode.WSAEAFNOSUPPORT, detail=f"{host!r} is not an address of the socket's family")
        raise WSAError(WSAErrorCode.WSAEFAULT, detail=f"{host!r} is not a numeric address")
    if packed in _UNSPECIFIED:
        raise WSAError(WSAErrorCode.WSAEADDRNOTAVAIL, detail=f"{host!r} (the unspecified address) is not a destination")
    if family == socket.AF_INET:
        if len(address) != 2:
            detail = f"{address!r}: an IPv4 address is (host, port)"
            code = WSAErrorCode.WSAEAFNOSUPPORT if len(address) == 4 else WSAErrorCode.WSAEFAULT
            raise WSAError(code, detail=detail)
        return (host, _port(address[1]))
    if not 2 <= len(address) <= 4:
        raise WSAError(WSAErrorCode.WSAEFAULT, detail=f"{address!r}: an IPv6 address is (host, port[, flow, scope])")
    rest = address[2:]
    # flowinfo is 20 bits, scope_id 32 (sockaddr_in6). Out of range, socket.sendmsg raised a raw
    # OverflowError (flowinfo) or truncated the value (scope_id) at the flush, not at the call.
    for value, top in zip(rest, (0xFFFFF, 0xFFFFFFFF), strict=False):  # (rest: 0 to 2 values)
        if type(value) is not int:
            raise WSAError(
                WSAErrorCode.WSAEFAULT, reason=f"{address!r}: flowinfo and scope_id are integers", type_error=True
            )
        if not 0 <= value <= top:
            raise WSAError(
                WSAErrorCode.WSAEFAULT,
                detail=f"{address!r}: flowinfo is 0..{0xFFFFF}, scope_id 0..{0xFFFFFFFF}",
            )
    return (host, _port(address[1]), *rest)


def check_ancdata(ancdata: object) -> list[tuple[int, int, Any]]:
    """Control data as a list of ``(level, type, data)`` triples, captured now; raises WSAError.

    Raises:
        WSAError: WSAEINVAL for anything that is not a list (or tuple) of such triples.
    """
    if not isinstance(ancdata, (list, tuple)):
        raise WSAError(
            WSAErrorCode.WSAEINVAL, detail=f"control data must be a list of (level, type, data), not {ancdata!r}"
        )
    out: list[tuple[int, int, Any]] = []
    for item in ancdata:
        if not isinstance(item, tuple) or len(item) != 3 or type(item[0]) is not int or type(item[1]) is not int:
            raise WSAError(WSAErrorCode.WSAEINVAL, detail=f"control message {item!r} is not (level, type, data)")
        # Any bytes-like data, as socket.sendmsg takes it: array("i", [fd]) for SCM_RIGHTS
        # was refused (adversarial pass). Copied now, a few bytes: a queued send's control data
        # is the caller's as it was at the call (S2.1's no-copy rule is for the payload).
        try:
            data = bytes(memoryview(item[2]))
        except (TypeError, ValueError):
            raise WSAError(
                WSAErrorCode.WSAEINVAL, detail=f"control message {item!r}: its data is not bytes-like"
            ) from None
        out.append((item[0], item[1], data))
    return out


def _same_address(sock: socket.socket, a: object, b: object) -> bool:
    """Whether two addresses of ``sock``'s family name the same socket (host and port, or path)."""
    if sock.family == socket.AF_UNIX:
        return (a.encode() if isinstance(a, str) else a) == (b.encode() if isinstance(b, str) else b)
    if not (isinstance(a, tuple) and isinstance(b, tuple)):
        return False
    try:
        return bool(
            socket.inet_pton(sock.family, str(a[0]).split("%", 1)[0])
            == socket.inet_pton(sock.family, str(b[0]).split("%", 1)[0])
            and a[1] == b[1]
        )
    except (OSError, ValueError):
        return False


# The socket types whose sends may name their destination (connection-oriented ones ignore it).
_ADDRESSED = frozenset({socket.SOCK_DGRAM, socket.SOCK_RAW})


def destination(
    sock: socket.socket, to: object, tolen: object, control: object, *, check_length: bool = True
) -> Destination | None:
    """A send's own destination and control data, checked (S8.7); None when it has neither.

    ``tolen`` is Winsock's address length, checked against the family's ``sockaddr`` size
    unless ``check_length`` is False (the Pythonic ``wsa_send(..., address=)`` has none). A
    connection-oriented socket ignores the destination (Windows' ``sendto`` rule); a connected
    datagram socket takes only its own peer (as an ordinary send).

    Raises:
        WSAError: as :func:`check_address` and :func:`check_ancdata`; WSAEFAULT for a
            ``tolen`` too small; WSAEISCONN for a connected datagram socket and another address.
    """
    ancdata = check_ancdata(control) if control is not None else []
    if to is None or sock.type not in _ADDRESSED:
        # No destination, or a connection-oriented socket: Windows ignores the destination.
        return (None, ancdata) if ancdata else None
    if check_length and (
        not isinstance(tolen, int) or isinstance(tolen, bool) or tolen < min_address_length(sock.family)
    ):
        raise WSAError(WSAErrorCode.WSAEFAULT, detail=f"address length {tolen!r} is too small for the family")
    address = check_address(sock, to)
    try:
        peer: object = sock.getpeername()
    except OSError:
        peer = None  # ENOTCONN: not connected, the destination is the send's own
    if peer is not None:
        # (An AF_UNIX socket connected to an unnamed peer, a socketpair's, says "": connected
        # all the same, to a peer no address names. Read as "not connected", its datagrams went
        # to whatever socket the address named: misdirected (adversarial pass).)
        if peer == "" or peer == b"" or not _same_address(sock, peer, address):
            raise WSAError(WSAErrorCode.WSAEISCONN, detail="the datagram socket is connected to another address")
        return (None, ancdata) if ancdata else None  # the peer: an ordinary send
    return (address, ancdata)
