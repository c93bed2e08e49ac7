"""WSAServer, create_server and start_server: listening sockets that hand out WSATransports (SPEC S7.3).

The accept side mirrors CPython's ``BaseSelectorEventLoop._accept_connection`` and
``base_events.Server`` through the public loop API only: one ``loop.add_reader`` per listening
socket, up to ``backlog`` ``accept()`` calls per wake-up, and a one-second pause (asyncio's
``ACCEPT_RETRY_DELAY``) when the process runs out of descriptors or memory. ``wait_closed``
has the semantics of Python 3.12.1+: it returns once the server is closed AND every connection
it accepted has seen ``connection_lost`` (3.11's returns at once after ``close()``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import os
import socket
import ssl as ssl_module
import stat
from asyncio import trsock
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

from ._connect import check_not_ssl_socket, check_stream_for_tls, discard_tls, resolve, tls_protocol
from ._errorwatch import pin as pin_watch
from ._errorwatch import unpin as unpin_watch
from ._sockutil import IOVSEND_MODULE, accepted_socket, sock_family, sock_type
from ._transport import (
    STREAM_LIMIT,
    PartialMessages,
    ServerConnections,
    SSLArg,
    WSATransport,
    accepted_transport,
    drops_reader_on_error,
)

__all__ = ["WSAServer", "create_server", "create_unix_server", "start_server"]

#: Seconds to wait before accepting again after EMFILE/ENFILE/ENOBUFS/ENOMEM (asyncio's
#: constants.ACCEPT_RETRY_DELAY).
ACCEPT_RETRY_DELAY = 1.0

_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# The compiled build's accept (_iovsend.c), and the families it makes addresses for.
_IOV_ACCEPT: Callable[[socket.socket, bool], tuple[int, Any] | None] | None = (
    None if IOVSEND_MODULE is None else IOVSEND_MODULE.accept
)
_C_ACCEPT_FAMILIES = frozenset({socket.AF_INET, socket.AF_INET6, socket.AF_UNIX})
_SOCK_NONBLOCK: Final = int(socket.SOCK_NONBLOCK)
_LISTEN_KINDS = (socket.SOCK_STREAM, socket.SOCK_SEQPACKET)


def _transport_options(max_pending_sends: int | None, partial_messages: PartialMessages) -> dict[str, Any]:
    """The connections' options that differ from ``WSATransport``'s defaults: none, usually, and
    then each connection is made by ``accepted_transport`` (cheaper, see there)."""
    options: dict[str, Any] = {}
    if max_pending_sends is not None:
        options["max_pending_sends"] = max_pending_sends
    if partial_messages != "reject":
        options["partial_messages"] = partial_messages
    return options


def _listening(sock: socket.socket) -> tuple[int, int, int, Any]:
    """What ``WSAServer._accept_ready`` needs of listening socket ``sock``, read once, when its
    reader is added, rather than at every wake-up (an interpreted method's three reads, ~600
    instructions a connection with one client at a time; issue 11, HC1): its family, the type
    of the sockets accepted on it, its protocol, and the C accept, or None.

    The compiled build's C accept says "none waiting" with None: ``socket.accept()`` raises
    BlockingIOError, ~8,000 instructions made and caught at every wake-up (one a connection
    with one client at a time: issue 11, ab -c 1). For the families whose address it makes. It
    makes the socket non-blocking too (accept4's SOCK_NONBLOCK): the socket object is then made
    with ``kind | SOCK_NONBLOCK``, timeout 0 without an ioctl, and the transport skips its
    setblocking(False) (one system call less a connection, issue 11). Otherwise the transport
    sets it non-blocking at once.
    """
    family, kind, proto = sock_family(sock), sock_type(sock), sock.proto
    c_accept = _IOV_ACCEPT if family in _C_ACCEPT_FAMILIES else None
    return family, (kind | _SOCK_NONBLOCK if c_accept is not None else kind), proto, c_accept


class WSAServer(asyncio.AbstractServer):
    """A listening server whose connections are :class:`WSATransport`\\ s (``asyncio.Server``'s API).

    Usable as an async context manager (``close()`` and ``wait_closed()`` on exit), with
    ``serve_forever()``, ``start_serving()``, ``is_serving()``, ``sockets``, ``close()``,
    ``wait_closed()``, and Python 3.13's ``close_clients()`` / ``abort_clients()``.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sockets: list[socket.socket],
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        backlog: int,
        transport_options: dict[str, Any],
        tls: dict[str, Any] | None = None,
    ) -> None:
        self._loop = loop
        # ssl context, ssl_handshake_timeout, ssl_shutdown_timeout (S9.2); None without TLS.
        self._tls = tls
        # Unix socket paths to remove at close() when they are still our socket file (inode).
        self._cleanup_paths: list[tuple[str | bytes, int]] = []
        # Invariant: None once close() was called; the listening sockets are closed then.
        self._sockets: list[socket.socket] | None = sockets
        # The open connections, counted and weakly (an unclosed transport must still be
        # collected, and warn); their transports update it themselves (see ServerConnections).
        self._connections = ServerConnections()
        # Invariant: None once the server is closed and its last connection is gone.
        self._waiters: list[asyncio.Future[None]] | None = []
        self._protocol_factory = protocol_factory
        self._backlog = backlog
        self._options = transport_options
        self._serving = False
        self._serving_forever_fut: asyncio.Future[None] | None = None
        # While serving on uvloop: the pin that keeps the loop's error watch between our
        # connections (see _errorwatch.pin), let go by close().
        self._watch_pin: object = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} sockets={self.sockets!r} connections={self._connections.count}>"

    # -- connections ------------------------------------------------------------------------------

    # (asyncio 3.13's Server methods; WSATransport calls its ServerConnections directly.)
    def _attach(self, transport: WSATransport) -> None:
        self._connections.attach(transport)

    def _detach(self, transport: WSATransport) -> None:
        if self._connections.detach(transport):
            self._wakeup()

    def _wakeup(self) -> None:
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    # -- serving -------------------------------------------------------------------------------------

    def _start_serving(self) -> None:
        if self._serving or self._sockets is None:
            return
        self._serving = True
        if self._watch_pin is None and drops_reader_on_error(self._loop):
            # uvloop: our connections read through the loop's error watch; with one client at a
            # time each was the loop's last, and the watch was made and closed for every one
            # (issue 11, ab -c 1: a third of the server's CPU a connection).
            self._watch_pin = pin_watch(self._loop)
        for sock in self._sockets:
            sock.listen(self._backlog)
            self._loop.add_reader(sock, self._accept_ready, sock, _listening(sock))

    def _accept_ready(self, sock: socket.socket, listening: tuple[int, int, int, Any]) -> None:
        # ``sock.accept()`` without its cost: it builds each new socket from ``self.family`` and
        # ``self.type``, two enum conversions (~14,000 instructions on Python 3.11, issue 11: a
        # connection per request). The C accept (or ``sock._accept``), and the listening socket's
        # ints read once when its reader was added (``listening``, see _listening), make the
        # same socket.
        family, made_kind, proto, c_accept = listening
        raw_accept: Any = sock._accept if c_accept is None else None  # type: ignore[attr-defined]
        for _ in range(self._backlog):
            if self._sockets is None:
                return
            try:
                if c_accept is not None:
                    accepted = c_accept(sock, True)
                    if accepted is None:
                        return  # the accept queue is empty
                    fd, addr = accepted
                else:
                    fd, addr = raw_accept()
                try:
                    conn = accepted_socket(family, made_kind, proto, fd)  # (socket.socket(..., fileno=fd))
                except BaseException:
                    os.close(fd)
                    raise
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return  # the accept queue is empty (or the client gave up first)
            except OSError as exc:
                self._loop.call_exception_handler(
                    {"message": "socket.accept() failed", "exception": exc, "socket": sock, "server": self}
                )
                if exc.errno in _OUT_OF_RESOURCES:
                    # Linux keeps reporting the socket readable: stop listening for a while.
                    self._loop.remove_reader(sock)
                    self._loop.call_later(ACCEPT_RETRY_DELAY, self._resume_accepting, sock)
                return
            self._accept_connection(conn, addr, c_accept is not None)

    def _resume_accepting(self, sock: socket.socket) -> None:
        if self._sockets is not None and sock in self._sockets:
            self._loop.add_reader(sock, self._accept_ready, sock, _listening(sock))

    def _accept_connection(self, conn: socket.socket, addr: Any, nonblocking: bool = False) -> None:
        """A transport for ``conn``; ``nonblocking``: the accept made it non-blocking (see
        ``_accept_ready``), so the default-options transport skips its ``setblocking(False)``."""
        try:
            protocol = self._protocol_factory()
            extra = {"peername": addr} if addr else None
            tls = self._tls
            if tls is None:
                if self._options:
                    WSATransport(conn, protocol, loop=self._loop, extra=extra, _server=self, **self._options)
                else:
                    accepted_transport(conn, protocol, self._loop, extra, self, nonblocking)  # (see there)
                return
            # S9.2: asyncio's TLS layer on the WSATransport; the app protocol hears of the
            # connection after the handshake. A failed handshake closes that connection only
            # (asyncio reports it in debug mode only).
            waiter: asyncio.Future[None] = self._loop.create_future()
            tls_proto = tls_protocol(self._loop, protocol, waiter=waiter, server_side=True, server_hostname=None, **tls)
            try:
                transport = WSATransport(conn, tls_proto, loop=self._loop, extra=extra, _server=self, **self._options)
            except BaseException:
                discard_tls(tls_proto)
                raise
            waiter.add_done_callback(lambda fut: _handshake_done(fut, transport))
        except (SystemExit, KeyboardInterrupt):
            conn.close()
            raise
        except BaseException as exc:
            conn.close()
            self._loop.call_exception_handler(
                {"message": "Error on transport creation for incoming connection", "exception": exc, "server": self}
            )

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return self._serving

    @property
    def sockets(self) -> tuple[trsock.TransportSocket, ...]:
        """The listening sockets (empty once closed), in asyncio's ``TransportSocket`` wrappers
        as ``asyncio.Server.sockets`` gives them (S9.1)."""
        if self._sockets is None:
            return ()
        return tuple(trsock.TransportSocket(sock) for sock in self._sockets)

    async def start_serving(self) -> None:
        """Start accepting (``create_server(start_serving=False)`` leaves that to you)."""
        self._start_serving()
        await asyncio.sleep(0)

    async def serve_forever(self) -> None:
        """Accept until cancelled or closed; on cancellation close and wait for the connections.

        Raises:
            RuntimeError: the server is closed, or another ``serve_forever`` is running.
        """
        if self._serving_forever_fut is not None:
            raise RuntimeError(f"server {self!r} is already being awaited on serve_forever()")
        if self._sockets is None:
            raise RuntimeError(f"server {self!r} is closed")
        self._start_serving()
        self._serving_forever_fut = self._loop.create_future()
        try:
            await self._serving_forever_fut
        except asyncio.CancelledError:
            try:
                self.close()
                await self.wait_closed()
            finally:
                raise
        finally:
            self._serving_forever_fut = None

    def close(self) -> None:
        """Stop listening and close the listening sockets; open connections stay open."""
        sockets, self._sockets = self._sockets, None
        if sockets is None:
            return
        self._connections.closed = True
        for sock in sockets:
            if self._serving:
                self._loop.remove_reader(sock)
            sock.close()
        for path, inode in self._cleanup_paths:
            # asyncio 3.13's cleanup_socket: remove the socket file if it is still ours.
            try:
                if os.stat(path).st_ino == inode:
                    os.unlink(path)
            except OSError:
                pass
        self._cleanup_paths = []
        self._serving = False
        pin, self._watch_pin = self._watch_pin, None
        if pin is not None:
            unpin_watch(pin, self._loop)  # (the watch closes now if no connection uses it)
        fut = self._serving_forever_fut
        if fut is not None and not fut.done():
            fut.cancel()
            self._serving_forever_fut = None
        if self._connections.count == 0:
            self._wakeup()

    def close_clients(self) -> None:
        """``close()`` every open connection (graceful: their queued sends go out first)."""
        for ref in list(self._connections.refs):
            transport = ref()
            if transport is not None:
                transport.close()

    def abort_clients(self) -> None:
        """``abort()`` every open connection (pending sends fail WSA_OPERATION_ABORTED)."""
        for ref in list(self._connections.refs):
            transport = ref()
            if transport is not None:
                transport.abort()

    async def wait_closed(self) -> None:
        """Wait until the server is closed and every connection it accepted is lost."""
        waiters = self._waiters
        if waiters is None:
            return
        waiter: asyncio.Future[None] = self._loop.create_future()
        waiters.append(waiter)
        await waiter


