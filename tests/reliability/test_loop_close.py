"""A loop ended by a bare ``loop.close()`` with sends pending (SPEC S5.12; issue 10 item 9).

No ``asyncio.run``/``Runner``, so no ``shutdown_asyncgens``: the only thing that notices is a
thread that waits on one of the loop's pending sends (``ov.wait()``, ``WSAEvent.wait()`` on the
send's event, ``winsock.WSAGetOverlappedResult(fWait=True)``,
``winsock.WSAWaitForMultipleEvents``). It must be woken with
WSA_OPERATION_ABORTED and the exact count, the ResourceWarning must come once, and the socket
must work from a new loop without another warning.

Before the fix (a waiter only waited) every variant failed, 6/6 (each waiter slept its whole
guard time and reported a time-out): deterministic, not a race.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import socket
import sys
import threading
import warnings
import weakref
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

import wsasend
from tests.conftest import LOOP_FACTORIES
from tests.helpers import drain_ready, fill_socket, recv_to_eof
from wsasend import WSAError, WSAErrorCode, WSAEvent, WSAOverlapped, winsock, wsa_send

GUARD = 8.0
FACTORIES = pytest.mark.parametrize("factory", list(LOOP_FACTORIES.values()), ids=list(LOOP_FACTORIES))
BIG = 4 << 20


def _get_overlapped_result(sock: socket.socket, ov: WSAOverlapped) -> bool:
    n = ctypes.c_uint32(0)
    flags = ctypes.c_uint32(0)
    ok = winsock.WSAGetOverlappedResult(sock, ov, n, True, flags)
    return not ok and winsock.WSAGetLastError() == WSAErrorCode.WSA_OPERATION_ABORTED and n.value == ov.transferred


@FACTORIES
@pytest.mark.parametrize("waiter", ["ov.wait", "event.wait", "WSAGetOverlappedResult", "WSAWaitForMultipleEvents"])
def test_a_bare_loop_close_wakes_thread_waiters_with_exact_counts(
    factory: Callable[[], asyncio.AbstractEventLoop], waiter: str
) -> None:
    """A partly sent send and a queued one; ``loop.close()``; the waiting threads wake, both
    sends report WSA_OPERATION_ABORTED with what the kernel took (the partly sent one: exactly
    what the peer received; the queued one: 0), one ResourceWarning names the socket and the
    count. The stream now ends in a truncated send: a new loop's send on the socket fails
    WSAECONNABORTED and nothing follows the cut (S5.12; it went out after it before)."""
    a, b = socket.socketpair()
    ev = WSAEvent()
    ovs: list[WSAOverlapped] = []
    woke: list[bool] = []
    started = waiter in ("WSAGetOverlappedResult", "WSAWaitForMultipleEvents")
    if started:
        winsock.WSAStartup(0x0202)

    async def post() -> None:
        ovs.append(wsa_send(a, [b"z" * BIG]))
        ovs.append(wsa_send(a, [b"y" * 10], overlapped=WSAOverlapped(event=ev)))
        assert ovs[0].pending and ovs[1].pending

    def wait() -> None:
        if waiter == "ov.wait":
            woke.append(ovs[0].wait(GUARD))
        elif waiter == "event.wait":
            woke.append(ev.wait(GUARD))
        elif waiter == "WSAWaitForMultipleEvents":
            rc = winsock.WSAWaitForMultipleEvents([ev], False, int(GUARD * 1000), False)
            woke.append(rc == winsock.WSA_WAIT_EVENT_0)
        else:
            woke.append(_get_overlapped_result(a, ovs[0]))

    threads = [threading.Thread(target=wait, daemon=True) for _ in range(2)]
    try:
        loop = factory()
        loop.run_until_complete(post())
        for thread in threads:
            thread.start()
        with pytest.warns(ResourceWarning) as warned:
            loop.close()
            for thread in threads:
                thread.join(GUARD + 5)
        assert woke == [True, True]
        messages = [str(w.message) for w in warned if issubclass(w.category, ResourceWarning)]
        assert len(messages) == 1, messages
        assert "2 overlapped send(s) pending" in messages[0]
        assert repr(a)[:40] in messages[0]
        for ov in ovs:
            assert not ov.pending
            assert ov.error == WSAErrorCode.WSA_OPERATION_ABORTED
        assert ev.is_set()
        got = drain_ready(b)
        assert 0 < ovs[0].transferred == got < BIG
        assert ovs[1].transferred == 0

        async def again() -> int:
            return await wsa_send(a, [b"again"])

        # No second warning (warnings are errors here): the socket was freed at the abort, and
        # the claim of the new loop's send finds the stream cut.
        with asyncio.Runner(loop_factory=factory) as runner, pytest.raises(WSAError) as refused:
            runner.run(again())
        assert refused.value.winerror is WSAErrorCode.WSAECONNABORTED and refused.value.bytes_sent == 0
        a.close()
        assert recv_to_eof(b) == b""  # nothing after the cut send
    finally:
        if started:
            winsock.WSACleanup()
        a.close()
        b.close()


def _a_send_taken_in_part(
    factory: Callable[[], asyncio.AbstractEventLoop], sock: socket.socket, byte: bytes
) -> tuple[asyncio.AbstractEventLoop, WSAOverlapped]:
    """A new loop, stopped (not closed), with one send of ``BIG`` bytes of ``byte`` on ``sock``
    pending, of which the kernel took a part (a 64 KiB send buffer)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)

    async def post() -> WSAOverlapped:
        ov = wsa_send(sock, [byte * BIG])
        await asyncio.sleep(0)
        return ov

    loop = factory()
    return loop, loop.run_until_complete(post())


