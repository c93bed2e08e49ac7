"""A wrong argument gets the same answer from the compiled build as from plain Python (SPEC S10).

mypyc checks a parameter's annotation before the body runs, with its own TypeError ("int object
expected; got float"): a parameter that takes user input is therefore typed ``object`` and
checked by us (S4.1's WSAEINVAL for flags, S5.5's WSAEFAULT for an overlapped, asyncio's own
answers elsewhere). Each test here failed on the compiled build before that was so for
``WSATransport.send``, ``set_write_buffer_limits``, ``get_extra_info``, ``wait(timeout)`` and
the connection functions' ``max_pending_sends``, ``partial_messages``, TLS time-outs, ``host``,
``port``, ``local_addr`` and ``all_errors``; the ``wait`` of an overlapped that is not pending
also ignored a bad timeout in plain Python.
CI runs this module on both builds, so the answers below are the same in each.
"""

from __future__ import annotations

import asyncio
import math
import socket
import weakref
from typing import Any

import pytest

import wsasend
from wsasend import WSAError, WSAErrorCode, WSAEvent, WSAOverlapped

from .util import drain_peer, wrap

# Values of the wrong type for a flags word, an overlapped, a water mark and a timeout. False is
# an int to Python and to mypyc (which would unbox it to 0), but S4.1 refuses it as a flag.
NOT_FLAGS: list[Any] = [1.5, None, "0", b"", [], False, object()]
NOT_OVERLAPPED: list[Any] = ["ov", 0, 1.5, [], object(), WSAEvent()]
NOT_NUMBERS: list[Any] = ["1", b"1", [], object(), 1j]


# (keyword, value, the code S4.1 / S5.5 give it): every wrong flags word, every non-overlapped.
SEND_REFUSALS: list[tuple[str, Any, WSAErrorCode]] = [("flags", v, WSAErrorCode.WSAEINVAL) for v in NOT_FLAGS] + [
    ("overlapped", v, WSAErrorCode.WSAEFAULT) for v in NOT_OVERLAPPED
]


@pytest.mark.parametrize(("keyword", "value", "code"), SEND_REFUSALS, ids=repr)
async def test_WSATransport_send_refuses_a_wrong_argument_with_its_code(
    keyword: str, value: Any, code: WSAErrorCode
) -> None:
    ours, peer = socket.socketpair()
    with peer:
        transport, proto = await wrap(ours)
        with pytest.raises(WSAError) as info:
            transport.send([b"not sent"], **{keyword: value})
        assert info.value.winerror == code
        assert info.value.bytes_sent == 0
        # The transport is fine (a real overlapped works), and nothing of the refused call went.
        assert await transport.send([b"sent"], overlapped=WSAOverlapped()) == 4
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


# -- the connection functions (their overloads carry the types; the implementation takes object) --


@pytest.mark.parametrize("bad", [1.5, "8", object(), -1], ids=repr)
async def test_connect_accepted_socket_refuses_a_bad_max_pending_sends_with_WSAEINVAL(bad: Any) -> None:
    ours, peer = socket.socketpair()
    with ours, peer:
        with pytest.raises(WSAError) as info:
            await wsasend.connect_accepted_socket(asyncio.Protocol, ours, max_pending_sends=bad)
        assert info.value.winerror == WSAErrorCode.WSAEINVAL


@pytest.mark.parametrize("bad", [None, 1, "corked", b"cork"], ids=repr)
async def test_connection_functions_refuse_a_bad_partial_messages_with_ValueError(bad: Any, tmp_path: Any) -> None:
    ours, peer = socket.socketpair()
    with ours, peer, pytest.raises(ValueError, match="partial_messages must be 'reject' or 'cork'"):
        await wsasend.connect_accepted_socket(asyncio.Protocol, ours, partial_messages=bad)
    path = str(tmp_path / "s")
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(path)
        listener.listen()
        with pytest.raises(ValueError, match="partial_messages must be 'reject' or 'cork'"):
            await wsasend.create_unix_connection(asyncio.Protocol, path, partial_messages=bad)
        with pytest.raises(WSAError) as info:
            bad_count: Any = "8"
            await wsasend.create_unix_connection(asyncio.Protocol, path, max_pending_sends=bad_count)
        assert info.value.winerror == WSAErrorCode.WSAEINVAL


@pytest.mark.parametrize("timeout", [5, 1.5, "5", object()], ids=repr)
async def test_tls_time_outs_without_ssl_are_asyncios_ValueError(timeout: Any) -> None:
    ours, peer = socket.socketpair()
    with ours, peer:
        for name in ("ssl_handshake_timeout", "ssl_shutdown_timeout"):
            with pytest.raises(ValueError, match=f"{name} is only meaningful with ssl"):
                await wsasend.connect_accepted_socket(asyncio.Protocol, ours, **{name: timeout})
            with pytest.raises(ValueError, match=f"{name} is only meaningful with ssl"):
                await wsasend.create_connection(asyncio.Protocol, sock=ours, **{name: timeout})


@pytest.mark.parametrize(
    ("host", "port", "error"),
    [("127.0.0.1", 1.5, OSError), (1.5, 80, TypeError), (None, b"80", OSError)],
)
async def test_create_connection_bad_host_or_port_is_getaddrinfos_error(host: Any, port: Any, error: type) -> None:
    # Both builds hand host and port to loop.getaddrinfo, which answers (compiled, the str/int
    # annotations answered first, with a TypeError of mypyc's for a port of 1.5). asyncio's own
    # create_connection turns a float port of a numeric host into an int; uvloop does not.
    with pytest.raises(error) as info:
        await wsasend.create_connection(asyncio.Protocol, host, port)
    assert "object expected" not in str(info.value)  # not mypyc's argument check


async def test_create_connection_takes_a_local_addr_list_and_a_truthy_all_errors() -> None:
    # asyncio unpacks local_addr (a list works) and tests all_errors for truth (1 works).
    loop = asyncio.get_running_loop()
    server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        as_list: Any = ["127.0.0.1", 0]  # (typed a tuple, as typeshed types asyncio's)
        transport, _ = await wsasend.create_connection(asyncio.Protocol, "127.0.0.1", port, local_addr=as_list)
        assert transport.get_extra_info("sockname")[0] == "127.0.0.1"
        transport.close()
    finally:
        server.close()
        await server.wait_closed()
    with socket.socket() as probe:  # a port nobody listens on: bound, never listening
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
        with pytest.raises(ExceptionGroup):
            truthy: Any = 1  # (typed a bool, as typeshed types asyncio's)
            await wsasend.create_connection(asyncio.Protocol, "127.0.0.1", closed_port, all_errors=truthy)


def test_WSAEvent_initial_state_is_any_truth_value_and_an_overlapped_takes_no_weak_reference() -> None:
    # WSAEvent(initial_state) tests it for truth, as plain Python did; compiled, a bool
    # annotation refused 1 or "yes" with mypyc's TypeError.
    assert WSAEvent(1).is_set() and WSAEvent("yes").is_set() and WSAEvent([0]).is_set()
    assert not WSAEvent(0).is_set() and not WSAEvent(None).is_set() and not WSAEvent().is_set()
    # A compiled class cannot be weakly referenced, so the plain-Python overlapped cannot be either.
    with pytest.raises(TypeError, match="weak reference"):
        weakref.ref(WSAOverlapped())
    event = WSAEvent()
    assert weakref.ref(event)() is event  # (an event can: it is a plain class in both builds)
