"""The transport's lifecycle table (STYLE rule 2), and the call grammar under random sequences.

The table tests need no loop: every pair is checked, then Hypothesis walks random sequences.
The last tests drive real transports (both loops) with random operations and check asyncio's
grammar and exact byte accounting every time.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
import socket
import struct
import threading
import time
import warnings
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import wsasend
from tests.conftest import LOOP_FACTORIES
from tests.helpers import SMALL_BUF, pattern, readable_now, recv_to_eof, tcp_pair
from wsasend import WSAError, WSAErrorCode, closesocket, winsock, wsa_send, wsa_send_sync
from wsasend._api import slot_for
from wsasend._transport import _NEXT, TRANSITIONS, TransportEvent, TransportState, WSATransport

from .util import GUARD, Recorder, drain_peer, until, wrap

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


def test_the_steps_lookup_table_is_TRANSITIONS_by_state() -> None:
    # _step reads _NEXT[state].get(event) (no tuple made per step, issue 11): the same answer
    # as TRANSITIONS.get((state, event)) for every pair, the missing ones included.
    for state in S:
        for event in E:
            assert _NEXT[state].get(event) is TRANSITIONS.get((state, event)), (state, event)


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
    await _assert_number_served(number, transport)


async def _assert_number_served(number: int, old: WSATransport) -> None:
    """The closed socket's number is free, and nothing of ``old``'s is registered for it."""
    new, new_peer = socket.socketpair()
    try:
        assert number in (new.fileno(), new_peer.fileno())
        if new.fileno() != number:
            new, new_peer = new_peer, new
        transport2, proto2 = await wrap(new)
        new_peer.sendall(b"hello")
        assert await proto2.wait_data(5) == b"hello"
        old.close()  # a no-op now, and it must not touch the new socket's registration
        new_peer.sendall(b"world")
        assert await proto2.wait_data(10) == b"helloworld"
        transport2.close()
        await proto2.wait_lost()
        proto2.check()
    finally:
        new_peer.close()


async def test_closesocket_ends_the_transport_after_another_loop_sent_on_its_socket() -> None:
    """S6.1 and S7.2: another loop's ``wsa_send`` on the transport's socket makes that loop's
    engine the socket's current one; ``closesocket`` still ends the transport (it was missed:
    no ``connection_lost``, its reader left registered for the freed number; adversarial
    pass, every run)."""
    ours, peer = socket.socketpair()
    transport, proto = await wrap(ours)
    transport.write(b"<transport>")
    sock = transport.get_extra_info("socket")
    await asyncio.sleep(0)  # the write's batch window closes: until then another loop waits (S5.11)

    def on_another_loop() -> int:
        async def send() -> int:
            return await wsa_send(sock, [b"<other loop>"])

        with asyncio.Runner() as runner:
            return runner.run(send())

    assert await asyncio.get_running_loop().run_in_executor(None, on_another_loop) == 12
    number = ours.fileno()
    closesocket(sock)
    assert await proto.wait_lost() is None
    assert await _read_to_end(peer) == b"<transport><other loop>"
    peer.close()
    proto.check()
    await _assert_number_served(number, transport)


async def test_a_write_while_another_loop_sends_on_the_socket_waits_its_turn() -> None:
    """S9.1, S5.11: another loop has a send pending on the transport's socket; a ``write()``
    waits in line behind it, as asyncio's ``write()`` never raises for a busy socket, and
    goes out after it, whole. It raised WSAEINPROGRESS out of ``write()`` (adversarial pass,
    every run)."""
    ours, peer = socket.socketpair()
    transport, proto = await wrap(ours)
    sock = transport.get_extra_info("socket")
    posted = threading.Event()
    big = pattern(2_000_000)

    def on_another_loop() -> int:
        async def send() -> int:
            ov = wsa_send(sock, [big])
            assert ov.pending  # the peer reads nothing yet
            posted.set()
            return await ov

        with asyncio.Runner() as runner:
            return runner.run(send())

    other = asyncio.get_running_loop().run_in_executor(None, on_another_loop)
    await asyncio.get_running_loop().run_in_executor(None, posted.wait, GUARD)
    transport.write(b"<after the other loop>")
    assert transport.get_write_buffer_size() == 22  # queued behind it, not refused
    reader = asyncio.ensure_future(_read_to_end(peer))
    assert await asyncio.wait_for(other, GUARD) == len(big)
    await until(lambda: transport.get_write_buffer_size() == 0)
    transport.close()
    await proto.wait_lost()
    assert await reader == big + b"<after the other loop>"
    peer.close()
    proto.check()


async def test_write_eof_refuses_another_loops_send_while_it_drains() -> None:
    """S6.2: after ``write_eof()``, a send on the transport's socket from another loop fails
    WSAESHUTDOWN with nothing sent, while the transport's queued bytes still go out before the
    EOF; it said WSAEINPROGRESS for as long as the drain took (adversarial pass)."""
    ours, peer = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUF)
    transport, proto = await wrap(ours)
    body = pattern(400_000)
    transport.write(body)
    assert transport.get_write_buffer_size() > 0  # the peer reads nothing yet: it pends
    transport.write_eof()
    sock = transport.get_extra_info("socket")

    def on_another_loop() -> int:
        async def send() -> int:
            return await wsa_send(sock, [b"<late>"])

        with asyncio.Runner() as runner:
            return runner.run(send())

    with pytest.raises(WSAError) as info:
        await asyncio.get_running_loop().run_in_executor(None, on_another_loop)
    assert info.value.winerror == WSAErrorCode.WSAESHUTDOWN
    assert info.value.bytes_sent == 0
    assert await _read_to_end(peer) == body
    transport.close()
    await proto.wait_lost()
    peer.close()
    proto.check()


async def test_a_write_while_closesocket_runs_in_another_thread_never_raises() -> None:
    """S9.1: ``closesocket`` from another thread has begun (the socket is closing) and waits
    for this loop to end the transport; a ``write()`` meanwhile ends the connection
    (``connection_lost``), as asyncio's ``write()`` on a lost connection does, and does not
    raise. Before, it raised WSAENOTSOCK into the caller (adversarial pass, every run)."""
    ours, peer = socket.socketpair()
    transport, proto = await wrap(ours)
    transport.write(b"<before>")
    await until(lambda: transport.get_write_buffer_size() == 0)
    await asyncio.sleep(0)  # the write's batch window closes: until then the socket is busy (S5.11)
    # A thread's nonoverlapped send takes the idle socket and lets it go: no owner now.
    assert await asyncio.get_running_loop().run_in_executor(None, wsa_send_sync, ours, [b"<sync>"]) == 6
    slot = slot_for(ours)
    closer = threading.Thread(target=closesocket, args=(ours,), daemon=True)
    closer.start()
    while not slot.closing:  # (this loop's thread: the abort closesocket asks for waits for us)
        time.sleep(0.0001)
    transport.write(b"<during the close>")
    await proto.wait_lost()
    await asyncio.get_running_loop().run_in_executor(None, closer.join, GUARD)
    assert not closer.is_alive()
    assert await _read_to_end(peer) == b"<before><sync>"
    peer.close()
    assert proto.kinds().count("lost") == 1
    proto.check()


async def test_the_last_wsacleanup_ends_a_transport_whose_writes_it_aborts() -> None:
    """S8.1 and S6.1: a facade send put the transport's socket among those the last
    ``WSACleanup`` looks at; the cleanup aborts the transport's pending write and ends the
    transport as ``closesocket`` does (``connection_lost``); a later ``write()`` does not
    raise. Before, the transport was never told, and its next write raised WSAENOTSOCK."""
    ours, peer = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUF)
    winsock.WSAStartup()
    try:
        transport, proto = await wrap(ours)
        ov = winsock.WSAOVERLAPPED()
        assert winsock.WSASend(ours, [b"<facade>"], 1, None, 0, ov, None) == 0
        assert ov.wait(GUARD)
        ov2 = transport.send(pattern(4 << 20, 8))
        assert ov2.pending
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, winsock.WSACleanup) == 0
        assert await proto.wait_lost() is None
        assert ov2.error == WSAErrorCode.WSA_OPERATION_ABORTED
        transport.write(b"more")  # dropped, as after any lost connection (S9.1)
        assert bytes(await _read_to_end(peer)) == b"<facade>" + pattern(4 << 20, 8)[: ov2.transferred]
        peer.close()
        proto.check()
    finally:
        while winsock.WSACleanup() == 0:
            pass


# The transport stays unclosed (its loop ended under it), and says so when collected, as an
# asyncio transport would; and S5.12 warns of the send its loop left.
@pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("loop_name", sorted(LOOP_FACTORIES))
def test_closesocket_after_a_bare_loop_close_aborts_quietly(loop_name: str) -> None:
    """S6.1: a transport's loop was closed bare (``loop.close()``, the transport still open,
    a send pending); ``closesocket`` aborts the send with its count and closes the socket
    without an error. Before, it raised RuntimeError ("Event loop is closed") from the
    transport's attempt to schedule ``connection_lost`` (adversarial pass, every run)."""
    ours, peer = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUF)
    loop = LOOP_FACTORIES[loop_name]()
    try:
        transport, _ = loop.run_until_complete(wrap(ours, asyncio.Protocol))
        ov = transport.send(b"z" * (1 << 20))
        assert ov.pending
    finally:
        loop.close()
    closesocket(ours)
    assert ours.fileno() == -1
    assert ov.error == WSAErrorCode.WSA_OPERATION_ABORTED and 0 < ov.transferred < 1 << 20
    peer.setblocking(True)
    assert len(recv_to_eof(peer)) == ov.transferred
    peer.close()
    del transport
    gc.collect()


