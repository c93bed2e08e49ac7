"""Winsock error codes, the one exception class, and the errno -> Winsock table (SPEC S3).

Pure: imports nothing from asyncio, socket or selectors.
"""

from __future__ import annotations

import contextlib
import enum
import errno as _errno
from collections.abc import Iterator

__all__ = [
    "ERRNO_TO_WSA",
    "WSAError",
    "WSAErrorCode",
    "errno_to_wsa",
    "translate_oserror",
]


class WSAErrorCode(enum.IntEnum):
    """Winsock error codes, with the numbers Winsock gives them (winerror.h / winsock2.h)."""

    #: The socket handle is not valid (ERROR_INVALID_HANDLE).
    WSA_INVALID_HANDLE = 6
    #: One or more parameters are not valid (ERROR_INVALID_PARAMETER).
    WSA_INVALID_PARAMETER = 87
    #: The overlapped operation was aborted because the socket was closed.
    WSA_OPERATION_ABORTED = 995
    #: The overlapped operation has not completed yet.
    WSA_IO_INCOMPLETE = 996
    #: The overlapped operation was started and will complete later.
    WSA_IO_PENDING = 997
    #: A blocking call was interrupted (here: the socket was closed under it).
    WSAEINTR = 10004
    #: The handle is not valid.
    WSAEBADF = 10009
    #: Broadcast address without SO_BROADCAST.
    WSAEACCES = 10013
    #: A buffer (or out-parameter) is not usable memory.
    WSAEFAULT = 10014
    #: Invalid argument, or socket not made with WSA_FLAG_OVERLAPPED.
    WSAEINVAL = 10022
    #: Nonblocking socket with nothing consumed, or too many outstanding overlapped sends.
    WSAEWOULDBLOCK = 10035
    #: A blocking call is already in progress on the socket.
    WSAEINPROGRESS = 10036
    #: The descriptor is not a socket.
    WSAENOTSOCK = 10038
    #: The message is larger than the transport's maximum.
    WSAEMSGSIZE = 10040
    #: The flag or operation is not supported on this socket.
    WSAEOPNOTSUPP = 10045
    #: The address is of a family the socket cannot use (a per-send destination, S8.7).
    WSAEAFNOSUPPORT = 10047
    #: The destination is not a valid remote address: the unspecified address (0.0.0.0, ::), S8.7.
    WSAEADDRNOTAVAIL = 10049
    #: The network subsystem has failed.
    WSAENETDOWN = 10050
    #: The network cannot be reached.
    WSAENETUNREACH = 10051
    #: Keep-alive found the connection broken while the operation was in progress.
    WSAENETRESET = 10052
    #: The connection was aborted by the local stack (time-out or other failure).
    WSAECONNABORTED = 10053
    #: The peer reset the connection.
    WSAECONNRESET = 10054
    #: No buffer space is available.
    WSAENOBUFS = 10055
    #: The socket is already connected.
    WSAEISCONN = 10056
    #: The socket is not connected.
    WSAENOTCONN = 10057
    #: The sending direction has been shut down.
    WSAESHUTDOWN = 10058
    #: The operation timed out.
    WSAETIMEDOUT = 10060
    #: The peer refused the connection.
    WSAECONNREFUSED = 10061
    #: The host cannot be reached.
    WSAEHOSTUNREACH = 10065
    #: WSAStartup has not been called (or the last WSACleanup has).
    WSANOTINITIALISED = 10093


