"""Making connections: ``create_connection`` and its kin, over :class:`WSATransport` (S7.1).

Plain Python in every build (SPEC S10): these are coroutines, and a mypyc-compiled coroutine
throws into what it awaits with the three-argument ``throw()``, deprecated from Python 3.12 on
(a DeprecationWarning at every cancellation). They run once per connection, so compiling them
would gain nothing; :mod:`wsasend._transport`, the per-send and per-read code, is compiled.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import os
import socket
import ssl as ssl_module
from asyncio import sslproto, staggered
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, overload

from ._sockutil import check_socket
from ._transport import STREAM_LIMIT, PartialMessages, SSLArg, WSATransport

__all__ = [
    "check_not_ssl_socket",
    "check_stream_for_tls",
    "check_tls_arguments",
    "connect_accepted_socket",
    "create_connection",
    "create_unix_connection",
    "discard_tls",
    "make_transport",
    "open_connection",
    "tls_protocol",
]

#: The protocol type a connection function returns, as in typeshed's loop methods: the
#: factory's own return type, so ``proto.attr`` type-checks (issue 12, section 5).
_P = TypeVar("_P", bound=asyncio.BaseProtocol)


_SOCKET_KINDS = (socket.SOCK_STREAM, socket.SOCK_DGRAM, socket.SOCK_SEQPACKET)


def check_tls_arguments(
    ssl: object,
    *,
    server_hostname: object = None,
    ssl_handshake_timeout: object = None,
    ssl_shutdown_timeout: object = None,
) -> None:
    """asyncio's checks of the TLS keywords (``base_events``), with its messages (S9.2)."""
    if ssl is not None and not isinstance(ssl, (bool, ssl_module.SSLContext)):
        raise TypeError(f"ssl argument must be an SSLContext or None, got {ssl!r}")
    if server_hostname is not None and not ssl:
        raise ValueError("server_hostname is only meaningful with ssl")
    if ssl_handshake_timeout is not None and not ssl:
        raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
    if ssl_shutdown_timeout is not None and not ssl:
        raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")


def check_not_ssl_socket(sock: object) -> None:
    """asyncio's ``_check_ssl_socket``: an ``ssl.SSLSocket`` cannot carry a transport."""
    if isinstance(sock, ssl_module.SSLSocket):
        raise TypeError("Socket cannot be of type SSLSocket")


def check_stream_for_tls(sock: socket.socket) -> None:
    """TLS needs a byte stream: refuse a message socket with asyncio's error (S9.2).

    asyncio takes only SOCK_STREAM sockets where ``ssl=`` can be given. A record split over
    datagrams or seqpackets would be cut at message bounds, and a write whose records outgrow one
    message would end the connection with WSAEMSGSIZE, so we refuse the socket up front too.
    """
    if sock.type != socket.SOCK_STREAM:
        raise ValueError(f"A Stream Socket was expected, got {sock!r}")


def tls_protocol(
    loop: asyncio.AbstractEventLoop,
    app_protocol: asyncio.BaseProtocol,
    ssl: ssl_module.SSLContext | bool,
    waiter: asyncio.Future[None],
    *,
    server_side: bool,
    server_hostname: str | None,
    ssl_handshake_timeout: Any,
    ssl_shutdown_timeout: Any,
    call_connection_made: bool = True,
) -> sslproto.SSLProtocol:
    """asyncio's TLS record layer, as a protocol to sit on a :class:`WSATransport` (S9.2).

    ``asyncio.sslproto.SSLProtocol`` works over any transport: it writes ciphertext with the
    transport's ``write()``, so TLS records go through the engine in order, and a write of the
    app transport has gone once its records were consumed. ``ssl=True`` is a default context.
    """
    context = None if isinstance(ssl, bool) else ssl
    return sslproto.SSLProtocol(
        loop,
        app_protocol,
        context,  # type: ignore[arg-type]  # None makes a default context, as asyncio does
        waiter,
        server_side,
        server_hostname,
        call_connection_made=call_connection_made,
        # (Any: asyncio checks the time-outs, with its errors, in both builds; S10.)
        ssl_handshake_timeout=ssl_handshake_timeout,
        ssl_shutdown_timeout=ssl_shutdown_timeout,
    )


