"""A message transport receives any message the kernel can carry (issue 10 item 12; SPEC S4.3, S7.1).

Before the fix a WSATransport read at most max(256 KiB, SO_RCVBUF) per message, so a 1 MiB
AF_UNIX datagram or seqpacket record, well within the sender's ``max_message_size``, came in
truncated and ended the connection with WSAEMSGSIZE. Every case here runs on both loops, with
``data_received`` and with ``asyncio.BufferedProtocol``.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from tests.helpers import pattern
from tests.transport.util import GUARD, wrap
from wsasend import max_message_size, wsa_send

SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)
KINDS = {"dgram": socket.SOCK_DGRAM, "seqpacket": socket.SOCK_SEQPACKET}
MIB = 1 << 20


def _big_sender(kind: str) -> tuple[socket.socket, socket.socket]:
    ours, peer = socket.socketpair(socket.AF_UNIX, KINDS[kind])
    # AF_UNIX messages are bounded by the SENDER's buffer: make room for the largest one.
    try:
        peer.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, 8 * MIB)
    except PermissionError:
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 * MIB)
    # The old read size was max(256 KiB, SO_RCVBUF): a message above it is what this is about.
    old_limit = max(256 * 1024, ours.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
    if max_message_size(peer) <= old_limit:
        ours.close()
        peer.close()
        pytest.skip("cannot raise SO_SNDBUF above the receive buffer here")
    return ours, peer


def _big(peer: socket.socket) -> int:
    """1 MiB, or the most the sender can send when its buffer cannot be raised that far."""
    return min(MIB, max_message_size(peer))


class BufferedRecorder(asyncio.BufferedProtocol):
    """Collects received bytes and each buffer_updated size; its buffer is ``size`` bytes."""

    def __init__(self, size: int) -> None:
        self.buf = bytearray(size)
        self.data = bytearray()
        self.updates: list[int] = []
        self.lost: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    def get_buffer(self, sizehint: int) -> Any:
        return self.buf

    def buffer_updated(self, nbytes: int) -> None:
        self.updates.append(nbytes)
        self.data += self.buf[:nbytes]

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost.set_result(exc)


async def _until(predicate: Any) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.001)

    await asyncio.wait_for(poll(), GUARD)


@pytest.mark.parametrize("kind", sorted(KINDS))
async def test_WSATransport_receives_messages_up_to_the_senders_max(kind: str) -> None:
    """1 MiB, the sender's max_message_size, and small ones around them, each delivered whole
    as one data_received (failed before the fix: connection_lost(WSAEMSGSIZE) at the 1 MiB
    message, 4/4 kind x loop runs)."""
    ours, peer = _big_sender(kind)
    with peer:
        transport, proto = await wrap(ours)
        sizes = [5, _big(peer), 7, max_message_size(peer), 300_000, 1]
        messages = [pattern(n, seed=i) for i, n in enumerate(sizes)]
        for message in messages:
            assert await asyncio.wait_for(wsa_send(peer, [message]), GUARD) == len(message)
        await _until(lambda: len(proto.data) >= sum(sizes) or proto.lost.done())
        assert not proto.lost.done(), proto.lost.result()
        assert [n for kind_, n in proto.events if kind_ == "data"] == sizes
        assert proto.data == b"".join(messages)
        assert transport.is_reading()
        transport.close()
        assert await proto.wait_lost() is None
        proto.check()


@pytest.mark.parametrize("kind", sorted(KINDS))
async def test_WSATransport_buffered_protocol_gets_a_message_larger_than_its_buffer(kind: str) -> None:
    """A BufferedProtocol whose buffer is 64 KiB gets a 1 MiB message in order, in pieces of
    its buffer, and a small one in one buffer_updated (failed before the fix: WSAEMSGSIZE,
    4/4 kind x loop runs)."""
    ours, peer = _big_sender(kind)
    with peer:
        transport, proto = await wrap(ours, lambda: BufferedRecorder(65536))
        size = _big(peer)
        big, small = pattern(size, seed=1), pattern(100, seed=2)
        assert await asyncio.wait_for(wsa_send(peer, [big]), GUARD) == size
        assert await asyncio.wait_for(wsa_send(peer, [small]), GUARD) == 100
        await _until(lambda: len(proto.data) >= size + 100 or proto.lost.done())
        assert not proto.lost.done(), proto.lost.result()
        assert proto.data == big + small
        assert sum(proto.updates[:-1]) == size and proto.updates[-1] == 100
        assert all(0 < n <= 65536 for n in proto.updates)
        transport.close()
        assert await asyncio.wait_for(proto.lost, GUARD) is None


async def test_WSATransport_many_small_datagrams_stay_whole() -> None:
    """The common path: small datagrams back to back, each one data_received, in order."""
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with peer:
        transport, proto = await wrap(ours)
        messages = [pattern(1 + i % 300, seed=i) for i in range(500)]
        for message in messages:
            await asyncio.wait_for(wsa_send(peer, [message]), GUARD)
        await _until(lambda: len(proto.data) >= sum(map(len, messages)))
        assert [n for kind_, n in proto.events if kind_ == "data"] == [len(m) for m in messages]
        assert proto.data == b"".join(messages)
        transport.close()
        assert await proto.wait_lost() is None
        proto.check()
