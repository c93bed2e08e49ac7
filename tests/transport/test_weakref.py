"""Weak references to a WSATransport, as to asyncio's transports, in both builds (SPEC S10).

The compiled build's WSATransport is a mypyc class. On Python 3.11 its weak references were
never cleared when it was freed by its reference count (a protocol that drops its transport in
``connection_lost``, as most do): the first test's script then crashed the interpreter
(SIGSEGV) calling such a reference. On 3.12+ it had none at all, which kept ``_transport``
plain Python there. ``_iovsend.support_weakrefs`` gives it CPython's own handling.
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import subprocess
import sys
import textwrap
import threading
import warnings
import weakref
from collections.abc import Iterator
from typing import Any, cast

import pytest

import wsasend
from tests.helpers import read_exactly
from wsasend import WSATransport

from .util import GUARD, drain_peer, until

# Refcount-freed transports, each weakly referenced three ways, then every reference used.
_SCRIPT = textwrap.dedent(
    """
    import asyncio, gc, socket, sys, weakref
    import wsasend

    class Forgetful(asyncio.Protocol):  # keeps no transport: nothing but the count frees it
        def __init__(self):
            self.lost = asyncio.get_running_loop().create_future()
        def connection_lost(self, exc):
            self.lost.set_result(None)

    async def main():
        gc.disable()
        refs, fired, live = [], [], weakref.WeakSet()
        peers = []
        for _ in range(50):
            ours, peer = socket.socketpair()
            peers.append(peer)
            transport, proto = await wsasend.connect_accepted_socket(Forgetful, ours)
            transport.write(b"x" * 100)
            refs.append(weakref.ref(transport, fired.append))
            live.add(transport)
            transport.close()
            await proto.lost
            del transport
        for _ in range(100):  # reuse the freed memory
            bytearray(512)
        print(sum(r() is not None for r in refs), len(fired), len(list(live)))
        for peer in peers:
            peer.close()

    if sys.argv[1] == "uvloop":
        import uvloop
        uvloop.run(main())
    else:
        asyncio.run(main())
    """
)


def _script_output(script: str, *args: str, debug_malloc: bool = False) -> list[str]:
    """Run ``script`` in a fresh interpreter; it must exit cleanly (a crash fails here, with its
    stderr). Its output, split. ``debug_malloc``: PYTHONMALLOC=debug, which overwrites freed
    memory, so that a use after free cannot pass unseen."""
    env = dict(os.environ, PYTHONMALLOC="debug") if debug_malloc else None
    run = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr
    return run.stdout.split()


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_weak_references_to_freed_transports_are_dead_not_dangling(loop_name: str) -> None:
    # No reference still answers, every callback ran once, the WeakSet is empty.
    assert _script_output(_SCRIPT, loop_name) == ["0", "50", "0"]


# The collector meeting a dying transport, three ways (each crashed or misbehaved compiled; see
# _iovsend.c): a weak reference's callback that collects while the transport is being freed by
# its reference count (every version; a plain class, a subclass with slots, one whose __del__
# resurrects it once); a weak reference held only by a running frame when the transport dies in
# a cycle (3.11: its callback was dropped); a weak reference made by another garbage object's
# __del__ after the collector had cleared the transport's (3.11: freed under its holder).
_GC_SCRIPT = textwrap.dedent(
    """
    import asyncio, gc, socket, sys, weakref
    import wsasend

    class Lost(asyncio.Protocol):
        def __init__(self):
            self.lost = asyncio.get_running_loop().create_future()
        def connection_lost(self, exc):
            if not self.lost.done():
                self.lost.set_result(None)

    class Slotted(wsasend.WSATransport):
        __slots__ = ("x",)

    saved = []
    class Phoenix(wsasend.WSATransport):
        def __del__(self):
            if not saved:
                saved.append(self)

    async def callbacks_collect(cls):
        gc.disable()
        refs, fired = [], []
        for _ in range(20):
            ours, peer = socket.socketpair()
            proto = Lost()
            transport = cls(ours, proto)
            transport.write(b"x")
            refs.append(weakref.ref(transport, lambda r: (fired.append(r), gc.collect())))
            transport.close()
            await proto.lost
            del transport
            saved.clear()  # (Phoenix: the resurrected one dies here, the second time)
            peer.close()
        for _ in range(200):
            bytearray(64), [{}]
        return [sum(r() is not None for r in refs), len(fired)]

    async def frame_local_reference():
        fired = []
        def collect(transport):
            ref = weakref.ref(transport, lambda r: fired.append(r))
            del transport
            gc.collect()
            return ref
        ours, peer = socket.socketpair()
        transport, proto = await wsasend.connect_accepted_socket(asyncio.Protocol, ours)
        transport.close()
        await asyncio.sleep(0.01)
        holder = Holder()
        holder.transport = transport
        transport.set_protocol(holder)  # a cycle: only the collector frees the transport
        del holder, proto
        last = [transport]
        del transport
        ref = collect(last.pop())  # (its parameter, then its frame, held the last reference)
        peer.close()
        return [ref() is None, len(fired)]

    class Holder(asyncio.Protocol):
        pass

    keep = []
    class LateReferrer(asyncio.Protocol):
        def __del__(self):
            keep.append(weakref.ref(self.transport))

    async def reference_made_by_garbage():
        gc.disable()
        for _ in range(20):
            ours, peer = socket.socketpair()
            transport, proto = await wsasend.connect_accepted_socket(asyncio.Protocol, ours)
            transport.close()
            await asyncio.sleep(0.01)
            late = LateReferrer()  # (made after the transport: finalized after its weakrefs died)
            late.transport = transport
            transport.set_protocol(late)
            del transport, late, proto
            gc.collect()
            peer.close()
        for _ in range(200):
            bytearray(64), [{}]
        return [sum(r() is not None for r in keep), len(keep)]

    cases = {
        "plain": lambda: callbacks_collect(wsasend.WSATransport),
        "slotted": lambda: callbacks_collect(Slotted),
        "phoenix": lambda: callbacks_collect(Phoenix),
        "frame": frame_local_reference,
        "late": reference_made_by_garbage,
    }
    if sys.argv[1] == "uvloop":
        import uvloop
        result = uvloop.run(cases[sys.argv[2]]())
    else:
        result = asyncio.run(cases[sys.argv[2]]())
    print(*result)
    """
)

_GC_EXPECTED = {
    "plain": ["0", "20"],
    "slotted": ["0", "20"],
    "phoenix": ["0", "20"],
    "frame": ["True", "1"],
    "late": ["0", "20"],
}


@pytest.mark.parametrize("case", sorted(_GC_EXPECTED))
@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_the_collector_never_meets_a_freed_transport(loop_name: str, case: str) -> None:
    assert _script_output(_GC_SCRIPT, loop_name, case, debug_malloc=True) == _GC_EXPECTED[case]


# A transport dropped unclosed, its "unclosed transport" ResourceWarning made an error by the
# filters, reported to an unraisable hook that keeps the object it is given (pytest's does).
_UNRAISABLE_SCRIPT = textwrap.dedent(
    """
    import asyncio, gc, socket, sys, warnings, weakref
    import wsasend

    kept = []
    sys.unraisablehook = lambda unraisable: kept.append(unraisable.object)
    warnings.simplefilter("error", ResourceWarning)

    async def make():
        ours, peer = socket.socketpair()
        transport, _ = await wsasend.connect_accepted_socket(asyncio.Protocol, ours)
        return transport, peer

    loop = asyncio.new_event_loop() if sys.argv[1] == "asyncio" else __import__("uvloop").new_event_loop()
    transport, peer = loop.run_until_complete(make())
    loop.close()
    ref = weakref.ref(transport)
    del transport  # its finalizer warns, the warning is an error, the hook keeps what it is given
    reported = len(kept)
    kept.clear()
    gc.collect()
    print(reported > 0, ref() is None)
    """
)


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_an_unraisable_hook_that_keeps_the_transport_never_sees_it_freed(loop_name: str) -> None:
    # Compiled, the finalizer's error was reported with the transport's count at 0 and the
    # transport freed anyway: the hook's reference pointed at freed memory (SIGSEGV, or a
    # fatal "non-zero refcount" assertion in mypyc's dealloc). At ce6149b, every version.
    assert _script_output(_UNRAISABLE_SCRIPT, loop_name, debug_malloc=True) == ["True", "True"]


class _Lost(asyncio.Protocol):
    """Records connection_lost; keeps no reference to its transport."""

    def __init__(self) -> None:
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set_result(None)


@pytest.fixture
def no_collector() -> Iterator[None]:
    """Only reference counts free objects in the test (the collector clears weak references
    by itself, so with it running a test could pass without the transport's own handling)."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def test_a_weak_reference_dies_with_its_transport(no_collector: None) -> None:
    ours, peer = socket.socketpair()
    with peer:
        transport, proto = await wsasend.connect_accepted_socket(_Lost, ours)
        fired: list[weakref.ref[WSATransport]] = []
        ref = weakref.ref(transport, fired.append)
        assert ref() is transport
        assert await transport.send([b"weak", b"ref"]) == 7
        transport.close()
        await proto.lost
        assert await drain_peer(peer) == b"weakref"
        del transport
        assert ref() is None
        assert fired == [ref]


async def test_a_subclass_of_the_transport_can_be_weakly_referenced(no_collector: None) -> None:
    class Mine(WSATransport):
        pass

    ours, peer = socket.socketpair()
    with peer:
        proto = _Lost()
        transport = Mine(ours, proto)
        fired: list[object] = []
        ref = weakref.ref(transport, fired.append)
        transport.write(b"sub")
        transport.close()
        await proto.lost
        assert await drain_peer(peer) == b"sub"
        del transport
        assert ref() is None
        assert fired == [ref]


async def test_a_weakset_of_transports_empties_as_they_go(no_collector: None) -> None:
    live: weakref.WeakSet[WSATransport] = weakref.WeakSet()
    pairs = [socket.socketpair() for _ in range(5)]
    protos = []
    for ours, _ in pairs:
        transport, proto = await wsasend.connect_accepted_socket(_Lost, ours)
        live.add(transport)
        protos.append(proto)
    del transport
    assert len(live) == 5
    for transport in list(live):
        transport.close()
    del transport
    for proto in protos:
        await proto.lost
    assert len(live) == 0
    for _, peer in pairs:
        peer.close()


async def test_an_unclosed_transport_in_a_cycle_is_still_collected_and_warns() -> None:
    # The collector's path (a protocol that keeps its transport): the reference dies too.
    class Keeper(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

    ours, peer = socket.socketpair()
    with peer:
        transport, proto = await wsasend.connect_accepted_socket(Keeper, ours)
        await asyncio.sleep(0)
        assert proto.transport is transport
        transport.pause_reading()  # (the loop's reader would keep it alive, as asyncio's)
        await asyncio.sleep(0)
        ref = weakref.ref(transport)
        del transport, proto
        with pytest.warns(ResourceWarning, match="unclosed transport"):
            gc.collect()
        assert ref() is None


class _Told(asyncio.Protocol):
    """Keeps its transport (the usual cycle) and tells a future the test holds of the end."""

    def __init__(self, lost: asyncio.Future[BaseException | None]) -> None:
        self.lost = lost

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost.set_result(exc)


@pytest.mark.parametrize("how", ["close", "paused", "window", "cork"])
async def test_a_transport_with_sends_waiting_is_not_collected(how: str, no_collector: None) -> None:
    # Adversarial pass: the engine holds its transport weakly, so a transport closed (or
    # paused for reading) with sends waiting for the socket was collected with its protocol's
    # cycle: its __del__ closed the socket under them (the peer got 4 of 8 MiB), connection_lost
    # never came and Server.wait_closed() hung. asyncio's writer registration holds its
    # transport; the engine now does while sends wait.
    ours, peer = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    lost: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
    payload = bytes(range(256)) * 32768  # 8 MiB
    with peer:
        if how == "cork":
            transport, _ = await wsasend.connect_accepted_socket(lambda: _Told(lost), ours, partial_messages="cork")
        else:
            transport, _ = await wsasend.connect_accepted_socket(lambda: _Told(lost), ours)
        transport.pause_reading()
        if how == "window":
            # The first write goes at once; the rest waits for the batch window's tick, with
            # no writer registered (collected before the tick, it was lost: 5 of 105 bytes).
            transport.write(payload[:5])
            transport.write(payload[5:105])
            payload = payload[:105]
        elif how == "cork":
            # Held pieces, let go by close() into the batch window (0 of 200 bytes arrived).
            transport.send(payload[:100], wsasend.MSG_PARTIAL)
            transport.send(payload[100:200], wsasend.MSG_PARTIAL)
            payload = payload[:200]
        else:
            transport.write(payload)
        assert transport.get_write_buffer_size() > 0
        if how != "paused":
            transport.close()
        ref = weakref.ref(transport)
        del transport, _
        gc.collect()
        assert ref() is not None
        peer.setblocking(False)
        loop = asyncio.get_running_loop()
        got = bytearray()
        while len(got) < len(payload):
            chunk = await asyncio.wait_for(loop.sock_recv(peer, 1 << 20), 20)
            assert chunk, "EOF before the whole payload"
            got += chunk
        assert got == payload
        if how != "paused":
            assert await asyncio.wait_for(lost, 20) is None
        else:
            # Nothing waits any more: an unclosed transport is collectable again, and warns.
            with pytest.warns(ResourceWarning, match="unclosed"):
                gc.collect()
            assert ref() is None


async def test_a_collected_server_transport_no_longer_holds_wait_closed(no_collector: None) -> None:
    # As asyncio's (3.12+) __del__: detached from its server. wait_closed() waited for ever.
    refs: list[weakref.ref[asyncio.BaseTransport]] = []

    class Forgets(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            cast(asyncio.Transport, transport).pause_reading()
            refs.append(weakref.ref(transport))

    def collected() -> bool:
        gc.collect()
        return bool(refs) and refs[0]() is None

    server = await wsasend.create_server(Forgets, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    with socket.create_connection(("127.0.0.1", port)), warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # (its "unclosed transport", expected)
        await until(collected)
        server.close()
        await asyncio.wait_for(server.wait_closed(), 20)


async def test_a_transport_shows_dict_and_weakref_as_a_python_class() -> None:
    # Compiled before support_weakrefs gave them: no __weakref__ on 3.12+, and on 3.11 a
    # __dict__ that read as missing (vars(transport) failed) until a custom attribute was set.
    ours, peer = socket.socketpair()
    with peer:
        transport, proto = await wsasend.connect_accepted_socket(_Lost, ours)
        ref = weakref.ref(transport)
        assert getattr(transport, "__weakref__", None) is not None  # (the engine's came first)
        assert ref in weakref.getweakrefs(transport)
        assert isinstance(vars(transport), dict)
        transport.custom = "mine"  # type: ignore[attr-defined]
        assert vars(transport)["custom"] == "mine"
        if wsasend.compiled:
            # __dict__ replaced, then deleted, as a Python instance allows (deleting raised
            # TypeError at 58b33fb). Compiled, the class's own fields are not in it (S10) and
            # stay; the plain-Python class keeps its whole state there, so not on that one.
            transport.__dict__ = {"other": 1}
            assert vars(transport) == {"other": 1} and not hasattr(transport, "custom")
            del transport.__dict__
            assert vars(transport) == {} and not hasattr(transport, "other")
            assert transport.get_extra_info("socket") is not None and not transport.is_closing()
        transport.close()
        await proto.lost
    del transport
    gc.collect()
    assert ref() is None


@pytest.mark.skipif(not wsasend.compiled, reason="the compiled build's C helper")
def test_support_weakrefs_serves_the_transport_class_only() -> None:
    from wsasend import _iovsend

    _iovsend.support_weakrefs(WSATransport)  # again: nothing changes
    with pytest.raises(TypeError):
        _iovsend.support_weakrefs(cast(Any, object()))
    with pytest.raises(TypeError, match="not a compiled class"):
        _iovsend.support_weakrefs(int)  # (a static type)
    with pytest.raises(RuntimeError, match="one class"):
        _iovsend.support_weakrefs(wsasend.WSAOverlapped)


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_a_bare_closed_loop_lets_go_of_a_transport_whose_sends_waited(loop_name: str) -> None:
    # What holds a transport while its sends wait is the loop's writer registration (as
    # asyncio's), not the engine, which the registry keeps until the loop is swept: closed with
    # a bare loop.close(), the loop drops the registration and the transport can go.
    from tests.conftest import LOOP_FACTORIES

    loop = LOOP_FACTORIES[loop_name]()
    ours, peer = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)

    async def start() -> weakref.ref[WSATransport]:
        transport, _ = await wsasend.connect_accepted_socket(asyncio.Protocol, ours)
        assert isinstance(transport, WSATransport)
        transport.pause_reading()
        transport.write(b"x" * (4 << 20))
        assert transport.get_write_buffer_size() > 0
        return weakref.ref(transport)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # (its "unclosed transport", expected)
        try:
            ref = loop.run_until_complete(start())
            gc.collect()
            assert ref() is not None  # its sends wait: the registration holds it
        finally:
            loop.close()
        gc.collect()
        assert ref() is None
    # What the closed loop left queued is aborted by the next loop's sweep (S5.12): here.
    from wsasend._api import _sweep_closed

    with pytest.warns(ResourceWarning, match="event loop ended with 1 overlapped send"):
        _sweep_closed()
    peer.close()
    ours.close()


async def test_a_transport_whose_writes_wait_for_a_threads_send_is_not_collected(no_collector: None) -> None:
    # A thread's blocking wsa_send_sync owns the socket; the transport's write queues behind
    # it (S4.2) with no writer registered and no tick: closed and dropped, it was collected, its
    # __del__ closed the socket under the thread, and the write was lost.
    ours, peer = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    lost: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
    with peer:
        transport, _ = await wsasend.connect_accepted_socket(lambda: _Told(lost), ours)
        transport.pause_reading()
        from wsasend._api import slot_for

        slot = slot_for(ours)
        first, second = b"\x02" * 500_000, b"\x03" * 300_000
        ours.settimeout(GUARD)  # (the thread's send blocks; the transport's sends never do)
        thread = threading.Thread(target=wsasend.wsa_send_sync, args=(ours, first), daemon=True)
        thread.start()
        await until(lambda: slot.sync_owner != 0)
        transport.write(second)
        transport.close()
        ref = weakref.ref(transport)
        del transport, _
        gc.collect()
        assert ref() is not None
        got = await asyncio.wait_for(read_exactly(peer, len(first) + len(second)), GUARD)
        assert got == first + second
        assert await asyncio.wait_for(lost, GUARD) is None
        await asyncio.to_thread(thread.join, GUARD)
