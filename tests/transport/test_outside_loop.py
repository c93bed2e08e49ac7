"""Writes made while the transport's loop is not running (SPEC S5.1, S5.4, S7.1).

asyncio's and uvloop's ``write()`` hand each write to the kernel at once, loop running or
not: a program's first lines before ``run_until_complete``, its last ones after the loop
stopped. A WSATransport sent the first such write and held the next ones in a batch window
whose tick only a running loop runs: they went out when the loop ran again, and never if it
was closed instead (adversarial pass: of three writes only the first arrived, on every loop).
Now a loop that is not running opens no window. Before the fix every case failed at its
first check (the peer had only the first write).

Each case runs on the stock loops (with ``wsasend.connect_accepted_socket``) and on
wsasend's own loops.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import pytest

import wsasend
from tests.conftest import LOOP_FACTORIES
from tests.helpers import recv_exactly

GUARD = 10.0  # (hang guard of the peer's reads only)

MAKERS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    **LOOP_FACTORIES,
    "wsasend-asyncio": lambda: wsasend.new_event_loop("asyncio"),
    "wsasend-uvloop": lambda: wsasend.new_event_loop("uvloop"),
}
LOOPS = pytest.mark.parametrize("make", list(MAKERS.values()), ids=list(MAKERS))


def _transport(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> wsasend.WSATransport:
    transport, _ = loop.run_until_complete(wsasend.connect_accepted_socket(asyncio.Protocol, sock))
    assert isinstance(transport, wsasend.WSATransport)
    return transport


def _end(loop: asyncio.AbstractEventLoop, transport: wsasend.WSATransport) -> None:
    transport.close()
    loop.run_until_complete(asyncio.sleep(0))  # (its connection_lost)
    loop.close()


@LOOPS
def test_writes_before_the_loop_runs_go_at_once(make: Callable[[], asyncio.AbstractEventLoop]) -> None:
    loop = make()
    ours, peer = socket.socketpair()
    with ours, peer:
        transport = _transport(loop, ours)
        transport.write(b"A1,")
        transport.write(b"A2,")
        transport.writelines([b"A3", b","])
        transport.send([b"A4"])
        assert recv_exactly(peer, 11, GUARD) == b"A1,A2,A3,A4"  # the loop has not run since
        _end(loop, transport)


@LOOPS
def test_writes_after_the_loop_stopped_go_before_it_is_closed(make: Callable[[], asyncio.AbstractEventLoop]) -> None:
    """The last lines of a program that stops its loop, writes, then closes the loop: the
    writes reach the peer at once (a bare close used to abort them, S5.12)."""
    loop = make()
    ours, peer = socket.socketpair()
    with ours, peer:
        transport = _transport(loop, ours)
        loop.call_soon(loop.stop)
        loop.run_forever()
        transport.write(b"D1,")
        transport.write(b"D2")
        assert recv_exactly(peer, 5, GUARD) == b"D1,D2"  # before the loop runs or closes
        _end(loop, transport)


@LOOPS
def test_a_write_the_kernel_takes_in_part_outside_the_loop_goes_on_once_it_runs(
    make: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    """What the kernel does not take waits for the loop's writer, in order, as asyncio's
    buffered write does; the writes behind it queue and follow."""
    loop = make()
    ours, peer = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    big = bytes(range(256)) * 4096  # 1 MiB: more than the socket buffers hold
    with ours, peer:
        transport = _transport(loop, ours)
        transport.write(big)
        transport.write(b"<tail>")
        assert transport.get_write_buffer_size() > 0
        got = bytearray()

        async def read_all() -> None:
            peer.setblocking(False)
            while len(got) < len(big) + 6:
                got.extend(await asyncio.wait_for(loop.sock_recv(peer, 1 << 20), GUARD))

        loop.run_until_complete(read_all())
        assert bytes(got) == big + b"<tail>"
        _end(loop, transport)


@LOOPS
@pytest.mark.parametrize("which", ["same", "other"])
def test_writes_after_a_callback_that_wrote_and_stopped_the_loop_go_at_once(
    make: Callable[[], asyncio.AbstractEventLoop], which: str
) -> None:
    """A callback writes once (the send goes at once and opens the loop's batch window) and
    stops the loop, whose tick then never runs. Writes after that, on the same transport or
    another of the loop, were held in that window (stock asyncio loop: none of three arrived,
    or only the first; then lost to the loop's close; adversarial pass). The window holds
    nothing then: it is closed, and the writes go at once."""
    loop = make()
    a, peer_a = socket.socketpair()
    b, peer_b = socket.socketpair()
    with a, peer_a, b, peer_b:
        first = _transport(loop, a)
        second = _transport(loop, b)

        def write_and_stop() -> None:
            first.write(b"in-loop;")
            loop.stop()

        loop.call_soon(write_and_stop)
        loop.run_forever()
        transport, peer = (first, peer_a) if which == "same" else (second, peer_b)
        for i in range(3):
            transport.write(b"out%d;" % i)
        expected = b"in-loop;out0;out1;out2;" if which == "same" else b"out0;out1;out2;"
        assert recv_exactly(peer, len(expected), GUARD) == expected  # the loop has not run since
        if which == "other":
            assert recv_exactly(peer_a, 8, GUARD) == b"in-loop;"
        first.close()
        _end(loop, second)
