"""A forked child that goes on running the parent's loop (SPEC S5.12: it inherits no engine).

``os.fork()`` inside a coroutine leaves the child in that coroutine, on its own copy of the
loop, whose epoll instance (and self-pipe) it shares with the parent. Found by an adversarial
pass, each failed before the fix on both loops and both builds:

- a child that awaited a send inherited in the batch window (or sent on an inherited
  transport) flushed the parent's queue itself: the peer got the parent's bytes twice;
- a child's ``transport.abort()`` removed the parent's writer registration from the shared
  epoll: the parent's queued sends never finished, and nothing said so;
- the child kept the engine's duplicates of the socket's and a file's descriptors: after both
  processes closed the socket the connection stayed open until the child exited;
- the inherited sends stayed pending for ever in the child (awaiting one hung).

The child reports through its exit status; every path in it ends in ``os._exit``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import tempfile
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import wsasend
from tests.conftest import LOOP_FACTORIES
from tests.helpers import pattern, read_exactly, tcp_pair
from wsasend import WSAError, WSAErrorCode, WSAOverlapped, wsa_send

FACTORIES = pytest.mark.parametrize("name", sorted(LOOP_FACTORIES))
GUARD = 30.0

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


async def _fork_running(body: Callable[[], Awaitable[int]]) -> int:
    """Fork; the child awaits ``body()`` in the current task (the parent's loop, inherited) and
    exits with its result. The parent gets the child's exit status."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 99
        try:
            # (No wait_for here: on Python 3.11, get_running_loop() refuses in a forked child.)
            code = await body()
        except BaseException as exc:
            print(f"child: {exc!r}", file=sys.stderr, flush=True)
        os._exit(code)
    _, status = await asyncio.to_thread(os.waitpid, pid, 0)
    return os.waitstatus_to_exitcode(status)


def _run(name: str, main: Callable[[], Awaitable[Any]], *sockets: socket.socket) -> Any:
    """Run ``main()`` on a new loop of ``name``; close the loop, then ``sockets`` (a socket
    still with sends pending is closed with closesocket, which aborts them here, not in the
    next test's loop)."""
    loop = LOOP_FACTORIES[name]()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()
        for sock in sockets:
            if sock.fileno() >= 0:
                wsasend.closesocket(sock)


async def _awaited_aborted(ov: WSAOverlapped, wrong: int) -> int:
    """In the child: 0 when awaiting ``ov`` raises WSA_OPERATION_ABORTED with 0 bytes sent,
    ``wrong`` for another error, ``wrong + 1`` when it does not raise."""
    try:
        await ov
    except WSAError as exc:
        return 0 if _aborted_with(exc, 0) else wrong
    return wrong + 1


def _aborted_with(exc: BaseException, count: int) -> bool:
    return isinstance(exc, WSAError) and exc.winerror == WSAErrorCode.WSA_OPERATION_ABORTED and exc.bytes_sent == count


@FACTORIES
@pytest.mark.parametrize("how", ["await", "transport"])
def test_a_child_never_sends_the_parents_queued_bytes(name: str, how: str) -> None:
    a, b = socket.socketpair()

    async def main() -> bytes:
        if how == "transport":
            transport, _ = await wsasend.connect_accepted_socket(asyncio.Protocol, a)
            first, queued = transport.send(b"first;"), transport.send(b"QUEUED;")
        else:
            first, queued = wsa_send(a, [b"first;"]), wsa_send(a, [b"QUEUED;"])
        assert first.completed_immediately and queued.pending  # in the batch window (S5.4)

        async def child() -> int:
            if how == "transport":
                # The child's transport belongs to the parent: its sends are refused, and its
                # queued send ended aborted here (the parent sends it).
                try:
                    transport.send(b"CHILD;")
                except WSAError as exc:
                    if exc.winerror != WSAErrorCode.WSAENOTSOCK:
                        return 2
                else:
                    return 3
            return await _awaited_aborted(queued, 4)

        assert await _fork_running(child) == 0
        assert await queued == 7
        if how == "transport":
            transport.close()
            await asyncio.sleep(0)
        else:
            wsasend.closesocket(a)
        return await read_exactly(b, len(b"first;QUEUED;")) + b.recv(100)

    assert _run(name, main, a, b) == b"first;QUEUED;"


@FACTORIES
def test_a_childs_abort_leaves_the_parents_sends_alone(name: str) -> None:
    ours, peer = tcp_pair(bufsize=64 * 1024)
    payload = pattern(1 << 20, 7)

    async def main() -> None:
        transport, _ = await wsasend.connect_accepted_socket(asyncio.Protocol, ours)
        sent = transport.send(payload)
        assert sent.pending

        async def child() -> int:
            # (No loop iteration after it: libuv aborts in a child that runs the parent's loop
            # after a registration it made there was closed.)
            ended = sent.done()
            transport.abort()
            return 0 if ended else 6

        assert await _fork_running(child) == 0
        # The parent's registration is still there: every byte arrives, the send completes.
        assert await read_exactly(peer, len(payload)) == payload
        assert await asyncio.wait_for(sent, GUARD) == len(payload)
        transport.close()

    _run(name, main, ours, peer)


def _holders(target: str) -> int:
    """How many of this process's descriptors are open on ``target`` (a /proc/self/fd link)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == target:
                count += 1
        except OSError:
            pass
    return count


@FACTORIES
def test_a_child_keeps_no_descriptor_of_the_engine(name: str) -> None:
    ours, peer = tcp_pair(bufsize=64 * 1024)
    # uvloop keeps a descriptor of its own for a registration (its stock transport does too);
    # the engine's duplicates are what must go.
    theirs = 1 if name == "uvloop" else 0

    async def main() -> None:
        transport, _ = await wsasend.connect_accepted_socket(asyncio.Protocol, ours)
        with tempfile.TemporaryFile() as file:
            file.write(pattern(1 << 20, 3))
            file.flush()
            big = transport.send(pattern(1 << 20, 2))
            sending = asyncio.ensure_future(transport.sendfile(file))
            await asyncio.sleep(0.01)
            assert big.pending and not sending.done()
            sock_link = os.readlink(f"/proc/self/fd/{ours.fileno()}")
            file_link = os.readlink(f"/proc/self/fd/{file.fileno()}")

            async def child() -> int:
                ours.close()
                file.close()
                return 0 if _holders(file_link) == 0 and _holders(sock_link) <= theirs else 7

            assert await _fork_running(child) == 0
            transport.abort()
            with pytest.raises(WSAError):
                await sending
            with pytest.raises(WSAError):
                await big
        # The parent closed too: the peer sees the end now, not when a child exits.
        peer.setblocking(False)
        while await asyncio.wait_for(asyncio.get_running_loop().sock_recv(peer, 1 << 20), GUARD):
            pass

    _run(name, main, ours, peer)


@FACTORIES
def test_inherited_sends_end_aborted_in_the_child(name: str) -> None:
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)

    async def main() -> None:
        big = wsa_send(a, [pattern(1 << 20, 1)])
        small = wsa_send(a, [b"tail"])
        assert big.pending and small.pending

        async def child() -> int:
            if big.pending or small.pending:
                return 8
            for ov in (big, small):
                with pytest.raises(WSAError) as info:
                    ov.result()
                if info.value.winerror != WSAErrorCode.WSA_OPERATION_ABORTED:
                    return 9
            if not small.wait(GUARD):
                return 10
            return await _awaited_aborted(small, 11)

        assert await _fork_running(child) == 0
        # In the parent they are still the parent's, and finish.
        received = await read_exactly(b, (1 << 20) + 4)
        assert received == pattern(1 << 20, 1) + b"tail"
        assert await big == 1 << 20 and await small == 4

    _run(name, main, a, b)


def test_a_childs_message_never_carries_the_parents_nonoverlapped_pieces() -> None:
    # The parent's MSG_PARTIAL pieces (copied, held per socket, S4.5) were kept in the child:
    # its own next message went out with them in front, so they were sent twice.
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        assert wsasend.wsa_send_sync(a, b"PARENT-PIECE;", wsasend.MSG_PARTIAL) == 13
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 99
            try:
                code = 0 if wsasend.wsa_send_sync(a, b"child") == 5 else 13
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert wsasend.wsa_send_sync(a, b"parent-end") == 10
        assert b.recv(100) == b"child"
        assert b.recv(100) == b"PARENT-PIECE;parent-end"
    finally:
        a.close()
        b.close()


@FACTORIES
def test_a_child_never_waits_for_a_lock_another_thread_held_at_the_fork(name: str) -> None:
    # The lock that guards the loops' batch ticks was not renewed in the child: held by another
    # thread at the fork (making a loop's first engine), the child's first send on a new loop
    # waited for it for ever.
    import signal

    from wsasend import _engine

    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        with _engine._TICKS_LOCK:
            taken.set()
            release.wait(GUARD)

    holder = threading.Thread(target=hold)
    holder.start()
    taken.wait(GUARD)
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 99
            try:
                signal.alarm(int(GUARD))  # a hang ends the child (status -14), never the test

                async def send() -> int:
                    a, b = socket.socketpair()
                    with a, b:
                        return await wsa_send(a, [b"child"])

                code = 0 if LOOP_FACTORIES[name]().run_until_complete(send()) == 5 else 14
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        release.set()
        holder.join(GUARD)
