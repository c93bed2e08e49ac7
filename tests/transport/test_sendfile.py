"""``WSATransport.sendfile``: a file as one more send in the ordered queue (SPEC S9.3, S5.4, S6.4).

Every test runs on asyncio and on uvloop (tests/conftest.py), on real sockets and real files.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import SMALL_BUF, drain_ready, pattern, tcp_pair
from wsasend import WSAError, WSAErrorCode, WSATransport
from wsasend._sendfile import _SENDFILE_CHUNK

from .util import GUARD, drain_peer, until, wrap

SIZE = 3 * 1024 * 1024 + 12345  # larger than any loopback buffer here: the file send pends


@pytest.fixture
def data_file(tmp_path: Path) -> tuple[Path, bytes]:
    data = pattern(SIZE, 5)
    path = tmp_path / "payload.bin"
    path.write_bytes(data)
    return path, data


async def _pair(bufsize: int | None = SMALL_BUF) -> tuple[WSATransport, socket.socket]:
    a, b = tcp_pair(bufsize=bufsize)
    transport, _ = await wrap(a)
    return transport, b


async def test_sendfile_between_two_sends_arrives_in_order_byte_for_byte(data_file: tuple[Path, bytes]) -> None:
    path, data = data_file
    transport, peer = await _pair()
    reader = asyncio.ensure_future(drain_peer(peer))
    with path.open("rb") as f:
        head = transport.send([b"HEAD:", b"1234"])
        task = asyncio.ensure_future(transport.sendfile(f))
        await until(lambda: transport.get_write_buffer_size() > 0)  # the file is posted, pending
        assert not task.done()
        # TransmitFile's order: a send posted while the file is pending goes out after it.
        tail = transport.send([b":TAIL"])
        # asyncio's API refuses a bare write while a native sendfile runs (as asyncio does).
        with pytest.raises(RuntimeError, match="sendfile is in progress"):
            transport.write(b"refused")
        with pytest.raises(RuntimeError, match="sendfile is in progress"):
            transport.writelines([b"refused"])
        sent = await asyncio.wait_for(task, GUARD)
        assert sent == SIZE
        assert f.tell() == SIZE  # asyncio leaves the position after the last byte sent
        assert await head == 9 and await tail == 5
    transport.write(b"!")  # accepted again once the file is done
    transport.close()
    received = await asyncio.wait_for(reader, GUARD)
    assert received == b"HEAD:1234" + data + b":TAIL!"
    peer.close()


async def test_sendfile_offset_and_count(data_file: tuple[Path, bytes]) -> None:
    path, data = data_file
    transport, peer = await _pair()
    reader = asyncio.ensure_future(drain_peer(peer))
    with path.open("rb") as f:
        assert await transport.sendfile(f, 1000, 200_000) == 200_000
        assert f.tell() == 201_000
        assert await transport.sendfile(f, SIZE - 7) == 7  # offset only: to the end of the file
    transport.close()
    assert await asyncio.wait_for(reader, GUARD) == data[1000:201_000] + data[-7:]
    peer.close()


async def test_sendfile_count_past_end_of_file_sends_what_there_is(data_file: tuple[Path, bytes]) -> None:
    path, data = data_file
    transport, peer = await _pair()
    reader = asyncio.ensure_future(drain_peer(peer))
    with path.open("rb") as f:
        assert await transport.sendfile(f, SIZE - 100, 1_000_000) == 100
        assert await transport.sendfile(f, SIZE + 10, 5) == 0  # offset past the end: nothing
        assert f.tell() == SIZE
    transport.close()
    assert await asyncio.wait_for(reader, GUARD) == data[-100:]
    peer.close()


async def test_sendfile_count_reaches_bytes_the_file_gained_after_the_post(tmp_path: Path) -> None:
    # As asyncio's: a count is sent up to the end of the file as it is when its bytes go out,
    # not as it was at the call (it was clamped to the size then: a /proc file, whose size
    # reads 0, sent nothing for count=1000).
    path = tmp_path / "growing.bin"
    path.write_bytes(pattern(1000, 1))
    transport, peer = await _pair()
    with path.open("rb") as f:
        big = transport.send(pattern(1 << 20, 2))
        task = asyncio.ensure_future(transport.sendfile(f, 0, 3000))
        await until(lambda: transport.get_write_buffer_size() > (1 << 20) - (256 << 10) and big.pending)
        assert not task.done()
        with path.open("ab") as grow:
            grow.write(pattern(2000, 3))
        reader = asyncio.ensure_future(drain_peer(peer))
        assert await asyncio.wait_for(task, GUARD) == 3000
        assert f.tell() == 3000
        with Path("/proc/self/maps").open("rb") as proc:
            assert os.fstat(proc.fileno()).st_size == 0
            assert await transport.sendfile(proc, 0, 1000) == 1000
    transport.close()
    received = await asyncio.wait_for(reader, GUARD)
    assert received[: (1 << 20) + 3000] == pattern(1 << 20, 2) + pattern(1000, 1) + pattern(2000, 3)
    assert len(received) == (1 << 20) + 4000
    peer.close()


async def test_sendfile_peer_gone_mid_file_reports_exact_bytes_sent(data_file: tuple[Path, bytes]) -> None:
    """AF_UNIX: every byte the kernel consumed sits in the peer's receive queue, so the peer
    drains it and closes in one loop step (the engine cannot run in between): the failure's
    ``bytes_sent`` must equal exactly what the peer read, and the file position follow it."""
    path, _ = data_file
    a, b = socket.socketpair()
    transport, _ = await wrap(a)
    with path.open("rb") as f:
        task = asyncio.ensure_future(transport.sendfile(f))
        await until(lambda: 0 < transport.get_write_buffer_size() < SIZE)  # partly consumed, pending
        b.setblocking(False)
        got = 0
        while True:
            try:
                chunk = b.recv(1 << 20)
            except BlockingIOError:
                break
            got += len(chunk)
        b.close()
        with pytest.raises(WSAError) as info:
            await asyncio.wait_for(task, GUARD)
        assert info.value.winerror == WSAErrorCode.WSAECONNRESET
        assert 0 < got < SIZE
        assert info.value.bytes_sent == got
        assert f.tell() == got
    transport.abort()


async def test_sendfile_file_send_failing_fails_sends_behind_it_with_zero(data_file: tuple[Path, bytes]) -> None:
    """S6.3 for a file at the head: the sends queued behind it fail too, each with 0 bytes."""
    path, _ = data_file
    a, b = socket.socketpair()
    transport, _ = await wrap(a)
    with path.open("rb") as f:
        task = asyncio.ensure_future(transport.sendfile(f))
        await until(lambda: transport.get_write_buffer_size() > 0)
        behind = transport.send([b"after the file"])
        b.close()
        with pytest.raises(WSAError):
            await asyncio.wait_for(task, GUARD)
        with pytest.raises(WSAError) as info:
            await behind
        assert info.value.bytes_sent == 0 and behind.transferred == 0
    transport.abort()


async def test_sendfile_bytesio_takes_the_fallback(data_file: tuple[Path, bytes]) -> None:
    _, data = data_file
    transport, peer = await _pair()
    reader = asyncio.ensure_future(drain_peer(peer))
    buf = io.BytesIO(data)
    transport.send([b"<"])
    assert await transport.sendfile(buf, 10, 600_000) == 600_000
    assert buf.tell() == 600_010
    transport.send([b">"])
    with pytest.raises(asyncio.SendfileNotAvailableError):
        await transport.sendfile(buf, fallback=False)
    transport.close()
    assert await asyncio.wait_for(reader, GUARD) == b"<" + data[10:600_010] + b">"
    peer.close()


async def test_sendfile_pipe_takes_the_fallback() -> None:
    data = pattern(300_000, 9)
    r, w = os.pipe()

    def feed() -> None:
        with os.fdopen(w, "wb") as out:
            out.write(data)

    feeder = threading.Thread(target=feed)
    feeder.start()
    transport, peer = await _pair()
    reader = asyncio.ensure_future(drain_peer(peer))
    with os.fdopen(r, "rb") as pipe_file:
        assert await transport.sendfile(pipe_file) == len(data)
    feeder.join(GUARD)
    transport.close()
    assert await asyncio.wait_for(reader, GUARD) == data
    peer.close()


async def test_sendfile_refused_arguments_as_asyncio(data_file: tuple[Path, bytes]) -> None:
    path, _ = data_file
    transport, peer = await _pair()
    bad: list[tuple[dict[str, Any], type[Exception]]] = [
        ({"offset": -1}, ValueError),
        ({"offset": 1.5}, TypeError),
        ({"count": 0}, ValueError),
        ({"count": "1"}, TypeError),
    ]
    with path.open("rb") as f:
        for kwargs, exc_type in bad:
            with pytest.raises(exc_type):
                await transport.sendfile(f, **kwargs)
    with path.open("r") as text, pytest.raises(ValueError, match="binary mode"):
        await transport.sendfile(text)
    assert transport.get_write_buffer_size() == 0
    transport.close()
    with path.open("rb") as f, pytest.raises(RuntimeError, match="closing"):
        await transport.sendfile(f)
    peer.close()


async def test_sendfile_small_file_refuses_bare_write_like_asyncio(tmp_path: Path) -> None:
    """asyncio's sendfile is "in progress" for at least one loop iteration after it starts, even
    for a file the kernel takes at once (CPython's test_sendfile_prevents_bare_write): the task
    that started it suspends, and a write() made meanwhile is refused. Failed every run (2/2
    loops) while the file send was awaited with ``await ov``, which flushed it synchronously."""
    path = tmp_path / "small.bin"
    path.write_bytes(b"s" * 1000)
    transport, peer = await _pair(None)
    reader = asyncio.ensure_future(drain_peer(peer))
    started = asyncio.get_running_loop().create_future()

    async def send_it() -> int:
        with path.open("rb") as f:
            started.set_result(None)
            return await transport.sendfile(f)

    task = asyncio.ensure_future(send_it())
    await started
    with pytest.raises(RuntimeError, match="sendfile is in progress"):
        transport.write(b"data")
    assert await asyncio.wait_for(task, GUARD) == 1000
    transport.write(b"!")
    transport.close()
    assert await asyncio.wait_for(reader, GUARD) == b"s" * 1000 + b"!"
    peer.close()


async def test_sendfile_goes_through_the_transports_own_methods() -> None:
    # A subclass that overrides the native or the fallback half is used by sendfile() (the
    # halves are methods so that loop.sendfile keeps asyncio's structure, S9.3).
    from .util import Recorder

    calls: list[str] = []

    class Mine(WSATransport):
        def _sendfile_native(self, file: Any, offset: object, count: object) -> Any:
            calls.append("native")
            return super()._sendfile_native(file, offset, count)

        def _sendfile_fallback(self, file: Any, offset: object, count: object) -> Any:
            calls.append("fallback")
            return super()._sendfile_fallback(file, offset, count)

    ours, peer = socket.socketpair()
    with peer:
        proto = Recorder()
        transport = Mine(ours, proto)
        assert await transport.sendfile(io.BytesIO(b"not a regular file"), 4) == 14
        transport.close()
        assert await drain_peer(peer) == b"a regular file"
        await proto.wait_lost()
    assert calls == ["native", "fallback"]


async def test_sendfile_of_a_write_only_file_is_not_available_as_asyncio(tmp_path: Path) -> None:
    """os.sendfile fails with EBADF before a byte goes: asyncio's SendfileNotAvailableError
    (fallback=False), else its fallback, whose read fails as asyncio's does. Nothing is sent
    and the transport stays usable. Raised WSAError(WSAEINVAL) on both paths at 4a832f9."""
    path = tmp_path / "w.bin"
    path.write_bytes(pattern(100_000, 3))
    transport, peer = await _pair()
    reader = asyncio.ensure_future(drain_peer(peer))
    with path.open("ab") as f:
        with pytest.raises(asyncio.SendfileNotAvailableError, match=r"os\.sendfile call failed"):
            await transport.sendfile(f, fallback=False)
        with pytest.raises(io.UnsupportedOperation):
            await transport.sendfile(f)
    assert not transport.is_closing()
    transport.write(b"still open")
    transport.close()
    assert await asyncio.wait_for(reader, GUARD) == b"still open"
    peer.close()


async def test_sendfile_fallback_cancelled_leaves_the_position_at_what_the_peer_gets() -> None:
    """S5.7 in the fallback: a block already started goes out whole after the cancel, so the
    file's position counts it (asyncio's contract: ``tell()`` says what was sent). At 4a832f9
    the position lagged the peer's bytes by the block in flight."""
    data = pattern(8 << 20, 6)
    buf = io.BytesIO(data)
    transport, peer = await _pair(256 * 1024)  # room for a few blocks, not for 8 MiB
    task = asyncio.ensure_future(transport.sendfile(buf))
    # A block after the first is pending (each is read only once the one before completed):
    # the position set at the cancel then comes from the count, not from where reading was.
    await until(lambda: buf.tell() > 256 * 1024 and transport.get_write_buffer_size() > 0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    reader = asyncio.ensure_future(drain_peer(peer))
    transport.close()
    received = await asyncio.wait_for(reader, GUARD)
    assert 0 < len(received) < len(data)
    assert received == data[: len(received)]
    assert buf.tell() == len(received)
    peer.close()


class _GatedBytes(io.BytesIO):
    """A BytesIO (so the fallback) whose read of block ``gate`` waits for ``go``: the test can act
    between two blocks, with every block before it consumed and none in the queue."""

    def __init__(self, data: bytes, gate: int) -> None:
        super().__init__(data)
        self.reads = 0
        self.gate = gate
        self.reading = threading.Event()
        self.go = threading.Event()

    def readinto(self, buffer: Any) -> int:  # runs in the executor's thread
        self.reads += 1
        if self.reads == self.gate:
            self.reading.set()
            self.go.wait(GUARD)
        return super().readinto(buffer)


@pytest.mark.parametrize("how", ["close", "write_eof", "abort"])
async def test_sendfile_fallback_stopped_between_blocks_reports_the_blocks_sent(how: str) -> None:
    """S6.4 for the fallback: close(), write_eof() or abort() between two blocks makes the next
    block's send() refuse (WSAESHUTDOWN); the error counts the blocks consumed before it, as the
    native path and a block failing inside its send do. Reported bytes_sent=0 before the fix."""
    data = pattern(4 * _SENDFILE_CHUNK, 7)
    buf = _GatedBytes(data, gate=3)
    transport, peer = await _pair()
    reader = asyncio.ensure_future(drain_peer(peer))
    task = asyncio.ensure_future(transport.sendfile(buf))
    await until(buf.reading.is_set)  # two blocks consumed; the third is being read
    getattr(transport, how)()
    buf.go.set()
    with pytest.raises(WSAError) as info:
        await asyncio.wait_for(task, GUARD)
    assert info.value.winerror == WSAErrorCode.WSAESHUTDOWN
    assert info.value.bytes_sent == 2 * _SENDFILE_CHUNK
    assert buf.tell() == 2 * _SENDFILE_CHUNK
    if how != "abort":
        if how == "write_eof":
            transport.close()
        assert await asyncio.wait_for(reader, GUARD) == data[: 2 * _SENDFILE_CHUNK]
    else:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await reader
    peer.close()


async def test_sendfile_native_cancelled_mid_file_leaves_the_position_at_what_the_peer_gets(
    data_file: tuple[Path, bytes],
) -> None:
    """S5.7 in the native path: the file send had started, so the cancel cannot withdraw it and
    the whole range reaches the peer; the position says so (as the fallback's does), at the
    cancel and once the send ended. Stayed at the start offset before the fix."""
    path, data = data_file
    start, end = 1000, SIZE - 1000
    transport, peer = await _pair()  # the peer reads nothing until the cancel: the send pends
    with path.open("rb") as f:
        task = asyncio.ensure_future(transport.sendfile(f, start, end - start))
        await until(lambda: 0 < transport.get_write_buffer_size() < end - start)  # started, pending
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert f.tell() == end
        reader = asyncio.ensure_future(drain_peer(peer))
        transport.close()
        assert await asyncio.wait_for(reader, GUARD) == data[start:end]  # S5.7: all of it
        assert f.tell() == end
    peer.close()


async def test_a_file_closed_while_its_send_finishes_never_lends_its_number(
    data_file: tuple[Path, bytes], tmp_path: Path
) -> None:
    """S5.11 for files: a cancelled file send that finishes in the background (S5.7) while its
    caller closes the file and opens another, which takes the same descriptor number. The
    engine read through the number: the rest of the range came from the other file. It reads
    through its own duplicate now, so the peer gets the first file's bytes, whole."""
    path, data = data_file
    other = tmp_path / "other.bin"
    other.write_bytes(b"X" * SIZE)
    transport, peer = await _pair()  # the peer reads nothing until the swap: the send pends
    f = path.open("rb")
    number = f.fileno()
    task = asyncio.ensure_future(transport.sendfile(f))
    await until(lambda: 0 < transport.get_write_buffer_size() < SIZE)  # started, pending
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    f.close()
    with other.open("rb") as g:
        assert g.fileno() == number  # (the case this test is about: the number is reused)
        reader = asyncio.ensure_future(drain_peer(peer))
        transport.close()
        assert await asyncio.wait_for(reader, GUARD) == data
    peer.close()


async def test_sendfile_native_cancelled_then_failing_leaves_the_position_at_what_went(
    data_file: tuple[Path, bytes],
) -> None:
    """The cancelled file send that went on in the background fails (the peer is gone): once it
    ended, the position is after the last byte the kernel consumed, the peer's count, not the end
    of the range the cancel assumed. AF_UNIX, as test_sendfile_peer_gone_mid_file_reports_exact_
    bytes_sent, so that what the peer read is exactly what was consumed."""
    path, _ = data_file
    a, b = socket.socketpair()
    transport, proto = await wrap(a)
    with path.open("rb") as f:
        task = asyncio.ensure_future(transport.sendfile(f))
        await until(lambda: 0 < transport.get_write_buffer_size() < SIZE)  # started, pending
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert f.tell() == SIZE  # it is going out whole, as far as anyone can tell yet
        got = drain_ready(b)
        b.close()
        assert 0 < got < SIZE
        await asyncio.wait_for(proto.wait_lost(), GUARD)  # the file send failed, and the connection
        await until(lambda: f.tell() != SIZE)
        assert f.tell() == got
    transport.abort()


class _Ponger(asyncio.Protocol):
    """Answers each read with PONG, from data_received (an ordinary request/response server)."""

    def __init__(self) -> None:
        self.received: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received.append(data)
        self.transport.write(b"PONG")


@pytest.mark.parametrize("path_kind", ["native", "fallback"])
async def test_sendfile_pauses_reading_so_a_reply_goes_after_the_file(
    data_file: tuple[Path, bytes], path_kind: str
) -> None:
    """S9.3, as asyncio's both paths: reading is paused for the length of a sendfile, so a
    protocol that answers in ``data_received`` answers after the file. Reading went on: the
    fallback put the reply inside the file on the wire, and the native path's ``write()`` met
    "sendfile is in progress" and lost the connection (adversarial pass, every run)."""
    path, data = data_file
    a, peer = tcp_pair(bufsize=SMALL_BUF)
    transport, proto = await wrap(a, _Ponger)
    loop = asyncio.get_running_loop()

    def peer_side() -> bytes:
        peer.settimeout(GUARD)
        got = bytearray(peer.recv(1 << 16))  # the file has started
        peer.sendall(b"PING")
        while len(got) < SIZE + 4:
            chunk = peer.recv(1 << 20)
            assert chunk, "end of stream before the file and the reply"
            got += chunk
        return bytes(got)

    reader = loop.run_in_executor(None, peer_side)
    with path.open("rb") as f:
        source: Any = f if path_kind == "native" else io.BytesIO(f.read())
        assert await asyncio.wait_for(transport.sendfile(source), GUARD) == SIZE
    assert transport.is_reading()  # resumed
    received = await asyncio.wait_for(reader, GUARD)
    assert received == data + b"PONG"
    assert b"".join(proto.received) == b"PING"
    transport.close()
    peer.close()
