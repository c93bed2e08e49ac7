"""WSATransport's request/response paths, on both loops (issue 11 item 3; SPEC S7.1).

The reader calls the ``data_received`` the protocol had when it was set, as uvloop's transports
do, and ``write``/``writelines`` that complete at once make no overlapped when nobody would see
it. These tests pin what a user sees of both: which method gets the data, byte-exact streams,
a completion per write for a protocol that asks for them, and real overlappeds from ``send``.
"""

from __future__ import annotations

import asyncio
import dis
import gc
import socket
import sys
import types
from typing import Any

import pytest

import wsasend
from tests.helpers import pattern, tcp_pair
from wsasend import WSAOverlapped, WSATransport
from wsasend._engine import _UNSEEN

from .util import Recorder, drain_peer, until, wrap


class _NoDataReceived(asyncio.BaseProtocol):
    """A protocol with no ``data_received``; ``lost`` resolves with what ``connection_lost`` got."""

    def __init__(self) -> None:
        self.lost: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost.set_result(exc)


class _Collecting(_NoDataReceived, asyncio.Protocol):
    """A plain Protocol (no ``send_completed``) that keeps what it reads, per method."""

    def __init__(self) -> None:
        super().__init__()
        self.first = bytearray()
        self.second = bytearray()

    def data_received(self, data: bytes) -> None:
        self.first += data

    def rebound(self, data: bytes) -> None:
        self.second += data


async def test_data_goes_to_the_data_received_the_protocol_had_when_set() -> None:
    ours, peer = socket.socketpair()
    with peer:
        transport, proto = await wrap(ours, _Collecting)
        peer.sendall(b"one")
        await until(lambda: bytes(proto.first) == b"one")
        # Rebinding on the instance is not seen (as uvloop's transports, documented in
        # set_protocol) until the protocol is set again.
        proto.data_received = proto.rebound
        peer.sendall(b"two")
        await until(lambda: bytes(proto.first) == b"onetwo")
        assert proto.second == b""
        transport.set_protocol(proto)
        peer.sendall(b"three")
        await until(lambda: bytes(proto.second) == b"three")
        assert proto.first == b"onetwo"
        transport.close()
        assert await proto.lost is None


async def test_a_protocol_without_data_received_fails_the_transport_as_asyncio() -> None:
    # asyncio's transports call protocol.data_received(data) and end the connection with what
    # it raises; with nothing to call, that is the AttributeError.
    ours, peer = socket.socketpair()
    with peer:
        transport, proto = await wrap(ours, _NoDataReceived)
        loop = asyncio.get_running_loop()
        seen: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, context: seen.append(context))
        try:
            peer.sendall(b"data")
            exc = await asyncio.wait_for(proto.lost, 20)
        finally:
            loop.set_exception_handler(None)
        assert isinstance(exc, AttributeError)
        assert transport.is_closing()
        assert [c["message"] for c in seen] == ["Fatal error: protocol.data_received() call failed."]


async def test_writes_that_complete_at_once_keep_a_byte_exact_stream_and_real_send_overlappeds() -> None:
    ours, peer = tcp_pair()
    with peer:
        transport, proto = await wrap(ours, _Collecting)
        assert isinstance(transport, WSATransport)
        reader = asyncio.ensure_future(drain_peer(peer))
        payload = pattern(64 * 1024, seed=3)
        expected = bytearray()
        overlappeds: list[tuple[WSAOverlapped, int]] = []
        pos = 0
        for i in range(600):
            size = 1 + (i * 37) % 300
            chunk = payload[pos : pos + size]
            pos = (pos + size) % (len(payload) - 400)
            if i % 3 == 0:
                transport.write(chunk)
            elif i % 3 == 1:
                transport.writelines([chunk[:7], chunk[7:]])
            else:
                ov = transport.send([chunk])
                overlappeds.append((ov, len(chunk)))
            expected += chunk
            if i % 5 < 3:
                await asyncio.sleep(0)  # (isolated writes complete at once; the others queue)
        for ov, size in overlappeds:
            assert ov is not _UNSEEN
            assert await ov == size
        assert len({id(ov) for ov, _ in overlappeds}) == len(overlappeds)
        transport.close()
        assert await proto.lost is None
        assert await reader == bytes(expected)
        # The placeholder that write() and writelines() drop is still as made: never posted.
        fresh = WSAOverlapped()
        assert (_UNSEEN.pending, _UNSEEN.completed_immediately, _UNSEEN.transferred, _UNSEEN.nbytes) == (
            fresh.pending,
            fresh.completed_immediately,
            fresh.transferred,
            fresh.nbytes,
        )
        assert (fresh.pending, fresh.transferred, fresh.nbytes) == (False, 0, 0)


