"""Write flow control exactly as asyncio defines it (SPEC S7.1; asyncio's _FlowControlMixin).

pause_writing when the buffer goes strictly above ``high`` (synchronously, inside the write),
resume_writing once it is at or below ``low``; ``high=0`` pauses whenever anything is queued.

The exact edges are driven with SOCK_SEQPACKET and MSG_PARTIAL: a piece of an unfinished
message stays queued (S4.4) while a finished message before it goes out, so the buffer size
lands on a chosen byte count with real sockets and no timing.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

import wsasend
from tests.helpers import SMALL_BUF, fill_messages, pattern
from wsasend import MSG_PARTIAL

from .util import GUARD, Recorder, drain_peer, until, wrap


def _seqpacket() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


async def test_WSATransport_limits_defaults_and_validation() -> None:
    ours, peer = socket.socketpair()
    with peer:
        transport, proto = await wrap(ours)
        assert transport.get_write_buffer_limits() == (16384, 65536)
        transport.set_write_buffer_limits(high=1000)
        assert transport.get_write_buffer_limits() == (250, 1000)
        transport.set_write_buffer_limits(low=100)
        assert transport.get_write_buffer_limits() == (100, 400)
        transport.set_write_buffer_limits(high=0)
        assert transport.get_write_buffer_limits() == (0, 0)
        transport.set_write_buffer_limits()
        assert transport.get_write_buffer_limits() == (16384, 65536)
        for high, low in ((10, 11), (-1, None), (None, -4), (5, -1)):
            with pytest.raises(ValueError):
                transport.set_write_buffer_limits(high=high, low=low)
        assert transport.get_write_buffer_limits() == (16384, 65536)
        transport.close()
        await proto.wait_lost()


async def test_WSATransport_pause_strictly_above_high() -> None:
    ours, peer = _seqpacket()
    with peer:
        transport, proto = await wrap(ours)
        transport.set_write_buffer_limits(high=100, low=0)
        transport.send(b"a" * 60, MSG_PARTIAL)
        transport.send(b"b" * 40, MSG_PARTIAL)
        assert transport.get_write_buffer_size() == 100
        assert proto.pause_sizes == []  # at high exactly: not paused
        transport.send(b"c", MSG_PARTIAL)
        assert proto.pause_sizes == [101]  # one byte above: paused, inside the call
        transport.send(b"d" * 50, MSG_PARTIAL)
        assert proto.pause_sizes == [101]  # once
        transport.send(b"end")  # the message is whole now and goes out
        await until(lambda: bool(proto.resume_sizes))
        assert proto.resume_sizes == [0]
        peer.setblocking(False)
        record = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(peer, 1000), GUARD)
        assert record == b"a" * 60 + b"b" * 40 + b"c" + b"d" * 50 + b"end"
        transport.close()
        await proto.wait_lost()
        proto.check()


@pytest.mark.parametrize("low", [100, 99])
async def test_WSATransport_resume_at_or_below_low(low: int) -> None:
    ours, peer = _seqpacket()
    with peer:
        transport, proto = await wrap(ours)
        transport.set_write_buffer_limits(high=150, low=low)
        filled = fill_messages(ours)  # the kernel takes no message until the peer reads
        transport.send(b"m" * 80, MSG_PARTIAL)
        transport.send(b"m" * 20)  # message 1 (100 bytes): no room in the kernel, it waits
        transport.send(b"p" * 100, MSG_PARTIAL)  # message 2 stays open: never sendable
        assert proto.pause_sizes == [200]
        peer.setblocking(False)
        loop = asyncio.get_running_loop()
        for _ in range(filled + 1):
            await asyncio.wait_for(loop.sock_recv(peer, 2000), GUARD)
        # Message 1 went out; message 2's piece stays: the buffer is at exactly 100 bytes.
        await until(lambda: len(proto.completed) == 2)
        for _ in range(5):
            await asyncio.sleep(0)
        assert transport.get_write_buffer_size() == 100
        if low == 100:
            assert proto.resume_sizes == [100]  # at low: resumed
        else:
            assert proto.resume_sizes == []  # one byte above low: still paused
            transport.send(b"!")
            await until(lambda: bool(proto.resume_sizes))
            assert proto.resume_sizes == [0]
        transport.close()
        await proto.wait_lost()
        proto.check()


async def test_WSATransport_high_zero_pauses_whenever_queued() -> None:
    ours, peer = socket.socketpair()
    with peer:
        transport, proto = await wrap(ours)
        transport.set_write_buffer_limits(high=0)
        assert transport.get_write_buffer_limits() == (0, 0)
        transport.write(b"first")  # sent at once: nothing queued, no pause
        assert transport.get_write_buffer_size() == 0 and proto.pause_sizes == []
        # Behind it, in the batch window: above high, so the window goes to the kernel at
        # once, which takes it all (as asyncio's write() would have sent it): no pause.
        transport.write(b"second")
        assert transport.get_write_buffer_size() == 0 and proto.pause_sizes == []
        # More than the kernel takes: the rest is queued, and the protocol pauses for it.
        big = pattern(8 << 20, 3)
        transport.write(big)
        assert len(proto.pause_sizes) == 1 and 0 < proto.pause_sizes[0] < len(big)
        reader = asyncio.ensure_future(drain_peer(peer))
        await until(lambda: bool(proto.resume_sizes))
        assert proto.resume_sizes == [0]  # low is 0: resumed only once empty
        transport.close()
        assert await reader == b"firstsecond" + big
        await proto.wait_lost()
        proto.check()


async def test_lowering_high_flushes_the_batch_window_before_it_pauses() -> None:
    """S9.1: ``write(); write(); set_write_buffer_limits(0)`` on an idle connection: the second
    write only waits in the batch window, so it goes to the kernel and nothing pauses, as with
    asyncio's transport (whose writes went at once). Before, the window counted: pause_writing,
    then resume_writing (adversarial pass)."""
    ours, peer = socket.socketpair()
    with peer:
        transport, proto = await wrap(ours)
        transport.write(b"A")
        transport.write(b"B")
        transport.set_write_buffer_limits(0)
        assert transport.get_write_buffer_size() == 0 and proto.pause_sizes == []
        transport.close()
        assert await drain_peer(peer) == b"AB"
        await proto.wait_lost()
        assert proto.pause_sizes == [] and proto.resume_sizes == []
        proto.check()


async def test_WSATransport_lowering_high_pauses_at_once() -> None:
    ours, peer = _seqpacket()
    with peer:
        transport, proto = await wrap(ours)
        transport.send(b"x" * 500, MSG_PARTIAL)
        assert proto.pause_sizes == []
        transport.set_write_buffer_limits(high=499)
        assert proto.pause_sizes == [500]  # asyncio calls _maybe_pause_protocol() right there
        transport.abort()
        await proto.wait_lost()
        assert proto.resume_sizes == []  # no resume_writing once the connection is lost
        proto.check()


async def test_WSATransport_pause_resume_stream_balance() -> None:
    # A producer that obeys pause/resume on a slow peer: pauses and resumes alternate, every
    # pause happened above high, every resume at or below low, and the bytes arrive whole.
    ours, peer = socket.socketpair()
    with peer:
        resumed = asyncio.Event()
        resumed.set()

        class Producer(Recorder):
            def pause_writing(self) -> None:
                super().pause_writing()
                resumed.clear()

            def resume_writing(self) -> None:
                super().resume_writing()
                resumed.set()

        transport, proto = await wrap(ours, Producer)
        transport.set_write_buffer_limits(high=200_000, low=50_000)
        payload = pattern(8 << 20)
        reader = asyncio.ensure_future(drain_peer(peer, bufsize=64 * 1024))
        for i in range(0, len(payload), 100_000):
            await asyncio.wait_for(resumed.wait(), GUARD)
            transport.write(payload[i : i + 100_000])
        transport.close()
        assert await reader == payload
        await proto.wait_lost()
        assert proto.pause_sizes and all(size > 200_000 for size in proto.pause_sizes)
        assert all(size <= 50_000 for size in proto.resume_sizes)
        flow = [k for k in proto.kinds() if k in ("pause", "resume")]
        assert flow == ["pause", "resume"] * len(proto.resume_sizes) + ["pause"] * (len(flow) % 2)
        proto.check()


async def test_WSATransport_pause_writing_raising(loop_errors: list[dict[str, Any]]) -> None:
    class Broken(Recorder):
        def pause_writing(self) -> None:
            super().pause_writing()
            raise ValueError("pause failed")

    ours, peer = _seqpacket()
    with peer:
        transport, proto = await wrap(ours, Broken)
        transport.set_write_buffer_limits(high=10)
        transport.send(b"x" * 11, MSG_PARTIAL)  # the error goes to the handler, not to us
        assert [str(c["exception"]) for c in loop_errors] == ["pause failed"]
        assert loop_errors[0]["message"] == "protocol.pause_writing() failed"
        assert not transport.is_closing()
        transport.close()
        await proto.wait_lost()


async def test_WSATransport_stream_writer_drain() -> None:
    # asyncio's StreamWriter.drain() waits on exactly this flow control.
    ours, peer = socket.socketpair()
    with peer:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport, _ = await wsasend.connect_accepted_socket(lambda: protocol, ours)
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        payload = pattern(4 << 20)
        sink = asyncio.ensure_future(drain_peer(peer))
        for i in range(0, len(payload), 256 * 1024):
            writer.write(payload[i : i + 256 * 1024])
            await asyncio.wait_for(writer.drain(), GUARD)
            assert transport.get_write_buffer_size() <= transport.get_write_buffer_limits()[1]
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), GUARD)
        assert await sink == payload


@pytest.mark.parametrize("factory", [asyncio.Protocol, Recorder], ids=["plain", "send_completed"])
async def test_many_writes_in_one_iteration_then_drain_as_asyncio(factory: Any) -> None:
    """asyncio's write() never refuses for volume: "write many, then drain once" code (rows of
    a report, lines of a log) wrote 100,000 small writes in one loop iteration and met
    WSAEWOULDBLOCK at the 65,537th, each write one outstanding send (S5.6) although the kernel
    had room (at 1c42d6b). Writes behind a queued write now join it when the protocol is told
    of no send; a protocol with ``send_completed`` is told of each write, so the writes stay
    sends, under a bound raised to hold them. Byte-exact either way."""
    rows = [b"row %d\n" % i for i in range(100_000)]
    ours, peer = socket.socketpair()
    with peer:
        options = {"max_pending_sends": 200_000} if factory is Recorder else {}
        transport, _ = await wrap(ours, factory, **options)
        reader = asyncio.ensure_future(drain_peer(peer))
        for row in rows:
            transport.write(row)
        transport.writelines([b"end", b"\n"])
        engine = wsasend._api.find_engine(ours)
        assert engine is not None
        if factory is asyncio.Protocol:
            assert engine.pending_count() <= len(rows) // 1024 + 2  # joined, up to 1024 each
        transport.close()
        assert await asyncio.wait_for(reader, GUARD) == b"".join(rows) + b"end\n"


async def test_joined_writes_keep_the_bound_for_sends_and_their_order() -> None:
    """Only writes join writes: a send() between them is its own overlapped (S5.6 still counts
    it: past max_pending_sends it is refused) and keeps its place in the stream (S5.4)."""
    ours, peer = socket.socketpair()
    with peer:
        transport, _ = await wrap(ours, asyncio.Protocol, max_pending_sends=3)
        reader = asyncio.ensure_future(drain_peer(peer))
        blob = pattern(4 << 20, 2)
        # (The transport's engine owns the socket from the start, so this first write takes the
        # fast path: partly sent, queued, and joinable like any later write.)
        transport.write(blob)  # more than the socket takes: queued
        transport.write(b"a-;")  # joined to it
        for i in range(1000):
            transport.write(b"a%d;" % i)  # joined too (1024 buffers at most)
        ov = transport.send([b"<send>"])
        assert ov.pending
        transport.write(b"after")  # a new queued write (it may not join the send): 3 outstanding now
        with pytest.raises(wsasend.WSAError) as info:
            transport.send([b"refused"])
        assert info.value.winerror == wsasend.WSAErrorCode.WSAEWOULDBLOCK
        for i in range(3):
            transport.write(b"b%d;" % i)  # joins "after"
        transport.close()
        expected = blob + b"a-;" + b"".join(b"a%d;" % i for i in range(1000)) + b"<send>after" + b"b0;b1;b2;"
        assert await asyncio.wait_for(reader, GUARD) == expected
        assert await ov == 6


async def test_a_write_never_joins_its_overlapped_reposted_by_send() -> None:
    """S5.5, S5.3: a queued write's overlapped, handed to a protocol by send_completed and
    reposted with send() while it is the queue's tail again, is the protocol's send of its
    own bytes; a later write must not join it (it did: ``await`` gave 1 + 6, and a MSG_OOB
    repost's urgent mark moved to the write's last byte)."""

    class Told(asyncio.Protocol):
        def __init__(self) -> None:
            self.completed: list[wsasend.CompletedSend] = []

        def send_completed(self, completed: wsasend.CompletedSend) -> None:
            self.completed.append(completed)

    ours, peer = socket.socketpair()
    with peer:
        transport, _ = await wrap(ours, asyncio.Protocol)
        blob = pattern(4 << 20, 3)
        transport.send([blob])  # queued (a send: no write joins it)
        transport.write(b"t" * 10)  # a queued write of its own: the one later writes would join
        told = Told()
        transport.set_protocol(told)
        reader = asyncio.ensure_future(drain_peer(peer))
        await until(lambda: any(c.nbytes == 10 for c in told.completed))
        tail = next(c.overlapped for c in told.completed if c.nbytes == 10)
        busy = transport.send([blob])
        assert busy.pending  # (the socket pair takes far less than 4 MiB at once)
        assert transport.send([b"U"], overlapped=tail) is tail
        transport.set_protocol(asyncio.Protocol())
        transport.write(b"JOINED")
        assert await tail == 1
        assert tail.transferred == 1
        transport.close()
        assert await asyncio.wait_for(reader, GUARD) == blob + b"t" * 10 + blob + b"U" + b"JOINED"


async def test_resume_writing_at_low_water_inside_one_long_send() -> None:
    """asyncio checks the low-water mark after each send syscall. Ours checked it only when a
    send completed, so 1,000 writes joined into one send (or one large write) kept the
    protocol paused until all of it had gone: resume_writing came at 0 bytes, not at the low
    water mark (at 27522fc). The check now also runs on partial progress while paused."""
    events: list[tuple[str, int]] = []

    class Paused(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def pause_writing(self) -> None:
            events.append(("pause", self.transport.get_write_buffer_size()))  # type: ignore[attr-defined]

        def resume_writing(self) -> None:
            events.append(("resume", self.transport.get_write_buffer_size()))  # type: ignore[attr-defined]

    ours, peer = socket.socketpair()
    with peer:
        for sock in (ours, peer):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        transport, _ = await wrap(ours, Paused)
        transport.set_write_buffer_limits(400_000, 200_000)
        transport.write(b"first")  # goes at once; the writes behind it join one send
        rows = [b"%06d" % i * 100 for i in range(1000)]  # 600 KB
        for row in rows:
            transport.write(row)
        # Above 400,000 the window went to the kernel, which took what it had room for (as
        # asyncio's write() gives it at once); the protocol paused for the rest.
        assert [kind for kind, _ in events] == ["pause"] and 400_000 < transport.get_write_buffer_size() < 600_000
        peer.setblocking(False)
        loop = asyncio.get_running_loop()
        received = bytearray()
        while len(events) < 2:  # read slowly until the protocol is resumed
            received += await asyncio.wait_for(loop.sock_recv(peer, 16 * 1024), GUARD)
            for _ in range(3):
                await asyncio.sleep(0)
        kind, size = events[1]
        assert kind == "resume" and 0 < size <= 200_000  # the send still had bytes to go
        transport.close()
        received += await drain_peer(peer)
        assert bytes(received) == b"first" + b"".join(rows)


async def test_a_write_told_to_send_completed_is_never_joined_by_later_writes() -> None:
    """A write posted while the protocol has send_completed is told with its own count; writes
    made after switching to a protocol without it joined it, and it was told of their bytes
    too (15 for a 10-byte write, at 27522fc)."""
    told: list[int] = []

    class Told(asyncio.Protocol):
        def send_completed(self, overlapped: Any) -> None:
            told.append(overlapped.transferred)

    ours, peer = socket.socketpair()
    with peer:
        transport, _ = await wrap(ours, asyncio.Protocol)
        transport.write(b"x" * 1_000_000)  # queued: the peer is not reading yet
        transport.set_protocol(Told())
        transport.write(b"A" * 10)
        transport.set_protocol(asyncio.Protocol())
        transport.write(b"B" * 5)
        told_protocol = Told()
        transport.set_protocol(told_protocol)
        reader = asyncio.ensure_future(drain_peer(peer))
        await until(lambda: transport.get_write_buffer_size() == 0 and len(told) == 3)
        assert told == [1_000_000, 10, 5]
        transport.close()
        assert await asyncio.wait_for(reader, GUARD) == b"x" * 1_000_000 + b"A" * 10 + b"B" * 5


@pytest.mark.parametrize("later", [False, True], ids=["at_once", "later"])
async def test_a_paused_protocol_is_resumed_before_lost_after_write_eof_then_close(later: bool) -> None:
    """S7.2, as asyncio's and uvloop's transports: a protocol paused for writing that calls
    ``write_eof()`` and then ``close()`` hears ``resume_writing()`` as the buffer drains, then
    ``connection_lost(None)``. The resume came too late and was dropped: ``connection_lost``
    without it (every run; adversarial pass)."""
    ours, peer = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUF)
    transport, proto = await wrap(ours)
    payload = pattern(4_000_000)
    transport.write(payload)
    assert proto.paused
    transport.write_eof()
    if later:
        await asyncio.sleep(0)
    transport.close()
    assert await drain_peer(peer) == payload
    await proto.wait_lost()
    kinds = [kind for kind, _ in proto.events if kind in ("pause", "resume", "lost")]
    assert kinds == ["pause", "resume", "lost"]
    proto.check()
    peer.close()
