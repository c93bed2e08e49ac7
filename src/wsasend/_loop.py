"""A loop that hands out WSATransports everywhere (SPEC S9.1): existing asyncio code, unchanged.

Theory of operation
-------------------
The loop is the base loop (asyncio's default selector loop, or uvloop's ``Loop``) subclassed in
Python: both can be. Only the methods that make connections are overridden, and each one is the
package's function of the same name (``create_connection``, ``create_server``,
``connect_accepted_socket``, ``create_unix_connection``, ``create_unix_server``), which takes
every keyword the stock method takes, with the same meaning. So ``asyncio.start_server``,
``asyncio.open_connection``, their Unix forms, and the frameworks built on them (aiohttp,
uvicorn) get a :class:`WSATransport` for every connection. Everything else (timers, DNS,
``sock_*``, subprocesses, datagram endpoints) is the base loop's own: the uvloop flavour keeps
uvloop's speed for all of it.

Two more methods take a :class:`WSATransport` where the base loop would not:

- ``start_tls`` puts asyncio's TLS layer (``asyncio.sslproto.SSLProtocol``, which works over
  any transport) on it, on both loops (uvloop's own accepts only its transports) (S9.2);
- ``sendfile`` sends the file through the transport's ordered queue (S9.3): read in blocks and
  posted as sends, so it is in order with every other send; ``fallback=False`` raises asyncio's
  ``SendfileNotAvailableError``, as the stock loop does for a transport without native
  sendfile.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl as ssl_module
from collections.abc import Callable, Coroutine, Sequence
from typing import IO, Any, Literal, TypeVar

from ._connect import (
    check_stream_for_tls,
    connect_accepted_socket,
    create_connection,
    create_unix_connection,
    tls_protocol,
)
from ._engine import flush_windows
from ._sendfile import check_sendfile_params
from ._server import create_server, create_unix_server
from ._transport import SSLArg, WSATransport

__all__ = [
    "EventLoopPolicy",
    "WSAEventLoop",
    "install",
    "new_event_loop",
    "new_uvloop_event_loop",
    "run",
]

Base = Literal["asyncio", "uvloop"]
_T = TypeVar("_T")

_Path = str | bytes | os.PathLike[str] | os.PathLike[bytes]


class _WSALoopMethods(asyncio.AbstractEventLoop):
    """The overrides, shared by both flavours: listed before the base loop in their bases, so
    ``super()`` here is the base loop's method."""

    def run_forever(self) -> None:
        """The base loop's, then the batch windows it left open are flushed (S5.1, S9.1):
        writes made in the iteration that stopped the loop go to the kernel, as asyncio's
        ``write()`` hands them over at once."""
        try:
            super().run_forever()
        finally:
            flush_windows(self)

    async def create_connection(  # type: ignore[override]
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
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
    ) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
        """``loop.create_connection``; the connection is a :class:`WSATransport` (S9.1)."""
        return await create_connection(
            protocol_factory,
            host,
            port,
            ssl=ssl,
            family=family,
            proto=proto,
            flags=flags,
            sock=sock,
            local_addr=local_addr,
            server_hostname=server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
            happy_eyeballs_delay=happy_eyeballs_delay,
            interleave=interleave,
            all_errors=all_errors,
        )

    async def create_server(  # type: ignore[override]
        self,
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
    ) -> asyncio.AbstractServer:
        """``loop.create_server``; every accepted connection is a :class:`WSATransport` (S9.1)."""
        return await create_server(
            protocol_factory,
            host,
            port,
            family=family,
            flags=flags,
            sock=sock,
            backlog=backlog,
            ssl=ssl,
            reuse_address=reuse_address,
            reuse_port=reuse_port,
            keep_alive=keep_alive,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
            start_serving=start_serving,
        )

    async def connect_accepted_socket(  # type: ignore[override]
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        sock: socket.socket,
        *,
        ssl: SSLArg = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
    ) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
        """``loop.connect_accepted_socket`` with a :class:`WSATransport` (S9.1)."""
        return await connect_accepted_socket(
            protocol_factory,
            sock,
            ssl=ssl,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )

    async def create_unix_connection(  # type: ignore[override]
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        path: _Path | None = None,
        *,
        ssl: SSLArg = None,
        sock: socket.socket | None = None,
        server_hostname: str | None = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
    ) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
        """``loop.create_unix_connection`` with a :class:`WSATransport` (S9.1)."""
        return await create_unix_connection(
            protocol_factory,
            path,
            ssl=ssl,
            sock=sock,
            server_hostname=server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )

    async def create_unix_server(  # type: ignore[override]
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        path: _Path | None = None,
        *,
        sock: socket.socket | None = None,
        backlog: int = 100,
        ssl: SSLArg = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
        start_serving: bool = True,
        cleanup_socket: bool = True,
    ) -> asyncio.AbstractServer:
        """``loop.create_unix_server``; every accepted connection is a :class:`WSATransport` (S9.1)."""
        return await create_unix_server(
            protocol_factory,
            path,
            sock=sock,
            backlog=backlog,
            ssl=ssl,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
            start_serving=start_serving,
            cleanup_socket=cleanup_socket,
        )

    async def start_tls(
        self,
        transport: asyncio.WriteTransport,
        protocol: asyncio.BaseProtocol,
        sslcontext: ssl_module.SSLContext,
        *,
        server_side: bool = False,
        server_hostname: str | None = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
    ) -> asyncio.Transport | None:
        """``loop.start_tls``: on a :class:`WSATransport`, asyncio's TLS layer on top (S9.2).

        The algorithm of asyncio's ``BaseEventLoop.start_tls``, so it also works on uvloop,
        whose own accepts only uvloop's transports. Other transports go to the base loop.

        Returns:
            The TLS app transport, after the handshake; the protocol should use it at once.

        Raises:
            TypeError: ``sslcontext`` is not an ``SSLContext``.
            ValueError: the WSATransport's socket is not SOCK_STREAM (a message socket cannot
                carry TLS records; "A Stream Socket was expected", asyncio's error for such a
                socket with ``ssl=``).
        """
        if not isinstance(transport, WSATransport):
            return await super().start_tls(
                transport,
                protocol,
                sslcontext,
                server_side=server_side,
                server_hostname=server_hostname,
                ssl_handshake_timeout=ssl_handshake_timeout,
                ssl_shutdown_timeout=ssl_shutdown_timeout,
            )
        if not isinstance(sslcontext, ssl_module.SSLContext):
            raise TypeError(f"sslcontext is expected to be an instance of ssl.SSLContext, got {sslcontext!r}")
        # A message socket's transport cannot carry TLS records (asyncio's ValueError, S9.2).
        check_stream_for_tls(transport.get_extra_info("socket"))
        waiter: asyncio.Future[None] = self.create_future()
        tls = tls_protocol(
            self,
            protocol,
            sslcontext,
            waiter,
            server_side=server_side,
            server_hostname=server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
            call_connection_made=False,
        )
        # Pause first so that no data reaches the TLS layer before its connection_made.
        transport.pause_reading()
        transport.set_protocol(tls)
        conmade = self.call_soon(tls.connection_made, transport)
        resume = self.call_soon(transport.resume_reading)
        try:
            await waiter
        except BaseException:
            transport.close()
            conmade.cancel()
            resume.cancel()
            raise
        return tls._app_transport

    async def sendfile(
        self,
        transport: asyncio.WriteTransport,
        file: IO[bytes],
        offset: int = 0,
        count: int | None = None,
        *,
        fallback: bool = True,
    ) -> int:
        """``loop.sendfile``: on a :class:`WSATransport`, in order with its other sends (S9.3).

        asyncio's algorithm: the native path first (``_sendfile_native``), then, unless
        ``fallback=False``, the file read in blocks and posted as sends. While the native path
        runs, a bare ``write()`` on the transport raises RuntimeError, as asyncio's does; during
        the fallback it is taken and goes out between two blocks, as asyncio's is. Other
        transports go to the base loop.

        Returns:
            The bytes sent; the file's position is left after them, as asyncio leaves it.

        Raises:
            asyncio.SendfileNotAvailableError: no native path and ``fallback=False``.
            RuntimeError: the transport is closing.
            ValueError, TypeError: as asyncio's ``sendfile`` (text-mode file, bad offset/count).
            WSAError: a send failed; the bytes sent before it are in the file's position.
        """
        if not isinstance(transport, WSATransport):
            return await super().sendfile(transport, file, offset, count, fallback=fallback)
        check_sendfile_arguments(transport, file, offset, count)
        # (A bare write() is refused while the native operation runs, as asyncio's: the native
        # path counts itself in transport._sendfiles. During the fallback asyncio takes writes,
        # which go out between its blocks, and so does this.)
        try:
            return await self._sendfile_native(transport, file, offset, count)
        except asyncio.SendfileNotAvailableError:
            if not fallback:
                raise
        return await wsa_sendfile(self, transport, file, offset, count)

    async def _sendfile_native(
        self, transp: asyncio.WriteTransport, file: IO[bytes], offset: int, count: int | None
    ) -> int:
        """asyncio's hook for a native sendfile (S9.3); on a :class:`WSATransport`, ours."""
        if isinstance(transp, WSATransport):
            return await wsa_sendfile_native(self, transp, file, offset, count)
        native: Callable[..., Coroutine[Any, Any, int]] = getattr(super(), "_sendfile_native")  # noqa: B009
        return await native(transp, file, offset, count)


