"""``partial_messages="cork"`` on stream sockets: MSG_PARTIAL bytes wait for the send that ends
them (SPEC S4.4), on both loops.

Linux's MSG_MORE is only a hint: AF_UNIX streams ignore it (the piece arrives at once), TCP lets
a piece go by itself after about 200 ms, and a zero-byte ending send makes no system call, so it
releases nothing. The engine holds the pieces in its own queue instead, still uncopied (S2.1),
and the send without the flag (or a graceful close, write_eof) lets them go, gathered with it.
"""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import Callable

import pytest

from tests.helpers import pattern, readable_now, tcp_pair
from wsasend import MSG_OOB, MSG_PARTIAL, WSAError, WSAErrorCode, WSAOverlapped

from .util import drain_peer, spin, until, wrap

PAIRS: dict[str, Callable[[], tuple[socket.socket, socket.socket]]] = {
    "unix": lambda: socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM),
    "tcp": lambda: tcp_pair(bufsize=64 * 1024),
}


@pytest.mark.parametrize("kind", sorted(PAIRS))
async def test_cork_pieces_wait_for_the_send_that_ends_them(kind: str) -> None:
    ours, peer = PAIRS[kind]()
    with peer:
        transport, proto = await wrap(ours, partial_messages="cork")
        first = transport.send(b"GET / ", MSG_PARTIAL)
        second = transport.send([b"HTTP/1.1", memoryview(b"\r\n")], MSG_PARTIAL)
        await spin()
        # Held: pending, counted as buffered, and not one byte at the peer.
        assert first.pending and second.pending
        assert transport.get_write_buffer_size() == 16
        assert readable_now(peer) == b""
        last = transport.send(b"Host: x\r\n\r\n")
        assert [await first, await second, await last] == [6, 10, 11]
        transport.close()
        assert await drain_peer(peer) == b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        assert await proto.wait_lost() is None
        assert proto.completed_overlapped() == [first, second, last]
        proto.check()


@pytest.mark.parametrize("ending", ["send", "empty_send", "write", "writelines"])
async def test_cork_any_send_without_the_flag_ends_the_run(ending: str) -> None:
    ours, peer = socket.socketpair()
    with peer:
        transport, proto = await wrap(ours, partial_messages="cork")
        piece = transport.send(b"piece", MSG_PARTIAL)
        await spin()
        assert readable_now(peer) == b""
        if ending == "send":
            assert await transport.send(b"+end") == 4
        elif ending == "empty_send":
            # A zero-byte send ends the run too (no MSG_MORE on a call that sends nothing
            # could have done that).
            assert await transport.send(b"") == 0
        elif ending == "write":
            transport.write(b"+end")
        else:
            transport.writelines([b"+e", b"nd"])
        assert await piece == 5
        tail = b"" if ending == "empty_send" else b"+end"
        transport.close()
        assert await drain_peer(peer) == b"piece" + tail
        await proto.wait_lost()
        proto.check()


@pytest.mark.parametrize("how", ["close", "write_eof"])
async def test_cork_graceful_close_lets_held_pieces_go(how: str) -> None:
    # A stream has no messages to lose: a graceful close sends what was accepted, as Linux
    # does with corked bytes (S6.2); an unfinished message on a message socket fails instead.
    ours, peer = socket.socketpair()
    with peer:
        transport, proto = await wrap(ours, partial_messages="cork")
        pieces = [transport.send(pattern(1000, i), MSG_PARTIAL) for i in range(3)]
        await spin()
        assert readable_now(peer) == b""
        getattr(transport, how)()
        assert [await p for p in pieces] == [1000, 1000, 1000]
        if how == "write_eof":
            transport.close()
        assert await drain_peer(peer) == b"".join(pattern(1000, i) for i in range(3))
        assert await proto.wait_lost() is None
        proto.check()


async def test_cork_abort_fails_held_pieces_with_nothing_sent() -> None:
    ours, peer = socket.socketpair()
    with peer:
        transport, proto = await wrap(ours, partial_messages="cork")
        done = transport.send(b"sent")
        assert await done == 4
        pieces = [transport.send(b"held", MSG_PARTIAL), transport.send(b"held", MSG_PARTIAL)]
        await spin()
        transport.abort()
        for p in pieces:
            with pytest.raises(WSAError) as info:
                await p
            assert info.value.winerror == WSAErrorCode.WSA_OPERATION_ABORTED
            assert info.value.bytes_sent == 0
        assert await drain_peer(peer) == b"sent"
        await proto.wait_lost()
        proto.check()