def discard_tls(tls: sslproto.SSLProtocol) -> None:
    """End a TLS layer whose WSATransport could not be made, before it saw any connection.

    ``connection_lost(None)`` is how asyncio's TLS layer learns that its connection is gone: it
    marks the app transport it already made as closed (else that warns "unclosed transport" when
    collected) and resolves its handshake waiter. Nothing reaches the app protocol, which never
    had ``connection_made``.
    """
    tls.connection_lost(None)


async def make_transport(
    sock: socket.socket,
    protocol_factory: Callable[[], _P],
    *,
    loop: asyncio.AbstractEventLoop,
    max_pending_sends: object = None,
    partial_messages: object = "reject",
    extra: Mapping[str, Any] | None = None,
    close_on_error: bool = False,
    ssl: SSLArg = None,
    server_side: bool = False,
    server_hostname: str | None = None,
    ssl_handshake_timeout: object = None,
    ssl_shutdown_timeout: object = None,
) -> tuple[asyncio.Transport, _P]:
    """Wrap a connected socket; return once ``connection_made`` has run (asyncio's order).

    With ``ssl``, the :class:`WSATransport` carries asyncio's TLS layer and the call returns
    after the handshake, with the TLS app transport (S9.2). ``close_on_error``: the socket is
    ours (we connected it), so close it if no transport could be made; once one exists, the
    transport closes it.
    """
    try:
        protocol = protocol_factory()
        waiter: asyncio.Future[None] = loop.create_future()
        if ssl:
            tls = tls_protocol(
                loop,
                protocol,
                ssl,
                waiter,
                server_side=server_side,
                server_hostname=server_hostname,
                ssl_handshake_timeout=ssl_handshake_timeout,
                ssl_shutdown_timeout=ssl_shutdown_timeout,
            )
            try:
                transport = WSATransport(
                    sock,
                    tls,
                    loop=loop,
                    max_pending_sends=max_pending_sends,
                    partial_messages=partial_messages,
                    extra=extra,
                )
            except BaseException:
                discard_tls(tls)
                raise
            result: asyncio.Transport = tls._app_transport
        else:
            transport = WSATransport(
                sock,
                protocol,
                loop=loop,
                max_pending_sends=max_pending_sends,
                partial_messages=partial_messages,
                extra=extra,
                _waiter=waiter,
            )
            result = transport
    except BaseException:
        if close_on_error:
            sock.close()
        raise
    try:
        await waiter
    except BaseException:
        transport.close()
        raise
    return result, protocol


def _check_kind(sock: object, ssl: object) -> socket.socket:
    check_not_ssl_socket(sock)
    sock = check_socket(sock)
    if ssl:
        check_stream_for_tls(sock)
    if sock.type not in _SOCKET_KINDS:
        raise ValueError(f"a stream, datagram or seqpacket socket was expected, got {sock!r}")
    return sock


