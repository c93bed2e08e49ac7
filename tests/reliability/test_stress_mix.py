"""Every posting path at once on one socket, then a mid-run close (SPEC S5.11, S6.1, S6.4).

Three asyncio tasks post with ``wsa_send`` (some sends cancelled with ``ov.cancel()``), two
threads post through ``winsock.WSASend`` (the provider's loop), one thread sends with blocking
``wsa_send_sync``; after 96 MB have arrived the socket is closed with ``closesocket`` while
everything is in flight. Every frame carries its sender and sequence number and a pattern of
its own, so the receiver's stream is checked byte for byte against the completions: whole
frames are exactly the sends that completed whole, in each sender's order, no frame is cut
into, at most one send (the one on the wire at the close) is partial and its bytes are a
prefix of its frame, and the bytes received equal the sum of every ``transferred``.
"""

from __future__ import annotations

import asyncio
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest

from tests.conftest import LOOP_FACTORIES
from wsasend import WSAError, WSAErrorCode, closesocket, winsock, wsa_send, wsa_send_sync

from ._frames import HEADER, FrameReader, frame

GUARD = 30.0
CLOSE_AFTER = 96 << 20
Result = tuple[int, int, int, int]  # sender, seq, frame length, transferred


@pytest.mark.parametrize("factory", list(LOOP_FACTORIES.values()), ids=list(LOOP_FACTORIES))
def test_all_posting_paths_at_once_then_close(factory: Callable[[], asyncio.AbstractEventLoop]) -> None:
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    reader = FrameReader(b).start()
    results: list[Result] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    closed = threading.Event()

    def record(sender: int, seq: int, data: bytes, transferred: int) -> None:
        with lock:
            results.append((sender, seq, len(data), transferred))

    async def task_sender(sender: int) -> None:
        rng = random.Random(sender)
        seq = 0
        while not closed.is_set():
            batch = [frame(sender, seq + i, rng.randrange(1, 100_000)) for i in range(3)]
            ovs = []
            stop = False
            for data in batch:
                try:
                    ovs.append((data, wsa_send(a, [data])))
                except WSAError as exc:
                    if exc.winerror != WSAErrorCode.WSAEINPROGRESS:
                        assert closed.is_set(), exc
                        stop = True
                    break
            if len(ovs) > 1 and rng.random() < 0.3:
                ovs[1][1].cancel()  # withdrawn if none of it went (transferred 0), else finishes
            for data, ov in ovs:
                try:
                    await ov
                except WSAError as exc:
                    # aborted by the close; a send caught between the close's shutdown and its
                    # close may see the shutdown instead: any error, but only after the close
                    assert exc.winerror == WSAErrorCode.WSA_OPERATION_ABORTED or closed.is_set(), exc
                record(sender, seq, data, ov.transferred)
                seq += 1
            if stop:
                return
            # Nothing posted: another loop's engine holds the socket (WSAEINPROGRESS, S5.11).
            # Back off for a moment, as a Winsock client retrying would: a loop that spins here
            # holds the GIL while it builds frames and starves the threads it waits for (the
            # provider's loop, the reader) down to one turn per switch interval. On a slow
            # machine the run then crawled, 96 MB in well over 120 s (CI, stop 30).
            await asyncio.sleep(0 if ovs else 0.001)

    def facade_sender(sender: int) -> None:
        rng = random.Random(sender)
        seq = 0
        try:
            while not closed.is_set():
                data = frame(sender, seq, rng.randrange(1, 100_000))
                ov = winsock.WSAOVERLAPPED()
                r = winsock.WSASend(a, [winsock.WSABUF(len(data), data)], 1, None, 0, ov, None)
                if r == winsock.SOCKET_ERROR:
                    code = winsock.WSAGetLastError()
                    if code == winsock.WSAEINPROGRESS:
                        time.sleep(0.001)  # another loop's engine is busy with the socket: retry
                        continue
                    if code != winsock.WSA_IO_PENDING:
                        assert closed.is_set(), code
                        return
                assert ov.wait(GUARD), "a facade send hung"
                assert ov.error in (0, WSAErrorCode.WSA_OPERATION_ABORTED) or closed.is_set(), ov.error
                record(sender, seq, data, ov.transferred)
                seq += 1
        except BaseException as exc:
            errors.append(exc)

    def sync_sender(sender: int) -> None:
        rng = random.Random(sender)
        seq = 0
        try:
            while not closed.is_set():
                data = frame(sender, seq, rng.randrange(1, 300_000))
                try:
                    n = wsa_send_sync(a, [data])
                except WSAError as exc:
                    if exc.winerror == WSAErrorCode.WSAETIMEDOUT:
                        raise
                    assert closed.is_set(), exc
                    n = exc.bytes_sent or 0
                    if n:
                        record(sender, seq, data, n)
                    return
                record(sender, seq, data, n)
                seq += 1
        except BaseException as exc:
            errors.append(exc)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        tasks = [asyncio.ensure_future(task_sender(s)) for s in (1, 2, 3)]
        threads = [threading.Thread(target=facade_sender, args=(s,), daemon=True) for s in (4, 5)]
        threads.append(threading.Thread(target=sync_sender, args=(6,), daemon=True))
        for thread in threads:
            thread.start()
        while reader.total < CLOSE_AFTER and reader.error is None:
            await asyncio.sleep(0.01)
        closed.set()
        closesocket(a)
        async with asyncio.timeout(GUARD):
            await asyncio.gather(*tasks)
        for thread in threads:
            await loop.run_in_executor(None, thread.join, GUARD)
            assert not thread.is_alive(), "a sender thread hung"

    winsock.WSAStartup()
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(main())
    finally:
        winsock.WSACleanup()
        if a.fileno() >= 0:
            a.close()
        reader.thread.join(GUARD)
        b.close()
    assert not errors, errors
    assert reader.error is None, reader.error
    # Byte for byte: what arrived is exactly what the completions say was consumed (S6.4).
    assert reader.total == sum(r[3] for r in results)
    whole = [(s, q) for s, q, length, t in results if t == length]
    assert Counter((s, q) for s, q, _ in reader.frames) == Counter(whole)
    for sender in range(1, 7):
        got = [q for s, q, _ in reader.frames if s == sender]
        assert got == sorted(got), f"sender {sender}'s frames were reordered"
    partial = [(s, q, t) for s, q, length, t in results if 0 < t < length]
    assert len(partial) <= 1, partial
    if partial:
        s, q, t = partial[0]
        size = next(length for s2, q2, length, _ in results if (s2, q2) == (s, q)) - HEADER.size
        assert reader.leftover() == t
        assert bytes(reader._buf) == frame(s, q, size)[:t]
    else:
        assert reader.leftover() == 0
    senders = Counter(s for s, _, _ in reader.frames)
    assert set(senders) >= {1, 2, 3}, senders  # every loop task got its turn