async def test_cork_cancel_of_a_held_piece_withdraws_it_alone() -> None:
    ours, peer = socket.socketpair()
    with peer:
        transport, proto = await wrap(ours, partial_messages="cork")
        a = transport.send(b"A", MSG_PARTIAL)
        b = transport.send(b"B", MSG_PARTIAL)
        c = transport.send(b"C", MSG_PARTIAL)
        assert b.cancel() is True
        with pytest.raises(WSAError) as info:
            await b
        assert info.value.winerror == WSAErrorCode.WSA_OPERATION_ABORTED
        assert transport.get_write_buffer_size() == 2
        await spin()
        assert readable_now(peer) == b""  # the others are still held
        # Withdrawing the last piece keeps the run open too.
        assert c.cancel() is True
        with pytest.raises(WSAError):
            await c
        assert a.pending
        assert await transport.send(b"D") == 1
        assert await a == 1
        transport.close()
        assert await drain_peer(peer) == b"AD"
        await proto.wait_lost()


async def test_cork_pieces_behind_a_full_buffer_keep_their_order() -> None:
    # Sends queued behind a slow reader, then pieces, then more sends: every byte in order,
    # and the pieces wait even once everything before them is out.
    ours, peer = tcp_pair(bufsize=64 * 1024)
    with peer:
        transport, proto = await wrap(ours, partial_messages="cork")
        big = pattern(1 << 20, 1)
        head = transport.send(big)
        assert head.pending
        held = [transport.send(pattern(300, 2), MSG_PARTIAL), transport.send(pattern(5, 3), MSG_PARTIAL)]
        loop = asyncio.get_running_loop()
        peer.setblocking(False)
        got = bytearray()
        while len(got) < len(big):
            got += await asyncio.wait_for(loop.sock_recv(peer, 1 << 16), 20)
        assert await head == len(big)
        await spin()
        assert bytes(got) == big and readable_now(peer) == b""
        assert all(p.pending for p in held)
        tail = transport.send([pattern(7, 4), pattern(70_000, 5)])
        assert [await p for p in held] == [300, 5]
        assert await tail == 70_007
        transport.close()
        rest = await drain_peer(peer)
        assert rest == pattern(300, 2) + pattern(5, 3) + pattern(7, 4) + pattern(70_000, 5)
        await proto.wait_lost()
        proto.check()


async def test_cork_urgent_piece_keeps_its_mark_on_its_own_last_byte() -> None:
    ours, peer = tcp_pair()
    with peer:
        transport, proto = await wrap(ours, partial_messages="cork")
        urgent = transport.send(b"ab!", MSG_OOB | MSG_PARTIAL)
        await spin()
        assert urgent.pending and readable_now(peer) == b""
        assert await transport.send(b"cd") == 2
        assert await urgent == 3
        loop = asyncio.get_running_loop()
        await until(lambda: peer.recv(1, socket.MSG_OOB | socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"!")
        assert peer.recv(1, socket.MSG_OOB) == b"!"
        transport.close()
        peer.setblocking(False)
        assert await asyncio.wait_for(loop.sock_recv(peer, 100), 20) == b"ab"
        assert await drain_peer(peer) == b"cd"
        await proto.wait_lost()


@pytest.mark.parametrize("seed", range(12))
async def test_cork_random_runs_never_release_a_piece_early(seed: int) -> None:
    # Random sends with and without MSG_PARTIAL, some as writes, some reposting a completed
    # overlapped, with the peer reading as it goes: what the peer has read is always a prefix
    # of the bytes of ended runs, and the whole stream arrives byte-exact.
    rng = random.Random(seed)
    ours, peer = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    with peer:
        transport, proto = await wrap(ours, partial_messages="cork")
        released = bytearray()  # the bytes of every ended run, in order
        open_run = bytearray()
        received = bytearray()
        spare: WSAOverlapped | None = None
        pending: list[WSAOverlapped] = []
        for step in range(rng.randint(10, 60)):
            data = pattern(rng.choice([0, 1, 7, 300, 5000, 90_000]), seed * 100 + step)
            partial = rng.random() < 0.5
            if not partial and rng.random() < 0.3:
                transport.write(data)
            else:
                ov = None
                if spare is not None and not spare.pending and rng.random() < 0.5:
                    ov, spare = spare, None
                ov = transport.send(data, MSG_PARTIAL if partial else 0, overlapped=ov)
                pending.append(ov)
                spare = ov
            if partial:
                open_run += data
            else:
                released += open_run + data
                open_run.clear()
            await spin(rng.randint(0, 3))
            received += readable_now(peer)
            assert received == released[: len(received)], step
        ends = transport.send(b"")
        released += open_run
        assert await ends == 0
        transport.close()
        received += await drain_peer(peer)
        assert received == released
        await proto.wait_lost()
        assert all(not ov.pending for ov in pending)
        proto.check()
