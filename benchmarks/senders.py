"""The senders of issue 6: what users pick instead of us, and ours.

Every sender sends the run's sends (``ctx.sends()``, each a list of ``bytes``) in order, as
that API is normally used, between ``ctx.start()`` and the last ack. Setup (making the
transport or stream) and teardown are outside the clock. APIs that take one buffer
(``sock_sendall``, ``DatagramTransport.sendto``) get ``b"".join(bufs)``, made per send inside
the clock: that copy is what their users pay for a gathered send.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
from typing import Any

import wsasend

from .harness import Run, Sender
from .workloads import file_for

__all__ = ["all_senders", "has_transport"]

# Sends per sendmsg of the raw ceiling, and how often the posting senders await (issue 6).
GROUP = 64
# Most buffers one sendmsg takes on Linux (UIO_MAXIOV); more is EMSGSIZE.
IOV_MAX = 1024

LOOPS = ("asyncio", "uvloop")


def has_transport() -> bool:
    """True once ``wsasend.WSATransport`` exists (SPEC S7; it is being written in parallel)."""
    return hasattr(wsasend, "WSATransport") and hasattr(wsasend, "connect_accepted_socket")


def _finish(sock: socket.socket, iov: list[Any], sent: int, total: int) -> None:
    """After a short ``sendmsg`` that took ``sent`` of ``total`` bytes: send the tail (a blocking
    socket rarely sends short, so this path is never hot)."""
    while sent < total:
        rest: list[Any] = []
        skip = sent
        for buf in iov:
            size = len(buf)
            if skip >= size:
                skip -= size
                continue
            rest.append(memoryview(buf)[skip:] if skip else buf)
            skip = 0
        total -= sent
        iov = rest
        sent = sock.sendmsg(iov)


# -- raw, blocking ----------------------------------------------------------------------------


def raw_sendmsg(ctx: Run) -> None:
    """One blocking ``sendmsg`` per send (one datagram per send on UDP)."""
    sock = ctx.sock
    sock.setblocking(True)
    sendmsg = sock.sendmsg
    size = ctx.workload.send_bytes
    sends = ctx.sends()
    ctx.start()
    for bufs in sends:
        n = sendmsg(bufs)
        if n != size:
            _finish(sock, bufs, n, size)
    ctx.ack_sync()


def raw_sendmsg_64(ctx: Run) -> None:
    """The ceiling: one blocking ``sendmsg`` carrying 64 sends (fewer if that passes IOV_MAX)."""
    sock = ctx.sock
    sock.setblocking(True)
    sendmsg = sock.sendmsg
    per_call = max(1, min(GROUP, IOV_MAX // ctx.workload.nbufs))
    full = per_call * ctx.workload.send_bytes
    sends = ctx.sends()
    ctx.start()
    iov: list[bytes] = []
    k = 0
    for bufs in sends:
        iov += bufs
        k += 1
        if k == per_call:
            n = sendmsg(iov)
            if n != full:
                _finish(sock, iov, n, full)
            iov = []
            k = 0
    if iov:
        _finish(sock, iov, 0, k * ctx.workload.send_bytes)
    ctx.ack_sync()


# -- asyncio / uvloop ---------------------------------------------------------------------------


class _FlowProtocol(asyncio.Protocol):
    """A Protocol that honours pause_writing/resume_writing, as asyncio asks writers to."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.paused = False
        self._resumed: asyncio.Future[None] | None = None
        self.lost: asyncio.Future[None] = loop.create_future()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        waiter = self._resumed
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait_resumed(self) -> None:
        self._resumed = self.loop.create_future()
        if self.paused:
            await self._resumed

    def data_received(self, data: bytes) -> None:
        pass

    def datagram_received(self, data: bytes, addr: Any) -> None:
        pass

    def error_received(self, exc: Exception) -> None:
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)


async def protocol_writelines(ctx: Run) -> None:
    """``transport.writelines(bufs)`` per send, waiting whenever the protocol is paused."""
    loop = asyncio.get_running_loop()
    sock = ctx.sock
    sock.setblocking(False)
    transport, proto = await loop.create_connection(lambda: _FlowProtocol(loop), sock=sock)
    writelines = transport.writelines
    sends = ctx.sends()
    ctx.start()
    for bufs in sends:
        if proto.paused:
            await proto.wait_resumed()
        writelines(bufs)
    await ctx.ack()
    transport.close()
    await proto.lost


async def streamwriter(ctx: Run) -> None:
    """``writer.writelines(bufs); await writer.drain()`` per send."""
    sock = ctx.sock
    sock.setblocking(False)
    _reader, writer = await asyncio.open_connection(sock=sock)
    writelines = writer.writelines
    drain = writer.drain
    sends = ctx.sends()
    ctx.start()
    for bufs in sends:
        writelines(bufs)
        await drain()
    await ctx.ack()
    writer.close()
    await writer.wait_closed()


