"""A process out of descriptors (EMFILE): queued sends wait, nothing is lost (SPEC S6.4, S9.1).

When a send meets a full socket buffer the engine registers its own duplicate of the socket's
descriptor with the loop (S5.11). With no descriptor to spare (an accept flood, a low
RLIMIT_NOFILE) the duplicate cannot be made; the engine took that for "closed behind our back"
and aborted every queued send, so a server's response was cut short with no error anywhere,
where asyncio's transport simply keeps the bytes buffered. Every test runs on asyncio and
uvloop; the waits are hang guards.
"""

from __future__ import annotations

import asyncio
import os
import resource
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.helpers import SMALL_BUF, pattern, read_exactly
from wsasend import wsa_send

from ..transport.util import GUARD, drain_peer, wrap


@contextmanager
def no_descriptor_left(leave: int = 0) -> Iterator[None]:
    """Use up every descriptor the process may open (the soft limit lowered to near the open
    ones first, so that takes a few dozen) but ``leave``, and give them all back on exit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    highest = max(int(name) for name in os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, highest + 32), hard))
    hog: list[int] = []
    try:
        while True:
            try:
                hog.append(os.open(os.devnull, os.O_RDONLY))
            except OSError:
                break
        for _ in range(leave):
            os.close(hog.pop())
        yield
    finally:
        for fd in hog:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def small_pair() -> tuple[socket.socket, socket.socket]:
    ours, peer = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUF)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUF)
    ours.setblocking(False)
    return ours, peer


async def test_posted_sends_wait_for_a_descriptor_and_then_go() -> None:
    ours, peer = small_pair()
    with ours, peer:
        blob = pattern(2 << 20, 5)
        with no_descriptor_left():
            first = wsa_send(ours, [blob])
            second = wsa_send(ours, [b"tail"])
            await asyncio.sleep(0.05)  # (the batch window closes; no descriptor to register)
            assert first.pending and second.pending  # were aborted: WSA_OPERATION_ABORTED
        data = await asyncio.wait_for(read_exactly(peer, len(blob) + 4), GUARD)
        assert data == blob + b"tail"
        assert await first == len(blob)
        assert await second == 4


async def test_a_transport_keeps_its_bytes_while_no_descriptor_is_left() -> None:
    """The aiohttp case: a large response to a slow client, then more writes; stock asyncio
    delivers all of it, and so must WSATransport (S9.1)."""
    ours, peer = small_pair()
    with peer:
        transport, _ = await wrap(ours, asyncio.Protocol)
        blob = pattern(4 << 20, 6)
        with no_descriptor_left():
            transport.write(blob)
            await asyncio.sleep(0.05)
            transport.write(b"TAIL")
            assert not transport.is_closing()
            assert transport.get_write_buffer_size() > 0
        reader = asyncio.ensure_future(drain_peer(peer))
        transport.close()
        assert await asyncio.wait_for(reader, GUARD) == blob + b"TAIL"


# The scenario below in a child (its own loop, the loop's exception handler its own: the accept
# that finds no descriptor after the last one is reported there, as asyncio reports it). Prints
# what the protocol saw and whether the client got the reply and the end of the stream.
_LAST_DESCRIPTOR_SERVER = """
import asyncio, socket, sys
import wsasend
from tests.reliability.test_fd_exhaustion import no_descriptor_left
from tests.helpers import recv_to_eof
seen = []
async def main():
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda loop, context: None)  # (the second accept's EMFILE)
    ended = asyncio.Event()
    class Reply(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport
        def data_received(self, data):
            seen.append(data.decode())
            self.transport.write(b"ok")
            self.transport.close()
        def connection_lost(self, exc):
            seen.append("lost")
            ended.set()
    server = await wsasend.create_server(Reply, "127.0.0.1", 0)
    client = socket.create_connection(server.sockets[0].getsockname())
    client.sendall(b"q")  # (accepted once the loop runs: below, with one descriptor left)
    with no_descriptor_left(leave=1):
        try:
            await asyncio.wait_for(ended.wait(), 10)
        except asyncio.TimeoutError:
            seen.append("timeout")
    client.settimeout(10)
    try:
        seen.append(recv_to_eof(client, 10).decode())
    except OSError as exc:
        seen.append(type(exc).__name__)
    client.close()
    server.close()
if sys.argv[1] == "uvloop":
    import uvloop
    uvloop.run(main())
else:
    asyncio.run(main())
print(" ".join(seen))
"""


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_a_connection_accepted_with_the_last_descriptor_reads_replies_and_ends(loop_name: str) -> None:
    """A server's connection accepted with the last descriptor the process may open: on uvloop
    the loop's first connection makes the loop's error watch, an epoll, which then cannot be
    made. It reads through the loop instead (as a socket the watch cannot take does), replies
    and ends. (Review, stop 51: the EMFILE raised out of the callback that had just told the
    protocol of the connection, which then never read and never ended: the client waited for
    ever.) The same on the default loop, which has no such watch."""
    child = subprocess.run(
        [sys.executable, "-c", _LAST_DESCRIPTOR_SERVER, loop_name],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )
    assert child.returncode == 0, child.stderr[-2000:]
    assert child.stdout.split() == ["q", "lost", "ok"]
