"""The message sockets' fast path: ``wsa_send(sock, [bytes, ...])`` (issue 11 item 4).

A list of ``bytes`` with no flags, overlapped or routine on a message socket skips the general
``post`` (the engine's ``post_message_list``), like ``post_list`` for streams. These tests hold
it to every rule the general path keeps: one message per send, whole and in posting order even
when the kernel pushes back (S5.4), S4.3's size limit with nothing sent, S5.2's errors at the
call, S5.1's immediate completion, and the transport's ``write``/``writelines``/``send``. Both
loops, real sockets.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

import wsasend
from tests.helpers import fill_messages
from tests.loop.test_overlapped_sockets import MESSAGE_KINDS, message_pair, recv_messages
from wsasend import WSAError, WSAErrorCode, max_message_size, wsa_send

GUARD = 30.0


@pytest.mark.parametrize("kind", MESSAGE_KINDS)
async def test_datagram_list_of_bytes_completes_immediately_one_message_each(kind: str) -> None:
    tx, rx = message_pair(kind)
    try:
        ovs = [wsa_send(tx, [b"head-%d|" % i, b"body"]) for i in range(5)]
        assert all(ov.completed_immediately and ov.transferred == len(b"head-0|body") for ov in ovs)
        assert [await ov for ov in ovs] == [11] * 5
        async with asyncio.timeout(GUARD):
            assert await recv_messages(rx, 5) == [b"head-%d|body" % i for i in range(5)]
    finally:
        tx.close()
        rx.close()


@pytest.mark.parametrize("kind", ["unix-dgram", "seqpacket"])
async def test_datagram_fast_path_queues_in_order_behind_a_full_socket(kind: str) -> None:
    """EAGAIN: the send pends, later ones queue behind it, and all arrive whole, in order."""
    tx, rx = message_pair(kind)
    try:
        filled = fill_messages(tx)
        ovs = [wsa_send(tx, [b"m", b"%04d" % i]) for i in range(50)]
        assert all(ov.pending for ov in ovs)
        async with asyncio.timeout(GUARD):
            got = await recv_messages(rx, filled + 50)
            assert [await ov for ov in ovs] == [5] * 50
        assert got[filled:] == [b"m%04d" % i for i in range(50)]
    finally:
        tx.close()
        rx.close()


@pytest.mark.parametrize("kind", MESSAGE_KINDS)
async def test_datagram_fast_path_keeps_the_size_limit_and_sends_nothing(kind: str) -> None:
    tx, rx = message_pair(kind)
    try:
        limit = max_message_size(tx)
        with pytest.raises(WSAError) as info:
            wsa_send(tx, [b"x", bytes(limit)])  # S4.3: one byte over
        assert info.value.winerror == WSAErrorCode.WSAEMSGSIZE and info.value.bytes_sent == 0
        assert await wsa_send(tx, [b"sentinel"]) == 8
        async with asyncio.timeout(GUARD):
            assert await recv_messages(rx, 1) == [b"sentinel"]  # nothing went before it
    finally:
        tx.close()
        rx.close()


async def test_datagram_fast_path_on_a_closed_socket_is_WSAENOTSOCK() -> None:
    tx, rx = message_pair("udp4")
    try:
        assert await wsa_send(tx, [b"a"]) == 1
        tx.close()
        with pytest.raises(WSAError) as info:
            wsa_send(tx, [b"b"])
        assert info.value.winerror == WSAErrorCode.WSAENOTSOCK and info.value.bytes_sent == 0
    finally:
        rx.close()


async def test_datagram_fast_path_refused_peer_then_retry() -> None:
    """S3.3 on the fast path: a stale ICMP port-unreachable makes one send fail ECONNREFUSED
    inside the kernel; the general path's retry sends the datagram once (it is not lost)."""
    tx, rx = message_pair("udp4")
    port = rx.getsockname()[1]
    rx.close()
    try:
        # The first datagram to a closed port draws the ICMP error that the next send reports.
        tx.send(b"probe")
        await asyncio.sleep(0.05)
        try:
            ov = wsa_send(tx, [b"x"])
        except WSAError as exc:
            assert exc.winerror == WSAErrorCode.WSAECONNREFUSED  # both attempts refused: at the call
        else:
            assert await ov == 1  # the retry went out (the stale error was consumed)
        rx2 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx2.bind(("127.0.0.1", port))
        rx2.setblocking(False)
        try:
            assert await wsa_send(tx, [b"later"]) == 5
            async with asyncio.timeout(GUARD):
                assert b"later" in await recv_messages(rx2, 1)
        finally:
            rx2.close()
    finally:
        tx.close()


async def test_datagram_transport_write_writelines_send_use_the_fast_path_in_order() -> None:
    tx, rx = message_pair("unix-dgram")
    transport, _ = await wsasend.connect_accepted_socket(asyncio.Protocol, tx)
    try:
        transport.write(b"one")
        transport.writelines([b"tw", b"o"])
        ov = transport.send([b"thr", b"ee"])
        assert ov.completed_immediately and await ov == 5
        transport.writelines([])  # nothing: no empty datagram
        transport.write(b"")
        with pytest.raises(WSAError) as info:
            transport.send([bytes(max_message_size(tx) + 1)])
        assert info.value.winerror == WSAErrorCode.WSAEMSGSIZE
        assert not transport.is_closing()  # a message too large fails that message alone
        transport.write(b"four")
        async with asyncio.timeout(GUARD):
            assert await recv_messages(rx, 4) == [b"one", b"two", b"three", b"four"]
    finally:
        transport.close()
        rx.close()