@pytest.mark.parametrize("how", ["abort", "raise", "raise OSError"])
async def test_writes_before_abort_or_a_raising_callback_reach_the_kernel(
    how: str, loop_errors: list[dict[str, Any]]
) -> None:
    """S9.1: a server's ``data_received`` writes a status line and its headers, then calls
    ``abort()`` (or raises): the peer gets both writes, as from asyncio's transport, whose
    ``write()`` hands bytes to the kernel at once. Before, the second write waited in the
    batch window and the abort failed it: the peer got the status line alone (adversarial
    pass against asyncio's transport, every run)."""

    class BadRequest(Recorder):
        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            assert self.transport is not None
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\n")
            self.transport.write(b"Content-Length: 0\r\n\r\n")
            if how == "abort":
                self.transport.abort()
            elif how == "raise":
                raise ValueError("bad request")
            else:  # the protocol's own OSError, not the socket's
                raise FileNotFoundError("no such page")

    ours, peer = socket.socketpair()
    _, proto = await wrap(ours, BadRequest)
    peer.sendall(b"GET / HTTP/1.1\r\n\r\n")
    lost = await proto.wait_lost()
    raising = {"abort": type(None), "raise": ValueError, "raise OSError": FileNotFoundError}[how]
    assert isinstance(lost, raising)
    assert await _read_to_end(peer) == b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
    peer.close()
    raised = [ctx.get("exception") for ctx in loop_errors]
    # (An OSError is not reported to the handler, as asyncio's _fatal_error does not.)
    assert len(raised) == (how == "raise") and all(isinstance(exc, ValueError) for exc in raised)