def _handshake_done(fut: asyncio.Future[None], transport: WSATransport) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        transport.close()  # a no-op when the TLS layer already ended it


def _check_server_tls(
    ssl: object, ssl_handshake_timeout: object, ssl_shutdown_timeout: object
) -> dict[str, Any] | None:
    """asyncio's checks of a server's TLS keywords; the TLS options, or None without TLS."""
    if isinstance(ssl, bool):
        raise TypeError("ssl argument must be an SSLContext or None")
    if ssl is not None and not isinstance(ssl, ssl_module.SSLContext):
        raise TypeError(f"ssl argument must be an SSLContext or None, got {ssl!r}")
    if ssl_handshake_timeout is not None and ssl is None:
        raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
    if ssl_shutdown_timeout is not None and ssl is None:
        raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
    if ssl is None:
        return None
    return {"ssl": ssl, "ssl_handshake_timeout": ssl_handshake_timeout, "ssl_shutdown_timeout": ssl_shutdown_timeout}


async def _server_infos(
    loop: asyncio.AbstractEventLoop, host: str | None, port: int | str | None, family: int, flags: int
) -> list[tuple[Any, ...]]:
    infos = await resolve(loop, host, port, family=family, flags=flags)
    if not infos:
        raise OSError(f"getaddrinfo({host!r}) returned empty list")
    return list(infos)


