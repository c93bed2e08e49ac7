"""The transport's lifecycle table (STYLE rule 2), and the call grammar under random sequences.

The table tests need no loop: every pair is checked, then Hypothesis walks random sequences.
The last tests drive real transports (both loops) with random operations and check asyncio's
grammar and exact byte accounting every time.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import SMALL_BUF, pattern, tcp_pair
from wsasend import WSAError, WSAErrorCode, closesocket
from wsasend._transport import TRANSITIONS, TransportEvent, TransportState

from .util import Recorder, drain_peer, until, wrap

S, E = TransportState, TransportEvent
PUBLIC = (E.WRITE_EOF, E.CLOSE, E.ABORT, E.FATAL)
# States in which write()/writelines() drop their data (asyncio's transports do; send() raises).
_DROPS_WRITES = {TransportState.CLOSING, TransportState.LOST, TransportState.CLOSED}

# Where the internal events can happen: DRAINED only after drain_then (write_eof, close),
# LOST_CALLED only once connection_lost was scheduled.
INTERNAL = {(S.EOF_PENDING, E.DRAINED), (S.CLOSING, E.DRAINED), (S.LOST, E.LOST_CALLED)}
RANK = {S.OPEN: 0, S.EOF_PENDING: 1, S.WRITE_SHUT: 2, S.CLOSING: 3, S.LOST: 4, S.CLOSED: 5}


def test_TransportState_table_is_complete_for_public_events() -> None:
    for state in S:
        for event in PUBLIC:
            assert (state, event) in TRANSITIONS, (state, event)
    internal = {pair for pair in TRANSITIONS if pair[1] not in PUBLIC}
    assert internal == INTERNAL


def test_TransportState_never_goes_back_and_closed_is_terminal() -> None:
    for (state, _), new in TRANSITIONS.items():
        assert RANK[new] >= RANK[state]
    assert all(new is S.CLOSED for (state, _), new in TRANSITIONS.items() if state is S.CLOSED)
    # Only LOST_CALLED leaves LOST, and only for CLOSED.
    assert {new for (state, _), new in TRANSITIONS.items() if state is S.LOST} == {S.LOST, S.CLOSED}


@given(st.lists(st.sampled_from(list(E)), max_size=30))
def test_TransportState_connection_lost_scheduled_at_most_once(events: list[TransportEvent]) -> None:
    # Walk random event sequences, skipping internal events where they cannot happen (the
    # transport never emits them there). connection_lost is scheduled on entering LOST, so LOST
    # must be entered at most once, and CLOSED only from LOST.
    state = S.OPEN
    entered_lost = 0
    for event in events:
        new = TRANSITIONS.get((state, event))
        if new is None:
            assert event not in PUBLIC
            continue
        if new is S.LOST and state is not S.LOST:
            entered_lost += 1
        if new is S.CLOSED and state is not S.CLOSED:
            assert state is S.LOST
        state = new
    assert entered_lost <= 1


async def test_WSATransport_missing_transition_fails_the_transport(loop_errors: list[dict[str, Any]]) -> None:
    ours, peer = socket.socketpair()
    with peer:
        transport, proto = await wrap(ours)
        assert transport._step(E.DRAINED) is False  # OPEN + DRAINED is not in the table
        exc = await proto.wait_lost()
        assert isinstance(exc, RuntimeError) and "no transition for OPEN on DRAINED" in str(exc)
        assert [c["exception"] for c in loop_errors] == [exc]
        proto.check()


# -- random operation sequences on real transports ------------------------------------------------

OPS = ("write", "writelines", "send", "write_eof", "close", "abort", "pause_reading", "resume_reading")
CONTROL = ("write_eof", "close", "abort", "pause_reading", "resume_reading")
PEER_OPS = ("peer_read", "peer_send", "peer_shutdown")


async def _read_to_end(sock: socket.socket) -> bytes:
    """Read until EOF; an AF_UNIX peer closed with unread data reports ECONNRESET after the data."""
    try:
        return await drain_peer(sock)
    except ConnectionResetError:
        return b""


@pytest.mark.parametrize("seed", range(24))
async def test_WSATransport_random_sequences_keep_grammar_and_bytes(seed: int) -> None:
    rng = random.Random(seed)
    ours, peer = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    peer.setblocking(False)
    transport, proto = await wrap(ours, lambda: Recorder(keep_open=rng.random() < 0.5))
    transport.set_write_buffer_limits(high=rng.choice([0, 1000, 100_000]))
    posted = bytearray()  # bytes the transport accepted, in call order
    received = bytearray()
    for step in range(rng.randint(5, 40)):
        op = rng.choice(OPS + PEER_OPS)
        data = pattern(rng.choice([0, 1, 500, 70_000, 300_000]), step)
        if op in CONTROL:
            getattr(transport, op)()
        elif op == "peer_read":
            with contextlib.suppress(BlockingIOError, ConnectionResetError):
                received += peer.recv(rng.choice([1, 1000, 1 << 20]))
        elif op == "peer_send":
            with contextlib.suppress(BlockingIOError, BrokenPipeError, ConnectionResetError):
                peer.send(data[:1000] or b"?")
        elif op == "peer_shutdown":
            peer.shutdown(socket.SHUT_WR)
        else:
            # After close(), write() queues while sends are pending and drops once drained (asyncio).
            draining = transport.state is not TransportState.CLOSING or transport._close_draining
            dropped = op != "send" and transport.state in _DROPS_WRITES and draining
            try:
                if op == "write":
                    transport.write(data)
                elif op == "writelines":
                    transport.writelines([data[:7], memoryview(data)[7:]])
                else:
                    transport.send([data])
            except WSAError as exc:
                # Refused at once after write_eof/close/abort (S6.2): nothing of it was taken.
                assert exc.winerror == WSAErrorCode.WSAESHUTDOWN
                assert transport.state is not TransportState.OPEN
                continue
            if dropped:
                continue  # S9.1: write()/writelines() after close()/abort() drop the data, as asyncio's do
            posted += data
        if rng.random() < 0.5:
            await asyncio.sleep(0)
    transport.close()  # end it gracefully (an earlier abort() already decided the byte count)
    received += await _read_to_end(peer)
    peer.close()
    await proto.wait_lost()
    await until(lambda: transport.state is TransportState.CLOSED)
    proto.check()
    # S6.4: the peer got exactly the bytes the completed sends report, a prefix of what was
    # posted (all of it unless abort() cut the tail), and every send completed exactly once.
    transferred = sum(ov.transferred for ov in proto.completed)
    assert len(received) == transferred
    assert bytes(received) == bytes(posted[:transferred])
    assert sum(ov.nbytes for ov in proto.completed) == len(posted)
    if not any(ov.error for ov in proto.completed):
        assert transferred == len(posted)
    assert all(ov.error in (0, WSAErrorCode.WSA_OPERATION_ABORTED) for ov in proto.completed)


async def test_WSATransport_reset_while_closing_reports_the_reset() -> None:
    ours, peer = tcp_pair(bufsize=SMALL_BUF)
    transport, proto = await wrap(ours)
    ov = transport.send(b"q" * (16 << 20))
    transport.close()  # draining...
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()  # ... when the peer resets: connection_lost gets the reset, not None
    exc = await proto.wait_lost()
    assert isinstance(exc, WSAError) and exc.winerror == WSAErrorCode.WSAECONNRESET
    assert ov.error == WSAErrorCode.WSAECONNRESET and ov.transferred < ov.nbytes
    assert proto.kinds().count("lost") == 1
    proto.check()


async def test_closesocket_on_a_transports_socket_ends_the_transport_and_frees_the_number() -> None:
    """S6.1 and S7.2: ``closesocket(transport.get_extra_info("socket"))`` ends the transport as
    ``abort()`` does (pending sends aborted with exact counts, ``connection_lost(None)`` once),
    its reader goes before the descriptor closes (the peer sees the close), and a new socket
    given the same number is served by the loop. Before, the transport was never told: no
    ``connection_lost``, and its registration for the number stayed: asyncio's selector then
    never read the new socket, uvloop kept the descriptor open (adversarial pass, every run)."""
    ours, peer = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUF)
    transport, proto = await wrap(ours)
    posted = pattern(4 << 20, 31)
    ov = transport.send(posted)
    assert ov.pending
    await asyncio.sleep(0)  # reading has started
    number = ours.fileno()
    closesocket(transport.get_extra_info("socket"))
    assert await proto.wait_lost() is None
    assert ov.error == WSAErrorCode.WSA_OPERATION_ABORTED
    await until(lambda: transport.state is TransportState.CLOSED)
    assert bytes(await _read_to_end(peer)) == posted[: ov.transferred]
    peer.close()
    proto.check()
    # The number is free, and nothing of the old transport's is registered for it.
    new, new_peer = socket.socketpair()
    try:
        assert number in (new.fileno(), new_peer.fileno())
        if new.fileno() != number:
            new, new_peer = new_peer, new
        transport2, proto2 = await wrap(new)
        new_peer.sendall(b"hello")
        assert await proto2.wait_data(5) == b"hello"
        transport.close()  # a no-op now, and it must not touch the new socket's registration
        new_peer.sendall(b"world")
        assert await proto2.wait_data(10) == b"helloworld"
        transport2.close()
        await proto2.wait_lost()
        proto2.check()
    finally:
        new_peer.close()