@pytest.mark.parametrize("how", ["close", "write_eof"])
@pytest.mark.parametrize("loop_name", sorted(LOOP_FACTORIES))
def test_writes_then_close_then_loop_stop_reach_the_peer(loop_name: str, how: str) -> None:
    """S9.1: a callback writes twice, closes the transport and stops the loop, and the program
    closes the loop: both writes reach the peer, as with asyncio's transport. Before, the
    second waited for the loop's next tick, which never came (asyncio flavour, every run;
    uvloop ran the tick before it stopped)."""
    ours, peer = socket.socketpair()
    loop = LOOP_FACTORIES[loop_name]()
    try:
        transport, _ = loop.run_until_complete(wrap(ours, asyncio.Protocol))

        def last_words() -> None:
            transport.write(b"QUIT ")
            transport.write(b"bye\r\n")
            if how == "close":
                transport.close()
            else:
                transport.write_eof()  # (the EOF, too, must not wait for a next iteration)
            loop.stop()

        loop.call_soon(last_words)
        loop.run_forever()
        # The loop stopped in the iteration of the close: what the peer can read now is what
        # reached the kernel inside that callback.
        assert readable_now(peer) == b"QUIT bye\r\n"
        if how == "write_eof":
            assert peer.recv(1, socket.MSG_DONTWAIT) == b""  # the EOF is there too
            transport.close()
        loop.run_until_complete(asyncio.sleep(0))  # (connection_lost, then the socket closes)
    finally:
        loop.close()
    peer.close()


@pytest.mark.parametrize("how", ["stop", "SystemExit"])
@pytest.mark.parametrize("flavour", ["asyncio", "uvloop"])
def test_writes_before_the_loop_stops_reach_the_peer_without_a_close(flavour: str, how: str) -> None:
    """S9.1, S5.1: a callback writes twice, then stops the loop (``loop.stop()``, or a
    ``SystemExit``), and the program ends without closing the transport. asyncio's ``write()``
    hands each write to the kernel at once: the peer gets both, and the close once the
    transport is collected. The second write waited in the batch window for a tick the stopped
    loop never ran: lost, and the transport, held by the window, never closed (asyncio
    flavour, every run; adversarial pass)."""
    ours, peer = socket.socketpair()
    loop = wsasend.new_event_loop("uvloop" if flavour == "uvloop" else "asyncio")
    try:
        transport, _ = loop.run_until_complete(loop.connect_accepted_socket(asyncio.Protocol, ours))
        held = [transport]
        del transport

        def finish() -> None:
            held[0].write(b"result: 42\n")
            held[0].write(b"bye\n")
            if how == "stop":
                loop.stop()
            else:
                raise SystemExit

        loop.call_soon(finish)
        if how == "stop":
            loop.run_forever()
        else:
            with pytest.raises(SystemExit):
                loop.run_forever()
    finally:
        loop.close()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # (unclosed on purpose)
        held.clear()
        gc.collect()
    assert recv_to_eof(peer) == b"result: 42\nbye\n"
    peer.close()
