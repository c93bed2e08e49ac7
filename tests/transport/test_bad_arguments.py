"""A wrong argument gets the same answer from the compiled build as from plain Python (SPEC S10).

mypyc checks a parameter's annotation before the body runs, with its own TypeError ("int object
expected; got float"): a parameter that takes user input is therefore typed ``object`` and
checked by us (S4.1's WSAEINVAL for flags, S5.5's WSAEFAULT for an overlapped, asyncio's own
answers elsewhere). Each test here failed on the compiled build before that was so for
``WSATransport.send``, ``set_write_buffer_limits``, ``get_extra_info`` and ``wait(timeout)``;
the ``wait`` of an overlapped that is not pending also ignored a bad timeout in plain Python.
CI runs this module on both builds, so the answers below are the same in each.
"""

from __future__ import annotations

import math
import socket
from typing import Any

import pytest

from wsasend import WSAError, WSAErrorCode, WSAEvent, WSAOverlapped

from .util import drain_peer, wrap

# Values of the wrong type for a flags word, an overlapped, a water mark and a timeout. False is
# an int to Python and to mypyc (which would unbox it to 0), but S4.1 refuses it as a flag.
NOT_FLAGS: list[Any] = [1.5, None, "0", b"", [], False, object()]
NOT_OVERLAPPED: list[Any] = ["ov", 0, 1.5, [], object(), WSAEvent()]
NOT_NUMBERS: list[Any] = ["1", b"1", [], object(), 1j]


@pytest.mark.parametrize("flags", NOT_FLAGS, ids=repr)
async def test_WSATransport_send_refuses_flags_of_another_type_with_WSAEINVAL(flags: Any) -> None:
    ours, peer = socket.socketpair()
    with peer:
        transport, proto = await wrap(ours)
        with pytest.raises(WSAError) as info:
            transport.send([b"not sent"], flags)
        assert info.value.winerror == WSAErrorCode.WSAEINVAL
        assert info.value.bytes_sent == 0
        transport.send([b"sent"])  # the transport is fine, and nothing of the refused call went
        transport.close()
        assert await drain_peer(peer) == b"sent"
        await proto.wait_lost()


@pytest.mark.parametrize("overlapped", NOT_OVERLAPPED, ids=repr)
async def test_WSATransport_send_refuses_a_non_overlapped_with_WSAEFAULT(overlapped: Any) -> None:
    ours, peer = socket.socketpair()
    with peer:
        transport, proto = await wrap(ours)
        with pytest.raises(WSAError) as info:
            transport.send([b"not sent"], overlapped=overlapped)
        assert info.value.winerror == WSAErrorCode.WSAEFAULT
        reused = WSAOverlapped()
        assert await transport.send([b"sent"], overlapped=reused) == 4  # a real one still works
        transport.close()
        assert await drain_peer(peer) == b"sent"
        await proto.wait_lost()


async def test_WSATransport_water_marks_take_numbers_as_asyncio_does() -> None:
    ours, peer = socket.socketpair()
    with peer:
        transport, proto = await wrap(ours)
        transport.set_write_buffer_limits(high=1000.9, low=10.5)  # asyncio takes floats too
        assert transport.get_write_buffer_limits() == (10, 1000)
        transport.set_write_buffer_limits(high=400.0)
        assert transport.get_write_buffer_limits() == (100, 400)
        transport.set_write_buffer_limits(high=True)  # an int to Python: 1 byte
        assert transport.get_write_buffer_limits() == (0, 1)
        for bad in NOT_NUMBERS:
            with pytest.raises(TypeError, match="must be a number of bytes or None"):
                transport.set_write_buffer_limits(high=bad)
            with pytest.raises(TypeError, match="must be a number of bytes or None"):
                transport.set_write_buffer_limits(low=bad)
        for high, low in ((math.nan, None), (math.inf, None), (None, -math.inf), (-0.5, None)):
            with pytest.raises(ValueError):
                transport.set_write_buffer_limits(high=high, low=low)
        with pytest.raises(ValueError, match=r"high \(10\) must be >= low \(11\)"):
            transport.set_write_buffer_limits(high=10.2, low=11)
        assert transport.get_write_buffer_limits() == (0, 1)  # unchanged by every refusal
        transport.close()
        await proto.wait_lost()


async def test_WSATransport_get_extra_info_of_any_key_is_the_default() -> None:
    ours, peer = socket.socketpair()
    with peer:
        transport, proto = await wrap(ours)
        marker = object()
        for key in (None, 1, 1.5, b"socket", ("socket",), marker):
            assert transport.get_extra_info(key, marker) is marker  # as asyncio's: a dict lookup
        assert transport.get_extra_info("socket") is not None
        with pytest.raises(TypeError):
            transport.get_extra_info([])  # unhashable, as with asyncio's dict
        transport.close()
        await proto.wait_lost()


@pytest.mark.parametrize("timeout", [*NOT_NUMBERS, None], ids=repr)
def test_wait_refuses_a_timeout_that_is_not_a_number(timeout: Any) -> None:
    event = WSAEvent()
    event.set()
    idle = WSAOverlapped()  # not pending: the answer is True at once, but not for a bad timeout
    if timeout is None:
        assert event.wait(timeout) is True
        assert idle.wait(timeout) is True
        return
    with pytest.raises(TypeError, match="timeout must be a number of seconds or None"):
        event.wait(timeout)
    with pytest.raises(TypeError, match="timeout must be a number of seconds or None"):
        idle.wait(timeout)


def test_wait_takes_ints_and_floats() -> None:
    event = WSAEvent()
    assert event.wait(0) is False
    assert event.wait(0.001) is False
    event.set()
    assert event.wait(5) is True
    assert WSAOverlapped().wait(2.5) is True