async def create_server(
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    host: str | Sequence[str] | None = None,
    port: int | str | None = None,
    *,
    family: int = socket.AF_UNSPEC,
    flags: int = socket.AI_PASSIVE,
    sock: socket.socket | None = None,
    backlog: int = 100,
    ssl: SSLArg = None,
    reuse_address: bool | None = None,
    reuse_port: bool | None = None,
    keep_alive: bool | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
    start_serving: bool = True,
    max_pending_sends: int | None = None,
    partial_messages: PartialMessages = "reject",
) -> WSAServer:
    """Listen on ``host``/``port`` (or ``sock``); every accepted connection gets a WSATransport (S7.3).

    ``loop.create_server`` for this package, with every argument it takes, with the same
    meaning (S9.1): ``host`` (a name, a list of names, ``None``/``""`` for every interface),
    ``port``, ``family``, ``flags``, ``sock`` (a bound stream or seqpacket socket, e.g.
    AF_UNIX), ``backlog``, ``reuse_address`` (default on), ``reuse_port``, ``keep_alive``,
    ``start_serving``; ``ssl`` (a server-side ``SSLContext``), ``ssl_handshake_timeout`` and
    ``ssl_shutdown_timeout`` put asyncio's TLS layer on each connection (S9.2); plus the
    transports' options ``max_pending_sends`` and ``partial_messages``.

    Returns:
        A :class:`WSAServer`, already accepting unless ``start_serving=False``.

    Raises:
        OSError: what ``loop.create_server`` raises (a bind error names the address).
        ValueError: both or neither of host/port and ``sock``; a TLS keyword without ``ssl``;
            a ``sock`` that cannot listen; ``ssl`` with a ``sock`` that is not SOCK_STREAM.
        TypeError: ``ssl`` that is not an ``SSLContext``; an ``ssl.SSLSocket``.
    """
    tls = _check_server_tls(ssl, ssl_handshake_timeout, ssl_shutdown_timeout)
    if sock is not None:
        check_not_ssl_socket(sock)
    if partial_messages not in ("reject", "cork"):
        raise ValueError(f"partial_messages must be 'reject' or 'cork', not {partial_messages!r}")
    loop = asyncio.get_running_loop()
    if host is not None or port is not None:
        if sock is not None:
            raise ValueError("host/port and sock can not be specified at the same time")
        if reuse_address is None:
            reuse_address = True  # asyncio's default on POSIX
        hosts: Iterable[str | None]
        if host == "":
            hosts = [None]
        elif isinstance(host, str) or host is None:
            hosts = [host]
        else:
            hosts = host
        found = await asyncio.gather(*(_server_infos(loop, h, port, family, flags) for h in hosts))
        infos = set(itertools.chain.from_iterable(found))
        sockets: list[socket.socket] = []
        completed = False
        try:
            for af, socktype, proto, _, sa in infos:
                try:
                    lsock = socket.socket(af, socktype, proto)
                except OSError:
                    continue  # a family/type/protocol this host lacks, as asyncio assumes
                sockets.append(lsock)
                if reuse_address:
                    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if reuse_port:
                    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if keep_alive:
                    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                if af == socket.AF_INET6:
                    # One socket per family, as asyncio binds them: "::" must not take IPv4 too.
                    lsock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                try:
                    lsock.bind(sa)
                except OSError as err:
                    strerror = (err.strerror or "").lower()
                    raise OSError(err.errno, f"error while attempting to bind on address {sa!r}: {strerror}") from None
            completed = True
        finally:
            if not completed:
                for lsock in sockets:
                    lsock.close()
    else:
        if sock is None:
            raise ValueError("Neither host/port nor sock were specified")
        if tls is not None:
            check_stream_for_tls(sock)
        if sock.type not in _LISTEN_KINDS:
            raise ValueError(f"A stream or seqpacket socket was expected, got {sock!r}")
        sockets = [sock]
    for lsock in sockets:
        lsock.setblocking(False)
    options = _transport_options(max_pending_sends, partial_messages)
    server = WSAServer(loop, sockets, protocol_factory, backlog, options, tls)
    if start_serving:
        server._start_serving()
        await asyncio.sleep(0)
    return server


