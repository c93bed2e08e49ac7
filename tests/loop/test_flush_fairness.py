"""A flush lets the loop run: a reader as fast as the sender does not starve the loop (S5.4, S5.1).

The engine sends a stream's queue until the kernel says EAGAIN. Against a reader that keeps
up, EAGAIN never came, and one callback sent the whole queue (64 MiB, a gigabyte...) while
every other connection and timer of the loop waited. A flush now makes at most 32 system calls
(libuv's stream writes stop at 32 for the same reason), then lets the loop run and goes on from
its writer.

"As fast as the sender" is made deterministic here with a send buffer the kernel lets grow to
256 MiB (``SO_SNDBUFFORCE``, root only): the kernel takes the whole queue, as a fast reader
would, and no sendmsg ever meets EAGAIN. Both loops. Before the change, the callback scheduled
right after the posts ran once every send had completed (0 pending), on both loops.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

import wsasend
from tests.helpers import pattern, recv_exactly
from tests.transport.util import wrap
from wsasend import WSAOverlapped, _engine, wsa_send

GUARD = 60.0
_SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)
_MIB = 1 << 20


@pytest.fixture
def roomy_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """An AF_UNIX stream pair whose first end's kernel buffer takes 256 MiB unread."""
    a, b = socket.socketpair()
    with a, b:
        try:
            a.setsockopt(socket.SOL_SOCKET, _SO_SNDBUFFORCE, 256 * _MIB)
        except PermissionError:
            pytest.skip("SO_SNDBUFFORCE needs CAP_NET_ADMIN (root)")
        a.setblocking(False)
        yield a, b


async def test_a_queue_the_kernel_takes_whole_is_sent_over_several_loop_iterations(
    roomy_pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = roomy_pair
    payload = pattern(64 * _MIB)
    view = memoryview(payload)
    sends = [wsa_send(a, [view[i : i + _MIB]]) for i in range(0, len(payload), _MIB)]
    seen: list[int] = []
    # Queued after the batch window's tick (opened by the first post): it runs once the
    # window's flush has let the loop go.
    asyncio.get_running_loop().call_soon(lambda: seen.append(sum(1 for ov in sends if ov.pending)))
    done = await asyncio.wait_for(asyncio.gather(*sends), GUARD)  # (a hang guard)
    assert seen and seen[0] > 0, "the loop ran nothing else until every send had gone out"
    assert done == [_MIB] * 64
    assert all(isinstance(ov, WSAOverlapped) and ov.transferred == _MIB for ov in sends)
    assert recv_exactly(b, len(payload), GUARD) == payload


async def test_another_connections_send_goes_out_while_a_big_queue_waits(
    roomy_pair: tuple[socket.socket, socket.socket],
) -> None:
    """Two connections on one loop: a send posted on the second while the first's big queue
    goes out completes before that queue does, not after all of it."""
    a, b = roomy_pair
    c, d = socket.socketpair()
    with c, d:
        c.setblocking(False)
        big = [wsa_send(a, [pattern(_MIB, seed=i)]) for i in range(64)]
        at_ping: list[tuple[bool, int]] = []

        def ping() -> None:  # another connection's protocol, posting its reply
            small = wsa_send(c, [b"ping"])
            at_ping.append((small.pending, sum(1 for ov in big if ov.pending)))
            pings.append(small)

        pings: list[WSAOverlapped] = []
        asyncio.get_running_loop().call_soon(ping)  # (queued behind the window's tick)
        await asyncio.wait_for(asyncio.gather(*big), GUARD)
        assert await asyncio.wait_for(pings[0], GUARD) == 4
        # The ping went out at once (an idle socket), while the big queue was still waiting.
        assert at_ping[0][0] is False
        assert at_ping[0][1] > 0, "the other connection waited for the whole queue"
        assert recv_exactly(d, 4, GUARD) == b"ping"
        for i in range(64):
            assert recv_exactly(b, _MIB, GUARD) == pattern(_MIB, seed=i)


@pytest.mark.skipif(wsasend.compiled, reason="the compiled build inlines _SENDFILE_MAX (a Final)")
async def test_a_file_send_the_kernel_takes_whole_lets_the_loop_run(
    roomy_pair: tuple[socket.socket, socket.socket], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same for a file send (S9.3), whose ``os.sendfile`` calls take at most 1 MiB each
    here: one call takes the whole file otherwise (a roomy buffer), where a fast reader's
    smaller buffer takes about a buffer's worth a call."""
    monkeypatch.setattr(_engine, "_SENDFILE_MAX", _MIB)
    a, b = roomy_pair
    content = pattern(64 * _MIB, seed=3)
    path = tmp_path / "file"
    path.write_bytes(content)
    transport, _ = await wrap(a)
    loop = asyncio.get_running_loop()
    left: list[int] = []  # the transport's unsent bytes, seen once per loop iteration

    def beat() -> None:
        left.append(transport.get_write_buffer_size())
        if not task.done():
            loop.call_soon(beat)

    with path.open("rb") as f:
        task = asyncio.ensure_future(transport.sendfile(f))
        loop.call_soon(beat)
        assert await asyncio.wait_for(task, GUARD) == len(content)
    assert any(0 < n < len(content) for n in left), "the loop ran nothing else while the file went out"
    transport.close()
    assert recv_exactly(b, len(content), GUARD) == content