@overload
async def connect_accepted_socket(
    protocol_factory: Callable[[], _P],
    sock: socket.socket,
    *,
    ssl: None = None,
    ssl_handshake_timeout: None = None,
    ssl_shutdown_timeout: None = None,
    max_pending_sends: int | None = None,
    partial_messages: PartialMessages = "reject",
) -> tuple[WSATransport, _P]: ...
@overload
async def connect_accepted_socket(
    protocol_factory: Callable[[], _P],
    sock: socket.socket,
    *,
    ssl: SSLArg = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
    max_pending_sends: int | None = None,
    partial_messages: PartialMessages = "reject",
) -> tuple[asyncio.Transport, _P]: ...
async def connect_accepted_socket(
    protocol_factory: Callable[[], _P],
    sock: socket.socket,
    *,
    ssl: SSLArg = None,
    ssl_handshake_timeout: object = None,
    ssl_shutdown_timeout: object = None,
    max_pending_sends: object = None,
    partial_messages: object = "reject",
) -> tuple[asyncio.Transport, _P]:
    """Wrap an already connected socket in a :class:`WSATransport` (SPEC S7.3, S9.2).

    ``loop.connect_accepted_socket`` for this package: a socket from ``accept()``, or any
    connected socket of S5.10 (TCP, AF_UNIX stream, connected UDP, AF_UNIX datagram,
    SOCK_SEQPACKET). The transport takes the socket over. With ``ssl`` (a server-side context),
    asyncio's TLS layer runs on the transport and the TLS app transport is returned after the
    handshake.

    Returns:
        ``(transport, protocol)``, after ``protocol.connection_made(transport)`` ran.

    Raises:
        ValueError: a TLS keyword without ``ssl``, a socket of another type, or ``ssl`` with a
            socket that is not SOCK_STREAM ("A Stream Socket was expected", as asyncio).
        TypeError: an ``ssl.SSLSocket``.
        WSAError: WSAENOTSOCK (closed socket), WSAENOTCONN (no peer).
    """
    # The socket first, as asyncio checks it (a message socket with ssl= is its ValueError).
    sock = _check_kind(sock, ssl)
    check_tls_arguments(ssl, ssl_handshake_timeout=ssl_handshake_timeout, ssl_shutdown_timeout=ssl_shutdown_timeout)
    loop = asyncio.get_running_loop()
    return await make_transport(
        sock,
        protocol_factory,
        loop=loop,
        max_pending_sends=max_pending_sends,
        partial_messages=partial_messages,
        ssl=ssl,
        server_side=True,
        ssl_handshake_timeout=ssl_handshake_timeout,
        ssl_shutdown_timeout=ssl_shutdown_timeout,
    )


async def _connect_sock(
    loop: asyncio.AbstractEventLoop,
    exceptions: list[OSError],
    addr_info: tuple[Any, ...],
    local_addr_infos: list[tuple[Any, ...]] | None,
) -> socket.socket:
    """One connection attempt (asyncio's ``BaseEventLoop._connect_sock``)."""
    family, type_, proto, _, address = addr_info
    sock = None
    try:
        sock = socket.socket(family=family, type=type_, proto=proto)
        sock.setblocking(False)
        if local_addr_infos is not None:
            bind_errors: list[OSError] = []
            for lfamily, _, _, _, laddr in local_addr_infos:
                if lfamily != family:
                    continue
                try:
                    sock.bind(laddr)
                    break
                except OSError as exc:
                    msg = f"error while attempting to bind on address {laddr!r}: {(exc.strerror or '').lower()}"
                    bind_errors.append(OSError(exc.errno, msg))
            else:
                if bind_errors:
                    raise bind_errors.pop()
                raise OSError(f"no matching local address with family={family} found")
        if family == socket.AF_INET6 and len(address) >= 4 and address[3]:
            await _connect_scoped(loop, sock, address)
        else:
            await loop.sock_connect(sock, address)
        return sock
    except OSError as exc:
        exceptions.append(exc)
        if sock is not None:
            sock.close()
        raise
    except BaseException:
        if sock is not None:
            sock.close()
        raise


async def _connect_scoped(loop: asyncio.AbstractEventLoop, sock: socket.socket, address: tuple[Any, ...]) -> None:
    """``loop.sock_connect`` for an IPv6 address with a scope id: uvloop's resolves the address
    again and drops the scope, which is EINVAL for a link-local address."""
    try:
        sock.connect(address)
        return
    except (BlockingIOError, InterruptedError):
        pass
    done: asyncio.Future[None] = loop.create_future()
    fd = sock.fileno()

    def writable() -> None:
        if not done.done():
            done.set_result(None)

    loop.add_writer(fd, writable)
    try:
        await done
    finally:
        loop.remove_writer(fd)
    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err:
        raise OSError(err, f"Connect call failed {address}")


def _interleave(infos: list[tuple[Any, ...]], first_family_count: int) -> list[tuple[Any, ...]]:
    """asyncio's ``_interleave_addrinfos`` (RFC 8305): alternate the address families."""
    by_family: dict[int, list[tuple[Any, ...]]] = {}
    for info in infos:
        by_family.setdefault(info[0], []).append(info)
    lists = list(by_family.values())
    reordered: list[tuple[Any, ...]] = []
    if first_family_count > 1:
        reordered.extend(lists[0][: first_family_count - 1])
        del lists[0][: first_family_count - 1]
    reordered.extend(a for a in itertools.chain.from_iterable(itertools.zip_longest(*lists)) if a is not None)
    return reordered