def check_sendfile_arguments(transport: WSATransport, file: IO[bytes], offset: object, count: object) -> None:
    """asyncio's checks of ``loop.sendfile``'s arguments, with its messages."""
    if transport.is_closing():
        raise RuntimeError("Transport is closing")
    check_sendfile_params(file, offset, count)


async def wsa_sendfile_native(
    loop: asyncio.AbstractEventLoop, transport: WSATransport, file: IO[bytes], offset: int, count: int | None
) -> int:
    """The native path of ``loop.sendfile`` on a WSATransport (S9.3): one file send in the
    transport's queue, by ``os.sendfile`` (:meth:`WSATransport._sendfile_native`).

    Raises:
        asyncio.SendfileNotAvailableError: the file cannot go by ``os.sendfile`` (no descriptor,
            not a regular file), so ``sendfile`` takes the ordered fallback.
    """
    return await transport._sendfile_native(file, offset, count)


async def wsa_sendfile(
    loop: asyncio.AbstractEventLoop,
    transport: WSATransport,
    file: IO[bytes],
    offset: int = 0,
    count: int | None = None,
) -> int:
    """The fallback of ``loop.sendfile`` (S9.3): the file read in blocks, each one send in the
    transport's queue, zero-copy from its own buffer (:meth:`WSATransport._sendfile_fallback`)."""
    return await transport._sendfile_fallback(file, offset, count)