# The seed's wording, word for word, for the codes its table lists; our own words for the rest.
_DESCRIPTIONS: dict[WSAErrorCode, str] = {
    WSAErrorCode.WSANOTINITIALISED: "A successful WSAStartup call must occur before using this function.",
    WSAErrorCode.WSAENETDOWN: "The network subsystem has failed.",
    WSAErrorCode.WSAEACCES: "The requested address is a broadcast address, but the appropriate flag was not set.",
    WSAErrorCode.WSAEINTR: "The socket was closed.",
    WSAErrorCode.WSAEINPROGRESS: (
        "A blocking Winsock call is in progress, or the service provider is still processing a callback function."
    ),
    WSAErrorCode.WSAEFAULT: (
        "The lpBuffers, lpNumberOfBytesSent, lpOverlapped, or lpCompletionRoutine argument is not totally "
        "contained in a valid part of the user address space."
    ),
    WSAErrorCode.WSAENETRESET: (
        "The connection has been broken due to keep-alive activity detecting a failure while the operation "
        "was in progress."
    ),
    WSAErrorCode.WSAENOBUFS: "The Windows Sockets provider reports a buffer deadlock.",
    WSAErrorCode.WSAENOTCONN: "The socket is not connected.",
    WSAErrorCode.WSAENOTSOCK: "The descriptor is not a socket.",
    WSAErrorCode.WSAEOPNOTSUPP: (
        "MSG_OOB was specified, but the socket is not stream style such as type SOCK_STREAM, out of band (OOB) "
        "data is not supported in the communication domain associated with this socket, MSG_PARTIAL is not "
        "supported, or the socket is unidirectional and supports only receive operations."
    ),
    WSAErrorCode.WSAESHUTDOWN: (
        "The socket has been shut down. It is not possible to call WSASend on a socket after shutdown has been "
        "invoked with how set to SD_SEND or SD_BOTH."
    ),
    WSAErrorCode.WSAEWOULDBLOCK: (
        "For overlapped sockets, there are too many outstanding overlapped I/O requests. For nonoverlapped "
        "sockets, the socket is marked as nonblocking and the send operation cannot be completed immediately."
    ),
    WSAErrorCode.WSAEMSGSIZE: (
        "The socket is message-oriented, and the message is larger than the maximum supported by the "
        "underlying transport."
    ),
    WSAErrorCode.WSAEINVAL: (
        "The socket has not been bound with bind (Windows Sockets) or the socket is not created with the "
        "overlapped flag."
    ),
    WSAErrorCode.WSAECONNABORTED: "The virtual circuit was terminated due to a time-out or other failure.",
    WSAErrorCode.WSAECONNRESET: "The virtual circuit was reset by the remote side.",
    WSAErrorCode.WSA_IO_PENDING: (
        "An overlapped operation was successfully initiated and completion will be indicated at a later time."
    ),
    WSAErrorCode.WSA_OPERATION_ABORTED: "The overlapped operation has been canceled due to the closure of the socket.",
    WSAErrorCode.WSA_IO_INCOMPLETE: "The overlapped I/O event object is not in a signaled state.",
    WSAErrorCode.WSA_INVALID_PARAMETER: "One or more parameters are invalid.",
    WSAErrorCode.WSA_INVALID_HANDLE: "The specified event object handle is invalid.",
    WSAErrorCode.WSAEBADF: "The file handle supplied is not valid.",
    WSAErrorCode.WSAEISCONN: "The socket is already connected.",
    WSAErrorCode.WSAEAFNOSUPPORT: "Addresses in the specified family cannot be used with this socket.",
    WSAErrorCode.WSAEADDRNOTAVAIL: "The requested address is not valid in its context.",
    WSAErrorCode.WSAETIMEDOUT: "The operation timed out.",
    WSAErrorCode.WSAEHOSTUNREACH: "A socket operation was attempted to an unreachable host.",
    WSAErrorCode.WSAENETUNREACH: "A socket operation was attempted to an unreachable network.",
    WSAErrorCode.WSAECONNREFUSED: "The connection was refused by the target machine.",
}

#: errno -> Winsock, after Wine's direct table in dlls/ws2_32 (SPEC S3.3). EINTR is absent on
#: purpose: Python retries it (PEP 475) and so do we; it never surfaces as a WSAError.
ERRNO_TO_WSA: dict[int, WSAErrorCode] = {
    _errno.EPIPE: WSAErrorCode.WSAECONNRESET,
    _errno.ECONNRESET: WSAErrorCode.WSAECONNRESET,
    _errno.EBADF: WSAErrorCode.WSAENOTSOCK,
    _errno.ENOTSOCK: WSAErrorCode.WSAENOTSOCK,
    _errno.EDESTADDRREQ: WSAErrorCode.WSAENOTCONN,
    _errno.ENOTCONN: WSAErrorCode.WSAENOTCONN,
    _errno.EMSGSIZE: WSAErrorCode.WSAEMSGSIZE,
    _errno.ENOBUFS: WSAErrorCode.WSAENOBUFS,
    _errno.ENOMEM: WSAErrorCode.WSAENOBUFS,
    _errno.ENETRESET: WSAErrorCode.WSAENETRESET,
    _errno.ENETDOWN: WSAErrorCode.WSAENETDOWN,
    _errno.ENETUNREACH: WSAErrorCode.WSAENETUNREACH,
    _errno.EHOSTUNREACH: WSAErrorCode.WSAEHOSTUNREACH,
    _errno.ECONNABORTED: WSAErrorCode.WSAECONNABORTED,
    _errno.ECONNREFUSED: WSAErrorCode.WSAECONNREFUSED,
    _errno.ETIMEDOUT: WSAErrorCode.WSAETIMEDOUT,
    _errno.EACCES: WSAErrorCode.WSAEACCES,
    _errno.EPERM: WSAErrorCode.WSAEACCES,
    _errno.EOPNOTSUPP: WSAErrorCode.WSAEOPNOTSUPP,
    _errno.EAGAIN: WSAErrorCode.WSAEWOULDBLOCK,
    _errno.EINPROGRESS: WSAErrorCode.WSAEINPROGRESS,
    _errno.EALREADY: WSAErrorCode.WSAEINPROGRESS,
    _errno.EISCONN: WSAErrorCode.WSAEISCONN,
    _errno.EAFNOSUPPORT: WSAErrorCode.WSAEAFNOSUPPORT,
    _errno.EFAULT: WSAErrorCode.WSAEFAULT,
    _errno.EINVAL: WSAErrorCode.WSAEINVAL,
    _errno.ESHUTDOWN: WSAErrorCode.WSAESHUTDOWN,
}