async def _connect_any(
    loop: asyncio.AbstractEventLoop,
    infos: list[tuple[Any, ...]],
    laddr_infos: list[tuple[Any, ...]] | None,
    happy_eyeballs_delay: float | None,
    all_errors: bool,
) -> socket.socket:
    exceptions: list[OSError] = []
    sock: socket.socket | None = None
    if happy_eyeballs_delay is None:
        for info in infos:
            try:
                sock = await _connect_sock(loop, exceptions, info, laddr_infos)
                break
            except OSError:
                continue
    else:
        attempts = [functools.partial(_connect_sock, loop, exceptions, info, laddr_infos) for info in infos]
        sock, _, _ = await staggered.staggered_race(attempts, happy_eyeballs_delay)
    if sock is not None:
        return sock
    try:
        if all_errors:
            raise ExceptionGroup("create_connection failed", exceptions)
        if len(exceptions) == 1:
            raise exceptions[0]
        model = str(exceptions[0])
        if all(str(exc) == model for exc in exceptions):
            raise exceptions[0]
        raise OSError("Multiple exceptions: {}".format(", ".join(str(exc) for exc in exceptions)))
    finally:
        exceptions = []


async def resolve(
    loop: asyncio.AbstractEventLoop,
    host: str | None,
    port: int | str | None,
    *,
    family: int = 0,
    proto: int = 0,
    flags: int = 0,
) -> list[tuple[Any, ...]]:
    """``loop.getaddrinfo`` for a stream socket, but a scoped IPv6 literal (``"fe80::1%eth0"``)
    is answered by ``socket.getaddrinfo`` at once: uvloop's ``getaddrinfo`` drops its scope id,
    so binding or connecting to a link-local address failed with EINVAL where uvloop's own
    ``create_server``/``create_connection`` work (adversarial pass). A numeric host needs no
    lookup, so nothing blocks (``AI_NUMERICHOST``); anything else goes to the loop."""
    if isinstance(host, str) and "%" in host:
        with contextlib.suppress(socket.gaierror):
            return socket.getaddrinfo(host, port, family, socket.SOCK_STREAM, proto, flags | socket.AI_NUMERICHOST)
    return list(await loop.getaddrinfo(host, port, family=family, type=socket.SOCK_STREAM, proto=proto, flags=flags))