async def create_unix_server(
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    path: str | bytes | os.PathLike[str] | os.PathLike[bytes] | None = None,
    *,
    sock: socket.socket | None = None,
    backlog: int = 100,
    ssl: SSLArg = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
    start_serving: bool = True,
    cleanup_socket: bool = True,
    max_pending_sends: int | None = None,
    partial_messages: PartialMessages = "reject",
) -> WSAServer:
    """``loop.create_unix_server`` over WSATransports (S9.1), with its arguments and meaning.

    ``path`` (a stale socket file there is replaced; a name starting with NUL is abstract) or
    ``sock`` (a bound AF_UNIX stream socket); ``cleanup_socket`` removes the socket file at
    ``close()`` if it is still the one bound here (asyncio 3.13). TLS as :func:`create_server`.

    Raises:
        ValueError: both or neither of ``path`` and ``sock``; a ``sock`` that is not an AF_UNIX
            stream socket; a TLS keyword without ``ssl``.
        OSError: the bind failed (EADDRINUSE says which path).
    """
    tls = _check_server_tls(ssl, ssl_handshake_timeout, ssl_shutdown_timeout)
    if partial_messages not in ("reject", "cork"):
        raise ValueError(f"partial_messages must be 'reject' or 'cork', not {partial_messages!r}")
    loop = asyncio.get_running_loop()
    if path is not None:
        if sock is not None:
            raise ValueError("path and sock can not be specified at the same time")
        fspath = os.fspath(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if fspath[0] not in (0, "\x00"):
            try:
                if stat.S_ISSOCK(os.stat(fspath).st_mode):
                    os.remove(fspath)  # a stale socket file, as asyncio removes it
            except OSError:
                pass
        try:
            sock.bind(fspath)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise OSError(errno.EADDRINUSE, f"Address {fspath!r} is already in use") from None
            raise
        except BaseException:
            sock.close()
            raise
    else:
        if sock is None:
            raise ValueError("path was not specified, and no sock specified")
        check_not_ssl_socket(sock)
        if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
            raise ValueError(f"A UNIX Domain Stream Socket was expected, got {sock!r}")
    sock.setblocking(False)
    options = _transport_options(max_pending_sends, partial_messages)
    server = WSAServer(loop, [sock], protocol_factory, backlog, options, tls)
    if cleanup_socket:
        bound = sock.getsockname()
        if bound and bound[0] not in (0, "\x00"):
            with contextlib.suppress(OSError):
                server._cleanup_paths.append((bound, os.stat(bound).st_ino))
    if start_serving:
        server._start_serving()
        await asyncio.sleep(0)
    return server


async def start_server(
    client_connected_cb: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any],
    host: str | Sequence[str] | None = None,
    port: int | str | None = None,
    *,
    limit: int = STREAM_LIMIT,
    **kwds: Any,
) -> WSAServer:
    """``asyncio.start_server`` over WSATransports: ``client_connected_cb(reader, writer)`` per client.

    The callback may be a coroutine function (it then runs as a task), as with asyncio. Other
    keyword arguments go to :func:`create_server`.
    """
    loop = asyncio.get_running_loop()

    def factory() -> asyncio.StreamReaderProtocol:
        reader = asyncio.StreamReader(limit=limit, loop=loop)
        return asyncio.StreamReaderProtocol(reader, client_connected_cb, loop=loop)

    return await create_server(factory, host, port, **kwds)
