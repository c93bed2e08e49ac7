"""A send of one buffer on a plain socket goes out with ``send(2)`` (issue 11): same contract.

``post_list`` sends a lone ``bytes`` buffer that it can try at once with ``socket.send`` instead
of ``sendmsg`` (cheaper per call, the same syscall with one iovec). These tests hold that path
to every rule the ``sendmsg`` path keeps: byte-exact, ordered streams with partial consumption
(S2, S5.4), exact counts per send, Winsock's code for a dead connection (S6.3), and a socket
subclass that overrides ``sendmsg`` still seeing every send (the tests' scripted sockets and
users' wrappers rely on it). Real sockets, both loops.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from tests.helpers import pattern, read_exactly, tcp_pair
from wsasend import WSAError, WSAErrorCode, wsa_send

GUARD = 30.0
# Sizes below, at and far above a 64 KiB socket buffer: the big ones are taken in part by the
# first send(2) and finished by the engine's writer (the sendmsg path).
SIZES = (1, 100, 4096, 65536, 200_000, 3, 300_000, 7)


def _pairs() -> list[tuple[str, tuple[socket.socket, socket.socket]]]:
    unix = socket.socketpair()
    unix[0].setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    return [("tcp", tcp_pair(bufsize=64 * 1024)), ("unix", unix)]


async def test_awaited_one_buffer_sends_are_byte_exact_with_exact_counts() -> None:
    for _name, (a, b) in _pairs():
        with a, b:
            a.setblocking(False)
            payloads = [pattern(n, seed=i) for i, n in enumerate(SIZES)]
            reader = asyncio.ensure_future(read_exactly(b, sum(SIZES)))
            counts = []
            for p in payloads:
                ov = wsa_send(a, [p])
                counts.append(await asyncio.wait_for(ov, GUARD))
                assert ov.transferred == len(p) and not ov.pending
            assert counts == list(SIZES)
            assert await asyncio.wait_for(reader, GUARD) == b"".join(payloads)


async def test_one_buffer_sends_behind_a_partly_sent_one_keep_their_order() -> None:
    a, b = tcp_pair(bufsize=64 * 1024)
    with a, b:
        a.setblocking(False)
        # The socket's first send makes its engine (the general path); later ones take the
        # fast path under test.
        assert await asyncio.wait_for(wsa_send(a, [b"w"]), GUARD) == 1
        big = pattern(400_000, seed=1)
        first = wsa_send(a, [big])
        assert first.pending  # the kernel took part of it: the rest waits for the writer
        small = [pattern(n, seed=10 + n) for n in (5, 1, 70_000, 2)]
        later = [wsa_send(a, [p]) for p in small]
        data = await asyncio.wait_for(read_exactly(b, 1 + len(big) + sum(map(len, small))), GUARD)
        assert data == b"w" + big + b"".join(small)
        results = await asyncio.wait_for(asyncio.gather(first, *later), GUARD)
        assert results == [len(big)] + [len(p) for p in small]


async def test_a_dead_connection_fails_one_buffer_sends_as_gathered_ones() -> None:
    """EPIPE on a peer-closed stream: the one-buffer path (send) reports the same Winsock code
    as the gathered path (sendmsg), with nothing consumed and no overlapped made (S5.2)."""
    outcomes = []
    for bufs in ([b"one"], [b"o", b"ne"]):
        a, b = socket.socketpair()
        with a:
            a.setblocking(False)
            b.close()
            with pytest.raises(WSAError) as info:
                wsa_send(a, bufs)
            outcomes.append((info.value.winerror, info.value.bytes_sent))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0] == (WSAErrorCode.WSAECONNRESET, 0)


class SendmsgCounter(socket.socket):
    """A subclass that overrides sendmsg: every send must still go through it."""

    sendmsg_calls = 0
    send_calls = 0

    def sendmsg(self, *args: Any) -> int:
        self.sendmsg_calls += 1
        return super().sendmsg(*args)

    def send(self, *args: Any) -> int:
        self.send_calls += 1
        return super().send(*args)


async def test_a_subclass_that_overrides_sendmsg_sees_one_buffer_sends() -> None:
    a0, b = socket.socketpair()
    a = SendmsgCounter(a0.family, a0.type, a0.proto, fileno=a0.detach())
    with a, b:
        a.setblocking(False)
        for i in range(5):
            assert await asyncio.wait_for(wsa_send(a, [pattern(10, seed=i)]), GUARD) == 10
        assert a.sendmsg_calls == 5 and a.send_calls == 0
        assert await asyncio.wait_for(read_exactly(b, 50), GUARD) == b"".join(pattern(10, seed=i) for i in range(5))