def errno_to_wsa(err: int | None) -> WSAErrorCode:
    """Map a POSIX errno to its Winsock code (SPEC S3.3).

    Unknown errnos map to WSAEINVAL: the caller still gets a ``WSAError`` whose ``.errno`` keeps
    the original number, so nothing is lost.
    """
    if err is None:
        return WSAErrorCode.WSAEINVAL
    return ERRNO_TO_WSA.get(err, WSAErrorCode.WSAEINVAL)


class WSAError(OSError):
    """The one exception of this package (SPEC S3.2).

    A subclass of :class:`OSError`, so ``except OSError`` keeps working. Branch on ``.winerror``.
    Each instance is also an instance of the builtin exception that asyncio code already
    catches for its cause, so ``except ConnectionResetError`` catches a WSAECONNRESET:

    ========================================= =========================
    ``.winerror``                             also an instance of
    ========================================= =========================
    WSAECONNRESET                             ConnectionResetError (with errno EPIPE, also
                                              BrokenPipeError, as asyncio raises there)
    WSAECONNABORTED, WSA_OPERATION_ABORTED    ConnectionAbortedError
    WSAESHUTDOWN                              BrokenPipeError
    WSAETIMEDOUT                              TimeoutError
    WSAEWOULDBLOCK                            BlockingIOError
    WSAEINTR                                  InterruptedError
    WSAECONNREFUSED                           ConnectionRefusedError
    WSAEFAULT/WSAEINVAL with ``type_error``   TypeError
    ========================================= =========================

    ``WSAError(code, ...)`` picks the subclass itself (one small private class per row, each a
    subclass of ``WSAError`` and of the builtin), so ``type(err) is WSAError`` holds only for the
    other codes: test with ``isinstance(err, WSAError)``.

    Args:
        code: the :class:`WSAErrorCode` (an int with a Winsock number is accepted).
        errno: the POSIX errno behind it, if the kernel gave one.
        bytes_sent: bytes of the failed operation the kernel consumed before the failure.
        detail: more about this occurrence, added after the seed's description in parentheses.
        reason: the real reason, said instead of the seed's description where that does not
            fit (``.description`` still gives the seed's text).
        type_error: the argument had the wrong Python type: the error is also a ``TypeError``.

    Attributes:
        winerror: the :class:`WSAErrorCode`. (On Linux ``OSError`` ignores its own ``winerror``
            argument, so we set it ourselves.)
        errno: the POSIX errno that caused it, or ``None`` when the package decided it without
            the kernel (bad arguments, aborts).
        bytes_sent: how many bytes of the failed operation the kernel had consumed before the
            failure; 0 when none was. This is what Winsock cannot tell you and we can.
    """

    winerror: WSAErrorCode
    bytes_sent: int
    _message: str

    def __new__(
        cls,
        code: WSAErrorCode,
        *,
        errno: int | None = None,
        bytes_sent: int = 0,
        detail: str | None = None,
        reason: str | None = None,
        type_error: bool = False,
    ) -> WSAError:
        code = WSAErrorCode(code)
        if cls is WSAError:
            cls = _WSATypeError if type_error and code in _TYPE_ERROR_CODES else _BUILTIN_CLASSES.get(code, WSAError)
            if cls is _WSAConnectionResetError and errno == _errno.EPIPE:
                cls = _WSAConnectionResetBrokenPipeError  # (see that class)
        message = f"[{code.name} {int(code)}] {reason if reason else _DESCRIPTIONS[code]}"
        if detail:
            message = f"{message} ({detail})"
        # OSError.__new__ sets args/errno/strerror from (errno, message); it maps an errno to a
        # builtin subclass only when called for OSError itself, never for us.
        self = super().__new__(cls, errno, message)
        self.errno = errno
        self.winerror = code
        self.bytes_sent = bytes_sent
        self._message = message
        return self

    def __init__(
        self,
        code: WSAErrorCode,
        *,
        errno: int | None = None,
        bytes_sent: int = 0,
        detail: str | None = None,
        reason: str | None = None,
        type_error: bool = False,
    ) -> None:
        # Everything was set by __new__ (OSError.__init__ does nothing once __new__ is ours).
        pass

    def __str__(self) -> str:
        return self._message

    def __repr__(self) -> str:
        # OSError's repr shows args, whose first item is the errno (often None): show the code.
        parts = [f"WSAErrorCode.{self.winerror.name}"]
        if self.errno is not None:
            parts.append(f"errno={self.errno}")
        if self.bytes_sent:
            parts.append(f"bytes_sent={self.bytes_sent}")
        parts.append(f"message={self._message!r}")
        return f"WSAError({', '.join(parts)})"

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (int(self.winerror), self.errno, self.bytes_sent, self._message, isinstance(self, TypeError)))

    @classmethod
    def from_oserror(cls, exc: OSError, *, bytes_sent: int = 0) -> WSAError:
        """Translate an :class:`OSError` raised by the kernel, chaining it as ``__cause__``."""
        if isinstance(exc, WSAError):
            return exc
        err = cls(errno_to_wsa(exc.errno), errno=exc.errno, bytes_sent=bytes_sent)
        err.__cause__ = exc
        return err

    @property
    def description(self) -> str:
        """The seed's description of the code."""
        return _DESCRIPTIONS[self.winerror]