@FACTORIES
def test_a_transport_on_a_socket_whose_stream_a_loop_cut_ends_with_WSAECONNABORTED(
    factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    """S5.12, S7.2: a transport made later on the socket refuses nothing in ``write()`` (as
    asyncio's never raises for a dead connection): the connection ends, ``connection_lost``
    gets WSAECONNABORTED (a ConnectionAbortedError), and nothing follows the cut send."""
    a, b = socket.socketpair()
    try:
        loop, cut = _a_send_taken_in_part(factory, a, b"c")
        with pytest.warns(ResourceWarning):
            loop.close()
            assert not cut.pending and 0 < cut.transferred < BIG  # (the look aborts it)

        async def transport_writes() -> BaseException | None:
            lost: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

            class Protocol(asyncio.Protocol):
                def connection_lost(self, exc: BaseException | None) -> None:
                    lost.set_result(exc)

            transport, _ = await wsasend.connect_accepted_socket(Protocol, a)
            transport.write(b"after the cut")
            return await asyncio.wait_for(lost, GUARD)

        with asyncio.Runner(loop_factory=factory) as runner:
            exc = runner.run(transport_writes())
        assert isinstance(exc, WSAError) and isinstance(exc, ConnectionAbortedError), repr(exc)
        assert exc.winerror is WSAErrorCode.WSAECONNABORTED
        assert recv_to_eof(b) == b"c" * cut.transferred  # (the transport closed a)
    finally:
        a.close()
        b.close()


@FACTORIES
def test_a_loop_closed_with_only_unstarted_sends_frees_the_socket_for_another_loop(
    factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    """S5.12: sends of which the kernel took nothing (the socket was full when they were
    posted) are aborted with 0 bytes; the stream is whole, so another loop sends on it."""
    a, b = socket.socketpair()
    try:
        filled = fill_socket(a)
        ovs: list[WSAOverlapped] = []

        async def post() -> None:
            ovs.append(wsa_send(a, [b"x" * 100]))
            ovs.append(wsa_send(a, [b"y" * 10]))

        loop = factory()
        loop.run_until_complete(post())
        with pytest.warns(ResourceWarning):
            loop.close()
            assert [ov.transferred for ov in ovs if not ov.pending and ov.error] == [0, 0]

        async def again() -> int:
            return await wsa_send(a, [b"again"])

        reader = threading.Thread(target=lambda: got.append(recv_to_eof(b)), daemon=True)
        got: list[bytes] = []
        reader.start()
        with asyncio.Runner(loop_factory=factory) as runner:
            assert runner.run(again()) == 5
        a.close()
        reader.join(GUARD)
        assert got and got[0] == b"\0" * filled + b"again"
    finally:
        a.close()
        b.close()


@FACTORIES
@pytest.mark.parametrize("field", ["transferred", "error", "exception"])
def test_a_bare_loop_close_gives_exact_fields_at_the_first_look_at_any_of_them(
    factory: Callable[[], asyncio.AbstractEventLoop], field: str
) -> None:
    """S5.12's exact counts from the first look: ``transferred``, ``error`` or ``exception``
    read first (before ``pending``) said 0 / 0 / None for a send the loop's end had aborted
    after the kernel took part of it (the abort runs at a look, and these did not look;
    adversarial pass)."""
    a, b = socket.socketpair()
    try:
        loop, ov = _a_send_taken_in_part(factory, a, b"p")
        with pytest.warns(ResourceWarning):
            loop.close()
            first = getattr(ov, field)
        got = drain_ready(b)
        if field == "transferred":
            assert first == got > 0
        elif field == "error":
            assert first == WSAErrorCode.WSA_OPERATION_ABORTED
        else:
            assert isinstance(first, WSAError) and first.bytes_sent == got > 0
        assert ov.transferred == got and not ov.pending
    finally:
        a.close()
        b.close()


@FACTORIES
@pytest.mark.parametrize("look", ["ov.pending", "ov.done", "ov.result", "event.is_set", "WSAGetOverlappedResult"])
def test_a_bare_loop_close_is_noticed_by_a_thread_that_polls(
    factory: Callable[[], asyncio.AbstractEventLoop], look: str
) -> None:
    """A thread that polls instead of blocking (Winsock's ``WSAGetOverlappedResult`` with
    ``fWait`` false, ``pending``, ``done()``, ``result()``, the event's state) must not spin for
    ever on a send whose loop was closed bare: its first look aborts the loop's pending sends
    (WSA_OPERATION_ABORTED, exact counts, one ResourceWarning), as a blocking wait does."""
    a, b = socket.socketpair()
    ev = WSAEvent()
    ovs: list[WSAOverlapped] = []
    if look == "WSAGetOverlappedResult":
        winsock.WSAStartup(0x0202)

    async def post() -> None:
        ovs.append(wsa_send(a, [b"z" * BIG], overlapped=WSAOverlapped(event=ev)))
        ovs.append(wsa_send(a, [b"y" * 10]))
        assert ovs[0].pending and ovs[1].pending

    def still_pending() -> bool:
        ov = ovs[0]
        if look == "ov.pending":
            return ov.pending
        if look == "ov.done":
            return not ov.done()
        if look == "event.is_set":
            return not ev.is_set()
        if look == "WSAGetOverlappedResult":
            n = ctypes.c_uint32(0)
            flags = ctypes.c_uint32(0)
            ok = winsock.WSAGetOverlappedResult(a, ov, n, False, flags)
            return not ok and winsock.WSAGetLastError() == WSAErrorCode.WSA_IO_INCOMPLETE
        try:
            ov.result()
        except WSAError as exc:
            return exc.winerror == WSAErrorCode.WSA_IO_INCOMPLETE
        return False

    looks: list[int] = []

    def poll() -> None:
        for count in range(1, 1001):
            if not still_pending():
                looks.append(count)
                return

    try:
        loop = factory()
        loop.run_until_complete(post())
        with pytest.warns(ResourceWarning) as warned:
            loop.close()
            thread = threading.Thread(target=poll, daemon=True)
            thread.start()
            thread.join(GUARD)
        assert looks == [1]  # the first look after the close
        messages = [str(w.message) for w in warned if issubclass(w.category, ResourceWarning)]
        assert len(messages) == 1 and "2 overlapped send(s) pending" in messages[0], messages
        for ov in ovs:
            assert not ov.pending and ov.error == WSAErrorCode.WSA_OPERATION_ABORTED
        assert ev.is_set()
        assert 0 < ovs[0].transferred == drain_ready(b) < BIG
        assert ovs[1].transferred == 0
    finally:
        if look == "WSAGetOverlappedResult":
            winsock.WSACleanup()
        a.close()
        b.close()


def _next_job_aborts(factory: Callable[[], asyncio.AbstractEventLoop], c: socket.socket) -> list[str]:
    """The "loop per job" pattern's next job: a loop that sends ``b"next"`` on ``c`` (its sweep
    aborts what a bare-closed loop left); the messages of the ResourceWarnings it gave."""

    async def next_job() -> int:
        return await wsa_send(c, [b"next"])

    with pytest.warns(ResourceWarning) as warned, asyncio.Runner(loop_factory=factory) as runner:
        assert runner.run(next_job()) == 4
    return [str(w.message) for w in warned if issubclass(w.category, ResourceWarning)]


@FACTORIES
def test_the_next_loop_aborts_what_a_bare_closed_loop_left_and_the_peer_sees_the_close(
    factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    """A loop closed bare with sends pending, then the socket closed with a plain ``close()``
    and nobody looking at the sends again (the "loop per job" pattern): the engine's duplicate
    of the descriptor kept the connection open for good, so the peer never saw the close. The
    next loop that starts sending aborts them (exact counts, one ResourceWarning) and lets the
    socket go: the peer reads exactly what was consumed, then end of stream."""
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    a.setblocking(False)
    ovs: list[WSAOverlapped] = []

    async def post() -> None:
        for _ in range(8):
            ovs.append(wsa_send(a, [b"z" * BIG]))
        await asyncio.sleep(0)
        assert ovs[-1].pending

    try:
        loop = factory()
        loop.run_until_complete(post())
        loop.close()  # bare: no shutdown_asyncgens
        a.close()  # plain close: the engine still holds its duplicate
        assert all(ov._pending for ov in ovs)  # (nobody looked: ov.pending would abort them)
        messages = _next_job_aborts(factory, c)
        assert len(messages) == 1 and "overlapped send(s) pending" in messages[0], messages
        assert not any(ov._pending for ov in ovs)
        assert all(ov.error in (0, WSAErrorCode.WSA_OPERATION_ABORTED) for ov in ovs)
        assert ovs[-1].error == WSAErrorCode.WSA_OPERATION_ABORTED
        got = len(recv_to_eof(b, GUARD))  # (ends only at the peer's end of stream)
        assert got == sum(ov.transferred for ov in ovs)
        assert d.recv(10) == b"next"
    finally:
        for sock in (a, b, c, d):
            sock.close()


@FACTORIES
def test_the_leftovers_warning_names_a_socket_the_caller_dropped(
    factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    """S5.12: the sends of a bare-closed loop whose socket the caller closed and dropped are
    aborted by the next loop with one ResourceWarning that says what happened to the socket;
    it said "pending on None" (note 28)."""
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    a.setblocking(False)
    ovs: list[WSAOverlapped] = []

    async def post(sock: socket.socket) -> None:
        for _ in range(4):
            ovs.append(wsa_send(sock, [b"z" * BIG]))
        await asyncio.sleep(0)
        assert ovs[-1].pending

    try:
        loop = factory()
        loop.run_until_complete(post(a))
        loop.close()  # bare: no shutdown_asyncgens
        a.close()
        del a
        gc.collect()
        messages = [m for m in _next_job_aborts(factory, c) if "overlapped send(s) pending" in m]
        assert messages == [
            "event loop ended with 4 overlapped send(s) pending on a socket since garbage-collected: aborted (S5.12)"
        ]
        assert ovs[-1].error == WSAErrorCode.WSA_OPERATION_ABORTED
    finally:
        for sock in (b, c, d):
            sock.close()


@FACTORIES
def test_sends_posted_as_a_loop_stopped_are_aborted_by_the_next_loop_and_the_loop_is_freed(
    factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    """S5.12: sends posted in the very callback that stops the loop, which is then closed bare:
    the batch window's tick they scheduled never runs, so they wait in the window with no
    writer registered. The tick kept their engine, the engine its loop, and so the loop, the
    tick's own key in a weak-keyed map, never died: engine, buffers and the descriptor's
    duplicate kept for good once the socket was dropped (review, stop 51). The next loop
    aborts them as any bare-closed loop's (one ResourceWarning, exact counts), the peer sees
    the end of the stream, and the first loop is freed."""
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    a.setblocking(False)
    socks = [a]
    loops = [factory()]
    ovs: list[WSAOverlapped] = []

    def post_and_stop() -> None:
        ovs.append(wsa_send(socks[0], [b"first"]))  # (goes at once: the window opens)
        for _ in range(3):
            ovs.append(wsa_send(socks[0], [b"z" * BIG]))  # (queued in the window)
        loops[0].stop()  # (the tick these sends scheduled never runs)

    try:
        loops[0].call_soon(post_and_stop)
        loops[0].run_forever()
        loops[0].close()  # bare: no shutdown_asyncgens
        gone = weakref.ref(loops.pop())
        socks.pop().close()
        del a
        gc.collect()
        assert ovs[0].completed_immediately and all(ov._pending for ov in ovs[1:])
        messages = _next_job_aborts(factory, c)
        assert len(messages) == 1 and "overlapped send(s) pending" in messages[0], messages
        assert not any(ov._pending for ov in ovs)
        assert ovs[-1].error == WSAErrorCode.WSA_OPERATION_ABORTED
        got = len(recv_to_eof(b, GUARD))  # (ends only at the peer's end of stream)
        assert got == sum(ov.transferred for ov in ovs)
        del ovs[:]
        gc.collect()
        assert gone() is None
    finally:
        for sock in (b, c, d):
            sock.close()


@FACTORIES
@pytest.mark.parametrize("close_first", [False, True], ids=["open", "closed"])
def test_a_write_as_a_loop_stopped_lets_the_peer_see_the_end_after_the_next_loop(
    factory: Callable[[], asyncio.AbstractEventLoop], close_first: bool
) -> None:
    """A WSATransport's small write in the very callback that stops the loop (it goes to the
    kernel at once, and its batch window holds the transport), then a bare ``close()``: nothing
    is left to abort, but the window's tick never ran, and its hold on the transport kept the
    socket, so its registry slot, so the engine, for good: the peer never saw the end of the
    stream and the loop was never freed (review, stop 51). After the next loop's sweep the
    peer reads exactly the write, then the end, and the loop and transport are gone."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    c, d = socket.socketpair()
    loops = [factory()]
    kept: list[weakref.ref[Any]] = []

    async def connect_write_stop() -> None:
        transport, _ = await wsasend.create_connection(asyncio.Protocol, *listener.getsockname())
        kept.append(weakref.ref(transport))
        transport.write(b"hi")
        if close_first:
            transport.close()
        loops[0].stop()  # (the tick the write scheduled never runs)

    async def next_job() -> int:
        return await wsa_send(c, [b"next"])

    try:
        with warnings.catch_warnings():
            # (The open transport's "unclosed" warnings, whenever it is freed: the user's
            # neglect, told as asyncio tells it; not what this test is about.)
            warnings.simplefilter("ignore", ResourceWarning)
            loops[0].create_task(connect_write_stop())
            loops[0].run_forever()
            loops[0].close()  # bare: no shutdown_asyncgens
            kept.append(weakref.ref(loops.pop()))
            peer, _ = listener.accept()
            with peer:
                gc.collect()
                with asyncio.Runner(loop_factory=factory) as runner:
                    assert runner.run(next_job()) == 4
                gc.collect()
                assert recv_to_eof(peer, GUARD) == b"hi"
        assert [ref() for ref in kept] == [None, None]
    finally:
        for sock in (listener, c, d):
            sock.close()


@FACTORIES
def test_the_sweep_of_a_bare_closed_loop_leaves_its_transports_quiet(
    factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    """The same with a WSATransport still referenced (a server's connection set) whose
    protocol was paused, or whose close() waits for its queue: aborting its sends called the
    transport's completion hook, which scheduled on the closed loop, and the RuntimeError
    ("Event loop is closed") reached the NEXT loop's exception handler, from the sweep, which
    it stopped half-way (two sockets: the second's sends stayed pending). At bad3034."""
    pairs = [socket.socketpair() for _ in range(2)]
    kept: list[asyncio.Transport] = []

    async def post() -> None:
        for ours, _ in pairs:
            transport, _proto = await wsasend.connect_accepted_socket(asyncio.Protocol, ours)
            transport.write(b"w" * BIG)  # past the high-water mark: the protocol is paused
            kept.append(transport)
        kept[1].close()  # waits for its queue
        await asyncio.sleep(0)
        assert all(t.get_write_buffer_size() for t in kept)

    async def next_job() -> int:
        c, d = socket.socketpair()
        with c, d:
            transport, _proto = await wsasend.connect_accepted_socket(asyncio.Protocol, c)
            transport.write(b"next")
            assert await asyncio.to_thread(d.recv, 10) == b"next"
            transport.close()
            await asyncio.sleep(0)
            return 4

    try:
        loop = factory()
        loop.run_until_complete(post())
        loop.close()  # bare: no shutdown_asyncgens
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)  # (its one warning: tested above)
            n, seen = _next_loop_seen(factory, next_job)
        assert n == 4 and seen == []
        assert [t.get_write_buffer_size() for t in kept] == [0, 0]  # both aborted
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)  # (their loop is gone: unclosed)
            kept.clear()
            gc.collect()  # (here: their cycles, collected in a later test, warned there)
        for ours, peer in pairs:
            ours.close()
            peer.close()


def _next_loop_seen(
    factory: Callable[[], asyncio.AbstractEventLoop], job: Callable[[], Coroutine[Any, Any, int]]
) -> tuple[int, list[dict[str, Any]]]:
    """Run ``job`` on a new loop: what it returned, and every context its exception handler got
    (one iteration after ``job`` returns)."""
    seen: list[dict[str, Any]] = []

    async def main() -> int:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: seen.append(ctx))
        n = await job()
        await asyncio.sleep(0)
        return n

    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main()), seen


def _next_loop_under_w_error(
    factory: Callable[[], asyncio.AbstractEventLoop], job: Callable[[], Coroutine[Any, Any, int]]
) -> tuple[int, list[BaseException | None]]:
    """Run ``job`` on a new loop with ResourceWarnings as errors: what it returned, and the
    exceptions that loop's exception handler got (one iteration after ``job`` returns, so a
    warning given soon is in)."""
    seen: list[BaseException | None] = []

    async def main() -> int:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: seen.append(ctx.get("exception")))
        n = await job()
        await asyncio.sleep(0)
        return n

    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(main()), seen


@FACTORIES
def test_under_w_error_reclaiming_the_same_socket_never_fails_the_send(
    factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    """A bare-closed loop left sends pending on a socket; the next loop's first send on that
    same socket takes it over and aborts them (S5.11, S5.12). Its ResourceWarning is about the
    dead loop's sends: with warnings as errors it must not fail this send (which has already
    claimed the socket); it reaches the new loop's exception handler, and the old sends are
    aborted with their exact counts. Before the fix the send raised the ResourceWarning."""
    a, b = socket.socketpair()
    a.setblocking(False)
    filled = fill_socket(a)
    ovs: list[WSAOverlapped] = []

    async def post() -> None:
        ovs.append(wsa_send(a, [b"x" * 1000]))
        ovs.append(wsa_send(a, [b"y" * 10]))
        assert ovs[0].pending and ovs[1].pending

    async def again() -> int:
        ov = wsa_send(a, [b"again"])
        got = bytearray()
        while len(got) < filled + 5:  # the old fill first, then only this send's bytes
            chunk = await asyncio.get_running_loop().sock_recv(b, 1 << 16)
            assert chunk
            got += chunk
        assert bytes(got[filled:]) == b"again"
        return await ov

    try:
        b.setblocking(False)
        loop = factory()
        loop.run_until_complete(post())
        loop.close()
        n, seen = _next_loop_under_w_error(factory, again)
        assert n == 5
        assert len(seen) == 1 and isinstance(seen[0], ResourceWarning), seen
        assert "2 overlapped send(s) pending" in str(seen[0])
        for ov in ovs:
            assert ov.error == WSAErrorCode.WSA_OPERATION_ABORTED and not ov._pending
            assert ov.transferred == 0
    finally:
        a.close()
        b.close()


@FACTORIES
def test_under_w_error_the_leftovers_warning_never_fails_the_next_loops_send(
    factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    """The sweep's ResourceWarning is about another socket: with warnings as errors it must
    not fail the send that started the new loop's engine (nor keep that loop from being
    watched); it reaches the new loop's exception handler instead, and the leftovers are
    aborted all the same."""
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    a.setblocking(False)
    ovs: list[WSAOverlapped] = []

    async def post() -> None:
        ovs.append(wsa_send(a, [b"z" * BIG]))
        await asyncio.sleep(0)

    async def next_job() -> int:
        return await wsa_send(c, [b"next"])

    try:
        loop = factory()
        loop.run_until_complete(post())
        loop.close()
        a.close()
        n, seen = _next_loop_under_w_error(factory, next_job)
        assert n == 4
        assert len(seen) == 1 and isinstance(seen[0], ResourceWarning), seen
        assert ovs[0].error == WSAErrorCode.WSA_OPERATION_ABORTED and not ovs[0]._pending
        assert d.recv(10) == b"next"
    finally:
        for sock in (a, b, c, d):
            sock.close()


@FACTORIES
@pytest.mark.parametrize("hook", ["custom", "default"])
def test_under_w_error_a_sync_send_that_reclaims_the_socket_never_fails(
    factory: Callable[[], asyncio.AbstractEventLoop], hook: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``wsa_send_sync`` takes the socket over from a bare-closed loop's engine and aborts its
    sends (S5.11, S5.12). There is no loop to give that loop's ResourceWarning to, and with
    warnings as errors it must not fail the sync send: it goes to ``sys.unraisablehook`` (a
    custom hook gets it; CPython's own hook's output is printed). Before the fix the sync send
    raised it after claiming the socket, which then stayed claimed by that thread, so a later
    loop's send never went out."""
    a, b = socket.socketpair()
    got: list[Any] = []
    try:
        a.setblocking(False)
        filled = fill_socket(a)
        loop = factory()

        async def post() -> list[WSAOverlapped]:
            return [wsa_send(a, [b"x" * 1000]), wsa_send(a, [b"y" * 10])]

        ovs = loop.run_until_complete(post())
        assert all(ov.pending for ov in ovs)
        loop.close()
        assert drain_ready(b) == filled
        saved = sys.unraisablehook
        sys.unraisablehook = got.append if hook == "custom" else sys.__unraisablehook__
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", ResourceWarning)
                assert wsasend.wsa_send_sync(a, [b"sync"]) == 4
        finally:
            sys.unraisablehook = saved
        if hook == "custom":
            assert len(got) == 1 and isinstance(got[0].exc_value, ResourceWarning), got
            assert got[0].exc_type is ResourceWarning
            assert "2 overlapped send(s) pending" in str(got[0].exc_value)
            assert "ended event loop" in got[0].err_msg
        else:
            err = capsys.readouterr().err
            assert "ended event loop" in err and "ResourceWarning" in err and "2 overlapped send(s) pending" in err
        for ov in ovs:
            assert ov.error == WSAErrorCode.WSA_OPERATION_ABORTED and ov.transferred == 0
        assert b.recv(10) == b"sync"

        async def after() -> int:
            return await wsa_send(a, [b"after"])

        # The socket is free again: a new loop's send goes out.
        with asyncio.Runner(loop_factory=factory) as runner:
            assert runner.run(asyncio.wait_for(after(), GUARD)) == 5
        assert b.recv(10) == b"after"
    finally:
        a.close()
        b.close()


@FACTORIES
def test_a_wait_on_a_live_loop_still_times_out(factory: Callable[[], asyncio.AbstractEventLoop]) -> None:
    """The waiter's checks of the loop do not end a wait early while the loop is open: a
    pending send on a live (stopped) loop gives a plain time-out, and no abort, no warning."""
    a, b = socket.socketpair()
    try:
        fill_socket(a)
        loop = factory()
        ov = loop.run_until_complete(_post_one(a))
        out: list[bool] = []
        thread = threading.Thread(target=lambda: out.append(ov.wait(0.6)), daemon=True)
        thread.start()
        thread.join(GUARD)
        assert out == [False]
        assert ov.pending
        drain_ready(b)
        assert loop.run_until_complete(_await(ov)) == 10
        loop.close()
    finally:
        a.close()
        b.close()


async def _post_one(sock: socket.socket) -> WSAOverlapped:
    return wsa_send(sock, [b"q" * 10])


async def _await(ov: WSAOverlapped) -> int:
    return await ov


@FACTORIES
@pytest.mark.parametrize("waiter", ["await", "wait_async"])
def test_a_bare_loop_close_wakes_awaiters_on_other_loops(
    factory: Callable[[], asyncio.AbstractEventLoop], waiter: str
) -> None:
    """A coroutine on loop B awaits a send of loop A (``await ov``, or ``wait_async()`` on its
    event); A is closed with a bare ``loop.close()``: B's awaiter wakes, the send reports
    WSA_OPERATION_ABORTED, one ResourceWarning. Before the fix the await never returned
    (2/2 per loop, deterministic)."""
    a, b = socket.socketpair()
    try:
        fill_socket(a)
        ev = WSAEvent()
        loop_a = factory()
        ov = loop_a.run_until_complete(_post_with(a, ev))
        assert ov.pending

        async def on_b() -> object:
            if waiter == "await":
                task: asyncio.Task[object] = asyncio.ensure_future(_await(ov))
            else:
                task = asyncio.ensure_future(ev.wait_async())
            await asyncio.sleep(0)
            with pytest.warns(ResourceWarning, match=r"1 overlapped send\(s\) pending"):
                loop_a.close()
                done, _ = await asyncio.wait([task], timeout=GUARD)
            assert done, "the awaiter on the other loop was never woken"
            return task.exception() if waiter == "await" else task.result()

        with asyncio.Runner(loop_factory=factory) as runner:
            outcome = runner.run(on_b())
        if waiter == "await":
            assert isinstance(outcome, WSAError)
            assert outcome.winerror == WSAErrorCode.WSA_OPERATION_ABORTED
        else:
            assert outcome is True
        assert ov.error == WSAErrorCode.WSA_OPERATION_ABORTED
        assert ov.transferred == 0
    finally:
        a.close()
        b.close()


async def _post_with(sock: socket.socket, ev: WSAEvent) -> WSAOverlapped:
    return wsa_send(sock, [b"w" * 10], overlapped=WSAOverlapped(event=ev))