class WSAEventLoop(_WSALoopMethods, asyncio.SelectorEventLoop):  # type: ignore[misc]
    """asyncio's default loop whose connections are :class:`WSATransport`\\ s (S9.1)."""


_uvloop_class: type[asyncio.AbstractEventLoop] | None = None


def _uvloop_loop_class() -> type[asyncio.AbstractEventLoop]:
    global _uvloop_class
    if _uvloop_class is None:
        import uvloop  # the optional 'uvloop' extra

        class WSAUVLoop(_WSALoopMethods, uvloop.Loop):  # type: ignore[misc]
            """uvloop's loop whose connections are :class:`WSATransport`\\ s (S9.1)."""

        _uvloop_class = WSAUVLoop
    return _uvloop_class


def new_event_loop(base: Base = "asyncio") -> asyncio.AbstractEventLoop:
    """A new loop whose connection methods hand out :class:`WSATransport`\\ s (S9.1).

    Args:
        base: ``"asyncio"`` (the default selector loop) or ``"uvloop"`` (needs the uvloop extra).

    Raises:
        ValueError: another ``base``.
        ImportError: ``"uvloop"`` without uvloop installed.
    """
    if base == "asyncio":
        return WSAEventLoop()
    if base == "uvloop":
        return _uvloop_loop_class()()
    raise ValueError(f"base must be 'asyncio' or 'uvloop', not {base!r}")


def new_uvloop_event_loop() -> asyncio.AbstractEventLoop:
    """``new_event_loop("uvloop")``, as a zero-argument loop factory (S9.1).

    For ``uvicorn --loop wsasend:new_uvloop_event_loop`` (``--loop wsasend:new_event_loop`` is
    the asyncio flavour) and ``asyncio.Runner(loop_factory=...)``.
    """
    return new_event_loop("uvloop")


class EventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """An event loop policy whose loops are :func:`new_event_loop`\\ 's (S9.1).

    ``asyncio.set_event_loop_policy(wsasend.EventLoopPolicy())``, or :func:`install`.
    """

    def __init__(self, base: Base = "asyncio") -> None:
        super().__init__()
        if base not in ("asyncio", "uvloop"):
            raise ValueError(f"base must be 'asyncio' or 'uvloop', not {base!r}")
        self._base: Base = base

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        return new_event_loop(self._base)


def install(base: Base = "asyncio") -> None:
    """Make wsasend's loop asyncio's default: ``asyncio.run`` and friends use it from now on (S9.1)."""
    asyncio.set_event_loop_policy(EventLoopPolicy(base))


def run(
    main: Coroutine[Any, Any, _T],
    *,
    base: Base = "asyncio",
    debug: bool | None = None,
) -> _T:
    """``asyncio.run(main)`` on a new wsasend loop (S9.1), like ``uvloop.run``.

    Args:
        main: the coroutine to run to completion.
        base: the base loop, ``"asyncio"`` or ``"uvloop"``.
        debug: asyncio's debug mode, as ``asyncio.run`` takes it.
    """
    with asyncio.Runner(debug=debug, loop_factory=lambda: new_event_loop(base)) as runner:
        return runner.run(main)