@overload
async def create_connection(
    protocol_factory: Callable[[], _P],
    host: str | None = None,
    port: int | str | None = None,
    *,
    ssl: None = None,
    family: int = 0,
    proto: int = 0,
    flags: int = 0,
    sock: socket.socket | None = None,
    local_addr: tuple[str, int] | None = None,
    server_hostname: None = None,
    ssl_handshake_timeout: None = None,
    ssl_shutdown_timeout: None = None,
    happy_eyeballs_delay: float | None = None,
    interleave: int | None = None,
    all_errors: bool = False,
    max_pending_sends: int | None = None,
    partial_messages: PartialMessages = "reject",
) -> tuple[WSATransport, _P]: ...
@overload
async def create_connection(
    protocol_factory: Callable[[], _P],
    host: str | None = None,
    port: int | str | None = None,
    *,
    ssl: SSLArg = None,
    family: int = 0,
    proto: int = 0,
    flags: int = 0,
    sock: socket.socket | None = None,
    local_addr: tuple[str, int] | None = None,
    server_hostname: str | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
    happy_eyeballs_delay: float | None = None,
    interleave: int | None = None,
    all_errors: bool = False,
    max_pending_sends: int | None = None,
    partial_messages: PartialMessages = "reject",
) -> tuple[asyncio.Transport, _P]: ...
async def create_connection(
    protocol_factory: Callable[[], _P],
    host: Any = None,
    port: Any = None,
    *,
    ssl: SSLArg = None,
    family: int = 0,
    proto: int = 0,
    flags: int = 0,
    sock: socket.socket | None = None,
    local_addr: Any = None,
    server_hostname: str | None = None,
    ssl_handshake_timeout: object = None,
    ssl_shutdown_timeout: object = None,
    happy_eyeballs_delay: float | None = None,
    interleave: int | None = None,
    all_errors: object = False,
    max_pending_sends: object = None,
    partial_messages: object = "reject",
) -> tuple[asyncio.Transport, _P]:
    """Open a TCP connection (or wrap ``sock``) with a :class:`WSATransport` (SPEC S7.3, S9).

    ``loop.create_connection`` for this package, with every argument it takes, with the same
    meaning: ``host``/``port`` resolved with ``loop.getaddrinfo`` and tried in order
    (``happy_eyeballs_delay``/``interleave`` as in asyncio), ``family``/``proto``/``flags``,
    ``local_addr``, ``all_errors``; or ``sock``, a connected socket of any kind of S5.10 (TCP,
    AF_UNIX stream, connected UDP, AF_UNIX datagram, SOCK_SEQPACKET). ``ssl`` (a context, or
    True for a default one), ``server_hostname``, ``ssl_handshake_timeout`` and
    ``ssl_shutdown_timeout`` put asyncio's TLS layer on the transport (S9.2): the first item
    returned is then the TLS app transport, whose ciphertext the WSATransport below sends.
    Plus the transport's options ``max_pending_sends`` and ``partial_messages``. (The
    overloads above carry the types; this signature takes ``object``/``Any`` where a wrong
    value must meet asyncio's or our own error in the compiled build too, S10.)

    Returns:
        ``(transport, protocol)``, after ``protocol.connection_made(transport)`` ran.

    Raises:
        OSError: what ``loop.create_connection`` raises when connecting fails
            (``ConnectionRefusedError``, ``socket.gaierror``...; several different errors make
            one ``OSError``, or an ``ExceptionGroup`` with ``all_errors=True``); an
            ``ssl.SSLError`` when the handshake fails.
        ValueError: both or neither of host/port and ``sock``; a TLS keyword without ``ssl``;
            ``ssl`` without a host name to check; ``ssl`` with a ``sock`` that is not
            SOCK_STREAM ("A Stream Socket was expected", as asyncio).
        WSAError: for a ``sock`` that is closed (WSAENOTSOCK) or not connected (WSAENOTCONN).
    """
    check_tls_arguments(
        ssl,
        server_hostname=server_hostname,
        ssl_handshake_timeout=ssl_handshake_timeout,
        ssl_shutdown_timeout=ssl_shutdown_timeout,
    )
    if server_hostname is None and ssl:
        # asyncio: the host name to check the certificate against defaults to host.
        if not host:
            raise ValueError("You must set server_hostname when using ssl without a host")
        server_hostname = host
    if happy_eyeballs_delay is not None and interleave is None:
        interleave = 1  # RFC 8305, as asyncio
    loop = asyncio.get_running_loop()
    options: dict[str, Any] = {
        "max_pending_sends": max_pending_sends,
        "partial_messages": partial_messages,
        "ssl": ssl,
        "server_hostname": server_hostname,
        "ssl_handshake_timeout": ssl_handshake_timeout,
        "ssl_shutdown_timeout": ssl_shutdown_timeout,
    }
    if host is not None or port is not None:
        if sock is not None:
            raise ValueError("host/port and sock can not be specified at the same time")
        infos = await resolve(loop, host, port, family=family, proto=proto, flags=flags)
        if not infos:
            raise OSError("getaddrinfo() returned empty list")
        laddr_infos = None
        if local_addr is not None:
            laddr_infos = await resolve(loop, *local_addr, family=family, proto=proto, flags=flags)
            if not laddr_infos:
                raise OSError("getaddrinfo() returned empty list")
        ordered = list(infos)
        if interleave:
            ordered = _interleave(ordered, interleave)
        sock = await _connect_any(loop, ordered, laddr_infos, happy_eyeballs_delay, bool(all_errors))
        return await make_transport(sock, protocol_factory, loop=loop, close_on_error=True, **options)
    if sock is None:
        raise ValueError("host and port was not specified and no sock specified")
    return await make_transport(_check_kind(sock, ssl), protocol_factory, loop=loop, **options)


