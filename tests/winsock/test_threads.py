"""The facade from plain threads: the provider, events, alertable waits, cleanup (SPEC S8.1, S8.4-S8.6).

Real sockets; every test runs with the provider on an asyncio loop and on uvloop.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from tests.helpers import SMALL_BUF, fill_socket, pattern, run_threads, tcp_pair
from wsasend import WSAError, WSAErrorCode, winsock, wsa_send_sync
from wsasend.winsock import (
    DWORD,
    SOCKET_ERROR,
    WAIT_IO_COMPLETION,
    WSA_IO_PENDING,
    WSA_OPERATION_ABORTED,
    WSA_WAIT_EVENT_0,
    WSA_WAIT_TIMEOUT,
    WSABUF,
    WSANOTINITIALISED,
    WSAOVERLAPPED,
    SleepEx,
    WSACleanup,
    WSACreateEvent,
    WSAGetLastError,
    WSAGetOverlappedResult,
    WSAResetEvent,
    WSASend,
    WSAStartup,
    WSAWaitForMultipleEvents,
)

from ._support import GUARD, GUARD_MS, Reader, Routines, recv_available, recv_exactly, settle, stuffed_pair

pytestmark = pytest.mark.usefixtures("provider")

# Frames of the many-threads tests: magic, thread, sequence number, body length; then the body.
_HEADER = struct.Struct("!IIII")
_MAGIC = 0x57534153  # "WSAS"


def _body(thread: int, seq: int) -> bytes:
    # Sizes from a few bytes to ~100 KB, so that some sends complete at once and some pend.
    size = (seq * 7919 + thread * 104_729) % 100_000 if seq % 3 == 0 else 1 + (seq * 31 + thread) % 2000
    return pattern(size, seed=thread * 131 + seq)


def _frame(thread: int, seq: int) -> list[WSABUF]:
    body = _body(thread, seq)
    header = _HEADER.pack(_MAGIC, thread, seq, len(body))
    # Three buffers per frame: header, the body split in two (a gather in the middle of a frame).
    half = len(body) // 2
    return [WSABUF(len(header), header), WSABUF(half, body), WSABUF(len(body) - half, memoryview(body)[half:])]


def _parse(stream: bytes, threads: int, frames: int) -> dict[int, list[int]]:
    """Split the stream into frames, checking each is whole; the sequence numbers per thread."""
    seen: dict[int, list[int]] = {t: [] for t in range(threads)}
    pos = 0
    while pos < len(stream):
        magic, thread, seq, size = _HEADER.unpack_from(stream, pos)
        assert magic == _MAGIC, f"frame boundary lost at byte {pos}"
        pos += _HEADER.size
        assert stream[pos : pos + size] == _body(thread, seq), f"frame {thread}/{seq} is not whole"
        pos += size
        seen[thread].append(seq)
    assert pos == len(stream)
    return seen


@pytest.fixture
def tcp() -> Iterator[tuple[socket.socket, socket.socket]]:
    client, server = tcp_pair(bufsize=SMALL_BUF)
    yield client, server
    client.close()
    server.close()


def _expected_bytes(threads: int, frames: int) -> int:
    return sum(_HEADER.size + len(_body(t, s)) for t in range(threads) for s in range(frames))


def test_eight_threads_with_events_on_one_socket(tcp: tuple[socket.socket, socket.socket]) -> None:
    """S8.6 / issue 5.6: 8 threads post on one socket at once: each send arrives whole, each
    thread's sends in its own order, nothing lost. Each thread keeps up to 6 sends outstanding,
    recycling overlappeds through WSAWaitForMultipleEvents and WSAGetOverlappedResult."""
    client, server = tcp
    threads, frames = 8, 40
    reader = Reader(server, _expected_bytes(threads, frames))
    failures: list[str] = []
    start = threading.Barrier(threads)

    def worker(tid: int) -> None:
        try:
            free = [WSAOVERLAPPED() for _ in range(6)]
            for ov in free:
                ov.hEvent = WSACreateEvent()
            busy: list[tuple[WSAOVERLAPPED, int]] = []
            start.wait(GUARD)
            for seq in range(frames):
                if not free:
                    i = WSAWaitForMultipleEvents([ov.hEvent for ov, _ in busy], False, GUARD_MS, False)
                    assert WSA_WAIT_EVENT_0 <= i < len(busy), hex(i)
                    ov, size = busy.pop(i)
                    cb = DWORD()
                    assert WSAGetOverlappedResult(client, ov, cb, False, DWORD()) is True
                    assert cb.value == size
                    free.append(ov)
                ov = free.pop()
                bufs = _frame(tid, seq)
                size = sum(buf.len for buf in bufs)
                sent = DWORD()
                r = WSASend(client, bufs, len(bufs), sent, 0, ov, None)
                if r == 0:
                    assert sent.value == size
                    free.append(ov)
                else:
                    assert WSAGetLastError() == WSA_IO_PENDING
                    busy.append((ov, size))
            for ov, size in busy:
                cb = DWORD()
                assert WSAGetOverlappedResult(client, ov, cb, True, DWORD()) is True
                assert cb.value == size
        except BaseException as exc:
            failures.append(f"thread {tid}: {exc!r}")

    run_threads([threading.Thread(target=worker, args=(t,)) for t in range(threads)], GUARD)
    assert failures == []
    seen = _parse(reader.join(), threads, frames)
    assert seen == {t: list(range(frames)) for t in range(threads)}


def test_eight_threads_with_completion_routines(tcp: tuple[socket.socket, socket.socket]) -> None:
    """The same with completion routines: each thread's routines run in that thread only, in its
    alertable waits, in its posting order; the bytes arrive as in the test above."""
    client, server = tcp
    threads, frames = 8, 30
    reader = Reader(server, _expected_bytes(threads, frames))
    failures: list[str] = []
    start = threading.Barrier(threads)

    def worker(tid: int) -> None:
        try:
            me = threading.get_ident()
            done: list[int] = []

            def routine(error: int, transferred: int, ov: WSAOVERLAPPED, flags: int) -> None:
                assert threading.get_ident() == me
                assert error == 0
                done.append(ov.hEvent)  # the context: our sequence number

            start.wait(GUARD)
            for seq in range(frames):
                ov = WSAOVERLAPPED()
                ov.hEvent = seq
                bufs = _frame(tid, seq)
                before = len(done)
                r = WSASend(client, bufs, len(bufs), None, 0, ov, routine)
                assert r == 0 or WSAGetLastError() == WSA_IO_PENDING
                assert len(done) == before  # never inside WSASend: only in our alertable waits
                if seq % 4 == 3:
                    SleepEx(0, True)
            while len(done) < frames:
                assert SleepEx(GUARD_MS, True) == WAIT_IO_COMPLETION
            assert done == list(range(frames))
        except BaseException as exc:
            failures.append(f"thread {tid}: {exc!r}")

    run_threads([threading.Thread(target=worker, args=(t,)) for t in range(threads)], GUARD)
    assert failures == []
    assert _parse(reader.join(), threads, frames) == {t: list(range(frames)) for t in range(threads)}


def test_pending_send_completed_through_wait_for_multiple_events() -> None:
    """Acceptance: a pending send, completed through WSAWaitForMultipleEvents, from a thread."""
    a, b, filled = stuffed_pair()
    try:
        ov = WSAOVERLAPPED()
        ov.hEvent = WSACreateEvent()
        other = WSACreateEvent()
        assert other is not None
        sent = DWORD(5)
        assert WSASend(a, [pattern(120_000)], 1, sent, 0, ov, None) == SOCKET_ERROR
        assert WSAGetLastError() == WSA_IO_PENDING
        assert WSAWaitForMultipleEvents([other, ov.hEvent], False, 0, False) == WSA_WAIT_TIMEOUT
        reader = Reader(b, filled + 120_000)
        assert WSAWaitForMultipleEvents([other, ov.hEvent], False, GUARD_MS, False) == WSA_WAIT_EVENT_0 + 1
        assert reader.join()[filled:] == pattern(120_000)
        cb = DWORD()
        assert WSAGetOverlappedResult(a, ov, cb, False, DWORD()) is True
        assert (cb.value, sent.value) == (120_000, 5)
    finally:
        a.close()
        b.close()


def test_pending_send_completed_through_get_overlapped_result_wait() -> None:
    """Acceptance: WSAGetOverlappedResult(fWait=True) from a thread other than the poster."""
    a, b, filled = stuffed_pair()
    try:
        ov = WSAOVERLAPPED()
        ov.hEvent = WSACreateEvent()
        assert WSASend(a, [pattern(90_000)], 1, None, 0, ov, None) == SOCKET_ERROR
        assert WSAGetLastError() == WSA_IO_PENDING
        outcome: list[tuple[bool, int, int]] = []

        def waiter() -> None:
            cb = DWORD()
            ok = WSAGetOverlappedResult(a, ov, cb, True, DWORD())
            outcome.append((ok, cb.value, WSAGetLastError()))

        thread = threading.Thread(target=waiter)
        thread.start()
        assert recv_exactly(b, filled + 90_000)[filled:] == pattern(90_000)
        thread.join(GUARD)
        assert outcome == [(True, 90_000, 0)]
        assert ov.hEvent.is_set()
    finally:
        a.close()
        b.close()


def test_routines_run_only_in_sleepex_of_the_posting_thread() -> None:
    """Acceptance: completion routines run only in SleepEx(..., True) of the thread that posted
    them: not in the provider, not in another thread's alertable wait, not in a non-alertable
    sleep, and not before the poster waits alertably."""
    a, b, filled = stuffed_pair()
    try:
        routine = Routines()
        posted = threading.Event()
        go = threading.Event()
        outcome: dict[str, object] = {}
        ovs: list[WSAOVERLAPPED] = []

        def poster() -> None:
            for i in range(3):
                ov = WSAOVERLAPPED()
                assert WSASend(a, [b"p" * (i + 1)], 1, None, 0, ov, routine) == SOCKET_ERROR
                ovs.append(ov)
            posted.set()
            go.wait(GUARD)
            outcome["before"] = list(routine.calls)
            outcome["plain sleep"] = SleepEx(0, False)
            outcome["after plain sleep"] = list(routine.calls)
            outcome["alertable"] = SleepEx(GUARD_MS, True)
            outcome["ident"] = threading.get_ident()

        thread = threading.Thread(target=poster)
        thread.start()
        assert posted.wait(GUARD)
        recv_exactly(b, filled + 6)
        settle(*ovs)
        # Another thread's (this one's) alertable wait does not run them.
        assert SleepEx(0, True) == 0
        unset = WSACreateEvent()
        assert unset is not None
        assert WSAWaitForMultipleEvents([unset], False, 0, True) == WSA_WAIT_TIMEOUT
        assert routine.calls == []
        go.set()
        thread.join(GUARD)
        assert outcome["before"] == [] and outcome["after plain sleep"] == []
        assert outcome["plain sleep"] == 0
        assert outcome["alertable"] == WAIT_IO_COMPLETION
        assert [(c[0], c[1]) for c in routine.calls] == [(0, 1), (0, 2), (0, 3)]
        assert set(routine.threads) == {outcome["ident"]}
    finally:
        a.close()
        b.close()


def test_wsacleanup_with_sends_pending() -> None:
    """Acceptance: the last WSACleanup with sends pending from several threads: each completes
    with WSA_OPERATION_ABORTED and its exact count (events set, a thread blocked in
    WSAGetOverlappedResult woken, routines run in their poster's next SleepEx, which works
    after cleanup), the provider stops, and every later call is WSANOTINITIALISED (S8.1, S6.4)."""
    a, b, filled = stuffed_pair()
    try:
        routine = Routines()
        with_event = WSAOVERLAPPED()
        with_event.hEvent = WSACreateEvent()
        with_routine = WSAOVERLAPPED()
        assert WSASend(a, [pattern(300_000)], 1, None, 0, with_event, None) == SOCKET_ERROR
        assert recv_exactly(b, filled + 1000)[filled:] == pattern(1000)  # some of it went out
        blocked: list[tuple[bool, int]] = []
        posted = threading.Event()
        routine_thread: dict[str, object] = {}

        def other_poster() -> None:
            assert WSASend(a, [b"second"], 1, None, 0, with_routine, routine) == SOCKET_ERROR
            posted.set()
            # Wait alertably until the cleanup's abort queues our routine.
            routine_thread["wait"] = SleepEx(GUARD_MS, True)
            routine_thread["ident"] = threading.get_ident()

        def waiter() -> None:
            ok = WSAGetOverlappedResult(a, with_event, DWORD(), True, DWORD())
            blocked.append((ok, WSAGetLastError()))

        threads = [threading.Thread(target=other_poster), threading.Thread(target=waiter)]
        for thread in threads:
            thread.start()
        assert posted.wait(GUARD)
        deadline = time.monotonic() + GUARD
        while with_event._tevent is None:  # until the waiter sits in WSAGetOverlappedResult's wait
            assert time.monotonic() < deadline
            time.sleep(0.001)
        assert with_event.pending and with_routine.pending
        assert WSACleanup() == 0
        for thread in threads:
            thread.join(GUARD)
        assert not with_event.pending and not with_routine.pending
        assert with_event.hEvent.is_set()
        assert with_event.error == WSA_OPERATION_ABORTED
        assert blocked == [(False, WSA_OPERATION_ABORTED)]
        assert routine_thread["wait"] == WAIT_IO_COMPLETION
        assert routine.calls == [(WSA_OPERATION_ABORTED, 0, with_routine, 0)]
        assert routine.threads == [routine_thread["ident"]]
        # Exact accounting: the kernel took what the aborted send says, no more, no less.
        assert 1000 <= with_event.transferred < 300_000
        assert recv_available(b) == pattern(300_000)[1000 : with_event.transferred]
        # The provider is gone and the facade is closed.
        assert not [t for t in threading.enumerate() if t.name == "wsasend-provider"]
        assert WSASend(a, [b"x"], 1, DWORD(), 0, None, None) == SOCKET_ERROR
        assert WSAGetLastError() == WSANOTINITIALISED
        assert WSAResetEvent(with_event.hEvent) is False
        assert WSAGetLastError() == WSANOTINITIALISED
    finally:
        a.close()
        b.close()


def test_wsacleanup_while_threads_post() -> None:
    """Cleanup racing with posting threads: no call hangs, every call reports 0, WSA_IO_PENDING
    or WSANOTINITIALISED, and every send that was accepted completes (S8.1)."""
    a, b = socket.socketpair()
    reader = Reader(b)
    try:
        outcomes: list[int] = []
        accepted: list[WSAOVERLAPPED] = []
        lock = threading.Lock()
        started = threading.Barrier(5)

        def poster() -> None:
            started.wait(GUARD)
            for i in range(300):
                ov = WSAOVERLAPPED()
                r = WSASend(a, [pattern(2000, seed=i)], 1, None, 0, ov, None)
                code = 0 if r == 0 else WSAGetLastError()
                with lock:
                    outcomes.append(code)
                    if code in (0, WSA_IO_PENDING):
                        accepted.append(ov)
                if code == WSANOTINITIALISED:
                    return

        posters = [threading.Thread(target=poster) for _ in range(4)]
        for thread in posters:
            thread.start()
        started.wait(GUARD)
        assert WSACleanup() == 0
        for thread in posters:
            thread.join(GUARD)
        assert not any(thread.is_alive() for thread in posters)
        assert set(outcomes) <= {0, WSA_IO_PENDING, WSANOTINITIALISED}
        assert all(ov.wait(GUARD) for ov in accepted)
        assert all(ov.error in (0, WSA_OPERATION_ABORTED) for ov in accepted)
    finally:
        a.close()
        reader.join()
        b.close()


def test_alertable_wait_wakes_for_an_event_set_by_another_thread() -> None:
    """WSAWaitForMultipleEvents(WSA_INFINITE) wakes when another thread sets one of its events,
    without polling; wait_all waits for all of them (S8.4)."""
    first, second = WSACreateEvent(), WSACreateEvent()
    assert first is not None and second is not None
    results: list[int] = []

    def wait_all() -> None:
        results.append(WSAWaitForMultipleEvents([first, second], True, winsock.WSA_INFINITE, True))

    thread = threading.Thread(target=wait_all)
    thread.start()
    assert winsock.WSASetEvent(first)
    thread.join(0.05)
    assert thread.is_alive()  # one of two is not enough
    assert winsock.WSASetEvent(second)
    thread.join(GUARD)
    assert results == [WSA_WAIT_EVENT_0]


def test_routines_are_per_thread(tcp: tuple[socket.socket, socket.socket]) -> None:
    """Two threads posting with routines on one socket: each thread's SleepEx runs its own
    routines and never the other's (S8.6)."""
    client, server = tcp
    filled = fill_socket(client)
    reader = Reader(server, filled + 2 * 5 * 20_000)
    seen: dict[int, list[int]] = {}
    failures: list[str] = []

    def worker(tid: int) -> None:
        try:
            me = threading.get_ident()
            mine: list[int] = []

            def routine(error: int, transferred: int, ov: WSAOVERLAPPED, flags: int) -> None:
                assert threading.get_ident() == me
                mine.append(ov.hEvent)

            for seq in range(5):
                ov = WSAOVERLAPPED()
                ov.hEvent = tid * 100 + seq
                r = WSASend(client, [pattern(20_000, seed=tid)], 1, None, 0, ov, routine)
                assert r == 0 or WSAGetLastError() == WSA_IO_PENDING
            while len(mine) < 5:
                assert SleepEx(GUARD_MS, True) == WAIT_IO_COMPLETION
            seen[tid] = mine
        except BaseException as exc:
            failures.append(repr(exc))

    workers = [threading.Thread(target=worker, args=(t,)) for t in (1, 2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(GUARD)
    assert failures == []
    assert seen == {1: [100, 101, 102, 103, 104], 2: [200, 201, 202, 203, 204]}
    assert len(reader.join()) == filled + 200_000


@pytest.mark.usefixtures("provider")
def test_engine_registry_survives_a_finalizer_under_its_lock() -> None:
    """Found by the facade's tests: the garbage collector can run inside ``engine_for`` while it
    holds the engine registry's lock (it allocates the new engine there), and a collected
    socket's finalizer then takes that same lock, in the same thread. With a non-reentrant lock
    the provider thread deadlocked. Here the collection is made deterministic: the finalizer
    runs while this thread holds the lock, as the collector would run it."""
    import asyncio

    from wsasend import _api

    loop = asyncio.new_event_loop()
    outcome: list[str] = []

    def run() -> None:
        doomed = socket.socket()
        _api.engine_for(doomed, loop)  # registers the finalizer that forgets the engine
        doomed.close()
        with _api._LOCK:
            del doomed  # the finalizer runs here, under the lock, as under engine_for
            outcome.append("finalizer ran")

    try:
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        thread.join(5.0)
        assert outcome == ["finalizer ran"], "the registry lock deadlocked its own finalizer"
    finally:
        loop.close()


def _blocking_send_waiting_behind(a: socket.socket, outcome: dict[str, int], deadline: float) -> threading.Thread:
    """A thread's blocking nonoverlapped WSASend on ``a``, started and waiting for the socket
    (behind the overlapped send pending there); its result goes to ``outcome``."""
    from wsasend._api import slot_for

    def blocking_send() -> None:
        sent = DWORD()
        outcome["rc"] = WSASend(a, [b"<the waiting send>"], 1, sent, 0, None, None)
        outcome["error"], outcome["sent"] = WSAGetLastError(), sent.value

    thread = threading.Thread(target=blocking_send, daemon=True)
    thread.start()
    slot = slot_for(a)
    while slot.sync_waiting == 0:  # until it waits for the overlapped send
        assert time.monotonic() < deadline
        time.sleep(0.001)
    return thread


def test_last_wsacleanup_lets_no_waiting_blocking_send_in_after_the_cut(provider: str) -> None:
    """S8.1, S6.1 and S4.2: the last WSACleanup cuts an overlapped send on a plain socket; a
    blocking nonoverlapped WSASend that was waiting behind it fails with WSAEINTR and sends
    nothing, and the socket takes no more sends. Before, the abort let the socket go and the
    waiting send went out right after the cut bytes (adversarial pass: 10 of 10 rounds)."""
    a, b, filled = stuffed_pair()
    head = bytes(range(256)) * (1 << 18)  # 64 MiB: still going out when the cleanup comes
    outcome: dict[str, int] = {}
    try:
        ov = WSAOVERLAPPED()
        assert WSASend(a, [head], 1, None, 0, ov, None) == SOCKET_ERROR
        assert WSAGetLastError() == WSA_IO_PENDING
        deadline = time.monotonic() + GUARD
        thread = _blocking_send_waiting_behind(a, outcome, deadline)
        # The reader stops after 1 MiB of the head, so the head cannot finish before the
        # cleanup comes: the cleanup must cut it. With a reader draining to the end the engine
        # could send all 64 MiB first under load (a flush goes on until EAGAIN, or 32 calls of
        # up to 1 MiB), after which the waiting send going out is right and the test's premise
        # was gone (CI, stop 31).
        reader = Reader(b, limit=filled + (1 << 20))
        while len(reader.data) <= filled:  # the head send has started
            assert time.monotonic() < deadline
            time.sleep(0.001)
        assert WSACleanup() == 0
        thread.join(GUARD)
        assert not thread.is_alive()
        state = f"head: error {ov.error}, {ov.transferred} of {len(head)} bytes sent"
        assert outcome == {"rc": SOCKET_ERROR, "error": WSAErrorCode.WSAEINTR, "sent": 0}, state
        assert ov.error == WSA_OPERATION_ABORTED and 0 < ov.transferred < len(head), state
        # A new send takes no more: WSAENOTSOCK, as docs/winsock.md says (WSAEINTR is for the
        # send the cleanup woke; a new one said it too, adversarial pass).
        with pytest.raises(WSAError) as info:
            wsa_send_sync(a, [b"later"])
        assert info.value.winerror == WSAErrorCode.WSAENOTSOCK
        sent = DWORD()
        assert WSAStartup(0x0202) is not None
        try:
            assert WSASend(a, [b"later"], 1, sent, 0, None, None) == SOCKET_ERROR
            assert WSAGetLastError() == WSAErrorCode.WSAENOTSOCK
        finally:
            WSACleanup()
        a.close()
        received = reader.join() + Reader(b).join()  # (the rest, to the close)
    finally:
        a.close()
        b.close()
    assert received[filled:] == head[: ov.transferred]


def test_last_wsacleanup_cuts_the_sends_of_a_provider_loop_too_busy_to_abort_them(
    provider: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S8.1 and S6.1: the last WSACleanup hands its abort pass to the provider's loop and waits
    for it a bounded time. When the loop was busy past that wait, the loop stopped with the
    pass never run: the cut send was left pending on a closed loop, and a blocking WSASend
    waiting for the socket took it over and went out after the cut bytes. The loop's thread
    now runs the pass itself once its loop has stopped."""
    from wsasend.winsock import _startup

    a, b, filled = stuffed_pair()
    head = bytes(range(256)) * (1 << 18)  # 64 MiB
    outcome: dict[str, int] = {}
    loop = _startup.provider_loop()
    assert loop is not None
    busy, unblock = threading.Event(), threading.Event()
    try:
        ov = WSAOVERLAPPED()
        assert WSASend(a, [head], 1, None, 0, ov, None) == SOCKET_ERROR
        assert WSAGetLastError() == WSA_IO_PENDING
        reader = Reader(b, limit=filled + (1 << 20))  # the head starts, and cannot finish
        deadline = time.monotonic() + GUARD
        while len(reader.data) <= filled:
            assert time.monotonic() < deadline
            time.sleep(0.001)
        thread = _blocking_send_waiting_behind(a, outcome, deadline)

        def be_busy() -> None:  # the provider's loop, busy until the cleanup has returned
            busy.set()
            unblock.wait(GUARD)

        loop.call_soon_threadsafe(be_busy)
        assert busy.wait(GUARD)
        monkeypatch.setattr(_startup, "_HANDOFF_TIMEOUT", 0.05)
        assert WSACleanup() == 0  # its wait for the abort pass ran out
        unblock.set()
        thread.join(GUARD)
        assert not thread.is_alive()
        state = f"head: error {ov.error}, {ov.transferred} of {len(head)} bytes sent"
        assert outcome == {"rc": SOCKET_ERROR, "error": WSAErrorCode.WSAEINTR, "sent": 0}, state
        assert ov.error == WSA_OPERATION_ABORTED and 0 < ov.transferred < len(head), state
        a.close()
        received = reader.join() + Reader(b).join()
    finally:
        unblock.set()
        a.close()
        b.close()
    assert received[filled:] == head[: ov.transferred]