async def sock_sendall(ctx: Run) -> None:
    """``await loop.sock_sendall(sock, b"".join(bufs))`` per send (it takes one buffer)."""
    loop = asyncio.get_running_loop()
    sock = ctx.sock
    sock.setblocking(False)
    sendall = loop.sock_sendall
    join = b"".join
    one = ctx.workload.nbufs == 1
    sends = ctx.sends()
    ctx.start()
    if one:
        for bufs in sends:
            await sendall(sock, bufs[0])
    else:
        for bufs in sends:
            await sendall(sock, join(bufs))
    await ctx.ack()
    sock.close()


async def datagram_sendto(ctx: Run) -> None:
    """``transport.sendto(b"".join(bufs))`` per datagram, honouring pause/resume."""
    loop = asyncio.get_running_loop()
    sock = ctx.sock
    sock.setblocking(False)
    transport, proto = await loop.create_datagram_endpoint(lambda: _FlowProtocol(loop), sock=sock)
    sendto = transport.sendto
    join = b"".join
    sends = ctx.sends()
    ctx.start()
    for bufs in sends:
        if proto.paused:
            await proto.wait_resumed()
        sendto(join(bufs))
    await ctx.ack()
    transport.close()
    await proto.lost


async def wsa_posted(ctx: Run) -> None:
    """Ours: ``wsa_send`` posted back to back, awaiting every 64th overlapped."""
    sock = ctx.sock
    sock.setblocking(False)
    send = wsasend.wsa_send
    sends = ctx.sends()
    ov = None
    ctx.start()
    for i, bufs in enumerate(sends, 1):
        ov = send(sock, bufs)
        if not i % GROUP:
            await ov
    if ov is not None:
        await ov
    await ctx.ack()
    wsasend.closesocket(sock)


async def wsa_await(ctx: Run) -> None:
    """Ours: ``await wsa_send(sock, bufs)`` per send."""
    sock = ctx.sock
    sock.setblocking(False)
    send = wsasend.wsa_send
    sends = ctx.sends()
    ctx.start()
    for bufs in sends:
        await send(sock, bufs)
    await ctx.ack()
    wsasend.closesocket(sock)


class _WSAProtocol(_FlowProtocol):
    pass


async def _wsa_transport(ctx: Run) -> tuple[Any, _WSAProtocol]:
    loop = asyncio.get_running_loop()
    ctx.sock.setblocking(False)
    proto = _WSAProtocol(loop)
    transport, _ = await wsasend.connect_accepted_socket(lambda: proto, ctx.sock)
    return transport, proto


async def wsatransport_send(ctx: Run) -> None:
    """Ours: ``WSATransport.send(bufs)`` posted back to back, awaiting every 64th."""
    transport, proto = await _wsa_transport(ctx)
    send = transport.send
    sends = ctx.sends()
    ov = None
    ctx.start()
    for i, bufs in enumerate(sends, 1):
        ov = send(bufs)
        if not i % GROUP:
            await ov
    if ov is not None:
        await ov
    await ctx.ack()
    transport.close()
    await proto.lost


# -- slow reader: post ``depth`` sends into a stalled reader, then let it read -------------------