# One private subclass per builtin class of S3.2, chosen by WSAError.__new__. Each is a WSAError
# first (so ``.winerror`` and the message are ours) and the builtin second (so ``except
# ConnectionResetError`` and asyncio's own checks catch it). Module-level, so they pickle.
class _WSAConnectionResetError(WSAError, ConnectionResetError):
    pass


class _WSAConnectionResetBrokenPipeError(WSAError, ConnectionResetError, BrokenPipeError):
    """A WSAECONNRESET that Linux reported as EPIPE (a send after the peer went away): also
    the BrokenPipeError asyncio's and uvloop's transports raise for it, so code written for
    them (``except BrokenPipeError``) catches it as it catches theirs (adversarial pass)."""


class _WSAConnectionAbortedError(WSAError, ConnectionAbortedError):
    pass


class _WSABrokenPipeError(WSAError, BrokenPipeError):
    pass


class _WSATimeoutError(WSAError, TimeoutError):
    pass


class _WSABlockingIOError(WSAError, BlockingIOError):
    pass


class _WSAInterruptedError(WSAError, InterruptedError):
    pass


class _WSAConnectionRefusedError(WSAError, ConnectionRefusedError):
    pass


class _WSATypeError(WSAError, TypeError):
    pass


class WriteAfterEOFError(WSAError, BrokenPipeError, RuntimeError):
    """WSAESHUTDOWN from a transport's ``write()``/``writelines()`` after ``write_eof()``.
    Internal: also the RuntimeError that asyncio's and uvloop's transports raise there, so a
    protocol callback that does it is reported as the bug it is, as with a stock transport
    (S9.1), and ``except RuntimeError`` written for asyncio catches it."""


#: Winsock code -> the class of S3.2 that is also the builtin asyncio code catches for it.
_BUILTIN_CLASSES: dict[WSAErrorCode, type[WSAError]] = {
    WSAErrorCode.WSAECONNRESET: _WSAConnectionResetError,
    WSAErrorCode.WSAECONNABORTED: _WSAConnectionAbortedError,
    WSAErrorCode.WSA_OPERATION_ABORTED: _WSAConnectionAbortedError,
    WSAErrorCode.WSAESHUTDOWN: _WSABrokenPipeError,
    WSAErrorCode.WSAETIMEDOUT: _WSATimeoutError,
    WSAErrorCode.WSAEWOULDBLOCK: _WSABlockingIOError,
    WSAErrorCode.WSAEINTR: _WSAInterruptedError,
    WSAErrorCode.WSAECONNREFUSED: _WSAConnectionRefusedError,
}
# The codes a wrong-typed argument raises (S2.2 buffers, S4.1 flags): with ``type_error`` they
# are also a TypeError.
_TYPE_ERROR_CODES = frozenset({WSAErrorCode.WSAEFAULT, WSAErrorCode.WSAEINVAL})


def _rebuild(code: int, err: int | None, bytes_sent: int, message: str, type_error: bool = False) -> WSAError:
    exc = WSAError(WSAErrorCode(code), errno=err, bytes_sent=bytes_sent, type_error=type_error)
    exc._message = message
    exc.args = (err, message)
    exc.strerror = message
    return exc


@contextlib.contextmanager
def translate_oserror(*, bytes_sent: int = 0) -> Iterator[None]:
    """Turn any non-WSAError OSError raised inside into a WSAError chained ``from`` it."""
    try:
        yield
    except WSAError:
        raise
    except OSError as exc:
        raise WSAError.from_oserror(exc, bytes_sent=bytes_sent) from exc