@overload
async def create_unix_connection(
    protocol_factory: Callable[[], _P],
    path: str | bytes | os.PathLike[str] | os.PathLike[bytes] | None = None,
    *,
    ssl: None = None,
    sock: socket.socket | None = None,
    server_hostname: None = None,
    ssl_handshake_timeout: None = None,
    ssl_shutdown_timeout: None = None,
    max_pending_sends: int | None = None,
    partial_messages: PartialMessages = "reject",
) -> tuple[WSATransport, _P]: ...
@overload
async def create_unix_connection(
    protocol_factory: Callable[[], _P],
    path: str | bytes | os.PathLike[str] | os.PathLike[bytes] | None = None,
    *,
    ssl: SSLArg = None,
    sock: socket.socket | None = None,
    server_hostname: str | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
    max_pending_sends: int | None = None,
    partial_messages: PartialMessages = "reject",
) -> tuple[asyncio.Transport, _P]: ...
async def create_unix_connection(
    protocol_factory: Callable[[], _P],
    path: str | bytes | os.PathLike[str] | os.PathLike[bytes] | None = None,
    *,
    ssl: SSLArg = None,
    sock: socket.socket | None = None,
    server_hostname: str | None = None,
    ssl_handshake_timeout: object = None,
    ssl_shutdown_timeout: object = None,
    max_pending_sends: object = None,
    partial_messages: object = "reject",
) -> tuple[asyncio.Transport, _P]:
    """``loop.create_unix_connection`` with a :class:`WSATransport` (S9.1), same arguments and meaning.

    Connects an AF_UNIX stream socket to ``path`` (or wraps ``sock``, a connected one); TLS as
    :func:`create_connection`, except that ``server_hostname`` is required with ``ssl``.
    Without ``ssl`` the transport returned is the :class:`WSATransport` itself (the overloads
    say so); the protocol is the factory's, typed as it returns it (S9.4).

    Raises:
        ValueError: both or neither of ``path`` and ``sock``; a ``sock`` that is not an AF_UNIX
            stream socket; ``ssl`` without ``server_hostname``, or a TLS keyword without ``ssl``.
        OSError: connecting failed (``FileNotFoundError``, ``ConnectionRefusedError``...).
    """
    if ssl and server_hostname is None:
        raise ValueError("you have to pass server_hostname when using ssl")
    check_tls_arguments(
        ssl,
        server_hostname=server_hostname,
        ssl_handshake_timeout=ssl_handshake_timeout,
        ssl_shutdown_timeout=ssl_shutdown_timeout,
    )
    loop = asyncio.get_running_loop()
    close_on_error = False
    if path is not None:
        if sock is not None:
            raise ValueError("path and sock can not be specified at the same time")
        fspath = os.fspath(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, fspath)
        except BaseException:
            sock.close()
            raise
        close_on_error = True
    else:
        if sock is None:
            raise ValueError("no path and sock were specified")
        check_not_ssl_socket(sock)
        if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
            raise ValueError(f"A UNIX Domain Stream Socket was expected, got {sock!r}")
        sock.setblocking(False)
    return await make_transport(
        sock,
        protocol_factory,
        loop=loop,
        max_pending_sends=max_pending_sends,
        partial_messages=partial_messages,
        close_on_error=close_on_error,
        ssl=ssl,
        server_hostname=server_hostname,
        ssl_handshake_timeout=ssl_handshake_timeout,
        ssl_shutdown_timeout=ssl_shutdown_timeout,
    )


async def open_connection(
    host: str | None = None,
    port: int | str | None = None,
    *,
    limit: int = STREAM_LIMIT,
    **kwds: Any,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """``asyncio.open_connection`` over a :class:`WSATransport`: a ``(reader, writer)`` pair.

    ``writer.write`` + ``await writer.drain()`` work unchanged; ``writer.transport`` is the
    :class:`WSATransport` (so ``writer.transport.send(...)`` is there too), or with ``ssl=`` the
    TLS app transport over one. Other keyword arguments go to :func:`create_connection`.
    """
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport, _ = await create_connection(lambda: protocol, host, port, **kwds)
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    return reader, writer