async def protocol_writelines_stall(ctx: Run) -> None:
    """``transport.writelines`` of all ``depth`` sends (past the high-water mark: the point is
    to queue them), then the reader starts."""
    loop = asyncio.get_running_loop()
    sock = ctx.sock
    sock.setblocking(False)
    transport, proto = await loop.create_connection(lambda: _FlowProtocol(loop), sock=sock)
    writelines = transport.writelines
    sends = ctx.sends()
    size = ctx.workload.send_bytes
    ctx.start()
    for _ in range(ctx.cycles):
        for bufs in itertools.islice(sends, ctx.depth):
            writelines(bufs)
        if ctx.verify:
            ctx.note_queued(transport.get_write_buffer_size() // size)
        ctx.go()
        await ctx.ack()
    transport.close()
    await proto.lost


async def wsa_posted_stall(ctx: Run) -> None:
    """``wsa_send`` of all ``depth`` sends without awaiting, then the reader starts."""
    from wsasend._api import find_engine

    sock = ctx.sock
    sock.setblocking(False)
    send = wsasend.wsa_send
    sends = ctx.sends()
    ctx.start()
    for _ in range(ctx.cycles):
        ov = None
        for bufs in itertools.islice(sends, ctx.depth):
            ov = send(sock, bufs)
        if ctx.verify:
            engine = find_engine(sock)
            ctx.note_queued(engine.pending_count() if engine is not None else 0)
        ctx.go()
        if ov is not None:
            await ov
        await ctx.ack()
    wsasend.closesocket(sock)


async def wsatransport_stall(ctx: Run) -> None:
    """``WSATransport.send`` of all ``depth`` sends without awaiting, then the reader starts."""
    transport, proto = await _wsa_transport(ctx)
    send = transport.send
    sends = ctx.sends()
    size = ctx.workload.send_bytes
    ctx.start()
    for _ in range(ctx.cycles):
        ov = None
        for bufs in itertools.islice(sends, ctx.depth):
            ov = send(bufs)
        if ctx.verify:
            ctx.note_queued(transport.get_write_buffer_size() // size)
        ctx.go()
        if ov is not None:
            await ov
        await ctx.ack()
    transport.close()
    await proto.lost


# -- a file (SPEC S9.3): the same byte stream, from a file, by sendfile ----------------------------


def _open_file(ctx: Run) -> Any:
    w = ctx.workload
    return open(file_for(w.nbufs, w.bufsize, w.sends), "rb")  # (closed by the caller)


def raw_sendfile(ctx: Run) -> None:
    """The ceiling: blocking ``os.sendfile`` of the whole file."""
    sock = ctx.sock
    sock.setblocking(True)
    with _open_file(ctx) as f:
        fd, out, total = f.fileno(), sock.fileno(), ctx.workload.total_bytes
        ctx.start()
        sent = 0
        while sent < total:
            sent += os.sendfile(out, fd, sent, total - sent)
        ctx.ack_sync()


async def loop_sendfile(ctx: Run) -> None:
    """The base loop's own ``await loop.sendfile(transport, f)`` on its own transport."""
    loop = asyncio.get_running_loop()
    sock = ctx.sock
    sock.setblocking(False)
    transport, proto = await loop.create_connection(lambda: _FlowProtocol(loop), sock=sock)
    with _open_file(ctx) as f:
        ctx.start()
        await loop.sendfile(transport, f)
        await ctx.ack()
    transport.close()
    await proto.lost


async def wsatransport_sendfile(ctx: Run) -> None:
    """Ours: ``await transport.sendfile(f)`` on a WSATransport (one file send in the queue)."""
    transport, proto = await _wsa_transport(ctx)
    with _open_file(ctx) as f:
        ctx.start()
        await transport.sendfile(f)
        await ctx.ack()
    transport.close()
    await proto.lost


def all_senders() -> list[Sender]:
    """Every sender, in table order; ``WSATransport.send`` only when the transport exists."""
    stream = frozenset({"stream"})
    both = frozenset({"stream", "dgram"})
    stall = frozenset({"stall"})
    dgram = frozenset({"dgram"})
    file = frozenset({"file"})
    out = [
        Sender("raw-sendmsg", "raw blocking sendmsg, 1 send per call", None, both | file, raw_sendmsg),
        Sender("raw-sendmsg-64", "raw blocking sendmsg, 64 sends per call (ceiling)", None, stream, raw_sendmsg_64),
        # os.sendfile is neither a sendmsg through the socket object nor a write(2): uncounted.
        Sender("raw-sendfile", "raw blocking os.sendfile of the file", None, file, raw_sendfile, uncounted=True),
    ]
    for loop in LOOPS:
        out += [
            Sender("writelines", "Protocol transport.writelines + pause/resume", loop, stream, protocol_writelines),
            Sender("streamwriter", "StreamWriter.writelines + await drain()", loop, stream, streamwriter),
            Sender(
                "sendto",
                "DatagramTransport.sendto(join) + pause/resume",
                loop,
                dgram,
                datagram_sendto,
                uncounted=loop == "uvloop",
            ),
            Sender("sock_sendall", "await loop.sock_sendall(join)", loop, both, sock_sendall),
            Sender("wsa-posted", "wsa_send posted back to back, await every 64th", loop, both, wsa_posted),
            Sender("wsa-await", "await wsa_send per send", loop, both, wsa_await),
        ]
        if has_transport():
            out.append(
                Sender("wsatransport", "WSATransport.send posted, await every 64th", loop, both, wsatransport_send)
            )
        out += [
            Sender("writelines", "Protocol transport.writelines, all queued", loop, stall, protocol_writelines_stall),
            Sender("wsa-posted", "wsa_send posted, all queued", loop, stall, wsa_posted_stall),
        ]
        if has_transport():
            out.append(Sender("wsatransport", "WSATransport.send, all queued", loop, stall, wsatransport_stall))
        if loop == "asyncio":  # uvloop has no loop.sendfile (NotImplementedError)
            out.append(
                Sender("loop-sendfile", "await loop.sendfile(transport, f)", loop, file, loop_sendfile, uncounted=True)
            )
        if hasattr(wsasend.WSATransport, "sendfile"):
            out.append(
                Sender(
                    "wsa-sendfile",
                    "await WSATransport.sendfile(f)",
                    loop,
                    file,
                    wsatransport_sendfile,
                    uncounted=True,
                )
            )
    return out