async def test_a_protocol_that_asks_for_completions_hears_of_every_write() -> None:
    ours, peer = socket.socketpair()
    with peer:
        transport, proto = await wrap(ours, Recorder)
        reader = asyncio.ensure_future(drain_peer(peer))
        sizes = [1 + i % 17 for i in range(200)]
        for i, size in enumerate(sizes):
            if i % 2:
                transport.write(b"w" * size)
            else:
                transport.writelines([b"a" * (size // 2), b"b" * (size - size // 2)])
            if i % 4 < 2:
                # One write per loop iteration, as a request/response server writes: each
                # completes at once (the path that makes no overlapped for a plain Protocol).
                await asyncio.sleep(0)
        await until(lambda: len(proto.completed) == len(sizes))
        assert [ov.nbytes for ov in proto.completed] == sizes
        assert all(ov is not _UNSEEN for ov in proto.completed)
        assert sum(ov.completed_immediately for ov in proto.completed) >= len(sizes) // 4
        transport.close()
        await proto.wait_lost()
        assert len(await reader) == sum(sizes)
        proto.check()


async def test_wsa_send_still_returns_its_own_overlapped_after_transport_writes() -> None:
    # The module-level wsa_send on another socket of the same loop is never given the placeholder.
    ours, peer = socket.socketpair()
    a, b = socket.socketpair()
    with peer, a, b:
        transport, proto = await wrap(ours, _Collecting)
        transport.write(b"x")
        a.setblocking(False)
        ov = wsasend.wsa_send(a, [b"abc"])
        assert ov is not _UNSEEN and ov.completed_immediately
        assert await ov == 3
        assert b.recv(10) == b"abc"
        transport.close()
        assert await proto.lost is None
        assert peer.recv(10) == b"x"
        wsasend.closesocket(a)


async def test_an_interpreted_transport_keeps_its_instance_dict_keys_shared() -> None:
    # Interpreted (the pure build), CPython shares
    # one key table among a class's instance dicts only up to 29 keys; past that every
    # attribute read of the transport's hot paths is a dict lookup (SendEngine got __slots__
    # for this). The compiled transport is a C struct with no instance dict.
    ours, peer = socket.socketpair()
    with peer:
        transport, proto = await wrap(ours, _Collecting)
        if not hasattr(transport, "__dict__"):
            assert wsasend.compiled
        else:
            assert len(vars(transport)) <= 29, sorted(vars(transport))
        transport.close()
        assert await proto.lost is None


def _send_one(transport: Any, data: list[bytes]) -> None:
    transport.send(data)


@pytest.mark.skipif(
    sys.version_info[:2] == (3, 12),
    reason="3.12 does not specialize a method of a compiled instance with a managed dict, dict or not",
)
async def test_a_protocols_call_of_send_is_a_specialized_method_call() -> None:
    # Issue 11: compiled, WSATransport keeps an instance __dict__ (its base is a Python class).
    # Until that dict exists, Python 3.11 cannot specialize ``transport.send(...)`` in the
    # protocol's code: every call looked the method up afresh (the HTTP server's reply). The
    # transport makes it at once. 3.13 specializes it without the dict (measured), 3.12 does not
    # either way. Behaviour is checked too.
    ours, peer = socket.socketpair()
    with peer:
        transport, _ = await wrap(ours, _Collecting)
        # A fresh copy of the caller for each run: specialization lives in the code object.
        send_one = types.FunctionType(_send_one.__code__.replace(), globals())
        sent = []
        for i in range(64):  # (3.11 specializes after 8 calls, 3.12/3.13 after 2 or 16)
            data = [pattern(16, seed=i)]
            send_one(transport, data)
            sent.append(data[0])
        code = dis.get_instructions(send_one, adaptive=True)
        ops = [i.opname for i in code if i.opname.startswith(("LOAD_METHOD", "LOAD_ATTR"))]
        transport.close()
        assert await drain_peer(peer) == b"".join(sent)
        assert len(ops) == 1, ops
        assert ops[0] not in ("LOAD_METHOD", "LOAD_METHOD_ADAPTIVE", "LOAD_ATTR"), ops


class _Told(asyncio.Protocol):
    def send_completed(self, completed: object) -> None:
        pass


class _ToldByWSAProtocol(wsasend.WSAProtocol):
    def send_completed(self, completed: wsasend.CompletedSend) -> None:
        pass


class _Plain(wsasend.WSAProtocol):
    pass


class _NotCallable(asyncio.Protocol):
    send_completed = None


class _ByGetattr(asyncio.Protocol):
    def __getattr__(self, name: str) -> Any:
        if name == "send_completed":
            return lambda completed: None
        raise AttributeError(name)


class _ByProperty(asyncio.Protocol):
    @property
    def send_completed(self) -> Any:
        return print


class _Slotted:
    __slots__ = ()

    def send_completed(self, completed: object) -> None:
        pass


class _Static(asyncio.Protocol):
    send_completed = staticmethod(print)


class _Bare(asyncio.Protocol):
    pass


def _instance_told() -> _Bare:
    proto = _Bare()
    proto.send_completed = print  # type: ignore[attr-defined]
    return proto


def _instance_of_wsaprotocol() -> _Plain:
    proto = _Plain()
    proto.send_completed = print  # type: ignore[assignment, method-assign]
    return proto


def _instance_not_callable() -> _Told:
    proto = _Told()
    proto.send_completed = 5  # type: ignore[assignment, method-assign]
    return proto


@pytest.mark.parametrize(
    ("make", "told"),
    [
        (asyncio.Protocol, False),
        (asyncio.BufferedProtocol, False),
        (_Plain, False),
        (_Told, True),
        (_ToldByWSAProtocol, True),
        (_NotCallable, False),
        (_ByGetattr, True),
        (_ByProperty, True),
        (_Slotted, True),
        (_Static, True),
        (_instance_told, True),
        (_instance_not_callable, False),
        (_instance_of_wsaprotocol, False),
    ],
)
def test_which_protocols_are_told_of_each_send(make: Any, told: bool) -> None:
    # The dict-reading check (issue 11: no AttributeError built per connection) answers as the
    # general getattr one for every shape of protocol.
    from wsasend._transport import _wants_completions, _wants_completions_general

    proto = make()
    assert _wants_completions_general(proto) is told
    assert _wants_completions(proto) is told
    assert _wants_completions(make()) is told  # (the class's answer now read from the cache)


class _Told2(_Collecting):
    """A plain Protocol that asks for completions."""

    def __init__(self) -> None:
        super().__init__()
        self.told = 0

    def send_completed(self, completed: object) -> None:
        self.told += 1


def _has_instance_dict(obj: object) -> bool:
    # An instance's attributes are kept inline (values the collector visits one by one) until
    # something reads its __dict__; from then on they live in a dict (3.11 and 3.12; 3.13 keeps
    # them inline and the dict a view of them, so this reads False there either way).
    return any(type(r) is dict for r in gc.get_referents(obj))


@pytest.mark.parametrize("make", [_Collecting, _Told2])
async def test_the_transport_leaves_a_protocols_attributes_inline(make: Any) -> None:
    # Issue 11: the transport's check for send_completed read protocol.__dict__, which made the
    # instance's dict on every connection; Python 3.11 and 3.12 then could not specialize the
    # protocol's own ``self.x`` reads and writes in its data_received (~1,000 instructions of a
    # keep-alive request on uvloop, a user's code paying for our lookup).
    ours, peer = socket.socketpair()
    with peer:
        transport, proto = await wrap(ours, make)
        assert not _has_instance_dict(proto)
        peer.sendall(b"request")
        await until(lambda: bytes(proto.first) == b"request")
        transport.send([b"re", b"ply"])
        transport.write(b"!")
        transport.close()
        assert await proto.lost is None
        assert await drain_peer(peer) == b"reply!"
        assert not _has_instance_dict(proto)
        if isinstance(proto, _Told2):
            assert proto.told == 2  # (still told of each send: the check found its send_completed)
