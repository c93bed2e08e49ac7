"""The walkthrough behind ``make demo``: every claim it prints is checked as it runs."""

from __future__ import annotations

import asyncio
import socket

from . import (
    MSG_PARTIAL,
    WSAError,
    WSAErrorCode,
    WSAOverlapped,
    closesocket,
    compiled,
    max_message_size,
    remaining,
    wsa_send,
    wsa_send_sync,
)


def _title(text: str) -> None:
    print(f"\n== {text}")


def _sync_part() -> None:
    _title("1. A gathered send: three buffers, one sendmsg vector, no copy")
    a, b = socket.socketpair()
    header, body, trailer = b"HEAD:", memoryview(bytearray(b"body bytes")), b":END"
    n = wsa_send_sync(a, [header, body, trailer])
    got = b.recv(100)
    print(f"wsa_send_sync(a, [header, body, trailer]) -> {n}; the peer read {got!r}")
    assert got == b"HEAD:body bytes:END"

    _title("2. Partial consumption on a nonblocking stream socket")
    a.setblocking(False)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    bufs = [bytes(300_000), bytes(300_000)]
    sent = wsa_send_sync(a, bufs)
    rest = remaining(bufs, sent)
    print(f"offered 600000 bytes, the kernel consumed {sent}; remaining() gives {len(rest)} zero-copy views")
    print(f"  of {sum(v.nbytes for v in rest)} bytes, the exact unsent tail")
    assert 0 < sent < 600_000 and sum(v.nbytes for v in rest) == 600_000 - sent
    a.close()
    b.close()

    _title("3. MSG_PARTIAL: three pieces, one UDP datagram")
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.connect(rx.getsockname())
    wsa_send_sync(tx, b"one,", MSG_PARTIAL)
    wsa_send_sync(tx, b"two,", MSG_PARTIAL)
    wsa_send_sync(tx, b"three")
    datagram = rx.recv(100)
    print(f"pieces 'one,' 'two,' (MSG_PARTIAL) then 'three': the receiver got one datagram {datagram!r}")
    assert datagram == b"one,two,three"

    _title("4. WSAEMSGSIZE: too large for the transport, nothing sent")
    limit = max_message_size(tx)
    try:
        wsa_send_sync(tx, [bytes(limit), b"!"])
    except WSAError as exc:
        print(f"max_message_size = {limit}; a {limit + 1}-byte send raised:\n  {exc}")
        assert exc.winerror == WSAErrorCode.WSAEMSGSIZE and exc.bytes_sent == 0
    rx.setblocking(False)
    try:
        rx.recv(100)
    except BlockingIOError:
        print("  and the receiver has nothing queued.")
    tx.close()
    rx.close()


async def _overlapped_part() -> None:
    loop = asyncio.get_running_loop()
    _title("5. Overlapped sends from several tasks: wire order is call order, completions in order")
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    b.setblocking(False)
    posted: list[str] = []
    completed: list[str] = []

    async def producer(name: str, count: int) -> None:
        for i in range(count):
            tag = f"{name}{i};"
            posted.append(tag)
            # Posted now, in this order; the routine records the completion order.
            wsa_send(a, [tag.encode(), bytes(20_000)], completion_routine=lambda *args, tag=tag: completed.append(tag))
            await asyncio.sleep(0)

    async def reader(total: int) -> bytes:
        out = bytearray()
        while len(out) < total:
            out += await loop.sock_recv(b, 1 << 20)
        return bytes(out)

    tasks = [asyncio.ensure_future(producer(n, 4)) for n in "ABC"]
    expected_len = sum(len(f"{n}{i};") + 20_000 for n in "ABC" for i in range(4))
    data = await reader(expected_len)
    await asyncio.gather(*tasks)
    tags = [chunk.split(b";")[0].decode() + ";" for chunk in data.split(b"\0" * 20_000) if chunk]
    print(f"posted: {' '.join(posted)}")
    print(f"wire:   {' '.join(tags)}")
    while len(completed) < len(posted):
        await asyncio.sleep(0)
    print(f"completion routines ran in order: {' '.join(completed)}")
    assert tags == posted and completed == posted

    _title("6. A completion routine, called through the loop, with the exact count")
    calls: list[tuple[int, int]] = []
    done = asyncio.Event()

    def routine(error: int, transferred: int, ov: WSAOverlapped, flags: int) -> None:
        calls.append((error, transferred))
        done.set()

    wsa_send(a, [b"routine:", bytes(1000)], completion_routine=routine)
    print("  wsa_send returned; the routine has not run yet:", calls == [])
    await done.wait()
    await reader(1008)
    print(f"  routine(error={calls[0][0]}, transferred={calls[0][1]}, ...)")

    _title("7. closesocket() with sends pending: each completes WSA_OPERATION_ABORTED with its count")
    pending = [wsa_send(a, bytes(200_000)) for _ in range(5)]
    await asyncio.sleep(0)
    closesocket(a)
    for i, ov in enumerate(pending):
        try:
            await ov
        except WSAError as exc:
            print(f"  send {i}: {exc.winerror.name}, transferred={ov.transferred} of 200000")
    b.close()


def run_demo() -> int:
    print("wsasend: Winsock's WSASend semantics for asyncio on Linux")
    print(f"build: {'compiled with mypyc' if compiled else 'pure Python'} (wsasend.compiled = {compiled})")
    _sync_part()
    asyncio.run(_overlapped_part())
    try:
        import uvloop
    except ImportError:
        print("\n(uvloop is not installed: the overlapped part ran on the default loop only)")
    else:
        print("\n-- and the overlapped part again on uvloop --")
        uvloop.run(_overlapped_part())
    print("\nAll checks of the walkthrough held.")
    return 0
